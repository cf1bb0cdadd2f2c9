//! `stream-ingest`: the streaming stage of a pipeline.
//!
//! It reads lines from one of the [`sources`], parses them into Arrow batches
//! ([`format`](mod@format)), assigns event-time windows and keeps keyed aggregates
//! ([`window`], [`table`], [`aggregate`]), and writes each closed window as Parquet into
//! the lake ([`sink`], then [`shared::commit`]). [`engine`] wires those together on one
//! thread; [`unit`](mod@unit) runs it (recovery, the engine loop on a blocking thread, the
//! async writer task of [`writer`]); [`run`] picks the input and runs one unit, or joins a
//! Kafka consumer group ([`member`]) that runs one unit per Kafka partition. Start reading
//! at [`run`].
//!
//! `main.rs` only parses the command line ([`cli`]) and maps errors to exit codes. This file
//! holds what a run is given and what it returns: [`RunOptions`], [`RunSummary`],
//! [`IngestError`].
//!
//! Every module but [`cli`] is crate-private: read these docs with `cargo doc
//! --document-private-items`, where the links above lead somewhere.

#![allow(rustdoc::private_intra_doc_links)]

pub(crate) mod aggregate;
pub(crate) mod board;
pub(crate) mod checkpoint;
pub mod cli;
pub(crate) mod commit;
pub(crate) mod compact;
pub(crate) mod dead_letter;
pub(crate) mod engine;
pub(crate) mod fault;
pub(crate) mod format;
pub(crate) mod http;
pub(crate) mod lookup;
pub(crate) mod member;
pub(crate) mod metrics;
pub(crate) mod parallel;
pub(crate) mod prepare;
pub(crate) mod produce;
pub(crate) mod rebuild;
pub(crate) mod sink;
pub(crate) mod sources;
pub(crate) mod table;
pub(crate) mod unit;
pub(crate) mod window;
pub(crate) mod writer;

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::AtomicBool;
use std::time::Instant;

use shared::HumanDuration;
use shared::commit::{CommitError, MarkerError};
use shared::config::{ConfigError, EndOfInput, LoadedConfig, PipelineConfig, SourceConfig};
use shared::lake::{Lake, LakeError};
use shared::lock::LockError;

use crate::checkpoint::CheckpointError;
use crate::dead_letter::DeadLetterError;
use crate::engine::EngineError;
use crate::metrics::{EngineStats, Telemetry};
use crate::sources::{Chunk, Input, ReaderOptions, SourceError};
use crate::unit::{DriveOptions, Unit, execute, lock_unit, recover, summarize, table_names};

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
    #[error("{0}")]
    Delta(String),
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
    /// Overrides `end_of_input`.
    pub end_of_input: Option<EndOfInput>,
    /// Recompute these tables from the input first (`--rebuild`).
    pub rebuild: Vec<String>,
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
    /// The time the checkpoints took to become durable and commit their files, together.
    pub checkpoint_time: std::time::Duration,
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
        self.checkpoint_time += o.checkpoint_time;
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
            "{} lines read, {} parsed, {} invalid, {} late; {} windows emitted; {} rows in {} files ({:.1} MB) written; {} checkpoints ({:.1} KB, {:.1} ms each) in {:.2} s",
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
            self.checkpoint_time.as_secs_f64() * 1e3 / self.checkpoints.max(1) as f64,
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
        (None, SourceConfig::File { path }) => file_input(loaded.resolve(path)),
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

/// A file source's input: one file, or the files of a glob or a directory.
fn file_input(path: PathBuf) -> Input {
    if path.is_dir() {
        Input::Files(path.join("*"))
    } else if path.to_string_lossy().contains(['*', '?', '[']) {
        Input::Files(path)
    } else {
        Input::File(path)
    }
}

/// Checks what a run needs beyond the file itself (the input exists, the lake root parses).
pub fn check_runnable(loaded: &LoadedConfig, opts: &RunOptions) -> Result<(), IngestError> {
    let mut problems = Vec::new();
    let input = resolve_input(loaded, opts);
    match &input {
        Input::File(p) if opts.input.is_none() && !p.is_file() => {
            problems.push(loaded.problem("source.path", format!("no such file: {}", p.display())))
        }
        Input::Files(p) if !p.parent().is_some_and(Path::is_dir) => problems
            .push(loaded.problem("source.path", format!("no such directory: {}", p.display()))),
        _ => {}
    }
    let keep = opts.end_of_input.unwrap_or(loaded.config.end_of_input) == EndOfInput::Keep;
    if keep && matches!(input, Input::Kafka(_)) {
        // A bounded Kafka read ends when every Kafka partition's unit flushed (the board).
        let why = "a Kafka source keeps its open windows in each Kafka partition's checkpoints anyway; a bounded read ends with `flush`";
        match opts.end_of_input {
            Some(_) => return Err(IngestError::Usage(format!("--end-of-input keep: {why}"))),
            None => problems.push(loaded.problem("end_of_input", format!("`keep`: {why}"))),
        }
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

/// A name for the input, kept in checkpoints so that a run does not resume on another input.
fn input_identity(input: &Input) -> String {
    match input {
        Input::File(p) => std::fs::canonicalize(p)
            .unwrap_or_else(|_| p.clone())
            .display()
            .to_string(),
        Input::Stdin => "stdin".into(),
        Input::Tail { pattern, .. } => format!("tail:{}", canonical_pattern(pattern)),
        Input::Files(pattern) => format!("files:{}", canonical_pattern(pattern)),
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

/// A glob with its directory made absolute.
fn canonical_pattern(pattern: &Path) -> String {
    let dir = pattern.parent().and_then(|d| std::fs::canonicalize(d).ok());
    match (dir, pattern.file_name()) {
        (Some(d), Some(f)) => d.join(f).display().to_string(),
        _ => pattern.display().to_string(),
    }
}

/// Runs the stream stage to the end of its input, or until `shutdown` is set (then it
/// checkpoints and returns; the same command resumes). With a `kafka` source, the process
/// is one member of the pipeline's consumer group ([`member`]).
pub async fn run(
    loaded: &LoadedConfig,
    mut opts: RunOptions,
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
    let lake = open_lake(config, &opts)?;
    let input = resolve_input(loaded, &opts);
    if !opts.rebuild.is_empty() {
        rebuild::rebuild(loaded, &opts, &lake, &input, &telemetry).await?;
        opts.rebuild.clear();
    }
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
        until: None,
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

/// The lake a run writes: `--lake`, else the pipeline's.
fn open_lake(config: &PipelineConfig, opts: &RunOptions) -> Result<Lake, IngestError> {
    let root = opts.lake.as_deref().unwrap_or(&config.lake.root);
    Ok(Lake::open(
        root,
        &config.lake.s3,
        config.lake.partition_time,
    )?)
}

/// `stream-ingest plan`: what the next `run` with these options does with the newest
/// checkpoint of each unit of state (see [`checkpoint::plan`]).
pub async fn plan(
    loaded: &LoadedConfig,
    opts: &RunOptions,
) -> Result<checkpoint::plan::PlanReport, IngestError> {
    check_runnable(loaded, opts)?;
    let lake = open_lake(&loaded.config, opts)?;
    let input = resolve_input(loaded, opts);
    let whole = input_identity(&input);
    let identity = |unit: Option<&str>| match (&input, unit) {
        (Input::Kafka(k), Some(tag)) => member::partition_of(&k.topic.names(), tag)
            .map_or_else(|| whole.clone(), |kp| kp.identity()),
        _ => whole.clone(),
    };
    if opts.rebuild.is_empty() && matches!(input, Input::Kafka(_)) {
        rebuild::refuse_unfinished(loaded, &lake).await?;
    }
    Ok(checkpoint::plan::next_run(loaded, &lake, identity, &opts.rebuild).await?)
}

/// The input named by `--input`: a path, or `-` for standard input.
pub fn parse_input(arg: &str) -> Input {
    if arg == "-" {
        Input::Stdin
    } else {
        file_input(PathBuf::from(arg))
    }
}
