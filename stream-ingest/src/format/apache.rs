//! Apache/nginx access logs: Common Log Format, optionally followed by the two quoted fields of
//! the Combined format. The rules are those of the reference pipeline; a line is valid exactly
//! when it matches
//!
//! ```text
//! ^(\S+) \S+ \S+ \[(\d{2}/(?:Jan|…|Dec)/\d{4}:\d{2}:\d{2}:\d{2}) ([+-])(\d{2})(\d{2})\] "(.*)" (\d{3}) (\d+|-)(?: "(?:[^"\\]|\\.)*" "(?:[^"\\]|\\.)*")?\s*$
//! ```
//!
//! (ASCII classes, as in RE2: `\s` is `[\t\n\f\r ]`) and its date and time exist. The matcher
//! below is hand-written over bytes, without a regex or an allocation per line; the property
//! tests check it against that regex. The request group `(.*)` is greedy: it ends at the
//! *last* quote after which the rest of the line matches, exactly as the regex would.

use std::cell::Cell;
use std::sync::Arc;

use arrow::array::{
    Int32Builder, Int64Builder, RecordBatch, StringBuilder, TimestampMicrosecondBuilder,
};
use arrow::datatypes::SchemaRef;
use chrono::NaiveDate;

use super::{EventParser, InvalidSink, Parsed, for_each_line, line_text};

/// The fields of one valid access-log line, borrowed from it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Access<'a> {
    pub host: &'a str,
    /// Event time: local time minus the offset, in µs since the epoch (UTC).
    pub ts: i64,
    pub request: &'a str,
    pub method: &'a str,
    /// 2nd `' '`-separated token of the request; `None` when there is none.
    pub path: Option<&'a str>,
    /// 3rd `' '`-separated token of the request; `None` when there is none.
    pub protocol: Option<&'a str>,
    pub status: i32,
    /// `-` gives 0.
    pub bytes: i64,
    pub referer: Option<&'a str>,
    pub user_agent: Option<&'a str>,
}

/// `\s` of RE2: `[\t\n\f\r ]` (no vertical tab).
#[inline]
fn is_space(b: u8) -> bool {
    matches!(b, b' ' | b'\t' | b'\n' | b'\x0c' | b'\r')
}

#[inline]
fn digits<const N: usize>(b: &[u8]) -> Option<u32> {
    if b.len() < N {
        return None;
    }
    let mut v = 0u32;
    for &c in &b[..N] {
        if !c.is_ascii_digit() {
            return None;
        }
        v = v * 10 + u32::from(c - b'0');
    }
    Some(v)
}

fn month(b: &[u8]) -> Option<u32> {
    Some(match b {
        b"Jan" => 1,
        b"Feb" => 2,
        b"Mar" => 3,
        b"Apr" => 4,
        b"May" => 5,
        b"Jun" => 6,
        b"Jul" => 7,
        b"Aug" => 8,
        b"Sep" => 9,
        b"Oct" => 10,
        b"Nov" => 11,
        b"Dec" => 12,
        _ => return None,
    })
}

/// Length of `\S+` at the start of `b` (0 when it does not match).
#[inline]
fn non_space_run(b: &[u8]) -> usize {
    b.iter().position(|&c| is_space(c)).unwrap_or(b.len())
}

/// A quoted Combined field `"(?:[^"\\]|\\.)*"` at the start of `b`: the content's end and the
/// position after the closing quote. (`memchr2` jumps to the next quote or backslash: a user
/// agent is a hundred bytes or more.)
fn quoted(b: &[u8]) -> Option<(usize, usize)> {
    if b.first() != Some(&b'"') {
        return None;
    }
    let mut i = 1;
    while let Some(n) = memchr::memchr2(b'"', b'\\', &b[i..]) {
        i += n;
        if b[i] == b'"' {
            return Some((i, i + 1));
        }
        // `\\.`: the escaped character may be anything but a newline (none in a line).
        if i + 1 >= b.len() {
            return None;
        }
        i += 2;
    }
    None
}

/// What follows the request: ` (\d{3}) (\d+|-)(?: "…" "…")?\s*$`.
struct Tail {
    status: i32,
    bytes: Option<i64>,
    /// Ranges of referer and user agent contents, relative to the tail.
    combined: Option<((usize, usize), (usize, usize))>,
}

fn tail(t: &[u8]) -> Option<Tail> {
    if t.first() != Some(&b' ') {
        return None;
    }
    let status = digits::<3>(&t[1..])? as i32;
    if t.get(4) != Some(&b' ') {
        return None;
    }
    let mut j = 5;
    let bytes = if t.get(j) == Some(&b'-') {
        j += 1;
        Some(0)
    } else {
        let n = t[j..].iter().take_while(|c| c.is_ascii_digit()).count();
        if n == 0 {
            return None;
        }
        let mut v: i64 = 0;
        let mut overflow = false;
        for &c in &t[j..j + n] {
            match v
                .checked_mul(10)
                .and_then(|v| v.checked_add(i64::from(c - b'0')))
            {
                Some(x) => v = x,
                None => overflow = true,
            }
        }
        j += n;
        if overflow { None } else { Some(v) }
    };
    let rest = &t[j..];
    let all_space = |b: &[u8]| b.iter().all(|&c| is_space(c));
    // The optional Combined group, greedy: try it first.
    if rest.first() == Some(&b' ')
        && let Some((r_end, after_r)) = quoted(&rest[1..])
    {
        let r = &rest[1 + after_r..];
        if r.first() == Some(&b' ')
            && let Some((u_end, after_u)) = quoted(&r[1..])
            && all_space(&r[1 + after_u..])
        {
            let base = j + 1;
            let ua_base = base + after_r + 1;
            return Some(Tail {
                status,
                bytes,
                combined: Some(((base + 1, base + r_end), (ua_base + 1, ua_base + u_end))),
            });
        }
    }
    if all_space(rest) {
        Some(Tail {
            status,
            bytes,
            combined: None,
        })
    } else {
        None
    }
}

/// Parses one line (without its `\n`); the error is a short reason for the dead-letter file.
pub fn parse_access_line(line: &str) -> Result<Access<'_>, &'static str> {
    let b = line.as_bytes();
    if b.is_empty() {
        return Err("empty line");
    }
    // ^(\S+) \S+ \S+ \[
    let host_len = non_space_run(b);
    if host_len == 0 {
        return Err("no host at the start of the line");
    }
    let mut i = host_len;
    for _ in 0..2 {
        if b.get(i) != Some(&b' ') {
            return Err("expected host, ident and user separated by single spaces");
        }
        i += 1;
        let n = non_space_run(&b[i..]);
        if n == 0 {
            return Err("expected host, ident and user separated by single spaces");
        }
        i += n;
    }
    if b.get(i) != Some(&b' ') || b.get(i + 1) != Some(&b'[') {
        return Err("expected ` [` before the timestamp");
    }
    i += 2;
    // dd/Mon/yyyy:HH:MM:SS +hhmm] "
    let d = b.get(i..i + 30).ok_or("truncated timestamp")?;
    let ts = timestamp(d)?;
    let body_start = i + 29;
    let body = &b[body_start..];

    // "(.*)" then the tail: the last quote after which the tail matches.
    let mut end = body.len();
    let (req_end, t) = loop {
        let q =
            memchr::memrchr(b'"', &body[..end]).ok_or("no status and bytes after the request")?;
        if let Some(t) = tail(&body[q + 1..]) {
            break (q, t);
        }
        end = q;
    };
    let bytes = t.bytes.ok_or("bytes out of range")?;
    let request = &line[body_start..body_start + req_end];
    let (method, path, protocol) = request_tokens(request);
    let tail_base = body_start + req_end + 1;
    let (referer, user_agent) = match t.combined {
        Some(((rs, re), (us, ue))) => (
            Some(&line[tail_base + rs..tail_base + re]),
            Some(&line[tail_base + us..tail_base + ue]),
        ),
        None => (None, None),
    };
    Ok(Access {
        host: &line[..host_len],
        ts,
        request,
        method,
        path,
        protocol,
        status: t.status,
        bytes,
        referer,
        user_agent,
    })
}

/// The 1st, 2nd and 3rd `' '`-separated tokens of a request (`request.split(' ')`), the last
/// two `None` when missing.
#[inline]
fn request_tokens(request: &str) -> (&str, Option<&str>, Option<&str>) {
    let b = request.as_bytes();
    let Some(m) = memchr::memchr(b' ', b) else {
        return (request, None, None);
    };
    let rest = m + 1;
    let Some(p) = memchr::memchr(b' ', &b[rest..]) else {
        return (&request[..m], Some(&request[rest..]), None);
    };
    let third = rest + p + 1;
    let end = memchr::memchr(b' ', &b[third..]).map_or(b.len(), |e| third + e);
    (
        &request[..m],
        Some(&request[rest..rest + p]),
        Some(&request[third..end]),
    )
}

/// `dd/Mon/yyyy:HH:MM:SS +hhmm] "` at the start of `d` (30 bytes or more): the event time in
/// µs since the epoch (UTC).
#[inline]
fn timestamp(d: &[u8]) -> Result<i64, &'static str> {
    let bad_ts = "timestamp is not dd/Mon/yyyy:HH:MM:SS +hhmm";
    let day = digits::<2>(&d[0..]).ok_or(bad_ts)?;
    if d[2] != b'/'
        || d[6] != b'/'
        || d[11] != b':'
        || d[14] != b':'
        || d[17] != b':'
        || d[20] != b' '
    {
        return Err(bad_ts);
    }
    let mon = month(&d[3..6]).ok_or("unknown month (names are case-sensitive: Jan … Dec)")?;
    let year = digits::<4>(&d[7..]).ok_or(bad_ts)?;
    let hour = digits::<2>(&d[12..]).ok_or(bad_ts)?;
    let min = digits::<2>(&d[15..]).ok_or(bad_ts)?;
    let sec = digits::<2>(&d[18..]).ok_or(bad_ts)?;
    let sign: i64 = match d[21] {
        b'+' => 1,
        b'-' => -1,
        _ => return Err(bad_ts),
    };
    let off_h = digits::<2>(&d[22..]).ok_or(bad_ts)?;
    let off_m = digits::<2>(&d[24..]).ok_or(bad_ts)?;
    if &d[26..29] != b"] \"" {
        return Err("expected `] \"` after the timestamp");
    }
    if hour > 23 || min > 59 || sec > 59 {
        return Err("the time does not exist");
    }
    let days = days_since_epoch(year, mon, day)?;
    let local = days * 86_400 + i64::from(hour * 3600 + min * 60 + sec);
    let offset = i64::from(off_h * 3600 + off_m * 60);
    Ok((local - sign * offset) * 1_000_000)
}

thread_local! {
    /// The last date this thread converted (`yyyymmdd`) and its days since the epoch.
    static LAST_DAY: Cell<(u32, i64)> = const { Cell::new((0, 0)) };
}

/// Days since 1970-01-01 of a date, or an error when it does not exist. The lines of a log
/// come day after day, so the last date converted is remembered (per thread, valid dates
/// only) and chrono's check and arithmetic run once per day rather than once per line.
#[inline]
fn days_since_epoch(year: u32, mon: u32, day: u32) -> Result<i64, &'static str> {
    let key = year * 10_000 + mon * 100 + day;
    let (last, days) = LAST_DAY.get();
    if last == key {
        return Ok(days);
    }
    let date = NaiveDate::from_ymd_opt(year as i32, mon, day).ok_or("the date does not exist")?;
    let days = date.signed_duration_since(NaiveDate::default()).num_days();
    LAST_DAY.set((key, days));
    Ok(days)
}

/// Builds batches of access-log events.
pub struct ApacheParser {
    schema: SchemaRef,
}

impl ApacheParser {
    pub fn new(schema: SchemaRef) -> Self {
        ApacheParser { schema }
    }
}

impl EventParser for ApacheParser {
    fn parse(&mut self, chunk: &[u8], _at_start: bool, invalid: &mut dyn InvalidSink) -> Parsed {
        // A line is ~200 bytes; the builders grow if needed.
        let cap = chunk.len() / 160 + 16;
        let mut host = StringBuilder::with_capacity(cap, cap * 16);
        let mut ts = TimestampMicrosecondBuilder::with_capacity(cap).with_timezone("UTC");
        let mut request = StringBuilder::with_capacity(cap, cap * 64);
        let mut method = StringBuilder::with_capacity(cap, cap * 4);
        let mut path = StringBuilder::with_capacity(cap, cap * 48);
        let mut protocol = StringBuilder::with_capacity(cap, cap * 8);
        let mut status = Int32Builder::with_capacity(cap);
        let mut bytes = Int64Builder::with_capacity(cap);
        let mut referer = StringBuilder::with_capacity(cap, cap * 32);
        let mut agent = StringBuilder::with_capacity(cap, cap * 64);
        let lines = for_each_line(chunk, |no, raw| {
            let text = line_text(raw);
            match parse_access_line(&text) {
                Ok(a) => {
                    host.append_value(a.host);
                    ts.append_value(a.ts);
                    request.append_value(a.request);
                    method.append_value(a.method);
                    path.append_option(a.path);
                    protocol.append_option(a.protocol);
                    status.append_value(a.status);
                    bytes.append_value(a.bytes);
                    referer.append_option(a.referer);
                    agent.append_option(a.user_agent);
                }
                Err(reason) => invalid.invalid(no, reason, raw),
            }
        });
        let batch = RecordBatch::try_new(
            self.schema.clone(),
            vec![
                Arc::new(host.finish()),
                Arc::new(ts.finish()),
                Arc::new(request.finish()),
                Arc::new(method.finish()),
                Arc::new(path.finish()),
                Arc::new(protocol.finish()),
                Arc::new(status.finish()),
                Arc::new(bytes.finish()),
                Arc::new(referer.finish()),
                Arc::new(agent.finish()),
            ],
        )
        .expect("columns follow the access-log schema");
        Parsed { batch, lines }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::Datelike;
    use proptest::prelude::*;

    const COMMON: &str = "in24.inetnebr.com - - [01/Jul/1995:00:00:01 -0400] \"GET /shuttle/missions/sts-68/news/sts-68-mcc-05.txt HTTP/1.0\" 200 1839";
    const COMBINED: &str = "83.149.9.216 - - [17/May/2015:10:05:03 +0000] \"GET /images/kibana-search.png HTTP/1.1\" 200 203023 \"http://semicomplete.com/\" \"Mozilla/5.0 (X11)\"";

    fn ts(s: &str) -> i64 {
        chrono::DateTime::parse_from_rfc3339(s)
            .unwrap()
            .timestamp_micros()
    }

    #[test]
    fn common_line() {
        let a = parse_access_line(COMMON).unwrap();
        assert_eq!(a.host, "in24.inetnebr.com");
        assert_eq!(a.ts, ts("1995-07-01T04:00:01Z"));
        assert_eq!(a.method, "GET");
        assert_eq!(
            a.path,
            Some("/shuttle/missions/sts-68/news/sts-68-mcc-05.txt")
        );
        assert_eq!(a.protocol, Some("HTTP/1.0"));
        assert_eq!((a.status, a.bytes), (200, 1839));
        assert_eq!((a.referer, a.user_agent), (None, None));
    }

    #[test]
    fn combined_line() {
        let a = parse_access_line(COMBINED).unwrap();
        assert_eq!(a.ts, ts("2015-05-17T10:05:03Z"));
        assert_eq!(a.referer, Some("http://semicomplete.com/"));
        assert_eq!(a.user_agent, Some("Mozilla/5.0 (X11)"));
        assert_eq!(a.bytes, 203023);
    }

    #[test]
    fn offsets_move_to_utc() {
        let l = |off: &str| format!("h - - [31/Dec/1999:23:30:00 {off}] \"GET / HTTP/1.0\" 200 1");
        assert_eq!(
            parse_access_line(&l("+0000")).unwrap().ts,
            ts("1999-12-31T23:30:00Z")
        );
        assert_eq!(
            parse_access_line(&l("-0130")).unwrap().ts,
            ts("2000-01-01T01:00:00Z")
        );
        assert_eq!(
            parse_access_line(&l("+0530")).unwrap().ts,
            ts("1999-12-31T18:00:00Z")
        );
    }

    #[test]
    fn trailing_whitespace_and_cr_are_allowed() {
        assert!(parse_access_line(&format!("{COMMON}\r")).is_ok());
        assert!(parse_access_line(&format!("{COMBINED} \t\r")).is_ok());
        // A vertical tab is not `\s` in RE2.
        assert!(parse_access_line(&format!("{COMMON}\x0b")).is_err());
    }

    #[test]
    fn dash_bytes_is_zero() {
        let a = parse_access_line("h - - [01/Jul/1995:00:00:01 -0400] \"GET /x HTTP/1.0\" 304 -")
            .unwrap();
        assert_eq!((a.status, a.bytes), (304, 0));
    }

    #[test]
    fn request_tokens() {
        let l = |req: &str| format!("h - - [01/Jul/1995:00:00:01 -0400] \"{req}\" 200 1");
        let a = |req: &str| {
            let line = l(req);
            let a = parse_access_line(&line).unwrap();
            (
                a.method.to_string(),
                a.path.map(String::from),
                a.protocol.map(String::from),
            )
        };
        assert_eq!(
            a("GET  /x"),
            ("GET".into(), Some("".into()), Some("/x".into()))
        );
        assert_eq!(a("GET"), ("GET".into(), None, None));
        assert_eq!(a(""), ("".into(), None, None));
        assert_eq!(a("GET /a"), ("GET".into(), Some("/a".into()), None));
        assert_eq!(
            a("GET /a HTTP/1.0 x"),
            ("GET".into(), Some("/a".into()), Some("HTTP/1.0".into()))
        );
        assert_eq!(
            a("GET /a "),
            ("GET".into(), Some("/a".into()), Some("".into()))
        );
        // Quotes inside the request: the request ends at the last quote that fits.
        let line = l("GET /\"q\" HTTP/1.0");
        assert_eq!(
            parse_access_line(&line).unwrap().request,
            "GET /\"q\" HTTP/1.0"
        );
    }

    #[test]
    fn impossible_dates_and_bad_months() {
        let l = |d: &str| format!("h - - [{d} +0000] \"GET / HTTP/1.0\" 200 1");
        assert_eq!(
            parse_access_line(&l("31/Jun/1995:00:00:00")),
            Err("the date does not exist")
        );
        assert_eq!(
            parse_access_line(&l("29/Feb/2023:00:00:00")),
            Err("the date does not exist")
        );
        assert!(parse_access_line(&l("29/Feb/2024:00:00:00")).is_ok());
        assert_eq!(
            parse_access_line(&l("01/Jan/2024:24:00:00")),
            Err("the time does not exist")
        );
        assert!(parse_access_line(&l("01/Jan/2024:23:59:60")).is_err());
        assert!(parse_access_line(&l("01/jan/2024:00:00:00")).is_err());
        assert!(parse_access_line(&l("01/Foo/2024:00:00:00")).is_err());
        assert!(parse_access_line(&l("1/Jan/2024:00:00:00")).is_err());
    }

    #[test]
    fn a_remembered_day_gives_what_chrono_gives() {
        let epoch = NaiveDate::default();
        let mut date = NaiveDate::from_ymd_opt(1999, 12, 25).unwrap();
        // Each day twice (the second from memory), across leap days and year ends, with an
        // impossible date in between that must neither answer nor be remembered.
        for _ in 0..2000 {
            let (y, m, d) = (date.year() as u32, date.month(), date.day());
            let want = date.signed_duration_since(epoch).num_days();
            assert_eq!(days_since_epoch(y, m, d), Ok(want));
            assert_eq!(days_since_epoch(y, 2, 30), Err("the date does not exist"));
            assert_eq!(days_since_epoch(y, m, d), Ok(want));
            date = date.succ_opt().unwrap();
        }
    }

    #[test]
    fn garbage_is_invalid_never_a_panic() {
        for line in [
            "",
            " ",
            "garbage",
            "h - - [",
            "h - - [01/Jul/1995:00:00:01 -0400]",
            "h - - [01/Jul/1995:00:00:01 -0400] \"GET / HTTP/1.0\"",
            "h - - [01/Jul/1995:00:00:01 -0400] \"GET / HTTP/1.0\" 20 1",
            "h - - [01/Jul/1995:00:00:01 -0400] \"GET / HTTP/1.0\" 200 x",
            "h  - - [01/Jul/1995:00:00:01 -0400] \"GET / HTTP/1.0\" 200 1",
            "h - - [01/Jul/1995:00:00:01 -0400] \"GET / HTTP/1.0\" 200 1 \"ref\"",
            "h - - [01/Jul/1995:00:00:01 -0400] \"GET / HTTP/1.0\" 200 1 \"ref\" \"ua",
            "h - - [01/Jul/1995:00:00:01 -0400] \"GET / HTTP/1.0\" 200 99999999999999999999",
        ] {
            assert!(
                parse_access_line(line).is_err(),
                "{line:?} should be invalid"
            );
        }
    }

    #[test]
    fn invalid_utf8_is_replaced_not_rejected() {
        let mut raw =
            b"h\xff - - [01/Jul/1995:00:00:01 -0400] \"GET /\xc3 HTTP/1.0\" 200 1".to_vec();
        let mut parser = ApacheParser::new(shared::schema::event_schema(
            &shared::config::FormatConfig::Apache,
        ));
        raw.extend_from_slice(b"\n\nbad\n");
        let mut invalid = Vec::new();
        let parsed = parser.parse(&raw, true, &mut |n: u64, r: &str, _t: &[u8]| {
            invalid.push((n + 1, r.to_string()))
        });
        assert_eq!(parsed.lines, 3);
        assert_eq!(parsed.batch.num_rows(), 1);
        assert_eq!(
            invalid.iter().map(|(n, _)| *n).collect::<Vec<_>>(),
            vec![2, 3]
        );
        let host = parsed
            .batch
            .column(0)
            .as_any()
            .downcast_ref::<arrow::array::StringArray>()
            .unwrap();
        assert_eq!(host.value(0), "h\u{FFFD}");
    }

    // ---- the regex of the spec as the oracle -------------------------------------------

    const SPEC: &str = r#"^(\S+) \S+ \S+ \[(\d{2}/(?:Jan|Feb|Mar|Apr|May|Jun|Jul|Aug|Sep|Oct|Nov|Dec)/\d{4}:\d{2}:\d{2}:\d{2}) ([+-])(\d{2})(\d{2})\] "(.*)" (\d{3}) (\d+|-)(?: "(?:[^"\\]|\\.)*" "(?:[^"\\]|\\.)*")?\s*$"#;

    fn oracle() -> regex::Regex {
        // RE2's ASCII classes; Rust's regex in non-Unicode mode for the classes, `.` on chars.
        let ascii = SPEC
            .replace(r"\S", r"[^\t\n\x0C\r ]")
            .replace(r"\s", r"[\t\n\x0C\r ]")
            .replace(r"\d", "[0-9]");
        regex::Regex::new(&ascii).unwrap()
    }

    fn date_exists(d: &str) -> bool {
        // chrono takes second 60 as a leap second; a log's 60th second does not exist.
        !d.ends_with(":60") && chrono::NaiveDateTime::parse_from_str(d, "%d/%b/%Y:%H:%M:%S").is_ok()
    }

    /// Lines close to valid ones, with the characters that matter to the grammar.
    fn near_lines() -> impl Strategy<Value = String> {
        let tok = "[a-z0-9\\-\\.\" \\\\\\[\\]/\r\t]{0,12}";
        let date = prop_oneof![
            Just("17/May/2015:10:05:03".to_string()),
            Just("31/Jun/1995:00:00:00".to_string()),
            Just("29/Feb/2024:23:59:59".to_string()),
            Just("01/jan/2024:00:00:00".to_string()),
            Just("01/Jan/2024:24:00:00".to_string()),
            "[0-3][0-9]/(Jan|Feb|Jun|Dec)/20[0-9]{2}:[0-2][0-9]:[0-6][0-9]:[0-6][0-9]",
        ];
        (
            "[a-z0-9\\.\\-]{0,6}( |  )?",
            date,
            "[+-][0-9]{4}",
            tok,
            prop_oneof!["[0-9]{3}", "[0-9]{1,4}"],
            prop_oneof!["[0-9]{1,6}", Just("-".to_string()), Just("".to_string())],
            prop_oneof![
                Just(String::new()),
                (tok, tok).prop_map(|(a, b)| format!(" \"{a}\" \"{b}\""))
            ],
            prop_oneof![Just(""), Just(" "), Just("\r"), Just(" x"), Just("\"")],
        )
            .prop_map(|(host, date, off, req, status, bytes, combined, end)| {
                format!("{host} - - [{date} {off}] \"{req}\" {status} {bytes}{combined}{end}")
            })
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(4000))]

        #[test]
        fn agrees_with_the_spec_regex(line in near_lines()) {
            let re = oracle();
            let ours = parse_access_line(&line);
            match re.captures(&line) {
                Some(c) if date_exists(&c[2]) => {
                    let a = ours.map_err(|e| TestCaseError::fail(format!("{line:?}: {e}")))?;
                    prop_assert_eq!(a.host, &c[1]);
                    prop_assert_eq!(a.request, &c[6]);
                    let mut tokens = c[6].split(' ');
                    prop_assert_eq!(
                        (Some(a.method), a.path, a.protocol),
                        (tokens.next(), tokens.next(), tokens.next())
                    );
                    prop_assert_eq!(a.status, c[7].parse::<i32>().unwrap());
                    let bytes = if &c[8] == "-" { 0 } else { c[8].parse::<i64>().unwrap() };
                    prop_assert_eq!(a.bytes, bytes);
                }
                _ => prop_assert!(ours.is_err(), "{:?} parsed but the regex refuses it", line),
            }
        }

        #[test]
        fn never_panics_on_any_bytes(raw in proptest::collection::vec(any::<u8>(), 0..300)) {
            let text = String::from_utf8_lossy(&raw);
            let _ = parse_access_line(&text);
        }
    }
}
