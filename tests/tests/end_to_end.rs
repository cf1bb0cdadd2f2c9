//! End-to-end tests: the two binaries as a user runs them.
//!
//! Golden files of the reference pipeline live in `tests/golden/access-log/`; they were
//! checked against an independent oracle (`tests/oracle/reference.py`: the spec's regex
//! and DuckDB SQL), and `oracle_agrees_with_the_golden_files` keeps checking it. After a
//! deliberate change, `BLESS=1 cargo nextest run -p e2e` rewrites them; review the diff.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Stdio;

use e2e::*;

const TABLES: [&str; 2] = ["status_1m", "path_1m"];
const REPORTS: [&str; 2] = ["daily_status_class", "top_paths"];

fn pipeline() -> PathBuf {
    workspace().join("pipelines/access-log.yaml")
}

fn golden(name: &str) -> PathBuf {
    workspace().join("tests/golden/access-log").join(name)
}

/// Runs the stream stage of the reference pipeline on the shared sample into `lake`.
fn ingest(lake: &str, dead_letter_dir: &Path) -> String {
    let out = run_ok(
        cmd("stream-ingest")
            .current_dir(dead_letter_dir)
            .args(["run", "-c"])
            .arg(pipeline())
            .arg("--input")
            .arg(shared_data("apache_logs.log"))
            .args(["--lake", lake]),
    );
    String::from_utf8(out.stderr).unwrap()
}

/// Runs the batch stage into `out` as CSV.
fn analyze(lake: &str, out: &Path) {
    run_ok(
        cmd("batch-analyze")
            .args(["run", "-c"])
            .arg(pipeline())
            .args(["--lake", lake, "--format", "csv", "--out"])
            .arg(out),
    );
}

fn check_reports(out: &Path) {
    for r in REPORTS {
        let actual = std::fs::read_to_string(out.join(format!("{r}.csv"))).unwrap();
        check_golden(&golden(&format!("{r}.csv")), &actual);
    }
}

#[test]
fn reference_pipeline_matches_the_golden_files() {
    let dir = tempfile::tempdir().unwrap();
    let lake = dir.path().join("lake");
    let summary = ingest(lake.to_str().unwrap(), dir.path());
    assert!(
        summary.contains("10000 lines read, 9999 parsed, 1 invalid, 0 late"),
        "{summary}"
    );
    for t in TABLES {
        check_golden(&golden(&format!("{t}.csv")), &render_table(&lake.join(t)));
    }
    let out = dir.path().join("reports");
    analyze(lake.to_str().unwrap(), &out);
    check_reports(&out);
    // Nothing but finished reports in --out.
    let mut names: Vec<String> = std::fs::read_dir(&out)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into())
        .collect();
    names.sort();
    assert_eq!(names, vec!["daily_status_class.csv", "top_paths.csv"]);

    // The invalid line is kept with its number and reason.
    let dead = std::fs::read_to_string(dir.path().join("out/access-log.invalid.jsonl")).unwrap();
    let entry: serde_json::Value = serde_json::from_str(dead.lines().next().unwrap()).unwrap();
    assert_eq!(entry["line"], 8899);
    assert!(
        entry["text"]
            .as_str()
            .unwrap()
            .starts_with("46.118.127.106 - - [20/May/2015:12:05:17")
    );

    // A rerun on the same input rewrites the same files: no duplicates.
    let before = parquet_files(&lake);
    ingest(lake.to_str().unwrap(), dir.path());
    assert_eq!(parquet_files(&lake), before);
    for t in TABLES {
        check_golden(&golden(&format!("{t}.csv")), &render_table(&lake.join(t)));
    }
    // Staging is empty, and no visible file is empty.
    assert!(parquet_files(&lake.join("_staging")).is_empty());
    assert!(
        before
            .iter()
            .all(|f| std::fs::metadata(f).unwrap().len() > 0)
    );
}

#[test]
fn oracle_agrees_with_the_golden_files() {
    let dir = tempfile::tempdir().unwrap();
    run_ok(
        python()
            .arg(workspace().join("tests/oracle/reference.py"))
            .arg(shared_data("apache_logs.log"))
            .arg(shared_data("status_codes.csv"))
            .arg(dir.path()),
    );
    for name in TABLES.iter().chain(&REPORTS) {
        let oracle = std::fs::read_to_string(dir.path().join(format!("{name}.csv"))).unwrap();
        let golden = std::fs::read_to_string(golden(&format!("{name}.csv"))).unwrap();
        assert!(
            oracle == golden,
            "{name}: the oracle disagrees with the golden file"
        );
    }
}

#[test]
fn standard_input_gives_the_same_rows() {
    let dir = tempfile::tempdir().unwrap();
    let lake = dir.path().join("lake");
    let mut child = cmd("stream-ingest")
        .current_dir(dir.path())
        .args(["run", "-c"])
        .arg(pipeline())
        .args(["--input", "-", "--lake"])
        .arg(&lake)
        .stdin(Stdio::piped())
        .spawn()
        .unwrap();
    let data = std::fs::read(shared_data("apache_logs.log")).unwrap();
    child.stdin.take().unwrap().write_all(&data).unwrap();
    assert!(child.wait().unwrap().success());
    for t in TABLES {
        check_golden(&golden(&format!("{t}.csv")), &render_table(&lake.join(t)));
    }
}

#[test]
fn lake_is_readable_by_duckdb_and_pyarrow() {
    let dir = tempfile::tempdir().unwrap();
    let lake = dir.path().join("lake");
    ingest(lake.to_str().unwrap(), dir.path());
    let script = format!(
        r#"
import duckdb, pyarrow.dataset as ds
con = duckdb.connect()
root = {root:?}
for t in ["status_1m", "path_1m"]:
    n, req, byt, days = con.execute(f"SELECT count(*), sum(requests), sum(bytes), count(DISTINCT dt) FROM read_parquet('{{root}}/{{t}}/**/*.parquet', hive_partitioning=true)").fetchone()
    tbl = ds.dataset(f"{{root}}/{{t}}", format="parquet", partitioning="hive").to_table()
    assert tbl.num_rows == n, (tbl.num_rows, n)
    assert str(tbl.schema.field("window_start").type) == "timestamp[us, tz=UTC]", tbl.schema
    print(t, n, req, byt, days)
"#,
        root = lake.to_str().unwrap()
    );
    let out = String::from_utf8(run_ok(python().args(["-c", &script])).stdout).unwrap();
    for (t, line) in TABLES.iter().zip(out.lines()) {
        let ours = read_table(&lake.join(t));
        let sum = |c: &str| {
            let a = ours.column_by_name(c).unwrap();
            arrow::compute::sum(arrow::array::AsArray::as_primitive::<
                arrow::datatypes::Int64Type,
            >(a.as_ref()))
            .unwrap()
        };
        assert_eq!(
            line,
            format!(
                "{t} {} {} {} 4",
                ours.num_rows(),
                sum("requests"),
                sum("bytes")
            )
        );
    }
}

#[test]
fn s3_lake_gives_the_same_rows_as_local_disk() {
    let s3 = S3Server::start();
    s3.create_bucket("lake");
    let dir = tempfile::tempdir().unwrap();
    let url = "s3://lake/prefix/access";
    let env = s3.env();
    let mut ingest_cmd = cmd("stream-ingest");
    ingest_cmd
        .current_dir(dir.path())
        .envs(env.iter().map(|(k, v)| (*k, v)))
        .args(["run", "-c"])
        .arg(pipeline());
    ingest_cmd
        .arg("--input")
        .arg(shared_data("apache_logs.log"))
        .args(["--lake", url]);
    run_ok(&mut ingest_cmd);

    let out = dir.path().join("reports");
    let mut analyze_cmd = cmd("batch-analyze");
    analyze_cmd
        .envs(env.iter().map(|(k, v)| (*k, v)))
        .args(["run", "-c"])
        .arg(pipeline());
    analyze_cmd
        .args(["--lake", url, "--format", "csv", "--out"])
        .arg(&out);
    run_ok(&mut analyze_cmd);
    check_reports(&out);

    let copy = dir.path().join("copy");
    let keys = s3.download("lake", "prefix/access", &copy);
    let odd: Vec<&String> = keys
        .iter()
        .filter(|k| {
            !(k.ends_with(".parquet")
                || k.ends_with("/_SUCCESS")
                || k.contains("/_checkpoints/")
                || k.contains("/_state/batch-analyze/"))
        })
        .collect();
    assert!(odd.is_empty(), "unexpected objects: {odd:?}");
    assert!(keys.iter().any(|k| k.ends_with("/_SUCCESS")));
    for t in TABLES {
        check_golden(&golden(&format!("{t}.csv")), &render_table(&copy.join(t)));
    }
}

fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
    let p = dir.join(name);
    std::fs::write(&p, text).unwrap();
    p
}

/// Runs `validate` of both binaries on `yaml`; both must exit 2 and name `needle`.
fn assert_invalid(yaml: &str, needles: &[&str]) {
    let dir = tempfile::tempdir().unwrap();
    std::fs::copy(
        workspace().join("pipelines/status_codes.csv"),
        dir.path().join("status_codes.csv"),
    )
    .unwrap();
    let file = write(dir.path(), "p.yaml", yaml);
    for bin in ["stream-ingest", "batch-analyze"] {
        let out = cmd(bin)
            .args(["validate", "-c"])
            .arg(&file)
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{bin}: {err}");
        for n in needles {
            assert!(err.contains(n), "{bin}: `{n}` not in:\n{err}");
        }
    }
}

fn reference_yaml() -> String {
    std::fs::read_to_string(pipeline())
        .unwrap()
        .replace("path: data/apache_logs.log", "path: /dev/null")
}

#[test]
fn config_errors_name_file_line_and_field() {
    // The reference file as shipped is valid for both binaries.
    for bin in ["stream-ingest", "batch-analyze"] {
        let out = run_ok(cmd(bin).args(["validate", "-c"]).arg(pipeline()));
        assert!(String::from_utf8_lossy(&out.stdout).contains(": ok"));
    }
    let yaml = reference_yaml();
    let line_of = |needle: &str| yaml.lines().position(|l| l.contains(needle)).unwrap() + 1;

    // An unknown field.
    let bad = yaml.replace(
        "  max_out_of_orderness: 60s",
        "  max_out_of_orderness: 60s\n  allowed_lateness: 0s",
    );
    assert_invalid(
        &bad,
        &[
            &format!("p.yaml:{}:", line_of("max_out_of_orderness") + 1),
            "unknown field `allowed_lateness`",
        ],
    );

    // A wrong type.
    let bad = yaml.replace("max_out_of_orderness: 60s", "max_out_of_orderness: [60]");
    assert_invalid(
        &bad,
        &[
            &format!("p.yaml:{}:", line_of("max_out_of_orderness")),
            "event_time.max_out_of_orderness",
        ],
    );

    // A duration without its unit.
    let bad = yaml.replace("max_out_of_orderness: 60s", "max_out_of_orderness: 60");
    assert_invalid(&bad, &["has no unit"]);

    // A report on a table that does not exist, and a key that does not exist: both listed.
    let bad = yaml
        .replace("from: path_1m", "from: paths_1m")
        .replace("key: [status]", "key: [statuss]");
    assert_invalid(
        &bad,
        &[
            &format!(
                "p.yaml:{}: reports[1].from: no table `paths_1m`",
                line_of("from: path_1m")
            ),
            &format!(
                "p.yaml:{}: tables[0].key[0]: no event field `statuss`",
                line_of("key: [status]")
            ),
            "2 problems",
        ],
    );
}

#[test]
fn bad_arguments_exit_2_and_failures_exit_1() {
    let out = cmd("stream-ingest")
        .args(["run", "-c"])
        .arg(pipeline())
        .arg("--bogus")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let out = cmd("stream-ingest")
        .args(["run", "-c"])
        .arg(pipeline())
        .args(["--lake", "ftp://x"])
        .output()
        .unwrap();
    assert_eq!(
        out.status.code(),
        Some(2),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = cmd("batch-analyze")
        .args(["run", "-c"])
        .arg(pipeline())
        .args(["--report", "nope"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let dir = tempfile::tempdir().unwrap();
    let out = cmd("stream-ingest")
        .current_dir(dir.path())
        .args(["run", "-c"])
        .arg(pipeline())
        .args(["--input", "/nonexistent/access.log", "--lake"])
        .arg(dir.path().join("lake"))
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("/nonexistent/access.log"));
}

#[test]
fn partition_values_from_data_stay_inside_the_lake() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("a/b/lake");
    let yaml = reference_yaml().replace(
        "    key: [path]                       # a NULL path is a key too",
        "    key: [path]\n    partition_by: [path]",
    );
    let file = write(dir.path(), "p.yaml", &yaml);
    let log = write(
        dir.path(),
        "evil.log",
        concat!(
            "h - - [17/May/2015:10:05:03 +0000] \"GET ../../etc HTTP/1.1\" 200 1\n",
            "h - - [17/May/2015:10:05:04 +0000] \"GET ../../../../x/y=z%41 HTTP/1.1\" 200 2\n",
            "h - - [17/May/2015:10:05:05 +0000] \"GET .. HTTP/1.1\" 200 3\n",
            "h - - [17/May/2015:10:05:06 +0000] \"GET\" 200 4\n",
        ),
    );
    run_ok(
        cmd("stream-ingest")
            .current_dir(dir.path())
            .args(["run", "-c"])
            .arg(&file)
            .arg("--input")
            .arg(&log)
            .arg("--lake")
            .arg(&root),
    );
    // Everything written is below the lake root: a/b holds only the lake.
    let siblings: Vec<_> = std::fs::read_dir(dir.path().join("a/b"))
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(siblings, vec![std::ffi::OsString::from("lake")]);
    let mut parts: Vec<String> = std::fs::read_dir(root.join("path_1m/dt=2015-05-17/hour=10"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into())
        .collect();
    parts.sort();
    assert_eq!(
        parts,
        vec![
            "path=%2E%2E",
            "path=..%2F..%2F..%2F..%2Fx%2Fy%3Dz%2541",
            "path=..%2F..%2Fetc",
            "path=__HIVE_DEFAULT_PARTITION__"
        ]
    );
    // The key column lives in the directory name, not in the files.
    let batch = read_table(&root.join("path_1m"));
    assert!(batch.schema().field_with_name("path").is_err());
    assert_eq!(batch.num_rows(), 4);
}

#[test]
fn ndjson_example_pipeline_runs_end_to_end() {
    let dir = tempfile::tempdir().unwrap();
    let file = workspace().join("pipelines/clicks.yaml");
    run_ok(cmd("stream-ingest").args(["validate", "-c"]).arg(&file));
    let lake = dir.path().join("lake");
    let out = run_ok(
        cmd("stream-ingest")
            .current_dir(dir.path())
            .args(["run", "-c"])
            .arg(&file)
            .arg("--lake")
            .arg(&lake),
    );
    let summary = String::from_utf8_lossy(&out.stderr).to_string();
    assert!(
        summary.contains("2000 lines read, 1998 parsed, 2 invalid"),
        "{summary}"
    );
    // Sliding windows of 5 minutes every minute: each event is counted in 5 windows.
    let views = read_table(&lake.join("page_views_5m"));
    let views_col = views.column_by_name("views").unwrap();
    let total = arrow::compute::sum(arrow::array::AsArray::as_primitive::<
        arrow::datatypes::Int64Type,
    >(views_col.as_ref()))
    .unwrap();
    assert_eq!(total, 5 * 1998);
    // Sessions: every event is in exactly one session.
    let sessions = read_table(&lake.join("user_sessions"));
    let clicks = sessions.column_by_name("clicks").unwrap();
    let total = arrow::compute::sum(arrow::array::AsArray::as_primitive::<
        arrow::datatypes::Int64Type,
    >(clicks.as_ref()))
    .unwrap();
    assert_eq!(total, 1998);
    let reports = dir.path().join("reports");
    run_ok(
        cmd("batch-analyze")
            .args(["run", "-c"])
            .arg(&file)
            .arg("--lake")
            .arg(&lake)
            .arg("--out")
            .arg(&reports),
    );
    let top = std::fs::read_to_string(reports.join("top_pages.csv")).unwrap();
    assert_eq!(top.lines().next(), Some("page,views,visitors"));
    assert_eq!(top.lines().count(), 11);
}

#[test]
fn generated_log_with_every_rule_matches_the_oracle() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("gen.log");
    run_ok(
        python()
            .arg(workspace().join("tests/oracle/gen_log.py"))
            .args(["30000", "7"])
            .arg(&log),
    );
    let oracle = dir.path().join("oracle");
    run_ok(
        python()
            .arg(workspace().join("tests/oracle/reference.py"))
            .arg(&log)
            .arg(workspace().join("pipelines/status_codes.csv"))
            .arg(&oracle),
    );
    let lake = dir.path().join("lake");
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
    let summary = String::from_utf8_lossy(&out.stderr).to_string();
    let reports = dir.path().join("reports");
    analyze(lake.to_str().unwrap(), &reports);
    for t in TABLES {
        let expected = std::fs::read_to_string(oracle.join(format!("{t}.csv"))).unwrap();
        assert!(
            render_table(&lake.join(t)) == expected,
            "{t} differs from the oracle"
        );
    }
    for r in REPORTS {
        let expected = std::fs::read_to_string(oracle.join(format!("{r}.csv"))).unwrap();
        let actual = std::fs::read_to_string(reports.join(format!("{r}.csv"))).unwrap();
        assert!(
            actual == expected,
            "{r} differs from the oracle:\n{actual}\n---\n{expected}"
        );
    }
    // Late events are kept, once per table that dropped them, with the watermark then.
    let late = read_table(&lake.join("late"));
    let counted: u64 = summary
        .split(" invalid, ")
        .nth(1)
        .unwrap()
        .split(' ')
        .next()
        .unwrap()
        .parse()
        .unwrap();
    assert!(counted > 100, "{summary}");
    assert_eq!(late.num_rows() as u64, counted);
    let ts = arrow::array::AsArray::as_primitive::<arrow::datatypes::TimestampMicrosecondType>(
        late.column_by_name("ts").unwrap().as_ref(),
    )
    .clone();
    let wm = arrow::array::AsArray::as_primitive::<arrow::datatypes::TimestampMicrosecondType>(
        late.column_by_name("watermark").unwrap().as_ref(),
    )
    .clone();
    for i in 0..late.num_rows() {
        let end = ts.value(i) - ts.value(i).rem_euclid(60_000_000) + 60_000_000;
        assert!(end <= wm.value(i), "row {i} was not late");
    }
}

/// The stream stage's output does not depend on how many threads parse, nor on the chunk
/// size; and the `generate` source gives exactly what `stream-ingest gen` writes to a file.
#[test]
fn output_is_the_same_for_any_number_of_threads_and_for_the_generate_source() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("gen.log");
    run_ok(
        cmd("stream-ingest")
            .args(["gen", "--lines", "60000", "--seed", "3", "-q", "--out"])
            .arg(&log),
    );
    let yaml = reference_yaml()
        .replace(
            "  kind: file\n  path: /dev/null",
            "  kind: generate\n  lines: 60000\n  seed: 3",
        )
        .replace(
            "path: status_codes.csv",
            &format!(
                "path: {}",
                workspace().join("pipelines/status_codes.csv").display()
            ),
        );
    assert!(yaml.contains("kind: generate"), "{yaml}");
    let generated = write(dir.path(), "generated.yaml", &yaml);
    let run = |name: &str, config: &Path, args: &[&str]| {
        let work = dir.path().join(name);
        std::fs::create_dir_all(&work).unwrap();
        let out = run_ok(
            cmd("stream-ingest")
                .current_dir(&work)
                .args(["run", "-c"])
                .arg(config)
                .arg("--lake")
                .arg(work.join("lake"))
                .args(args),
        );
        let summary = String::from_utf8_lossy(&out.stderr).to_string();
        let mut tables: Vec<String> = TABLES
            .iter()
            .chain(&["late"])
            .map(|t| render_table(&work.join("lake").join(t)))
            .collect();
        tables.push(std::fs::read_to_string(work.join("out/access-log.invalid.jsonl")).unwrap());
        (summary, tables)
    };
    let log_arg = log.to_str().unwrap();
    let (summary, single) = run(
        "one-thread",
        &generated,
        &["--threads", "1", "--chunk-bytes", "65536"],
    );
    assert!(summary.contains("60000 lines read"), "{summary}");
    // Late rows and invalid lines exist, so their order is checked too.
    assert!(single[2].lines().count() > 5, "{}", single[2]);
    assert!(single[3].lines().count() > 20, "{}", single[3]);
    for (name, args) in [
        (
            "four-threads-small-chunks",
            vec![
                "--input",
                log_arg,
                "--threads",
                "4",
                "--chunk-bytes",
                "8192",
            ],
        ),
        ("default-threads", vec!["--input", log_arg]),
        (
            "generated-three-threads",
            vec!["--threads", "3", "--chunk-bytes", "30000"],
        ),
    ] {
        let config = if name.starts_with("generated") {
            generated.clone()
        } else {
            pipeline()
        };
        let (summary, tables) = run(name, &config, &args);
        for (i, (a, b)) in single.iter().zip(&tables).enumerate() {
            assert!(
                a == b,
                "{name}: output {i} differs from the single-threaded run\n{summary}"
            );
        }
    }
}

/// `approx_distinct` stays within HyperLogLog's error of the exact count, and a state
/// over `state.memory_budget` is reported (log and summary) without stopping the run.
#[test]
fn approx_distinct_and_the_memory_budget() {
    let dir = tempfile::tempdir().unwrap();
    let yaml = reference_yaml()
        .replace(
            "      - { name: unique_hosts, fn: count_distinct, column: host }",
            "      - { name: unique_hosts, fn: count_distinct, column: host }\n      - { name: approx_hosts, fn: approx_distinct, column: host }",
        )
        .replace("tables:\n", "state: { memory_budget: 1KB }\n\ntables:\n")
        .replace(
            "path: status_codes.csv",
            &format!(
                "path: {}",
                workspace().join("pipelines/status_codes.csv").display()
            ),
        );
    assert!(yaml.contains("approx_distinct") && yaml.contains("memory_budget"));
    let config = write(dir.path(), "approx.yaml", &yaml);
    let lake = dir.path().join("lake");
    let out = run_ok(
        cmd("stream-ingest")
            .current_dir(dir.path())
            .args(["run", "-c"])
            .arg(&config)
            .arg("--input")
            .arg(shared_data("apache_logs.log"))
            .arg("--lake")
            .arg(&lake),
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("open state is over state.memory_budget")
            && stderr.contains("largest_table"),
        "{stderr}"
    );
    assert!(
        stderr.contains("over state.memory_budget 1 time"),
        "{stderr}"
    );
    let t = read_table(&lake.join("status_1m"));
    let col = |name: &str| {
        arrow::array::AsArray::as_primitive::<arrow::datatypes::Int64Type>(
            t.column_by_name(name).unwrap().as_ref(),
        )
        .clone()
    };
    let (exact, approx) = (col("unique_hosts"), col("approx_hosts"));
    assert_eq!(t.num_rows(), 291); // as in the golden file
    for i in 0..t.num_rows() {
        let (e, a) = (exact.value(i), approx.value(i));
        assert!(
            (e - a).abs() <= 1.max(e / 50),
            "row {i}: exact {e}, approx {a}"
        );
    }
}

/// The reference pipeline in `dir/delta.yaml` with `lake.format: delta`.
fn delta_pipeline(dir: &Path) -> PathBuf {
    let yaml = std::fs::read_to_string(pipeline()).unwrap();
    let hour = "  partition_time: hour";
    assert!(yaml.contains(hour));
    let yaml = yaml.replacen(hour, &format!("  format: delta\n{hour}"), 1);
    std::fs::copy(
        workspace().join("pipelines/status_codes.csv"),
        dir.join("status_codes.csv"),
    )
    .unwrap();
    write(dir, "delta.yaml", &yaml)
}

/// `lake.format: delta`: a run killed between two tables' commits, then resumed, leaves
/// Delta tables that DuckDB's `delta_scan` (an independent reader) reads as the Hive lake's
/// rows, with no file added twice to a log; the reports are the golden ones; a stray
/// Parquet file dropped into a partition is read by nobody.
#[test]
fn delta_lake_gives_every_reader_the_rows_of_the_hive_lake() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let yaml = delta_pipeline(d);
    ingest(d.join("hive").to_str().unwrap(), d);
    let delta = d.join("delta");
    let run = |crash: Option<&str>| {
        let mut c = cmd("stream-ingest");
        c.current_dir(d)
            .args(["run", "-c"])
            .arg(&yaml)
            .arg("--input")
            .arg(shared_data("apache_logs.log"))
            .arg("--lake")
            .arg(&delta)
            .args([
                "--checkpoint-interval",
                "10ms",
                "--max-lines-per-sec",
                "20000",
            ]);
        if let Some(point) = crash {
            c.env("STREAM_INGEST_CRASH_AT", point);
        }
        c.output().unwrap()
    };
    let crashed = run(Some("mid-publish"));
    let said = String::from_utf8_lossy(&crashed.stderr);
    assert!(said.contains("crashing at `mid-publish`"), "{said}");
    let resumed = run(None);
    assert!(
        resumed.status.success(),
        "{}",
        String::from_utf8_lossy(&resumed.stderr)
    );
    assert!(delta.join("status_1m/_delta_log").is_dir());
    assert!(parquet_files(&delta.join("_staging")).is_empty());

    let reports = |out: &Path| {
        run_ok(
            cmd("batch-analyze")
                .args(["run", "-c"])
                .arg(&yaml)
                .arg("--lake")
                .arg(&delta)
                .args(["--format", "csv", "--out"])
                .arg(out),
        );
        check_reports(out);
    };
    reports(&d.join("reports"));
    analyze(d.join("hive").to_str().unwrap(), &d.join("hive-reports"));
    let report_log = delta.join("reports/daily_status_class/_delta_log");
    let log_entries = || std::fs::read_dir(&report_log).unwrap().count();
    let entries = log_entries();

    let data_files = parquet_files(&delta.join("status_1m"));
    let stray = data_files
        .iter()
        .find(|f| !f.to_string_lossy().contains("_delta_log"))
        .unwrap();
    std::fs::copy(
        stray,
        stray.with_file_name("part-stray-c0000000001-00.parquet"),
    )
    .unwrap();
    let script = format!(
        r#"
import duckdb, glob, json, os
from duckdb_extensions import import_extension
import_extension("delta")
hive, delta = {hive:?}, {delta:?}
# The sample has no late event: no late table in either lake.
assert not os.path.exists(f"{{hive}}/late") and not os.path.exists(f"{{delta}}/late")
for t in ["status_1m", "path_1m"]:
    cols = "* EXCLUDE (dt, hour)"
    a = duckdb.sql(f"SELECT {{cols}} FROM read_parquet('{{hive}}/{{t}}/**/*.parquet', hive_partitioning=true) ORDER BY ALL").fetchall()
    b = duckdb.sql(f"SELECT {{cols}} FROM delta_scan('{{delta}}/{{t}}') ORDER BY ALL").fetchall()
    assert a == b, (t, len(a), len(b))
    adds = []
    for f in sorted(glob.glob(f"{{delta}}/{{t}}/_delta_log/*.json")):
        for line in open(f):
            action = json.loads(line)
            if "add" in action:
                adds.append(action["add"]["path"])
    assert len(adds) == len(set(adds)), (t, "a file added twice")
    print(t, len(b))
# The report written into the lake: a Delta table with the Hive table's rows.
a = duckdb.sql(f"SELECT * FROM read_parquet('{{hive}}/reports/daily_status_class/**/*.parquet', hive_partitioning=true) ORDER BY ALL").fetchall()
b = duckdb.sql(f"SELECT * FROM delta_scan('{{delta}}/reports/daily_status_class') ORDER BY ALL").fetchall()
assert len(a) > 0 and [tuple(map(str, r)) for r in a] == [tuple(map(str, r)) for r in b], (a[:3], b[:3])
print("daily_status_class", len(b))
"#,
        hive = d.join("hive").to_str().unwrap(),
        delta = delta.to_str().unwrap()
    );
    let printed = String::from_utf8(run_ok(python().args(["-c", &script])).stdout).unwrap();
    assert!(printed.contains("status_1m "), "{printed}");
    // The stray file changes no report either, and the rerun commits nothing new.
    reports(&d.join("reports-again"));
    assert_eq!(
        log_entries(),
        entries,
        "a rerun on the same input committed"
    );
}

/// `lake.format: delta` on S3 (moto): the reports are the golden ones, and the tables,
/// downloaded, read as the golden tables through DuckDB's `delta_scan`. Nothing is left in
/// a staging area: files are written under their final names.
#[test]
fn delta_lake_on_s3_gives_the_golden_rows() {
    let s3 = S3Server::start();
    s3.create_bucket("lake");
    let dir = tempfile::tempdir().unwrap();
    let yaml = delta_pipeline(dir.path());
    let url = "s3://lake/prefix/delta";
    let env = s3.env();
    run_ok(
        cmd("stream-ingest")
            .current_dir(dir.path())
            .envs(env.iter().map(|(k, v)| (*k, v)))
            .args(["run", "-c"])
            .arg(&yaml)
            .arg("--input")
            .arg(shared_data("apache_logs.log"))
            .args(["--lake", url]),
    );
    let out = dir.path().join("reports");
    run_ok(
        cmd("batch-analyze")
            .envs(env.iter().map(|(k, v)| (*k, v)))
            .args(["run", "-c"])
            .arg(&yaml)
            .args(["--lake", url, "--format", "csv", "--out"])
            .arg(&out),
    );
    check_reports(&out);
    let copy = dir.path().join("copy");
    let keys = s3.download("lake", "prefix/delta", &copy);
    // Reports written into the lake stay Hive directories (with their markers).
    let odd: Vec<&String> = keys
        .iter()
        .filter(|k| !k.contains("/reports/"))
        .filter(|k| k.contains("_staging") || k.ends_with("_SUCCESS"))
        .collect();
    assert!(odd.is_empty(), "{odd:?}");
    assert!(keys.iter().any(|k| k.contains("/status_1m/_delta_log/")));
    for t in TABLES {
        let script = format!(
            "import duckdb\nfrom duckdb_extensions import import_extension\nimport_extension('delta')\nprint(duckdb.sql(\"SELECT count(*), sum(requests) FROM delta_scan('{}')\").fetchone())",
            copy.join(t).display()
        );
        let printed = String::from_utf8(run_ok(python().args(["-c", &script])).stdout).unwrap();
        let ours = read_table(&copy.join(t));
        let requests = arrow::compute::sum(arrow::array::AsArray::as_primitive::<
            arrow::datatypes::Int64Type,
        >(
            ours.column_by_name("requests").unwrap().as_ref()
        ))
        .unwrap();
        assert_eq!(
            printed.trim(),
            format!("({}, {requests})", ours.num_rows()),
            "{t}"
        );
        check_golden(&golden(&format!("{t}.csv")), &render_table(&copy.join(t)));
    }
}
