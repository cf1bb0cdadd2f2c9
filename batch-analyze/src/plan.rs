//! A report, as planned: a declared report (from, join, where, group by, aggregates,
//! derived columns, top N, columns, order) is translated into one SQL query over the
//! registered tables; a `sql` report is used as written. The text is what runs, so
//! `ReportPlan::sql` is also what a user sees when asking what a report does.
//!
//! Identifiers are always quoted, so table and column names need no care. `repartition_by`
//! hash-partitions the joined, filtered input before the aggregation.

use std::fmt::Write as _;

use datafusion::dataframe::DataFrame;
use datafusion::error::DataFusionError;
use datafusion::logical_expr::Partitioning;
use datafusion::prelude::{SessionContext, col};
use shared::config::{AggregateFn, JoinKind, Literal, OrderKey, PipelineConfig, ReportConfig};

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

impl ReportPlan {
    /// Plans a validated report.
    pub fn new(
        report: &ReportConfig,
        cfg: &PipelineConfig,
        input_columns: &[String],
    ) -> ReportPlan {
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
                let arg = a.column.as_deref().map(ident).unwrap_or_else(|| "*".into());
                let expr = match a.function {
                    AggregateFn::Count => format!("COUNT({arg})"),
                    AggregateFn::Sum => format!("SUM({arg})"),
                    AggregateFn::Min => format!("MIN({arg})"),
                    AggregateFn::Max => format!("MAX({arg})"),
                    AggregateFn::Avg => format!("AVG({arg})"),
                    AggregateFn::CountDistinct => format!("COUNT(DISTINCT {arg})"),
                    AggregateFn::ApproxDistinct => {
                        format!("CAST(APPROX_DISTINCT({arg}) AS BIGINT)")
                    }
                };
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
