//! The life of one unit of state, from its lock to its summary.
//!
//! A unit is the share of a pipeline's state that one engine keeps: the whole pipeline, or
//! one Kafka partition's ([`crate::member`] runs one unit per assigned Kafka partition,
//! [`crate::run`] runs the whole pipeline as one). Both go through the same steps, kept
//! here so that neither reaches into the other:
//!
//! ```text
//! lock_unit ─▶ recover ─────────────────────────────▶ execute ──────────────────────▶ summarize
//!              restore the newest checkpoint,           drive (engine loop, blocking
//!              check it is this input's,                thread) ─▶ CommitWriter (here)
//!              finish its commit, open the engine
//! ```

use std::fmt;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{Receiver, RecvTimeoutError, TryRecvError};
use std::time::{Duration, Instant};

use shared::config::{EndOfInput, LakeFormat, LoadedConfig, PipelineConfig};
use shared::lake::Lake;
use shared::lock::{LockError, LockTarget, Locks};
use tokio::sync::mpsc;

use crate::checkpoint::plan::{Plan, TableChange};
use crate::checkpoint::{Checkpoint, CheckpointStore};
use crate::commit::Committer;
use crate::commit::delta::DeltaCommitter;
use crate::commit::hive::HiveCommitter;
use crate::dead_letter::DeadLetter;
use crate::engine::{Engine, EngineError};
use crate::lookup::Lookups;
use crate::metrics::Telemetry;
use crate::parallel::{InFlightQueue, Parsers};
use crate::sink::EncodedFile;
use crate::sources::{Chunk, SourceError};
use crate::writer::{CheckpointHeader, CommitWriter, ToWriter};
use crate::{IngestError, RunOptions, RunSummary, board};

/// The share of a pipeline's state one engine keeps: all of it, or one Kafka partition's.
/// Each unit has its own checkpoints (`_checkpoints/<pipeline>[/<tag>]`), lock, dead-letter
/// file and file names, so units move between processes without meeting.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Unit {
    /// `p3` (Kafka partition 3); `None` for the whole pipeline.
    pub tag: Option<String>,
    /// Every unit of the pipeline (all Kafka partitions of its topics), when there are
    /// several.
    pub all: Vec<String>,
}

impl Unit {
    pub fn whole() -> Unit {
        Unit::default()
    }

    pub fn tagged(tag: String, all: Vec<String>) -> Unit {
        Unit {
            tag: Some(tag),
            all,
        }
    }

    /// Where the unit's checkpoints and lock live.
    pub fn checkpoint_dir(&self, lake: &Lake, pipeline: &str) -> object_store::path::Path {
        let dir = lake.checkpoint_dir(pipeline);
        match &self.tag {
            Some(tag) => dir.join(tag.as_str()),
            None => dir,
        }
    }

    /// The unit's dead-letter file: `x.invalid.jsonl` becomes `x.invalid.p3.jsonl` (each
    /// unit cuts its own file back to its checkpoint on a restart).
    fn dead_letter_path(&self, path: &std::path::Path) -> PathBuf {
        let Some(tag) = &self.tag else {
            return path.to_path_buf();
        };
        let name = path.file_name().unwrap_or_default().to_string_lossy();
        let name = match name.rsplit_once('.') {
            Some((stem, ext)) => format!("{stem}.{tag}.{ext}"),
            None => format!("{name}.{tag}"),
        };
        path.with_file_name(name)
    }
}

impl fmt::Display for Unit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.tag {
            Some(tag) => write!(f, "{tag}"),
            None => f.write_str("the pipeline"),
        }
    }
}

/// The names of the tables a pipeline writes: windowed tables, then the late-events table.
pub fn table_names(config: &PipelineConfig) -> Vec<String> {
    config
        .tables
        .iter()
        .map(|t| t.name.clone())
        .chain(config.late_events.iter().map(|l| l.table.clone()))
        .collect()
}

/// Takes the lock of a unit's output in a lake: one process writes it at a time
/// (`_checkpoints/<pipeline>[/<unit>]/writer.lock`; see [`shared::lock`]). A run holds it
/// from before recovery to its end; `compact` too.
pub async fn lock_unit(
    lake: &Lake,
    pipeline: &str,
    unit: &Unit,
    wait: Option<Duration>,
) -> Result<Locks, IngestError> {
    let name = match &unit.tag {
        Some(tag) => format!("partition {tag} of pipeline `{pipeline}`"),
        None => format!("pipeline `{pipeline}`"),
    };
    let target = LockTarget {
        name,
        path: unit.checkpoint_dir(lake, pipeline).join("writer.lock"),
    };
    shared::lock::acquire(lake, vec![target], wait)
        .await
        .map_err(|e| match e {
            LockError::Busy { owner, path, .. } => IngestError::Busy {
                pipeline: pipeline.to_string(),
                owner,
                path,
            },
            e => IngestError::Lock(e),
        })
}

/// What recovery hands the run: the engine at the restored state and the writer that
/// continues its commits.
pub struct Recovered {
    pub engine: Engine,
    pub writer: CommitWriter,
    pub resumed_from: Option<u64>,
    /// The restored checkpoint was taken after an end of input emitted every window.
    pub flushed_at_end: bool,
    format: shared::config::FormatConfig,
    /// Whether the first chunk starts the input (a CSV header is expected there; never in a
    /// Kafka record).
    at_start: bool,
}

/// Recovery: finish the commit of the newest checkpoint that reads back, undo what a newer
/// (damaged) one or an unfinished rebuild committed, drop everything staged after it, and
/// restore the engine; or, without a checkpoint, start a generation with a first one.
pub async fn recover(
    loaded: &LoadedConfig,
    opts: &RunOptions,
    lake: &Lake,
    identity: String,
    telemetry: &Arc<Telemetry>,
    locks: Locks,
    unit: &Unit,
) -> Result<Recovered, IngestError> {
    let config = &loaded.config;
    if unit.tag.is_some() && opts.rebuild.is_empty() {
        crate::rebuild::refuse_unfinished(loaded, lake).await?;
    }
    let tables = table_names(config);
    let store = CheckpointStore::in_dir(
        lake.clone(),
        unit.checkpoint_dir(lake, &config.name),
        config.checkpoint.keep as usize,
    );
    let (restored, highest) = store.latest().await?;
    let restored = if opts.from_scratch { None } else { restored };
    let plan = checked_plan(loaded, opts, restored.as_ref(), unit)?;
    let generation = check_input(config, restored.as_ref(), &identity)?.unwrap_or(highest + 1);
    let header = CheckpointHeader::new(config, generation, identity);
    let committer = committer_of(config, lake, unit, telemetry);
    let mut writer = CommitWriter::new(
        lake.clone(),
        committer,
        store,
        header,
        telemetry.clone(),
        locks,
    );
    writer.emit = opts.emit_commits;
    if let Some(ck) = &restored {
        finish_commit(&mut writer, ck, highest, &tables).await?;
    }
    writer.committer.clean_staging(&tables).await?;
    let mut engine = open_engine(loaded, lake, telemetry, unit)?;
    let resumed_from = restored.as_ref().map(|c| c.id);
    let flushed_at_end = restored
        .as_ref()
        .is_some_and(|c| c.engine.horizon > i64::MAX / 2);
    if let (Some(ck), Some(plan)) = (restored, plan) {
        engine.restore(plan.apply(ck.engine))?;
    }
    let engine_at_start = engine.position().is_start();
    engine.set_next_checkpoint(highest + 1);
    if resumed_from.is_none() {
        start_generation(&mut engine, &mut writer, generation, &tables).await?;
    }
    Ok(Recovered {
        engine,
        writer,
        resumed_from,
        flushed_at_end,
        format: config.format.clone(),
        at_start: unit.tag.is_none() && engine_at_start,
    })
}

/// What the run does with the restored checkpoint's state, checked against the pipeline
/// file before anything is done with it.
fn checked_plan(
    loaded: &LoadedConfig,
    opts: &RunOptions,
    restored: Option<&Checkpoint>,
    unit: &Unit,
) -> Result<Option<Plan>, IngestError> {
    let Some(ck) = restored else {
        return Ok(None);
    };
    let plan = Plan::new(loaded, ck, &opts.rebuild);
    plan.check(loaded)?;
    log_changes(&plan, unit);
    Ok(Some(plan))
}

/// Says what a run does differently from the checkpoint's pipeline file (`stream-ingest
/// plan` prints the same).
fn log_changes(plan: &Plan, unit: &Unit) {
    for t in &plan.tables {
        if t.change != TableChange::Unchanged {
            tracing::warn!(
                table = %t.name,
                unit = %unit,
                checkpoint = plan.checkpoint,
                "the pipeline file changed since the checkpoint: {}",
                t.change
            );
        }
    }
}

/// Checks that the restored checkpoint was taken reading this input; its generation.
fn check_input(
    config: &PipelineConfig,
    restored: Option<&Checkpoint>,
    identity: &str,
) -> Result<Option<u64>, IngestError> {
    let Some(ck) = restored else {
        return Ok(None);
    };
    if ck.input != identity {
        return Err(IngestError::Usage(format!(
            "the lake holds a checkpoint of `{}` reading {}; to rebuild its tables from {} instead, pass --from-scratch",
            config.name, ck.input, identity
        )));
    }
    Ok(Some(ck.generation))
}

/// The commit protocol of a unit's lake: its file names, the board it commits through (a
/// Kafka unit), compaction at commit.
fn committer_of(
    config: &PipelineConfig,
    lake: &Lake,
    unit: &Unit,
    telemetry: &Arc<Telemetry>,
) -> Arc<dyn Committer> {
    // A unit's lake partitions hold the files of other units too: none merges them alone.
    let compact = (config.partition_commit.compact && unit.tag.is_none())
        .then(|| config.lake.compression.codec());
    if config.lake.format == LakeFormat::Delta {
        let delta = DeltaCommitter::new(lake.clone(), &config.name, unit)
            .with_compaction(compact)
            .with_retention(config.lake.delta.vacuum.0);
        return Arc::new(delta);
    }
    let mut hive = HiveCommitter::new(lake.clone(), unit.tag.clone(), telemetry.clone());
    if let Some(tag) = &unit.tag {
        let board = board::Board::new(lake.clone(), &config.name, tag.clone(), unit.all.clone());
        hive = hive.with_board(board);
    }
    Arc::new(hive.with_compaction(compact))
}

/// Finishes the commit of the restored checkpoint (its files and markers again, the merges
/// it may have left), and removes what a newer (unreadable) checkpoint or an unfinished
/// rebuild committed: the replay redoes it.
async fn finish_commit(
    writer: &mut CommitWriter,
    ck: &Checkpoint,
    highest: u64,
    tables: &[String],
) -> Result<(), IngestError> {
    writer.committer.resume(ck, &writer.store).await?;
    writer.commit(ck).await?;
    // A newer checkpoint did not read back: what it committed is redone by the replay,
    // and so are the files of an unfinished rebuild.
    let (id, generation) = (ck.id, ck.generation);
    let unfinished_rebuild = id == generation && generation > 1;
    if highest > id || unfinished_rebuild {
        let redo = move |c| c > id || (unfinished_rebuild && c < generation);
        let why = "that the replay rewrites";
        writer.committer.retract(tables, why, &redo).await?;
    }
    tracing::info!(
        checkpoint = id,
        position = ?ck.engine.source,
        "resuming"
    );
    Ok(())
}

/// The unit's engine, at the start (its dead-letter file and dimension files opened).
fn open_engine(
    loaded: &LoadedConfig,
    lake: &Lake,
    telemetry: &Arc<Telemetry>,
    unit: &Unit,
) -> Result<Engine, IngestError> {
    let config = &loaded.config;
    let dead_letter = match &config.invalid_lines.dead_letter {
        Some(p) => Some(DeadLetter::open(&unit.dead_letter_path(p))?),
        None => None,
    };
    let lookups = Lookups::open(config, |p| loaded.resolve(p)).map_err(EngineError::from)?;
    let mut engine = Engine::new(
        config,
        lake.clone(),
        dead_letter,
        telemetry.clone(),
        lookups,
    )?;
    engine.set_unit(unit.tag.clone());
    Ok(engine)
}

/// A first checkpoint at the start, so that a crash before the next one restarts from a
/// known state (the dead-letter file's length included). It starts a new generation: the
/// files of earlier runs (a rebuild with --from-scratch, or checkpoints that all failed to
/// read back) are removed once it is durable.
async fn start_generation(
    engine: &mut Engine,
    writer: &mut CommitWriter,
    generation: u64,
    tables: &[String],
) -> Result<(), IngestError> {
    let mut files = Vec::new();
    let snap = engine.snapshot(&mut files)?;
    debug_assert!(files.is_empty());
    writer.first_checkpoint(snap).await?;
    if generation > 1 {
        let redo = move |c| c < generation;
        let why = "of earlier runs (rebuild)";
        writer.committer.retract(tables, why, &redo).await?;
    }
    Ok(())
}

/// How the engine loop is paced.
#[derive(Debug, Clone, Copy)]
pub struct DriveOptions {
    interval: Duration,
    idle_timeout: Option<Duration>,
    end_of_input: EndOfInput,
}

impl DriveOptions {
    pub fn of(loaded: &LoadedConfig, opts: &RunOptions) -> DriveOptions {
        let config = &loaded.config;
        DriveOptions {
            interval: opts
                .checkpoint_interval
                .unwrap_or(config.checkpoint.interval)
                .0,
            idle_timeout: config.event_time.idle_timeout.map(|d| d.0),
            end_of_input: opts.end_of_input.unwrap_or(config.end_of_input),
        }
    }
}

/// The chunks a source sends a unit.
pub type ChunkReceiver = Receiver<Result<Chunk, SourceError>>;

/// Runs a recovered unit on the chunks of `chunk_rx`: the engine loop on a blocking thread,
/// the writer here, until the chunks end (then `end_of_input` says what happens to the open
/// windows) or `stop` is set
/// (then it checkpoints). Returns whether it was stopped.
pub async fn execute(
    recovered: Recovered,
    chunk_rx: ChunkReceiver,
    pace: DriveOptions,
    threads: usize,
    stop: Arc<AtomicBool>,
) -> Result<bool, IngestError> {
    let Recovered {
        mut engine,
        mut writer,
        format,
        at_start,
        ..
    } = recovered;
    let parsers = Parsers::new(&format, threads, at_start, engine.prepare());
    engine.set_threads(threads);
    tracing::debug!(threads, "parsing");
    let (tx, mut rx) = mpsc::channel::<ToWriter>(8);
    let telemetry = writer.telemetry.clone();
    let engine_stop = stop.clone();
    let engine_task = tokio::task::spawn_blocking(move || {
        drive(engine, parsers, chunk_rx, tx, pace, engine_stop)
    });

    let mut write_error: Option<IngestError> = None;
    while let Some(msg) = rx.recv().await {
        if stop.load(Ordering::SeqCst) {
            telemetry.set_ready(false);
        }
        if let Err(e) = writer.handle(msg).await {
            write_error = Some(e);
            break;
        }
    }
    drop(rx);
    let engine_result = engine_task
        .await
        .map_err(|e| IngestError::Internal(format!("engine panicked: {e}")))?;
    if let Some(e) = write_error {
        return Err(e);
    }
    let interrupted = engine_result?;
    if !interrupted {
        writer.settle().await?;
    }
    Ok(interrupted)
}

/// The engine loop (on a blocking thread): chunks from the source go to the parsers, parsed
/// chunks are applied in source order, files and checkpoints go to the writer. Returns
/// whether it stopped on `stop` (true) or at the end of the input (false).
fn drive(
    mut engine: Engine,
    mut parsers: Parsers,
    chunk_rx: ChunkReceiver,
    tx: mpsc::Sender<ToWriter>,
    pace: DriveOptions,
    stop: Arc<AtomicBool>,
) -> Result<bool, IngestError> {
    let mut out = ToWriterQueue {
        tx,
        files: Vec::new(),
    };
    let mut last_checkpoint = Instant::now();
    let mut last_data = Instant::now();
    // Chunks being parsed, oldest first; the engine applies them in this order.
    let mut in_flight = InFlightQueue::new();
    loop {
        let ended = take_chunks(
            &chunk_rx,
            &mut parsers,
            &mut in_flight,
            &mut last_data,
            pace.interval.saturating_sub(last_checkpoint.elapsed()),
        )?;
        match in_flight.pop_front() {
            Some(item) => {
                let (events, after) = item.wait().map_err(IngestError::Internal)?;
                engine.apply(events, after, &mut out.files)?;
                out.send_files()?;
            }
            None if ended && stop.load(Ordering::SeqCst) => {
                // Stopped (a signal, or the unit's Kafka partition moved to another member):
                // the open windows stay open, in the checkpoint.
                out.checkpoint(&mut engine)?;
                return Ok(true);
            }
            None if ended => {
                engine.finish(pace.end_of_input, &mut out.files)?;
                out.send_files()?;
                out.checkpoint(&mut engine)?;
                return Ok(false);
            }
            None => advance_if_idle(&mut engine, &mut out, pace.idle_timeout, last_data)?,
        }
        let stopping = stop.load(Ordering::SeqCst);
        if stopping || last_checkpoint.elapsed() >= pace.interval {
            out.checkpoint(&mut engine)?;
            last_checkpoint = Instant::now();
        }
        if stopping {
            return Ok(true);
        }
    }
}

/// Nothing to apply: with `event_time.idle_timeout`, a source quiet that long moves the
/// watermark with the wall clock ([`Engine::advance_idle`]).
fn advance_if_idle(
    engine: &mut Engine,
    out: &mut ToWriterQueue,
    idle_timeout: Option<Duration>,
    last_data: Instant,
) -> Result<(), IngestError> {
    if let Some(idle) = idle_timeout
        && last_data.elapsed() >= idle
    {
        engine.advance_idle(last_data.elapsed(), &mut out.files)?;
        out.send_files()?;
    }
    Ok(())
}

/// Keeps the parsers busy: takes what the source has, up to the pool's depth; waits (at
/// most `until_checkpoint`, and 200 ms) only when nothing is in flight. Returns whether the
/// source ended.
fn take_chunks(
    chunk_rx: &ChunkReceiver,
    parsers: &mut Parsers,
    in_flight: &mut InFlightQueue,
    last_data: &mut Instant,
    until_checkpoint: Duration,
) -> Result<bool, IngestError> {
    while in_flight.len() < parsers.depth() {
        let received = if in_flight.is_empty() {
            chunk_rx.recv_timeout(until_checkpoint.min(Duration::from_millis(200)))
        } else {
            chunk_rx.try_recv().map_err(|e| match e {
                TryRecvError::Empty => RecvTimeoutError::Timeout,
                TryRecvError::Disconnected => RecvTimeoutError::Disconnected,
            })
        };
        match received {
            Ok(chunk) => {
                in_flight.push_back(parsers.submit(chunk?));
                *last_data = Instant::now();
            }
            Err(RecvTimeoutError::Timeout) => return Ok(false),
            Err(RecvTimeoutError::Disconnected) => return Ok(true),
        }
    }
    Ok(false)
}

/// What the engine loop hands the writer task: the files the engine cut, then checkpoints.
struct ToWriterQueue {
    tx: mpsc::Sender<ToWriter>,
    /// Files cut and not sent yet.
    files: Vec<EncodedFile>,
}

impl ToWriterQueue {
    fn stopped_writer() -> IngestError {
        IngestError::Internal("the writer stopped".into())
    }

    /// Sends the files cut so far.
    fn send_files(&mut self) -> Result<(), IngestError> {
        for f in self.files.drain(..) {
            self.tx
                .blocking_send(ToWriter::File(f))
                .map_err(|_| Self::stopped_writer())?;
        }
        Ok(())
    }

    /// Takes a checkpoint of the engine and sends it after the files that belong to it.
    fn checkpoint(&mut self, engine: &mut Engine) -> Result<(), IngestError> {
        let snap = engine.snapshot(&mut self.files)?;
        self.send_files()?;
        self.tx
            .blocking_send(ToWriter::Checkpoint(Box::new(snap)))
            .map_err(|_| Self::stopped_writer())
    }
}

/// The summary of a unit's run (without its duration).
pub fn summarize(
    telemetry: &Telemetry,
    resumed_from: Option<u64>,
    interrupted: bool,
) -> RunSummary {
    let p = telemetry.published();
    RunSummary {
        stats: telemetry.engine_stats(),
        files_written: p.files,
        bytes_written: p.bytes,
        rows_written: p.rows,
        checkpoints: p.checkpoints,
        checkpoint_bytes: p.checkpoint_bytes,
        checkpoint_time: p.checkpoint_time,
        resumed_from,
        interrupted,
        seconds: 0.0,
    }
}
