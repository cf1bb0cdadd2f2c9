//! `--follow-commits`: the batch stage behind the stream stage, in one shell pipeline.
//!
//! ```text
//! stream-ingest run -c P.yaml --emit-commits | batch-analyze run -c P.yaml --follow-commits
//! ```
//!
//! Each input line is a [`CommitEvent`]: a partition the stream stage just committed, with
//! the watermark at that moment. A day is complete once the watermark has passed its end
//! (plus `partition_commit.delay`): every partition of it is committed, since the stream
//! stage commits a partition as soon as the watermark passes the partition's end. The
//! reports then run for that day alone, exactly as `run --date DAY` would (with `--out DIR`,
//! into `DIR/dt=DAY/`); at the end of the input the days still open run too. The locks are held from the first line to the last.

use std::collections::BTreeSet;
use std::time::Instant;

use chrono::{Days, NaiveDate};
use shared::commit::CommitEvent;
use tokio::io::{AsyncBufRead, AsyncBufReadExt, Lines};

use crate::compute;
use crate::dates::DayRange;
use crate::error::AnalyzeError;
use crate::prepare::{Prepared, RunOptions, prepare_to_run};
use crate::summary::RunSummary;

/// What a follow run did.
#[derive(Debug, Default)]
pub struct FollowSummary {
    pub commits: u64,
    /// Lines that were not commit events (skipped, with a warning).
    pub ignored: u64,
    pub days: BTreeSet<String>,
    pub rows: usize,
    pub seconds: f64,
}

/// A pause this long in the input ends a burst of commit events.
const BURST_GAP: std::time::Duration = std::time::Duration::from_millis(200);
/// A burst is cut after this many events, so a busy stream still gets its days run.
const MAX_BURST: usize = 10_000;

/// A commit event, or `None` (counted, warned) for a line that is not one.
fn parse(line: &str, summary: &mut FollowSummary) -> Option<CommitEvent> {
    if line.trim().is_empty() {
        return None;
    }
    match serde_json::from_str(line) {
        Ok(e) => {
            summary.commits += 1;
            Some(e)
        }
        Err(e) => {
            summary.ignored += 1;
            let shown: String = line.chars().take(200).collect();
            tracing::warn!(error = %e, line = %shown, "not a commit event; ignored");
            None
        }
    }
}

/// The instant a day's partitions are all committed by.
fn day_end(day: &str, delay: chrono::Duration) -> Option<i64> {
    let d = NaiveDate::parse_from_str(day, "%Y-%m-%d").ok()?;
    let next = d.checked_add_days(Days::new(1))?;
    Some((next.and_hms_opt(0, 0, 0)?.and_utc() + delay).timestamp_micros())
}

/// Reads commit events from `input` until it ends, running the reports for each day as soon
/// as it is complete; `done` gets each day's results (to print them).
pub async fn follow<R: AsyncBufRead + Unpin>(
    loaded: &shared::config::LoadedConfig,
    opts: &RunOptions,
    input: R,
    mut done: impl FnMut(&str, &RunSummary),
) -> Result<FollowSummary, AnalyzeError> {
    let started = Instant::now();
    let prep = prepare_to_run(loaded, opts).await?;
    let locks = prep.lock(opts.wait).await?;
    let mut summary = FollowSummary::default();
    let result = follow_locked(&prep, opts, input, &mut summary, &mut done).await;
    locks.release().await;
    result?;
    summary.seconds = started.elapsed().as_secs_f64();
    Ok(summary)
}

/// [`follow`], with the locks held.
async fn follow_locked<R: AsyncBufRead + Unpin>(
    prep: &Prepared<'_>,
    opts: &RunOptions,
    input: R,
    summary: &mut FollowSummary,
    done: &mut impl FnMut(&str, &RunSummary),
) -> Result<(), AnalyzeError> {
    let delay =
        chrono::Duration::from_std(prep.loaded.config.partition_commit.delay.0).unwrap_or_default();
    let mut commits = Commits {
        pending: BTreeSet::new(),
        watermark: i64::MIN,
    };
    let mut lines = input.lines();
    let mut ended = false;
    while !ended {
        ended = read_burst(&mut lines, summary, &mut commits).await?;
        let ready: Vec<String> = commits
            .pending
            .iter()
            .filter(|d| day_end(d, delay).is_some_and(|end| commits.watermark >= end))
            .cloned()
            .collect();
        for day in ready {
            commits.pending.remove(&day);
            run_day(prep, opts, &day, summary, done).await?;
        }
    }
    // The stream ended: what is left is as complete as it will get.
    for day in std::mem::take(&mut commits.pending) {
        run_day(prep, opts, &day, summary, done).await?;
    }
    Ok(())
}

/// What the commit events read so far say.
struct Commits {
    /// Days with commits whose reports have not run yet.
    pending: BTreeSet<String>,
    /// The highest watermark of any event.
    watermark: i64,
}

/// Reads one burst of commit events: the stream stage prints the commits of a checkpoint
/// together, so read until the input pauses (or [`MAX_BURST`] events). `true` when the input
/// ended.
async fn read_burst<R: AsyncBufRead + Unpin>(
    lines: &mut Lines<R>,
    summary: &mut FollowSummary,
    commits: &mut Commits,
) -> Result<bool, AnalyzeError> {
    let mut burst = 0;
    loop {
        let next = if burst == 0 {
            Ok(lines.next_line().await)
        } else {
            tokio::time::timeout(BURST_GAP, lines.next_line()).await
        };
        let line = match next {
            Err(_) => return Ok(false), // a pause
            Ok(line) => line.map_err(|e| AnalyzeError::Follow(e.to_string()))?,
        };
        let Some(line) = line else {
            return Ok(true);
        };
        burst += 1;
        if let Some(event) = parse(&line, summary) {
            if let Some(day) = event.day() {
                commits.pending.insert(day.to_string());
            }
            commits.watermark = commits.watermark.max(event.watermark_us);
        }
        if burst >= MAX_BURST {
            return Ok(false);
        }
    }
}

async fn run_day(
    prep: &Prepared<'_>,
    opts: &RunOptions,
    day: &str,
    summary: &mut FollowSummary,
    done: &mut impl FnMut(&str, &RunSummary),
) -> Result<(), AnalyzeError> {
    let Ok(d) = NaiveDate::parse_from_str(day, "%Y-%m-%d") else {
        tracing::warn!(
            day,
            "a commit event names a partition without a date; skipped"
        );
        return Ok(());
    };
    let range = DayRange {
        from: Some(d),
        to: Some(d),
    };
    // With --out, each day's reports go to DIR/dt=DAY/ instead of replacing each other.
    let day_opts;
    let opts = match &opts.out {
        Some(dir) => {
            day_opts = RunOptions {
                out: Some(dir.join(format!("{}={day}", shared::schema::DT))),
                ..opts.clone()
            };
            &day_opts
        }
        None => opts,
    };
    let result = compute(prep, opts, &range).await?;
    tracing::info!(
        day,
        reports = result.reports.len(),
        "day complete: reports computed"
    );
    summary.days.insert(day.to_string());
    summary.rows += result.reports.iter().map(|r| r.rows).sum::<usize>();
    done(day, &result);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_day_ends_at_midnight_plus_the_delay() {
        let end = day_end("2015-05-17", chrono::Duration::seconds(30)).unwrap();
        assert_eq!(end, 1_431_907_230_000_000);
        assert!(day_end("__HIVE_DEFAULT_PARTITION__", chrono::Duration::zero()).is_none());
    }
}
