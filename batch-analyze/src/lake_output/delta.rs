//! Report partitions of a Delta lake (`lake.format: delta`). A run writes each changed
//! partition's file under its final name (a file the log does not name is read by nobody),
//! then replaces every changed partition in one commit: an `Add` of each new file and a
//! `Remove` of each file it replaces. Readers see the old days or the new ones, never a mix.
//!
//! A crash before the commit leaves files nobody reads; the rerun writes the same names
//! again (same rows, same bytes) and commits them. Files replaced, and those a crashed run
//! left, are deleted by VACUUM once `lake.delta.vacuum` has passed, so that readers of an
//! older version still find theirs.

use std::time::Duration;

use arrow::array::RecordBatch;
use arrow::datatypes::SchemaRef;
use bytes::Bytes;
use object_store::ObjectStoreExt;
use shared::delta::{self, TableCommit};
use shared::lake::Lake;

use super::{LakeOutputError, Layout, PartitionFile, ReportWrite};

/// Writes a report's rows into the Delta table `table`, one file per partition of
/// `partition_by`, replacing the partitions present in `batches` in one commit; then
/// vacuums what was removed longer than `retention` ago.
pub async fn write(
    lake: &Lake,
    table: &str,
    partition_by: &[String],
    schema: &SchemaRef,
    batches: &[RecordBatch],
    retention: Duration,
) -> Result<ReportWrite, LakeOutputError> {
    let layout = Layout::new(partition_by, schema)?;
    let parts = layout.split(batches)?;
    let mut t = delta::open_or_create(lake, table, &layout.file_schema, partition_by, &[]).await?;
    let held = delta::files_by_partition(&t).map_err(delta::DeltaError::of(table))?;
    let mut commit = TableCommit {
        app_id: format!("batch-analyze/{table}"),
        ..TableCommit::default()
    };
    let mut written = ReportWrite::default();
    for (partition, batches) in parts {
        let dir = partition.segments.join("/");
        let file = PartitionFile::encode(&layout, &batches)?;
        let path = format!("{dir}/{}", file.name);
        let now = held
            .get(&partition.segments)
            .map(Vec::as_slice)
            .unwrap_or_default();
        if now.len() == 1 && now[0].0 == path {
            written.unchanged += 1;
            continue;
        }
        if !now.iter().any(|(p, _)| *p == path) {
            let location = lake.data_file(table, &partition, &file.name);
            let added = put(lake, &location, &path, file.data).await?;
            commit.file_schema = Some(added.schema);
            commit.adds.push(added.add);
        }
        let replaced = now.iter().filter(|(p, _)| *p != path);
        commit
            .removes
            .extend(replaced.map(|(p, size)| delta::remove_of(p, *size)));
        written.replaced += 1;
    }
    crate::fault::fault("after-stage");
    if commit.adds.is_empty() && commit.removes.is_empty() {
        return Ok(written);
    }
    let removed = !commit.removes.is_empty();
    delta::commit(&mut t, table, commit).await?;
    if removed {
        let (_, deleted) = delta::vacuum(&t, table, retention, true).await?;
        tracing::debug!(table, deleted, "vacuumed");
    }
    Ok(written)
}

/// Writes a file of the table under its final name; its `Add` action.
async fn put(
    lake: &Lake,
    location: &object_store::path::Path,
    path: &str,
    data: Vec<u8>,
) -> Result<delta::FileToAdd, LakeOutputError> {
    let data = Bytes::from(data);
    lake.store
        .put(location, data.clone().into())
        .await
        .map_err(|source| LakeOutputError::Write {
            path: lake.display(location),
            source,
        })?;
    delta::add_action(path, &data).map_err(|source| LakeOutputError::Parquet {
        path: lake.display(location),
        source,
    })
}
