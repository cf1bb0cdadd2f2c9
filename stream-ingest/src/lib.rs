//! `stream-ingest`: the streaming stage of a pipeline.
//!
//! It reads lines from a [`source`], parses them into Arrow batches ([`format`]), assigns
//! event-time windows and keeps keyed aggregates ([`window`], [`table`], [`aggregate`]),
//! and writes each closed window as Parquet into the lake ([`sink`], then
//! [`shared::commit`]). [`engine`] wires those together on one thread; [`run`] adds the
//! reader thread and the async writer task around it. Start reading at [`run`].
//!
//! `main.rs` only parses the command line ([`cli`]) and maps errors to exit codes.

pub mod aggregate;
pub mod cli;
pub mod dead_letter;
pub mod engine;
pub mod filter;
pub mod format;
pub mod sink;
pub mod source;
pub mod table;
pub mod window;

use std::fmt;
use std::path::PathBuf;
use std::time::Instant;

use shared::commit::{CommitError, FileCommitter};
use shared::config::{ConfigError, LoadedConfig, SourceConfig};
use shared::lake::{Lake, LakeError};
use tokio::sync::mpsc;

use crate::dead_letter::{DeadLetter, DeadLetterError};
use crate::engine::{Engine, EngineError, EngineStats};
use crate::sink::EncodedFile;
use crate::source::{Input, SourceError};

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
    #[error("internal error: {0}")]
    Internal(String),
}

impl IngestError {
    /// 2 for a bad configuration or arguments, 1 for anything else.
    pub fn exit_code(&self) -> u8 {
        match self {
            IngestError::Config(_)
            | IngestError::Usage(_)
            | IngestError::Lake(LakeError::InvalidRoot { .. }) => 2,
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
    /// Size of the chunks the source hands the engine (default [`source::CHUNK_BYTES`]).
    pub chunk_bytes: Option<usize>,
}

/// What a run did.
#[derive(Debug, Clone, Default)]
pub struct RunSummary {
    pub stats: EngineStats,
    pub files_written: u64,
    pub bytes_written: u64,
    pub rows_written: u64,
    pub seconds: f64,
}

impl fmt::Display for RunSummary {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let s = &self.stats;
        write!(
            f,
            "{} lines read, {} parsed, {} invalid, {} late; {} windows emitted; {} rows in {} files ({:.1} MB) written in {:.2} s",
            s.lines,
            s.parsed,
            s.invalid,
            s.late,
            s.windows_emitted,
            self.rows_written,
            self.files_written,
            self.bytes_written as f64 / 1e6,
            self.seconds
        )
    }
}

/// The input a run reads: `--input`, else the pipeline's source.
pub fn resolve_input(loaded: &LoadedConfig, opts: &RunOptions) -> Input {
    match (&opts.input, &loaded.config.source) {
        (Some(i), _) => i.clone(),
        (None, SourceConfig::File { path }) => Input::File(loaded.resolve(path)),
        (None, SourceConfig::Stdin) => Input::Stdin,
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

/// Runs the stream stage to the end of its input.
pub async fn run(loaded: &LoadedConfig, opts: RunOptions) -> Result<RunSummary, IngestError> {
    let started = Instant::now();
    let config = &loaded.config;
    check_runnable(loaded, &opts)?;
    let root = opts
        .lake
        .clone()
        .unwrap_or_else(|| config.lake.root.clone());
    let lake = Lake::open(&root, &config.lake.s3, config.lake.partition_time)?;
    let committer = FileCommitter::new(lake.clone());
    let table_names = config
        .tables
        .iter()
        .map(|t| t.name.clone())
        .chain(config.late_events.iter().map(|l| l.table.clone()));
    for table in table_names {
        let removed = committer.clean_staging(&table).await?;
        if removed > 0 {
            tracing::info!(
                table,
                removed,
                "removed staged files left by an earlier run"
            );
        }
    }
    let dead_letter = match &config.invalid_lines.dead_letter {
        Some(p) => Some(DeadLetter::open(p)?),
        None => None,
    };
    let mut engine = Engine::new(config, lake.clone(), dead_letter)?;

    let input = resolve_input(loaded, &opts);
    tracing::info!(pipeline = %config.name, %input, lake = %lake.url, "starting");
    let (chunk_tx, mut chunk_rx) = mpsc::channel::<Result<Vec<u8>, SourceError>>(2);
    let reader = source::spawn_reader(
        input,
        opts.chunk_bytes.unwrap_or(source::CHUNK_BYTES),
        chunk_tx,
    )?;

    let (file_tx, mut file_rx) = mpsc::channel::<EncodedFile>(4);
    let engine_task = tokio::task::spawn_blocking(move || -> Result<EngineStats, IngestError> {
        let mut files = Vec::new();
        let send = |files: &mut Vec<EncodedFile>| -> bool {
            files.drain(..).all(|f| file_tx.blocking_send(f).is_ok())
        };
        while let Some(chunk) = chunk_rx.blocking_recv() {
            engine.process_chunk(&chunk?, &mut files)?;
            if !send(&mut files) {
                return Err(IngestError::Internal("the writer stopped".into()));
            }
        }
        engine.finish(&mut files)?;
        if !send(&mut files) {
            return Err(IngestError::Internal("the writer stopped".into()));
        }
        Ok(engine.stats().clone())
    });

    let mut summary = RunSummary::default();
    let mut write_error = None;
    while let Some(file) = file_rx.recv().await {
        let staged = committer
            .stage(
                &file.table,
                &file.partition,
                &file.name,
                file.data,
                file.rows,
            )
            .await;
        match staged {
            Ok(staged) => {
                if let Err(e) = committer.publish(&staged).await {
                    write_error = Some(e);
                    break;
                }
                tracing::info!(table = %staged.table, partition = %staged.partition, rows = staged.rows, "published {}", staged.target);
                summary.files_written += 1;
                summary.bytes_written += staged.bytes;
                summary.rows_written += staged.rows;
            }
            Err(e) => {
                write_error = Some(e);
                break;
            }
        }
    }
    drop(file_rx);
    let engine_result = engine_task
        .await
        .map_err(|e| IngestError::Internal(format!("engine panicked: {e}")))?;
    let _ = reader.join();
    if let Some(e) = write_error {
        return Err(e.into());
    }
    summary.stats = engine_result?;
    summary.seconds = started.elapsed().as_secs_f64();
    Ok(summary)
}

/// The input named by `--input`: a path, or `-` for standard input.
pub fn parse_input(arg: &str) -> Input {
    if arg == "-" {
        Input::Stdin
    } else {
        Input::File(PathBuf::from(arg))
    }
}
