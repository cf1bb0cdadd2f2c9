//! Exactly once through crashes: `kill -9` at random instants, faults injected between
//! pre-commit and commit, a damaged newest checkpoint. Each run must end with exactly the
//! rows of an uninterrupted run: none lost, none doubled, no visible staged or empty file.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use e2e::*;

const TABLES: [&str; 3] = ["status_1m", "path_1m", "late"];

fn pipeline() -> PathBuf {
    workspace().join("pipelines/access-log.yaml")
}

/// A small deterministic generator for kill instants (xorshift64*).
struct Rng(u64);

impl Rng {
    fn below(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d) % n
    }
}

fn seed() -> u64 {
    std::env::var("CRASH_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_nanos() as u64
                | 1
        })
}

fn generated_log(dir: &Path, lines: u32) -> PathBuf {
    let log = dir.join("gen.log");
    run_ok(
        python()
            .arg(workspace().join("tests/oracle/gen_log.py"))
            .arg(lines.to_string())
            .arg("11")
            .arg(&log),
    );
    log
}

fn ingest(
    dir: &Path,
    log: &Path,
    lake: &str,
    extra: &[&str],
    env: &[(&'static str, String)],
) -> Command {
    // A test's own pipeline file in `dir` (the Delta one), else the reference pipeline.
    let own = dir.join("pipeline.yaml");
    let yaml = if own.exists() { own } else { pipeline() };
    let mut c = cmd("stream-ingest");
    c.current_dir(dir)
        .envs(env.iter().map(|(k, v)| (*k, v)))
        .args(["run", "-q", "-c"])
        .arg(yaml);
    c.arg("--input").arg(log).args(["--lake", lake]).args(extra);
    c
}

/// The tables of a local lake as canonical CSV, and the dead-letter file.
fn snapshot(dir: &Path, lake: &Path) -> Vec<(String, String)> {
    let render = |t: &str| {
        let dir = lake.join(t);
        if dir.exists() && !parquet_files(&dir).is_empty() {
            render_table(&dir)
        } else {
            String::new()
        }
    };
    let mut out: Vec<(String, String)> =
        TABLES.iter().map(|t| (t.to_string(), render(t))).collect();
    let dead =
        std::fs::read_to_string(dir.join("out/access-log.invalid.jsonl")).unwrap_or_default();
    out.push(("dead letters".into(), dead));
    for f in parquet_files(lake) {
        assert!(
            std::fs::metadata(&f).unwrap().len() > 0,
            "empty file {}",
            f.display()
        );
    }
    out
}

fn assert_same(expected: &[(String, String)], actual: &[(String, String)], seed: u64) {
    for ((name, e), (_, a)) in expected.iter().zip(actual) {
        assert!(
            e == a,
            "{name} differs from the uninterrupted run ({} vs {} lines); replay with CRASH_SEED={seed}",
            e.lines().count(),
            a.lines().count()
        );
    }
}

/// Runs with a 1 s checkpoint interval, killed with SIGKILL at random instants at least
/// `kills` times, then to the end; returns the number of kills.
fn run_with_kills(
    dir: &Path,
    log: &Path,
    lake: &str,
    env: &[(&'static str, String)],
    kills: u32,
    seed: u64,
) -> u32 {
    let mut rng = Rng(seed);
    let paced = [
        "--checkpoint-interval",
        "1s",
        "--chunk-bytes",
        "65536",
        "--max-lines-per-sec",
        "12000",
    ];
    let mut done = 0;
    let mut attempts = 0;
    while done < kills {
        attempts += 1;
        assert!(
            attempts < kills * 4,
            "the run kept finishing before it could be killed"
        );
        let mut child = ingest(dir, log, lake, &paced, env).spawn().unwrap();
        std::thread::sleep(Duration::from_millis(150 + rng.below(1900)));
        if child.try_wait().unwrap().is_none() {
            child.kill().unwrap(); // SIGKILL
            child.wait().unwrap();
            done += 1;
        } else {
            let status = child.wait().unwrap();
            assert!(
                status.success(),
                "a run failed on its own: {status}; CRASH_SEED={seed}"
            );
            break;
        }
    }
    run_ok(&mut ingest(
        dir,
        log,
        lake,
        &["--checkpoint-interval", "1s"],
        env,
    ));
    done
}

/// The tables and dead letters of an uninterrupted run on `log`, in `dir/reference`.
fn uninterrupted(dir: &Path, log: &Path) -> Vec<(String, String)> {
    let reference = dir.join("reference");
    std::fs::create_dir_all(&reference).unwrap();
    let lake = reference.join("lake");
    run_ok(&mut ingest(
        &reference,
        log,
        lake.to_str().unwrap(),
        &[],
        &[],
    ));
    snapshot(&reference, &lake)
}

#[test]
fn kill_9_at_random_instants_loses_and_doubles_nothing() {
    let seed = seed();
    eprintln!("CRASH_SEED={seed}");
    let dir = tempfile::tempdir().unwrap();
    let log = generated_log(dir.path(), 200_000);

    let expected = uninterrupted(dir.path(), &log);
    let crashed = dir.path().join("crashed");
    std::fs::create_dir_all(&crashed).unwrap();
    let lake = crashed.join("lake");
    let kills = run_with_kills(&crashed, &log, lake.to_str().unwrap(), &[], 20, seed);
    eprintln!("{kills} kills");
    assert!(kills >= 20);
    assert_same(&expected, &snapshot(&crashed, &lake), seed);
    assert!(parquet_files(&lake.join("_staging")).is_empty());
}

/// A directory whose runs (`ingest`) use the reference pipeline with `lake.format: delta`
/// and the `lake` settings `extra`.
fn delta_run_dir(dir: &Path, extra: &str) -> PathBuf {
    std::fs::create_dir_all(dir).unwrap();
    let yaml = std::fs::read_to_string(pipeline()).unwrap().replacen(
        "  partition_time: hour",
        &format!("  format: delta\n{extra}  partition_time: hour"),
        1,
    );
    std::fs::write(dir.join("pipeline.yaml"), yaml).unwrap();
    std::fs::copy(
        workspace().join("pipelines/status_codes.csv"),
        dir.join("status_codes.csv"),
    )
    .unwrap();
    dir.to_path_buf()
}

/// `lake.format: delta`, killed with SIGKILL at random instants while it commits and merges
/// committed partitions (OPTIMIZE): DuckDB's `delta_scan` (an independent Delta reader) reads
/// the rows of an uninterrupted Hive run, no log adds a file twice, and the files the logs
/// name give those rows to our reader too.
#[test]
fn kill_9_on_a_delta_lake_loses_and_doubles_nothing() {
    let seed = seed();
    eprintln!("CRASH_SEED={seed}");
    let dir = tempfile::tempdir().unwrap();
    let log = generated_log(dir.path(), 200_000);
    let expected = uninterrupted(dir.path(), &log);
    let crashed = delta_run_dir(&dir.path().join("crashed"), "");
    let lake = crashed.join("lake");
    let kills = run_with_kills(&crashed, &log, lake.to_str().unwrap(), &[], 10, seed);
    assert!(kills >= 10);
    // The files the logs name (`parquet_files` reads a Delta log) give the rows.
    assert_same(&expected, &snapshot(&crashed, &lake), seed);
    check_delta_lake(&dir.path().join("reference/lake"), &lake, seed);
}

/// The same on S3 (moto): every commit a conditional PUT of the log entry.
#[test]
fn kill_9_on_s3_on_a_delta_lake_loses_and_doubles_nothing() {
    let seed = seed();
    eprintln!("CRASH_SEED={seed}");
    let dir = tempfile::tempdir().unwrap();
    let crashed = delta_run_dir(&dir.path().join("crashed"), "");
    let run = killed_on_s3(dir.path(), &crashed, "delta", 10, seed);
    assert_same(&run.expected, &snapshot(&crashed, &run.copy), seed);
    check_delta_lake(&dir.path().join("reference/lake"), &run.copy, seed);
}

/// A run on S3 (moto) killed at random instants, and the lake it left.
struct KilledOnS3 {
    /// The snapshot of an uninterrupted run of the same log.
    expected: Vec<(String, String)>,
    /// The lake downloaded, and its keys.
    copy: PathBuf,
    keys: Vec<String>,
}

/// Runs a generated 200,000-line log in `crashed` on a moto lake `s3://lake/<prefix>`,
/// killed at least `kills` times (instants from `seed`), and downloads the lake.
fn killed_on_s3(dir: &Path, crashed: &Path, prefix: &str, kills: u32, seed: u64) -> KilledOnS3 {
    let s3 = S3Server::start();
    s3.create_bucket("lake");
    let log = generated_log(dir, 200_000);
    let expected = uninterrupted(dir, &log);
    let lake = format!("s3://lake/{prefix}");
    let done = run_with_kills(crashed, &log, &lake, &s3.env(), kills, seed);
    assert!(done >= kills);
    let copy = crashed.join("copy");
    let keys = s3.download("lake", prefix, &copy);
    KilledOnS3 {
        expected,
        copy,
        keys,
    }
}

/// DuckDB's `delta_scan` of every table of a Delta lake gives the rows of the Hive lake
/// `hive`; no log adds a file twice; partitions were merged by OPTIMIZE commits.
fn check_delta_lake(hive: &Path, delta: &Path, seed: u64) {
    let script = format!(
        r#"
import duckdb, glob, json
from duckdb_extensions import import_extension
import_extension("delta")
hive, delta = {hive:?}, {delta:?}
for t in ["status_1m", "path_1m", "late"]:
    cols = "* EXCLUDE (dt, hour)"
    a = duckdb.sql(f"SELECT {{cols}} FROM read_parquet('{{hive}}/{{t}}/**/*.parquet', hive_partitioning=true) ORDER BY ALL").fetchall()
    b = duckdb.sql(f"SELECT {{cols}} FROM delta_scan('{{delta}}/{{t}}') ORDER BY ALL").fetchall()
    assert a == b, (t, len(a), len(b))
    adds = [json.loads(l)["add"]["path"] for f in glob.glob(f"{{delta}}/{{t}}/_delta_log/*.json") for l in open(f) if '"add"' in l]
    assert len(adds) == len(set(adds)), (t, "a file added twice")
# Committed partitions were merged by OPTIMIZE commits (partition_commit.compact).
assert any('"OPTIMIZE"' in open(f).read() for f in glob.glob(f"{{delta}}/status_1m/_delta_log/*.json"))
"#,
        hive = hive.to_str().unwrap(),
        delta = delta.to_str().unwrap()
    );
    let checked = python().args(["-c", &script]).output().unwrap();
    assert!(
        checked.status.success(),
        "{}; replay with CRASH_SEED={seed}",
        String::from_utf8_lossy(&checked.stderr)
    );
}

#[test]
fn kill_9_on_s3_loses_and_doubles_nothing() {
    let seed = seed();
    eprintln!("CRASH_SEED={seed}");
    let dir = tempfile::tempdir().unwrap();
    let crashed = dir.path().join("crashed");
    std::fs::create_dir_all(&crashed).unwrap();
    let run = killed_on_s3(dir.path(), &crashed, "crash", 20, seed);
    let keys = &run.keys;
    assert!(
        keys.iter().all(|k| !k.contains("/_staging/")),
        "staged files left: {keys:?}"
    );
    assert_same(&run.expected, &snapshot(&crashed, &run.copy), seed);
}

/// Runs the sample paced, so that it takes several checkpoints.
fn paced(dir: &Path, lake: &Path, env: &[(&'static str, String)]) -> std::process::Output {
    let log = shared_data("apache_logs.log");
    let extra = [
        "--checkpoint-interval",
        "100ms",
        "--chunk-bytes",
        "32768",
        "--max-lines-per-sec",
        "20000",
    ];
    ingest(dir, &log, lake.to_str().unwrap(), &extra, env)
        .output()
        .unwrap()
}

fn golden_tables(lake: &Path) {
    for t in ["status_1m", "path_1m"] {
        check_golden(
            &workspace()
                .join("tests/golden/access-log")
                .join(format!("{t}.csv")),
            &render_table(&lake.join(t)),
        );
    }
}

#[test]
fn crashes_between_pre_commit_and_commit_recover_exactly() {
    for point in [
        "after-stage:3",
        "after-checkpoint:2",
        "mid-publish:2",
        "after-publish:2",
        "after-checkpoint:4",
    ] {
        let dir = tempfile::tempdir().unwrap();
        let lake = dir.path().join("lake");
        let out = paced(
            dir.path(),
            &lake,
            &[("STREAM_INGEST_CRASH_AT", point.to_string())],
        );
        assert!(!out.status.success(), "{point}: the run did not crash");
        assert!(
            String::from_utf8_lossy(&out.stderr).contains("crashing at"),
            "{point}"
        );
        let out = paced(dir.path(), &lake, &[]);
        assert!(
            out.status.success(),
            "{point}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        golden_tables(&lake);
        assert!(parquet_files(&lake.join("_staging")).is_empty(), "{point}");
    }
}

/// A generated log read at 20,000 lines/s in 16 KiB chunks with 100 ms checkpoints: many
/// checkpoints while partitions are open.
const PACED_100MS: [&str; 6] = [
    "--checkpoint-interval",
    "100ms",
    "--chunk-bytes",
    "16384",
    "--max-lines-per-sec",
    "20000",
];

/// Rows roll into a new file at every checkpoint and each partition's files are merged when
/// it commits; a crash at any step of that (between two checkpoints that roll a partition,
/// after its commit, between publishing the merged file and removing the small ones) still
/// ends with the rows of an uninterrupted run, one file per committed partition.
#[test]
fn compaction_at_commit_survives_crashes_at_every_step() {
    let dir = tempfile::tempdir().unwrap();
    // Evenly spread events: partitions are open at checkpoints, so they get several files.
    let log = generated_log(dir.path(), 30_000);
    let expected = uninterrupted(dir.path(), &log);
    let paced = PACED_100MS;
    for point in [
        "after-checkpoint:3",
        "after-publish:6",
        "mid-replace:1",
        "mid-replace:12",
    ] {
        let crashed = dir.path().join(point.replace(':', "-"));
        std::fs::create_dir_all(&crashed).unwrap();
        let lake = crashed.join("lake");
        let lake_arg = lake.to_str().unwrap();
        let env = [("STREAM_INGEST_CRASH_AT", point.to_string())];
        let out = ingest(&crashed, &log, lake_arg, &paced, &env)
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(
            !out.status.success(),
            "{point}: the run did not crash: {err}"
        );
        assert!(err.contains("crashing at"), "{point}: {err}");
        run_ok(&mut ingest(&crashed, &log, lake_arg, &paced, &[]));
        assert_same(&expected, &snapshot(&crashed, &lake), 0);
        assert_one_file_per_committed_partition(&lake);
        assert!(parquet_files(&lake.join("_staging")).is_empty(), "{point}");
    }
}

#[test]
fn a_damaged_newest_checkpoint_falls_back_to_the_previous_one() {
    let dir = tempfile::tempdir().unwrap();
    let lake = dir.path().join("lake");
    let out = paced(
        dir.path(),
        &lake,
        &[("STREAM_INGEST_CRASH_AT", "after-publish:3".into())],
    );
    assert!(!out.status.success());
    let ckdir = lake.join("_checkpoints/access-log");
    // The checkpoints (beside them, the pipeline's lock file).
    let mut cks: Vec<PathBuf> = std::fs::read_dir(&ckdir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "bin"))
        .collect();
    cks.sort();
    assert_eq!(cks.len(), 3, "{cks:?}");
    // Damage the newest: cut it in half.
    let newest = cks.last().unwrap();
    let data = std::fs::read(newest).unwrap();
    std::fs::write(newest, &data[..data.len() / 2]).unwrap();
    let out = paced(dir.path(), &lake, &[]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{err}");
    golden_tables(&lake);
}

#[test]
fn a_rerun_after_the_end_adds_nothing_and_from_scratch_rebuilds_the_tables() {
    let dir = tempfile::tempdir().unwrap();
    let lake = dir.path().join("lake");
    let log = shared_data("apache_logs.log");
    run_ok(&mut ingest(
        dir.path(),
        &log,
        lake.to_str().unwrap(),
        &[],
        &[],
    ));
    let files = parquet_files(&lake);
    let out = run_ok(
        cmd("stream-ingest")
            .current_dir(dir.path())
            .args(["run", "-c"])
            .arg(pipeline())
            .arg("--input")
            .arg(&log)
            .arg("--lake")
            .arg(&lake),
    );
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("0 rows in 0 files"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(parquet_files(&lake), files);
    // A rebuild replaces every file of the earlier run (new checkpoint ids in the names),
    // with the same rows.
    run_ok(&mut ingest(
        dir.path(),
        &log,
        lake.to_str().unwrap(),
        &["--from-scratch"],
        &[],
    ));
    let rebuilt = parquet_files(&lake);
    assert_eq!(rebuilt.len(), files.len());
    assert!(rebuilt.iter().all(|f| !files.contains(f)));
    golden_tables(&lake);
    // Another input on the same lake needs --from-scratch.
    let other = dir.path().join("other.log");
    std::fs::write(
        &other,
        "h - - [17/May/2015:10:05:03 +0000] \"GET / HTTP/1.1\" 200 1\n",
    )
    .unwrap();
    let out = ingest(dir.path(), &other, lake.to_str().unwrap(), &[], &[])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("--from-scratch"));
}

#[test]
fn sigterm_checkpoints_and_the_same_command_resumes() {
    let dir = tempfile::tempdir().unwrap();
    let lake = dir.path().join("lake");
    let log = shared_data("apache_logs.log");
    let extra = [
        "--checkpoint-interval",
        "10s",
        "--chunk-bytes",
        "32768",
        "--max-lines-per-sec",
        "5000",
    ];
    let child = ingest(dir.path(), &log, lake.to_str().unwrap(), &extra, &[])
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_millis(700));
    stop_with_sigterm(child);
    // The checkpoint at the signal published what was complete; the rest comes on resume.
    assert!(
        lake.join("_checkpoints/access-log")
            .read_dir()
            .unwrap()
            .count()
            >= 1
    );
    run_ok(&mut ingest(
        dir.path(),
        &log,
        lake.to_str().unwrap(),
        &[],
        &[],
    ));
    golden_tables(&lake);
}

/// The `_SUCCESS` markers below `lake`, by partition directory: (rows, files) from their JSON.
fn markers(lake: &Path) -> Vec<(PathBuf, u64, Vec<String>)> {
    let mut out = Vec::new();
    let mut stack = vec![lake.to_path_buf()];
    while let Some(dir) = stack.pop() {
        for e in std::fs::read_dir(&dir).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() && !p.file_name().unwrap().to_string_lossy().starts_with('_') {
                stack.push(p);
            } else if p.file_name().unwrap() == "_SUCCESS" {
                let v: serde_json::Value =
                    serde_json::from_slice(&std::fs::read(&p).unwrap()).unwrap();
                let files = v["files"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|f| f.as_str().unwrap().to_string())
                    .collect();
                out.push((dir.clone(), v["rows"].as_u64().unwrap(), files));
            }
        }
    }
    out.sort();
    out
}

/// Every committed partition holds exactly the one file its marker names (compaction at
/// commit), and no replacement is left half done.
fn assert_one_file_per_committed_partition(lake: &Path) {
    let all = markers(lake);
    assert!(!all.is_empty());
    for (part, _, files) in &all {
        assert_eq!(files.len(), 1, "{} was not merged", part.display());
        assert_eq!(&visible_files(part), files, "{}", part.display());
        assert!(!part.join("_REPLACING").exists(), "{}", part.display());
    }
}

fn visible_files(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().to_string())
        .filter(|n| n.ends_with(".parquet"))
        .collect();
    v.sort();
    v
}

#[test]
fn committed_partitions_never_change_and_gate_the_batch_stage() {
    let dir = tempfile::tempdir().unwrap();
    let lake = dir.path().join("lake");
    let out = paced(
        dir.path(),
        &lake,
        &[("STREAM_INGEST_CRASH_AT", "after-publish:4".into())],
    );
    assert!(!out.status.success());
    let early = markers(&lake);
    assert!(
        !early.is_empty(),
        "no partition was committed before the crash"
    );
    for (part, rows, files) in &early {
        assert_eq!(&visible_files(part), files, "{}", part.display());
        assert_eq!(
            read_table(part).num_rows() as u64,
            *rows,
            "{}",
            part.display()
        );
    }
    let out = paced(dir.path(), &lake, &[]);
    assert!(out.status.success());
    golden_tables(&lake);
    // Nothing was added to a partition after its commit (its files were merged into one);
    // every partition is committed at the end, as one file.
    let all = markers(&lake);
    for (part, rows, _) in &early {
        let now = all.iter().find(|(p, _, _)| p == part).unwrap();
        assert_eq!(now.1, *rows, "{} changed after its commit", part.display());
        assert_eq!(
            read_table(part).num_rows() as u64,
            *rows,
            "{}",
            part.display()
        );
    }
    assert_one_file_per_committed_partition(&lake);
    let with_files = parquet_files(&lake)
        .iter()
        .map(|f| f.parent().unwrap().to_path_buf())
        .collect::<std::collections::BTreeSet<_>>();
    assert_eq!(all.len(), with_files.len());

    // The batch stage reads committed partitions only, unless --include-open.
    let (gone, _, _) = &all[all.len() - 1];
    std::fs::remove_file(gone.join("_SUCCESS")).unwrap();
    let report = |extra: &[&str]| {
        let out_dir = dir.path().join(format!("reports{}", extra.len()));
        run_ok(
            cmd("batch-analyze")
                .args(["run", "-q", "-c"])
                .arg(pipeline())
                .arg("--lake")
                .arg(&lake)
                .args(extra)
                .arg("--out")
                .arg(&out_dir),
        );
        std::fs::read_to_string(out_dir.join("daily_status_class.csv")).unwrap()
    };
    let golden =
        std::fs::read_to_string(workspace().join("tests/golden/access-log/daily_status_class.csv"))
            .unwrap();
    assert_ne!(report(&[]), golden, "an open partition was read");
    assert_eq!(report(&["--include-open"]), golden);
}

#[test]
fn tail_follows_rotation_and_truncation_across_a_kill_and_loses_or_doubles_nothing() {
    let text = std::fs::read_to_string(shared_data("apache_logs.log")).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 10_000);
    let part = |a: usize, b: usize| &lines[a..b];

    // Reference: the same lines, in the same order, in one followed file.
    let reference = tempfile::tempdir().unwrap();
    let yaml = tail_pipeline(reference.path(), "access.log", "1s");
    let log = reference.path().join("logs/access.log");
    append_lines(&log, part(0, 10_000));
    let summary = settle_and_stop(start_tail(reference.path(), &yaml));
    assert!(summary.contains("10000 lines read"), "{summary}");
    let expected = snapshot(reference.path(), &reference.path().join("lake"));

    let dir = tempfile::tempdir().unwrap();
    let yaml = tail_pipeline(dir.path(), "access.log", "1s");
    let logs = dir.path().join("logs");
    let log = logs.join("access.log");
    let pause = || std::thread::sleep(Duration::from_millis(600));
    append_lines(&log, part(0, 2_000));
    let child = start_tail(dir.path(), &yaml);
    pause();
    append_lines(&log, part(2_000, 3_000));
    pause();
    // Rotation: rename, a last line to the old file (a writer that has not reopened yet),
    // then a new file.
    std::fs::rename(&log, logs.join("access.log.1")).unwrap();
    append_lines(&logs.join("access.log.1"), part(3_000, 3_001));
    pause();
    append_lines(&log, part(3_001, 5_000));
    pause();
    // Truncation (copytruncate): the file is emptied in place, then written again.
    std::fs::copy(&log, logs.join("access.log.2")).unwrap();
    std::fs::OpenOptions::new()
        .write(true)
        .truncate(true)
        .open(&log)
        .unwrap();
    pause();
    append_lines(&log, part(5_000, 6_000));
    // Wait for a checkpoint, then a crash.
    std::thread::sleep(Duration::from_millis(2500));
    let mut child = child;
    child.kill().unwrap();
    child.wait().unwrap();
    // While the stage is down: more lines, another rotation, a new file.
    append_lines(&log, part(6_000, 7_000));
    std::fs::rename(&log, logs.join("access.log.3")).unwrap();
    append_lines(&log, part(7_000, 8_000));
    let child = start_tail(dir.path(), &yaml);
    pause();
    append_lines(&log, part(8_000, 10_000));
    let summary = settle_and_stop(child);
    assert!(summary.contains("10000 lines read"), "{summary}");
    assert!(summary.contains("resumed from checkpoint"), "{summary}");
    let actual = snapshot(dir.path(), &dir.path().join("lake"));
    assert_same(&expected, &actual, 0);
    assert!(
        !expected[0].1.is_empty() && expected[0].1.lines().count() > 100,
        "the reference wrote rows"
    );
}

#[test]
fn idle_timeout_closes_the_windows_of_a_quiet_log() {
    let dir = tempfile::tempdir().unwrap();
    let yaml = tail_pipeline(dir.path(), "access.log", "1s");
    let text = std::fs::read_to_string(&yaml).unwrap();
    std::fs::write(
        &yaml,
        text.replace(
            "max_out_of_orderness: 60s",
            "max_out_of_orderness: 1s\n  idle_timeout: 300ms",
        )
        // One-second windows: the hour is complete soon after its last second.
        .replace(
            "{ kind: tumbling, size: 1m }",
            "{ kind: tumbling, size: 1s }",
        ),
    )
    .unwrap();
    // The last events of an hour: their window and partition end at 11:00.
    append_lines(
        &dir.path().join("logs/access.log"),
        &[
            "1.2.3.4 - - [17/May/2015:10:59:58 +0000] \"GET /a HTTP/1.1\" 200 10",
            "1.2.3.5 - - [17/May/2015:10:59:59 +0000] \"GET /b HTTP/1.1\" 404 20",
        ],
    );
    let child = start_tail(dir.path(), &yaml);
    // Quiet for a few seconds: event time moves on with the clock, the window and the
    // hour close, and the next checkpoint publishes them while the stage still runs.
    let lake = dir.path().join("lake");
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    let status = lake.join("status_1m");
    let committed_now = |s: &Path| s.exists() && !markers(s).is_empty();
    while !committed_now(&status) && std::time::Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(200));
    }
    let committed = if status.exists() {
        markers(&status)
    } else {
        vec![]
    };
    settle_and_stop(child);
    assert_eq!(committed.len(), 1, "the quiet hour was not committed");
    assert_eq!(committed[0].1, 2);
    assert!(committed[0].0.ends_with("dt=2015-05-17/hour=10"));
}

#[test]
fn compact_merges_the_files_of_committed_partitions_and_keeps_every_row() {
    let dir = tempfile::tempdir().unwrap();
    let lake = dir.path().join("lake");
    // Roll partitions early (20 rows) at frequent checkpoints: many files per partition.
    let yaml = dir.path().join("rolling.yaml");
    let text = std::fs::read_to_string(pipeline()).unwrap().replace(
        "    window: { kind: tumbling, size: 1m }\n",
        "    window: { kind: tumbling, size: 1m }\n    rolling: { max_rows: 20 }\n",
    ) + "\npartition_commit: { compact: false }\n";
    std::fs::write(&yaml, text).unwrap();
    std::fs::copy(
        workspace().join("pipelines/status_codes.csv"),
        dir.path().join("status_codes.csv"),
    )
    .unwrap();
    let log = generated_log(dir.path(), 30_000);
    let stream = || {
        run_ok(
            cmd("stream-ingest")
                .current_dir(dir.path())
                .args(["run", "-c"])
                .arg(&yaml)
                .arg("--input")
                .arg(&log)
                .arg("--lake")
                .arg(&lake)
                .args(PACED_100MS),
        )
    };
    stream();
    let tables = snapshot(dir.path(), &lake);
    let before = markers(&lake);
    let split = before.iter().filter(|(_, _, f)| f.len() > 1).count();
    assert!(
        split >= 3,
        "rolling should split partitions: {split} of {} split",
        before.len()
    );
    let files_before = parquet_files(&lake).len();

    let compact = |extra: &[&str]| {
        run_ok(
            cmd("stream-ingest")
                .current_dir(dir.path())
                .args(["compact", "-c"])
                .arg(&yaml)
                .arg("--lake")
                .arg(&lake)
                .args(extra),
        )
    };
    let dry = compact(&["--dry-run"]);
    assert!(String::from_utf8_lossy(&dry.stderr).contains("would merge"));
    assert_eq!(parquet_files(&lake).len(), files_before);
    let out = compact(&[]);
    let said = String::from_utf8_lossy(&out.stderr).to_string();
    assert!(said.contains("merged"), "{said}");
    assert_same(&tables, &snapshot(dir.path(), &lake), 0);
    let after = markers(&lake);
    assert_eq!(after.len(), before.len());
    let mut merged = 0;
    for ((dir_b, rows_b, files_b), (dir_a, rows_a, files_a)) in before.iter().zip(&after) {
        assert_eq!((dir_b, rows_b), (dir_a, rows_a));
        // The marker names exactly the files in the directory.
        let mut present: Vec<String> = std::fs::read_dir(dir_a)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .filter(|n| n.ends_with(".parquet"))
            .collect();
        present.sort();
        let mut listed = files_a.clone();
        listed.sort();
        assert_eq!(present, listed, "{}", dir_a.display());
        if files_b.len() > 1 && files_a.len() == 1 {
            merged += 1;
        }
    }
    assert!(merged >= 3, "{said}");
    assert!(parquet_files(&lake).len() < files_before);
    // Nothing left to merge but the partitions the kept checkpoints still cover.
    let again = compact(&[]);
    assert!(
        String::from_utf8_lossy(&again.stderr).contains("merged 0 files"),
        "{}",
        String::from_utf8_lossy(&again.stderr)
    );
    // The stream stage, run again on the same lake, resumes and adds nothing.
    let rerun = stream();
    assert!(String::from_utf8_lossy(&rerun.stderr).contains("0 rows in 0 files"));
    assert_same(&tables, &snapshot(dir.path(), &lake), 0);
}

/// Waits (up to a minute) until `ready` holds.
fn wait_for(what: &str, mut ready: impl FnMut() -> bool) {
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    while !ready() {
        assert!(std::time::Instant::now() < deadline, "waited for {what}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// A run of `log` paced to a few seconds, started in the background.
fn start_paced(
    dir: &Path,
    log: &Path,
    lake: &str,
    env: &[(&'static str, String)],
) -> std::process::Child {
    let paced = [
        "--checkpoint-interval",
        "200ms",
        "--max-lines-per-sec",
        "15000",
    ];
    ingest(dir, log, lake, &paced, env)
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap()
}

/// Two processes on one pipeline and lake: the second exits 3 naming the first (its pid),
/// the first finishes alone, and the lake is that of an uninterrupted run. `lock` reads the
/// lock's content ("" while there is none).
fn a_second_writer_is_refused(
    dir: &Path,
    lake: &str,
    env: &[(&'static str, String)],
    lock: impl Fn() -> String,
) {
    let log = generated_log(dir, 40_000);
    let first = start_paced(dir, &log, lake, env);
    let pid = format!("\"pid\":{}", first.id());
    wait_for("the first run's lock", || lock().contains(&pid));
    let second = ingest(dir, &log, lake, &[], env).output().unwrap();
    let err = String::from_utf8_lossy(&second.stderr);
    assert_eq!(second.status.code(), Some(3), "{err}");
    assert!(
        err.contains(&format!(
            "pipeline `access-log` is being written by pid {}",
            first.id()
        )),
        "{err}"
    );
    let first = first.wait_with_output().unwrap();
    assert!(
        first.status.success(),
        "{}",
        String::from_utf8_lossy(&first.stderr)
    );
}

#[test]
fn a_second_process_on_the_same_pipeline_and_lake_exits_3() {
    let dir = tempfile::tempdir().unwrap();
    let lake = dir.path().join("lake");
    let lock = lake.join("_checkpoints/access-log/writer.lock");
    a_second_writer_is_refused(dir.path(), lake.to_str().unwrap(), &[], || {
        std::fs::read_to_string(&lock).unwrap_or_default()
    });
    let log = dir.path().join("gen.log");
    assert_same(
        &uninterrupted(dir.path(), &log),
        &snapshot(dir.path(), &lake),
        0,
    );
    // `compact` writes the lake too: refused while a run holds the lock.
    let lake = dir.path().join("lake2");
    let lock = lake.join("_checkpoints/access-log/writer.lock");
    let run = start_paced(dir.path(), &log, lake.to_str().unwrap(), &[]);
    wait_for("the run's lock", || {
        std::fs::read_to_string(&lock)
            .unwrap_or_default()
            .contains(&format!("\"pid\":{}", run.id()))
    });
    let compact = cmd("stream-ingest")
        .current_dir(dir.path())
        .args(["compact", "-c"])
        .arg(pipeline())
        .args(["--lake", lake.to_str().unwrap()])
        .output()
        .unwrap();
    assert_eq!(
        compact.status.code(),
        Some(3),
        "{}",
        String::from_utf8_lossy(&compact.stderr)
    );
    assert!(run.wait_with_output().unwrap().status.success());
}

/// The lock object of the pipeline in `s3://lake/<prefix>`, or "".
fn s3_lock(s3: &S3Server, prefix: &str) -> String {
    s3.boto(&format!(
        "try:\n    print(s3.get_object(Bucket='lake', Key='{prefix}/_checkpoints/access-log/writer.lock')['Body'].read().decode())\nexcept s3.exceptions.NoSuchKey:\n    print('')"
    ))
}

#[test]
fn on_s3_a_second_process_exits_3_and_a_stale_owner_stops_before_publishing() {
    let s3 = S3Server::start();
    s3.create_bucket("lake");
    let dir = tempfile::tempdir().unwrap();
    a_second_writer_is_refused(dir.path(), "s3://lake/two", &s3.env(), || {
        s3_lock(&s3, "two")
    });
    let log = dir.path().join("gen.log");
    let expected = uninterrupted(dir.path(), &log);
    let copy = dir.path().join("copy");
    s3.download("lake", "two", &copy);
    assert_same(&expected, &snapshot(dir.path(), &copy), 0);

    // A lease taken over by another process (here: rewritten behind the holder's back): the
    // holder's next renewal is refused, and it stops before its next checkpoint, exit 3.
    let mut env = s3.env();
    env.push(("LAKE_LOCK_TTL", "3s".into()));
    let stale = dir.path().join("stale");
    std::fs::create_dir_all(&stale).unwrap();
    let holder = start_paced(&stale, &log, "s3://lake/stale", &env);
    let pid = format!("\"pid\":{}", holder.id());
    wait_for("the holder's lock", || s3_lock(&s3, "stale").contains(&pid));
    s3.boto(
        "s3.put_object(Bucket='lake', Key='stale/_checkpoints/access-log/writer.lock', Body=b'{\"host\":\"elsewhere\",\"pid\":1,\"started\":\"2026-01-01T00:00:00Z\",\"expires\":\"2026-01-01T00:01:00Z\"}')",
    );
    let out = holder.wait_with_output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(3), "{err}");
    assert!(
        err.contains("lost the lock of pipeline `access-log`"),
        "{err}"
    );
    // The other process's lease has expired: the same command takes over and finishes.
    run_ok(&mut ingest(&stale, &log, "s3://lake/stale", &[], &env));
    let copy = stale.join("copy");
    s3.download("lake", "stale", &copy);
    assert_same(&expected, &snapshot(&stale, &copy), 0);
}

/// Cron runs with `end_of_input: keep` over a log that grows in five chunks, each run
/// killed with SIGKILL at random instants before it is let finish: the lake is that of one
/// uninterrupted run over the whole log.
#[test]
fn kill_9_during_cron_runs_that_keep_their_windows_loses_and_doubles_nothing() {
    let seed = seed();
    eprintln!("CRASH_SEED={seed}");
    let mut rng = Rng(seed);
    let dir = tempfile::tempdir().unwrap();
    let whole = generated_log(dir.path(), 100_000);
    let expected = uninterrupted(dir.path(), &whole);

    let crashed = dir.path().join("crashed");
    std::fs::create_dir_all(&crashed).unwrap();
    let lake = crashed.join("lake");
    let lake = lake.to_str().unwrap();
    let log = crashed.join("growing.log");
    let text = std::fs::read(&whole).unwrap();
    let lines: Vec<&[u8]> = text.split_inclusive(|&b| b == b'\n').collect();
    let keep = ["--end-of-input", "keep", "--checkpoint-interval", "1s"];
    let paced = [
        &keep[..],
        &["--chunk-bytes", "65536", "--max-lines-per-sec", "12000"],
    ]
    .concat();
    let mut kills = 0;
    for chunk in lines.chunks(20_000) {
        let mut f = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&log)
            .unwrap();
        std::io::Write::write_all(&mut f, &chunk.concat()).unwrap();
        for _ in 0..2 {
            let mut child = ingest(&crashed, &log, lake, &paced, &[]).spawn().unwrap();
            std::thread::sleep(Duration::from_millis(100 + rng.below(1500)));
            if child.try_wait().unwrap().is_none() {
                child.kill().unwrap();
                kills += 1;
            }
            child.wait().unwrap();
        }
        run_ok(&mut ingest(&crashed, &log, lake, &keep, &[]));
    }
    run_ok(&mut ingest(&crashed, &log, lake, &[], &[]));
    eprintln!("{kills} kills");
    assert!(kills >= 3, "{kills}");
    assert_same(&expected, &snapshot(&crashed, Path::new(lake)), seed);
}

/// A Delta lake with `lake.delta.vacuum: 0s`: every committed partition is merged by an
/// OPTIMIZE commit, and VACUUM deletes the merged-away files at once, so the files on disk
/// are exactly those of the tables' newest versions; the rows are the Hive lake's.
#[test]
fn delta_optimize_and_vacuum_leave_only_the_newest_files() {
    let dir = tempfile::tempdir().unwrap();
    let log = generated_log(dir.path(), 30_000);
    let expected = uninterrupted(dir.path(), &log);
    let delta = delta_run_dir(&dir.path().join("delta"), "  delta: { vacuum: 0s }\n");
    let lake = delta.join("lake");
    run_ok(&mut ingest(
        &delta,
        &log,
        lake.to_str().unwrap(),
        &PACED_100MS,
        &[],
    ));
    assert_same(&expected, &snapshot(&delta, &lake), 0);
    for t in TABLES {
        let table = lake.join(t);
        let log = std::fs::read_dir(table.join("_delta_log")).unwrap();
        let commits: Vec<String> = log
            .map(|e| std::fs::read_to_string(e.unwrap().path()).unwrap_or_default())
            .collect();
        // The late table has no complete partitions to merge.
        let merged = ["OPTIMIZE", "VACUUM END"]
            .map(|op| commits.iter().any(|c| c.contains(&format!("\"{op}\""))));
        assert_eq!(merged, [t != "late"; 2], "{t}: OPTIMIZE, VACUUM");
        let mut on_disk = Vec::new();
        for day in std::fs::read_dir(&table).unwrap() {
            let day = day.unwrap().path();
            if day
                .file_name()
                .unwrap()
                .to_string_lossy()
                .starts_with("dt=")
            {
                on_disk.extend(all_parquet(&day));
            }
        }
        on_disk.sort();
        assert_eq!(
            on_disk,
            delta_files(&table),
            "{t}: files no version names are left"
        );
    }
}

/// Slow enough, in small chunks, that most hours of the generated log span several
/// checkpoints, hence several files.
const PACED_SMALL_CHUNKS: [&str; 6] = [
    "--checkpoint-interval",
    "100ms",
    "--chunk-bytes",
    "4096",
    "--max-lines-per-sec",
    "4000",
];

/// The OPTIMIZE commits in a Delta table's log.
fn optimize_commits(table: &Path) -> usize {
    std::fs::read_dir(table.join("_delta_log"))
        .unwrap()
        .filter_map(|e| std::fs::read_to_string(e.unwrap().path()).ok())
        .filter(|c| c.contains("\"OPTIMIZE\""))
        .count()
}

/// Readers during OPTIMIZE: DuckDB's `delta_scan` reads `status_1m` over and over while the
/// stream stage commits and merges partitions; no read ever sees a window's row twice (the
/// small files and the merged one at once), as a reader listing directories can.
#[test]
fn a_delta_reader_during_optimize_sees_each_row_once() {
    let dir = tempfile::tempdir().unwrap();
    let log = generated_log(dir.path(), 30_000);
    let run = delta_run_dir(&dir.path().join("delta"), "");
    let lake = run.join("lake");
    let done = dir.path().join("done");
    let script = format!(
        r#"
import os, time, duckdb
from duckdb_extensions import import_extension
import_extension("delta")
table, done = {table:?}, {done:?}
reads = 0
while not os.path.exists(done):
    if not os.path.exists(table + "/_delta_log"):
        time.sleep(0.05)
        continue
    rows, keys = duckdb.sql(f"SELECT count(*), count(DISTINCT (window_start, status)) FROM delta_scan('{{table}}')").fetchone()
    assert rows == keys, (reads, rows, keys)
    reads += 1
print(reads)
"#,
        table = lake.join("status_1m").to_str().unwrap(),
        done = done.to_str().unwrap(),
    );
    let reader = python()
        .args(["-c", &script])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let streamed = ingest(&run, &log, lake.to_str().unwrap(), &PACED_SMALL_CHUNKS, &[]).output();
    std::fs::write(&done, "").unwrap();
    let read = reader.wait_with_output().unwrap();
    assert!(streamed.unwrap().status.success());
    let said = String::from_utf8_lossy(&read.stderr);
    assert!(read.status.success(), "a read saw a row twice: {said}");
    let reads: u32 = String::from_utf8_lossy(&read.stdout)
        .trim()
        .parse()
        .unwrap();
    let optimized = optimize_commits(&lake.join("status_1m"));
    assert!(
        reads >= 10 && optimized >= 5,
        "{reads} reads, {optimized} OPTIMIZE commits"
    );
}

/// `stream-ingest compact` on a Delta lake written without merging at commit: one OPTIMIZE
/// commit per split partition, fewer files named by the log, the same rows.
#[test]
fn compact_optimizes_the_complete_partitions_of_a_delta_lake() {
    let dir = tempfile::tempdir().unwrap();
    let log = generated_log(dir.path(), 30_000);
    let run = delta_run_dir(&dir.path().join("delta"), "");
    let yaml = run.join("pipeline.yaml");
    let text = std::fs::read_to_string(&yaml).unwrap().replace(
        "    window: { kind: tumbling, size: 1m }\n",
        "    window: { kind: tumbling, size: 1m }\n    rolling: { max_rows: 20 }\n",
    ) + "\npartition_commit: { compact: false }\n";
    std::fs::write(&yaml, text).unwrap();
    let lake = run.join("lake");
    run_ok(&mut ingest(
        &run,
        &log,
        lake.to_str().unwrap(),
        &PACED_SMALL_CHUNKS,
        &[],
    ));
    let tables = snapshot(&run, &lake);
    let files_before = delta_files(&lake.join("path_1m")).len();
    let compact = |extra: &[&str]| {
        let out = run_ok(
            cmd("stream-ingest")
                .current_dir(&run)
                .args(["compact", "-c"])
                .arg(&yaml)
                .arg("--lake")
                .arg(&lake)
                .args(extra),
        );
        String::from_utf8_lossy(&out.stderr).into_owned()
    };
    let said = compact(&["--dry-run"]);
    assert!(said.contains("would merge"), "{said}");
    assert_eq!(delta_files(&lake.join("path_1m")).len(), files_before);
    let said = compact(&[]);
    assert!(said.contains("merged"), "{said}");
    let files_after = delta_files(&lake.join("path_1m")).len();
    assert!(
        files_after < files_before,
        "{files_before} -> {files_after} files: {said}"
    );
    assert_same(&tables, &snapshot(&run, &lake), 0);
    assert!(optimize_commits(&lake.join("path_1m")) > 0);
    // A second compact has nothing left to merge.
    let said = compact(&[]);
    assert!(said.contains("merged 0 files"), "{said}");
}

/// Every Parquet file below `dir`, whatever a log says.
fn all_parquet(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if p.is_dir() {
            out.extend(all_parquet(&p));
        } else if p.extension().is_some_and(|x| x == "parquet") {
            out.push(p);
        }
    }
    out
}
