//! Whether the stage is ready: recovery finished and the source is open, until it drains.
//! `/health/ready` answers from here ([`crate::http`]), and the `ready` gauge says the same
//! to Prometheus.

use std::sync::atomic::{AtomicBool, Ordering};

use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

use super::{Telemetry, register};

/// The readiness flag and its gauge.
pub(super) struct Readiness {
    ready: Gauge,
    is_ready: AtomicBool,
}

impl Readiness {
    pub(super) fn register(r: &mut Registry) -> Self {
        Readiness {
            ready: register(
                r,
                "ready",
                "1 once recovery finished and the source is open (what /health/ready answers).",
                None,
                Gauge::default(),
            ),
            is_ready: AtomicBool::new(false),
        }
    }
}

impl Telemetry {
    /// Recovery finished and the source is open (or, with `false`, the stage is draining).
    pub fn set_ready(&self, ready: bool) {
        self.readiness.is_ready.store(ready, Ordering::SeqCst);
        self.readiness.ready.set(ready as i64);
    }

    pub fn is_ready(&self) -> bool {
        self.readiness.is_ready.load(Ordering::SeqCst)
    }
}
