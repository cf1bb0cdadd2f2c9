//! Logging of both binaries: `tracing` to standard error, filtered by `RUST_LOG` (default:
//! warnings only, so cron mail and pipes stay quiet), e.g. `RUST_LOG=info` or
//! `RUST_LOG=stream_ingest=debug`.

/// Installs the subscriber; call once, first thing in `main`.
pub fn init() {
    let filter =
        tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "warn".into());
    // Colours only on a terminal: cron mail and log files get plain text.
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr());
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(ansi)
        .with_writer(std::io::stderr)
        .init();
}
