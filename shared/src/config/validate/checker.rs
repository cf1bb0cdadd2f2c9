//! The [`Checker`] every rule writes its problems to, and the small checks that rules of
//! several parts of the file share (names, durations, rolling, aggregate options). A module
//! of its own so that the rule modules import it from here, and `mod.rs` only calls them.

use std::collections::HashSet;

use arrow::datatypes::Schema;

use crate::config::model::{AggregateConfig, AggregateFn, RollingConfig};
use crate::config::{LoadedConfig, Problem};
use crate::duration::HumanDuration;

/// The problems found so far, each with its field path and line.
pub(super) struct Checker<'a> {
    loaded: &'a LoadedConfig,
    pub(super) problems: Vec<Problem>,
}

impl<'a> Checker<'a> {
    pub(super) fn new(loaded: &'a LoadedConfig) -> Self {
        Checker {
            loaded,
            problems: Vec::new(),
        }
    }

    pub(super) fn report(&mut self, path: impl Into<String>, message: impl Into<String>) {
        self.problems.push(self.loaded.problem(path, message));
    }

    /// Names that become directories, files or SQL identifiers.
    pub(super) fn check_name(&mut self, path: String, name: &str) {
        if name.is_empty() {
            self.report(path, "must not be empty");
        } else if !name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
            || name.starts_with(['_', '-'])
        {
            self.report(
                path,
                format!("`{name}` is not a usable name: use letters, digits, `_` and `-`, not starting with `_` or `-`"),
            );
        }
    }

    pub(super) fn check_unique<'n>(
        &mut self,
        seen: &mut HashSet<&'n str>,
        path: String,
        name: &'n str,
        what: &str,
    ) {
        if !seen.insert(name) {
            self.report(path, format!("{what} `{name}` is defined twice"));
        }
    }

    pub(super) fn check_rolling(&mut self, path: &str, r: &RollingConfig) {
        if r.max_rows == 0 {
            self.report(format!("{path}.max_rows"), "must be at least 1");
        }
        if r.max_bytes.0 == 0 {
            self.report(format!("{path}.max_bytes"), "must be larger than 0B");
        }
        if r.min_size > r.max_bytes {
            self.report(
                format!("{path}.min_size"),
                format!("{} is larger than max_bytes ({})", r.min_size, r.max_bytes),
            );
        }
        if let Some(d) = &r.max_open_time {
            self.check_positive(format!("{path}.max_open_time"), d);
        }
    }

    pub(super) fn check_positive(&mut self, path: String, d: &HumanDuration) {
        if d.is_zero() {
            self.report(path, "must be longer than zero");
        }
    }
}

/// The field names of `schema`, for messages that list what exists.
pub(super) fn field_list(schema: &Schema) -> String {
    schema
        .fields()
        .iter()
        .map(|f| f.name().as_str())
        .collect::<Vec<_>>()
        .join(", ")
}

/// Aggregates that keep a sketch and can write it (`sketch: true`).
pub(super) fn is_sketched(f: AggregateFn) -> bool {
    matches!(
        f,
        AggregateFn::ApproxDistinct | AggregateFn::ApproxPercentile
    )
}

/// `q` and `sketch` of an aggregate, wherever it is declared.
pub(super) fn check_aggregate_options(
    c: &mut Checker,
    ap: &str,
    a: &AggregateConfig,
    in_table: bool,
) {
    match (a.function, a.q) {
        (AggregateFn::ApproxPercentile, None) => c.report(
            format!("{ap}.q"),
            "`approx_percentile` needs `q`, the quantile (e.g. 0.95)",
        ),
        (AggregateFn::ApproxPercentile, Some(q)) if !(0.0..=1.0).contains(&q) => c.report(
            format!("{ap}.q"),
            format!("{q} is not a quantile between 0 and 1"),
        ),
        (AggregateFn::ApproxPercentile, Some(_)) | (_, None) => {}
        (f, Some(_)) => c.report(
            format!("{ap}.q"),
            format!("only `approx_percentile` takes `q`, not `{}`", f.as_str()),
        ),
    }
    if a.sketch && !(in_table && is_sketched(a.function)) {
        c.report(
            format!("{ap}.sketch"),
            if in_table {
                "only `approx_distinct` and `approx_percentile` keep a sketch"
            } else {
                "sketches are written by windowed tables; a report reads them (`column: <name>_sketch`)"
            },
        );
    }
}
