//! Logging of both binaries: `tracing` to standard error, filtered by `RUST_LOG` (default:
//! warnings only, so cron mail and pipes stay quiet), e.g. `RUST_LOG=info` or
//! `RUST_LOG=stream_ingest=debug`.
//!
//! The same subscriber also feeds the object-store retry counter
//! ([`store_metrics::retry_layer`]): `RUST_LOG` filters only the output layer, so retries are
//! counted even when their `info` lines are not printed.

use tracing::Subscriber;
use tracing_subscriber::EnvFilter;
use tracing_subscriber::fmt::MakeWriter;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{Layer, registry::LookupSpan};

use crate::store_metrics;

/// Installs the subscriber; call once, first thing in `main`.
pub fn init() {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| "warn".into());
    // Colours only on a terminal: cron mail and log files get plain text.
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr());
    subscriber(filter, ansi, std::io::stderr).init();
}

/// The output layer (filtered by `filter`, written to `writer`) beside the retry counter
/// (unfiltered by `filter`).
fn subscriber<W>(
    filter: EnvFilter,
    ansi: bool,
    writer: W,
) -> impl Subscriber + for<'a> LookupSpan<'a> + Send + Sync + 'static
where
    W: for<'w> MakeWriter<'w> + Send + Sync + 'static,
{
    let output = tracing_subscriber::fmt::layer()
        .with_ansi(ansi)
        .with_writer(writer)
        // As `tracing_subscriber::fmt()` does: a failed write is reported on stderr.
        .log_internal_errors(true)
        .with_filter(filter);
    tracing_subscriber::registry()
        .with(output)
        .with(store_metrics::retry_layer())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;
    use std::sync::{Arc, Mutex};

    #[derive(Clone, Default)]
    struct Captured(Arc<Mutex<Vec<u8>>>);

    impl Write for Captured {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn rust_log_warn_hides_retries_but_still_counts_them() {
        let out = Captured::default();
        let writer = out.clone();
        let subscriber = subscriber(EnvFilter::new("warn"), false, move || writer.clone());
        let before = store_metrics::snapshot().retries;
        tracing::subscriber::with_default(subscriber, || {
            tracing::info!(
                target: "object_store::client::retry",
                "Encountered transport error of kind Connect, backing off for 0.1 seconds, retry 1 of 10"
            );
            tracing::info!("hidden");
            tracing::warn!("shown");
        });
        // Only this test emits retry events in this process.
        assert_eq!(store_metrics::snapshot().retries, before + 1);
        let text = String::from_utf8(out.0.lock().unwrap().clone()).unwrap();
        assert_eq!(text.lines().count(), 1, "{text}");
        assert!(
            text.contains(" WARN shared::logging::tests: shown"),
            "{text}"
        );
        assert!(!text.contains('\x1b'), "no colours when not asked: {text}");
    }
}
