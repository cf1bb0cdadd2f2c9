//! Which days a report computes, and why: its due days.
//!
//! A report reads some lake tables ([`report_inputs`]); each selected day with input gets a
//! fingerprint of the report's definition and of the files it would read that day. Without
//! `--incremental` every such day is due; with it, only the days whose fingerprint differs
//! from the one in the report's state ([`crate::state`]). `--explain` prints the same
//! reasons ([`crate::explain`]).

use std::collections::{BTreeMap, BTreeSet};

use shared::config::ReportConfig;

use crate::catalog::LakeSnapshot;
use crate::error::AnalyzeError;
use crate::prepare::{Prepared, RunOptions};
use crate::state::{self, ReportState};

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

impl Work {
    /// The days whose files the query reads: the due days, or `None` (every selected day)
    /// for a report over no lake table without `--incremental`.
    pub fn days_to_read(&self, incremental: bool) -> Option<&BTreeSet<String>> {
        (incremental || !self.inputs.is_empty()).then_some(&self.due)
    }
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
            shared::hash::fnv1a64(&bytes)
        ));
    }
    format!("{:016x}", shared::hash::fnv1a64(text.as_bytes()))
}

/// The days report `i` computes over `snapshot`, and why.
pub async fn work(
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
            format!("{:016x}", shared::hash::fnv1a64(text.as_bytes())),
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_table_is_mentioned_as_a_whole_word_in_any_case() {
        assert!(mentions("SELECT * FROM Hosts_1m WHERE x", "hosts_1m"));
        assert!(mentions("select * from \"hosts_1m\"", "hosts_1m"));
        assert!(!mentions("SELECT * FROM hosts_1m_daily", "hosts_1m"));
        assert!(!mentions("SELECT * FROM my_hosts_1m", "hosts_1m"));
    }
}
