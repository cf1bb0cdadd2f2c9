//! The stream stage on Kafka: a real broker (`tansu`) on 127.0.0.1, a topic of four
//! partitions keyed by client address, one member and then two, one of them killed with
//! `kill -9` mid-stream. In every case the lake gives the reports of the file-source run of
//! the same lines, byte for byte, and its windowed tables merged by window and key (DuckDB,
//! an outside reader) equal the file-source tables.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use e2e::*;

/// A report that reads a windowed table's rows as they are: through `batch-analyze`'s
/// merging view, a Kafka lake must give the rows of a one-partition lake.
const ROWS_REPORT: &str = "
  - name: status_rows
    sql: |
      SELECT window_start, status, requests, bytes, unique_hosts
      FROM status_1m ORDER BY window_start, status
";

/// The file-source pipeline with the same extra report, in `dir/file.yaml`.
fn file_pipeline(dir: &Path) -> PathBuf {
    let yaml = std::fs::read_to_string(workspace().join("pipelines/access-log.yaml")).unwrap();
    let yaml = format!("{yaml}{ROWS_REPORT}").replace("root: out/lake", "root: file-lake");
    std::fs::copy(
        workspace().join("pipelines/status_codes.csv"),
        dir.join("status_codes.csv"),
    )
    .unwrap();
    let path = dir.join("file.yaml");
    std::fs::write(&path, yaml).unwrap();
    path
}

/// Produces `log` keyed by host into four partitions, one record per batch: tansu 0.6
/// answers a fetch at an offset inside a batch with the *next* batch, so a member resuming
/// mid-batch would never see the rest of it (Apache Kafka returns the batch holding the
/// offset). The member warns when a partition does not start at its checkpoint's offset.
fn produce(dir: &Path, yaml: &Path, log: &Path) {
    produce_batched(dir, yaml, log, 1);
}

fn produce_batched(dir: &Path, yaml: &Path, log: &Path, batch_records: u32) {
    run_ok(
        cmd("stream-ingest")
            .current_dir(dir)
            .args(["produce", "-q", "-c"])
            .arg(yaml)
            .arg("--input")
            .arg(log)
            .args(["--key", "host", "--partitions", "4", "--batch-records"])
            .arg(batch_records.to_string()),
    );
}

fn member(dir: &Path, yaml: &Path, extra: &[&str]) -> Command {
    let mut c = cmd("stream-ingest");
    c.current_dir(dir)
        .args(["run", "-c"])
        .arg(yaml)
        .args(["--checkpoint-interval", "300ms"])
        .args(extra)
        .env("RUST_LOG", "stream_ingest::member=info")
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    c
}

/// The reports of a pipeline's lake, as CSV files.
fn reports(dir: &Path, yaml: &Path, lake: &str, out: &str) -> Vec<(String, String)> {
    run_ok(
        cmd("batch-analyze")
            .current_dir(dir)
            .args(["run", "-q", "-c"])
            .arg(yaml)
            .args(["--lake", lake, "--out", out, "--format", "csv"]),
    );
    ["daily_status_class", "top_paths", "status_rows"]
        .iter()
        .map(|r| {
            let text = std::fs::read_to_string(dir.join(out).join(format!("{r}.csv"))).unwrap();
            (r.to_string(), text)
        })
        .collect()
}

/// A windowed table merged by window and key, read by DuckDB.
fn merged(lake: &Path) -> String {
    // A Delta table's files are those of its newest version (DuckDB's `delta_scan`).
    let (setup, scan) = if lake.join("status_1m/_delta_log").is_dir() {
        (
            "from duckdb_extensions import import_extension\nimport_extension('delta')\n",
            format!("delta_scan('{}/{{t}}')", lake.display()),
        )
    } else {
        (
            "",
            format!(
                "read_parquet('{}/{{t}}/**/*.parquet', hive_partitioning=1)",
                lake.display()
            ),
        )
    };
    let code = format!(
        "import duckdb\n{setup}for t, k, a in [('status_1m', 'status', ['requests', 'bytes', 'unique_hosts']), ('path_1m', 'path', ['requests', 'bytes'])]:\n    sums = ', '.join(f'SUM({{c}})' for c in a)\n    rows = duckdb.sql(f\"SELECT window_start, {{k}}, {{sums}} FROM {scan} GROUP BY ALL ORDER BY ALL\").fetchall()\n    print(t, len(rows))\n    for r in rows:\n        print(r)"
    );
    let out = run_ok(python().args(["-c", &code]));
    String::from_utf8(out.stdout).unwrap()
}

/// Asserts the Kafka lake gives the file-source lake's reports and merged tables; `context`
/// (the members' logs) is printed when it does not.
fn assert_same_as_file_run(dir: &Path, log: &Path, kafka_yaml: &Path, context: &str) {
    let file_yaml = file_pipeline(dir);
    run_ok(
        cmd("stream-ingest")
            .current_dir(dir)
            .args(["run", "-q", "-c"])
            .arg(&file_yaml)
            .arg("--input")
            .arg(log),
    );
    let expected = reports(dir, &file_yaml, "file-lake", "file-reports");
    let actual = reports(dir, kafka_yaml, "lake", "kafka-reports");
    for ((name, e), (_, a)) in expected.iter().zip(&actual) {
        assert!(
            e == a,
            "report {name} differs from the file-source run:\n{e}\n---\n{a}\n--- members:\n{context}"
        );
    }
    let (e, a) = (merged(&dir.join("file-lake")), merged(&dir.join("lake")));
    assert!(
        e == a,
        "merged tables differ from the file-source run\n--- members:\n{context}"
    );
    // Nothing staged is left, and every unit wrote under its own names.
    assert!(parquet_files(&dir.join("lake/_staging")).is_empty());
    let files = parquet_files(&dir.join("lake/status_1m"));
    for p in ["-p0-", "-p1-", "-p2-", "-p3-"] {
        assert!(
            files.iter().any(|f| f.to_string_lossy().contains(p)),
            "no file of unit {p}"
        );
    }
}

/// A log whose events are never behind the newest one by more than the pipeline's
/// out-of-orderness (60 s): lateness is judged per partition, so a late event of the
/// file-source run might not be late in its partition, and the tables would differ.
fn without_late_lines(dir: &Path, log: &Path) -> PathBuf {
    let out = dir.join("in-order.log");
    let code = format!(
        "import re, datetime\nmax_ts = None\nrx = re.compile(rb'\\[(\\d\\d/\\w\\w\\w/\\d{{4}}:\\d\\d:\\d\\d:\\d\\d [+-]\\d{{4}})\\]')\nwith open('{}', 'rb') as f, open('{}', 'wb') as o:\n    for line in f:\n        m = rx.search(line)\n        if m:\n            try:\n                ts = datetime.datetime.strptime(m.group(1).decode(), '%d/%b/%Y:%H:%M:%S %z').timestamp()\n            except ValueError:\n                ts = None\n            if ts is not None:\n                if max_ts is not None and ts < max_ts - 60:\n                    continue\n                max_ts = ts if max_ts is None else max(max_ts, ts)\n        o.write(line)",
        log.display(),
        out.display()
    );
    run_ok(python().args(["-c", &code]));
    out
}

/// Waits until the four units of the topic have posted on the commit board (each has
/// checkpointed some of its partition).
fn wait_for_four_units(dir: &Path) {
    let units = dir.join("lake/_checkpoints/access-log-kafka/units");
    let deadline = Instant::now() + Duration::from_secs(60);
    while std::fs::read_dir(&units).map_or(0, |d| d.count()) < 4 {
        assert!(Instant::now() < deadline, "the four units never posted");
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn wait_output(child: Child, what: &str) -> String {
    let out = child.wait_with_output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr).to_string();
    assert!(out.status.success(), "{what} failed: {err}");
    err
}

#[test]
fn one_member_reads_the_sample_log_into_the_reports_of_the_file_source() {
    let broker = KafkaBroker::start();
    let dir = tempfile::tempdir().unwrap();
    let yaml = kafka_pipeline(dir.path(), &broker.brokers, "sample", ROWS_REPORT);
    let log = shared_data("apache_logs.log");
    produce(dir.path(), &yaml, &log);
    let err = wait_output(
        member(dir.path(), &yaml, &[]).spawn().unwrap(),
        "the member",
    );
    assert!(
        err.contains("10000 lines read, 9999 parsed, 1 invalid, 0 late"),
        "{err}"
    );
    assert_same_as_file_run(dir.path(), &log, &yaml, &err);
    // Each unit has its checkpoints and dead letters; a rerun reads nothing new.
    for p in 0..4 {
        assert!(
            dir.path()
                .join(format!("lake/_checkpoints/access-log-kafka/p{p}"))
                .is_dir()
        );
    }
    let before = snapshot_files(&dir.path().join("lake"));
    let err = wait_output(member(dir.path(), &yaml, &[]).spawn().unwrap(), "the rerun");
    assert!(err.contains("0 rows in 0 files"), "{err}");
    assert_eq!(before, snapshot_files(&dir.path().join("lake")));
}

#[test]
fn one_member_reads_a_million_generated_lines_into_the_reports_of_the_file_source() {
    let broker = KafkaBroker::start();
    let dir = tempfile::tempdir().unwrap();
    let yaml = kafka_pipeline(dir.path(), &broker.brokers, "million", ROWS_REPORT);
    let generated = dir.path().join("gen.log");
    run_ok(
        cmd("stream-ingest")
            .args([
                "gen",
                "--lines",
                "1000000",
                "--seed",
                "9",
                "--events-per-second",
                "20",
            ])
            .arg("--out")
            .arg(&generated),
    );
    let log = without_late_lines(dir.path(), &generated);
    // Big batches: one member reads every partition from its start, never resuming inside
    // a batch (see `produce`).
    produce_batched(dir.path(), &yaml, &log, 10_000);
    let err = wait_output(
        member(dir.path(), &yaml, &[]).spawn().unwrap(),
        "the member",
    );
    assert!(!err.contains("records missing"), "{err}");
    // Every line produced is read once (an end short of the high watermark shows here).
    let lines = std::fs::read(&log)
        .unwrap()
        .iter()
        .filter(|&&b| b == b'\n')
        .count();
    assert!(
        err.contains(&format!(" {lines} lines read,")),
        "the member did not read the {lines} lines produced:\n{err}"
    );
    assert_same_as_file_run(dir.path(), &log, &yaml, &err);
}

/// tansu 0.6 answers ListOffsets(latest) with the offset after the first record of a
/// partition's newest batch, not its high watermark. A bounded member that ended there would
/// leave the rest of that batch unread (paced reading makes it look at its end while that
/// batch is half read), and a rebuild that checked its checkpoint's offsets against it would
/// call the topic a new one. Both take the high watermark of their first fetch answer.
#[test]
fn big_batches_are_read_to_their_last_record_by_a_paced_member_and_a_rebuild() {
    let broker = KafkaBroker::start();
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let yaml = kafka_pipeline(d, &broker.brokers, "big-batches", ROWS_REPORT);
    let log = shared_data("apache_logs.log");
    produce_batched(d, &yaml, &log, 10_000);
    let paced = ["--max-lines-per-sec", "5000"];
    let err = wait_output(member(d, &yaml, &paced).spawn().unwrap(), "the member");
    assert!(
        err.contains("10000 lines read, 9999 parsed, 1 invalid, 0 late"),
        "{err}"
    );
    assert_same_as_file_run(d, &log, &yaml, &err);

    let five = widen_status_window(&yaml);
    let rebuild = ["--rebuild", "status_1m"];
    let logs = wait_output(member(d, &yaml, &rebuild).spawn().unwrap(), "the rebuild");
    let fresh = d.join("fresh.yaml");
    std::fs::write(&fresh, five.replace("root: lake", "root: fresh-lake")).unwrap();
    wait_output(member(d, &fresh, &[]).spawn().unwrap(), "the fresh run");
    let expected = reports(d, &fresh, "fresh-lake", "fresh-reports");
    let actual = reports(d, &yaml, "lake", "rebuilt-reports");
    assert!(expected == actual, "--- rebuild:\n{logs}");
}

/// A rebuild reads each partition again up to its checkpoint's offset. When the topic was
/// deleted and created again with fewer records (here: another broker, a tenth of the
/// lines), the rebuild stops with the reason and changes nothing: checked at the first
/// fetch answer for a partition with records, and at once for an empty one.
#[test]
fn a_rebuild_of_a_topic_created_again_with_fewer_records_is_refused() {
    let first = KafkaBroker::start();
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let yaml = kafka_pipeline(d, &first.brokers, "again", ROWS_REPORT);
    let log = shared_data("apache_logs.log");
    produce(d, &yaml, &log);
    wait_output(member(d, &yaml, &[]).spawn().unwrap(), "the first run");
    drop(first);

    let second = KafkaBroker::start();
    kafka_pipeline(d, &second.brokers, "again", ROWS_REPORT);
    let text = std::fs::read_to_string(&log).unwrap();
    let tenth: String = text.lines().take(1000).map(|l| format!("{l}\n")).collect();
    let short = d.join("tenth.log");
    std::fs::write(&short, tenth).unwrap();
    produce(d, &yaml, &short);
    widen_status_window(&yaml);
    let before = snapshot_files(&d.join("lake"));
    let out = member(d, &yaml, &["--rebuild", "status_1m"])
        .output()
        .unwrap();
    let said = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{said}");
    assert!(said.contains("before the checkpoint's"), "{said}");
    assert!(said.contains("deleted and created again?"), "{said}");
    assert_eq!(before, snapshot_files(&d.join("lake")));
}

/// Makes `status_1m`'s windows five minutes long (a change only `--rebuild` takes); returns
/// the pipeline's new text.
fn widen_status_window(yaml: &Path) -> String {
    let one_minute = "window: { kind: tumbling, size: 1m }\n    key: [status]";
    let text = std::fs::read_to_string(yaml).unwrap();
    assert!(text.contains(one_minute));
    let five = text.replace(one_minute, &one_minute.replace("1m", "5m"));
    std::fs::write(yaml, &five).unwrap();
    five
}

/// The data files of a lake, sorted.
fn snapshot_files(lake: &Path) -> Vec<PathBuf> {
    let mut files = parquet_files(lake);
    files.sort();
    files
}

#[test]
fn two_members_and_a_kill_9_of_one_lose_and_double_nothing() {
    let broker = KafkaBroker::start();
    let dir = tempfile::tempdir().unwrap();
    let yaml = kafka_pipeline(dir.path(), &broker.brokers, "two", ROWS_REPORT);
    let generated = dir.path().join("gen.log");
    run_ok(
        cmd("stream-ingest")
            .args([
                "gen",
                "--lines",
                "300000",
                "--seed",
                "5",
                "--events-per-second",
                "2",
            ])
            .arg("--out")
            .arg(&generated),
    );
    let log = without_late_lines(dir.path(), &generated);
    produce(dir.path(), &yaml, &log);

    // Two members, paced so that the kill lands mid-stream.
    let paced = ["--max-lines-per-sec", "8000"];
    let mut doomed = member(dir.path(), &yaml, &paced).spawn().unwrap();
    std::thread::sleep(Duration::from_millis(500));
    let survivor = member(dir.path(), &yaml, &paced).spawn().unwrap();
    wait_for_four_units(dir.path());
    std::thread::sleep(Duration::from_millis(1000));
    assert!(
        doomed.try_wait().unwrap().is_none(),
        "the member ended before the kill"
    );
    doomed.kill().unwrap(); // SIGKILL
    doomed.wait().unwrap();
    // Its supervisor starts it again: the group rebalances, and the dead member's
    // partitions resume from their checkpoints, on whichever member gets them. (Apache
    // Kafka also moves them to the survivor after `session.timeout.ms` without a restart;
    // tansu 0.6 does not expire a dead member's session, so a join is what moves them.)
    let restarted = member(dir.path(), &yaml, &[]).spawn().unwrap();
    let mut logs = wait_output(survivor, "the surviving member");
    logs.push_str(&wait_output(restarted, "the restarted member"));
    assert!(!logs.contains("records missing"), "{logs}");
    for p in 0..4 {
        assert!(
            logs.contains(&format!("assigned unit=p{p} topic=two partition={p}")),
            "partition {p} was never assigned: {logs}"
        );
    }
    assert_same_as_file_run(dir.path(), &log, &yaml, &logs);
}

#[test]
fn sigterm_checkpoints_a_running_member_and_the_same_pipeline_resumes() {
    let broker = KafkaBroker::start();
    let dir = tempfile::tempdir().unwrap();
    let yaml = kafka_pipeline(dir.path(), &broker.brokers, "term", ROWS_REPORT);
    let log = shared_data("apache_logs.log");
    produce(dir.path(), &yaml, &log);
    // Unbounded: runs until stopped.
    let text = std::fs::read_to_string(&yaml).unwrap();
    std::fs::write(&yaml, text.replace("bounded: true", "bounded: false")).unwrap();
    let running = member(dir.path(), &yaml, &["--max-lines-per-sec", "1500"])
        .spawn()
        .unwrap();
    wait_for_four_units(dir.path());
    let err = stop_with_sigterm(running);
    assert!(err.contains("stopped by a signal"), "{err}");
    // The same pipeline, bounded, finishes from the checkpoints.
    std::fs::write(&yaml, text).unwrap();
    let err = wait_output(
        member(dir.path(), &yaml, &[]).spawn().unwrap(),
        "the resumed member",
    );
    assert!(err.contains("resumed from checkpoint"), "{err}");
    assert_same_as_file_run(dir.path(), &log, &yaml, &err);
}

#[test]
fn a_records_partition_offset_and_timestamp_are_event_fields() {
    let broker = KafkaBroker::start();
    let dir = tempfile::tempdir().unwrap();
    let yaml = kafka_pipeline(dir.path(), &broker.brokers, "fields", "");
    let table = "tables:\n  - name: by_partition\n    window: { kind: tumbling, size: 1h }\n    key: [kafka_partition]\n    filter: kafka_offset >= 0\n    aggregates:\n      - { name: records, fn: count }\n      - { name: last_offset, fn: max, column: kafka_offset }\n";
    let text = std::fs::read_to_string(&yaml)
        .unwrap()
        .replace("tables:\n", table);
    std::fs::write(&yaml, text).unwrap();
    let log = shared_data("apache_logs.log");
    produce(dir.path(), &yaml, &log);
    wait_output(
        member(dir.path(), &yaml, &[]).spawn().unwrap(),
        "the member",
    );
    let code = format!(
        "import duckdb\nprint(duckdb.sql(\"SELECT kafka_partition, SUM(records), MAX(last_offset) FROM read_parquet('{}/lake/by_partition/**/*.parquet', hive_partitioning=1) GROUP BY ALL ORDER BY ALL\").fetchall())",
        dir.path().display()
    );
    let out = String::from_utf8(run_ok(python().args(["-c", &code])).stdout).unwrap();
    // Every valid line once, in the partition it was produced to; offsets count from 0.
    let rows: Vec<(i64, i64, i64)> = out
        .trim()
        .trim_matches(['[', ']'])
        .split("), (")
        .map(|r| {
            let v: Vec<i64> = r
                .trim_matches(['(', ')'])
                .split(", ")
                .map(|x| x.parse().unwrap())
                .collect();
            (v[0], v[1], v[2])
        })
        .collect();
    assert_eq!(
        rows.iter().map(|r| r.0).collect::<Vec<_>>(),
        vec![0, 1, 2, 3],
        "{out}"
    );
    assert_eq!(rows.iter().map(|r| r.1).sum::<i64>(), 9999, "{out}");
    for (_, records, last) in &rows {
        assert!(*last + 1 >= *records, "{out}");
    }
}

/// `pipelines/access-log-insights.yaml` with its source replaced: `kafka` (the broker, topic
/// and group `name`, bounded) or the file `log`; lake `dir/<lake>`.
fn insights_pipeline(dir: &Path, source: &str, lake: &str) -> PathBuf {
    let yaml =
        std::fs::read_to_string(workspace().join("pipelines/access-log-insights.yaml")).unwrap();
    let start = yaml.find("source:\n").unwrap();
    let end = yaml.find("format:\n").unwrap();
    let yaml = format!("{}source:\n{source}\n{}", &yaml[..start], &yaml[end..])
        .replace("root: out/lake-insights", &format!("root: {lake}"))
        // With a Kafka source every percentile needs its sketch (validation says so).
        .replace("q: 0.5 }", "q: 0.5, sketch: true }")
        .replace("q: 0.99 }", "q: 0.99, sketch: true }");
    std::fs::copy(
        workspace().join("pipelines/status_codes.csv"),
        dir.join("status_codes.csv"),
    )
    .unwrap();
    let path = dir.join(format!("{lake}.yaml"));
    std::fs::write(&path, yaml).unwrap();
    path
}

fn csv_reports(dir: &Path, yaml: &Path, out: &str) -> Vec<String> {
    run_ok(
        cmd("batch-analyze")
            .current_dir(dir)
            .args(["run", "-q", "-c"])
            .arg(yaml)
            .args(["--out", out, "--format", "csv"]),
    );
    ["daily_unique_hosts", "daily_bots", "daily_p95_bytes"]
        .iter()
        .map(|r| std::fs::read_to_string(dir.join(out).join(format!("{r}.csv"))).unwrap())
        .collect()
}

/// Distinct counts and percentiles cannot be added up across partitions; with `sketch: true`
/// the partial rows of the four partitions merge through their sketches. HyperLogLog merges
/// exactly (the daily distinct hosts equal the file run's); t-digests merge approximately
/// (the daily 95th percentiles stay within 5 % of the file run's).
#[test]
fn sketches_merge_the_partial_rows_of_the_partitions() {
    let broker = KafkaBroker::start();
    let dir = tempfile::tempdir().unwrap();
    let log = shared_data("apache_logs.log");
    let kafka = insights_pipeline(
        dir.path(),
        &format!(
            "  kind: kafka\n  brokers: {}\n  topic: insights\n  group: insights\n  bounded: true\n",
            broker.brokers
        ),
        "lake",
    );
    let file = insights_pipeline(
        dir.path(),
        &format!("  kind: file\n  path: {}\n", log.display()),
        "file-lake",
    );
    produce(dir.path(), &kafka, &log);
    let err = wait_output(
        member(dir.path(), &kafka, &[]).spawn().unwrap(),
        "the member",
    );
    assert!(err.contains("10000 lines read, 9999 parsed"), "{err}");
    run_ok(
        cmd("stream-ingest")
            .current_dir(dir.path())
            .args(["run", "-q", "-c"])
            .arg(&file),
    );
    let expected = csv_reports(dir.path(), &file, "file-reports");
    let actual = csv_reports(dir.path(), &kafka, "kafka-reports");
    assert_eq!(actual[0], expected[0], "daily_unique_hosts");
    assert_eq!(actual[1], expected[1], "daily_bots");
    let (e, a): (Vec<&str>, Vec<&str>) =
        (expected[2].lines().collect(), actual[2].lines().collect());
    assert_eq!(e.len(), a.len());
    for (e, a) in e.iter().zip(&a) {
        let (e_key, e_p95) = e.rsplit_once(',').unwrap();
        let (a_key, a_p95) = a.rsplit_once(',').unwrap();
        assert_eq!(e_key, a_key);
        if let (Ok(x), Ok(y)) = (e_p95.parse::<f64>(), a_p95.parse::<f64>()) {
            assert!((x - y).abs() <= 0.05 * x.abs().max(1.0), "{e} vs {a}");
        }
    }
}

/// `run --rebuild status_1m` after its window changed from one minute to five: each unit
/// replays its Kafka partition from the earliest record, and the table of all four units is
/// swapped at once. A crash after the first unit's rebuild and another after the old files
/// are removed, each followed by the same command, end in the lake of a fresh run with the
/// new file: its reports (committed partitions only) and its tables read by DuckDB.
/// `path_1m` is not touched, and no member starts while the rebuild is unfinished.
#[test]
fn rebuild_recomputes_a_table_from_every_partition_through_crashes() {
    rebuild_through_crashes("hive");
}

/// The same in a Delta lake: the units' rebuilt files stay unnamed until one commit per
/// table removes every old file and adds them all, with every unit's txn.
#[test]
fn rebuild_of_a_delta_lake_swaps_every_partition_in_one_commit() {
    rebuild_through_crashes("delta");
}

fn rebuild_through_crashes(format: &str) {
    let broker = KafkaBroker::start();
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let yaml = kafka_pipeline(d, &broker.brokers, "rebuild", ROWS_REPORT);
    let hour = "  partition_time: hour";
    let text = std::fs::read_to_string(&yaml).unwrap();
    let text = text.replacen(hour, &format!("  format: {format}\n{hour}"), 1);
    std::fs::write(&yaml, text).unwrap();
    produce(d, &yaml, &shared_data("apache_logs.log"));
    wait_output(member(d, &yaml, &[]).spawn().unwrap(), "the first run");
    let path_1m = files(&d.join("lake/path_1m"));
    let five = widen_status_window(&yaml);

    let plan = |extra: &[&str]| {
        cmd("stream-ingest")
            .current_dir(d)
            .args(["plan", "-c"])
            .arg(&yaml)
            .args(extra)
            .output()
            .unwrap()
    };
    let refused = plan(&[]);
    let said = String::from_utf8_lossy(&refused.stderr);
    assert_eq!(refused.status.code(), Some(2), "{said}");
    assert!(said.contains("--rebuild status_1m"), "{said}");
    let planned = plan(&["--rebuild", "status_1m"]);
    assert!(planned.status.success(), "{planned:?}");
    assert!(String::from_utf8_lossy(&planned.stdout).contains("(unit p3)"));

    let rebuild = ["--rebuild", "status_1m"];
    for crash in ["after-rebuild-unit", "after-rebuild-retract"] {
        let out = member(d, &yaml, &rebuild)
            .env("STREAM_INGEST_CRASH_AT", crash)
            .output()
            .unwrap();
        let said = String::from_utf8_lossy(&out.stderr);
        assert!(said.contains(&format!("crashing at `{crash}`")), "{said}");
        let refused = member(d, &yaml, &[]).output().unwrap();
        let said = String::from_utf8_lossy(&refused.stderr);
        assert_eq!(refused.status.code(), Some(2), "{said}");
        assert!(
            said.contains("a rebuild of status_1m did not finish"),
            "{said}"
        );
    }
    let logs = wait_output(member(d, &yaml, &rebuild).spawn().unwrap(), "the rebuild");
    assert!(
        !d.join("lake/_checkpoints/access-log-kafka/rebuild.json")
            .exists()
    );
    assert_eq!(
        path_1m,
        files(&d.join("lake/path_1m")),
        "path_1m was touched"
    );
    assert!(plan(&[]).status.success());

    let fresh = d.join("fresh.yaml");
    std::fs::write(&fresh, five.replace("root: lake", "root: fresh-lake")).unwrap();
    wait_output(member(d, &fresh, &[]).spawn().unwrap(), "the fresh run");
    let (expected, actual) = (
        reports(d, &fresh, "fresh-lake", "fresh-reports"),
        reports(d, &yaml, "lake", "rebuilt-reports"),
    );
    for ((name, e), (_, a)) in expected.iter().zip(&actual) {
        assert!(
            e == a,
            "report {name}:\n{e}\n---\n{a}\n--- rebuild:\n{logs}"
        );
    }
    assert_eq!(merged(&d.join("fresh-lake")), merged(&d.join("lake")));
    let minute_one = expected[2]
        .1
        .lines()
        .filter(|l| l.contains(":01:00"))
        .count();
    assert_eq!(minute_one, 0, "five-minute windows:\n{}", expected[2].1);
}

/// `lake.format: delta` with two members: the four units commit concurrently into each
/// table's Delta log (blind appends, each with its own `txn`), name themselves in the
/// table's properties, and the lake gives the file-source run's reports and merged tables.
/// DuckDB's `delta_scan` reads as many rows as the Parquet files hold, and no file is added
/// twice.
#[test]
fn two_members_commit_into_one_delta_table() {
    let broker = KafkaBroker::start();
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let yaml = kafka_pipeline(d, &broker.brokers, "delta", ROWS_REPORT);
    let text = std::fs::read_to_string(&yaml).unwrap();
    let hour = "  partition_time: hour";
    std::fs::write(
        &yaml,
        text.replacen(hour, &format!("  format: delta\n{hour}"), 1),
    )
    .unwrap();
    let log = shared_data("apache_logs.log");
    produce(d, &yaml, &log);
    let paced = ["--max-lines-per-sec", "4000"];
    let first = member(d, &yaml, &paced).spawn().unwrap();
    let second = member(d, &yaml, &paced).spawn().unwrap();
    let mut logs = wait_output(first, "the first member");
    logs.push_str(&wait_output(second, "the second member"));
    assert_same_as_file_run(d, &log, &yaml, &logs);
    let script = format!(
        r#"
import duckdb, glob, json
from duckdb_extensions import import_extension
import_extension("delta")
lake = {lake:?}
for t in ["status_1m", "path_1m"]:
    n = duckdb.sql(f"SELECT count(*) FROM delta_scan('{{lake}}/{{t}}')").fetchone()[0]
    m = duckdb.sql(f"SELECT count(*) FROM read_parquet('{{lake}}/{{t}}/dt=*/**/*.parquet')").fetchone()[0]
    assert n == m, (t, n, m)
    adds, props = [], None
    for f in sorted(glob.glob(f"{{lake}}/{{t}}/_delta_log/*.json")):
        for line in open(f):
            a = json.loads(line)
            if "add" in a:
                adds.append(a["add"]["path"])
            if "metaData" in a:
                props = a["metaData"]["configuration"]
    assert len(adds) == len(set(adds)), t
    assert props.get("stream-ingest.writers") == "p0,p1,p2,p3", props
"#,
        lake = d.join("lake").to_str().unwrap()
    );
    run_ok(python().args(["-c", &script]));
}
