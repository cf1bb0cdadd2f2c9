//! Delimited text with a declared schema: columns by position, RFC 4180 quoting within a
//! line (`"a ""quoted"" value"`; a quoted field cannot span lines, as lines end at `\n`).
//! An empty field is NULL; a trailing `\r` is dropped.

use std::ops::Range;

use arrow::datatypes::SchemaRef;

use super::typed::{Raw, TypedColumns};
use super::{EventParser, InvalidSink, Parsed, for_each_line, line_text};

pub struct CsvParser {
    schema: SchemaRef,
    header: bool,
    delimiter: u8,
    /// Unquoted field values of the current line.
    fields: String,
    ranges: Vec<Range<usize>>,
    text: String,
}

impl CsvParser {
    pub fn new(schema: SchemaRef, header: bool, delimiter: u8) -> Self {
        CsvParser {
            schema,
            header,
            delimiter,
            fields: String::new(),
            ranges: Vec::new(),
            text: String::new(),
        }
    }
}

/// Splits `line` into fields, unquoting them into `out`; `ranges` index `out`.
fn split_fields(
    line: &str,
    delim: u8,
    out: &mut String,
    ranges: &mut Vec<Range<usize>>,
) -> Result<(), &'static str> {
    out.clear();
    ranges.clear();
    let b = line.as_bytes();
    let mut i = 0;
    loop {
        let start = out.len();
        if b.get(i) == Some(&b'"') {
            i += 1;
            loop {
                let Some(q) = b[i..].iter().position(|&c| c == b'"') else {
                    return Err("unterminated quoted field");
                };
                out.push_str(&line[i..i + q]);
                i += q + 1;
                if b.get(i) == Some(&b'"') {
                    out.push('"');
                    i += 1;
                } else {
                    break;
                }
            }
            if i < b.len() && b[i] != delim {
                return Err("text after a closing quote");
            }
        } else {
            let n = b[i..]
                .iter()
                .position(|&c| c == delim)
                .unwrap_or(b.len() - i);
            out.push_str(&line[i..i + n]);
            i += n;
        }
        ranges.push(start..out.len());
        if i >= b.len() {
            return Ok(());
        }
        i += 1; // the delimiter; a trailing one ends with an empty field
    }
}

impl EventParser for CsvParser {
    fn parse(&mut self, chunk: &[u8], at_start: bool, invalid: &mut dyn InvalidSink) -> Parsed {
        let mut cols = TypedColumns::new(self.schema.clone());
        let n_fields = self.schema.fields().len();
        let lines = for_each_line(chunk, |no, raw| {
            if no == 0 && at_start && self.header {
                return;
            }
            let text = line_text(raw);
            let line = text.strip_suffix('\r').unwrap_or(&text);
            if line.trim().is_empty() {
                invalid.invalid(no, "empty line", raw);
                return;
            }
            if let Err(e) = split_fields(line, self.delimiter, &mut self.fields, &mut self.ranges) {
                invalid.invalid(no, e, raw);
                return;
            }
            if self.ranges.len() != n_fields {
                let reason = format!("{} fields, {} declared", self.ranges.len(), n_fields);
                invalid.invalid(no, &reason, raw);
                return;
            }
            cols.start_row();
            self.text.clear();
            for (i, r) in self.ranges.iter().enumerate() {
                let v = &self.fields[r.clone()];
                let value = if v.is_empty() {
                    Raw::Null
                } else {
                    Raw::Text(v)
                };
                if let Err(e) = cols.set(i, value, &mut self.text) {
                    invalid.invalid(no, &e, raw);
                    return;
                }
            }
            cols.finish_row(&self.text);
        });
        Parsed {
            batch: cols.finish(),
            lines,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow::array::{Array, AsArray};
    use arrow::datatypes::Int32Type;
    use shared::config::{FieldConfig, FieldType, FormatConfig};

    #[test]
    fn splits_quoted_fields() {
        let (mut out, mut r) = (String::new(), Vec::new());
        split_fields("a,\"b,\"\"c\"\"\",,d", b',', &mut out, &mut r).unwrap();
        let f: Vec<&str> = r.iter().map(|r| &out[r.clone()]).collect();
        assert_eq!(f, vec!["a", "b,\"c\"", "", "d"]);
        split_fields("x,", b',', &mut out, &mut r).unwrap();
        assert_eq!(r.len(), 2);
        assert!(split_fields("\"open", b',', &mut out, &mut r).is_err());
        assert!(split_fields("\"a\"b", b',', &mut out, &mut r).is_err());
    }

    #[test]
    fn reads_rows_and_counts_bad_ones() {
        let format = FormatConfig::Csv {
            fields: vec![
                FieldConfig {
                    name: "status".into(),
                    data_type: FieldType::Int32,
                },
                FieldConfig {
                    name: "class".into(),
                    data_type: FieldType::String,
                },
            ],
            header: true,
            delimiter: ',',
        };
        let mut p = CsvParser::new(shared::schema::event_schema(&format), true, b',');
        let mut bad = Vec::new();
        let parsed = p.parse(
            b"status,class\r\n200,2xx\r\n,none\nx,y\n1,2,3\n",
            true,
            &mut |n: u64, _: &str, _: &[u8]| bad.push(n + 1),
        );
        assert_eq!(parsed.lines, 5);
        assert_eq!(bad, vec![4, 5]);
        let status = parsed.batch.column(0).as_primitive::<Int32Type>();
        assert_eq!(status.value(0), 200);
        assert!(status.is_null(1));
        assert_eq!(parsed.batch.column(1).as_string::<i32>().value(1), "none");
        // Not at the start of the input: the first line is data (here invalid), not a header.
        let mut bad = Vec::new();
        let parsed = p.parse(
            b"status,class\n200,2xx\n",
            false,
            &mut |n: u64, _: &str, _: &[u8]| bad.push(n),
        );
        assert_eq!(
            (parsed.lines, parsed.batch.num_rows(), bad),
            (2, 1, vec![0])
        );
    }
}
