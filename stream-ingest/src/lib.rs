//! `stream-ingest`: the streaming stage of a pipeline.
//!
//! It reads lines from one of the [`sources`], parses them into Arrow batches ([`format`]), assigns
//! event-time windows and keeps keyed aggregates ([`window`], [`table`], [`aggregate`]),
//! and writes each closed window as Parquet into the lake ([`sink`], then
//! [`shared::commit`]). [`engine`] wires those together on one thread; [`run`] adds the
//! reader thread and the async writer task around it. Start reading at [`run`].
//!
//! `main.rs` only parses the command line ([`cli`]) and maps errors to exit codes.

pub mod aggregate;
pub mod board;
pub mod checkpoint;
pub mod cli;
pub mod compact;
pub mod dead_letter;
pub mod engine;
pub mod fault;
pub mod format;
pub mod http;
pub mod lookup;
pub mod member;
pub mod parallel;
pub mod produce;
pub mod sink;
pub mod sources;
pub mod table;
pub mod telemetry;
pub mod window;
pub mod writer;

use std::fmt;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{RecvTimeoutError, TryRecvError};
use std::time::{Duration, Instant};

use shared::HumanDuration;
use shared::commit::{CommitError, FileCommitter, MarkerError};
use shared::config::{ConfigError, LoadedConfig, SourceConfig};
use shared::lake::{Lake, LakeError};
use shared::lock::{LockError, LockTarget, Locks};
use tokio::sync::mpsc;

use crate::checkpoint::{CheckpointError, CheckpointStore};
use crate::dead_letter::{DeadLetter, DeadLetterError};
use crate::engine::{Engine, EngineError, EngineStats};
use crate::lookup::Lookups;
use crate::parallel::Parsers;
use crate::sink::EncodedFile;
use crate::sources::{Chunk, Input, ReaderOptions, SourceError};
use crate::telemetry::Telemetry;
use crate::writer::{CheckpointHeader, CommitWriter, ToWriter};

/// Everything that can stop a run. [`IngestError::exit_code`] maps it for scripts.
#[derive(Debug, thiserror::Error)]
pub enum IngestError {
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error("{0}")]
    Usage(String),
    #[error(transparent)]
    Lake(#[from] LakeError),
    #[error(transparent)]
    Source(#[from] SourceError),
    #[error(transparent)]
    Engine(#[from] EngineError),
    #[error(transparent)]
    Commit(#[from] CommitError),
    #[error(transparent)]
    DeadLetter(#[from] DeadLetterError),
    #[error(transparent)]
    Checkpoint(#[from] CheckpointError),
    #[error(transparent)]
    Marker(#[from] MarkerError),
    #[error(
        "pipeline `{pipeline}` is being written by {owner} ({path}): one process writes a pipeline's lake at a time. Stop that process first, or give this run another lake (--lake)"
    )]
    Busy {
        pipeline: String,
        owner: String,
        path: String,
    },
    /// A lock that could not be taken, or a lease lost while running (then nothing more
    /// was published).
    #[error("{0}; stopped before publishing anything more")]
    Lock(shared::lock::LockError),
    #[error(transparent)]
    Board(#[from] board::BoardError),
    #[error("Kafka: {0}")]
    Kafka(String),
    #[error("internal error: {0}")]
    Internal(String),
}

impl IngestError {
    /// 2 for a bad configuration or arguments, 3 when another process writes the pipeline
    /// (or took it over), 1 for anything else.
    pub fn exit_code(&self) -> u8 {
        match self {
            IngestError::Config(_)
            | IngestError::Usage(_)
            | IngestError::Lake(LakeError::InvalidRoot { .. }) => 2,
            IngestError::Busy { .. } | IngestError::Lock(LockError::Lost { .. }) => 3,
            _ => 1,
        }
    }
}

/// Command-line overrides of a run.
#[derive(Debug, Clone, Default)]
pub struct RunOptions {
    /// Overrides the source of the pipeline file.
    pub input: Option<Input>,
    /// Overrides the lake root of the pipeline file.
    pub lake: Option<String>,
    /// Size of the chunks the source hands the engine (default [`sources::CHUNK_BYTES`]).
    pub chunk_bytes: Option<usize>,
    /// Overrides `checkpoint.interval`.
    pub checkpoint_interval: Option<HumanDuration>,
    /// Ignore any checkpoint and read the input from its start.
    pub from_scratch: bool,
    /// Read no faster than this (lines per second).
    pub max_lines_per_sec: Option<u64>,
    /// Print each committed partition as a JSON line on standard output.
    pub emit_commits: bool,
    /// Threads that parse (default: one per core); the output is the same for any number.
    pub threads: Option<usize>,
    /// Serve `/metrics` and `/health/*` here (overrides `metrics.addr`).
    pub metrics_addr: Option<String>,
    /// Wait this long for another process's lock on the pipeline (default: exit 3 at once).
    pub wait: Option<HumanDuration>,
}

/// What a run did.
#[derive(Debug, Clone, Default)]
pub struct RunSummary {
    /// Counters since the pipeline started (across restarts).
    pub stats: EngineStats,
    pub files_written: u64,
    pub bytes_written: u64,
    pub rows_written: u64,
    pub checkpoints: u64,
    /// Size of the last checkpoint written.
    pub checkpoint_bytes: u64,
    /// The checkpoint this run resumed from.
    pub resumed_from: Option<u64>,
    /// Stopped by a signal before the end of the input (resumable).
    pub interrupted: bool,
    pub seconds: f64,
}

impl RunSummary {
    /// Adds what another run wrote in this process (files, bytes, rows, checkpoints): an
    /// earlier instance of the same unit, whose counters since the pipeline's start are
    /// superseded by the later one's.
    pub fn add_written(&mut self, o: &RunSummary) {
        self.files_written += o.files_written;
        self.bytes_written += o.bytes_written;
        self.rows_written += o.rows_written;
        self.checkpoints += o.checkpoints;
    }

    /// Adds the counts of another unit's run (a Kafka member runs several).
    pub fn add(&mut self, o: &RunSummary) {
        let (s, t) = (&mut self.stats, &o.stats);
        s.lines += t.lines;
        s.parsed += t.parsed;
        s.invalid += t.invalid;
        s.late += t.late;
        s.windows_emitted += t.windows_emitted;
        s.rows_emitted += t.rows_emitted;
        s.state_bytes_peak = s.state_bytes_peak.max(t.state_bytes_peak);
        s.state_budget_exceeded += t.state_budget_exceeded;
        self.add_written(o);
        self.checkpoint_bytes = self.checkpoint_bytes.max(o.checkpoint_bytes);
        self.resumed_from = self.resumed_from.max(o.resumed_from);
        self.interrupted |= o.interrupted;
    }
}

impl fmt::Display for RunSummary {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let s = &self.stats;
        write!(
            f,
            "{} lines read, {} parsed, {} invalid, {} late; {} windows emitted; {} rows in {} files ({:.1} MB) written; {} checkpoints ({:.1} KB) in {:.2} s",
            s.lines,
            s.parsed,
            s.invalid,
            s.late,
            s.windows_emitted,
            self.rows_written,
            self.files_written,
            self.bytes_written as f64 / 1e6,
            self.checkpoints,
            self.checkpoint_bytes as f64 / 1e3,
            self.seconds
        )?;
        if s.state_budget_exceeded > 0 {
            write!(
                f,
                "; open state peaked at {:.0} MB, over state.memory_budget {} time{}",
                s.state_bytes_peak as f64 / 1e6,
                s.state_budget_exceeded,
                if s.state_budget_exceeded == 1 {
                    ""
                } else {
                    "s"
                }
            )?;
        }
        if let Some(id) = self.resumed_from {
            write!(f, " (resumed from checkpoint {id})")?;
        }
        if self.interrupted {
            write!(f, "; stopped by a signal, the same command resumes")?;
        }
        Ok(())
    }
}

/// The input a run reads: `--input`, else the pipeline's source.
pub fn resolve_input(loaded: &LoadedConfig, opts: &RunOptions) -> Input {
    match (&opts.input, &loaded.config.source) {
        (Some(i), _) => i.clone(),
        (None, SourceConfig::File { path }) => Input::File(loaded.resolve(path)),
        (None, SourceConfig::Stdin) => Input::Stdin,
        (
            None,
            SourceConfig::Tail {
                path,
                poll_interval,
            },
        ) => Input::Tail {
            pattern: loaded.resolve(path),
            poll: poll_interval.0,
        },
        (None, SourceConfig::Generate(g)) => Input::Generate(g.clone()),
        (None, SourceConfig::Kafka(k)) => Input::Kafka(k.clone()),
    }
}

/// Checks what a run needs beyond the file itself (the input exists, the lake root parses).
pub fn check_runnable(loaded: &LoadedConfig, opts: &RunOptions) -> Result<(), IngestError> {
    let mut problems = Vec::new();
    if let Input::File(p) = resolve_input(loaded, opts)
        && opts.input.is_none()
        && !p.is_file()
    {
        problems.push(loaded.problem("source.path", format!("no such file: {}", p.display())));
    }
    if !problems.is_empty() {
        return Err(loaded.invalid(problems).into());
    }
    if let Some(root) = &opts.lake {
        shared::lake::LakeRoot::parse(root)
            .map_err(|e| IngestError::Usage(format!("--lake: {e}")))?;
    }
    Ok(())
}

/// Removes from every table what the checkpoints `redo` selects committed (see
/// [`FileCommitter::retract`]).
async fn retract(
    committer: &FileCommitter,
    tables: &[String],
    why: &str,
    redo: impl Fn(u64) -> bool + Copy,
) -> Result<(), IngestError> {
    for table in tables {
        let removed = committer.retract(table, redo).await?;
        if removed > 0 {
            tracing::warn!(table, removed, "removed files {why}");
        }
    }
    Ok(())
}

/// A name for the input, kept in checkpoints so that a run does not resume on another input.
fn input_identity(input: &Input) -> String {
    match input {
        Input::File(p) => std::fs::canonicalize(p)
            .unwrap_or_else(|_| p.clone())
            .display()
            .to_string(),
        Input::Stdin => "stdin".into(),
        Input::Tail { pattern, .. } => {
            let dir = pattern.parent().and_then(|d| std::fs::canonicalize(d).ok());
            match (dir, pattern.file_name()) {
                (Some(d), Some(f)) => format!("tail:{}", d.join(f).display()),
                _ => format!("tail:{}", pattern.display()),
            }
        }
        Input::Kafka(k) => format!("kafka:{}", k.topic.names().join(",")),
        Input::Generate(g) => format!(
            "generate:seed={},lines={:?},events_per_second={},start={},hosts={},paths={},unique_paths={}",
            g.seed,
            g.lines,
            g.events_per_second,
            g.start.to_rfc3339(),
            g.hosts,
            g.paths,
            g.unique_paths
        ),
    }
}

/// The names of the tables a pipeline writes: windowed tables, then the late-events table.
fn table_names(config: &shared::config::PipelineConfig) -> Vec<String> {
    config
        .tables
        .iter()
        .map(|t| t.name.clone())
        .chain(config.late_events.iter().map(|l| l.table.clone()))
        .collect()
}

/// The share of a pipeline's state one engine keeps: all of it, or one Kafka partition's.
/// Each unit has its own checkpoints (`_checkpoints/<pipeline>[/<tag>]`), lock, dead-letter
/// file and file names, so units move between processes without meeting.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Unit {
    /// `p3` (Kafka partition 3); `None` for the whole pipeline.
    pub tag: Option<String>,
    /// Every unit of the pipeline (all partitions of its topics), when there are several.
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
struct Recovered {
    engine: Engine,
    writer: CommitWriter,
    resumed_from: Option<u64>,
    format: shared::config::FormatConfig,
    /// Whether the first chunk starts the input (a CSV header is expected there; never in a
    /// Kafka record).
    at_start: bool,
}

/// Recovery: finish the commit of the newest checkpoint that reads back, undo what a newer
/// (damaged) one or an unfinished rebuild committed, drop everything staged after it, and
/// restore the engine; or, without a checkpoint, start a generation with a first one.
async fn recover(
    loaded: &LoadedConfig,
    opts: &RunOptions,
    lake: &Lake,
    identity: String,
    telemetry: &Arc<Telemetry>,
    locks: Locks,
    unit: &Unit,
) -> Result<Recovered, IngestError> {
    let config = &loaded.config;
    let tables = table_names(config);
    let store = CheckpointStore::in_dir(
        lake.clone(),
        unit.checkpoint_dir(lake, &config.name),
        config.checkpoint.keep as usize,
    );
    let (restored, highest) = store.latest().await?;
    let restored = if opts.from_scratch { None } else { restored };
    let generation = match &restored {
        Some(ck) => {
            if ck.input != identity {
                return Err(IngestError::Usage(format!(
                    "the lake holds a checkpoint of `{}` reading {}; to rebuild its tables from {} instead, pass --from-scratch",
                    config.name, ck.input, identity
                )));
            }
            ck.generation
        }
        None => highest + 1,
    };
    let header = CheckpointHeader {
        generation,
        pipeline: config.name.clone(),
        input: identity,
    };
    let mut writer = CommitWriter::new(lake.clone(), store, header, telemetry.clone(), locks);
    writer.committer = writer.committer.for_unit(unit.tag.clone());
    if let Some(tag) = &unit.tag {
        let board = board::Board::new(lake.clone(), &config.name, tag.clone(), unit.all.clone());
        writer.board = Some(board);
    }
    writer.emit = opts.emit_commits;
    // A unit's partitions hold the files of other units too: none merges them alone.
    writer.compact = (config.partition_commit.compact && unit.tag.is_none())
        .then(|| config.lake.compression.codec());
    if let Some(ck) = &restored {
        for f in &ck.pending {
            writer.committer.publish_pending(f).await?;
        }
        if let Some(board) = &mut writer.board {
            board.restore(ck.id).await?;
        }
        writer.commit_checkpoint(&ck.engine).await?;
        // Partitions committed by the older kept checkpoints may still wait for their merge.
        if writer.compact.is_some() {
            for m in writer.store.older_markers(ck.id).await? {
                writer.queue(&m);
            }
        }
        // A newer checkpoint did not read back: what it committed is redone by the replay,
        // and so are the files of an unfinished rebuild.
        let (id, generation) = (ck.id, ck.generation);
        let unfinished_rebuild = id == generation && generation > 1;
        if highest > id || unfinished_rebuild {
            retract(
                &writer.committer,
                &tables,
                "that the replay rewrites",
                |c| c > id || (unfinished_rebuild && c < generation),
            )
            .await?;
        }
        tracing::info!(
            checkpoint = id,
            position = ?ck.engine.source,
            "resuming"
        );
    }
    for table in &tables {
        let removed = writer.committer.clean_staging(table).await?;
        if removed > 0 {
            tracing::info!(
                table,
                removed,
                "removed staged files of work after the last checkpoint"
            );
        }
    }
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
    let resumed_from = restored.as_ref().map(|c| c.id);
    if let Some(ck) = restored {
        engine.restore(ck.engine)?;
    }
    let engine_at_start = engine.position().is_start();
    engine.set_next_checkpoint(highest + 1);
    if resumed_from.is_none() {
        // A first checkpoint at the start, so that a crash before the next one restarts
        // from a known state (the dead-letter file's length included). It starts a new
        // generation: the files of earlier runs (a rebuild with --from-scratch, or
        // checkpoints that all failed to read back) are removed once it is durable.
        let mut files = Vec::new();
        let snap = engine.snapshot(&mut files)?;
        debug_assert!(files.is_empty());
        writer.first_checkpoint(snap).await?;
        if generation > 1 {
            retract(
                &writer.committer,
                &tables,
                "of earlier runs (rebuild)",
                |c| c < generation,
            )
            .await?;
        }
    }
    Ok(Recovered {
        engine,
        writer,
        resumed_from,
        format: config.format.clone(),
        at_start: unit.tag.is_none() && engine_at_start,
    })
}

/// How the engine loop is paced.
#[derive(Debug, Clone, Copy)]
struct DriveOptions {
    interval: Duration,
    idle_timeout: Option<Duration>,
}

impl DriveOptions {
    fn of(loaded: &LoadedConfig, opts: &RunOptions) -> DriveOptions {
        let config = &loaded.config;
        DriveOptions {
            interval: opts
                .checkpoint_interval
                .unwrap_or(config.checkpoint.interval)
                .0,
            idle_timeout: config.event_time.idle_timeout.map(|d| d.0),
        }
    }
}

/// The engine loop (on a blocking thread): chunks from the source go to the parsers, parsed
/// chunks are applied in source order, files and checkpoints go to the writer. Returns
/// whether it stopped on `stop` (true) or at the end of the input (false).
fn drive(
    mut engine: Engine,
    mut parsers: Parsers,
    chunk_rx: std::sync::mpsc::Receiver<Result<Chunk, SourceError>>,
    tx: mpsc::Sender<ToWriter>,
    pace: DriveOptions,
    stop: Arc<AtomicBool>,
) -> Result<bool, IngestError> {
    let mut files = Vec::new();
    let stopped_writer = || IngestError::Internal("the writer stopped".into());
    let send_files = |files: &mut Vec<EncodedFile>| -> Result<(), IngestError> {
        for f in files.drain(..) {
            tx.blocking_send(ToWriter::File(f))
                .map_err(|_| stopped_writer())?;
        }
        Ok(())
    };
    let checkpoint = |engine: &mut Engine, files: &mut Vec<EncodedFile>| {
        let snap = engine.snapshot(files)?;
        send_files(files)?;
        tx.blocking_send(ToWriter::Checkpoint(Box::new(snap)))
            .map_err(|_| stopped_writer())
    };
    let mut last_checkpoint = Instant::now();
    let mut last_data = Instant::now();
    // Chunks being parsed, oldest first; the engine applies them in this order.
    let mut in_flight = parallel::InFlightQueue::new();
    loop {
        // Keep the parsers busy: take what the source has, up to the pool's depth; wait
        // (until the next checkpoint is due) only when nothing is in flight.
        let mut ended = false;
        while in_flight.len() < parsers.depth() {
            let received = if in_flight.is_empty() {
                let wait = pace
                    .interval
                    .saturating_sub(last_checkpoint.elapsed())
                    .min(Duration::from_millis(200));
                chunk_rx.recv_timeout(wait)
            } else {
                chunk_rx.try_recv().map_err(|e| match e {
                    TryRecvError::Empty => RecvTimeoutError::Timeout,
                    TryRecvError::Disconnected => RecvTimeoutError::Disconnected,
                })
            };
            match received {
                Ok(chunk) => {
                    in_flight.push_back(parsers.submit(chunk?));
                    last_data = Instant::now();
                }
                Err(RecvTimeoutError::Timeout) => break,
                Err(RecvTimeoutError::Disconnected) => {
                    ended = true;
                    break;
                }
            }
        }
        match in_flight.pop_front() {
            Some(item) => {
                let (events, after) = item.wait().map_err(IngestError::Internal)?;
                engine.apply(events, after, &mut files)?;
                send_files(&mut files)?;
            }
            None if ended && stop.load(Ordering::SeqCst) => {
                // Stopped (a signal, or the unit's partition moved to another member): the
                // open windows stay open, in the checkpoint.
                checkpoint(&mut engine, &mut files)?;
                return Ok(true);
            }
            None if ended => {
                engine.finish(&mut files)?;
                send_files(&mut files)?;
                checkpoint(&mut engine, &mut files)?;
                return Ok(false);
            }
            None => {
                if let Some(idle) = pace.idle_timeout
                    && last_data.elapsed() >= idle
                {
                    engine.advance_idle(last_data.elapsed(), &mut files)?;
                    send_files(&mut files)?;
                }
            }
        }
        let stopping = stop.load(Ordering::SeqCst);
        if stopping || last_checkpoint.elapsed() >= pace.interval {
            checkpoint(&mut engine, &mut files)?;
            last_checkpoint = Instant::now();
        }
        if stopping {
            return Ok(true);
        }
    }
}

/// Runs the stream stage to the end of its input, or until `shutdown` is set (then it
/// checkpoints and returns; the same command resumes). With a `kafka` source, the process
/// is one member of the pipeline's consumer group ([`member`]).
pub async fn run(
    loaded: &LoadedConfig,
    opts: RunOptions,
    shutdown: Arc<AtomicBool>,
) -> Result<RunSummary, IngestError> {
    let started = Instant::now();
    let config = &loaded.config;
    check_runnable(loaded, &opts)?;
    let telemetry = Telemetry::new(&table_names(config));
    // Bound first: /health/live answers during recovery, and a busy port fails at once.
    let _server = match opts.metrics_addr.as_ref().or(config.metrics.addr.as_ref()) {
        Some(addr) => Some(http::serve(addr, telemetry.clone()).await?),
        None => None,
    };
    let root = opts
        .lake
        .clone()
        .unwrap_or_else(|| config.lake.root.clone());
    let lake = Lake::open(&root, &config.lake.s3, config.lake.partition_time)?;
    let input = resolve_input(loaded, &opts);
    if let Input::Kafka(kafka) = &input {
        return member::run(loaded, &opts, &lake, kafka, &telemetry, shutdown).await;
    }
    let unit = Unit::whole();
    let locks = lock_unit(&lake, &config.name, &unit, opts.wait.map(|w| w.0)).await?;
    let recovered = recover(
        loaded,
        &opts,
        &lake,
        input_identity(&input),
        &telemetry,
        locks,
        &unit,
    )
    .await?;

    tracing::info!(pipeline = %config.name, %input, lake = %lake.url, "starting");
    let (chunk_tx, chunk_rx) = std::sync::mpsc::sync_channel::<Result<Chunk, SourceError>>(2);
    let reader_opts = ReaderOptions {
        chunk_bytes: opts.chunk_bytes.unwrap_or(sources::CHUNK_BYTES),
        start: recovered.engine.position().clone(),
        max_lines_per_sec: opts.max_lines_per_sec,
    };
    let _reader = sources::spawn_reader(input, reader_opts, chunk_tx)?;
    if let Some(d) = fault::pause("before-ready") {
        tokio::time::sleep(d).await;
    }
    telemetry.set_ready(true);
    let threads = opts.threads.unwrap_or_else(parallel::default_threads);
    let resumed_from = recovered.resumed_from;
    let pace = DriveOptions::of(loaded, &opts);
    let interrupted = execute(recovered, chunk_rx, pace, threads, shutdown).await?;
    let mut summary = summarize(&telemetry, resumed_from, interrupted);
    summary.seconds = started.elapsed().as_secs_f64();
    Ok(summary)
}

/// The summary of a unit's run (without its duration).
fn summarize(telemetry: &Telemetry, resumed_from: Option<u64>, interrupted: bool) -> RunSummary {
    let (files_written, rows_written, bytes_written, checkpoint_bytes, checkpoints) =
        telemetry.published();
    RunSummary {
        stats: telemetry.engine_stats(),
        files_written,
        bytes_written,
        rows_written,
        checkpoints,
        checkpoint_bytes,
        resumed_from,
        interrupted,
        seconds: 0.0,
    }
}

/// Runs a recovered unit on the chunks of `chunk_rx`: the engine loop on a blocking thread,
/// the writer here, until the chunks end (then every window is flushed) or `stop` is set
/// (then it checkpoints). Returns whether it was stopped.
async fn execute(
    recovered: Recovered,
    chunk_rx: std::sync::mpsc::Receiver<Result<Chunk, SourceError>>,
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
    let parsers = Parsers::new(&format, threads, at_start);
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

/// The input named by `--input`: a path, or `-` for standard input.
pub fn parse_input(arg: &str) -> Input {
    if arg == "-" {
        Input::Stdin
    } else {
        Input::File(PathBuf::from(arg))
    }
}
