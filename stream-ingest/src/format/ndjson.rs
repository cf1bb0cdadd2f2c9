//! NDJSON: one JSON object per line; each declared field is read from the top-level key of
//! the same name (missing or `null` gives NULL). A line that is not a JSON object, or whose
//! value does not convert to the declared type, is invalid.

use std::collections::HashMap;

use arrow::datatypes::SchemaRef;
use serde::Deserialize;
use serde_json::value::RawValue;

use super::typed::{Raw, TypedColumns};
use super::{EventParser, InvalidSink, Parsed, for_each_line, line_text};

pub struct NdjsonParser {
    schema: SchemaRef,
    index: HashMap<String, usize>,
    text: String,
}

impl NdjsonParser {
    pub fn new(schema: SchemaRef) -> Self {
        let index = schema
            .fields()
            .iter()
            .enumerate()
            .map(|(i, f)| (f.name().clone(), i))
            .collect();
        NdjsonParser {
            schema,
            index,
            text: String::new(),
        }
    }
}

/// A scalar JSON value, borrowed where it can be.
#[derive(Deserialize)]
#[serde(untagged)]
enum Scalar<'a> {
    Null,
    Bool(bool),
    Int(i64),
    Float(f64),
    #[serde(borrow)]
    Str(std::borrow::Cow<'a, str>),
    Other(#[allow(dead_code)] &'a RawValue),
}

impl EventParser for NdjsonParser {
    fn parse(&mut self, chunk: &[u8], _at_start: bool, invalid: &mut dyn InvalidSink) -> Parsed {
        let mut cols = TypedColumns::new(self.schema.clone());
        let lines = for_each_line(chunk, |no, raw| {
            let text = line_text(raw);
            if text.trim().is_empty() {
                invalid.invalid(no, "empty line", raw);
                return;
            }
            let obj: HashMap<&str, &RawValue> = match serde_json::from_str(&text) {
                Ok(o) => o,
                Err(_) => {
                    invalid.invalid(no, "not a JSON object", raw);
                    return;
                }
            };
            cols.start_row();
            self.text.clear();
            for (key, value) in obj {
                let Some(&i) = self.index.get(key) else {
                    continue;
                };
                let scalar: Scalar = match serde_json::from_str(value.get()) {
                    Ok(s) => s,
                    Err(_) => Scalar::Other(value),
                };
                let raw_value = match &scalar {
                    Scalar::Null => Raw::Null,
                    Scalar::Bool(b) => Raw::Bool(*b),
                    Scalar::Int(v) => Raw::Int(*v),
                    Scalar::Float(v) => Raw::Float(*v),
                    Scalar::Str(s) => Raw::Text(s),
                    Scalar::Other(_) => {
                        invalid.invalid(no, "a field holds an object or array, not a scalar", raw);
                        return;
                    }
                };
                if let Err(e) = cols.set(i, raw_value, &mut self.text) {
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
    use arrow::datatypes::{Int64Type, TimestampMicrosecondType};
    use shared::config::{FieldConfig, FieldType, FormatConfig};

    #[test]
    fn reads_declared_fields() {
        let format = FormatConfig::Ndjson {
            fields: vec![
                FieldConfig {
                    name: "user".into(),
                    data_type: FieldType::String,
                },
                FieldConfig {
                    name: "ts".into(),
                    data_type: FieldType::Timestamp,
                },
                FieldConfig {
                    name: "n".into(),
                    data_type: FieldType::Int64,
                },
            ],
        };
        let mut p = NdjsonParser::new(shared::schema::event_schema(&format));
        let input = b"{\"user\":\"a\",\"ts\":\"2024-05-17T10:00:00Z\",\"n\":3,\"extra\":[1]}\n{\"ts\":1715940000000}\nnot json\n{\"n\":\"x\"}\n{\"user\":{}}\n\n";
        let mut bad = Vec::new();
        let parsed = p.parse(input, true, &mut |n: u64, r: &str, _: &[u8]| {
            bad.push((n + 1, r.to_string()))
        });
        assert_eq!(parsed.lines, 6);
        assert_eq!(parsed.batch.num_rows(), 2);
        assert_eq!(
            bad.iter().map(|b| b.0).collect::<Vec<_>>(),
            vec![3, 4, 5, 6]
        );
        let user = parsed.batch.column(0).as_string::<i32>();
        assert_eq!(user.value(0), "a");
        assert!(user.is_null(1));
        let ts = parsed
            .batch
            .column(1)
            .as_primitive::<TimestampMicrosecondType>();
        assert_eq!(ts.value(0), ts.value(1));
        assert_eq!(
            parsed.batch.column(2).as_primitive::<Int64Type>().value(0),
            3
        );
    }
}
