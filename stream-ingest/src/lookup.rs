//! `lookup`: dimension columns added to each event before windowing (a left join with a
//! small table held in memory, by one key column).
//!
//! A dimension file can change while the stage runs. The stage looks at it at every
//! checkpoint and switches to a new version *there*: events before the checkpoint were
//! enriched with the old version, events after it with the new one, and the checkpoint
//! carries the version it switched to (the file's bytes), so a restart after `kill -9`
//! replays the events after the checkpoint with exactly the rows they saw the first time,
//! whatever the file holds by then. A file that cannot be read or parsed at a checkpoint
//! (being rewritten in place) keeps the old version and is tried again at the next one.
//!
//! Per event the cost is one hash lookup of the key; each added column is then one `take`
//! per batch. A miss takes the table's last row, which holds the defaults (or NULLs).
//!
//! The parse threads apply the lookups too ([`crate::prepare`]), with the versions the engine
//! last published ([`Versions`], numbered by a generation). The engine knows which version a
//! chunk must see (the one in use when the chunk reaches it, after every checkpoint before
//! it); a chunk enriched with another generation is enriched again on the engine thread
//! ([`Lookups::finish`]), so the output is the same for any `--threads`.

use hashbrown::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::SystemTime;

use arrow::array::{Array, ArrayRef, AsArray, RecordBatch, UInt32Array, new_null_array};
use arrow::compute::{cast, concat, take};
use arrow::datatypes::{DataType, Int64Type, Schema, SchemaRef};
use arrow::error::ArrowError;
use shared::config::{DimensionConfig, Literal, LookupConfig, PipelineConfig};
use shared::schema;

use crate::checkpoint::LookupSnapshot;

#[derive(Debug, thiserror::Error)]
pub enum LookupError {
    #[error("lookup `{table}`: cannot read {path}: {source}")]
    Read {
        table: String,
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("lookup `{table}`: {path} is not a valid {kind} dimension file: {message}")]
    Parse {
        table: String,
        path: String,
        kind: &'static str,
        message: String,
    },
    #[error("lookup `{table}`: {message}")]
    Apply { table: String, message: String },
}

/// Dimension rows by key: strings, or integers of any width (hashbrown's default hasher: a
/// lookup runs per event, and SipHash is built to resist attacks, not for speed).
enum Rows {
    Str(HashMap<Box<str>, u32>),
    Int(HashMap<i64, u32>),
}

impl Rows {
    fn len(&self) -> usize {
        match self {
            Rows::Str(m) => m.len(),
            Rows::Int(m) => m.len(),
        }
    }

    /// The first row of each key (a batch report's join would repeat the event instead);
    /// NULL keys match nothing.
    fn index(key: &dyn Array) -> Result<Rows, ArrowError> {
        Ok(match key.data_type() {
            DataType::Utf8 => {
                let a = key.as_string::<i32>();
                let mut m = HashMap::with_capacity(a.len());
                for (i, k) in a.iter().enumerate() {
                    if let Some(k) = k {
                        m.entry(Box::from(k)).or_insert(i as u32);
                    }
                }
                Rows::Str(m)
            }
            _ => {
                let a = cast(key, &DataType::Int64)?;
                let mut m = HashMap::with_capacity(a.len());
                for (i, k) in a.as_primitive::<Int64Type>().iter().enumerate() {
                    if let Some(k) = k {
                        m.entry(k).or_insert(i as u32);
                    }
                }
                Rows::Int(m)
            }
        })
    }
}

/// One version of a dimension: its rows by key, and the columns to add (one extra last row
/// of defaults).
struct Loaded {
    /// The version (its bytes and their digest, computed once).
    version: LookupSnapshot,
    rows: Rows,
    columns: Vec<ArrayRef>,
}

impl Loaded {
    /// For each event, the dimension row it takes (the defaults row when none matches).
    fn indices(&self, table: &str, keys: &dyn Array) -> Result<UInt32Array, ArrowError> {
        let miss = self.columns.first().map_or(0, |c| c.len() as u32 - 1);
        Ok(match &self.rows {
            Rows::Str(rows) => {
                let a = keys.as_string_opt::<i32>().ok_or_else(|| {
                    ArrowError::InvalidArgumentError(format!(
                        "lookup `{table}`: the event key is {}, the dimension's is a string",
                        keys.data_type()
                    ))
                })?;
                a.iter()
                    .map(|k| k.and_then(|k| rows.get(k).copied()).unwrap_or(miss))
                    .collect()
            }
            Rows::Int(rows) => {
                let a = cast(keys, &DataType::Int64)?;
                a.as_primitive::<Int64Type>()
                    .iter()
                    .map(|k| k.and_then(|k| rows.get(&k).copied()).unwrap_or(miss))
                    .collect()
            }
        })
    }
}

/// The versions in use of every lookup: all that applying them needs, cheap to clone, so the
/// parse threads can hold one while the engine switches versions.
#[derive(Clone, Default)]
pub struct Versions {
    /// Counts the engine's switches of version (at a checkpoint, or a restore).
    generation: u64,
    /// The schema of enriched batches (`None`: no lookups).
    schema: Option<SchemaRef>,
    /// Each lookup in order: its dimension, the event field matched, the version.
    lookups: Vec<(Arc<str>, usize, Arc<Loaded>)>,
}

impl Versions {
    /// Which versions these are.
    pub fn generation(&self) -> u64 {
        self.generation
    }

    /// `batch` with every lookup's columns appended.
    pub fn apply(&self, batch: RecordBatch) -> Result<RecordBatch, ArrowError> {
        let Some(schema) = &self.schema else {
            return Ok(batch);
        };
        let mut columns = batch.columns().to_vec();
        for (table, field, loaded) in &self.lookups {
            let indices = loaded.indices(table, columns[*field].as_ref())?;
            for c in &loaded.columns {
                columns.push(take(c.as_ref(), &indices, None)?);
            }
        }
        RecordBatch::try_new(schema.clone(), columns)
    }
}

/// The versions the engine uses now, as the parse threads read them.
pub type Published = Arc<Mutex<Versions>>;

/// A batch of events with the lookups a parse thread applied.
#[derive(Debug)]
pub struct Enriched {
    pub batch: RecordBatch,
    /// The [`Versions::generation`] applied.
    pub generation: u64,
}

/// One `lookup` of the pipeline.
struct Lookup {
    config: LookupConfig,
    dim: DimensionConfig,
    path: PathBuf,
    /// The event field matched (index in the batch as it reaches this lookup).
    field: usize,
    /// The schema of the added columns.
    added: SchemaRef,
    /// The file's modification time and length when last read (`None`: read it next time).
    stamp: Option<(SystemTime, u64)>,
    current: Arc<Loaded>,
}

/// Every lookup of a pipeline, in order.
#[derive(Default)]
pub struct Lookups {
    lookups: Vec<Lookup>,
    /// The versions in use.
    versions: Versions,
    /// The same, for the parse threads.
    published: Published,
    /// The number of columns of the events before lookups.
    input_len: usize,
}

fn stamp(path: &Path) -> Option<(SystemTime, u64)> {
    let m = std::fs::metadata(path).ok()?;
    Some((m.modified().ok()?, m.len()))
}

impl Lookups {
    /// Reads every lookup's dimension file; `resolve` turns a dimension's path into a file.
    pub fn open(
        config: &PipelineConfig,
        resolve: impl Fn(&Path) -> PathBuf,
    ) -> Result<Self, LookupError> {
        let input = schema::derived_events_of(config);
        let mut lookups = Vec::new();
        let mut fields: Vec<_> = input.fields().iter().cloned().collect();
        for l in &config.lookup {
            let dim = config
                .dimension(&l.table)
                .cloned()
                .ok_or_else(|| LookupError::Apply {
                    table: l.table.clone(),
                    message: "no such dimension".into(),
                })?;
            let field = fields
                .iter()
                .position(|f| f.name() == l.on.field())
                .ok_or_else(|| LookupError::Apply {
                    table: l.table.clone(),
                    message: format!("no event field `{}`", l.on.field()),
                })?;
            let lookup = Lookup::open(l, dim, field, &resolve)?;
            fields.extend(lookup.added.fields().iter().cloned());
            lookups.push(lookup);
        }
        let schema = (!lookups.is_empty()).then(|| Arc::new(Schema::new(fields)));
        let mut lookups = Lookups {
            lookups,
            versions: Versions {
                schema,
                ..Versions::default()
            },
            published: Published::default(),
            input_len: input.fields().len(),
        };
        lookups.publish();
        Ok(lookups)
    }

    /// The schema of [`Lookups::apply`]'s batches, given that of its input (the events
    /// after `derive`).
    pub fn schema<'a>(&'a self, input: &'a SchemaRef) -> &'a SchemaRef {
        self.versions.schema.as_ref().unwrap_or(input)
    }

    /// The versions in use as the parse threads see them: the engine replaces them at each
    /// switch.
    pub fn published(&self) -> Published {
        self.published.clone()
    }

    /// `batch` with every lookup's columns appended.
    pub fn apply(&self, batch: RecordBatch) -> Result<RecordBatch, ArrowError> {
        self.versions.apply(batch)
    }

    /// The events of a batch a parse thread enriched: as they are when it used the versions
    /// in use, else enriched again (a checkpoint switched versions in between).
    pub fn finish(&self, enriched: Enriched) -> Result<RecordBatch, ArrowError> {
        let none = self.versions.schema.is_none();
        if none || enriched.generation == self.versions.generation {
            return Ok(enriched.batch);
        }
        let input: Vec<usize> = (0..self.input_len).collect();
        self.apply(enriched.batch.project(&input)?)
    }

    /// At a checkpoint: switches to the new version of every dimension file that changed
    /// (a file that cannot be read now keeps its version, with a warning).
    pub fn refresh(&mut self) {
        let mut changed = false;
        for l in &mut self.lookups {
            changed |= l.refresh();
        }
        if changed {
            self.publish();
        }
    }

    /// Makes the current versions the ones in use, under a new generation, for the engine
    /// and the parse threads.
    fn publish(&mut self) {
        self.versions = Versions {
            generation: self.versions.generation + 1,
            schema: self.versions.schema.clone(),
            lookups: self
                .lookups
                .iter()
                .map(|l| {
                    (
                        Arc::from(l.config.table.as_str()),
                        l.field,
                        l.current.clone(),
                    )
                })
                .collect(),
        };
        *self.published.lock().unwrap_or_else(|e| e.into_inner()) = self.versions.clone();
    }

    /// The versions in use, for a checkpoint.
    pub fn snapshot(&self) -> Vec<LookupSnapshot> {
        self.lookups
            .iter()
            .map(|l| l.current.version.clone())
            .collect()
    }

    /// Takes the versions a checkpoint recorded (the files on disk are looked at again at
    /// the next checkpoint).
    pub fn restore(&mut self, snapshots: Vec<LookupSnapshot>) -> Result<(), LookupError> {
        for (l, s) in self.lookups.iter_mut().zip(snapshots) {
            if s.table != l.config.table {
                return Err(LookupError::Apply {
                    table: l.config.table.clone(),
                    message: format!(
                        "the checkpoint holds lookup `{}` here; the pipeline's lookups changed: rebuild with --from-scratch",
                        s.table
                    ),
                });
            }
            if s.data.len() as u64 != s.len {
                return Err(LookupError::Apply {
                    table: l.config.table.clone(),
                    message: "the checkpoint was read without its dimension version".into(),
                });
            }
            // Its digest was checked when the checkpoint was read: not computed again.
            l.current = Arc::new(l.load(s)?);
            l.stamp = None;
        }
        self.publish();
        Ok(())
    }
}

impl Lookup {
    /// `l` on its dimension `dim`, matching event field number `field`: its file read now.
    fn open(
        l: &LookupConfig,
        dim: DimensionConfig,
        field: usize,
        resolve: impl Fn(&Path) -> PathBuf,
    ) -> Result<Self, LookupError> {
        let added: Vec<_> = schema::lookup_columns(l, &dim)
            .into_iter()
            .map(|c| {
                let data_type = shared::types::arrow_type(c.data_type);
                arrow::datatypes::Field::new(&c.name, data_type, true)
            })
            .collect();
        let path = resolve(&dim.path);
        let mut lookup = Lookup {
            config: l.clone(),
            stamp: stamp(&path),
            path,
            field,
            added: Arc::new(Schema::new(added)),
            current: Arc::new(Loaded {
                version: LookupSnapshot::new(&l.table, Arc::from([])),
                rows: Rows::Int(HashMap::new()),
                columns: Vec::new(),
            }),
            dim,
        };
        let data = std::fs::read(&lookup.path).map_err(|source| LookupError::Read {
            table: l.table.clone(),
            path: lookup.path.display().to_string(),
            source,
        })?;
        lookup.current = Arc::new(lookup.load(LookupSnapshot::new(&l.table, Arc::from(data)))?);
        Ok(lookup)
    }

    /// Reads the file again if it changed; whether the version in use changed.
    fn refresh(&mut self) -> bool {
        let now = stamp(&self.path);
        if now.is_some() && now == self.stamp {
            return false;
        }
        let data = match std::fs::read(&self.path) {
            Ok(d) => d,
            Err(e) => {
                tracing::warn!(table = %self.config.table, path = %self.path.display(), error = %e, "cannot read the dimension file; keeping the version in use");
                return false;
            }
        };
        if *data == *self.current.version.data {
            self.stamp = now;
            return false;
        }
        match self.load(LookupSnapshot::new(&self.config.table, Arc::from(data))) {
            Ok(loaded) => {
                tracing::info!(table = %self.config.table, rows = loaded.rows.len(), "dimension file changed: new version from this checkpoint on");
                self.current = Arc::new(loaded);
                self.stamp = now;
                true
            }
            Err(e) => {
                tracing::warn!(error = %e, "keeping the version in use");
                false
            }
        }
    }

    fn parse_error(&self, message: impl ToString) -> LookupError {
        LookupError::Parse {
            table: self.config.table.clone(),
            path: self.path.display().to_string(),
            kind: if self.dim.is_parquet() {
                "Parquet"
            } else {
                "CSV"
            },
            message: message.to_string(),
        }
    }

    /// Parses one version of the file.
    fn load(&self, version: LookupSnapshot) -> Result<Loaded, LookupError> {
        let full = shared::schema::dimension_schema(&self.dim);
        let data = &version.data;
        let batch = if self.dim.is_parquet() {
            read_parquet(data, &full)
        } else {
            read_csv(data, &full, self.dim.delimiter).map_err(|e| e.to_string())
        }
        .map_err(|e| self.parse_error(e))?;
        let key = batch.column(
            full.index_of(self.config.on.column())
                .map_err(|e| self.parse_error(e))?,
        );
        let rows = Rows::index(key.as_ref()).map_err(|e| self.parse_error(e))?;
        let columns = self
            .added
            .fields()
            .iter()
            .map(|f| {
                let col = batch.column(full.index_of(f.name()).map_err(|e| self.parse_error(e))?);
                let default = self.default_of(f.name(), f.data_type())?;
                concat(&[col.as_ref(), default.as_ref()]).map_err(|e| self.parse_error(e))
            })
            .collect::<Result<_, _>>()?;
        Ok(Loaded {
            version,
            rows,
            columns,
        })
    }

    /// A one-row array: the column's default, or NULL.
    fn default_of(&self, name: &str, t: &DataType) -> Result<ArrayRef, LookupError> {
        let value: ArrayRef = match self.config.defaults.get(name) {
            None => return Ok(new_null_array(t, 1)),
            Some(Literal::String(s)) => Arc::new(arrow::array::StringArray::from(vec![s.as_str()])),
            Some(Literal::Int(i)) => Arc::new(arrow::array::Int64Array::from(vec![*i])),
            Some(Literal::Float(f)) => Arc::new(arrow::array::Float64Array::from(vec![*f])),
            Some(Literal::Bool(b)) => Arc::new(arrow::array::BooleanArray::from(vec![*b])),
        };
        cast(&value, t).map_err(|e| self.parse_error(format!("default of `{name}`: {e}")))
    }
}

fn read_csv(data: &[u8], schema: &SchemaRef, delimiter: char) -> Result<RecordBatch, ArrowError> {
    let reader = arrow::csv::ReaderBuilder::new(schema.clone())
        .with_header(true)
        .with_delimiter(delimiter as u8)
        .build(std::io::Cursor::new(data))?;
    let batches = reader.collect::<Result<Vec<_>, _>>()?;
    arrow::compute::concat_batches(schema, &batches)
}

fn read_parquet(data: &[u8], schema: &SchemaRef) -> Result<RecordBatch, String> {
    let reader = parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder::try_new(
        bytes::Bytes::from(data.to_vec()),
    )
    .and_then(|b| b.build())
    .map_err(|e| e.to_string())?;
    let mut columns: Vec<Vec<ArrayRef>> = vec![Vec::new(); schema.fields().len()];
    for batch in reader {
        let batch = batch.map_err(|e| e.to_string())?;
        for (i, f) in schema.fields().iter().enumerate() {
            let col = batch
                .column_by_name(f.name())
                .ok_or_else(|| format!("no column `{}`", f.name()))?;
            columns[i].push(cast(col, f.data_type()).map_err(|e| e.to_string())?);
        }
    }
    let columns = schema
        .fields()
        .iter()
        .zip(columns)
        .map(|(f, parts)| {
            if parts.is_empty() {
                return Ok(new_null_array(f.data_type(), 0));
            }
            let refs: Vec<&dyn Array> = parts.iter().map(|a| a.as_ref()).collect();
            concat(&refs).map_err(|e| e.to_string())
        })
        .collect::<Result<Vec<_>, String>>()?;
    RecordBatch::try_new(schema.clone(), columns).map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow::array::{Int32Array, StringArray};
    use shared::config::load_str;

    const PIPELINE: &str = "\
name: t
source: { kind: stdin }
format: { kind: apache }
event_time: { field: ts, max_out_of_orderness: 60s }
derive:
  - { name: code, expr: CAST(status AS BIGINT) }
lookup:
  - { table: codes, on: status, columns: [label], defaults: { label: other } }
  - { table: agents, on: { field: user_agent, column: agent }, columns: [kind] }
dimensions:
  - name: codes
    path: codes.csv
    columns: [{ name: status, type: int32 }, { name: label, type: string }]
  - name: agents
    path: agents.csv
    columns: [{ name: agent, type: string }, { name: kind, type: string }]
tables:
  - name: t
    window: { kind: tumbling, size: 1m }
    key: [label, kind]
    aggregates: [{ name: n, fn: count }]
lake: { root: lake }
";

    fn open(dir: &Path) -> (Lookups, SchemaRef) {
        let loaded = load_str(PIPELINE, &dir.join("p.yaml")).unwrap();
        let lookups = Lookups::open(&loaded.config, |p| dir.join(p)).unwrap();
        (lookups, schema::derived_events_of(&loaded.config))
    }

    /// Events with only `status` and `user_agent` set.
    fn events(schema: &SchemaRef, status: &[Option<i32>], agents: &[Option<&str>]) -> RecordBatch {
        let columns = schema
            .fields()
            .iter()
            .map(|f| match f.name().as_str() {
                "status" => Arc::new(Int32Array::from(status.to_vec())) as ArrayRef,
                "user_agent" => Arc::new(StringArray::from(agents.to_vec())) as ArrayRef,
                _ if f.is_nullable() => new_null_array(f.data_type(), status.len()),
                _ => {
                    let zero: ArrayRef = Arc::new(arrow::array::Int64Array::from(vec![0]));
                    let one = cast(&zero, f.data_type()).unwrap();
                    let idx = UInt32Array::from(vec![0; status.len()]);
                    take(one.as_ref(), &idx, None).unwrap()
                }
            })
            .collect();
        RecordBatch::try_new(schema.clone(), columns).unwrap()
    }

    fn column(batch: &RecordBatch, name: &str) -> Vec<Option<String>> {
        let a = batch.column_by_name(name).unwrap();
        let a = a.as_string::<i32>();
        a.iter().map(|v| v.map(str::to_string)).collect()
    }

    fn s(v: &[Option<&str>]) -> Vec<Option<String>> {
        v.iter().map(|x| x.map(str::to_string)).collect()
    }

    fn write(dir: &Path, codes: &str) {
        std::fs::write(dir.join("codes.csv"), codes).unwrap();
        std::fs::write(
            dir.join("agents.csv"),
            "agent,kind\nbot/1,bot\nbot/1,human\n",
        )
        .unwrap();
    }

    #[test]
    fn hit_miss_default_and_null_keys() {
        let dir = tempfile::tempdir().unwrap();
        write(dir.path(), "status,label\n200,ok\n404,missing\n");
        let (l, schema) = open(dir.path());
        let batch = events(
            &schema,
            &[Some(200), Some(500), Some(201), Some(404)],
            &[Some("bot/1"), Some("x"), None, Some("bot/1")],
        );
        let out = l.apply(batch).unwrap();
        // A miss takes the default; a miss or a NULL key without a default gives NULL.
        assert_eq!(
            column(&out, "label"),
            s(&[Some("ok"), Some("other"), Some("other"), Some("missing")])
        );
        // The first row of a key wins.
        assert_eq!(
            column(&out, "kind"),
            s(&[Some("bot"), None, None, Some("bot")])
        );
        assert_eq!(out.schema().fields().len(), schema.fields().len() + 2);
    }

    #[test]
    fn a_changed_file_is_taken_at_refresh_and_a_snapshot_replays_the_old_one() {
        let dir = tempfile::tempdir().unwrap();
        write(dir.path(), "status,label\n200,ok\n");
        let (mut l, schema) = open(dir.path());
        let batch = events(&schema, &[Some(200)], &[None]);
        let saved = l.snapshot();
        // Rewritten (another length, so the change is seen within one mtime tick).
        write(dir.path(), "status,label\n200,fine\n");
        assert_eq!(
            column(&l.apply(batch.clone()).unwrap(), "label"),
            s(&[Some("ok")])
        );
        l.refresh();
        assert_eq!(
            column(&l.apply(batch.clone()).unwrap(), "label"),
            s(&[Some("fine")])
        );
        // A broken file keeps the version in use.
        std::fs::write(
            dir.path().join("codes.csv"),
            "status,label\nnot a number,x,y\n",
        )
        .unwrap();
        l.refresh();
        assert_eq!(
            column(&l.apply(batch.clone()).unwrap(), "label"),
            s(&[Some("fine")])
        );
        // Restoring a checkpoint takes its version, whatever the file holds.
        l.restore(saved).unwrap();
        assert_eq!(column(&l.apply(batch).unwrap(), "label"), s(&[Some("ok")]));
    }

    /// What a parse thread does: the published versions, applied to a chunk.
    fn on_a_parse_thread(l: &Lookups, batch: &RecordBatch) -> Enriched {
        let versions = l.published().lock().unwrap().clone();
        Enriched {
            generation: versions.generation(),
            batch: versions.apply(batch.clone()).unwrap(),
        }
    }

    #[test]
    fn a_chunk_enriched_before_a_switch_is_enriched_again() {
        let dir = tempfile::tempdir().unwrap();
        write(dir.path(), "status,label\n200,ok\n");
        let (mut l, schema) = open(dir.path());
        let batch = events(&schema, &[Some(200), Some(404)], &[None, Some("bot/1")]);
        let before = on_a_parse_thread(&l, &batch);
        // Nothing changed: the worker's columns are taken as they are.
        l.refresh();
        let same = on_a_parse_thread(&l, &batch);
        assert_eq!(same.generation, before.generation);
        assert_eq!(
            column(&l.finish(same).unwrap(), "label"),
            s(&[Some("ok"), Some("other")])
        );
        // The file changed and the checkpoint switched: the old chunk gets the new version.
        write(dir.path(), "status,label\n200,fine\n404,gone\n");
        l.refresh();
        let out = l.finish(before).unwrap();
        assert_eq!(column(&out, "label"), s(&[Some("fine"), Some("gone")]));
        assert_eq!(column(&out, "kind"), s(&[None, Some("bot")]));
        assert_eq!(out.schema(), l.schema(&schema).clone());
        // Workers see the new version from then on; a restore switches again.
        let after = on_a_parse_thread(&l, &batch);
        let saved = l.snapshot();
        assert_eq!(l.finish(after).unwrap(), out);
        let stale = on_a_parse_thread(&l, &batch);
        l.restore(saved).unwrap();
        assert_ne!(on_a_parse_thread(&l, &batch).generation, stale.generation);
        assert_eq!(l.finish(stale).unwrap(), out);
    }

    #[test]
    fn parquet_dimensions_are_read_by_column_name() {
        let dir = tempfile::tempdir().unwrap();
        write(dir.path(), "status,label\n");
        let schema = Arc::new(Schema::new(vec![
            arrow::datatypes::Field::new("label", DataType::Utf8, true),
            arrow::datatypes::Field::new("status", DataType::Int64, true),
        ]));
        let batch = RecordBatch::try_new(
            schema.clone(),
            vec![
                Arc::new(StringArray::from(vec!["teapot"])),
                Arc::new(arrow::array::Int64Array::from(vec![418])),
            ],
        )
        .unwrap();
        let mut bytes = Vec::new();
        let mut w = parquet::arrow::ArrowWriter::try_new(&mut bytes, schema, None).unwrap();
        w.write(&batch).unwrap();
        w.close().unwrap();
        std::fs::write(dir.path().join("codes.parquet"), bytes).unwrap();
        let yaml = PIPELINE.replace("codes.csv", "codes.parquet");
        let loaded = load_str(&yaml, &dir.path().join("p.yaml")).unwrap();
        let l = Lookups::open(&loaded.config, |p| dir.path().join(p)).unwrap();
        let events = events(
            &schema::derived_events_of(&loaded.config),
            &[Some(418)],
            &[None],
        );
        assert_eq!(
            column(&l.apply(events).unwrap(), "label"),
            s(&[Some("teapot")])
        );
    }

    #[test]
    fn a_missing_file_is_a_clear_error() {
        let dir = tempfile::tempdir().unwrap();
        let loaded = load_str(PIPELINE, &dir.path().join("p.yaml")).unwrap();
        let err = Lookups::open(&loaded.config, |p| dir.path().join(p))
            .err()
            .unwrap();
        assert!(
            err.to_string().starts_with("lookup `codes`: cannot read"),
            "{err}"
        );
    }
}
