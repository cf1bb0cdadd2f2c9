//! The command line of `stream-ingest`. `main.rs` parses it and calls [`execute`].

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use clap::{Parser, Subcommand};

use shared::HumanDuration;

use crate::{IngestError, RunOptions, parse_input};

const ABOUT: &str = "The streaming stage: parse events, window and aggregate them in event time, and write each closed window to the lake as Parquet.";

const LONG_ABOUT: &str = "\
The streaming stage of a pipeline. It reads lines (a file, standard input), parses them
(access logs, NDJSON, CSV), groups them into event-time windows with a watermark, and writes
every closed window as Parquet under <lake>/<table>/dt=YYYY-MM-DD/hour=HH/.

Files are staged under hidden names and published atomically: a reader never sees a partial
file. The pipeline file (YAML) declares the source, format, windowed tables and lake; see
`pipelines/access-log.yaml` for a complete example.

Rows of closed windows become visible at the next checkpoint (checkpoint.interval, default
10s): each open partition gets a small file per checkpoint, and a committed partition's
files are merged into one. `--metrics-addr 127.0.0.1:9464` serves Prometheus metrics and
health probes; SIGTERM or SIGINT drains (checkpoint, publish, exit 0) and the same command
resumes.

From cron: `run --end-of-input keep` reads what was appended (and, with a directory or glob
as source path, the new files), keeps the open windows in the checkpoint and stops; the
next run goes on. After editing the pipeline file, `stream-ingest plan` shows what the next
run does with each table, and `run --rebuild TABLE` recomputes a table whose window, key,
filter or aggregates changed.

One process writes a pipeline's lake at a time: a second `run` (or `compact`) on the same
pipeline and lake exits 3 naming the holder (`--wait 2m` waits for it instead).

Exit status: 0 success, 2 invalid configuration or arguments (a metrics port in use too),
3 another process writes the pipeline (or took it over), 1 any other failure.
Logs: RUST_LOG=info (or debug) prints what happens, on standard error.";

#[derive(Debug, Parser)]
#[command(name = "stream-ingest", version, about = ABOUT, long_about = LONG_ABOUT)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the stream stage to the end of its input.
    #[command(
        after_help = "Examples:\n  stream-ingest run -c pipelines/access-log.yaml --input access.log --lake ./lake\n  stream-ingest run -c pipelines/access-log.yaml --emit-commits | batch-analyze run -c pipelines/access-log.yaml --follow-commits"
    )]
    Run(RunArgs),
    /// Check a pipeline file without running it; every problem is printed with its line.
    Validate(ValidateArgs),
    /// Show what the next `run` does with the lake's checkpoint after the pipeline file was
    /// edited: per table, continue, start, drop, add a column, or refuse (exit 2).
    #[command(
        long_about = "Compare the pipeline file with the newest checkpoint in the lake and print, per windowed table, what the next `run` will do: continue it (unchanged), start it at the checkpoint's position (a new table), drop its state and leave its files (a removed table), add or drop a column (an aggregate added or removed; windows open now carry NULL for an added one), or refuse.\n\nA changed window, key, filter, aggregate function, or a `derive`/`lookup` a table reads cannot continue that table's open windows: `run` refuses it, and so does `plan` (exit 2), naming the file, line and field. The ways out: give the table a new name (a new table starts now and the old files stay), or recompute it with `run --rebuild TABLE`. A changed source kind, format or event time is refused for the whole pipeline.\n\nExit status: 0 the next run can go on, 2 it would refuse (or the file is invalid), 1 the lake cannot be read.",
        after_help = "Example:\n  stream-ingest plan -c pipelines/access-log.yaml --lake ./lake"
    )]
    Plan(PlanArgs),
    /// Merge the files of committed partitions into one file per partition.
    #[command(
        long_about = "Merge the files of committed partitions (those with _SUCCESS) into one file each.\n\nA partition gets several files when its table's rolling policy writes it early. Once committed, nothing is added to it, so its files can be merged. The swap is crash-safe: it records its intent in the partition first, and the next `compact` finishes an interrupted one. Rows never change. Partitions committed at or after the oldest kept checkpoint wait for a later run. The stream stage merges committed partitions itself (partition_commit.compact, on by default); this command is for lakes written with it off, and is safe to run while the stream stage runs.\n\nA Delta lake (lake.format: delta): each complete partition (ending at or before the writers' horizon) with several files is merged by one OPTIMIZE commit (Removes and an Add, no data change); readers of older versions keep their files until VACUUM (lake.delta.vacuum).",
        after_help = "Example:\n  stream-ingest compact -c pipelines/access-log.yaml --dry-run"
    )]
    Compact(CompactArgs),
    /// Write a realistic access log, the same for the same seed (benchmarks, demos).
    #[command(
        long_about = "Write a realistic access log (Combined Log Format), the same bytes for the same settings on every machine: Zipf-distributed hosts and paths, mostly status 200 with some 304/302/404 and a few other 4xx/5xx, requests without protocol or path now and then, time-zone offsets, about 3 % of lines a few seconds out of order (and 0.02 % minutes behind: late), and about 0.1 % invalid lines of six kinds.\n\nThe same generator is a source kind: `source: { kind: generate, lines: 1000000, seed: 7 }`.",
        after_help = "Examples:\n  stream-ingest gen --lines 1000000 --seed 7 --out access.log\n  stream-ingest gen --rate 1m | stream-ingest run -c pipelines/access-log.yaml --input -   # a minute of log per second, live"
    )]
    Gen(GenArgs),
    /// Produce lines into the pipeline's Kafka topic, one record per line (demos, tests).
    #[command(
        long_about = "Produce the lines of a file (or standard input) into the Kafka topic of a pipeline with `source: { kind: kafka }`, one record per line, keyed by a parsed field with --key (records of one key go to one partition). The topic is created with --partitions partitions when it does not exist. Brokers, topic and client properties come from the pipeline file.",
        after_help = "Example:
  stream-ingest gen --lines 1000000 | stream-ingest produce -c pipelines/access-log-kafka.yaml --key host --partitions 4"
    )]
    Produce(ProduceArgs),
}

#[derive(Debug, clap::Args)]
pub struct ProduceArgs {
    /// The pipeline file (YAML), with a `kafka` source.
    #[arg(short = 'c', long = "config", value_name = "PIPELINE.yaml")]
    pub config: PathBuf,
    /// Read this file (default: standard input).
    #[arg(long, value_name = "PATH")]
    pub input: Option<PathBuf>,
    /// Key each record by this parsed field (e.g. `host`); default: no key.
    #[arg(long, value_name = "FIELD")]
    pub key: Option<String>,
    /// Partitions of the topic, when this creates it.
    #[arg(long, value_name = "N", default_value_t = 4)]
    pub partitions: i32,
    /// At most this many records per batch sent to the broker.
    #[arg(long, value_name = "N", default_value_t = 10000)]
    pub batch_records: u32,
    /// Print no summary line at the end.
    #[arg(short, long)]
    pub quiet: bool,
}

#[derive(Debug, clap::Args)]
pub struct GenArgs {
    /// Lines to write (default: until stopped).
    #[arg(long, value_name = "N")]
    pub lines: Option<u64>,
    /// Seed: the same seed gives the same lines.
    #[arg(long, value_name = "S", default_value_t = 1)]
    pub seed: u64,
    /// Pace the output: this much event time per second of wall time (`1m` writes a minute
    /// of log each second). Default: full speed.
    #[arg(long, value_name = "DURATION")]
    pub rate: Option<HumanDuration>,
    /// Write to this file instead of standard output.
    #[arg(long, value_name = "FILE")]
    pub out: Option<PathBuf>,
    /// Average events per second of event time.
    #[arg(long, value_name = "N", default_value_t = 100.0)]
    pub events_per_second: f64,
    /// Event time of the first line (RFC 3339).
    #[arg(long, value_name = "TIME", default_value = "2026-01-01T00:00:00Z")]
    pub start: chrono::DateTime<chrono::Utc>,
    /// Distinct hosts.
    #[arg(long, value_name = "N", default_value_t = 40_000)]
    pub hosts: u32,
    /// Distinct paths.
    #[arg(long, value_name = "N", default_value_t = 20_000)]
    pub paths: u32,
    /// Give every line a path of its own (`/u/<line>`): one key per event.
    #[arg(long)]
    pub unique_paths: bool,
    /// Print no summary line at the end.
    #[arg(short, long)]
    pub quiet: bool,
}

#[derive(Debug, clap::Args)]
pub struct CompactArgs {
    /// The pipeline file (YAML).
    #[arg(short = 'c', long = "config", value_name = "PIPELINE.yaml")]
    pub config: PathBuf,
    /// Compact this lake root instead of the pipeline's.
    #[arg(long, value_name = "URL")]
    pub lake: Option<String>,
    /// Only this table (default: every windowed table).
    #[arg(long, value_name = "TABLE")]
    pub table: Option<String>,
    /// Merge partitions that have at least this many files.
    #[arg(long, value_name = "N", default_value_t = 2)]
    pub min_files: usize,
    /// Print what would be merged; change nothing.
    #[arg(long)]
    pub dry_run: bool,
    /// Print no summary line at the end.
    #[arg(short, long)]
    pub quiet: bool,
}

#[derive(Debug, clap::Args)]
pub struct RunArgs {
    /// The pipeline file (YAML).
    #[arg(short = 'c', long = "config", value_name = "PIPELINE.yaml")]
    pub config: PathBuf,
    /// Read this file instead of the pipeline's source (`-`: standard input), to its end.
    #[arg(long, value_name = "PATH|-")]
    pub input: Option<String>,
    /// Write to this lake root instead of the pipeline's: a directory, file:///abs/dir or
    /// s3://bucket/prefix (endpoint, region and credentials from AWS_* variables).
    #[arg(long, value_name = "URL")]
    pub lake: Option<String>,
    /// Checkpoint this often (overrides `checkpoint.interval`, default 10s). Files become
    /// visible in the lake at checkpoints.
    #[arg(long, value_name = "DURATION")]
    pub checkpoint_interval: Option<HumanDuration>,
    /// Rebuild: ignore the pipeline's checkpoints, read the input from its start, and
    /// replace what earlier runs wrote to the pipeline's tables (removed once the new run's
    /// first checkpoint is durable).
    #[arg(long)]
    pub from_scratch: bool,
    /// Bytes of input per batch (default 4 MiB).
    #[arg(long, value_name = "BYTES", hide = true)]
    pub chunk_bytes: Option<usize>,
    /// Read at most this many lines per second (demos, crash tests).
    #[arg(long, value_name = "LINES", hide = true)]
    pub max_lines_per_sec: Option<u64>,
    /// Print each committed partition on standard output as one JSON line (table,
    /// partition, path, rows, watermark), for `batch-analyze run --follow-commits`.
    #[arg(long)]
    pub emit_commits: bool,
    /// Threads that parse lines (default: one per core). The output is the same for any
    /// number: chunks are parsed in parallel and applied in input order.
    #[arg(long, value_name = "N")]
    pub threads: Option<usize>,
    /// Serve Prometheus metrics on http://ADDR/metrics and health probes on /health/live
    /// and /health/ready (ready once recovery finished and the source is open), e.g.
    /// `127.0.0.1:9464`. Overrides `metrics.addr`. A port in use is an error (exit 2).
    #[arg(long, value_name = "HOST:PORT")]
    pub metrics_addr: Option<String>,
    /// Wait this long (`30s`, `2m`) for another process that writes the same pipeline into
    /// the same lake to stop, instead of exiting with code 3 at once. On object storage the
    /// lock is a lease: a holder that crashed on another machine frees it within 60 s (one on
    /// this machine, at once).
    #[arg(long, value_name = "DURATION")]
    pub wait: Option<HumanDuration>,
    /// Recompute these windowed tables (comma-separated) from the start of the input up to
    /// the newest checkpoint, replace their files, then go on as usual; the other tables are
    /// untouched. The way to apply a changed window, key, filter or aggregate to a table
    /// (see `stream-ingest plan`). Needs an input that can be read again: a file, the
    /// files of a glob or directory, or a Kafka topic (from its earliest records, every
    /// partition at once: stop the members first).
    #[arg(long, value_name = "TABLE[,TABLE]", value_delimiter = ',')]
    pub rebuild: Vec<String>,
    /// At the end of a bounded input: `flush` emits every open window (a one-shot run);
    /// `keep` leaves them in the checkpoint for the next run over the grown input (cron).
    /// Overrides `end_of_input` (default `flush`).
    #[arg(long, value_name = "flush|keep")]
    pub end_of_input: Option<shared::config::EndOfInput>,
    /// Print no summary line at the end.
    #[arg(short, long)]
    pub quiet: bool,
}

#[derive(Debug, clap::Args)]
pub struct PlanArgs {
    /// The pipeline file (YAML), as edited.
    #[arg(short = 'c', long = "config", value_name = "PIPELINE.yaml")]
    pub config: PathBuf,
    /// The input the next run reads, if not the pipeline's source (as `run --input`).
    #[arg(long, value_name = "PATH|-")]
    pub input: Option<String>,
    /// The lake root, if not the pipeline's (as `run --lake`).
    #[arg(long, value_name = "URL")]
    pub lake: Option<String>,
    /// The tables the next run rebuilds (as `run --rebuild`).
    #[arg(long, value_name = "TABLE[,TABLE]", value_delimiter = ',')]
    pub rebuild: Vec<String>,
}

#[derive(Debug, clap::Args)]
pub struct ValidateArgs {
    /// The pipeline file (YAML).
    #[arg(short = 'c', long = "config", value_name = "PIPELINE.yaml")]
    pub config: PathBuf,
}

/// Runs a parsed command line; returns the process exit code.
pub fn execute(cli: Cli) -> ExitCode {
    let result = match cli.command {
        Command::Run(args) => run(args),
        Command::Validate(args) => validate(args),
        Command::Plan(args) => plan(args),
        Command::Compact(args) => compact(args),
        Command::Gen(args) => generate(args),
        Command::Produce(args) => produce(args),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("stream-ingest: error: {e}");
            ExitCode::from(e.exit_code())
        }
    }
}

fn run(args: RunArgs) -> Result<(), IngestError> {
    let loaded = shared::config::load(&args.config)?;
    let opts = RunOptions {
        input: args.input.as_deref().map(parse_input),
        lake: args.lake,
        chunk_bytes: args.chunk_bytes,
        checkpoint_interval: args.checkpoint_interval,
        from_scratch: args.from_scratch,
        max_lines_per_sec: args.max_lines_per_sec,
        emit_commits: args.emit_commits,
        threads: args.threads,
        metrics_addr: args.metrics_addr,
        wait: args.wait,
        end_of_input: args.end_of_input,
        rebuild: args.rebuild,
    };
    let runtime = runtime()?;
    let shutdown = Arc::new(AtomicBool::new(false));
    let summary = runtime.block_on(async {
        spawn_signal_handler(shutdown.clone());
        crate::run(&loaded, opts, shutdown).await
    })?;
    if !args.quiet {
        eprintln!("stream-ingest: {}: {summary}", loaded.config.name);
    }
    Ok(())
}

fn runtime() -> Result<tokio::runtime::Runtime, IngestError> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|e| IngestError::Internal(format!("cannot start the runtime: {e}")))
}

fn compact(args: CompactArgs) -> Result<(), IngestError> {
    let loaded = shared::config::load(&args.config)?;
    let opts = crate::compact::CompactOptions {
        lake: args.lake,
        table: args.table,
        min_files: args.min_files,
        dry_run: args.dry_run,
    };
    let summary = runtime()?.block_on(crate::compact::compact(&loaded, &opts))?;
    if !args.quiet {
        eprintln!("stream-ingest: {}: {summary}", loaded.config.name);
    }
    Ok(())
}

fn produce(args: ProduceArgs) -> Result<(), IngestError> {
    let loaded = shared::config::load(&args.config)?;
    let opts = crate::produce::ProduceOptions {
        input: args.input,
        key: args.key,
        partitions: args.partitions.max(1),
        batch_records: args.batch_records,
    };
    let summary = runtime()?.block_on(crate::produce::produce(&loaded, &opts))?;
    if !args.quiet {
        eprintln!("stream-ingest: {}: {summary}", loaded.config.name);
    }
    Ok(())
}

fn generate(args: GenArgs) -> Result<(), IngestError> {
    if !(args.events_per_second.is_finite() && args.events_per_second > 0.0) {
        return Err(IngestError::Usage(
            "--events-per-second must be a positive number".into(),
        ));
    }
    if args.hosts == 0 || args.paths == 0 || args.rate.is_some_and(|r| r.0.is_zero()) {
        return Err(IngestError::Usage(
            "--hosts, --paths and --rate must be positive".into(),
        ));
    }
    let config = shared::config::GenerateConfig {
        lines: args.lines,
        seed: args.seed,
        events_per_second: args.events_per_second,
        start: args.start,
        rate: args.rate,
        hosts: args.hosts,
        paths: args.paths,
        unique_paths: args.unique_paths,
    };
    let started = std::time::Instant::now();
    let mut generator = crate::sources::generate::Generator::new(&config);
    let io_error =
        |e: std::io::Error, to: &str| IngestError::Internal(format!("cannot write {to}: {e}"));
    let result = match &args.out {
        Some(path) => {
            let file = std::fs::File::create(path)
                .map_err(|e| io_error(e, &path.display().to_string()))?;
            generator
                .write_all(std::io::BufWriter::new(file))
                .map_err(|e| io_error(e, &path.display().to_string()))
        }
        None => match generator.write_all(std::io::stdout().lock()) {
            // The reader went away (`| head`): not an error.
            Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Ok(generator.produced()),
            other => other.map_err(|e| io_error(e, "standard output")),
        },
    };
    let lines = result?;
    if !args.quiet {
        let invalid: u64 = generator.invalid_counts().iter().sum();
        eprintln!(
            "stream-ingest: generated {lines} lines ({invalid} invalid) in {:.2} s",
            started.elapsed().as_secs_f64()
        );
    }
    Ok(())
}

fn plan(args: PlanArgs) -> Result<(), IngestError> {
    let loaded = shared::config::load(&args.config)?;
    let opts = RunOptions {
        input: args.input.as_deref().map(parse_input),
        lake: args.lake,
        rebuild: args.rebuild,
        ..RunOptions::default()
    };
    let report = runtime()?.block_on(crate::plan(&loaded, &opts))?;
    print!("{}", report.text);
    match report.refused {
        Some(e) => Err(e.into()),
        None => Ok(()),
    }
}

fn validate(args: ValidateArgs) -> Result<(), IngestError> {
    let loaded = shared::config::load(&args.config)?;
    crate::check_runnable(&loaded, &RunOptions::default())?;
    let c = &loaded.config;
    println!(
        "{}: ok (pipeline `{}`: {} windowed table{}, {} report{})",
        args.config.display(),
        c.name,
        c.tables.len(),
        if c.tables.len() == 1 { "" } else { "s" },
        c.reports.len(),
        if c.reports.len() == 1 { "" } else { "s" }
    );
    Ok(())
}

/// SIGINT or SIGTERM: checkpoint and stop (a second signal kills at once).
fn spawn_signal_handler(shutdown: Arc<AtomicBool>) {
    tokio::spawn(async move {
        let mut term =
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(s) => s,
                Err(e) => {
                    tracing::warn!(error = %e, "cannot listen for SIGTERM");
                    return;
                }
            };
        tokio::select! {
            _ = tokio::signal::ctrl_c() => {}
            _ = term.recv() => {}
        }
        eprintln!("stream-ingest: stopping: writing a checkpoint (signal again to kill)");
        shutdown.store(true, Ordering::SeqCst);
        tokio::select! {
            _ = tokio::signal::ctrl_c() => {}
            _ = term.recv() => {}
        }
        std::process::exit(130);
    });
}
