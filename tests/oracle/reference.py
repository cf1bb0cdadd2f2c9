#!/usr/bin/env python3
"""An independent oracle for the reference pipeline, written from the spec alone.

It parses the log with the spec's regular expression (Python `re`, with RE2's ASCII
classes spelled out), replays the watermark event by event to find late events, and
computes both windowed tables and both reports with DuckDB SQL. Its output has the exact
format of the golden files, so a test (and a human re-blessing them) can compare both.

    python3 tests/oracle/reference.py LOG STATUS_CODES.csv OUT_DIR

writes OUT_DIR/{status_1m,path_1m,daily_status_class,top_paths}.csv.
"""
import sys
from pathlib import Path

import duckdb

# The spec's parse and lateness rules live in access_log.py, shared with insights.py.
from access_log import BOUND_US, EPOCH, MONTHS, PATTERN, SPEC, WINDOW_US, fmt_ts, on_time, parse_access, write_csv  # noqa: F401


def parse(line: str):
    """(host, ts, path, status, bytes) of a valid line, or None."""
    ev = parse_access(line)
    if ev is None:
        return None
    return ev.host, ev.ts, ev.path, ev.status, ev.bytes


def events(log: Path):
    """The events of the log that are not late, in file order."""
    for ev in on_time(log, BOUND_US, WINDOW_US):
        yield ev.host, ev.ts, ev.path, ev.status, ev.bytes


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
