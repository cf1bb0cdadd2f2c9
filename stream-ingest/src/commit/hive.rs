//! Hive-partitioned Parquet with `_SUCCESS` markers: the default lake format.
//!
//! ```text
//! stage:   _staging/<table>/<hash>-part-….inprogress     (one PUT / write + rename)
//! commit:  publish each file (rename / copy) ─▶ [rebuild: retract the tables' older files]
//!          ─▶ _SUCCESS of each completed partition (a unit: through the board)
//! maintain: merge committed partitions no kept checkpoint can take back
//! ```
//!
//! The steps on one file are [`shared::commit::FileCommitter`]'s; the order across a
//! checkpoint, the board of a Kafka pipeline's units and compaction at commit are here.
//! Compaction waits until no kept checkpoint is at or before the partition's commit
//! ([`crate::compact::mergeable`]), so a restart never rewrites the marker of, nor retracts
//! files from, a merged partition.

use std::sync::Arc;

use async_trait::async_trait;
use futures::future::BoxFuture;
use futures::stream::StreamExt;
use shared::commit::{CommitError, FileCommitter, MarkerError, PartitionMarker, PendingFile};
use shared::lake::{COMMIT_MARKER, Lake, PartitionPath};

use super::{Committer, MergeQueue, Redo};
use crate::IngestError;
use crate::board::Board;
use crate::checkpoint::{Checkpoint, CheckpointStore};
use crate::fault;
use crate::metrics::Telemetry;
use crate::sink::EncodedFile;

/// Object-store requests of one kind (stage, publish, marker) in flight at once. On a local
/// disk each is a blocking call on tokio's blocking pool, so small files overlap their
/// directory and rename work; on S3 they overlap round trips.
pub const IN_FLIGHT: usize = 4;

/// The Hive format's committer of one unit of state.
pub struct HiveCommitter {
    pub files: FileCommitter,
    /// For a unit of a Kafka pipeline: where its lake partitions are committed with the
    /// other units' ([`Board`]); `None`: partitions are committed here.
    board: tokio::sync::Mutex<Option<Board>>,
    /// Committed partitions waiting to be merged (`partition_commit.compact`).
    merges: MergeQueue,
    telemetry: Arc<Telemetry>,
}

impl HiveCommitter {
    pub fn new(lake: Lake, unit: Option<String>, telemetry: Arc<Telemetry>) -> Self {
        HiveCommitter {
            files: FileCommitter::new(lake)
                .with_fault_points(fault::point)
                .for_unit(unit),
            board: tokio::sync::Mutex::new(None),
            merges: MergeQueue::new(None),
            telemetry,
        }
    }

    /// Commits lake partitions through a board shared with the other units.
    pub fn with_board(mut self, board: Board) -> Self {
        self.board = tokio::sync::Mutex::new(Some(board));
        self
    }

    /// Merges committed partitions into one file (`partition_commit.compact`).
    pub fn with_compaction(mut self, codec: Option<parquet::basic::Compression>) -> Self {
        self.merges = MergeQueue::new(codec);
        self
    }

    fn lake(&self) -> &Lake {
        self.files.lake()
    }

    /// Publishes a checkpoint's files, [`IN_FLIGHT`] at once (a restart publishes them all
    /// again, so the order does not matter).
    async fn publish(&self, files: &[PendingFile]) -> Result<(), IngestError> {
        let committer = &self.files;
        let publishing: Vec<BoxFuture<'_, Result<(), CommitError>>> = files
            .iter()
            .map(|f| -> BoxFuture<'_, Result<(), CommitError>> {
                Box::pin(committer.publish_pending(f))
            })
            .collect();
        let mut published = futures::stream::iter(publishing).buffer_unordered(IN_FLIGHT);
        let mut first = true;
        while let Some(done) = published.next().await {
            done?;
            if std::mem::take(&mut first) {
                fault::point("mid-publish");
            }
        }
        Ok(())
    }

    /// Writes `_SUCCESS` markers (idempotent: the same content again on a restart) and
    /// queues partitions with several files for merging.
    async fn write_markers(&self, markers: &[PartitionMarker]) -> Result<(), IngestError> {
        let committer = &self.files;
        let writing: Vec<BoxFuture<'_, Result<(), MarkerError>>> = markers
            .iter()
            .map(|m| -> BoxFuture<'_, Result<(), MarkerError>> {
                Box::pin(committer.commit_partition(m))
            })
            .collect();
        futures::stream::iter(writing)
            .buffer_unordered(IN_FLIGHT)
            .collect::<Vec<_>>()
            .await
            .into_iter()
            .collect::<Result<Vec<()>, _>>()?;
        for m in markers {
            self.merges.queue(m);
        }
        Ok(())
    }

    /// Merges one committed partition, finishing first a merge a crash interrupted.
    async fn merge(
        &self,
        codec: parquet::basic::Compression,
        table: String,
        segments: Vec<String>,
    ) -> Result<(), IngestError> {
        let partition = PartitionPath { segments };
        self.files.finish_replacement_in(&table, &partition).await?;
        let path = self.lake().data_file(&table, &partition, COMMIT_MARKER);
        let marker = match self.files.read_marker(&path).await {
            Ok(m) => m,
            Err(e) => {
                // Retracted by a rebuild since, or removed by hand: nothing to merge.
                tracing::debug!(error = %e, "not merging a partition without its marker");
                return Ok(());
            }
        };
        if marker.files.len() < 2 {
            return Ok(());
        }
        let merged = crate::compact::merge(self.lake(), &self.files, &marker, codec, false).await?;
        self.telemetry.partition_compacted(&marker, merged.files);
        Ok(())
    }
}

#[async_trait]
impl Committer for HiveCommitter {
    async fn stage(&self, file: EncodedFile) -> Result<PendingFile, IngestError> {
        let staged = self
            .files
            .stage(
                &file.table,
                &file.partition,
                &file.name,
                file.data,
                file.rows,
            )
            .await?;
        Ok(PendingFile::from(&staged))
    }

    async fn commit(&self, ck: &Checkpoint) -> Result<Vec<PartitionMarker>, IngestError> {
        self.publish(&ck.pending).await?;
        let mut board = self.board.lock().await;
        let Some(board) = board.as_mut() else {
            if !ck.rebuilt.is_empty() {
                let id = ck.id;
                self.retract(&ck.rebuilt, "replaced by the rebuild", &|c| c < id)
                    .await?;
                fault::point("after-rebuild-retract");
            }
            self.write_markers(&ck.engine.markers).await?;
            return Ok(ck.engine.markers.clone());
        };
        if !ck.rebuilt.is_empty() {
            // A Kafka unit's rebuild is swapped in with every unit's, once all are rebuilt
            // (`rebuild::kafka`).
            return Ok(Vec::new());
        }
        let state = &ck.engine;
        let written = board
            .after_checkpoint(&self.files, state.checkpoint, state.horizon, &state.markers)
            .await?;
        Ok(written)
    }

    async fn retract(
        &self,
        tables: &[String],
        why: &str,
        redo: Redo<'_>,
    ) -> Result<(), IngestError> {
        for table in tables {
            let removed = self.files.retract(table, redo).await?;
            if removed > 0 {
                tracing::warn!(table, removed, "removed files {why}");
            }
        }
        Ok(())
    }

    async fn clean_staging(&self, tables: &[String]) -> Result<(), IngestError> {
        for table in tables {
            let removed = self.files.clean_staging(table).await?;
            if removed > 0 {
                tracing::info!(
                    table,
                    removed,
                    "removed staged files of work after the last checkpoint"
                );
            }
        }
        Ok(())
    }

    async fn resume(
        &self,
        restored: &Checkpoint,
        store: &CheckpointStore,
    ) -> Result<(), IngestError> {
        if let Some(board) = self.board.lock().await.as_mut() {
            board.restore(restored.id).await?;
        }
        // Lake partitions committed by the older kept checkpoints may still wait for their merge.
        self.merges.resume(restored, store).await?;
        Ok(())
    }

    async fn maintain(&self, oldest_kept: u64) -> Result<(), IngestError> {
        let merges = &self.merges;
        merges
            .merge_due(oldest_kept, |codec, table, segments| async move {
                self.merge(codec, table, segments).await
            })
            .await
    }

    fn unsettled(&self) -> bool {
        !self.merges.is_empty()
    }
}
