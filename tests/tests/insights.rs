//! End-to-end tests of the second shipped pipeline, `pipelines/access-log-insights.yaml`:
//! derived columns, a lookup (and its reloads), percentiles and sketches merged into daily
//! reports.
//!
//! Golden files live in `tests/golden/access-log-insights/` (sketch columns left out: their
//! bytes are pinned by the sketch format's own tests). They were checked by an independent
//! oracle before they were checked in, `tests/oracle/insights.py` (the spec's regex, the
//! derive rules written again in Python, exact answers from DuckDB, the approximate columns
//! held to their documented bounds), and `oracle_agrees_with_the_golden_files` keeps
//! checking. `BLESS=1 cargo nextest run -p e2e` rewrites them; review the diff and rerun the
//! oracle.

use std::path::{Path, PathBuf};
use std::time::Duration;

use e2e::*;

const TABLES: [&str; 4] = ["requests_1m", "status_1m", "bytes_1m", "hosts_1m"];
const REPORTS: [&str; 3] = ["daily_unique_hosts", "daily_p95_bytes", "daily_bots"];

fn golden_dir() -> PathBuf {
    workspace().join("tests/golden/access-log-insights")
}

/// The pipeline copied into `dir` with its dimension file, reading `log`, writing
/// `dir/lake`; `extra` is added before `tables:` (a checkpoint interval, a source).
fn pipeline(dir: &Path, log: &Path, extra: &str) -> PathBuf {
    let yaml = std::fs::read_to_string(workspace().join("pipelines/access-log-insights.yaml"))
        .unwrap()
        .replace(
            "path: data/apache_logs.log",
            &format!("path: {}", log.display()),
        )
        .replace("root: out/lake-insights", "root: lake")
        .replace("\ntables:\n", &format!("\n{extra}\ntables:\n"));
    std::fs::copy(
        workspace().join("pipelines/status_codes.csv"),
        dir.join("status_codes.csv"),
    )
    .unwrap();
    let path = dir.join("insights.yaml");
    std::fs::write(&path, yaml).unwrap();
    path
}

fn ingest(dir: &Path, yaml: &Path) -> std::process::Output {
    cmd("stream-ingest")
        .current_dir(dir)
        .args(["run", "-c"])
        .arg(yaml)
        .output()
        .unwrap()
}

/// The windowed tables and the CSV reports of a lake, rendered into `out` as the golden
/// files are.
fn render(dir: &Path, yaml: &Path, out: &Path) {
    std::fs::create_dir_all(out).unwrap();
    let lake = dir.join("lake");
    for t in TABLES {
        let text = render_table_without_sketches(&lake.join(t));
        std::fs::write(out.join(format!("{t}.csv")), text).unwrap();
    }
    run_ok(
        cmd("batch-analyze")
            .current_dir(dir)
            .args(["run", "-c"])
            .arg(yaml)
            .args(["--format", "csv", "--out"])
            .arg(out),
    );
}

fn read(dir: &Path, name: &str) -> String {
    std::fs::read_to_string(dir.join(format!("{name}.csv"))).unwrap()
}

#[test]
fn the_pipeline_matches_the_golden_files_on_every_run() {
    let dir = tempfile::tempdir().unwrap();
    let yaml = pipeline(dir.path(), &shared_data("apache_logs.log"), "");
    let out = ingest(dir.path(), &yaml);
    let summary = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{summary}");
    assert!(
        summary.contains("10000 lines read, 9999 parsed, 1 invalid, 0 late"),
        "{summary}"
    );
    let first = dir.path().join("first");
    render(dir.path(), &yaml, &first);
    for name in TABLES.iter().chain(&REPORTS) {
        check_golden(
            &golden_dir().join(format!("{name}.csv")),
            &read(&first, name),
        );
    }
    // Reports merge sketches: the same bytes on every run, whatever order the engine's
    // partitions deliver them in.
    for i in 0..3 {
        let again = dir.path().join(format!("again-{i}"));
        render(dir.path(), &yaml, &again);
        for r in REPORTS {
            assert_eq!(read(&again, r), read(&first, r), "{r} changed on rerun {i}");
        }
    }
}

#[test]
fn oracle_agrees_with_the_golden_files() {
    run_ok(
        python()
            .arg(workspace().join("tests/oracle/insights.py"))
            .arg(shared_data("apache_logs.log"))
            .arg(workspace().join("pipelines/status_codes.csv"))
            .arg(golden_dir()),
    );
}

/// The status table as `status,description,requests` lines.
fn status_rows(lake: &Path) -> String {
    render_table_without_sketches(&lake.join("status_1m"))
}

#[test]
fn a_replay_after_kill_9_enriches_events_as_the_first_run_did() {
    let dir = tempfile::tempdir().unwrap();
    let log = shared_data("apache_logs.log");
    let yaml = pipeline(dir.path(), &log, "");
    run_ok(
        cmd("stream-ingest")
            .current_dir(dir.path())
            .args(["run", "-c"])
            .arg(&yaml),
    );
    let uninterrupted = status_rows(&dir.path().join("lake"));
    std::fs::remove_dir_all(dir.path().join("lake")).unwrap();

    // Killed mid-stream: only the first checkpoint (taken at the start) is durable.
    let crashed = cmd("stream-ingest")
        .current_dir(dir.path())
        .env("STREAM_INGEST_CRASH_AT", "after-stage:40")
        .args(["run", "-c"])
        .arg(&yaml)
        .output()
        .unwrap();
    assert!(!crashed.status.success(), "the crash point was not reached");
    // The dimension changes before the restart.
    let codes = std::fs::read_to_string(dir.path().join("status_codes.csv")).unwrap();
    let renamed = codes.replace(",OK", ",Fine");
    assert_ne!(codes, renamed);
    std::fs::write(dir.path().join("status_codes.csv"), &renamed).unwrap();
    run_ok(
        cmd("stream-ingest")
            .current_dir(dir.path())
            .args(["run", "-c"])
            .arg(&yaml),
    );
    // The events after the checkpoint are replayed with the version it recorded.
    assert_eq!(status_rows(&dir.path().join("lake")), uninterrupted);

    // A fresh run sees the new file (so the check above can fail).
    std::fs::remove_dir_all(dir.path().join("lake")).unwrap();
    run_ok(
        cmd("stream-ingest")
            .current_dir(dir.path())
            .args(["run", "-c"])
            .arg(&yaml),
    );
    let fresh = status_rows(&dir.path().join("lake"));
    assert!(
        fresh.contains(",Fine,") && !fresh.contains(",OK,"),
        "{fresh}"
    );
}

fn line(minute: u32, second: u32, status: u16) -> String {
    format!(
        "10.0.0.1 - - [17/May/2015:10:{minute:02}:{second:02} +0000] \"GET /a HTTP/1.1\" {status} 100 \"-\" \"x\""
    )
}

/// Waits until the stage has written a checkpoint newer than the ones in `seen`.
fn next_checkpoint(dir: &Path, seen: &mut usize) {
    let ckpts = dir.join("lake/_checkpoints/access-log-insights");
    // Checkpoint files are pruned (keep 3): the highest id tells a new one.
    let highest = || {
        std::fs::read_dir(&ckpts)
            .map(|d| {
                d.filter_map(Result::ok)
                    .filter_map(|e| {
                        let n = e.file_name().to_string_lossy().to_string();
                        n.strip_prefix("ckpt-")?
                            .strip_suffix(".bin")?
                            .parse::<usize>()
                            .ok()
                    })
                    .max()
                    .unwrap_or(0)
            })
            .unwrap_or(0)
    };
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while highest() <= *seen {
        assert!(std::time::Instant::now() < deadline, "no new checkpoint");
        std::thread::sleep(Duration::from_millis(20));
    }
    *seen = highest();
}

#[test]
fn a_changed_dimension_file_is_taken_at_the_next_checkpoint_without_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("access.log");
    append_lines(&log, &[]);
    let yaml = pipeline(dir.path(), &log, "checkpoint: { interval: 100ms }\n");
    let yaml_text = std::fs::read_to_string(&yaml).unwrap().replace(
        &format!("  kind: file\n  path: {}", log.display()),
        &format!(
            "  kind: tail\n  path: {}\n  poll_interval: 20ms",
            log.display()
        ),
    );
    std::fs::write(&yaml, yaml_text).unwrap();
    let child = cmd("stream-ingest")
        .current_dir(dir.path())
        .args(["run", "-c"])
        .arg(&yaml)
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut seen = 0;
    next_checkpoint(dir.path(), &mut seen);
    append_lines(&log, &[&line(0, 1, 200), &line(0, 2, 200)]);
    next_checkpoint(dir.path(), &mut seen);
    next_checkpoint(dir.path(), &mut seen);
    let codes = std::fs::read_to_string(dir.path().join("status_codes.csv")).unwrap();
    // Written aside and renamed over the old file, as the README asks.
    std::fs::write(dir.path().join("codes.tmp"), codes.replace(",OK", ",Fine")).unwrap();
    std::fs::rename(
        dir.path().join("codes.tmp"),
        dir.path().join("status_codes.csv"),
    )
    .unwrap();
    next_checkpoint(dir.path(), &mut seen);
    next_checkpoint(dir.path(), &mut seen);
    append_lines(&log, &[&line(5, 1, 200), &line(9, 0, 200)]);
    next_checkpoint(dir.path(), &mut seen);
    next_checkpoint(dir.path(), &mut seen);
    stop_with_sigterm(child);
    let rows = status_rows(&dir.path().join("lake"));
    // Minute 10:00 was enriched before the change, 10:05 after it (10:09 is still open).
    assert_eq!(
        rows,
        "window_start,window_end,status,description,requests\n\
         2015-05-17T10:00:00Z,2015-05-17T10:01:00Z,200,OK,2\n\
         2015-05-17T10:05:00Z,2015-05-17T10:06:00Z,200,Fine,1\n",
    );
    // Beside the checkpoints, only the version the kept ones name is left.
    let versions = files(
        &dir.path()
            .join("lake/_checkpoints/access-log-insights/dimensions"),
    );
    let now = std::fs::read(dir.path().join("status_codes.csv")).unwrap();
    assert_eq!(versions.into_values().collect::<Vec<_>>(), [now]);
}

/// Sketch accuracy on generated million-line logs: every per-minute estimate and every
/// daily merge within its documented bound of the exact answer (the oracle: approx_distinct
/// within 2 %, percentiles within 1 % of rank). At 10 events/s the log spans three days of
/// small minutes (exact percentiles, many sketches merged per day); at 2000 events/s each
/// minute has 120,000 events, so the per-minute percentiles come from the t-digest itself.
#[test]
fn sketches_stay_within_their_bounds_on_a_million_lines() {
    for (rate, days) in [("10", 3), ("2000", 1)] {
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("gen.log");
        run_ok(
            cmd("stream-ingest")
                .args(["gen", "-q", "--lines", "1000000", "--seed", "5"])
                .args(["--events-per-second", rate, "--hosts", "200000", "--out"])
                .arg(&log),
        );
        let yaml = pipeline(dir.path(), &log, "");
        let out = ingest(dir.path(), &yaml);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let rendered = dir.path().join("rendered");
        render(dir.path(), &yaml, &rendered);
        let daily = read(&rendered, "daily_unique_hosts");
        assert!(daily.lines().count() > days, "{daily}");
        let check = python()
            .arg(workspace().join("tests/oracle/insights.py"))
            .arg(&log)
            .arg(dir.path().join("status_codes.csv"))
            .arg(&rendered)
            .output()
            .unwrap();
        let report = String::from_utf8_lossy(&check.stdout);
        assert!(
            check.status.success(),
            "{rate} events/s:\n{report}{}",
            String::from_utf8_lossy(&check.stderr)
        );
        eprintln!("{rate} events/s:\n{report}");
    }
}

#[test]
fn a_bad_expression_is_one_message_with_file_line_and_field_and_exit_2() {
    let dir = tempfile::tempdir().unwrap();
    let yaml = pipeline(dir.path(), &shared_data("apache_logs.log"), "");
    let text = std::fs::read_to_string(&yaml).unwrap().replace(
        "expr: CAST(status / 100 AS VARCHAR) || 'xx'",
        "expr: lowr(path)",
    );
    std::fs::write(&yaml, text).unwrap();
    for stage in ["stream-ingest", "batch-analyze"] {
        let out = cmd(stage)
            .args(["validate", "-c"])
            .arg(&yaml)
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{stage}: {err}");
        let line = std::fs::read_to_string(&yaml)
            .unwrap()
            .lines()
            .position(|l| l.contains("lowr(path)"))
            .unwrap()
            + 1;
        assert!(
            err.contains(&format!("insights.yaml:{line}"))
                && err.contains("derive[0].expr")
                && err.contains("lowr"),
            "{stage}: {err}"
        );
    }
}

/// `lake.format: delta` for the insights pipeline: every windowed table and the late table,
/// read by DuckDB's `delta_scan`, holds the Hive lake's rows (sketch columns included, as
/// bytes), and the reports are the Hive lake's, byte for byte.
#[test]
fn a_delta_lake_holds_the_rows_of_the_hive_lake() {
    let log = shared_data("apache_logs.log");
    let lakes = ["hive", "delta"].map(|format| {
        let dir = tempfile::tempdir().unwrap();
        let yaml = pipeline(dir.path(), &log, "");
        let text = std::fs::read_to_string(&yaml).unwrap();
        assert!(text.contains("\nlake:\n"));
        let text = text.replacen("\nlake:\n", &format!("\nlake:\n  format: {format}\n"), 1);
        std::fs::write(&yaml, text).unwrap();
        let out = ingest(dir.path(), &yaml);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let reports = dir.path().join("reports");
        render(dir.path(), &yaml, &reports);
        (dir, reports)
    });
    for r in REPORTS {
        let file = format!("{r}.csv");
        let [a, b] = [&lakes[0].1, &lakes[1].1].map(|d| std::fs::read(d.join(&file)).unwrap());
        assert!(a == b, "{file} differs between the lakes");
    }
    let script = format!(
        r#"
import duckdb, os
from duckdb_extensions import import_extension
import_extension("delta")
hive, delta = {hive:?}, {delta:?}
for t in {tables:?} + ["late"]:
    if not os.path.exists(f"{{hive}}/{{t}}"):
        assert not os.path.exists(f"{{delta}}/{{t}}"), t
        continue
    a = duckdb.sql(f"SELECT * EXCLUDE (dt, hour) FROM read_parquet('{{hive}}/{{t}}/**/*.parquet', hive_partitioning=true, union_by_name=true) ORDER BY ALL").fetchall()
    b = duckdb.sql(f"SELECT * EXCLUDE (dt, hour) FROM delta_scan('{{delta}}/{{t}}') ORDER BY ALL").fetchall()
    assert len(a) > 0 and a == b, (t, len(a), len(b))
    print(t, len(b))
"#,
        hive = lakes[0].0.path().join("lake").to_str().unwrap(),
        delta = lakes[1].0.path().join("lake").to_str().unwrap(),
        tables = TABLES,
    );
    let out = run_ok(python().args(["-c", &script]));
    let printed = String::from_utf8_lossy(&out.stdout);
    assert!(printed.contains("hosts_1m "), "{printed}");
}
