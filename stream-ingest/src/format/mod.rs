//! Input formats: complete lines of bytes in, an Arrow [`RecordBatch`] of events out.
//!
//! One module per format, each behind [`EventParser`]. A parser never fails on bad input: an
//! invalid line is handed to the [`InvalidSink`] with its line number and a short reason, and
//! parsing goes on. Lines end at `\n` only; bytes that are not UTF-8 are replaced by U+FFFD
//! first, as Flink's and Spark's text readers do.

mod apache;
mod csv;
mod ndjson;
mod typed;

use std::borrow::Cow;

use arrow::array::RecordBatch;
use shared::config::FormatConfig;

use apache::ApacheParser;
#[cfg(test)]
pub use apache::parse_access_line;

/// Receives invalid lines: the line's 0-based index in the chunk, reason, raw bytes (without
/// the `\n`).
pub trait InvalidSink {
    fn invalid(&mut self, index: u64, reason: &str, text: &[u8]);
}

impl<F: FnMut(u64, &str, &[u8])> InvalidSink for F {
    fn invalid(&mut self, line: u64, reason: &str, text: &[u8]) {
        self(line, reason, text)
    }
}

/// What parsing a chunk gave.
#[derive(Debug)]
pub struct Parsed {
    /// The valid events, in input order.
    pub batch: RecordBatch,
    /// Lines seen, valid or not.
    pub lines: u64,
}

/// Parses chunks of complete lines into record batches of the format's schema.
pub trait EventParser: Send {
    /// Parses every line of `chunk` (the last line may lack its `\n`); `at_start` says
    /// whether its first line is the first line of the input (a CSV header). The result
    /// depends on nothing else, so chunks can be parsed on any thread, in any order.
    fn parse(&mut self, chunk: &[u8], at_start: bool, invalid: &mut dyn InvalidSink) -> Parsed;
}

/// The parser for a configured format.
pub fn parser_for(format: &FormatConfig) -> Box<dyn EventParser> {
    let schema = shared::schema::event_schema(format);
    match format {
        FormatConfig::Apache => Box::new(ApacheParser::new(schema)),
        FormatConfig::Ndjson { .. } => Box::new(ndjson::NdjsonParser::new(schema)),
        FormatConfig::Csv {
            header, delimiter, ..
        } => Box::new(csv::CsvParser::new(schema, *header, *delimiter as u8)),
    }
}

/// Calls `f(index, line)` for every line of `chunk` (index from 0): pieces between `\n`, the
/// last one only when not empty (a final line without `\n`). Returns the number of lines.
pub(crate) fn for_each_line(chunk: &[u8], mut f: impl FnMut(u64, &[u8])) -> u64 {
    let mut n = 0;
    let mut start = 0;
    for end in memchr::memchr_iter(b'\n', chunk) {
        f(n, &chunk[start..end]);
        n += 1;
        start = end + 1;
    }
    if start < chunk.len() {
        f(n, &chunk[start..]);
        n += 1;
    }
    n
}

/// A line as text: borrowed when it is UTF-8 (checked with the standard library's fast
/// path), else with U+FFFD for each invalid sequence.
#[inline]
pub(crate) fn line_text(line: &[u8]) -> Cow<'_, str> {
    match std::str::from_utf8(line) {
        Ok(s) => Cow::Borrowed(s),
        Err(_) => String::from_utf8_lossy(line),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_end_at_newline_only() {
        let mut seen = Vec::new();
        let n = for_each_line(b"a\r\n\nb\rc\nlast", |no, l| seen.push((no, l.to_vec())));
        assert_eq!(n, 4);
        assert_eq!(
            seen,
            vec![
                (0, b"a\r".to_vec()),
                (1, b"".to_vec()),
                (2, b"b\rc".to_vec()),
                (3, b"last".to_vec())
            ]
        );
        assert_eq!(for_each_line(b"x\n", |_, _| {}), 1);
        assert_eq!(for_each_line(b"", |_, _| {}), 0);
    }
}
