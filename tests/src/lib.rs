//! Helpers of the end-to-end tests: find the binaries and the shared data, run commands,
//! render a lake table as canonical CSV, and start a real S3-compatible server and a real
//! Kafka-API broker.
//!
//! The tests run the two binaries as a user would (a fresh process, a pipeline file,
//! arguments), against real files, a real S3-compatible server (`moto_server`) and outside
//! Parquet readers (DuckDB, pyarrow).

use std::collections::BTreeMap;
use std::fs::File;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use arrow::array::{RecordBatch, RecordBatchReader};
use arrow::compute::{
    SortColumn, SortOptions, concat_batches, lexsort_to_indices, take_record_batch,
};
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;

/// The workspace root.
pub fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("tests/ is in the workspace")
        .to_path_buf()
}

/// A file of `../shared/data` (beside the project, in CI and on developer machines).
pub fn shared_data(name: &str) -> PathBuf {
    let p = workspace().join("../shared/data").join(name);
    assert!(
        p.is_file(),
        "{} is missing: the tests need ../shared beside the project",
        p.display()
    );
    p
}

/// The path of a binary of the workspace. The first call in a process runs `cargo build`
/// for the binaries (a no-op when they are fresh), so a test never runs a stale binary.
pub fn bin(name: &str) -> PathBuf {
    static BUILT: OnceLock<()> = OnceLock::new();
    BUILT.get_or_init(|| {
        let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
        let mut build = Command::new(cargo);
        // The test runner's own variables (package metadata, nextest's, its library path)
        // are not the shell's: build scripts and `env!` track some of them, and a difference
        // rebuilds DataFusion. Build with the environment the developer's cargo had.
        for (key, _) in std::env::vars_os() {
            let key = key.to_string_lossy();
            if key.starts_with("CARGO_PKG_")
                || key.starts_with("NEXTEST")
                || [
                    "CARGO_MANIFEST_DIR",
                    "LD_LIBRARY_PATH",
                    "RUST_RECURSION_COUNT",
                ]
                .contains(&key.as_ref())
            {
                build.env_remove(key.as_ref());
            }
        }
        if let Some(original) = std::env::var_os("NEXTEST_LD_LIBRARY_PATH") {
            build.env("LD_LIBRARY_PATH", original);
        }
        let status = build
            .current_dir(workspace())
            // The same package set and targets as `cargo nextest run --workspace` builds,
            // so that features unify the same way and nothing is compiled twice: only the
            // two binaries are linked.
            .args(["build", "--quiet", "--workspace", "--all-targets"])
            .stdin(Stdio::null())
            .status()
            .expect("cargo runs");
        assert!(status.success(), "building the binaries failed");
    });
    let exe = std::env::current_exe().expect("test executable path");
    // target/<profile>/deps/<test> → target/<profile>/<name>
    let dir = exe
        .parent()
        .and_then(Path::parent)
        .expect("target directory");
    let p = dir.join(name);
    assert!(p.is_file(), "{} is not built", p.display());
    p
}

/// A command for a workspace binary, with a quiet log.
pub fn cmd(name: &str) -> Command {
    let mut c = Command::new(bin(name));
    c.env("RUST_LOG", "warn").stdin(Stdio::null());
    c
}

/// Runs a command and asserts success; returns its output.
pub fn run_ok(c: &mut Command) -> Output {
    let out = c.output().expect("command starts");
    assert!(
        out.status.success(),
        "{c:?} failed with {}\nstdout:\n{}\nstderr:\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

/// Every visible Parquet file below `dir` (hidden `_`/`.` names skipped, as readers do).
pub fn parquet_files(dir: &Path) -> Vec<PathBuf> {
    if dir.join("_delta_log").is_dir() {
        return delta_files(dir);
    }
    let mut out = Vec::new();
    let Ok(entries) = std::fs::read_dir(dir) else {
        return out;
    };
    for e in entries {
        let e = e.expect("dir entry");
        let name = e.file_name().to_string_lossy().to_string();
        if name.starts_with('_') || name.starts_with('.') {
            continue;
        }
        let p = e.path();
        if p.is_dir() {
            out.extend(parquet_files(&p));
        } else if name.ends_with(".parquet") {
            out.push(p);
        }
    }
    out.sort();
    out
}

/// The data files a Delta table's newest version holds, replaying the JSON commits of its
/// log (the tests' tables have fewer commits than a log checkpoint needs): files removed
/// (compacted, retracted) and files no commit names stay out.
pub fn delta_files(table: &Path) -> Vec<PathBuf> {
    let log = table.join("_delta_log");
    assert!(
        !log.join("_last_checkpoint").exists(),
        "{}: a checkpointed log; read it with a Delta reader",
        log.display()
    );
    let mut commits: Vec<PathBuf> = std::fs::read_dir(&log)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "json"))
        .collect();
    commits.sort();
    let mut active = std::collections::BTreeSet::new();
    for c in commits {
        for line in std::fs::read_to_string(&c).unwrap().lines() {
            let action: serde_json::Value = serde_json::from_str(line).unwrap();
            if let Some(path) = action["add"]["path"].as_str() {
                active.insert(percent_decode(path));
            } else if let Some(path) = action["remove"]["path"].as_str() {
                active.remove(&percent_decode(path));
            }
        }
    }
    active.into_iter().map(|p| table.join(p)).collect()
}

/// A URI path's `%XX` escapes decoded.
fn percent_decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        let hex = |c: u8| (c as char).to_digit(16);
        if b[i] == b'%'
            && i + 2 < b.len()
            && let (Some(hi), Some(lo)) = (hex(b[i + 1]), hex(b[i + 2]))
        {
            out.push((hi * 16 + lo) as u8);
            i += 3;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8(out).unwrap()
}

/// Every file below `dir` (relative path → bytes), hidden state included; empty when `dir`
/// does not exist.
pub fn files(dir: &Path) -> BTreeMap<String, Vec<u8>> {
    fn walk(base: &Path, dir: &Path, out: &mut BTreeMap<String, Vec<u8>>) {
        let Ok(entries) = std::fs::read_dir(dir) else {
            return;
        };
        for e in entries {
            let p = e.expect("dir entry").path();
            if p.is_dir() {
                walk(base, &p, out);
            } else {
                let rel = p.strip_prefix(base).unwrap().to_string_lossy().into_owned();
                out.insert(rel, std::fs::read(&p).expect("readable file"));
            }
        }
    }
    let mut out = BTreeMap::new();
    walk(dir, dir, &mut out);
    out
}

/// All rows of a lake table, in one batch. Files whose columns differ (a table that gained
/// or lost an aggregate) are read by column name, as DuckDB's `union_by_name`: the columns
/// of every file, in order of first appearance, NULL where a file lacks one.
pub fn read_table(dir: &Path) -> RecordBatch {
    let mut batches = Vec::new();
    let mut fields: Vec<arrow::datatypes::FieldRef> = Vec::new();
    for f in parquet_files(dir) {
        let reader = ParquetRecordBatchReaderBuilder::try_new(File::open(&f).unwrap())
            .unwrap()
            .build()
            .unwrap();
        for field in reader.schema().fields() {
            if !fields.iter().any(|f| f.name() == field.name()) {
                fields.push(Arc::new(field.as_ref().clone().with_nullable(true)));
            }
        }
        for b in reader {
            batches.push(b.unwrap());
        }
    }
    assert!(
        !fields.is_empty(),
        "no parquet files under {}",
        dir.display()
    );
    let schema = Arc::new(arrow::datatypes::Schema::new(fields));
    let batches: Vec<RecordBatch> = batches
        .iter()
        .map(|b| {
            let columns = schema
                .fields()
                .iter()
                .map(|f| match b.column_by_name(f.name()) {
                    Some(c) => c.clone(),
                    None => arrow::array::new_null_array(f.data_type(), b.num_rows()),
                })
                .collect();
            RecordBatch::try_new(schema.clone(), columns).unwrap()
        })
        .collect();
    concat_batches(&schema, &batches).unwrap()
}

/// A table as canonical CSV: rows sorted by every column in order (NULL first, strings in
/// byte order), NULL written `\N`, timestamps in RFC 3339.
pub fn render_table(dir: &Path) -> String {
    render_batch(&read_table(dir))
}

/// [`render_table`] without the sketch columns (`<name>_sketch`: binary, pinned by the
/// sketch format's own tests; the estimates beside them are rendered).
pub fn render_table_without_sketches(dir: &Path) -> String {
    let batch = read_table(dir);
    let keep: Vec<usize> = (0..batch.num_columns())
        .filter(|&i| !batch.schema().field(i).name().ends_with("_sketch"))
        .collect();
    render_batch(&batch.project(&keep).unwrap())
}

fn render_batch(batch: &RecordBatch) -> String {
    let columns: Vec<SortColumn> = batch
        .columns()
        .iter()
        .map(|c| SortColumn {
            values: c.clone(),
            options: Some(SortOptions {
                descending: false,
                nulls_first: true,
            }),
        })
        .collect();
    let indices = lexsort_to_indices(&columns, None).unwrap();
    let sorted = take_record_batch(batch, &indices).unwrap();
    let mut out = Vec::new();
    {
        let mut w = arrow::csv::WriterBuilder::new()
            .with_header(true)
            .with_null("\\N".into())
            .build(&mut out);
        w.write(&sorted).unwrap();
    }
    String::from_utf8(out).unwrap()
}

/// Compares `actual` with the golden file, or rewrites it when `BLESS=1`.
pub fn check_golden(golden: &Path, actual: &str) {
    if std::env::var_os("BLESS").is_some_and(|v| v == "1") {
        std::fs::create_dir_all(golden.parent().unwrap()).unwrap();
        std::fs::write(golden, actual).unwrap();
        return;
    }
    let expected = std::fs::read_to_string(golden)
        .unwrap_or_else(|e| panic!("{}: {e} (BLESS=1 writes it)", golden.display()));
    if expected != actual {
        let diff: Vec<String> = expected
            .lines()
            .zip(actual.lines())
            .enumerate()
            .filter(|(_, (e, a))| e != a)
            .take(5)
            .map(|(i, (e, a))| format!("line {}:\n  golden: {e}\n  actual: {a}", i + 1))
            .collect();
        panic!(
            "{} differs ({} golden lines, {} actual):\n{}\n(BLESS=1 rewrites golden files after a deliberate change)",
            golden.display(),
            expected.lines().count(),
            actual.lines().count(),
            diff.join("\n")
        );
    }
}

/// Python with the test tools (`duckdb`, `pyarrow`, `moto`), installed by `.ci/run`.
pub fn python() -> Command {
    let mut c = Command::new(std::env::var("PYTHON").unwrap_or_else(|_| "python3".into()));
    c.stdin(Stdio::null());
    c
}

/// A free TCP port on 127.0.0.1.
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A real S3-compatible server (`moto_server`) on 127.0.0.1, stopped when dropped.
pub struct S3Server {
    child: Child,
    pub endpoint: String,
}

impl S3Server {
    pub fn start() -> Arc<S3Server> {
        let port = free_port();
        let child = python()
            .args([
                "-m",
                "moto.server",
                "-H",
                "127.0.0.1",
                "-p",
                &port.to_string(),
            ])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("python3 -m moto.server starts (pip install 'moto[server]', done by .ci/run)");
        let endpoint = format!("http://127.0.0.1:{port}");
        let deadline = Instant::now() + Duration::from_secs(30);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(
                Instant::now() < deadline,
                "moto_server did not start on port {port}"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
        Arc::new(S3Server { child, endpoint })
    }

    /// Environment of a client of this server.
    pub fn env(&self) -> Vec<(&'static str, String)> {
        vec![
            ("AWS_ENDPOINT_URL", self.endpoint.clone()),
            ("AWS_ALLOW_HTTP", "true".into()),
            ("AWS_ACCESS_KEY_ID", "test".into()),
            ("AWS_SECRET_ACCESS_KEY", "test".into()),
            ("AWS_REGION", "us-east-1".into()),
        ]
    }

    /// Runs a Python snippet with boto3 pointed at this server (`s3` is the client).
    pub fn boto(&self, code: &str) -> String {
        let script = format!(
            "import boto3\ns3 = boto3.client('s3', endpoint_url='{}', aws_access_key_id='test', aws_secret_access_key='test', region_name='us-east-1')\n{code}",
            self.endpoint
        );
        let out = run_ok(python().args(["-c", &script]));
        String::from_utf8(out.stdout).unwrap()
    }

    pub fn create_bucket(&self, bucket: &str) {
        self.boto(&format!("s3.create_bucket(Bucket='{bucket}')"));
    }

    /// Downloads every object under `s3://bucket/prefix/` into `dir`, keeping the layout.
    pub fn download(&self, bucket: &str, prefix: &str, dir: &Path) -> Vec<String> {
        let keys = self.boto(&format!(
            "import os\np = s3.get_paginator('list_objects_v2')\nfor page in p.paginate(Bucket='{bucket}', Prefix='{prefix}/'):\n    for o in page.get('Contents', []):\n        k = o['Key']\n        dest = os.path.join('{}', k[len('{prefix}/'):])\n        os.makedirs(os.path.dirname(dest), exist_ok=True)\n        s3.download_file('{bucket}', k, dest)\n        print(k)",
            dir.display()
        ));
        keys.lines().map(String::from).collect()
    }
}

impl Drop for S3Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A real Kafka-API broker (`tansu`, in-memory storage) on 127.0.0.1, stopped when dropped.
/// `.ci/run` installs it (`cargo install tansu --version 0.6.0 --features dynostore`);
/// `TANSU` names another binary.
pub struct KafkaBroker {
    child: Child,
    /// `127.0.0.1:<port>`, for `source.brokers`.
    pub brokers: String,
}

impl KafkaBroker {
    pub fn start() -> KafkaBroker {
        let port = free_port();
        let url = format!("tcp://127.0.0.1:{port}");
        let bin = std::env::var("TANSU").unwrap_or_else(|_| "tansu".into());
        let child = Command::new(&bin)
            .args(["broker", "--listener-url", &url, "--advertised-listener-url", &url])
            .args(["--storage-engine", "memory://tansu/"])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| {
                panic!("{bin}: {e} (cargo install tansu --version 0.6.0 --features dynostore, done by .ci/run)")
            });
        let deadline = Instant::now() + Duration::from_secs(30);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(
                Instant::now() < deadline,
                "tansu did not start on port {port}"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        KafkaBroker {
            child,
            brokers: format!("127.0.0.1:{port}"),
        }
    }
}

impl Drop for KafkaBroker {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A copy of the Kafka reference pipeline in `dir/kafka.yaml`: `brokers`, topic and group
/// `name`, bounded, a short session timeout (a killed member's partitions move within
/// seconds), lake `dir/lake`, plus `extra` appended to its reports.
pub fn kafka_pipeline(dir: &Path, brokers: &str, name: &str, extra: &str) -> PathBuf {
    let yaml =
        std::fs::read_to_string(workspace().join("pipelines/access-log-kafka.yaml")).unwrap();
    let start = yaml.find("source:\n").unwrap();
    let end = yaml.find("format:\n").unwrap();
    let source = format!(
        "source:\n  kind: kafka\n  brokers: {brokers}\n  topic: {name}\n  group: {name}\n  bounded: true\n  properties: {{ session.timeout.ms: \"6000\", heartbeat.interval.ms: \"500\" }}\n\n"
    );
    let yaml = format!("{}{source}{}{extra}", &yaml[..start], &yaml[end..])
        .replace("root: out/lake", "root: lake");
    std::fs::copy(
        workspace().join("pipelines/status_codes.csv"),
        dir.join("status_codes.csv"),
    )
    .unwrap();
    let path = dir.join("kafka.yaml");
    std::fs::write(&path, yaml).unwrap();
    path
}

/// A copy of the reference pipeline that follows `<dir>/logs/<pattern>` (a path or a glob,
/// polled every 20 ms), writing to `<dir>/lake` and checkpointing every `interval`.
pub fn tail_pipeline(dir: &Path, pattern: &str, interval: &str) -> PathBuf {
    let yaml = std::fs::read_to_string(workspace().join("pipelines/access-log.yaml")).unwrap();
    let start = yaml.find("source:\n").unwrap();
    let end = yaml.find("format:\n").unwrap();
    let source = format!(
        "source:\n  kind: tail\n  path: logs/{pattern}\n  poll_interval: 20ms\n\ncheckpoint: {{ interval: {interval} }}\n\n"
    );
    let yaml = format!("{}{source}{}", &yaml[..start], &yaml[end..])
        .replace("root: out/lake", "root: lake");
    std::fs::create_dir_all(dir.join("logs")).unwrap();
    std::fs::copy(
        workspace().join("pipelines/status_codes.csv"),
        dir.join("status_codes.csv"),
    )
    .unwrap();
    let path = dir.join("tail.yaml");
    std::fs::write(&path, yaml).unwrap();
    path
}

/// Appends `lines` to `path` (created if missing), each ended by a newline.
pub fn append_lines(path: &Path, lines: &[&str]) {
    use std::io::Write;
    let mut f = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .unwrap();
    for l in lines {
        writeln!(f, "{l}").unwrap();
    }
}

/// Stops a running stage with SIGTERM (it drains and exits 0); returns its standard error.
pub fn stop_with_sigterm(child: std::process::Child) -> String {
    let status = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    let out = child.wait_with_output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr).to_string();
    assert!(out.status.success(), "{err}");
    err
}

/// A `stream-ingest run` of `yaml` in `dir`, in the background (a `tail` pipeline runs until
/// stopped), its output piped.
pub fn start_tail(dir: &Path, yaml: &Path) -> Child {
    cmd("stream-ingest")
        .current_dir(dir)
        .args(["run", "-c"])
        .arg(yaml)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap()
}

/// Lets a follower catch up, then stops it with SIGTERM; returns its summary line.
pub fn settle_and_stop(child: Child) -> String {
    std::thread::sleep(Duration::from_millis(2500));
    stop_with_sigterm(child)
}
