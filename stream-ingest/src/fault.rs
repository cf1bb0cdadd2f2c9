//! Fault injection for the crash tests: `STREAM_INGEST_CRASH_AT=<point>[:<n>]` aborts the
//! process (as `kill -9` would: no cleanup, no flush) the `n`-th time (default 1st) the
//! named point is reached. Points: `after-stage` (a file staged), `after-checkpoint` (a
//! checkpoint written, its files not yet published: between pre-commit and commit),
//! `mid-publish` (some files of a checkpoint published), `after-publish`.

use std::sync::OnceLock;
use std::sync::atomic::{AtomicU64, Ordering};

static TARGET: OnceLock<Option<(String, u64)>> = OnceLock::new();
static HITS: AtomicU64 = AtomicU64::new(0);

/// Aborts here if the environment asks for it.
pub fn point(name: &str) {
    let target = TARGET.get_or_init(|| {
        let spec = std::env::var("STREAM_INGEST_CRASH_AT").ok()?;
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
        eprintln!("stream-ingest: crashing at `{name}` as asked by STREAM_INGEST_CRASH_AT");
        std::process::abort();
    }
}
