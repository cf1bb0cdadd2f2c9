//! `batch-analyze`: the batch stage of a pipeline.
//!
//! A run locks its reports ([`lock`]), takes a snapshot of the selected days of the lake
//! ([`dates`], [`catalog`]: committed partitions only, exactly the files their markers name),
//! works out which days each report must compute ([`due`], [`state`]: all selected days, or
//! with `--incremental` only those whose input changed since the last run), turns each report
//! into a query ([`plan`]; sketch columns are merged by the functions of [`sketch`]) over
//! those days, runs it, and writes the result: printed or to files ([`output`], [`html`])
//! and, when the report asks for it, into the lake with dynamic partition overwrite
//! ([`lake_output`]). The state is written last. `--follow-commits` ([`follow`]) does the
//! same per day as the stream stage commits it. Start reading at [`run`].
//!
//! `main.rs` only parses the command line ([`cli`]) and maps errors to exit codes.
//!
//! The modules, from the command line down:
//!
//! | module | what it holds |
//! | --- | --- |
//! | [`cli`] | the command line; `run`, `validate`, `scheduler`, `executor` |
//! | [`follow`] | `--follow-commits`: [`compute`] per day as commit events arrive |
//! | [`explain`] | `--explain`: what a run would read and compute, and why |
//! | this file | a run's flow: [`run`] → [`compute`] → per report, the steps of [`report`] |
//! | [`prepare`] | options, reports selected and planned, checks, the lake opened, locks |
//! | [`due`] | which days each report computes, and why (fingerprints) |
//! | [`report`] | one report's steps: query, outputs, state; the run's HTML page |
//! | [`summary`] | what a run did, and its summary line |
//! | [`metrics_file`] | `--metrics-file` for node_exporter |
//! | [`error`] | everything that stops a run, and its exit status |
//! | [`catalog`] | the lake snapshot, and its tables registered in a session |
//! | [`tables`] | our DataFusion tables: lake files of a snapshot, shipped dimensions |
//! | [`small_files`] | reading small lake files whole; errors that name a damaged file |
//! | [`plan`] | a declared report → SQL |
//! | [`sketch`] | merging the lake's sketches in SQL |
//! | [`cluster`] | sessions: embedded, or on a Ballista cluster (codec, processes, stores) |
//! | [`output`], [`html`] | report formats, atomic files; the HTML page and its charts |
//! | [`lake_output`] | reports into the lake (dynamic partition overwrite) |
//! | [`state`], [`lock`] | incremental state and report locks, under `_state/` |
//! | [`dates`] | day selection |
//! | [`as_of`] | `--as-of`: the versions of a Delta lake's tables a run reads |
//! | [`fault`] | fault injection for the crash tests |

pub mod cli;

pub(crate) mod as_of;
pub(crate) mod catalog;
pub(crate) mod cluster;
pub(crate) mod dates;
pub(crate) mod due;
pub(crate) mod error;
pub(crate) mod explain;
pub(crate) mod fault;
pub(crate) mod follow;
pub(crate) mod html;
pub(crate) mod lake_output;
pub(crate) mod lock;
pub(crate) mod metrics_file;
pub(crate) mod output;
pub(crate) mod plan;
pub(crate) mod prepare;
pub(crate) mod report;
pub(crate) mod sketch;
pub(crate) mod small_files;
pub(crate) mod state;
pub(crate) mod summary;
pub(crate) mod tables;

use std::time::Instant;

use shared::config::LoadedConfig;

use crate::catalog::LakeSnapshot;
use crate::dates::DayRange;
use crate::error::AnalyzeError;
use crate::fault::fault;
use crate::output::OutputFormat;
use crate::prepare::{Prepared, RunOptions, prepare_to_run};
use crate::summary::{ReportResult, RunSummary};

/// Runs the selected reports over the selected days of the lake.
pub(crate) async fn run(
    loaded: &LoadedConfig,
    opts: &RunOptions,
) -> Result<RunSummary, AnalyzeError> {
    let started = Instant::now();
    let prep = prepare_to_run(loaded, opts).await?;
    let locks = prep.lock(opts.wait).await?;
    let result = compute(&prep, opts, &opts.range).await;
    locks.release().await;
    let mut summary = result?;
    summary.seconds = started.elapsed().as_secs_f64();
    Ok(summary)
}

/// Computes the selected reports over `range`, with the locks held.
pub(crate) async fn compute(
    prep: &Prepared<'_>,
    opts: &RunOptions,
    range: &DayRange,
) -> Result<RunSummary, AnalyzeError> {
    let started = Instant::now();
    let snapshot = catalog::snapshot(prep.loaded, &prep.lake, range, opts.as_of.as_ref()).await?;
    let mut summary = RunSummary {
        versions: snapshot.versions(),
        as_of: opts.as_of.is_some(),
        ..RunSummary::default()
    };
    for i in 0..prep.reports.len() {
        let result = compute_report(prep, opts, i, &snapshot).await?;
        summary.days.extend(result.days.iter().cloned());
        summary.reports.push(result);
    }
    if opts.progress {
        eprint!("\r\x1b[2K");
    }
    if opts.format == OutputFormat::Html {
        report::write_page(prep, opts, &snapshot, &mut summary)?;
    }
    summary.seconds = started.elapsed().as_secs_f64();
    Ok(summary)
}

/// Report `i`: its due days, its query, its outputs, its state.
async fn compute_report(
    prep: &Prepared<'_>,
    opts: &RunOptions,
    i: usize,
    snapshot: &LakeSnapshot,
) -> Result<ReportResult, AnalyzeError> {
    let r = prep.reports[i];
    let work = due::work(prep, i, snapshot, opts).await?;
    if opts.progress {
        eprint!(
            "\r\x1b[2K[{}/{}] {}: {} day{}…",
            i + 1,
            prep.reports.len(),
            r.name,
            work.due.len(),
            if work.due.len() == 1 { "" } else { "s" }
        );
    }
    let queried = report::query(prep, opts, i, snapshot, &work).await?;
    let Some(batches) = queried.batches else {
        return Ok(ReportResult {
            name: r.name.clone(),
            rows: 0,
            days: vec![],
            skipped: true,
            path: None,
            printed: None,
            lake: None,
            schema: queried.schema,
            batches: vec![],
        });
    };
    let mut result = ReportResult {
        name: r.name.clone(),
        rows: batches.iter().map(|b| b.num_rows()).sum(),
        days: work.due.iter().cloned().collect(),
        skipped: false,
        path: None,
        printed: None,
        lake: None,
        schema: queried.schema,
        batches,
    };
    report::write_outputs(prep, opts, r, &mut result).await?;
    fault("before-state");
    // A run of the past (`--as-of`) changes nothing of the present: no state either.
    if opts.as_of.is_none() {
        report::save_state(prep, r, work).await?;
    }
    Ok(result)
}
