//! The rules of a windowed table (`tables[i]`): its window, key, aggregates, filter and
//! partition columns.

use std::collections::HashSet;

use arrow::datatypes::{DataType, Schema};

use super::checker::{Checker, check_aggregate_options, field_list};
use crate::config::filter::{self, Test, Value};
use crate::config::model::{TableConfig, WindowConfig};
use crate::schema;

/// At most this many key columns per windowed table.
pub const MAX_KEY_COLUMNS: usize = 8;

/// A table's own rules (its name and rolling are checked with the other tables').
pub(super) fn check_table(c: &mut Checker, p: &str, t: &TableConfig, events: &Schema) {
    check_window(c, p, &t.window);
    let mut columns = check_key(c, p, t, events);
    check_aggregates(c, p, t, events, &mut columns);
    check_sketch_columns(c, p, t, &columns);
    if let Some(f) = &t.filter {
        check_filter(c, &format!("{p}.filter"), f, events);
    }
    check_partition_by(c, p, t);
}

/// `window`: positive durations, a slide no longer than the window.
fn check_window(c: &mut Checker, p: &str, window: &WindowConfig) {
    match window {
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
}

/// `key`: event fields, listed once, not a reserved column. Returns the table's columns so
/// far (reserved and key).
fn check_key<'t>(
    c: &mut Checker,
    p: &str,
    t: &'t TableConfig,
    events: &Schema,
) -> HashSet<&'t str> {
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
    columns
}

/// `aggregates`: at least one, names that do not clash with `columns` (to which they are
/// added), an input field of a type the function takes.
fn check_aggregates<'t>(
    c: &mut Checker,
    p: &str,
    t: &'t TableConfig,
    events: &Schema,
    columns: &mut HashSet<&'t str>,
) {
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
}

/// The `<name>_sketch` column of each `sketch: true` aggregate clashes with no other column.
fn check_sketch_columns(c: &mut Checker, p: &str, t: &TableConfig, columns: &HashSet<&str>) {
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
}

/// `partition_by`: key columns only.
fn check_partition_by(c: &mut Checker, p: &str, t: &TableConfig) {
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
            if !value_fits(field.data_type(), v) {
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

/// Whether a literal of the condition language can be compared with a field of type `t`.
fn value_fits(t: &DataType, v: &Value) -> bool {
    matches!(
        (t, v),
        (DataType::Utf8, Value::Str(_))
            | (DataType::Int32 | DataType::Int64, Value::Int(_))
            | (DataType::Float64, Value::Int(_) | Value::Float(_))
            | (DataType::Boolean, Value::Bool(_))
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::validate::testing::{BASE, has, parsed, problems, run};

    /// The problems `rule` reports on the table of BASE with `from` replaced by `to`.
    fn check(
        from: &str,
        to: &str,
        rule: impl FnOnce(&mut Checker, &TableConfig, &Schema),
    ) -> Vec<String> {
        let l = parsed(&BASE.replace(from, to));
        let events = crate::schema::events_of(&l.config);
        run(&l, |c| rule(c, &l.config.tables[0], &events))
    }

    const KEY: &str = "    key: [status]\n";

    #[test]
    fn key_columns_are_event_fields_listed_once() {
        let p = check(
            KEY,
            "    key: [status, nope, status, host, path, method, bytes, referer, user_agent]\n",
            |c, t, events| {
                let columns = check_key(c, "tables[0]", t, events);
                assert!(columns.contains("status") && columns.contains("dt"));
            },
        );
        assert_eq!(p.len(), 3, "{p:?}");
        assert_eq!(p[0], "8:tables[0].key: at most 8 key columns");
        assert!(
            p[1].starts_with("8:tables[0].key[1]: no event field `nope` (fields: host, ts,"),
            "{p:?}"
        );
        assert_eq!(
            p[2],
            "8:tables[0].key[2]: `status` is listed twice or clashes with a reserved column"
        );
        let p = check(KEY, "    key: [status, host]\n", |c, t, events| {
            check_key(c, "tables[0]", t, events);
        });
        assert_eq!(p, Vec::<String>::new());
    }

    #[test]
    fn sketch_columns_clash_with_no_column() {
        let rule = |c: &mut Checker, t: &TableConfig, events: &Schema| {
            let mut columns = check_key(c, "tables[0]", t, events);
            check_aggregates(c, "tables[0]", t, events, &mut columns);
            check_sketch_columns(c, "tables[0]", t, &columns);
        };
        let requests = "      - { name: requests, fn: count }\n";
        let aggs = "      - { name: u, fn: approx_distinct, column: host, sketch: true }\n      - { name: u_sketch, fn: count }\n";
        assert_eq!(
            check(requests, aggs, rule),
            [
                "10:tables[0].aggregates[0].name: its sketch column `u_sketch` clashes with another column of the table"
            ]
        );
        assert_eq!(
            check(requests, &aggs.replace("u_sketch", "n"), rule),
            Vec::<String>::new()
        );
    }

    #[test]
    fn partition_columns_are_key_columns() {
        let rule =
            |c: &mut Checker, t: &TableConfig, _: &Schema| check_partition_by(c, "tables[0]", t);
        assert_eq!(
            check(
                KEY,
                "    key: [status]\n    partition_by: [status, host]\n",
                rule
            ),
            ["9:tables[0].partition_by[1]: `host` is not a key column of the table"]
        );
        assert_eq!(
            check(KEY, "    key: [status]\n    partition_by: [status]\n", rule),
            Vec::<String>::new()
        );
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
}
