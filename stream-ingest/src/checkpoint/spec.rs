//! What a checkpoint's state was computed by: the parts of the pipeline file that the
//! state depends on, recorded in every checkpoint (format 7 on) so that a restart can tell
//! an edit the state survives (a new table, a new aggregate) from one it does not (a
//! changed window or key), before a single event is applied. See [`super::plan`].
//!
//! Each part is kept as canonical text (`tumbling 1m`, `sum(bytes: int64)`): equal text
//! means the state fits, and a refusal can show the old and the new value as the user
//! writes them.

use std::collections::{BTreeMap, BTreeSet};

use arrow::datatypes::Schema;
use serde::{Deserialize, Serialize};
use shared::config::{
    AggregateConfig, FormatConfig, PipelineConfig, SourceConfig, TableConfig, WindowConfig,
};

/// The pipeline-wide parts: a change of any of them is refused.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PipelineSpec {
    /// The source kind (`file`, `tail`, `kafka`, ...): what the checkpointed position means.
    pub source: String,
    /// The input format and its declared fields: what a line parses into.
    pub format: String,
    /// The event-time field and its out-of-orderness bound: what the watermark is.
    pub event_time: String,
    pub tables: Vec<TableSpec>,
}

/// One windowed table.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TableSpec {
    pub name: String,
    pub window: String,
    /// Key columns with their types.
    pub key: Vec<String>,
    pub filter: Option<String>,
    /// The `derive` and `lookup` definitions the table's columns come from (directly or
    /// through one another), in pipeline order.
    pub inputs: Vec<String>,
    pub aggregates: Vec<AggregateSpec>,
}

/// One aggregate: its output column and the state that computes it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AggregateSpec {
    pub name: String,
    /// `fn(column: type)`, with `q` and `sketch` when set: equal text, same state.
    pub state: String,
}

impl PipelineSpec {
    /// The spec of a validated pipeline.
    pub fn of(config: &PipelineConfig) -> PipelineSpec {
        let events = shared::schema::events_of(config);
        PipelineSpec {
            source: source_kind(&config.source).to_string(),
            format: format_text(&config.format),
            event_time: format!(
                "{} with max_out_of_orderness {}",
                config.event_time.field, config.event_time.max_out_of_orderness
            ),
            tables: config
                .tables
                .iter()
                .map(|t| TableSpec::of(t, config, &events))
                .collect(),
        }
    }

    pub fn table(&self, name: &str) -> Option<&TableSpec> {
        self.tables.iter().find(|t| t.name == name)
    }
}

impl TableSpec {
    fn of(t: &TableConfig, config: &PipelineConfig, events: &Schema) -> TableSpec {
        TableSpec {
            name: t.name.clone(),
            window: window_text(&t.window),
            key: t.key.iter().map(|k| typed(k, events)).collect(),
            filter: t.filter.clone(),
            inputs: inputs_of(t, config),
            aggregates: t
                .aggregates
                .iter()
                .map(|a| AggregateSpec {
                    name: a.name.clone(),
                    state: aggregate_text(a, events),
                })
                .collect(),
        }
    }

    pub fn aggregate(&self, name: &str) -> Option<&AggregateSpec> {
        self.aggregates.iter().find(|a| a.name == name)
    }
}

pub fn source_kind(source: &SourceConfig) -> &'static str {
    match source {
        SourceConfig::File { .. } => "file",
        SourceConfig::Stdin => "stdin",
        SourceConfig::Tail { .. } => "tail",
        SourceConfig::Generate(_) => "generate",
        SourceConfig::Kafka(_) => "kafka",
    }
}

fn format_text(format: &FormatConfig) -> String {
    let fields = |fields: &[shared::config::FieldConfig]| {
        let f: Vec<String> = fields
            .iter()
            .map(|f| format!("{}: {}", f.name, f.data_type))
            .collect();
        f.join(", ")
    };
    match format {
        FormatConfig::Apache => "apache".into(),
        FormatConfig::Ndjson { fields: f } => format!("ndjson ({})", fields(f)),
        FormatConfig::Csv {
            fields: f,
            header,
            delimiter,
        } => format!(
            "csv ({}; header {header}, delimiter {delimiter:?})",
            fields(f)
        ),
    }
}

pub fn window_text(window: &WindowConfig) -> String {
    match window {
        WindowConfig::Tumbling { size } => format!("tumbling {size}"),
        WindowConfig::Sliding { size, slide } => format!("sliding {size} every {slide}"),
        WindowConfig::Session { gap } => format!("session gap {gap}"),
    }
}

fn typed(column: &str, events: &Schema) -> String {
    match events.field_with_name(column) {
        Ok(f) => format!("{column}: {}", f.data_type()),
        Err(_) => column.to_string(),
    }
}

fn aggregate_text(a: &AggregateConfig, events: &Schema) -> String {
    let mut s = format!(
        "{}({})",
        a.function.as_str(),
        a.column.as_deref().map_or("*".into(), |c| typed(c, events))
    );
    if let Some(q) = a.q {
        s.push_str(&format!(" q {q}"));
    }
    if a.sketch {
        s.push_str(" with sketch");
    }
    s
}

/// The words of an expression that can name a column.
fn identifiers(expr: &str) -> impl Iterator<Item = &str> {
    expr.split(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
        .filter(|w| w.chars().next().is_some_and(|c| !c.is_ascii_digit()))
}

/// The `derive` and `lookup` definitions a table reads, directly or through one another.
fn inputs_of(t: &TableConfig, config: &PipelineConfig) -> Vec<String> {
    // Which definition makes each column (a later one of the same name wins, as in SQL).
    let mut made_by: BTreeMap<&str, (usize, String, Vec<&str>)> = BTreeMap::new();
    for (i, d) in config.derive.iter().enumerate() {
        let text = format!("derive {} = {}", d.name, d.expr);
        made_by.insert(&d.name, (i, text, identifiers(&d.expr).collect()));
    }
    let base = config.derive.len();
    for (i, l) in config.lookup.iter().enumerate() {
        let text = format!(
            "lookup {} on {} = {} columns {:?} defaults {:?}",
            l.table,
            l.on.field(),
            l.on.column(),
            l.columns,
            l.defaults
        );
        let columns = lookup_columns(l, config);
        for c in columns {
            made_by.insert(c, (base + i, text.clone(), vec![l.on.field()]));
        }
    }
    let mut todo: Vec<&str> = t.key.iter().map(String::as_str).collect();
    todo.extend(t.aggregates.iter().filter_map(|a| a.column.as_deref()));
    if let Some(f) = &t.filter {
        todo.extend(identifiers(f));
    }
    let mut seen = BTreeSet::new();
    let mut used = BTreeMap::new();
    while let Some(column) = todo.pop() {
        if !seen.insert(column) {
            continue;
        }
        if let Some((order, text, reads)) = made_by.get(column) {
            used.insert(*order, text.clone());
            todo.extend(reads.iter().copied());
        }
    }
    used.into_values().collect()
}

/// The columns a lookup adds.
fn lookup_columns<'a>(
    l: &'a shared::config::LookupConfig,
    config: &'a PipelineConfig,
) -> Vec<&'a str> {
    match config.dimensions.iter().find(|d| d.name == l.table) {
        Some(d) => shared::schema::lookup_columns(l, d)
            .into_iter()
            .map(|f| f.name.as_str())
            .collect(),
        None => l.columns.iter().map(String::as_str).collect(),
    }
}
