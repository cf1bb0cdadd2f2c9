//! A pipeline's life after its first run: the log grows between runs, runs are scheduled
//! (`end_of_input: keep | flush`), and the pipeline file is edited against the checkpoint
//! (`stream-ingest plan`, then `run`). Each test is a row of the table in issue 23, run as a
//! user would, and compares the lake with what one run over the whole input gives.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Output;
use std::time::Duration;

use arrow::array::{Array, AsArray, RecordBatch};
use arrow::datatypes::{Int32Type, Int64Type, TimestampMicrosecondType};
use e2e::*;

const MINUTE: i64 = 60_000_000;

/// The shared sample log, line by line.
fn sample() -> Vec<String> {
    let text = std::fs::read_to_string(shared_data("apache_logs.log")).unwrap();
    text.lines().map(String::from).collect()
}

/// A copy of the reference pipeline in `dir` reading `dir/access.log` into `dir/lake`,
/// edited by `edit`.
fn pipeline(dir: &Path, edit: impl Fn(String) -> String) -> PathBuf {
    let yaml = std::fs::read_to_string(workspace().join("pipelines/access-log.yaml")).unwrap();
    let yaml = yaml
        .replace("path: data/apache_logs.log", "path: access.log")
        .replace("root: out/lake", "root: lake");
    std::fs::copy(
        workspace().join("pipelines/status_codes.csv"),
        dir.join("status_codes.csv"),
    )
    .unwrap();
    let path = dir.join("pipeline.yaml");
    std::fs::write(&path, edit(yaml)).unwrap();
    path
}

fn unchanged(yaml: String) -> String {
    yaml
}

/// `stream-ingest run` in `dir` with `args`; its standard error.
fn ingest(dir: &Path, yaml: &Path, args: &[&str]) -> String {
    let out = run_ok(
        cmd("stream-ingest")
            .current_dir(dir)
            .args(["run", "-c"])
            .arg(yaml)
            .args(args),
    );
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// `stream-ingest plan` in `dir`, whatever its exit status.
fn plan(dir: &Path, yaml: &Path) -> Output {
    cmd("stream-ingest")
        .current_dir(dir)
        .args(["plan", "-c"])
        .arg(yaml)
        .output()
        .unwrap()
}

fn append(path: &Path, lines: &[String]) {
    let refs: Vec<&str> = lines.iter().map(String::as_str).collect();
    append_lines(path, &refs);
}

/// The windowed tables and the late table of a lake, as canonical CSV ("" for none).
fn lake_tables(lake: &Path) -> BTreeMap<&'static str, String> {
    let render = |dir: PathBuf| {
        if parquet_files(&dir).is_empty() {
            String::new()
        } else {
            render_table(&dir)
        }
    };
    ["status_1m", "path_1m", "late"]
        .into_iter()
        .map(|t| (t, render(lake.join(t))))
        .collect()
}

/// Every file of a lake but the writer's lock (which names the last process that held it).
fn lake_files(lake: &Path) -> Vec<(String, Vec<u8>)> {
    files(lake)
        .into_iter()
        .filter(|(name, _)| !name.ends_with("writer.lock"))
        .collect()
}

/// One run over the whole sample: what every schedule of runs must add up to.
fn one_run(lines: &[String]) -> (tempfile::TempDir, BTreeMap<&'static str, String>) {
    let dir = tempfile::tempdir().unwrap();
    let yaml = pipeline(dir.path(), unchanged);
    append(&dir.path().join("access.log"), lines);
    ingest(dir.path(), &yaml, &["-q"]);
    let tables = lake_tables(&dir.path().join("lake"));
    (dir, tables)
}

/// `status_1m` as (window start, status) → requests.
fn status_requests(lake: &Path) -> BTreeMap<(i64, Option<i32>), i64> {
    let b = read_table(&lake.join("status_1m"));
    let start = b["window_start"].as_primitive::<TimestampMicrosecondType>();
    let status = b["status"].as_primitive::<Int32Type>();
    let requests = b["requests"].as_primitive::<Int64Type>();
    (0..b.num_rows())
        .map(|i| {
            let key = (start.value(i), status.is_valid(i).then(|| status.value(i)));
            (key, requests.value(i))
        })
        .collect()
}

/// The late events `status_1m` dropped, as (window start, status) → events.
fn status_late(lake: &Path) -> BTreeMap<(i64, Option<i32>), i64> {
    let mut out = BTreeMap::new();
    if parquet_files(&lake.join("late")).is_empty() {
        return out;
    }
    let b: RecordBatch = read_table(&lake.join("late"));
    let table = b["table"].as_string::<i32>();
    let ts = b["ts"].as_primitive::<TimestampMicrosecondType>();
    let status = b["status"].as_primitive::<Int32Type>();
    for i in 0..b.num_rows() {
        if table.value(i) == "status_1m" {
            let t = ts.value(i);
            let key = (
                t - t.rem_euclid(MINUTE),
                status.is_valid(i).then(|| status.value(i)),
            );
            *out.entry(key).or_default() += 1;
        }
    }
    out
}

/// A lake of runs that flushed at each end of input equals the lake of one run, once the
/// events each run's flush made late are counted back into their windows: those events,
/// and only those, went to the late table instead.
/// Returns how many more events the runs counted late.
fn assert_equal_but_for_flushed_windows(one: &Path, runs: &Path) -> i64 {
    let (expected, late_once) = (status_requests(one), status_late(one));
    let (actual, late_runs) = (status_requests(runs), status_late(runs));
    let mut restored = actual.clone();
    for (key, n) in &late_runs {
        *restored.entry(*key).or_default() += n;
    }
    for (key, n) in &late_once {
        *restored.entry(*key).or_default() -= n;
        if restored[key] == 0 {
            restored.remove(key);
        }
    }
    assert_eq!(restored, expected);
    // The runs' own late events: those of the windows open at each end of input.
    late_runs.values().sum::<i64>() - late_once.values().sum::<i64>()
}

/// Every data file of `table` is named by its partition's `_SUCCESS` (what the batch stage
/// reads), and every marker names only files that are there: a partition a flush committed
/// and a later run added to is committed with all its files.
fn assert_markers_name_every_file(table: &Path) {
    for file in parquet_files(table) {
        let dir = file.parent().unwrap();
        let text = std::fs::read_to_string(dir.join("_SUCCESS"))
            .unwrap_or_else(|e| panic!("{}: {e}", dir.display()));
        let marker: serde_json::Value = serde_json::from_str(&text).unwrap();
        let name = file.file_name().unwrap().to_str().unwrap();
        let files: Vec<&str> = marker["files"]
            .as_array()
            .unwrap()
            .iter()
            .map(|f| f.as_str().unwrap())
            .collect();
        assert!(files.contains(&name), "{} not in {files:?}", file.display());
        for f in files {
            assert!(
                dir.join(f).is_file(),
                "{f} named in {} is missing",
                dir.display()
            );
        }
    }
}

/// The `watermark` of every `_SUCCESS` marker under `table`.
fn marker_watermarks(table: &Path) -> Vec<i64> {
    let mut out = Vec::new();
    for dt in std::fs::read_dir(table).unwrap() {
        let dt = dt.unwrap().path();
        for hour in std::fs::read_dir(&dt).unwrap() {
            let marker = hour.unwrap().path().join("_SUCCESS");
            if let Ok(text) = std::fs::read_to_string(marker) {
                let json: serde_json::Value = serde_json::from_str(&text).unwrap();
                out.push(json["watermark"].as_i64().unwrap());
            }
        }
    }
    out
}

/// Row 1: a log that grew between two runs. The appended lines count in their windows; only
/// the few events of the windows the first run's end of input flushed are late. With
/// `keep`, the two runs give exactly the lake of one.
#[test]
fn lines_appended_between_runs_count_in_their_windows() {
    let lines = sample();
    let (whole, expected) = one_run(&lines);

    for mode in ["flush", "keep"] {
        let dir = tempfile::tempdir().unwrap();
        let yaml = pipeline(dir.path(), unchanged);
        let log = dir.path().join("access.log");
        append(&log, &lines[..5_000]);
        ingest(dir.path(), &yaml, &["--end-of-input", mode]);
        // No marker records the end of time: a real watermark, or none yet.
        let watermarks = marker_watermarks(&dir.path().join("lake/status_1m"));
        assert!(
            watermarks.iter().all(|w| *w < i64::MAX / 2),
            "{watermarks:?}"
        );
        append(&log, &lines[5_000..]);
        let summary = ingest(dir.path(), &yaml, &[]);
        assert!(summary.contains("resumed from checkpoint"), "{summary}");
        let lake = dir.path().join("lake");
        if mode == "keep" {
            assert_eq!(lake_tables(&lake), expected, "{mode}");
        } else {
            let extra = assert_equal_but_for_flushed_windows(&whole.path().join("lake"), &lake);
            // Not the 4,999 late events of a watermark left at the end of time.
            assert!(extra < 20, "{extra}");
        }
    }
}

/// Cron mode: the log arrives in 20 chunks, one run after each. With `keep` (Spark's
/// `AvailableNow`) the lake is one run's; with `flush` it is too, but for the events of
/// windows flushed early, which are late and listed in the late table.
#[test]
fn twenty_runs_over_a_growing_log_give_the_lake_of_one_run() {
    let lines = sample();
    let (whole, expected) = one_run(&lines);
    for mode in ["keep", "flush"] {
        let dir = tempfile::tempdir().unwrap();
        let yaml = pipeline(dir.path(), unchanged);
        let log = dir.path().join("access.log");
        for chunk in lines.chunks(500) {
            append(&log, chunk);
            ingest(dir.path(), &yaml, &["-q", "--end-of-input", mode]);
        }
        // The last run of a `keep` schedule leaves windows open: a final flush closes them.
        ingest(dir.path(), &yaml, &["-q", "--end-of-input", "flush"]);
        let lake = dir.path().join("lake");
        if mode == "keep" {
            assert_eq!(lake_tables(&lake), expected, "{mode}");
        } else {
            let extra = assert_equal_but_for_flushed_windows(&whole.path().join("lake"), &lake);
            assert_markers_name_every_file(&lake.join("status_1m"));
            assert_markers_name_every_file(&lake.join("path_1m"));
            // Those of the two or three windows open at each of 19 ends of input (about
            // 1,000 here); a watermark left at the end of time would make 9,500 late.
            assert!(
                extra > 0 && extra < 2_000,
                "{extra} events late because of flushes"
            );
        }
    }
}

/// The same cron schedule with the lake on S3 (a real S3-compatible server).
#[test]
fn cron_runs_with_keep_on_s3_give_the_lake_of_one_run() {
    let lines = sample();
    let (_whole, expected) = one_run(&lines);
    let s3 = S3Server::start();
    s3.create_bucket("lake");
    let dir = tempfile::tempdir().unwrap();
    let yaml = pipeline(dir.path(), unchanged);
    let log = dir.path().join("access.log");
    for chunk in lines.chunks(2_000) {
        append(&log, chunk);
        run_ok(
            cmd("stream-ingest")
                .current_dir(dir.path())
                .envs(s3.env())
                .args([
                    "run",
                    "-q",
                    "--end-of-input",
                    "keep",
                    "--lake",
                    "s3://lake/life",
                    "-c",
                ])
                .arg(&yaml),
        );
    }
    run_ok(
        cmd("stream-ingest")
            .current_dir(dir.path())
            .envs(s3.env())
            .args(["run", "-q", "--lake", "s3://lake/life", "-c"])
            .arg(&yaml),
    );
    let local = dir.path().join("downloaded");
    s3.download("lake", "life", &local);
    assert_eq!(lake_tables(&local), expected);
}

/// Daily rotated files in a directory, one run a day (`source.path` names the directory):
/// each run reads the new file (and what was appended to the older ones), and the lake is
/// that of one run over their concatenation.
#[test]
fn daily_files_in_a_directory_one_run_a_day_give_the_lake_of_one_run() {
    let lines = sample();
    let (_whole, expected) = one_run(&lines);
    let dir = tempfile::tempdir().unwrap();
    // Cron mode from the file itself: `end_of_input: keep`.
    let yaml = pipeline(dir.path(), |y| {
        y.replace("path: access.log", "path: logs")
            .replace("\nlate_events:", "\nend_of_input: keep\n\nlate_events:")
    });
    let logs = dir.path().join("logs");
    std::fs::create_dir_all(&logs).unwrap();
    // Contiguous runs of lines by day, as a daily rotation cuts them.
    let day = |l: &String| l.split('[').nth(1).map(|t| t[..11].to_string());
    let mut files: Vec<(String, Vec<String>)> = Vec::new();
    for l in &lines {
        let d = day(l).unwrap_or_default();
        match files.last_mut() {
            Some((last, chunk)) if *last == d || d.is_empty() => chunk.push(l.clone()),
            _ => files.push((d, vec![l.clone()])),
        }
    }
    assert!(files.len() >= 4, "{}", files.len());
    for (i, (_, chunk)) in files.iter().enumerate() {
        append(&logs.join(format!("access.log-{i:03}")), chunk);
        // Files written within one clock tick must not look simultaneous.
        std::thread::sleep(Duration::from_millis(20));
        let summary = ingest(dir.path(), &yaml, &[]);
        assert!(
            i == 0 || summary.contains("resumed from checkpoint"),
            "{summary}"
        );
    }
    // A run with nothing new reads nothing; the last windows are flushed.
    let summary = ingest(dir.path(), &yaml, &["--end-of-input", "flush"]);
    assert!(
        summary.starts_with("stream-ingest: access-log: 10000 lines read"),
        "{summary}"
    );
    assert_eq!(lake_tables(&dir.path().join("lake")), expected);
}

/// A report over the column an edit adds: its files differ (old ones lack it).
const MAX_BYTES_SQL: &str = "SELECT dt, COUNT(max_bytes) AS windows, MAX(max_bytes) AS max_bytes, SUM(requests) AS requests FROM status_1m GROUP BY dt ORDER BY dt";

/// The YAML of the reference pipeline with one more aggregate in `status_1m`, and a report
/// that reads it.
fn with_max_bytes(yaml: String) -> String {
    yaml.replace(
        "      - { name: unique_hosts, fn: count_distinct, column: host }\n",
        "      - { name: unique_hosts, fn: count_distinct, column: host }\n      - { name: max_bytes, fn: max, column: bytes }\n",
    ) + &format!("\n  - name: daily_max_bytes\n    sql: \"{MAX_BYTES_SQL}\"\n")
}

fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// Row 2: a `tail` pipeline stopped, an aggregate added, restarted. `plan` says what
/// happens; the windows open at the restart carry NULL for it, every later one its value,
/// and the rest of the table is what it would have been.
#[test]
fn an_aggregate_added_to_a_followed_log_starts_with_the_next_windows() {
    let lines = sample();
    let dir = tempfile::tempdir().unwrap();
    let yaml = tail_pipeline(dir.path(), "access.log", "1s");
    let log = dir.path().join("logs/access.log");
    append(&log, &lines[..5_000]);
    settle_and_stop(start_tail(dir.path(), &yaml));

    let text = std::fs::read_to_string(&yaml).unwrap();
    std::fs::write(&yaml, with_max_bytes(text)).unwrap();
    let planned = plan(dir.path(), &yaml);
    assert!(planned.status.success(), "{}", stderr(&planned));
    let printed = stdout(&planned);
    assert!(
        printed.contains("status_1m  adds `max_bytes`: rows of the ")
            && printed.contains("path_1m    unchanged: continues")
            && printed.contains("the next run applies these changes"),
        "{printed}"
    );

    let child = start_tail(dir.path(), &yaml);
    std::thread::sleep(Duration::from_millis(600));
    append(&log, &lines[5_000..]);
    let summary = settle_and_stop(child);
    assert!(summary.contains("resumed from checkpoint"), "{summary}");

    // The same lines followed in one go with the edited file.
    let reference = tempfile::tempdir().unwrap();
    let ref_yaml = tail_pipeline(reference.path(), "access.log", "1s");
    let text = std::fs::read_to_string(&ref_yaml).unwrap();
    std::fs::write(&ref_yaml, with_max_bytes(text)).unwrap();
    append(&reference.path().join("logs/access.log"), &lines);
    settle_and_stop(start_tail(reference.path(), &ref_yaml));

    let actual = read_table(&dir.path().join("lake/status_1m"));
    let expected = read_table(&reference.path().join("lake/status_1m"));
    let max = |b: &RecordBatch| -> BTreeMap<(i64, i32), Option<i64>> {
        let start = b["window_start"].as_primitive::<TimestampMicrosecondType>();
        let status = b["status"].as_primitive::<Int32Type>();
        let m = b["max_bytes"].as_primitive::<Int64Type>();
        (0..b.num_rows())
            .map(|i| {
                (
                    (start.value(i), status.value(i)),
                    m.is_valid(i).then(|| m.value(i)),
                )
            })
            .collect()
    };
    let (actual_max, expected_max) = (max(&actual), max(&expected));
    assert_eq!(
        actual_max.keys().collect::<Vec<_>>(),
        expected_max.keys().collect::<Vec<_>>()
    );
    // NULL up to some window, then every value as in one run.
    let first_value = actual_max
        .iter()
        .find(|(_, v)| v.is_some())
        .map(|(k, _)| k.0)
        .expect("windows opened after the change carry the new aggregate");
    for (key, value) in &actual_max {
        if key.0 < first_value {
            assert_eq!(*value, None, "{key:?}");
        } else {
            assert_eq!(value, &expected_max[key], "{key:?}");
        }
    }
    let nulls = actual_max.values().filter(|v| v.is_none()).count();
    assert!(nulls > 100 && nulls < actual_max.len() - 100, "{nulls}");
    // Every other column is one run's.
    let others = |b: &RecordBatch| {
        let keep: Vec<usize> = (0..b.num_columns())
            .filter(|&i| b.schema().field(i).name() != "max_bytes")
            .collect();
        b.project(&keep).unwrap()
    };
    let (a, e) = (others(&actual), others(&expected));
    assert_eq!(e.num_rows(), a.num_rows());
    assert_eq!(
        render_rows(&a),
        render_rows(&e),
        "status_1m without max_bytes"
    );

    // batch-analyze reads the table with NULL where old files lack the column, as DuckDB
    // does with `union_by_name`.
    let report = run_ok(
        cmd("batch-analyze")
            .current_dir(dir.path())
            .args(["run", "-q", "--include-open", "--report", "daily_max_bytes"])
            .args(["--format", "csv", "-c"])
            .arg(&yaml),
    );
    let duckdb = run_ok(python().current_dir(dir.path()).args([
        "-c",
        &format!(
            "import duckdb\nfor r in duckdb.sql(\"{}\").fetchall(): print(','.join('' if x is None else str(x) for x in r))",
            MAX_BYTES_SQL.replace(
                "FROM status_1m",
                "FROM read_parquet('lake/status_1m/**/*.parquet', hive_partitioning=true, union_by_name=true)"
            )
        ),
    ]));
    let ours = stdout(&report);
    let ours: Vec<&str> = ours.lines().skip(1).collect();
    let theirs = stdout(&duckdb);
    assert_eq!(ours, theirs.lines().collect::<Vec<_>>());
    assert!(ours.len() >= 4, "{ours:?}");
    // The declared reports over the table run too, and `validate` passes.
    run_ok(
        cmd("batch-analyze")
            .current_dir(dir.path())
            .args(["run", "-q", "--include-open", "--out", "reports", "-c"])
            .arg(&yaml),
    );
    assert!(dir.path().join("reports/daily_status_class.csv").is_file());
    run_ok(
        cmd("batch-analyze")
            .current_dir(dir.path())
            .args(["validate", "-c"])
            .arg(&yaml),
    );
}

/// Rows as sorted lines of their debug form (the order of files does not matter).
fn render_rows(b: &RecordBatch) -> Vec<String> {
    let mut rows: Vec<String> = (0..b.num_rows())
        .map(|i| {
            b.columns()
                .iter()
                .map(|c| format!("{:?}", c.slice(i, 1)))
                .collect::<Vec<_>>()
                .join("|")
        })
        .collect();
    rows.sort();
    rows
}

/// Row 3: a window changed against the checkpoint is refused by `plan` and by `run` (exit
/// 2, file, line, table and field, the ways out), and the lake is left as it was.
#[test]
fn a_changed_window_is_refused_with_the_ways_out() {
    let lines = sample();
    let dir = tempfile::tempdir().unwrap();
    let yaml = pipeline(dir.path(), unchanged);
    let log = dir.path().join("access.log");
    append(&log, &lines[..5_000]);
    ingest(dir.path(), &yaml, &["-q", "--end-of-input", "keep"]);
    let before = lake_files(&dir.path().join("lake"));

    let edited = std::fs::read_to_string(&yaml).unwrap().replacen(
        "window: { kind: tumbling, size: 1m }",
        "window: { kind: tumbling, size: 5m }",
        1,
    );
    std::fs::write(&yaml, edited).unwrap();
    append(&log, &lines[5_000..]);
    let planned = plan(dir.path(), &yaml);
    let run = cmd("stream-ingest")
        .current_dir(dir.path())
        .args(["run", "-c"])
        .arg(&yaml)
        .output()
        .unwrap();
    for out in [&planned, &run] {
        assert_eq!(out.status.code(), Some(2), "{}", stderr(out));
        let e = stderr(out);
        assert!(
            e.contains("pipeline.yaml:")
                && e.contains(
                    ": tables[0].window: window of table `status_1m` changed since checkpoint"
                )
                && e.contains("(was `tumbling 1m`, now `tumbling 5m`)")
                && e.contains("a new name")
                && e.contains("`run --rebuild status_1m`"),
            "{e}"
        );
    }
    assert!(stdout(&planned).contains("the next run would refuse to start"));
    let after = lake_files(&dir.path().join("lake"));
    assert!(after == before, "the refused run changed the lake");
}

/// Row 4: a new table. It starts at the checkpoint's position; the other tables go on
/// untouched (exactly one run's), and a removed table's files stay.
#[test]
fn a_new_table_starts_now_and_the_others_go_on() {
    let host_5m = "\n  - name: host_5m\n    window: { kind: tumbling, size: 5m }\n    key: [host]\n    aggregates:\n      - { name: requests, fn: count }\n";
    let with_table = |yaml: String| yaml.replace("\nlake:\n", &format!("{host_5m}\nlake:\n"));
    let lines = sample();
    let (_whole, expected) = one_run(&lines);
    let dir = tempfile::tempdir().unwrap();
    let yaml = pipeline(dir.path(), unchanged);
    let log = dir.path().join("access.log");
    append(&log, &lines[..5_000]);
    ingest(dir.path(), &yaml, &["-q", "--end-of-input", "keep"]);

    std::fs::write(&yaml, with_table(std::fs::read_to_string(&yaml).unwrap())).unwrap();
    let planned = plan(dir.path(), &yaml);
    assert!(planned.status.success(), "{}", stderr(&planned));
    assert!(
        stdout(&planned).contains("host_5m    new table: starts at the checkpoint's position"),
        "{}",
        stdout(&planned)
    );
    append(&log, &lines[5_000..]);
    ingest(dir.path(), &yaml, &["-q"]);
    let lake = dir.path().join("lake");
    assert_eq!(lake_tables(&lake), expected);

    // host_5m: the windows after the restart's first are one run's with the new file.
    let reference = tempfile::tempdir().unwrap();
    let ref_yaml = pipeline(reference.path(), with_table);
    append(&reference.path().join("access.log"), &lines);
    ingest(reference.path(), &ref_yaml, &["-q"]);
    let actual = read_table(&lake.join("host_5m"));
    let full = read_table(&reference.path().join("lake/host_5m"));
    let first = actual["window_start"]
        .as_primitive::<TimestampMicrosecondType>()
        .values()
        .iter()
        .min()
        .copied()
        .unwrap();
    let after = |b: &RecordBatch| -> Vec<String> {
        let start = b["window_start"].as_primitive::<TimestampMicrosecondType>();
        let keep = arrow::array::BooleanArray::from_iter(
            (0..b.num_rows()).map(|i| Some(start.value(i) > first)),
        );
        render_rows(&arrow::compute::filter_record_batch(b, &keep).unwrap())
    };
    let (a, e) = (after(&actual), after(&full));
    assert!(a.len() > 100, "{}", a.len());
    assert_eq!(a, e);
    // Its first window saw only the events after the checkpoint: fewer, never more.
    assert!(actual.num_rows() < full.num_rows());

    // Removing it again: its state goes, its files stay.
    let without = std::fs::read_to_string(&yaml)
        .unwrap()
        .replace(host_5m, "\n");
    std::fs::write(&yaml, without).unwrap();
    let planned = plan(dir.path(), &yaml);
    assert!(
        stdout(&planned)
            .contains("host_5m    removed: its state is dropped; its files in the lake stay"),
        "{}",
        stdout(&planned)
    );
    let host_files = parquet_files(&lake.join("host_5m"));
    append(&log, &lines[..10]);
    ingest(dir.path(), &yaml, &["-q"]);
    assert_eq!(parquet_files(&lake.join("host_5m")), host_files);
}

/// Row 3's way out: `--rebuild status_1m` recomputes the table with its new window from the
/// file, then the run goes on; the other tables are what they would have been.
fn start_with_a_changed_window(dir: &Path, lines: &[String]) -> PathBuf {
    let yaml = pipeline(dir, unchanged);
    let log = dir.join("access.log");
    append(&log, &lines[..5_000]);
    ingest(dir, &yaml, &["-q", "--end-of-input", "keep"]);
    std::fs::write(&yaml, five_minutes(std::fs::read_to_string(&yaml).unwrap())).unwrap();
    append(&log, &lines[5_000..]);
    yaml
}

fn five_minutes(yaml: String) -> String {
    yaml.replacen(
        "window: { kind: tumbling, size: 1m }",
        "window: { kind: tumbling, size: 5m }",
        1,
    )
}

/// One run over the whole sample with status_1m's window at five minutes.
fn rebuilt_reference(lines: &[String]) -> BTreeMap<&'static str, String> {
    let dir = tempfile::tempdir().unwrap();
    let yaml = pipeline(dir.path(), five_minutes);
    append(&dir.path().join("access.log"), lines);
    ingest(dir.path(), &yaml, &["-q"]);
    lake_tables(&dir.path().join("lake"))
}

#[test]
fn a_rebuilt_table_is_recomputed_and_the_others_go_on() {
    let lines = sample();
    let (_whole, unchanged_tables) = one_run(&lines);
    let expected = rebuilt_reference(&lines);
    let dir = tempfile::tempdir().unwrap();
    let yaml = start_with_a_changed_window(dir.path(), &lines);
    let planned = cmd("stream-ingest")
        .current_dir(dir.path())
        .args(["plan", "--rebuild", "status_1m", "-c"])
        .arg(&yaml)
        .output()
        .unwrap();
    assert!(planned.status.success(), "{}", stderr(&planned));
    assert!(
        stdout(&planned).contains("status_1m  rebuilt: recomputed from the start of the input"),
        "{}",
        stdout(&planned)
    );
    let summary = ingest(dir.path(), &yaml, &["--rebuild", "status_1m"]);
    assert!(summary.contains("resumed from checkpoint"), "{summary}");
    let lake = dir.path().join("lake");
    assert_eq!(render_table(&lake.join("status_1m")), expected["status_1m"]);
    assert_eq!(
        render_table(&lake.join("path_1m")),
        unchanged_tables["path_1m"]
    );
    // The next runs go on with the new window, no plan change left.
    let planned = plan(dir.path(), &yaml);
    assert!(
        stdout(&planned).contains("nothing changed"),
        "{}",
        stdout(&planned)
    );

    // A source that cannot be read again is refused, with the reason.
    let out = cmd("stream-ingest")
        .current_dir(dir.path())
        .args(["run", "--input", "-", "--rebuild", "status_1m", "-c"])
        .arg(&yaml)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("standard input cannot be read again"),
        "{}",
        stderr(&out)
    );
}

/// `kill -9` at random instants of a rebuild (and right after it removed the old files,
/// before the new markers), then the same command again: the lake is that of a rebuild
/// that was never interrupted.
#[test]
fn kill_9_during_a_rebuild_loses_and_doubles_nothing() {
    let lines = sample();
    let (_whole, unchanged_tables) = one_run(&lines);
    let expected = rebuilt_reference(&lines);
    let dir = tempfile::tempdir().unwrap();
    let yaml = start_with_a_changed_window(dir.path(), &lines);
    let seed = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .subsec_nanos() as u64;
    eprintln!("seed {seed}");
    let rebuild = |extra: &[&str]| {
        let mut c = cmd("stream-ingest");
        c.current_dir(dir.path())
            .args([
                "run",
                "-q",
                "--rebuild",
                "status_1m",
                "--checkpoint-interval",
                "1s",
            ])
            .args(extra)
            .arg("-c")
            .arg(&yaml);
        c
    };
    let crashed = rebuild(&[])
        .env("STREAM_INGEST_CRASH_AT", "after-rebuild-retract")
        .output()
        .unwrap();
    assert!(!crashed.status.success(), "{}", stderr(&crashed));
    let mut kills = 0;
    for i in 0..4 {
        let mut child = rebuild(&["--max-lines-per-sec", "4000"]).spawn().unwrap();
        std::thread::sleep(Duration::from_millis(200 + (seed * (i + 7)) % 2_500));
        if child.try_wait().unwrap().is_none() {
            child.kill().unwrap();
            kills += 1;
        }
        child.wait().unwrap();
    }
    assert!(kills >= 2, "{kills} kills (seed {seed})");
    run_ok(&mut rebuild(&[]));
    let lake = dir.path().join("lake");
    assert_eq!(
        render_table(&lake.join("status_1m")),
        expected["status_1m"],
        "seed {seed}"
    );
    assert_eq!(
        render_table(&lake.join("path_1m")),
        unchanged_tables["path_1m"],
        "seed {seed}"
    );
    assert!(parquet_files(&lake.join("_staging")).is_empty());
}

/// A Delta lake through the same edit: two cron runs (`keep`), an aggregate added between
/// them. The second run's commit adds the column to the tables' Delta schema, so DuckDB's
/// `delta_scan` (an independent reader) gives the Hive lake's rows read with
/// `union_by_name`: NULL for the new column in the old files. The batch stage's reports over
/// the two lakes are the same.
#[test]
fn an_aggregate_added_to_a_delta_lake_widens_its_schema() {
    let lines = sample();
    let lakes = ["hive", "delta"].map(|format| {
        let dir = tempfile::tempdir().unwrap();
        let yaml = pipeline(dir.path(), |y| {
            y.replacen(
                "  partition_time: hour",
                &format!("  format: {format}\n  partition_time: hour"),
                1,
            )
        });
        let log = dir.path().join("access.log");
        append(&log, &lines[..5_000]);
        ingest(dir.path(), &yaml, &["--end-of-input", "keep"]);
        let text = std::fs::read_to_string(&yaml).unwrap();
        std::fs::write(&yaml, with_max_bytes(text)).unwrap();
        append(&log, &lines[5_000..]);
        ingest(dir.path(), &yaml, &[]);
        let out = dir.path().join("reports");
        run_ok(
            cmd("batch-analyze")
                .current_dir(dir.path())
                .args(["run", "-q", "-c"])
                .arg(&yaml)
                .args(["--format", "csv", "--out"])
                .arg(&out),
        );
        let report = std::fs::read_to_string(out.join("daily_max_bytes.csv")).unwrap();
        (dir, report)
    });
    assert_eq!(lakes[0].1, lakes[1].1, "daily_max_bytes");
    let script = format!(
        r#"
import duckdb
from duckdb_extensions import import_extension
import_extension("delta")
hive, delta = {hive:?}, {delta:?}
cols = "* EXCLUDE (dt, hour)"
a = duckdb.sql(f"SELECT {{cols}} FROM read_parquet('{{hive}}/status_1m/**/*.parquet', hive_partitioning=true, union_by_name=true) ORDER BY ALL").fetchall()
b = duckdb.sql(f"SELECT {{cols}} FROM delta_scan('{{delta}}/status_1m') ORDER BY ALL").fetchall()
assert a == b, (len(a), len(b))
n, with_value = duckdb.sql(f"SELECT count(*), count(max_bytes) FROM delta_scan('{{delta}}/status_1m')").fetchone()
assert 0 < with_value < n, (n, with_value)
print(n, with_value)
"#,
        hive = lakes[0].0.path().join("lake").to_str().unwrap(),
        delta = lakes[1].0.path().join("lake").to_str().unwrap(),
    );
    run_ok(python().args(["-c", &script]));
}

/// `batch-analyze run` of a Delta lake into `dir/<out>` with `args` (and `-v`): the CSV
/// reports, and the `--as-of` its summary prints.
fn delta_reports(dir: &Path, yaml: &Path, out: &str, args: &[&str]) -> (String, String) {
    let run = run_ok(
        cmd("batch-analyze")
            .current_dir(dir)
            .args(["run", "-v", "-c"])
            .arg(yaml)
            .args(["--format", "csv", "--out", out])
            .args(args),
    );
    let summary = stderr(&run);
    let as_of = summary
        .split("tables read: --as-of ")
        .nth(1)
        .and_then(|s| s.split_whitespace().next())
        .unwrap_or_else(|| panic!("no versions in the summary: {summary}"))
        .to_string();
    let mut reports = String::new();
    for (name, data) in files(&dir.join(out)) {
        reports += &format!("{name}:\n{}", String::from_utf8_lossy(&data));
    }
    (reports, as_of)
}

#[test]
fn as_of_gives_the_reports_of_an_older_delta_lake_after_more_data_arrived() {
    let lines = sample();
    let dir = tempfile::tempdir().unwrap();
    let yaml = pipeline(dir.path(), |y| {
        y.replacen(
            "  partition_time: hour",
            "  format: delta\n  partition_time: hour",
            1,
        )
    });
    let log = dir.path().join("access.log");
    append(&log, &lines[..4_000]);
    ingest(dir.path(), &yaml, &["--end-of-input", "keep"]);
    let (then, versions) = delta_reports(dir.path(), &yaml, "r1", &[]);
    std::thread::sleep(Duration::from_millis(1100));
    let instant = chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true);
    std::thread::sleep(Duration::from_millis(1100));
    append(&log, &lines[4_000..]);
    ingest(dir.path(), &yaml, &[]);
    // A run that dies after writing the report's new files, before their commit.
    let crashed = cmd("batch-analyze")
        .current_dir(dir.path())
        .args(["run", "-q", "-c"])
        .arg(&yaml)
        .env("BATCH_ANALYZE_CRASH_AT", "after-stage")
        .output()
        .unwrap();
    assert!(!crashed.status.success());
    let (now, newer) = delta_reports(dir.path(), &yaml, "r2", &[]);
    assert_ne!(then, now, "more data changed nothing");
    assert_ne!(versions, newer);
    // The report's days in the lake were replaced in one commit, and read as the report.
    let script = format!(
        r#"
import csv, duckdb, glob, json
from duckdb_extensions import import_extension
import_extension("delta")
table, report = {table:?}, {report:?}
last = sorted(glob.glob(f"{{table}}/_delta_log/*.json"))[-1]
kinds = [next(iter(json.loads(l))) for l in open(last)]
assert "add" in kinds and "remove" in kinds, kinds
rows = duckdb.sql(f"SELECT dt, class, requests FROM delta_scan('{{table}}') ORDER BY ALL").fetchall()
want = sorted((r["dt"], r["class"], int(r["requests"])) for r in csv.DictReader(open(report)))
assert [tuple(map(str, r)) for r in rows] == [tuple(map(str, r)) for r in want], (rows[:3], want[:3])
print(len(rows))
"#,
        table = dir
            .path()
            .join("lake/reports/daily_status_class")
            .to_str()
            .unwrap(),
        report = dir
            .path()
            .join("r2/daily_status_class.csv")
            .to_str()
            .unwrap(),
    );
    run_ok(python().args(["-c", &script]));

    let report_table = dir.path().join("lake/reports");
    let reports_before = lake_files(&report_table);
    // The reports' states (their locks name the last run that held them).
    let states = || {
        let mut f = lake_files(&dir.path().join("lake/_state"));
        f.retain(|(name, _)| name.ends_with(".json"));
        f
    };
    let state_before = states();
    let (by_versions, again) = delta_reports(dir.path(), &yaml, "r3", &["--as-of", &versions]);
    assert_eq!(by_versions, then, "--as-of {versions}");
    assert_eq!(again, versions);
    let (by_instant, _) = delta_reports(dir.path(), &yaml, "r4", &["--as-of", &instant]);
    assert_eq!(by_instant, then, "--as-of {instant}");
    assert_eq!(
        lake_files(&report_table),
        reports_before,
        "--as-of wrote a report into the lake"
    );
    assert!(states() == state_before, "--as-of wrote state");
    let (newest, _) = delta_reports(dir.path(), &yaml, "r5", &[]);
    assert_eq!(newest, now);

    // A version the table does not have, and a lake that keeps no versions: exit 2.
    let refused = |yaml: &Path, as_of: &str| {
        let out = cmd("batch-analyze")
            .current_dir(dir.path())
            .args(["run", "-c"])
            .arg(yaml)
            .args(["--as-of", as_of])
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
        stderr(&out)
    };
    let e = refused(&yaml, "status_1m=99999");
    assert!(
        e.contains("status_1m has no version 99999: its newest is"),
        "{e}"
    );
    let e = refused(&yaml, "nosuch=1");
    assert!(e.contains("no lake table nosuch"), "{e}");
    let hive = dir.path().join("hive.yaml");
    std::fs::write(
        &hive,
        std::fs::read_to_string(&yaml)
            .unwrap()
            .replace("  format: delta\n", ""),
    )
    .unwrap();
    let e = refused(&hive, "3");
    assert!(e.contains("`lake.format: hive`"), "{e}");
}
