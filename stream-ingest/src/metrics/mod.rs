//! What happened, by name: every counter and gauge of the stream stage, each declared beside
//! the named events that move it.
//!
//! Each method of [`Telemetry`] is one thing that happened (a chunk parsed, a file
//! published, a partition committed…): it logs the event (where it deserves a line) and
//! moves its metrics, the way Vector's `internal_events` pair a log line with its counter.
//! The summary line at the end of a run, the checkpoint's counters and `/metrics`
//! ([`crate::http`]) all read these same values, so they cannot disagree.
//!
//! One file per family of events; each declares its metrics, registers them and holds the
//! events (an `impl Telemetry` block) that move them:
//!
//! ```text
//! metrics/
//! ├── mod.rs           Telemetry (the one shared handle: registry + families), /metrics text
//! ├── engine.rs        chunk_parsed, late_events, windows_emitted, state_measured;
//! │                    lines, events, late, windows, rows, state, budget (pipeline and per
//! │                    table); EngineStats, the counters a checkpoint carries
//! ├── progress.rs      source_position, watermark_moved; source position, watermark, lags
//! ├── checkpoint.rs    checkpoint_done; checkpoints, duration, size, last, age
//! ├── commit.rs        file_published, partition_committed, partition_compacted;
//! │                    files, rows and bytes published, freshness, partitions, compaction
//! ├── object_store.rs  requests, errors and retries of the lake's store (read at scrape)
//! └── readiness.rs     set_ready; what /health/ready answers
//! ```
//!
//! Metrics are not state: only the counters that the checkpoint already carried before
//! metrics existed (lines, parsed, invalid, late, windows and rows emitted, the state peak
//! and budget alarms: [`EngineStats`]) continue across restarts; every other counter counts
//! from the start of the process, as Prometheus expects. Names follow Prometheus
//! conventions (`_total`, `_seconds`, `_bytes`); README.md lists each with its meaning, in
//! the order `/metrics` serves them.
//!
//! This module uses nothing else of the crate (only `shared`): the engine, the writer, the
//! unit's run and `http.rs` call into it, never the other way.

mod checkpoint;
mod commit;
mod engine;
mod object_store;
mod progress;
mod readiness;

use std::sync::Arc;
use std::sync::atomic::AtomicU64;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::{Metric, Registry, Unit};

use self::checkpoint::CheckpointMetrics;
use self::commit::CommitMetrics;
use self::engine::EngineMetrics;
pub use self::engine::{EngineStats, TableMetrics};
use self::object_store::ObjectStoreMetrics;
use self::progress::ProgressMetrics;
use self::readiness::Readiness;

/// Every metric of a run. Cheap to share (`Arc`); all updates are atomic.
pub struct Telemetry {
    registry: Registry,
    engine: EngineMetrics,
    progress: ProgressMetrics,
    checkpoint: CheckpointMetrics,
    commit: CommitMetrics,
    object_store: ObjectStoreMetrics,
    readiness: Readiness,
}

impl Telemetry {
    /// Metrics for the given tables (windowed tables, then the late-events table).
    pub fn new(tables: &[String]) -> Arc<Self> {
        let mut registry = Registry::with_prefix("stream_ingest");
        let r = &mut registry;
        let engine = EngineMetrics::register(r, tables);
        let progress = ProgressMetrics::register(r);
        let checkpoint = CheckpointMetrics::register(r);
        let commit = CommitMetrics::register(r, tables);
        let object_store = ObjectStoreMetrics::register(r);
        let readiness = Readiness::register(r);
        Arc::new(Telemetry {
            registry,
            engine,
            progress,
            checkpoint,
            commit,
            object_store,
            readiness,
        })
    }

    /// What this process published and checkpointed (for the summary line).
    pub fn published(&self) -> Published {
        let (files, rows, bytes) = self.commit.published();
        let (checkpoints, checkpoint_bytes, checkpoint_time) = self.checkpoint.written();
        Published {
            files,
            rows,
            bytes,
            checkpoints,
            checkpoint_bytes,
            checkpoint_time,
        }
    }

    /// The metrics as OpenMetrics text (what `/metrics` serves); derived gauges (ages, lags,
    /// object-store counters) are brought up to date first.
    pub fn render(&self) -> String {
        let now_ms = chrono::Utc::now().timestamp_millis();
        self.progress.update(now_ms);
        self.checkpoint.update(now_ms);
        self.object_store.update();
        let mut out = String::new();
        prometheus_client::encoding::text::encode(&mut out, &self.registry)
            .expect("writing to a String cannot fail");
        out
    }
}

/// A gauge of seconds or timestamps.
type FloatGauge = Gauge<f64, AtomicU64>;

/// Label of the per-table metrics.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct TableLabel {
    table: String,
}

/// Registers `metric` as `stream_ingest_<name>` (with its unit, if it has one) and returns
/// it; clones share their value, so the caller keeps the handle it moves.
fn register<M: Metric + Clone>(
    registry: &mut Registry,
    name: &str,
    help: &str,
    unit: Option<Unit>,
    metric: M,
) -> M {
    match unit {
        Some(unit) => registry.register_with_unit(name, help, unit, metric.clone()),
        None => registry.register(name, help, metric.clone()),
    }
    metric
}

/// Registers a counter (exposed with `_total`).
fn counter(registry: &mut Registry, name: &str, help: &str) -> Counter {
    register(registry, name, help, None, Counter::default())
}

/// Registers a family of per-table series (`{table="…"}`).
fn table_family<M>(
    registry: &mut Registry,
    name: &str,
    help: &str,
    unit: Option<Unit>,
) -> Family<TableLabel, M>
where
    M: Default,
    Family<TableLabel, M>: Metric + Clone,
{
    register(registry, name, help, unit, Family::default())
}

/// The series of each table the run knows, created once so that the hot path only touches
/// atomics.
struct PerTable<T>(Vec<(String, T)>);

impl<T: Clone + Default> PerTable<T> {
    /// `series` creates one table's handles from its label.
    fn new(tables: &[String], series: impl Fn(&TableLabel) -> T) -> Self {
        let of = |name: &String| {
            let label = TableLabel {
                table: name.clone(),
            };
            (name.clone(), series(&label))
        };
        PerTable(tables.iter().map(of).collect())
    }

    /// The handles of a table (by name; a table the run does not know gets throw-away ones).
    fn get(&self, name: &str) -> T {
        self.0
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, m)| m.clone())
            .unwrap_or_default()
    }
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

/// Files, rows and bytes a process published; the checkpoints it wrote, the last one's size
/// and the time they took to become durable and commit their files, together.
#[derive(Debug, Clone, Copy, Default)]
pub struct Published {
    pub files: u64,
    pub rows: u64,
    pub bytes: u64,
    pub checkpoints: u64,
    pub checkpoint_bytes: u64,
    pub checkpoint_time: std::time::Duration,
}
