#!/usr/bin/env python3
"""The Kafka benchmark: the stream stage reading a 4-partition topic with 1 and 2 members,
beside the file source on the same lines.

    python3 bench/kafka.py                       # 10M lines (release binaries, tansu on PATH)
    python3 bench/kafka.py --lines 1000000 --json bench/results/kafka-1m.json

A real broker (`tansu`, in-memory storage, installed by `.ci/run`) is started on 127.0.0.1;
`stream-ingest gen` writes the log once (target/bench/), `stream-ingest produce` puts it
into a fresh topic keyed by client address, and each case runs bounded members (they read
to the end offsets, flush, exit) on a fresh lake and consumer group. Wall time is from the
first member's start to the last one's exit; CPU seconds and peak RSS are the members' own
(wait4), summed and maxed; the broker shares the same 2 cores. Standard library only.
"""
import argparse
import json
import os
import platform
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
WORK = ROOT / "target" / "bench"
PIPELINE = ROOT / "pipelines" / "access-log-kafka.yaml"
FILE_PIPELINE = ROOT / "pipelines" / "access-log.yaml"


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_broker():
    port = free_port()
    url = f"tcp://127.0.0.1:{port}"
    proc = subprocess.Popen(
        [os.environ.get("TANSU", "tansu"), "broker", "--listener-url", url,
         "--advertised-listener-url", url, "--storage-engine", "memory://tansu/"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 30
    while True:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return proc, f"127.0.0.1:{port}"
        except OSError:
            if time.time() > deadline:
                sys.exit("bench: tansu did not start")
            time.sleep(0.05)


def pipeline(dir, brokers, name):
    """The Kafka reference pipeline on `brokers`, topic/group `name`, bounded, in dir."""
    text = PIPELINE.read_text()
    start, end = text.index("source:\n"), text.index("format:\n")
    source = (f"source:\n  kind: kafka\n  brokers: {brokers}\n  topic: {name}\n"
              f"  group: {name}\n  bounded: true\n\n")
    text = text[:start] + source + text[end:]
    shutil.copy(ROOT / "pipelines" / "status_codes.csv", dir / "status_codes.csv")
    path = dir / f"{name}.yaml"
    path.write_text(text)
    return path


def measured(procs):
    """Waits for every process; returns CPU seconds (sum) and peak RSS (max, bytes)."""
    cpu, rss = 0.0, 0
    for p in procs:
        _, status, usage = os.wait4(p.pid, 0)
        if os.waitstatus_to_exitcode(status) != 0:
            sys.exit(f"bench: {' '.join(p.args)} failed:\n{p.stderr.read().decode(errors='replace')}")
        cpu += usage.ru_utime + usage.ru_stime
        rss = max(rss, usage.ru_maxrss * 1024)
    return cpu, rss


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--lines", type=int, default=10_000_000)
    ap.add_argument("--bin-dir", default=str(ROOT / "target" / "release"))
    ap.add_argument("--json", help="save the figures here")
    args = ap.parse_args()
    si = str(Path(args.bin_dir) / "stream-ingest")
    WORK.mkdir(parents=True, exist_ok=True)
    log = WORK / f"kafka-gen{args.lines}.log"
    if not log.exists():
        subprocess.run([si, "gen", "-q", "--lines", str(args.lines), "--seed", "7", "--out", str(log)], check=True)
    runs = WORK / "kafka-runs"
    shutil.rmtree(runs, ignore_errors=True)
    runs.mkdir(parents=True)
    broker, brokers = start_broker()
    results = []
    try:
        topic_yaml = pipeline(runs, brokers, "bench")
        started = time.perf_counter()
        subprocess.run([si, "produce", "-q", "-c", str(topic_yaml), "--input", str(log),
                        "--key", "host", "--partitions", "4"], check=True, cwd=runs)
        produce_s = time.perf_counter() - started
        print(f"bench: produced {args.lines} lines in {produce_s:.1f} s", file=sys.stderr)
        cases = [("file-source", None, 1), ("kafka-1-member", "one", 1), ("kafka-2-members", "two", 2)]
        for name, group, members in cases:
            cwd = runs / name
            cwd.mkdir()
            if group is None:
                argv = [si, "run", "-q", "-c", str(FILE_PIPELINE), "--input", str(log), "--lake", str(cwd / "lake")]
            else:
                yaml = pipeline(cwd, brokers, "bench")
                text = yaml.read_text().replace("group: bench", f"group: {group}")
                yaml.write_text(text)
                argv = [si, "run", "-q", "-c", str(yaml), "--lake", str(cwd / "lake")]
            started = time.perf_counter()
            procs = [subprocess.Popen(argv, cwd=cwd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
                     for _ in range(members)]
            cpu, rss = measured(procs)
            wall = time.perf_counter() - started
            results.append(dict(case=name, members=members, lines=args.lines, wall_s=round(wall, 3),
                                lines_per_s=round(args.lines / wall), cpu_s=round(cpu, 2), rss_mb=round(rss / 1e6, 1)))
            print(f"bench: {name}: {wall:.2f} s", file=sys.stderr)
    finally:
        broker.kill()
        broker.wait()
    print(f"{'case':<18} {'lines':>10} {'wall s':>8} {'lines/s':>10} {'CPU s':>7} {'peak RSS MB':>12}")
    for r in results:
        print(f"{r['case']:<18} {r['lines']:>10} {r['wall_s']:>8.2f} {r['lines_per_s']:>10} {r['cpu_s']:>7.2f} {r['rss_mb']:>12.1f}")
    if args.json:
        doc = {
            "label": subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True).stdout.strip(),
            "machine": {"cpus": os.cpu_count(), "platform": platform.platform()},
            "date": time.strftime("%Y-%m-%d %H:%M:%S"),
            "produce_s": round(produce_s, 2),
            "results": results,
        }
        Path(args.json).write_text(json.dumps(doc, indent=2))


if __name__ == "__main__":
    main()
