//! Requests to the lake's object store (local disk or S3), their errors and retries. They
//! are counted where they happen, by the wrapper around the lake's store and the log layer
//! that sees object_store's retries ([`shared::store_metrics`]); this module copies those
//! counts into the registry at scrape time.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::registry::Registry;

use super::{counter, register};

/// Label of the object-store metrics.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct OpLabel {
    op: String,
}

/// The object-store metrics.
pub(super) struct ObjectStoreMetrics {
    requests: Family<OpLabel, Counter>,
    errors: Family<OpLabel, Counter>,
    retries: Counter,
}

impl ObjectStoreMetrics {
    pub(super) fn register(r: &mut Registry) -> Self {
        ObjectStoreMetrics {
            requests: register(
                r,
                "object_store_requests",
                "Requests to the lake's object store (local disk or S3) by operation, in this process.",
                None,
                Family::default(),
            ),
            errors: register(
                r,
                "object_store_errors",
                "Failed object-store requests by operation (not-found answers and precondition failures are not errors), in this process.",
                None,
                Family::default(),
            ),
            retries: counter(
                r,
                "object_store_retries",
                "Object-store requests retried after a transient error (S3), in this process.",
            ),
        }
    }

    /// Brings the counters up to the process's counts (at scrape time).
    pub(super) fn update(&self) {
        let store = shared::store_metrics::snapshot();
        for (op, counts) in store.iter() {
            let label = OpLabel {
                op: op.as_str().to_string(),
            };
            let c = self.requests.get_or_create(&label);
            c.inc_by(counts.requests.saturating_sub(c.get()));
            let e = self.errors.get_or_create(&label);
            e.inc_by(counts.errors.saturating_sub(e.get()));
        }
        self.retries
            .inc_by(store.retries.saturating_sub(self.retries.get()));
    }
}
