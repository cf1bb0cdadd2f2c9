//! The pipeline file, field by field. Closed sets (source kinds, formats, window kinds,
//! aggregate functions) are enums so that a typo is refused when the file is read.

use std::collections::BTreeMap;
use std::fmt;
use std::path::PathBuf;

use serde::de::{self, Deserializer};
use serde::{Deserialize, Serialize};

use crate::bytesize::ByteSize;
use crate::duration::HumanDuration;

/// A whole pipeline: where events come from, how they are parsed and windowed, where the
/// windowed tables are written, and which reports the batch stage derives from them.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PipelineConfig {
    /// Name of the pipeline, used in logs and summaries.
    pub name: String,
    /// Free text for humans.
    #[serde(default)]
    pub description: Option<String>,
    /// Where events come from. `--input` on the command line overrides it.
    pub source: SourceConfig,
    /// How a line of input becomes an event.
    pub format: FormatConfig,
    /// Which field is the event time, and how far out of order events may arrive.
    pub event_time: EventTimeConfig,
    /// What to do with lines that do not parse.
    #[serde(default)]
    pub invalid_lines: InvalidLinesConfig,
    /// What a run does with the windows still open when a bounded input ends (a file,
    /// standard input, a `generate` source with `lines`): `flush` (default) emits them, so a
    /// one-shot run's tables are complete; `keep` leaves them in the checkpoint, and the next
    /// run over the grown input goes on as if the process had never stopped (Spark's
    /// `AvailableNow`). `run --end-of-input` overrides it.
    #[serde(default)]
    pub end_of_input: EndOfInput,
    /// Where late events go (events whose window was already emitted). Without it they are
    /// only counted.
    #[serde(default)]
    pub late_events: Option<LateEventsConfig>,
    /// Checkpoints of the stream stage (exactly-once through crashes).
    #[serde(default)]
    pub checkpoint: CheckpointConfig,
    /// Limits on the stream stage's open state.
    #[serde(default)]
    pub state: StateConfig,
    /// When a partition is declared complete (`_SUCCESS`), and whether its files are merged then.
    #[serde(default)]
    pub partition_commit: PartitionCommitConfig,
    /// Prometheus metrics and health endpoints of the stream stage.
    #[serde(default)]
    pub metrics: MetricsConfig,
    /// Columns computed from each event (SQL expressions), in order: each may use the
    /// parsed fields and the columns derived before it. Keys, filters and aggregates can use
    /// them like parsed fields.
    #[serde(default)]
    pub derive: Vec<DerivedColumn>,
    /// Dimension columns added to each event by key (a left join with a `dimensions` table),
    /// after `derive`. A dimension file changed on disk is reloaded at the next checkpoint.
    #[serde(default)]
    pub lookup: Vec<LookupConfig>,
    /// The windowed tables the stream stage keeps and writes.
    pub tables: Vec<TableConfig>,
    /// The lake: where tables are written and read back.
    pub lake: LakeConfig,
    /// Dimension tables (CSV files) the reports can join with.
    #[serde(default)]
    pub dimensions: Vec<DimensionConfig>,
    /// Reports computed by `batch-analyze`.
    #[serde(default)]
    pub reports: Vec<ReportConfig>,
    /// Where `batch-analyze` runs the reports' queries (default: in its own process).
    #[serde(default)]
    pub engine: EngineConfig,
}

/// What a run does with the open windows when a bounded input ends.
#[derive(Debug, Clone, Copy, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum EndOfInput {
    /// Emit every open window and commit every partition. The watermark stays where the
    /// events put it, and the windows emitted early are remembered: an event of a later
    /// run is late only for a window that was really emitted.
    #[default]
    Flush,
    /// Keep the open windows in the checkpoint: the next run continues them.
    Keep,
}

impl EndOfInput {
    pub fn as_str(&self) -> &'static str {
        match self {
            EndOfInput::Flush => "flush",
            EndOfInput::Keep => "keep",
        }
    }
}

impl std::str::FromStr for EndOfInput {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "flush" => Ok(EndOfInput::Flush),
            "keep" => Ok(EndOfInput::Keep),
            other => Err(format!("`{other}`: expected `flush` or `keep`")),
        }
    }
}

/// Where `batch-analyze` runs the reports' queries.
#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct EngineConfig {
    /// A Ballista scheduler, `df://HOST:PORT`, or `standalone` (a scheduler and executor in
    /// the process); `--cluster` overrides it. Default: the embedded DataFusion.
    #[serde(default)]
    pub cluster: Option<String>,
}

/// Where events come from.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum SourceConfig {
    /// A file read to its end; or, when `path` is a glob (`/var/log/nginx/access.log-*`) or
    /// a directory, every file it names, each known by its identity and read from where the
    /// last run stopped (cron runs: what was appended, and the new files). A relative path is
    /// taken from the directory of the pipeline file.
    File { path: PathBuf },
    /// Standard input, read to its end.
    Stdin,
    /// Files followed as they grow, like `tail -F`: `path` is a file or a glob
    /// (`/var/log/nginx/access.log*`). Rotation (rename, then a new file) and truncation are
    /// followed; each file's identity (device, inode) and offset are checkpointed, so a
    /// restart resumes exactly, even in a file renamed while the stage was down. Runs until
    /// stopped (SIGINT/SIGTERM).
    Tail {
        path: PathBuf,
        /// How often to look for new data and new files (default 250ms).
        #[serde(default = "default_poll_interval")]
        poll_interval: HumanDuration,
    },
    /// Built-in generator of realistic access logs (benchmarks, demos, tests), deterministic
    /// for a seed. Use with `format: { kind: apache }`; `stream-ingest gen` writes the same lines.
    Generate(GenerateConfig),
    /// A Kafka topic (or several), read by a consumer group: every `stream-ingest run` with
    /// this pipeline file joins the group `group` and processes the partitions the group gives
    /// it. A record's value is one input line. Each Kafka partition is a unit of state (its
    /// own windows, watermark, checkpoint and file names), so partitions move between members
    /// without losing or doubling a row; offsets live in the checkpoints.
    Kafka(KafkaConfig),
}

/// The `kafka` source.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct KafkaConfig {
    /// Bootstrap brokers, `host:port[,host:port…]`.
    pub brokers: String,
    /// The topic, or a list of topics.
    pub topic: Topics,
    /// The consumer group the members of this pipeline form.
    pub group: String,
    /// Where a partition without a checkpoint starts: `earliest` (default) or `latest`.
    #[serde(default)]
    pub start: KafkaStart,
    /// Read to the end offsets the partitions have when they are assigned, flush every open
    /// window and exit 0 (backfills, tests, benchmarks), instead of running until stopped.
    #[serde(default)]
    pub bounded: bool,
    /// librdkafka client properties passed through as they are (`security.protocol`,
    /// `sasl.mechanism`, `sasl.username`, `ssl.ca.location`, `session.timeout.ms`, …).
    #[serde(default)]
    pub properties: std::collections::BTreeMap<String, String>,
}

/// One topic or several.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(untagged)]
pub enum Topics {
    One(String),
    Many(Vec<String>),
}

impl Topics {
    pub fn names(&self) -> Vec<String> {
        match self {
            Topics::One(t) => vec![t.clone()],
            Topics::Many(ts) => ts.clone(),
        }
    }
}

/// Where a partition never checkpointed starts.
#[derive(Debug, Clone, Copy, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum KafkaStart {
    #[default]
    Earliest,
    Latest,
}

/// The built-in access-log generator: Zipf-distributed hosts and paths, a realistic status
/// mix, time-zone offsets, a few percent of lines a few seconds out of order, and about 0.1 %
/// invalid lines. The same settings give the same bytes.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct GenerateConfig {
    /// Lines to produce; without it the generator runs until stopped.
    #[serde(default)]
    pub lines: Option<u64>,
    /// Seed of the pseudo-random sequence (default 1).
    #[serde(default = "default_seed")]
    pub seed: u64,
    /// Average events per second of event time (default 100).
    #[serde(default = "default_events_per_second")]
    pub events_per_second: f64,
    /// Event time of the first line (default 2026-01-01T00:00:00Z).
    #[serde(default = "default_generate_start")]
    pub start: chrono::DateTime<chrono::Utc>,
    /// Pace: this much event time per second of wall time (`1m`: a minute of log per
    /// second). Without it, full speed.
    #[serde(default)]
    pub rate: Option<HumanDuration>,
    /// Distinct hosts (default 40000), Zipf-distributed.
    #[serde(default = "default_hosts")]
    pub hosts: u32,
    /// Distinct paths (default 20000), Zipf-distributed.
    #[serde(default = "default_paths")]
    pub paths: u32,
    /// Every line gets a path of its own (`/u/<line>`): one key per event, for
    /// high-cardinality tests.
    #[serde(default)]
    pub unique_paths: bool,
}

impl Default for GenerateConfig {
    fn default() -> Self {
        GenerateConfig {
            lines: None,
            seed: default_seed(),
            events_per_second: default_events_per_second(),
            start: default_generate_start(),
            rate: None,
            hosts: default_hosts(),
            paths: default_paths(),
            unique_paths: false,
        }
    }
}

fn default_seed() -> u64 {
    1
}

fn default_events_per_second() -> f64 {
    100.0
}

fn default_generate_start() -> chrono::DateTime<chrono::Utc> {
    chrono::DateTime::from_timestamp(1_767_225_600, 0).expect("a valid instant")
}

fn default_hosts() -> u32 {
    40_000
}

fn default_paths() -> u32 {
    20_000
}

fn default_poll_interval() -> HumanDuration {
    HumanDuration(std::time::Duration::from_millis(250))
}

/// How a line of input becomes an event.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum FormatConfig {
    /// Apache/nginx access logs: Common Log Format, optionally with the two quoted fields of
    /// the Combined format. Fields: `host`, `ts`, `request`, `method`, `path`, `protocol`,
    /// `status` (int32), `bytes` (int64), `referer`, `user_agent`.
    Apache,
    /// One JSON object per line. Each declared field is read from the top-level key of the
    /// same name; a missing key or `null` gives NULL.
    Ndjson { fields: Vec<FieldConfig> },
    /// Delimited text with a declared schema; columns are matched by position.
    Csv {
        fields: Vec<FieldConfig>,
        /// Whether the first line of the input is a header to skip (default true).
        #[serde(default = "default_true")]
        header: bool,
        /// Field delimiter, one ASCII character (default `,`).
        #[serde(default = "default_comma")]
        delimiter: char,
    },
}

fn default_true() -> bool {
    true
}

fn default_comma() -> char {
    ','
}

/// A declared field of an NDJSON or CSV input, or a column of a dimension table.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct FieldConfig {
    pub name: String,
    #[serde(rename = "type")]
    pub data_type: FieldType,
}

/// Types a declared field can have.
#[derive(Debug, Clone, Copy, Deserialize, Serialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum FieldType {
    String,
    Int32,
    Int64,
    Float64,
    Bool,
    /// RFC 3339 / ISO 8601 text (`2024-05-17T10:00:00Z`, `2024-05-17 10:00:00+02:00`; without
    /// an offset it is UTC), or an integer number of milliseconds since the Unix epoch.
    Timestamp,
}

impl fmt::Display for FieldType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            FieldType::String => "string",
            FieldType::Int32 => "int32",
            FieldType::Int64 => "int64",
            FieldType::Float64 => "float64",
            FieldType::Bool => "bool",
            FieldType::Timestamp => "timestamp",
        })
    }
}

/// Event time and watermark.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct EventTimeConfig {
    /// The timestamp field that is the event time (`ts` for access logs).
    pub field: String,
    /// The watermark trails the largest event time seen by this much; a window is emitted
    /// once the watermark passes its end. Events up to this far out of order are never late.
    pub max_out_of_orderness: HumanDuration,
    /// When a live source (`tail`) brings no data for this long, event time is taken to go on
    /// with the wall clock from the last event, so that the windows of a quiet log still
    /// close (default: never; the watermark only moves with events).
    #[serde(default)]
    pub idle_timeout: Option<HumanDuration>,
}

/// What to do with lines that do not parse.
#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct InvalidLinesConfig {
    /// Append each invalid line as a JSON object (`line`, `reason`, `text`) to this local file.
    /// A relative path is taken from the current directory.
    #[serde(default)]
    pub dead_letter: Option<PathBuf>,
}

/// The stream stage's open state: windows × keys × aggregates, plus rows waiting for their
/// partition to complete.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct StateConfig {
    /// When the open state grows past this (an estimate of keys, aggregate states, distinct
    /// values and buffered rows), the stage says so: a warning in the log, naming the largest
    /// table, and the `state_budget_exceeded` counter in the summary. It keeps running: the
    /// budget is an alarm before the operating system's out-of-memory killer, not a limit.
    /// Default 512MiB.
    #[serde(default = "default_memory_budget")]
    pub memory_budget: ByteSize,
}

impl Default for StateConfig {
    fn default() -> Self {
        StateConfig {
            memory_budget: default_memory_budget(),
        }
    }
}

fn default_memory_budget() -> ByteSize {
    ByteSize(512 << 20)
}

/// Checkpoints: the stream stage's position, watermark and open state, saved atomically so
/// that a restart after a crash resumes exactly where the last checkpoint left off.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct CheckpointConfig {
    /// How often to checkpoint (default 10s; `--checkpoint-interval` overrides it). Files become
    /// visible in the lake at checkpoints.
    #[serde(default = "default_checkpoint_interval")]
    pub interval: HumanDuration,
    /// How many complete checkpoints to keep (default 3; the newest that reads back wins).
    #[serde(default = "default_checkpoint_keep")]
    pub keep: u32,
}

impl Default for CheckpointConfig {
    fn default() -> Self {
        CheckpointConfig {
            interval: default_checkpoint_interval(),
            keep: default_checkpoint_keep(),
        }
    }
}

fn default_checkpoint_interval() -> HumanDuration {
    HumanDuration::from_secs(10)
}

fn default_checkpoint_keep() -> u32 {
    3
}

/// Partition commit: once the watermark passes the end of a partition plus `delay` and no
/// open window can still add to it, a `_SUCCESS` file (JSON: rows, files, watermark) is
/// written into it. `batch-analyze` reads committed partitions only, unless `--include-open`.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct PartitionCommitConfig {
    /// Extra wait after the partition's end (default 0s).
    #[serde(default)]
    pub delay: HumanDuration,
    /// Merge a committed partition's files into one (default true), as `stream-ingest
    /// compact` does, once no kept checkpoint predates its commit (`checkpoint.keep` - 1
    /// checkpoints after it; at the end of a bounded input, before the stage exits). Rolling
    /// on checkpoints makes fresh rows visible in small files during the hour; this leaves
    /// one file per partition after it.
    #[serde(default = "default_true")]
    pub compact: bool,
}

impl Default for PartitionCommitConfig {
    fn default() -> Self {
        PartitionCommitConfig {
            delay: HumanDuration::default(),
            compact: true,
        }
    }
}

/// Prometheus metrics (`/metrics`, text format) and health probes (`/health/live`,
/// `/health/ready`) served over HTTP while `stream-ingest run` runs.
#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct MetricsConfig {
    /// Listen on this address, e.g. `127.0.0.1:9464` or `0.0.0.0:9464` (default: no
    /// endpoint). `--metrics-addr` overrides it.
    #[serde(default)]
    pub addr: Option<String>,
}

/// Where late events are kept.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct LateEventsConfig {
    /// Name of the lake table that receives late events: the event's fields, plus `table`
    /// (the windowed table that dropped it) and `watermark`. Partitioned by the event time.
    pub table: String,
    /// When buffered late events are written (default: every 5 minutes or 20000 rows).
    #[serde(default = "RollingConfig::late_default")]
    pub rolling: RollingConfig,
}

/// When rows buffered for a partition are written as a file before the partition completes.
/// Rolls happen at checkpoints, so a partition gets at most one file per checkpoint; a
/// complete partition (and the end of the input, or a shutdown) writes what is buffered
/// whatever its size. Sizes are measured in memory (Arrow); Parquet files are smaller.
///
/// The default rolls every partition at every checkpoint (`on_checkpoint: true`, as Flink's
/// `OnCheckpointRollingPolicy`): a closed window's rows are visible one checkpoint after it
/// closes, at the cost of one small file per open partition and checkpoint, merged into one
/// when the partition commits (`partition_commit.compact`). `on_checkpoint: false` keeps rows
/// in memory (and in checkpoints) until the partition completes or a limit below is reached:
/// fewer files, rows visible up to a partition (an hour) later.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct RollingConfig {
    /// Roll every partition holding rows at every checkpoint (default true for tables, false
    /// for late events).
    pub on_checkpoint: bool,
    /// Roll a partition holding this many rows (default 1000000).
    pub max_rows: u64,
    /// Roll a partition holding this much data (default 128MiB).
    pub max_bytes: ByteSize,
    /// Roll a partition whose first buffered row waited this long (default: never; the
    /// partition is written when complete).
    pub max_open_time: Option<HumanDuration>,
    /// Never roll less than this (default 0B); a complete partition is written anyway.
    pub min_size: ByteSize,
}

impl Default for RollingConfig {
    fn default() -> Self {
        RollingConfig {
            on_checkpoint: true,
            max_rows: 1_000_000,
            max_bytes: ByteSize(128 << 20),
            max_open_time: None,
            min_size: ByteSize(0),
        }
    }
}

impl RollingConfig {
    /// Late events have no partition that completes: roll them every 5 minutes, or once
    /// 20000 have gathered (they are kept in every checkpoint until written).
    pub fn late_default() -> Self {
        RollingConfig {
            on_checkpoint: false,
            max_rows: 20_000,
            max_open_time: Some(HumanDuration::from_secs(300)),
            ..RollingConfig::default()
        }
    }
}

/// A windowed table: events grouped by key within event-time windows, one row per window and key.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct TableConfig {
    /// Table name; also its directory under the lake root.
    pub name: String,
    /// The window kind and size.
    pub window: WindowConfig,
    /// Key columns (fields of the event); NULL is a key value too. Empty: one row per window.
    #[serde(default)]
    pub key: Vec<String>,
    /// Named aggregates, written in this order after the key columns.
    pub aggregates: Vec<AggregateConfig>,
    /// Only events for which this condition holds enter the table, e.g.
    /// `status >= 400 and method = 'GET'`.
    #[serde(default)]
    pub filter: Option<String>,
    /// Key columns that become partition directories after `dt=`/`hour=` (Hive style, values
    /// escaped). They are not stored inside the Parquet files.
    #[serde(default)]
    pub partition_by: Vec<String>,
    /// When buffered rows of an open partition are written early.
    #[serde(default)]
    pub rolling: RollingConfig,
}

/// Event-time windows. Windows are aligned to the Unix epoch in UTC.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum WindowConfig {
    /// Fixed, non-overlapping windows `[start, start + size)`.
    Tumbling { size: HumanDuration },
    /// Windows of `size` starting every `slide`; an event belongs to `size / slide` windows.
    Sliding {
        size: HumanDuration,
        slide: HumanDuration,
    },
    /// Per key, events closer than `gap` form one window `[first, last + gap)`.
    Session { gap: HumanDuration },
}

/// A named aggregate over a column (or over rows, for `count` without a column).
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct AggregateConfig {
    /// Output column name.
    pub name: String,
    /// The function.
    #[serde(rename = "fn")]
    pub function: AggregateFn,
    /// Input column. Optional for `count` (rows), required otherwise.
    #[serde(default)]
    pub column: Option<String>,
    /// The quantile of `approx_percentile`, in `[0, 1]` (e.g. `0.95`).
    #[serde(default)]
    pub q: Option<f64>,
    /// `approx_distinct` and `approx_percentile` in a windowed table: also write the sketch
    /// (column `<name>_sketch`, binary), so the batch stage can merge windows (a day's
    /// distinct count, a day's percentile from per-minute rows).
    #[serde(default)]
    pub sketch: bool,
}

impl AggregateConfig {
    /// The name of the column that holds this aggregate's sketch, when `sketch: true`.
    pub fn sketch_column(&self) -> Option<String> {
        self.sketch.then(|| format!("{}{SKETCH_SUFFIX}", self.name))
    }
}

/// The suffix of a sketch column's name (`unique_hosts_sketch`).
pub const SKETCH_SUFFIX: &str = "_sketch";

/// Aggregate functions. NULL inputs are skipped, as in SQL.
#[derive(Debug, Clone, Copy, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum AggregateFn {
    /// Rows (or non-NULL values of `column`); int64.
    Count,
    /// Sum; int64 for integer columns, float64 for floats.
    Sum,
    /// Smallest value; same type as the column.
    Min,
    /// Largest value; same type as the column.
    Max,
    /// Mean; float64.
    Avg,
    /// Number of distinct non-NULL values, exact; int64. Its state holds every value.
    CountDistinct,
    /// Number of distinct non-NULL values, estimated with HyperLogLog (about 0.8 % standard
    /// error); int64. Its state is at most 16 KiB per group, whatever the number of values.
    ApproxDistinct,
    /// The `q` quantile of a numeric column, estimated with a t-digest (500 centroids;
    /// exact while a window's group has at most 512 values); float64. Its state is at most
    /// about 12 KiB per group.
    ApproxPercentile,
}

impl AggregateFn {
    pub fn as_str(&self) -> &'static str {
        match self {
            AggregateFn::Count => "count",
            AggregateFn::Sum => "sum",
            AggregateFn::Min => "min",
            AggregateFn::Max => "max",
            AggregateFn::Avg => "avg",
            AggregateFn::CountDistinct => "count_distinct",
            AggregateFn::ApproxDistinct => "approx_distinct",
            AggregateFn::ApproxPercentile => "approx_percentile",
        }
    }
}

/// The lake: where windowed tables are written and read back.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct LakeConfig {
    /// A local directory (relative to the current directory), `file:///abs/dir`, or
    /// `s3://bucket/prefix`. `--lake` overrides it.
    pub root: String,
    /// Time partitions taken from `window_start` (UTC): `hour` gives `dt=YYYY-MM-DD/hour=HH`
    /// (the default), `day` gives `dt=YYYY-MM-DD`.
    #[serde(default)]
    pub partition_time: TimePartitioning,
    /// Compression of the Parquet files the stream stage writes: `snappy` (the default),
    /// `zstd` (files about a third smaller, written more slowly; see bench/README.md) or `none`.
    #[serde(default)]
    pub compression: ParquetCompression,
    /// Object storage settings; each falls back to the usual `AWS_*` environment variable.
    #[serde(default)]
    pub s3: S3Config,
    /// The table format: `hive` (the default: Parquet files and `_SUCCESS` markers) or
    /// `delta` (the same files, committed to each table's Delta log).
    #[serde(default)]
    pub format: LakeFormat,
    /// Settings of Delta tables (`format: delta`).
    #[serde(default)]
    pub delta: DeltaConfig,
}

/// Settings of a lake's Delta tables.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct DeltaConfig {
    /// How long files removed from a table (merged by OPTIMIZE, retracted) stay on storage
    /// for readers of older versions and time travel before VACUUM deletes them (default
    /// `7d`, Delta's own default). The stream stage vacuums each table it writes when it
    /// merges partitions, at most once per this period or 10 minutes, whichever is shorter.
    #[serde(default = "default_vacuum")]
    pub vacuum: HumanDuration,
}

impl Default for DeltaConfig {
    fn default() -> Self {
        DeltaConfig {
            vacuum: default_vacuum(),
        }
    }
}

fn default_vacuum() -> HumanDuration {
    HumanDuration(std::time::Duration::from_secs(7 * 24 * 3600))
}

/// How a lake's tables are committed.
#[derive(Debug, Clone, Copy, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum LakeFormat {
    /// Hive-partitioned Parquet: files published by rename or copy, complete partitions
    /// marked with `_SUCCESS`.
    #[default]
    Hive,
    /// Delta Lake: the same files, made visible by commits to `<table>/_delta_log/`.
    Delta,
}

/// Compression of lake files.
#[derive(Debug, Clone, Copy, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum ParquetCompression {
    #[default]
    Snappy,
    Zstd,
    None,
}

impl ParquetCompression {
    /// The Parquet codec (zstd at level 1: most of its gain, at a fraction of the cost).
    pub fn codec(self) -> parquet::basic::Compression {
        match self {
            ParquetCompression::Snappy => parquet::basic::Compression::SNAPPY,
            ParquetCompression::Zstd => parquet::basic::Compression::ZSTD(
                parquet::basic::ZstdLevel::try_new(1).expect("level 1 is valid"),
            ),
            ParquetCompression::None => parquet::basic::Compression::UNCOMPRESSED,
        }
    }
}

/// Time partitioning of lake tables.
#[derive(Debug, Clone, Copy, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum TimePartitioning {
    Day,
    #[default]
    Hour,
}

/// S3 settings; anything left out comes from `AWS_ENDPOINT_URL`, `AWS_REGION`,
/// `AWS_ACCESS_KEY_ID`, `AWS_SECRET_ACCESS_KEY`, `AWS_ALLOW_HTTP`.
#[derive(Debug, Clone, Default, Deserialize, PartialEq, Eq, Hash)]
#[serde(deny_unknown_fields)]
pub struct S3Config {
    #[serde(default)]
    pub endpoint: Option<String>,
    #[serde(default)]
    pub region: Option<String>,
    #[serde(default)]
    pub allow_http: Option<bool>,
}

/// A dimension table, read from a CSV file with a header or a Parquet file.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct DimensionConfig {
    /// Table name used in reports and lookups.
    pub name: String,
    /// CSV or Parquet file (by its extension, `.parquet`); a relative path is taken from the
    /// directory of the pipeline file.
    pub path: PathBuf,
    /// Columns: in file order for CSV, by name for Parquet.
    pub columns: Vec<FieldConfig>,
    /// Field delimiter of a CSV file (default `,`).
    #[serde(default = "default_comma")]
    pub delimiter: char,
}

impl DimensionConfig {
    /// Whether the file is Parquet (by its extension), else CSV.
    pub fn is_parquet(&self) -> bool {
        self.path
            .extension()
            .is_some_and(|e| e.eq_ignore_ascii_case("parquet"))
    }
}

/// A lookup: dimension columns added to each event of the stream stage.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct LookupConfig {
    /// The dimension table (from `dimensions`).
    pub table: String,
    /// The event field matched with the dimension's column of the same name (or
    /// `{ field: event_field, column: dimension_column }`).
    pub on: LookupKey,
    /// The dimension columns to add (default: all but the key).
    #[serde(default)]
    pub columns: Vec<String>,
    /// Values for the added columns when no row matches (else NULL).
    #[serde(default)]
    pub defaults: BTreeMap<String, Literal>,
}

/// How a lookup matches events with dimension rows.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(untagged)]
pub enum LookupKey {
    Same(String),
    Named { field: String, column: String },
}

impl LookupKey {
    /// The event field.
    pub fn field(&self) -> &str {
        match self {
            LookupKey::Same(f) | LookupKey::Named { field: f, .. } => f,
        }
    }

    /// The dimension column.
    pub fn column(&self) -> &str {
        match self {
            LookupKey::Same(c) | LookupKey::Named { column: c, .. } => c,
        }
    }
}

/// A report of the batch stage: either declared (from, join, where, group by, aggregates,
/// derived columns, top N, order) or written as SQL over the lake and dimension tables.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct ReportConfig {
    /// Report name; also the output file name (`<out>/<name>.<ext>`).
    pub name: String,
    /// The lake table (or dimension) the report reads. Lake tables have the extra string
    /// columns `dt` and `hour` (and any `partition_by` keys).
    #[serde(default)]
    pub from: Option<String>,
    /// A whole SQL query instead of the declared form.
    #[serde(default)]
    pub sql: Option<String>,
    /// Joins with dimension tables, applied in order.
    #[serde(default)]
    pub join: Vec<JoinConfig>,
    /// SQL condition on the input rows (after joins), e.g. `path IS NOT NULL`.
    #[serde(default, rename = "where")]
    pub filter: Option<String>,
    /// Group-by columns.
    #[serde(default)]
    pub group_by: Vec<String>,
    /// Named aggregates per group.
    #[serde(default)]
    pub aggregates: Vec<AggregateConfig>,
    /// Columns computed from the grouped rows with SQL expressions, window functions
    /// included, e.g. `share: CAST(requests AS DOUBLE) / SUM(requests) OVER (PARTITION BY dt)`.
    #[serde(default)]
    pub derived: Vec<DerivedColumn>,
    /// Keep the first N rows per group.
    #[serde(default)]
    pub top: Option<TopConfig>,
    /// Final columns, in order (default: group-by columns, aggregates, derived columns, rank).
    #[serde(default)]
    pub columns: Option<Vec<String>>,
    /// Final order, e.g. `[dt, requests desc, class]`.
    #[serde(default)]
    pub order_by: Vec<OrderKey>,
    /// Hash-repartition the input on these columns before aggregating (a hint for large inputs).
    #[serde(default)]
    pub repartition_by: Vec<String>,
    /// Also write the report into the lake as a Hive-partitioned table, replacing the
    /// partitions a run recomputes (dynamic partition overwrite).
    #[serde(default)]
    pub lake: Option<ReportLakeConfig>,
    /// A chart of the report on the HTML page (`--format html`).
    #[serde(default)]
    pub chart: Option<ChartConfig>,
    /// One sentence shown above the report on the HTML page.
    #[serde(default)]
    pub description: Option<String>,
}

/// Where a report goes in the lake.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct ReportLakeConfig {
    /// Directory below the lake root, `/`-separated (default `reports/<report name>`).
    #[serde(default)]
    pub path: Option<String>,
    /// Partition columns of the written table, outermost first (default `[dt]`). A run
    /// replaces exactly the partitions present in its result.
    #[serde(default = "default_report_partitions")]
    pub partition_by: Vec<String>,
}

fn default_report_partitions() -> Vec<String> {
    vec!["dt".to_string()]
}

impl ReportLakeConfig {
    /// The directory of the report's table below the lake root.
    pub fn table_path(&self, report: &str) -> String {
        self.path
            .clone()
            .unwrap_or_else(|| format!("reports/{report}"))
    }
}

/// A chart on the HTML page.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct ChartConfig {
    /// `bar`: vertical bars, one per `x` value, stacked by `series` when given;
    /// `hbar`: horizontal bars labelled by `x`, one chart per value of `per` when given.
    pub kind: ChartKind,
    /// The category column (bar position or label).
    pub x: String,
    /// The numeric column (bar length).
    pub y: String,
    /// Stack bars by this column (`bar` only).
    #[serde(default)]
    pub series: Option<String>,
    /// Draw one chart per value of this column (`hbar` only), e.g. `dt`.
    #[serde(default)]
    pub per: Option<String>,
}

#[derive(Debug, Clone, Copy, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum ChartKind {
    Bar,
    Hbar,
}

/// A join with a dimension table.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct JoinConfig {
    /// The dimension table.
    pub table: String,
    /// Column(s) with the same name on both sides.
    #[serde(deserialize_with = "one_or_many")]
    pub on: Vec<String>,
    /// `left` (the default) or `inner`.
    #[serde(default)]
    pub how: JoinKind,
    /// Values for the dimension's columns where a left join found no match.
    #[serde(default)]
    pub defaults: BTreeMap<String, Literal>,
}

#[derive(Debug, Clone, Copy, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum JoinKind {
    #[default]
    Left,
    Inner,
}

/// A literal value in the YAML (join defaults).
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(untagged)]
pub enum Literal {
    Bool(bool),
    Int(i64),
    Float(f64),
    String(String),
}

/// A derived column: name and SQL expression (DataFusion's dialect).
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct DerivedColumn {
    pub name: String,
    pub expr: String,
}

/// Top N rows per group, with a rank column.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct TopConfig {
    /// How many rows per group.
    pub n: u32,
    /// The groups (e.g. `[dt]`); empty: the whole result.
    #[serde(default)]
    pub per: Vec<String>,
    /// The ranking order, ties broken by the later keys, e.g. `[requests desc, path]`.
    pub by: Vec<OrderKey>,
    /// Name of the rank column (from 1; default `rank`).
    #[serde(default = "default_rank")]
    pub rank_column: String,
}

fn default_rank() -> String {
    "rank".to_string()
}

/// `column` or `column asc` or `column desc`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OrderKey {
    pub column: String,
    pub descending: bool,
}

impl fmt::Display for OrderKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}{}",
            self.column,
            if self.descending { " desc" } else { "" }
        )
    }
}

impl std::str::FromStr for OrderKey {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        let parts: Vec<&str> = s.split_whitespace().collect();
        match parts.as_slice() {
            [c] => Ok(OrderKey {
                column: c.to_string(),
                descending: false,
            }),
            [c, d] if d.eq_ignore_ascii_case("asc") => Ok(OrderKey {
                column: c.to_string(),
                descending: false,
            }),
            [c, d] if d.eq_ignore_ascii_case("desc") => Ok(OrderKey {
                column: c.to_string(),
                descending: true,
            }),
            _ => Err(format!(
                "`{s}` is not an order key; write `column`, `column asc` or `column desc`"
            )),
        }
    }
}

impl<'de> Deserialize<'de> for OrderKey {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(de::Error::custom)
    }
}

fn one_or_many<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<String>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum OneOrMany {
        One(String),
        Many(Vec<String>),
    }
    Ok(match OneOrMany::deserialize(d)? {
        OneOrMany::One(s) => vec![s],
        OneOrMany::Many(v) => v,
    })
}

impl PipelineConfig {
    pub fn table(&self, name: &str) -> Option<&TableConfig> {
        self.tables.iter().find(|t| t.name == name)
    }

    pub fn dimension(&self, name: &str) -> Option<&DimensionConfig> {
        self.dimensions.iter().find(|d| d.name == name)
    }

    pub fn report(&self, name: &str) -> Option<&ReportConfig> {
        self.reports.iter().find(|r| r.name == name)
    }
}
