//! The writer task: makes the engine's output durable and visible, in the order the engine
//! produced it, through the lake format's [`Committer`].
//!
//! ```text
//! engine thread ── File ──────▶ stage (pre-commit)
//!               ── Checkpoint ▶ write checkpoint N {state, staged files}   (durable)
//!                               commit N: its files, its complete partitions (visible)
//!                               maintenance no kept checkpoint can take back (merges)
//!                               prune checkpoints older than `keep`
//! ```
//!
//! Every file sent before a checkpoint belongs to it, because both travel through one
//! channel. Maintenance happens before pruning, so a crash between the two leaves the older
//! checkpoint (and with it what it committed, [`CheckpointStore::older_markers`]) for the
//! restart to finish.

use std::sync::Arc;
use std::time::Instant;

use futures::future::BoxFuture;
use futures::stream::{FuturesUnordered, StreamExt};

use shared::commit::{CommitEvent, PendingFile};
use shared::lake::Lake;
use shared::lock::Locks;

use crate::IngestError;
use crate::checkpoint::{Checkpoint, CheckpointStore, EngineSnapshot, PipelineSpec};
use crate::commit::Committer;
use crate::commit::hive::IN_FLIGHT;
use crate::fault;
use crate::metrics::Telemetry;
use crate::sink::EncodedFile;
use crate::sources::Position;

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
    /// The header of a generation's checkpoints of `config` reading `input`.
    pub fn new(config: &shared::config::PipelineConfig, generation: u64, input: String) -> Self {
        CheckpointHeader {
            generation,
            pipeline: config.name.clone(),
            input,
            spec: PipelineSpec::of(config),
            rebuilt: Vec::new(),
        }
    }

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

/// Stages, checkpoints, commits, maintains and prunes.
pub struct CommitWriter {
    pub lake: Lake,
    /// The lake format's commit protocol.
    pub committer: Arc<dyn Committer>,
    pub store: CheckpointStore,
    pub header: CheckpointHeader,
    pub telemetry: Arc<Telemetry>,
    /// Print each committed partition as a JSON line (`--emit-commits`).
    pub emit: bool,
    /// Files being staged, and the staged files of the next checkpoint with the instants
    /// their windows closed.
    staging: FuturesUnordered<Staging>,
    pending: Vec<(PendingFile, Vec<Instant>)>,
    last: Option<EngineSnapshot>,
    /// The pipeline's lock, asked before every checkpoint and commit.
    locks: Locks,
    /// Called with each checkpoint's source position once it is durable (a Kafka unit
    /// commits its offset to the group then, for lag monitoring).
    pub on_durable: Option<OnDurable>,
}

impl CommitWriter {
    pub fn new(
        lake: Lake,
        committer: Arc<dyn Committer>,
        store: CheckpointStore,
        header: CheckpointHeader,
        telemetry: Arc<Telemetry>,
        locks: Locks,
    ) -> Self {
        CommitWriter {
            committer,
            lake,
            store,
            header,
            telemetry,
            emit: false,
            staging: FuturesUnordered::new(),
            pending: Vec::new(),
            last: None,
            locks,
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
            let closed = file.closed.clone();
            let pending = committer.stage(file).await?;
            Ok((pending, closed))
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

    /// Writes a checkpoint, commits it, does the maintenance it allows, prunes.
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
        self.commit(&ck).await?;
        for (f, closed) in ck.pending.iter().zip(&closed) {
            self.telemetry.file_published(f, closed);
        }
        // One checkpoint rebuilds: the next ones retract nothing.
        self.header.rebuilt.clear();
        if let Some(f) = &self.on_durable {
            f(&ck.engine.source);
        }
        self.fenced()?;
        self.committer.maintain(written.oldest_kept).await?;
        self.fenced()?;
        self.store.prune(written.stale).await;
        fault::point("after-publish");
        self.telemetry
            .checkpoint_done(ck.id, written.bytes, started.elapsed());
        self.last = Some(ck.engine);
        Ok(())
    }

    /// Commits a durable checkpoint (again, on recovery); after a rebuild's, deletes the
    /// checkpoints before it, whose state goes with the files it replaced.
    pub async fn commit(&mut self, ck: &Checkpoint) -> Result<(), IngestError> {
        let committed = self.committer.commit(ck).await?;
        for m in &committed {
            self.telemetry.partition_committed(m);
            if self.emit {
                emit_commit(&CommitEvent::new(&self.lake, m));
            }
        }
        if !ck.rebuilt.is_empty() {
            let older = self.store.older_than(ck.id).await?;
            self.store.prune(older).await;
        }
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

    /// At the end of a bounded input: checkpoints of the same state until the maintenance
    /// waits for nothing, so that each committed partition ends as one file. They carry no
    /// markers (those were written) and no files.
    pub async fn settle(&mut self) -> Result<(), IngestError> {
        let Some(mut last) = self.last.take() else {
            return Ok(());
        };
        while self.committer.unsettled() {
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
