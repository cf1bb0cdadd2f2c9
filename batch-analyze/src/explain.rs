//! `--explain`: what a run would read and compute, and why, without running it. It takes
//! the same snapshot and works out the same due days ([`crate::due`]) as a run, then prints
//! them: per table, the days and partitions it would read (and those it would skip); per
//! report, its days with their reasons, its lake output and its SQL.

use std::fmt::Write as _;

use shared::config::{LoadedConfig, ReportConfig};

use crate::catalog::{self, LakeSnapshot, PartitionFiles, TableListing};
use crate::due::{self, Work};
use crate::error::AnalyzeError;
use crate::plan::ReportPlan;
use crate::prepare::{RunOptions, prepare};

/// The `--explain` text of a run with `opts`.
pub async fn explain(loaded: &LoadedConfig, opts: &RunOptions) -> Result<String, AnalyzeError> {
    let prep = prepare(loaded, opts).await?;
    let snapshot = catalog::snapshot(loaded, &prep.lake, &opts.range, opts.as_of.as_ref()).await?;
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
        table(&mut s, &snapshot, t, opts.include_open);
    }
    for i in 0..prep.reports.len() {
        let w = due::work(&prep, i, &snapshot, opts).await?;
        report(&mut s, prep.reports[i], &prep.plans[i], &w);
    }
    Ok(s)
}

/// A table: its days in the lake and in the selection, then each selected day.
fn table(s: &mut String, snapshot: &LakeSnapshot, t: &TableListing, include_open: bool) {
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
        table_day(s, t, day, parts, include_open);
    }
}

/// A selected day of a table: its partitions, committed and open, and what a run reads.
fn table_day(
    s: &mut String,
    t: &TableListing,
    day: &str,
    parts: &[PartitionFiles],
    include_open: bool,
) {
    let committed = parts.iter().filter(|p| p.committed).count();
    let read: Vec<_> = t.readable(day, include_open).collect();
    let files: usize = read.iter().map(|p| p.files.len()).sum();
    let bytes: u64 = read.iter().flat_map(|p| &p.files).map(|f| f.size).sum();
    let rows: u64 = read.iter().filter_map(|p| p.rows).sum();
    let _ = writeln!(
        s,
        "  dt={day}: {} partition{}, {committed} committed, {} open{} → read {} partition{}, {files} file{}, {bytes} bytes{}",
        parts.len(),
        if parts.len() == 1 { "" } else { "s" },
        parts.len() - committed,
        if parts.len() > committed && !include_open && !t.table.is_late {
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

/// A report: the tables it reads, its days and why each is computed or skipped, its lake
/// output, its SQL.
fn report(s: &mut String, r: &ReportConfig, plan: &ReportPlan, w: &Work) {
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
