//! Fault injection for the crash tests of both binaries: `<VAR>=<point>[:<n>]` aborts the
//! process (as `kill -9` would: no cleanup, no flush) the `n`-th time (default 1st) the named
//! point is reached. Each binary names its variable (`STREAM_INGEST_CRASH_AT`,
//! `BATCH_ANALYZE_CRASH_AT`) and documents its points where it calls [`point`].

use std::sync::OnceLock;
use std::sync::atomic::{AtomicU64, Ordering};

static TARGET: OnceLock<Option<(String, u64)>> = OnceLock::new();
static HITS: AtomicU64 = AtomicU64::new(0);

/// Aborts here if the environment variable `var` names this point.
pub fn point(var: &str, name: &str) {
    let target = TARGET.get_or_init(|| {
        let spec = std::env::var(var).ok()?;
        let (point, n) = match spec.split_once(':') {
            Some((p, n)) => (p.to_string(), n.parse().unwrap_or(1)),
            None => (spec, 1),
        };
        Some((point, n))
    });
    if let Some((point, n)) = target
        && point == name
        && HITS.fetch_add(1, Ordering::SeqCst) + 1 == *n
    {
        eprintln!("crashing at `{name}` as asked by {var}");
        std::process::abort();
    }
}
