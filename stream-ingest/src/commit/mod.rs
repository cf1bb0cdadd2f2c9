//! The lake's commit protocol behind one interface, the role of Arroyo's
//! `TwoPhaseCommitter`: how the files of a checkpoint become visible exactly once, whatever
//! the table format.
//!
//! ```text
//! engine ─ file ─▶ stage            (pre-commit: complete, not visible)
//!        ─ state ▶ checkpoint N     (durable: names the staged files)
//!                  commit(N)        (visible: the files, the partitions N completed)
//! restart: commit(restored) again, retract what later checkpoints made visible, clean
//! ```
//!
//! The writer ([`crate::writer`]), recovery ([`crate::unit`]) and the rebuild drive a
//! [`Committer`] and do not know which format it writes:
//! - [`hive::HiveCommitter`]: Hive-partitioned Parquet, published by rename or copy, and
//!   `_SUCCESS` markers (through the board for a Kafka pipeline's units), merged at commit.
//! - [`delta::DeltaCommitter`]: the same files under their final names, each checkpoint's
//!   committed to every table's Delta log with the checkpoint id and the writer's horizon.

pub mod delta;
pub mod hive;

use std::collections::BTreeMap;
use std::sync::Mutex;

use async_trait::async_trait;
use shared::commit::{PartitionMarker, PendingFile};

use crate::IngestError;
use crate::checkpoint::{Checkpoint, CheckpointStore};
use crate::sink::EncodedFile;

/// Committed partitions waiting to be merged (compaction at commit, either format): each
/// is merged once no kept checkpoint can take its commit back ([`crate::compact::mergeable`]).
pub struct MergeQueue {
    /// Codec of merged files; `None`: no compaction at commit.
    pub codec: Option<parquet::basic::Compression>,
    /// (table, partition) → committing checkpoint.
    waiting: Mutex<BTreeMap<(String, Vec<String>), u64>>,
}

impl MergeQueue {
    pub fn new(codec: Option<parquet::basic::Compression>) -> Self {
        MergeQueue {
            codec,
            waiting: Mutex::new(BTreeMap::new()),
        }
    }

    /// Queues a committed partition, if it has several files.
    pub fn queue(&self, m: &PartitionMarker) {
        if self.codec.is_some() && m.files.len() > 1 {
            self.waiting
                .lock()
                .expect("not poisoned")
                .insert((m.table.clone(), m.partition.clone()), m.checkpoint);
        }
    }

    /// Recovery: queues again what the checkpoints kept before `restored` committed.
    pub async fn resume(
        &self,
        restored: &Checkpoint,
        store: &CheckpointStore,
    ) -> Result<(), IngestError> {
        if self.codec.is_some() {
            for m in store.older_markers(restored.id).await? {
                self.queue(&m);
            }
        }
        Ok(())
    }

    /// Takes the partitions no kept checkpoint (the oldest is `oldest_kept`) can take back.
    fn take_due(&self, oldest_kept: u64) -> Vec<(String, Vec<String>)> {
        let mut waiting = self.waiting.lock().expect("not poisoned");
        let due: Vec<_> = waiting
            .iter()
            .filter(|(_, c)| crate::compact::mergeable(**c, oldest_kept))
            .map(|(k, _)| k.clone())
            .collect();
        waiting.retain(|k, _| !due.contains(k));
        due
    }

    /// Merges, with `merge`, every partition [`MergeQueue::take_due`] gives.
    pub async fn merge_due<F, Fut>(&self, oldest_kept: u64, mut merge: F) -> Result<(), IngestError>
    where
        F: FnMut(parquet::basic::Compression, String, Vec<String>) -> Fut,
        Fut: std::future::Future<Output = Result<(), IngestError>>,
    {
        let Some(codec) = self.codec else {
            return Ok(());
        };
        for (table, segments) in self.take_due(oldest_kept) {
            merge(codec, table, segments).await?;
        }
        Ok(())
    }

    pub fn is_empty(&self) -> bool {
        self.waiting.lock().expect("not poisoned").is_empty()
    }
}

/// Which checkpoints a retraction takes back.
pub type Redo<'a> = &'a (dyn Fn(u64) -> bool + Send + Sync);

/// A table format's commit protocol.
#[async_trait]
pub trait Committer: Send + Sync {
    /// Pre-commit: writes a complete file where no reader sees it yet. Before the checkpoint
    /// that names it.
    async fn stage(&self, file: EncodedFile) -> Result<PendingFile, IngestError>;

    /// Commit, once `ck` is durable: makes its files visible, replaces the files of the
    /// tables it rebuilt, and commits the lake partitions its state completed. Idempotent:
    /// recovery commits the restored checkpoint again. Returns the partitions committed.
    async fn commit(&self, ck: &Checkpoint) -> Result<Vec<PartitionMarker>, IngestError>;

    /// Recovery: takes back what the checkpoints `redo` selects made visible in `tables`
    /// (their replay makes it again); `why` is logged.
    async fn retract(
        &self,
        tables: &[String],
        why: &str,
        redo: Redo<'_>,
    ) -> Result<(), IngestError>;

    /// Recovery: drops the files staged for work after the restored checkpoint.
    async fn clean_staging(&self, tables: &[String]) -> Result<(), IngestError>;

    /// Recovery: the restored checkpoint `restored` is committed again next; prepares what
    /// the format keeps between commits (the board's waiting markers, merges still due).
    async fn resume(
        &self,
        restored: &Checkpoint,
        store: &crate::checkpoint::CheckpointStore,
    ) -> Result<(), IngestError>;

    /// After a checkpoint is committed, with the oldest checkpoint kept: the maintenance no
    /// restart can take back any more (merging committed partitions).
    async fn maintain(&self, oldest_kept: u64) -> Result<(), IngestError>;

    /// Whether maintenance waits for later checkpoints: the end of a bounded input takes
    /// checkpoints until it does not.
    fn unsettled(&self) -> bool;
}
