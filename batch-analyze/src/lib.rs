//! `batch-analyze`: the batch stage of a pipeline.
//!
//! It registers the lake's tables and the dimension tables in a DataFusion session
//! ([`catalog`]), turns each report of the pipeline file into a query ([`plan`]), runs it,
//! and writes the result ([`output`]). Start reading at [`run`].
//!
//! `main.rs` only parses the command line ([`cli`]) and maps errors to exit codes.

pub mod catalog;
pub mod cli;
pub mod output;
pub mod plan;

use std::path::PathBuf;
use std::time::Instant;

use arrow::array::RecordBatch;
use datafusion::error::DataFusionError;
use datafusion::prelude::{SessionConfig, SessionContext};
use shared::config::{ConfigError, LoadedConfig};
use shared::lake::{Lake, LakeError};

use crate::output::{OutputError, OutputFormat};
use crate::plan::ReportPlan;

/// Everything that can stop a run. [`AnalyzeError::exit_code`] maps it for scripts.
#[derive(Debug, thiserror::Error)]
pub enum AnalyzeError {
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error("{0}")]
    Usage(String),
    #[error(transparent)]
    Lake(#[from] LakeError),
    #[error("report `{report}`: {source}")]
    Report {
        report: String,
        #[source]
        source: DataFusionError,
    },
    #[error("registering tables: {0}")]
    Catalog(DataFusionError),
    #[error("report `{report}`: {source}")]
    Output {
        report: String,
        #[source]
        source: OutputError,
    },
}

impl AnalyzeError {
    /// 2 for a bad configuration or arguments, 1 for anything else.
    pub fn exit_code(&self) -> u8 {
        match self {
            AnalyzeError::Config(_)
            | AnalyzeError::Usage(_)
            | AnalyzeError::Lake(LakeError::InvalidRoot { .. }) => 2,
            _ => 1,
        }
    }
}

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
}

/// One report's result.
#[derive(Debug)]
pub struct ReportResult {
    pub name: String,
    pub rows: usize,
    /// Where it was written (with `--out`).
    pub path: Option<PathBuf>,
    /// The encoded report (without `--out`).
    pub printed: Option<Vec<u8>>,
}

/// What a run did.
#[derive(Debug)]
pub struct RunSummary {
    pub reports: Vec<ReportResult>,
    pub seconds: f64,
}

fn session() -> SessionContext {
    SessionContext::new_with_config(SessionConfig::new().with_information_schema(false))
}

/// The reports selected by `--report` (all when empty), in file order; unknown names are
/// a usage error.
fn selected<'a>(
    loaded: &'a LoadedConfig,
    names: &[String],
) -> Result<Vec<&'a shared::config::ReportConfig>, AnalyzeError> {
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
fn plans(loaded: &LoadedConfig, reports: &[&shared::config::ReportConfig]) -> Vec<ReportPlan> {
    let tables = catalog::lake_tables(loaded);
    reports
        .iter()
        .map(|r| {
            let input_columns: Vec<String> = match r.from.as_deref() {
                Some(from) => match tables.iter().find(|t| t.name == from) {
                    Some(t) => shared::schema::read_schema(&t.file_schema, &t.partition_columns)
                        .fields()
                        .iter()
                        .map(|f| f.name().clone())
                        .collect(),
                    None => loaded
                        .config
                        .dimension(from)
                        .map(|d| d.columns.iter().map(|c| c.name.clone()).collect())
                        .unwrap_or_default(),
                },
                None => vec![],
            };
            ReportPlan::new(r, &loaded.config, &input_columns)
        })
        .collect()
}

/// Checks what a run needs beyond the file itself: dimension files exist, and every report
/// plans against the tables' schemas (columns, functions, types in SQL expressions).
pub async fn check_runnable(loaded: &LoadedConfig) -> Result<(), AnalyzeError> {
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
    let ctx = session();
    catalog::register_empty(&ctx, loaded)
        .await
        .map_err(AnalyzeError::Catalog)?;
    let reports: Vec<_> = loaded.config.reports.iter().collect();
    for (i, plan) in plans(loaded, &reports).iter().enumerate() {
        if let Err(e) = plan.dataframe(&ctx).await {
            let field = if reports[i].sql.is_some() { "sql" } else { "" };
            let path = if field.is_empty() {
                format!("reports[{i}]")
            } else {
                format!("reports[{i}].{field}")
            };
            problems.push(loaded.problem(
                path,
                format!("the report does not plan: {}", first_line(&e.to_string())),
            ));
        }
    }
    if problems.is_empty() {
        Ok(())
    } else {
        Err(loaded.invalid(problems).into())
    }
}

fn first_line(s: &str) -> &str {
    s.lines().next().unwrap_or(s)
}

/// Runs the selected reports over the lake.
pub async fn run(loaded: &LoadedConfig, opts: &RunOptions) -> Result<RunSummary, AnalyzeError> {
    let started = Instant::now();
    let reports = selected(loaded, &opts.reports)?;
    check_runnable(loaded).await?;
    let cfg = &loaded.config;
    let root = opts.lake.clone().unwrap_or_else(|| cfg.lake.root.clone());
    if let Some(root) = &opts.lake {
        shared::lake::LakeRoot::parse(root)
            .map_err(|e| AnalyzeError::Usage(format!("--lake: {e}")))?;
    }
    let lake = Lake::open(&root, &cfg.lake.s3, cfg.lake.partition_time)?;
    let ctx = session();
    catalog::register_lake(&ctx, loaded, &lake, opts.include_open)
        .await
        .map_err(AnalyzeError::Catalog)?;

    let mut results = Vec::new();
    for plan in plans(loaded, &reports) {
        let report_err = |source| AnalyzeError::Report {
            report: plan.name.clone(),
            source,
        };
        tracing::debug!(report = %plan.name, sql = %plan.describe(), "planned");
        let df = plan.dataframe(&ctx).await.map_err(report_err)?;
        let schema = df.schema().inner().clone();
        let batches: Vec<RecordBatch> = df.collect().await.map_err(report_err)?;
        let rows = batches.iter().map(|b| b.num_rows()).sum();
        let data = output::encode(opts.format, &schema, &batches).map_err(|source| {
            AnalyzeError::Output {
                report: plan.name.clone(),
                source,
            }
        })?;
        let mut result = ReportResult {
            name: plan.name.clone(),
            rows,
            path: None,
            printed: None,
        };
        match &opts.out {
            Some(dir) => {
                let file = format!("{}.{}", plan.name, opts.format.extension());
                let path = output::write_atomically(dir, &file, &data).map_err(|source| {
                    AnalyzeError::Output {
                        report: plan.name.clone(),
                        source,
                    }
                })?;
                result.path = Some(path);
            }
            None => result.printed = Some(data),
        }
        results.push(result);
    }
    Ok(RunSummary {
        reports: results,
        seconds: started.elapsed().as_secs_f64(),
    })
}
