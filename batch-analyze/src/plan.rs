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
    AggregateConfig, AggregateFn, JoinKind, Literal, OrderKey, PipelineConfig, ReportConfig,
};

use shared::config::validate::report_column_type;

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
        if let Some(sql) = &report.sql {
            let sql = sql.trim().trim_end_matches(';').to_string();
            let sql = if report.order_by.is_empty() {
                sql
            } else {
                format!(
                    "SELECT * FROM ({sql}) AS report ORDER BY {}",
                    order_list(&report.order_by)
                )
            };
            return ReportPlan {
                name: report.name.clone(),
                input_sql: None,
                repartition_by: vec![],
                sql,
            };
        }
        let from = report.from.as_deref().unwrap_or_default();

        // Input: the from table, joined dimension columns (with defaults), filtered.
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
            for column in &dim.columns {
                if j.on.contains(&column.name) || input_columns.contains(&column.name) {
                    continue;
                }
                let c = format!("{alias}.{}", ident(&column.name));
                select.push(match j.defaults.get(&column.name) {
                    Some(d) => format!("COALESCE({c}, {}) AS {}", literal(d), ident(&column.name)),
                    None => format!("{c} AS {}", ident(&column.name)),
                });
            }
            let on =
                j.on.iter()
                    .map(|k| format!("f.{} = {alias}.{}", ident(k), ident(k)))
                    .collect::<Vec<_>>()
                    .join(" AND ");
            let kind = match j.how {
                JoinKind::Left => "LEFT JOIN",
                JoinKind::Inner => "JOIN",
            };
            let _ = write!(joins, " {kind} {} AS {alias} ON {on}", ident(&j.table));
        }
        let mut input_sql = format!(
            "SELECT {} FROM {} AS f{joins}",
            select.join(", "),
            ident(from)
        );
        if let Some(w) = &report.filter {
            let _ = write!(input_sql, " WHERE {w}");
        }

        // Grouping, derived columns, top N, final projection and order.
        let mut ctes = Vec::new();
        let mut current = INPUT_VIEW.to_string();
        if !report.group_by.is_empty() || !report.aggregates.is_empty() {
            let mut cols: Vec<String> = report.group_by.iter().map(|g| ident(g)).collect();
            for a in &report.aggregates {
                let input_type = a
                    .column
                    .as_deref()
                    .and_then(|c| report_column_type(cfg, report, input, c));
                let expr = aggregate_sql(a, input_type.as_ref());
                cols.push(format!("{expr} AS {}", ident(&a.name)));
            }
            let mut q = format!("SELECT {} FROM {}", cols.join(", "), ident(&current));
            if !report.group_by.is_empty() {
                let _ = write!(q, " GROUP BY {}", ident_list(&report.group_by));
            }
            ctes.push(("grouped".to_string(), q));
            current = "grouped".into();
        }
        if !report.derived.is_empty() {
            let cols: Vec<String> = report
                .derived
                .iter()
                .map(|d| format!("{} AS {}", d.expr, ident(&d.name)))
                .collect();
            ctes.push((
                "derived".into(),
                format!("SELECT *, {} FROM {}", cols.join(", "), ident(&current)),
            ));
            current = "derived".into();
        }
        let mut top_filter = None;
        if let Some(top) = &report.top {
            let partition = if top.per.is_empty() {
                String::new()
            } else {
                format!("PARTITION BY {} ", ident_list(&top.per))
            };
            ctes.push((
                "ranked".into(),
                format!(
                    "SELECT *, ROW_NUMBER() OVER ({partition}ORDER BY {}) AS {} FROM {}",
                    order_list(&top.by),
                    ident(&top.rank_column),
                    ident(&current)
                ),
            ));
            current = "ranked".into();
            top_filter = Some(format!("{} <= {}", ident(&top.rank_column), top.n));
        }
        let projection = match &report.columns {
            Some(cols) => ident_list(cols),
            None => "*".into(),
        };
        let mut sql = String::new();
        if !ctes.is_empty() {
            sql.push_str("WITH ");
            sql.push_str(
                &ctes
                    .iter()
                    .map(|(n, q)| format!("{n} AS ({q})"))
                    .collect::<Vec<_>>()
                    .join(", "),
            );
            sql.push(' ');
        }
        let _ = write!(sql, "SELECT {projection} FROM {}", ident(&current));
        if let Some(f) = top_filter {
            let _ = write!(sql, " WHERE {f}");
        }
        if !report.order_by.is_empty() {
            let _ = write!(sql, " ORDER BY {}", order_list(&report.order_by));
        }
        ReportPlan {
            name: report.name.clone(),
            input_sql: Some(input_sql),
            repartition_by: report.repartition_by.clone(),
            sql,
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
        crate::check_runnable(&loaded).await.unwrap();

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
