//! The two-phase committer: the async task that makes the engine's output durable and
//! visible, in the order the engine produced it.
//!
//! ```text
//! engine thread ── File ──────▶ stage under _staging/ (pre-commit)
//!               ── Checkpoint ▶ write checkpoint N {state, staged files}   (durable)
//!                               publish its files (rename / copy)           (commit)
//!                               write the _SUCCESS markers of N
//!                               merge partitions committed before every kept checkpoint
//!                               prune checkpoints older than `keep`
//! ```
//!
//! Every file sent before a checkpoint belongs to it, because both travel through one
//! channel. Compaction at commit (`partition_commit.compact`) waits until no kept
//! checkpoint is at or before the partition's commit ([`crate::compact::mergeable`]), so a
//! restart never rewrites the marker of, nor retracts files from, a merged partition; merges
//! happen before pruning, so a crash between the two leaves the older checkpoint (and with
//! it the partition's name, [`CheckpointStore::older_markers`]) for the restart to finish.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Instant;

use futures::future::BoxFuture;
use futures::stream::{FuturesUnordered, StreamExt};

use shared::commit::{
    CommitError, CommitEvent, FileCommitter, MarkerError, PartitionMarker, PendingFile,
};
use shared::lake::{COMMIT_MARKER, Lake};
use shared::lock::Locks;

use crate::IngestError;
use crate::board::Board;
use crate::checkpoint::{Checkpoint, CheckpointStore, EngineSnapshot, PipelineSpec};
use crate::fault;
use crate::metrics::Telemetry;
use crate::sink::EncodedFile;
use crate::sources::Position;

/// Object-store requests of one kind (stage, publish, marker) in flight at once. On a local
/// disk each is a blocking call on tokio's blocking pool, so small files overlap their
/// directory and rename work; on S3 they overlap round trips.
const IN_FLIGHT: usize = 4;

type Staging = BoxFuture<'static, Result<(PendingFile, Vec<Instant>), IngestError>>;

/// What the engine thread sends the writer task, in order.
pub enum ToWriter {
    /// A complete file to stage.
    File(EncodedFile),
    /// A consistent state: every file sent before it belongs to it.
    Checkpoint(Box<EngineSnapshot>),
}

/// What every checkpoint of a run shares.
pub struct CheckpointHeader {
    pub generation: u64,
    pub pipeline: String,
    pub input: String,
    /// What computes the state: the pipeline file's spec.
    pub spec: PipelineSpec,
    /// Tables the checkpoints rebuild (`run --rebuild`: only its one checkpoint).
    pub rebuilt: Vec<String>,
}

impl CheckpointHeader {
    pub fn checkpoint(&self, engine: EngineSnapshot, pending: Vec<PendingFile>) -> Checkpoint {
        Checkpoint {
            id: engine.checkpoint,
            generation: self.generation,
            pipeline: self.pipeline.clone(),
            input: self.input.clone(),
            engine,
            pending,
            dimension_files: Vec::new(),
            spec: Some(self.spec.clone()),
            rebuilt: self.rebuilt.clone(),
        }
    }
}

/// What a writer calls once a checkpoint is durable, with its source position.
pub type OnDurable = Box<dyn Fn(&Position) + Send + Sync>;

/// Stages, checkpoints, publishes, commits and merges.
pub struct CommitWriter {
    pub lake: Lake,
    pub committer: FileCommitter,
    pub store: CheckpointStore,
    pub header: CheckpointHeader,
    pub telemetry: Arc<Telemetry>,
    /// Print each committed partition as a JSON line (`--emit-commits`).
    pub emit: bool,
    /// Codec of merged files; `None`: no compaction at commit.
    pub compact: Option<parquet::basic::Compression>,
    /// Files being staged, and the staged files of the next checkpoint with the instants
    /// their windows closed.
    staging: FuturesUnordered<Staging>,
    pending: Vec<(PendingFile, Vec<Instant>)>,
    /// Committed partitions with several files: (table, partition) → committing checkpoint.
    to_merge: BTreeMap<(String, Vec<String>), u64>,
    last: Option<EngineSnapshot>,
    /// The pipeline's lock, asked before every checkpoint and publish.
    locks: Locks,
    /// For a unit of a Kafka pipeline: where its lake partitions are committed with the
    /// other units' ([`Board`]); `None`: this writer commits its partitions itself.
    pub board: Option<Board>,
    /// Called with each checkpoint's source position once it is durable (a Kafka unit
    /// commits its offset to the group then, for lag monitoring).
    pub on_durable: Option<OnDurable>,
}

impl CommitWriter {
    pub fn new(
        lake: Lake,
        store: CheckpointStore,
        header: CheckpointHeader,
        telemetry: Arc<Telemetry>,
        locks: Locks,
    ) -> Self {
        CommitWriter {
            committer: FileCommitter::new(lake.clone()).with_fault_points(fault::point),
            lake,
            store,
            header,
            telemetry,
            emit: false,
            compact: None,
            staging: FuturesUnordered::new(),
            pending: Vec::new(),
            to_merge: BTreeMap::new(),
            last: None,
            locks,
            board: None,
            on_durable: None,
        }
    }

    /// Fails when the pipeline's lock may be another process's by now (a lease on object
    /// storage not renewed in time): nothing more may be published.
    fn fenced(&self) -> Result<(), IngestError> {
        self.locks.check().map_err(IngestError::Lock)
    }

    /// Handles one message of the engine.
    pub async fn handle(&mut self, msg: ToWriter) -> Result<(), IngestError> {
        match msg {
            ToWriter::File(file) => self.stage(file).await,
            ToWriter::Checkpoint(snap) => self.checkpoint(*snap).await,
        }
    }

    /// Starts staging a file (up to [`IN_FLIGHT`] at once); they all finish before the next
    /// checkpoint is written.
    async fn stage(&mut self, file: EncodedFile) -> Result<(), IngestError> {
        let committer = self.committer.clone();
        self.staging.push(Box::pin(async move {
            let staged = committer
                .stage(
                    &file.table,
                    &file.partition,
                    &file.name,
                    file.data,
                    file.rows,
                )
                .await?;
            Ok((PendingFile::from(&staged), file.closed))
        }));
        while self.staging.len() >= IN_FLIGHT {
            self.staged_one().await?;
        }
        Ok(())
    }

    /// Waits for one file being staged.
    async fn staged_one(&mut self) -> Result<(), IngestError> {
        if let Some(done) = self.staging.next().await {
            self.pending.push(done?);
            fault::point("after-stage");
        }
        Ok(())
    }

    /// Writes a checkpoint (the first of a run too: no files), publishes its files, writes
    /// its markers, merges what became mergeable, prunes.
    pub async fn checkpoint(&mut self, snap: EngineSnapshot) -> Result<(), IngestError> {
        let started = Instant::now();
        while !self.staging.is_empty() {
            self.staged_one().await?;
        }
        let mut pending = std::mem::take(&mut self.pending);
        pending.sort_by(|a, b| a.0.target.cmp(&b.0.target));
        let (pending, closed): (Vec<PendingFile>, Vec<Vec<Instant>>) = pending.into_iter().unzip();
        let mut ck = self.header.checkpoint(snap, pending);
        self.fenced()?;
        let written = self.store.write(&mut ck).await?;
        fault::point("after-checkpoint");
        self.fenced()?;
        self.publish(&ck.pending, &closed).await?;
        if ck.rebuilt.is_empty() {
            self.commit_checkpoint(&ck.engine).await?;
        } else if self.board.is_none() {
            self.replace_rebuilt(&ck).await?;
            self.commit_checkpoint(&ck.engine).await?;
        }
        // A Kafka unit's rebuild is swapped in with every unit's, once all are rebuilt
        // (`rebuild::kafka`). One checkpoint rebuilds: the next ones retract nothing.
        self.header.rebuilt.clear();
        if let Some(f) = &self.on_durable {
            f(&ck.engine.source);
        }
        self.merge_due(written.oldest_kept).await?;
        self.fenced()?;
        self.store.prune(written.stale).await;
        fault::point("after-publish");
        self.telemetry
            .checkpoint_done(ck.id, written.bytes, started.elapsed());
        self.last = Some(ck.engine);
        Ok(())
    }

    /// After a rebuild's checkpoint is durable and its files published: removes the rebuilt
    /// tables' files and markers of earlier checkpoints (before the new markers are
    /// written), and the earlier checkpoints, whose state goes with those files.
    pub async fn replace_rebuilt(&mut self, ck: &Checkpoint) -> Result<(), IngestError> {
        let id = ck.id;
        crate::unit::retract(
            &self.committer,
            &ck.rebuilt,
            "replaced by the rebuild",
            |c| c < id,
        )
        .await?;
        fault::point("after-rebuild-retract");
        let older = self.store.older_than(id).await?;
        self.store.prune(older).await;
        Ok(())
    }

    /// The first checkpoint of a generation (no files, no markers): written and pruned,
    /// without the fault points and counters of the run's checkpoints.
    pub async fn first_checkpoint(&mut self, snap: EngineSnapshot) -> Result<(), IngestError> {
        let mut ck = self.header.checkpoint(snap, Vec::new());
        self.fenced()?;
        let written = self.store.write(&mut ck).await?;
        self.fenced()?;
        self.store.prune(written.stale).await;
        self.last = Some(ck.engine);
        Ok(())
    }

    /// Publishes a checkpoint's files, [`IN_FLIGHT`] at once (the restart publishes them
    /// all again, so the order does not matter).
    async fn publish(
        // `&mut`: the writer is `Send` but not `Sync` (the staging futures are not).
        &mut self,
        files: &[PendingFile],
        closed: &[Vec<Instant>],
    ) -> Result<(), IngestError> {
        let committer = &self.committer;
        // Futures made before they are streamed: the writer runs in spawned tasks, whose
        // futures must be `Send` for every lifetime, which a closure held by the stream
        // across an `.await` is not (to the compiler).
        let publishing: Vec<BoxFuture<'_, Result<_, CommitError>>> = files
            .iter()
            .zip(closed)
            .map(|(f, closed)| -> BoxFuture<'_, Result<_, CommitError>> {
                Box::pin(async move { committer.publish_pending(f).await.map(|()| (f, closed)) })
            })
            .collect();
        let mut published = futures::stream::iter(publishing).buffer_unordered(IN_FLIGHT);
        let mut first = true;
        while let Some(done) = published.next().await {
            let (f, closed) = done?;
            if std::mem::take(&mut first) {
                fault::point("mid-publish");
            }
            self.telemetry.file_published(f, closed);
        }
        Ok(())
    }

    /// Commits what a checkpoint's state says is complete: its markers, or for a unit, what
    /// the board says every unit passed.
    pub async fn commit_checkpoint(&mut self, state: &EngineSnapshot) -> Result<(), IngestError> {
        let Some(board) = &mut self.board else {
            return self.commit(&state.markers).await;
        };
        let written = board
            .after_checkpoint(
                &self.committer,
                state.checkpoint,
                state.horizon,
                &state.markers,
            )
            .await?;
        for m in &written {
            self.telemetry.partition_committed(m);
            if self.emit {
                emit_commit(&CommitEvent::new(self.committer.lake(), m));
            }
        }
        Ok(())
    }

    /// Writes `_SUCCESS` markers (idempotent: the same content again on a restart), prints
    /// them with `--emit-commits`, and queues partitions with several files for merging.
    pub async fn commit(&mut self, markers: &[PartitionMarker]) -> Result<(), IngestError> {
        let committer = &self.committer;
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
            self.telemetry.partition_committed(m);
            if self.emit {
                emit_commit(&CommitEvent::new(self.committer.lake(), m));
            }
            self.queue(m);
        }
        Ok(())
    }

    /// Queues a committed partition for merging, if it has several files.
    pub fn queue(&mut self, m: &PartitionMarker) {
        if self.compact.is_some() && m.files.len() > 1 {
            self.to_merge
                .insert((m.table.clone(), m.partition.clone()), m.checkpoint);
        }
    }

    /// Merges the queued partitions no kept checkpoint can take back.
    async fn merge_due(&mut self, oldest_kept: u64) -> Result<(), IngestError> {
        let Some(codec) = self.compact else {
            return Ok(());
        };
        let due: Vec<(String, Vec<String>)> = self
            .to_merge
            .iter()
            .filter(|(_, c)| crate::compact::mergeable(**c, oldest_kept))
            .map(|(k, _)| k.clone())
            .collect();
        for key in due {
            self.fenced()?;
            self.to_merge.remove(&key);
            let (table, segments) = key;
            let partition = shared::lake::PartitionPath { segments };
            // A merge a crash interrupted is finished first (its marker is then current).
            self.committer
                .finish_replacement_in(&table, &partition)
                .await?;
            let path = self.lake.data_file(&table, &partition, COMMIT_MARKER);
            let marker = match self.committer.read_marker(&path).await {
                Ok(m) => m,
                Err(e) => {
                    // Retracted by a rebuild since, or removed by hand: nothing to merge.
                    tracing::debug!(error = %e, "not merging a partition without its marker");
                    continue;
                }
            };
            if marker.files.len() < 2 {
                continue;
            }
            let merged =
                crate::compact::merge(&self.lake, &self.committer, &marker, codec, false).await?;
            self.telemetry.partition_compacted(&marker, merged.files);
        }
        Ok(())
    }

    /// At the end of a bounded input: checkpoints of the same state until every queued
    /// partition is mergeable, so that each committed partition ends as one file. They
    /// carry no markers (those were written) and no files.
    pub async fn settle(&mut self) -> Result<(), IngestError> {
        let Some(mut last) = self.last.take() else {
            return Ok(());
        };
        while !self.to_merge.is_empty() {
            last.checkpoint += 1;
            last.markers.clear();
            self.checkpoint(last.clone()).await?;
        }
        self.last = Some(last);
        Ok(())
    }
}

/// One JSON line on standard output, flushed at once so a reader downstream sees it now. A
/// closed pipe (the reader stopped) is logged, not fatal: the lake is the real output.
fn emit_commit(event: &CommitEvent) {
    use std::io::Write;
    let line = serde_json::to_string(event).expect("a commit event serializes");
    let mut out = std::io::stdout().lock();
    if let Err(e) = writeln!(out, "{line}").and_then(|_| out.flush()) {
        tracing::warn!(error = %e, "cannot print a commit event");
    }
}
