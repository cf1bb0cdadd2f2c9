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
use tokio::io::{AsyncBufRead, AsyncBufReadExt};

use crate::dates::DayRange;
use crate::{AnalyzeError, RunOptions, RunSummary, compute, prepare_to_run};

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
    let delay =
        chrono::Duration::from_std(loaded.config.partition_commit.delay.0).unwrap_or_default();
    let mut summary = FollowSummary::default();
    let mut pending: BTreeSet<String> = BTreeSet::new();
    let mut watermark = i64::MIN;
    let mut lines = input.lines();
    let result = async {
        let mut ended = false;
        while !ended {
            // One burst: the stream stage prints the commits of a checkpoint together, so
            // read until the input pauses, then run the days that are complete.
            let mut burst = 0;
            loop {
                let next = if burst == 0 {
                    Ok(lines.next_line().await)
                } else {
                    tokio::time::timeout(BURST_GAP, lines.next_line()).await
                };
                let line = match next {
                    Err(_) => break, // a pause
                    Ok(line) => line.map_err(|e| AnalyzeError::Follow(e.to_string()))?,
                };
                let Some(line) = line else {
                    ended = true;
                    break;
                };
                burst += 1;
                if let Some(event) = parse(&line, &mut summary) {
                    if let Some(day) = event.day() {
                        pending.insert(day.to_string());
                    }
                    watermark = watermark.max(event.watermark_us);
                }
                if burst >= MAX_BURST {
                    break;
                }
            }
            let ready: Vec<String> = pending
                .iter()
                .filter(|d| day_end(d, delay).is_some_and(|end| watermark >= end))
                .cloned()
                .collect();
            for day in ready {
                pending.remove(&day);
                run_day(&prep, opts, &day, &mut summary, &mut done).await?;
            }
        }
        // The stream ended: what is left is as complete as it will get.
        for day in std::mem::take(&mut pending) {
            run_day(&prep, opts, &day, &mut summary, &mut done).await?;
        }
        Ok::<(), AnalyzeError>(())
    }
    .await;
    locks.release().await;
    result?;
    summary.seconds = started.elapsed().as_secs_f64();
    Ok(summary)
}

async fn run_day(
    prep: &crate::Prepared<'_>,
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
