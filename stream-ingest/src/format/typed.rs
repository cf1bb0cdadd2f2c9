//! Column builders for formats with a declared schema (NDJSON, CSV): one builder per field,
//! filled from text or JSON values, with the conversion rules of each type in one place.

use std::sync::Arc;

use arrow::array::{
    ArrayRef, BooleanBuilder, Float64Builder, Int32Builder, Int64Builder, RecordBatch,
    StringBuilder, TimestampMicrosecondBuilder,
};
use arrow::datatypes::{DataType, SchemaRef};
use chrono::{DateTime, NaiveDateTime};

enum Column {
    Str(StringBuilder),
    I32(Int32Builder),
    I64(Int64Builder),
    F64(Float64Builder),
    Bool(BooleanBuilder),
    Ts(TimestampMicrosecondBuilder),
}

/// A value of one field, before conversion.
pub enum Raw<'a> {
    Null,
    Text(&'a str),
    Int(i64),
    Float(f64),
    Bool(bool),
}

/// Builders for every field of a declared schema. A row is converted into `pending` first
/// ([`TypedColumns::set`]) and appended whole ([`TypedColumns::finish_row`]), so that a
/// failed conversion in the middle of a line leaves no partial row behind.
pub struct TypedColumns {
    schema: SchemaRef,
    columns: Vec<Column>,
    /// Values of the row being assembled, converted but not yet appended.
    pending: Vec<Value>,
}

#[derive(Clone)]
enum Value {
    Null,
    Str(std::ops::Range<usize>),
    I64(i64),
    F64(f64),
    Bool(bool),
}

/// Any value, as text appended to `text_buf`.
#[inline]
fn text_value(raw: Raw<'_>, text_buf: &mut String) -> Value {
    let start = text_buf.len();
    match raw {
        Raw::Null => return Value::Null,
        Raw::Text(s) => text_buf.push_str(s),
        Raw::Int(v) => text_buf.push_str(&v.to_string()),
        Raw::Float(v) => text_buf.push_str(&v.to_string()),
        Raw::Bool(v) => text_buf.push_str(if v { "true" } else { "false" }),
    }
    Value::Str(start..text_buf.len())
}

/// Text parsed for a column of another type (a CSV field, a JSON string).
#[inline]
fn parse_text(column: &Column, name: &str, s: &str) -> Result<Value, String> {
    Ok(match column {
        Column::Str(_) => unreachable!("text columns take text as it is"),
        Column::I32(_) => {
            let v: i32 = s
                .trim()
                .parse()
                .map_err(|_| format!("`{name}`: `{s}` is not an int32"))?;
            Value::I64(i64::from(v))
        }
        Column::I64(_) => Value::I64(
            s.trim()
                .parse()
                .map_err(|_| format!("`{name}`: `{s}` is not an int64"))?,
        ),
        Column::F64(_) => Value::F64(
            s.trim()
                .parse()
                .map_err(|_| format!("`{name}`: `{s}` is not a number"))?,
        ),
        Column::Bool(_) => match s.trim() {
            "true" | "TRUE" | "True" | "1" => Value::Bool(true),
            "false" | "FALSE" | "False" | "0" => Value::Bool(false),
            _ => return Err(format!("`{name}`: `{s}` is not a bool")),
        },
        Column::Ts(_) => Value::I64(parse_timestamp(s).ok_or_else(|| {
            format!("`{name}`: `{s}` is not a timestamp (RFC 3339, e.g. 2024-05-17T10:00:00Z)")
        })?),
    })
}

impl TypedColumns {
    pub fn new(schema: SchemaRef) -> Self {
        let columns = schema
            .fields()
            .iter()
            .map(|f| match f.data_type() {
                DataType::Utf8 => Column::Str(StringBuilder::new()),
                DataType::Int32 => Column::I32(Int32Builder::new()),
                DataType::Int64 => Column::I64(Int64Builder::new()),
                DataType::Float64 => Column::F64(Float64Builder::new()),
                DataType::Boolean => Column::Bool(BooleanBuilder::new()),
                DataType::Timestamp(..) => {
                    Column::Ts(TimestampMicrosecondBuilder::new().with_timezone("UTC"))
                }
                other => unreachable!("declared fields have no type {other}"),
            })
            .collect();
        let n = schema.fields().len();
        TypedColumns {
            schema,
            columns,
            pending: vec![Value::Null; n],
        }
    }

    /// Starts a row: every field NULL until set.
    pub fn start_row(&mut self) {
        self.pending.fill(Value::Null);
    }

    /// Converts `raw` for field `i`. Text is kept in `text_buf` (the caller's per-row buffer)
    /// so that no `String` is made per value.
    pub fn set(&mut self, i: usize, raw: Raw<'_>, text_buf: &mut String) -> Result<(), String> {
        let name = self.schema.field(i).name();
        let v = match (&self.columns[i], raw) {
            (_, Raw::Null) => Value::Null,
            (Column::Str(_), raw) => text_value(raw, text_buf),
            (column, Raw::Text(s)) => parse_text(column, name, s)?,
            (Column::I32(_), Raw::Int(v)) => {
                i32::try_from(v).map_err(|_| format!("`{name}`: {v} does not fit in int32"))?;
                Value::I64(v)
            }
            (Column::I64(_), Raw::Int(v)) => Value::I64(v),
            (Column::F64(_), Raw::Int(v)) => Value::F64(v as f64),
            (Column::F64(_), Raw::Float(v)) => Value::F64(v),
            (Column::Bool(_), Raw::Bool(v)) => Value::Bool(v),
            (Column::Ts(_), Raw::Int(ms)) => Value::I64(
                ms.checked_mul(1000)
                    .ok_or_else(|| format!("`{name}`: {ms} ms is out of range"))?,
            ),
            (_, _) => {
                return Err(format!(
                    "`{name}`: wrong JSON type for {}",
                    self.schema.field(i).data_type()
                ));
            }
        };
        self.pending[i] = v;
        Ok(())
    }

    /// Appends the assembled row.
    pub fn finish_row(&mut self, text_buf: &str) {
        for (col, v) in self.columns.iter_mut().zip(&self.pending) {
            match (col, v) {
                (Column::Str(b), Value::Str(r)) => b.append_value(&text_buf[r.clone()]),
                (Column::Str(b), _) => b.append_null(),
                (Column::I32(b), Value::I64(x)) => b.append_value(*x as i32),
                (Column::I32(b), _) => b.append_null(),
                (Column::I64(b), Value::I64(x)) => b.append_value(*x),
                (Column::I64(b), _) => b.append_null(),
                (Column::F64(b), Value::F64(x)) => b.append_value(*x),
                (Column::F64(b), _) => b.append_null(),
                (Column::Bool(b), Value::Bool(x)) => b.append_value(*x),
                (Column::Bool(b), _) => b.append_null(),
                (Column::Ts(b), Value::I64(x)) => b.append_value(*x),
                (Column::Ts(b), _) => b.append_null(),
            }
        }
    }

    pub fn finish(&mut self) -> RecordBatch {
        let arrays: Vec<ArrayRef> = self
            .columns
            .iter_mut()
            .map(|c| -> ArrayRef {
                match c {
                    Column::Str(b) => Arc::new(b.finish()),
                    Column::I32(b) => Arc::new(b.finish()),
                    Column::I64(b) => Arc::new(b.finish()),
                    Column::F64(b) => Arc::new(b.finish()),
                    Column::Bool(b) => Arc::new(b.finish()),
                    Column::Ts(b) => Arc::new(b.finish()),
                }
            })
            .collect();
        RecordBatch::try_new(self.schema.clone(), arrays).expect("builders follow the schema")
    }
}

/// RFC 3339 / ISO 8601 with an offset, or without one (then UTC); `T` or a space between
/// date and time. Microseconds since the epoch.
pub fn parse_timestamp(s: &str) -> Option<i64> {
    let s = s.trim();
    if let Ok(t) = DateTime::parse_from_rfc3339(s) {
        return Some(t.timestamp_micros());
    }
    for fmt in [
        "%Y-%m-%d %H:%M:%S%.f%:z",
        "%Y-%m-%d %H:%M:%S%.f%z",
        "%Y-%m-%dT%H:%M:%S%.f%z",
    ] {
        if let Ok(t) = DateTime::parse_from_str(s, fmt) {
            return Some(t.timestamp_micros());
        }
    }
    for fmt in ["%Y-%m-%dT%H:%M:%S%.f", "%Y-%m-%d %H:%M:%S%.f"] {
        if let Ok(t) = NaiveDateTime::parse_from_str(s, fmt) {
            return Some(t.and_utc().timestamp_micros());
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timestamps() {
        let utc = parse_timestamp("2024-05-17T10:00:00Z").unwrap();
        assert_eq!(parse_timestamp("2024-05-17T12:00:00+02:00"), Some(utc));
        assert_eq!(parse_timestamp("2024-05-17 10:00:00"), Some(utc));
        assert_eq!(parse_timestamp("2024-05-17T10:00:00.000"), Some(utc));
        assert_eq!(
            parse_timestamp("2024-05-17 10:00:00.5"),
            Some(utc + 500_000)
        );
        assert_eq!(parse_timestamp("yesterday"), None);
    }
}
