#!/usr/bin/env python3
"""Render a preview of docs/grafana-dashboard.json from a live scrape, without Grafana.

Runs the stream stage on a paced, generated access log with metrics on, scrapes
/metrics every second (about 75 s: a rate interval of warm-up, then the 60 s shown),
evaluates every panel query of the dashboard on the scrapes with a small PromQL
evaluator (the subset the dashboard uses: selectors, rate/irate/increase, sum/max/min/
avg/count by, histogram_quantile, + - * /), draws the panels as inline SVG in a
Grafana-like dark grid, and takes a PNG of the page with headless Chromium:

    python3 docs/dashboard/preview.py                  # -> docs/dashboard.png

It also checks the dashboard: that it is JSON, that every query parses and that every
metric (and label matcher) it uses exists in the scrape; problems are printed and make
the exit status 1. To check against a running stage instead (no screenshot):

    python3 docs/dashboard/preview.py --check http://127.0.0.1:9464/metrics

Standard library only. Needs target/debug/stream-ingest (with --metrics-addr) and
chromium (`apt-get install -y chromium`). `--save-scrapes F` keeps the raw scrapes and
`--replay F` renders them again without running the stage.
"""

import argparse
import datetime
import html
import json
import math
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
DASHBOARD = REPO / "docs" / "grafana-dashboard.json"
PNG = REPO / "docs" / "dashboard.png"

# ---------------------------------------------------------------------------------------
# Durations and the exposition format
# ---------------------------------------------------------------------------------------

DURATION = re.compile(r"(\d+(?:\.\d+)?)(ms|s|m|h|d|w|y)")
UNIT_SECONDS = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800, "y": 31536000}


def parse_duration(text):
    """'15s', '1m30s', '1h' -> seconds."""
    text = text.strip()
    pos, total = 0, 0.0
    for m in DURATION.finditer(text):
        if m.start() != pos:
            break
        total += float(m.group(1)) * UNIT_SECONDS[m.group(2)]
        pos = m.end()
    if pos != len(text) or not text:
        raise ValueError(f"not a duration: {text!r}")
    return total


SAMPLE = re.compile(r"^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})?\s+(\S+)(?:\s+\S+)?\s*$")
LABEL = re.compile(r'([a-zA-Z_][a-zA-Z0-9_]*)\s*=\s*"((?:[^"\\]|\\.)*)"')


def unescape(value):
    return re.sub(r"\\(.)", lambda m: {"n": "\n"}.get(m.group(1), m.group(1)), value)


def parse_exposition(text, target_labels):
    """Prometheus / OpenMetrics text -> {frozenset(labels incl. __name__): value}.

    target_labels are added to every sample, as Prometheus adds instance and job."""
    samples = {}
    for line in text.splitlines():
        if not line or line.startswith("#"):
            continue
        m = SAMPLE.match(line)
        if not m:
            continue
        name, labels_text, value = m.groups()
        labels = dict(target_labels)
        for k, v in LABEL.findall(labels_text or ""):
            labels[k] = unescape(v)
        labels["__name__"] = name
        try:
            samples[frozenset(labels.items())] = float(value)
        except ValueError:
            continue
    return samples


# ---------------------------------------------------------------------------------------
# A small PromQL: the subset the dashboard uses
# ---------------------------------------------------------------------------------------

TOKEN = re.compile(
    r"\s*(?:(?P<num>\d+(?:\.\d+)?(?:[eE][+-]?\d+)?)(?![a-zA-Z_])"
    r"|(?P<range>\[[^\]]*\])"
    r'|(?P<str>"(?:[^"\\]|\\.)*")'
    r"|(?P<id>[a-zA-Z_:][a-zA-Z0-9_:]*)"
    r"|(?P<op>=~|!~|!=|==|[-+*/(){},=]))"
)
AGGREGATIONS = {"sum", "max", "min", "avg", "count"}
FUNCTIONS = {"rate", "irate", "increase", "histogram_quantile"}


class PromQLError(Exception):
    pass


def tokenize(text):
    tokens, pos = [], 0
    text = text.rstrip()
    while pos < len(text):
        m = TOKEN.match(text, pos)
        if not m or m.end() == pos:
            raise PromQLError(f"cannot read {text[pos:pos + 20]!r}")
        kind = m.lastgroup
        tokens.append((kind, m.group(kind)))
        pos = m.end()
    return tokens


class Parser:
    """expr := term (('+'|'-') term)* ; term := atom (('*'|'/') atom)*"""

    def __init__(self, text):
        self.text = text
        self.tokens = tokenize(text)
        self.i = 0

    def peek(self, value=None):
        if self.i >= len(self.tokens):
            return None
        tok = self.tokens[self.i]
        if value is not None and tok[1] != value:
            return None
        return tok

    def take(self, value=None, kind=None):
        tok = self.peek()
        if tok is None or (value is not None and tok[1] != value) or (kind and tok[0] != kind):
            raise PromQLError(f"expected {value or kind} at token {self.i} in {self.text!r}")
        self.i += 1
        return tok[1]

    def parse(self):
        node = self.expr()
        if self.peek() is not None:
            raise PromQLError(f"unexpected {self.peek()[1]!r} in {self.text!r}")
        return node

    def expr(self):
        node = self.term()
        while self.peek() and self.peek()[1] in ("+", "-"):
            node = ("bin", self.take(), node, self.term())
        return node

    def term(self):
        node = self.atom()
        while self.peek() and self.peek()[1] in ("*", "/"):
            node = ("bin", self.take(), node, self.atom())
        return node

    def grouping(self):
        kind = self.take(kind="id")
        self.take("(")
        labels = []
        while not self.peek(")"):
            labels.append(self.take(kind="id"))
            if not self.peek(")"):
                self.take(",")
        self.take(")")
        return kind, labels

    def atom(self):
        tok = self.peek()
        if tok is None:
            raise PromQLError(f"unexpected end of {self.text!r}")
        kind, value = tok
        if kind == "num":
            self.i += 1
            return ("num", float(value))
        if value == "(":
            self.take("(")
            node = self.expr()
            self.take(")")
            return node
        if kind != "id":
            raise PromQLError(f"unexpected {value!r} in {self.text!r}")
        self.i += 1
        if value in AGGREGATIONS:
            group = (None, [])
            if self.peek() and self.peek()[1] in ("by", "without"):
                group = self.grouping()
            self.take("(")
            inner = self.expr()
            self.take(")")
            if self.peek() and self.peek()[1] in ("by", "without"):
                group = self.grouping()
            return ("agg", value, group[0], group[1], inner)
        if value in FUNCTIONS:
            self.take("(")
            args = [self.expr()]
            while self.peek(","):
                self.take(",")
                args.append(self.expr())
            self.take(")")
            return ("func", value, args)
        matchers = []
        if self.peek("{"):
            self.take("{")
            while not self.peek("}"):
                label = self.take(kind="id")
                op = self.take()
                if op not in ("=", "!=", "=~", "!~"):
                    raise PromQLError(f"bad matcher operator {op!r}")
                matchers.append((label, op, unescape(self.take(kind="str")[1:-1])))
                if not self.peek("}"):
                    self.take(",")
            self.take("}")
        rng = None
        if self.peek() and self.peek()[0] == "range":
            rng = parse_duration(self.take(kind="range")[1:-1])
        return ("sel", value, matchers, rng)


def selectors(node):
    """Every ('sel', …) of a parsed expression."""
    if node[0] == "sel":
        yield node
    elif node[0] == "agg":
        yield from selectors(node[4])
    elif node[0] == "func":
        for arg in node[2]:
            yield from selectors(arg)
    elif node[0] == "bin":
        yield from selectors(node[2])
        yield from selectors(node[3])


def matches(labels, matchers):
    for label, op, want in matchers:
        have = labels.get(label, "")
        if op == "=" and have != want:
            return False
        if op == "!=" and have == want:
            return False
        if op == "=~" and not re.fullmatch(want, have):
            return False
        if op == "!~" and re.fullmatch(want, have):
            return False
    return True


def counter_increase(points):
    total = 0.0
    for (_, a), (_, b) in zip(points, points[1:]):
        total += b - a if b >= a else b  # a reset: the counter started again from 0
    return total


def histogram_quantile(q, buckets):
    """Prometheus' bucketQuantile: buckets are [(le, cumulative count)]."""
    buckets = sorted(buckets)
    if len(buckets) < 2 or not math.isinf(buckets[-1][0]):
        return math.nan
    if q < 0:
        return -math.inf
    if q > 1:
        return math.inf
    total = buckets[-1][1]
    if total == 0 or math.isnan(total):
        return math.nan
    rank = q * total
    idx = next(i for i, (_, count) in enumerate(buckets) if count >= rank)
    if idx == len(buckets) - 1:
        return buckets[-2][0]
    if idx == 0 and buckets[0][0] <= 0:
        return buckets[0][0]
    start, count_before = (0.0, 0.0) if idx == 0 else buckets[idx - 1]
    end, count = buckets[idx]
    if count == count_before:
        return end
    return start + (end - start) * (rank - count_before) / (count - count_before)


class Evaluator:
    """Evaluates a parsed expression at the time of one scrape."""

    def __init__(self, scrapes):
        self.scrapes = scrapes  # [(unix time, {frozenset(labels): value})]

    def eval(self, node, i):
        kind = node[0]
        if kind == "num":
            return node[1]
        if kind == "sel":
            if node[3] is not None:
                raise PromQLError("a range vector needs a function around it")
            return self.instant(node, i)
        if kind == "func":
            return self.func(node, i)
        if kind == "agg":
            return self.aggregate(node, i)
        if kind == "bin":
            return self.binary(node[1], self.eval(node[2], i), self.eval(node[3], i))
        raise PromQLError(f"cannot evaluate {kind}")

    def instant(self, node, i):
        _, name, matchers, _ = node
        out = {}
        for key, value in self.scrapes[i][1].items():
            labels = dict(key)
            if labels["__name__"] == name and matches(labels, matchers):
                out[key] = value
        return out

    def ranged(self, node, i):
        if node[0] != "sel" or node[3] is None:
            raise PromQLError("expected a range vector selector, e.g. m[5m]")
        _, name, matchers, rng = node
        now = self.scrapes[i][0]
        series = {}
        for t, samples in self.scrapes[: i + 1]:
            if t <= now - rng:
                continue
            for key, value in samples.items():
                labels = dict(key)
                if labels["__name__"] == name and matches(labels, matchers):
                    series.setdefault(key, []).append((t, value))
        return series

    def func(self, node, i):
        _, name, args = node
        if name in ("rate", "irate", "increase"):
            out = {}
            for key, points in self.ranged(args[0], i).items():
                if len(points) < 2:
                    continue
                if name == "irate":
                    points = points[-2:]
                delta = counter_increase(points)
                labels = frozenset(kv for kv in key if kv[0] != "__name__")
                out[labels] = delta if name == "increase" else delta / (points[-1][0] - points[0][0])
            return out
        if name == "histogram_quantile":
            q = self.eval(args[0], i)
            vec = self.eval(args[1], i)
            groups = {}
            for key, value in vec.items():
                labels = dict(key)
                if "le" not in labels:
                    continue
                le = float(labels.pop("le"))
                labels.pop("__name__", None)
                groups.setdefault(frozenset(labels.items()), []).append((le, value))
            return {k: histogram_quantile(q, b) for k, b in groups.items()}
        raise PromQLError(f"unsupported function {name}")

    def aggregate(self, node, i):
        _, op, mode, labels, inner = node
        vec = self.eval(inner, i)
        if not isinstance(vec, dict):
            raise PromQLError(f"{op} needs a vector")
        groups = {}
        for key, value in vec.items():
            d = dict(key)
            if mode == "by":
                g = {k: v for k, v in d.items() if k in labels}
            elif mode == "without":
                g = {k: v for k, v in d.items() if k not in labels and k != "__name__"}
            else:
                g = {}
            groups.setdefault(frozenset(g.items()), []).append(value)
        fn = {"sum": sum, "max": max, "min": min, "count": len,
              "avg": lambda v: sum(v) / len(v)}[op]
        return {k: fn(v) for k, v in groups.items()}

    @staticmethod
    def apply(op, a, b):
        if op == "+":
            return a + b
        if op == "-":
            return a - b
        if op == "*":
            return a * b
        if b == 0:
            return math.nan if a == 0 or math.isnan(a) else math.copysign(math.inf, a)
        return a / b

    def binary(self, op, lhs, rhs):
        if not isinstance(lhs, dict) and not isinstance(rhs, dict):
            return self.apply(op, lhs, rhs)
        strip = lambda key: frozenset(kv for kv in key if kv[0] != "__name__")
        if not isinstance(rhs, dict):
            return {strip(k): self.apply(op, v, rhs) for k, v in lhs.items()}
        if not isinstance(lhs, dict):
            return {strip(k): self.apply(op, lhs, v) for k, v in rhs.items()}
        right = {strip(k): v for k, v in rhs.items()}
        out = {}
        for k, v in lhs.items():
            k = strip(k)
            if k in right:
                out[k] = self.apply(op, v, right[k])
        return out


# ---------------------------------------------------------------------------------------
# The dashboard
# ---------------------------------------------------------------------------------------

def load_dashboard(path):
    with open(path, encoding="utf-8") as f:
        return json.load(f)  # raises on anything that is not JSON


def all_panels(dash):
    for panel in dash.get("panels", []):
        yield panel
        for inner in panel.get("panels", []) or []:
            yield inner


def substitute(expr, variables):
    def repl(m):
        name = m.group(1) or m.group(2)
        if name not in variables:
            raise PromQLError(f"unknown variable ${name} in {expr!r}")
        return variables[name]
    return re.sub(r"\$\{(\w+)\}|\$(\w+)", repl, expr)


def variable_queries(dash):
    """The selectors of the template variables' label_values(...) queries."""
    out = []
    for var in dash.get("templating", {}).get("list", []):
        query = var.get("query")
        if isinstance(query, dict):
            query = query.get("query", "")
        if var.get("type") == "query" and query:
            m = re.fullmatch(r"\s*label_values\((.*),\s*([a-zA-Z_]\w*)\s*\)\s*", query)
            if m:
                out.append((var["name"], m.group(1), m.group(2)))
            else:
                out.append((var["name"], None, query))
    return out


def check_dashboard(dash, samples, variables):
    """Problems of the dashboard against one scrape: a list of strings (empty: all good)."""
    problems = []
    series = [dict(k) for k in samples]
    by_name = {}
    for labels in series:
        by_name.setdefault(labels["__name__"], []).append(labels)
    added = {"instance", "job"}  # labels Prometheus adds to every target

    def check_selector(where, sel):
        _, name, matchers, _ = sel
        if name not in by_name:
            problems.append(f"{where}: metric {name} is not in the scrape")
            return
        for label, _, _ in matchers:
            if label not in added and not any(label in s for s in by_name[name]):
                problems.append(f"{where}: metric {name} has no label {label!r}")

    if dash.get("schemaVersion", 0) < 36:
        problems.append(f"schemaVersion {dash.get('schemaVersion')} < 36")
    if not any(i.get("name") == "DS_PROMETHEUS" for i in dash.get("__inputs", [])):
        problems.append("no DS_PROMETHEUS in __inputs")
    for name, selector, label in variable_queries(dash):
        if selector is None:
            problems.append(f"variable {name}: not a label_values() query: {label!r}")
            continue
        try:
            sel = Parser(substitute(selector, variables)).parse()
            check_selector(f"variable {name}", sel)
            if label not in added and not any(label in s for s in by_name.get(sel[1], [])):
                problems.append(f"variable {name}: metric {sel[1]} has no label {label!r}")
        except PromQLError as e:
            problems.append(f"variable {name}: {e}")
    for panel in all_panels(dash):
        if panel.get("type") == "row":
            continue
        title = panel.get("title", "?")
        if not panel.get("description"):
            problems.append(f"panel {title!r}: no description")
        for target in panel.get("targets", []):
            try:
                node = Parser(substitute(target["expr"], variables)).parse()
            except PromQLError as e:
                problems.append(f"panel {title!r}: {e}")
                continue
            for sel in selectors(node):
                check_selector(f"panel {title!r}", sel)
    return problems


def legend_name(fmt, labels, expr):
    if fmt:
        return re.sub(r"\{\{\s*(\w+)\s*\}\}", lambda m: labels.get(m.group(1), ""), fmt)
    inner = ", ".join(f'{k}="{v}"' for k, v in sorted(labels.items()) if k != "__name__")
    return "{" + inner + "}" if inner else expr


def evaluate_panel(panel, evaluator, indices, variables):
    """[(legend, [value or None per index])] for the panel's targets."""
    out = []
    for target in panel.get("targets", []):
        expr = substitute(target["expr"], variables)
        node = Parser(expr).parse()
        series = {}
        for pos, i in enumerate(indices):
            result = evaluator.eval(node, i)
            if not isinstance(result, dict):
                result = {frozenset(): result}
            for key, value in result.items():
                labels = dict(key)
                name = legend_name(target.get("legendFormat"), labels, expr)
                values = series.setdefault(name, [None] * len(indices))
                values[pos] = value if value is not None and math.isfinite(value) else None
        out.extend(sorted(series.items()))
    return out


# ---------------------------------------------------------------------------------------
# Formatting like Grafana's units
# ---------------------------------------------------------------------------------------

def num(v, decimals=None):
    if decimals is not None:
        return f"{v:.{decimals}f}"
    a = abs(v)
    if a == 0:
        return "0"
    d = 0 if a >= 100 else 1 if a >= 10 else 2 if a >= 1 else min(6, 2 - math.floor(math.log10(a)))
    text = f"{v:.{d}f}"
    return text.rstrip("0").rstrip(".") if "." in text else text


def scaled(v, steps, base, decimals=None):
    """Scale v by powers of base with the suffixes in steps."""
    a, k = abs(v), 0
    while a >= base and k < len(steps) - 1:
        a /= base
        k += 1
    return num(math.copysign(a, v), decimals) + steps[k]


def fmt(v, unit, decimals=None):
    if v is None or not math.isfinite(v):
        return "—"
    if unit == "percentunit":
        return num(v * 100, decimals) + "%"
    if unit == "s":
        a = abs(v)
        for limit, div, suffix in ((1e-3, 1e-6, " µs"), (1, 1e-3, " ms"), (60, 1, " s"),
                                   (3600, 60, " min"), (86400, 3600, " hour"),
                                   (604800, 86400, " day"), (31536000, 604800, " week")):
            if a < limit:
                return "0 s" if a == 0 else num(v / div, decimals) + suffix
        return num(v / 31536000, decimals) + " year"
    if unit == "bytes":
        return scaled(v, [" B", " KiB", " MiB", " GiB", " TiB"], 1024, decimals)
    if unit == "Bps":
        return scaled(v, [" B/s", " kB/s", " MB/s", " GB/s"], 1000, decimals)
    if unit == "ops":
        return scaled(v, [" ops/s", " K ops/s", " M ops/s"], 1000, decimals)
    if unit == "reqps":
        return scaled(v, [" req/s", " K req/s", " M req/s"], 1000, decimals)
    return scaled(v, ["", " K", " Mil", " Bil"], 1000, decimals)


# ---------------------------------------------------------------------------------------
# Rendering: a Grafana-like dark page of inline SVG charts
# ---------------------------------------------------------------------------------------

PALETTE = ["#73BF69", "#F2CC0C", "#8AB8FF", "#FF780A", "#F2495C", "#5794F2", "#B877D9",
           "#705DA0", "#37872D", "#FADE2A", "#447EBC", "#C15C17", "#890F02", "#0A437C"]
NAMED = {"green": "#73BF69", "red": "#F2495C", "yellow": "#FADE2A", "orange": "#FF9830",
         "blue": "#5794F2", "purple": "#B877D9", "text": "#ccccdc", "transparent": "none"}
FONT = "Inter, 'Helvetica Neue', 'Liberation Sans', Arial, 'DejaVu Sans', sans-serif"
PAGE_W, PAD, GAP, CELL = 1600, 16, 8, 30
HEADER_H = 128
E = html.escape


def color(name):
    return NAMED.get(name, name)


def threshold_color(steps, v):
    chosen = steps[0]["color"] if steps else "green"
    for step in steps:
        if step.get("value") is None or (v is not None and v >= step["value"]):
            chosen = step["color"]
    return color(chosen)


def nice_step(span, ticks=4):
    raw = span / ticks
    mag = 10 ** math.floor(math.log10(raw))
    for m in (1, 2, 2.5, 5, 10):
        if raw <= m * mag:
            return m * mag
    return 10 * mag


TIME_STEPS = [1, 2, 5, 10, 15, 30, 60, 120, 300, 600, 900, 1800, 3600, 7200, 10800, 21600,
              43200, 86400, 172800, 604800]


def axis_step(span, unit, ticks=4):
    """A tick step that reads well in the unit: whole minutes and hours for seconds, powers
    of 1024 for bytes, 1-2-2.5-5 otherwise."""
    raw = span / ticks
    if unit == "s" and raw >= 1:
        return next((s for s in TIME_STEPS if s >= raw), nice_step(span, ticks))
    if unit == "bytes" and raw >= 1024:
        k = int(math.log(raw, 1024))
        return nice_step(span / 1024 ** k, ticks) * 1024 ** k
    return nice_step(span, ticks)


def text_width(text, size=12):
    return len(text) * size * 0.56


def grid_rect(gp, top):
    col = (PAGE_W - 2 * PAD - 23 * GAP) / 24
    x = PAD + gp["x"] * (col + GAP)
    y = top + gp["y"] * (CELL + GAP)
    w = gp["w"] * col + (gp["w"] - 1) * GAP
    h = gp["h"] * CELL + (gp["h"] - 1) * GAP
    return x, y, w, h


def panel_header(panel):
    info = ""
    if panel.get("description"):
        info = ('<span class="info" title="' + E(panel["description"]) + '">i</span>')
    return f'<div class="ptitle">{E(panel.get("title", ""))}{info}</div>'


def legend_layout(items, width):
    """Rows of legend items that fit in width: [[(name, value, color, x)]]."""
    rows, row, x = [], [], 0
    for name, value, col in items:
        w = 18 + text_width(name, 12) + 8 + text_width(value, 12) + 18
        if row and x + w > width:
            rows.append(row)
            row, x = [], 0
        row.append((name, value, col, x))
        x += w
    if row:
        rows.append(row)
    return rows


def timeseries_svg(panel, series, times, w, h):
    defaults = panel.get("fieldConfig", {}).get("defaults", {})
    custom = defaults.get("custom", {})
    unit = defaults.get("unit", "short")
    decimals = defaults.get("decimals")
    steps = defaults.get("thresholds", {}).get("steps", [])
    thr_mode = custom.get("thresholdsStyle", {}).get("mode", "off")
    fill = custom.get("fillOpacity", 0) / 100
    lw = max(1.25, custom.get("lineWidth", 1))

    items = []
    for k, (name, values) in enumerate(series):
        last = next((v for v in reversed(values) if v is not None), None)
        items.append((name, fmt(last, unit, decimals), PALETTE[k % len(PALETTE)]))
    legend_rows = legend_layout(items, w - 16)
    legend_h = 18 * len(legend_rows) + 4
    chart_h = h - legend_h
    finite = [v for _, vals in series for v in vals if v is not None]

    if not finite:
        lo, hi = 0.0, 1.0
    else:
        lo, hi = min(finite), max(finite)
    if custom.get("axisSoftMin") is not None:
        lo = min(lo, custom["axisSoftMin"])
    if custom.get("axisSoftMax") is not None:
        hi = max(hi, custom["axisSoftMax"])
    if "min" in defaults:
        lo = defaults["min"]
    if "max" in defaults:
        hi = defaults["max"]
    if hi <= lo:
        hi = lo + (abs(lo) or 1)
    step = axis_step(hi - lo, unit)
    if decimals == 0:
        step = max(1, round(step))
    hi = math.ceil(hi / step - 1e-9) * step
    lo = math.floor(lo / step + 1e-9) * step
    ticks = []
    t = lo
    while t <= hi + step * 1e-6:
        ticks.append(t)
        t += step
    labels = [fmt(t, unit, decimals if decimals is not None else None) for t in ticks]
    axis_w = max(text_width(s, 11) for s in labels) + 10
    x0, x1 = axis_w, w - 10
    y0, y1 = chart_h - 22, 6  # y0: bottom of the plot
    t0, t1 = times[0], times[-1]

    def px(t):
        return x0 + (x1 - x0) * (t - t0) / ((t1 - t0) or 1)

    def py(v):
        return y0 - (y0 - y1) * (v - lo) / (hi - lo)

    parts = [f'<svg width="{w:.0f}" height="{h:.0f}" xmlns="http://www.w3.org/2000/svg">']
    # threshold areas and lines
    if thr_mode in ("area", "line+area", "line+dashed", "dashed", "line", "dashed+area"):
        bounds = [s.get("value") for s in steps] + [None]
        for k, s in enumerate(steps):
            a = lo if bounds[k] is None else max(lo, bounds[k])
            b = hi if bounds[k + 1] is None else min(hi, bounds[k + 1])
            c = color(s["color"])
            if "area" in thr_mode and b > a:
                parts.append(f'<rect x="{x0:.1f}" y="{py(b):.1f}" width="{x1 - x0:.1f}" '
                             f'height="{py(a) - py(b):.1f}" fill="{c}" fill-opacity="0.08"/>')
            if ("line" in thr_mode or "dashed" in thr_mode) and s.get("value") is not None \
                    and lo <= s["value"] <= hi:
                dash = ' stroke-dasharray="6 4"' if "dashed" in thr_mode or "area" in thr_mode else ""
                parts.append(f'<line x1="{x0:.1f}" x2="{x1:.1f}" y1="{py(s["value"]):.1f}" '
                             f'y2="{py(s["value"]):.1f}" stroke="{c}" stroke-width="1"{dash}/>')
    # grid and axes
    for t, label in zip(ticks, labels):
        y = py(t)
        parts.append(f'<line x1="{x0:.1f}" x2="{x1:.1f}" y1="{y:.1f}" y2="{y:.1f}" class="grid"/>')
        parts.append(f'<text x="{x0 - 6:.1f}" y="{y + 4:.1f}" text-anchor="end" class="axis">'
                     f'{E(label)}</text>')
    span = t1 - t0
    tstep = next((s for s in (5, 10, 15, 30, 60, 120, 300, 600, 900, 1800, 3600)
                  if span / s <= max(3, (x1 - x0) / 90)), 3600)
    tick = math.ceil(t0 / tstep) * tstep
    while tick <= t1:
        x = px(tick)
        label = time.strftime("%H:%M:%S", time.localtime(tick))
        parts.append(f'<line x1="{x:.1f}" x2="{x:.1f}" y1="{y1}" y2="{y0}" class="grid"/>')
        if x - text_width(label, 11) / 2 >= x0 - 4 and x + text_width(label, 11) / 2 <= w:
            parts.append(f'<text x="{x:.1f}" y="{y0 + 15:.1f}" text-anchor="middle" '
                         f'class="axis">{label}</text>')
        tick += tstep
    # series
    base = py(max(lo, min(0, hi)))
    for k, (name, values) in enumerate(series):
        c = PALETTE[k % len(PALETTE)]
        runs, run = [], []
        for t, v in zip(times, values):
            if v is None:
                if run:
                    runs.append(run)
                run = []
            else:
                run.append((px(t), py(v)))
        if run:
            runs.append(run)
        for run in runs:
            pts = " ".join(f"{x:.1f},{y:.1f}" for x, y in run)
            if fill > 0 and len(run) > 1:
                poly = f"{run[0][0]:.1f},{base:.1f} {pts} {run[-1][0]:.1f},{base:.1f}"
                parts.append(f'<polygon points="{poly}" fill="{c}" fill-opacity="{fill}"/>')
            if len(run) == 1:
                parts.append(f'<circle cx="{run[0][0]:.1f}" cy="{run[0][1]:.1f}" r="1.8" fill="{c}"/>')
            else:
                parts.append(f'<polyline points="{pts}" fill="none" stroke="{c}" '
                             f'stroke-width="{lw}" stroke-linejoin="round"/>')
    if not finite:
        parts.append(f'<text x="{(x0 + x1) / 2:.1f}" y="{(y0 + y1) / 2:.1f}" '
                     f'text-anchor="middle" class="nodata">No data</text>')
    # legend
    for r, row in enumerate(legend_rows):
        y = chart_h + 12 + 18 * r
        for name, value, c, x in row:
            x += 8
            parts.append(f'<rect x="{x:.1f}" y="{y - 5:.1f}" width="14" height="4" rx="1" fill="{c}"/>')
            parts.append(f'<text x="{x + 19:.1f}" y="{y:.1f}" class="legend">{E(name)}</text>')
            vx = x + 19 + text_width(name, 12) + 6
            parts.append(f'<text x="{vx:.1f}" y="{y:.1f}" class="lvalue">{E(value)}</text>')
    parts.append("</svg>")
    return "".join(parts)


def stat_html(panel, series, times, w, h):
    defaults = panel.get("fieldConfig", {}).get("defaults", {})
    options = panel.get("options", {})
    unit = defaults.get("unit", "short")
    steps = defaults.get("thresholds", {}).get("steps", [])
    values = series[0][1] if series else []
    value = next((v for v in reversed(values) if v is not None), None)
    text, col = None, None
    if value is None:
        text = defaults.get("noValue", "No data")
        col = threshold_color(steps, None)
    else:
        for mapping in defaults.get("mappings", []):
            if mapping.get("type") == "value":
                key = str(int(value)) if float(value).is_integer() else str(value)
                hit = mapping.get("options", {}).get(key)
                if hit:
                    text, col = hit.get("text"), color(hit["color"]) if hit.get("color") else None
        if text is None:
            text = fmt(value, unit, defaults.get("decimals"))
        if col is None:
            col = threshold_color(steps, value)
    background = options.get("colorMode") == "background"
    spark = ""
    finite = [v for v in values if v is not None]
    if options.get("graphMode") == "area" and len(finite) > 1:
        lo, hi = min(finite), max(finite)
        hi = hi if hi > lo else lo + (abs(lo) or 1)
        sh, sy = h * 0.42, h - 2
        pts = [(w * k / (len(values) - 1), sy - sh * (v - lo) / (hi - lo))
               for k, v in enumerate(values) if v is not None]
        line = " ".join(f"{x:.1f},{y:.1f}" for x, y in pts)
        poly = f"{pts[0][0]:.1f},{sy} {line} {pts[-1][0]:.1f},{sy}"
        stroke = "rgba(255,255,255,0.55)" if background else col
        spark = (f'<svg class="spark" width="{w:.0f}" height="{h:.0f}">'
                 f'<polygon points="{poly}" fill="{stroke}" fill-opacity="0.12"/>'
                 f'<polyline points="{line}" fill="none" stroke="{stroke}" stroke-width="1.5"/></svg>')
    size = max(18, min(h * 0.42, w / max(4, len(text)) * 1.45))
    fg = "#ffffff" if background else col
    style = f"background:linear-gradient(120deg, {col}dd, {col})" if background else ""
    return (f'<div class="stat" style="{style};width:{w:.0f}px;height:{h:.0f}px">{spark}'
            f'<div class="statvalue" style="font-size:{size:.0f}px;color:{fg}">{E(text)}</div></div>')


CSS = """
body { margin:0; background:#111217; color:#ccccdc; font-family:%(font)s; }
.top { position:absolute; left:%(pad)dpx; right:%(pad)dpx; top:0; height:%(hh)dpx; }
.crumb { position:absolute; top:14px; left:0; font-size:18px; color:#ccccdc; }
.crumb .dim { color:#8e8e99; }
.sub { position:absolute; top:44px; left:0; right:0; font-size:12.5px; color:#9fa0ad; line-height:17px; }
.sub b { color:#ccccdc; font-weight:500; }
.vars { position:absolute; top:90px; left:0; display:flex; gap:8px; }
.var { display:flex; font-size:12.5px; border:1px solid rgba(204,204,220,0.15); border-radius:2px; }
.var .k { background:#22252b; padding:5px 9px; color:#ccccdc; font-weight:500; }
.var .v { background:#111217; padding:5px 9px; color:#ccccdc; }
.range { position:absolute; top:90px; right:0; display:flex; gap:8px; }
.panel { position:absolute; background:#181b1f; border:1px solid rgba(204,204,220,0.10); border-radius:3px; overflow:hidden; }
.ptitle { height:30px; line-height:30px; padding:0 10px; font-size:13.5px; font-weight:500; color:#ccccdc; white-space:nowrap; overflow:hidden; }
.info { display:inline-block; width:13px; height:13px; line-height:13px; margin-left:7px; border-radius:50%%; border:1px solid #8e8e99; color:#8e8e99; font-size:9.5px; text-align:center; font-style:italic; font-family:Georgia, serif; vertical-align:1px; }
.row { position:absolute; font-size:15px; font-weight:500; color:#ccccdc; }
.row .chev { color:#8e8e99; margin-right:8px; font-size:11px; }
.body { position:absolute; left:0; right:0; bottom:0; }
.stat { position:relative; }
.stat .spark { position:absolute; left:0; top:0; }
.statvalue { position:absolute; left:0; right:0; top:0; bottom:0; display:flex; align-items:center; justify-content:center; font-weight:500; letter-spacing:0.5px; }
svg text { font-family:%(font)s; }
.grid { stroke:rgba(204,204,220,0.09); stroke-width:1; }
.axis { fill:#9fa0ad; font-size:11px; }
.legend { fill:#ccccdc; font-size:12px; }
.lvalue { fill:#8e8e99; font-size:12px; }
.nodata { fill:#8e8e99; font-size:13px; }
"""


def render_page(dash, scrapes, indices, variables, meta):
    evaluator = Evaluator(scrapes)
    times = [scrapes[i][0] for i in indices]
    body = []
    bottom = 0
    for panel in all_panels(dash):
        gp = panel.get("gridPos", {"x": 0, "y": 0, "w": 12, "h": 8})
        x, y, w, h = grid_rect(gp, HEADER_H)
        bottom = max(bottom, y + h)
        if panel.get("type") == "row":
            body.append(f'<div class="row" style="left:{x + 2:.0f}px;top:{y + 6:.0f}px">'
                        f'<span class="chev">&#9660;</span>{E(panel.get("title", ""))}</div>')
            continue
        series = evaluate_panel(panel, evaluator, indices, variables)
        inner_w, inner_h = w - 2, h - 32
        if panel.get("type") == "stat":
            # Grafana's background mode colours the whole panel, title included
            content = stat_html(panel, series, times, inner_w, h - 2)
            body.append(f'<div class="panel" style="left:{x:.0f}px;top:{y:.0f}px;width:{w:.0f}px;'
                        f'height:{h:.0f}px"><div class="body" style="top:0">{content}</div>'
                        f'<div style="position:absolute;top:0;left:0;right:0">{panel_header(panel)}</div></div>')
        else:
            content = timeseries_svg(panel, series, times, inner_w, inner_h)
            body.append(f'<div class="panel" style="left:{x:.0f}px;top:{y:.0f}px;width:{w:.0f}px;'
                        f'height:{h:.0f}px">{panel_header(panel)}'
                        f'<div class="body" style="top:32px">{content}</div></div>')
    height = int(bottom + PAD)
    t0, t1 = times[0], times[-1]
    span = meta["span"]
    clock = lambda t: time.strftime("%H:%M:%S", time.localtime(t))
    var_boxes = "".join(f'<div class="var"><span class="k">{E(k)}</span><span class="v">{E(v)}</span></div>'
                        for k, v in meta["vars"])
    range_boxes = (f'<div class="var"><span class="k">&#9719; Last {E(span)}</span>'
                   f'<span class="v">{clock(t0)} – {clock(t1)} {time.strftime("%Z")}</span></div>'
                   f'<div class="var"><span class="k">$__rate_interval</span>'
                   f'<span class="v">{E(meta["rate_interval"])}</span></div>')
    page = f"""<!DOCTYPE html>
<html><head><meta charset="utf-8"><title>{E(dash.get('title', ''))} — dashboard preview</title>
<style>{CSS % {"font": FONT, "pad": PAD, "hh": HEADER_H}}</style></head>
<body style="width:{PAGE_W}px;height:{height}px;position:relative">
<div class="top">
  <div class="crumb"><span class="dim">Dashboards › </span>{E(dash.get('title', ''))}</div>
  <div class="sub">{meta["subtitle"]}</div>
  <div class="vars">{var_boxes}</div>
  <div class="range">{range_boxes}</div>
</div>
{''.join(body)}
</body></html>
"""
    return page, height


# ---------------------------------------------------------------------------------------
# Running the stage and scraping it
# ---------------------------------------------------------------------------------------

def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def make_pipeline(src, workdir, pace, eps, start):
    """A copy of the pipeline file whose source is the paced generator; relative `path:`
    values (dimension tables) made absolute, since the copy lives elsewhere."""
    text = Path(src).read_text(encoding="utf-8")
    source = (f'source: {{ kind: generate, rate: {pace}, events_per_second: {eps}, '
              f'start: "{start}" }}\n')
    text, n = re.subn(r"^source:[^\n]*\n(?:[ \t]+[^\n]*\n)*", source, text, count=1, flags=re.M)
    if n != 1:
        text = source + text
    base = Path(src).resolve().parent

    def absolute(m):
        value = m.group(2)
        if value.startswith(("/", "s3://", "file://", '"', "'")):
            return m.group(0)
        return m.group(1) + str(base / value)

    text = re.sub(r"^(\s+(?:-\s+)?path:\s*)([^\s#,}]+)", absolute, text, flags=re.M)
    out = Path(workdir) / Path(src).name
    out.write_text(text, encoding="utf-8")
    return out


def scrape(url, timeout=5):
    with urllib.request.urlopen(url, timeout=timeout) as r:
        return r.read().decode("utf-8", "replace")


def run_and_scrape(args, workdir):
    binary = Path(args.bin)
    if not binary.exists():
        sys.exit(f"preview: {binary} does not exist (build stream-ingest first)")
    helptext = subprocess.run([str(binary), "run", "--help"], capture_output=True,
                              text=True).stdout
    if "--metrics-addr" not in helptext:
        sys.exit(f"preview: {binary} run has no --metrics-addr yet")
    start = (datetime.datetime.now(datetime.timezone.utc)
             - datetime.timedelta(seconds=parse_duration(args.start_ago)))
    start = start.replace(microsecond=0).strftime("%Y-%m-%dT%H:%M:%SZ")
    pipeline = make_pipeline(args.pipeline, workdir, args.pace, args.events_per_second, start)
    port = args.port or free_port()
    addr = f"127.0.0.1:{port}"
    cmd = [str(binary), "run", "-c", str(pipeline), "--lake", str(Path(workdir) / "lake"),
           "--metrics-addr", addr, "--checkpoint-interval", args.checkpoint_interval]
    print("preview: running", " ".join(cmd), file=sys.stderr)
    log = open(Path(workdir) / "stage.log", "w")
    proc = subprocess.Popen(cmd, cwd=workdir, stdout=log, stderr=subprocess.STDOUT)
    url = f"http://{addr}/metrics"
    scrapes = []
    try:
        deadline = time.time() + 30
        while True:
            if proc.poll() is not None:
                sys.exit(f"preview: the stage exited ({proc.returncode}); see {log.name}:\n"
                         + Path(log.name).read_text()[-2000:])
            try:
                scrape(url, timeout=1)
                break
            except OSError:
                if time.time() > deadline:
                    sys.exit(f"preview: {url} did not answer within 30 s")
                time.sleep(0.2)
        total = parse_duration(args.rate_interval) + args.duration
        count = int(total / args.scrape_interval) + 1
        first = time.time()
        for k in range(count):
            due = first + k * args.scrape_interval
            time.sleep(max(0.0, due - time.time()))
            t = time.time()
            scrapes.append({"t": t, "text": scrape(url)})
            if k % 10 == 0:
                print(f"preview: scrape {k + 1}/{count}", file=sys.stderr)
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGINT)  # stops after a last checkpoint
            try:
                proc.wait(30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        log.close()
    meta = {"addr": addr, "pipeline": str(Path(args.pipeline)), "pace": args.pace,
            "events_per_second": args.events_per_second, "start": start,
            "checkpoint_interval": args.checkpoint_interval}
    return scrapes, meta


def find_chromium():
    for name in ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable"):
        path = shutil.which(name)
        if path:
            return path
    sys.exit("preview: no chromium (apt-get install -y chromium)")


def screenshot(html_path, png_path, height):
    profile = tempfile.mkdtemp(prefix="preview-chromium-")
    try:
        cmd = [find_chromium(), "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
               "--no-first-run", "--disable-background-networking", "--disable-component-update",
               "--disable-sync", "--hide-scrollbars", f"--user-data-dir={profile}",
               f"--window-size={PAGE_W},{height}", f"--screenshot={png_path}",
               Path(html_path).resolve().as_uri()]
        r = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
        if r.returncode != 0 or not Path(png_path).exists():
            sys.exit(f"preview: chromium failed ({r.returncode}):\n{r.stderr[-2000:]}")
    finally:
        shutil.rmtree(profile, ignore_errors=True)


# ---------------------------------------------------------------------------------------

def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--bin", default=str(REPO / "target" / "debug" / "stream-ingest"))
    p.add_argument("--pipeline", default=str(REPO / "pipelines" / "access-log.yaml"),
                   help="pipeline file whose source is replaced by the paced generator")
    p.add_argument("--dashboard", default=str(DASHBOARD))
    p.add_argument("--png", default=str(PNG))
    p.add_argument("--html", help="also keep the page here")
    p.add_argument("--duration", type=float, default=60, help="seconds shown (default 60)")
    p.add_argument("--scrape-interval", type=float, default=1.0)
    p.add_argument("--rate-interval", default="15s",
                   help="what $__rate_interval stands for (default 15s); scraped before the "
                        "shown range too, so the first points have a full window")
    p.add_argument("--checkpoint-interval", default="10s",
                   help="checkpoint interval of the run (default 10s, the default of "
                        "checkpoint.interval that the age thresholds assume)")
    p.add_argument("--pace", default="1m", help="event time per second of wall time (1m)")
    p.add_argument("--events-per-second", type=float, default=50)
    p.add_argument("--start-ago", default="80m",
                   help="event time of the first line, before now (80m: the stage is seen "
                        "catching up on the last hour and a bit)")
    p.add_argument("--port", type=int, help="metrics port (default: a free one)")
    p.add_argument("--save-scrapes", help="keep the raw scrapes (JSON) here")
    p.add_argument("--replay", help="render these saved scrapes instead of running the stage")
    p.add_argument("--check", metavar="URL_OR_FILE",
                   help="only check the dashboard's queries against this scrape (a /metrics "
                        "URL or a file) and exit")
    p.add_argument("--no-screenshot", action="store_true")
    args = p.parse_args()

    dash = load_dashboard(args.dashboard)

    if args.check:
        text = scrape(args.check) if args.check.startswith("http") else Path(args.check).read_text()
        instance = args.check.split("/")[2] if args.check.startswith("http") else "preview"
        samples = parse_exposition(text, {"instance": instance, "job": "stream-ingest"})
        variables = {"instance": instance, "table": ".*", "__rate_interval": "1m",
                     "DS_PROMETHEUS": "prometheus"}
        problems = check_dashboard(dash, samples, variables)
        for problem in problems:
            print("problem:", problem)
        n = sum(len(pn.get("targets", [])) for pn in all_panels(dash))
        print(f"{args.dashboard}: {n} queries checked against {len(samples)} series: "
              f"{len(problems)} problems")
        sys.exit(1 if problems else 0)

    workdir = tempfile.mkdtemp(prefix="dashboard-preview-")
    try:
        if args.replay:
            saved = json.loads(Path(args.replay).read_text())
            raw, meta = saved["scrapes"], saved["meta"]
        else:
            raw, meta = run_and_scrape(args, workdir)
            if args.save_scrapes:
                Path(args.save_scrapes).write_text(json.dumps({"meta": meta, "scrapes": raw}))
        target = {"instance": meta["addr"], "job": "stream-ingest"}
        scrapes = [(s["t"], parse_exposition(s["text"], target)) for s in raw]
        variables = {"instance": meta["addr"], "table": ".*",
                     "__rate_interval": args.rate_interval, "DS_PROMETHEUS": "prometheus"}
        problems = check_dashboard(dash, scrapes[-1][1], variables)
        for problem in problems:
            print("preview: problem:", problem, file=sys.stderr)
        shown_from = scrapes[-1][0] - args.duration - 1e-6
        indices = [i for i, (t, _) in enumerate(scrapes) if t >= shown_from]
        meta["subtitle"] = (
            "<b>Preview, not Grafana:</b> rendered by docs/dashboard/preview.py from a live "
            f"scrape of <b>stream-ingest run</b> (/metrics every {args.scrape_interval:g} s) "
            "with the queries, units and thresholds of docs/grafana-dashboard.json, evaluated "
            "the same way (rates from counter deltas, quantiles from histogram buckets).<br>"
            f"Source: {E(Path(meta['pipeline']).name)} on the built-in generator, "
            f"{meta['events_per_second']:g} events/s of event time paced at {E(meta['pace'])} "
            f"of event time per second, from {E(meta['start'])} (the stage catches up to the "
            f"wall clock); checkpoints every {E(meta['checkpoint_interval'])}.")
        meta["vars"] = [("Data source", "Prometheus"), ("Instance", meta["addr"]),
                        ("Table", "All")]
        meta["rate_interval"] = args.rate_interval
        meta["span"] = ("1 minute" if args.duration == 60 else
                        fmt(args.duration, "s").replace(" s", " seconds").replace(" min", " minutes"))
        page, height = render_page(dash, scrapes, indices, variables, meta)
        html_path = Path(args.html) if args.html else Path(workdir) / "dashboard.html"
        html_path.write_text(page, encoding="utf-8")
        if not args.no_screenshot:
            screenshot(html_path, args.png, height)
            print(f"preview: wrote {args.png} ({PAGE_W}x{height})", file=sys.stderr)
        n = sum(len(pn.get("targets", [])) for pn in all_panels(dash))
        print(f"preview: {n} queries checked against the live scrape: {len(problems)} problems",
              file=sys.stderr)
        sys.exit(1 if problems else 0)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    main()
