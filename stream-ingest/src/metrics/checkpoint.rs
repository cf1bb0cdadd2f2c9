//! Checkpoints made durable: how many, how long each took (to write it and publish its
//! files and markers), how large the last was, and how long ago it became durable (derived
//! at scrape time, so an alert sees a stalled stage). The summary line reads the count and
//! the last size from here.

use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::time::Duration;

use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::{Registry, Unit};

use super::{FloatGauge, Telemetry, counter, register};

/// Buckets of `checkpoint_duration_seconds`.
const DURATION_BUCKETS: [f64; 11] = [
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];

/// The checkpoint metrics.
pub(super) struct CheckpointMetrics {
    checkpoints: Counter,
    duration: Histogram,
    size: Gauge,
    last: FloatGauge,
    age: FloatGauge,
    // Raw values: when the last one became durable (ms since the epoch, 0 before the
    // first), and its size, for the summary line.
    last_ms: AtomicI64,
    last_bytes: AtomicU64,
    /// Time spent making checkpoints durable and committing, in total (µs).
    total_us: AtomicU64,
}

impl CheckpointMetrics {
    pub(super) fn register(r: &mut Registry) -> Self {
        CheckpointMetrics {
            checkpoints: counter(r, "checkpoints", "Checkpoints written by this process."),
            duration: register(
                r,
                "checkpoint_duration",
                "Time to make a checkpoint durable and publish its files and markers.",
                Some(Unit::Seconds),
                Histogram::new(DURATION_BUCKETS),
            ),
            size: register(
                r,
                "checkpoint_size",
                "Size of the last checkpoint written.",
                Some(Unit::Bytes),
                Gauge::default(),
            ),
            last: register(
                r,
                "last_checkpoint_timestamp",
                "When the last checkpoint became durable (Unix seconds).",
                Some(Unit::Seconds),
                FloatGauge::default(),
            ),
            age: register(
                r,
                "checkpoint_age",
                "Seconds since the last durable checkpoint, at scrape time.",
                Some(Unit::Seconds),
                FloatGauge::default(),
            ),
            last_ms: AtomicI64::new(0),
            last_bytes: AtomicU64::new(0),
            total_us: AtomicU64::new(0),
        }
    }

    /// Brings the time gauges up to date (at scrape time, `now_ms` the wall clock).
    pub(super) fn update(&self, now_ms: i64) {
        let last = self.last_ms.load(Ordering::Relaxed);
        if last > 0 {
            self.last.set(last as f64 / 1e3);
            self.age.set((now_ms - last) as f64 / 1e3);
        }
    }

    /// Checkpoints this process wrote, the last one's size in bytes, and the time they took
    /// together.
    pub(super) fn written(&self) -> (u64, u64, Duration) {
        let last_bytes = self.last_bytes.load(Ordering::Relaxed);
        let total = Duration::from_micros(self.total_us.load(Ordering::Relaxed));
        (self.checkpoints.get(), last_bytes, total)
    }
}

impl Telemetry {
    /// A checkpoint of `bytes` became durable and its files were published, in `took`.
    pub fn checkpoint_done(&self, id: u64, bytes: u64, took: Duration) {
        tracing::debug!(
            checkpoint = id,
            bytes,
            ms = took.as_millis() as u64,
            "checkpoint"
        );
        let c = &self.checkpoint;
        c.checkpoints.inc();
        c.duration.observe(took.as_secs_f64());
        c.size.set(bytes as i64);
        c.last_bytes.store(bytes, Ordering::Relaxed);
        c.total_us
            .fetch_add(took.as_micros() as u64, Ordering::Relaxed);
        let now = chrono::Utc::now().timestamp_millis();
        c.last_ms.store(now, Ordering::Relaxed);
    }
}
