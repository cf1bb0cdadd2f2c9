//! Logging of both binaries: `tracing` to standard error, filtered by `RUST_LOG` (default:
//! warnings only, so cron mail and pipes stay quiet), e.g. `RUST_LOG=info` or
//! `RUST_LOG=stream_ingest=debug`.

/// Installs the subscriber; call once, first thing in `main`.
pub fn init() {
    let filter =
        tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "warn".into());
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .init();
}
