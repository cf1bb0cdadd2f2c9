//! `batch-analyze`: the batch stage of a pipeline.
//!
//! A run locks its reports ([`lock`]), takes a snapshot of the selected days of the lake
//! ([`dates`], [`catalog`]: committed partitions only, exactly the files their markers name),
//! works out which days each report must compute ([`state`]: all selected days, or with
//! `--incremental` only those whose input changed since the last run), turns each report
//! into a query ([`plan`]; sketch columns are merged by the functions of [`sketch`]) over
//! those days, runs it, and writes the result: printed or to files ([`output`], [`html`])
//! and, when the report asks for it, into the lake with dynamic partition overwrite
//! ([`lake_output`]). The state is written last. `--follow-commits`
//! ([`follow`]) does the same per day as the stream stage commits it. Start reading at [`run`].
//!
//! `main.rs` only parses the command line ([`cli`]) and maps errors to exit codes.

pub mod catalog;
pub mod cli;
pub mod cluster;
pub mod dates;
pub mod follow;
pub mod html;
pub mod lake_output;
pub mod lock;
pub mod metrics_file;
pub mod output;
pub mod plan;
pub mod sketch;
pub mod small_files;
pub mod state;

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use arrow::array::RecordBatch;
use arrow::datatypes::{Schema, SchemaRef};
use datafusion::error::DataFusionError;
use datafusion::prelude::{SessionConfig, SessionContext};
use shared::commit::FileCommitter;
use shared::config::{ConfigError, LoadedConfig, ReportConfig};
use shared::lake::{Lake, LakeError};

use crate::catalog::{LakeSnapshot, SnapshotError};
use crate::dates::DayRange;
use crate::lake_output::{LakeOutputError, Written};
use crate::lock::LockError;
use crate::output::{OutputError, OutputFormat};
use crate::plan::ReportPlan;
use crate::small_files::LakeFileError;
use crate::state::{ReportState, StateError};

/// The tool's name in the lake's `_state/` folder.
pub const TOOL: &str = "batch-analyze";

/// Fault injection for the crash and lock tests: `BATCH_ANALYZE_CRASH_AT=<point>[:<n>]`
/// aborts at the `n`-th pass, `BATCH_ANALYZE_SLOW_AT=<point>:<duration>` sleeps there. Points:
/// `after-lock`, `after-stage` (a report partition's new file staged), `after-partition` (a
/// report partition replaced), `before-state` (outputs written, state not yet).
pub(crate) fn fault(point: &str) {
    shared::fault::point("BATCH_ANALYZE_CRASH_AT", point);
    if let Ok(spec) = std::env::var("BATCH_ANALYZE_SLOW_AT")
        && let Some((p, d)) = spec.split_once(':')
        && p == point
        && let Ok(d) = d.parse::<shared::HumanDuration>()
    {
        std::thread::sleep(d.0);
    }
}

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
    /// A lake file that does not read back, named as the user writes the lake.
    #[error("report `{report}`: {source}")]
    LakeFile {
        report: String,
        #[source]
        source: LakeFileError,
    },
    #[error("registering tables: {0}")]
    Catalog(DataFusionError),
    /// The cluster (`--cluster`) cannot be reached or refused the session.
    #[error("cluster {0}")]
    Cluster(String),
    /// A query ran longer than `--query-timeout`; nothing of its report was written.
    #[error(
        "report `{report}`: no result after {limit} on the {engine} engine (--query-timeout); nothing of it was written"
    )]
    QueryTimeout {
        report: String,
        limit: shared::HumanDuration,
        engine: String,
    },
    #[error("report `{report}`: {source}")]
    Output {
        report: String,
        #[source]
        source: OutputError,
    },
    #[error("report `{report}`: writing to the lake: {source}")]
    LakeOutput {
        report: String,
        #[source]
        source: Box<LakeOutputError>,
    },
    #[error(transparent)]
    Locked(#[from] LockError),
    #[error(transparent)]
    Snapshot(#[from] SnapshotError),
    #[error(transparent)]
    State(#[from] StateError),
    #[error("reading commit events: {0}")]
    Follow(String),
}

impl AnalyzeError {
    /// A report's query failed: [`AnalyzeError::LakeFile`] when a lake file did not read
    /// back (the error names it), else [`AnalyzeError::Report`].
    pub fn report(report: &str, source: DataFusionError) -> AnalyzeError {
        match LakeFileError::find(&source) {
            Some(e) => AnalyzeError::LakeFile {
                report: report.to_string(),
                source: e.clone(),
            },
            None => AnalyzeError::Report {
                report: report.to_string(),
                source,
            },
        }
    }

    /// 2 for a bad configuration or arguments, 3 when another run holds a lock, 1 for
    /// anything else.
    pub fn exit_code(&self) -> u8 {
        match self {
            AnalyzeError::Config(_)
            | AnalyzeError::Usage(_)
            | AnalyzeError::Lake(LakeError::InvalidRoot { .. }) => 2,
            AnalyzeError::Locked(LockError::Busy { .. }) => 3,
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
    /// The days to read.
    pub range: DayRange,
    /// Compute only the days whose input changed since the last run.
    pub incremental: bool,
    /// Wait this long for another run's lock (default: give up at once).
    pub wait: Option<Duration>,
    /// Show progress on standard error (a terminal).
    pub progress: bool,
    /// Where the queries run: the embedded DataFusion, or a Ballista cluster.
    pub engine: cluster::Engine,
    /// Give up on a report whose query runs longer (exit 1, nothing of it written).
    pub query_timeout: Option<Duration>,
}

/// One report's result.
#[derive(Debug)]
pub struct ReportResult {
    pub name: String,
    pub rows: usize,
    /// The days it computed (days with input in the selection).
    pub days: Vec<String>,
    /// Nothing was due (`--incremental`): the report did not run.
    pub skipped: bool,
    /// Where it was written (with `--out`).
    pub path: Option<PathBuf>,
    /// The encoded report (without `--out`).
    pub printed: Option<Vec<u8>>,
    /// Its lake table and what the write did.
    pub lake: Option<(String, Written)>,
    pub schema: SchemaRef,
    pub batches: Vec<RecordBatch>,
}

/// What a run did.
#[derive(Debug, Default)]
pub struct RunSummary {
    pub reports: Vec<ReportResult>,
    /// Every day some report computed.
    pub days: BTreeSet<String>,
    /// The HTML page (`--format html`): its path with `--out`, else its bytes.
    pub page_path: Option<PathBuf>,
    pub page: Option<Vec<u8>>,
    pub seconds: f64,
}

impl RunSummary {
    /// No report had anything to compute.
    pub fn nothing_to_do(&self) -> bool {
        self.reports.iter().all(|r| r.skipped || r.days.is_empty())
    }

    /// `3 reports, 2 days, 4,321 rows, 0.21 s` and where things went.
    pub fn line(&self) -> String {
        let ran: Vec<&ReportResult> = self.reports.iter().filter(|r| !r.skipped).collect();
        let mut parts: Vec<String> = Vec::new();
        for r in &ran {
            let mut p = format!("{} ({} rows", r.name, r.rows);
            if let Some((table, w)) = &r.lake {
                let _ = std::fmt::Write::write_fmt(
                    &mut p,
                    format_args!(
                        "; lake {table}: {} partition{} replaced, {} unchanged",
                        w.replaced,
                        if w.replaced == 1 { "" } else { "s" },
                        w.unchanged
                    ),
                );
            }
            p.push(')');
            if let Some(path) = &r.path {
                p.push_str(&format!(" → {}", path.display()));
            }
            parts.push(p);
        }
        let skipped = self.reports.len() - ran.len();
        if skipped > 0 {
            parts.push(format!(
                "{skipped} report{} up to date",
                if skipped == 1 { "" } else { "s" }
            ));
        }
        if let Some(p) = &self.page_path {
            parts.push(format!("page → {}", p.display()));
        }
        format!(
            "{} day{}: {} in {:.2} s",
            self.days.len(),
            if self.days.len() == 1 { "" } else { "s" },
            parts.join(", "),
            self.seconds
        )
    }
}

/// The options every report session has, embedded or on a cluster: no information schema
/// (reports read only the lake's tables).
fn our_options(config: SessionConfig) -> SessionConfig {
    config.with_information_schema(false)
}

/// A session for reports: the lake's sketch functions ([`sketch`]) are registered in it.
fn session() -> SessionContext {
    let ctx = SessionContext::new_with_config(our_options(SessionConfig::new()));
    sketch::register(&ctx);
    ctx
}

/// A session whose queries run on `engine`.
async fn session_on(
    engine: &cluster::Engine,
    s3: &shared::config::S3Config,
) -> Result<SessionContext, AnalyzeError> {
    if engine.is_embedded() {
        return Ok(session());
    }
    cluster::session(engine, s3)
        .await
        .map_err(|e| AnalyzeError::Cluster(format!("{engine}: {}", first_line(&e.to_string()))))
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
            let input = match r.from.as_deref() {
                Some(from) => match tables.iter().find(|t| t.name == from) {
                    Some(t) => shared::schema::read_schema(&t.file_schema, &t.partition_columns),
                    None => loaded.config.dimension(from).map_or_else(
                        || Arc::new(Schema::empty()),
                        shared::config::validate::dimension_schema,
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
        let df = match plan.dataframe(&ctx).await {
            Ok(df) => df,
            Err(e) => {
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
                continue;
            }
        };
        // Columns that the lake output and the chart name must be in the result.
        let schema = df.schema().inner().clone();
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
        let r = reports[i];
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
    if problems.is_empty() {
        Ok(())
    } else {
        Err(loaded.invalid(problems).into())
    }
}

fn first_line(s: &str) -> &str {
    s.lines().next().unwrap_or(s)
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

impl Prepared<'_> {
    /// Locks the selected reports (see [`lock`]).
    pub async fn lock(&self, wait: Option<Duration>) -> Result<lock::Locks, AnalyzeError> {
        let names: Vec<String> = self.reports.iter().map(|r| r.name.clone()).collect();
        let locks = lock::acquire(&self.lake, &self.loaded.config.name, &names, wait).await?;
        fault("after-lock");
        Ok(locks)
    }
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

/// Runs the selected reports over the selected days of the lake.
pub async fn run(loaded: &LoadedConfig, opts: &RunOptions) -> Result<RunSummary, AnalyzeError> {
    let started = Instant::now();
    let prep = prepare_to_run(loaded, opts).await?;
    let locks = prep.lock(opts.wait).await?;
    let result = compute(&prep, opts, &opts.range).await;
    locks.release().await;
    let mut summary = result?;
    summary.seconds = started.elapsed().as_secs_f64();
    Ok(summary)
}

/// The lake tables a report reads: its `from`, or the lake tables its SQL names.
fn report_inputs(r: &ReportConfig, snapshot: &LakeSnapshot) -> Vec<String> {
    let names = snapshot.tables.iter().map(|t| t.table.name.clone());
    match (&r.from, &r.sql) {
        (Some(from), _) => names.filter(|n| n == from).collect(),
        (None, Some(sql)) => names.filter(|n| mentions(sql, n)).collect(),
        (None, None) => vec![],
    }
}

/// Whether `sql` holds the identifier `name` (case-insensitive, as a whole word).
fn mentions(sql: &str, name: &str) -> bool {
    let sql = sql.to_ascii_lowercase();
    let name = name.to_ascii_lowercase();
    let word = |c: Option<char>| c.is_some_and(|c| c.is_ascii_alphanumeric() || c == '_');
    sql.match_indices(&name).any(|(i, _)| {
        !word(sql[..i].chars().next_back()) && !word(sql[i + name.len()..].chars().next())
    })
}

/// Which days a report computes, and why.
pub struct Work {
    pub inputs: Vec<String>,
    /// Selected days with input, with their fingerprints.
    pub candidates: BTreeMap<String, String>,
    /// The days to compute.
    pub due: BTreeSet<String>,
    /// Why each candidate is (or is not) due.
    pub reasons: BTreeMap<String, &'static str>,
    /// Whether the report runs at all.
    pub runs: bool,
    pub state: Option<ReportState>,
    pub definition: String,
}

/// The report's definition: its query, its lake output and the dimension files it may join.
fn definition(prep: &Prepared<'_>, i: usize, include_open: bool) -> String {
    let mut text = format!(
        "{}\n{:?}\nopen={include_open}\n",
        prep.plans[i].describe(),
        prep.reports[i].lake
    );
    for d in &prep.loaded.config.dimensions {
        let bytes = std::fs::read(prep.loaded.resolve(&d.path)).unwrap_or_default();
        text.push_str(&format!(
            "{}:{:016x}\n",
            d.name,
            shared::commit::fnv1a64(&bytes)
        ));
    }
    format!("{:016x}", shared::commit::fnv1a64(text.as_bytes()))
}

async fn work(
    prep: &Prepared<'_>,
    i: usize,
    snapshot: &LakeSnapshot,
    opts: &RunOptions,
) -> Result<Work, AnalyzeError> {
    let r = prep.reports[i];
    let inputs = report_inputs(r, snapshot);
    let definition = definition(prep, i, opts.include_open);
    let state = state::load(&prep.lake, &prep.loaded.config.name, &r.name).await?;
    let mut candidates = BTreeMap::new();
    for day in snapshot.days(&inputs) {
        if inputs.is_empty() {
            break;
        }
        let mut text = definition.clone();
        for t in &inputs {
            if let Some(t) = snapshot.table(t) {
                text.push_str(&format!(
                    " {:016x}",
                    t.day_fingerprint(&day, opts.include_open)
                ));
            }
        }
        candidates.insert(
            day,
            format!("{:016x}", shared::commit::fnv1a64(text.as_bytes())),
        );
    }
    let mut reasons = BTreeMap::new();
    let mut due = BTreeSet::new();
    for (day, fp) in &candidates {
        let reason = match state.as_ref().and_then(|s| s.days.get(day)) {
            None => "new",
            Some(old) if old != fp => "changed",
            Some(_) => "unchanged",
        };
        if !opts.incremental || reason != "unchanged" {
            due.insert(day.clone());
        }
        reasons.insert(day.clone(), reason);
    }
    // A report over no lake table (a dimension) has no days: it runs unless incremental
    // and unchanged.
    let runs = if inputs.is_empty() {
        !opts.incremental || state.as_ref().is_none_or(|s| s.definition != definition)
    } else {
        !opts.incremental || !due.is_empty()
    };
    Ok(Work {
        inputs,
        candidates,
        due,
        reasons,
        runs,
        state,
        definition,
    })
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

/// Computes the selected reports over `range`, with the locks held.
pub async fn compute(
    prep: &Prepared<'_>,
    opts: &RunOptions,
    range: &DayRange,
) -> Result<RunSummary, AnalyzeError> {
    let started = Instant::now();
    let snapshot = catalog::snapshot(prep.loaded, &prep.lake, range).await?;
    let pipeline = prep.loaded.config.name.as_str();
    let mut summary = RunSummary::default();
    let n = prep.reports.len();
    for i in 0..n {
        let (r, plan) = (prep.reports[i], &prep.plans[i]);
        let work = work(prep, i, &snapshot, opts).await?;
        if opts.progress {
            eprint!(
                "\r\x1b[2K[{}/{n}] {}: {} day{}…",
                i + 1,
                r.name,
                work.due.len(),
                if work.due.len() == 1 { "" } else { "s" }
            );
        }
        let report_err = |source| AnalyzeError::report(&plan.name, source);
        let ctx = session_on(&opts.engine, &prep.loaded.config.lake.s3).await?;
        let days = (opts.incremental || !work.inputs.is_empty()).then_some(&work.due);
        catalog::register_snapshot(
            &ctx,
            prep.loaded,
            &prep.lake,
            &snapshot,
            days,
            opts.include_open,
            &opts.engine,
        )
        .await
        .map_err(AnalyzeError::Catalog)?;
        let df = plan.dataframe(&ctx).await.map_err(report_err)?;
        let schema = df.schema().inner().clone();
        if !work.runs {
            summary.reports.push(ReportResult {
                name: r.name.clone(),
                rows: 0,
                days: vec![],
                skipped: true,
                path: None,
                printed: None,
                lake: None,
                schema,
                batches: vec![],
            });
            continue;
        }
        tracing::debug!(report = %plan.name, sql = %plan.describe(), days = work.due.len(), "planned");
        let collected = match opts.query_timeout {
            Some(limit) => tokio::time::timeout(limit, df.collect())
                .await
                .map_err(|_| AnalyzeError::QueryTimeout {
                    report: plan.name.clone(),
                    limit: shared::HumanDuration(limit),
                    engine: opts.engine.to_string(),
                })?,
            None => df.collect().await,
        };
        let batches: Vec<RecordBatch> = match collected {
            Ok(b) => b,
            Err(source) => {
                let read = ReadSet {
                    snapshot: &snapshot,
                    tables: &work.inputs,
                    days,
                    include_open: opts.include_open,
                };
                return Err(query_failed(prep, &read, &plan.name, source).await);
            }
        };
        let rows = batches.iter().map(|b| b.num_rows()).sum();
        let mut result = ReportResult {
            name: r.name.clone(),
            rows,
            days: work.due.iter().cloned().collect(),
            skipped: false,
            path: None,
            printed: None,
            lake: None,
            schema: schema.clone(),
            batches,
        };
        if let Some(l) = &r.lake {
            let table = l.table_path(&r.name);
            let lake_err = |source| AnalyzeError::LakeOutput {
                report: r.name.clone(),
                source: Box::new(source),
            };
            lake_output::recover(&prep.committer, &table)
                .await
                .map_err(|e| lake_err(e.into()))?;
            let written = lake_output::write(
                &prep.committer,
                &table,
                &l.partition_by,
                &schema,
                &result.batches,
            )
            .await
            .map_err(lake_err)?;
            result.lake = Some((table, written));
        }
        if opts.format != OutputFormat::Html {
            let output_err = |source| AnalyzeError::Output {
                report: plan.name.clone(),
                source,
            };
            let data = output::encode(opts.format, &schema, &result.batches).map_err(output_err)?;
            match &opts.out {
                Some(dir) => {
                    let file = format!("{}.{}", plan.name, opts.format.extension());
                    result.path =
                        Some(output::write_atomically(dir, &file, &data).map_err(output_err)?);
                }
                None => result.printed = Some(data),
            }
        }
        fault("before-state");
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
        summary.days.extend(work.due.iter().cloned());
        summary.reports.push(result);
    }
    if opts.progress {
        eprint!("\r\x1b[2K");
    }
    if opts.format == OutputFormat::Html {
        let page = page(prep, &snapshot, &summary);
        match &opts.out {
            Some(dir) => {
                let file = format!("{pipeline}.html");
                summary.page_path = Some(
                    output::write_atomically(dir, &file, page.as_bytes()).map_err(|source| {
                        AnalyzeError::Output {
                            report: "(page)".into(),
                            source,
                        }
                    })?,
                );
            }
            None => summary.page = Some(page.into_bytes()),
        }
    }
    summary.seconds = started.elapsed().as_secs_f64();
    Ok(summary)
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
    let subtitle = format!(
        "{}lake {} · {days} (selected: {})",
        cfg.description
            .as_deref()
            .map(|d| format!("{d} · "))
            .unwrap_or_default(),
        prep.lake.display_root(),
        snapshot.range
    );
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

/// `--explain`: what a run would read and compute, and why, without running it.
pub async fn explain(loaded: &LoadedConfig, opts: &RunOptions) -> Result<String, AnalyzeError> {
    use std::fmt::Write as _;
    let prep = prepare(loaded, opts).await?;
    let snapshot = catalog::snapshot(loaded, &prep.lake, &opts.range).await?;
    let mut s = String::new();
    let _ = writeln!(
        s,
        "pipeline {} · lake {} · days: {}{}",
        loaded.config.name,
        prep.lake.display_root(),
        snapshot.range,
        if opts.incremental {
            " · incremental"
        } else {
            ""
        }
    );
    for t in &snapshot.tables {
        let skipped: Vec<&String> = t
            .days_in_lake
            .iter()
            .filter(|d| !snapshot.range.contains(d))
            .collect();
        let _ = writeln!(
            s,
            "\ntable {}: {} day{} in the lake, {} selected, {} not listed (outside the selection){}",
            t.table.name,
            t.days_in_lake.len(),
            if t.days_in_lake.len() == 1 { "" } else { "s" },
            t.days.len(),
            skipped.len(),
            if t.table.is_late {
                "; late events: no commit markers, every file is read"
            } else {
                ""
            }
        );
        for (day, parts) in &t.days {
            let committed = parts.iter().filter(|p| p.committed).count();
            let read: Vec<_> = t.readable(day, opts.include_open).collect();
            let files: usize = read.iter().map(|p| p.files.len()).sum();
            let bytes: u64 = read.iter().flat_map(|p| &p.files).map(|f| f.size).sum();
            let rows: u64 = read.iter().filter_map(|p| p.rows).sum();
            let _ = writeln!(
                s,
                "  dt={day}: {} partition{}, {committed} committed, {} open{} → read {} partition{}, {files} file{}, {bytes} bytes{}",
                parts.len(),
                if parts.len() == 1 { "" } else { "s" },
                parts.len() - committed,
                if parts.len() > committed && !opts.include_open && !t.table.is_late {
                    " (skipped: not committed; --include-open reads them)"
                } else {
                    ""
                },
                read.len(),
                if read.len() == 1 { "" } else { "s" },
                if files == 1 { "" } else { "s" },
                if rows > 0 {
                    format!(", {rows} rows")
                } else {
                    String::new()
                }
            );
        }
    }
    for i in 0..prep.reports.len() {
        let (r, plan) = (prep.reports[i], &prep.plans[i]);
        let w = work(&prep, i, &snapshot, opts).await?;
        let _ = writeln!(
            s,
            "\nreport {}: reads {}",
            r.name,
            if w.inputs.is_empty() {
                "no lake table".to_string()
            } else {
                w.inputs.join(", ")
            }
        );
        if !w.candidates.is_empty() {
            let list: Vec<String> = w
                .candidates
                .keys()
                .map(|d| {
                    let due = if w.due.contains(d) { "compute" } else { "skip" };
                    format!("{d} ({}: {due})", w.reasons[d])
                })
                .collect();
            let _ = writeln!(s, "  days: {}", list.join(", "));
        }
        if !w.runs {
            let _ = writeln!(s, "  nothing to do: every day is up to date");
        }
        if let Some(l) = &r.lake {
            let _ = writeln!(
                s,
                "  writes: lake {}/ partitioned by [{}], replacing the partitions it computes",
                l.table_path(&r.name),
                l.partition_by.join(", ")
            );
        }
        for line in plan.describe().lines() {
            let _ = writeln!(s, "  {line}");
        }
    }
    Ok(s)
}
