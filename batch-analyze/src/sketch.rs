//! SQL aggregate functions over the sketch columns of the lake.
//!
//! A windowed-table aggregate with `sketch: true` writes its per-window estimate and, beside
//! it, the sketch it came from (`<name>_sketch`, binary; see [`shared::sketch`]). Estimates
//! do not add up: the distinct hosts of a day are not the sum of each minute's, and no
//! combination of per-minute 95th percentiles is the day's. Sketches do merge, so reports
//! (declared or SQL) merge them over any group of rows — a day, a key, the partial rows of
//! several Kafka partitions — and estimate from the merge, with the same code that wrote
//! them:
//!
//! - `sketch_distinct(sketch) -> BIGINT`: the distinct count of the union of HyperLogLog
//!   sketches (0 without input);
//! - `sketch_percentile(sketch, q) -> DOUBLE`: the `q` quantile of the merged t-digests
//!   (NULL without input); `q` is a literal in `[0, 1]`;
//! - `sketch_merge(sketch) -> BINARY`: the merged sketch (either kind, not mixed), in the
//!   lake's bytes, to keep or to merge again (NULL without input).
//!
//! NULL sketches are skipped. The partial state of each function is one binary value: the
//! sketches it holds, length-framed. The result does not depend on the order rows or partial
//! states arrive in (a report gives the same bytes on every run): HyperLogLog merging is
//! order-free, and t-digests are merged once, at the end, in the order of their bytes.
//! Damaged bytes, or a sketch of the wrong kind, fail the query with the function's name and
//! what is wrong ([`SketchError`]).

use std::sync::Arc;

use arrow::array::{ArrayRef, AsArray, RecordBatch};
use arrow::datatypes::{DataType, Field, FieldRef, Schema};
use datafusion::common::{ScalarValue, exec_datafusion_err, internal_err, plan_err};
use datafusion::error::{DataFusionError, Result};
#[cfg(feature = "cluster")]
use datafusion::execution::FunctionRegistry;
#[cfg(feature = "cluster")]
use datafusion::execution::session_state::SessionState;
use datafusion::logical_expr::function::{AccumulatorArgs, StateFieldsArgs};
use datafusion::logical_expr::utils::{AggregateOrderSensitivity, format_state_name};
use datafusion::logical_expr::{
    Accumulator, AggregateUDF, AggregateUDFImpl, ColumnarValue, Signature, Volatility,
};
use datafusion::physical_expr::PhysicalExpr;
use datafusion::prelude::SessionContext;
use shared::sketch::{Hll, Quantiles, Sketch, SketchError};

/// `sketch_distinct(sketch) -> BIGINT`.
pub const DISTINCT: &str = "sketch_distinct";
/// `sketch_percentile(sketch, q) -> DOUBLE`.
pub const PERCENTILE: &str = "sketch_percentile";
/// `sketch_merge(sketch) -> BINARY`.
pub const MERGE: &str = "sketch_merge";

/// Registers the sketch functions in a session.
pub fn register(ctx: &SessionContext) {
    for f in udafs() {
        ctx.register_udaf(f);
    }
}

/// Registers the sketch functions in a session state (a cluster process's, which has no
/// context).
#[cfg(feature = "cluster")]
pub fn register_in(state: &mut SessionState) -> Result<()> {
    for f in udafs() {
        state.register_udaf(Arc::new(f))?;
    }
    Ok(())
}

/// The sketch functions, for a session or a cluster process's registry.
pub fn udafs() -> Vec<AggregateUDF> {
    [SketchFn::Distinct, SketchFn::Percentile, SketchFn::Merge]
        .into_iter()
        .map(|function| AggregateUDF::from(SketchUdaf::new(function)))
        .collect()
}

/// `q` as a SQL literal (`NULL` when missing, which the functions refuse).
pub fn quantile_literal(q: Option<f64>) -> String {
    q.map_or_else(|| "NULL".to_string(), |q| format!("{q:?}"))
}

/// `sketch_distinct(<sketch>)`, over a SQL expression.
pub fn distinct_call(sketch: &str) -> String {
    format!("{DISTINCT}({sketch})")
}

/// `sketch_percentile(<sketch>, <q>)`, over a SQL expression.
pub fn percentile_call(sketch: &str, q: Option<f64>) -> String {
    format!("{PERCENTILE}({sketch}, {})", quantile_literal(q))
}

/// `sketch_merge(<sketch>)`, over a SQL expression.
pub fn merge_call(sketch: &str) -> String {
    format!("{MERGE}({sketch})")
}

/// Whether a column of this type holds sketches (a report's `approx_*` over it merges them).
pub fn is_sketch_type(t: &DataType) -> bool {
    matches!(
        t,
        DataType::Binary | DataType::LargeBinary | DataType::BinaryView
    )
}

/// The three functions.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum SketchFn {
    Distinct,
    Percentile,
    Merge,
}

impl SketchFn {
    fn name(self) -> &'static str {
        match self {
            SketchFn::Distinct => DISTINCT,
            SketchFn::Percentile => PERCENTILE,
            SketchFn::Merge => MERGE,
        }
    }

    fn usage(self) -> &'static str {
        match self {
            SketchFn::Distinct => "sketch_distinct(sketch)",
            SketchFn::Percentile => "sketch_percentile(sketch, q)",
            SketchFn::Merge => "sketch_merge(sketch)",
        }
    }

    fn arity(self) -> usize {
        match self {
            SketchFn::Percentile => 2,
            SketchFn::Distinct | SketchFn::Merge => 1,
        }
    }

    fn return_type(self) -> DataType {
        match self {
            SketchFn::Distinct => DataType::Int64,
            SketchFn::Percentile => DataType::Float64,
            SketchFn::Merge => DataType::Binary,
        }
    }

    /// Reads one sketch of the kind this function takes.
    fn read(self, bytes: &[u8]) -> Result<Sketch, SketchError> {
        match self {
            SketchFn::Distinct => Hll::from_bytes(bytes).map(Sketch::Distinct),
            SketchFn::Percentile => Quantiles::from_bytes(bytes).map(Sketch::Quantiles),
            SketchFn::Merge => Sketch::from_bytes(bytes),
        }
    }

    /// The execution error of a bad sketch, naming the function.
    fn error(self, e: SketchError) -> DataFusionError {
        exec_datafusion_err!("{}: {e}", self.name())
    }
}

/// A sketch function as DataFusion sees it.
#[derive(Debug, PartialEq, Eq, Hash)]
struct SketchUdaf {
    function: SketchFn,
    signature: Signature,
}

impl SketchUdaf {
    fn new(function: SketchFn) -> Self {
        SketchUdaf {
            function,
            signature: Signature::user_defined(Volatility::Immutable),
        }
    }
}

impl AggregateUDFImpl for SketchUdaf {
    fn name(&self) -> &str {
        self.function.name()
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    /// A binary sketch (any binary type becomes `Binary`), and for the percentile a number.
    fn coerce_types(&self, arg_types: &[DataType]) -> Result<Vec<DataType>> {
        let f = self.function;
        if arg_types.len() != f.arity() {
            return plan_err!("{} is called as {}", f.name(), f.usage());
        }
        let sketch = &arg_types[0];
        if !(is_sketch_type(sketch)
            || matches!(sketch, DataType::FixedSizeBinary(_) | DataType::Null))
        {
            return plan_err!(
                "{} reads a sketch column (binary, `<name>_sketch`), not {sketch}",
                f.name()
            );
        }
        let mut types = vec![DataType::Binary];
        if let Some(q) = arg_types.get(1) {
            if !(q.is_numeric() || q.is_null()) {
                return plan_err!("{}: q is a number between 0 and 1, not {q}", f.name());
            }
            types.push(DataType::Float64);
        }
        Ok(types)
    }

    fn return_type(&self, _arg_types: &[DataType]) -> Result<DataType> {
        Ok(self.function.return_type())
    }

    fn is_nullable(&self) -> bool {
        self.function != SketchFn::Distinct
    }

    fn default_value(&self, data_type: &DataType) -> Result<ScalarValue> {
        match self.function {
            SketchFn::Distinct => Ok(ScalarValue::Int64(Some(0))),
            _ => ScalarValue::try_from(data_type),
        }
    }

    fn state_fields(&self, args: StateFieldsArgs) -> Result<Vec<FieldRef>> {
        Ok(vec![Arc::new(Field::new(
            format_state_name(args.name, "sketch"),
            DataType::Binary,
            true,
        ))])
    }

    fn order_sensitivity(&self) -> AggregateOrderSensitivity {
        AggregateOrderSensitivity::Insensitive
    }

    fn accumulator(&self, args: AccumulatorArgs) -> Result<Box<dyn Accumulator>> {
        if args.is_distinct {
            return plan_err!("{} does not take DISTINCT", self.function.name());
        }
        let output = match self.function {
            SketchFn::Distinct => Output::Distinct,
            SketchFn::Percentile => Output::Percentile(quantile_arg(args.exprs)?),
            SketchFn::Merge => Output::Merge,
        };
        Ok(Box::new(SketchAccumulator::new(output)))
    }
}

/// The `q` of `sketch_percentile`: a constant in `[0, 1]`.
fn quantile_arg(exprs: &[Arc<dyn PhysicalExpr>]) -> Result<f64> {
    let constant = exprs.get(1).and_then(|e| {
        let empty = RecordBatch::new_empty(Arc::new(Schema::empty()));
        match e.evaluate(&empty) {
            Ok(ColumnarValue::Scalar(ScalarValue::Float64(Some(q)))) => Some(q),
            _ => None,
        }
    });
    match constant {
        Some(q) if (0.0..=1.0).contains(&q) => Ok(q),
        Some(q) => plan_err!("{PERCENTILE}: q is {q}, not a quantile between 0 and 1"),
        None => plan_err!(
            "{PERCENTILE}: q must be a literal number between 0 and 1, e.g. {PERCENTILE}(latency_sketch, 0.95)"
        ),
    }
}

/// What an accumulator gives at the end.
#[derive(Debug, Clone, Copy)]
enum Output {
    Distinct,
    Percentile(f64),
    Merge,
}

impl Output {
    fn function(self) -> SketchFn {
        match self {
            Output::Distinct => SketchFn::Distinct,
            Output::Percentile(_) => SketchFn::Percentile,
            Output::Merge => SketchFn::Merge,
        }
    }
}

/// The sketches seen so far: HyperLogLogs merged as they come (their merge does not depend
/// on the order), t-digests kept as bytes and merged once at the end, sorted
/// ([`Quantiles::merge_bytes`]), so the result does not depend on the order partial states
/// arrive in. (A group's t-digests are held until then: about 2 KB per input row.)
#[derive(Debug)]
struct SketchAccumulator {
    output: Output,
    hll: Option<Hll>,
    digests: Vec<Vec<u8>>,
}

impl SketchAccumulator {
    fn new(output: Output) -> Self {
        SketchAccumulator {
            output,
            hll: None,
            digests: Vec::new(),
        }
    }

    /// Takes one sketch (an input value, or one frame of a partial state).
    fn take(&mut self, bytes: &[u8]) -> Result<(), SketchError> {
        let f = self.output.function();
        match f.read(bytes)? {
            Sketch::Distinct(h) if self.digests.is_empty() => match &mut self.hll {
                Some(held) => held.merge(&h),
                None => self.hll = Some(h),
            },
            Sketch::Quantiles(_) if self.hll.is_none() => self.digests.push(bytes.to_vec()),
            other => {
                let held = if self.hll.is_some() {
                    "HyperLogLog"
                } else {
                    "t-digest"
                };
                return Err(SketchError::Kind {
                    found: kind_byte(&other),
                    expected: held,
                });
            }
        }
        Ok(())
    }

    /// Every non-NULL value of a binary column: sketches, or (`framed`) partial states.
    fn take_column(&mut self, column: Option<&ArrayRef>, framed: bool) -> Result<()> {
        let f = self.output.function();
        let Some(values) = column.and_then(|c| c.as_binary_opt::<i32>()) else {
            return internal_err!("{}: the sketch column is not binary", f.name());
        };
        for bytes in values.iter().flatten() {
            let result = if framed {
                frames(bytes).and_then(|fs| fs.into_iter().try_for_each(|b| self.take(b)))
            } else {
                self.take(bytes)
            };
            result.map_err(|e| f.error(e))?;
        }
        Ok(())
    }

    /// The merge of everything taken (`None`: nothing).
    fn merged(&self) -> Result<Option<Sketch>> {
        if let Some(h) = &self.hll {
            return Ok(Some(Sketch::Distinct(h.clone())));
        }
        if self.digests.is_empty() {
            return Ok(None);
        }
        let f = self.output.function();
        Quantiles::merge_bytes(self.digests.iter().map(|d| &d[..]))
            .map(|q| Some(Sketch::Quantiles(q)))
            .map_err(|e| f.error(e))
    }
}

/// A partial state: each sketch as a u32 length (little-endian) and its bytes.
fn framed(parts: impl IntoIterator<Item = Vec<u8>>) -> Vec<u8> {
    let mut out = Vec::new();
    for p in parts {
        out.extend_from_slice(&(p.len() as u32).to_le_bytes());
        out.extend_from_slice(&p);
    }
    out
}

fn frames(mut bytes: &[u8]) -> Result<Vec<&[u8]>, SketchError> {
    let mut out = Vec::new();
    while !bytes.is_empty() {
        let damaged = || SketchError::Damaged("partial state");
        let (len, rest) = bytes.split_first_chunk::<4>().ok_or_else(damaged)?;
        let len = u32::from_le_bytes(*len) as usize;
        if rest.len() < len {
            return Err(damaged());
        }
        out.push(&rest[..len]);
        bytes = &rest[len..];
    }
    Ok(out)
}

/// The kind byte of the lake format (see [`shared::sketch`]).
fn kind_byte(s: &Sketch) -> char {
    match s {
        Sketch::Distinct(_) => 'H',
        Sketch::Quantiles(_) => 'T',
    }
}

fn to_bytes(s: &Sketch) -> Vec<u8> {
    match s {
        Sketch::Distinct(h) => h.to_bytes(),
        Sketch::Quantiles(q) => q.to_bytes(),
    }
}

impl Accumulator for SketchAccumulator {
    fn update_batch(&mut self, values: &[ArrayRef]) -> Result<()> {
        self.take_column(values.first(), false)
    }

    fn merge_batch(&mut self, states: &[ArrayRef]) -> Result<()> {
        self.take_column(states.first(), true)
    }

    fn state(&mut self) -> Result<Vec<ScalarValue>> {
        let state = match (&self.hll, self.digests.is_empty()) {
            (Some(h), _) => Some(framed([h.to_bytes()])),
            (None, false) => Some(framed(self.digests.iter().cloned())),
            (None, true) => None,
        };
        Ok(vec![ScalarValue::Binary(state)])
    }

    fn evaluate(&mut self) -> Result<ScalarValue> {
        let merged = self.merged()?;
        Ok(match (self.output, &merged) {
            (Output::Distinct, Some(Sketch::Distinct(h))) => ScalarValue::Int64(Some(h.estimate())),
            (Output::Distinct, _) => ScalarValue::Int64(Some(0)),
            (Output::Percentile(q), Some(Sketch::Quantiles(d))) => {
                ScalarValue::Float64(d.quantile(q))
            }
            (Output::Percentile(_), _) => ScalarValue::Float64(None),
            (Output::Merge, merged) => ScalarValue::Binary(merged.as_ref().map(to_bytes)),
        })
    }

    fn size(&self) -> usize {
        let held: usize = self.digests.iter().map(|d| d.capacity() + 24).sum();
        std::mem::size_of_val(self) + self.hll.as_ref().map_or(0, Hll::heap_bytes) + held
    }
}

/// A pipeline whose table keeps both kinds of sketch, and rows of it, for the tests of
/// the modules that write queries over sketch columns.
#[cfg(test)]
pub(crate) mod fixture {
    use std::path::Path;
    use std::sync::Arc;

    use arrow::array::{
        ArrayRef, BinaryArray, Float64Array, Int32Array, Int64Array, RecordBatch, StringArray,
        TimestampMicrosecondArray,
    };
    use arrow::datatypes::SchemaRef;
    use shared::config::{ConfigError, LoadedConfig};
    use shared::sketch::{Hll, Quantiles};

    /// A HyperLogLog of the integers in `range`.
    pub fn hll(range: std::ops::Range<u64>) -> Hll {
        let mut h = Hll::default();
        range.for_each(|i| {
            h.add(&i.to_le_bytes());
        });
        h
    }

    /// A t-digest of the integers in `range`.
    pub fn digest(range: std::ops::Range<u32>) -> Quantiles {
        let mut q = Quantiles::default();
        range.for_each(|v| {
            q.add(f64::from(v));
        });
        q
    }

    /// `hosts_1m`: per minute and status, requests, distinct hosts and the 95th percentile
    /// of bytes, both with their sketch; then `reports` (YAML list items, or empty).
    pub fn pipeline(source: &str, reports: &str) -> Result<LoadedConfig, ConfigError> {
        let reports = if reports.is_empty() {
            "reports: []\n".to_string()
        } else {
            format!("reports:\n{reports}")
        };
        let yaml = format!(
            r#"name: t
source: {source}
format: {{ kind: apache }}
event_time: {{ field: ts, max_out_of_orderness: 60s }}
tables:
  - name: hosts_1m
    window: {{ kind: tumbling, size: 1m }}
    key: [status]
    aggregates:
      - {{ name: requests, fn: count }}
      - {{ name: hosts, fn: approx_distinct, column: host, sketch: true }}
      - {{ name: p95_bytes, fn: approx_percentile, column: bytes, q: 0.95, sketch: true }}
lake: {{ root: lake }}
{reports}"#
        );
        shared::config::load_str(&yaml, Path::new("p.yaml"))
    }

    /// One row of `hosts_1m`.
    pub struct Row {
        pub status: i32,
        pub hosts: Hll,
        pub bytes: Quantiles,
    }

    /// Rows of `hosts_1m` in `schema` (its read schema), all in the first minute of
    /// 2026-01-01.
    pub fn batch(schema: SchemaRef, rows: &[Row]) -> RecordBatch {
        let columns: Vec<ArrayRef> = schema
            .fields()
            .iter()
            .map(|f| column(f.name(), rows))
            .collect();
        RecordBatch::try_new(schema, columns).unwrap()
    }

    fn column(name: &str, rows: &[Row]) -> ArrayRef {
        let start = 1_767_225_600_000_000i64;
        let n = rows.len();
        match name {
            "window_start" => {
                Arc::new(TimestampMicrosecondArray::from(vec![start; n]).with_timezone("UTC"))
            }
            "window_end" => Arc::new(
                TimestampMicrosecondArray::from(vec![start + 60_000_000; n]).with_timezone("UTC"),
            ),
            "status" => Arc::new(Int32Array::from_iter_values(rows.iter().map(|r| r.status))),
            "requests" => Arc::new(Int64Array::from(vec![1; n])),
            "hosts" => Arc::new(Int64Array::from_iter_values(
                rows.iter().map(|r| r.hosts.estimate()),
            )),
            "hosts_sketch" => Arc::new(BinaryArray::from_iter_values(
                rows.iter().map(|r| r.hosts.to_bytes()),
            )),
            "p95_bytes" => Arc::new(Float64Array::from_iter(
                rows.iter().map(|r| r.bytes.quantile(0.95)),
            )),
            "p95_bytes_sketch" => Arc::new(BinaryArray::from_iter_values(
                rows.iter().map(|r| r.bytes.to_bytes()),
            )),
            "dt" => Arc::new(StringArray::from(vec!["2026-01-01"; n])),
            "hour" => Arc::new(StringArray::from(vec!["00"; n])),
            other => panic!("no column {other} in the fixture"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow::array::{BinaryArray, StringArray};
    use datafusion::datasource::MemTable;

    fn hll(range: std::ops::Range<u64>) -> Hll {
        let mut h = Hll::default();
        for i in range {
            h.add(format!("host-{i}").as_bytes());
        }
        h
    }

    /// A fixed, skewed pseudo-random sequence (xorshift).
    fn values(n: usize, seed: u64) -> Vec<f64> {
        let mut x = seed;
        (0..n)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                let u = (x >> 11) as f64 / (1u64 << 53) as f64;
                (1.0 / (1.0 - u * 0.999)).powi(2) * 10.0
            })
            .collect()
    }

    fn digest(values: &[f64]) -> Quantiles {
        let mut q = Quantiles::default();
        for v in values {
            q.add(*v);
        }
        q
    }

    /// A table `t(k, s)` whose rows are spread over `partitions` partitions, so that
    /// partial states are merged too.
    fn session(rows: Vec<(&str, Option<Vec<u8>>)>, partitions: usize) -> SessionContext {
        let schema = Arc::new(Schema::new(vec![
            Field::new("k", DataType::Utf8, false),
            Field::new("s", DataType::Binary, true),
        ]));
        let mut parts = vec![Vec::new(); partitions];
        for (i, chunk) in rows
            .chunks(rows.len().div_ceil(partitions).max(1))
            .enumerate()
        {
            let keys = StringArray::from_iter_values(chunk.iter().map(|(k, _)| *k));
            let sketches: BinaryArray = chunk.iter().map(|(_, s)| s.as_deref()).collect();
            let batch =
                RecordBatch::try_new(schema.clone(), vec![Arc::new(keys), Arc::new(sketches)])
                    .unwrap();
            parts[i].push(batch);
        }
        let ctx = SessionContext::new();
        register(&ctx);
        ctx.register_table("t", Arc::new(MemTable::try_new(schema, parts).unwrap()))
            .unwrap();
        ctx
    }

    async fn scalar(ctx: &SessionContext, sql: &str) -> Result<ScalarValue> {
        let batches = ctx.sql(sql).await?.collect().await?;
        let batch = batches.iter().find(|b| b.num_rows() > 0).expect("a row");
        ScalarValue::try_from_array(batch.column(0), 0)
    }

    #[tokio::test]
    async fn distinct_is_the_estimate_of_the_union() {
        let sketches = [
            hll(0..30_000),
            hll(20_000..60_000),
            hll(59_990..60_010),
            hll(0..5),
        ];
        let mut by_hand = Hll::default();
        for h in &sketches {
            by_hand.merge(h);
        }
        let rows = sketches.iter().map(|h| ("a", Some(h.to_bytes()))).collect();
        let ctx = session(rows, 3);
        let got = scalar(&ctx, "SELECT sketch_distinct(s) FROM t")
            .await
            .unwrap();
        assert_eq!(got, ScalarValue::Int64(Some(by_hand.estimate())));
        // The merged bytes do not depend on the order the partial states arrive in.
        let merged = scalar(&ctx, "SELECT sketch_merge(s) FROM t").await.unwrap();
        assert_eq!(merged, ScalarValue::Binary(Some(by_hand.to_bytes())));
    }

    #[tokio::test]
    async fn distinct_per_group() {
        let rows = vec![
            ("a", Some(hll(0..100).to_bytes())),
            ("b", Some(hll(0..10).to_bytes())),
            ("a", Some(hll(50..150).to_bytes())),
            ("b", None),
        ];
        let ctx = session(rows, 2);
        let batches = ctx
            .sql("SELECT k, sketch_distinct(s) AS n FROM t GROUP BY k ORDER BY k")
            .await
            .unwrap()
            .collect()
            .await
            .unwrap();
        let n: Vec<i64> = batches
            .iter()
            .flat_map(|b| {
                b.column(1)
                    .as_primitive::<arrow::datatypes::Int64Type>()
                    .values()
                    .to_vec()
            })
            .collect();
        assert_eq!(n, vec![hll(0..150).estimate(), hll(0..10).estimate()]);
    }

    #[tokio::test]
    async fn merged_digests_do_not_depend_on_partitions_or_order() {
        let all = values(60_000, 9);
        let rows: Vec<_> = all
            .chunks(500)
            .map(|c| ("a", Some(digest(c).to_bytes())))
            .collect();
        let reversed: Vec<_> = rows.iter().rev().cloned().collect();
        let sql = "SELECT sketch_merge(s), sketch_percentile(s, 0.95) FROM t";
        let mut seen = Vec::new();
        for (rows, partitions) in [(&rows, 1), (&rows, 4), (&reversed, 3), (&rows, 7)] {
            let batches = session(rows.clone(), partitions)
                .sql(sql)
                .await
                .unwrap()
                .collect()
                .await
                .unwrap();
            seen.push(
                arrow::util::pretty::pretty_format_batches(&batches)
                    .unwrap()
                    .to_string(),
            );
        }
        assert!(seen.windows(2).all(|w| w[0] == w[1]), "{seen:#?}");
    }

    #[tokio::test]
    async fn percentile_of_merged_digests_is_close_to_the_exact_one() {
        let all = values(60_000, 5);
        let rows = all
            .chunks(1_000)
            .map(|c| ("a", Some(digest(c).to_bytes())))
            .collect();
        let ctx = session(rows, 4);
        let mut sorted = all.clone();
        sorted.sort_by(f64::total_cmp);
        for q in [0.01, 0.5, 0.95, 0.99] {
            let sql = format!("SELECT sketch_percentile(s, {q}) FROM t");
            let ScalarValue::Float64(Some(est)) = scalar(&ctx, &sql).await.unwrap() else {
                panic!("no estimate of q{q}");
            };
            let rank = sorted.partition_point(|x| *x < est) as f64 / sorted.len() as f64;
            assert!((rank - q).abs() <= 0.01, "q{q}: {est} has rank {rank}");
        }
    }

    #[tokio::test]
    async fn nulls_are_skipped_and_no_input_gives_zero_or_null() {
        let ctx = session(vec![("a", None), ("a", Some(hll(0..7).to_bytes()))], 2);
        let n = scalar(&ctx, "SELECT sketch_distinct(s) FROM t")
            .await
            .unwrap();
        assert_eq!(n, ScalarValue::Int64(Some(hll(0..7).estimate())));

        let ctx = session(vec![("a", None), ("b", None)], 2);
        for (sql, want) in [
            (
                "SELECT sketch_distinct(s) FROM t",
                ScalarValue::Int64(Some(0)),
            ),
            (
                "SELECT sketch_percentile(s, 0.5) FROM t",
                ScalarValue::Float64(None),
            ),
            ("SELECT sketch_merge(s) FROM t", ScalarValue::Binary(None)),
            // No rows at all.
            (
                "SELECT sketch_distinct(s) FROM t WHERE k = 'z'",
                ScalarValue::Int64(Some(0)),
            ),
            (
                "SELECT sketch_percentile(s, 0.5) FROM t WHERE k = 'z'",
                ScalarValue::Float64(None),
            ),
            (
                "SELECT sketch_merge(s) FROM t WHERE k = 'z'",
                ScalarValue::Binary(None),
            ),
        ] {
            assert_eq!(scalar(&ctx, sql).await.unwrap(), want, "{sql}");
        }
    }

    #[tokio::test]
    async fn damaged_bytes_and_wrong_kinds_are_errors() {
        let damaged = vec![
            ("a", Some(hll(0..3).to_bytes())),
            ("a", Some(vec![1, b'H', 14, 0, 5])),
        ];
        let ctx = session(damaged, 1);
        let e = scalar(&ctx, "SELECT sketch_distinct(s) FROM t")
            .await
            .unwrap_err();
        let text = e.to_string();
        assert!(
            text.contains("sketch_distinct: a damaged HyperLogLog sketch"),
            "{text}"
        );

        let ctx = session(vec![("a", Some(hll(0..3).to_bytes()))], 1);
        let e = scalar(&ctx, "SELECT sketch_percentile(s, 0.5) FROM t")
            .await
            .unwrap_err();
        assert!(
            e.to_string()
                .contains("sketch_percentile: a sketch of kind `H` where a t-digest was expected"),
            "{e}"
        );

        let mixed = vec![
            ("a", Some(hll(0..3).to_bytes())),
            ("a", Some(digest(&[1.0, 2.0]).to_bytes())),
        ];
        let ctx = session(mixed, 1);
        let e = scalar(&ctx, "SELECT sketch_merge(s) FROM t")
            .await
            .unwrap_err();
        assert!(
            e.to_string().contains("sketch_merge: a sketch of kind `T`"),
            "{e}"
        );
    }

    #[tokio::test]
    async fn merge_then_estimate_equals_estimating_directly() {
        let rows = vec![
            ("a", Some(hll(0..1_000).to_bytes())),
            ("b", Some(hll(500..40_000).to_bytes())),
            ("a", Some(hll(30_000..31_000).to_bytes())),
            ("c", None),
        ];
        let ctx = session(rows, 2);
        let direct = scalar(&ctx, "SELECT sketch_distinct(s) FROM t")
            .await
            .unwrap();
        let via_merge = scalar(
            &ctx,
            "SELECT sketch_distinct(m) FROM (SELECT k, sketch_merge(s) AS m FROM t GROUP BY k)",
        )
        .await
        .unwrap();
        assert_eq!(via_merge, direct);

        // t-digests through sketch_merge still estimate closely.
        let all = values(20_000, 9);
        let rows = all
            .chunks(500)
            .enumerate()
            .map(|(i, c)| (["a", "b", "c"][i % 3], Some(digest(c).to_bytes())))
            .collect();
        let ctx = session(rows, 3);
        let sql = "SELECT sketch_percentile(m, 0.9) FROM (SELECT k, sketch_merge(s) AS m FROM t GROUP BY k)";
        let ScalarValue::Float64(Some(est)) = scalar(&ctx, sql).await.unwrap() else {
            panic!("no estimate");
        };
        let mut sorted = all.clone();
        sorted.sort_by(f64::total_cmp);
        let rank = sorted.partition_point(|x| *x < est) as f64 / sorted.len() as f64;
        assert!((rank - 0.9).abs() <= 0.01, "{est} has rank {rank}");
    }

    #[tokio::test]
    async fn bad_calls_are_planning_errors() {
        let ctx = session(vec![("a", Some(digest(&[1.0]).to_bytes()))], 1);
        for (sql, want) in [
            (
                "SELECT sketch_percentile(s, 1.5) FROM t",
                "q is 1.5, not a quantile between 0 and 1",
            ),
            (
                "SELECT sketch_percentile(s, CAST(k AS DOUBLE)) FROM t",
                "q must be a literal",
            ),
            (
                "SELECT sketch_percentile(s) FROM t",
                "is called as sketch_percentile(sketch, q)",
            ),
            (
                "SELECT sketch_distinct(k) FROM t",
                "reads a sketch column (binary, `<name>_sketch`), not Utf8",
            ),
            (
                "SELECT sketch_percentile(s, 'x') FROM t",
                "q is a number between 0 and 1",
            ),
        ] {
            let e = scalar(&ctx, sql).await.unwrap_err();
            assert!(e.to_string().contains(want), "{sql}: {e}");
        }
        assert_eq!(quantile_literal(Some(0.95)), "0.95");
        assert_eq!(quantile_literal(Some(1.0)), "1.0");
        assert_eq!(
            percentile_call("\"x\"", None),
            "sketch_percentile(\"x\", NULL)"
        );
    }
}
