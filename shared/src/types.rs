//! The Arrow type of each declared field type, and the one timestamp type of the project. A
//! leaf module (it imports only the config model), so that [`crate::schema`] and
//! [`crate::expr`], which both need these types, do not import each other for them.

use arrow::datatypes::{DataType, TimeUnit};

use crate::config::model::FieldType;

/// The one timestamp type of the project: microseconds, UTC.
pub fn timestamp_type() -> DataType {
    DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into()))
}

pub fn arrow_type(t: FieldType) -> DataType {
    match t {
        FieldType::String => DataType::Utf8,
        FieldType::Int32 => DataType::Int32,
        FieldType::Int64 => DataType::Int64,
        FieldType::Float64 => DataType::Float64,
        FieldType::Bool => DataType::Boolean,
        FieldType::Timestamp => timestamp_type(),
    }
}
