//! The steps of one report in a run, in the order `lib.rs` calls them: [`query`] its due
//! days, [`write_outputs`] (the report's file or printed bytes, its lake table), then
//! [`save_state`]; and once every report is done, the run's HTML page ([`write_page`]).
//! A step that fails stops the run before the next one, so the state is only written once
//! every output of the report is in place.

use std::collections::BTreeSet;

use arrow::array::RecordBatch;
use arrow::datatypes::SchemaRef;
use datafusion::dataframe::DataFrame;
use datafusion::error::DataFusionError;
use shared::config::{LakeFormat, ReportConfig};

use crate::as_of::VersionsRead;
use crate::catalog::{self, LakeSnapshot};
use crate::due::Work;
use crate::error::AnalyzeError;
use crate::output::{self, OutputFormat};
use crate::prepare::{Prepared, RunOptions};
use crate::state::{self, ReportState};
use crate::summary::{ReportResult, RunSummary};
use crate::{cluster, html, lake_output, small_files};

/// A report's query: its result schema, and its rows when it ran (`None`: nothing was due,
/// the report was planned but not run).
pub struct Queried {
    pub schema: SchemaRef,
    pub batches: Option<Vec<RecordBatch>>,
}

/// Plans report `i` in a session over the snapshot's files of its due days, and runs it
/// when something is due.
pub async fn query(
    prep: &Prepared<'_>,
    opts: &RunOptions,
    i: usize,
    snapshot: &LakeSnapshot,
    work: &Work,
) -> Result<Queried, AnalyzeError> {
    let plan = &prep.plans[i];
    let ctx = cluster::session_on(&opts.engine, &prep.loaded.config.lake.s3)
        .await
        .map_err(AnalyzeError::Cluster)?;
    let days = work.days_to_read(opts.incremental);
    catalog::register_snapshot(
        &ctx,
        prep.loaded,
        &prep.lake,
        snapshot,
        days,
        opts.include_open,
        &opts.engine,
    )
    .await
    .map_err(AnalyzeError::Catalog)?;
    let df = plan
        .dataframe(&ctx)
        .await
        .map_err(|source| AnalyzeError::report(&plan.name, source))?;
    let schema = df.schema().inner().clone();
    if !work.runs {
        return Ok(Queried {
            schema,
            batches: None,
        });
    }
    tracing::debug!(report = %plan.name, sql = %plan.describe(), days = work.due.len(), "planned");
    match collect(df, opts, &plan.name).await? {
        Ok(batches) => Ok(Queried {
            schema,
            batches: Some(batches),
        }),
        Err(source) => {
            let read = ReadSet {
                snapshot,
                tables: &work.inputs,
                days,
                include_open: opts.include_open,
            };
            Err(query_failed(prep, &read, &plan.name, source).await)
        }
    }
}

/// Runs a planned query, within `--query-timeout` when there is one.
async fn collect(
    df: DataFrame,
    opts: &RunOptions,
    report: &str,
) -> Result<Result<Vec<RecordBatch>, DataFusionError>, AnalyzeError> {
    match opts.query_timeout {
        Some(limit) => tokio::time::timeout(limit, df.collect())
            .await
            .map_err(|_| AnalyzeError::QueryTimeout {
                report: report.to_string(),
                limit: shared::HumanDuration(limit),
                engine: opts.engine.to_string(),
            }),
        None => Ok(df.collect().await),
    }
}

/// The lake files a report's query read.
struct ReadSet<'a> {
    snapshot: &'a LakeSnapshot,
    tables: &'a [String],
    days: Option<&'a BTreeSet<String>>,
    include_open: bool,
}

/// The error of a report whose query failed. A damaged lake file is named: by the reader
/// when it fails to read it, else (a damaged page, found while decoding) by decoding the
/// files the query read until one fails.
async fn query_failed(
    prep: &Prepared<'_>,
    read: &ReadSet<'_>,
    report: &str,
    source: DataFusionError,
) -> AnalyzeError {
    let error = AnalyzeError::report(report, source);
    if let AnalyzeError::Report { source, .. } = &error
        && small_files::is_parquet_error(source)
        && let Some(found) = catalog::find_damaged(
            &prep.lake,
            read.snapshot,
            read.tables,
            read.days,
            read.include_open,
        )
        .await
    {
        return AnalyzeError::LakeFile {
            report: report.to_string(),
            source: found,
        };
    }
    error
}

/// Writes a computed report: into its lake table when it has one (not with `--as-of`: a
/// report of the past does not replace today's), then (except for the HTML page, written
/// at the end of the run) to `--out` or into `result.printed`.
pub async fn write_outputs(
    prep: &Prepared<'_>,
    opts: &RunOptions,
    r: &ReportConfig,
    result: &mut ReportResult,
) -> Result<(), AnalyzeError> {
    if let Some(l) = r.lake.as_ref().filter(|_| opts.as_of.is_none()) {
        let table = l.table_path(&r.name);
        let written = write_into_lake(prep, &table, &l.partition_by, result)
            .await
            .map_err(|source| AnalyzeError::LakeOutput {
                report: r.name.clone(),
                source: Box::new(source),
            })?;
        result.lake = Some((table, written));
    }
    if opts.format != OutputFormat::Html {
        write_report_file(opts, result)?;
    }
    Ok(())
}

/// A report's rows into its lake table, in the lake's format.
async fn write_into_lake(
    prep: &Prepared<'_>,
    table: &str,
    partition_by: &[String],
    result: &ReportResult,
) -> Result<lake_output::ReportWrite, lake_output::LakeOutputError> {
    let lake = &prep.loaded.config.lake;
    let (schema, batches) = (&result.schema, &result.batches);
    match lake.format {
        LakeFormat::Hive => {
            lake_output::hive::recover(&prep.committer, table).await?;
            lake_output::hive::write(&prep.committer, table, partition_by, schema, batches).await
        }
        LakeFormat::Delta => {
            let retention = lake.delta.vacuum.0;
            let lake = &prep.lake;
            lake_output::delta::write(lake, table, partition_by, schema, batches, retention).await
        }
    }
}

/// The report encoded in `--format`: to `DIR/<report>.<ext>` with `--out`, else kept to
/// print.
fn write_report_file(opts: &RunOptions, result: &mut ReportResult) -> Result<(), AnalyzeError> {
    let output_err = |source| AnalyzeError::Output {
        report: result.name.clone(),
        source,
    };
    let data = output::encode(opts.format, &result.schema, &result.batches).map_err(output_err)?;
    match &opts.out {
        Some(dir) => {
            let file = format!("{}.{}", result.name, opts.format.extension());
            let path = output::write_atomically(dir, &file, &data).map_err(output_err)?;
            result.path = Some(path);
        }
        None => result.printed = Some(data),
    }
    Ok(())
}

/// Records the days the report computed, with their fingerprints, in its state.
pub async fn save_state(
    prep: &Prepared<'_>,
    r: &ReportConfig,
    work: Work,
) -> Result<(), AnalyzeError> {
    let pipeline = prep.loaded.config.name.as_str();
    let mut state = work
        .state
        .unwrap_or_else(|| ReportState::new(pipeline, &r.name, work.definition.clone()));
    state.definition = work.definition.clone();
    for day in &work.due {
        if let Some(fp) = work.candidates.get(day) {
            state.days.insert(day.clone(), fp.clone());
        }
    }
    state.updated = chrono::Utc::now();
    state::save(&prep.lake, &state).await?;
    Ok(())
}

/// `--format html`: the run's page, to `DIR/<pipeline>.html` with `--out`, else kept to
/// print.
pub fn write_page(
    prep: &Prepared<'_>,
    opts: &RunOptions,
    snapshot: &LakeSnapshot,
    summary: &mut RunSummary,
) -> Result<(), AnalyzeError> {
    let page = page(prep, snapshot, summary);
    match &opts.out {
        Some(dir) => {
            let file = format!("{}.html", prep.loaded.config.name);
            let path = output::write_atomically(dir, &file, page.as_bytes()).map_err(|source| {
                AnalyzeError::Output {
                    report: "(page)".into(),
                    source,
                }
            })?;
            summary.page_path = Some(path);
        }
        None => summary.page = Some(page.into_bytes()),
    }
    Ok(())
}

/// The HTML page of a run.
fn page(prep: &Prepared<'_>, snapshot: &LakeSnapshot, summary: &RunSummary) -> String {
    let cfg = &prep.loaded.config;
    let days = if summary.days.is_empty() {
        "no days".to_string()
    } else if summary.days.len() == 1 {
        summary.days.iter().next().cloned().unwrap_or_default()
    } else {
        format!(
            "{} days, {} … {}",
            summary.days.len(),
            summary.days.first().cloned().unwrap_or_default(),
            summary.days.last().cloned().unwrap_or_default()
        )
    };
    let mut subtitle = format!(
        "{}lake {} · {days} (selected: {})",
        cfg.description
            .as_deref()
            .map(|d| format!("{d} · "))
            .unwrap_or_default(),
        prep.lake.display_root(),
        snapshot.range
    );
    if !summary.versions.is_empty() {
        subtitle.push_str(&format!(
            " · table versions --as-of {}",
            VersionsRead(&summary.versions)
        ));
    }
    let reports: Vec<html::HtmlReport<'_>> = summary
        .reports
        .iter()
        .filter(|r| !r.skipped)
        .map(|r| {
            let rc = prep.reports.iter().find(|c| c.name == r.name);
            html::HtmlReport {
                name: &r.name,
                description: rc.and_then(|c| c.description.as_deref()),
                schema: &r.schema,
                batches: &r.batches,
                chart: rc.and_then(|c| c.chart.as_ref()),
            }
        })
        .collect();
    html::render(&cfg.name, &subtitle, &reports)
}
