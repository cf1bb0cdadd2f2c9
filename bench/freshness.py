#!/usr/bin/env python3
"""Freshness, measured: for every window of a paced log, the wall time from the moment the
window *can close* to the moment its rows are *visible* in the lake.

    python3 bench/freshness.py                                   # all four cases (~10 min)
    python3 bench/freshness.py --cases tail-1s --duration 60
    python3 bench/freshness.py --json bench/results/freshness.json

Cases (pipeline: bench/freshness.yaml, a short tumbling window keyed by status):

  tail-1s, tail-default        a writer thread appends Combined Log Format lines stamped with
                               the wall clock (UTC, +0000) to a file at --rate lines/s, each
                               line flushed on its own; the stage follows it with a `tail`
                               source (poll_interval --poll-interval). checkpoint.interval 1s,
                               or the default (10s).
  generate-1s, generate-default  the built-in `generate` source, start = now, rate 1s (one
                               second of event time per second of wall time),
                               events_per_second --rate.

"Can close": window [s, e) can close when an event at or past e + bound (the watermark's
max_out_of_orderness) has arrived in the source. For tail that is the wall time at which the
writer flushed the first line whose event time is >= e + bound. For generate it is computed
from the generator's schedule: run start + (e + bound - start) / speed, with start = the
wall time written into the pipeline just before the stage is started, speed 1, and the run
start (when the generator's pace clock starts, inside the stage) estimated by the moment the
stage first answered /health/ready (polled every 5 ms). "Visible": a published Parquet file
of the table (outside `_staging`, no path component starting with `_` or `.`) holds a row
with that window_start; a poller lists the table every --poll-lake seconds (timestamp: the
end of the listing) and reads each new file once with pyarrow.

Phases: event time has one-second resolution, so windows close on (nearly) whole wall-clock
seconds, while checkpoints come every interval from the stage's start. Within one run every
window therefore waits about the same time for its checkpoint (the phase barely drifts), and
one run samples one phase. Each case is split into --runs runs (default: --duration /
max(15 s, 3 x interval)), started at evenly spaced phases of gcd(window, interval) seconds
(start times k/runs of the way through the period, on the wall clock), and the figures pool
their windows. Each run measures the windows that can close within its share of --duration
(after bound + window size for its first window); the stage then runs on (source still
going) until each of them is visible or the checkpoint interval + --grace-after seconds have
passed (missing ones are reported), its /metrics are scraped
(`stream_ingest_window_freshness_seconds`, `stream_ingest_checkpoint_duration_seconds`), and
it is stopped with SIGTERM (it must exit 0). Standard library + pyarrow only.
"""
import argparse
import json
import math
import os
import platform
import random
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
from datetime import datetime, timezone
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

ROOT = Path(__file__).resolve().parent.parent
BASE_PIPELINE = ROOT / "bench" / "freshness.yaml"
TABLE = "by_status"

# name -> (source kind, checkpoint interval in seconds or None for the default)
CASES = {
    "tail-1s": ("tail", 1),
    "tail-default": ("tail", None),
    "generate-1s": ("generate", 1),
    "generate-default": ("generate", None),
}
DEFAULT_INTERVAL_S = 10  # checkpoint.interval's default (README: pipeline file reference)
# The watermark bound per source: the tail writer is in order; the generator puts ~3 % of
# lines 1-10 s behind (generate.rs), so 11 s keeps all of them in their windows.
BOUND_S = {"tail": 2, "generate": 11}

MONTHS = ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"]
STATUSES = [200, 304, 302, 404, 301, 206, 403, 500, 503]
STATUS_WEIGHTS = [780, 80, 50, 45, 10, 8, 12, 10, 5]
PATHS = ["/", "/index.html", "/favicon.ico", "/style2.css", "/images/jordan-80.png",
         "/blog/tags/puppet?flav=rss20", "/presentations/logstash-monitorama-2013/"]
AGENTS = ["Mozilla/5.0 (X11; Linux x86_64; rv:133.0) Gecko/20100101 Firefox/133.0",
          "Mozilla/5.0 (compatible; Googlebot/2.1; +http://www.google.com/bot.html)",
          "curl/8.5.0"]


# ---------------------------------------------------------------------------------------------
# The pipeline of a case


def window_size_s(text):
    m = re.search(r"window:\s*\{\s*kind:\s*tumbling,\s*size:\s*(\d+)s\s*\}", text)
    if not m:
        sys.exit(f"freshness: {BASE_PIPELINE} must have one `window: {{ kind: tumbling, size: Ns }}`")
    return int(m.group(1))


def case_pipeline(base, source, bound_s, interval_s, lake):
    """The base pipeline with the `# per case` lines replaced (JSON is YAML flow syntax)."""
    subs = [
        (r"^source: .*$", lambda m: "source: " + json.dumps(source)),
        (r"^(\s+max_out_of_orderness:) .*$", lambda m: f"{m.group(1)} {bound_s}s"),
        (r"^checkpoint: .*$", lambda m: "checkpoint: " + json.dumps({"interval": f"{interval_s}s"} if interval_s else {})),
        (r"^(\s+root:) .*$", lambda m: f"{m.group(1)} {json.dumps(str(lake))}"),
    ]
    for pattern, repl in subs:
        base, n = re.subn(pattern, repl, base, count=1, flags=re.M)
        if n != 1:
            sys.exit(f"freshness: {BASE_PIPELINE}: no line matches {pattern!r}")
    return base


# ---------------------------------------------------------------------------------------------
# The paced writer (tail cases)


def clf_line(rng, now):
    t = time.gmtime(now)
    stamp = f"{t.tm_mday:02d}/{MONTHS[t.tm_mon - 1]}/{t.tm_year}:{t.tm_hour:02d}:{t.tm_min:02d}:{t.tm_sec:02d} +0000"
    status = rng.choices(STATUSES, STATUS_WEIGHTS)[0]
    host = f"10.{rng.randrange(256)}.{rng.randrange(256)}.{rng.randrange(1, 255)}"
    size = rng.randrange(150, 200_000) if status in (200, 206) else "-"
    return (f'{host} - - [{stamp}] "GET {rng.choice(PATHS)} HTTP/1.1" {status} {size} '
            f'"-" "{rng.choice(AGENTS)}"\n').encode()


class Writer(threading.Thread):
    """Appends one line every 1/rate s (event time = the wall clock), flushing each line;
    remembers, per second of event time, when its first line was flushed."""

    def __init__(self, path, rate):
        super().__init__(name="writer", daemon=True)
        self.path, self.rate = path, rate
        self.stop = threading.Event()
        self.first_flush = {}  # event second -> wall time (time.time()) of its first flushed line
        self.lines = 0
        self.started = None

    def run(self):
        rng = random.Random(7)
        with open(self.path, "ab", buffering=1 << 16) as f:
            self.started = time.time()
            i = 0
            while not self.stop.is_set():
                wait = self.started + i / self.rate - time.time()
                if wait > 0:
                    time.sleep(wait)
                now = time.time()
                f.write(clf_line(rng, now))
                f.flush()
                flushed = time.time()
                self.first_flush.setdefault(int(now), flushed)
                i += 1
                self.lines = i

    def close_moment(self, event_s):
        """Wall time of the flush of the first line whose event time is >= event_s."""
        later = [s for s in list(self.first_flush) if s >= event_s]
        return self.first_flush[min(later)] if later else None


# ---------------------------------------------------------------------------------------------
# The visibility poller


class Poller(threading.Thread):
    """Lists the table every `every` s (skipping `_`/`.` names), reads each new Parquet file
    once, and records when each window_start (µs) was first seen."""

    def __init__(self, table_dir, every):
        super().__init__(name="poller", daemon=True)
        self.table_dir, self.every = str(table_dir), every
        self.stop = threading.Event()
        self.files = set()
        self.first_seen = {}  # window_start µs -> wall time of the listing that found it
        self.passes = 0
        self.slowest_pass = 0.0
        self.lock = threading.Lock()

    def scan(self):
        began = time.time()
        new = []
        for dirpath, dirnames, filenames in os.walk(self.table_dir):
            dirnames[:] = [d for d in dirnames if not d.startswith(("_", "."))]
            for name in filenames:
                if name.endswith(".parquet") and not name.startswith(("_", ".")):
                    path = os.path.join(dirpath, name)
                    if path not in self.files:
                        new.append(path)
        # The files were visible by the end of the listing: a conservative timestamp.
        listed = time.time()
        for path in new:
            try:
                col = pq.read_table(path, columns=["window_start"]).column("window_start")
            except FileNotFoundError:
                continue  # removed by a compaction since the listing; the merged file has its rows
            self.files.add(path)
            unit = col.type.unit if pa.types.is_timestamp(col.type) else "us"
            per_us = {"s": 1_000_000, "ms": 1000, "us": 1, "ns": 0.001}[unit]
            starts = pc.unique(pc.cast(col, pa.int64())).to_pylist()
            with self.lock:
                for v in starts:
                    self.first_seen.setdefault(int(v * per_us), listed)
        self.passes += 1
        self.slowest_pass = max(self.slowest_pass, time.time() - began)

    def run(self):
        while not self.stop.is_set():
            began = time.monotonic()
            self.scan()
            self.stop.wait(max(0.0, self.every - (time.monotonic() - began)))

    def seen(self):
        with self.lock:
            return dict(self.first_seen)


# ---------------------------------------------------------------------------------------------
# /metrics


def http_get(port, path, timeout=1.0):
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=timeout) as r:
            return r.status, r.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, ""
    except (urllib.error.URLError, OSError):
        return None, ""


def histogram(text, name):
    """A Prometheus histogram from the text format: {"buckets": [[le, cumulative]], "sum", "count"}."""
    buckets, total, count = [], None, None
    for line in text.splitlines():
        if line.startswith(name + "_bucket"):
            m = re.search(r'le="([^"]+)"\}\s+(\S+)', line)
            if m:
                buckets.append([float(m.group(1)), int(float(m.group(2)))])
        elif line.startswith(name + "_sum"):
            total = float(line.split()[-1])
        elif line.startswith(name + "_count"):
            count = int(float(line.split()[-1]))
    if not buckets or count is None:
        return None
    return {"buckets": buckets, "sum": total, "count": count}


def bucket_quantile(h, q):
    """The upper bound of the bucket holding quantile q (what the histogram can tell)."""
    if not h or not h["count"]:
        return None
    rank = q * h["count"]
    for le, cum in h["buckets"]:
        if cum >= rank:
            return le
    return float("inf")


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# ---------------------------------------------------------------------------------------------
# One case


def quantile(values, q):
    """Linear interpolation between closest ranks (numpy's default)."""
    v = sorted(values)
    if len(v) == 1:
        return v[0]
    pos = q * (len(v) - 1)
    lo = int(pos)
    hi = min(lo + 1, len(v) - 1)
    return v[lo] + (v[hi] - v[lo]) * (pos - lo)


def add_histograms(a, b):
    if a is None or b is None:
        return a or b
    if [le for le, _ in a["buckets"]] != [le for le, _ in b["buckets"]]:
        return a
    return {"buckets": [[le, x + y] for (le, x), (_, y) in zip(a["buckets"], b["buckets"])],
            "sum": a["sum"] + b["sum"], "count": a["count"] + b["count"]}


def run_once(name, run, args, binary, base, size_s, work, seconds):
    """One run of the stage; returns the close and visible moments of its windows."""
    kind, interval_s = CASES[name]
    bound_s = BOUND_S[kind]
    interval_eff = interval_s or DEFAULT_INTERVAL_S
    work.mkdir(parents=True)
    lake = work / "lake"
    log = work / "access.log"
    # The moment the stage starts, relative to the second boundaries at which windows close,
    # is what decides how long they wait for a checkpoint (see phase_period): start each run
    # at its own, evenly spaced phase.
    period = phase_period(size_s, interval_eff)
    target = (run["phase"] * period) % period
    time.sleep((target - time.time()) % period)
    s0 = time.time()
    if kind == "tail":
        log.touch()
        source = {"kind": "tail", "path": str(log), "poll_interval": args.poll_interval}
    else:
        source = {"kind": "generate", "start": datetime.fromtimestamp(s0, timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ"),
                  "rate": "1s", "events_per_second": args.rate}
    pipeline = work / "pipeline.yaml"
    pipeline.write_text(case_pipeline(base, source, bound_s, interval_s, lake))
    port = free_port()
    argv = [str(binary), "run", "-c", str(pipeline), "--metrics-addr", f"127.0.0.1:{port}"]
    print(f"freshness: {name} run {run['index'] + 1}: {' '.join(argv)}", file=sys.stderr)

    poller = Poller(lake / TABLE, args.poll_lake)
    poller.start()
    stderr = open(work / "stage.log", "wb")
    t_popen = time.time()
    proc = subprocess.Popen(argv, cwd=work, stdout=subprocess.DEVNULL, stderr=stderr)
    t_ready = None
    while t_ready is None:
        if proc.poll() is not None:
            sys.exit(f"freshness: {name}: the stage exited ({proc.returncode}):\n{(work / 'stage.log').read_text()}")
        status, _ = http_get(port, "/health/ready", timeout=0.2)
        if status == 200:
            t_ready = time.time()
        elif time.time() - t_popen > 60:
            sys.exit(f"freshness: {name}: /health/ready did not answer 200 within 60 s")
        else:
            time.sleep(0.005)

    writer = None
    if kind == "tail":
        writer = Writer(log, args.rate)
        writer.start()
        while writer.started is None:
            time.sleep(0.001)
        t_start = writer.started
    else:
        # The generator's pace clock starts in the stage's source thread when the stage
        # becomes ready (Generator::new, then Pace::new; the whole `stream-ingest gen
        # --lines 1` process takes ~15 ms): /health/ready answering is our estimate of it.
        t_start = t_ready
    # The first window closes about bound + window size after the start: measure `seconds`
    # of closing windows after that.
    t_end = t_start + bound_s + size_s + seconds
    while time.time() < t_end:
        time.sleep(0.1)
        if proc.poll() is not None:
            sys.exit(f"freshness: {name}: the stage exited early ({proc.returncode}):\n{(work / 'stage.log').read_text()}")

    # Windows that can close by t_end, with their close moments.
    closes = {}  # window_start µs -> close wall time
    if kind == "tail":
        for ws in sorted({sec - sec % size_s for sec in list(writer.first_flush)}):
            c = writer.close_moment(ws + size_s + bound_s)
            if c is not None and c <= t_end:
                closes[ws * 1_000_000] = c
    else:
        # The generator's in-order clock is start + (wall time since its pace started) x speed
        # (rate 1s: speed 1); a line's time is that clock cut to the second, and ~3 % of lines
        # are 1-10 s behind it, never ahead. So the first line at or past e + bound (a whole
        # second) is produced when the clock reaches e + bound.
        first = int(s0) - int(s0) % size_s
        ws = first - 3 * size_s  # lines behind the clock in the first seconds open earlier windows
        while True:
            c = t_start + max(0.0, ws + size_s + bound_s - s0) / 1.0
            if c > t_end:
                break
            if ws >= first or ws * 1_000_000 in poller.seen():
                closes[ws * 1_000_000] = c
            ws += size_s

    # Let the stage run on until every measured window is visible (or give up).
    deadline = time.time() + interval_eff + args.grace_after
    while time.time() < deadline and not set(closes) <= set(poller.seen()):
        time.sleep(0.05)
    status, metrics = http_get(port, "/metrics", timeout=5)
    stage_fresh = histogram(metrics, "stream_ingest_window_freshness_seconds") if status == 200 else None
    stage_ckpt = histogram(metrics, "stream_ingest_checkpoint_duration_seconds") if status == 200 else None

    proc.send_signal(signal.SIGTERM)
    if writer:
        writer.stop.set()
    try:
        _, wstatus, usage = os.wait4(proc.pid, 0)
        exit_code = os.waitstatus_to_exitcode(wstatus)
        cpu = usage.ru_utime + usage.ru_stime
    except ChildProcessError:
        exit_code, cpu = proc.wait(), None
    proc.returncode = exit_code
    stderr.close()
    poller.stop.set()
    poller.join()
    if writer:
        writer.join()
    if exit_code != 0:
        print(f"freshness: {name}: the stage exited {exit_code} after SIGTERM; see {work / 'stage.log'}", file=sys.stderr)

    seen = poller.seen()
    windows = [
        {"window_start": datetime.fromtimestamp(ws / 1e6, timezone.utc).isoformat(),
         "close": closes[ws], "visible": seen.get(ws),
         "delay_s": seen[ws] - closes[ws] if ws in seen else None}
        for ws in sorted(closes)
    ]
    delays = [w["delay_s"] for w in windows if w["delay_s"] is not None]
    return {
        "run": run["index"] + 1,
        "start_phase_s": target,
        "phase_period_s": period,
        "seconds": seconds,
        "windows": len(delays),
        "missing": len(windows) - len(delays),
        "p50_s": quantile(delays, 0.5) if delays else None,
        "max_s": max(delays) if delays else None,
        "ready_after_s": t_ready - t_popen,
        "load_average_1m_at_end": os.getloadavg()[0],
        "lines_written": writer.lines if writer else None,
        "files_seen": len(poller.files),
        "lake_passes": poller.passes,
        "slowest_lake_pass_s": poller.slowest_pass,
        "stage_exit": exit_code,
        "stage_cpu_s": cpu,
        "stage_window_freshness": stage_fresh,
        "stage_checkpoint_duration": stage_ckpt,
        "per_window": windows,
    }


def phase_period(window_s, interval_s):
    """Windows close on whole seconds (event time has one-second resolution and the source
    runs at one second of event time per second), every `window_s` seconds, while checkpoints
    come every `interval_s` from the stage's start: the wait for the next checkpoint repeats
    with this period of the start time."""
    return math.gcd(window_s, interval_s)


def default_runs(duration, interval_s):
    return max(1, int(duration // max(15, 3 * interval_s)))


def run_case(name, args, binary, base, size_s, tmp):
    kind, interval_s = CASES[name]
    interval_eff = interval_s or DEFAULT_INTERVAL_S
    runs = args.runs or default_runs(args.duration, interval_eff)
    seconds = args.duration / runs
    results = [run_once(name, {"index": i, "phase": i / runs}, args, binary, base, size_s,
                        tmp / name / f"run-{i + 1}", seconds) for i in range(runs)]
    values = [w["delay_s"] for r in results for w in r["per_window"] if w["delay_s"] is not None]
    fresh, ckpt = None, None
    for r in results:
        fresh = add_histograms(fresh, r["stage_window_freshness"])
        ckpt = add_histograms(ckpt, r["stage_checkpoint_duration"])
    return {
        "case": name,
        "source": kind,
        "checkpoint_interval_s": interval_eff,
        "checkpoint_interval": f"{interval_s}s" if interval_s else f"default ({DEFAULT_INTERVAL_S}s)",
        "window_s": size_s,
        "max_out_of_orderness_s": BOUND_S[kind],
        "rate_lines_per_s": args.rate,
        "poll_interval": args.poll_interval if kind == "tail" else None,
        "duration_s": args.duration,
        "runs": runs,
        "windows": len(values),
        "missing": sum(r["missing"] for r in results),
        "p50_s": quantile(values, 0.50) if values else None,
        "p99_s": quantile(values, 0.99) if values else None,
        "max_s": max(values) if values else None,
        "min_s": min(values) if values else None,
        "mean_s": statistics.fmean(values) if values else None,
        "stage_exit": max((r["stage_exit"] for r in results), key=abs),
        "stage_window_freshness": fresh,
        "stage_checkpoint_duration": ckpt,
        "run_results": results,
    }


# ---------------------------------------------------------------------------------------------
# Output


def fmt(v, digits=3):
    return "-" if v is None else f"{v:.{digits}f}"


def print_table(doc):
    rows = [("case", "checkpoint interval", "runs", "windows", "missing", "p50 s", "p99 s", "max s",
             "stage p50 ≤", "stage p99 ≤", "stage mean s", "checkpoint mean s")]
    for r in doc["results"]:
        h, c = r.get("stage_window_freshness"), r.get("stage_checkpoint_duration")
        rows.append((
            r["case"], r["checkpoint_interval"], str(r["runs"]), str(r["windows"]), str(r["missing"]),
            fmt(r["p50_s"]), fmt(r["p99_s"]), fmt(r["max_s"]),
            fmt(bucket_quantile(h, 0.5), 2), fmt(bucket_quantile(h, 0.99), 2),
            fmt(h["sum"] / h["count"] if h and h["count"] else None),
            fmt(c["sum"] / c["count"] if c and c["count"] else None),
        ))
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    line = lambda row: "| " + " | ".join(v.ljust(w) if i < 2 else v.rjust(w) for i, (v, w) in enumerate(zip(row, widths))) + " |"
    print(line(rows[0]))
    print("| " + " | ".join("-" * w for w in widths) + " |")
    for row in rows[1:]:
        print(line(row))


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--cases", default=",".join(CASES), help=f"comma-separated (default: {','.join(CASES)})")
    ap.add_argument("--duration", type=float, default=90, help="seconds of closing windows measured per case, split between its runs (default 90; each run also waits for its first window: bound + window size)")
    ap.add_argument("--runs", type=int, default=0, help="stage runs per case, started at evenly spaced phases (default: duration / max(15 s, 3 x checkpoint interval))")
    ap.add_argument("--rate", type=float, default=200, help="lines (events) per second (default 200)")
    ap.add_argument("--poll-interval", default="50ms", help="the tail source's poll_interval (default 50ms)")
    ap.add_argument("--poll-lake", type=float, default=0.02, help="seconds between listings of the lake (default 0.02)")
    ap.add_argument("--grace-after", type=float, default=15, help="after the run, wait up to checkpoint interval + this for the measured windows (default 15)")
    ap.add_argument("--bin", default=str(ROOT / "target" / "release" / "stream-ingest"), help="the stream-ingest binary")
    ap.add_argument("--build", action="store_true", help="cargo build --release -p stream-ingest first")
    ap.add_argument("--json", help="save the figures to this file")
    ap.add_argument("--show", metavar="JSON", help="print the table of figures saved earlier and exit")
    ap.add_argument("--keep", action="store_true", help="keep the temporary directory (pipelines, lakes, logs)")
    args = ap.parse_args()

    if args.show:
        with open(args.show) as f:
            print_table(json.load(f))
        return
    names = [c for c in args.cases.split(",") if c]
    unknown = [c for c in names if c not in CASES]
    if unknown:
        sys.exit(f"freshness: no case {', '.join(unknown)} (cases: {', '.join(CASES)})")
    if args.build:
        subprocess.run(["cargo", "build", "--release", "-q", "-p", "stream-ingest"], cwd=ROOT, check=True)
    binary = Path(args.bin).resolve()
    if not binary.exists():
        sys.exit(f"freshness: no {binary}; build it with `cargo build --release -p stream-ingest` (or --build)")
    base = BASE_PIPELINE.read_text()
    size_s = window_size_s(base)

    tmp = Path(tempfile.mkdtemp(prefix="freshness-"))
    try:
        commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True).stdout.strip()
        doc = {
            "label": commit + ("+dirty" if subprocess.run(["git", "diff", "--quiet"], cwd=ROOT).returncode else ""),
            "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
            "machine": {"cpus": os.cpu_count(), "platform": platform.platform(), "python": platform.python_version(),
                        "pyarrow": pa.__version__},
            "command": " ".join([os.path.relpath(sys.argv[0], ROOT)] + sys.argv[1:]),
            "pipeline": str(BASE_PIPELINE.relative_to(ROOT)),
            "results": [],
        }
        for name in names:
            r = run_case(name, args, binary, base, size_s, tmp)
            doc["results"].append(r)
            print(f"freshness: {name}: {r['runs']} runs, {r['windows']} windows, p50 {fmt(r['p50_s'])} s, p99 {fmt(r['p99_s'])} s, "
                  f"max {fmt(r['max_s'])} s, {r['missing']} missing", file=sys.stderr)
    finally:
        if args.keep:
            print(f"freshness: kept {tmp}", file=sys.stderr)
        else:
            shutil.rmtree(tmp, ignore_errors=True)
    print_table(doc)
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        with open(args.json, "w") as f:
            json.dump(doc, f, indent=1)
            f.write("\n")
    if any(r["stage_exit"] != 0 for r in doc["results"]):
        sys.exit(1)


if __name__ == "__main__":
    main()
