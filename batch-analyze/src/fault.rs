//! Fault injection for the crash and lock tests, in a leaf module so the steps that call it
//! ([`crate::lake_output`], the run in `lib.rs`, the locks in [`crate::prepare`]) need
//! nothing else.
//!
//! `BATCH_ANALYZE_CRASH_AT=<point>[:<n>]` aborts at the `n`-th pass,
//! `BATCH_ANALYZE_SLOW_AT=<point>:<duration>` sleeps there. Points: `after-lock`,
//! `after-stage` (a report partition's new file staged), `after-partition` (a report
//! partition replaced), `before-state` (outputs written, state not yet).

/// Crashes or sleeps at `point` when the environment asks for it; nothing otherwise.
pub(crate) fn fault(point: &str) {
    shared::fault::point("BATCH_ANALYZE_CRASH_AT", point);
    if let Ok(spec) = std::env::var("BATCH_ANALYZE_SLOW_AT")
        && let Some((p, d)) = spec.split_once(':')
        && p == point
        && let Ok(d) = d.parse::<shared::HumanDuration>()
    {
        std::thread::sleep(d.0);
    }
}
