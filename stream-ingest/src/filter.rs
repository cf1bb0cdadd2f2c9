//! Evaluates a table's `filter` ([`shared::config::filter`]) on a batch with Arrow's
//! comparison kernels: one boolean mask per batch, NULL counting as false.

use arrow::array::{
    Array, ArrayRef, BooleanArray, Datum, Float64Array, Int64Array, RecordBatch, Scalar,
    StringArray,
};
use arrow::compute::kernels::{boolean, cmp};
use arrow::compute::{cast, is_not_null, is_null, prep_null_mask_filter};
use arrow::datatypes::{DataType, Schema};
use arrow::error::ArrowError;
use shared::config::filter::{CmpOp, Filter, Test, Value};

/// A filter resolved against the event schema.
#[derive(Debug)]
pub struct CompiledFilter {
    comparisons: Vec<(usize, Test)>,
}

impl CompiledFilter {
    /// Resolves field names; the config validation has already checked names and types.
    pub fn new(filter: &Filter, schema: &Schema) -> Result<Self, String> {
        let comparisons = filter
            .all
            .iter()
            .map(|c| {
                schema
                    .index_of(&c.field)
                    .map(|i| (i, c.test.clone()))
                    .map_err(|_| format!("no event field `{}`", c.field))
            })
            .collect::<Result<_, _>>()?;
        Ok(CompiledFilter { comparisons })
    }

    /// `true` for the rows that pass.
    pub fn evaluate(&self, batch: &RecordBatch) -> Result<BooleanArray, ArrowError> {
        let mut mask: Option<BooleanArray> = None;
        for (col, test) in &self.comparisons {
            let m = eval_test(batch.column(*col), test)?;
            mask = Some(match mask {
                Some(prev) => boolean::and_kleene(&prev, &m)?,
                None => m,
            });
        }
        let mask = mask.unwrap_or_else(|| BooleanArray::from(vec![true; batch.num_rows()]));
        Ok(if mask.null_count() > 0 {
            prep_null_mask_filter(&mask)
        } else {
            mask
        })
    }
}

/// The column in the type a literal compares with, and the literal as a scalar.
fn operands(col: &ArrayRef, v: &Value) -> Result<(ArrayRef, Scalar<ArrayRef>), ArrowError> {
    let scalar = |a: ArrayRef| Scalar::new(a);
    Ok(match (col.data_type(), v) {
        (DataType::Utf8, Value::Str(s)) => (
            col.clone(),
            scalar(std::sync::Arc::new(StringArray::from(vec![s.as_str()]))),
        ),
        (DataType::Int32 | DataType::Int64, Value::Int(i)) => (
            cast(col, &DataType::Int64)?,
            scalar(std::sync::Arc::new(Int64Array::from(vec![*i]))),
        ),
        (DataType::Float64, Value::Int(i)) => (
            col.clone(),
            scalar(std::sync::Arc::new(Float64Array::from(vec![*i as f64]))),
        ),
        (DataType::Float64, Value::Float(f)) => (
            col.clone(),
            scalar(std::sync::Arc::new(Float64Array::from(vec![*f]))),
        ),
        (DataType::Boolean, Value::Bool(b)) => (
            col.clone(),
            scalar(std::sync::Arc::new(BooleanArray::from(vec![*b]))),
        ),
        (t, v) => {
            return Err(ArrowError::InvalidArgumentError(format!(
                "cannot compare {t} with {v}"
            )));
        }
    })
}

fn compare(col: &ArrayRef, op: CmpOp, v: &Value) -> Result<BooleanArray, ArrowError> {
    let (lhs, rhs) = operands(col, v)?;
    let rhs: &dyn Datum = &rhs;
    match op {
        CmpOp::Eq => cmp::eq(&lhs, rhs),
        CmpOp::NotEq => cmp::neq(&lhs, rhs),
        CmpOp::Lt => cmp::lt(&lhs, rhs),
        CmpOp::LtEq => cmp::lt_eq(&lhs, rhs),
        CmpOp::Gt => cmp::gt(&lhs, rhs),
        CmpOp::GtEq => cmp::gt_eq(&lhs, rhs),
    }
}

fn eval_test(col: &ArrayRef, test: &Test) -> Result<BooleanArray, ArrowError> {
    match test {
        Test::Cmp(op, v) => compare(col, *op, v),
        Test::IsNull => is_null(col),
        Test::IsNotNull => is_not_null(col),
        Test::In(values) | Test::NotIn(values) => {
            let negate = matches!(test, Test::NotIn(_));
            let mut acc: Option<BooleanArray> = None;
            for v in values {
                let m = compare(col, if negate { CmpOp::NotEq } else { CmpOp::Eq }, v)?;
                acc = Some(match acc {
                    None => m,
                    Some(prev) if negate => boolean::and_kleene(&prev, &m)?,
                    Some(prev) => boolean::or_kleene(&prev, &m)?,
                });
            }
            Ok(acc.unwrap_or_else(|| BooleanArray::from(vec![negate; col.len()])))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow::array::Int32Array;
    use arrow::datatypes::Field;
    use std::sync::Arc;

    #[test]
    fn masks_rows() {
        let schema = Arc::new(Schema::new(vec![
            Field::new("status", DataType::Int32, true),
            Field::new("method", DataType::Utf8, true),
        ]));
        let batch = RecordBatch::try_new(
            schema.clone(),
            vec![
                Arc::new(Int32Array::from(vec![
                    Some(200),
                    Some(404),
                    None,
                    Some(500),
                ])),
                Arc::new(StringArray::from(vec![
                    Some("GET"),
                    Some("GET"),
                    Some("GET"),
                    None,
                ])),
            ],
        )
        .unwrap();
        let f = |text: &str| {
            let parsed = shared::config::filter::parse(text).unwrap();
            let mask = CompiledFilter::new(&parsed, &schema)
                .unwrap()
                .evaluate(&batch)
                .unwrap();
            (0..mask.len()).map(|i| mask.value(i)).collect::<Vec<_>>()
        };
        assert_eq!(f("status >= 400"), vec![false, true, false, true]);
        assert_eq!(
            f("status >= 400 and method = 'GET'"),
            vec![false, true, false, false]
        );
        assert_eq!(f("status is null"), vec![false, false, true, false]);
        assert_eq!(f("status in (200, 500)"), vec![true, false, false, true]);
        assert_eq!(
            f("status not in (200, 500)"),
            vec![false, true, false, false]
        );
        assert_eq!(f("method != 'GET'"), vec![false, false, false, false]);
    }
}
