//! From emitted rows to Parquet files in the lake.
//!
//! Rows are buffered per lake partition (`dt`/`hour` of the row's time column, then any
//! `partition_by` keys) until the partition is complete, i.e. no open or future window can
//! still add a row to it: a complete partition becomes one file, and is committed (its
//! `_SUCCESS` marker) once the watermark passed its end by the commit delay
//! ([`complete_through`], the one rule for both). The table's rolling policy
//! ([`RollingConfig`]) writes a partition's rows early, at a checkpoint, when it holds too
//! many rows or bytes or waited too long ([`TableSink::roll`]): so a partition gets at most
//! one file per checkpoint, and memory is bounded by what arrives between two checkpoints.
//! Files are encoded here and handed to the writer task, which stages and publishes them
//! through [`shared::commit`]; their names carry the id of the checkpoint that commits them.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::Arc;
use std::time::Instant;

use arrow::array::{Array, AsArray, RecordBatch, UInt32Array};
use arrow::compute::{concat_batches, take_record_batch};
use arrow::datatypes::{SchemaRef, TimestampMicrosecondType};
use arrow::error::ArrowError;
use arrow::util::display::{ArrayFormatter, FormatOptions};
use bytes::Bytes;
use chrono::{DateTime, Utc};
use parquet::arrow::ArrowWriter;
use parquet::basic::Compression;
use parquet::errors::ParquetError;
use parquet::file::properties::WriterProperties;
use shared::commit::PartitionMarker;
use shared::config::{RollingConfig, TimePartitioning};
use shared::lake::{Lake, PartitionPath};

use crate::checkpoint::state::{BufferSnapshot, SinkSnapshot, UncommittedFiles};

/// Rows per Parquet row group.
const ROW_GROUP_ROWS: usize = 1_000_000;

/// A file ready to be staged and published.
#[derive(Debug)]
pub struct EncodedFile {
    pub table: String,
    pub partition: PartitionPath,
    pub name: String,
    pub data: Bytes,
    pub rows: u64,
    /// When the windows whose rows it holds closed (for the freshness metric; empty after a
    /// restart and for late events).
    pub closed: Vec<Instant>,
}

#[derive(Debug, thiserror::Error)]
pub enum SinkError {
    #[error("arrow: {0}")]
    Arrow(#[from] ArrowError),
    #[error("parquet: {0}")]
    Parquet(#[from] ParquetError),
}

struct Buffer {
    batches: Vec<RecordBatch>,
    rows: usize,
    /// Arrow memory of `batches`.
    bytes: usize,
    /// End of the partition's time range (µs): complete once nothing can start before it.
    time_end: i64,
    first_time: i64,
    /// Wall clock (ms since the epoch) when the first row was buffered.
    opened_ms: i64,
    /// When the windows of the buffered rows closed, one entry per emission.
    closed: Vec<Instant>,
}

/// Buffers one table's rows by partition and cuts them into files.
pub struct TableSink {
    table: String,
    /// Schema of the files: the rows' schema minus the `partition_by` columns.
    file_schema: SchemaRef,
    time_column: usize,
    partition_keys: Vec<(String, usize)>,
    file_columns: Vec<usize>,
    time_partitioning: TimePartitioning,
    buffers: BTreeMap<PartitionPath, Buffer>,
    /// Partitions with files, not yet committed.
    written: BTreeMap<PartitionPath, UncommittedFiles>,
    /// Whether partitions get `_SUCCESS` markers (not the late table: it has no end).
    commit_markers: bool,
    rolling: RollingConfig,
    /// The checkpoint that will commit the files cut now.
    checkpoint: u64,
    compression: Compression,
    /// The unit of state whose files these are (`p3`), in their names.
    unit: Option<String>,
}

/// How a [`TableSink`] partitions, rolls and commits a table's rows.
#[derive(Debug, Clone, Copy)]
pub struct SinkOptions<'a> {
    /// The timestamp column that picks `dt`/`hour`.
    pub time_column: usize,
    /// Further partition key columns (`partition_by`).
    pub partition_by: &'a [String],
    pub rolling: &'a RollingConfig,
    /// Whether complete partitions get a `_SUCCESS` marker (not the late table: it has no
    /// end).
    pub commit_markers: bool,
}

impl TableSink {
    pub fn new(table: &str, schema: SchemaRef, options: SinkOptions<'_>, lake: &Lake) -> Self {
        let SinkOptions {
            time_column,
            partition_by,
            rolling,
            commit_markers,
        } = options;
        let partition_keys: Vec<(String, usize)> = partition_by
            .iter()
            .map(|k| {
                (
                    k.clone(),
                    schema.index_of(k).expect("validated partition key"),
                )
            })
            .collect();
        let file_columns: Vec<usize> = (0..schema.fields().len())
            .filter(|i| !partition_keys.iter().any(|(_, k)| k == i))
            .collect();
        let file_schema = Arc::new(schema.project(&file_columns).expect("indices are in range"));
        TableSink {
            table: table.to_string(),
            file_schema,
            time_column,
            partition_keys,
            file_columns,
            time_partitioning: lake.time_partitioning,
            buffers: BTreeMap::new(),
            written: BTreeMap::new(),
            commit_markers,
            rolling: rolling.clone(),
            checkpoint: 1,
            compression: Compression::SNAPPY,
            unit: None,
        }
    }

    /// Files are compressed with this codec (default snappy).
    pub fn with_compression(mut self, compression: Compression) -> Self {
        self.compression = compression;
        self
    }

    /// Files cut from now on are committed by checkpoint `id`.
    pub fn set_checkpoint(&mut self, id: u64) {
        self.checkpoint = id;
    }

    /// The end of the earliest partition with rows not written yet.
    pub fn earliest_buffered_end(&self) -> Option<i64> {
        self.buffers.values().map(|b| b.time_end).min()
    }

    /// Names the files of a unit of state (a Kafka partition's: `part-<time>-p3-c…`).
    pub fn set_unit(&mut self, unit: Option<String>) {
        self.unit = unit;
    }

    #[cfg(test)]
    fn file_schema(&self) -> &SchemaRef {
        &self.file_schema
    }

    /// Arrow memory of the rows waiting for their partition.
    pub fn buffered_bytes(&self) -> usize {
        self.buffers.values().map(|b| b.bytes).sum()
    }

    /// Rows waiting for their partition.
    #[cfg(test)]
    fn buffered_rows(&self) -> usize {
        self.buffers.values().map(|b| b.rows).sum()
    }

    /// Splits `batch` by partition into the buffers. `closed`: when its windows closed.
    pub fn add(
        &mut self,
        batch: &RecordBatch,
        lake: &Lake,
        closed: Option<Instant>,
    ) -> Result<(), SinkError> {
        let now = now_ms();
        for (part, runs) in self.runs_by_partition(batch, lake) {
            let taken = runs.take(batch)?.project(&self.file_columns)?;
            let buf = self.buffers.entry(part).or_insert(Buffer {
                batches: Vec::new(),
                rows: 0,
                bytes: 0,
                time_end: runs.time_end,
                first_time: runs.first_time,
                opened_ms: now,
                closed: Vec::new(),
            });
            if let Some(at) = closed {
                buf.closed.push(at);
            }
            buf.rows += taken.num_rows();
            buf.bytes += taken.get_array_memory_size();
            buf.batches.push(taken);
        }
        Ok(())
    }

    /// The rows of `batch` by partition, as runs of consecutive rows. Emitted rows come
    /// sorted by time, so a time partition is one run, and a partition path is built once
    /// per run, not once per row.
    fn runs_by_partition(&self, batch: &RecordBatch, lake: &Lake) -> BTreeMap<PartitionPath, Runs> {
        let times = batch
            .column(self.time_column)
            .as_primitive::<TimestampMicrosecondType>();
        let mut keys = KeyValues::new(batch, &self.partition_keys);
        let mut groups: BTreeMap<PartitionPath, Runs> = BTreeMap::new();
        if batch.num_rows() == 0 {
            return groups;
        }
        let mut run_start = 0;
        let mut range = (i64::MAX, i64::MIN);
        for row in 0..=batch.num_rows() {
            let boundary = row == batch.num_rows() || {
                let t = times.value(row);
                let same_time = t >= range.0 && t < range.1;
                if !same_time {
                    range = self.time_range(t);
                }
                let same_keys = keys.same_as_previous(row);
                !(same_time && same_keys) && row > 0
            };
            if !boundary {
                continue;
            }
            let t = times.value(run_start);
            let mut part = lake.time_partition(t);
            keys.push_values(&mut part, run_start);
            let runs = groups.entry(part).or_insert_with(|| Runs {
                ranges: Vec::new(),
                time_end: self.time_range(t).1,
                first_time: t,
            });
            runs.ranges.push((run_start, row));
            run_start = row;
        }
        groups
    }

    /// Files for the partitions the rolling policy says to write now (called at checkpoints).
    pub fn roll(&mut self, now_ms: i64) -> Result<Vec<EncodedFile>, SinkError> {
        let r = &self.rolling;
        let max_open_ms = r.max_open_time.map(|d| d.0.as_millis() as i64);
        let due: Vec<PartitionPath> = self
            .buffers
            .iter()
            .filter(|(_, b)| {
                let full = b.rows as u64 >= r.max_rows || b.bytes as u64 >= r.max_bytes.0;
                let old = max_open_ms.is_some_and(|m| now_ms - b.opened_ms >= m);
                (full || old || r.on_checkpoint) && b.bytes as u64 >= r.min_size.0
            })
            .map(|(p, _)| p.clone())
            .collect();
        let mut files = Vec::new();
        for p in due {
            let buf = self.buffers.remove(&p).expect("listed above");
            tracing::debug!(table = %self.table, partition = %p, rows = buf.rows, "rolling");
            files.push(self.cut(p, buf)?);
        }
        Ok(files)
    }

    /// Files for every partition whose time range ends at or before `low_water_start` (no
    /// open window can add a row to it: see [`crate::table::WindowedTable::low_water_start`]).
    pub fn complete(&mut self, low_water_start: i64) -> Result<Vec<EncodedFile>, SinkError> {
        let done: Vec<PartitionPath> = self
            .buffers
            .iter()
            .filter(|(_, b)| b.time_end <= low_water_start)
            .map(|(p, _)| p.clone())
            .collect();
        let mut files = Vec::new();
        for p in done {
            let buf = self.buffers.remove(&p).expect("listed above");
            files.push(self.cut(p, buf)?);
        }
        Ok(files)
    }

    /// Files for every buffered partition.
    pub fn flush_all(&mut self) -> Result<Vec<EncodedFile>, SinkError> {
        self.complete(i64::MAX)
    }

    /// The buffered rows, for a checkpoint.
    pub fn snapshot(&self) -> Result<SinkSnapshot, SinkError> {
        let mut partitions = Vec::new();
        for (p, buf) in &self.buffers {
            let mut ipc = Vec::new();
            let mut w = arrow::ipc::writer::StreamWriter::try_new(&mut ipc, &self.file_schema)?;
            for b in &buf.batches {
                w.write(b)?;
            }
            w.finish()?;
            drop(w);
            partitions.push(BufferSnapshot {
                segments: p.segments.clone(),
                time_end: buf.time_end,
                first_time: buf.first_time,
                opened_ms: buf.opened_ms,
                ipc,
            });
        }
        let written = self
            .written
            .iter()
            .map(|(p, w)| (p.segments.clone(), w.clone()))
            .collect();
        Ok(SinkSnapshot {
            partitions,
            written,
        })
    }

    /// Replaces the buffered rows by a checkpoint's.
    pub fn restore(&mut self, snapshot: SinkSnapshot) -> Result<(), SinkError> {
        self.buffers.clear();
        self.written = snapshot
            .written
            .into_iter()
            .map(|(segments, w)| (PartitionPath { segments }, w))
            .collect();
        for b in snapshot.partitions {
            let reader =
                arrow::ipc::reader::StreamReader::try_new(std::io::Cursor::new(b.ipc), None)?;
            let batches = reader
                .map(|b| conform(b?, &self.file_schema))
                .collect::<Result<Vec<_>, _>>()?;
            let rows = batches.iter().map(|b| b.num_rows()).sum();
            let bytes = batches.iter().map(|b| b.get_array_memory_size()).sum();
            let part = PartitionPath {
                segments: b.segments,
            };
            self.buffers.insert(
                part,
                Buffer {
                    batches,
                    rows,
                    bytes,
                    time_end: b.time_end,
                    first_time: b.first_time,
                    opened_ms: b.opened_ms,
                    closed: Vec::new(),
                },
            );
        }
        Ok(())
    }

    fn time_range(&self, t: i64) -> (i64, i64) {
        let len: i64 = match self.time_partitioning {
            TimePartitioning::Hour => 3_600_000_000,
            TimePartitioning::Day => 86_400_000_000,
        };
        let start = t - t.rem_euclid(len);
        (start, start.saturating_add(len))
    }

    /// Partitions to commit: files written, nothing buffered, and ending at or before
    /// `complete` ([`complete_through`]). Their markers record `watermark`.
    pub fn ready_markers(&mut self, complete: i64, watermark: i64) -> Vec<PartitionMarker> {
        let ready: Vec<PartitionPath> = self
            .written
            .iter()
            .filter(|(p, w)| w.time_end <= complete && !self.buffers.contains_key(p))
            .map(|(p, _)| p.clone())
            .collect();
        ready
            .into_iter()
            .map(|p| {
                let w = self.written.remove(&p).expect("listed above");
                PartitionMarker {
                    table: self.table.clone(),
                    partition: p.segments,
                    rows: w.rows,
                    files: w.files,
                    watermark,
                    checkpoint: self.checkpoint,
                }
            })
            .collect()
    }

    /// Encodes a buffer as a file and remembers it for the partition's commit.
    fn cut(&mut self, partition: PartitionPath, buf: Buffer) -> Result<EncodedFile, SinkError> {
        let time_end = buf.time_end;
        let file = self.encode(partition, buf)?;
        if self.commit_markers {
            let w = self.written.entry(file.partition.clone()).or_default();
            w.files.push(file.name.clone());
            w.rows += file.rows;
            w.time_end = time_end;
        }
        Ok(file)
    }

    fn encode(&self, partition: PartitionPath, buf: Buffer) -> Result<EncodedFile, SinkError> {
        let (data, rows) = write_parquet(&self.file_schema, &buf.batches, self.compression)?;
        let label = DateTime::<Utc>::from_timestamp_micros(buf.first_time)
            .unwrap_or_default()
            .format("%Y%m%dT%H%M%S");
        let label = match &self.unit {
            Some(unit) => format!("{label}-{unit}"),
            None => label.to_string(),
        };
        let name = shared::commit::data_file_name(&label, self.checkpoint, &data);
        Ok(EncodedFile {
            table: self.table.clone(),
            partition,
            name,
            data: Bytes::from(data),
            rows,
            closed: buf.closed,
        })
    }
}

/// Rows buffered under an earlier pipeline file, in today's columns (matched by name): a
/// column added since is NULL, a column removed since is dropped.
fn conform(batch: RecordBatch, schema: &SchemaRef) -> Result<RecordBatch, ArrowError> {
    if batch.schema().fields() == schema.fields() {
        return Ok(batch);
    }
    let columns = schema
        .fields()
        .iter()
        .map(|f| match batch.column_by_name(f.name()) {
            Some(c) if c.data_type() == f.data_type() => Ok(c.clone()),
            Some(c) => arrow::compute::cast(c, f.data_type()),
            None => Ok(arrow::array::new_null_array(
                f.data_type(),
                batch.num_rows(),
            )),
        })
        .collect::<Result<_, _>>()?;
    RecordBatch::try_new(schema.clone(), columns)
}

/// The rule for when a lake partition is complete: no open window can still add a row to it
/// (it ends at or before the table's `low_water_start`), and the watermark passed its end by
/// the commit delay. Every partition ending at or before the instant returned is complete:
/// a sink commits those of its partitions whose rows are all written
/// ([`TableSink::ready_markers`]), and an engine's commit horizon is the earliest of its
/// tables' (where several engines write one table, `crate::board` commits by it).
pub fn complete_through(low_water_start: i64, watermark: i64, commit_delay: i64) -> i64 {
    low_water_start.min(watermark.saturating_sub(commit_delay))
}

/// Encodes rows as one Parquet file: every data file of the lake is written here. Returns
/// the bytes and the number of rows.
pub fn write_parquet(
    schema: &SchemaRef,
    batches: &[RecordBatch],
    compression: Compression,
) -> Result<(Vec<u8>, u64), SinkError> {
    let batch = concat_batches(schema, batches)?;
    let props = WriterProperties::builder()
        .set_compression(compression)
        .set_max_row_group_row_count(Some(ROW_GROUP_ROWS))
        .build();
    let mut data = Vec::with_capacity(batch.get_array_memory_size() / 4 + 1024);
    let mut writer = ArrowWriter::try_new(&mut data, schema.clone(), Some(props))?;
    writer.write(&batch)?;
    writer.close()?;
    Ok((data, batch.num_rows() as u64))
}

/// The wall clock in milliseconds since the epoch (rolling by open time).
pub fn now_ms() -> i64 {
    Utc::now().timestamp_millis()
}

/// The rows of one partition in a batch: runs of consecutive rows, in row order.
struct Runs {
    ranges: Vec<(usize, usize)>,
    /// The end of the partition's time range, and the time of its first row.
    time_end: i64,
    first_time: i64,
}

impl Runs {
    /// The rows: the batch itself when they are all of it, else a copy (a slice would keep
    /// the whole batch alive, and count its size, until the partition is written).
    fn take(&self, batch: &RecordBatch) -> Result<RecordBatch, ArrowError> {
        match self.ranges[..] {
            [(0, end)] if end == batch.num_rows() => Ok(batch.clone()),
            _ => {
                let rows = self.ranges.iter().flat_map(|&(s, e)| s as u32..e as u32);
                take_record_batch(batch, &UInt32Array::from_iter_values(rows))
            }
        }
    }
}

/// The `partition_by` values of a batch's rows as text (a value's display form; NULL is
/// `None`), with one formatter per column and no allocation per row.
struct KeyValues<'a> {
    columns: Vec<(&'a str, &'a dyn Array, Option<ArrayFormatter<'a>>)>,
    /// The previous row's values (`None`: NULL), and a scratch buffer.
    previous: Vec<Option<String>>,
    scratch: String,
}

impl<'a> KeyValues<'a> {
    fn new(batch: &'a RecordBatch, keys: &'a [(String, usize)]) -> Self {
        let options = FormatOptions::default();
        let columns = keys
            .iter()
            .map(|(name, col)| {
                let array = batch.column(*col).as_ref();
                let format = ArrayFormatter::try_new(array, &options).ok();
                (name.as_str(), array, format)
            })
            .collect();
        KeyValues {
            columns,
            previous: vec![None; keys.len()],
            scratch: String::new(),
        }
    }

    /// Whether `row` has the values of the row before it (which it then remembers).
    fn same_as_previous(&mut self, row: usize) -> bool {
        let mut same = true;
        for (i, (_, array, format)) in self.columns.iter().enumerate() {
            let value = match format {
                Some(f) if !array.is_null(row) => {
                    self.scratch.clear();
                    let _ = write!(self.scratch, "{}", f.value(row));
                    Some(self.scratch.as_str())
                }
                _ => None,
            };
            if self.previous[i].as_deref() != value || row == 0 {
                same = false;
                self.previous[i] = value.map(str::to_string);
            }
        }
        same
    }

    /// Appends the partition values of `row` to `part`.
    fn push_values(&self, part: &mut PartitionPath, row: usize) {
        for (name, array, format) in &self.columns {
            let value = match format {
                Some(f) if !array.is_null(row) => Some(f.value(row).to_string()),
                _ => None,
            };
            part.push_value(name, value.as_deref());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow::array::{StringArray, TimestampMicrosecondArray};
    use arrow::datatypes::{DataType, Field, Schema};
    use shared::config::S3Config;

    const H: i64 = 3_600_000_000;

    /// A windowed table's options: time in column 0, markers on.
    fn windowed<'a>(partition_by: &'a [String], rolling: &'a RollingConfig) -> SinkOptions<'a> {
        SinkOptions {
            time_column: 0,
            partition_by,
            rolling,
            commit_markers: true,
        }
    }

    fn test_lake(dir: &std::path::Path) -> Lake {
        Lake::open(
            dir.to_str().unwrap(),
            &S3Config::default(),
            TimePartitioning::Hour,
        )
        .unwrap()
    }

    #[test]
    fn partitions_complete_in_time_and_keys_leave_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let lake = test_lake(dir.path());
        let schema = Arc::new(Schema::new(vec![
            Field::new("window_start", shared::types::timestamp_type(), false),
            Field::new("path", DataType::Utf8, true),
        ]));
        let batch = RecordBatch::try_new(
            schema.clone(),
            vec![
                Arc::new(
                    TimestampMicrosecondArray::from(vec![0, 1, H, H + 1]).with_timezone("UTC"),
                ),
                Arc::new(StringArray::from(vec![
                    Some("../../etc"),
                    Some("/a"),
                    None,
                    Some("/a"),
                ])),
            ],
        )
        .unwrap();
        let partition_by = ["path".to_string()];
        let rolling = RollingConfig::default();
        let mut sink = TableSink::new("t", schema, windowed(&partition_by, &rolling), &lake);
        sink.add(&batch, &lake, None).unwrap();
        assert_eq!(sink.buffered_rows(), 4);
        let first = sink.complete(H).unwrap();
        let names: Vec<String> = first.iter().map(|f| f.partition.to_string()).collect();
        assert_eq!(
            names,
            vec![
                "dt=1970-01-01/hour=00/path=%2Fa",
                "dt=1970-01-01/hour=00/path=..%2F..%2Fetc"
            ]
        );
        assert_eq!(first[0].rows, 1);
        let rest = sink.flush_all().unwrap();
        let names: Vec<String> = rest.iter().map(|f| f.partition.to_string()).collect();
        assert_eq!(
            names,
            vec![
                "dt=1970-01-01/hour=01/path=%2Fa",
                "dt=1970-01-01/hour=01/path=__HIVE_DEFAULT_PARTITION__"
            ]
        );
        assert_eq!(sink.file_schema().fields().len(), 1);
        assert!(
            rest.iter()
                .all(|f| f.name.starts_with("part-19700101T01") && f.name.ends_with(".parquet"))
        );
    }

    /// The values of column `n` in an encoded file, in file order.
    fn ns(file: &EncodedFile) -> Vec<i32> {
        use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
        let reader = ParquetRecordBatchReaderBuilder::try_new(file.data.clone())
            .unwrap()
            .build()
            .unwrap();
        let mut out = Vec::new();
        for b in reader {
            let b = b.unwrap();
            let n = b.column_by_name("n").unwrap();
            out.extend(n.as_primitive::<arrow::datatypes::Int32Type>().values());
        }
        out
    }

    /// Rows that go back and forth between partitions (the late table's, in arrival order)
    /// land in their partitions in row order; runs of one partition are taken whole.
    #[test]
    fn rows_out_of_partition_order_keep_their_order_in_each_partition() {
        let dir = tempfile::tempdir().unwrap();
        let lake = test_lake(dir.path());
        let schema = Arc::new(Schema::new(vec![
            Field::new("window_start", shared::types::timestamp_type(), false),
            Field::new("path", DataType::Utf8, true),
            Field::new("n", DataType::Int32, false),
        ]));
        let rows: [(i64, Option<&str>); 8] = [
            (0, Some("/a")),
            (1, Some("/a")),
            (2, Some("/b")),
            (3, Some("/a")),
            (H, Some("/a")),
            (4, None),
            (5, Some("/a")),
            (H + 1, Some("/a")),
        ];
        let batch = RecordBatch::try_new(
            schema.clone(),
            vec![
                Arc::new(
                    TimestampMicrosecondArray::from_iter_values(rows.iter().map(|r| r.0))
                        .with_timezone("UTC"),
                ),
                Arc::new(StringArray::from_iter(rows.iter().map(|r| r.1))),
                Arc::new(arrow::array::Int32Array::from_iter_values(0..8)),
            ],
        )
        .unwrap();
        let partition_by = ["path".to_string()];
        let rolling = RollingConfig::default();
        let mut sink = TableSink::new("t", schema, windowed(&partition_by, &rolling), &lake);
        sink.add(&batch, &lake, None).unwrap();
        let files = sink.flush_all().unwrap();
        let got: Vec<(String, Vec<i32>)> = files
            .iter()
            .map(|f| (f.partition.to_string(), ns(f)))
            .collect();
        let want = [
            ("dt=1970-01-01/hour=00/path=%2Fa", vec![0, 1, 3, 6]),
            ("dt=1970-01-01/hour=00/path=%2Fb", vec![2]),
            (
                "dt=1970-01-01/hour=00/path=__HIVE_DEFAULT_PARTITION__",
                vec![5],
            ),
            ("dt=1970-01-01/hour=01/path=%2Fa", vec![4, 7]),
        ];
        let want: Vec<(String, Vec<i32>)> =
            want.into_iter().map(|(p, n)| (p.to_string(), n)).collect();
        assert_eq!(got, want);
        assert!(files.iter().all(|f| f.name.starts_with("part-19700101T0")));
    }

    /// A table of window starts only.
    fn starts_schema() -> SchemaRef {
        Arc::new(Schema::new(vec![Field::new(
            "window_start",
            shared::types::timestamp_type(),
            false,
        )]))
    }

    fn starts(ts: Vec<i64>) -> RecordBatch {
        RecordBatch::try_new(
            starts_schema(),
            vec![Arc::new(
                TimestampMicrosecondArray::from(ts).with_timezone("UTC"),
            )],
        )
        .unwrap()
    }

    #[test]
    fn by_default_every_open_partition_rolls_at_every_checkpoint() {
        let dir = tempfile::tempdir().unwrap();
        let lake = test_lake(dir.path());
        let schema = starts_schema();
        let batch = starts;
        let rolling = RollingConfig::default();
        let mut sink = TableSink::new("t", schema.clone(), windowed(&[], &rolling), &lake);
        let closed = Instant::now();
        sink.add(&batch(vec![0]), &lake, Some(closed)).unwrap();
        sink.add(&batch(vec![H]), &lake, None).unwrap();
        // One row each, two open partitions: both written now, the first with its close time.
        let files = sink.roll(now_ms()).unwrap();
        assert_eq!(files.len(), 2);
        assert_eq!(files[0].closed, vec![closed]);
        assert!(files[1].closed.is_empty());
        assert!(sink.roll(now_ms()).unwrap().is_empty());
        // The late table's default keeps rows until its limits.
        let late_rolling = RollingConfig::late_default();
        let options = SinkOptions {
            commit_markers: false,
            ..windowed(&[], &late_rolling)
        };
        let mut late = TableSink::new("l", schema.clone(), options, &lake);
        late.add(&batch(vec![0]), &lake, None).unwrap();
        assert!(late.roll(now_ms()).unwrap().is_empty());
    }

    #[test]
    fn rolling_writes_early_at_checkpoints_only_when_due() {
        let dir = tempfile::tempdir().unwrap();
        let lake = test_lake(dir.path());
        let schema = starts_schema();
        let rows = starts;
        let rolling = RollingConfig {
            on_checkpoint: false,
            max_rows: 3,
            max_open_time: Some(shared::HumanDuration::from_secs(60)),
            ..RollingConfig::default()
        };
        let mut sink = TableSink::new("t", schema.clone(), windowed(&[], &rolling), &lake);
        sink.set_checkpoint(7);
        sink.add(&rows(vec![0, 1]), &lake, None).unwrap();
        sink.add(&rows(vec![H, H + 1, H + 2]), &lake, None).unwrap();
        let now = now_ms();
        // Hour 1 is full: one file; hour 0 is neither full nor old.
        let files = sink.roll(now).unwrap();
        assert_eq!(files.len(), 1);
        assert_eq!(files[0].rows, 3);
        assert!(files[0].name.contains("-c0000000007-"), "{}", files[0].name);
        // A minute later, hour 0 is old enough.
        let files = sink.roll(now + 60_000).unwrap();
        assert_eq!(files.len(), 1);
        assert_eq!(files[0].rows, 2);
        assert_eq!(sink.buffered_rows(), 0);
        // Below the minimum size, nothing rolls.
        let small = RollingConfig {
            on_checkpoint: false,
            max_rows: 1,
            min_size: shared::ByteSize(1 << 30),
            max_bytes: shared::ByteSize(1 << 31),
            ..RollingConfig::default()
        };
        let mut sink = TableSink::new("t", schema.clone(), windowed(&[], &small), &lake);
        sink.add(&rows(vec![0, 1]), &lake, None).unwrap();
        assert!(sink.roll(now).unwrap().is_empty());
        assert_eq!(sink.flush_all().unwrap().len(), 1);
    }
}
