//! Fault injection for the crash tests: `STREAM_INGEST_CRASH_AT=<point>[:<n>]` aborts the
//! process the `n`-th time the named point is reached (see [`shared::fault`]). Points:
//! `after-stage` (a file staged), `after-checkpoint` (a checkpoint written, its files not yet
//! published: between pre-commit and commit), `mid-publish` (some files of a checkpoint
//! published), `after-publish`.

/// Aborts here if `STREAM_INGEST_CRASH_AT` names this point.
pub fn point(name: &str) {
    shared::fault::point("STREAM_INGEST_CRASH_AT", name);
}
