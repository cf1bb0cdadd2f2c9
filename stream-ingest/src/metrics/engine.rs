//! The engine's events: lines read and parsed, events dropped as late, windows emitted, the
//! open state and its budget; per pipeline and per table. Also [`EngineStats`], the part of
//! these counters a checkpoint carries, so a restarted stage continues them.

use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::{Registry, Unit};

use super::{PerTable, Telemetry, counter, register, table_family};

/// The counters a checkpoint carries (read from and restored into [`Telemetry`], which
/// owns them while the stage runs).
#[derive(Debug, Default, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct EngineStats {
    pub lines: u64,
    pub parsed: u64,
    pub invalid: u64,
    /// Events dropped as late, summed over tables.
    pub late: u64,
    pub windows_emitted: u64,
    pub rows_emitted: u64,
    /// The largest open state seen (bytes, estimated: windows × keys × aggregates, distinct
    /// values, rows waiting for their partition).
    pub state_bytes_peak: u64,
    /// Times the open state grew past `state.memory_budget`.
    pub state_budget_exceeded: u64,
}

/// The engine's metrics over the whole pipeline, and each table's.
pub(super) struct EngineMetrics {
    // Carried across restarts by the checkpoint (see the module docs of `metrics`).
    lines: Counter,
    parsed: Counter,
    invalid: Counter,
    late: Counter,
    windows_emitted: Counter,
    rows_emitted: Counter,
    state_budget_exceeded: Counter,
    state_peak: Gauge,
    // This process only.
    tables: PerTable<TableMetrics>,
    state_bytes: Gauge,
}

/// The engine's metrics of one table (windowed or late-events), created once so that the
/// hot path only touches atomics.
#[derive(Clone, Default)]
pub struct TableMetrics {
    late: Counter,
    windows_emitted: Counter,
    rows_emitted: Counter,
    pub open_windows: Gauge,
    pub open_groups: Gauge,
    pub state_bytes: Gauge,
}

impl EngineMetrics {
    pub(super) fn register(r: &mut Registry, tables: &[String]) -> Self {
        EngineMetrics {
            lines: counter(
                r,
                "lines_read",
                "Lines read from the source, since the pipeline started (carried across restarts).",
            ),
            parsed: counter(
                r,
                "events_parsed",
                "Lines parsed into events, since the pipeline started.",
            ),
            invalid: counter(
                r,
                "lines_invalid",
                "Lines that did not parse (dead-lettered when configured), since the pipeline started.",
            ),
            late: counter(
                r,
                "late_events",
                "Events dropped as late, summed over tables, since the pipeline started.",
            ),
            windows_emitted: counter(
                r,
                "windows_emitted",
                "Windows closed and emitted, summed over tables, since the pipeline started.",
            ),
            rows_emitted: counter(
                r,
                "rows_emitted",
                "Rows of emitted windows, summed over tables, since the pipeline started.",
            ),
            state_budget_exceeded: counter(
                r,
                "state_budget_exceeded",
                "Times the open state grew past state.memory_budget, since the pipeline started.",
            ),
            tables: TableMetrics::register(r, tables),
            state_bytes: register(
                r,
                "state",
                "Open state now (windows, groups, rows waiting for their partition), estimated.",
                Some(Unit::Bytes),
                Gauge::default(),
            ),
            state_peak: register(
                r,
                "state_peak",
                "The largest open state seen (estimated), since the pipeline started.",
                Some(Unit::Bytes),
                Gauge::default(),
            ),
        }
    }
}

impl TableMetrics {
    fn register(r: &mut Registry, tables: &[String]) -> PerTable<Self> {
        let late = table_family::<Counter>(
            r,
            "table_late_events",
            "Events a table dropped as late, in this process.",
            None,
        );
        let windows = table_family::<Counter>(
            r,
            "table_windows_emitted",
            "Windows a table emitted, in this process.",
            None,
        );
        let rows = table_family::<Counter>(
            r,
            "table_rows_emitted",
            "Rows of the windows a table emitted, in this process.",
            None,
        );
        let open_windows = table_family::<Gauge>(
            r,
            "open_windows",
            "Windows open at the last checkpoint (sessions count one each).",
            None,
        );
        let open_groups = table_family::<Gauge>(
            r,
            "open_groups",
            "Groups (window × key) open at the last checkpoint.",
            None,
        );
        let state = table_family::<Gauge>(
            r,
            "table_state",
            "A table's open state now (windows, groups, rows waiting for their partition), estimated.",
            Some(Unit::Bytes),
        );
        PerTable::new(tables, |l| TableMetrics {
            late: late.get_or_create_owned(l),
            windows_emitted: windows.get_or_create_owned(l),
            rows_emitted: rows.get_or_create_owned(l),
            open_windows: open_windows.get_or_create_owned(l),
            open_groups: open_groups.get_or_create_owned(l),
            state_bytes: state.get_or_create_owned(l),
        })
    }
}

impl Telemetry {
    /// The metrics of a table (by name; a table the run does not know gets throw-away ones).
    pub fn table(&self, name: &str) -> TableMetrics {
        self.engine.tables.get(name)
    }

    /// Continues the counters a checkpoint carries.
    pub fn restore(&self, stats: &EngineStats) {
        let e = &self.engine;
        let set = |c: &Counter, v: u64| {
            c.inc_by(v.saturating_sub(c.get()));
        };
        set(&e.lines, stats.lines);
        set(&e.parsed, stats.parsed);
        set(&e.invalid, stats.invalid);
        set(&e.late, stats.late);
        set(&e.windows_emitted, stats.windows_emitted);
        set(&e.rows_emitted, stats.rows_emitted);
        set(&e.state_budget_exceeded, stats.state_budget_exceeded);
        e.state_peak
            .set(e.state_peak.get().max(stats.state_bytes_peak as i64));
    }

    /// The counters a checkpoint carries.
    pub fn engine_stats(&self) -> EngineStats {
        let e = &self.engine;
        EngineStats {
            lines: e.lines.get(),
            parsed: e.parsed.get(),
            invalid: e.invalid.get(),
            late: e.late.get(),
            windows_emitted: e.windows_emitted.get(),
            rows_emitted: e.rows_emitted.get(),
            state_bytes_peak: e.state_peak.get().max(0) as u64,
            state_budget_exceeded: e.state_budget_exceeded.get(),
        }
    }

    /// A chunk of input parsed: `lines` read, `parsed` events, `invalid` lines.
    pub fn chunk_parsed(&self, lines: u64, parsed: u64, invalid: u64) {
        self.engine.lines.inc_by(lines);
        self.engine.parsed.inc_by(parsed);
        self.engine.invalid.inc_by(invalid);
    }

    /// A table dropped `n` events as late.
    pub fn late_events(&self, table: &TableMetrics, name: &str, n: u64) {
        tracing::debug!(table = name, late = n, "late events");
        table.late.inc_by(n);
        self.engine.late.inc_by(n);
    }

    /// A table emitted `windows` closed windows holding `rows` rows.
    pub fn windows_emitted(&self, table: &TableMetrics, windows: u64, rows: u64) {
        table.windows_emitted.inc_by(windows);
        table.rows_emitted.inc_by(rows);
        self.engine.windows_emitted.inc_by(windows);
        self.engine.rows_emitted.inc_by(rows);
    }

    /// The open state after a batch: the total, and whether it crossed the budget now.
    pub fn state_measured(&self, bytes: u64, crossed_budget: bool) {
        let e = &self.engine;
        e.state_bytes.set(bytes as i64);
        if bytes as i64 > e.state_peak.get() {
            e.state_peak.set(bytes as i64);
        }
        if crossed_budget {
            e.state_budget_exceeded.inc();
        }
    }
}
