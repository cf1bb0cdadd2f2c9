//! The tables a report can read, registered in a DataFusion session:
//!
//! - every windowed table (and the late-events table) as a Hive-partitioned listing table
//!   over `<lake>/<table>/`, with `dt`, `hour` and any `partition_by` keys as string columns;
//! - every dimension table from its CSV file.
//!
//! Schemas come from [`shared::schema`], never from the files, so an empty lake gives
//! empty reports and the reader can never disagree with the writer. For `validate`, the
//! same tables are registered empty, so reports can be planned without any data.

use std::sync::Arc;

use arrow::datatypes::SchemaRef;
use datafusion::datasource::MemTable;
use datafusion::datasource::file_format::parquet::ParquetFormat;
use datafusion::datasource::listing::{
    ListingOptions, ListingTable, ListingTableConfig, ListingTableUrl,
};
use datafusion::error::DataFusionError;
use datafusion::prelude::{CsvReadOptions, SessionContext};
use datafusion::prelude::{Expr, col, lit};
use shared::config::LoadedConfig;
use shared::config::validate::dimension_schema;
use shared::lake::{Lake, NULL_PARTITION, unescape_partition_value};
use shared::schema;

/// A lake table as the batch stage reads it.
pub struct LakeTable {
    pub name: String,
    /// Columns inside the files.
    pub file_schema: SchemaRef,
    /// Partition columns (strings), outermost first.
    pub partition_columns: Vec<String>,
}

/// The lake tables of a pipeline: the windowed tables, then the late-events table.
pub fn lake_tables(loaded: &LoadedConfig) -> Vec<LakeTable> {
    let cfg = &loaded.config;
    let events = schema::event_schema(&cfg.format);
    let mut out = Vec::new();
    for t in &cfg.tables {
        let Ok(ts) = schema::table_schema(t, &events) else {
            continue;
        };
        out.push(LakeTable {
            name: t.name.clone(),
            file_schema: schema::file_schema(t, &ts),
            partition_columns: schema::partition_columns(&t.partition_by, cfg.lake.partition_time),
        });
    }
    if let Some(late) = &cfg.late_events {
        out.push(LakeTable {
            name: late.table.clone(),
            file_schema: schema::late_schema(&events),
            partition_columns: schema::partition_columns(&[], cfg.lake.partition_time),
        });
    }
    out
}

/// Registers the lake tables over the files in `lake`, and the dimension tables. Windowed
/// tables show committed partitions only (those with `_SUCCESS`) unless `include_open`; the
/// late-events table has no commits and shows everything.
pub async fn register_lake(
    ctx: &SessionContext,
    loaded: &LoadedConfig,
    lake: &Lake,
    include_open: bool,
) -> Result<(), DataFusionError> {
    if lake.url.scheme() != "file" {
        let mut bucket = lake.url.clone();
        bucket.set_path("");
        ctx.register_object_store(&bucket, lake.store.clone());
    }
    for t in lake_tables(loaded) {
        let url = ListingTableUrl::parse(lake.table_url(&t.name).as_str())?;
        let options = ListingOptions::new(Arc::new(ParquetFormat::default()))
            .with_file_extension(".parquet")
            .with_table_partition_cols(
                t.partition_columns
                    .iter()
                    .map(|c| (c.clone(), arrow::datatypes::DataType::Utf8))
                    .collect(),
            );
        let config = ListingTableConfig::new(url)
            .with_listing_options(options)
            .with_schema(t.file_schema.clone());
        let table = Arc::new(ListingTable::try_new(config)?);
        let is_late = loaded
            .config
            .late_events
            .as_ref()
            .is_some_and(|l| l.table == t.name);
        if include_open || is_late {
            ctx.register_table(t.name.as_str(), table)?;
            continue;
        }
        let committed = lake
            .committed_partitions(&t.name)
            .await
            .map_err(|e| DataFusionError::External(Box::new(e)))?;
        tracing::debug!(table = %t.name, partitions = committed.len(), "committed partitions");
        let raw = format!("__all_{}", t.name);
        ctx.register_table(raw.as_str(), table)?;
        let view = ctx
            .table(raw.as_str())
            .await?
            .filter(committed_filter(&committed))?;
        ctx.register_table(t.name.as_str(), view.into_view())?;
    }
    register_dimensions(ctx, loaded).await
}

/// `(dt = … AND hour = …) OR …` over the committed partitions (values as DataFusion reads
/// them from paths: percent-decoded); false when there is none. DataFusion prunes the
/// listing with it, so open partitions are not even read.
fn committed_filter(partitions: &[Vec<String>]) -> Expr {
    partitions
        .iter()
        .filter_map(|segments| {
            segments
                .iter()
                .filter_map(|seg| seg.split_once('='))
                .map(|(k, v)| {
                    let value =
                        unescape_partition_value(v).unwrap_or_else(|| NULL_PARTITION.to_string());
                    col(crate::plan::ident(k)).eq(lit(value))
                })
                .reduce(Expr::and)
        })
        .reduce(Expr::or)
        .unwrap_or(lit(false))
}

/// Registers every table empty, with its schema: enough to plan reports.
pub async fn register_empty(
    ctx: &SessionContext,
    loaded: &LoadedConfig,
) -> Result<(), DataFusionError> {
    for t in lake_tables(loaded) {
        let schema = schema::read_schema(&t.file_schema, &t.partition_columns);
        ctx.register_table(
            t.name.as_str(),
            Arc::new(MemTable::try_new(schema, vec![vec![]])?),
        )?;
    }
    for d in &loaded.config.dimensions {
        ctx.register_table(
            d.name.as_str(),
            Arc::new(MemTable::try_new(dimension_schema(d), vec![vec![]])?),
        )?;
    }
    Ok(())
}

async fn register_dimensions(
    ctx: &SessionContext,
    loaded: &LoadedConfig,
) -> Result<(), DataFusionError> {
    for d in &loaded.config.dimensions {
        let path = loaded.resolve(&d.path);
        let path = std::fs::canonicalize(&path).map_err(|e| {
            DataFusionError::Execution(format!(
                "dimension `{}`: cannot read {}: {e}",
                d.name,
                path.display()
            ))
        })?;
        let schema = dimension_schema(d);
        let extension = path
            .extension()
            .and_then(|e| e.to_str())
            .map(|e| format!(".{e}"))
            .unwrap_or_default();
        let options = CsvReadOptions::new()
            .schema(&schema)
            .has_header(true)
            .delimiter(d.delimiter as u8)
            .file_extension(&extension);
        ctx.register_csv(d.name.as_str(), path.to_string_lossy().as_ref(), options)
            .await?;
    }
    Ok(())
}
