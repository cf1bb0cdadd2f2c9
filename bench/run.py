#!/usr/bin/env python3
"""The benchmark suite: runs the release binaries on generated and bundled logs and prints one
table (wall time, lines/s, CPU seconds, peak RSS, files and bytes written) per case.

    python3 bench/run.py                      # build (release), generate, run every case
    python3 bench/run.py --json now.json      # ... and save the figures
    python3 bench/run.py --compare before.json --json after.json
    python3 bench/run.py --cases stream-1m,batch-1m --repeat 5
    python3 bench/run.py --quick              # skip the 10M-line cases
    python3 bench/run.py --instructions --quick --json a.json   # + instructions (callgrind)
    python3 bench/run.py --instructions --quick --compare a.json  # flags >3 % more

Inputs are generated once by `stream-ingest gen` into target/bench/ (deterministic: the same
seed gives the same bytes) and reused. Each case runs `--repeat` times (default 3) on a fresh
lake (stream) or on the lake of the matching stream case (batch); the table shows the run
with the median wall time. CPU seconds and peak RSS come from the kernel (wait4), for the
whole process. Standard library only, but for the `-s3` cases: they start a moto S3 server on
127.0.0.1 (`pip install 'moto[server]' boto3`, as the tests) and are skipped without it; moto
is a Python server, so their figures bound ours from below, they do not measure S3.

`--instructions` also runs each stream case of at most 1M lines once under valgrind's
callgrind and records the instructions it executed (every thread's): a figure that does
not move with the machine's load, so a change of a few percent is real. `--compare` then
flags every case whose instructions (or, without them, CPU seconds) grew by more than
`--threshold` (3 %) and exits with status 1.

Stream cases also report the mean time to make a checkpoint durable and commit its files
(`ms/ck`, from the run's summary line): with a Delta lake, the log commits of every table.
"""
import argparse
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
WORK = ROOT / "target" / "bench"
PIPELINE = ROOT / "pipelines" / "access-log.yaml"
HIGH_CARD = ROOT / "bench" / "high-cardinality.yaml"
INSIGHTS = ROOT / "pipelines" / "access-log-insights.yaml"
# The reference pipeline with a table filter (in the condition language every version reads).
FILTERED = ROOT / "bench" / "filtered.yaml"
SAMPLE = ROOT / "pipelines" / "data" / "apache_logs.log"
DUCKDB_W1 = ROOT / "bench" / "duckdb_w1.py"

# name -> gen arguments
INPUTS = {
    "gen1m": ["--lines", "1000000", "--seed", "7"],
    "gen10m": ["--lines", "10000000", "--seed", "7"],
    # The same lines spread over 36 days (a small site): many small partitions.
    "sparse1m": ["--lines", "1000000", "--seed", "7", "--events-per-second", "0.32"],
    # A realistic small site: one event per second, 11.6 days, about 560 hourly files.
    "days1m": ["--lines", "1000000", "--seed", "7", "--events-per-second", "1"],
    "uniq1m": ["--lines", "1000000", "--seed", "7", "--unique-paths", "--events-per-second", "1000"],
}


def case_list(bins):
    si, ba = str(bins / "stream-ingest"), str(bins / "batch-analyze")
    one_core = ["taskset", "-c", "0"] if shutil.which("taskset") else None
    cases = [
        ("stream-sample", "stream", "sample", [si, "run", "-c", str(PIPELINE), "--input", str(SAMPLE)], None),
        ("stream-1m", "stream", "gen1m", [si, "run", "-c", str(PIPELINE)], None),
        ("stream-1m-1core", "stream", "gen1m", [si, "run", "-c", str(PIPELINE)], one_core),
        ("stream-10m", "stream", "gen10m", [si, "run", "-c", str(PIPELINE)], None),
        # The cost of operating: /metrics served (an ephemeral port) and 1 s checkpoints.
        ("stream-10m-metrics-1s", "stream", "gen10m", [si, "run", "-c", str(PIPELINE), "--metrics-addr", "127.0.0.1:0", "--checkpoint-interval", "1s"], None),
        ("stream-1m-36days", "stream", "sparse1m", [si, "run", "-c", str(PIPELINE)], None),
        ("stream-1m-11days", "stream", "days1m", [si, "run", "-c", str(PIPELINE)], None),
        ("stream-high-cardinality", "stream", "uniq1m", [si, "run", "-c", str(HIGH_CARD)], None),
        # The yardstick: the same two windowed tables computed by DuckDB as one batch query
        # over the log (bench/duckdb_w1.py; skipped without the duckdb module).
        ("duckdb-w1-1m", "stream", "gen1m", [sys.executable, str(DUCKDB_W1)], None),
        ("duckdb-w1-11days", "stream", "days1m", [sys.executable, str(DUCKDB_W1)], None),
        ("stream-1m-filter", "stream", "gen1m", [si, "run", "-c", str(FILTERED)], None),
        # derive, lookup, percentiles and sketches (pipelines/access-log-insights.yaml).
        ("insights-1m", "stream", "gen1m", [si, "run", "-c", str(INSIGHTS)], None),
        ("insights-10m", "stream", "gen10m", [si, "run", "-c", str(INSIGHTS)], None),
        # The same with a 400,000-row (22 MB) status dimension and a checkpoint a second:
        # what a large lookup table costs at checkpoints (see big_dimension_pipeline).
        ("insights-10m-bigdim-1s", "stream", "gen10m", [si, "run", "-c", str(WORK / "insights-bigdim.yaml"), "--checkpoint-interval", "1s"], None),
        # The Delta lake beside the Hive one: 1 s checkpoints, each a log commit per table.
        ("stream-10m-hive-1s", "stream", "gen10m", [si, "run", "-c", str(PIPELINE), "--checkpoint-interval", "1s"], None),
        ("stream-10m-delta-1s", "stream", "gen10m", [si, "run", "-c", str(WORK / "access-log-delta.yaml"), "--checkpoint-interval", "1s"], None),
        ("stream-10m-hive-1s-s3", "stream", "gen10m", [si, "run", "-c", str(PIPELINE), "--checkpoint-interval", "1s"], None),
        ("stream-10m-delta-1s-s3", "stream", "gen10m", [si, "run", "-c", str(WORK / "access-log-delta.yaml"), "--checkpoint-interval", "1s"], None),
        ("batch-insights-1m", "batch", "insights-1m", [ba, "run", "-c", str(INSIGHTS), "--format", "csv"], None),
        ("batch-sample", "batch", "stream-sample", [ba, "run", "-c", str(PIPELINE), "--format", "csv"], None),
        ("batch-1m", "batch", "stream-1m", [ba, "run", "-c", str(PIPELINE), "--format", "csv"], None),
        ("batch-10m", "batch", "stream-10m", [ba, "run", "-c", str(PIPELINE), "--format", "csv"], None),
        ("batch-1m-36days", "batch", "stream-1m-36days", [ba, "run", "-c", str(PIPELINE), "--format", "csv"], None),
        ("batch-10m-delta", "batch", "stream-10m-delta-1s", [ba, "run", "-c", str(WORK / "access-log-delta.yaml"), "--format", "csv"], None),
    ]
    # The same reports on a Ballista cluster of 1 and 2 executors (`batch-analyze scheduler`
    # and `executor`, started for the case on 127.0.0.1; see CLUSTER_CASES).
    for lake in ["1m", "1m-36days"]:
        for n in [1, 2]:
            name = f"cluster{n}-batch-{lake}"
            CLUSTER_CASES[name] = n
            cases.append((name, "batch", f"stream-{lake}", [ba, "run", "-c", str(PIPELINE), "--format", "csv"], None))
    return cases


# case name -> executors of its cluster
CLUSTER_CASES = {}


class S3:
    """A moto S3 server on 127.0.0.1 (a bucket per run), or None without moto."""

    @staticmethod
    def start():
        try:
            import boto3  # noqa: F401
            import moto  # noqa: F401
        except ImportError:
            return None
        return S3()

    def __init__(self):
        import socket
        import boto3
        port = free_port()
        self.proc = subprocess.Popen([sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
                                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        self.endpoint = f"http://127.0.0.1:{port}"
        deadline = time.time() + 30
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                if time.time() > deadline:
                    sys.exit("bench: moto did not start")
                time.sleep(0.1)
        self.env = dict(os.environ, AWS_ENDPOINT_URL=self.endpoint, AWS_ALLOW_HTTP="true", AWS_ACCESS_KEY_ID="test",
                        AWS_SECRET_ACCESS_KEY="test", AWS_REGION="us-east-1")
        self.client = boto3.client("s3", endpoint_url=self.endpoint, aws_access_key_id="test",
                                   aws_secret_access_key="test", region_name="us-east-1")
        self.buckets = 0

    def new_lake(self):
        self.buckets += 1
        bucket = f"bench{self.buckets}"
        self.client.create_bucket(Bucket=bucket)
        return f"s3://{bucket}/lake"

    def lake_files(self, url):
        bucket = url.split("/")[2]
        files, size = 0, 0
        for page in self.client.get_paginator("list_objects_v2").paginate(Bucket=bucket):
            for o in page.get("Contents", []):
                parts = o["Key"].split("/")
                if parts[-1].endswith(".parquet") and not any(p.startswith(("_", ".")) for p in parts[1:]):
                    files += 1
                    size += o["Size"]
        return files, size

    def stop(self):
        self.proc.kill()
        self.proc.wait()


def checkpoint_ms(stderr):
    """The mean checkpoint time the summary line reports (`…, 12.3 ms each)`), or None."""
    import re
    m = re.search(r"([0-9.]+) ms each", stderr)
    return float(m.group(1)) if m else None


def free_port():
    import socket
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def proc_cpu_s(pid):
    """User + system CPU seconds of a running process (Linux /proc)."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


class Cluster:
    """A scheduler and `executors` executors of the release batch-analyze, on 127.0.0.1."""

    def __init__(self, ba, executors):
        import socket
        port = free_port()
        self.url = f"df://127.0.0.1:{port}"
        quiet = dict(stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        self.procs = [subprocess.Popen([ba, "scheduler", "--bind", f"127.0.0.1:{port}"], **quiet)]
        ports = [port]
        for _ in range(executors):
            p = free_port()
            ports.append(p)
            self.procs.append(subprocess.Popen([ba, "executor", "--scheduler", self.url, "--bind", f"127.0.0.1:{p}"], **quiet))
        for p in ports:
            deadline = time.time() + 60
            while True:
                try:
                    socket.create_connection(("127.0.0.1", p), timeout=1).close()
                    break
                except OSError:
                    if time.time() > deadline:
                        self.stop()
                        sys.exit(f"bench: the cluster did not start (port {p})")
                    time.sleep(0.05)

    def cpu_s(self):
        return sum(proc_cpu_s(p.pid) for p in self.procs)

    def stop(self):
        for p in self.procs:
            p.kill()
            p.wait()


def run_measured(argv, cwd, prefix=None, env=None):
    """Runs argv; returns wall seconds, CPU seconds (user+sys), peak RSS (bytes), stderr."""
    argv = (prefix or []) + argv
    started = time.perf_counter()
    proc = subprocess.Popen(argv, cwd=cwd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=env)
    stderr = proc.stderr.read()
    _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - started
    proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode != 0:
        sys.exit(f"bench: {' '.join(argv)} failed ({proc.returncode}):\n{stderr.decode(errors='replace')}")
    return wall, usage.ru_utime + usage.ru_stime, usage.ru_maxrss * 1024, stderr.decode(errors="replace")


def lake_files(lake, below=""):
    files, size = 0, 0
    for dirpath, dirnames, filenames in os.walk(lake / below if below else lake):
        dirnames[:] = [d for d in dirnames if not d.startswith(("_", "."))]
        for f in filenames:
            if f.endswith(".parquet") and not f.startswith((".", "_")):
                files += 1
                size += os.path.getsize(os.path.join(dirpath, f))
    return files, size


def count_lines(path):
    n = 0
    with open(path, "rb") as f:
        while chunk := f.read(1 << 24):
            n += chunk.count(b"\n")
    return n


def big_dimension_pipeline():
    """The insights pipeline over a status dimension of 400,000 rows (the real codes, then
    synthetic ones no event has), in target/bench/."""
    yaml = WORK / "insights-bigdim.yaml"
    csv = WORK / "status_codes_big.csv"
    if not csv.exists():
        rows = (ROOT / "pipelines" / "status_codes.csv").read_text().splitlines()
        rows += [f"{i},{i // 100}xx,Synthetic status description number {i}" for i in range(1000, 401000)]
        csv.write_text("\n".join(rows) + "\n")
    text = INSIGHTS.read_text()
    assert "path: status_codes.csv" in text
    yaml.write_text(text.replace("path: status_codes.csv", f"path: {csv}"))


def delta_pipeline():
    """The reference pipeline with `lake.format: delta`, in target/bench/."""
    text = PIPELINE.read_text()
    assert "  partition_time: hour" in text and "path: status_codes.csv" in text
    text = text.replace("  partition_time: hour", "  format: delta\n  partition_time: hour", 1)
    text = text.replace("path: status_codes.csv", f"path: {ROOT / 'pipelines' / 'status_codes.csv'}")
    (WORK / "access-log-delta.yaml").write_text(text)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--bin-dir", default=str(ROOT / "target" / "release"), help="where the binaries are")
    ap.add_argument("--no-build", action="store_true", help="use the binaries as they are")
    ap.add_argument("--cases", help="comma-separated case names (default: all)")
    ap.add_argument("--quick", action="store_true", help="skip the 10M-line cases")
    ap.add_argument("--repeat", type=int, default=3, help="runs per case (median shown)")
    ap.add_argument("--json", help="save the figures to this file")
    ap.add_argument("--compare", help="figures saved earlier (--json) to compare with")
    ap.add_argument("--label", default=None, help="a name for this run in the JSON (default: git commit)")
    ap.add_argument("--show", metavar="JSON", help="print the table of figures saved earlier (with --compare) and exit")
    ap.add_argument("--instructions", action="store_true", help="count instructions of the stream cases up to 1M lines (valgrind)")
    ap.add_argument("--threshold", type=float, default=3.0, help="with --compare: flag a case this many percent worse")
    args = ap.parse_args()

    if args.show:
        with open(args.show) as f:
            doc = json.load(f)
        before = None
        if args.compare:
            with open(args.compare) as f:
                before = {r["case"]: r for r in json.load(f)["results"]}
        print_table(doc, before)
        return

    bins = Path(args.bin_dir).resolve()
    if not args.no_build:
        print("bench: cargo build --release (stream-ingest, batch-analyze)", file=sys.stderr)
        subprocess.run(["cargo", "build", "--release", "-q", "-p", "stream-ingest", "-p", "batch-analyze"], cwd=ROOT, check=True)
    gen_bin = ROOT / "target" / "release" / "stream-ingest"
    if not gen_bin.exists():
        gen_bin = bins / "stream-ingest"

    cases = case_list(bins)
    wanted = set(args.cases.split(",")) if args.cases else None
    if wanted:
        unknown = wanted - {c[0] for c in cases}
        if unknown:
            sys.exit(f"bench: no case {', '.join(sorted(unknown))} (cases: {', '.join(c[0] for c in cases)})")
        # A batch case needs its stream case's lake.
        wanted |= {c[2] for c in cases if c[0] in wanted and c[1] == "batch"}
    cases = [c for c in cases if (wanted is None or c[0] in wanted) and not (args.quick and "10m" in c[0])]

    WORK.mkdir(parents=True, exist_ok=True)
    big_dimension_pipeline()
    delta_pipeline()
    inputs = {"sample": SAMPLE}
    for name in {c[2] for c in cases if c[1] == "stream"} - {"sample"}:
        path = WORK / f"{name}.log"
        if not path.exists():
            print(f"bench: generating {path.name}", file=sys.stderr)
            tmp = path.with_suffix(".tmp")
            subprocess.run([str(gen_bin), "gen", "-q", *INPUTS[name], "--out", str(tmp)], check=True)
            tmp.rename(path)
        inputs[name] = path
    line_counts = {name: count_lines(p) for name, p in inputs.items()}

    results = []
    lakes = {}
    s3 = S3.start() if any(c[0].endswith("-s3") for c in cases) else None
    for name, kind, source, argv, prefix in cases:
        if prefix is None and name.endswith("1core"):
            print(f"bench: {name}: no taskset, skipped", file=sys.stderr)
            continue
        if name.startswith("duckdb-") and not has_duckdb():
            print(f"bench: {name}: no duckdb module (pip install duckdb), skipped", file=sys.stderr)
            continue
        on_s3 = name.endswith("-s3")
        if on_s3 and s3 is None:
            print(f"bench: {name}: no moto (pip install 'moto[server]' boto3), skipped", file=sys.stderr)
            continue
        runs = []
        cluster = Cluster(argv[0], CLUSTER_CASES[name]) if name in CLUSTER_CASES else None
        for i in range(args.repeat):
            cwd = WORK / "runs" / name
            if kind == "stream":
                shutil.rmtree(cwd, ignore_errors=True)
                cwd.mkdir(parents=True)
                lake = s3.new_lake() if on_s3 else cwd / "lake"
                full = argv + ["--input", str(inputs[source]), "--lake", str(lake)] if "--input" not in argv else argv + ["--lake", str(lake)]
                lines = line_counts[source]
            else:
                lake = lakes[source]
                cwd.mkdir(parents=True, exist_ok=True)
                out = cwd / "reports"
                shutil.rmtree(out, ignore_errors=True)
                full = argv + ["--lake", str(lake), "--out", str(out)]
                lines = line_counts[next(c[2] for c in cases if c[0] == source)]
            if cluster:
                full = full + ["--cluster", cluster.url]
                cluster_cpu = cluster.cpu_s()
            wall, cpu, rss, stderr = run_measured(full, cwd, prefix, s3.env if on_s3 else None)
            if cluster:
                # The client's CPU and the cluster's (scheduler and executors) together.
                cpu += cluster.cpu_s() - cluster_cpu
            if on_s3:
                files, size = s3.lake_files(lake)
            elif kind == "stream":
                files, size = lake_files(lake)
            else:
                files, size = lake_files(lake, "reports")
            runs.append(dict(case=name, wall_s=wall, cpu_s=cpu, rss_mb=rss / 1e6, lines=lines,
                             lines_per_s=lines / wall, files=files, mb_written=size / 1e6,
                             checkpoint_ms=checkpoint_ms(stderr) if kind == "stream" else None))
            print(f"bench: {name} run {i + 1}: {wall:.3f} s", file=sys.stderr)
        if cluster:
            cluster.stop()
        if kind == "stream" and not on_s3:
            lakes[name] = WORK / "runs" / name / "lake"
        runs.sort(key=lambda r: r["wall_s"])
        best = dict(runs[len(runs) // 2])
        best["wall_s_all"] = [round(r["wall_s"], 3) for r in runs]
        ours = Path(argv[0]).parent == bins
        if args.instructions and ours and kind == "stream" and not on_s3 and lines <= 1_000_000:
            best["instructions"] = count_instructions(full, WORK / "runs" / name)
            print(f"bench: {name}: {best['instructions']:,} instructions", file=sys.stderr)
        results.append(best)
    if s3:
        s3.stop()

    label = args.label or subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True).stdout.strip()
    doc = {
        "label": label,
        "machine": {"cpus": os.cpu_count(), "platform": platform.platform(), "python": platform.python_version()},
        "date": time.strftime("%Y-%m-%d %H:%M:%S"),
        "results": results,
    }
    before = None
    if args.compare:
        with open(args.compare) as f:
            before = {r["case"]: r for r in json.load(f)["results"]}
    print_table(doc, before)
    if args.json:
        with open(args.json, "w") as f:
            json.dump(doc, f, indent=2)
        print(f"bench: figures saved to {args.json}", file=sys.stderr)
    if before and regressions(doc, before, args.threshold):
        sys.exit(1)


def has_duckdb():
    try:
        import duckdb  # noqa: F401
    except ImportError:
        return False
    return True


def count_instructions(argv, cwd):
    """Instructions of one run under callgrind (a fresh lake; every thread's)."""
    if not shutil.which("valgrind"):
        sys.exit("bench: --instructions needs valgrind")
    lake = Path(argv[argv.index("--lake") + 1])
    shutil.rmtree(lake, ignore_errors=True)
    tool = ["valgrind", "--tool=callgrind", "--callgrind-out-file=/dev/null"]
    # Checkpoints are taken by the wall clock, and callgrind runs about 50x slower: without a
    # fixed interval, a run under it takes checkpoints (and rolls and merges files) that the
    # same run does not take at full speed, and the count measures valgrind's pace.
    if "--checkpoint-interval" not in argv:
        argv = argv + ["--checkpoint-interval", "1h"]
    # Without the case's prefix (taskset): callgrind runs one thread at a time anyway.
    argv = tool + argv
    proc = subprocess.run(argv, cwd=cwd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    import re
    m = re.search(r"Collected : ([0-9]+)", proc.stderr)
    if proc.returncode != 0 or not m:
        sys.exit(f"bench: callgrind failed ({proc.returncode}):\n{proc.stderr[-2000:]}")
    return int(m.group(1))


def regressions(doc, before, threshold):
    """Prints the cases more than `threshold` % worse than `before` (instructions where both
    have them, else CPU seconds); whether there were any."""
    worse = []
    for r in doc["results"]:
        b = before.get(r["case"])
        if not b:
            continue
        key = "instructions" if r.get("instructions") and b.get("instructions") else "cpu_s"
        change = (r[key] / b[key] - 1) * 100 if b[key] else 0.0
        if change > threshold:
            worse.append(f"{r['case']}: {key} {change:+.1f} %")
    for w in worse:
        print(f"bench: REGRESSION {w}", file=sys.stderr)
    return bool(worse)


def print_table(doc, before):
    head = ["case", "lines", "wall s", "lines/s", "CPU s", "peak RSS MB", "files", "MB written", "ms/ck", "instructions"]
    if before:
        head += ["lines/s before", "speed-up", "CPU s before", "RSS MB before", "instr Δ"]
    rows = []
    for r in doc["results"]:
        row = [r["case"], f"{r['lines']:,}", f"{r['wall_s']:.3f}", f"{r['lines_per_s']:,.0f}", f"{r['cpu_s']:.2f}",
               f"{r['rss_mb']:.0f}", str(r["files"]), f"{r['mb_written']:.1f}",
               f"{r['checkpoint_ms']:.1f}" if r.get("checkpoint_ms") is not None else "-",
               f"{r['instructions']:,}" if r.get("instructions") else "-"]
        if before:
            b = before.get(r["case"])
            row += ([f"{b['lines_per_s']:,.0f}", f"{r['lines_per_s'] / b['lines_per_s']:.2f}x", f"{b['cpu_s']:.2f}",
                     f"{b['rss_mb']:.0f}"] if b else ["-", "-", "-", "-"])
            instr = b and r.get("instructions") and b.get("instructions")
            row.append(f"{(r['instructions'] / b['instructions'] - 1) * 100:+.1f} %" if instr else "-")
        rows.append(row)
    widths = [max(len(h), *(len(r[i]) for r in rows)) for i, h in enumerate(head)]
    print(f"# {doc['label']} on {doc['machine']['cpus']} CPUs, {doc['date']}")
    print("| " + " | ".join(h.ljust(w) for h, w in zip(head, widths)) + " |")
    print("| " + " | ".join("-" * w for w in widths) + " |")
    for r in rows:
        print("| " + " | ".join(c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(zip(r, widths))) + " |")


if __name__ == "__main__":
    main()
