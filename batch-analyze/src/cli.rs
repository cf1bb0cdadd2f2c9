//! The command line of `batch-analyze`. `main.rs` parses it and calls [`execute`].

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

use crate::output::OutputFormat;
use crate::{AnalyzeError, RunOptions};

const ABOUT: &str = "The batch stage: read the lake's Parquet tables with DataFusion, join dimension tables, and write reports.";

const LONG_ABOUT: &str = "\
The batch stage of a pipeline. It reads the windowed tables that stream-ingest wrote to the
lake (Hive-partitioned Parquet), joins them with dimension tables, and computes the reports
declared in the pipeline file: group by, aggregates, derived columns, top N per group, or
plain SQL. Reports print to standard output, or go to DIR/<report>.<ext> with --out (each
written under a temporary name and renamed into place).

Exit status: 0 success, 2 invalid configuration or arguments, 1 any other failure.
Logs: RUST_LOG=debug prints each report's SQL, on standard error.";

#[derive(Debug, Parser)]
#[command(name = "batch-analyze", version, about = ABOUT, long_about = LONG_ABOUT)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Compute the pipeline's reports from the lake.
    #[command(
        after_help = "Examples:\n  batch-analyze run -c pipelines/access-log.yaml\n  batch-analyze run -c pipelines/access-log.yaml --out reports --format csv --report top_paths"
    )]
    Run(RunArgs),
    /// Check a pipeline file without running it: every report is planned against the
    /// tables' schemas; every problem is printed with its line.
    Validate(ValidateArgs),
}

#[derive(Debug, clap::Args)]
pub struct RunArgs {
    /// The pipeline file (YAML).
    #[arg(short = 'c', long = "config", value_name = "PIPELINE.yaml")]
    pub config: PathBuf,
    /// Read this lake root instead of the pipeline's: a directory, file:///abs/dir or
    /// s3://bucket/prefix (endpoint, region and credentials from AWS_* variables).
    #[arg(long, value_name = "URL")]
    pub lake: Option<String>,
    /// Write each report to DIR/<report>.<ext> instead of printing it.
    #[arg(long, value_name = "DIR")]
    pub out: Option<PathBuf>,
    /// Output format (default: table when printing, csv with --out).
    #[arg(long, value_enum)]
    pub format: Option<OutputFormat>,
    /// Run only this report (repeatable; default: all).
    #[arg(long = "report", value_name = "NAME")]
    pub reports: Vec<String>,
    /// Read partitions that are not committed yet (no `_SUCCESS`) too.
    #[arg(long)]
    pub include_open: bool,
    /// Print no summary line at the end.
    #[arg(short, long)]
    pub quiet: bool,
}

#[derive(Debug, clap::Args)]
pub struct ValidateArgs {
    /// The pipeline file (YAML).
    #[arg(short = 'c', long = "config", value_name = "PIPELINE.yaml")]
    pub config: PathBuf,
}

/// Runs a parsed command line; returns the process exit code.
pub fn execute(cli: Cli) -> ExitCode {
    let result = runtime().and_then(|rt| match cli.command {
        Command::Run(args) => rt.block_on(run(args)),
        Command::Validate(args) => rt.block_on(validate(args)),
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
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

async fn run(args: RunArgs) -> Result<(), AnalyzeError> {
    let loaded = shared::config::load(&args.config)?;
    let format = args.format.unwrap_or(if args.out.is_some() {
        OutputFormat::Csv
    } else {
        OutputFormat::Table
    });
    let opts = RunOptions {
        lake: args.lake,
        out: args.out,
        format,
        reports: args.reports,
        include_open: args.include_open,
    };
    let summary = crate::run(&loaded, &opts).await?;
    let mut stdout = std::io::stdout().lock();
    let many = summary.reports.len() > 1;
    for r in &summary.reports {
        if let Some(data) = &r.printed {
            if many && format == OutputFormat::Table {
                let _ = writeln!(stdout, "{} ({} rows)", r.name, r.rows);
            }
            let _ = stdout.write_all(data);
        }
    }
    let _ = stdout.flush();
    if !args.quiet {
        let parts: Vec<String> = summary
            .reports
            .iter()
            .map(|r| match &r.path {
                Some(p) => format!("{} ({} rows) → {}", r.name, r.rows, p.display()),
                None => format!("{} ({} rows)", r.name, r.rows),
            })
            .collect();
        eprintln!(
            "batch-analyze: {}: {} in {:.2} s",
            loaded.config.name,
            parts.join(", "),
            summary.seconds
        );
    }
    Ok(())
}

async fn validate(args: ValidateArgs) -> Result<(), AnalyzeError> {
    let loaded = shared::config::load(&args.config)?;
    crate::check_runnable(&loaded).await?;
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
