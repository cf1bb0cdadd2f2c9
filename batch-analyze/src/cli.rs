//! The command line of `batch-analyze`. `main.rs` parses it and calls [`execute`].

use std::io::{IsTerminal, Write};
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

use shared::config::{LoadedConfig, QueryEngine};

use crate::as_of::AsOf;
#[cfg(feature = "cluster")]
use crate::cluster::process::{ExecutorOptions, SchedulerOptions};
use crate::dates::{self, DateArgs, DayRange};
use crate::error::{AnalyzeError, EXIT_NOTHING_TO_DO};
use crate::metrics_file::MetricsFile;
use crate::output::OutputFormat;
use crate::prepare::{RunOptions, check_runnable};
use crate::summary::RunSummary;

const ABOUT: &str = "The batch stage: read the lake's committed Parquet partitions with DataFusion, join dimension tables, and write reports.";

const LONG_ABOUT: &str = "\
The batch stage of a pipeline. It reads the windowed tables that stream-ingest wrote to the
lake (Hive-partitioned Parquet; committed partitions only, exactly the files their _SUCCESS
markers name), joins them with dimension tables, and computes the reports declared in the
pipeline file. Reports print to standard output, go to DIR/<report>.<ext> with --out, and,
for reports with a `lake:` section, into the lake as partitioned tables whose partitions a
rerun replaces (dynamic partition overwrite): reruns never duplicate anything.

Days: --date, --from/--to, --last (UTC days; `today` and `yesterday` work as dates). Only
the selected dt= directories are listed. --incremental computes only the days whose input
changed since the last run (state in <lake>/_state/batch-analyze/). One run per report at a
time: a second run waits (--wait) or exits with status 3.

Exit status (for cron and scripts):
  0  done
  1  failure (the previous outputs are intact; the next run redoes the work)
  2  invalid configuration or arguments (the message names the file, line and field)
  3  another run holds the lock of a report
  4  nothing to do, with --exit-4-if-nothing
Output: quiet without a terminal (cron mails nothing on success); on a terminal, a progress
line and a summary (-v forces the summary, -q silences it). Logs: RUST_LOG=info|debug on
standard error (debug prints each report's SQL).";

const RUN_EXAMPLES: &str = "\
Examples:
  batch-analyze run -c pipelines/access-log.yaml
  batch-analyze run -c pipelines/access-log.yaml --date yesterday --out reports --format csv
  batch-analyze run -c pipelines/access-log.yaml --last 7d --format html --out reports
  batch-analyze run -c pipelines/access-log.yaml --incremental --wait 10m --explain
  stream-ingest run -c P.yaml --emit-commits | batch-analyze run -c P.yaml --follow-commits
  batch-analyze run -c delta-lake.yaml --date 2024-05-17 --as-of '2024-05-18 06:00'

crontab (hourly, only what changed; exit 3 means the previous run is still going; figures for
node_exporter's textfile collector):
  5 * * * *  cd /srv/pipelines && batch-analyze run -c access-log.yaml --incremental --out /srv/reports --metrics-file /var/lib/node_exporter/textfile/batch-analyze-access-log.prom";

#[derive(Debug, Parser)]
#[command(name = "batch-analyze", version, about = ABOUT, long_about = LONG_ABOUT)]
pub struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
#[allow(clippy::large_enum_variant)] // parsed once
pub(crate) enum Command {
    /// Compute the pipeline's reports from the lake.
    #[command(after_help = RUN_EXAMPLES)]
    Run(RunArgs),
    /// Check a pipeline file without running it: every report is planned against the
    /// tables' schemas; every problem is printed with its line.
    Validate(ValidateArgs),
    /// Run a Ballista scheduler for `run --cluster df://HOST:PORT` (until stopped).
    #[command(after_help = CLUSTER_EXAMPLES)]
    Scheduler(SchedulerArgs),
    /// Run a Ballista executor of a scheduler (until stopped).
    #[command(after_help = CLUSTER_EXAMPLES)]
    Executor(ExecutorArgs),
}

const CLUSTER_EXAMPLES: &str = "\
A cluster of one scheduler and two executors on one machine, over a local lake:
  batch-analyze scheduler --bind 127.0.0.1:50050 &
  batch-analyze executor --scheduler df://127.0.0.1:50050 --bind 127.0.0.1:50051 &
  batch-analyze executor --scheduler df://127.0.0.1:50050 --bind 127.0.0.1:50052 &
  batch-analyze run -c pipelines/access-log.yaml --cluster df://127.0.0.1:50050

Executors read the lake themselves: a local lake must be at the same path on every
executor's machine; an s3:// lake is opened with the AWS_* variables of the executor's
environment (AWS_ENDPOINT_URL, AWS_ALLOW_HTTP, AWS_REGION, credentials). Dimension tables
travel inside each query. Logs: RUST_LOG=info.";

#[derive(Debug, clap::Args)]
pub(crate) struct SchedulerArgs {
    /// Listen here (gRPC: clients and executors).
    #[arg(long, value_name = "HOST:PORT", default_value = "127.0.0.1:50050")]
    pub bind: std::net::SocketAddr,
    /// An executor silent this long is taken for dead and its tasks run elsewhere.
    #[arg(long, value_name = "DURATION", default_value = "30s")]
    pub executor_timeout: shared::HumanDuration,
}

#[derive(Debug, clap::Args)]
pub(crate) struct ExecutorArgs {
    /// The scheduler, df://HOST:PORT.
    #[arg(long, value_name = "URL")]
    pub scheduler: String,
    /// Listen here (Arrow Flight: the results of its tasks). Two executors on one machine
    /// need two ports, and nothing else.
    #[arg(long, value_name = "HOST:PORT", default_value = "127.0.0.1:50051")]
    pub bind: std::net::SocketAddr,
    /// The host the scheduler and the other executors reach this one at (default: the
    /// --bind host; set it when binding 0.0.0.0).
    #[arg(long, value_name = "HOST")]
    pub external_host: Option<String>,
    /// Tasks at once (default: the machine's cores).
    #[arg(long, value_name = "N")]
    pub slots: Option<usize>,
    /// Shuffle files go here (default: a temporary directory).
    #[arg(long, value_name = "DIR")]
    pub work_dir: Option<PathBuf>,
}

#[derive(Debug, clap::Args)]
pub(crate) struct RunArgs {
    /// The pipeline file (YAML).
    #[arg(short = 'c', long = "config", value_name = "PIPELINE.yaml")]
    pub config: PathBuf,
    /// Read this lake root instead of the pipeline's: a directory, file:///abs/dir or
    /// s3://bucket/prefix (endpoint, region and credentials from AWS_* variables).
    #[arg(long, value_name = "URL")]
    pub lake: Option<String>,
    /// Write each report to DIR/<report>.<ext> instead of printing it (with --format html:
    /// one page, DIR/<pipeline>.html).
    #[arg(long, value_name = "DIR")]
    pub out: Option<PathBuf>,
    /// Output format (default: table when printing, csv with --out).
    #[arg(long, value_enum)]
    pub format: Option<OutputFormat>,
    /// Run only this report (repeatable; default: all).
    #[arg(long = "report", value_name = "NAME")]
    pub reports: Vec<String>,
    /// One day: 2024-05-17, `today` or `yesterday` (UTC).
    #[arg(long, value_name = "DAY", help_heading = "Days")]
    pub date: Option<String>,
    /// First day (inclusive).
    #[arg(long, value_name = "DAY", help_heading = "Days")]
    pub from: Option<String>,
    /// Last day (inclusive).
    #[arg(long, value_name = "DAY", help_heading = "Days")]
    pub to: Option<String>,
    /// The N days ending today, today included: `1d`, `7d`, `30d`.
    #[arg(long, value_name = "DAYS", help_heading = "Days")]
    pub last: Option<String>,
    /// Take this date as today (backfills: `--today 2024-05-01 --date yesterday`).
    #[arg(long, value_name = "DAY", help_heading = "Days")]
    pub today: Option<String>,
    /// Compute only the days whose committed input is new or changed since the last run.
    #[arg(long, help_heading = "Cron")]
    pub incremental: bool,
    /// Wait this long for a report locked by another run (e.g. `10m`); default: exit 3 at once.
    #[arg(long, value_name = "DURATION", help_heading = "Cron")]
    pub wait: Option<shared::HumanDuration>,
    /// Exit with status 4 when there is nothing to do (no day due, no data selected).
    #[arg(long, help_heading = "Cron")]
    pub exit_4_if_nothing: bool,
    /// After the run, write its figures for Prometheus to this file (node_exporter's
    /// textfile collector format: name it `*.prom` in `--collector.textfile.directory`).
    ///
    /// Metrics, labelled `pipeline="<name>"`: batch_analyze_days_computed_total,
    /// batch_analyze_rows_written_total{report}, batch_analyze_lake_partitions_replaced_total{report},
    /// batch_analyze_lake_partitions_unchanged_total{report} (counters: each successful run
    /// adds to the previous file's values), batch_analyze_last_run_duration_seconds,
    /// batch_analyze_last_run_exit_status, batch_analyze_last_run_timestamp_seconds and
    /// batch_analyze_last_success_timestamp_seconds (exit status 0 or 4; 0 if none yet).
    /// The file is replaced atomically (a temporary file in the same directory, renamed).
    /// A failed run (any other status, including 2 and 3) rewrites only the last_run_*
    /// figures: the counters and the success time are carried over from the previous file,
    /// which it reads back. The directory must exist. With --follow-commits the file is
    /// rewritten after each day computed (exit status 0 so far) and when the input ends.
    /// One file per pipeline and cron job: two runs writing the same file at once may lose
    /// one's counts.
    #[arg(
        long,
        value_name = "PATH",
        help_heading = "Cron",
        conflicts_with = "explain"
    )]
    pub metrics_file: Option<PathBuf>,
    /// Run the queries on an Apache DataFusion Ballista cluster: `df://HOST:PORT` names
    /// the scheduler (`batch-analyze scheduler`), `standalone` starts a scheduler and an
    /// executor in this process. Overrides the pipeline's `engine: { cluster: … }`. Locks,
    /// state, outputs and report partitions are written here, as without it.
    #[arg(long, value_name = "URL")]
    pub cluster: Option<String>,
    /// Give up on a report whose query has no result after this long: exit 1, nothing of
    /// that report written, the lock released. Default: 1h on a cluster (a Ballista job
    /// can wait forever after losing an executor mid-query), none embedded.
    #[arg(long, value_name = "DURATION")]
    pub query_timeout: Option<shared::HumanDuration>,
    /// Print what the run would read and compute (days, partitions, files, SQL) and why,
    /// without running it.
    #[arg(long)]
    pub explain: bool,
    /// Read commit events (`stream-ingest run --emit-commits`) from standard input and run
    /// the reports for each day as soon as all its partitions are committed.
    #[arg(long)]
    pub follow_commits: bool,
    /// Read partitions that are not committed yet (no `_SUCCESS`) too.
    #[arg(long)]
    pub include_open: bool,
    /// A Delta lake's tables as they were: a version (`37`), a timestamp
    /// (`2026-12-04T06:00:00Z`, or `2026-12-04 06:00` in UTC: each table's newest version
    /// committed by then), or per table `status_1m=37,late=12` (each table has its own
    /// versions; tables not named are read at the version or timestamp given without a
    /// name, else their newest). The summary and the HTML page print the `--as-of` that
    /// reads a run's versions again. Writes no report into the lake and no incremental
    /// state.
    #[arg(
        long,
        value_name = "VERSION|TIMESTAMP|TABLE=VERSION,…",
        conflicts_with_all = ["incremental", "follow_commits"]
    )]
    pub as_of: Option<AsOf>,
    /// Print nothing but the reports and errors.
    #[arg(short, long, conflicts_with = "verbose")]
    pub quiet: bool,
    /// Print the summary line even without a terminal.
    #[arg(short, long)]
    pub verbose: bool,
}

#[derive(Debug, clap::Args)]
pub(crate) struct ValidateArgs {
    /// The pipeline file (YAML).
    #[arg(short = 'c', long = "config", value_name = "PIPELINE.yaml")]
    pub config: PathBuf,
}

/// Runs a parsed command line; returns the process exit code.
pub fn execute(cli: Cli) -> ExitCode {
    let result = runtime().and_then(|rt| match cli.command {
        Command::Run(args) => rt.block_on(run_command(args)),
        Command::Validate(args) => rt.block_on(validate(args)).map(|()| 0),
        Command::Scheduler(args) => rt.block_on(scheduler(args)).map(|()| 0),
        Command::Executor(args) => rt.block_on(executor(args)).map(|()| 0),
    });
    match result {
        Ok(code) => ExitCode::from(code),
        Err(e) => {
            eprintln!("batch-analyze: error: {e}");
            ExitCode::from(e.exit_code())
        }
    }
}

fn runtime() -> Result<tokio::runtime::Runtime, AnalyzeError> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|e| AnalyzeError::Usage(format!("cannot start the runtime: {e}")))
}

/// `--query-timeout` on a cluster when none is given.
const DEFAULT_CLUSTER_QUERY_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(3600);

/// `run`, and with `--metrics-file` the figures of how it went.
async fn run_command(args: RunArgs) -> Result<u8, AnalyzeError> {
    let Some(path) = args.metrics_file.clone() else {
        return run_reports(args, None).await;
    };
    let fallback = args
        .config
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_default();
    let mut metrics = MetricsFile::new(path, &fallback, std::time::Instant::now())
        .map_err(AnalyzeError::Usage)?;
    let result = run_reports(args, Some(&mut metrics)).await;
    let status = match &result {
        Ok(code) => *code,
        Err(e) => e.exit_code(),
    };
    if let Err(e) = metrics.write(status) {
        eprintln!("batch-analyze: warning: the metrics file: {e}");
    }
    result
}

/// `run` (a run, `--explain` or `--follow-commits`); its exit status.
async fn run_reports(
    args: RunArgs,
    mut metrics: Option<&mut MetricsFile>,
) -> Result<u8, AnalyzeError> {
    let loaded = shared::config::load(&args.config)?;
    if let Some(m) = metrics.as_deref_mut() {
        m.start(&loaded.config.name);
    }
    let terminal = std::io::stderr().is_terminal();
    let opts = run_options(&args, &loaded, terminal)?;
    let show_summary = !args.quiet && (terminal || args.verbose);
    if args.explain {
        print!("{}", crate::explain::explain(&loaded, &opts).await?);
        return Ok(0);
    }
    let nothing_done = if args.follow_commits {
        follow_commits(&loaded, &opts, show_summary, metrics).await?
    } else {
        run_once(&loaded, &opts, show_summary, metrics).await?
    };
    Ok(if nothing_done && args.exit_4_if_nothing {
        EXIT_NOTHING_TO_DO
    } else {
        0
    })
}

/// The options of a run, from its arguments and the pipeline file.
fn run_options(
    args: &RunArgs,
    loaded: &LoadedConfig,
    terminal: bool,
) -> Result<RunOptions, AnalyzeError> {
    let format = args.format.unwrap_or(if args.out.is_some() {
        OutputFormat::Csv
    } else {
        OutputFormat::Table
    });
    let range = day_range(args)?;
    if args.follow_commits && (!range.is_all() || args.incremental || args.explain) {
        return Err(AnalyzeError::Usage(
            "--follow-commits takes its days from the commit events: leave out --date, --from, --to, --last, --incremental and --explain".into(),
        ));
    }
    let engine = query_engine(args, loaded)?;
    if let Some(a) = &args.as_of {
        check_as_of(a, loaded)?;
    }
    Ok(RunOptions {
        lake: args.lake.clone(),
        out: args.out.clone(),
        format,
        reports: args.reports.clone(),
        include_open: args.include_open,
        range,
        incremental: args.incremental,
        wait: args.wait.map(|w| w.0),
        progress: terminal && !args.quiet,
        query_timeout: args
            .query_timeout
            .map(|d| d.0)
            .or((!engine.is_embedded()).then_some(DEFAULT_CLUSTER_QUERY_TIMEOUT)),
        engine,
        as_of: args.as_of.clone(),
    })
}

/// `--as-of` needs a Delta lake, and names only its tables.
fn check_as_of(a: &AsOf, loaded: &LoadedConfig) -> Result<(), AnalyzeError> {
    if loaded.config.lake.format != shared::config::LakeFormat::Delta {
        return Err(AnalyzeError::Usage(
            "--as-of reads older versions of Delta tables; this pipeline's lake is Hive-partitioned (`lake.format: hive`), which keeps none".into(),
        ));
    }
    let known: Vec<String> = crate::catalog::lake_tables(loaded)
        .into_iter()
        .map(|t| t.name)
        .collect();
    let unknown = a.unknown_tables(&known);
    if !unknown.is_empty() {
        return Err(AnalyzeError::Usage(format!(
            "--as-of: no lake table {} (tables: {})",
            unknown.join(", "),
            known.join(", ")
        )));
    }
    Ok(())
}

/// The days of `--date`, `--from`/`--to`, `--last` (all days without them).
fn day_range(args: &RunArgs) -> Result<DayRange, AnalyzeError> {
    let dates = DateArgs {
        date: args.date.clone(),
        from: args.from.clone(),
        to: args.to.clone(),
        last: args.last.clone(),
        today: args.today.clone(),
    };
    dates::select(&dates, chrono::Utc::now().date_naive()).map_err(AnalyzeError::Usage)
}

/// Where the queries run: `--cluster`, else the pipeline's `engine.cluster`, else embedded.
fn query_engine(args: &RunArgs, loaded: &LoadedConfig) -> Result<QueryEngine, AnalyzeError> {
    match &args.cluster {
        Some(url) => {
            QueryEngine::parse(url).map_err(|e| AnalyzeError::Usage(format!("--cluster: {e}")))
        }
        // Validated with the file.
        None => loaded
            .config
            .engine
            .cluster
            .as_deref()
            .map_or(Ok(QueryEngine::Embedded), QueryEngine::parse)
            .map_err(AnalyzeError::Usage),
    }
}

/// One run; whether it had nothing to do.
async fn run_once(
    loaded: &LoadedConfig,
    opts: &RunOptions,
    show_summary: bool,
    metrics: Option<&mut MetricsFile>,
) -> Result<bool, AnalyzeError> {
    let summary = crate::run(loaded, opts).await?;
    if let Some(m) = metrics {
        m.add(&summary);
    }
    print_reports(&summary, opts.format, None);
    if show_summary {
        eprintln!("batch-analyze: {}: {}", loaded.config.name, summary.line());
    }
    Ok(summary.nothing_to_do())
}

/// `--follow-commits`: the reports of each day as its commits arrive, printed (and counted)
/// day by day; whether no day was computed.
async fn follow_commits(
    loaded: &LoadedConfig,
    opts: &RunOptions,
    show_summary: bool,
    mut metrics: Option<&mut MetricsFile>,
) -> Result<bool, AnalyzeError> {
    let name = &loaded.config.name;
    let stdin = tokio::io::BufReader::new(tokio::io::stdin());
    let s = crate::follow::follow(loaded, opts, stdin, |day, summary| {
        print_reports(summary, opts.format, Some(day));
        if show_summary {
            eprintln!("batch-analyze: {name}: {day}: {}", summary.line());
        }
        if let Some(m) = metrics.as_deref_mut() {
            m.add(summary);
            if let Err(e) = m.write(0) {
                eprintln!("batch-analyze: warning: the metrics file: {e}");
            }
        }
    })
    .await?;
    if show_summary {
        eprintln!(
            "batch-analyze: {name}: followed {} commits: {} day{}, {} rows in {:.2} s",
            s.commits,
            s.days.len(),
            if s.days.len() == 1 { "" } else { "s" },
            s.rows,
            s.seconds
        );
    }
    Ok(s.days.is_empty())
}

/// Prints the reports (and the HTML page) a run did not write to files.
fn print_reports(summary: &RunSummary, format: OutputFormat, day: Option<&str>) {
    let mut stdout = std::io::stdout().lock();
    let printed: Vec<_> = summary
        .reports
        .iter()
        .filter_map(|r| r.printed.as_ref().map(|p| (r, p)))
        .collect();
    let titled = format == OutputFormat::Table && (printed.len() > 1 || day.is_some());
    for (r, data) in printed {
        if titled {
            let on = day.map(|d| format!(" {d}")).unwrap_or_default();
            let _ = writeln!(stdout, "{}{on} ({} rows)", r.name, r.rows);
        }
        let _ = stdout.write_all(data);
    }
    if let Some(page) = &summary.page {
        let _ = stdout.write_all(page);
    }
    let _ = stdout.flush();
}

async fn validate(args: ValidateArgs) -> Result<(), AnalyzeError> {
    let loaded = shared::config::load(&args.config)?;
    check_runnable(&loaded).await?;
    let c = &loaded.config;
    println!(
        "{}: ok (pipeline `{}`: {} report{} planned)",
        args.config.display(),
        c.name,
        c.reports.len(),
        if c.reports.len() == 1 { "" } else { "s" }
    );
    Ok(())
}

#[cfg(not(feature = "cluster"))]
async fn scheduler(_: SchedulerArgs) -> Result<(), AnalyzeError> {
    Err(AnalyzeError::Usage(crate::cluster::NO_CLUSTER.into()))
}

#[cfg(not(feature = "cluster"))]
async fn executor(_: ExecutorArgs) -> Result<(), AnalyzeError> {
    Err(AnalyzeError::Usage(crate::cluster::NO_CLUSTER.into()))
}

#[cfg(feature = "cluster")]
async fn scheduler(args: SchedulerArgs) -> Result<(), AnalyzeError> {
    let opts = SchedulerOptions {
        bind: args.bind,
        executor_timeout: args.executor_timeout.0,
    };
    eprintln!("batch-analyze: scheduler listening on df://{}", args.bind);
    crate::cluster::process::run_scheduler(&opts)
        .await
        .map_err(AnalyzeError::Cluster)
}

#[cfg(feature = "cluster")]
async fn executor(args: ExecutorArgs) -> Result<(), AnalyzeError> {
    let QueryEngine::Cluster { host, port } = QueryEngine::parse(&args.scheduler)
        .map_err(|e| AnalyzeError::Usage(format!("--scheduler: {e}")))?
    else {
        return Err(AnalyzeError::Usage(
            "--scheduler: a scheduler is df://HOST:PORT".into(),
        ));
    };
    let opts = ExecutorOptions {
        scheduler: (host, port),
        bind: args.bind,
        external_host: args.external_host,
        slots: args.slots.unwrap_or(0),
        work_dir: args.work_dir.map(|d| d.to_string_lossy().into_owned()),
    };
    crate::cluster::process::run_executor(&opts)
        .await
        .map_err(AnalyzeError::Cluster)
}
