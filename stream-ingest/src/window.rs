//! Event time: which windows an event belongs to, and the watermark that decides when a
//! window is complete.
//!
//! The rules are Flink's with a bounded-out-of-orderness watermark and no allowed lateness:
//! the watermark `W` is the largest event time seen so far minus the bound; a window
//! `[start, end)` is emitted as soon as `W >= end`; an event whose window was already
//! emitted is late. An event at most `bound` behind the largest event time is never late.
//! All times are microseconds since the epoch, UTC; windows are aligned to the epoch.

use shared::config::WindowConfig;

/// Assigns events to windows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WindowAssigner {
    Tumbling { size: i64 },
    Sliding { size: i64, slide: i64 },
    Session { gap: i64 },
}

impl WindowAssigner {
    pub fn from_config(w: &WindowConfig) -> Self {
        match w {
            WindowConfig::Tumbling { size } => WindowAssigner::Tumbling {
                size: size.as_micros(),
            },
            WindowConfig::Sliding { size, slide } => WindowAssigner::Sliding {
                size: size.as_micros(),
                slide: slide.as_micros(),
            },
            WindowConfig::Session { gap } => WindowAssigner::Session {
                gap: gap.as_micros(),
            },
        }
    }

    /// Calls `f(start)` for every fixed window holding `ts`, latest start first. Session
    /// windows are not fixed: see [`WindowAssigner::session_of`].
    #[inline]
    pub fn for_each_start(&self, ts: i64, mut f: impl FnMut(i64)) {
        match *self {
            WindowAssigner::Tumbling { size } => f(ts - ts.rem_euclid(size)),
            WindowAssigner::Sliding { size, slide } => {
                let mut start = ts - ts.rem_euclid(slide);
                while start > ts - size {
                    f(start);
                    start -= slide;
                }
            }
            WindowAssigner::Session { .. } => {}
        }
    }

    /// The fixed window length (the session gap for sessions).
    pub fn span(&self) -> i64 {
        match *self {
            WindowAssigner::Tumbling { size } | WindowAssigner::Sliding { size, .. } => size,
            WindowAssigner::Session { gap } => gap,
        }
    }

    /// The session window an event opens on its own: `[ts, ts + gap)`.
    pub fn session_of(&self, ts: i64) -> (i64, i64) {
        (ts, ts.saturating_add(self.span()))
    }

    pub fn is_session(&self) -> bool {
        matches!(self, WindowAssigner::Session { .. })
    }
}

/// The watermark: the largest event time seen minus the out-of-orderness bound.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Watermark {
    max_ts: Option<i64>,
    bound: i64,
}

impl Watermark {
    pub fn new(bound: i64) -> Self {
        Watermark {
            max_ts: None,
            bound,
        }
    }

    /// The current watermark; `i64::MIN` before the first event.
    #[inline]
    pub fn current(&self) -> i64 {
        self.max_ts
            .map_or(i64::MIN, |m| m.saturating_sub(self.bound))
    }

    /// Takes an event time into account.
    #[inline]
    pub fn observe(&mut self, ts: i64) {
        self.max_ts = Some(self.max_ts.map_or(ts, |m| m.max(ts)));
    }

    /// The largest event time seen (the checkpointed part of the watermark).
    pub fn max_ts(&self) -> Option<i64> {
        self.max_ts
    }

    /// Restores the largest event time seen. `i64::MAX` is how checkpoint format 6 recorded
    /// an end-of-input flush: every window counts as emitted.
    pub fn restore(&mut self, max_ts: Option<i64>) {
        self.max_ts = max_ts;
        if max_ts == Some(i64::MAX) {
            self.bound = 0;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MIN: i64 = 60_000_000;

    fn starts(a: WindowAssigner, ts: i64) -> Vec<i64> {
        let mut v = Vec::new();
        a.for_each_start(ts, |s| v.push(s));
        v
    }

    #[test]
    fn tumbling_aligns_to_the_epoch() {
        let a = WindowAssigner::Tumbling { size: MIN };
        assert_eq!(starts(a, 0), vec![0]);
        assert_eq!(starts(a, MIN - 1), vec![0]);
        assert_eq!(starts(a, MIN), vec![MIN]);
        assert_eq!(starts(a, -1), vec![-MIN]);
    }

    #[test]
    fn sliding_gives_size_over_slide_windows() {
        let a = WindowAssigner::Sliding {
            size: 5 * MIN,
            slide: MIN,
        };
        assert_eq!(
            starts(a, 7 * MIN + 3),
            vec![7 * MIN, 6 * MIN, 5 * MIN, 4 * MIN, 3 * MIN]
        );
        let b = WindowAssigner::Sliding {
            size: 90_000_000,
            slide: MIN,
        };
        // [60s, 150s) and [0, 90s) hold 75s.
        assert_eq!(starts(b, 75_000_000), vec![MIN, 0]);
        assert_eq!(starts(b, 100_000_000), vec![MIN]);
    }

    #[test]
    fn session_window_of_an_event() {
        let a = WindowAssigner::Session { gap: 30 };
        assert_eq!(a.session_of(100), (100, 130));
        assert!(a.is_session());
    }

    #[test]
    fn watermark_trails_the_maximum() {
        let mut w = Watermark::new(MIN);
        assert_eq!(w.current(), i64::MIN);
        w.observe(10 * MIN);
        w.observe(5 * MIN);
        assert_eq!(w.current(), 9 * MIN);
        w.restore(Some(i64::MAX));
        assert_eq!(w.current(), i64::MAX);
    }
}

#[cfg(test)]
mod properties {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        /// Every window holding `ts` is found once, starts on the slide grid, and holds `ts`.
        #[test]
        fn sliding_windows_are_exactly_those_holding_the_event(
            ts in -10_000_000i64..10_000_000,
            slide in 1i64..1000,
            factor in 1i64..6,
            extra in 0i64..1000,
        ) {
            let size = slide * factor + extra % slide;
            let a = WindowAssigner::Sliding { size, slide };
            let mut got = Vec::new();
            a.for_each_start(ts, |s| got.push(s));
            let expected: Vec<i64> = (0..=size / slide + 1)
                .map(|k| ts - ts.rem_euclid(slide) - k * slide)
                .filter(|s| *s <= ts && ts < s + size)
                .collect();
            prop_assert_eq!(got, expected);
        }

        #[test]
        fn tumbling_window_holds_the_event(ts in any::<i32>(), size in 1i64..100_000) {
            let ts = i64::from(ts);
            let a = WindowAssigner::Tumbling { size };
            let mut got = Vec::new();
            a.for_each_start(ts, |s| got.push(s));
            prop_assert_eq!(got.len(), 1);
            prop_assert!(got[0] <= ts && ts < got[0] + size && got[0].rem_euclid(size) == 0);
        }

        /// The watermark never goes back, whatever the order of events.
        #[test]
        fn watermark_is_monotonic(events in proptest::collection::vec(any::<i32>(), 1..50)) {
            let mut w = Watermark::new(60);
            let mut last = w.current();
            for e in events {
                w.observe(i64::from(e));
                prop_assert!(w.current() >= last);
                last = w.current();
            }
        }
    }
}
