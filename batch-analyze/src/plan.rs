//! A report, as planned: a declared report (from, join, where, group by, aggregates,
//! derived columns, top N, columns, order) is translated into one SQL query over the
//! registered tables; a `sql` report is used as written. The text is what runs, so
//! `ReportPlan::sql` is also what a user sees when asking what a report does.
//!
//! Identifiers are always quoted, so table and column names need no care. `repartition_by`
//! hash-partitions the joined, filtered input before the aggregation.
//!
//! `approx_distinct` and `approx_percentile` over a binary column read the sketches a
//! windowed table wrote (`<name>_sketch`) and merge them ([`crate::sketch`]); over any
//! other column they estimate from the values. The plan therefore needs the input's types,
//! not only its column names.

use std::fmt::Write as _;

use arrow::datatypes::{DataType, Schema};
use datafusion::dataframe::DataFrame;
use datafusion::error::DataFusionError;
use datafusion::logical_expr::Partitioning;
use datafusion::prelude::{SessionContext, col};
use shared::config::{
    AggregateConfig, AggregateFn, DerivedColumn, JoinConfig, JoinKind, Literal, OrderKey,
    PipelineConfig, ReportConfig, TopConfig,
};
use shared::schema::report_column_type;

use crate::sketch;

/// Name under which the input of a declared report (joined and filtered) is registered.
const INPUT_VIEW: &str = "__report_input";

/// A planned report.
#[derive(Debug, Clone)]
pub struct ReportPlan {
    pub name: String,
    /// The joined and filtered input (declared reports only).
    pub input_sql: Option<String>,
    /// Columns to hash-partition the input on.
    pub repartition_by: Vec<String>,
    /// The query producing the report (over the input view for declared reports).
    pub sql: String,
}

/// `"name"`, with quotes doubled.
pub fn ident(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

fn literal(l: &Literal) -> String {
    match l {
        Literal::Bool(b) => b.to_string(),
        Literal::Int(i) => i.to_string(),
        Literal::Float(f) => format!("{f:?}"),
        Literal::String(s) => format!("'{}'", s.replace('\'', "''")),
    }
}

fn order_list(keys: &[OrderKey]) -> String {
    keys.iter()
        .map(|k| {
            format!(
                "{}{}",
                ident(&k.column),
                if k.descending { " DESC" } else { " ASC" }
            )
        })
        .collect::<Vec<_>>()
        .join(", ")
}

fn ident_list(cols: &[String]) -> String {
    cols.iter().map(|c| ident(c)).collect::<Vec<_>>().join(", ")
}

/// The SQL of one aggregate over a column of type `input` (when known).
fn aggregate_sql(a: &AggregateConfig, input: Option<&DataType>) -> String {
    let arg = a.column.as_deref().map(ident).unwrap_or_else(|| "*".into());
    let sketched = input.is_some_and(sketch::is_sketch_type);
    match a.function {
        AggregateFn::Count => format!("COUNT({arg})"),
        AggregateFn::Sum => format!("SUM({arg})"),
        AggregateFn::Min => format!("MIN({arg})"),
        AggregateFn::Max => format!("MAX({arg})"),
        AggregateFn::Avg => format!("AVG({arg})"),
        AggregateFn::CountDistinct => format!("COUNT(DISTINCT {arg})"),
        AggregateFn::ApproxDistinct if sketched => sketch::distinct_call(&arg),
        AggregateFn::ApproxDistinct => format!("CAST(APPROX_DISTINCT({arg}) AS BIGINT)"),
        AggregateFn::ApproxPercentile if sketched => sketch::percentile_call(&arg, a.q),
        AggregateFn::ApproxPercentile => format!(
            "CAST(APPROX_PERCENTILE_CONT({}) WITHIN GROUP (ORDER BY {arg}) AS DOUBLE)",
            sketch::quantile_literal(a.q)
        ),
    }
}

impl ReportPlan {
    /// Plans a validated report; `input` is the read schema of its `from` table.
    pub fn new(report: &ReportConfig, cfg: &PipelineConfig, input: &Schema) -> ReportPlan {
        match &report.sql {
            Some(sql) => ReportPlan {
                name: report.name.clone(),
                input_sql: None,
                repartition_by: vec![],
                sql: sql_report(sql, &report.order_by),
            },
            None => ReportPlan {
                name: report.name.clone(),
                input_sql: Some(input_query(report, cfg, input)),
                repartition_by: report.repartition_by.clone(),
                sql: report_query(report, cfg, input),
            },
        }
    }

    /// The report as a DataFrame over the tables registered in `ctx`.
    pub async fn dataframe(&self, ctx: &SessionContext) -> Result<DataFrame, DataFusionError> {
        if let Some(input_sql) = &self.input_sql {
            let mut input = ctx.sql(input_sql).await?;
            if !self.repartition_by.is_empty() {
                let n = ctx.copied_config().target_partitions();
                input = input.repartition(Partitioning::Hash(
                    self.repartition_by.iter().map(|c| col(ident(c))).collect(),
                    n,
                ))?;
            }
            ctx.deregister_table(INPUT_VIEW)?;
            ctx.register_table(INPUT_VIEW, input.into_view())?;
        }
        ctx.sql(&self.sql).await
    }

    /// Both queries, for `--explain`-style output and error messages.
    pub fn describe(&self) -> String {
        match &self.input_sql {
            Some(i) => format!("input: {i}\nreport: {}", self.sql),
            None => self.sql.clone(),
        }
    }
}

/// A `sql` report: as written (without a final `;`), wrapped to apply `order_by`.
fn sql_report(sql: &str, order_by: &[OrderKey]) -> String {
    let sql = sql.trim().trim_end_matches(';').to_string();
    if order_by.is_empty() {
        sql
    } else {
        format!(
            "SELECT * FROM ({sql}) AS report ORDER BY {}",
            order_list(order_by)
        )
    }
}

/// The input of a declared report: every column of its `from` table (as `f`), the columns
/// of the dimensions it joins, filtered by its `where`.
fn input_query(report: &ReportConfig, cfg: &PipelineConfig, input: &Schema) -> String {
    let from = report.from.as_deref().unwrap_or_default();
    let input_columns: Vec<String> = input.fields().iter().map(|f| f.name().clone()).collect();
    let mut select: Vec<String> = input_columns
        .iter()
        .map(|c| format!("f.{}", ident(c)))
        .collect();
    let mut joins = String::new();
    for (i, j) in report.join.iter().enumerate() {
        let alias = format!("d{i}");
        let Some(dim) = cfg.dimension(&j.table) else {
            continue;
        };
        let dimension_columns: Vec<&str> = dim.columns.iter().map(|c| c.name.as_str()).collect();
        select.extend(joined_columns(
            j,
            &alias,
            &dimension_columns,
            &input_columns,
        ));
        joins.push_str(&join(j, &alias));
    }
    let mut sql = format!(
        "SELECT {} FROM {} AS f{joins}",
        select.join(", "),
        ident(from)
    );
    if let Some(w) = &report.filter {
        let _ = write!(sql, " WHERE {w}");
    }
    sql
}

/// The columns a join adds to the input: the dimension's columns but its keys and those the
/// input already has, each with its default (for rows the join found no match for).
fn joined_columns(
    j: &JoinConfig,
    alias: &str,
    dimension_columns: &[&str],
    input_columns: &[String],
) -> Vec<String> {
    let mut out = Vec::new();
    for &name in dimension_columns {
        if j.on.iter().any(|k| k == name) || input_columns.iter().any(|c| c == name) {
            continue;
        }
        let c = format!("{alias}.{}", ident(name));
        out.push(match j.defaults.get(name) {
            Some(d) => format!("COALESCE({c}, {}) AS {}", literal(d), ident(name)),
            None => format!("{c} AS {}", ident(name)),
        });
    }
    out
}

/// ` LEFT JOIN "dimension" AS d0 ON f."key" = d0."key"` (keys of the same name on both sides).
fn join(j: &JoinConfig, alias: &str) -> String {
    let on =
        j.on.iter()
            .map(|k| format!("f.{} = {alias}.{}", ident(k), ident(k)))
            .collect::<Vec<_>>()
            .join(" AND ");
    let kind = match j.how {
        JoinKind::Left => "LEFT JOIN",
        JoinKind::Inner => "JOIN",
    };
    format!(" {kind} {} AS {alias} ON {on}", ident(&j.table))
}

/// A step of a declared report after its input: a name and its query over the step before
/// (the first over the input view).
type Step = (&'static str, String);

/// The view the next step reads: the last step, or the input.
fn last(steps: &[Step]) -> &'static str {
    steps.last().map_or(INPUT_VIEW, |(name, _)| *name)
}

/// A declared report's query over its input view: grouping, derived columns and top N as
/// named steps (`WITH`), then the final columns, the top N filter and the order.
fn report_query(report: &ReportConfig, cfg: &PipelineConfig, input: &Schema) -> String {
    let mut steps: Vec<Step> = Vec::new();
    let aggregates = aggregates(report, cfg, input);
    if let Some(q) = group_by(&report.group_by, &aggregates, last(&steps)) {
        steps.push(("grouped", q));
    }
    if let Some(q) = derived(&report.derived, last(&steps)) {
        steps.push(("derived", q));
    }
    let mut rank_filter = None;
    if let Some(t) = &report.top {
        let (q, filter) = top(t, last(&steps));
        steps.push(("ranked", q));
        rank_filter = Some(filter);
    }
    let mut sql = with(&steps);
    let projection = columns(report.columns.as_deref());
    let _ = write!(sql, "SELECT {projection} FROM {}", ident(last(&steps)));
    if let Some(f) = rank_filter {
        let _ = write!(sql, " WHERE {f}");
    }
    sql.push_str(&order_by(&report.order_by));
    sql
}

/// Each aggregate as `<SQL> AS "name"`; the type of its column chooses between merging
/// sketches and estimating from values.
fn aggregates(report: &ReportConfig, cfg: &PipelineConfig, input: &Schema) -> Vec<String> {
    report
        .aggregates
        .iter()
        .map(|a| {
            let input_type = a
                .column
                .as_deref()
                .and_then(|c| report_column_type(cfg, report, input, c));
            let expr = aggregate_sql(a, input_type.as_ref());
            format!("{expr} AS {}", ident(&a.name))
        })
        .collect()
}

/// The grouping step: the keys and the aggregates, per group of the keys; `None` when the
/// report has neither.
fn group_by(keys: &[String], aggregates: &[String], from: &str) -> Option<String> {
    if keys.is_empty() && aggregates.is_empty() {
        return None;
    }
    let mut cols: Vec<String> = keys.iter().map(|g| ident(g)).collect();
    cols.extend(aggregates.iter().cloned());
    let mut q = format!("SELECT {} FROM {}", cols.join(", "), ident(from));
    if !keys.is_empty() {
        let _ = write!(q, " GROUP BY {}", ident_list(keys));
    }
    Some(q)
}

/// The derived columns step: every column so far, then each expression; `None` without any.
fn derived(columns: &[DerivedColumn], from: &str) -> Option<String> {
    if columns.is_empty() {
        return None;
    }
    let cols: Vec<String> = columns
        .iter()
        .map(|d| format!("{} AS {}", d.expr, ident(&d.name)))
        .collect();
    Some(format!(
        "SELECT *, {} FROM {}",
        cols.join(", "),
        ident(from)
    ))
}

/// The top N step (rows numbered per group in the ranking order) and the condition that
/// keeps the first N.
fn top(t: &TopConfig, from: &str) -> (String, String) {
    let partition = if t.per.is_empty() {
        String::new()
    } else {
        format!("PARTITION BY {} ", ident_list(&t.per))
    };
    let ranked = format!(
        "SELECT *, ROW_NUMBER() OVER ({partition}ORDER BY {}) AS {} FROM {}",
        order_list(&t.by),
        ident(&t.rank_column),
        ident(from)
    );
    (ranked, format!("{} <= {}", ident(&t.rank_column), t.n))
}

/// `WITH name AS (query), … ` before the final query; empty without steps.
fn with(steps: &[Step]) -> String {
    if steps.is_empty() {
        return String::new();
    }
    let named: Vec<String> = steps.iter().map(|(n, q)| format!("{n} AS ({q})")).collect();
    format!("WITH {} ", named.join(", "))
}

/// The final projection: the report's `columns`, or all of them.
fn columns(columns: Option<&[String]>) -> String {
    match columns {
        Some(cols) => ident_list(cols),
        None => "*".into(),
    }
}

/// ` ORDER BY …` of the final query; empty without keys.
fn order_by(keys: &[OrderKey]) -> String {
    if keys.is_empty() {
        String::new()
    } else {
        format!(" ORDER BY {}", order_list(keys))
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use arrow::array::AsArray;
    use arrow::datatypes::{Float64Type, Int64Type};
    use datafusion::datasource::MemTable;
    use shared::config::{ConfigError, LoadedConfig};

    use super::*;
    use crate::sketch::fixture::{self, Row, digest, hll};

    const STDIN: &str = "{ kind: stdin }";

    /// A daily report over `hosts_1m`: sketches merged, and the approximate functions over
    /// plain columns.
    const DAILY: &str = "  - name: daily
    from: hosts_1m
    group_by: [dt]
    aggregates:
      - { name: hosts, fn: approx_distinct, column: hosts_sketch }
      - { name: p95_bytes, fn: approx_percentile, column: p95_bytes_sketch, q: 0.95 }
      - { name: median_p95, fn: approx_percentile, column: p95_bytes, q: 0.5 }
      - { name: statuses, fn: approx_distinct, column: status }
      - { name: median_status, fn: approx_percentile, column: status, q: 0.5 }
";

    fn plan(loaded: &LoadedConfig) -> ReportPlan {
        let table = &crate::catalog::lake_tables(loaded)[0];
        let input = shared::schema::read_schema(&table.file_schema, &table.partition_columns);
        ReportPlan::new(&loaded.config.reports[0], &loaded.config, &input)
    }

    #[test]
    fn approximate_aggregates_over_sketch_columns_merge_the_sketches() {
        let sql = plan(&fixture::pipeline(STDIN, DAILY).unwrap()).sql;
        for want in [
            r#"sketch_distinct("hosts_sketch") AS "hosts""#,
            r#"sketch_percentile("p95_bytes_sketch", 0.95) AS "p95_bytes""#,
            r#"CAST(APPROX_PERCENTILE_CONT(0.5) WITHIN GROUP (ORDER BY "p95_bytes") AS DOUBLE) AS "median_p95""#,
            r#"CAST(APPROX_DISTINCT("status") AS BIGINT) AS "statuses""#,
        ] {
            assert!(sql.contains(want), "{want} not in {sql}");
        }
    }

    #[tokio::test]
    async fn a_daily_report_merges_the_minutes() {
        let loaded = fixture::pipeline(STDIN, DAILY).unwrap();
        // It plans in the sessions `batch-analyze` makes.
        crate::prepare::check_runnable(&loaded).await.unwrap();

        let rows = [
            Row {
                status: 200,
                hosts: hll(0..5_000),
                bytes: digest(0..600),
            },
            Row {
                status: 404,
                hosts: hll(4_000..9_000),
                bytes: digest(600..1_000),
            },
        ];
        let table = &crate::catalog::lake_tables(&loaded)[0];
        let schema = shared::schema::read_schema(&table.file_schema, &table.partition_columns);
        let batch = fixture::batch(schema.clone(), &rows);
        let ctx = SessionContext::new();
        crate::sketch::register(&ctx);
        let mem = MemTable::try_new(schema, vec![vec![batch]]).unwrap();
        ctx.register_table("hosts_1m", Arc::new(mem)).unwrap();
        let out = plan(&loaded)
            .dataframe(&ctx)
            .await
            .unwrap()
            .collect()
            .await
            .unwrap();

        let mut hosts = hll(0..5_000);
        hosts.merge(&hll(4_000..9_000));
        let mut bytes = digest(0..600);
        bytes.merge(&digest(600..1_000));
        let b = &out[0];
        assert_eq!(
            b.column(1).as_primitive::<Int64Type>().value(0),
            hosts.estimate()
        );
        let p95 = b.column(2).as_primitive::<Float64Type>().value(0);
        assert!((p95 - 950.0).abs() <= 10.0, "{p95}");
        assert_eq!(b.column(4).as_primitive::<Int64Type>().value(0), 2);
        let median = b.column(5).as_primitive::<Float64Type>().value(0);
        assert!((200.0..=404.0).contains(&median), "{median}");
    }

    fn key(column: &str, descending: bool) -> OrderKey {
        OrderKey {
            column: column.into(),
            descending,
        }
    }

    /// The first report of the `hosts_1m` fixture pipeline with `reports`, and the read
    /// schema of `hosts_1m`.
    fn declared(reports: &str) -> (LoadedConfig, Arc<Schema>) {
        let loaded = fixture::pipeline(STDIN, reports).unwrap();
        let table = &crate::catalog::lake_tables(&loaded)[0];
        let input = shared::schema::read_schema(&table.file_schema, &table.partition_columns);
        (loaded, input)
    }

    /// A dimension of status codes, for joins.
    const CODES: &str = "dimensions:
  - name: codes
    path: codes.csv
    columns:
      - { name: status, type: int32 }
      - { name: class, type: string }
      - { name: dt, type: string }
";

    #[test]
    fn a_sql_report_runs_as_written_and_is_ordered_outside() {
        assert_eq!(sql_report("  SELECT 1 AS a;\n", &[]), "SELECT 1 AS a");
        assert_eq!(
            sql_report("SELECT 1 AS a;", &[key("a", true), key("b", false)]),
            r#"SELECT * FROM (SELECT 1 AS a) AS report ORDER BY "a" DESC, "b" ASC"#
        );
    }

    #[test]
    fn the_input_selects_the_table_joins_dimensions_and_filters() {
        let reports = format!(
            "  - name: r
    from: hosts_1m
    join: [{{ table: codes, on: status, how: inner }}]
    where: status >= 400
    group_by: [class]
{CODES}"
        );
        let (loaded, input) = declared(&reports);
        let sql = input_query(&loaded.config.reports[0], &loaded.config, &input);
        assert!(
            sql.starts_with(r#"SELECT f."window_start", f."window_end", f."status", "#),
            "{sql}"
        );
        assert!(
            sql.ends_with(
                r#"f."hour", d0."class" AS "class" FROM "hosts_1m" AS f JOIN "codes" AS d0 ON f."status" = d0."status" WHERE status >= 400"#
            ),
            "{sql}"
        );
    }

    #[test]
    fn a_join_adds_the_dimension_columns_but_its_keys_and_the_inputs_with_defaults() {
        let j = JoinConfig {
            table: "codes".into(),
            on: vec!["status".into()],
            how: JoinKind::Left,
            defaults: [("class".to_string(), Literal::String("it's".into()))].into(),
        };
        let added = joined_columns(
            &j,
            "d1",
            &["status", "class", "dt", "description"],
            &["status".into(), "dt".into()],
        );
        assert_eq!(
            added,
            vec![
                r#"COALESCE(d1."class", 'it''s') AS "class""#,
                r#"d1."description" AS "description""#,
            ]
        );
    }

    #[test]
    fn a_join_clause_names_its_kind_and_every_key() {
        let mut j = JoinConfig {
            table: "codes".into(),
            on: vec!["status".into(), "dt".into()],
            how: JoinKind::Left,
            defaults: Default::default(),
        };
        assert_eq!(
            join(&j, "d0"),
            r#" LEFT JOIN "codes" AS d0 ON f."status" = d0."status" AND f."dt" = d0."dt""#
        );
        j.how = JoinKind::Inner;
        j.on.truncate(1);
        assert_eq!(
            join(&j, "d2"),
            r#" JOIN "codes" AS d2 ON f."status" = d2."status""#
        );
    }

    #[test]
    fn aggregates_are_named_and_merge_sketches_by_column_type() {
        let (loaded, input) = declared(
            "  - name: r
    from: hosts_1m
    aggregates:
      - { name: n, fn: count }
      - { name: total, fn: sum, column: requests }
      - { name: hosts, fn: approx_distinct, column: hosts_sketch }
",
        );
        assert_eq!(
            aggregates(&loaded.config.reports[0], &loaded.config, &input),
            vec![
                r#"COUNT(*) AS "n""#,
                r#"SUM("requests") AS "total""#,
                r#"sketch_distinct("hosts_sketch") AS "hosts""#,
            ]
        );
    }

    #[test]
    fn group_by_groups_the_keys_or_aggregates_everything_or_is_left_out() {
        let keys = vec!["dt".to_string(), "status".to_string()];
        let aggs = vec![r#"COUNT(*) AS "n""#.to_string()];
        assert_eq!(
            group_by(&keys, &aggs, INPUT_VIEW).unwrap(),
            r#"SELECT "dt", "status", COUNT(*) AS "n" FROM "__report_input" GROUP BY "dt", "status""#
        );
        assert_eq!(
            group_by(&[], &aggs, "x").unwrap(),
            r#"SELECT COUNT(*) AS "n" FROM "x""#
        );
        assert_eq!(group_by(&[], &[], "x"), None);
    }

    #[test]
    fn derived_columns_are_added_to_every_column() {
        let d = vec![DerivedColumn {
            name: "share".into(),
            expr: "n / SUM(n) OVER ()".into(),
        }];
        assert_eq!(
            derived(&d, "grouped").unwrap(),
            r#"SELECT *, n / SUM(n) OVER () AS "share" FROM "grouped""#
        );
        assert_eq!(derived(&[], "grouped"), None);
    }

    #[test]
    fn top_numbers_rows_per_group_and_keeps_the_first_n() {
        let mut t = TopConfig {
            n: 3,
            per: vec!["dt".into()],
            by: vec![key("n", true), key("path", false)],
            rank_column: "rank".into(),
        };
        let (ranked, filter) = top(&t, "derived");
        assert_eq!(
            ranked,
            r#"SELECT *, ROW_NUMBER() OVER (PARTITION BY "dt" ORDER BY "n" DESC, "path" ASC) AS "rank" FROM "derived""#
        );
        assert_eq!(filter, r#""rank" <= 3"#);
        t.per.clear();
        assert_eq!(
            top(&t, "grouped").0,
            r#"SELECT *, ROW_NUMBER() OVER (ORDER BY "n" DESC, "path" ASC) AS "rank" FROM "grouped""#
        );
    }

    #[test]
    fn steps_are_named_in_a_with_clause() {
        assert_eq!(with(&[]), "");
        let steps = vec![
            ("grouped", "SELECT 1".to_string()),
            ("ranked", "SELECT 2".into()),
        ];
        assert_eq!(
            with(&steps),
            "WITH grouped AS (SELECT 1), ranked AS (SELECT 2) "
        );
        assert_eq!(last(&steps), "ranked");
        assert_eq!(last(&[]), INPUT_VIEW);
    }

    #[test]
    fn columns_and_order_by_shape_the_final_query() {
        assert_eq!(columns(None), "*");
        assert_eq!(
            columns(Some(&["dt".to_string(), "a\"b".to_string()])),
            r#""dt", "a""b""#
        );
        assert_eq!(order_by(&[]), "");
        assert_eq!(
            order_by(&[key("dt", false), key("n", true)]),
            r#" ORDER BY "dt" ASC, "n" DESC"#
        );
    }

    #[test]
    fn a_declared_report_chains_its_steps() {
        let (loaded, input) = declared(
            "  - name: r
    from: hosts_1m
    group_by: [dt, status]
    aggregates: [{ name: n, fn: sum, column: requests }]
    derived: [{ name: share, expr: 'n / SUM(n) OVER ()' }]
    top: { n: 2, per: [dt], by: [n desc] }
    columns: [dt, status, n, rank]
    order_by: [dt, rank]
",
        );
        let plan = ReportPlan::new(&loaded.config.reports[0], &loaded.config, &input);
        assert_eq!(
            plan.sql,
            r#"WITH grouped AS (SELECT "dt", "status", SUM("requests") AS "n" FROM "__report_input" GROUP BY "dt", "status"), derived AS (SELECT *, n / SUM(n) OVER () AS "share" FROM "grouped"), ranked AS (SELECT *, ROW_NUMBER() OVER (PARTITION BY "dt" ORDER BY "n" DESC) AS "rank" FROM "derived") SELECT "dt", "status", "n", "rank" FROM "ranked" WHERE "rank" <= 2 ORDER BY "dt" ASC, "rank" ASC"#
        );
        assert!(plan.input_sql.unwrap().ends_with(r#"FROM "hosts_1m" AS f"#));
    }

    fn problems(reports: &str) -> Vec<String> {
        match fixture::pipeline(STDIN, reports) {
            Ok(_) => vec![],
            Err(ConfigError::Invalid { problems, .. }) => problems
                .iter()
                .map(|p| format!("{}: {}", p.path, p.message))
                .collect(),
            Err(e) => panic!("{e}"),
        }
    }

    #[test]
    fn report_aggregates_over_sketches_are_validated() {
        assert_eq!(problems(DAILY), Vec::<String>::new());
        let bad = "  - name: bad
    from: hosts_1m
    aggregates:
      - { name: a, fn: approx_percentile, column: p95_bytes_sketch }
      - { name: b, fn: approx_percentile, column: dt, q: 0.5 }
      - { name: c, fn: approx_distinct, column: hosts_sketch, sketch: true }
      - { name: d, fn: count, q: 0.5 }
";
        assert_eq!(
            problems(bad),
            vec![
                "reports[0].aggregates[0].q: `approx_percentile` needs `q`, the quantile (e.g. 0.95)",
                "reports[0].aggregates[1].fn: `approx_percentile` cannot aggregate a column of type Utf8",
                "reports[0].aggregates[2].sketch: sketches are written by windowed tables; a report reads them (`column: <name>_sketch`)",
                "reports[0].aggregates[3].q: only `approx_percentile` takes `q`, not `count`",
            ]
        );
    }
}
