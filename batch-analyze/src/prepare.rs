//! What a run settles before it reads any data: the options of the command line
//! ([`RunOptions`]), the reports selected and planned, the checks a pipeline file cannot do
//! alone ([`check_runnable`], also `batch-analyze validate`), the lake opened ([`prepare`])
//! and the reports locked ([`Prepared::lock`]).

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use arrow::datatypes::Schema;
use shared::commit::FileCommitter;
use shared::config::{LoadedConfig, Problem, QueryEngine, ReportConfig};
use shared::lake::Lake;

use crate::as_of::AsOf;
use crate::dates::DayRange;
use crate::error::{AnalyzeError, first_line};
use crate::fault::fault;
use crate::output::OutputFormat;
use crate::plan::ReportPlan;
use crate::{catalog, cluster, lock};

/// Command-line choices of a run.
#[derive(Debug, Clone)]
pub struct RunOptions {
    /// Overrides the lake root of the pipeline file.
    pub lake: Option<String>,
    /// Write `DIR/<report>.<ext>` instead of printing.
    pub out: Option<PathBuf>,
    pub format: OutputFormat,
    /// Only these reports (default: all, in file order).
    pub reports: Vec<String>,
    /// Read partitions that are not committed yet too.
    pub include_open: bool,
    /// The days to read.
    pub range: DayRange,
    /// Compute only the days whose input changed since the last run.
    pub incremental: bool,
    /// Wait this long for another run's lock (default: give up at once).
    pub wait: Option<Duration>,
    /// Show progress on standard error (a terminal).
    pub progress: bool,
    /// Where the queries run: the embedded DataFusion, or a Ballista cluster.
    pub engine: QueryEngine,
    /// Give up on a report whose query runs longer (exit 1, nothing of it written).
    pub query_timeout: Option<Duration>,
    /// Read the Delta tables as they were (`--as-of`); writes no lake output and no state.
    pub as_of: Option<AsOf>,
}

/// A run's fixed parts: the reports, their plans, the lake.
pub struct Prepared<'a> {
    pub loaded: &'a LoadedConfig,
    pub reports: Vec<&'a ReportConfig>,
    pub plans: Vec<ReportPlan>,
    pub lake: Lake,
    pub committer: FileCommitter,
}

/// Checks the pipeline and the options and opens the lake.
pub async fn prepare<'a>(
    loaded: &'a LoadedConfig,
    opts: &RunOptions,
) -> Result<Prepared<'a>, AnalyzeError> {
    let reports = selected(loaded, &opts.reports)?;
    check_runnable(loaded).await?;
    let cfg = &loaded.config;
    let root = opts.lake.clone().unwrap_or_else(|| cfg.lake.root.clone());
    if let Some(root) = &opts.lake {
        shared::lake::LakeRoot::parse(root)
            .map_err(|e| AnalyzeError::Usage(format!("--lake: {e}")))?;
    }
    let lake = Lake::open(&root, &cfg.lake.s3, cfg.lake.partition_time)?;
    let plans = plans(loaded, &reports);
    Ok(Prepared {
        loaded,
        reports,
        plans,
        committer: FileCommitter::new(lake.clone()),
        lake,
    })
}

/// [`prepare`], and the cluster the queries run on answers: checked before anything is
/// locked (`--explain` runs no query and needs none).
pub async fn prepare_to_run<'a>(
    loaded: &'a LoadedConfig,
    opts: &RunOptions,
) -> Result<Prepared<'a>, AnalyzeError> {
    let prep = prepare(loaded, opts).await?;
    cluster::check_reachable(&opts.engine)
        .await
        .map_err(AnalyzeError::Cluster)?;
    Ok(prep)
}

impl Prepared<'_> {
    /// Locks the selected reports (see [`lock`]).
    pub async fn lock(&self, wait: Option<Duration>) -> Result<lock::Locks, AnalyzeError> {
        let names: Vec<String> = self.reports.iter().map(|r| r.name.clone()).collect();
        let locks = lock::acquire(&self.lake, &self.loaded.config.name, &names, wait).await?;
        fault("after-lock");
        Ok(locks)
    }
}

/// The reports selected by `--report` (all when empty), in file order; unknown names are
/// a usage error.
fn selected<'a>(
    loaded: &'a LoadedConfig,
    names: &[String],
) -> Result<Vec<&'a ReportConfig>, AnalyzeError> {
    let cfg = &loaded.config;
    for n in names {
        if cfg.report(n).is_none() {
            let known: Vec<&str> = cfg.reports.iter().map(|r| r.name.as_str()).collect();
            return Err(AnalyzeError::Usage(format!(
                "--report {n}: no such report (reports: {})",
                known.join(", ")
            )));
        }
    }
    Ok(cfg
        .reports
        .iter()
        .filter(|r| names.is_empty() || names.contains(&r.name))
        .collect())
}

/// Plans every report of the pipeline.
fn plans(loaded: &LoadedConfig, reports: &[&ReportConfig]) -> Vec<ReportPlan> {
    let tables = catalog::lake_tables(loaded);
    reports
        .iter()
        .map(|r| {
            let input = match r.from.as_deref() {
                Some(from) => match tables.iter().find(|t| t.name == from) {
                    Some(t) => shared::schema::read_schema(&t.file_schema, &t.partition_columns),
                    None => loaded.config.dimension(from).map_or_else(
                        || Arc::new(Schema::empty()),
                        shared::schema::dimension_schema,
                    ),
                },
                None => Arc::new(Schema::empty()),
            };
            ReportPlan::new(r, &loaded.config, &input)
        })
        .collect()
}

/// Checks what a run needs beyond the file itself: dimension files exist, and every report
/// plans against the tables' schemas (columns, functions, types in SQL expressions).
pub async fn check_runnable(loaded: &LoadedConfig) -> Result<(), AnalyzeError> {
    let mut problems = missing_dimension_files(loaded);
    let ctx = cluster::embedded_session();
    catalog::register_empty(&ctx, loaded)
        .await
        .map_err(AnalyzeError::Catalog)?;
    let reports: Vec<_> = loaded.config.reports.iter().collect();
    for (i, plan) in plans(loaded, &reports).iter().enumerate() {
        match plan.dataframe(&ctx).await {
            Ok(df) => missing_columns(loaded, i, reports[i], df.schema().inner(), &mut problems),
            Err(e) => {
                let path = if reports[i].sql.is_some() {
                    format!("reports[{i}].sql")
                } else {
                    format!("reports[{i}]")
                };
                problems.push(loaded.problem(
                    path,
                    format!("the report does not plan: {}", first_line(&e.to_string())),
                ));
            }
        }
    }
    if problems.is_empty() {
        Ok(())
    } else {
        Err(loaded.invalid(problems).into())
    }
}

/// A problem for each dimension whose file is not there.
fn missing_dimension_files(loaded: &LoadedConfig) -> Vec<Problem> {
    let mut problems = Vec::new();
    for (i, d) in loaded.config.dimensions.iter().enumerate() {
        let p = loaded.resolve(&d.path);
        if !p.is_file() {
            problems.push(loaded.problem(
                format!("dimensions[{i}].path"),
                format!("no such file: {}", p.display()),
            ));
        }
    }
    problems
}

/// Problems with the columns that report `i`'s lake output and chart name: each must be in
/// the report's result `schema` (the chart's `y` numeric).
fn missing_columns(
    loaded: &LoadedConfig,
    i: usize,
    r: &ReportConfig,
    schema: &Schema,
    problems: &mut Vec<Problem>,
) {
    let columns: Vec<&str> = schema.fields().iter().map(|f| f.name().as_str()).collect();
    let mut need = |field: String, col: &str, numeric: bool| match schema.field_with_name(col) {
        Err(_) => problems.push(loaded.problem(
            field,
            format!(
                "no column `{col}` in the report (columns: {})",
                columns.join(", ")
            ),
        )),
        Ok(f) if numeric && !f.data_type().is_numeric() => problems
            .push(loaded.problem(field, format!("`{col}` is not numeric ({})", f.data_type()))),
        Ok(_) => {}
    };
    if let Some(l) = &r.lake {
        for (k, c) in l.partition_by.iter().enumerate() {
            need(format!("reports[{i}].lake.partition_by[{k}]"), c, false);
        }
    }
    if let Some(c) = &r.chart {
        need(format!("reports[{i}].chart.x"), &c.x, false);
        need(format!("reports[{i}].chart.y"), &c.y, true);
        if let Some(s) = &c.series {
            need(format!("reports[{i}].chart.series"), s, false);
        }
        if let Some(p) = &c.per {
            need(format!("reports[{i}].chart.per"), p, false);
        }
    }
}
