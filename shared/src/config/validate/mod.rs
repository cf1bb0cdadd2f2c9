//! Checks on a parsed pipeline that serde cannot do: names that must exist, be unique or not
//! clash, types that must fit, durations that must be positive. A pure function that returns
//! every problem at once, so a user fixes a file in one round.
//!
//! [`validate`] runs the checks in file order: this module holds the pipeline-wide ones
//! (format, source, event time, settings, the namespace of table names); the rules of the
//! parts with rules of their own are beside it: `events.rs` (`derive`, `lookup`),
//! `table.rs` (`tables[i]`), `report.rs` (`reports[i]`, one function per clause), all
//! writing to the `Checker` of `checker.rs`.

use std::collections::HashSet;

use arrow::datatypes::{DataType, Schema};

use super::model::{
    AggregateFn, FieldConfig, FormatConfig, KafkaConfig, PipelineConfig, SourceConfig,
};
use super::query_engine::QueryEngine;
use super::{LoadedConfig, Problem};
use crate::lake::LakeRoot;

mod checker;
mod events;
mod report;
mod table;
#[cfg(test)]
mod testing;

use checker::{Checker, field_list, is_sketched};

/// Every problem of the file, in file order of the checks.
pub fn validate(loaded: &LoadedConfig) -> Vec<Problem> {
    let cfg = &loaded.config;
    let mut c = Checker::new(loaded);
    // The name is a folder of the lake (`_checkpoints/<name>`).
    c.check_name("name".into(), &cfg.name);
    check_format(&mut c, &cfg.format);
    let events = events::check_events(&mut c, cfg);
    check_event_time(&mut c, cfg, &events);
    check_source(&mut c, cfg);
    check_state(&mut c, cfg);
    // Names in the lake: tables, the late table, dimensions share one namespace in reports.
    let mut names = HashSet::new();
    check_tables(&mut c, cfg, &events, &mut names);
    check_endpoints(&mut c, cfg);
    check_late_events_and_dimensions(&mut c, cfg, &mut names);
    if let Err(e) = LakeRoot::parse(&cfg.lake.root) {
        c.report("lake.root", e);
    }
    check_reports(&mut c, cfg, &events);
    c.problems
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

/// `event_time`: a timestamp field of the events, a positive idle timeout.
fn check_event_time(c: &mut Checker, cfg: &PipelineConfig, events: &Schema) {
    let field = &cfg.event_time.field;
    match events.field_with_name(field) {
        Ok(f) if matches!(f.data_type(), DataType::Timestamp(..)) => {}
        Ok(f) => c.report(
            "event_time.field",
            format!("`{field}` is of type {}, not a timestamp", f.data_type()),
        ),
        Err(_) => c.report(
            "event_time.field",
            format!("no event field `{field}` (fields: {})", field_list(events)),
        ),
    }
    if let Some(idle) = &cfg.event_time.idle_timeout {
        c.check_positive("event_time.idle_timeout".into(), idle);
    }
}

/// `source`: the settings of its kind.
fn check_source(c: &mut Checker, cfg: &PipelineConfig) {
    match &cfg.source {
        SourceConfig::Tail { poll_interval, .. } => {
            c.check_positive("source.poll_interval".into(), poll_interval)
        }
        SourceConfig::Kafka(k) => check_kafka(c, k, cfg),
        SourceConfig::Generate(g) => {
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
        _ => {}
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
    check_kafka_aggregates(c, cfg);
}

/// Each Kafka partition writes partial rows of a window and key; they merge exactly for
/// some aggregates only.
fn check_kafka_aggregates(c: &mut Checker, cfg: &PipelineConfig) {
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

/// `checkpoint` and `state`.
fn check_state(c: &mut Checker, cfg: &PipelineConfig) {
    c.check_positive("checkpoint.interval".into(), &cfg.checkpoint.interval);
    if cfg.state.memory_budget.0 == 0 {
        c.report("state.memory_budget", "must be more than 0B");
    }
    if cfg.checkpoint.keep == 0 {
        c.report("checkpoint.keep", "keep at least one checkpoint");
    }
}

/// `tables`: at least one, each with a usable, unique name (in `names`) and its own rules.
fn check_tables<'c>(
    c: &mut Checker,
    cfg: &'c PipelineConfig,
    events: &Schema,
    names: &mut HashSet<&'c str>,
) {
    if cfg.tables.is_empty() {
        c.report("tables", "at least one windowed table is needed");
    }
    for (i, t) in cfg.tables.iter().enumerate() {
        let p = format!("tables[{i}]");
        c.check_name(format!("{p}.name"), &t.name);
        c.check_unique(names, format!("{p}.name"), &t.name, "table");
        table::check_table(c, &p, t, events);
        c.check_rolling(&format!("{p}.rolling"), &t.rolling);
    }
}

/// `metrics.addr` and `engine.cluster`: what the binaries listen on and connect to.
fn check_endpoints(c: &mut Checker, cfg: &PipelineConfig) {
    if let Some(addr) = &cfg.metrics.addr
        && let Err(e) = addr.parse::<std::net::SocketAddr>()
    {
        c.report(
            "metrics.addr",
            format!("`{addr}` is not an address to listen on ({e}): write HOST:PORT with an IP, e.g. `127.0.0.1:9464` or `0.0.0.0:9464`"),
        );
    }
    if let Some(cluster) = &cfg.engine.cluster
        && let Err(e) = QueryEngine::parse(cluster)
    {
        c.report("engine.cluster", e);
    }
}

/// `late_events` and `dimensions`: tables too, their names unique among all (`names`).
fn check_late_events_and_dimensions<'c>(
    c: &mut Checker,
    cfg: &'c PipelineConfig,
    names: &mut HashSet<&'c str>,
) {
    if let Some(late) = &cfg.late_events {
        c.check_rolling("late_events.rolling", &late.rolling);
        c.check_name("late_events.table".into(), &late.table);
        c.check_unique(names, "late_events.table".into(), &late.table, "table");
    }
    for (i, d) in cfg.dimensions.iter().enumerate() {
        let p = format!("dimensions[{i}]");
        c.check_name(format!("{p}.name"), &d.name);
        c.check_unique(names, format!("{p}.name"), &d.name, "table");
        check_fields(c, &format!("{p}.columns"), &d.columns);
        if !d.delimiter.is_ascii() {
            c.report(format!("{p}.delimiter"), "must be one ASCII character");
        }
    }
}

/// `reports`: each with a usable, unique name, its clauses and its outputs.
fn check_reports(c: &mut Checker, cfg: &PipelineConfig, events: &Schema) {
    let mut report_names = HashSet::new();
    let mut report_paths = Vec::new();
    for (i, r) in cfg.reports.iter().enumerate() {
        let p = format!("reports[{i}]");
        c.check_name(format!("{p}.name"), &r.name);
        c.check_unique(&mut report_names, format!("{p}.name"), &r.name, "report");
        report::check_report(c, &p, r, cfg, events);
        report::check_report_outputs(c, &p, r, cfg, &mut report_paths);
    }
}

#[cfg(test)]
mod tests {
    use super::testing::{BASE, problems};

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
    fn bad_lake_roots_are_refused() {
        let p = problems(&BASE.replace("root: lake", "root: 'gs://bucket'"));
        assert_eq!(
            p,
            vec!["11:lake.root: `gs://` is not supported; use a local directory, file:// or s3://"]
        );
    }
}
