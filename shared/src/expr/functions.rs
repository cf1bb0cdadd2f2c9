//! Functions the pipelines' SQL has beyond DataFusion's own.

use std::sync::Arc;

use arrow::array::{Array, ArrayRef, AsArray, StringBuilder};
use arrow::datatypes::DataType;
use datafusion_common::{Result, ScalarValue, exec_err, plan_err};
use datafusion_expr::{
    ColumnarValue, ScalarFunctionArgs, ScalarUDFImpl, Signature, TypeSignature, Volatility,
};

/// `regexp_extract(text, pattern [, group])`: the `group`-th capture group of the first
/// match of `pattern` in `text` (group 0, the default, is the whole match), `''` when the
/// pattern does not match or the group did not take part, NULL when `text` is NULL. The
/// same as DuckDB's function of that name; the pattern is Rust `regex` syntax and must be
/// a literal (it is compiled once per batch).
#[derive(Debug, PartialEq, Eq, Hash)]
pub struct RegexpExtract {
    signature: Signature,
}

impl RegexpExtract {
    pub fn new() -> Self {
        use DataType::{Int64, Utf8};
        RegexpExtract {
            signature: Signature::one_of(
                vec![
                    TypeSignature::Exact(vec![Utf8, Utf8]),
                    TypeSignature::Exact(vec![Utf8, Utf8, Int64]),
                ],
                Volatility::Immutable,
            ),
        }
    }
}

fn literal_pattern(v: &ColumnarValue) -> Result<Option<regex::Regex>> {
    match v {
        ColumnarValue::Scalar(ScalarValue::Utf8(None)) => Ok(None),
        ColumnarValue::Scalar(ScalarValue::Utf8(Some(p))) => match regex::Regex::new(p) {
            Ok(r) => Ok(Some(r)),
            Err(e) => plan_err!("regexp_extract: bad pattern `{p}`: {e}"),
        },
        _ => plan_err!("regexp_extract: the pattern must be a literal string"),
    }
}

fn literal_group(v: Option<&ColumnarValue>) -> Result<usize> {
    match v {
        None => Ok(0),
        Some(ColumnarValue::Scalar(ScalarValue::Int64(Some(g)))) if *g >= 0 => Ok(*g as usize),
        Some(_) => plan_err!("regexp_extract: the group must be a literal number ≥ 0"),
    }
}

impl ScalarUDFImpl for RegexpExtract {
    fn name(&self) -> &str {
        "regexp_extract"
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn return_type(&self, _args: &[DataType]) -> Result<DataType> {
        Ok(DataType::Utf8)
    }

    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> Result<ColumnarValue> {
        let pattern = literal_pattern(&args.args[1])?;
        let group = literal_group(args.args.get(2))?;
        if let Some(p) = &pattern
            && group >= p.captures_len()
        {
            return exec_err!("regexp_extract: the pattern has no group {group}");
        }
        let text = args.args[0].to_array(args.number_rows)?;
        let text = text.as_string::<i32>();
        let mut out = StringBuilder::with_capacity(text.len(), text.values().len());
        for i in 0..text.len() {
            match (&pattern, text.is_valid(i)) {
                (Some(p), true) => {
                    let found = p
                        .captures(text.value(i))
                        .and_then(|c| c.get(group))
                        .map_or("", |m| m.as_str());
                    out.append_value(found);
                }
                _ => out.append_null(),
            }
        }
        Ok(ColumnarValue::Array(Arc::new(out.finish()) as ArrayRef))
    }
}
