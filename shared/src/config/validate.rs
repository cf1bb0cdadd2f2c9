//! Checks on a parsed pipeline that serde cannot do: names that must exist, be unique or not
//! clash, types that must fit, durations that must be positive. A pure function that returns
//! every problem at once, so a user fixes a file in one round.

use std::collections::HashSet;

use arrow::datatypes::{DataType, Schema};

use super::filter::{self, Test, Value};
use super::load::{LoadedConfig, Problem};
use super::model::*;
use crate::lake::LakeRoot;
use crate::schema;

/// At most this many key columns per windowed table.
pub const MAX_KEY_COLUMNS: usize = 8;

struct Checker<'a> {
    loaded: &'a LoadedConfig,
    problems: Vec<Problem>,
}

impl Checker<'_> {
    fn report(&mut self, path: impl Into<String>, message: impl Into<String>) {
        self.problems.push(self.loaded.problem(path, message));
    }

    /// Names that become directories, files or SQL identifiers.
    fn check_name(&mut self, path: String, name: &str) {
        if name.is_empty() {
            self.report(path, "must not be empty");
        } else if !name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
            || name.starts_with(['_', '-'])
        {
            self.report(
                path,
                format!("`{name}` is not a usable name: use letters, digits, `_` and `-`, not starting with `_` or `-`"),
            );
        }
    }

    fn check_unique<'n>(
        &mut self,
        seen: &mut HashSet<&'n str>,
        path: String,
        name: &'n str,
        what: &str,
    ) {
        if !seen.insert(name) {
            self.report(path, format!("{what} `{name}` is defined twice"));
        }
    }

    fn check_rolling(&mut self, path: &str, r: &RollingConfig) {
        if r.max_rows == 0 {
            self.report(format!("{path}.max_rows"), "must be at least 1");
        }
        if r.max_bytes.0 == 0 {
            self.report(format!("{path}.max_bytes"), "must be larger than 0B");
        }
        if r.min_size > r.max_bytes {
            self.report(
                format!("{path}.min_size"),
                format!("{} is larger than max_bytes ({})", r.min_size, r.max_bytes),
            );
        }
        if let Some(d) = &r.max_open_time {
            self.check_positive(format!("{path}.max_open_time"), d);
        }
    }

    fn check_positive(&mut self, path: String, d: &crate::HumanDuration) {
        if d.is_zero() {
            self.report(path, "must be longer than zero");
        }
    }
}

/// Every problem of the file, in file order of the checks.
pub fn validate(loaded: &LoadedConfig) -> Vec<Problem> {
    let cfg = &loaded.config;
    let mut c = Checker {
        loaded,
        problems: Vec::new(),
    };

    // The name is a folder of the lake (`_checkpoints/<name>`).
    c.check_name("name".into(), &cfg.name);

    check_format(&mut c, &cfg.format);
    let derived = check_derive(&mut c, cfg);
    if let Some(derived) = &derived {
        check_lookups(&mut c, cfg, derived);
    }
    let events = schema::with_lookup_columns(
        cfg,
        derived.unwrap_or_else(|| schema::source_events_of(cfg)),
    );

    match events.field_with_name(&cfg.event_time.field) {
        Ok(f) if matches!(f.data_type(), DataType::Timestamp(..)) => {}
        Ok(f) => c.report(
            "event_time.field",
            format!(
                "`{}` is of type {}, not a timestamp",
                cfg.event_time.field,
                f.data_type()
            ),
        ),
        Err(_) => c.report(
            "event_time.field",
            format!(
                "no event field `{}` (fields: {})",
                cfg.event_time.field,
                field_list(&events)
            ),
        ),
    }

    if let Some(idle) = &cfg.event_time.idle_timeout {
        c.check_positive("event_time.idle_timeout".into(), idle);
    }
    if let SourceConfig::Tail { poll_interval, .. } = &cfg.source {
        c.check_positive("source.poll_interval".into(), poll_interval);
    }
    if let SourceConfig::Kafka(k) = &cfg.source {
        check_kafka(&mut c, k, cfg);
    }
    if let SourceConfig::Generate(g) = &cfg.source {
        if !(g.events_per_second.is_finite() && g.events_per_second > 0.0) {
            c.report("source.events_per_second", "must be a positive number");
        }
        if let Some(rate) = &g.rate {
            c.check_positive("source.rate".into(), rate);
        }
        if g.hosts == 0 {
            c.report("source.hosts", "must be at least 1");
        }
        if g.paths == 0 {
            c.report("source.paths", "must be at least 1");
        }
        if !matches!(cfg.format, FormatConfig::Apache) {
            c.report(
                "format.kind",
                "the `generate` source writes access logs: use `kind: apache`",
            );
        }
    }
    c.check_positive("checkpoint.interval".into(), &cfg.checkpoint.interval);
    if cfg.state.memory_budget.0 == 0 {
        c.report("state.memory_budget", "must be more than 0B");
    }
    if cfg.checkpoint.keep == 0 {
        c.report("checkpoint.keep", "keep at least one checkpoint");
    }

    // Names in the lake: tables, the late table, dimensions share one namespace in reports.
    let mut names = HashSet::new();
    if cfg.tables.is_empty() {
        c.report("tables", "at least one windowed table is needed");
    }
    for (i, t) in cfg.tables.iter().enumerate() {
        let p = format!("tables[{i}]");
        c.check_name(format!("{p}.name"), &t.name);
        c.check_unique(&mut names, format!("{p}.name"), &t.name, "table");
        check_table(&mut c, &p, t, &events);
        c.check_rolling(&format!("{p}.rolling"), &t.rolling);
    }
    if let Some(addr) = &cfg.metrics.addr
        && let Err(e) = addr.parse::<std::net::SocketAddr>()
    {
        c.report(
            "metrics.addr",
            format!("`{addr}` is not an address to listen on ({e}): write HOST:PORT with an IP, e.g. `127.0.0.1:9464` or `0.0.0.0:9464`"),
        );
    }
    if let Some(cluster) = &cfg.engine.cluster
        && let Err(e) = super::Engine::parse(cluster)
    {
        c.report("engine.cluster", e);
    }
    if let Some(late) = &cfg.late_events {
        c.check_rolling("late_events.rolling", &late.rolling);
        c.check_name("late_events.table".into(), &late.table);
        c.check_unique(&mut names, "late_events.table".into(), &late.table, "table");
    }
    for (i, d) in cfg.dimensions.iter().enumerate() {
        let p = format!("dimensions[{i}]");
        c.check_name(format!("{p}.name"), &d.name);
        c.check_unique(&mut names, format!("{p}.name"), &d.name, "table");
        check_fields(&mut c, &format!("{p}.columns"), &d.columns);
        if !d.delimiter.is_ascii() {
            c.report(format!("{p}.delimiter"), "must be one ASCII character");
        }
    }

    if let Err(e) = LakeRoot::parse(&cfg.lake.root) {
        c.report("lake.root", e);
    }

    let mut report_names = HashSet::new();
    let mut report_paths = Vec::new();
    for (i, r) in cfg.reports.iter().enumerate() {
        let p = format!("reports[{i}]");
        c.check_name(format!("{p}.name"), &r.name);
        c.check_unique(&mut report_names, format!("{p}.name"), &r.name, "report");
        check_report(&mut c, &p, r, cfg, &events);
        check_report_outputs(&mut c, &p, r, cfg, &mut report_paths);
    }
    c.problems
}

/// The report's lake table and chart: what can be checked without planning the query (the
/// columns they name are checked against the planned report by `batch-analyze validate`).
fn check_report_outputs(
    c: &mut Checker,
    p: &str,
    r: &ReportConfig,
    cfg: &PipelineConfig,
    seen: &mut Vec<String>,
) {
    if let Some(lake) = &r.lake {
        let path = lake.table_path(&r.name);
        let field = format!("{p}.lake.path");
        let segments: Vec<&str> = path.split('/').collect();
        for s in &segments {
            if s.is_empty()
                || s.starts_with(['_', '.', '-'])
                || !s
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
            {
                c.report(
                    field.clone(),
                    format!("`{path}` is not a usable lake path: `/`-separated names of letters, digits, `_` and `-`, none starting with `_`, `.` or `-`"),
                );
                break;
            }
        }
        let tables = cfg
            .tables
            .iter()
            .map(|t| t.name.as_str())
            .chain(cfg.late_events.iter().map(|l| l.table.as_str()));
        for t in tables {
            if segments[0] == t {
                c.report(
                    field.clone(),
                    format!("`{path}` is inside the lake table `{t}`"),
                );
            }
        }
        let nested = |a: &str, b: &str| a == b || a.starts_with(&format!("{b}/"));
        if let Some(other) = seen.iter().find(|o| nested(&path, o) || nested(o, &path)) {
            c.report(
                field.clone(),
                format!("`{path}` overlaps the lake path `{other}` of another report"),
            );
        }
        seen.push(path);
        let mut cols = HashSet::new();
        for (i, col) in lake.partition_by.iter().enumerate() {
            c.check_unique(
                &mut cols,
                format!("{p}.lake.partition_by[{i}]"),
                col,
                "partition column",
            );
        }
    }
    if let Some(chart) = &r.chart {
        match chart.kind {
            ChartKind::Bar if chart.per.is_some() => c.report(
                format!("{p}.chart.per"),
                "`per` is for `hbar` charts; a `bar` chart stacks by `series`",
            ),
            ChartKind::Hbar if chart.series.is_some() => c.report(
                format!("{p}.chart.series"),
                "`series` is for `bar` charts; an `hbar` chart splits by `per`",
            ),
            _ => {}
        }
    }
}

fn field_list(schema: &Schema) -> String {
    schema
        .fields()
        .iter()
        .map(|f| f.name().as_str())
        .collect::<Vec<_>>()
        .join(", ")
}

fn check_fields(c: &mut Checker, path: &str, fields: &[FieldConfig]) {
    if fields.is_empty() {
        c.report(path, "at least one field is needed");
    }
    let mut seen = HashSet::new();
    for (i, f) in fields.iter().enumerate() {
        if f.name.is_empty() {
            c.report(format!("{path}[{i}].name"), "must not be empty");
        }
        c.check_unique(&mut seen, format!("{path}[{i}].name"), &f.name, "field");
    }
}

fn check_kafka(c: &mut Checker, k: &KafkaConfig, cfg: &PipelineConfig) {
    if k.brokers.split(',').any(|b| b.trim().is_empty()) {
        c.report(
            "source.brokers",
            "give `host:port`, or several separated by commas",
        );
    }
    let topics = k.topic.names();
    if topics.is_empty() || topics.iter().any(|t| t.is_empty()) {
        c.report("source.topic", "give a topic name, or a list of them");
    }
    if k.group.is_empty() {
        c.report(
            "source.group",
            "give the consumer group of the pipeline's members",
        );
    }
    for key in [
        "group.id",
        "bootstrap.servers",
        "enable.auto.commit",
        "auto.offset.reset",
    ] {
        if k.properties.contains_key(key) {
            c.report(
                format!("source.properties.{key}"),
                "set by the stage itself (use `brokers`, `group` and `start`)",
            );
        }
    }
    // Each Kafka partition writes partial rows of a window and key; they merge exactly
    // for these aggregates only.
    for (i, t) in cfg.tables.iter().enumerate() {
        for (j, a) in t.aggregates.iter().enumerate() {
            if a.function == AggregateFn::Avg {
                c.report(
                    format!("tables[{i}].aggregates[{j}].fn"),
                    "`avg` cannot merge the partial rows that each Kafka partition writes; store `sum` and `count` instead",
                );
            } else if is_sketched(a.function) && !a.sketch {
                c.report(
                    format!("tables[{i}].aggregates[{j}].fn"),
                    format!(
                        "`{}` merges the partial rows that each Kafka partition writes only through its sketch: add `sketch: true`",
                        a.function.as_str()
                    ),
                );
            }
        }
    }
}

/// Aggregates that keep a sketch and can write it (`sketch: true`).
fn is_sketched(f: AggregateFn) -> bool {
    matches!(
        f,
        AggregateFn::ApproxDistinct | AggregateFn::ApproxPercentile
    )
}

/// `q` and `sketch` of an aggregate, wherever it is declared.
fn check_aggregate_options(c: &mut Checker, ap: &str, a: &AggregateConfig, in_table: bool) {
    match (a.function, a.q) {
        (AggregateFn::ApproxPercentile, None) => c.report(
            format!("{ap}.q"),
            "`approx_percentile` needs `q`, the quantile (e.g. 0.95)",
        ),
        (AggregateFn::ApproxPercentile, Some(q)) if !(0.0..=1.0).contains(&q) => c.report(
            format!("{ap}.q"),
            format!("{q} is not a quantile between 0 and 1"),
        ),
        (AggregateFn::ApproxPercentile, Some(_)) | (_, None) => {}
        (f, Some(_)) => c.report(
            format!("{ap}.q"),
            format!("only `approx_percentile` takes `q`, not `{}`", f.as_str()),
        ),
    }
    if a.sketch && !(in_table && is_sketched(a.function)) {
        c.report(
            format!("{ap}.sketch"),
            if in_table {
                "only `approx_distinct` and `approx_percentile` keep a sketch"
            } else {
                "sketches are written by windowed tables; a report reads them (`column: <name>_sketch`)"
            },
        );
    }
}

/// `derive`: names that do not clash, expressions DataFusion plans against the fields
/// before them.
fn check_derive(c: &mut Checker, cfg: &PipelineConfig) -> Option<arrow::datatypes::SchemaRef> {
    let source = schema::source_events_of(cfg);
    let mut names = HashSet::new();
    for (i, d) in cfg.derive.iter().enumerate() {
        c.check_name(format!("derive[{i}].name"), &d.name);
        c.check_unique(
            &mut names,
            format!("derive[{i}].name"),
            &d.name,
            "derived column",
        );
    }
    match crate::expr::Derivations::compile(&source, &cfg.derive) {
        Ok(d) => Some(d.schema(&source).clone()),
        Err((i, e)) => {
            let at = if e.contains("already a field") {
                "name"
            } else {
                "expr"
            };
            c.report(format!("derive[{i}].{at}"), e);
            None
        }
    }
}

/// `lookup`: a dimension table, a key on both sides with types that match, columns that
/// exist and do not clash, defaults of the right type.
fn check_lookups(c: &mut Checker, cfg: &PipelineConfig, before: &Schema) {
    let mut fields: HashSet<String> = before.fields().iter().map(|f| f.name().clone()).collect();
    for (i, l) in cfg.lookup.iter().enumerate() {
        let p = format!("lookup[{i}]");
        let Some(d) = cfg.dimension(&l.table) else {
            let known: Vec<&str> = cfg.dimensions.iter().map(|d| d.name.as_str()).collect();
            c.report(
                format!("{p}.table"),
                format!(
                    "no dimension `{}` (dimensions: {})",
                    l.table,
                    known.join(", ")
                ),
            );
            continue;
        };
        let key = d.columns.iter().find(|k| k.name == l.on.column());
        match (before.field_with_name(l.on.field()), key) {
            (Err(_), _) => c.report(
                format!("{p}.on"),
                format!("no event field `{}` (fields: {})", l.on.field(), field_list(before)),
            ),
            (_, None) => c.report(
                format!("{p}.on"),
                format!("dimension `{}` has no column `{}`", d.name, l.on.column()),
            ),
            (Ok(f), Some(k)) if !lookup_key_types_match(f.data_type(), &schema::arrow_type(k.data_type)) => c.report(
                format!("{p}.on"),
                format!(
                    "event field `{}` is {} and dimension column `{}` is {}; they cannot be matched",
                    f.name(),
                    f.data_type(),
                    k.name,
                    schema::arrow_type(k.data_type)
                ),
            ),
            _ => {}
        }
        for (j, col) in l.columns.iter().enumerate() {
            if !d.columns.iter().any(|k| &k.name == col) {
                c.report(
                    format!("{p}.columns[{j}]"),
                    format!("dimension `{}` has no column `{col}`", d.name),
                );
            }
        }
        let added = schema::lookup_columns(l, d);
        for col in &added {
            if !fields.insert(col.name.clone()) {
                c.report(
                    format!("{p}.columns"),
                    format!(
                        "`{}` is already a field of the events; add only other columns",
                        col.name
                    ),
                );
            }
        }
        for (name, v) in &l.defaults {
            match added.iter().find(|k| &k.name == name) {
                None => c.report(
                    format!("{p}.defaults.{name}"),
                    format!("`{name}` is not a column this lookup adds"),
                ),
                Some(k) if !literal_fits(v, &schema::arrow_type(k.data_type)) => c.report(
                    format!("{p}.defaults.{name}"),
                    format!(
                        "`{name}` is {}; {v:?} does not fit",
                        schema::arrow_type(k.data_type)
                    ),
                ),
                Some(_) => {}
            }
        }
    }
}

/// Lookup keys match by value: the same type, or two integer types.
pub fn lookup_key_types_match(a: &DataType, b: &DataType) -> bool {
    let int = |t: &DataType| matches!(t, DataType::Int32 | DataType::Int64);
    a == b || (int(a) && int(b))
}

fn literal_fits(v: &Literal, t: &DataType) -> bool {
    matches!(
        (v, t),
        (Literal::String(_), DataType::Utf8)
            | (
                Literal::Int(_),
                DataType::Int32 | DataType::Int64 | DataType::Float64
            )
            | (Literal::Float(_), DataType::Float64)
            | (Literal::Bool(_), DataType::Boolean)
    )
}

fn check_format(c: &mut Checker, format: &FormatConfig) {
    match format {
        FormatConfig::Apache => {}
        FormatConfig::Ndjson { fields } => check_fields(c, "format.fields", fields),
        FormatConfig::Csv {
            fields, delimiter, ..
        } => {
            check_fields(c, "format.fields", fields);
            if !delimiter.is_ascii() || *delimiter == '\n' || *delimiter == '"' {
                c.report(
                    "format.delimiter",
                    "must be one ASCII character other than a newline or `\"`",
                );
            }
        }
    }
}

fn check_table(c: &mut Checker, p: &str, t: &TableConfig, events: &Schema) {
    match &t.window {
        WindowConfig::Tumbling { size } => c.check_positive(format!("{p}.window.size"), size),
        WindowConfig::Sliding { size, slide } => {
            c.check_positive(format!("{p}.window.size"), size);
            c.check_positive(format!("{p}.window.slide"), slide);
            if slide > size {
                c.report(
                    format!("{p}.window.slide"),
                    format!("the slide ({slide}) is longer than the window ({size})"),
                );
            }
        }
        WindowConfig::Session { gap } => c.check_positive(format!("{p}.window.gap"), gap),
    }

    if t.key.len() > MAX_KEY_COLUMNS {
        c.report(
            format!("{p}.key"),
            format!("at most {MAX_KEY_COLUMNS} key columns"),
        );
    }
    let mut columns = HashSet::from([
        schema::WINDOW_START,
        schema::WINDOW_END,
        schema::DT,
        schema::HOUR,
    ]);
    for (i, k) in t.key.iter().enumerate() {
        let kp = format!("{p}.key[{i}]");
        if events.field_with_name(k).is_err() {
            c.report(
                kp,
                format!("no event field `{k}` (fields: {})", field_list(events)),
            );
        } else if !columns.insert(k) {
            c.report(
                kp,
                format!("`{k}` is listed twice or clashes with a reserved column"),
            );
        }
    }
    if t.aggregates.is_empty() {
        c.report(
            format!("{p}.aggregates"),
            "at least one aggregate is needed",
        );
    }
    for (i, a) in t.aggregates.iter().enumerate() {
        let ap = format!("{p}.aggregates[{i}]");
        if !columns.insert(&a.name) {
            c.report(
                format!("{ap}.name"),
                format!("`{}` clashes with another column of the table", a.name),
            );
        }
        let input = match &a.column {
            Some(col) => match events.field_with_name(col) {
                Ok(f) => Some(f.data_type()),
                Err(_) => {
                    c.report(
                        format!("{ap}.column"),
                        format!("no event field `{col}` (fields: {})", field_list(events)),
                    );
                    continue;
                }
            },
            None => None,
        };
        if let Err(e) = schema::aggregate_output_type(a.function, input) {
            c.report(format!("{ap}.fn"), e);
        }
        check_aggregate_options(c, &ap, a, true);
    }
    for (i, a) in t.aggregates.iter().enumerate() {
        if let Some(sk) = a.sketch_column()
            && (columns.contains(sk.as_str())
                || t.aggregates[..i]
                    .iter()
                    .any(|b| b.sketch_column() == Some(sk.clone())))
        {
            c.report(
                format!("{p}.aggregates[{i}].name"),
                format!("its sketch column `{sk}` clashes with another column of the table"),
            );
        }
    }
    if let Some(f) = &t.filter {
        check_filter(c, &format!("{p}.filter"), f, events);
    }
    for (i, k) in t.partition_by.iter().enumerate() {
        if !t.key.contains(k) {
            c.report(
                format!("{p}.partition_by[{i}]"),
                format!("`{k}` is not a key column of the table"),
            );
        }
    }
}

/// A filter in the closed condition language gets that language's checks (and messages);
/// any other text must be a boolean SQL expression over the events.
fn check_filter(c: &mut Checker, path: &str, text: &str, events: &Schema) {
    let parsed = match filter::parse(text) {
        Ok(f) => f,
        Err(_) => {
            if let Err(e) = crate::expr::Predicate::compile(text, events) {
                c.report(path, e);
            }
            return;
        }
    };
    for cmp in &parsed.all {
        let Ok(field) = events.field_with_name(&cmp.field) else {
            c.report(
                path,
                format!(
                    "no event field `{}` (fields: {})",
                    cmp.field,
                    field_list(events)
                ),
            );
            continue;
        };
        let values: &[Value] = match &cmp.test {
            Test::Cmp(_, v) => std::slice::from_ref(v),
            Test::In(v) | Test::NotIn(v) => v,
            Test::IsNull | Test::IsNotNull => &[],
        };
        for v in values {
            let fits = matches!(
                (field.data_type(), v),
                (DataType::Utf8, Value::Str(_))
                    | (DataType::Int32 | DataType::Int64, Value::Int(_))
                    | (DataType::Float64, Value::Int(_) | Value::Float(_))
                    | (DataType::Boolean, Value::Bool(_))
            );
            if !fits {
                c.report(
                    path,
                    format!(
                        "`{}` is of type {}; it cannot be compared with {v}",
                        cmp.field,
                        field.data_type()
                    ),
                );
            }
        }
    }
}

/// What a report's `from` names.
enum Input {
    /// A table, with the columns a report can use.
    Table(arrow::datatypes::SchemaRef),
    /// A table whose own definition has problems (reported there).
    Broken,
    Unknown,
}

fn report_input_schema(cfg: &PipelineConfig, from: &str, events: &Schema) -> Input {
    let time = cfg.lake.partition_time;
    if let Some(t) = cfg.table(from) {
        let Ok(ts) = schema::table_schema(t, events) else {
            return Input::Broken;
        };
        let fs = schema::file_schema(t, &ts);
        return Input::Table(schema::read_schema(
            &fs,
            &schema::partition_columns(&t.partition_by, time),
        ));
    }
    if cfg.late_events.as_ref().is_some_and(|l| l.table == from) {
        let late = schema::late_schema(events);
        return Input::Table(schema::read_schema(
            &late,
            &schema::partition_columns(&[], time),
        ));
    }
    cfg.dimension(from)
        .map_or(Input::Unknown, |d| Input::Table(dimension_schema(d)))
}

/// The Arrow schema of a dimension table.
pub fn dimension_schema(d: &DimensionConfig) -> arrow::datatypes::SchemaRef {
    std::sync::Arc::new(Schema::new(
        d.columns
            .iter()
            .map(|f| arrow::datatypes::Field::new(&f.name, schema::arrow_type(f.data_type), true))
            .collect::<Vec<_>>(),
    ))
}

/// The type of a column a report's aggregates read: its input's, else that of the first
/// joined dimension that has it.
/// The type of `col` in a declared report's input: the `from` table's read schema, then the
/// joined dimensions' columns.
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
        .map(|f| schema::arrow_type(f.data_type))
}

fn check_report(c: &mut Checker, p: &str, r: &ReportConfig, cfg: &PipelineConfig, events: &Schema) {
    let declared = !r.join.is_empty()
        || r.filter.is_some()
        || !r.group_by.is_empty()
        || !r.aggregates.is_empty()
        || !r.derived.is_empty()
        || r.top.is_some()
        || r.columns.is_some()
        || !r.repartition_by.is_empty();
    match (&r.from, &r.sql) {
        (None, None) => {
            c.report(p, "a report needs `from` (a declared report) or `sql`");
            return;
        }
        (Some(_), Some(_)) => {
            c.report(format!("{p}.sql"), "give either `from` or `sql`, not both");
            return;
        }
        (None, Some(sql)) => {
            if sql.trim().is_empty() {
                c.report(format!("{p}.sql"), "must not be empty");
            }
            if declared {
                c.report(
                    format!("{p}.sql"),
                    "a SQL report takes only `name`, `sql` and `order_by`",
                );
            }
            return;
        }
        (Some(_), None) => {}
    }
    let from = r.from.as_deref().unwrap_or_default();
    let input = match report_input_schema(cfg, from, events) {
        Input::Table(schema) => schema,
        Input::Broken => return,
        Input::Unknown => {
            let known: Vec<&str> = cfg
                .tables
                .iter()
                .map(|t| t.name.as_str())
                .chain(cfg.late_events.iter().map(|l| l.table.as_str()))
                .chain(cfg.dimensions.iter().map(|d| d.name.as_str()))
                .collect();
            c.report(
                format!("{p}.from"),
                format!("no table `{from}` (tables: {})", known.join(", ")),
            );
            return;
        }
    };

    // Columns available to where/group_by/aggregates: the input plus joined dimension columns.
    let mut available: Vec<String> = input.fields().iter().map(|f| f.name().clone()).collect();
    for (i, j) in r.join.iter().enumerate() {
        let jp = format!("{p}.join[{i}]");
        let Some(dim) = cfg.dimension(&j.table) else {
            let dims: Vec<&str> = cfg.dimensions.iter().map(|d| d.name.as_str()).collect();
            c.report(
                format!("{jp}.table"),
                format!(
                    "no dimension table `{}` (dimensions: {})",
                    j.table,
                    dims.join(", ")
                ),
            );
            continue;
        };
        if j.on.is_empty() {
            c.report(format!("{jp}.on"), "at least one join column is needed");
        }
        for (k, on) in j.on.iter().enumerate() {
            if !available.contains(on) {
                c.report(
                    format!("{jp}.on[{k}]"),
                    format!("`{on}` is not a column of `{from}`"),
                );
            }
            if !dim.columns.iter().any(|f| &f.name == on) {
                c.report(
                    format!("{jp}.on[{k}]"),
                    format!("`{on}` is not a column of dimension `{}`", dim.name),
                );
            }
        }
        for name in j.defaults.keys() {
            if !dim.columns.iter().any(|f| &f.name == name) || j.on.contains(name) {
                c.report(
                    format!("{jp}.defaults.{name}"),
                    format!("`{name}` is not a non-key column of `{}`", dim.name),
                );
            }
        }
        for f in &dim.columns {
            if !j.on.contains(&f.name) && !available.contains(&f.name) {
                available.push(f.name.clone());
            }
        }
    }

    let mut output: Vec<String> = Vec::new();
    for (i, g) in r.group_by.iter().enumerate() {
        if !available.contains(g) {
            c.report(
                format!("{p}.group_by[{i}]"),
                format!("no column `{g}` (columns: {})", available.join(", ")),
            );
        }
        output.push(g.clone());
    }
    for (i, k) in r.repartition_by.iter().enumerate() {
        if !available.contains(k) {
            c.report(
                format!("{p}.repartition_by[{i}]"),
                format!("no column `{k}` (columns: {})", available.join(", ")),
            );
        }
    }
    for (i, a) in r.aggregates.iter().enumerate() {
        let ap = format!("{p}.aggregates[{i}]");
        match (&a.column, a.function) {
            (None, AggregateFn::Count) => {}
            (None, f) => c.report(
                format!("{ap}.column"),
                format!("`{}` needs a `column`", f.as_str()),
            ),
            (Some(col), _) if !available.contains(col) => c.report(
                format!("{ap}.column"),
                format!("no column `{col}` (columns: {})", available.join(", ")),
            ),
            // The approximate aggregates read values or, over a sketch column, sketches.
            (Some(col), f) if is_sketched(f) => {
                let t = report_column_type(cfg, r, &input, col);
                if let Some(Err(e)) = t.map(|t| schema::aggregate_output_type(f, Some(&t))) {
                    c.report(format!("{ap}.fn"), e);
                }
            }
            _ => {}
        }
        check_aggregate_options(c, &ap, a, false);
        if output.contains(&a.name) {
            c.report(
                format!("{ap}.name"),
                format!("`{}` clashes with another output column", a.name),
            );
        }
        output.push(a.name.clone());
    }
    if r.group_by.is_empty() && r.aggregates.is_empty() {
        output = available.clone();
    }
    for (i, d) in r.derived.iter().enumerate() {
        if output.contains(&d.name) {
            c.report(
                format!("{p}.derived[{i}].name"),
                format!("`{}` clashes with another output column", d.name),
            );
        }
        if d.expr.trim().is_empty() {
            c.report(format!("{p}.derived[{i}].expr"), "must not be empty");
        }
        output.push(d.name.clone());
    }
    if let Some(top) = &r.top {
        if top.n == 0 {
            c.report(format!("{p}.top.n"), "must be at least 1");
        }
        if top.by.is_empty() {
            c.report(
                format!("{p}.top.by"),
                "give the ranking order, e.g. `[requests desc]`",
            );
        }
        for (i, k) in top.per.iter().enumerate() {
            if !output.contains(k) {
                c.report(
                    format!("{p}.top.per[{i}]"),
                    format!("no output column `{k}` (columns: {})", output.join(", ")),
                );
            }
        }
        for (i, k) in top.by.iter().enumerate() {
            if !output.contains(&k.column) {
                c.report(
                    format!("{p}.top.by[{i}]"),
                    format!(
                        "no output column `{}` (columns: {})",
                        k.column,
                        output.join(", ")
                    ),
                );
            }
        }
        output.push(top.rank_column.clone());
    }
    if let Some(cols) = &r.columns {
        for (i, col) in cols.iter().enumerate() {
            if !output.contains(col) {
                c.report(
                    format!("{p}.columns[{i}]"),
                    format!("no output column `{col}` (columns: {})", output.join(", ")),
                );
            }
        }
        output = cols.clone();
    }
    for (i, k) in r.order_by.iter().enumerate() {
        if !output.contains(&k.column) {
            c.report(
                format!("{p}.order_by[{i}]"),
                format!(
                    "no output column `{}` (columns: {})",
                    k.column,
                    output.join(", ")
                ),
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use crate::config::{ConfigError, load_str};

    const BASE: &str = r#"name: t
source: { kind: stdin }
format: { kind: apache }
event_time: { field: ts, max_out_of_orderness: 60s }
tables:
  - name: status_1m
    window: { kind: tumbling, size: 1m }
    key: [status]
    aggregates:
      - { name: requests, fn: count }
lake: { root: lake }
"#;

    fn problems(yaml: &str) -> Vec<String> {
        match load_str(yaml, Path::new("p.yaml")) {
            Ok(_) => vec![],
            Err(ConfigError::Invalid { problems, .. }) => problems
                .iter()
                .map(|p| format!("{}:{}: {}", p.line.unwrap_or(0), p.path, p.message))
                .collect(),
            Err(e) => panic!("{e}"),
        }
    }

    /// BASE with `extra` before `tables:`.
    fn with(extra: &str) -> String {
        BASE.replace("tables:", &format!("{extra}tables:"))
    }

    fn has(p: &[String], prefix: &str, needle: &str) {
        assert!(
            p.iter()
                .any(|m| m.starts_with(prefix) && m.contains(needle)),
            "no `{prefix}…{needle}` in {p:?}"
        );
    }

    #[test]
    fn derive_expressions_are_planned_with_their_line() {
        let p = problems(&with(
            "derive:\n  - { name: class, expr: status / 100 }\n  - { name: kind, expr: \"lower(user_agnet)\" }\n  - { name: bad, expr: \"no_such_fn(path)\" }\n",
        ));
        has(&p, "7:derive[1].expr", "user_agnet");
        // Compilation stops at the first bad expression: later ones are checked once it is fixed.
        assert_eq!(p.len(), 1, "{p:?}");
        let p = problems(&with(
            "derive:\n  - { name: bad, expr: \"no_such_fn(path)\" }\n",
        ));
        has(&p, "6:derive[0].expr", "no_such_fn");
        let p = problems(&with("derive:\n  - { name: path, expr: \"1\" }\n"));
        has(&p, "6:derive[0].name", "already a field");
        let p = problems(&with("derive:\n  - { name: x, expr: \"status +\" }\n"));
        has(&p, "6:derive[0].expr", "");
        // A derived column is a key, an aggregate input and a filter operand.
        let yaml = with("derive:\n  - { name: class, expr: status / 100 }\n")
            .replace(
                "key: [status]",
                "key: [class]\n    filter: \"class >= 4 OR path LIKE '/api/%'\"",
            )
            .replace(
                "{ name: requests, fn: count }",
                "{ name: requests, fn: count }\n      - { name: m, fn: max, column: class }",
            );
        assert_eq!(problems(&yaml), Vec::<String>::new());
    }

    #[test]
    fn sql_filters_are_checked_and_old_ones_keep_their_messages() {
        let p = problems(&BASE.replace(
            "key: [status]",
            "key: [status]\n    filter: \"lower(path)\"",
        ));
        has(&p, "9:tables[0].filter", "true or false");
        let p = problems(&BASE.replace(
            "key: [status]",
            "key: [status]\n    filter: \"status > 1 OR nope = 2\"",
        ));
        has(&p, "9:tables[0].filter", "nope");
    }

    #[test]
    fn lookups_name_their_problems() {
        let dims = "dimensions:\n  - name: codes\n    path: codes.csv\n    columns: [{ name: status, type: int32 }, { name: label, type: string }, { name: n, type: int64 }]\n";
        let ok = with(&format!(
            "{dims}lookup:\n  - {{ table: codes, on: status, defaults: {{ label: other }} }}\n"
        ))
        .replace("key: [status]", "key: [label]");
        assert_eq!(problems(&ok), Vec::<String>::new());
        let p = problems(&with(&format!(
            "{dims}lookup:\n  - {{ table: cods, on: status }}\n"
        )));
        has(&p, "10:lookup[0].table", "no dimension `cods`");
        let p = problems(&with(&format!(
            "{dims}lookup:\n  - {{ table: codes, on: path }}\n"
        )));
        has(
            &p,
            "10:lookup[0].on",
            "dimension `codes` has no column `path`",
        );
        let p = problems(&with(&format!(
            "{dims}lookup:\n  - {{ table: codes, on: {{ field: host, column: status }} }}\n"
        )));
        has(&p, "10:lookup[0].on", "cannot be matched");
        let p = problems(&with(&format!(
            "{dims}lookup:\n  - {{ table: codes, on: status, columns: [labl] }}\n"
        )));
        has(&p, "10:lookup[0].columns[0]", "no column `labl`");
        let p = problems(&with(&format!(
            "{dims}lookup:\n  - {{ table: codes, on: status, defaults: {{ n: x }} }}\n"
        )));
        has(&p, "10:lookup[0].defaults.n", "does not fit");
        let p = problems(&with(&format!(
            "{dims}lookup:\n  - {{ table: codes, on: status, defaults: {{ path: x }} }}\n"
        )));
        has(
            &p,
            "10:lookup[0].defaults.path",
            "not a column this lookup adds",
        );
    }

    #[test]
    fn percentiles_and_sketches_are_checked() {
        let agg = |a: &str| BASE.replace("{ name: requests, fn: count }", a);
        has(
            &problems(&agg("{ name: p, fn: approx_percentile, column: bytes }")),
            "10:tables[0].aggregates[0].q",
            "needs `q`",
        );
        has(
            &problems(&agg(
                "{ name: p, fn: approx_percentile, column: bytes, q: 1.5 }",
            )),
            "10:tables[0].aggregates[0].q",
            "not a quantile",
        );
        has(
            &problems(&agg(
                "{ name: p, fn: approx_percentile, column: path, q: 0.5 }",
            )),
            "10:tables[0].aggregates[0].fn",
            "Utf8",
        );
        has(
            &problems(&agg("{ name: p, fn: sum, column: bytes, sketch: true }")),
            "10:tables[0].aggregates[0].sketch",
            "only `approx_distinct`",
        );
        has(
            &problems(&agg("{ name: p, fn: count, q: 0.5 }")),
            "10:tables[0].aggregates[0].q",
            "only `approx_percentile`",
        );
        assert_eq!(
            problems(&agg(
                "{ name: p, fn: approx_percentile, column: bytes, q: 0.99, sketch: true }"
            )),
            Vec::<String>::new()
        );
    }

    #[test]
    fn the_base_is_valid() {
        assert_eq!(problems(BASE), Vec::<String>::new());
    }

    #[test]
    fn kafka_sources_are_checked() {
        let kafka = "source:\n  kind: kafka\n  brokers: 127.0.0.1:9092\n  topic: [logs, more]\n  group: g\n  properties: { security.protocol: sasl_ssl }\n";
        assert_eq!(
            problems(&BASE.replace("source: { kind: stdin }\n", kafka)),
            Vec::<String>::new()
        );
        let bad = "source:\n  kind: kafka\n  brokers: 'a:1,'\n  topic: ''\n  group: ''\n  properties: { group.id: x }\n";
        let yaml = BASE.replace("source: { kind: stdin }\n", bad).replace(
            "fn: count }",
            "fn: count }\n      - { name: avg_bytes, fn: avg, column: bytes }",
        );
        let p = problems(&yaml);
        assert_eq!(p.len(), 5, "{p:?}");
        assert!(
            p[0].starts_with("4:source.brokers: give `host:port`"),
            "{p:?}"
        );
        assert!(p[1].starts_with("5:source.topic:"), "{p:?}");
        assert!(p[2].starts_with("6:source.group:"), "{p:?}");
        assert!(
            p[3].starts_with("7:source.properties.group.id: set by the stage itself"),
            "{p:?}"
        );
        assert!(
            p[4].starts_with("16:tables[0].aggregates[1].fn: `avg` cannot merge"),
            "{p:?}"
        );
    }

    #[test]
    fn rolling_and_idle_settings_are_checked() {
        let yaml = BASE
            .replace(
                "max_out_of_orderness: 60s }",
                "max_out_of_orderness: 60s, idle_timeout: 0s }",
            )
            .replace(
                "    key: [status]\n",
                "    key: [status]\n    rolling: { max_rows: 0, max_bytes: 1MB, min_size: 2MB, max_open_time: 5m }\n",
            );
        assert_eq!(
            problems(&yaml),
            vec![
                "4:event_time.idle_timeout: must be longer than zero",
                "9:tables[0].rolling.max_rows: must be at least 1",
                "9:tables[0].rolling.min_size: 2MB is larger than max_bytes (1MB)",
            ]
        );
        let p = problems(&BASE.replace(
            "    key: [status]\n",
            "    key: [status]\n    rolling: { max_bytes: 128 }\n",
        ));
        assert_eq!(p.len(), 1, "{p:?}");
        assert!(p[0].contains("no unit"), "{p:?}");
    }

    #[test]
    fn a_metrics_address_must_be_an_ip_and_port() {
        let p = problems(&format!("{BASE}metrics: {{ addr: localhost:9464 }}\n"));
        assert_eq!(p.len(), 1, "{p:?}");
        assert!(
            p[0].contains(":metrics.addr: `localhost:9464` is not an address to listen on"),
            "{p:?}"
        );
        assert!(problems(&format!("{BASE}metrics: {{ addr: 127.0.0.1:9464 }}\n")).is_empty());
        let p = problems(&format!(
            "{BASE}engine: {{ cluster: 'http://sched:50050' }}\n"
        ));
        assert!(
            p[0].contains(":engine.cluster: `http://sched:50050`: a cluster is `df://HOST:PORT`"),
            "{p:?}"
        );
        assert!(
            problems(&format!(
                "{BASE}engine: {{ cluster: 'df://sched:50050' }}\n"
            ))
            .is_empty()
        );
    }

    #[test]
    fn windows_must_make_sense() {
        let p = problems(&BASE.replace(
            "{ kind: tumbling, size: 1m }",
            "{ kind: sliding, size: 1m, slide: 2m }",
        ));
        assert_eq!(
            p,
            vec!["7:tables[0].window.slide: the slide (2m) is longer than the window (1m)"]
        );
        let p =
            problems(&BASE.replace("{ kind: tumbling, size: 1m }", "{ kind: session, gap: 0s }"));
        assert_eq!(p, vec!["7:tables[0].window.gap: must be longer than zero"]);
        let p = problems(&BASE.replace("kind: tumbling", "kind: hopping"));
        assert_eq!(p.len(), 1);
        assert!(
            p[0].starts_with("7:") && p[0].contains("unknown variant `hopping`"),
            "{p:?}"
        );
    }

    #[test]
    fn names_types_and_references_are_checked() {
        let second = "  - name: status_1m\n    window: { kind: tumbling, size: 1m }\n    aggregates:\n      - { name: b, fn: sum, column: host }\nlake:";
        let yaml = BASE
            .replace(
                "key: [status]",
                "key: [status]\n    partition_by: [path]\n    filter: \"status >= 'x'\"",
            )
            .replace("lake:", second);
        let p = problems(&yaml);
        assert!(
            p.contains(
                &"10:tables[0].filter: `status` is of type Int32; it cannot be compared with 'x'"
                    .to_string()
            ),
            "{p:?}"
        );
        assert!(
            p.contains(
                &"9:tables[0].partition_by[0]: `path` is not a key column of the table".to_string()
            ),
            "{p:?}"
        );
        assert!(
            p.contains(&"13:tables[1].name: table `status_1m` is defined twice".to_string()),
            "{p:?}"
        );
        assert!(
            p.iter()
                .any(|x| x.starts_with("16:tables[1].aggregates[0].fn: `sum` cannot aggregate")),
            "{p:?}"
        );
    }

    #[test]
    fn reports_are_checked_against_their_tables() {
        let yaml = BASE.to_string()
            + "reports:\n  - name: r\n    from: status_1m\n    group_by: [dt, nope]\n    order_by: [requests desc]\n  - name: s\n    from: status_1m\n    sql: SELECT 1\n";
        let p = problems(&yaml);
        assert!(
            p.iter()
                .any(|x| x.starts_with("15:reports[0].group_by[1]: no column `nope`")),
            "{p:?}"
        );
        assert!(
            p.iter()
                .any(|x| x.starts_with("16:reports[0].order_by[0]: no output column `requests`")),
            "{p:?}"
        );
        assert!(
            p.iter()
                .any(|x| x.starts_with("19:reports[1].sql: give either `from` or `sql`")),
            "{p:?}"
        );
    }

    #[test]
    fn bad_lake_roots_are_refused() {
        let p = problems(&BASE.replace("root: lake", "root: 'gs://bucket'"));
        assert_eq!(
            p,
            vec!["11:lake.root: `gs://` is not supported; use a local directory, file:// or s3://"]
        );
    }
}
