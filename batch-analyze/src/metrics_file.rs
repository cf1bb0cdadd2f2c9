//! `run --metrics-file PATH`: a run's figures for Prometheus, in the text format that
//! node_exporter's textfile collector reads (`--collector.textfile.directory`).
//!
//! ```text
//! # HELP batch_analyze_rows_written_total Rows of report output written by successful runs.
//! # TYPE batch_analyze_rows_written_total counter
//! batch_analyze_rows_written_total{pipeline="access-log",report="top_paths"} 40
//! …
//! batch_analyze_last_run_exit_status{pipeline="access-log"} 0
//! batch_analyze_last_success_timestamp_seconds{pipeline="access-log"} 1731999600.123
//! ```
//!
//! The counts are counters: each successful run adds its figures to those of the previous
//! file, which is read back first ([`Metrics::parse`]), so `increase(…[1d])` works across
//! runs. A failed run adds nothing and leaves `last_success_timestamp_seconds` as it was; it
//! only sets the `last_run_*` gauges (exit status, time, duration). The file is replaced
//! atomically (a hidden temporary file in the same directory, then a rename), so the
//! collector never reads half of it, and a run that cannot write it leaves the old one.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::time::Instant;

use crate::error::EXIT_NOTHING_TO_DO;
use crate::output::{self, OutputError};
use crate::summary::RunSummary;

/// What successful runs added up for one report.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct ReportTotals {
    pub rows_written: u64,
    pub partitions_replaced: u64,
    pub partitions_unchanged: u64,
}

/// The content of a metrics file, for one pipeline.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Metrics {
    pub pipeline: String,
    /// Days computed, added up over successful runs.
    pub days_computed: u64,
    /// Per report, added up over successful runs.
    pub reports: BTreeMap<String, ReportTotals>,
    /// Unix time (s) of the end of the last successful run; 0 when there was none.
    pub last_success_timestamp: f64,
    /// Unix time (s) of the end of the last run, successful or not.
    pub last_run_timestamp: f64,
    pub last_run_duration: f64,
    /// The exit status of the last run (0, 1, 2, 3, 4: see `batch-analyze --help`).
    pub last_run_exit_status: u8,
}

const DAYS: &str = "batch_analyze_days_computed_total";
const ROWS: &str = "batch_analyze_rows_written_total";
const REPLACED: &str = "batch_analyze_lake_partitions_replaced_total";
const UNCHANGED: &str = "batch_analyze_lake_partitions_unchanged_total";
const DURATION: &str = "batch_analyze_last_run_duration_seconds";
const EXIT: &str = "batch_analyze_last_run_exit_status";
const LAST_RUN: &str = "batch_analyze_last_run_timestamp_seconds";
const LAST_SUCCESS: &str = "batch_analyze_last_success_timestamp_seconds";

/// Every metric: name, type, help.
pub const FAMILIES: [(&str, &str, &str); 8] = [
    (
        DAYS,
        "counter",
        "Days computed by successful runs (a run that computes 3 days adds 3).",
    ),
    (
        ROWS,
        "counter",
        "Rows of report output written by successful runs, per report.",
    ),
    (
        REPLACED,
        "counter",
        "Partitions of the report's lake table replaced (or created) by successful runs.",
    ),
    (
        UNCHANGED,
        "counter",
        "Partitions of the report's lake table that successful runs found already up to date.",
    ),
    (
        DURATION,
        "gauge",
        "Duration of the last run, successful or not, in seconds.",
    ),
    (
        EXIT,
        "gauge",
        "Exit status of the last run: 0 done, 1 failure, 2 invalid configuration or arguments, 3 locked by another run, 4 nothing to do.",
    ),
    (
        LAST_RUN,
        "gauge",
        "Unix time of the end of the last run, successful or not.",
    ),
    (
        LAST_SUCCESS,
        "gauge",
        "Unix time of the end of the last successful run (exit status 0 or 4); 0 if none.",
    ),
];

/// Exit statuses that count as a success: done, or nothing to do.
pub fn is_success(exit_status: u8) -> bool {
    exit_status == 0 || exit_status == EXIT_NOTHING_TO_DO
}

/// One sample line: `name{label="value",…} value`.
#[derive(Debug, Clone, PartialEq)]
pub struct Sample {
    pub name: String,
    pub labels: Vec<(String, String)>,
    pub value: f64,
}

impl Sample {
    fn label(&self, name: &str) -> Option<&str> {
        self.labels
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }
}

/// Parses a sample line of the text format (an optional timestamp after the value is
/// ignored); `None` for anything else.
pub fn parse_sample(line: &str) -> Option<Sample> {
    let line = line.trim();
    let name_end = line
        .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_' || c == ':'))
        .unwrap_or(line.len());
    let name = &line[..name_end];
    if name.is_empty() || name.starts_with(|c: char| c.is_ascii_digit()) {
        return None;
    }
    let (labels, rest) = match line[name_end..].strip_prefix('{') {
        Some(after) => parse_labels(after)?,
        None => (Vec::new(), &line[name_end..]),
    };
    let mut fields = rest.split_whitespace();
    let value: f64 = fields.next()?.parse().ok()?;
    if let Some(ts) = fields.next() {
        ts.parse::<i64>().ok()?;
    }
    if fields.next().is_some() {
        return None;
    }
    Some(Sample {
        name: name.to_string(),
        labels,
        value,
    })
}

/// The labels after a sample's `{`, and what follows its `}`.
fn parse_labels(after: &str) -> Option<(Vec<(String, String)>, &str)> {
    let mut labels = Vec::new();
    let mut chars = after.char_indices().peekable();
    loop {
        // Skip separators; `}` ends the set.
        while let Some(&(_, c)) = chars.peek() {
            if c == ',' || c == ' ' {
                chars.next();
            } else {
                break;
            }
        }
        let (start, c) = chars.next()?;
        if c == '}' {
            return Some((labels, &after[start + 1..]));
        }
        let mut key = String::from(c);
        loop {
            let (_, c) = chars.next()?;
            if c == '=' {
                break;
            }
            key.push(c);
        }
        if chars.next()?.1 != '"' {
            return None;
        }
        labels.push((key.trim().to_string(), quoted_value(&mut chars)?));
    }
}

/// A label value after its opening quote, unescaped, through its closing quote.
fn quoted_value(chars: &mut impl Iterator<Item = (usize, char)>) -> Option<String> {
    let mut value = String::new();
    loop {
        match chars.next()?.1 {
            '"' => return Some(value),
            '\\' => match chars.next()?.1 {
                'n' => value.push('\n'),
                c => value.push(c),
            },
            c => value.push(c),
        }
    }
}

/// A label value as the text format writes it.
fn escape_label(v: &str) -> String {
    v.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

/// A count read back from a file: a non-negative whole number.
fn count(v: f64) -> u64 {
    if v.is_finite() && v >= 0.0 {
        v as u64
    } else {
        0
    }
}

impl Metrics {
    pub fn new(pipeline: &str) -> Metrics {
        Metrics {
            pipeline: pipeline.to_string(),
            ..Metrics::default()
        }
    }

    /// Reads back a file this module wrote: the samples of `pipeline` (of the first
    /// pipeline in the file when `None`). Lines that do not parse are skipped.
    pub fn parse(text: &str, pipeline: Option<&str>) -> Option<Metrics> {
        let samples: Vec<Sample> = text
            .lines()
            .filter(|l| !l.trim_start().starts_with('#') && !l.trim().is_empty())
            .filter_map(parse_sample)
            .collect();
        let pipeline = match pipeline {
            Some(p) => p.to_string(),
            None => samples
                .iter()
                .find_map(|s| s.label("pipeline"))?
                .to_string(),
        };
        let mut m = Metrics::new(&pipeline);
        let mut found = false;
        for s in samples
            .iter()
            .filter(|s| s.label("pipeline") == Some(&pipeline))
        {
            found = true;
            let report = s.label("report").map(str::to_string);
            let mut totals = |f: fn(&mut ReportTotals) -> &mut u64| {
                if let Some(r) = &report {
                    *f(m.reports.entry(r.clone()).or_default()) = count(s.value);
                }
            };
            match s.name.as_str() {
                ROWS => totals(|t| &mut t.rows_written),
                REPLACED => totals(|t| &mut t.partitions_replaced),
                UNCHANGED => totals(|t| &mut t.partitions_unchanged),
                DAYS => m.days_computed = count(s.value),
                DURATION => m.last_run_duration = s.value,
                EXIT => m.last_run_exit_status = count(s.value).min(255) as u8,
                LAST_RUN => m.last_run_timestamp = s.value,
                LAST_SUCCESS => m.last_success_timestamp = s.value,
                _ => {}
            }
        }
        found.then_some(m)
    }

    /// Adds a successful run's (or, under `--follow-commits`, a day's) figures.
    pub fn add(&mut self, summary: &RunSummary) {
        self.days_computed += summary.days.len() as u64;
        for r in &summary.reports {
            let t = self.reports.entry(r.name.clone()).or_default();
            t.rows_written += r.rows as u64;
            if let Some((_, w)) = &r.lake {
                t.partitions_replaced += w.replaced as u64;
                t.partitions_unchanged += w.unchanged as u64;
            }
        }
    }

    /// Records the end of a run: the `last_run_*` gauges, and the success time if it
    /// succeeded.
    pub fn finish_run(&mut self, exit_status: u8, now: f64, duration: f64) {
        self.last_run_exit_status = exit_status;
        self.last_run_timestamp = now;
        self.last_run_duration = duration;
        if is_success(exit_status) {
            self.last_success_timestamp = now;
        }
    }

    /// The file's text: every family with its `# HELP` and `# TYPE`, then its samples.
    pub fn render(&self) -> String {
        let pipeline = format!("pipeline=\"{}\"", escape_label(&self.pipeline));
        let mut out = String::new();
        for (name, kind, help) in FAMILIES {
            let _ = writeln!(out, "# HELP {name} {help}");
            let _ = writeln!(out, "# TYPE {name} {kind}");
            let per_report = |f: fn(&ReportTotals) -> u64, out: &mut String| {
                for (report, t) in &self.reports {
                    let _ = writeln!(
                        out,
                        "{name}{{{pipeline},report=\"{}\"}} {}",
                        escape_label(report),
                        f(t)
                    );
                }
            };
            match name {
                DAYS => {
                    let _ = writeln!(out, "{name}{{{pipeline}}} {}", self.days_computed);
                }
                ROWS => per_report(|t| t.rows_written, &mut out),
                REPLACED => per_report(|t| t.partitions_replaced, &mut out),
                UNCHANGED => per_report(|t| t.partitions_unchanged, &mut out),
                DURATION => {
                    let _ = writeln!(out, "{name}{{{pipeline}}} {}", self.last_run_duration);
                }
                EXIT => {
                    let _ = writeln!(out, "{name}{{{pipeline}}} {}", self.last_run_exit_status);
                }
                LAST_RUN => {
                    let _ = writeln!(out, "{name}{{{pipeline}}} {}", self.last_run_timestamp);
                }
                _ => {
                    let _ = writeln!(out, "{name}{{{pipeline}}} {}", self.last_success_timestamp);
                }
            }
        }
        out
    }
}

/// The metrics file of one run: read back when the run knows its pipeline, added to after
/// each success, written when the run ends (and, under `--follow-commits`, after each day).
pub struct MetricsFile {
    path: PathBuf,
    started: Instant,
    /// The pipeline name to use if the pipeline file does not load and there is no previous
    /// file to take it from.
    fallback_pipeline: String,
    metrics: Option<Metrics>,
}

impl MetricsFile {
    /// Checks that the file's directory exists (the collector's directory: a typo there
    /// would go unnoticed).
    pub fn new(
        path: PathBuf,
        fallback_pipeline: &str,
        started: Instant,
    ) -> Result<MetricsFile, String> {
        let dir = match path.parent() {
            Some(d) if !d.as_os_str().is_empty() => d,
            _ => Path::new("."),
        };
        if path.file_name().is_none() || !dir.is_dir() {
            return Err(format!(
                "--metrics-file {}: no such directory {}",
                path.display(),
                dir.display()
            ));
        }
        Ok(MetricsFile {
            path,
            started,
            fallback_pipeline: fallback_pipeline.to_string(),
            metrics: None,
        })
    }

    /// The previous file's figures for `pipeline` (any pipeline when `None`).
    fn previous(&self, pipeline: Option<&str>) -> Option<Metrics> {
        match std::fs::read_to_string(&self.path) {
            Ok(text) => {
                let m = Metrics::parse(&text, pipeline);
                if m.is_none() && !text.trim().is_empty() {
                    tracing::warn!(
                        file = %self.path.display(),
                        "the previous metrics file holds no figures of this pipeline; counting from 0"
                    );
                }
                m
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
            Err(e) => {
                tracing::warn!(file = %self.path.display(), error = %e, "cannot read the previous metrics file; counting from 0");
                None
            }
        }
    }

    /// The run knows its pipeline: carry over the previous file's figures.
    pub fn start(&mut self, pipeline: &str) {
        let m = self
            .previous(Some(pipeline))
            .unwrap_or_else(|| Metrics::new(pipeline));
        self.metrics = Some(m);
    }

    /// Adds a success's figures (a run, or a day under `--follow-commits`).
    pub fn add(&mut self, summary: &RunSummary) {
        if let Some(m) = &mut self.metrics {
            m.add(summary);
        }
    }

    /// Writes the file for a run that ended (or, under `--follow-commits`, is going on)
    /// with `exit_status`.
    pub fn write(&mut self, exit_status: u8) -> Result<PathBuf, OutputError> {
        if self.metrics.is_none() {
            // The pipeline file did not load: keep the previous file's pipeline.
            let m = self
                .previous(None)
                .unwrap_or_else(|| Metrics::new(&self.fallback_pipeline));
            self.metrics = Some(m);
        }
        let m = self.metrics.as_mut().expect("set above");
        let now = chrono::Utc::now().timestamp_millis() as f64 / 1000.0;
        m.finish_run(exit_status, now, self.started.elapsed().as_secs_f64());
        let dir = match self.path.parent() {
            Some(d) if !d.as_os_str().is_empty() => d,
            _ => Path::new("."),
        };
        let name = self
            .path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        output::write_atomically(dir, &name, m.render().as_bytes())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample_metrics() -> Metrics {
        let mut m = Metrics::new("access-log");
        m.days_computed = 4;
        m.reports.insert(
            "top_paths".into(),
            ReportTotals {
                rows_written: 40,
                partitions_replaced: 4,
                partitions_unchanged: 0,
            },
        );
        m.reports.insert(
            "odd \"name\" \\ here".into(),
            ReportTotals {
                rows_written: 7,
                ..ReportTotals::default()
            },
        );
        m.finish_run(0, 1_731_999_600.125, 0.25);
        m
    }

    /// Every line is a `# HELP`/`# TYPE` comment or a sample of the family declared last,
    /// and the samples read back to the same figures.
    #[test]
    fn output_is_prometheus_text_and_reads_back() {
        let m = sample_metrics();
        let text = m.render();
        assert!(text.ends_with('\n'));
        let mut family = "";
        let mut samples = 0;
        for line in text.lines() {
            if let Some(rest) = line.strip_prefix("# HELP ") {
                let (name, help) = rest.split_once(' ').unwrap();
                assert!(
                    name.starts_with("batch_analyze_") && !help.is_empty(),
                    "{line}"
                );
                family = name;
            } else if let Some(rest) = line.strip_prefix("# TYPE ") {
                let (name, kind) = rest.split_once(' ').unwrap();
                assert_eq!(name, family, "{line}");
                assert!(kind == "counter" || kind == "gauge", "{line}");
                assert_eq!(kind == "counter", name.ends_with("_total"), "{line}");
            } else {
                let s = parse_sample(line).unwrap_or_else(|| panic!("not a sample: {line}"));
                assert_eq!(s.name, family, "{line}");
                assert_eq!(s.label("pipeline"), Some("access-log"), "{line}");
                samples += 1;
            }
        }
        // 1 + 3 × 2 reports + 4 gauges.
        assert_eq!(samples, 11);
        assert!(text.contains(
            "batch_analyze_last_success_timestamp_seconds{pipeline=\"access-log\"} 1731999600.125\n"
        ));
        assert!(text.contains(
            "batch_analyze_rows_written_total{pipeline=\"access-log\",report=\"odd \\\"name\\\" \\\\ here\"} 7\n"
        ));
        assert_eq!(Metrics::parse(&text, Some("access-log")), Some(m.clone()));
        assert_eq!(Metrics::parse(&text, None), Some(m));
        assert_eq!(Metrics::parse(&text, Some("other")), None);
    }

    #[test]
    fn a_failure_keeps_the_success_figures() {
        let mut m = sample_metrics();
        let before = m.clone();
        m.finish_run(3, 1_731_999_700.0, 10.0);
        assert_eq!(m.last_success_timestamp, before.last_success_timestamp);
        assert_eq!(m.reports, before.reports);
        assert_eq!(m.last_run_exit_status, 3);
        assert_eq!(m.last_run_timestamp, 1_731_999_700.0);
        m.finish_run(4, 1_731_999_800.0, 1.0);
        assert_eq!(m.last_success_timestamp, 1_731_999_800.0);
    }

    #[test]
    fn samples_parse_like_the_text_format() {
        let s = parse_sample(r#"a_b:c{x="1", y="q\"\\\n"} 2.5 1700000000000"#).unwrap();
        assert_eq!(s.name, "a_b:c");
        assert_eq!(
            s.labels,
            vec![("x".into(), "1".into()), ("y".into(), "q\"\\\n".into())]
        );
        assert_eq!(s.value, 2.5);
        assert_eq!(parse_sample("up 1").unwrap().labels, vec![]);
        for bad in ["", "1abc 2", "x{a=\"1\" 2", "x{a=1} 2", "x 2 3 4", "x two"] {
            assert_eq!(parse_sample(bad), None, "{bad}");
        }
        // A damaged file keeps what still reads.
        let text = "garbage\nbatch_analyze_days_computed_total{pipeline=\"p\"} 9\nbatch_analyze_last_success_timestamp_seconds{pipeline=\"p\"";
        let m = Metrics::parse(text, Some("p")).unwrap();
        assert_eq!(m.days_computed, 9);
        assert_eq!(m.last_success_timestamp, 0.0);
    }

    #[test]
    fn the_file_is_replaced_whole() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("batch.prom");
        let mut f = MetricsFile::new(path.clone(), "p", Instant::now()).unwrap();
        f.start("p");
        f.write(0).unwrap();
        let first = Metrics::parse(&std::fs::read_to_string(&path).unwrap(), None).unwrap();
        assert!(first.last_success_timestamp > 0.0);
        // A later run that fails before its pipeline is known keeps the pipeline and the
        // success time.
        let mut g = MetricsFile::new(path.clone(), "fallback", Instant::now()).unwrap();
        g.write(2).unwrap();
        let second = Metrics::parse(&std::fs::read_to_string(&path).unwrap(), None).unwrap();
        assert_eq!(second.pipeline, "p");
        assert_eq!(second.last_run_exit_status, 2);
        assert_eq!(second.last_success_timestamp, first.last_success_timestamp);
        let names: Vec<_> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names, vec![std::ffi::OsString::from("batch.prom")]);
        assert!(MetricsFile::new(dir.path().join("nope/x.prom"), "p", Instant::now()).is_err());
    }
}
