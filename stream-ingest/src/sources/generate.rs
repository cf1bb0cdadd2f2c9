//! The built-in access-log generator (`source: { kind: generate }` and `stream-ingest gen`).
//!
//! Benchmarks, demos and tests need logs that look like a real site's, in any amount, the
//! same for the same settings on every machine. So this module has its own pseudo-random
//! generator (xoshiro256**, seeded by SplitMix64) instead of a crate whose sequence may change
//! between versions, and writes bytes directly (no `format!` per line): it produces several
//! million lines per second, faster than the stream stage reads them.
//!
//! What a line looks like, by design:
//!
//! - hosts and paths are Zipf-distributed over tens of thousands of each (a few are very
//!   hot, most are rare); each host has its own time-zone offset, most of them `+0000`;
//! - statuses: mostly 200, some 304/302/404, a few other 4xx/5xx; error and 304 responses
//!   often log `-` for bytes;
//! - now and then a request without protocol (`GET /x`), without path (`GET`), or `-`;
//! - event time advances by exponential gaps (`events_per_second` on average); about 3 % of
//!   lines are 1–10 s behind, and 0.02 % minutes behind (late for one-minute windows with a
//!   one-minute bound);
//! - about 0.1 % of lines are invalid, of six kinds ([`INVALID_KINDS`]).

use std::io::{self, Write};
use std::time::{Duration, Instant};

use shared::config::GenerateConfig;

use super::{Chunk, ReaderOptions};

/// The kinds of invalid lines, in the order [`Generator::invalid_counts`] reports them.
pub const INVALID_KINDS: [&str; 6] = [
    "empty line",
    "truncated in the timestamp",
    "lowercase month",
    "hour 25",
    "binary (a TLS handshake on the HTTP port)",
    "no bytes field",
];

/// Share of invalid lines.
const INVALID_SHARE: f64 = 0.001;

const MONTHS: [&[u8; 3]; 12] = [
    b"Jan", b"Feb", b"Mar", b"Apr", b"May", b"Jun", b"Jul", b"Aug", b"Sep", b"Oct", b"Nov", b"Dec",
];

/// (status, cumulative weight in per mille).
const STATUSES: [(u16, u32); 13] = [
    (200, 780),
    (304, 860),
    (302, 910),
    (404, 955),
    (301, 965),
    (206, 973),
    (403, 978),
    (400, 983),
    (401, 987),
    (500, 994),
    (502, 997),
    (503, 999),
    (499, 1000),
];

/// Time-zone offsets of hosts, in minutes (most servers log in UTC).
const OFFSETS: [i32; 10] = [0, 0, 0, 0, 0, 60, -300, -480, 330, 540];

const METHODS: [(&str, u32); 5] = [
    ("GET", 900),
    ("POST", 960),
    ("HEAD", 990),
    ("PUT", 996),
    ("DELETE", 1000),
];

const AGENTS: [&str; 8] = [
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0 Safari/537.36",
    "Mozilla/5.0 (Macintosh; Intel Mac OS X 14_5) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.5 Safari/605.1.15",
    "Mozilla/5.0 (X11; Linux x86_64; rv:133.0) Gecko/20100101 Firefox/133.0",
    "Mozilla/5.0 (iPhone; CPU iPhone OS 17_5 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Mobile/15E148",
    "Mozilla/5.0 (compatible; Googlebot/2.1; +http://www.google.com/bot.html)",
    "curl/8.5.0",
    "python-requests/2.32.3",
    "-",
];

const REFERERS: [&str; 5] = [
    "-",
    "-",
    "https://www.google.com/",
    "https://example.com/",
    "https://news.ycombinator.com/",
];

/// xoshiro256**: small, fast, and its sequence is fixed by its definition.
#[derive(Debug, Clone)]
struct Rng([u64; 4]);

impl Rng {
    fn new(seed: u64) -> Self {
        let mut x = seed;
        let mut next = || {
            x = x.wrapping_add(0x9e37_79b9_7f4a_7c15);
            let mut z = x;
            z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
            z ^ (z >> 31)
        };
        Rng([next(), next(), next(), next()])
    }

    #[inline]
    fn next_u64(&mut self) -> u64 {
        let s = &mut self.0;
        let result = s[1].wrapping_mul(5).rotate_left(7).wrapping_mul(9);
        let t = s[1] << 17;
        s[2] ^= s[0];
        s[3] ^= s[1];
        s[1] ^= s[2];
        s[0] ^= s[3];
        s[2] ^= t;
        s[3] = s[3].rotate_left(45);
        result
    }

    /// Uniform in [0, 1).
    #[inline]
    fn unit(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 * (1.0 / (1u64 << 53) as f64)
    }

    /// Uniform in [0, n).
    #[inline]
    fn below(&mut self, n: u64) -> u64 {
        ((u128::from(self.next_u64()) * u128::from(n)) >> 64) as u64
    }

    /// Per-mille draw against a cumulative table.
    #[inline]
    fn pick<T: Copy>(&mut self, table: &[(T, u32)]) -> T {
        let r = self.below(1000) as u32;
        table
            .iter()
            .find(|(_, c)| r < *c)
            .map_or(table[table.len() - 1].0, |(v, _)| *v)
    }
}

/// Zipf(s) over `n` ranks, sampled by binary search in the cumulative weights.
#[derive(Debug)]
struct Zipf {
    cdf: Vec<f64>,
}

impl Zipf {
    fn new(n: u32, s: f64) -> Self {
        let mut total = 0.0;
        let cdf = (1..=n.max(1))
            .map(|k| {
                total += 1.0 / f64::from(k).powf(s);
                total
            })
            .collect();
        Zipf { cdf }
    }

    #[inline]
    fn sample(&self, rng: &mut Rng) -> usize {
        let u = rng.unit() * self.cdf[self.cdf.len() - 1];
        self.cdf
            .partition_point(|&c| c <= u)
            .min(self.cdf.len() - 1)
    }
}

/// The random fields of one line, drawn before any byte is written.
struct LineDraw {
    /// Event time, UTC seconds.
    ts: i64,
    host: usize,
    path_rank: usize,
    status: u16,
    method: &'static str,
    /// Which request form (see [`Generator::write_request`]).
    shape: u64,
    /// The kind of invalid line (index in [`INVALID_KINDS`]), if it is one.
    invalid: Option<usize>,
    /// Combined log format (referer and agent), not common.
    combined: bool,
    agent: &'static str,
    referer: &'static str,
    size_jitter: u32,
    protocol: &'static str,
}

/// The whole text of the invalid kinds that are not a damaged access line (empty, binary).
fn whole_invalid_line(kind: usize) -> Option<&'static [u8]> {
    match kind {
        0 => Some(b"\n"),
        4 => Some(b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03\xd7\x1a\n"),
        _ => None,
    }
}

/// A deterministic stream of access-log lines.
pub struct Generator {
    config: GenerateConfig,
    rng: Rng,
    hosts: Vec<Vec<u8>>,
    host_offsets: Vec<i32>,
    host_zipf: Zipf,
    paths: Vec<Vec<u8>>,
    path_sizes: Vec<u32>,
    path_zipf: Zipf,
    /// Lines produced so far.
    produced: u64,
    /// The in-order clock (µs since the epoch); lines are at or a little before it.
    clock_us: f64,
    start_us: i64,
    invalid: [u64; INVALID_KINDS.len()],
}

impl Generator {
    pub fn new(config: &GenerateConfig) -> Self {
        // Host names and paths come from their own sequence, so that they do not depend on
        // how many lines are asked for.
        let mut names = Rng::new(config.seed ^ 0x005e_ed0f_ba5e);
        let hosts: Vec<Vec<u8>> = (0..config.hosts)
            .map(|i| {
                if i % 10 == 7 {
                    format!("host-{}.isp{}.example.net", i, names.below(40)).into_bytes()
                } else {
                    let [a, b, c, d] = (names.next_u64() as u32).to_be_bytes();
                    format!("{}.{}.{}.{}", a.max(1), b, c, d.max(1)).into_bytes()
                }
            })
            .collect();
        let host_offsets = (0..config.hosts)
            .map(|_| OFFSETS[names.below(OFFSETS.len() as u64) as usize])
            .collect();
        const TOP: [&str; 8] = [
            "/",
            "/index.html",
            "/favicon.ico",
            "/robots.txt",
            "/css/site.css",
            "/js/app.js",
            "/login",
            "/search?q=shoes",
        ];
        let paths: Vec<Vec<u8>> = (0..config.paths)
            .map(|i| match (i as usize).checked_sub(TOP.len()) {
                None => TOP[i as usize].as_bytes().to_vec(),
                Some(j) => match j % 5 {
                    0 => format!("/blog/{}/post-{}.html", 2015 + j % 11, j),
                    1 => format!("/images/{}/{}.png", j % 97, j),
                    2 => format!("/api/v1/items/{j}"),
                    3 => format!("/products/{}?ref=home&page={}", j, j % 7),
                    _ => format!("/docs/{}/section-{}", j % 31, j),
                }
                .into_bytes(),
            })
            .collect();
        let path_sizes = (0..config.paths)
            .map(|_| 200 + names.below(60_000) as u32)
            .collect();
        let start_us = config.start.timestamp_micros();
        Generator {
            rng: Rng::new(config.seed),
            host_zipf: Zipf::new(config.hosts, 1.05),
            path_zipf: Zipf::new(config.paths, 1.15),
            hosts,
            host_offsets,
            paths,
            path_sizes,
            produced: 0,
            clock_us: start_us as f64,
            start_us,
            invalid: [0; INVALID_KINDS.len()],
            config: config.clone(),
        }
    }

    /// Lines produced so far.
    pub fn produced(&self) -> u64 {
        self.produced
    }

    /// Invalid lines produced so far, per kind of [`INVALID_KINDS`].
    pub fn invalid_counts(&self) -> [u64; INVALID_KINDS.len()] {
        self.invalid
    }

    /// Whether the configured number of lines has been produced.
    pub fn is_done(&self) -> bool {
        self.config.lines.is_some_and(|n| self.produced >= n)
    }

    /// Event time of the in-order clock, µs since the start.
    pub fn elapsed_event_us(&self) -> i64 {
        self.clock_us as i64 - self.start_us
    }

    /// Appends the next line (with its `\n`); false when done.
    pub fn next_line(&mut self, out: &mut Vec<u8>) -> bool {
        if self.is_done() {
            return false;
        }
        self.produced += 1;
        let line = self.draw();
        if let Some(kind) = line.invalid {
            self.invalid[kind] += 1;
            if let Some(whole) = whole_invalid_line(kind) {
                out.extend_from_slice(whole);
                return true;
            }
        }
        if self.write_host_and_time(out, &line) {
            return true;
        }
        out.extend_from_slice(b"] \"");
        self.write_request(out, &line);
        out.extend_from_slice(b"\" ");
        push_u64(out, u64::from(line.status));
        if line.invalid == Some(5) {
            out.push(b'\n');
            return true;
        }
        out.push(b' ');
        self.write_bytes(out, &line);
        if line.combined {
            out.extend_from_slice(b" \"");
            out.extend_from_slice(line.referer.as_bytes());
            out.extend_from_slice(b"\" \"");
            out.extend_from_slice(line.agent.as_bytes());
            out.push(b'"');
        }
        out.push(b'\n');
        true
    }

    /// Moves the clock and draws every random field of the next line, in a fixed order (the
    /// order is the output: changing it changes every line after).
    // Flat on purpose: one draw per field, in the order the sequence fixes.
    fn draw(&mut self) -> LineDraw {
        let rng = &mut self.rng;
        // Exponential gaps: a Poisson process of `events_per_second`.
        let gap_s = -(1.0 - rng.unit()).ln() / self.config.events_per_second;
        self.clock_us += gap_s * 1e6;
        let mut ts = (self.clock_us as i64).div_euclid(1_000_000);
        let disorder = rng.below(10_000);
        if disorder < 2 {
            ts -= 90 + rng.below(210) as i64; // minutes behind: late
        } else if disorder < 300 {
            ts -= 1 + rng.below(10) as i64;
        }
        let host = self.host_zipf.sample(rng);
        let path_rank = self.path_zipf.sample(rng);
        let status = rng.pick(&STATUSES);
        let method = rng.pick(&METHODS);
        let shape = rng.below(1000);
        let invalid = if rng.unit() < INVALID_SHARE {
            Some(rng.below(INVALID_KINDS.len() as u64) as usize)
        } else {
            None
        };
        let combined = rng.below(10) != 0;
        let agent = AGENTS[rng.below(AGENTS.len() as u64) as usize];
        let referer = REFERERS[rng.below(REFERERS.len() as u64) as usize];
        let size_jitter = rng.below(512) as u32;
        let protocol = if rng.below(4) == 0 {
            "HTTP/1.0"
        } else {
            "HTTP/1.1"
        };
        LineDraw {
            ts,
            host,
            path_rank,
            status,
            method,
            shape,
            invalid,
            combined,
            agent,
            referer,
            size_jitter,
            protocol,
        }
    }

    /// `host - - [time`, damaged as an invalid kind 1-3 says; true when the line ends there
    /// (cut inside the timestamp).
    fn write_host_and_time(&self, out: &mut Vec<u8>, line: &LineDraw) -> bool {
        let start = out.len();
        let host = &self.hosts[line.host];
        out.extend_from_slice(host);
        out.extend_from_slice(b" - - [");
        let offset_min = self.host_offsets[line.host];
        write_time(out, line.ts + i64::from(offset_min) * 60, offset_min);
        let time = start + host.len() + 6;
        match line.invalid {
            Some(1) => {
                // Cut inside the timestamp.
                out.truncate(time + 12);
                out.push(b'\n');
                return true;
            }
            Some(2) => out[time + 3] = out[time + 3].to_ascii_lowercase(),
            Some(3) => out[time + 12..time + 14].copy_from_slice(b"25"),
            _ => {}
        }
        false
    }

    /// The request: `-`, a method alone, a method and path, or all three with the protocol.
    fn write_request(&self, out: &mut Vec<u8>, line: &LineDraw) {
        let write_path = |out: &mut Vec<u8>| {
            if self.config.unique_paths {
                out.extend_from_slice(b"/u/");
                push_u64(out, self.produced);
            } else {
                out.extend_from_slice(&self.paths[line.path_rank]);
            }
        };
        match line.shape {
            0..=1 => out.push(b'-'),
            2..=3 => out.extend_from_slice(line.method.as_bytes()),
            4..=8 => {
                out.extend_from_slice(line.method.as_bytes());
                out.push(b' ');
                write_path(out);
            }
            _ => {
                out.extend_from_slice(line.method.as_bytes());
                out.push(b' ');
                write_path(out);
                out.push(b' ');
                out.extend_from_slice(line.protocol.as_bytes());
            }
        }
    }

    /// The bytes field: the path's size for a full response, often `-` for errors and 304.
    fn write_bytes(&self, out: &mut Vec<u8>, line: &LineDraw) {
        let jitter = line.size_jitter;
        match line.status {
            200 | 206 => push_u64(
                out,
                u64::from(self.path_sizes[line.path_rank % self.path_sizes.len()] + jitter),
            ),
            304 | 500..=599 | 499 if jitter.is_multiple_of(2) => out.push(b'-'),
            304 => out.push(b'0'),
            _ => push_u64(out, 150 + u64::from(jitter)),
        }
    }

    /// Fills `out` with whole lines until it holds at least `bytes` bytes, the generator is
    /// done, or (when paced) the next line's event time is not due yet. Returns the lines
    /// added.
    pub fn fill_due(&mut self, out: &mut Vec<u8>, bytes: usize, pace: &Pace) -> u64 {
        let before = self.produced;
        let due = pace.due_event_us();
        while out.len() < bytes
            && due.is_none_or(|d| self.elapsed_event_us() < d)
            && self.next_line(out)
        {}
        self.produced - before
    }

    /// Writes every line to `w` (paced by `rate` when set); returns the lines written.
    pub fn write_all(&mut self, mut w: impl Write) -> io::Result<u64> {
        let mut buf = Vec::with_capacity(1 << 20);
        let pace = Pace::new(self.config.rate.map(|r| r.0));
        while !self.is_done() {
            self.fill_due(&mut buf, 1 << 20, &pace);
            w.write_all(&buf)?;
            buf.clear();
            if pace.is_paced() {
                w.flush()?;
                pace.wait_for(self.elapsed_event_us());
            }
        }
        w.flush()?;
        Ok(self.produced)
    }
}

/// Paces event time against wall time: `rate` of event time per wall-clock second.
#[derive(Debug)]
pub struct Pace {
    rate: Option<Duration>,
    started: Instant,
}

impl Pace {
    pub fn new(rate: Option<Duration>) -> Self {
        Pace {
            rate,
            started: Instant::now(),
        }
    }

    pub fn is_paced(&self) -> bool {
        self.rate.is_some()
    }

    /// Event time (µs since the first line) that may be produced by now; `None` unpaced.
    pub fn due_event_us(&self) -> Option<i64> {
        let rate = self.rate?;
        Some((self.started.elapsed().as_secs_f64() * rate.as_micros() as f64) as i64 + 1)
    }

    /// Sleeps until event time `event_us` is due (at most 100 ms at a time, so that a caller
    /// hands over what it has in small steps).
    pub fn wait_for(&self, event_us: i64) {
        let Some(rate) = self.rate else { return };
        let due = Duration::from_secs_f64(event_us.max(0) as f64 / rate.as_micros() as f64);
        if let Some(wait) = due.checked_sub(self.started.elapsed()) {
            std::thread::sleep(wait.min(Duration::from_millis(100)));
        }
    }
}

fn push_u64(out: &mut Vec<u8>, mut v: u64) {
    let mut tmp = [0u8; 20];
    let mut i = tmp.len();
    loop {
        i -= 1;
        tmp[i] = b'0' + (v % 10) as u8;
        v /= 10;
        if v == 0 {
            break;
        }
    }
    out.extend_from_slice(&tmp[i..]);
}

fn push2(out: &mut Vec<u8>, v: u32) {
    out.push(b'0' + (v / 10 % 10) as u8);
    out.push(b'0' + (v % 10) as u8);
}

/// `dd/Mon/yyyy:HH:MM:SS ±hhmm` for local seconds since the epoch and the offset.
fn write_time(out: &mut Vec<u8>, local_s: i64, offset_min: i32) {
    let days = local_s.div_euclid(86_400);
    let secs = local_s.rem_euclid(86_400) as u32;
    let (y, m, d) = civil_from_days(days);
    push2(out, d);
    out.push(b'/');
    out.extend_from_slice(MONTHS[(m - 1) as usize]);
    out.push(b'/');
    push2(out, (y / 100) as u32);
    push2(out, (y % 100) as u32);
    out.push(b':');
    push2(out, secs / 3600);
    out.push(b':');
    push2(out, secs / 60 % 60);
    out.push(b':');
    push2(out, secs % 60);
    out.push(b' ');
    out.push(if offset_min < 0 { b'-' } else { b'+' });
    let off = offset_min.unsigned_abs();
    push2(out, off / 60);
    push2(out, off % 60);
}

/// Proleptic Gregorian date of a day number (days since 1970-01-01); Howard Hinnant's
/// `civil_from_days`.
fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m, d)
}

/// Sends the generator's lines in chunks, from `opts.start.bytes()` (the generator is
/// deterministic: the lines before it are produced again and dropped). With a `rate`, a chunk
/// is sent at least every 100 ms of wall time, holding the event time due by then.
pub(super) fn send_chunks(
    config: &GenerateConfig,
    opts: &ReaderOptions,
    mut send: impl FnMut(Chunk) -> bool,
) {
    let mut generator = Generator::new(config);
    let mut buf = Vec::with_capacity(opts.chunk_bytes + 4096);
    let mut skipped = 0u64;
    while skipped < opts.start.bytes() && generator.next_line(&mut buf) {
        skipped += buf.len() as u64;
        buf.clear();
    }
    let pace = Pace::new(config.rate.map(|r| r.0));
    loop {
        generator.fill_due(&mut buf, opts.chunk_bytes, &pace);
        let done = generator.is_done();
        if !buf.is_empty() {
            let next = Vec::with_capacity(if pace.is_paced() {
                1 << 16
            } else {
                opts.chunk_bytes + 4096
            });
            if !send(Chunk::bytes(std::mem::replace(&mut buf, next))) {
                return;
            }
        }
        if done {
            return;
        }
        pace.wait_for(generator.elapsed_event_us());
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::format::parse_access_line;

    fn config(lines: u64, seed: u64) -> GenerateConfig {
        GenerateConfig {
            lines: Some(lines),
            seed,
            ..GenerateConfig::default()
        }
    }

    fn generate(c: &GenerateConfig) -> (Vec<u8>, Generator) {
        let mut g = Generator::new(c);
        let mut out = Vec::new();
        g.write_all(&mut out).unwrap();
        (out, g)
    }

    #[test]
    fn civil_dates() {
        assert_eq!(civil_from_days(0), (1970, 1, 1));
        assert_eq!(civil_from_days(19_782), (2024, 2, 29));
        assert_eq!(civil_from_days(-1), (1969, 12, 31));
        let mut v = Vec::new();
        write_time(&mut v, 1_767_225_600 + 3661, -330);
        assert_eq!(v, b"01/Jan/2026:01:01:01 -0530");
    }

    #[test]
    fn same_seed_same_bytes_other_seed_other_bytes() {
        let (a, _) = generate(&config(5000, 7));
        let (b, _) = generate(&config(5000, 7));
        let (c, _) = generate(&config(5000, 8));
        assert_eq!(a, b);
        assert_ne!(a, c);
        assert_eq!(a.iter().filter(|&&b| b == b'\n').count(), 5000);
        // A prefix of a longer run is the shorter run.
        let (long, _) = generate(&config(6000, 7));
        assert!(long.starts_with(&a));
    }

    #[test]
    fn lines_look_like_a_real_site() {
        let n = 200_000;
        let (out, g) = generate(&config(n, 3));
        let mut invalid = 0u64;
        let mut statuses = std::collections::HashMap::<i32, u64>::new();
        let mut hosts = std::collections::HashMap::<String, u64>::new();
        let mut paths = std::collections::HashSet::new();
        let (mut no_protocol, mut no_path, mut dash_bytes, mut behind, mut offsets) =
            (0, 0, 0, 0, 0);
        let mut max_ts = i64::MIN;
        for line in out.split(|&b| b == b'\n').take(n as usize) {
            let text = String::from_utf8_lossy(line);
            match parse_access_line(&text) {
                Err(_) => invalid += 1,
                Ok(a) => {
                    *statuses.entry(a.status).or_default() += 1;
                    *hosts.entry(a.host.to_string()).or_default() += 1;
                    paths.extend(a.path.map(str::to_string));
                    no_protocol += u64::from(a.path.is_some() && a.protocol.is_none());
                    no_path += u64::from(a.path.is_none());
                    let dash = format!("\" {} -", a.status);
                    dash_bytes +=
                        u64::from(text.ends_with(&dash) || text.contains(&format!("{dash} ")));
                    behind += u64::from(a.ts < max_ts);
                    max_ts = max_ts.max(a.ts);
                    offsets += u64::from(!text.contains("+0000]"));
                }
            }
        }
        // Every invalid line the generator meant, and no other.
        assert_eq!(invalid, g.invalid_counts().iter().sum::<u64>());
        assert!((100..=320).contains(&invalid), "{invalid} invalid");
        assert!(g.invalid_counts().iter().all(|&c| c > 0));
        let share = |k: u64| k as f64 / n as f64;
        let ok = statuses[&200] as f64 / (n - invalid) as f64;
        assert!((0.74..0.82).contains(&ok), "200: {ok}");
        for s in [304, 302, 404, 500, 503] {
            assert!(statuses.contains_key(&s), "status {s}");
        }
        assert!(hosts.len() > 10_000, "{} hosts", hosts.len());
        assert!(paths.len() > 5_000, "{} paths", paths.len());
        // Zipf: the hottest host gets far more than an even share.
        let hottest = hosts.values().max().unwrap();
        assert!(*hottest > 100 * n / 40_000, "hottest host {hottest}");
        assert!((0.002..0.01).contains(&share(no_protocol)), "{no_protocol}");
        assert!((0.002..0.01).contains(&share(no_path)), "{no_path}");
        assert!(
            (0.005..0.05).contains(&share(dash_bytes)),
            "{dash_bytes} with `-` bytes"
        );
        assert!((0.01..0.06).contains(&share(behind)), "{behind} behind");
        assert!((0.2..0.6).contains(&share(offsets)), "{offsets} not UTC");
    }

    #[test]
    fn unique_paths_give_one_key_per_line() {
        let c = GenerateConfig {
            unique_paths: true,
            ..config(20_000, 1)
        };
        let (out, _) = generate(&c);
        let mut paths = std::collections::HashSet::new();
        let mut with_path = 0;
        for line in out.split(|&b| b == b'\n') {
            if let Ok(a) = parse_access_line(&String::from_utf8_lossy(line))
                && let Some(p) = a.path
            {
                with_path += 1;
                paths.insert(p.to_string());
            }
        }
        assert_eq!(paths.len(), with_path);
        assert!(with_path > 19_800);
    }

    #[test]
    fn pacing_follows_the_rate() {
        // 100 events per second of event time, one minute of event time per wall second:
        // 0.2 s of wall time holds about 12 s of event time, about 1200 lines.
        let c = GenerateConfig {
            rate: Some(shared::HumanDuration::from_secs(60)),
            lines: Some(1200),
            ..GenerateConfig::default()
        };
        let started = Instant::now();
        let (out, _) = generate(&c);
        let took = started.elapsed();
        assert_eq!(out.iter().filter(|&&b| b == b'\n').count(), 1200);
        assert!(took >= Duration::from_millis(120), "{took:?}");
    }
}
