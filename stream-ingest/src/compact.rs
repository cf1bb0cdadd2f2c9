//! `stream-ingest compact`: merges the files of committed partitions into one.
//!
//! A long-running stream writes a partition in several files when its rolling policy cuts
//! it early. Once the partition is committed (`_SUCCESS`), nothing is added to it, so its
//! files can be merged: the merged file is staged, then swapped in through
//! [`FileCommitter::replace`], which records its intent first and is finished by the next
//! `compact` after a crash. Rows and the marker's row count never change.
//!
//! A partition is only merged once its commit is older than every checkpoint kept
//! ([`mergeable`]): a restart that falls back past a damaged checkpoint retracts files by the
//! checkpoint that committed them, and rewrites the markers of the checkpoint it restores, so
//! it must never meet a merged file that mixes older and newer rows, nor a merged partition
//! whose marker it would rewrite with the old file list.

use std::time::Instant;

use arrow::array::{RecordBatch, RecordBatchReader};
use arrow::datatypes::SchemaRef;
use bytes::Bytes;
use object_store::ObjectStoreExt;
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use shared::commit::{
    FileCommitter, PartitionMarker, PendingFile, Replacement, checkpoint_of, data_file_name,
};
use shared::config::{LakeFormat, LoadedConfig, PipelineConfig};
use shared::lake::{COMMIT_MARKER, Lake, PartitionPath};

use crate::IngestError;
use crate::checkpoint::CheckpointStore;
use crate::commit::delta::DeltaCommitter;
use crate::sink::{SinkError, write_parquet};
use crate::unit::{Unit, lock_unit};

/// What to compact.
#[derive(Debug, Clone)]
pub struct CompactOptions {
    /// Overrides the lake root of the pipeline file.
    pub lake: Option<String>,
    /// Only this table (default: every windowed table).
    pub table: Option<String>,
    /// Merge partitions with at least this many files.
    pub min_files: usize,
    /// Say what would be merged, change nothing.
    pub dry_run: bool,
}

/// What a compaction did.
#[derive(Debug, Clone, Default)]
pub struct CompactSummary {
    pub partitions: u64,
    pub files_before: u64,
    pub bytes_before: u64,
    pub bytes_after: u64,
    pub rows: u64,
    /// Interrupted replacements finished first.
    pub recovered: u64,
    /// Committed partitions left alone because a kept checkpoint is older than their commit.
    pub too_recent: u64,
    pub dry_run: bool,
    pub seconds: f64,
}

impl std::fmt::Display for CompactSummary {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let verb = if self.dry_run {
            "would merge"
        } else {
            "merged"
        };
        write!(
            f,
            "{verb} {} files into {} in {} partitions ({} rows, {:.1} MB -> {:.1} MB) in {:.2} s",
            self.files_before,
            self.partitions,
            self.partitions,
            self.rows,
            self.bytes_before as f64 / 1e6,
            self.bytes_after as f64 / 1e6,
            self.seconds
        )?;
        if self.recovered > 0 {
            write!(f, "; finished {} interrupted merges", self.recovered)?;
        }
        if self.too_recent > 0 {
            write!(
                f,
                "; {} partitions committed at or after the oldest kept checkpoint wait for a later run",
                self.too_recent
            )?;
        }
        Ok(())
    }
}

/// Whether a partition committed by checkpoint `committed` may be merged while the oldest
/// kept checkpoint is `oldest`: no restart can restore its commit or anything before it.
pub fn mergeable(committed: u64, oldest: u64) -> bool {
    committed < oldest
}

/// Compacts the committed partitions of the pipeline's windowed tables.
pub async fn compact(
    loaded: &LoadedConfig,
    opts: &CompactOptions,
) -> Result<CompactSummary, IngestError> {
    let started = Instant::now();
    let config = &loaded.config;
    let root = opts.lake.as_deref().unwrap_or(&config.lake.root);
    let lake = Lake::open(root, &config.lake.s3, config.lake.partition_time)?;
    // A run of the pipeline merges too: one process at a time (a dry run only reads).
    let locks = match opts.dry_run {
        false => Some(lock_unit(&lake, &config.name, &Unit::whole(), None).await?),
        true => None,
    };
    let tables = selected_tables(config, opts.table.as_deref())?;
    let store = CheckpointStore::new(lake.clone(), &config.name, config.checkpoint.keep as usize);
    let mut pass = Pass {
        opts,
        codec: config.lake.compression.codec(),
        oldest: store.oldest().await?.unwrap_or(u64::MAX),
        locks,
        summary: CompactSummary {
            dry_run: opts.dry_run,
            ..CompactSummary::default()
        },
    };
    if config.lake.format == LakeFormat::Delta {
        let delta = DeltaCommitter::new(lake, &config.name, &Unit::whole())
            .with_retention(config.lake.delta.vacuum.0);
        for table in tables {
            pass.optimize(&delta, table).await?;
        }
    } else {
        for table in tables {
            pass.merge_table(&lake, table).await?;
        }
    }
    pass.summary.seconds = started.elapsed().as_secs_f64();
    Ok(pass.summary)
}

/// One `compact`: what it merges with, the rule for which partitions, and what it did.
struct Pass<'a> {
    opts: &'a CompactOptions,
    codec: parquet::basic::Compression,
    /// The oldest checkpoint kept (see [`mergeable`]).
    oldest: u64,
    locks: Option<shared::lock::Locks>,
    summary: CompactSummary,
}

impl Pass<'_> {
    /// Whether a partition of `files` files whose newest was committed by checkpoint
    /// `committed` is merged now (the lock still held); counts those too recent.
    fn admits(&mut self, files: usize, committed: u64) -> Result<bool, IngestError> {
        if files < self.opts.min_files.max(2) {
            return Ok(false);
        }
        if !mergeable(committed, self.oldest) {
            self.summary.too_recent += 1;
            return Ok(false);
        }
        if let Some(l) = &self.locks {
            l.check().map_err(IngestError::Lock)?;
        }
        Ok(true)
    }

    fn merged(&mut self, table: &str, partition: &str, merged: &Merged) {
        let dry_run = self.opts.dry_run;
        tracing::info!(
            table,
            partition,
            files = merged.files,
            rows = merged.rows,
            dry_run,
            "merged"
        );
        self.summary.partitions += 1;
        self.summary.files_before += merged.files as u64;
        self.summary.bytes_before += merged.bytes_before;
        self.summary.bytes_after += merged.bytes_after;
        self.summary.rows += merged.rows;
    }

    /// Merges a Hive table's committed partitions, finishing the merges a crash interrupted
    /// first.
    async fn merge_table(&mut self, lake: &Lake, table: &str) -> Result<(), IngestError> {
        let committer = FileCommitter::new(lake.clone());
        if !self.opts.dry_run {
            self.summary.recovered += committer.finish_replacements(table).await? as u64;
        }
        let partitions = lake
            .committed_partitions(table)
            .await
            .map_err(|e| IngestError::Internal(e.to_string()))?;
        for segments in partitions {
            let partition = PartitionPath { segments };
            let marker_path = lake.data_file(table, &partition, COMMIT_MARKER);
            let marker = committer.read_marker(&marker_path).await?;
            if !self.admits(marker.files.len(), marker.checkpoint)? {
                continue;
            }
            let merged = merge(lake, &committer, &marker, self.codec, self.opts.dry_run).await?;
            self.merged(table, &partition.to_string(), &merged);
        }
        Ok(())
    }

    /// OPTIMIZE of a Delta table's complete partitions, each in one commit of Removes and
    /// an Add that change no data (see [`DeltaCommitter::merge`]).
    async fn optimize(&mut self, delta: &DeltaCommitter, table: &str) -> Result<(), IngestError> {
        for (segments, files, newest) in delta.complete_partitions(table).await? {
            if !self.admits(files, newest)? {
                continue;
            }
            let partition = segments.join("/");
            let dry_run = self.opts.dry_run;
            if let Some(merged) = delta.merge(self.codec, table, segments, dry_run).await? {
                self.merged(table, &partition, &merged);
            }
        }
        Ok(())
    }
}

/// The windowed tables to compact: `--table`, or all of them.
fn selected_tables<'a>(
    config: &'a PipelineConfig,
    table: Option<&'a str>,
) -> Result<Vec<&'a str>, IngestError> {
    Ok(match table {
        Some(t) if config.tables.iter().any(|c| c.name == t) => vec![t],
        Some(t) => {
            let names: Vec<&str> = config.tables.iter().map(|c| c.name.as_str()).collect();
            return Err(IngestError::Usage(format!(
                "--table: `{t}` is not a windowed table of `{}` (tables: {})",
                config.name,
                names.join(", ")
            )));
        }
        None => config.tables.iter().map(|c| c.name.as_str()).collect(),
    })
}

/// What merging one partition did.
#[derive(Debug, Clone, Default)]
pub struct Merged {
    pub files: usize,
    pub bytes_before: u64,
    pub bytes_after: u64,
    pub rows: u64,
}

/// Merges one committed partition's files into one (with `dry_run`, only measures). Also
/// used by the stream stage itself when a partition commits (`partition_commit.compact`).
pub async fn merge(
    lake: &Lake,
    committer: &FileCommitter,
    marker: &PartitionMarker,
    compression: parquet::basic::Compression,
    dry_run: bool,
) -> Result<Merged, IngestError> {
    let partition = marker.partition_path();
    let file = merge_files(lake, &marker.table, &partition, &marker.files, compression).await?;
    if file.rows != marker.rows {
        return Err(IngestError::Internal(format!(
            "{}/{partition}: the files hold {} rows, the marker says {}; left as is",
            marker.table, file.rows, marker.rows
        )));
    }
    let merged = Merged {
        files: marker.files.len(),
        bytes_before: file.bytes_before,
        bytes_after: file.data.len() as u64,
        rows: file.rows,
    };
    if dry_run {
        tracing::info!(table = %marker.table, %partition, files = marker.files.len(), "would merge");
        return Ok(merged);
    }
    let staged = committer
        .stage(&marker.table, &partition, &file.name, file.data, file.rows)
        .await?;
    let replacement = Replacement {
        file: PendingFile::from(&staged),
        replaces: marker.files.clone(),
        marker: PartitionMarker {
            files: vec![file.name],
            ..marker.clone()
        },
    };
    committer.replace(&replacement).await?;
    Ok(merged)
}

/// Several files of one partition as one: its name (the first file's time label, the newest
/// checkpoint id, a hash of the content), bytes and rows, and the files' size.
pub struct MergedFile {
    pub name: String,
    pub data: Bytes,
    pub rows: u64,
    pub bytes_before: u64,
}

/// Reads the `files` of a partition and writes their rows as one file.
pub async fn merge_files(
    lake: &Lake,
    table: &str,
    partition: &PartitionPath,
    files: &[String],
    compression: parquet::basic::Compression,
) -> Result<MergedFile, IngestError> {
    let (schema, batches, bytes_before) = read_files(lake, table, files, partition).await?;
    let (data, rows) = write_parquet(&schema, &batches, compression).map_err(|e: SinkError| {
        IngestError::Internal(format!("cannot encode the merged file of {partition}: {e}"))
    })?;
    Ok(MergedFile {
        name: merged_file_name(files, &data),
        data: Bytes::from(data),
        rows,
        bytes_before,
    })
}

/// The rows of a partition's files, their schema, and the files' size.
async fn read_files(
    lake: &Lake,
    table: &str,
    files: &[String],
    partition: &PartitionPath,
) -> Result<(SchemaRef, Vec<RecordBatch>, u64), IngestError> {
    let mut batches: Vec<RecordBatch> = Vec::new();
    let mut schema = None;
    let mut bytes_before = 0u64;
    for name in files {
        let path = lake.data_file(table, partition, name);
        let read = async { lake.store.get(&path).await?.bytes().await };
        let data: Bytes = read
            .await
            .map_err(|e| IngestError::Internal(format!("cannot read {path}: {e}")))?;
        bytes_before += data.len() as u64;
        let reader = ParquetRecordBatchReaderBuilder::try_new(data)
            .and_then(|b| b.build())
            .map_err(|e| IngestError::Internal(format!("cannot read {path}: {e}")))?;
        schema.get_or_insert_with(|| reader.schema());
        for b in reader {
            batches.push(b.map_err(|e| IngestError::Internal(format!("{path}: {e}")))?);
        }
    }
    let schema = schema.expect("at least two files");
    Ok((schema, batches, bytes_before))
}

/// The merged file keeps the time label of the first file and the newest checkpoint id.
fn merged_file_name(files: &[String], data: &[u8]) -> String {
    let label = files[0]
        .strip_prefix("part-")
        .and_then(|r| r.split("-c").next())
        .unwrap_or("compacted")
        .to_string();
    let checkpoint = files
        .iter()
        .filter_map(|f| checkpoint_of(f))
        .max()
        .unwrap_or(0);
    data_file_name(&label, checkpoint, data)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_partition_is_mergeable_once_every_kept_checkpoint_is_newer_than_its_commit() {
        // Kept 5, 6, 7: a restart may restore 5 and rewrite what 5 committed.
        assert!(mergeable(4, 5));
        assert!(!mergeable(5, 5));
        assert!(!mergeable(7, 5));
    }

    #[test]
    fn the_summary_reads_well() {
        let s = CompactSummary {
            partitions: 2,
            files_before: 7,
            rows: 10,
            too_recent: 1,
            ..Default::default()
        };
        let text = s.to_string();
        assert!(
            text.starts_with("merged 7 files into 2 in 2 partitions"),
            "{text}"
        );
        assert!(
            text.contains("1 partitions committed at or after"),
            "{text}"
        );
    }
}
