//! The rules of a report (`reports[i]`), one function per clause in the order the clauses
//! apply: `from` or `sql`, `join`, `group_by`, `repartition_by`, `aggregates`, `derived`,
//! `top`, `columns`, `order_by`; then what it writes (`lake`, `chart`).
//!
//! Two lists of names run through the clauses: the columns *available* to the clauses that
//! read the input (the `from` table's columns plus the joined dimensions'), and the *output*
//! columns that the later clauses name (the groups and aggregates, or the input when the
//! report neither groups nor aggregates; then each clause's additions).

use std::collections::HashSet;

use arrow::datatypes::{Schema, SchemaRef};

use super::checker::{Checker, check_aggregate_options, is_sketched};
use crate::config::model::{
    AggregateFn, ChartConfig, ChartKind, PipelineConfig, ReportConfig, ReportLakeConfig,
};
use crate::schema;

/// A report's rules, clause by clause (its name is checked with the other reports').
pub(super) fn check_report(
    c: &mut Checker,
    p: &str,
    r: &ReportConfig,
    cfg: &PipelineConfig,
    events: &Schema,
) {
    let Some(from) = check_from_or_sql(c, p, r) else {
        return;
    };
    let Some(input) = check_from(c, p, cfg, from, events) else {
        return;
    };
    let mut available: Vec<String> = input.fields().iter().map(|f| f.name().clone()).collect();
    check_join(c, p, r, cfg, from, &mut available);
    let mut output = check_group_by(c, p, r, &available);
    check_repartition_by(c, p, r, &available);
    check_aggregates(c, p, r, cfg, &input, &available, &mut output);
    if r.group_by.is_empty() && r.aggregates.is_empty() {
        output = available;
    }
    check_derived(c, p, r, &mut output);
    check_top(c, p, r, &mut output);
    check_columns(c, p, r, &mut output);
    check_order_by(c, p, r, &output);
}

/// Either `from` (a declared report, whose `from` is returned) or `sql` (which takes no
/// other clause but `order_by`).
fn check_from_or_sql<'r>(c: &mut Checker, p: &str, r: &'r ReportConfig) -> Option<&'r str> {
    let declared = !r.join.is_empty()
        || r.filter.is_some()
        || !r.group_by.is_empty()
        || !r.aggregates.is_empty()
        || !r.derived.is_empty()
        || r.top.is_some()
        || r.columns.is_some()
        || !r.repartition_by.is_empty();
    match (&r.from, &r.sql) {
        (None, None) => c.report(p, "a report needs `from` (a declared report) or `sql`"),
        (Some(_), Some(_)) => c.report(format!("{p}.sql"), "give either `from` or `sql`, not both"),
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
        }
        (Some(from), None) => return Some(from),
    }
    None
}

/// What a report's `from` names.
enum ReportInput {
    /// A table, with the columns a report can use.
    Table(SchemaRef),
    /// A table whose own definition has problems (reported there).
    Broken,
    Unknown,
}

/// `from`: a windowed table, the late table or a dimension. Returns its columns, or `None`
/// when there is no point in checking the other clauses.
fn check_from(
    c: &mut Checker,
    p: &str,
    cfg: &PipelineConfig,
    from: &str,
    events: &Schema,
) -> Option<SchemaRef> {
    match report_input(cfg, from, events) {
        ReportInput::Table(schema) => Some(schema),
        ReportInput::Broken => None,
        ReportInput::Unknown => {
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
            None
        }
    }
}

fn report_input(cfg: &PipelineConfig, from: &str, events: &Schema) -> ReportInput {
    let time = cfg.lake.partition_time;
    if let Some(t) = cfg.table(from) {
        let Ok(ts) = schema::table_schema(t, events) else {
            return ReportInput::Broken;
        };
        let fs = schema::file_schema(t, &ts);
        return ReportInput::Table(schema::read_schema(
            &fs,
            &schema::partition_columns(&t.partition_by, time),
        ));
    }
    if cfg.late_events.as_ref().is_some_and(|l| l.table == from) {
        let late = schema::late_schema(events);
        return ReportInput::Table(schema::read_schema(
            &late,
            &schema::partition_columns(&[], time),
        ));
    }
    cfg.dimension(from).map_or(ReportInput::Unknown, |d| {
        ReportInput::Table(schema::dimension_schema(d))
    })
}

/// `join`: dimension tables, on columns both sides have, with defaults for their other
/// columns; those columns become available.
fn check_join(
    c: &mut Checker,
    p: &str,
    r: &ReportConfig,
    cfg: &PipelineConfig,
    from: &str,
    available: &mut Vec<String>,
) {
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
}

/// Reports `path` unless `col` is one of `columns`; `what` names the list in the message.
fn check_listed(c: &mut Checker, path: String, col: &str, columns: &[String], what: &str) {
    if !columns.iter().any(|x| x == col) {
        c.report(
            path,
            format!("no {what} `{col}` (columns: {})", columns.join(", ")),
        );
    }
}

/// `group_by`: available columns. Returns the output columns so far: the groups.
fn check_group_by(c: &mut Checker, p: &str, r: &ReportConfig, available: &[String]) -> Vec<String> {
    for (i, g) in r.group_by.iter().enumerate() {
        check_listed(c, format!("{p}.group_by[{i}]"), g, available, "column");
    }
    r.group_by.clone()
}

/// `repartition_by`: available columns.
fn check_repartition_by(c: &mut Checker, p: &str, r: &ReportConfig, available: &[String]) {
    for (i, k) in r.repartition_by.iter().enumerate() {
        check_listed(
            c,
            format!("{p}.repartition_by[{i}]"),
            k,
            available,
            "column",
        );
    }
}

/// `aggregates`: a `column` when the function needs one, available, of a type the
/// approximate functions read; names that do not clash with the output, to which they are
/// added.
fn check_aggregates(
    c: &mut Checker,
    p: &str,
    r: &ReportConfig,
    cfg: &PipelineConfig,
    input: &Schema,
    available: &[String],
    output: &mut Vec<String>,
) {
    for (i, a) in r.aggregates.iter().enumerate() {
        let ap = format!("{p}.aggregates[{i}]");
        match (&a.column, a.function) {
            (None, AggregateFn::Count) => {}
            (None, f) => c.report(
                format!("{ap}.column"),
                format!("`{}` needs a `column`", f.as_str()),
            ),
            (Some(col), _) if !available.contains(col) => {
                check_listed(c, format!("{ap}.column"), col, available, "column")
            }
            // The approximate aggregates read values or, over a sketch column, sketches.
            (Some(col), f) if is_sketched(f) => {
                let t = schema::report_column_type(cfg, r, input, col);
                if let Some(Err(e)) = t.map(|t| schema::aggregate_output_type(f, Some(&t))) {
                    c.report(format!("{ap}.fn"), e);
                }
            }
            _ => {}
        }
        check_aggregate_options(c, &ap, a, false);
        check_new_output(c, format!("{ap}.name"), &a.name, output);
    }
}

/// Adds `name` to the output, reporting `path` when it is there already.
fn check_new_output(c: &mut Checker, path: String, name: &str, output: &mut Vec<String>) {
    if output.iter().any(|o| o == name) {
        c.report(path, format!("`{name}` clashes with another output column"));
    }
    output.push(name.to_string());
}

/// `derived`: new output columns with an expression.
fn check_derived(c: &mut Checker, p: &str, r: &ReportConfig, output: &mut Vec<String>) {
    for (i, d) in r.derived.iter().enumerate() {
        check_new_output(c, format!("{p}.derived[{i}].name"), &d.name, output);
        if d.expr.trim().is_empty() {
            c.report(format!("{p}.derived[{i}].expr"), "must not be empty");
        }
    }
}

/// `top`: at least one row, a ranking order over output columns, groups (`per`) among
/// them; adds the rank column to the output.
fn check_top(c: &mut Checker, p: &str, r: &ReportConfig, output: &mut Vec<String>) {
    let Some(top) = &r.top else {
        return;
    };
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
        check_listed(c, format!("{p}.top.per[{i}]"), k, output, "output column");
    }
    for (i, k) in top.by.iter().enumerate() {
        check_listed(
            c,
            format!("{p}.top.by[{i}]"),
            &k.column,
            output,
            "output column",
        );
    }
    output.push(top.rank_column.clone());
}

/// `columns`: output columns, which become the output.
fn check_columns(c: &mut Checker, p: &str, r: &ReportConfig, output: &mut Vec<String>) {
    let Some(cols) = &r.columns else {
        return;
    };
    for (i, col) in cols.iter().enumerate() {
        check_listed(c, format!("{p}.columns[{i}]"), col, output, "output column");
    }
    *output = cols.clone();
}

/// `order_by`: output columns.
fn check_order_by(c: &mut Checker, p: &str, r: &ReportConfig, output: &[String]) {
    for (i, k) in r.order_by.iter().enumerate() {
        check_listed(
            c,
            format!("{p}.order_by[{i}]"),
            &k.column,
            output,
            "output column",
        );
    }
}

/// The report's lake table and chart: what can be checked without planning the query (the
/// columns they name are checked against the planned report by `batch-analyze validate`).
pub(super) fn check_report_outputs(
    c: &mut Checker,
    p: &str,
    r: &ReportConfig,
    cfg: &PipelineConfig,
    seen: &mut Vec<String>,
) {
    if let Some(lake) = &r.lake {
        check_lake(c, p, &r.name, lake, cfg, seen);
    }
    if let Some(chart) = &r.chart {
        check_chart(c, p, chart);
    }
}

/// `lake`: a usable path, outside the lake tables and the other reports' paths (`seen`, to
/// which it is added); partition columns listed once.
fn check_lake(
    c: &mut Checker,
    p: &str,
    report: &str,
    lake: &ReportLakeConfig,
    cfg: &PipelineConfig,
    seen: &mut Vec<String>,
) {
    let path = lake.table_path(report);
    let field = format!("{p}.lake.path");
    let segments: Vec<&str> = path.split('/').collect();
    if !segments.iter().all(|s| is_lake_name(s)) {
        c.report(
            field.clone(),
            format!("`{path}` is not a usable lake path: `/`-separated names of letters, digits, `_` and `-`, none starting with `_`, `.` or `-`"),
        );
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
        let at = format!("{p}.lake.partition_by[{i}]");
        c.check_unique(&mut cols, at, col, "partition column");
    }
}

/// One segment of a report's lake path: a name of letters, digits, `_` and `-`, not
/// starting with `_`, `.` or `-`.
fn is_lake_name(s: &str) -> bool {
    !s.is_empty()
        && !s.starts_with(['_', '.', '-'])
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
}

/// `chart`: the options of its kind only.
fn check_chart(c: &mut Checker, p: &str, chart: &ChartConfig) {
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

#[cfg(test)]
mod tests {
    use arrow::datatypes::{DataType, Field};

    use super::*;
    use crate::config::LoadedConfig;
    use crate::config::validate::testing::{BASE, names, parsed, problems, run};

    const DIMS: &str = "dimensions:\n  - name: codes\n    path: codes.csv\n    columns: [{ name: status, type: int32 }, { name: label, type: string }]\n";

    /// BASE with the dimension `codes` and one report `r` whose other lines are `lines`,
    /// from line 18 on.
    fn report(lines: &str) -> LoadedConfig {
        parsed(&format!("{BASE}{DIMS}reports:\n  - name: r\n{lines}"))
    }

    /// The problems `rule` reports on the report of `lines`.
    fn check(
        lines: &str,
        rule: impl FnOnce(&mut Checker, &ReportConfig, &PipelineConfig),
    ) -> Vec<String> {
        let l = report(lines);
        run(&l, |c| rule(c, &l.config.reports[0], &l.config))
    }

    /// The columns of `status_1m` as a report reads them, and a string column.
    fn input() -> Schema {
        Schema::new(vec![
            Field::new("dt", DataType::Utf8, false),
            Field::new("status", DataType::Int32, true),
            Field::new("requests", DataType::Int64, true),
            Field::new("path", DataType::Utf8, true),
        ])
    }

    #[test]
    fn from_or_sql_but_not_both() {
        let rule = |c: &mut Checker, r: &ReportConfig, _: &PipelineConfig| {
            assert_eq!(check_from_or_sql(c, "reports[0]", r), None);
        };
        assert_eq!(
            check("", rule),
            ["17:reports[0]: a report needs `from` (a declared report) or `sql`"]
        );
        assert_eq!(
            check("    from: status_1m\n    sql: SELECT 1\n", rule),
            ["19:reports[0].sql: give either `from` or `sql`, not both"]
        );
        assert_eq!(
            check("    sql: ' '\n    group_by: [dt]\n", rule),
            [
                "18:reports[0].sql: must not be empty",
                "18:reports[0].sql: a SQL report takes only `name`, `sql` and `order_by`"
            ]
        );
        assert_eq!(
            check("    sql: SELECT 1\n    order_by: [x]\n", rule),
            Vec::<String>::new()
        );
        let p = check("    from: status_1m\n", |c, r, _| {
            assert_eq!(check_from_or_sql(c, "reports[0]", r), Some("status_1m"));
        });
        assert_eq!(p, Vec::<String>::new());
    }

    #[test]
    fn from_names_a_table_or_dimension() {
        let events = crate::schema::events_of(&report("").config);
        let p = check("    from: nope\n", |c, _, cfg| {
            assert!(check_from(c, "reports[0]", cfg, "nope", &events).is_none());
        });
        assert_eq!(
            p,
            ["18:reports[0].from: no table `nope` (tables: status_1m, codes)"]
        );
        let p = check("    from: codes\n", |c, _, cfg| {
            let s = check_from(c, "reports[0]", cfg, "codes", &events).unwrap();
            assert_eq!(s.fields().len(), 2);
            let s = check_from(c, "reports[0]", cfg, "status_1m", &events).unwrap();
            assert!(s.field_with_name("dt").is_ok() && s.field_with_name("requests").is_ok());
        });
        assert_eq!(p, Vec::<String>::new());
    }

    #[test]
    fn join_takes_dimensions_on_columns_of_both_sides() {
        let mut available = names(&["dt", "status", "requests"]);
        let p = check(
            "    from: status_1m\n    join:\n      - { table: cods, on: status }\n      - { table: codes, on: [nope], defaults: { label: x, other: 1 } }\n      - { table: codes, on: [] }\n",
            |c, r, cfg| check_join(c, "reports[0]", r, cfg, "status_1m", &mut available),
        );
        assert_eq!(
            p,
            [
                "20:reports[0].join[0].table: no dimension table `cods` (dimensions: codes)",
                "21:reports[0].join[1].on[0]: `nope` is not a column of `status_1m`",
                "21:reports[0].join[1].on[0]: `nope` is not a column of dimension `codes`",
                "21:reports[0].join[1].defaults.other: `other` is not a non-key column of `codes`",
                "22:reports[0].join[2].on: at least one join column is needed",
            ]
        );
        let mut available = names(&["dt", "status", "requests"]);
        let p = check(
            "    from: status_1m\n    join: [{ table: codes, on: status, defaults: { label: other } }]\n",
            |c, r, cfg| check_join(c, "reports[0]", r, cfg, "status_1m", &mut available),
        );
        assert_eq!(p, Vec::<String>::new());
        assert_eq!(available, names(&["dt", "status", "requests", "label"]));
    }

    #[test]
    fn group_by_names_available_columns_and_starts_the_output() {
        let available = names(&["dt", "status"]);
        let p = check(
            "    from: status_1m\n    group_by: [dt, nope]\n",
            |c, r, _| {
                assert_eq!(
                    check_group_by(c, "reports[0]", r, &available),
                    names(&["dt", "nope"])
                );
            },
        );
        assert_eq!(
            p,
            ["19:reports[0].group_by[1]: no column `nope` (columns: dt, status)"]
        );
        let p = check(
            "    from: status_1m\n    group_by: [status]\n",
            |c, r, _| {
                check_group_by(c, "reports[0]", r, &available);
            },
        );
        assert_eq!(p, Vec::<String>::new());
    }

    #[test]
    fn repartition_by_names_available_columns() {
        let available = names(&["dt", "status"]);
        let rule = |c: &mut Checker, r: &ReportConfig, _: &PipelineConfig| {
            check_repartition_by(c, "reports[0]", r, &available)
        };
        assert_eq!(
            check("    from: status_1m\n    repartition_by: [nope]\n", rule),
            ["19:reports[0].repartition_by[0]: no column `nope` (columns: dt, status)"]
        );
        assert_eq!(
            check("    from: status_1m\n    repartition_by: [dt]\n", rule),
            Vec::<String>::new()
        );
    }

    #[test]
    fn aggregates_read_available_columns_of_their_type() {
        let available = names(&["dt", "status", "requests", "path"]);
        let mut output = names(&["dt"]);
        let p = check(
            "    from: status_1m\n    aggregates:\n      - { name: s, fn: sum }\n      - { name: m, fn: max, column: nope }\n      - { name: p, fn: approx_percentile, column: path, q: 0.5 }\n      - { name: dt, fn: count, sketch: true }\n",
            |c, r, cfg| {
                check_aggregates(c, "reports[0]", r, cfg, &input(), &available, &mut output)
            },
        );
        assert_eq!(p.len(), 5, "{p:?}");
        assert_eq!(
            p[0],
            "20:reports[0].aggregates[0].column: `sum` needs a `column`"
        );
        assert_eq!(
            p[1],
            "21:reports[0].aggregates[1].column: no column `nope` (columns: dt, status, requests, path)"
        );
        assert!(
            p[2].starts_with("22:reports[0].aggregates[2].fn: ") && p[2].contains("Utf8"),
            "{p:?}"
        );
        assert!(
            p[3].starts_with(
                "23:reports[0].aggregates[3].sketch: sketches are written by windowed tables"
            ),
            "{p:?}"
        );
        assert_eq!(
            p[4],
            "23:reports[0].aggregates[3].name: `dt` clashes with another output column"
        );
        let mut output = names(&["dt"]);
        let p = check(
            "    from: status_1m\n    aggregates:\n      - { name: n, fn: count }\n      - { name: p95, fn: approx_percentile, column: requests, q: 0.95 }\n",
            |c, r, cfg| {
                check_aggregates(c, "reports[0]", r, cfg, &input(), &available, &mut output)
            },
        );
        assert_eq!(p, Vec::<String>::new());
        assert_eq!(output, names(&["dt", "n", "p95"]));
    }

    #[test]
    fn derived_columns_are_new_and_have_an_expression() {
        let mut output = names(&["dt", "requests"]);
        let p = check(
            "    from: status_1m\n    derived:\n      - { name: requests, expr: \"1\" }\n      - { name: x, expr: ' ' }\n",
            |c, r, _| check_derived(c, "reports[0]", r, &mut output),
        );
        assert_eq!(
            p,
            [
                "20:reports[0].derived[0].name: `requests` clashes with another output column",
                "21:reports[0].derived[1].expr: must not be empty",
            ]
        );
        let mut output = names(&["dt", "requests"]);
        let p = check(
            "    from: status_1m\n    derived: [{ name: half, expr: requests / 2 }]\n",
            |c, r, _| check_derived(c, "reports[0]", r, &mut output),
        );
        assert_eq!(p, Vec::<String>::new());
        assert_eq!(output, names(&["dt", "requests", "half"]));
    }

    #[test]
    fn top_ranks_by_output_columns() {
        let mut output = names(&["dt", "requests"]);
        let p = check(
            "    from: status_1m\n    top: { n: 0, per: [day], by: [] }\n",
            |c, r, _| check_top(c, "reports[0]", r, &mut output),
        );
        assert_eq!(
            p,
            [
                "19:reports[0].top.n: must be at least 1",
                "19:reports[0].top.by: give the ranking order, e.g. `[requests desc]`",
                "19:reports[0].top.per[0]: no output column `day` (columns: dt, requests)",
            ]
        );
        let mut output = names(&["dt", "requests"]);
        let p = check(
            "    from: status_1m\n    top: { n: 3, per: [dt], by: [requests desc, hits] }\n",
            |c, r, _| check_top(c, "reports[0]", r, &mut output),
        );
        assert_eq!(
            p,
            ["19:reports[0].top.by[1]: no output column `hits` (columns: dt, requests)"]
        );
        let mut output = names(&["dt", "requests"]);
        let p = check(
            "    from: status_1m\n    top: { n: 3, per: [dt], by: [requests desc] }\n",
            |c, r, _| check_top(c, "reports[0]", r, &mut output),
        );
        assert_eq!(p, Vec::<String>::new());
        assert_eq!(output, names(&["dt", "requests", "rank"]));
    }

    #[test]
    fn columns_pick_output_columns_and_become_the_output() {
        let mut output = names(&["dt", "requests"]);
        let p = check(
            "    from: status_1m\n    columns: [requests, nope]\n",
            |c, r, _| check_columns(c, "reports[0]", r, &mut output),
        );
        assert_eq!(
            p,
            ["19:reports[0].columns[1]: no output column `nope` (columns: dt, requests)"]
        );
        let mut output = names(&["dt", "requests"]);
        let p = check(
            "    from: status_1m\n    columns: [requests]\n",
            |c, r, _| check_columns(c, "reports[0]", r, &mut output),
        );
        assert_eq!(p, Vec::<String>::new());
        assert_eq!(output, names(&["requests"]));
    }

    #[test]
    fn order_by_names_output_columns() {
        let output = names(&["dt", "requests"]);
        let rule = |c: &mut Checker, r: &ReportConfig, _: &PipelineConfig| {
            check_order_by(c, "reports[0]", r, &output)
        };
        assert_eq!(
            check("    from: status_1m\n    order_by: [dt, nope desc]\n", rule),
            ["19:reports[0].order_by[1]: no output column `nope` (columns: dt, requests)"]
        );
        assert_eq!(
            check(
                "    from: status_1m\n    order_by: [requests desc, dt]\n",
                rule
            ),
            Vec::<String>::new()
        );
    }

    #[test]
    fn a_report_lake_path_is_its_own() {
        let lake = |lines: &str, seen: &mut Vec<String>| {
            check(lines, |c, r, cfg| {
                check_lake(
                    c,
                    "reports[0]",
                    &r.name,
                    r.lake.as_ref().unwrap(),
                    cfg,
                    seen,
                )
            })
        };
        let mut seen = names(&["reports/a"]);
        let p = lake(
            "    from: status_1m\n    lake: { path: status_1m/_x, partition_by: [dt, dt] }\n",
            &mut seen,
        );
        assert_eq!(p.len(), 3, "{p:?}");
        assert!(
            p[0].starts_with("19:reports[0].lake.path: `status_1m/_x` is not a usable lake path"),
            "{p:?}"
        );
        assert_eq!(
            p[1],
            "19:reports[0].lake.path: `status_1m/_x` is inside the lake table `status_1m`"
        );
        assert_eq!(
            p[2],
            "19:reports[0].lake.partition_by[1]: partition column `dt` is defined twice"
        );
        let p = lake(
            "    from: status_1m\n    lake: { path: reports }\n",
            &mut seen,
        );
        assert_eq!(
            p,
            [
                "19:reports[0].lake.path: `reports` overlaps the lake path `reports/a` of another report"
            ]
        );
        let mut seen = names(&["reports/a"]);
        let p = lake("    from: status_1m\n    lake: {}\n", &mut seen);
        assert_eq!(p, Vec::<String>::new());
        assert_eq!(seen, names(&["reports/a", "reports/r"]));
    }

    #[test]
    fn a_chart_takes_the_options_of_its_kind() {
        let rule = |c: &mut Checker, r: &ReportConfig, _: &PipelineConfig| {
            check_chart(c, "reports[0]", r.chart.as_ref().unwrap())
        };
        assert_eq!(
            check(
                "    from: status_1m\n    chart: { kind: bar, x: dt, y: requests, per: dt }\n",
                rule
            ),
            [
                "19:reports[0].chart.per: `per` is for `hbar` charts; a `bar` chart stacks by `series`"
            ]
        );
        assert_eq!(
            check(
                "    from: status_1m\n    chart: { kind: hbar, x: dt, y: requests, series: dt }\n",
                rule
            ),
            [
                "19:reports[0].chart.series: `series` is for `bar` charts; an `hbar` chart splits by `per`"
            ]
        );
        assert_eq!(
            check(
                "    from: status_1m\n    chart: { kind: hbar, x: dt, y: requests, per: dt }\n",
                rule
            ),
            Vec::<String>::new()
        );
    }

    #[test]
    fn a_whole_report_reads_its_clauses_in_order() {
        let l = report(
            "    from: status_1m\n    group_by: [dt]\n    aggregates: [{ name: n, fn: count }]\n    top: { n: 1, by: [n desc] }\n    order_by: [rank]\n",
        );
        let events = crate::schema::events_of(&l.config);
        let p = run(&l, |c| {
            check_report(c, "reports[0]", &l.config.reports[0], &l.config, &events)
        });
        assert_eq!(p, Vec::<String>::new());
        // Grouped: the input's columns are no longer output columns.
        let l = report("    from: status_1m\n    group_by: [dt]\n    order_by: [requests]\n");
        let p = run(&l, |c| {
            check_report(c, "reports[0]", &l.config.reports[0], &l.config, &events)
        });
        assert_eq!(
            p,
            ["20:reports[0].order_by[0]: no output column `requests` (columns: dt)"]
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
}
