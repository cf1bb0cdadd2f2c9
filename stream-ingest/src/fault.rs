//! Fault injection for the crash tests: `STREAM_INGEST_CRASH_AT=<point>[:<n>]` aborts the
//! process the `n`-th time the named point is reached (see [`shared::fault`]). Points:
//! `after-stage` (a file staged), `after-checkpoint` (a checkpoint written, its files not yet
//! published: between pre-commit and commit), `mid-publish` (some files of a checkpoint
//! published), `after-publish` (its markers written, merges done, old checkpoints pruned),
//! `mid-replace` (a merged file published, the files it replaces not yet removed),
//! `after-rebuild-retract` (a rebuild's files published and the old ones removed, its markers
//! not yet written), and the
//! pause `before-ready` (`STREAM_INGEST_PAUSE_AT=before-ready:2s`: recovery done, not yet
//! ready, for the health-probe test).

/// Aborts here if `STREAM_INGEST_CRASH_AT` names this point.
pub fn point(name: &str) {
    shared::fault::point("STREAM_INGEST_CRASH_AT", name);
}

/// How long to pause here, if `STREAM_INGEST_PAUSE_AT` names this point
/// (`<point>:<duration>`).
pub fn pause(name: &str) -> Option<std::time::Duration> {
    let spec = std::env::var("STREAM_INGEST_PAUSE_AT").ok()?;
    let (point, d) = spec.split_once(':')?;
    let d = d.parse::<shared::HumanDuration>().ok()?;
    (point == name).then(|| {
        eprintln!("pausing {d} at `{name}` as asked by STREAM_INGEST_PAUSE_AT");
        d.0
    })
}
