//! Aggregate state per window and key, updated one event at a time from Arrow columns.
//!
//! The columns an aggregate reads are prepared once per batch ([`AggInput`]): integers are
//! widened to `i64`, timestamps read as their `i64` microseconds, and the values of
//! `count_distinct` and `approx_distinct` encoded once in Arrow's row format, so the
//! per-event update is a match and an add, with an allocation only for a value a group has
//! not seen before. A state is 24 bytes (large ones are boxed); [`Acc::update`] returns the
//! bytes a state grew by, so tables know their size for the memory budget.

use std::sync::Arc;

use hashbrown::HashSet;

use arrow::array::{Array, ArrayRef, AsArray, BinaryArray, Float64Array, Int64Array, RecordBatch};
use arrow::buffer::NullBuffer;
use arrow::compute::cast;
use arrow::datatypes::{DataType, Float64Type, Int64Type};
use arrow::error::ArrowError;
use arrow::row::{RowConverter, Rows, SortField};
use shared::config::AggregateFn;

use shared::sketch::{Hll, Quantiles};

/// Bytes a distinct value costs in a set beyond its own: the box, the table slot.
pub const DISTINCT_ENTRY_BYTES: usize = 24;

/// One configured aggregate, resolved against the event schema.
#[derive(Debug)]
pub struct AggSpec {
    pub function: AggregateFn,
    /// Index of the input column in the event batch.
    pub column: Option<usize>,
    pub input_type: Option<DataType>,
    pub output_type: DataType,
    /// Encodes `count_distinct` values.
    distinct: Option<RowConverter>,
    /// The quantile of `approx_percentile`.
    q: f64,
    /// Whether the table also stores the sketch (`sketch: true`).
    sketch: bool,
    /// The earlier aggregate whose state this one's always equals (see [`share_states`]).
    shares: Option<usize>,
}

impl AggSpec {
    pub fn new(
        function: AggregateFn,
        column: Option<usize>,
        input_type: Option<DataType>,
        output_type: DataType,
    ) -> Result<Self, ArrowError> {
        let distinct = match (function, &input_type) {
            (AggregateFn::CountDistinct | AggregateFn::ApproxDistinct, Some(t)) => {
                Some(RowConverter::new(vec![SortField::new(t.clone())])?)
            }
            _ => None,
        };
        Ok(AggSpec {
            function,
            column,
            input_type,
            output_type,
            distinct,
            q: 0.5,
            sketch: false,
            shares: None,
        })
    }

    /// `q` of `approx_percentile`, and `sketch: true`.
    pub fn with_options(mut self, q: Option<f64>, sketch: bool) -> Self {
        self.q = q.unwrap_or(0.5);
        self.sketch = sketch;
        self
    }

    fn is_float(&self) -> bool {
        matches!(self.input_type, Some(DataType::Float64))
    }

    /// The empty state of this aggregate in a fixed window: [`Acc::SameAs`] when it shares
    /// an earlier aggregate's state.
    pub fn new_window_acc(&self) -> Acc {
        match self.shares {
            Some(_) => Acc::SameAs,
            None => self.new_acc(),
        }
    }

    /// The empty state of this aggregate.
    pub fn new_acc(&self) -> Acc {
        match (self.function, self.is_float()) {
            (AggregateFn::Count, _) => Acc::Count(0),
            (AggregateFn::Sum, false) => Acc::SumInt(None),
            (AggregateFn::Sum, true) => Acc::SumFloat(None),
            (AggregateFn::Min, false) => Acc::MinInt(None),
            (AggregateFn::Min, true) => Acc::MinFloat(None),
            (AggregateFn::Max, false) => Acc::MaxInt(None),
            (AggregateFn::Max, true) => Acc::MaxFloat(None),
            (AggregateFn::Avg, _) => Acc::Avg { sum: 0.0, count: 0 },
            (AggregateFn::CountDistinct, _) => Acc::Distinct(Box::default()),
            (AggregateFn::ApproxDistinct, _) => Acc::Approx(Box::default()),
            (AggregateFn::ApproxPercentile, _) => Acc::Quantiles(Box::default()),
        }
    }

    /// Prepares this aggregate's input column of `batch`.
    pub fn input(&self, batch: &RecordBatch) -> Result<AggInput, ArrowError> {
        let Some(i) = self.column else {
            return Ok(AggInput::Rows);
        };
        let col = batch.column(i);
        let nulls = col.logical_nulls();
        Ok(match self.function {
            AggregateFn::Count => AggInput::NonNull(nulls),
            AggregateFn::CountDistinct | AggregateFn::ApproxDistinct => {
                let conv = self
                    .distinct
                    .as_ref()
                    .expect("distinct counts have a converter");
                AggInput::Bytes {
                    rows: conv.convert_columns(std::slice::from_ref(col))?,
                    nulls,
                }
            }
            _ if self.is_float() => AggInput::Float(col.as_primitive::<Float64Type>().clone()),
            AggregateFn::ApproxPercentile => {
                let floats = cast(col, &DataType::Float64)?;
                AggInput::Float(floats.as_primitive::<Float64Type>().clone())
            }
            _ => {
                let ints = cast(col, &DataType::Int64)?;
                AggInput::Int(ints.as_primitive::<Int64Type>().clone())
            }
        })
    }

    /// The output column for a list of states, in order. A state that has not seen every
    /// event ([`Acc::Unseen`]) gives NULL.
    pub fn finish<'a>(&self, accs: impl Iterator<Item = &'a Acc>) -> Result<ArrayRef, ArrowError> {
        let array: ArrayRef = match self.function {
            AggregateFn::Count | AggregateFn::CountDistinct | AggregateFn::ApproxDistinct => {
                Arc::new(Int64Array::from_iter(accs.map(|a| match a {
                    Acc::Count(n) => Some(*n),
                    Acc::Distinct(s) => Some(s.len() as i64),
                    Acc::Approx(h) => Some(h.estimate()),
                    _ => None,
                })))
            }
            AggregateFn::ApproxPercentile => {
                Arc::new(Float64Array::from_iter(accs.map(|a| match a {
                    Acc::Quantiles(q) => q.quantile(self.q),
                    _ => None,
                })))
            }
            AggregateFn::Avg => Arc::new(Float64Array::from_iter(accs.map(|a| match a {
                Acc::Avg { count: 0, .. } => None,
                Acc::Avg { sum, count } => Some(sum / *count as f64),
                _ => None,
            }))),
            _ if self.is_float() => Arc::new(Float64Array::from_iter(accs.map(|a| match a {
                Acc::SumFloat(v) | Acc::MinFloat(v) | Acc::MaxFloat(v) => *v,
                _ => None,
            }))),
            _ => Arc::new(Int64Array::from_iter(accs.map(|a| match a {
                Acc::SumInt(v) | Acc::MinInt(v) | Acc::MaxInt(v) => *v,
                _ => None,
            }))),
        };
        if array.data_type() == &self.output_type {
            Ok(array)
        } else {
            cast(&array, &self.output_type)
        }
    }
}

impl AggSpec {
    /// The sketch column for a list of states (the lake's bytes, [`shared::sketch`]), when
    /// the table stores it.
    pub fn finish_sketch<'a>(&self, accs: impl Iterator<Item = &'a Acc>) -> Option<ArrayRef> {
        if !self.sketch {
            return None;
        }
        let bytes = accs.map(|a| match a {
            Acc::Approx(h) => Some(h.to_bytes()),
            Acc::Quantiles(q) => Some(q.to_bytes()),
            _ => None,
        });
        Some(Arc::new(BinaryArray::from_iter(bytes)))
    }
}

/// Marks, for each aggregate, the first earlier one whose state it would always equal: an
/// `approx_percentile` of the same column (`p50`, `p95`, `p99` of one column are three
/// quantiles of one digest). A fixed window keeps that state once, and the others hold
/// [`Acc::SameAs`]: one digest to fill and flush instead of three.
pub fn share_states(aggs: &mut [AggSpec]) {
    for j in 0..aggs.len() {
        let shares = (0..j).find(|&i| {
            let (a, b) = (&aggs[i], &aggs[j]);
            a.shares.is_none()
                && a.function == AggregateFn::ApproxPercentile
                && b.function == AggregateFn::ApproxPercentile
                && a.column == b.column
        });
        aggs[j].shares = shares;
    }
}

/// The state of aggregate `i` among a group's `accs`, following [`Acc::SameAs`].
#[inline]
pub fn state_of<'a>(aggs: &[AggSpec], accs: &'a [Acc], i: usize) -> &'a Acc {
    match (&accs[i], aggs[i].shares) {
        (Acc::SameAs, Some(first)) => &accs[first],
        (acc, _) => acc,
    }
}

/// A group's states as a checkpoint stores them: every aggregate with a state of its own
/// ([`Acc::SameAs`] replaced by a copy), so the bytes do not depend on sharing.
pub fn expand_states(aggs: &[AggSpec], accs: &[Acc]) -> Vec<Acc> {
    (0..accs.len())
        .map(|i| state_of(aggs, accs, i).clone())
        .collect()
}

/// The inverse of [`expand_states`] for a restored group: a state equal to the one it
/// would share becomes [`Acc::SameAs`]. One that differs (an aggregate added while the
/// window was open is [`Acc::Unseen`]) keeps its own and is updated on its own.
pub fn collapse_states(aggs: &[AggSpec], accs: &mut [Acc]) {
    for (j, spec) in aggs.iter().enumerate().take(accs.len()) {
        if let Some(i) = spec.shares
            && accs[i] == accs[j]
        {
            accs[j] = Acc::SameAs;
        }
    }
}

/// Every aggregate's input column for one batch. An aggregate that shares an earlier one's
/// state ([`share_states`]) reads the same column prepared the same way, so the column is
/// prepared once (a restored aggregate that keeps a state of its own reads it too).
pub fn inputs_of(aggs: &[AggSpec], batch: &RecordBatch) -> Result<Vec<AggInput>, ArrowError> {
    let mut inputs: Vec<AggInput> = Vec::with_capacity(aggs.len());
    for a in aggs {
        let input = match a.shares.map(|i| &inputs[i]) {
            Some(AggInput::Float(prepared)) => AggInput::Float(prepared.clone()),
            _ => a.input(batch)?,
        };
        inputs.push(input);
    }
    Ok(inputs)
}

/// An aggregate's input column for one batch.
pub enum AggInput {
    /// `count` of rows.
    Rows,
    /// `count(column)`: the column's NULLs.
    NonNull(Option<NullBuffer>),
    Int(Int64Array),
    Float(Float64Array),
    /// `count_distinct`, `approx_distinct`: values in Arrow's row format.
    Bytes {
        rows: Rows,
        nulls: Option<NullBuffer>,
    },
}

/// The state of one aggregate for one group of one window.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub enum Acc {
    Count(i64),
    SumInt(Option<i64>),
    SumFloat(Option<f64>),
    MinInt(Option<i64>),
    MaxInt(Option<i64>),
    MinFloat(Option<f64>),
    MaxFloat(Option<f64>),
    Avg {
        sum: f64,
        count: i64,
    },
    Distinct(#[serde(with = "sorted_set")] Box<DistinctSet>),
    Approx(Box<Hll>),
    Quantiles(Box<Quantiles>),
    /// An aggregate added to the pipeline while its window was open: part of the window's
    /// events were not seen, so its value is NULL. It ignores what it is given.
    Unseen,
    /// The state is the one of an earlier aggregate of the group ([`share_states`]); it
    /// ignores what it is given. Only in memory: a checkpoint stores the copy
    /// ([`expand_states`]).
    #[serde(skip)]
    SameAs,
}

/// The values a `count_distinct` has seen (as bytes).
pub type DistinctSet = HashSet<Box<[u8]>>;

/// A distinct set is stored in value order, so that the same state always gives the same
/// checkpoint bytes (a hash set's own order changes from process to process).
mod sorted_set {
    use serde::{Deserialize, Deserializer, Serializer};

    use super::DistinctSet;

    #[allow(clippy::borrowed_box)]
    pub fn serialize<S: Serializer>(set: &Box<DistinctSet>, s: S) -> Result<S::Ok, S::Error> {
        let mut values: Vec<&[u8]> = set.iter().map(|v| &v[..]).collect();
        values.sort_unstable();
        s.collect_seq(values)
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Box<DistinctSet>, D::Error> {
        let values = Vec::<Box<[u8]>>::deserialize(d)?;
        Ok(Box::new(values.into_iter().collect()))
    }
}

impl Acc {
    /// Readies an emitted state for its outputs, which then read it without copying: a
    /// digest's buffer is merged (or only sorted, while its quantiles are exact). The
    /// outputs are those of the state before.
    pub fn settle(&mut self) {
        if let Acc::Quantiles(q) = self {
            q.settle();
        }
    }

    /// Bytes this state holds on the heap (as [`Acc::update`] counts them).
    pub fn heap_bytes(&self) -> usize {
        match self {
            Acc::Distinct(set) => set.iter().map(|v| v.len() + DISTINCT_ENTRY_BYTES).sum(),
            Acc::Approx(h) => h.heap_bytes(),
            Acc::Quantiles(q) => q.heap_bytes(),
            _ => 0,
        }
    }
}

#[inline]
fn valid(nulls: &Option<NullBuffer>, row: usize) -> bool {
    nulls.as_ref().is_none_or(|n| n.is_valid(row))
}

#[inline]
fn int_at(a: &Int64Array, row: usize) -> Option<i64> {
    if a.is_null(row) {
        None
    } else {
        Some(a.value(row))
    }
}

#[inline]
fn float_at(a: &Float64Array, row: usize) -> Option<f64> {
    if a.is_null(row) {
        None
    } else {
        Some(a.value(row))
    }
}

impl Acc {
    /// Adds row `row` of the prepared input. NULL inputs are skipped, as in SQL. Returns the
    /// bytes the state grew by (a new distinct value).
    #[inline]
    pub fn update(&mut self, input: &AggInput, row: usize) -> usize {
        match (self, input) {
            (Acc::Count(n), AggInput::Rows) => *n += 1,
            (Acc::Count(n), AggInput::NonNull(nulls)) => *n += i64::from(valid(nulls, row)),
            (Acc::SumInt(s), AggInput::Int(a)) => {
                if let Some(v) = int_at(a, row) {
                    *s = Some(s.unwrap_or(0).wrapping_add(v));
                }
            }
            (Acc::SumFloat(s), AggInput::Float(a)) => {
                if let Some(v) = float_at(a, row) {
                    *s = Some(s.unwrap_or(0.0) + v);
                }
            }
            (Acc::MinInt(m), AggInput::Int(a)) => {
                if let Some(v) = int_at(a, row) {
                    *m = Some(m.map_or(v, |m| m.min(v)));
                }
            }
            (Acc::MaxInt(m), AggInput::Int(a)) => {
                if let Some(v) = int_at(a, row) {
                    *m = Some(m.map_or(v, |m| m.max(v)));
                }
            }
            (Acc::MinFloat(m), AggInput::Float(a)) => {
                if let Some(v) = float_at(a, row) {
                    *m = Some(m.map_or(v, |m| m.min(v)));
                }
            }
            (Acc::MaxFloat(m), AggInput::Float(a)) => {
                if let Some(v) = float_at(a, row) {
                    *m = Some(m.map_or(v, |m| m.max(v)));
                }
            }
            (Acc::Avg { sum, count }, AggInput::Int(a)) => {
                if let Some(v) = int_at(a, row) {
                    *sum += v as f64;
                    *count += 1;
                }
            }
            (Acc::Avg { sum, count }, AggInput::Float(a)) => {
                if let Some(v) = float_at(a, row) {
                    *sum += v;
                    *count += 1;
                }
            }
            (Acc::Distinct(set), AggInput::Bytes { rows, nulls }) => {
                if valid(nulls, row) {
                    let v = rows.row(row);
                    if !set.contains(v.as_ref()) {
                        set.insert(v.as_ref().into());
                        return v.as_ref().len() + DISTINCT_ENTRY_BYTES;
                    }
                }
            }
            (Acc::Approx(h), AggInput::Bytes { rows, nulls }) => {
                if valid(nulls, row) {
                    return h.add(rows.row(row).as_ref());
                }
            }
            (Acc::Quantiles(q), AggInput::Float(a)) => {
                if let Some(v) = float_at(a, row) {
                    return q.add(v);
                }
            }
            // Added to the pipeline while the window was open (the plan said so), or kept
            // by an earlier aggregate.
            (Acc::Unseen | Acc::SameAs, _) => {}
            // A restored state is checked against the pipeline before any event is applied
            // (`checkpoint::plan`); a mismatch here is a bug, not bad input.
            _ => debug_assert!(false, "state and input follow the same spec"),
        }
        0
    }

    /// Folds `other` into `self` (session windows that merge).
    pub fn merge(&mut self, other: Acc) {
        fn opt<T: Copy>(a: Option<T>, b: Option<T>, f: impl Fn(T, T) -> T) -> Option<T> {
            match (a, b) {
                (Some(x), Some(y)) => Some(f(x, y)),
                (x, None) => x,
                (None, y) => y,
            }
        }
        match (self, other) {
            (Acc::Unseen, _) => {}
            (this, Acc::Unseen) => *this = Acc::Unseen,
            (Acc::Count(a), Acc::Count(b)) => *a += b,
            (Acc::SumInt(a), Acc::SumInt(b)) => *a = opt(*a, b, i64::wrapping_add),
            (Acc::SumFloat(a), Acc::SumFloat(b)) => *a = opt(*a, b, |x, y| x + y),
            (Acc::MinInt(a), Acc::MinInt(b)) => *a = opt(*a, b, i64::min),
            (Acc::MaxInt(a), Acc::MaxInt(b)) => *a = opt(*a, b, i64::max),
            (Acc::MinFloat(a), Acc::MinFloat(b)) => *a = opt(*a, b, f64::min),
            (Acc::MaxFloat(a), Acc::MaxFloat(b)) => *a = opt(*a, b, f64::max),
            (Acc::Avg { sum, count }, Acc::Avg { sum: s2, count: c2 }) => {
                *sum += s2;
                *count += c2;
            }
            (Acc::Distinct(a), Acc::Distinct(b)) => a.extend(*b),
            (Acc::Approx(a), Acc::Approx(b)) => a.merge(&b),
            (Acc::Quantiles(a), Acc::Quantiles(b)) => a.merge(&b),
            _ => debug_assert!(false, "merged states follow the same spec"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow::array::{Int32Array, StringArray};
    use arrow::datatypes::{Field, Schema};

    fn batch() -> RecordBatch {
        let schema = Arc::new(Schema::new(vec![
            Field::new("n", DataType::Int32, true),
            Field::new("s", DataType::Utf8, true),
            Field::new("f", DataType::Float64, true),
        ]));
        RecordBatch::try_new(
            schema,
            vec![
                Arc::new(Int32Array::from(vec![Some(3), None, Some(-1), Some(7)])),
                Arc::new(StringArray::from(vec![
                    Some("a"),
                    Some("b"),
                    Some("a"),
                    None,
                ])),
                Arc::new(Float64Array::from(vec![
                    Some(0.5),
                    Some(1.5),
                    None,
                    Some(2.0),
                ])),
            ],
        )
        .unwrap()
    }

    fn run(function: AggregateFn, column: Option<usize>, out: DataType) -> ArrayRef {
        let b = batch();
        let input_type = column.map(|c| b.schema().field(c).data_type().clone());
        let spec = AggSpec::new(function, column, input_type, out).unwrap();
        let input = spec.input(&b).unwrap();
        let mut acc = spec.new_acc();
        for row in 0..b.num_rows() {
            acc.update(&input, row);
        }
        spec.finish(std::iter::once(&acc)).unwrap()
    }

    #[test]
    fn sql_semantics() {
        let i64s = |a: ArrayRef| a.as_primitive::<Int64Type>().value(0);
        assert_eq!(i64s(run(AggregateFn::Count, None, DataType::Int64)), 4);
        assert_eq!(i64s(run(AggregateFn::Count, Some(0), DataType::Int64)), 3);
        assert_eq!(i64s(run(AggregateFn::Sum, Some(0), DataType::Int64)), 9);
        assert_eq!(
            i64s(run(AggregateFn::CountDistinct, Some(1), DataType::Int64)),
            2
        );
        assert_eq!(
            i64s(run(AggregateFn::ApproxDistinct, Some(1), DataType::Int64)),
            2
        );
        let min = run(AggregateFn::Min, Some(0), DataType::Int32);
        assert_eq!(
            min.as_primitive::<arrow::datatypes::Int32Type>().value(0),
            -1
        );
        let avg = run(AggregateFn::Avg, Some(2), DataType::Float64);
        assert_eq!(avg.as_primitive::<Float64Type>().value(0), 4.0 / 3.0);
        let max = run(AggregateFn::Max, Some(2), DataType::Float64);
        assert_eq!(max.as_primitive::<Float64Type>().value(0), 2.0);
    }

    #[test]
    fn merging_equals_updating_once() {
        let b = batch();
        let spec = AggSpec::new(
            AggregateFn::CountDistinct,
            Some(1),
            Some(DataType::Utf8),
            DataType::Int64,
        )
        .unwrap();
        let input = spec.input(&b).unwrap();
        let (mut x, mut y, mut all) = (spec.new_acc(), spec.new_acc(), spec.new_acc());
        for row in 0..4 {
            all.update(&input, row);
            if row % 2 == 0 {
                x.update(&input, row);
            } else {
                y.update(&input, row);
            }
        }
        x.merge(y);
        assert_eq!(x, all);
    }

    #[test]
    fn all_null_sum_is_null() {
        let spec = AggSpec::new(
            AggregateFn::Sum,
            Some(0),
            Some(DataType::Int64),
            DataType::Int64,
        )
        .unwrap();
        let out = spec.finish(std::iter::once(&spec.new_acc())).unwrap();
        assert!(out.is_null(0));
    }
}
