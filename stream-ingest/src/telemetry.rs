//! What happened, in one place: every counter and gauge of the stream stage, and the named
//! events that move them.
//!
//! Each method of [`Telemetry`] is one thing that happened (a chunk parsed, a file
//! published, a partition committed…): it logs the event (where it deserves a line) and
//! moves its metrics, the way Vector's `internal_events` pair a log line with its counter.
//! The summary line at the end of a run, the checkpoint's counters and `/metrics`
//! ([`crate::http`]) all read these same values, so they cannot disagree.
//!
//! Metrics are not state: only the counters that the checkpoint already carried before
//! metrics existed (lines, parsed, invalid, late, windows and rows emitted, the state peak
//! and budget alarms: [`EngineStats`]) continue across restarts; every other counter counts
//! from the start of the process, as Prometheus expects. Names follow Prometheus
//! conventions (`_total`, `_seconds`, `_bytes`); README.md lists each with its meaning.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::{Registry, Unit};
use shared::commit::{PartitionMarker, PendingFile};

use crate::engine::EngineStats;

/// Label of the per-table metrics.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct TableLabel {
    pub table: String,
}

/// Label of the object-store metrics.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct OpLabel {
    pub op: String,
}

type FloatGauge = Gauge<f64, AtomicU64>;

/// The metrics of one table (windowed or late-events), created once so that the hot path
/// only touches atomics.
#[derive(Clone, Default)]
pub struct TableMetrics {
    pub late: Counter,
    pub windows_emitted: Counter,
    pub rows_emitted: Counter,
    pub open_windows: Gauge,
    pub open_groups: Gauge,
    pub state_bytes: Gauge,
    files_published: Counter,
    rows_published: Counter,
    bytes_published: Counter,
    partitions_committed: Counter,
    partitions_compacted: Counter,
    files_compacted: Counter,
}

/// Every metric of a run. Cheap to share (`Arc`); all updates are atomic.
pub struct Telemetry {
    registry: Registry,
    tables: Vec<(String, TableMetrics)>,
    // Carried across restarts by the checkpoint (see the module docs).
    lines: Counter,
    parsed: Counter,
    invalid: Counter,
    late: Counter,
    windows_emitted: Counter,
    rows_emitted: Counter,
    state_budget_exceeded: Counter,
    state_peak: Gauge,
    // This process only.
    state_bytes: Gauge,
    watermark: FloatGauge,
    newest_event: FloatGauge,
    behind_newest: FloatGauge,
    behind_wall: FloatGauge,
    source_position: Gauge,
    checkpoints: Counter,
    checkpoint_duration: Histogram,
    checkpoint_size: Gauge,
    last_checkpoint: FloatGauge,
    checkpoint_age: FloatGauge,
    freshness: Histogram,
    ready: Gauge,
    store_requests: Family<OpLabel, Counter>,
    store_errors: Family<OpLabel, Counter>,
    store_retries: Counter,
    // Raw values behind the derived gauges, read at scrape time.
    watermark_us: AtomicI64,
    newest_us: AtomicI64,
    last_checkpoint_ms: AtomicI64,
    is_ready: AtomicBool,
    /// Counts of this process, for the summary line.
    files_published: AtomicU64,
    rows_published: AtomicU64,
    bytes_published: AtomicU64,
    last_checkpoint_bytes: AtomicU64,
}

impl Telemetry {
    /// Metrics for the given tables (windowed tables, then the late-events table).
    pub fn new(tables: &[String]) -> Arc<Self> {
        let mut r = Registry::with_prefix("stream_ingest");
        let counter = |r: &mut Registry, name: &str, help: &str| {
            let c = Counter::default();
            r.register(name, help, c.clone());
            c
        };
        let lines = counter(
            &mut r,
            "lines_read",
            "Lines read from the source, since the pipeline started (carried across restarts).",
        );
        let parsed = counter(
            &mut r,
            "events_parsed",
            "Lines parsed into events, since the pipeline started.",
        );
        let invalid = counter(
            &mut r,
            "lines_invalid",
            "Lines that did not parse (dead-lettered when configured), since the pipeline started.",
        );
        let late = counter(
            &mut r,
            "late_events",
            "Events dropped as late, summed over tables, since the pipeline started.",
        );
        let windows_emitted = counter(
            &mut r,
            "windows_emitted",
            "Windows closed and emitted, summed over tables, since the pipeline started.",
        );
        let rows_emitted = counter(
            &mut r,
            "rows_emitted",
            "Rows of emitted windows, summed over tables, since the pipeline started.",
        );
        let state_budget_exceeded = counter(
            &mut r,
            "state_budget_exceeded",
            "Times the open state grew past state.memory_budget, since the pipeline started.",
        );
        let checkpoints = counter(
            &mut r,
            "checkpoints",
            "Checkpoints written by this process.",
        );
        let store_retries = counter(
            &mut r,
            "object_store_retries",
            "Object-store requests retried after a transient error (S3), in this process.",
        );
        let state_peak = Gauge::default();
        r.register_with_unit(
            "state_peak",
            "The largest open state seen (estimated), since the pipeline started.",
            Unit::Bytes,
            state_peak.clone(),
        );
        let state_bytes = Gauge::default();
        r.register_with_unit(
            "state",
            "Open state now (windows, groups, rows waiting for their partition), estimated.",
            Unit::Bytes,
            state_bytes.clone(),
        );
        let float = |r: &mut Registry, name: &str, help: &str, unit: Unit| {
            let g = FloatGauge::default();
            r.register_with_unit(name, help, unit, g.clone());
            g
        };
        let watermark = float(
            &mut r,
            "watermark_timestamp",
            "The watermark (event time, Unix seconds): windows ending before it are closed.",
            Unit::Seconds,
        );
        let newest_event = float(
            &mut r,
            "newest_event_timestamp",
            "The newest event time seen (Unix seconds).",
            Unit::Seconds,
        );
        let behind_newest = float(
            &mut r,
            "watermark_behind_newest_event",
            "How far the watermark is behind the newest event (max_out_of_orderness, or more while idle).",
            Unit::Seconds,
        );
        let behind_wall = float(
            &mut r,
            "watermark_behind_wall_clock",
            "How far the watermark is behind the wall clock, at scrape time: the event-time lag of the stage.",
            Unit::Seconds,
        );
        let last_checkpoint = float(
            &mut r,
            "last_checkpoint_timestamp",
            "When the last checkpoint became durable (Unix seconds).",
            Unit::Seconds,
        );
        let checkpoint_age = float(
            &mut r,
            "checkpoint_age",
            "Seconds since the last durable checkpoint, at scrape time.",
            Unit::Seconds,
        );
        let source_position = Gauge::default();
        r.register_with_unit("source_position", "Bytes of input consumed (a file or standard input; for tail, summed over followed files; for generate, lines).", Unit::Bytes, source_position.clone());
        let checkpoint_size = Gauge::default();
        r.register_with_unit(
            "checkpoint_size",
            "Size of the last checkpoint written.",
            Unit::Bytes,
            checkpoint_size.clone(),
        );
        let checkpoint_duration = Histogram::new([
            0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
        ]);
        r.register_with_unit(
            "checkpoint_duration",
            "Time to make a checkpoint durable and publish its files and markers.",
            Unit::Seconds,
            checkpoint_duration.clone(),
        );
        let freshness = Histogram::new([
            0.1, 0.25, 0.5, 0.75, 1.0, 1.5, 2.0, 5.0, 10.0, 30.0, 60.0, 300.0, 3600.0,
        ]);
        r.register_with_unit("window_freshness", "From the moment windows close (the watermark passes their end) to the moment their rows are published in the lake.", Unit::Seconds, freshness.clone());
        let ready = Gauge::default();
        r.register(
            "ready",
            "1 once recovery finished and the source is open (what /health/ready answers).",
            ready.clone(),
        );
        let store_requests = Family::<OpLabel, Counter>::default();
        r.register(
            "object_store_requests",
            "Requests to the lake's object store (local disk or S3) by operation, in this process.",
            store_requests.clone(),
        );
        let store_errors = Family::<OpLabel, Counter>::default();
        r.register("object_store_errors", "Failed object-store requests by operation (not-found answers and precondition failures are not errors), in this process.", store_errors.clone());
        let per_table = per_table_metrics(&mut r, tables);
        Arc::new(Telemetry {
            registry: r,
            tables: per_table,
            lines,
            parsed,
            invalid,
            late,
            windows_emitted,
            rows_emitted,
            state_budget_exceeded,
            state_peak,
            state_bytes,
            watermark,
            newest_event,
            behind_newest,
            behind_wall,
            source_position,
            checkpoints,
            checkpoint_duration,
            checkpoint_size,
            last_checkpoint,
            checkpoint_age,
            freshness,
            ready,
            store_requests,
            store_errors,
            store_retries,
            watermark_us: AtomicI64::new(i64::MIN),
            newest_us: AtomicI64::new(i64::MIN),
            last_checkpoint_ms: AtomicI64::new(0),
            is_ready: AtomicBool::new(false),
            files_published: AtomicU64::new(0),
            rows_published: AtomicU64::new(0),
            bytes_published: AtomicU64::new(0),
            last_checkpoint_bytes: AtomicU64::new(0),
        })
    }

    /// The metrics of a table (by name; a table the run does not know gets throw-away ones).
    pub fn table(&self, name: &str) -> TableMetrics {
        self.tables
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, m)| m.clone())
            .unwrap_or_default()
    }

    /// Continues the counters a checkpoint carries.
    pub fn restore(&self, stats: &EngineStats) {
        let set = |c: &Counter, v: u64| {
            c.inc_by(v.saturating_sub(c.get()));
        };
        set(&self.lines, stats.lines);
        set(&self.parsed, stats.parsed);
        set(&self.invalid, stats.invalid);
        set(&self.late, stats.late);
        set(&self.windows_emitted, stats.windows_emitted);
        set(&self.rows_emitted, stats.rows_emitted);
        set(&self.state_budget_exceeded, stats.state_budget_exceeded);
        self.state_peak
            .set(self.state_peak.get().max(stats.state_bytes_peak as i64));
    }

    /// The counters a checkpoint carries.
    pub fn engine_stats(&self) -> EngineStats {
        EngineStats {
            lines: self.lines.get(),
            parsed: self.parsed.get(),
            invalid: self.invalid.get(),
            late: self.late.get(),
            windows_emitted: self.windows_emitted.get(),
            rows_emitted: self.rows_emitted.get(),
            state_bytes_peak: self.state_peak.get().max(0) as u64,
            state_budget_exceeded: self.state_budget_exceeded.get(),
        }
    }

    /// A chunk of input parsed: `lines` read, `parsed` events, `invalid` lines.
    pub fn chunk_parsed(&self, lines: u64, parsed: u64, invalid: u64) {
        self.lines.inc_by(lines);
        self.parsed.inc_by(parsed);
        self.invalid.inc_by(invalid);
    }

    /// A table dropped `n` events as late.
    pub fn late_events(&self, table: &TableMetrics, name: &str, n: u64) {
        tracing::debug!(table = name, late = n, "late events");
        table.late.inc_by(n);
        self.late.inc_by(n);
    }

    /// A table emitted `windows` closed windows holding `rows` rows.
    pub fn windows_emitted(&self, table: &TableMetrics, windows: u64, rows: u64) {
        table.windows_emitted.inc_by(windows);
        table.rows_emitted.inc_by(rows);
        self.windows_emitted.inc_by(windows);
        self.rows_emitted.inc_by(rows);
    }

    /// The watermark and the newest event time (µs) after a batch.
    pub fn watermark_moved(&self, watermark: i64, newest: Option<i64>) {
        self.watermark_us.store(watermark, Ordering::Relaxed);
        if let Some(n) = newest {
            self.newest_us.store(n, Ordering::Relaxed);
        }
    }

    /// The open state after a batch: the total, and whether it crossed the budget now.
    pub fn state_measured(&self, bytes: u64, crossed_budget: bool) {
        self.state_bytes.set(bytes as i64);
        if bytes as i64 > self.state_peak.get() {
            self.state_peak.set(bytes as i64);
        }
        if crossed_budget {
            self.state_budget_exceeded.inc();
        }
    }

    /// Where the source is: bytes consumed.
    pub fn source_position(&self, bytes: u64) {
        self.source_position.set(bytes as i64);
    }

    /// A staged file was published (it is visible in the lake now). `closed` are the
    /// instants its windows closed: each gives one freshness sample.
    pub fn file_published(&self, f: &PendingFile, closed: &[Instant]) {
        tracing::info!(table = %f.table, partition = %f.partition, rows = f.rows, "published {}", f.target);
        let t = self.table(&f.table);
        t.files_published.inc();
        t.rows_published.inc_by(f.rows);
        t.bytes_published.inc_by(f.bytes);
        self.files_published.fetch_add(1, Ordering::Relaxed);
        self.rows_published.fetch_add(f.rows, Ordering::Relaxed);
        self.bytes_published.fetch_add(f.bytes, Ordering::Relaxed);
        for at in closed {
            self.freshness.observe(at.elapsed().as_secs_f64());
        }
    }

    /// A partition got its `_SUCCESS` marker.
    pub fn partition_committed(&self, m: &PartitionMarker) {
        tracing::info!(table = %m.table, partition = %m.partition_path(), rows = m.rows, "partition committed");
        self.table(&m.table).partitions_committed.inc();
    }

    /// A committed partition's `files` files were merged into one.
    pub fn partition_compacted(&self, m: &PartitionMarker, files: usize) {
        tracing::info!(table = %m.table, partition = %m.partition_path(), files, rows = m.rows, "merged");
        let t = self.table(&m.table);
        t.partitions_compacted.inc();
        t.files_compacted.inc_by(files as u64);
    }

    /// A checkpoint of `bytes` became durable and its files were published, in `took`.
    pub fn checkpoint_done(&self, id: u64, bytes: u64, took: Duration) {
        tracing::debug!(
            checkpoint = id,
            bytes,
            ms = took.as_millis() as u64,
            "checkpoint"
        );
        self.checkpoints.inc();
        self.checkpoint_duration.observe(took.as_secs_f64());
        self.checkpoint_size.set(bytes as i64);
        self.last_checkpoint_bytes.store(bytes, Ordering::Relaxed);
        let now = chrono::Utc::now().timestamp_millis();
        self.last_checkpoint_ms.store(now, Ordering::Relaxed);
    }

    /// Recovery finished and the source is open (or, with `false`, the stage is draining).
    pub fn set_ready(&self, ready: bool) {
        self.is_ready.store(ready, Ordering::SeqCst);
        self.ready.set(ready as i64);
    }

    pub fn is_ready(&self) -> bool {
        self.is_ready.load(Ordering::SeqCst)
    }

    /// Files, rows and bytes this process published, the last checkpoint's size, and the
    /// checkpoints it wrote (for the summary line).
    pub fn published(&self) -> (u64, u64, u64, u64, u64) {
        (
            self.files_published.load(Ordering::Relaxed),
            self.rows_published.load(Ordering::Relaxed),
            self.bytes_published.load(Ordering::Relaxed),
            self.last_checkpoint_bytes.load(Ordering::Relaxed),
            self.checkpoints.get(),
        )
    }

    /// The metrics as OpenMetrics text (what `/metrics` serves); derived gauges (ages, lags,
    /// object-store counters) are brought up to date first.
    pub fn render(&self) -> String {
        self.update_derived();
        let mut out = String::new();
        prometheus_client::encoding::text::encode(&mut out, &self.registry)
            .expect("writing to a String cannot fail");
        out
    }

    fn update_derived(&self) {
        let now_ms = chrono::Utc::now().timestamp_millis();
        let wm = self.watermark_us.load(Ordering::Relaxed);
        let newest = self.newest_us.load(Ordering::Relaxed);
        if wm != i64::MIN && wm != i64::MAX {
            self.watermark.set(wm as f64 / 1e6);
            self.behind_wall
                .set((now_ms as f64 / 1e3 - wm as f64 / 1e6).max(0.0));
            if newest != i64::MIN {
                self.behind_newest
                    .set(((newest - wm) as f64 / 1e6).max(0.0));
            }
        }
        if newest != i64::MIN {
            self.newest_event.set(newest as f64 / 1e6);
        }
        let last = self.last_checkpoint_ms.load(Ordering::Relaxed);
        if last > 0 {
            self.last_checkpoint.set(last as f64 / 1e3);
            self.checkpoint_age.set((now_ms - last) as f64 / 1e3);
        }
        let store = shared::store_metrics::snapshot();
        for (op, counts) in store.iter() {
            let label = OpLabel {
                op: op.as_str().to_string(),
            };
            let c = self.store_requests.get_or_create(&label);
            c.inc_by(counts.requests.saturating_sub(c.get()));
            let e = self.store_errors.get_or_create(&label);
            e.inc_by(counts.errors.saturating_sub(e.get()));
        }
        self.store_retries
            .inc_by(store.retries.saturating_sub(self.store_retries.get()));
    }
}

/// Registers the per-table families and creates each table's handles.
fn per_table_metrics(r: &mut Registry, tables: &[String]) -> Vec<(String, TableMetrics)> {
    let counter = |r: &mut Registry, name: &str, help: &str, unit: Option<Unit>| {
        let f = Family::<TableLabel, Counter>::default();
        match unit {
            Some(u) => r.register_with_unit(name, help, u, f.clone()),
            None => r.register(name, help, f.clone()),
        }
        f
    };
    let gauge = |r: &mut Registry, name: &str, help: &str, unit: Option<Unit>| {
        let f = Family::<TableLabel, Gauge>::default();
        match unit {
            Some(u) => r.register_with_unit(name, help, u, f.clone()),
            None => r.register(name, help, f.clone()),
        }
        f
    };
    let late = counter(
        r,
        "table_late_events",
        "Events a table dropped as late, in this process.",
        None,
    );
    let windows = counter(
        r,
        "table_windows_emitted",
        "Windows a table emitted, in this process.",
        None,
    );
    let rows = counter(
        r,
        "table_rows_emitted",
        "Rows of the windows a table emitted, in this process.",
        None,
    );
    let open_windows = gauge(
        r,
        "open_windows",
        "Windows open at the last checkpoint (sessions count one each).",
        None,
    );
    let open_groups = gauge(
        r,
        "open_groups",
        "Groups (window × key) open at the last checkpoint.",
        None,
    );
    let state = gauge(
        r,
        "table_state",
        "A table's open state now (windows, groups, rows waiting for their partition), estimated.",
        Some(Unit::Bytes),
    );
    let files = counter(
        r,
        "files_published",
        "Parquet files published (visible in the lake), in this process.",
        None,
    );
    let rows_pub = counter(
        r,
        "rows_published",
        "Rows in the files published, in this process.",
        None,
    );
    let bytes_pub = counter(
        r,
        "published",
        "Bytes of the files published, in this process.",
        Some(Unit::Bytes),
    );
    let committed = counter(
        r,
        "partitions_committed",
        "Partitions committed (`_SUCCESS` written), in this process.",
        None,
    );
    let compacted = counter(
        r,
        "partitions_compacted",
        "Committed partitions whose files were merged into one, in this process.",
        None,
    );
    let files_compacted = counter(
        r,
        "files_compacted",
        "Files merged away by compaction, in this process.",
        None,
    );
    tables
        .iter()
        .map(|name| {
            let l = TableLabel {
                table: name.clone(),
            };
            let m = TableMetrics {
                late: late.get_or_create(&l).clone(),
                windows_emitted: windows.get_or_create(&l).clone(),
                rows_emitted: rows.get_or_create(&l).clone(),
                open_windows: open_windows.get_or_create(&l).clone(),
                open_groups: open_groups.get_or_create(&l).clone(),
                state_bytes: state.get_or_create(&l).clone(),
                files_published: files.get_or_create(&l).clone(),
                rows_published: rows_pub.get_or_create(&l).clone(),
                bytes_published: bytes_pub.get_or_create(&l).clone(),
                partitions_committed: committed.get_or_create(&l).clone(),
                partitions_compacted: compacted.get_or_create(&l).clone(),
                files_compacted: files_compacted.get_or_create(&l).clone(),
            };
            (name.clone(), m)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counters_continue_from_a_checkpoint_and_render_as_openmetrics() {
        let t = Telemetry::new(&["hits".to_string()]);
        t.restore(&EngineStats {
            lines: 10,
            late: 2,
            ..EngineStats::default()
        });
        t.chunk_parsed(5, 4, 1);
        let hits = t.table("hits");
        t.late_events(&hits, "hits", 3);
        let stats = t.engine_stats();
        assert_eq!(
            (stats.lines, stats.parsed, stats.invalid, stats.late),
            (15, 4, 1, 5)
        );
        let text = t.render();
        assert!(text.contains("stream_ingest_lines_read_total 15"), "{text}");
        assert!(
            text.contains("stream_ingest_table_late_events_total{table=\"hits\"} 3"),
            "{text}"
        );
        assert!(text.contains("# TYPE stream_ingest_checkpoint_duration_seconds histogram"));
        assert!(text.trim_end().ends_with("# EOF"));
    }
}
