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

/// The distinct values of a batch remembered by [`Extract`], at most: access-log columns
/// (paths, agents) repeat within a batch, and a value seen before costs a hash lookup instead
/// of a regex search. A batch with more distinct values searches the rest.
const REMEMBERED: usize = 4096;

/// `regexp_extract` over the values of one batch: one set of capture locations for all of
/// them, and the result of each distinct value remembered (as a range of the value).
struct Extract<'a> {
    pattern: &'a regex::Regex,
    group: usize,
    locations: regex::CaptureLocations,
    seen: hashbrown::HashMap<&'a str, (usize, usize)>,
}

impl<'a> Extract<'a> {
    fn new(pattern: &'a regex::Regex, group: usize) -> Self {
        Extract {
            pattern,
            group,
            locations: pattern.capture_locations(),
            seen: hashbrown::HashMap::new(),
        }
    }

    /// The group in `value`, `""` when the pattern does not match or the group took no part.
    fn of<'v: 'a>(&mut self, value: &'v str) -> &'v str {
        if let Some(&(start, end)) = self.seen.get(value) {
            return &value[start..end];
        }
        let found = match self.pattern.captures_read(&mut self.locations, value) {
            Some(_) => self.locations.get(self.group).unwrap_or((0, 0)),
            None => (0, 0),
        };
        if self.seen.len() < REMEMBERED {
            self.seen.insert(value, found);
        }
        &value[found.0..found.1]
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
        let Some(pattern) = pattern else {
            out.append_nulls(text.len());
            return Ok(ColumnarValue::Array(Arc::new(out.finish()) as ArrayRef));
        };
        let mut extract = Extract::new(&pattern, group);
        for value in text.iter() {
            match value {
                Some(v) => out.append_value(extract.of(v)),
                None => out.append_null(),
            }
        }
        Ok(ColumnarValue::Array(Arc::new(out.finish()) as ArrayRef))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn remembered_values_give_what_a_search_gives() {
        let pattern = regex::Regex::new(r"^/([^/?]*)(x)?").unwrap();
        // More distinct values than are remembered, each seen twice, and a group that takes
        // no part (group 2) or a pattern that does not match ("img").
        let values: Vec<String> = (0..REMEMBERED + 100)
            .flat_map(|i| [format!("/s{}/p?q", i % (REMEMBERED + 50)), "img".into()])
            .collect();
        for group in [0, 1, 2] {
            let mut extract = Extract::new(&pattern, group);
            for v in values.iter().chain(&values) {
                let want = pattern
                    .captures(v)
                    .and_then(|c| c.get(group))
                    .map_or("", |m| m.as_str());
                assert_eq!(extract.of(v), want, "{v} group {group}");
            }
            assert_eq!(extract.seen.len(), REMEMBERED);
        }
    }
}
