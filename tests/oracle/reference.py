#!/usr/bin/env python3
"""An independent oracle for the reference pipeline, written from the spec alone.

It parses the log with the spec's regular expression (Python `re`, with RE2's ASCII
classes spelled out), replays the watermark event by event to find late events, and
computes both windowed tables and both reports with DuckDB SQL. Its output has the exact
format of the golden files, so a test (and a human re-blessing them) can compare both.

    python3 tests/oracle/reference.py LOG STATUS_CODES.csv OUT_DIR

writes OUT_DIR/{status_1m,path_1m,daily_status_class,top_paths}.csv.
"""
import csv
import datetime as dt
import io
import re
import sys
from pathlib import Path

import duckdb

SPEC = r'^(\S+) \S+ \S+ \[(\d{2}/(?:Jan|Feb|Mar|Apr|May|Jun|Jul|Aug|Sep|Oct|Nov|Dec)/\d{4}:\d{2}:\d{2}:\d{2}) ([+-])(\d{2})(\d{2})\] "(.*)" (\d{3}) (\d+|-)(?: "(?:[^"\\]|\\.)*" "(?:[^"\\]|\\.)*")?\s*$'
# RE2's ASCII classes: \s is [\t\n\f\r ] (no \v), \d is [0-9].
PATTERN = re.compile(
    SPEC.replace(r"\S", r"[^\t\n\f\r ]").replace(r"\s", r"[\t\n\f\r ]").replace(r"\d", "[0-9]"),
    re.DOTALL,
)
BOUND_US = 60_000_000
WINDOW_US = 60_000_000
MONTHS = {m: i + 1 for i, m in enumerate("Jan Feb Mar Apr May Jun Jul Aug Sep Oct Nov Dec".split())}
EPOCH = dt.datetime(1970, 1, 1)


def parse(line: str):
    m = PATTERN.match(line)
    # `.` in the spec does not match a newline; lines never hold one.
    if not m:
        return None
    d = m.group(2)
    try:
        day, mon, rest = int(d[0:2]), MONTHS[d[3:6]], d[7:]
        year, hh, mm, ss = int(rest[0:4]), int(rest[5:7]), int(rest[8:10]), int(rest[11:13])
        local = dt.datetime(year, mon, day, hh, mm, ss)
    except ValueError:
        return None
    offset = (int(m.group(4)) * 3600 + int(m.group(5)) * 60) * (1 if m.group(3) == "+" else -1)
    delta = local - EPOCH
    ts = (delta.days * 86400 + delta.seconds - offset) * 1_000_000
    request = m.group(6)
    tokens = request.split(" ")
    path = tokens[1] if len(tokens) > 1 else None
    status = int(m.group(7))
    nbytes = 0 if m.group(8) == "-" else int(m.group(8))
    return m.group(1), ts, path, status, nbytes


def events(log: Path):
    data = log.read_bytes()
    lines = data.split(b"\n")
    if lines and lines[-1] == b"":
        lines.pop()
    max_ts = None
    for raw in lines:
        ev = parse(raw.decode("utf-8", errors="replace"))
        if ev is None:
            continue
        ts = ev[1]
        watermark = None if max_ts is None else max_ts - BOUND_US
        end = ts - ts % WINDOW_US + WINDOW_US
        late = watermark is not None and end <= watermark
        max_ts = ts if max_ts is None else max(max_ts, ts)
        if not late:
            yield ev


def fmt_ts(us: int) -> str:
    return (EPOCH + dt.timedelta(microseconds=us)).strftime("%Y-%m-%dT%H:%M:%SZ")


def write_csv(path: Path, header, rows, null=""):
    with path.open("w", newline="") as f:
        w = csv.writer(f, lineterminator="\n")
        w.writerow(header)
        for r in rows:
            w.writerow([null if v is None else v for v in r])


def main():
    log, codes, out = Path(sys.argv[1]), Path(sys.argv[2]), Path(sys.argv[3])
    out.mkdir(parents=True, exist_ok=True)
    con = duckdb.connect()
    con.execute("CREATE TABLE ev (host VARCHAR, ts BIGINT, path VARCHAR, status INTEGER, bytes BIGINT)")
    con.executemany("INSERT INTO ev VALUES (?, ?, ?, ?, ?)", list(events(log)))
    con.execute(
        f"""CREATE TABLE status_1m AS
        SELECT ts - ts % {WINDOW_US} AS ws, ts - ts % {WINDOW_US} + {WINDOW_US} AS we, status,
               count(*) AS requests, sum(bytes)::BIGINT AS bytes, count(DISTINCT host) AS unique_hosts
        FROM ev GROUP BY ALL"""
    )
    con.execute(
        f"""CREATE TABLE path_1m AS
        SELECT ts - ts % {WINDOW_US} AS ws, ts - ts % {WINDOW_US} + {WINDOW_US} AS we, path,
               count(*) AS requests, sum(bytes)::BIGINT AS bytes
        FROM ev GROUP BY ALL"""
    )
    rows = con.execute("SELECT * FROM status_1m ORDER BY ws, status").fetchall()
    write_csv(out / "status_1m.csv", ["window_start", "window_end", "status", "requests", "bytes", "unique_hosts"],
              [(fmt_ts(r[0]), fmt_ts(r[1]), *r[2:]) for r in rows], null="\\N")
    rows = con.execute("SELECT * FROM path_1m").fetchall()
    # NULL first, then byte order: the order of the golden files.
    rows.sort(key=lambda r: (r[0], r[2] is not None, (r[2] or "").encode()))
    write_csv(out / "path_1m.csv", ["window_start", "window_end", "path", "requests", "bytes"],
              [(fmt_ts(r[0]), fmt_ts(r[1]), *r[2:]) for r in rows], null="\\N")

    con.execute(f"CREATE TABLE codes AS SELECT * FROM read_csv('{codes}', header=true, columns={{'status': 'INTEGER', 'class': 'VARCHAR', 'description': 'VARCHAR'}})")
    day = f"strftime(make_timestamp(ws), '%Y-%m-%d')"
    rows = con.execute(
        f"""WITH j AS (
              SELECT {day} AS dt, coalesce(c.class, 'unknown') AS class, s.requests, s.bytes
              FROM status_1m s LEFT JOIN codes c ON s.status = c.status),
            g AS (SELECT dt, class, sum(requests)::BIGINT AS requests, sum(bytes)::BIGINT AS bytes FROM j GROUP BY dt, class)
            SELECT dt, class, requests, bytes, requests::DOUBLE / sum(requests) OVER (PARTITION BY dt) AS share
            FROM g ORDER BY dt, requests DESC, class"""
    ).fetchall()
    write_csv(out / "daily_status_class.csv", ["dt", "class", "requests", "bytes", "share"],
              [(r[0], r[1], r[2], r[3], repr(r[4])) for r in rows])

    rows = con.execute(
        f"""WITH g AS (
              SELECT {day} AS dt, path, sum(requests)::BIGINT AS requests, sum(bytes)::BIGINT AS bytes
              FROM path_1m WHERE path IS NOT NULL GROUP BY ALL),
            r AS (SELECT *, row_number() OVER (PARTITION BY dt ORDER BY requests DESC, encode(path)) AS rank FROM g)
            SELECT dt, rank, path, requests, bytes FROM r WHERE rank <= 20 ORDER BY dt, rank"""
    ).fetchall()
    write_csv(out / "top_paths.csv", ["dt", "rank", "path", "requests", "bytes"], rows)


if __name__ == "__main__":
    main()
