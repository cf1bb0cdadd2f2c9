//! Delta Lake tables (`lake.format: delta`): the same Parquet files in the same partition
//! directories as the Hive layout, made visible by commits to `<table>/_delta_log/` instead
//! of renames and `_SUCCESS` markers. Any Delta reader (Spark, Trino, DuckDB's
//! `delta_scan`, Polars) sees a commit whole or not at all, and never a file the log does
//! not name, so files are written under their final names from the start.
//!
//! What the stream stage records in the log besides the files, as `txn` actions (which the
//! protocol keeps, latest per application id, through log checkpoints):
//! - `txn(<pipeline>/<table>[/<unit>], version = checkpoint id)` in the commit of each
//!   checkpoint's files: a restart that commits the same checkpoint again finds it done
//!   (kafka-delta-ingest and Spark's Delta sink do the same);
//! - `txn(<pipeline>/<table>[/<unit>]/horizon, version = µs)`: no lake partition ending at
//!   or before this instant gets rows from that writer any more. A partition is committed
//!   (complete) when it ends at or before every writer's horizon; `batch-analyze` reads only
//!   those unless asked for open ones, as it does with `_SUCCESS`.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use arrow::datatypes::Schema;
use bytes::Bytes;
use deltalake_core::kernel::engine::arrow_conversion::TryIntoKernel;
use deltalake_core::kernel::transaction::{CommitBuilder, CommitProperties};
use deltalake_core::kernel::{Action, DataType as DeltaType, StructField, StructType, Transaction};
pub use deltalake_core::kernel::{Add, Remove};
use deltalake_core::operations::create::CreateBuilder;
use deltalake_core::protocol::{DeltaOperation, OutputMode, SaveMode};
pub use deltalake_core::{DeltaTable, DeltaTableError};
use parquet::file::metadata::{ParquetMetaData, ParquetMetaDataReader};
use parquet::file::statistics::Statistics;
use serde_json::{Map, Value, json};

use crate::lake::{Lake, unescape_partition_value};

/// A Delta request that failed, with the table it was for.
#[derive(Debug, thiserror::Error)]
#[error("Delta table {table}: {source}")]
pub struct DeltaError {
    pub table: String,
    #[source]
    pub source: Box<DeltaTableError>,
}

impl DeltaError {
    /// The error of a request for `table`.
    pub fn of(table: &str) -> impl Fn(DeltaTableError) -> DeltaError + Copy + '_ {
        move |source| DeltaError {
            table: table.to_string(),
            source: Box::new(source),
        }
    }
}

/// A file to add to a table: the `Add` action that names it (its path below the table, as
/// the partition directories name it: `dt=2015-05-17/hour=10/part-….parquet`), and its
/// columns.
#[derive(Debug, Clone)]
pub struct FileToAdd {
    pub add: Add,
    /// The file's columns (a table is created with them, and widened to them).
    pub schema: Schema,
}

/// The `Add` action of a complete Parquet file: its partition values (from the partition
/// directories of `path`), size and statistics (row count, and min, max and null count of
/// every column that has them), so that readers skip files.
pub fn add_action(path: &str, data: &Bytes) -> Result<FileToAdd, parquet::errors::ParquetError> {
    let meta = ParquetMetaDataReader::new().parse_and_finish(data)?;
    let mut partition_values = HashMap::new();
    let segments: Vec<&str> = path.split('/').collect();
    for segment in &segments[..segments.len().saturating_sub(1)] {
        if let Some((column, value)) = segment.split_once('=') {
            partition_values.insert(column.to_string(), unescape_partition_value(value));
        }
    }
    let add = Add {
        // The object's path: the log writes it as a URI (`%` of an escaped value as `%25`).
        path: path.to_string(),
        partition_values,
        size: data.len() as i64,
        modification_time: chrono::Utc::now().timestamp_millis(),
        data_change: true,
        stats: Some(stats(&meta).to_string()),
        tags: None,
        deletion_vector: None,
        base_row_id: None,
        default_row_commit_version: None,
        clustering_provider: None,
    };
    let schema = parquet::arrow::parquet_to_arrow_schema(
        meta.file_metadata().schema_descr(),
        meta.file_metadata().key_value_metadata(),
    )?;
    Ok(FileToAdd { add, schema })
}

/// Delta statistics of a Parquet file: `numRecords`, and per top-level column with exact
/// statistics in every row group, `minValues`, `maxValues` and `nullCount`.
fn stats(meta: &ParquetMetaData) -> Value {
    let rows: i64 = meta.row_groups().iter().map(|g| g.num_rows()).sum();
    let (mut min, mut max, mut nulls) = (Map::new(), Map::new(), Map::new());
    let schema = meta.file_metadata().schema_descr();
    for (i, column) in schema.columns().iter().enumerate() {
        if column.path().parts().len() != 1 {
            continue;
        }
        let name = column.name().to_string();
        let mut col = ColumnStats::default();
        for g in meta.row_groups() {
            col.add(g.column(i).statistics(), column.logical_type_ref());
        }
        if let Some(n) = col.nulls {
            nulls.insert(name.clone(), json!(n));
        }
        if let (Some(lo), Some(hi), true) = (col.min, col.max, col.exact) {
            min.insert(name.clone(), lo);
            max.insert(name, hi);
        }
    }
    json!({"numRecords": rows, "minValues": min, "maxValues": max, "nullCount": nulls})
}

/// One column's statistics over the row groups.
#[derive(Default)]
struct ColumnStats {
    min: Option<Value>,
    max: Option<Value>,
    nulls: Option<u64>,
    /// Every row group had exact min and max (strings may be truncated).
    exact: bool,
    seen: bool,
}

impl ColumnStats {
    fn add(&mut self, stats: Option<&Statistics>, logical: Option<&parquet::basic::LogicalType>) {
        let first = !std::mem::replace(&mut self.seen, true);
        let Some(stats) = stats else {
            self.exact = false;
            self.nulls = None;
            return;
        };
        self.nulls = match (first, self.nulls, stats.null_count_opt()) {
            (true, _, Some(n)) => Some(n),
            (false, Some(a), Some(n)) => Some(a + n),
            _ => None,
        };
        let (lo, hi) = match stats {
            Statistics::Int32(s) => (s.min_opt().map(|v| json!(v)), s.max_opt().map(|v| json!(v))),
            Statistics::Int64(s) => (
                s.min_opt().map(|v| int64_value(*v, &logical)),
                s.max_opt().map(|v| int64_value(*v, &logical)),
            ),
            Statistics::Double(s) => (
                s.min_opt().filter(|v| v.is_finite()).map(|v| json!(v)),
                s.max_opt().filter(|v| v.is_finite()).map(|v| json!(v)),
            ),
            Statistics::ByteArray(s) if is_string(&logical) => (
                s.min_opt().and_then(|v| v.as_utf8().ok()).map(|v| json!(v)),
                s.max_opt().and_then(|v| v.as_utf8().ok()).map(|v| json!(v)),
            ),
            _ => (None, None),
        };
        let exact = stats.min_is_exact() && stats.max_is_exact() && lo.is_some() && hi.is_some();
        self.exact = exact && (first || self.exact);
        self.min = merge(self.min.take(), lo, std::cmp::Ordering::Less);
        self.max = merge(self.max.take(), hi, std::cmp::Ordering::Greater);
    }
}

fn is_string(logical: &Option<&parquet::basic::LogicalType>) -> bool {
    matches!(logical, Some(parquet::basic::LogicalType::String))
}

/// An INT64 statistic: a number, or for a timestamp the RFC 3339 text Delta writes.
fn int64_value(v: i64, logical: &Option<&parquet::basic::LogicalType>) -> Value {
    use parquet::basic::{LogicalType, TimeUnit as PqUnit};
    let micros = match logical {
        Some(LogicalType::Timestamp(t)) => match t.unit {
            PqUnit::MILLIS => v.saturating_mul(1000),
            PqUnit::MICROS => v,
            PqUnit::NANOS => v / 1000,
        },
        _ => return json!(v),
    };
    match chrono::DateTime::from_timestamp_micros(micros) {
        Some(t) => json!(t.format("%Y-%m-%dT%H:%M:%S%.6fZ").to_string()),
        None => json!(v),
    }
}

/// The smaller (`Less`) or larger of two statistics of one column.
fn merge(a: Option<Value>, b: Option<Value>, keep: std::cmp::Ordering) -> Option<Value> {
    match (a, b) {
        (Some(a), Some(b)) => {
            let order = match (&a, &b) {
                (Value::Number(x), Value::Number(y)) => x
                    .as_f64()
                    .partial_cmp(&y.as_f64())
                    .unwrap_or(std::cmp::Ordering::Equal),
                (Value::String(x), Value::String(y)) => x.cmp(y),
                _ => std::cmp::Ordering::Equal,
            };
            Some(if order == keep { a } else { b })
        }
        (a, None) => a,
        (None, b) => b,
    }
}

/// The table `table` of the lake as a Delta table (not loaded), on the lake's own store:
/// the log store is delta-rs's default one (commits by conditional `PUT`, which local
/// disk and S3 both do), whatever the URL's scheme.
fn handle(lake: &Lake, table: &str) -> Result<DeltaTable, DeltaError> {
    use deltalake_core::logstore::{StorageConfig, default_logstore};
    let url = lake.table_url(table);
    let prefixed: Arc<dyn object_store::ObjectStore> = Arc::new(
        object_store::prefix::PrefixStore::new(lake.store.clone(), lake.table_dir(table)),
    );
    let log_store = default_logstore(
        prefixed,
        lake.store.clone(),
        &url,
        &StorageConfig::default(),
    );
    Ok(DeltaTable::new(log_store))
}

/// The table at its newest version; `None` when it has no log yet.
pub async fn open(lake: &Lake, table: &str) -> Result<Option<DeltaTable>, DeltaError> {
    let mut t = handle(lake, table)?;
    let err = DeltaError::of(table);
    if !t.verify_deltatable_existence().await.map_err(err)? {
        return Ok(None);
    }
    t.load().await.map_err(err)?;
    Ok(Some(t))
}

/// Which version of a table a reader takes: its newest, a version number, or the newest
/// committed at or before an instant (by the commit file's time, as every Delta reader
/// travels in time).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReadVersion {
    Newest,
    Number(i64),
    At(chrono::DateTime<chrono::Utc>),
}

/// A version asked for that the table's log cannot give.
#[derive(Debug, thiserror::Error)]
pub enum TimeTravelError {
    #[error(transparent)]
    Delta(#[from] DeltaError),
    #[error("Delta table {table} has no version {asked}: its newest is {newest}")]
    NoSuchVersion {
        table: String,
        asked: i64,
        newest: i64,
    },
    #[error(
        "Delta table {table}: version {asked} is no longer in its log (log entries older than `delta.logRetentionDuration`, 30 days by default, are cleaned up); ask for a newer version"
    )]
    Expired { table: String, asked: String },
}

/// The table at the version `at` asks for; `None` when it has no log yet or, for an
/// instant, had none then (a reader then saw no table). Asking for a version newer than the
/// newest, or older than the log still holds, is an error naming what there is.
pub async fn open_at(
    lake: &Lake,
    table: &str,
    at: ReadVersion,
) -> Result<Option<DeltaTable>, TimeTravelError> {
    let Some(mut t) = open(lake, table).await? else {
        return Ok(None);
    };
    let err = DeltaError::of(table);
    let newest = t.version().unwrap_or(0) as i64;
    match at {
        ReadVersion::Newest => {}
        ReadVersion::Number(v) if v > newest || v < 0 => {
            return Err(TimeTravelError::NoSuchVersion {
                table: table.to_string(),
                asked: v,
                newest,
            });
        }
        ReadVersion::Number(v) => {
            t.load_version(v as u64)
                .await
                .map_err(|_| TimeTravelError::Expired {
                    table: table.to_string(),
                    asked: v.to_string(),
                })?;
        }
        ReadVersion::At(instant) => {
            t.load_with_datetime(instant).await.map_err(err)?;
            let v = t.version().unwrap_or(0) as i64;
            // The search settles on the oldest version it has when all are newer.
            if commit_time(lake, table, v).await.map_err(err)? > instant {
                if v == 0 {
                    return Ok(None);
                }
                return Err(TimeTravelError::Expired {
                    table: table.to_string(),
                    asked: instant.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
                });
            }
        }
    }
    Ok(Some(t))
}

/// When version `v` of a table was committed: its log entry's modification time.
async fn commit_time(
    lake: &Lake,
    table: &str,
    v: i64,
) -> Result<chrono::DateTime<chrono::Utc>, DeltaTableError> {
    use object_store::ObjectStoreExt;
    let path = lake
        .table_dir(table)
        .join("_delta_log")
        .join(format!("{v:020}.json").as_str());
    Ok(lake.store.head(&path).await?.last_modified)
}

/// The table property naming the writers of a table written by several (a Kafka
/// pipeline's units: `p0,p1,…`): a partition is complete once every one's horizon passed it.
pub const WRITERS_PROPERTY: &str = "stream-ingest.writers";

/// The table, created (version 0) with the columns of a first file and its partition
/// columns (as strings, the values of the partition directories) if it has no log yet, and
/// with its `writers` when there are several. Two writers creating it at once both get the
/// one created.
pub async fn open_or_create(
    lake: &Lake,
    table: &str,
    file_schema: &Schema,
    partition_columns: &[String],
    writers: &[String],
) -> Result<DeltaTable, DeltaError> {
    if let Some(t) = open(lake, table).await? {
        return Ok(t);
    }
    let err = DeltaError::of(table);
    let kernel: StructType = file_schema
        .try_into_kernel()
        .map_err(|e| err(DeltaTableError::Generic(e.to_string())))?;
    let mut columns: Vec<StructField> = kernel.fields().cloned().collect();
    for p in partition_columns {
        columns.push(StructField::new(p.clone(), DeltaType::STRING, true));
    }
    let created = CreateBuilder::new()
        .with_log_store(handle(lake, table)?.log_store())
        .with_table_name(table.rsplit('/').next().unwrap_or(table))
        .with_columns(columns)
        .with_partition_columns(partition_columns.to_vec())
        .with_save_mode(SaveMode::Ignore)
        .with_raise_if_key_not_exists(false)
        .with_configuration(
            (!writers.is_empty()).then(|| (WRITERS_PROPERTY, Some(writers.join(",")))),
        )
        .await;
    match created {
        Ok(t) => Ok(t),
        // Created by another writer in the meantime.
        Err(_) if open(lake, table).await?.is_some() => {
            Ok(open(lake, table).await?.expect("just read"))
        }
        Err(e) => Err(err(e)),
    }
}

/// One writer's commit to a table: files added and removed, and its txn versions.
#[derive(Debug, Default)]
pub struct TableCommit {
    /// `<pipeline>/<table>[/<unit>]`.
    pub app_id: String,
    /// The checkpoint the commit belongs to, committed once; `None`: no checkpoint's (a
    /// retraction), always committed.
    pub version: Option<i64>,
    pub adds: Vec<Add>,
    pub removes: Vec<Remove>,
    /// The writer's horizon (µs), recorded as `txn(<app_id>/horizon)`.
    pub horizon: Option<i64>,
    /// The columns of the files added: those the table lacks are added to its schema
    /// (nullable) in the same commit, so that every reader sees an added aggregate, with
    /// NULL in older files.
    pub file_schema: Option<Schema>,
    /// A compaction (OPTIMIZE): the files added hold the rows of those removed, so neither
    /// changes data (`dataChange: false`) and readers of the log's changes skip both.
    pub rearranges: bool,
    /// Other writers' txn versions recorded in the same commit (`(app id, version)`): a
    /// commit made for several (the swap of a Kafka pipeline's rebuild).
    pub txns: Vec<(String, i64)>,
}

/// The last checkpoint of `app_id` committed to the table.
pub async fn committed_version(
    t: &DeltaTable,
    app_id: &str,
) -> Result<Option<i64>, DeltaTableError> {
    t.snapshot()?
        .transaction_version(t.log_store().as_ref(), app_id)
        .await
}

/// Where the table is complete: no partition ending at or before this instant (µs) gets
/// rows any more, by the horizon of its one writer `app` or, for a table several write
/// (see [`WRITERS_PROPERTY`]), the least of theirs (`i64::MIN` while one has none).
pub async fn horizon(t: &DeltaTable, app: &str) -> Result<i64, DeltaTableError> {
    let writers: Vec<String> = match t
        .snapshot()?
        .metadata()
        .configuration()
        .get(WRITERS_PROPERTY)
    {
        Some(list) => list.split(',').map(|w| format!("{app}/{w}")).collect(),
        None => vec![app.to_string()],
    };
    let mut least = i64::MAX;
    for w in writers {
        match committed_version(t, &format!("{w}/horizon")).await? {
            Some(h) => least = least.min(h),
            None => return Ok(i64::MIN),
        }
    }
    Ok(least)
}

/// Commits `c` unless the table holds its version already (a restart's second commit of one
/// checkpoint); refreshes `t` first and returns whether it committed.
///
/// A commit that fails with an outcome unknown (a timeout after the PUT) is resolved the same
/// way: the log, read again, holds the version or not. A commit that adds files and removes
/// none (a blind append, as every unit of a Kafka pipeline makes) and lost a race with
/// another writer's commit (a table created or widened at the same moment) is made again on
/// the newer version, up to [`COMMIT_ATTEMPTS`] times.
pub async fn commit(t: &mut DeltaTable, table: &str, c: TableCommit) -> Result<bool, DeltaError> {
    let mut attempt = 1;
    loop {
        match commit_once(t, &c).await {
            Ok(done) => return Ok(done),
            Err(e) if c.removes.is_empty() && is_conflict(&e) && attempt < COMMIT_ATTEMPTS => {
                tracing::debug!(table, attempt, error = %e, "commit conflict: again on the newer version");
                attempt += 1;
            }
            Err(e) => return Err(DeltaError::of(table)(e)),
        }
    }
}

/// How many times a blind append is tried against other writers' commits.
pub const COMMIT_ATTEMPTS: u32 = 10;

/// A commit that lost a race with another writer's (whose outcome is known: not made).
fn is_conflict(e: &DeltaTableError) -> bool {
    use deltalake_core::kernel::transaction::TransactionError as T;
    matches!(
        e,
        DeltaTableError::Transaction {
            source: T::CommitConflict(_) | T::MaxCommitAttempts(_) | T::VersionAlreadyExists(_)
        } | DeltaTableError::VersionAlreadyExists(_)
    )
}

/// One attempt of [`commit`].
async fn commit_once(t: &mut DeltaTable, c: &TableCommit) -> Result<bool, DeltaTableError> {
    t.update_state().await?;
    if let Some(v) = c.version
        && committed_version(t, &c.app_id).await? >= Some(v)
    {
        return Ok(false);
    }
    let actions = actions_of(t, c)?;
    let operation = if c.rearranges {
        DeltaOperation::Optimize {
            predicate: None,
            target_size: 0,
        }
    } else {
        DeltaOperation::StreamingUpdate {
            output_mode: OutputMode::Append,
            query_id: c.app_id.clone(),
            epoch_id: c.version.unwrap_or(-1),
        }
    };
    let snapshot = t.snapshot()?;
    // Post-commit: a log checkpoint every `delta.checkpointInterval` commits (100), and log
    // entries older than `delta.logRetentionDuration` (30 days) cleaned up.
    let done = CommitBuilder::from(CommitProperties::default())
        .with_actions(actions)
        .build(Some(snapshot), t.log_store(), operation)
        .await;
    match done {
        Ok(done) => {
            t.state = Some(done.snapshot());
            Ok(true)
        }
        Err(e) if landed(t, c).await.unwrap_or(false) => {
            tracing::warn!(app = %c.app_id, error = %e, "the commit reported an error but is in the log");
            Ok(true)
        }
        Err(e) => Err(e),
    }
}

/// Whether a versioned commit whose request failed is in the log all the same.
async fn landed(t: &mut DeltaTable, c: &TableCommit) -> Result<bool, DeltaTableError> {
    let Some(v) = c.version else {
        return Ok(false);
    };
    t.update_state().await?;
    Ok(committed_version(t, &c.app_id).await? >= Some(v))
}

/// The actions of a commit: the widened schema (if any), the files, the txn versions.
fn actions_of(t: &DeltaTable, c: &TableCommit) -> Result<Vec<Action>, DeltaTableError> {
    let now = chrono::Utc::now().timestamp_millis();
    let mut actions: Vec<Action> = Vec::new();
    if let Some(schema) = &c.file_schema
        && let Some(metadata) = widened(t, schema)?
    {
        actions.push(Action::Metadata(metadata));
    }
    let data_change = !c.rearranges;
    actions.extend(
        c.adds
            .iter()
            .cloned()
            .map(|a| Action::Add(Add { data_change, ..a })),
    );
    actions.extend(
        c.removes
            .iter()
            .cloned()
            .map(|r| Action::Remove(Remove { data_change, ..r })),
    );
    if let Some(v) = c.version {
        actions.push(Action::Txn(Transaction::new_with_last_update(
            &c.app_id,
            v,
            Some(now),
        )));
    }
    if let Some(h) = c.horizon {
        let app = format!("{}/horizon", c.app_id);
        actions.push(Action::Txn(Transaction::new_with_last_update(
            app,
            h,
            Some(now),
        )));
    }
    for (app, v) in &c.txns {
        actions.push(Action::Txn(Transaction::new_with_last_update(
            app,
            *v,
            Some(now),
        )));
    }
    Ok(actions)
}

/// The table's metadata with the columns of `file_schema` it lacks added (nullable, after
/// its own); `None` when it has them all.
fn widened(
    t: &DeltaTable,
    file_schema: &Schema,
) -> Result<Option<deltalake_core::kernel::Metadata>, DeltaTableError> {
    use deltalake_core::kernel::MetadataExt;
    let state = t.snapshot()?;
    let current = state.schema();
    let missing: Vec<_> = file_schema
        .fields()
        .iter()
        .filter(|f| current.field(f.name()).is_none())
        .cloned()
        .collect();
    if missing.is_empty() {
        return Ok(None);
    }
    let added: StructType = (&Schema::new(missing))
        .try_into_kernel()
        .map_err(|e| DeltaTableError::Generic(e.to_string()))?;
    let fields = current.fields().cloned().chain(
        added
            .fields()
            .map(|f| StructField::new(f.name().clone(), f.data_type().clone(), true)),
    );
    let widened =
        StructType::try_new(fields).map_err(|e| DeltaTableError::Generic(e.to_string()))?;
    Ok(Some(state.metadata().clone().with_schema(&widened)?))
}

/// VACUUM: deletes the files removed from the table longer than `retention` ago and, when
/// `full`, also every file the log does not name that is older than that (it lists the
/// whole table; without it, files the log never named are each writer's to delete).
/// Returns the table at its new version (vacuum commits its start and end) and how many
/// files went.
pub async fn vacuum(
    t: &DeltaTable,
    table: &str,
    retention: std::time::Duration,
    full: bool,
) -> Result<(DeltaTable, usize), DeltaError> {
    use deltalake_core::operations::vacuum::VacuumMode;
    let err = DeltaError::of(table);
    let retention = chrono::Duration::from_std(retention)
        .map_err(|e| err(DeltaTableError::Generic(e.to_string())))?;
    let (t, metrics) = t
        .clone()
        .vacuum()
        .with_retention_period(retention)
        .with_enforce_retention_duration(false)
        .with_mode(if full {
            VacuumMode::Full
        } else {
            VacuumMode::Lite
        })
        .await
        .map_err(err)?;
    Ok((t, metrics.files_deleted.len()))
}

/// A `Remove` of a file the table holds, written by `Add`.
pub fn remove_of(add_path: &str, size: i64) -> Remove {
    Remove {
        path: add_path.to_string(),
        deletion_timestamp: Some(chrono::Utc::now().timestamp_millis()),
        data_change: true,
        extended_file_metadata: Some(true),
        partition_values: None,
        size: Some(size),
        tags: None,
        deletion_vector: None,
        base_row_id: None,
        default_row_commit_version: None,
    }
}

/// The files a table's snapshot holds: path below the table (as `Add` holds it) and size.
pub fn active_files(t: &DeltaTable) -> Result<Vec<(String, i64)>, DeltaTableError> {
    Ok(t.snapshot()?
        .log_data()
        .iter()
        .map(|f| (f.path().to_string(), f.size()))
        .collect())
}

/// The files a table's snapshot holds by partition: the `name=value` directories of their
/// paths (none for a file at the table's root), then each file's path below the table and
/// size, in path order.
pub type FilesByPartition = BTreeMap<Vec<String>, Vec<(String, i64)>>;

/// [`active_files`] grouped by partition ([`FilesByPartition`]).
pub fn files_by_partition(t: &DeltaTable) -> Result<FilesByPartition, DeltaTableError> {
    let mut partitions = FilesByPartition::new();
    for (path, size) in active_files(t)? {
        let mut segments: Vec<String> = path.split('/').map(String::from).collect();
        segments.pop();
        partitions.entry(segments).or_default().push((path, size));
    }
    for files in partitions.values_mut() {
        files.sort();
    }
    Ok(partitions)
}

/// The file name of a path below a table (its last segment).
pub fn file_name(path: &str) -> &str {
    path.rsplit('/').next().unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{S3Config, TimePartitioning};

    /// A local lake with one Delta table created from a one-column file.
    async fn table(dir: &std::path::Path) -> (Lake, DeltaTable) {
        let lake = Lake::open(
            dir.to_str().unwrap(),
            &S3Config::default(),
            TimePartitioning::Hour,
        )
        .unwrap();
        let schema = Schema::new(vec![arrow::datatypes::Field::new(
            "requests",
            arrow::datatypes::DataType::Int64,
            true,
        )]);
        let t = open_or_create(&lake, "t", &schema, &["dt".to_string()], &[])
            .await
            .unwrap();
        (lake, t)
    }

    /// A store whose next write of a log entry lands and then reports a timeout: the answer
    /// of a commit whose outcome the writer cannot know.
    #[derive(Debug)]
    struct TimeoutAfterPut {
        inner: Arc<dyn object_store::ObjectStore>,
        armed: std::sync::atomic::AtomicBool,
        /// Before the next log entry is written, another writer (on this lake, without the
        /// wrapper) commits a column added to the table: the entry's version is taken.
        race: std::sync::Mutex<Option<Lake>>,
    }

    impl std::fmt::Display for TimeoutAfterPut {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            write!(f, "TimeoutAfterPut({})", self.inner)
        }
    }

    #[async_trait::async_trait]
    impl object_store::ObjectStore for TimeoutAfterPut {
        async fn put_opts(
            &self,
            location: &object_store::path::Path,
            payload: object_store::PutPayload,
            opts: object_store::PutOptions,
        ) -> object_store::Result<object_store::PutResult> {
            let entry = location.as_ref().contains("_delta_log/");
            let race = self.race.lock().unwrap().take().filter(|_| entry);
            if let Some(lake) = race {
                let mut other = open(&lake, "t").await.unwrap().unwrap();
                let wider = Schema::new(vec![arrow::datatypes::Field::new(
                    "max_bytes",
                    arrow::datatypes::DataType::Int64,
                    true,
                )]);
                let c = TableCommit {
                    app_id: "p/t/other".into(),
                    file_schema: Some(wider),
                    ..TableCommit::default()
                };
                commit(&mut other, "t", c).await.unwrap();
            }
            let put = self.inner.put_opts(location, payload, opts).await?;
            if entry && self.armed.swap(false, std::sync::atomic::Ordering::SeqCst) {
                return Err(object_store::Error::Generic {
                    store: "test",
                    source: "timed out waiting for the response".into(),
                });
            }
            Ok(put)
        }

        async fn put_multipart_opts(
            &self,
            location: &object_store::path::Path,
            opts: object_store::PutMultipartOptions,
        ) -> object_store::Result<Box<dyn object_store::MultipartUpload>> {
            self.inner.put_multipart_opts(location, opts).await
        }

        async fn get_opts(
            &self,
            location: &object_store::path::Path,
            options: object_store::GetOptions,
        ) -> object_store::Result<object_store::GetResult> {
            self.inner.get_opts(location, options).await
        }

        fn delete_stream(
            &self,
            locations: futures::stream::BoxStream<
                'static,
                object_store::Result<object_store::path::Path>,
            >,
        ) -> futures::stream::BoxStream<'static, object_store::Result<object_store::path::Path>>
        {
            self.inner.delete_stream(locations)
        }

        fn list(
            &self,
            prefix: Option<&object_store::path::Path>,
        ) -> futures::stream::BoxStream<'static, object_store::Result<object_store::ObjectMeta>>
        {
            self.inner.list(prefix)
        }

        async fn list_with_delimiter(
            &self,
            prefix: Option<&object_store::path::Path>,
        ) -> object_store::Result<object_store::ListResult> {
            self.inner.list_with_delimiter(prefix).await
        }

        async fn copy_opts(
            &self,
            from: &object_store::path::Path,
            to: &object_store::path::Path,
            options: object_store::CopyOptions,
        ) -> object_store::Result<()> {
            self.inner.copy_opts(from, to, options).await
        }
    }

    #[tokio::test]
    async fn a_commit_that_lands_but_reports_an_error_counts_once() {
        let dir = tempfile::tempdir().unwrap();
        let (mut lake, _) = table(dir.path()).await;
        let store = Arc::new(TimeoutAfterPut {
            inner: lake.store.clone(),
            armed: std::sync::atomic::AtomicBool::new(true),
            race: std::sync::Mutex::new(None),
        });
        lake.store = store.clone();
        let mut t = open(&lake, "t").await.unwrap().unwrap();
        let c = |v| TableCommit {
            app_id: "p/t".into(),
            version: Some(v),
            ..TableCommit::default()
        };
        assert!(
            commit(&mut t, "t", c(1)).await.unwrap(),
            "resolved as committed"
        );
        assert!(
            !store.armed.load(std::sync::atomic::Ordering::SeqCst),
            "no timeout happened"
        );
        assert!(!commit(&mut t, "t", c(1)).await.unwrap(), "committed twice");
        assert!(commit(&mut t, "t", c(2)).await.unwrap());
        let t = open(&lake, "t").await.unwrap().unwrap();
        assert_eq!(t.version(), Some(2), "one log entry per checkpoint");
    }

    #[tokio::test]
    async fn an_append_that_loses_a_race_with_a_schema_change_is_made_again() {
        let dir = tempfile::tempdir().unwrap();
        let (mut lake, _) = table(dir.path()).await;
        let plain = lake.clone();
        lake.store = Arc::new(TimeoutAfterPut {
            inner: plain.store.clone(),
            armed: std::sync::atomic::AtomicBool::new(false),
            race: std::sync::Mutex::new(Some(plain.clone())),
        });
        let mut t = open(&lake, "t").await.unwrap().unwrap();
        let c = TableCommit {
            app_id: "p/t/p0".into(),
            version: Some(1),
            ..TableCommit::default()
        };
        assert!(commit(&mut t, "t", c).await.unwrap());
        let t = open(&plain, "t").await.unwrap().unwrap();
        assert_eq!(t.version(), Some(2), "the other writer's commit, then ours");
        assert_eq!(committed_version(&t, "p/t/p0").await.unwrap(), Some(1));
        assert!(t.snapshot().unwrap().schema().field("max_bytes").is_some());
    }

    #[tokio::test]
    async fn a_reader_travels_to_a_version_or_an_instant() {
        let dir = tempfile::tempdir().unwrap();
        let before = chrono::Utc::now() - chrono::Duration::seconds(5);
        let (lake, mut t) = table(dir.path()).await;
        for v in 1..=3 {
            let c = TableCommit {
                app_id: "p/t".into(),
                version: Some(v),
                ..TableCommit::default()
            };
            commit(&mut t, "t", c).await.unwrap();
        }
        let lake = &lake;
        let at = move |v| async move {
            open_at(lake, "t", v)
                .await
                .map(|t| t.map(|t| t.version().unwrap()))
        };
        assert_eq!(at(ReadVersion::Newest).await.unwrap(), Some(3));
        assert_eq!(at(ReadVersion::Number(2)).await.unwrap(), Some(2));
        let later = chrono::Utc::now() + chrono::Duration::seconds(5);
        assert_eq!(at(ReadVersion::At(later)).await.unwrap(), Some(3));
        assert_eq!(at(ReadVersion::At(before)).await.unwrap(), None);
        let err = at(ReadVersion::Number(4)).await.unwrap_err().to_string();
        assert!(err.contains("no version 4: its newest is 3"), "{err}");
        let v2 = open_at(lake, "t", ReadVersion::Number(2))
            .await
            .unwrap()
            .unwrap();
        assert_eq!(committed_version(&v2, "p/t").await.unwrap(), Some(2));
    }

    #[tokio::test]
    async fn a_checkpoint_is_committed_once_and_the_log_is_checkpointed() {
        let dir = tempfile::tempdir().unwrap();
        let (lake, mut t) = table(dir.path()).await;
        for v in 1..=100 {
            let c = TableCommit {
                app_id: "p/t".into(),
                version: Some(v),
                horizon: Some(v * 1000),
                ..TableCommit::default()
            };
            assert!(commit(&mut t, "t", c).await.unwrap());
        }
        let again = TableCommit {
            app_id: "p/t".into(),
            version: Some(100),
            ..TableCommit::default()
        };
        assert!(
            !commit(&mut t, "t", again).await.unwrap(),
            "committed twice"
        );
        // Version 0 created the table; versions 1..=100 the commits: 99 is checkpointed.
        let log = dir.path().join("t/_delta_log");
        assert!(log.join("00000000000000000099.checkpoint.parquet").exists());
        let t = open(&lake, "t").await.unwrap().unwrap();
        assert_eq!(committed_version(&t, "p/t").await.unwrap(), Some(100));
        assert_eq!(horizon(&t, "p/t").await.unwrap(), 100_000);
        assert_eq!(horizon(&t, "p/other").await.unwrap(), i64::MIN);
    }
}
