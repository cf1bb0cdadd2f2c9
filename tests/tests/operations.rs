//! Operating the stream stage: `/metrics` and the health probes of a running stage, rows of
//! closed windows visible at the next checkpoint (before their partition completes), a busy
//! metrics port.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::process::Stdio;
use std::time::{Duration, Instant};

use e2e::*;

/// One HTTP GET on 127.0.0.1:`port`: the status code and body, or `None` if nothing listens.
fn get(port: u16, path: &str) -> Option<(u16, String)> {
    let mut s = TcpStream::connect(("127.0.0.1", port)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n"
    )
    .ok()?;
    let mut text = String::new();
    s.read_to_string(&mut text).ok()?;
    let status = text.split(' ').nth(1)?.parse().ok()?;
    let body = text.split_once("\r\n\r\n").map(|(_, b)| b.to_string())?;
    Some((status, body))
}

/// Polls `f` every 50 ms until it gives a value (panics after `limit`, naming `what`).
fn wait_for<T>(limit: Duration, what: &str, mut f: impl FnMut() -> Option<T>) -> T {
    let started = Instant::now();
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(started.elapsed() < limit, "gave up waiting for {what}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// The value of an unlabelled sample in OpenMetrics text.
fn sample(text: &str, name: &str) -> Option<f64> {
    text.lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.parse().ok())
}

/// The number before `what` in the summary line (`10000 lines read, …`).
fn summary_number(summary: &str, what: &str) -> f64 {
    let at = summary
        .find(what)
        .unwrap_or_else(|| panic!("`{what}` not in {summary}"));
    summary[..at]
        .split([' ', ','])
        .rfind(|w| !w.is_empty())
        .unwrap()
        .parse()
        .unwrap_or_else(|_| panic!("no number before `{what}` in {summary}"))
}

/// Parses every scrape with the OpenMetrics parser of the Prometheus Python client; returns,
/// per scrape, the counters' samples (name and labels) with their values.
fn parse_scrapes(dir: &Path, scrapes: &[String]) -> Vec<serde_json::Value> {
    let mut paths = Vec::new();
    for (i, s) in scrapes.iter().enumerate() {
        let p = dir.join(format!("scrape-{i}.txt"));
        std::fs::write(&p, s).unwrap();
        paths.push(p);
    }
    let code = r#"
import json, sys
from prometheus_client.openmetrics.parser import text_string_to_metric_families
out = []
for path in sys.argv[1:]:
    counters = {}
    for fam in text_string_to_metric_families(open(path).read()):
        if fam.type == "counter":
            for s in fam.samples:
                if s.name.endswith("_total"):
                    counters[s.name + json.dumps(s.labels, sort_keys=True)] = s.value
    out.append(counters)
print(json.dumps(out))
"#;
    let out = run_ok(python().arg("-c").arg(code).args(&paths));
    serde_json::from_slice(&out.stdout).unwrap()
}

#[test]
fn metrics_and_health_of_a_running_stage_agree_with_its_summary() {
    let dir = tempfile::tempdir().unwrap();
    let yaml = tail_pipeline(dir.path(), "access.log", "1s");
    let log = dir.path().join("logs/access.log");
    std::fs::copy(shared_data("apache_logs.log"), &log).unwrap();
    let port = free_port();
    let child = cmd("stream-ingest")
        .current_dir(dir.path())
        .env("STREAM_INGEST_PAUSE_AT", "before-ready:2s")
        .args(["run", "-c"])
        .arg(&yaml)
        .args(["--checkpoint-interval", "200ms", "--metrics-addr"])
        .arg(format!("127.0.0.1:{port}"))
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // Live at once; ready only once recovery finished and the source is open.
    let (status, _) = wait_for(Duration::from_secs(30), "/health/live", || {
        get(port, "/health/live")
    });
    assert_eq!(status, 200);
    assert_eq!(get(port, "/health/ready").unwrap().0, 503);
    wait_for(Duration::from_secs(30), "/health/ready = 200", || {
        (get(port, "/health/ready")?.0 == 200).then_some(())
    });
    assert_eq!(get(port, "/nothing").unwrap().0, 404);

    // Scrape while it reads, until every line is in and two checkpoints passed with nothing new.
    let mut scrapes: Vec<String> = Vec::new();
    let mut quiet = 0;
    wait_for(Duration::from_secs(60), "the stage to settle", || {
        let (status, body) = get(port, "/metrics")?;
        assert_eq!(status, 200);
        let settled = sample(&body, "stream_ingest_lines_read_total") == Some(10_000.0);
        let same = scrapes.last().is_some_and(|prev| {
            let files = "stream_ingest_files_published_total{table=\"status_1m\"}";
            let ck = |t: &str| sample(t, "stream_ingest_checkpoints_total");
            let f = |t: &str| t.lines().find(|l| l.starts_with(files)).map(str::to_owned);
            ck(&body) > ck(prev) && f(&body) == f(prev)
        });
        quiet = if settled && same { quiet + 1 } else { 0 };
        scrapes.push(body);
        std::thread::sleep(Duration::from_millis(250));
        (quiet >= 2).then_some(())
    });
    let last = scrapes.last().unwrap().clone();
    let summary = stop_with_sigterm(child);

    let parsed = parse_scrapes(dir.path(), &scrapes);
    assert!(parsed.len() >= 3);
    for pair in parsed.windows(2) {
        for (name, before) in pair[0].as_object().unwrap() {
            let after = pair[1][name].as_f64().unwrap_or(0.0);
            assert!(
                after >= before.as_f64().unwrap(),
                "{name} went down: {before} → {after}"
            );
        }
    }
    for (metric, words) in [
        ("stream_ingest_lines_read_total", "lines read"),
        ("stream_ingest_events_parsed_total", "parsed,"),
        ("stream_ingest_lines_invalid_total", "invalid,"),
        ("stream_ingest_late_events_total", "late;"),
        ("stream_ingest_windows_emitted_total", "windows emitted"),
    ] {
        assert_eq!(
            sample(&last, metric),
            Some(summary_number(&summary, words)),
            "{metric} vs the summary: {summary}"
        );
    }
    let published: f64 = last
        .lines()
        .filter(|l| l.starts_with("stream_ingest_rows_published_total{"))
        .map(|l| l.rsplit(' ').next().unwrap().parse::<f64>().unwrap())
        .sum();
    assert_eq!(published, summary_number(&summary, "rows in"), "{summary}");
    for family in [
        "stream_ingest_watermark_timestamp_seconds",
        "stream_ingest_checkpoint_age_seconds",
        "stream_ingest_checkpoint_duration_seconds",
        "stream_ingest_window_freshness_seconds",
        "stream_ingest_open_windows",
        "stream_ingest_state_bytes",
        "stream_ingest_source_position_bytes",
        "stream_ingest_object_store_requests_total{op=\"put\"}",
        "stream_ingest_partitions_committed_total",
    ] {
        assert!(last.contains(family), "{family} missing:\n{last}");
    }
}

#[test]
fn rows_of_a_closed_window_are_visible_before_their_hour_completes() {
    let dir = tempfile::tempdir().unwrap();
    let yaml = tail_pipeline(dir.path(), "access.log", "300ms");
    let log = dir.path().join("logs/access.log");
    // Minutes 10:00 to 10:03 of one hour; the watermark (60 s bound) closes 10:00 to 10:01.
    let mut lines = String::new();
    for second in (0..240).step_by(5) {
        lines.push_str(&format!(
            "10.0.0.1 - - [17/May/2015:10:{:02}:{:02} +0000] \"GET /a HTTP/1.1\" 200 10\n",
            second / 60,
            second % 60
        ));
    }
    std::fs::write(&log, lines).unwrap();
    let child = cmd("stream-ingest")
        .current_dir(dir.path())
        .args(["run", "-c"])
        .arg(&yaml)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let hour = dir.path().join("lake/status_1m/dt=2015-05-17/hour=10");
    let rows = wait_for(Duration::from_secs(30), "rows of 10:00 in the lake", || {
        let files = parquet_files(&hour);
        (!files.is_empty()).then(|| read_table(&hour).num_rows())
    });
    assert!(rows >= 2, "{rows} rows");
    assert!(
        !hour.join("_SUCCESS").exists(),
        "the hour is open: no marker yet"
    );
    stop_with_sigterm(child);
}

#[test]
fn a_metrics_port_in_use_is_a_usage_error() {
    let busy = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = busy.local_addr().unwrap().port();
    let dir = tempfile::tempdir().unwrap();
    let out = cmd("stream-ingest")
        .current_dir(dir.path())
        .args(["run", "-c"])
        .arg(workspace().join("pipelines/access-log.yaml"))
        .arg("--lake")
        .arg(dir.path().join("lake"))
        .arg("--metrics-addr")
        .arg(format!("127.0.0.1:{port}"))
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(err.contains(&format!("127.0.0.1:{port}")), "{err}");
    assert!(!dir.path().join("lake/status_1m").exists(), "{err}");
}
