//! Arrow schemas, derived from the pipeline config in one place: the writer (`stream-ingest`)
//! and the reader (`batch-analyze`) both take them from here, so the two can never disagree.
//!
//! - [`event_schema`]: the columns of a parsed event, per input format;
//! - [`table_schema`]: a windowed table: `window_start`, `window_end`, the key columns, the
//!   aggregates, in that order;
//! - [`file_schema`]: the same minus the key columns that became partition directories;
//! - [`late_schema`]: the late-events table.
//!
//! Timestamps are microseconds in UTC everywhere (Parquet `TIMESTAMP(MICROS, UTC)`).

use std::sync::Arc;

use arrow::datatypes::{DataType, Field, Schema, SchemaRef};

use crate::config::model::{
    AggregateFn, DimensionConfig, FieldConfig, FormatConfig, LookupConfig, PipelineConfig,
    ReportConfig, SourceConfig, TableConfig, TimePartitioning,
};
use crate::types::{arrow_type, timestamp_type};

pub const WINDOW_START: &str = "window_start";
pub const WINDOW_END: &str = "window_end";
/// Partition column of the day (`YYYY-MM-DD`, UTC).
pub const DT: &str = "dt";
/// Partition column of the hour (`HH`, UTC).
pub const HOUR: &str = "hour";
/// Column of the late-events table naming the windowed table that dropped the event.
pub const LATE_TABLE: &str = "table";
/// Column of the late-events table holding the watermark when the event was dropped.
pub const LATE_WATERMARK: &str = "watermark";

/// The fields a Kafka source adds to every event, after the parsed ones: the record's
/// partition, offset and timestamp (usable as keys, filters, aggregate inputs, event time).
pub const KAFKA_FIELDS: [&str; 3] = ["kafka_partition", "kafka_offset", "kafka_timestamp"];

/// Columns of an event of a pipeline as it reaches the tables: [`source_events_of`], then
/// the `derive` columns, then the `lookup` columns. (A `derive` expression that does not
/// compile ends the list there; validation reports it.)
pub fn events_of(config: &PipelineConfig) -> SchemaRef {
    with_lookup_columns(config, derived_events_of(config))
}

/// `derived` (the events after `derive`) with the `lookup` columns appended.
pub fn with_lookup_columns(config: &PipelineConfig, derived: SchemaRef) -> SchemaRef {
    if config.lookup.is_empty() {
        return derived;
    }
    let mut fields: Vec<Field> = derived
        .fields()
        .iter()
        .map(|f| f.as_ref().clone())
        .collect();
    for l in &config.lookup {
        if let Some(d) = config.dimension(&l.table) {
            for c in lookup_columns(l, d) {
                fields.push(Field::new(&c.name, arrow_type(c.data_type), true));
            }
        }
    }
    Arc::new(Schema::new(fields))
}

/// Columns of an event of a pipeline before `lookup`: [`source_events_of`], then the
/// `derive` columns (up to the first that does not compile; validation reports it).
pub fn derived_events_of(config: &PipelineConfig) -> SchemaRef {
    let source = source_events_of(config);
    match crate::expr::Derivations::compile(&source, &config.derive) {
        Ok(d) => d.schema(&source).clone(),
        Err(_) => source,
    }
}

/// The dimension columns a lookup adds: those it names (unknown names skipped; validation
/// reports them), or every column but the key.
pub fn lookup_columns<'a>(l: &LookupConfig, d: &'a DimensionConfig) -> Vec<&'a FieldConfig> {
    if l.columns.is_empty() {
        return d
            .columns
            .iter()
            .filter(|c| c.name != l.on.column())
            .collect();
    }
    l.columns
        .iter()
        .filter_map(|n| d.columns.iter().find(|c| &c.name == n))
        .collect()
}

/// Columns of an event of a pipeline before `derive`: the parsed ones ([`event_schema`]),
/// then what the source adds ([`KAFKA_FIELDS`] for a Kafka source).
pub fn source_events_of(config: &PipelineConfig) -> SchemaRef {
    let parsed = event_schema(&config.format);
    if !matches!(config.source, SourceConfig::Kafka(_)) {
        return parsed;
    }
    let mut fields: Vec<Field> = parsed.fields().iter().map(|f| f.as_ref().clone()).collect();
    // Nullable: a Kafka pipeline run on a file (`--input`) has no record to take them from.
    fields.push(Field::new(KAFKA_FIELDS[0], DataType::Int32, true));
    fields.push(Field::new(KAFKA_FIELDS[1], DataType::Int64, true));
    fields.push(Field::new(KAFKA_FIELDS[2], timestamp_type(), true));
    Arc::new(Schema::new(fields))
}

/// Columns of a parsed event.
pub fn event_schema(format: &FormatConfig) -> SchemaRef {
    match format {
        FormatConfig::Apache => Arc::new(Schema::new(vec![
            Field::new("host", DataType::Utf8, false),
            Field::new("ts", timestamp_type(), false),
            Field::new("request", DataType::Utf8, false),
            Field::new("method", DataType::Utf8, false),
            Field::new("path", DataType::Utf8, true),
            Field::new("protocol", DataType::Utf8, true),
            Field::new("status", DataType::Int32, false),
            Field::new("bytes", DataType::Int64, false),
            Field::new("referer", DataType::Utf8, true),
            Field::new("user_agent", DataType::Utf8, true),
        ])),
        FormatConfig::Ndjson { fields } | FormatConfig::Csv { fields, .. } => {
            Arc::new(Schema::new(
                fields
                    .iter()
                    .map(|f| Field::new(&f.name, arrow_type(f.data_type), true))
                    .collect::<Vec<_>>(),
            ))
        }
    }
}

fn is_integer(t: &DataType) -> bool {
    matches!(t, DataType::Int32 | DataType::Int64)
}

fn is_numeric(t: &DataType) -> bool {
    is_integer(t) || matches!(t, DataType::Float64)
}

/// The output type of an aggregate over a column of type `input` (`None`: over rows).
pub fn aggregate_output_type(
    function: AggregateFn,
    input: Option<&DataType>,
) -> Result<DataType, String> {
    match (function, input) {
        (AggregateFn::Count | AggregateFn::CountDistinct, _) => Ok(DataType::Int64),
        (AggregateFn::ApproxDistinct, Some(_)) => Ok(DataType::Int64),
        (AggregateFn::ApproxPercentile, Some(t)) if is_numeric(t) => Ok(DataType::Float64),
        // In a report, over a sketch column (`<name>_sketch`): the quantile of the merge.
        (AggregateFn::ApproxPercentile, Some(DataType::Binary)) => Ok(DataType::Float64),
        (AggregateFn::Sum, Some(t)) if is_integer(t) => Ok(DataType::Int64),
        (AggregateFn::Sum, Some(DataType::Float64)) => Ok(DataType::Float64),
        (AggregateFn::Avg, Some(t)) if is_numeric(t) => Ok(DataType::Float64),
        (AggregateFn::Min | AggregateFn::Max, Some(t))
            if is_numeric(t) || matches!(t, DataType::Timestamp(..)) =>
        {
            Ok(t.clone())
        }
        (f, Some(t)) => Err(format!(
            "`{}` cannot aggregate a column of type {t}",
            f.as_str()
        )),
        (f, None) => Err(format!("`{}` needs a `column`", f.as_str())),
    }
}

/// The schema of a windowed table: window bounds, key columns, aggregates.
pub fn table_schema(table: &TableConfig, events: &Schema) -> Result<SchemaRef, String> {
    let mut fields = vec![
        Field::new(WINDOW_START, timestamp_type(), false),
        Field::new(WINDOW_END, timestamp_type(), false),
    ];
    for key in &table.key {
        let f = events
            .field_with_name(key)
            .map_err(|_| format!("no event field `{key}`"))?;
        fields.push(f.clone());
    }
    for agg in &table.aggregates {
        let input = match &agg.column {
            Some(c) => Some(
                events
                    .field_with_name(c)
                    .map_err(|_| format!("no event field `{c}`"))?
                    .data_type(),
            ),
            None => None,
        };
        let t = aggregate_output_type(agg.function, input)?;
        // Every aggregate column is nullable: `sum` and the others are NULL when every
        // input was NULL, and any of them (`count` too) when it was added to the pipeline
        // while the window was open (its rows then carry NULL: not every event was seen).
        fields.push(Field::new(&agg.name, t, true));
        if let Some(sketch) = agg.sketch_column() {
            fields.push(Field::new(sketch, DataType::Binary, true));
        }
    }
    Ok(Arc::new(Schema::new(fields)))
}

/// The columns stored inside a table's Parquet files: the table schema minus the key
/// columns that are partition directories.
pub fn file_schema(table: &TableConfig, table_schema: &Schema) -> SchemaRef {
    Arc::new(Schema::new(
        table_schema
            .fields()
            .iter()
            .filter(|f| !table.partition_by.contains(f.name()))
            .cloned()
            .collect::<Vec<_>>(),
    ))
}

/// The partition columns of a lake table, outermost first: `dt`, `hour` (unless partitioned
/// by day), then the table's `partition_by` keys.
pub fn partition_columns(partition_by: &[String], time: TimePartitioning) -> Vec<String> {
    let mut cols = vec![DT.to_string()];
    if time == TimePartitioning::Hour {
        cols.push(HOUR.to_string());
    }
    cols.extend(partition_by.iter().cloned());
    cols
}

/// A lake table as the batch stage sees it: the file columns, then every partition column
/// as a string (Hive style).
pub fn read_schema(file_schema: &Schema, partition_columns: &[String]) -> SchemaRef {
    let mut fields: Vec<Field> = file_schema
        .fields()
        .iter()
        .map(|f| f.as_ref().clone())
        .collect();
    fields.extend(
        partition_columns
            .iter()
            .map(|c| Field::new(c, DataType::Utf8, true)),
    );
    Arc::new(Schema::new(fields))
}

/// The late-events table: which table dropped the event, the watermark then, and the event.
pub fn late_schema(events: &Schema) -> SchemaRef {
    let mut fields = vec![
        Arc::new(Field::new(LATE_TABLE, DataType::Utf8, false)),
        Arc::new(Field::new(LATE_WATERMARK, timestamp_type(), false)),
    ];
    fields.extend(events.fields().iter().cloned());
    Arc::new(Schema::new(fields))
}

/// The Arrow schema of a dimension table.
pub fn dimension_schema(d: &DimensionConfig) -> SchemaRef {
    Arc::new(Schema::new(
        d.columns
            .iter()
            .map(|f| Field::new(&f.name, arrow_type(f.data_type), true))
            .collect::<Vec<_>>(),
    ))
}

/// The type of `col` in a declared report's input: the `from` table's read schema, then the
/// joined dimensions' columns (the first that has it).
pub fn report_column_type(
    cfg: &PipelineConfig,
    r: &ReportConfig,
    input: &Schema,
    col: &str,
) -> Option<DataType> {
    if let Ok(f) = input.field_with_name(col) {
        return Some(f.data_type().clone());
    }
    r.join
        .iter()
        .filter_map(|j| cfg.dimension(&j.table))
        .flat_map(|d| &d.columns)
        .find(|f| f.name == col)
        .map(|f| arrow_type(f.data_type))
}

/// Lookup keys match by value: the same type, or two integer types.
pub fn lookup_key_types_match(a: &DataType, b: &DataType) -> bool {
    a == b || (is_integer(a) && is_integer(b))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::model::{AggregateConfig, FieldType, WindowConfig};
    use crate::duration::HumanDuration;

    fn status_table() -> TableConfig {
        TableConfig {
            rolling: Default::default(),
            name: "status_1m".into(),
            window: WindowConfig::Tumbling {
                size: HumanDuration::from_secs(60),
            },
            key: vec!["status".into()],
            aggregates: vec![
                AggregateConfig {
                    name: "requests".into(),
                    function: AggregateFn::Count,
                    column: None,
                    q: None,
                    sketch: false,
                },
                AggregateConfig {
                    name: "bytes".into(),
                    function: AggregateFn::Sum,
                    column: Some("bytes".into()),
                    q: None,
                    sketch: false,
                },
                AggregateConfig {
                    name: "unique_hosts".into(),
                    function: AggregateFn::CountDistinct,
                    column: Some("host".into()),
                    q: None,
                    sketch: false,
                },
            ],
            filter: None,
            partition_by: vec![],
        }
    }

    #[test]
    fn reference_table_has_the_spec_columns() {
        let events = event_schema(&FormatConfig::Apache);
        let schema = table_schema(&status_table(), &events).unwrap();
        let cols: Vec<_> = schema
            .fields()
            .iter()
            .map(|f| (f.name().as_str(), f.data_type().clone()))
            .collect();
        assert_eq!(
            cols,
            vec![
                ("window_start", timestamp_type()),
                ("window_end", timestamp_type()),
                ("status", DataType::Int32),
                ("requests", DataType::Int64),
                ("bytes", DataType::Int64),
                ("unique_hosts", DataType::Int64),
            ]
        );
    }

    #[test]
    fn partition_keys_leave_the_file() {
        let mut t = status_table();
        t.partition_by = vec!["status".into()];
        let events = event_schema(&FormatConfig::Apache);
        let schema = table_schema(&t, &events).unwrap();
        let file = file_schema(&t, &schema);
        assert!(file.field_with_name("status").is_err());
        assert_eq!(file.fields().len(), schema.fields().len() - 1);
    }

    #[test]
    fn aggregate_types() {
        assert_eq!(
            aggregate_output_type(AggregateFn::Sum, Some(&DataType::Int32)).unwrap(),
            DataType::Int64
        );
        assert_eq!(
            aggregate_output_type(AggregateFn::Avg, Some(&DataType::Int64)).unwrap(),
            DataType::Float64
        );
        assert!(aggregate_output_type(AggregateFn::Sum, Some(&DataType::Utf8)).is_err());
        assert!(aggregate_output_type(AggregateFn::Max, None).is_err());
        assert_eq!(
            aggregate_output_type(AggregateFn::Max, Some(&timestamp_type())).unwrap(),
            timestamp_type()
        );
    }

    #[test]
    fn dimension_columns_are_nullable_and_typed() {
        let d = DimensionConfig {
            name: "codes".into(),
            path: "codes.csv".into(),
            columns: vec![
                FieldConfig {
                    name: "status".into(),
                    data_type: FieldType::Int32,
                },
                FieldConfig {
                    name: "seen".into(),
                    data_type: FieldType::Timestamp,
                },
            ],
            delimiter: ',',
        };
        let s = dimension_schema(&d);
        let cols: Vec<_> = s
            .fields()
            .iter()
            .map(|f| (f.name().as_str(), f.data_type().clone(), f.is_nullable()))
            .collect();
        assert_eq!(
            cols,
            vec![
                ("status", DataType::Int32, true),
                ("seen", timestamp_type(), true)
            ]
        );
    }

    #[test]
    fn lookup_keys_match_same_types_and_any_two_integers() {
        assert!(lookup_key_types_match(&DataType::Int32, &DataType::Int64));
        assert!(lookup_key_types_match(&DataType::Utf8, &DataType::Utf8));
        assert!(!lookup_key_types_match(&DataType::Utf8, &DataType::Int32));
        assert!(!lookup_key_types_match(
            &DataType::Float64,
            &DataType::Int64
        ));
    }
}
