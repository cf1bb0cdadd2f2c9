//! `batch-analyze` on an Apache DataFusion Ballista cluster: the same bytes as the embedded
//! engine, from a standalone cluster in the process and from a real one (a scheduler and
//! two executors as separate processes on 127.0.0.1), over lakes on local disk and on S3;
//! an executor killed mid-query; a scheduler that is not there.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use e2e::{S3Server, cmd, files, free_port, render_table, run_ok, shared_data, workspace};

fn reference() -> PathBuf {
    workspace().join("pipelines/access-log.yaml")
}

fn insights() -> PathBuf {
    workspace().join("pipelines/access-log-insights.yaml")
}

/// A scheduler and executors, as separate processes; stopped when dropped.
struct Cluster {
    url: String,
    scheduler: Child,
    executors: Vec<Child>,
}

impl Cluster {
    fn start(executors: usize, env: &[(&'static str, String)]) -> Cluster {
        let port = free_port();
        let scheduler = cmd("batch-analyze")
            .args(["scheduler", "--bind", &format!("127.0.0.1:{port}")])
            .args(["--executor-timeout", "5s"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        wait_for_port(port, "the scheduler");
        let url = format!("df://127.0.0.1:{port}");
        let mut cluster = Cluster {
            url,
            scheduler,
            executors: Vec::new(),
        };
        for _ in 0..executors {
            cluster.add_executor(env);
        }
        cluster
    }

    fn add_executor(&mut self, env: &[(&'static str, String)]) {
        let child = self.spawn_executor(env, false);
        self.executors.push(child);
    }

    /// An executor, listening; with `log`, its log (`RUST_LOG=info`) is piped from its
    /// standard error (which must then be read: a closed pipe fails its writes).
    fn spawn_executor(&self, env: &[(&'static str, String)], log: bool) -> Child {
        let port = free_port();
        let child = cmd("batch-analyze")
            .envs(env.iter().map(|(k, v)| (*k, v)))
            .env("RUST_LOG", if log { "info" } else { "warn" })
            .args(["executor", "--scheduler", &self.url, "--slots", "2"])
            .args(["--bind", &format!("127.0.0.1:{port}")])
            .stdout(Stdio::null())
            .stderr(if log { Stdio::piped() } else { Stdio::null() })
            .spawn()
            .unwrap();
        wait_for_port(port, "an executor");
        child
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        for c in self.executors.iter_mut().chain([&mut self.scheduler]) {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

fn wait_for_port(port: u16, what: &str) {
    let deadline = Instant::now() + Duration::from_secs(60);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(Instant::now() < deadline, "{what} did not listen on {port}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Runs the stream stage of `pipeline` on `input` into `lake`.
fn ingest(dir: &Path, pipeline: &Path, input: &Path, lake: &str, env: &[(&'static str, String)]) {
    run_ok(
        cmd("stream-ingest")
            .current_dir(dir)
            .envs(env.iter().map(|(k, v)| (*k, v)))
            .args(["run", "-q", "-c"])
            .arg(pipeline)
            .arg("--input")
            .arg(input)
            .args(["--lake", lake]),
    );
}

/// A generated log of `lines` lines.
fn generated(dir: &Path, lines: &str, rate: &str) -> PathBuf {
    let log = dir.join(format!("gen-{lines}-{rate}.log"));
    run_ok(
        cmd("stream-ingest")
            .args([
                "gen",
                "--lines",
                lines,
                "--seed",
                "7",
                "--events-per-second",
                rate,
            ])
            .arg("--out")
            .arg(&log),
    );
    log
}

/// `batch-analyze run` into `out` in each format, on `engine` (`None`: embedded).
fn reports(
    pipeline: &Path,
    lake: &str,
    out: &Path,
    engine: Option<&str>,
    env: &[(&'static str, String)],
) {
    for format in ["csv", "parquet", "html"] {
        let mut c = cmd("batch-analyze");
        c.envs(env.iter().map(|(k, v)| (*k, v)))
            .args(["run", "-q", "-c"])
            .arg(pipeline)
            .args(["--lake", lake, "--format", format, "--out"])
            .arg(out.join(format));
        if let Some(e) = engine {
            c.args(["--cluster", e]);
        }
        run_ok(&mut c);
    }
}

fn assert_same_files(embedded: &Path, cluster: &Path) {
    let (e, c) = (files(embedded), files(cluster));
    assert_eq!(
        e.keys().collect::<Vec<_>>(),
        c.keys().collect::<Vec<_>>(),
        "different files"
    );
    assert!(!e.is_empty());
    for ((name, a), b) in e.iter().zip(c.values()) {
        assert!(
            a == b,
            "{name} differs on the cluster:\n{}\n---\n{}",
            String::from_utf8_lossy(a),
            String::from_utf8_lossy(b)
        );
    }
}

/// The report tables a run wrote into a local lake, rendered.
fn report_tables(lake: &Path, pipeline: &Path) -> Vec<String> {
    let text = std::fs::read_to_string(pipeline).unwrap();
    let mut out = Vec::new();
    for line in text.lines() {
        if let Some(name) = line.trim().strip_prefix("- name: ") {
            let dir = lake.join("reports").join(name.trim());
            if dir.is_dir() {
                out.push(format!("{name}\n{}", render_table(&dir)));
            }
        }
    }
    assert!(!out.is_empty(), "no report tables in {}", lake.display());
    out
}

/// The embedded run and the run on `engine` over the same lake give the same bytes: every
/// report in CSV, Parquet and HTML, and the report tables in the lake.
fn assert_cluster_matches(
    dir: &Path,
    pipeline: &Path,
    lake: &Path,
    engine: &str,
    env: &[(&'static str, String)],
) {
    let name = lake.file_name().unwrap().to_string_lossy().to_string();
    let root = lake.to_string_lossy().to_string();
    let embedded = dir.join(format!("{name}-embedded"));
    reports(pipeline, &root, &embedded, None, env);
    let tables = report_tables(lake, pipeline);
    let cluster = dir.join(format!("{name}-cluster"));
    reports(pipeline, &root, &cluster, Some(engine), env);
    assert_same_files(&embedded, &cluster);
    assert_eq!(tables, report_tables(lake, pipeline));
}

#[test]
fn the_standalone_cluster_gives_the_embedded_reports_byte_for_byte() {
    let dir = tempfile::tempdir().unwrap();
    let log = shared_data("apache_logs.log");
    for (pipeline, lake) in [(reference(), "lake"), (insights(), "insights-lake")] {
        let lake = dir.path().join(lake);
        ingest(dir.path(), &pipeline, &log, &lake.to_string_lossy(), &[]);
        assert_cluster_matches(dir.path(), &pipeline, &lake, "standalone", &[]);
    }
}

/// A Delta lake (`lake.format: delta`): the client resolves each table's files from its log
/// and ships the list, so the cluster's reports are the embedded ones, and both are the Hive
/// lake's, byte for byte.
#[test]
fn the_standalone_cluster_reads_a_delta_lake_as_the_hive_lake() {
    let dir = tempfile::tempdir().unwrap();
    let log = shared_data("apache_logs.log");
    let delta = dir.path().join("delta.yaml");
    let text = std::fs::read_to_string(reference()).unwrap().replacen(
        "  partition_time: hour",
        "  format: delta\n  partition_time: hour",
        1,
    );
    std::fs::write(&delta, text).unwrap();
    std::fs::copy(
        workspace().join("pipelines/status_codes.csv"),
        dir.path().join("status_codes.csv"),
    )
    .unwrap();
    let lake = dir.path().join("delta-lake");
    ingest(dir.path(), &delta, &log, &lake.to_string_lossy(), &[]);
    assert!(lake.join("status_1m/_delta_log").is_dir());
    assert_cluster_matches(dir.path(), &delta, &lake, "standalone", &[]);
    let hive = dir.path().join("hive-lake");
    ingest(dir.path(), &reference(), &log, &hive.to_string_lossy(), &[]);
    reports(
        &reference(),
        &hive.to_string_lossy(),
        &dir.path().join("hive"),
        None,
        &[],
    );
    for format in ["csv", "parquet"] {
        let embedded = dir.path().join("delta-lake-embedded").join(format);
        assert_same_files(&dir.path().join("hive").join(format), &embedded);
    }
}

#[test]
fn a_scheduler_and_two_executors_give_the_embedded_reports_on_three_lakes() {
    let dir = tempfile::tempdir().unwrap();
    let cluster = Cluster::start(2, &[]);
    let inputs = [
        ("sample", shared_data("apache_logs.log")),
        ("million", generated(dir.path(), "1000000", "20")),
        // Many small partitions: 36 days of hourly files.
        ("days36", generated(dir.path(), "1000000", "0.32")),
    ];
    for (name, log) in inputs {
        let lake = dir.path().join(name);
        ingest(dir.path(), &reference(), &log, &lake.to_string_lossy(), &[]);
        assert_cluster_matches(dir.path(), &reference(), &lake, &cluster.url, &[]);
    }
    // The sketch functions run on the executors.
    let lake = dir.path().join("insights");
    let log = shared_data("apache_logs.log");
    ingest(dir.path(), &insights(), &log, &lake.to_string_lossy(), &[]);
    assert_cluster_matches(dir.path(), &insights(), &lake, &cluster.url, &[]);
}

/// The reference pipeline with `lake.s3` settings for `endpoint`, beside its dimension.
fn reference_on_s3(dir: &Path, endpoint: &str) -> PathBuf {
    let text = std::fs::read_to_string(reference()).unwrap();
    let settings = format!(
        "lake:\n  s3: {{ endpoint: \"{endpoint}\", region: us-east-1, allow_http: true }}\n"
    );
    let text = text.replacen("lake:\n", &settings, 1);
    assert!(text.contains("allow_http"));
    let pipeline = dir.join("access-log.yaml");
    std::fs::write(&pipeline, text).unwrap();
    let dimension = workspace().join("pipelines/status_codes.csv");
    std::fs::copy(dimension, dir.join("status_codes.csv")).unwrap();
    pipeline
}

#[test]
fn executors_read_a_lake_on_s3_at_the_endpoint_of_the_yaml() {
    let s3: Arc<S3Server> = S3Server::start();
    s3.create_bucket("lake");
    let dir = tempfile::tempdir().unwrap();
    // The endpoint is in the YAML only; every process has the credentials. Executors know
    // the endpoint from the queries they get (without it they would try AWS itself).
    let pipeline = reference_on_s3(dir.path(), &s3.endpoint);
    let env: Vec<_> = s3
        .env()
        .into_iter()
        .filter(|(k, _)| k.starts_with("AWS_ACCESS") || k.starts_with("AWS_SECRET"))
        .collect();
    assert_eq!(env.len(), 2);
    let url = "s3://lake/access";
    ingest(
        dir.path(),
        &pipeline,
        &shared_data("apache_logs.log"),
        url,
        &env,
    );
    let cluster = Cluster::start(2, &env);
    let embedded = dir.path().join("embedded");
    reports(&pipeline, url, &embedded, None, &env);
    let on_cluster = dir.path().join("cluster");
    reports(&pipeline, url, &on_cluster, Some(&cluster.url), &env);
    assert_same_files(&embedded, &on_cluster);
    // And a standalone cluster, which reads with this process's lake store.
    let standalone = dir.path().join("standalone");
    reports(&pipeline, url, &standalone, Some("standalone"), &env);
    assert_same_files(&embedded, &standalone);
}

#[test]
fn an_executor_killed_mid_query_leaves_nothing_half_written() {
    let dir = tempfile::tempdir().unwrap();
    let log = generated(dir.path(), "1000000", "0.32");
    let lake = dir.path().join("lake");
    let root = lake.to_string_lossy().to_string();
    ingest(dir.path(), &reference(), &log, &root, &[]);
    let embedded = dir.path().join("embedded");
    reports(&reference(), &root, &embedded, None, &[]);
    let expected = report_tables(&lake, &reference());
    // Remove what the embedded run left, so that only the cluster's runs write below.
    std::fs::remove_dir_all(lake.join("reports")).unwrap();
    std::fs::remove_dir_all(lake.join("_state/batch-analyze")).ok();

    // The doomed executor alone first, so that the query's first tasks are its own; it
    // is killed when it starts one, once a second executor has joined.
    let mut cluster = Cluster::start(0, &[]);
    let mut doomed = cluster.spawn_executor(&[], true);
    let log = doomed.stderr.take().unwrap();
    let out = dir.path().join("cluster");
    let mut run = cmd("batch-analyze");
    run.args(["run", "-q", "-c"])
        .arg(reference())
        .args([
            "--lake",
            &root,
            "--format",
            "csv",
            "--cluster",
            &cluster.url,
            "--query-timeout",
            "30s",
            "--out",
        ])
        .arg(out.join("csv"))
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    let child = run.spawn().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        // Read to the end: the executor's log writes must not fail while it lives.
        for line in std::io::BufRead::lines(std::io::BufReader::new(log)).map_while(Result::ok) {
            if line.contains("Execute task") {
                let _ = tx.send(());
            }
        }
    });
    rx.recv_timeout(Duration::from_secs(120))
        .expect("the doomed executor never ran a task");
    cluster.add_executor(&[]);
    doomed.kill().unwrap();
    doomed.wait().unwrap();
    let status = wait_with_deadline(child, Duration::from_secs(120));
    // Ballista ran the lost tasks again (exit 0), or the run failed (exit 1): either way,
    // every file written is whole (each report is written atomically, its state last).
    assert!(
        matches!(status.0, Some(0) | Some(1)),
        "exit {:?}: {}",
        status.0,
        status.1
    );
    if status.0 == Some(1) {
        assert_eq!(status.1.trim().lines().count(), 1, "{}", status.1);
        // Ballista 55 did not recover: the job waits forever, and the scheduler takes no
        // new job either (see ARCHITECTURE.md). The way out is a fresh cluster.
        drop(cluster);
        cluster = Cluster::start(2, &[]);
    }
    // (A run that failed at its first report wrote nothing, not even the directory.)
    let written = files(&out.join("csv"));
    for (name, bytes) in written {
        let whole = std::fs::read(embedded.join("csv").join(&name)).unwrap();
        assert_eq!(bytes, whole, "{name} is not the whole report");
    }
    // The next run (on the executor left) succeeds and gives the embedded run's bytes.
    reports(&reference(), &root, &out, Some(&cluster.url), &[]);
    assert_same_files(&embedded, &out);
    assert_eq!(expected, report_tables(&lake, &reference()));
}

/// Waits for a child, killing it after `limit`; its exit code and standard error.
fn wait_with_deadline(mut child: Child, limit: Duration) -> (Option<i32>, String) {
    let deadline = Instant::now() + limit;
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            let mut err = String::new();
            use std::io::Read;
            child
                .stderr
                .take()
                .unwrap()
                .read_to_string(&mut err)
                .unwrap();
            return (status.code(), err);
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("the run did not end in {limit:?}");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn a_scheduler_that_is_not_there_is_one_line_and_exit_1() {
    let dir = tempfile::tempdir().unwrap();
    let lake = dir.path().join("lake");
    ingest(
        dir.path(),
        &reference(),
        &shared_data("apache_logs.log"),
        &lake.to_string_lossy(),
        &[],
    );
    let port = free_port();
    let out = Command::new(e2e::bin("batch-analyze"))
        .args(["run", "-c"])
        .arg(reference())
        .arg("--lake")
        .arg(&lake)
        .args(["--cluster", &format!("df://127.0.0.1:{port}")])
        .stdin(Stdio::null())
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert_eq!(err.trim().lines().count(), 1, "{err}");
    assert!(
        err.contains(&format!(
            "df://127.0.0.1:{port}: cannot reach the scheduler"
        )),
        "{err}"
    );
    assert!(out.stdout.is_empty());
    // `--explain` runs no query: it needs no scheduler.
    let explained = cmd("batch-analyze")
        .args(["run", "--explain", "-c"])
        .arg(reference())
        .arg("--lake")
        .arg(&lake)
        .args(["--cluster", &format!("df://127.0.0.1:{port}")])
        .output()
        .unwrap();
    assert!(explained.status.success(), "{explained:?}");
    assert!(String::from_utf8_lossy(&explained.stdout).contains("report daily_status_class"));

    // A URL that is not one is a usage error, from the command line or the file.
    let out = cmd("batch-analyze")
        .args(["run", "-c"])
        .arg(reference())
        .args(["--cluster", "http://127.0.0.1:50050"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let yaml = dir.path().join("p.yaml");
    let text = std::fs::read_to_string(reference()).unwrap();
    std::fs::write(
        &yaml,
        format!("{text}\nengine: {{ cluster: 'tcp://x:1' }}\n"),
    )
    .unwrap();
    std::fs::copy(
        workspace().join("pipelines/status_codes.csv"),
        dir.path().join("status_codes.csv"),
    )
    .unwrap();
    let out = cmd("batch-analyze")
        .args(["validate", "-c"])
        .arg(&yaml)
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(err.contains("engine.cluster"), "{err}");
}
