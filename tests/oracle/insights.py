#!/usr/bin/env python3
"""An independent oracle for `pipelines/access-log-insights.yaml`, written from the YAML and
the spec alone.

It parses the log with the spec's regular expression and drops late events by replaying the
watermark (`access_log.py`, shared with `reference.py`), derives `status_class`,
`agent_kind` and `path_prefix` with Python functions that mirror the YAML's SQL one for one,
looks up `description` in the status codes, and computes every windowed table and report
EXACTLY with DuckDB: `count(DISTINCT host)` where the pipeline has HyperLogLog, and the
sorted values of each group where it has a t-digest.

    python3 tests/oracle/insights.py LOG STATUS_CODES.csv GOLDEN_DIR
        checks GOLDEN_DIR/<table>.csv (as `render_table` writes a lake table) and
        GOLDEN_DIR/<report>.csv (as `batch-analyze --format csv` writes a report);
        exit 0 with one line per file, or 1 with every mismatch.
    python3 tests/oracle/insights.py LOG STATUS_CODES.csv --print OUT_DIR
        writes the oracle's own exact CSVs in the same formats (percentiles by nearest
        rank, exact distinct counts, no sketch columns), for humans.

Both can be given at once. How the golden files are judged:

- columns ending in `_sketch` are ignored (hex bytes, or absent);
- every other column but the approximate ones must be equal, row for row, in the same
  order: window and dt columns, keys, counts, sums, derived values, descriptions, `share`
  (compared as a number);
- `approx_distinct` (`unique_hosts`): within 2 % of the exact distinct count, or ±1;
- `approx_percentile` (`p50_bytes`, `p95_bytes`, `p99_bytes`): the estimate lies within the
  group's values and its rank among them (an interval when it ties with values) comes
  within 0.01 of q; a group too small for that (one value is more than 1 % of it) may also
  give any value between the two order statistics beside the one at rank q·n, which is
  where a t-digest of single values interpolates.
"""
import argparse
import bisect
import csv
import decimal
import math
import re
import sys
from pathlib import Path

import duckdb
import pyarrow as pa

from access_log import WINDOW_US, fmt_ts, on_time, write_csv

# ---------------------------------------------------------------------------------------
# `derive`: each function mirrors the SQL expression of the YAML given in its comment.
# The YAML and this file must change together.
# ---------------------------------------------------------------------------------------

BOT_WORDS = re.compile("bot|crawl|spider|slurp|curl|wget|python")
FIRST_SEGMENT = re.compile(r"^/([^/?]*)")


def status_class(status: int) -> str:
    # CAST(status / 100 AS VARCHAR) || 'xx'
    # `status / 100` is integer division (truncating); the spec's status is 3 digits, so
    # never negative, and Python's floor division gives the same. `status` is never NULL.
    return f"{status // 100}xx"


def agent_kind(user_agent):
    # CASE WHEN regexp_like(lower(user_agent), 'bot|crawl|spider|slurp|curl|wget|python')
    #      THEN 'bot' ELSE 'human' END
    # regexp_like searches (unanchored), as re.search; lower() of NULL is NULL and
    # regexp_like of NULL is NULL, which CASE treats as not true: 'human'.
    if user_agent is not None and BOT_WORDS.search(user_agent.lower()):
        return "bot"
    return "human"


def path_prefix(path):
    # '/' || regexp_extract(path, '^/([^/?]*)', 1)
    # regexp_extract (DuckDB's semantics) gives group 1 of the first match, '' without a
    # match, NULL for a NULL text; '/' || NULL is NULL.
    if path is None:
        return None
    m = FIRST_SEGMENT.search(path)
    return "/" + (m.group(1) if m else "")


# ---------------------------------------------------------------------------------------
# Exact tables and reports.
# ---------------------------------------------------------------------------------------

LOOKUP_DEFAULT = "unknown"  # lookup[0].defaults.description
QUANTILES = {"p50_bytes": 0.5, "p95_bytes": 0.95, "p99_bytes": 0.99}
WIN = f"ts - ts % {WINDOW_US}"


def load(con, log: Path, codes: Path):
    cols = {k: [] for k in ("host", "ts", "status", "bytes", "status_class", "agent_kind", "path_prefix")}
    for e in on_time(log):
        cols["host"].append(e.host)
        cols["ts"].append(e.ts)
        cols["status"].append(e.status)
        cols["bytes"].append(e.bytes)
        cols["status_class"].append(status_class(e.status))
        cols["agent_kind"].append(agent_kind(e.user_agent))
        cols["path_prefix"].append(path_prefix(e.path))
    # Through Arrow: DuckDB inserts a million rows of Python tuples one at a time.
    types = {"ts": pa.int64(), "status": pa.int32(), "bytes": pa.int64()}
    raw = pa.table({k: pa.array(v, type=types.get(k, pa.string())) for k, v in cols.items()})
    con.register("raw_arrow", raw)
    con.execute("CREATE TABLE raw AS SELECT * FROM raw_arrow")
    con.unregister("raw_arrow")
    quoted = str(codes).replace("'", "''")
    con.execute(
        f"""CREATE TABLE codes AS SELECT * FROM read_csv('{quoted}', header=true,
            columns={{'status': 'INTEGER', 'class': 'VARCHAR', 'description': 'VARCHAR'}})"""
    )
    # lookup: a left join on status; a miss (no row of that status) gets the default, a
    # matched row keeps its description as it is.
    con.execute(
        f"""CREATE TABLE ev AS
            SELECT r.*, {WIN} AS ws,
                   CASE WHEN c.status IS NULL THEN '{LOOKUP_DEFAULT}' ELSE c.description END AS description
            FROM raw r LEFT JOIN codes c ON r.status = c.status"""
    )
    n, = con.execute("SELECT count(*) FROM raw").fetchone()
    m, = con.execute("SELECT count(*) FROM ev").fetchone()
    assert n == m, "status_codes.csv has a status twice: the lookup would multiply events"


def day_of(col):
    return f"strftime(make_timestamp({col}), '%Y-%m-%d')"


class Table:
    """Expected rows of one output file: `columns` in order, each row a dict. `ident` are the
    columns that name a row (window or dt, keys); `approx` maps an approximate column to its
    kind: ('distinct',) or ('quantile', q); its value in a row is the exact count, or the
    group's sorted values."""

    def __init__(self, name, columns, ident, approx, rows, null):
        self.name, self.columns, self.ident, self.approx = name, columns, ident, approx
        self.rows, self.null = rows, null  # null: how the file writes NULL


def table_order(rows, ident):
    """render_table's order: by every column in order, NULL first, strings in byte order;
    the identifying columns come first and are unique, so they decide."""

    def key(r):
        return tuple((r[c] is not None, r[c].encode() if isinstance(r[c], str) else r[c]) for c in ident)

    return sorted(rows, key=key)


def compute(log: Path, codes: Path):
    con = duckdb.connect()
    load(con, log, codes)
    out = []

    def fetch(sql):
        cur = con.execute(sql)
        names = [d[0] for d in cur.description]
        return [dict(zip(names, r)) for r in cur.fetchall()]

    def windows(rows):
        for r in rows:
            r["window_start"] = fmt_ts(r.pop("ws"))
            r["window_end"] = fmt_ts(r.pop("we"))
        return rows

    # --- windowed tables ---
    rows = windows(fetch(
        f"""SELECT ws, ws + {WINDOW_US} AS we, status_class, agent_kind,
                   count(*) AS requests, sum(bytes)::BIGINT AS bytes
            FROM ev GROUP BY ALL"""))
    ident = ["window_start", "window_end", "status_class", "agent_kind"]
    out.append(Table("requests_1m", ident + ["requests", "bytes"], ident, {}, table_order(rows, ident), "\\N"))

    rows = windows(fetch(
        f"""SELECT ws, ws + {WINDOW_US} AS we, status, description, count(*) AS requests
            FROM ev GROUP BY ALL"""))
    ident = ["window_start", "window_end", "status", "description"]
    out.append(Table("status_1m", ident + ["requests"], ident, {}, table_order(rows, ident), "\\N"))

    rows = windows(fetch(
        f"""SELECT ws, ws + {WINDOW_US} AS we, path_prefix, count(*) AS requests,
                   list(bytes ORDER BY bytes) AS vals
            FROM ev GROUP BY ALL"""))
    for r in rows:
        vals = r.pop("vals")
        for c in QUANTILES:
            r[c] = vals
    ident = ["window_start", "window_end", "path_prefix"]
    out.append(Table("bytes_1m", ident + ["requests", *QUANTILES], ident,
                     {c: ("quantile", q) for c, q in QUANTILES.items()}, table_order(rows, ident), "\\N"))

    rows = windows(fetch(
        f"""SELECT ws, ws + {WINDOW_US} AS we, count(DISTINCT host) AS unique_hosts
            FROM ev GROUP BY ALL"""))
    ident = ["window_start", "window_end"]
    out.append(Table("hosts_1m", ident + ["unique_hosts"], ident, {"unique_hosts": ("distinct",)},
                     table_order(rows, ident), "\\N"))

    # --- reports (from the events: what merging the minutes' sketches estimates) ---
    rows = fetch(f"SELECT {day_of('ws')} AS dt, count(DISTINCT host) AS unique_hosts FROM ev GROUP BY dt ORDER BY dt")
    out.append(Table("daily_unique_hosts", ["dt", "unique_hosts"], ["dt"], {"unique_hosts": ("distinct",)}, rows, ""))

    rows = fetch(
        f"""SELECT {day_of('ws')} AS dt, path_prefix, count(*) AS requests,
                   list(bytes ORDER BY bytes) AS p95_bytes
            FROM ev GROUP BY ALL""")
    # ORDER BY dt, requests DESC, path_prefix: strings in byte order, NULL last (DataFusion's
    # default for an ascending key).
    rows.sort(key=lambda r: (r["dt"], -r["requests"], r["path_prefix"] is None, (r["path_prefix"] or "").encode()))
    out.append(Table("daily_p95_bytes", ["dt", "path_prefix", "requests", "p95_bytes"], ["dt", "path_prefix"],
                     {"p95_bytes": ("quantile", 0.95)}, rows, ""))

    rows = fetch(
        f"""WITH g AS (SELECT {day_of('ws')} AS dt, agent_kind, count(*) AS requests FROM ev GROUP BY ALL)
            SELECT dt, agent_kind, requests,
                   requests::DOUBLE / sum(requests) OVER (PARTITION BY dt) AS share
            FROM g ORDER BY dt, agent_kind""")
    out.append(Table("daily_bots", ["dt", "agent_kind", "requests", "share"], ["dt", "agent_kind"], {}, rows, ""))
    return out


# ---------------------------------------------------------------------------------------
# Formats: Arrow's CSV writer (render_table for tables, batch-analyze for reports).
# ---------------------------------------------------------------------------------------


def fmt_float(x: float) -> str:
    """A float64 as Arrow's CSV writer prints it (Rust's `ryu`): the shortest digits that
    read back the same, in decimal notation from 1e-5 up to 1e16, else `1.5e20`, `1e-7`."""
    if math.isnan(x):
        return "NaN"
    if math.isinf(x):
        return "inf" if x > 0 else "-inf"
    if x == 0:
        return "-0.0" if math.copysign(1, x) < 0 else "0.0"
    sign, digits, exp = decimal.Decimal(repr(abs(x))).normalize().as_tuple()
    d = "".join(map(str, digits))
    kk = len(d) + exp  # x = 0.d × 10^kk
    s = "-" if x < 0 else ""
    if 0 <= exp and kk <= 16:
        return f"{s}{d}{'0' * exp}.0"
    if 0 < kk <= 16:
        return f"{s}{d[:kk]}.{d[kk:]}"
    if -5 < kk <= 0:
        return f"{s}0.{'0' * -kk}{d}"
    mant = d if len(d) == 1 else f"{d[0]}.{d[1:]}"
    return f"{s}{mant}e{kk - 1}"


def fmt_value(v, null):
    if v is None:
        return null
    if isinstance(v, float):
        return fmt_float(v)
    return str(v)


def nearest_rank(vals, q):
    """The exact q quantile: the smallest value with at least q·n values at or below it."""
    return float(vals[max(0, math.ceil(q * len(vals)) - 1)])


def print_tables(tables, out: Path):
    out.mkdir(parents=True, exist_ok=True)
    for t in tables:
        rows = []
        for r in t.rows:
            row = []
            for c in t.columns:
                kind = t.approx.get(c)
                v = nearest_rank(r[c], kind[1]) if kind and kind[0] == "quantile" else r[c]
                row.append(fmt_value(v, t.null))
            rows.append(row)
        write_csv(out / f"{t.name}.csv", t.columns, rows)
        print(f"{t.name}.csv: {len(rows)} rows")


# ---------------------------------------------------------------------------------------
# Checking golden files.
# ---------------------------------------------------------------------------------------

RANK_EPS = 0.01
DISTINCT_REL = 0.02


def quantile_error(x: float, vals, q: float):
    """(None, rank error, how) when `x` is an acceptable estimate of the q quantile of sorted
    `vals` (`how`: "rank", or "neighbours" for a group too small for the rank rule), else
    (why not, rank error, None)."""
    n = len(vals)
    tol = 1e-9 * max(1.0, abs(x))
    if not (vals[0] - tol <= x <= vals[-1] + tol):
        return f"{x} is outside the group's values [{vals[0]}, {vals[-1]}]", math.inf, None
    lo = bisect.bisect_left(vals, x - tol) / n  # share of values below x
    hi = bisect.bisect_right(vals, x + tol) / n  # share at or below x
    err = lo - q if q < lo else q - hi if q > hi else 0.0
    if err <= RANK_EPS + 1e-12:
        return None, err, "rank"
    i = min(int(q * n), n - 1)
    a, b = vals[max(i - 1, 0)], vals[min(i + 1, n - 1)]
    if a - tol <= x <= b + tol:
        return None, err, "neighbours"
    return (f"{x} has rank {lo:.4f}..{hi:.4f} among the group's {n} values, not within {RANK_EPS} of {q}"
            f" (exact {nearest_rank(vals, q)}; order statistics beside rank q·n: {a}..{b})"), err, None


def distinct_error(text: str, exact: int):
    est = int(text)
    if abs(est - exact) <= max(1, DISTINCT_REL * exact):
        return None, abs(est - exact) / exact, "rank"
    return f"{est}, exact {exact} (allowed ±{max(1, DISTINCT_REL * exact):g})", abs(est - exact) / exact, None


def check_table(t: Table, golden_dir: Path, problems: list):
    path = golden_dir / f"{t.name}.csv"
    where = f"{t.name}.csv"
    if not path.is_file():
        problems.append(f"{where}: missing ({path})")
        return None
    with path.open(newline="") as f:
        lines = list(csv.reader(f))
    if not lines:
        problems.append(f"{where}: empty file, no header")
        return None
    header = lines[0]
    keep = [i for i, c in enumerate(header) if not c.endswith("_sketch")]
    if [header[i] for i in keep] != t.columns:
        problems.append(f"{where}: columns {[header[i] for i in keep]} (without *_sketch), expected {t.columns}")
        return None
    before = len(problems)
    golden = []
    for n, line in enumerate(lines[1:], start=2):
        if len(line) != len(header):
            problems.append(f"{where} line {n}: {len(line)} fields, the header has {len(header)}")
            continue
        golden.append((n, {header[i]: line[i] for i in keep}))

    def ident_of(r, formatted):
        return tuple(r[c] if formatted else fmt_value(r[c], t.null) for c in t.ident)

    by_ident = {}
    for n, r in golden:
        k = ident_of(r, True)
        if k in by_ident:
            problems.append(f"{where} line {n}: row {k} also on line {by_ident[k][0]}")
        else:
            by_ident[k] = (n, r)
    worst = {c: 0.0 for c in t.approx}  # the largest error of the rows judged by the main rule
    small = {c: 0 for c in t.approx}  # percentiles of groups accepted by the neighbour rule
    expected_idents = []
    for e in t.rows:
        k = ident_of(e, False)
        expected_idents.append(k)
        if k not in by_ident:
            problems.append(f"{where}: row {k} is missing")
            continue
        n, g = by_ident[k]
        for c in t.columns:
            if c in t.ident:
                continue
            kind = t.approx.get(c)
            if g[c] == t.null and (kind or e[c] is not None):
                problems.append(f"{where} line {n} {k}: {c} is NULL, expected {fmt_value(e[c], t.null) if not kind else 'a value'}")
                continue
            how = None
            if kind and kind[0] == "distinct":
                why, err, how = distinct_error(g[c], e[c])
            elif kind:
                why, err, how = quantile_error(float(g[c]), e[c], kind[1])
            elif isinstance(e[c], float):
                why = None if float(g[c]) == e[c] else f"{g[c]}, expected {fmt_float(e[c])}"
            else:
                want = fmt_value(e[c], t.null)
                why = None if g[c] == want else f"{g[c]!r}, expected {want!r}"
            if why:
                problems.append(f"{where} line {n} {k}: {c} {why}")
            elif how == "rank":
                worst[c] = max(worst[c], err)
            elif how == "neighbours":
                small[c] += 1
    expected_set = set(expected_idents)
    for k, (n, _) in by_ident.items():
        if k not in expected_set:
            problems.append(f"{where} line {n}: row {k} is not expected")
    order = [k for _, r in golden if (k := ident_of(r, True)) in expected_set]
    present = [k for k in expected_idents if k in by_ident]
    if order != present:
        i = next(i for i, (a, b) in enumerate(zip(order, present)) if a != b)
        problems.append(f"{where}: rows out of order from row {i + 1}: {order[i]}, expected {present[i]}")
    if len(problems) > before:
        return None
    notes = ", ".join(
        f"{c} worst {'rank' if t.approx[c][0] == 'quantile' else 'relative'} error {w:.4f}"
        + (f" + {small[c]} small groups between neighbouring order statistics" if small[c] else "")
        for c, w in worst.items())
    return f"{where}: {len(t.rows)} rows ok" + (f" ({notes})" if notes else "")


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("log", type=Path)
    p.add_argument("codes", type=Path, help="status_codes.csv")
    p.add_argument("golden", type=Path, nargs="?", help="directory of the golden CSVs to check")
    p.add_argument("--print", dest="print_dir", type=Path, metavar="DIR", help="write the exact CSVs to DIR")
    args = p.parse_intermixed_args()
    if args.golden is None and args.print_dir is None:
        p.error("give GOLDEN_DIR to check, or --print DIR, or both")
    tables = compute(args.log, args.codes)
    if args.print_dir is not None:
        print_tables(tables, args.print_dir)
    if args.golden is None:
        return 0
    problems, summaries = [], []
    for t in tables:
        s = check_table(t, args.golden, problems)
        if s:
            summaries.append(s)
    for s in summaries:
        print(s)
    if problems:
        print(f"{len(problems)} mismatches:", file=sys.stderr)
        for m in problems:
            print(m, file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
