//! How far the stage has come: where the source is (bytes consumed) and where event time is
//! (the watermark, the newest event, and how far the watermark lags behind both). The
//! engine stores raw microseconds after each batch; the gauges in seconds are derived at
//! scrape time, so the wall-clock lag is current whenever Prometheus asks.

use std::sync::atomic::{AtomicI64, Ordering};

use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::{Registry, Unit};

use super::{FloatGauge, Telemetry, register};

/// The watermark and source-position gauges.
pub(super) struct ProgressMetrics {
    watermark: FloatGauge,
    newest_event: FloatGauge,
    behind_newest: FloatGauge,
    behind_wall: FloatGauge,
    source_position: Gauge,
    // Raw values behind the derived gauges (µs; `i64::MIN` before the first event).
    watermark_us: AtomicI64,
    newest_us: AtomicI64,
}

impl ProgressMetrics {
    pub(super) fn register(r: &mut Registry) -> Self {
        let seconds = |r: &mut Registry, name: &str, help: &str| {
            register(r, name, help, Some(Unit::Seconds), FloatGauge::default())
        };
        ProgressMetrics {
            watermark: seconds(
                r,
                "watermark_timestamp",
                "The watermark (event time, Unix seconds): windows ending before it are closed.",
            ),
            newest_event: seconds(
                r,
                "newest_event_timestamp",
                "The newest event time seen (Unix seconds).",
            ),
            behind_newest: seconds(
                r,
                "watermark_behind_newest_event",
                "How far the watermark is behind the newest event (max_out_of_orderness, or more while idle).",
            ),
            behind_wall: seconds(
                r,
                "watermark_behind_wall_clock",
                "How far the watermark is behind the wall clock, at scrape time: the event-time lag of the stage.",
            ),
            source_position: register(
                r,
                "source_position",
                "Bytes of input consumed (a file or standard input; for tail, summed over followed files; for generate, lines).",
                Some(Unit::Bytes),
                Gauge::default(),
            ),
            watermark_us: AtomicI64::new(i64::MIN),
            newest_us: AtomicI64::new(i64::MIN),
        }
    }

    /// Brings the gauges in seconds up to date (at scrape time, `now_ms` the wall clock).
    pub(super) fn update(&self, now_ms: i64) {
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
    }
}

impl Telemetry {
    /// The watermark and the newest event time (µs) after a batch.
    pub fn watermark_moved(&self, watermark: i64, newest: Option<i64>) {
        let p = &self.progress;
        p.watermark_us.store(watermark, Ordering::Relaxed);
        if let Some(n) = newest {
            p.newest_us.store(n, Ordering::Relaxed);
        }
    }

    /// Where the source is: bytes consumed.
    pub fn source_position(&self, bytes: u64) {
        self.progress.source_position.set(bytes as i64);
    }
}
