//! SQL expressions over events: the pipeline's `derive` columns and a table's `filter`.
//!
//! Both stages speak DataFusion's SQL, so the stream stage evaluates its expressions with
//! DataFusion too (parse, type-coerce, plan to a `PhysicalExpr`, evaluate on each Arrow
//! batch) instead of a language of its own: the functions, casts and NULL rules a user
//! knows from the batch reports mean the same thing in the stream. The one function added
//! here is [`regexp_extract`](functions::RegexpExtract) (Spark's and DuckDB's name for taking
//! one group of a match), which DataFusion spells differently.
//!
//! Compiling happens once, when the config is validated and again when a stage starts; only
//! [`CompiledExpr::evaluate`] runs per batch.
//!
//! Only DataFusion's expression crates are used (SQL parser and planner, simplifier, scalar
//! functions, physical expressions), through [`Functions`], not a `SessionContext`: that
//! would link the whole query engine into `stream-ingest`, which never runs a query.

mod functions;

use std::collections::HashMap;
use std::sync::{Arc, OnceLock};

use arrow::array::{ArrayRef, BooleanArray, RecordBatch};
use arrow::compute::{cast, prep_null_mask_filter};
use arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use arrow::error::ArrowError;
use datafusion_common::config::ConfigOptions;
use datafusion_common::{DFSchema, DataFusionError, TableReference, plan_err};
use datafusion_expr::execution_props::ExecutionProps;
use datafusion_expr::physical_planning_context::PhysicalPlanningContext;
use datafusion_expr::planner::{ContextProvider, ExprPlanner};
use datafusion_expr::simplify::SimplifyContext;
use datafusion_expr::{AggregateUDF, HigherOrderUDF, ScalarUDF, TableSource, WindowUDF};
use datafusion_optimizer::simplify_expressions::ExprSimplifier;
use datafusion_physical_expr::PhysicalExpr;
use datafusion_sql::parser::DFParserBuilder;
use datafusion_sql::planner::{ParserOptions, PlannerContext, SqlToRel};
use datafusion_sql::sqlparser::dialect::GenericDialect;

use crate::config::filter;
use crate::config::model::DerivedColumn;
use crate::types::timestamp_type;

/// An expression planned against one schema, ready to evaluate on its batches.
#[derive(Debug, Clone)]
pub struct CompiledExpr {
    physical: Arc<dyn PhysicalExpr>,
    /// What the expression gives, before [`normalize`].
    given: DataType,
    /// The type of [`CompiledExpr::evaluate`]'s arrays.
    pub data_type: DataType,
}

/// What an expression over events can name: DataFusion's scalar functions (every one of
/// `datafusion-functions`, by name and alias) and ours, with the planners of the SQL syntax
/// that stands for functions (`EXTRACT`, `POSITION`, `SUBSTRING`, `OVERLAY`, struct and
/// dictionary literals): what a `SessionContext` offers an expression, less what needs a
/// query (tables, aggregates, window functions) or arrays. One per process.
#[derive(Debug)]
struct Functions {
    scalar: HashMap<String, Arc<ScalarUDF>>,
    planners: Vec<Arc<dyn ExprPlanner>>,
    options: ConfigOptions,
}

fn functions() -> &'static Functions {
    static FUNCTIONS: OnceLock<Functions> = OnceLock::new();
    FUNCTIONS.get_or_init(|| {
        let mut all = datafusion_functions::all_default_functions();
        all.push(Arc::new(ScalarUDF::from(functions::RegexpExtract::new())));
        let mut scalar = HashMap::new();
        for f in all {
            for alias in f.aliases() {
                scalar.insert(alias.clone(), f.clone());
            }
            scalar.insert(f.name().to_string(), f);
        }
        use datafusion_functions::{core, datetime, unicode};
        let planners: Vec<Arc<dyn ExprPlanner>> = vec![
            Arc::new(core::planner::CoreFunctionPlanner::default()),
            Arc::new(datetime::planner::DatetimeFunctionPlanner),
            Arc::new(unicode::planner::UnicodeFunctionPlanner),
        ];
        Functions {
            scalar,
            planners,
            options: ConfigOptions::default(),
        }
    })
}

impl ContextProvider for Functions {
    fn get_table_source(
        &self,
        name: TableReference,
    ) -> datafusion_common::Result<Arc<dyn TableSource>> {
        plan_err!("an expression over events reads no table (`{name}`)")
    }

    fn get_expr_planners(&self) -> &[Arc<dyn ExprPlanner>] {
        &self.planners
    }

    fn get_function_meta(&self, name: &str) -> Option<Arc<ScalarUDF>> {
        self.scalar.get(name).cloned()
    }

    fn get_higher_order_meta(&self, _name: &str) -> Option<Arc<HigherOrderUDF>> {
        None
    }

    fn get_aggregate_meta(&self, _name: &str) -> Option<Arc<AggregateUDF>> {
        None
    }

    fn get_window_meta(&self, _name: &str) -> Option<Arc<WindowUDF>> {
        None
    }

    fn get_variable_type(&self, _variable_names: &[String]) -> Option<DataType> {
        None
    }

    fn options(&self) -> &ConfigOptions {
        &self.options
    }

    fn udf_names(&self) -> Vec<String> {
        self.scalar.keys().cloned().collect()
    }

    fn higher_order_function_names(&self) -> Vec<String> {
        Vec::new()
    }

    fn udaf_names(&self) -> Vec<String> {
        Vec::new()
    }

    fn udwf_names(&self) -> Vec<String> {
        Vec::new()
    }
}

/// Parses and plans `sql` as a logical expression over `schema` (what
/// `SessionContext::parse_sql_expr` does, with [`Functions`]).
fn plan(sql: &str, schema: &DFSchema) -> datafusion_common::Result<datafusion_expr::Expr> {
    let functions = functions();
    let parsed = DFParserBuilder::new(sql)
        .with_dialect(&GenericDialect {})
        .build()?
        .parse_into_expr()?;
    let options = ParserOptions::from(&functions.options.sql_parser);
    SqlToRel::new_with_options(functions, options).sql_to_expr_with_alias(
        parsed,
        schema,
        &mut PlannerContext::new(),
    )
}

/// Turns DataFusion's error text into one line a user can act on.
fn tidy(e: DataFusionError) -> String {
    let text = e.strip_backtrace();
    let text = text
        .trim_start_matches("Error during planning: ")
        .trim_start_matches("SQL error: ")
        .trim_start_matches("Schema error: ")
        .trim_start_matches("This feature is not implemented: ");
    text.lines().next().unwrap_or_default().to_string()
}

/// The types the stages store and aggregate: other results are cast to the nearest one
/// (`Int8`..`UInt16` to int32, other integers to int64, floats and decimals to float64,
/// string views to utf8, timestamps to UTC microseconds).
fn normalize(t: &DataType) -> Result<DataType, String> {
    use DataType::*;
    Ok(match t {
        Int8 | Int16 | Int32 | UInt8 | UInt16 => Int32,
        Int64 | UInt32 | UInt64 => Int64,
        Float16 | Float32 | Float64 | Decimal128(..) | Decimal256(..) => Float64,
        Utf8 | Utf8View | LargeUtf8 => Utf8,
        Timestamp(..) | Date32 | Date64 => timestamp_type(),
        Boolean => Boolean,
        Null => Utf8,
        other => {
            return Err(format!(
                "gives {other}, which a column cannot hold; CAST it (to VARCHAR, BIGINT, DOUBLE)"
            ));
        }
    })
}

/// Plans `sql` against `schema`: names must be fields of the schema, functions must exist,
/// types must agree.
pub fn compile(sql: &str, schema: &Schema) -> Result<CompiledExpr, String> {
    let df_schema = DFSchema::try_from(schema.clone()).map_err(tidy)?;
    let expr = plan(sql, &df_schema).map_err(tidy)?;
    // Some functions (`coalesce`, `nvl`) exist only until simplified into others.
    let simplifier = ExprSimplifier::new(
        SimplifyContext::builder()
            .with_schema(Arc::new(df_schema.clone()))
            .build(),
    );
    let expr = simplifier
        .coerce(expr, &df_schema)
        .and_then(|e| simplifier.simplify(e))
        .map_err(tidy)?;
    let physical = datafusion_physical_expr::create_physical_expr(
        &expr,
        &df_schema,
        &ExecutionProps::new(),
        &PhysicalPlanningContext::default(),
    )
    .map_err(tidy)?;
    let given = physical.data_type(schema).map_err(tidy)?;
    let data_type = normalize(&given)?;
    Ok(CompiledExpr {
        physical,
        given,
        data_type,
    })
}

impl CompiledExpr {
    /// The expression's value for every row of `batch` (a batch of the schema it was
    /// compiled against), in [`CompiledExpr::data_type`].
    pub fn evaluate(&self, batch: &RecordBatch) -> Result<ArrayRef, ArrowError> {
        let value = self
            .physical
            .evaluate(batch)
            .and_then(|v| v.into_array(batch.num_rows()))
            .map_err(|e| ArrowError::ComputeError(tidy(e)))?;
        if self.given == self.data_type {
            return Ok(value);
        }
        let cast_to = match &self.data_type {
            DataType::Timestamp(..) if matches!(self.given, DataType::Timestamp(_, None)) => {
                // A zone-less timestamp is taken as UTC, like the parsed event times.
                let us = cast(
                    &value,
                    &DataType::Timestamp(arrow::datatypes::TimeUnit::Microsecond, None),
                )?;
                return cast(&us, &self.data_type);
            }
            t => t.clone(),
        };
        cast(&value, &cast_to)
    }
}

/// A table's `filter`: the closed condition language of [`filter`] when the text parses as
/// it (same meaning as always: `"GET"` is a string there), else SQL. Must be boolean.
#[derive(Debug, Clone)]
pub struct Predicate {
    expr: CompiledExpr,
}

/// The SQL a `filter` text means.
pub fn filter_sql(text: &str) -> String {
    match filter::parse(text) {
        Ok(f) => f.to_sql(),
        Err(_) => text.to_string(),
    }
}

impl Predicate {
    pub fn compile(text: &str, schema: &Schema) -> Result<Self, String> {
        let expr = compile(&filter_sql(text), schema)?;
        if expr.data_type != DataType::Boolean {
            return Err(format!(
                "a filter must be true or false for each event; this one gives {}",
                expr.given
            ));
        }
        Ok(Predicate { expr })
    }

    /// `true` for the rows that pass; NULL counts as false, as in SQL's `WHERE`.
    pub fn evaluate(&self, batch: &RecordBatch) -> Result<BooleanArray, ArrowError> {
        let value = self.expr.evaluate(batch)?;
        let mask = value
            .as_any()
            .downcast_ref::<BooleanArray>()
            .ok_or_else(|| ArrowError::ComputeError("a filter gave no booleans".into()))?
            .clone();
        Ok(if arrow::array::Array::null_count(&mask) > 0 {
            prep_null_mask_filter(&mask)
        } else {
            mask
        })
    }
}

/// The pipeline's `derive` columns, compiled in order (each sees the ones before it).
#[derive(Debug, Clone, Default)]
pub struct Derivations {
    /// Each expression, with the schema it was compiled against (the input and the columns
    /// derived before it).
    columns: Vec<(CompiledExpr, SchemaRef)>,
    /// The input schema with every derived column appended.
    schema: Option<SchemaRef>,
}

impl Derivations {
    /// Compiles every column against `input` and the columns before it. An error names the
    /// index of the column at fault.
    pub fn compile(input: &SchemaRef, derive: &[DerivedColumn]) -> Result<Self, (usize, String)> {
        if derive.is_empty() {
            return Ok(Derivations::default());
        }
        let mut fields: Vec<Field> = input.fields().iter().map(|f| f.as_ref().clone()).collect();
        let mut columns = Vec::with_capacity(derive.len());
        for (i, d) in derive.iter().enumerate() {
            if fields.iter().any(|f| f.name() == &d.name) {
                return Err((i, format!("`{}` is already a field of the events", d.name)));
            }
            let schema = Arc::new(Schema::new(fields.clone()));
            let c = compile(&d.expr, &schema).map_err(|e| (i, e))?;
            fields.push(Field::new(&d.name, c.data_type.clone(), true));
            columns.push((c, schema));
        }
        Ok(Derivations {
            columns,
            schema: Some(Arc::new(Schema::new(fields))),
        })
    }

    /// The schema of [`Derivations::apply`]'s batches (`input` when nothing is derived).
    pub fn schema<'a>(&'a self, input: &'a SchemaRef) -> &'a SchemaRef {
        self.schema.as_ref().unwrap_or(input)
    }

    /// `batch` with the derived columns appended.
    pub fn apply(&self, batch: RecordBatch) -> Result<RecordBatch, ArrowError> {
        let Some(schema) = &self.schema else {
            return Ok(batch);
        };
        let mut columns = batch.columns().to_vec();
        for (c, input) in &self.columns {
            // Each expression sees the columns derived before it.
            let partial = RecordBatch::try_new(input.clone(), columns.clone())?;
            columns.push(c.evaluate(&partial)?);
        }
        RecordBatch::try_new(schema.clone(), columns)
    }
}

#[cfg(test)]
mod tests;
