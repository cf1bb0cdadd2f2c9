//! What a run did: each report's result (its rows, where they went) and the one-line
//! summary a terminal or `-v` shows. The CLI prints from it, `--metrics-file` counts from it
//! ([`crate::metrics_file`]), `--follow-commits` gets one per day.

use std::collections::BTreeSet;
use std::path::PathBuf;

use arrow::array::RecordBatch;
use arrow::datatypes::SchemaRef;

use crate::as_of::VersionsRead;
use crate::lake_output::ReportWrite;

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
    pub lake: Option<(String, ReportWrite)>,
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
    /// The version read of each Delta table (empty for a Hive lake).
    pub versions: Vec<(String, i64)>,
    /// The versions were asked for (`--as-of`): no lake output or state was written.
    pub as_of: bool,
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
        let mut line = format!(
            "{} day{}: {} in {:.2} s",
            self.days.len(),
            if self.days.len() == 1 { "" } else { "s" },
            parts.join(", "),
            self.seconds
        );
        if !self.versions.is_empty() {
            let versions = VersionsRead(&self.versions);
            line.push_str(&format!("; tables read: --as-of {versions}"));
        }
        if self.as_of {
            line.push_str(" (a run of the past: no lake output or state written)");
        }
        line
    }
}
