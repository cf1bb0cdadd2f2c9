"""The spec's parse and lateness rules, shared by the oracles (`reference.py`, `insights.py`).

Written from `access-log-pipeline.md` alone, never from the Rust code:

- a line is valid exactly when it matches the spec's regular expression (Python `re`, with
  RE2's ASCII classes spelled out) and its date and time exist;
- the watermark is the largest `ts` seen so far minus the bound; an event whose tumbling
  window ends at or before the watermark is late (Flink's rule, no allowed lateness), and
  is replayed here event by event, in file order.
"""
import csv
import datetime as dt
import re
from pathlib import Path
from typing import NamedTuple, Optional

SPEC = r'^(\S+) \S+ \S+ \[(\d{2}/(?:Jan|Feb|Mar|Apr|May|Jun|Jul|Aug|Sep|Oct|Nov|Dec)/\d{4}:\d{2}:\d{2}:\d{2}) ([+-])(\d{2})(\d{2})\] "(.*)" (\d{3}) (\d+|-)(?: "(?:[^"\\]|\\.)*" "(?:[^"\\]|\\.)*")?\s*$'
# The same expression with the Combined format's two fields captured (groups 9 and 10):
# capturing changes no match, and groups 1 to 8 keep their numbers.
_COMBINED = r'(?: "(?:[^"\\]|\\.)*" "(?:[^"\\]|\\.)*")?'
_COMBINED_CAPTURED = r'(?: "((?:[^"\\]|\\.)*)" "((?:[^"\\]|\\.)*)")?'
assert SPEC.count(_COMBINED) == 1
# RE2's ASCII classes: \s is [\t\n\f\r ] (no \v), \d is [0-9].
PATTERN = re.compile(
    SPEC.replace(_COMBINED, _COMBINED_CAPTURED)
    .replace(r"\S", r"[^\t\n\f\r ]")
    .replace(r"\s", r"[\t\n\f\r ]")
    .replace(r"\d", "[0-9]"),
    re.DOTALL,
)
BOUND_US = 60_000_000
WINDOW_US = 60_000_000
MONTHS = {m: i + 1 for i, m in enumerate("Jan Feb Mar Apr May Jun Jul Aug Sep Oct Nov Dec".split())}
EPOCH = dt.datetime(1970, 1, 1)


class Access(NamedTuple):
    """The fields of a valid line, as the spec names them."""

    host: str
    ts: int  # µs since the epoch, UTC
    request: str
    method: str
    path: Optional[str]
    protocol: Optional[str]
    status: int
    bytes: int
    referer: Optional[str]
    user_agent: Optional[str]


def parse_access(line: str) -> Optional[Access]:
    """The fields of a line, or None when the line is invalid."""
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
    protocol = tokens[2] if len(tokens) > 2 else None
    status = int(m.group(7))
    nbytes = 0 if m.group(8) == "-" else int(m.group(8))
    # The quoted fields as written (no unescaping), or both None for Common Log Format.
    return Access(m.group(1), ts, request, tokens[0], path, protocol, status, nbytes, m.group(9), m.group(10))


def lines_of(log: Path):
    """The lines of a log: split at `\\n` only, invalid UTF-8 replaced by U+FFFD."""
    data = log.read_bytes()
    lines = data.split(b"\n")
    if lines and lines[-1] == b"":
        lines.pop()
    for raw in lines:
        yield raw.decode("utf-8", errors="replace")


def on_time(log: Path, bound_us: int = BOUND_US, window_us: int = WINDOW_US):
    """The valid events of a log that are not late for a tumbling window of `window_us`,
    in file order, replaying the watermark event by event."""
    max_ts = None
    for line in lines_of(log):
        ev = parse_access(line)
        if ev is None:
            continue
        ts = ev.ts
        watermark = None if max_ts is None else max_ts - bound_us
        end = ts - ts % window_us + window_us
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
