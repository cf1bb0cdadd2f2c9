#!/usr/bin/env python3
"""The reference pipeline's windowed tables computed by DuckDB as one batch query (W1): the
yardstick `stream-ingest` is measured against (bench case `duckdb-w1-11days`).

    python3 bench/duckdb_w1.py --input LOG --lake DIR

Reads the log as lines, parses each with the spec's regular expression
(`tests/oracle/access_log.py`, RE2 in DuckDB), and writes `status_1m` (count, sum of bytes,
distinct hosts per status and minute) and `path_1m` (count, sum of bytes per path and
minute) as Parquet partitioned by `dt`/`hour`, like the stream stage's lake. What it does not
do, a batch query cannot: no watermark, no late events (every event counts), no checkpoints.
DuckDB uses every core.
"""
import argparse
import sys
from pathlib import Path

import duckdb

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests" / "oracle"))
from access_log import SPEC  # noqa: E402

GROUPS = ["host", "t", "sign", "oh", "om", "request", "status", "bytes"]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--input", required=True)
    ap.add_argument("--lake", required=True)
    args = ap.parse_args()
    lake = Path(args.lake)
    lake.mkdir(parents=True, exist_ok=True)
    con = duckdb.connect()
    con.execute(
        """CREATE TEMP TABLE ev AS
        WITH lines AS (
            SELECT line FROM read_csv(?, columns = {'line': 'VARCHAR'}, header = false,
                delim = '\x01', quote = '', escape = '', auto_detect = false,
                ignore_errors = true, strict_mode = false)),
        m AS (SELECT regexp_extract(line, ?, ?) AS g FROM lines)
        SELECT g.host AS host,
               try_strptime(g.t, '%d/%b/%Y:%H:%M:%S')
                 - (CASE g.sign WHEN '+' THEN 1 ELSE -1 END)
                   * to_minutes(g.oh::INT * 60 + g.om::INT) AS ts,
               CASE WHEN len(string_split(g.request, ' ')) > 1
                    THEN string_split(g.request, ' ')[2] END AS path,
               g.status::INT AS status,
               coalesce(try_cast(g.bytes AS BIGINT), 0) AS bytes
        FROM m WHERE g.host <> ''
          AND try_strptime(g.t, '%d/%b/%Y:%H:%M:%S') IS NOT NULL""",
        [args.input, SPEC, GROUPS],
    )
    tables = {
        "status_1m": "status, count(*) AS requests, sum(bytes) AS bytes, count(DISTINCT host) AS unique_hosts",
        "path_1m": "path, count(*) AS requests, sum(bytes) AS bytes",
    }
    for name, select in tables.items():
        key = select.split(",")[0]
        con.execute(
            f"""COPY (
                SELECT window_start, window_start + INTERVAL 1 MINUTE AS window_end, * EXCLUDE (window_start),
                       strftime(window_start, '%Y-%m-%d') AS dt, strftime(window_start, '%H') AS hour
                FROM (SELECT time_bucket(INTERVAL 1 MINUTE, ts) AS window_start, {select}
                      FROM ev GROUP BY window_start, {key}))
            TO '{lake / name}' (FORMAT parquet, PARTITION_BY (dt, hour), OVERWRITE_OR_IGNORE)"""
        )


if __name__ == "__main__":
    main()
