#!/usr/bin/env python3
"""Generates an access log full of the cases the spec's rules decide, deterministic per seed:
time zones, lines out of order (some late), requests without path or protocol, empty and odd
paths, quotes and escapes, unknown statuses, `-` bytes, Combined fields, CR line ends,
invalid UTF-8, and invalid lines of many kinds.

    python3 tests/oracle/gen_log.py LINES SEED OUT.log
"""
import datetime as dt
import random
import sys

MONTHS = "Jan Feb Mar Apr May Jun Jul Aug Sep Oct Nov Dec".split()


def fmt_time(t: dt.datetime, offset_min: int) -> str:
    local = t + dt.timedelta(minutes=offset_min)
    sign = "+" if offset_min >= 0 else "-"
    off = abs(offset_min)
    return f"{local.day:02d}/{MONTHS[local.month - 1]}/{local.year}:{local:%H:%M:%S} {sign}{off // 60:02d}{off % 60:02d}"


def main():
    n, seed, out = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3]
    rnd = random.Random(seed)
    hosts = [f"10.{rnd.randrange(256)}.{rnd.randrange(256)}.{i}" for i in range(300)] + ["in24.inetnebr.com", "-", "host.with.ünïcode"]
    paths = ["/", "/index.html", "/favicon.ico", "/a,b", '/q"uote', "/über", "/x?y=1&z=2", "/%2e%2e/etc", "/images/{}.png", "/very/" + "long/" * 30]
    paths += [f"/p/{i}" for i in range(400)]
    statuses = [200] * 60 + [304] * 10 + [302] * 6 + [404] * 8 + [206, 301, 400, 401, 403, 500, 502, 503, 418, 999, 0]
    offsets = [0, 0, 0, -240, 330, 600, -480, 60]
    t = dt.datetime(2024, 2, 28, 21, 0, 0)  # crosses 29 Feb and midnight
    lines = []
    for i in range(n):
        t += dt.timedelta(seconds=rnd.expovariate(1 / 3.0))
        ev = t
        r = rnd.random()
        if r < 0.03:
            ev = t - dt.timedelta(seconds=rnd.uniform(60, 240))  # late, mostly
        elif r < 0.25:
            ev = t - dt.timedelta(seconds=rnd.uniform(0, 59))
        host = rnd.choice(hosts)
        ts = fmt_time(ev.replace(microsecond=0), rnd.choice(offsets))
        k = rnd.random()
        path = rnd.choice(paths[:10]) if rnd.random() < 0.2 else paths[10 + min(int(rnd.paretovariate(1.2)) - 1, 399)]
        if k < 0.02:
            request = "GET"
        elif k < 0.03:
            request = ""
        elif k < 0.04:
            request = "GET  /double-space"
        elif k < 0.05:
            request = f"GET {path}"
        elif k < 0.06:
            request = f"POST {path} HTTP/1.1 extra"
        else:
            request = f"{rnd.choice(['GET', 'GET', 'GET', 'HEAD', 'POST'])} {path} HTTP/1.{rnd.choice([0, 1])}"
        status = rnd.choice(statuses)
        nbytes = "-" if rnd.random() < 0.05 else str(int(rnd.expovariate(1 / 5000)))
        line = f'{host} - {rnd.choice(["-", "frank"])} [{ts}] "{request}" {status:03d} {nbytes}'
        if rnd.random() < 0.5:
            ua = rnd.choice(["Mozilla/5.0", 'curl/8 \\"quoted\\"', "", "a\\\\b"])
            line += f' "{rnd.choice(["-", "http://example.com/"])}" "{ua}"'
        e = rnd.random()
        if e < 0.02:
            line += "\r"
        elif e < 0.03:
            line += "  \t"
        raw = line.encode()
        b = rnd.random()
        if b < 0.003:
            raw = raw.replace(b"/p/", b"/p\xff\xfe/", 1)
        elif b < 0.006:
            raw = b""
        elif b < 0.009:
            raw = raw.replace(b"/", b"-", 3)  # breaks the date
        elif b < 0.011:
            raw = raw.replace(MONTHS[ev.month - 1].encode(), MONTHS[ev.month - 1].lower().encode(), 1)
        elif b < 0.013:
            raw = b"garbage " + raw[: rnd.randrange(len(raw) + 1)]
        elif b < 0.014:
            raw = raw.replace(b" - ", b"\t-\t", 1)
        elif b < 0.015:
            raw = f'h - - [31/Jun/2024:10:00:00 +0000] "GET / HTTP/1.1" 200 1'.encode()
        elif b < 0.016:
            raw = f'h - - [01/Mar/2024:24:00:00 +0000] "GET / HTTP/1.1" 200 1'.encode()
        lines.append(raw)
    with open(out, "wb") as f:
        f.write(b"\n".join(lines) + b"\n")


if __name__ == "__main__":
    main()
