//! Reports written into the lake as Hive-partitioned tables, with dynamic partition
//! overwrite: each partition present in a run's result replaces that partition's files;
//! partitions the run did not compute are left alone.
//!
//! A partition holds one Parquet file named by a hash of its content and a `_SUCCESS`
//! marker naming it. The swap is the commit protocol's replacement
//! ([`shared::commit::FileCommitter::replace`]): stage the new file, write the intent,
//! publish, delete the old files, rewrite the marker, drop the intent. A crash at any point
//! leaves each partition either as it was or as it will be, and the next run finishes the
//! intent first. A rerun on the same input produces the same bytes, hence the same name,
//! and touches nothing.

use std::collections::BTreeMap;

use arrow::array::{Array, RecordBatch, UInt32Array};
use arrow::datatypes::{DataType, SchemaRef};
use bytes::Bytes;
use shared::commit::{CommitError, FileCommitter, PartitionMarker, PendingFile, Replacement};
use shared::hash::fnv1a64;
use shared::lake::{COMMIT_MARKER, PartitionPath, is_hidden};

use crate::output::{self, OutputError};

#[derive(Debug, thiserror::Error)]
pub enum LakeOutputError {
    #[error(transparent)]
    Encode(#[from] OutputError),
    #[error(transparent)]
    Commit(#[from] CommitError),
    #[error("arrow: {0}")]
    Arrow(#[from] arrow::error::ArrowError),
    #[error("the report has no column `{0}` to partition by")]
    NoColumn(String),
    #[error("cannot list {path}: {source}")]
    List {
        path: String,
        #[source]
        source: object_store::Error,
    },
}

/// What writing a report into the lake did, in partitions.
#[derive(Debug, Default, Clone, Copy)]
pub struct ReportWrite {
    /// Partitions whose files were replaced (or created).
    pub replaced: usize,
    /// Partitions whose content was already there, byte for byte.
    pub unchanged: usize,
}

/// Finishes replacements a crashed run left in the report's table and removes its staged
/// leftovers. Call with the report's lock held, before writing.
pub async fn recover(committer: &FileCommitter, table: &str) -> Result<(), CommitError> {
    let finished = committer.finish_replacements(table).await?;
    let cleaned = committer.clean_staging(table).await?;
    if finished + cleaned > 0 {
        tracing::info!(
            table,
            finished,
            cleaned,
            "recovered from an interrupted run"
        );
    }
    Ok(())
}

/// Writes a report's rows into `table`, one file per partition of `partition_by`, replacing
/// the partitions present in `batches`.
pub async fn write(
    committer: &FileCommitter,
    table: &str,
    partition_by: &[String],
    schema: &SchemaRef,
    batches: &[RecordBatch],
) -> Result<ReportWrite, LakeOutputError> {
    let layout = Layout::new(partition_by, schema)?;
    let parts = layout.split(batches)?;
    let mut written = ReportWrite::default();
    for (partition, batches) in parts {
        let data = output::encode(output::OutputFormat::Parquet, &layout.file_schema, &batches)?;
        let rows: u64 = batches.iter().map(|b| b.num_rows() as u64).sum();
        if write_partition(committer, table, &partition, data, rows).await? {
            written.replaced += 1;
            crate::fault::fault("after-partition");
        } else {
            written.unchanged += 1;
        }
    }
    Ok(written)
}

/// Where a report's columns go: the partition keys into the path, the rest into the file.
struct Layout<'a> {
    partition_by: &'a [String],
    /// Indexes of the partition keys in the report.
    keys: Vec<usize>,
    /// Indexes of the other columns, those in the file.
    kept: Vec<usize>,
    file_schema: SchemaRef,
}

impl<'a> Layout<'a> {
    fn new(partition_by: &'a [String], schema: &SchemaRef) -> Result<Self, LakeOutputError> {
        let keys: Vec<usize> = partition_by
            .iter()
            .map(|c| {
                schema
                    .index_of(c)
                    .map_err(|_| LakeOutputError::NoColumn(c.clone()))
            })
            .collect::<Result<_, _>>()?;
        let kept: Vec<usize> = (0..schema.fields().len())
            .filter(|i| !keys.contains(i))
            .collect();
        let file_schema = std::sync::Arc::new(schema.project(&kept)?);
        Ok(Layout {
            partition_by,
            keys,
            kept,
            file_schema,
        })
    }

    /// The rows of each partition, in result order, without the key columns.
    fn split(
        &self,
        batches: &[RecordBatch],
    ) -> Result<BTreeMap<PartitionPath, Vec<RecordBatch>>, LakeOutputError> {
        let mut parts: BTreeMap<PartitionPath, Vec<RecordBatch>> = BTreeMap::new();
        for batch in batches {
            let rows = self.rows_by_partition(batch)?;
            let projected = batch.project(&self.kept)?;
            for (p, idx) in rows {
                let idx = UInt32Array::from(idx);
                let cols = projected
                    .columns()
                    .iter()
                    .map(|c| arrow::compute::take(c, &idx, None))
                    .collect::<Result<Vec<_>, _>>()?;
                parts
                    .entry(p)
                    .or_default()
                    .push(RecordBatch::try_new(self.file_schema.clone(), cols)?);
            }
        }
        Ok(parts)
    }

    /// The row numbers of `batch` in each partition (NULL keys: Hive's default partition).
    fn rows_by_partition(
        &self,
        batch: &RecordBatch,
    ) -> Result<BTreeMap<PartitionPath, Vec<u32>>, LakeOutputError> {
        let keys: Vec<arrow::array::ArrayRef> = self
            .keys
            .iter()
            .map(|&i| arrow::compute::cast(batch.column(i), &DataType::Utf8))
            .collect::<Result<_, _>>()?;
        let keys: Vec<&arrow::array::StringArray> = keys
            .iter()
            .map(|a| a.as_any().downcast_ref().expect("cast to Utf8"))
            .collect();
        let mut rows: BTreeMap<PartitionPath, Vec<u32>> = BTreeMap::new();
        for row in 0..batch.num_rows() {
            let mut p = PartitionPath { segments: vec![] };
            for (c, k) in self.partition_by.iter().zip(&keys) {
                p.push_value(c, (!k.is_null(row)).then(|| k.value(row)));
            }
            rows.entry(p).or_default().push(row as u32);
        }
        Ok(rows)
    }
}

/// Replaces one partition with the file `data` (named by its hash) and its marker; `false`
/// when the partition already holds exactly that.
async fn write_partition(
    committer: &FileCommitter,
    table: &str,
    partition: &PartitionPath,
    data: Vec<u8>,
    rows: u64,
) -> Result<bool, LakeOutputError> {
    let name = format!("part-{:016x}.parquet", fnv1a64(&data));
    let marker = PartitionMarker {
        table: table.to_string(),
        partition: partition.segments.clone(),
        rows,
        files: vec![name.clone()],
        watermark: 0,
        checkpoint: 0,
    };
    let lake = committer.lake();
    let dir = lake.data_file(table, partition, COMMIT_MARKER);
    let existing = existing_files(committer, partition, table).await?;
    let marker_now = committer.read_marker(&dir).await.ok();
    if marker_now.as_ref() == Some(&marker) && existing == [name.clone()] {
        return Ok(false);
    }
    let staged = committer
        .stage(table, partition, &name, Bytes::from(data), rows)
        .await?;
    crate::fault::fault("after-stage");
    let replacement = Replacement {
        file: PendingFile::from(&staged),
        replaces: existing.into_iter().filter(|f| *f != name).collect(),
        marker,
    };
    committer.replace(&replacement).await?;
    Ok(true)
}

/// The data files in a partition directory of `table`.
async fn existing_files(
    committer: &FileCommitter,
    partition: &PartitionPath,
    table: &str,
) -> Result<Vec<String>, LakeOutputError> {
    let lake = committer.lake();
    let dir = lake.partition_dir(table, partition);
    let listing = lake
        .store
        .list_with_delimiter(Some(&dir))
        .await
        .map_err(|source| LakeOutputError::List {
            path: lake.display(&dir),
            source,
        })?;
    let mut names: Vec<String> = listing
        .objects
        .iter()
        .filter_map(|m| m.location.filename().map(str::to_string))
        .filter(|n| n.ends_with(".parquet") && !is_hidden(n))
        .collect();
    names.sort();
    Ok(names)
}
