//! Reports written into the lake, with dynamic partition overwrite: each partition present
//! in a run's result replaces that partition's files; partitions the run did not compute are
//! left alone. A partition holds one Parquet file named by a hash of its content, so a rerun
//! on the same input produces the same name and touches nothing.
//!
//! How a replacement is made atomic depends on the lake's format: [`hive`] swaps files under
//! an intent and a `_SUCCESS` marker per partition, [`delta`] replaces every partition of
//! the run in one commit of the table's log.

pub mod delta;
pub mod hive;

use std::collections::BTreeMap;

use arrow::array::{Array, RecordBatch, UInt32Array};
use arrow::datatypes::{DataType, SchemaRef};
use shared::commit::CommitError;
use shared::hash::fnv1a64;
use shared::lake::PartitionPath;

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
    #[error("cannot write {path}: {source}")]
    Write {
        path: String,
        #[source]
        source: object_store::Error,
    },
    #[error(transparent)]
    Delta(#[from] shared::delta::DeltaError),
    #[error("reading back {path}: {source}")]
    Parquet {
        path: String,
        #[source]
        source: parquet::errors::ParquetError,
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

/// Where a report's columns go: the partition keys into the path, the rest into the file.
pub(crate) struct Layout<'a> {
    partition_by: &'a [String],
    /// Indexes of the partition keys in the report.
    keys: Vec<usize>,
    /// Indexes of the other columns, those in the file.
    kept: Vec<usize>,
    file_schema: SchemaRef,
}

impl<'a> Layout<'a> {
    pub(crate) fn new(
        partition_by: &'a [String],
        schema: &SchemaRef,
    ) -> Result<Self, LakeOutputError> {
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
    pub(crate) fn split(
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

/// One partition's file of a report: its rows in Parquet, named by their hash.
pub(crate) struct PartitionFile {
    pub name: String,
    pub data: Vec<u8>,
    pub rows: u64,
}

impl PartitionFile {
    fn encode(layout: &Layout<'_>, batches: &[RecordBatch]) -> Result<Self, LakeOutputError> {
        let data = output::encode(output::OutputFormat::Parquet, &layout.file_schema, batches)?;
        Ok(PartitionFile {
            name: format!("part-{:016x}.parquet", fnv1a64(&data)),
            rows: batches.iter().map(|b| b.num_rows() as u64).sum(),
            data,
        })
    }
}
