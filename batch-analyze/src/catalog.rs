//! The tables a report can read.
//!
//! A run first takes a [`LakeSnapshot`]: for each lake table, one listing of the table
//! directory gives its `dt=` days; only the days the run selected ([`crate::dates`]) are
//! listed further, and each partition's `_SUCCESS` marker is read. The files a report reads
//! are exactly the files the markers name, so a file published after the marker (a
//! compaction between two steps, a stray copy) is never read twice, and open partitions
//! (no marker yet) are left out unless `--include-open`. The late-events table has no
//! markers: all of its files in the selected days are read.
//!
//! Each table is then registered in a DataFusion session as a [`SnapshotTable`]
//! ([`crate::tables`]): a Parquet scan over that list of files, with the partition columns
//! (`dt`, `hour`, any `partition_by` keys; strings, NULL for Hive's default partition) taken
//! from the paths.
//! Schemas come from [`shared::schema`], never from the files, so an empty lake gives empty
//! reports and the reader can never disagree with the writer. For `validate`, the same
//! tables are registered empty, so reports can be planned without any data.
//!
//! The snapshot is also what `--explain` prints and what `--incremental` fingerprints.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use arrow::datatypes::SchemaRef;
use datafusion::common::ScalarValue;
use datafusion::datasource::MemTable;
use datafusion::datasource::listing::PartitionedFile;
use datafusion::error::DataFusionError;
use datafusion::execution::object_store::ObjectStoreUrl;
use datafusion::prelude::{CsvReadOptions, SessionContext};
use object_store::ObjectMeta;
use object_store::ObjectStoreExt;
use object_store::path::PathPart;
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use parquet::errors::ParquetError;
use shared::commit::{PartitionMarker, REPLACE_INTENT, Replacement};
use shared::config::{LakeFormat, LoadedConfig, QueryEngine};
use shared::delta::ReadVersion;
use shared::lake::{COMMIT_MARKER, Lake, PartitionPath, is_hidden, unescape_partition_value};
use shared::schema::{self, dimension_schema};

use crate::as_of::AsOf;

use crate::dates::DayRange;
use crate::plan::ident;
use crate::sketch;
use crate::small_files::{FileOrigin, LakeFile, LakeFileError};
use crate::tables::{DimensionTable, SnapshotTable};

/// A lake table as the batch stage reads it.
pub struct LakeTable {
    pub name: String,
    /// Columns inside the files.
    pub file_schema: SchemaRef,
    /// Partition columns (strings), outermost first.
    pub partition_columns: Vec<String>,
    /// The late-events table: no commit markers.
    pub is_late: bool,
}

/// The lake tables of a pipeline: the windowed tables, then the late-events table.
pub fn lake_tables(loaded: &LoadedConfig) -> Vec<LakeTable> {
    let cfg = &loaded.config;
    let events = schema::events_of(cfg);
    let mut out = Vec::new();
    for t in &cfg.tables {
        let Ok(ts) = schema::table_schema(t, &events) else {
            continue;
        };
        out.push(LakeTable {
            name: t.name.clone(),
            file_schema: schema::file_schema(t, &ts),
            partition_columns: schema::partition_columns(&t.partition_by, cfg.lake.partition_time),
            is_late: false,
        });
    }
    if let Some(late) = &cfg.late_events {
        out.push(LakeTable {
            name: late.table.clone(),
            file_schema: schema::late_schema(&events),
            partition_columns: schema::partition_columns(&[], cfg.lake.partition_time),
            is_late: true,
        });
    }
    out
}

/// What to do about a damaged marker or a missing data file of a committed partition.
const DAMAGED_HINT: &str = "restore the partition from a backup, or rebuild the lake from its input with `stream-ingest run --from-scratch` (it rewrites every file and marker)";

/// A snapshot that could not be taken. Paths are written as the user writes the lake root
/// ([`Lake::display`]).
#[derive(Debug, thiserror::Error)]
pub enum SnapshotError {
    #[error("cannot list {what}: {source}")]
    List {
        what: String,
        #[source]
        source: object_store::Error,
    },
    #[error("cannot read {path}: {source}")]
    Read {
        path: String,
        #[source]
        source: object_store::Error,
    },
    #[error("{path} is damaged: {reason}; {hint}", hint = DAMAGED_HINT)]
    Damaged { path: String, reason: String },
    #[error(transparent)]
    Delta(#[from] shared::delta::DeltaError),
    #[error("--as-of: {0}")]
    TimeTravel(#[from] shared::delta::TimeTravelError),
}

/// One partition directory of a table, as a run found it.
#[derive(Debug, Clone)]
pub struct PartitionFiles {
    /// `name=value` segments below the table, e.g. `["dt=2015-05-17", "hour=10"]`.
    pub segments: Vec<String>,
    /// It holds a commit marker.
    pub committed: bool,
    /// The data files to read: those the marker names, or every data file when the
    /// partition is open (or the table has no markers).
    pub files: Vec<ObjectMeta>,
    /// Rows, from the marker.
    pub rows: Option<u64>,
}

/// A table's selected days and their partitions: the listing of one table in a
/// [`LakeSnapshot`].
pub struct TableListing {
    pub table: LakeTable,
    /// Every `dt=` value found in the table directory.
    pub days_in_lake: Vec<String>,
    /// The selected days, with their partitions (committed and open).
    pub days: BTreeMap<String, Vec<PartitionFiles>>,
    /// The version read of a Delta table (`None`: a Hive table, or no Delta log yet).
    pub version: Option<i64>,
}

impl TableListing {
    /// The partitions a report reads on `day`.
    pub fn readable<'a>(
        &'a self,
        day: &str,
        include_open: bool,
    ) -> impl Iterator<Item = &'a PartitionFiles> + 'a {
        let late = self.table.is_late;
        self.days
            .get(day)
            .into_iter()
            .flatten()
            .filter(move |p| p.committed || include_open || late)
    }

    /// Why the files of a partition are read, for messages about them.
    pub fn origin(&self, p: &PartitionFiles) -> FileOrigin {
        if self.table.is_late {
            FileOrigin::Late
        } else if p.committed {
            FileOrigin::Committed
        } else {
            FileOrigin::Open
        }
    }

    /// A fingerprint of what a report would read on `day`: partitions, file names and
    /// sizes. File names hold a hash of their content; the id of the checkpoint that
    /// committed a file is left out, so a rebuild that writes the same rows again leaves
    /// the fingerprint as it was.
    pub fn day_fingerprint(&self, day: &str, include_open: bool) -> u64 {
        let mut text = String::new();
        for p in self.readable(day, include_open) {
            text.push_str(&p.segments.join("/"));
            for f in &p.files {
                let name = f.location.filename().unwrap_or("");
                let name = match shared::commit::checkpoint_of(name) {
                    Some(c) => name.replacen(&format!("-c{c:010}-"), "-", 1),
                    None => name.to_string(),
                };
                text.push_str(&format!(" {name}:{}", f.size));
            }
            text.push('\n');
        }
        shared::hash::fnv1a64(text.as_bytes())
    }
}

/// What a run reads from the lake.
pub struct LakeSnapshot {
    pub range: DayRange,
    pub tables: Vec<TableListing>,
}

impl LakeSnapshot {
    pub fn table(&self, name: &str) -> Option<&TableListing> {
        self.tables.iter().find(|t| t.table.name == name)
    }

    /// The selected days that have data in any of `tables` (all tables when empty).
    pub fn days(&self, tables: &[String]) -> BTreeSet<String> {
        self.tables
            .iter()
            .filter(|t| tables.is_empty() || tables.contains(&t.table.name))
            .flat_map(|t| t.days.keys().cloned())
            .collect()
    }

    /// The version read of each Delta table, as `(table, version)`.
    pub fn versions(&self) -> Vec<(String, i64)> {
        self.tables
            .iter()
            .filter_map(|t| Some((t.table.name.clone(), t.version?)))
            .collect()
    }
}

/// Lists the selected days of every lake table and reads their commit markers (or, in a
/// Delta lake, their logs at the versions `as_of` asks for, the newest without it).
pub async fn snapshot(
    loaded: &LoadedConfig,
    lake: &Lake,
    range: &DayRange,
    as_of: Option<&AsOf>,
) -> Result<LakeSnapshot, SnapshotError> {
    let mut tables = Vec::new();
    for table in lake_tables(loaded) {
        if loaded.config.lake.format == LakeFormat::Delta {
            let at = as_of.map_or(ReadVersion::Newest, |a| a.of(&table.name));
            let listing = delta_listing(lake, table, range, &loaded.config.name, at).await?;
            tables.push(listing);
            continue;
        }
        let days_in_lake = lake
            .days(&table.name)
            .await
            .map_err(|source| SnapshotError::List {
                what: format!(
                    "the days of table `{}` ({})",
                    table.name,
                    lake.display(&lake.table_dir(&table.name))
                ),
                source,
            })?;
        let selected: Vec<&String> = days_in_lake.iter().filter(|d| range.contains(d)).collect();
        let listed =
            futures::future::try_join_all(selected.iter().map(|d| list_day(lake, &table, d)))
                .await?;
        let days = selected
            .into_iter()
            .cloned()
            .zip(listed)
            .filter(|(_, parts)| !parts.is_empty())
            .collect();
        tables.push(TableListing {
            table,
            days_in_lake,
            days,
            version: None,
        });
    }
    Ok(LakeSnapshot {
        range: range.clone(),
        tables,
    })
}

/// The days of a Delta table and the partitions of the selected ones: the files of the
/// version `at`, a partition committed when it ends at or before the writers' horizon
/// recorded in that version (`<pipeline>/<table>`'s, or its units', see
/// [`shared::delta::horizon`]).
async fn delta_listing(
    lake: &Lake,
    table: LakeTable,
    range: &DayRange,
    pipeline: &str,
    at: ReadVersion,
) -> Result<TableListing, SnapshotError> {
    let Some(t) = shared::delta::open_at(lake, &table.name, at).await? else {
        return Ok(TableListing {
            table,
            days_in_lake: Vec::new(),
            days: BTreeMap::new(),
            version: None,
        });
    };
    let (days_in_lake, days) = delta_days(lake, &table, range, pipeline, &t).await?;
    Ok(TableListing {
        table,
        days_in_lake,
        days,
        version: t.version().map(|v| v as i64),
    })
}

/// The days of a loaded Delta table and the partitions of the selected ones.
async fn delta_days(
    lake: &Lake,
    table: &LakeTable,
    range: &DayRange,
    pipeline: &str,
    t: &shared::delta::DeltaTable,
) -> Result<(Vec<String>, BTreeMap<String, Vec<PartitionFiles>>), SnapshotError> {
    let delta_err = |e: shared::delta::DeltaTableError| {
        SnapshotError::Delta(shared::delta::DeltaError::of(&table.name)(e))
    };
    let app = format!("{pipeline}/{}", table.name);
    let horizon = shared::delta::horizon(t, &app).await.map_err(delta_err)?;
    let files = shared::delta::files_by_partition(t).map_err(delta_err)?;
    let partitions = delta_partitions(lake, table, files)?;
    let mut days_in_lake = BTreeSet::new();
    let mut days: BTreeMap<String, Vec<PartitionFiles>> = BTreeMap::new();
    // Each partition's files come in path order (`files_by_partition`).
    for (segments, files) in partitions {
        let Some(day) = segments.first().and_then(|s| s.strip_prefix("dt=")) else {
            continue;
        };
        days_in_lake.insert(day.to_string());
        if !range.contains(day) {
            continue;
        }
        let committed = !table.is_late && lake.time_end_of(&segments).is_some_and(|e| e <= horizon);
        days.entry(day.to_string())
            .or_default()
            .push(PartitionFiles {
                segments,
                committed,
                files,
                rows: None,
            });
    }
    Ok((days_in_lake.into_iter().collect(), days))
}

/// The files a Delta table's log names, by partition (their `name=value` directories),
/// each checked to be a file of the table's partitions.
fn delta_partitions(
    lake: &Lake,
    table: &LakeTable,
    files: shared::delta::FilesByPartition,
) -> Result<BTreeMap<Vec<String>, Vec<ObjectMeta>>, SnapshotError> {
    let mut partitions = BTreeMap::new();
    for (segments, files) in files {
        let partition = PartitionPath { segments };
        let metas = files
            .into_iter()
            .map(|(path, size)| delta_file(lake, table, &partition, &path, size))
            .collect::<Result<Vec<_>, _>>()?;
        partitions.insert(partition.segments, metas);
    }
    Ok(partitions)
}

/// The object of a file the Delta log names in `partition`, if it is one of the table's.
fn delta_file(
    lake: &Lake,
    table: &LakeTable,
    partition: &PartitionPath,
    path: &str,
    size: i64,
) -> Result<ObjectMeta, SnapshotError> {
    let name = shared::delta::file_name(path);
    let mut parts = partition.segments.iter().map(String::as_str).chain([name]);
    if !parts.all(|s| PathPart::parse(s).is_ok())
        || partition.segments.len() != table.partition_columns.len()
    {
        return Err(SnapshotError::Damaged {
            path: lake.display(&lake.table_dir(&table.name)),
            reason: format!("its Delta log names `{path}`, not a file of its partitions"),
        });
    }
    Ok(ObjectMeta {
        location: lake.data_file(&table.name, partition, name),
        last_modified: chrono::Utc::now(),
        size: size as u64,
        e_tag: None,
        version: None,
    })
}

/// The partitions of one day of a table.
async fn list_day(
    lake: &Lake,
    table: &LakeTable,
    day: &str,
) -> Result<Vec<PartitionFiles>, SnapshotError> {
    let mut out = Vec::new();
    for (segments, dir) in partition_dirs(lake, table, day).await? {
        let PartitionDir {
            mut files,
            marker,
            intent,
        } = dir;
        files.sort_by(|a, b| a.location.cmp(&b.location));
        let part = match marker.filter(|_| !table.is_late) {
            None => PartitionFiles {
                segments,
                committed: false,
                files,
                rows: None,
            },
            Some(marker) => {
                let (files, rows) = committed_files(lake, &marker, intent, &files).await?;
                PartitionFiles {
                    segments,
                    committed: true,
                    files,
                    rows: Some(rows),
                }
            }
        };
        out.push(part);
    }
    Ok(out)
}

/// What one partition directory holds, as listed.
#[derive(Default)]
struct PartitionDir {
    /// Data files (Parquet, not hidden).
    files: Vec<ObjectMeta>,
    /// The commit marker (`_SUCCESS`).
    marker: Option<ObjectMeta>,
    /// The intent of a replacement in progress.
    intent: Option<ObjectMeta>,
}

/// One listing of a day of a table, grouped by partition directory (its `name=value`
/// segments below the table).
async fn partition_dirs(
    lake: &Lake,
    table: &LakeTable,
    day: &str,
) -> Result<BTreeMap<Vec<String>, PartitionDir>, SnapshotError> {
    let metas = lake
        .day_objects(&table.name, day)
        .await
        .map_err(|source| SnapshotError::List {
            what: format!(
                "day {day} of table `{}` ({}/dt={day})",
                table.name,
                lake.display(&lake.table_dir(&table.name))
            ),
            source,
        })?;
    let mut dirs: BTreeMap<Vec<String>, PartitionDir> = BTreeMap::new();
    for m in metas {
        let parts = lake.below_table(&table.name, &m.location);
        let Some((name, segments)) = parts.split_last() else {
            continue;
        };
        if segments.len() != table.partition_columns.len() {
            continue;
        }
        let entry = dirs.entry(segments.to_vec()).or_default();
        match name.as_str() {
            COMMIT_MARKER => entry.marker = Some(m),
            REPLACE_INTENT => entry.intent = Some(m),
            n if n.ends_with(".parquet") && !is_hidden(n) => entry.files.push(m),
            _ => {}
        }
    }
    Ok(dirs)
}

/// The files a committed partition's marker names (among the listed `files`), and its rows.
async fn committed_files(
    lake: &Lake,
    marker: &ObjectMeta,
    intent: Option<ObjectMeta>,
    files: &[ObjectMeta],
) -> Result<(Vec<ObjectMeta>, u64), SnapshotError> {
    let mut m: PartitionMarker = read_json(lake, marker).await?;
    // A replacement (compaction) in progress: once its new file is published,
    // the new file set is the partition, whatever is deleted yet.
    if let Some(intent) = intent {
        let r: Replacement = read_json(lake, &intent).await?;
        if files.iter().any(|f| f.location.as_ref() == r.file.target) {
            m = r.marker;
        }
    }
    let mut named = Vec::new();
    for name in &m.files {
        let Some(f) = files
            .iter()
            .find(|f| f.location.filename() == Some(name.as_str()))
        else {
            return Err(SnapshotError::Damaged {
                path: lake.display(&marker.location),
                reason: format!("it names {name}, which is not there"),
            });
        };
        named.push(f.clone());
    }
    Ok((named, m.rows))
}

async fn read_json<T: serde::de::DeserializeOwned>(
    lake: &Lake,
    meta: &ObjectMeta,
) -> Result<T, SnapshotError> {
    let path = lake.display(&meta.location);
    let read = async { lake.store.get(&meta.location).await?.bytes().await };
    let body = read.await.map_err(|source| SnapshotError::Read {
        path: path.clone(),
        source,
    })?;
    serde_json::from_slice(&body).map_err(|e| SnapshotError::Damaged {
        path,
        reason: e.to_string(),
    })
}

/// The first file of `tables` (on `days`, as [`register_snapshot`] registers them) that does
/// not decode, named: for a query error that names no file, such as a damaged page inside a
/// file whose footer reads. It reads and decodes every one of those files, so it is only
/// called once a query has failed.
pub async fn find_damaged(
    lake: &Lake,
    snapshot: &LakeSnapshot,
    tables: &[String],
    days: Option<&BTreeSet<String>>,
    include_open: bool,
) -> Option<LakeFileError> {
    let selected = snapshot
        .tables
        .iter()
        .filter(|t| tables.contains(&t.table.name));
    for t in selected {
        for day in t.days.keys() {
            if days.is_some_and(|d| !d.contains(day)) {
                continue;
            }
            for p in t.readable(day, include_open) {
                for f in &p.files {
                    let data = match lake.store.get(&f.location).await {
                        Ok(got) => got.bytes().await,
                        Err(e) => Err(e),
                    };
                    let error = match data {
                        Err(e) => ParquetError::External(Box::new(e)),
                        Ok(data) => match tokio::task::spawn_blocking(move || decode(data)).await {
                            Ok(Err(e)) => e,
                            Ok(Ok(())) | Err(_) => continue,
                        },
                    };
                    let file = LakeFile {
                        shown: lake.display(&f.location),
                        origin: t.origin(p),
                    };
                    return Some(LakeFileError::new(&file, &error));
                }
            }
        }
    }
    None
}

/// Decodes every row of a Parquet file.
fn decode(data: bytes::Bytes) -> Result<(), ParquetError> {
    for batch in ParquetRecordBatchReaderBuilder::try_new(data)?.build()? {
        batch.map_err(|e| match e {
            arrow::error::ArrowError::ParquetError(m) => ParquetError::General(m),
            other => ParquetError::General(other.to_string()),
        })?;
    }
    Ok(())
}

/// Registers every lake table over the snapshot's files of `days` (all selected days when
/// `None`), and the dimension tables.
pub async fn register_snapshot(
    ctx: &SessionContext,
    loaded: &LoadedConfig,
    lake: &Lake,
    snapshot: &LakeSnapshot,
    days: Option<&BTreeSet<String>>,
    include_open: bool,
    engine: &QueryEngine,
) -> Result<(), DataFusionError> {
    let store_url = register_store(ctx, lake)?;
    for t in &snapshot.tables {
        let provider = SnapshotTable::new(
            t.table.file_schema.clone(),
            t.table.partition_columns.clone(),
            partitioned_files(lake, t, days, include_open),
            store_url.clone(),
        );
        let name = t.table.name.as_str();
        match merge_query(loaded, name, &t.table.partition_columns) {
            Some(query) => {
                let parts = format!("__parts_{name}");
                ctx.register_table(parts.as_str(), Arc::new(provider))?;
                let view = ctx
                    .sql(&query.replace("{parts}", &parts))
                    .await?
                    .into_view();
                ctx.register_table(name, view)?;
            }
            None => {
                ctx.register_table(name, Arc::new(provider))?;
            }
        }
    }
    register_dimensions(ctx, loaded, !engine.is_embedded()).await
}

/// The lake's object store, registered in the session unless it is the local file system
/// (which every session has); its URL, for the scans.
fn register_store(ctx: &SessionContext, lake: &Lake) -> Result<ObjectStoreUrl, DataFusionError> {
    let mut store_url = lake.url.clone();
    store_url.set_path("");
    if lake.url.scheme() != "file" {
        ctx.register_object_store(&store_url, lake.store.clone());
    }
    ObjectStoreUrl::parse(format!(
        "{}://{}",
        lake.url.scheme(),
        lake.url.host_str().unwrap_or_default()
    ))
}

/// The files a table's scan reads on `days`, each with its partition values (from its path)
/// and the [`LakeFile`] that names it in errors.
fn partitioned_files(
    lake: &Lake,
    t: &TableListing,
    days: Option<&BTreeSet<String>>,
    include_open: bool,
) -> Vec<PartitionedFile> {
    let mut files = Vec::new();
    for day in t.days.keys() {
        if days.is_some_and(|d| !d.contains(day)) {
            continue;
        }
        for p in t.readable(day, include_open) {
            let values: Vec<ScalarValue> = p
                .segments
                .iter()
                .map(|s| {
                    let v = s.split_once('=').map(|(_, v)| v).unwrap_or_default();
                    ScalarValue::Utf8(unescape_partition_value(v))
                })
                .collect();
            let origin = t.origin(p);
            for f in &p.files {
                let mut pf = PartitionedFile::from(f.clone());
                pf.partition_values = values.clone();
                pf.extensions.insert(LakeFile {
                    shown: lake.display(&f.location),
                    origin,
                });
                files.push(pf);
            }
        }
    }
    files
}

/// With a Kafka source each partition of the topic is a unit of state that writes its own
/// rows of a window and key (partial rows, in files `part-…-p<N>-…`). A windowed table is
/// then read through a view that merges them — counts and sums added, minima and maxima
/// kept, sketches merged and estimated again ([`crate::sketch`]) — so reports see the rows
/// of a one-partition lake. `None` for a table that needs no merge.
fn merge_query(loaded: &LoadedConfig, table: &str, partition_columns: &[String]) -> Option<String> {
    use shared::config::SourceConfig;
    if !matches!(loaded.config.source, SourceConfig::Kafka(_)) {
        return None;
    }
    let t = loaded.config.tables.iter().find(|t| t.name == table)?;
    // The columns in the order of the table's read schema: window, keys stored in the
    // files, aggregates (each followed by its sketch), partition columns.
    let mut group: Vec<String> = vec![ident("window_start"), ident("window_end")];
    group.extend(
        t.key
            .iter()
            .filter(|k| !t.partition_by.contains(k))
            .map(|k| ident(k)),
    );
    let mut select = group.clone();
    for a in &t.aggregates {
        select.extend(merged_columns(a));
    }
    for p in partition_columns {
        select.push(ident(p));
        group.push(ident(p));
    }
    Some(format!(
        "SELECT {} FROM {{parts}} GROUP BY {}",
        select.join(", "),
        group.join(", ")
    ))
}

/// The merge of an aggregate's partial values: its column, then its sketch column if any.
fn merged_columns(a: &shared::config::AggregateConfig) -> Vec<String> {
    use shared::config::AggregateFn;
    let c = ident(&a.name);
    match (a.function, a.sketch_column()) {
        (AggregateFn::ApproxDistinct | AggregateFn::ApproxPercentile, Some(s)) => {
            let s = ident(&s);
            let value = if a.function == AggregateFn::ApproxPercentile {
                sketch::percentile_call(&s, a.q)
            } else {
                sketch::distinct_call(&s)
            };
            vec![
                format!("{value} AS {c}"),
                format!("{} AS {s}", sketch::merge_call(&s)),
            ]
        }
        (AggregateFn::Min, _) => vec![format!("MIN({c}) AS {c}")],
        (AggregateFn::Max, _) => vec![format!("MAX({c}) AS {c}")],
        // Validation refuses aggregates that cannot merge (avg, and the approximate ones
        // without their sketch).
        _ => vec![format!("SUM({c}) AS {c}")],
    }
}

/// Registers every table empty, with its schema: enough to plan reports.
pub async fn register_empty(
    ctx: &SessionContext,
    loaded: &LoadedConfig,
) -> Result<(), DataFusionError> {
    for t in lake_tables(loaded) {
        let schema = schema::read_schema(&t.file_schema, &t.partition_columns);
        ctx.register_table(
            t.name.as_str(),
            Arc::new(MemTable::try_new(schema, vec![vec![]])?),
        )?;
    }
    for d in &loaded.config.dimensions {
        ctx.register_table(
            d.name.as_str(),
            Arc::new(MemTable::try_new(dimension_schema(d), vec![vec![]])?),
        )?;
    }
    Ok(())
}

/// Registers the dimension tables: CSV files read by the session, or, for a cluster
/// (`ship`), read here and sent inside the plan ([`DimensionTable`]).
async fn register_dimensions(
    ctx: &SessionContext,
    loaded: &LoadedConfig,
    ship: bool,
) -> Result<(), DataFusionError> {
    for d in &loaded.config.dimensions {
        let path = loaded.resolve(&d.path);
        let path = std::fs::canonicalize(&path).map_err(|e| {
            DataFusionError::Execution(format!(
                "dimension `{}`: cannot read {}: {e}",
                d.name,
                path.display()
            ))
        })?;
        let schema = dimension_schema(d);
        let extension = path
            .extension()
            .and_then(|e| e.to_str())
            .map(|e| format!(".{e}"))
            .unwrap_or_default();
        let options = CsvReadOptions::new()
            .schema(&schema)
            .has_header(true)
            .delimiter(d.delimiter as u8)
            .file_extension(&extension);
        let path = path.to_string_lossy();
        if ship {
            let batches = SessionContext::new()
                .read_csv(path.as_ref(), options)
                .await?
                .collect()
                .await?;
            let table = DimensionTable::new(schema.clone(), batches);
            ctx.register_table(d.name.as_str(), Arc::new(table))?;
        } else {
            ctx.register_csv(d.name.as_str(), path.as_ref(), options)
                .await?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use arrow::array::AsArray;
    use arrow::datatypes::{Float64Type, Int32Type, Int64Type};
    use shared::sketch::Quantiles;

    use super::*;
    use crate::sketch::fixture::{self, Row, digest, hll};

    const KAFKA: &str = "{ kind: kafka, brokers: '127.0.0.1:9092', topic: logs, group: g }";

    #[test]
    fn partial_rows_merge_their_sketches() {
        let loaded = fixture::pipeline(KAFKA, "").unwrap();
        let query = merge_query(&loaded, "hosts_1m", &["dt".into(), "hour".into()]).unwrap();
        assert_eq!(
            query,
            r#"SELECT "window_start", "window_end", "status", SUM("requests") AS "requests", sketch_distinct("hosts_sketch") AS "hosts", sketch_merge("hosts_sketch") AS "hosts_sketch", sketch_percentile("p95_bytes_sketch", 0.95) AS "p95_bytes", sketch_merge("p95_bytes_sketch") AS "p95_bytes_sketch", "dt", "hour" FROM {parts} GROUP BY "window_start", "window_end", "status", "dt", "hour""#
        );
        let stdin = fixture::pipeline("{ kind: stdin }", "").unwrap();
        assert_eq!(merge_query(&stdin, "hosts_1m", &[]), None);
    }

    #[tokio::test]
    async fn the_merged_view_reads_like_one_partition() {
        let loaded = fixture::pipeline(KAFKA, "").unwrap();
        let table = &lake_tables(&loaded)[0];
        let schema = schema::read_schema(&table.file_schema, &table.partition_columns);
        // Two Kafka partitions wrote the same window and status 200; one wrote status 404.
        let rows = [
            Row {
                status: 200,
                hosts: hll(0..3_000),
                bytes: digest(0..500),
            },
            Row {
                status: 404,
                hosts: hll(0..10),
                bytes: digest(0..10),
            },
            Row {
                status: 200,
                hosts: hll(2_000..6_000),
                bytes: digest(500..1_000),
            },
        ];
        let batch = fixture::batch(schema.clone(), &rows);
        let ctx = SessionContext::new();
        crate::sketch::register(&ctx);
        let parts = MemTable::try_new(schema.clone(), vec![vec![batch]]).unwrap();
        ctx.register_table("parts", Arc::new(parts)).unwrap();
        let query = merge_query(&loaded, "hosts_1m", &table.partition_columns).unwrap();
        let view = ctx.sql(&query.replace("{parts}", "parts")).await.unwrap();
        let names = |s: &arrow::datatypes::Schema| -> Vec<String> {
            s.fields().iter().map(|f| f.name().clone()).collect()
        };
        assert_eq!(names(view.schema().as_arrow()), names(&schema));

        let out = view
            .sort_by(vec![datafusion::prelude::col("status")])
            .unwrap();
        let out = arrow::compute::concat_batches(
            &out.schema().inner().clone(),
            &out.collect().await.unwrap(),
        )
        .unwrap();
        let mut hosts = hll(0..3_000);
        hosts.merge(&hll(2_000..6_000));
        let column = |name: &str| out.column_by_name(name).unwrap().clone();
        assert_eq!(
            column("status").as_primitive::<Int32Type>().values(),
            &[200, 404]
        );
        assert_eq!(
            column("requests").as_primitive::<Int64Type>().values(),
            &[2, 1]
        );
        assert_eq!(
            column("hosts").as_primitive::<Int64Type>().values(),
            &[hosts.estimate(), hll(0..10).estimate()]
        );
        assert_eq!(
            column("hosts_sketch").as_binary::<i32>().value(0),
            hosts.to_bytes()
        );
        let p95 = column("p95_bytes").as_primitive::<Float64Type>().value(0);
        assert!((p95 - 950.0).abs() <= 10.0, "{p95}");
        let merged = Quantiles::from_bytes(column("p95_bytes_sketch").as_binary::<i32>().value(0));
        assert_eq!(merged.unwrap().count(), 1_000);
    }
}
