//! `batch-analyze` as cron runs it: day selection, reruns, partition overwrite, incremental
//! runs after late partitions, locks, crashes in the middle, chaining behind the stream
//! stage, and the HTML page in a real browser.
//!
//! The lake is built from the shared sample log. "Late partitions" are made the way a
//! backfill makes them: a lake built without the afternoon of 2015-05-19 gets those
//! partitions copied in from a lake built from the whole log.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use e2e::*;

const DAY: &str = "2015-05-19";

fn pipeline() -> PathBuf {
    workspace().join("pipelines/access-log.yaml")
}

/// The stream stage on `input` into `lake`.
fn ingest(lake: &Path, input: &Path) {
    run_ok(
        cmd("stream-ingest")
            .current_dir(lake.parent().unwrap())
            .args(["run", "-q", "-c"])
            .arg(pipeline())
            .arg("--input")
            .arg(input)
            .arg("--lake")
            .arg(lake),
    );
}

/// `batch-analyze run -c access-log.yaml --lake LAKE ARGS…`.
fn analyze(lake: &Path, args: &[&str]) -> Command {
    let mut c = cmd("batch-analyze");
    c.args(["run", "-c"])
        .arg(pipeline())
        .arg("--lake")
        .arg(lake)
        .args(args);
    c
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

fn names(m: &BTreeMap<String, Vec<u8>>) -> Vec<&String> {
    m.keys().collect()
}

/// The sample log without the lines of 2015-05-19 from 12:00 UTC on (the sample's offsets
/// are all +0000).
fn sample_without_afternoon(dir: &Path) -> PathBuf {
    let text = std::fs::read(shared_data("apache_logs.log")).unwrap();
    let kept: Vec<&[u8]> = text
        .split_inclusive(|&b| b == b'\n')
        .filter(|l| {
            let s = String::from_utf8_lossy(l);
            !(13..24).any(|h| s.contains(&format!("[19/May/2015:{h:02}:")))
                && !s.contains("[19/May/2015:12:")
        })
        .collect();
    let p = dir.join("morning.log");
    std::fs::write(&p, kept.concat()).unwrap();
    p
}

/// Copies the partitions of `day` that `to` lacks from lake `from`, table by table: a
/// backfill landing late in an old day.
fn copy_missing_partitions(from: &Path, to: &Path, day: &str) -> usize {
    let mut copied = 0;
    for table in ["status_1m", "path_1m"] {
        let src = from.join(table).join(format!("dt={day}"));
        for hour in std::fs::read_dir(&src).unwrap() {
            let hour = hour.unwrap().path();
            let dest = to
                .join(table)
                .join(format!("dt={day}"))
                .join(hour.file_name().unwrap());
            if dest.exists() {
                continue;
            }
            std::fs::create_dir_all(&dest).unwrap();
            for f in std::fs::read_dir(&hour).unwrap() {
                let f = f.unwrap().path();
                std::fs::copy(&f, dest.join(f.file_name().unwrap())).unwrap();
            }
            copied += 1;
        }
    }
    copied
}

/// Report partitions of a lake: `reports/…` files only.
fn reports(lake: &Path) -> BTreeMap<String, Vec<u8>> {
    files(&lake.join("reports"))
}

struct Lakes {
    _dir: tempfile::TempDir,
    root: PathBuf,
    /// Built from the whole sample, reports computed.
    full: PathBuf,
    /// Built without the afternoon of 2015-05-19, reports computed.
    partial: PathBuf,
}

fn lakes() -> Lakes {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().to_path_buf();
    let full = root.join("full");
    let partial = root.join("partial");
    ingest(&full, &shared_data("apache_logs.log"));
    ingest(&partial, &sample_without_afternoon(&root));
    run_ok(&mut analyze(&full, &["-q"]));
    run_ok(&mut analyze(&partial, &["-q"]));
    Lakes {
        _dir: dir,
        root,
        full,
        partial,
    }
}

#[test]
fn reruns_are_byte_identical_and_incremental_runs_skip_what_is_done() {
    let l = lakes();
    let out = l.root.join("csv");
    let mut snapshots = Vec::new();
    for _ in 0..3 {
        let o = run_ok(analyze(&l.full, &["-v", "--format", "csv", "--out"]).arg(&out));
        assert!(
            stderr(&o).contains("0 partitions replaced, 4 unchanged"),
            "{}",
            stderr(&o)
        );
        snapshots.push((reports(&l.full), files(&out)));
    }
    assert_eq!(snapshots[0], snapshots[1]);
    assert_eq!(snapshots[1], snapshots[2]);
    let (lake_reports, out_files) = &snapshots[0];
    // One file and one marker per day and report, nothing else.
    assert_eq!(lake_reports.len(), 2 * 4 * 2, "{:?}", names(lake_reports));
    assert_eq!(
        names(out_files),
        ["daily_status_class.csv", "top_paths.csv"]
    );
    // The reports in the lake hold the same rows as the CSV reports.
    let csv = std::fs::read_to_string(out.join("top_paths.csv")).unwrap();
    let rows = run_ok(python().args([
        "-c",
        "import sys, duckdb\nfor r in duckdb.sql(\"SELECT dt, rank, path, requests, bytes FROM read_parquet('\" + sys.argv[1] + \"/reports/top_paths/*/*.parquet', hive_partitioning=true) ORDER BY dt, rank\").fetchall(): print(','.join(str(x) for x in r))",
    ]).arg(&l.full));
    let csv_rows: Vec<&str> = csv.lines().skip(1).collect();
    let lake_rows = String::from_utf8(rows.stdout).unwrap();
    assert_eq!(csv_rows, lake_rows.lines().collect::<Vec<_>>());

    // Nothing new: an incremental run does nothing, and says so when asked.
    let o = analyze(&l.full, &["--incremental", "-v", "--exit-4-if-nothing"])
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(4), "{}", stderr(&o));
    assert!(
        stderr(&o).contains("2 reports up to date"),
        "{}",
        stderr(&o)
    );
    let o = run_ok(&mut analyze(&l.full, &["--incremental", "-v"]));
    assert!(stderr(&o).contains("0 days"), "{}", stderr(&o));
    assert_eq!(reports(&l.full), *lake_reports);
}

#[test]
fn late_partitions_make_their_day_due_and_replace_its_report_partitions() {
    let l = lakes();
    let full = reports(&l.full);
    let before = reports(&l.partial);
    let differs: Vec<&String> = full
        .keys()
        .filter(|k| before.get(*k) != full.get(*k))
        .collect();
    assert!(
        differs.iter().all(|k| k.contains(&format!("dt={DAY}"))),
        "{differs:?}"
    );
    assert!(!differs.is_empty());

    assert!(copy_missing_partitions(&l.full, &l.partial, DAY) >= 10);
    let explain = run_ok(&mut analyze(&l.partial, &["--incremental", "--explain"]));
    let explain = String::from_utf8(explain.stdout).unwrap();
    assert!(
        explain.contains(&format!("{DAY} (changed: compute)"))
            && explain.contains("2015-05-18 (unchanged: skip)"),
        "{explain}"
    );
    let o = run_ok(&mut analyze(
        &l.partial,
        &["--incremental", "-v", "--format", "csv"],
    ));
    assert!(stderr(&o).contains("1 day:"), "{}", stderr(&o));
    let printed = String::from_utf8(o.stdout).unwrap();
    assert!(
        printed
            .lines()
            .skip(1)
            .all(|l| l.starts_with(DAY) || l.starts_with("dt,")),
        "{printed}"
    );
    // The day's partitions now equal a full run's, old files gone; other days untouched.
    assert_eq!(reports(&l.partial), full);
    // And the next incremental run has nothing to do.
    let o = analyze(&l.partial, &["--incremental", "--exit-4-if-nothing"])
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(4), "{}", stderr(&o));
}

#[test]
fn a_crash_at_any_point_leaves_whole_outputs_and_the_next_run_finishes() {
    let l = lakes();
    let full = reports(&l.full);
    let before = reports(&l.partial);
    assert!(copy_missing_partitions(&l.full, &l.partial, DAY) >= 10);
    let base = l.root.join("base");
    std::fs::rename(&l.partial, &base).unwrap();
    for point in [
        "after-lock",
        "after-stage",
        "after-partition",
        "before-state",
    ] {
        let lake = l.root.join(point);
        copy_dir(&base, &lake);
        let o = analyze(&lake, &["--incremental", "-q"])
            .env("BATCH_ANALYZE_CRASH_AT", point)
            .output()
            .unwrap();
        assert!(!o.status.success(), "{point}: did not crash");
        // Every report partition is whole: exactly the old one or the new one.
        let now = reports(&lake);
        for (name, data) in &now {
            if name.ends_with(".parquet") || name.ends_with("_SUCCESS") {
                assert!(
                    before.get(name) == Some(data) || full.get(name) == Some(data),
                    "{point}: {name} is neither the old nor the new file"
                );
            }
        }
        for dir in now.keys().filter(|k| k.ends_with("_SUCCESS")) {
            let d = Path::new(dir).parent().unwrap();
            let parquet = now
                .keys()
                .filter(|k| Path::new(k).parent() == Some(d) && k.ends_with(".parquet"))
                .count();
            // A replacement cut short leaves its intent, and at most the new file besides.
            let intent = now.contains_key(&format!("{}/_REPLACING", d.display()));
            assert!(
                parquet == 1 || intent,
                "{point}: {} files in {}",
                parquet,
                d.display()
            );
        }
        if point == "after-lock" || point == "after-stage" {
            assert_eq!(
                now.iter()
                    .filter(|(k, _)| !k.ends_with("_REPLACING"))
                    .map(|(k, v)| (k.clone(), v.clone()))
                    .collect::<BTreeMap<_, _>>(),
                before,
                "{point}"
            );
        }
        // The lock died with the process: the next run goes ahead and finishes the work.
        let o = run_ok(&mut analyze(&lake, &["--incremental", "-v"]));
        assert!(stderr(&o).contains("1 day:"), "{point}: {}", stderr(&o));
        assert_eq!(reports(&lake), full, "{point}");
        assert!(files(&lake.join("_staging")).is_empty(), "{point}");
    }

    // A real kill -9 in the middle of a run.
    let lake = l.root.join("kill");
    copy_dir(&base, &lake);
    let mut child = analyze(&lake, &["--incremental", "-q"])
        .env("BATCH_ANALYZE_SLOW_AT", "after-stage:30s")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    while files(&lake.join("_staging")).is_empty() {
        assert!(Instant::now() < deadline, "the run never staged a file");
        std::thread::sleep(Duration::from_millis(50));
    }
    child.kill().unwrap();
    child.wait().unwrap();
    assert_eq!(reports(&lake), before);
    run_ok(&mut analyze(&lake, &["--incremental", "-q"]));
    assert_eq!(reports(&lake), full);
}

fn copy_dir(from: &Path, to: &Path) {
    for (rel, data) in files(from) {
        let p = to.join(rel);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, data).unwrap();
    }
}

#[test]
fn a_second_run_waits_or_exits_3() {
    let l = lakes();
    let first = analyze(&l.full, &["-q"])
        .env("BATCH_ANALYZE_SLOW_AT", "after-lock:4s")
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    let lock = l
        .full
        .join("_state/batch-analyze/access-log/daily_status_class.lock");
    let deadline = Instant::now() + Duration::from_secs(30);
    while std::fs::read(&lock).map(|b| b.is_empty()).unwrap_or(true)
        || !std::fs::read_to_string(&lock)
            .unwrap()
            .contains(&first.id().to_string())
    {
        assert!(Instant::now() < deadline, "the first run never locked");
        std::thread::sleep(Duration::from_millis(50));
    }
    let o = analyze(&l.full, &["-q"]).output().unwrap();
    assert_eq!(o.status.code(), Some(3), "{}", stderr(&o));
    let msg = stderr(&o);
    assert!(
        msg.contains("is locked by pid") && msg.contains("--wait"),
        "{msg}"
    );
    let waited = Instant::now();
    run_ok(&mut analyze(&l.full, &["-q", "--wait", "1m"]));
    assert!(waited.elapsed() > Duration::from_millis(500));
    let out = first.wait_with_output().unwrap();
    assert!(out.status.success());
}

#[test]
fn days_are_selected_before_listing_and_explained() {
    let l = lakes();
    let o = run_ok(&mut analyze(
        &l.full,
        &[
            "--date",
            "2015-05-18",
            "--format",
            "csv",
            "--report",
            "top_paths",
        ],
    ));
    let csv = String::from_utf8(o.stdout).unwrap();
    let golden =
        std::fs::read_to_string(workspace().join("tests/golden/access-log/top_paths.csv")).unwrap();
    let expected: Vec<&str> = golden
        .lines()
        .enumerate()
        .filter(|(i, l)| *i == 0 || l.starts_with("2015-05-18"))
        .map(|(_, l)| l)
        .collect();
    assert_eq!(csv.lines().collect::<Vec<_>>(), expected);

    let o = run_ok(&mut analyze(
        &l.full,
        &["--last", "2d", "--today", "2015-05-20", "--explain"],
    ));
    let text = String::from_utf8(o.stdout).unwrap();
    assert!(
        text.contains("days: 2015-05-19 … 2015-05-20")
            && text.contains("table status_1m: 4 days in the lake, 2 selected, 2 not listed")
            && text.contains("dt=2015-05-19: 24 partitions, 24 committed, 0 open")
            && !text.contains("dt=2015-05-18:")
            && text.contains("ROW_NUMBER() OVER"),
        "{text}"
    );
    let o = run_ok(&mut analyze(
        &l.full,
        &["--date", "2015-05-18", "--format", "csv"],
    ));
    assert!(
        String::from_utf8(o.stdout)
            .unwrap()
            .contains("2015-05-18,2xx,2538")
    );

    for bad in [
        vec!["--date", "18/05/2015"],
        vec!["--date", "today", "--last", "2d"],
        vec!["--last", "36h"],
        vec!["--from", "2015-05-19", "--to", "2015-05-18"],
    ] {
        let o = analyze(&l.full, &bad).output().unwrap();
        assert_eq!(o.status.code(), Some(2), "{bad:?}: {}", stderr(&o));
    }
    // Days without data: nothing to do.
    let o = analyze(
        &l.full,
        &["--date", "2001-01-01", "--exit-4-if-nothing", "-q"],
    )
    .output()
    .unwrap();
    assert_eq!(o.status.code(), Some(4), "{}", stderr(&o));
}

#[test]
fn chained_pipeline_equals_the_two_step_run() {
    let dir = tempfile::tempdir().unwrap();
    let two_step = dir.path().join("two");
    ingest(&two_step, &shared_data("apache_logs.log"));
    run_ok(&mut analyze(&two_step, &["-q"]));

    let chained = dir.path().join("chained");
    let mut stream = cmd("stream-ingest")
        .current_dir(dir.path())
        .args([
            "run",
            "-q",
            "--emit-commits",
            "--checkpoint-interval",
            "100ms",
            "-c",
        ])
        .arg(pipeline())
        .arg("--input")
        .arg(shared_data("apache_logs.log"))
        .arg("--lake")
        .arg(&chained)
        .args(["--max-lines-per-sec", "20000"])
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let per_day = dir.path().join("per-day");
    let batch = analyze(
        &chained,
        &["--follow-commits", "-v", "--format", "csv", "--out"],
    )
    .arg(&per_day)
    .stdin(stream.stdout.take().unwrap())
    .output()
    .unwrap();
    assert!(stream.wait().unwrap().success());
    assert!(batch.status.success(), "{}", stderr(&batch));
    let log = stderr(&batch);
    assert!(log.contains("followed 168 commits: 4 days"), "{log}");
    // Each day ran (once, unless a pause in the middle of a checkpoint's commit events
    // split them: a rerun of a day is harmless, it replaces nothing).
    for day in ["2015-05-17", "2015-05-18", "2015-05-19", "2015-05-20"] {
        assert!(log.contains(&format!(": {day}: 1 day")), "{log}");
    }
    assert_eq!(reports(&chained), reports(&two_step));
    // Written per day (DIR/dt=DAY/<report>.csv): the same rows as the two-step run's.
    let mut printed = String::new();
    for day in ["2015-05-17", "2015-05-18", "2015-05-19", "2015-05-20"] {
        for r in ["daily_status_class", "top_paths"] {
            let p = per_day.join(format!("dt={day}")).join(format!("{r}.csv"));
            let text = std::fs::read_to_string(&p).unwrap();
            assert!(
                text.lines().skip(1).all(|l| l.starts_with(day)),
                "{}",
                p.display()
            );
            printed.push_str(&text);
        }
    }
    let rows: Vec<&str> = printed.lines().filter(|l| !l.starts_with("dt,")).collect();
    let two = run_ok(&mut analyze(&two_step, &["--format", "csv", "-q"]));
    let two = String::from_utf8(two.stdout).unwrap();
    let mut a: Vec<&str> = rows;
    let mut b: Vec<&str> = two.lines().filter(|l| !l.starts_with("dt,")).collect();
    a.sort();
    b.sort();
    assert_eq!(a, b);
    // The state knows every day: an incremental run afterwards has nothing to do.
    let o = analyze(&chained, &["--incremental", "--exit-4-if-nothing"])
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(4), "{}", stderr(&o));
}

/// Chromium as the machine's probe runs it: headless, no network chatter.
fn chromium() -> Command {
    let mut c = Command::new(std::env::var("CHROMIUM").unwrap_or_else(|_| "chromium".into()));
    c.args([
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--hide-scrollbars",
    ])
    .stdin(Stdio::null());
    c
}

#[test]
fn html_page_renders_in_headless_chromium() {
    let l = lakes();
    let out = l.root.join("html");
    run_ok(analyze(&l.full, &["--format", "html", "--out"]).arg(&out));
    let page = out.join("access-log.html");
    let html = std::fs::read_to_string(&page).unwrap();
    assert!(!html.contains("http://") && !html.contains("https://") && !html.contains("<script"));
    let url = format!("file://{}", page.display());
    let profile = l.root.join("chromium-profile");
    let dom = chromium()
        .arg(format!("--user-data-dir={}", profile.display()))
        .arg("--dump-dom")
        .arg(&url)
        .output()
        .expect("chromium runs (apt-get install chromium; done by .ci/run)");
    assert!(dom.status.success(), "{}", stderr(&dom));
    let dom = String::from_utf8_lossy(&dom.stdout);
    for needle in [
        "<h2>daily_status_class</h2>",
        "<h2>top_paths</h2>",
        "requests per dt",
        "requests by path · dt = 2015-05-18",
        "/favicon.ico",
        "<td>2015-05-18</td><td>2xx</td><td class=\"num\">2538</td>",
    ] {
        assert!(dom.contains(needle), "the rendered page lacks {needle:?}");
    }
    assert_eq!(
        dom.matches("<svg").count(),
        1 + 4,
        "one bar chart, four hbar charts"
    );
    let shot = l.root.join("page.png");
    let o = chromium()
        .arg(format!("--user-data-dir={}", profile.display()))
        .arg("--window-size=1200,1800")
        .arg(format!("--screenshot={}", shot.display()))
        .arg(&url)
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", stderr(&o));
    let png = std::fs::read(&shot).unwrap();
    assert!(
        png.starts_with(b"\x89PNG") && png.len() > 20_000,
        "{} bytes",
        png.len()
    );
}

#[test]
fn s3_locks_are_exclusive_and_expired_ones_are_taken_over() {
    let s3 = S3Server::start();
    s3.create_bucket("lake");
    let dir = tempfile::tempdir().unwrap();
    let url = "s3://lake/cron";
    let env = s3.env();
    let envs = || env.iter().map(|(k, v)| (*k, v.clone()));
    run_ok(
        cmd("stream-ingest")
            .current_dir(dir.path())
            .envs(envs())
            .args(["run", "-q", "-c"])
            .arg(pipeline())
            .arg("--input")
            .arg(shared_data("apache_logs.log"))
            .args(["--lake", url]),
    );
    let s3_analyze = |args: &[&str]| {
        let mut c = cmd("batch-analyze");
        c.envs(envs())
            .args(["run", "-c"])
            .arg(pipeline())
            .args(["--lake", url])
            .args(args);
        c
    };
    let first = s3_analyze(&["-q"])
        .env("BATCH_ANALYZE_SLOW_AT", "after-lock:4s")
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    let key = "cron/_state/batch-analyze/access-log/daily_status_class.lock";
    let deadline = Instant::now() + Duration::from_secs(30);
    while !s3
        .boto(&format!(
            "print(s3.list_objects_v2(Bucket='lake', Prefix='{key}').get('KeyCount', 0))"
        ))
        .starts_with('1')
    {
        assert!(Instant::now() < deadline, "the first run never locked");
        std::thread::sleep(Duration::from_millis(100));
    }
    let o = s3_analyze(&["-q"]).output().unwrap();
    assert_eq!(o.status.code(), Some(3), "{}", stderr(&o));
    assert!(first.wait_with_output().unwrap().status.success());
    // Released: the lock objects are gone.
    let left = s3
        .boto("print(s3.list_objects_v2(Bucket='lake', Prefix='cron/_state/').get('KeyCount', 0))");
    assert_eq!(left.trim(), "2", "only the two state files remain");

    // A crashed owner's lock, expired: the next run takes it over.
    s3.boto(&format!(
        "s3.put_object(Bucket='lake', Key='{key}', Body=b'{{\"host\":\"gone\",\"pid\":1,\"started\":\"2020-01-01T00:00:00Z\",\"expires\":\"2020-01-01T00:01:00Z\"}}')"
    ));
    let o = run_ok(&mut s3_analyze(&[
        "-q",
        "--format",
        "csv",
        "--report",
        "daily_status_class",
    ]));
    assert!(
        String::from_utf8(o.stdout)
            .unwrap()
            .contains("2015-05-18,2xx,2538")
    );
    // A live one is respected.
    s3.boto(&format!(
        "s3.put_object(Bucket='lake', Key='{key}', Body=b'{{\"host\":\"busy\",\"pid\":7,\"started\":\"2020-01-01T00:00:00Z\",\"expires\":\"2999-01-01T00:00:00Z\"}}')"
    ));
    let o = s3_analyze(&["-q"]).output().unwrap();
    assert_eq!(o.status.code(), Some(3), "{}", stderr(&o));
    assert!(stderr(&o).contains("pid 7 on busy"), "{}", stderr(&o));
}

/// The samples of a Prometheus text file as the reference parser (Python's
/// `prometheus_client`) reads it: `name{k="v",…}` (labels sorted) → value, and each
/// family's type.
fn prometheus(file: &Path) -> (BTreeMap<String, f64>, BTreeMap<String, String>) {
    let script = "import sys, json\nfrom prometheus_client.parser import text_string_to_metric_families\nsamples, types = {}, {}\nfor f in text_string_to_metric_families(open(sys.argv[1]).read()):\n    types[f.name] = f.type\n    for s in f.samples:\n        labels = ','.join('%s=\"%s\"' % kv for kv in sorted(s.labels.items()))\n        samples['%s{%s}' % (s.name, labels)] = s.value\nprint(json.dumps([samples, types]))";
    let o = run_ok(python().args(["-c", script]).arg(file));
    serde_json::from_slice(&o.stdout).unwrap()
}

#[test]
fn metrics_file_counts_successes_and_failed_runs_leave_them() {
    let dir = tempfile::tempdir().unwrap();
    let lake = dir.path().join("lake");
    ingest(&lake, &shared_data("apache_logs.log"));
    let textfile = dir.path().join("textfile");
    std::fs::create_dir(&textfile).unwrap();
    let prom = textfile.join("batch-analyze-access-log.prom");
    let with_metrics = |args: &[&str]| {
        let mut c = analyze(&lake, args);
        c.arg("--metrics-file").arg(&prom);
        c
    };
    let key = |name: &str, report: Option<&str>| match report {
        Some(r) => format!("batch_analyze_{name}{{pipeline=\"access-log\",report=\"{r}\"}}"),
        None => format!("batch_analyze_{name}{{pipeline=\"access-log\"}}"),
    };

    run_ok(&mut with_metrics(&["-q"]));
    let (first, types) = prometheus(&prom);
    assert_eq!(types["batch_analyze_rows_written"], "counter", "{types:?}");
    assert_eq!(
        types["batch_analyze_last_success_timestamp_seconds"], "gauge",
        "{types:?}"
    );
    assert_eq!(first[&key("last_run_exit_status", None)], 0.0);
    assert_eq!(first[&key("days_computed_total", None)], 4.0);
    for r in ["daily_status_class", "top_paths"] {
        assert!(
            first[&key("rows_written_total", Some(r))] > 0.0,
            "{first:?}"
        );
        assert_eq!(
            first[&key("lake_partitions_replaced_total", Some(r))],
            4.0,
            "{r}"
        );
        assert_eq!(first[&key("lake_partitions_unchanged_total", Some(r))], 0.0);
    }
    let success = first[&key("last_success_timestamp_seconds", None)];
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs_f64();
    assert!((now - success).abs() < 600.0, "{success} vs {now}");
    assert_eq!(first[&key("last_run_timestamp_seconds", None)], success);
    assert!(first[&key("last_run_duration_seconds", None)] > 0.0);

    // A second success adds to the counters.
    std::thread::sleep(Duration::from_millis(20));
    run_ok(&mut with_metrics(&["-q"]));
    let (second, _) = prometheus(&prom);
    let top = key("rows_written_total", Some("top_paths"));
    assert_eq!(second[&top], 2.0 * first[&top]);
    assert_eq!(second[&key("days_computed_total", None)], 8.0);
    assert_eq!(
        second[&key("lake_partitions_unchanged_total", Some("top_paths"))],
        4.0
    );
    assert!(second[&key("last_success_timestamp_seconds", None)] > success);

    // Failed runs: a report locked by another run (exit 3), a bad argument (exit 2). Each
    // sets the last run's status and time; the counters and the success time stay.
    let holder = analyze(&lake, &["-q"])
        .env("BATCH_ANALYZE_SLOW_AT", "after-lock:4s")
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    let lock = lake.join("_state/batch-analyze/access-log/daily_status_class.lock");
    let deadline = Instant::now() + Duration::from_secs(30);
    while !std::fs::read_to_string(&lock)
        .unwrap_or_default()
        .contains(&holder.id().to_string())
    {
        assert!(Instant::now() < deadline, "the first run never locked");
        std::thread::sleep(Duration::from_millis(50));
    }
    for (args, status) in [(vec!["-q"], 3), (vec!["-q", "--report", "nope"], 2)] {
        let o = with_metrics(&args).output().unwrap();
        assert_eq!(o.status.code(), Some(status), "{}", stderr(&o));
        let (failed, _) = prometheus(&prom);
        assert_eq!(failed[&key("last_run_exit_status", None)], status as f64);
        assert!(
            failed[&key("last_run_timestamp_seconds", None)]
                > second[&key("last_success_timestamp_seconds", None)]
        );
        for (k, v) in &second {
            if !k.starts_with("batch_analyze_last_run_") {
                assert_eq!(failed.get(k), Some(v), "{status}: {k}");
            }
        }
        assert_eq!(failed.len(), second.len());
    }
    assert!(holder.wait_with_output().unwrap().status.success());
    let names: Vec<_> = std::fs::read_dir(&textfile)
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(names.len(), 1, "no temporary file is left: {names:?}");
}

#[test]
fn damaged_lake_files_are_named_with_what_to_do() {
    let dir = tempfile::tempdir().unwrap();
    let lake = dir.path().join("lake");
    ingest(&lake, &shared_data("apache_logs.log"));
    let lake = lake.canonicalize().unwrap();

    // A truncated Parquet file in a committed partition of the table top_paths reads.
    let partition = lake.join("path_1m/dt=2015-05-18/hour=10");
    let file = parquet_files(&partition).remove(0);
    let whole = std::fs::read(&file).unwrap();
    std::fs::write(&file, &whole[..whole.len() / 2]).unwrap();
    let o = analyze(&lake, &["-q"]).output().unwrap();
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    let msg = stderr(&o);
    assert!(
        msg.contains(&format!(
            "report `top_paths`: cannot read {}: ",
            file.display()
        )) && file.starts_with("/")
            && msg.contains("Corrupt footer")
            && msg.contains("stream-ingest run --from-scratch")
            && !msg.contains("Parquet error: Parquet error")
            && !msg.contains("External"),
        "{msg}"
    );

    // The same file in a partition that is not committed: skipped, unless --include-open,
    // and then the message says so.
    let marker = std::fs::read(partition.join("_SUCCESS")).unwrap();
    std::fs::remove_file(partition.join("_SUCCESS")).unwrap();
    run_ok(&mut analyze(&lake, &["-q"]));
    let o = analyze(&lake, &["-q", "--include-open"]).output().unwrap();
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    assert!(
        stderr(&o).contains(&file.display().to_string())
            && stderr(&o).contains("run without --include-open"),
        "{}",
        stderr(&o)
    );
    std::fs::write(partition.join("_SUCCESS"), &marker).unwrap();

    // Damaged pages behind a footer that reads: found by decoding the files the report read.
    let mut garbled = whole.clone();
    for b in &mut garbled[40..400] {
        *b ^= 0x5a;
    }
    std::fs::write(&file, &garbled).unwrap();
    let o = analyze(&lake, &["-q"]).output().unwrap();
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    let msg = stderr(&o);
    assert!(
        msg.contains(&format!(
            "report `top_paths`: cannot read {}: ",
            file.display()
        )) && msg.contains("stream-ingest run --from-scratch"),
        "{msg}"
    );
    std::fs::write(&file, &whole).unwrap();
    run_ok(&mut analyze(&lake, &["-q"]));

    // A damaged commit marker: named with its leading `/`, and what to do.
    let mut hours: Vec<PathBuf> = std::fs::read_dir(lake.join("status_1m/dt=2015-05-19"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    hours.sort();
    let marker = hours[0].join("_SUCCESS");
    assert!(marker.is_file(), "{}", marker.display());
    std::fs::write(&marker, b"{\"table\": \"status_1m\", \"rows\": ").unwrap();
    let o = analyze(&lake, &["-q"]).output().unwrap();
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    let msg = stderr(&o);
    assert!(
        msg.contains(&format!("{} is damaged: ", marker.display()))
            && msg.contains("stream-ingest run --from-scratch"),
        "{msg}"
    );
}
