//! Report partitions of a Hive lake. A partition holds its file and a `_SUCCESS` marker
//! naming it. The swap is the commit protocol's replacement
//! ([`shared::commit::FileCommitter::replace`]): stage the new file, write the intent,
//! publish, delete the old files, rewrite the marker, drop the intent. A crash at any point
//! leaves each partition either as it was or as it will be, and the next run finishes the
//! intent first.

use arrow::array::RecordBatch;
use arrow::datatypes::SchemaRef;
use bytes::Bytes;
use shared::commit::{CommitError, FileCommitter, PartitionMarker, PendingFile, Replacement};
use shared::lake::{COMMIT_MARKER, PartitionPath, is_hidden};

use super::{LakeOutputError, Layout, PartitionFile, ReportWrite};

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
        let file = PartitionFile::encode(&layout, &batches)?;
        if write_partition(committer, table, &partition, file).await? {
            written.replaced += 1;
            crate::fault::fault("after-partition");
        } else {
            written.unchanged += 1;
        }
    }
    Ok(written)
}

/// Replaces one partition with the file `data` (named by its hash) and its marker; `false`
/// when the partition already holds exactly that.
async fn write_partition(
    committer: &FileCommitter,
    table: &str,
    partition: &PartitionPath,
    file: PartitionFile,
) -> Result<bool, LakeOutputError> {
    let PartitionFile { name, data, rows } = file;
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
