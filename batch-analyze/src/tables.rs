//! The two kinds of DataFusion table a run registers that DataFusion itself does not have,
//! in their own file because both the catalog (which builds them) and the cluster codec
//! (which sends them to a Ballista scheduler and reads them back) need them:
//!
//! - [`SnapshotTable`]: a lake table over the fixed list of files a snapshot found
//!   ([`crate::catalog`]), read with the whole-file reader of [`crate::small_files`];
//! - [`DimensionTable`]: a dimension's rows, read once by the client and shipped inside the
//!   plan when the query runs on a cluster.

#[cfg(feature = "cluster")]
use std::io::Cursor;
use std::sync::Arc;

use arrow::array::RecordBatch;
use arrow::datatypes::{DataType, Field, SchemaRef};
#[cfg(feature = "cluster")]
use arrow::ipc::reader::StreamReader;
#[cfg(feature = "cluster")]
use arrow::ipc::writer::StreamWriter;
use async_trait::async_trait;
use datafusion::catalog::Session;
#[cfg(feature = "cluster")]
use datafusion::common::ScalarValue;
use datafusion::datasource::listing::PartitionedFile;
use datafusion::datasource::memory::MemorySourceConfig;
use datafusion::datasource::physical_plan::ParquetSource;
use datafusion::datasource::physical_plan::{FileGroup, FileScanConfigBuilder};
use datafusion::datasource::source::DataSourceExec;
use datafusion::datasource::table_schema::TableSchemaBuilder;
use datafusion::datasource::{TableProvider, TableType};
use datafusion::error::DataFusionError;
use datafusion::execution::object_store::ObjectStoreUrl;
use datafusion::physical_plan::ExecutionPlan;
use datafusion::physical_plan::empty::EmptyExec;
use datafusion::prelude::Expr;
#[cfg(feature = "cluster")]
use object_store::ObjectMeta;

use crate::small_files::WholeFileReaderFactory;

/// A lake table over a fixed list of files.
#[derive(Debug)]
pub struct SnapshotTable {
    schema: SchemaRef,
    file_schema: SchemaRef,
    partition_columns: Vec<String>,
    files: Vec<PartitionedFile>,
    store_url: ObjectStoreUrl,
}

/// A [`SnapshotTable`] as it travels to a cluster's scheduler ([`crate::cluster::codec`]).
#[cfg(feature = "cluster")]
#[derive(serde::Serialize, serde::Deserialize)]
struct WireSnapshot {
    store_url: String,
    partition_columns: Vec<String>,
    files: Vec<WireFile>,
}

#[cfg(feature = "cluster")]
#[derive(serde::Serialize, serde::Deserialize)]
struct WireFile {
    path: String,
    size: u64,
    modified_ms: i64,
    values: Vec<Option<String>>,
}

impl SnapshotTable {
    /// A table of `files`, whose read schema is the file schema and then the partition
    /// columns ([`shared::schema::read_schema`]).
    pub fn new(
        file_schema: SchemaRef,
        partition_columns: Vec<String>,
        files: Vec<PartitionedFile>,
        store_url: ObjectStoreUrl,
    ) -> SnapshotTable {
        SnapshotTable {
            schema: shared::schema::read_schema(&file_schema, &partition_columns),
            file_schema,
            partition_columns,
            files,
            store_url,
        }
    }

    /// The table as bytes; the read schema travels beside it (in the plan).
    #[cfg(feature = "cluster")]
    pub fn to_wire(&self) -> Result<Vec<u8>, DataFusionError> {
        let files = self
            .files
            .iter()
            .map(|f| WireFile {
                path: f.object_meta.location.to_string(),
                size: f.object_meta.size,
                modified_ms: f.object_meta.last_modified.timestamp_millis(),
                values: f
                    .partition_values
                    .iter()
                    .map(|v| match v {
                        ScalarValue::Utf8(s) => s.clone(),
                        other => Some(other.to_string()),
                    })
                    .collect(),
            })
            .collect();
        let wire = WireSnapshot {
            store_url: self.store_url.as_str().to_string(),
            partition_columns: self.partition_columns.clone(),
            files,
        };
        serde_json::to_vec(&wire).map_err(|e| DataFusionError::External(Box::new(e)))
    }

    /// The table [`Self::to_wire`] wrote, with its read schema.
    #[cfg(feature = "cluster")]
    pub fn from_wire(schema: SchemaRef, bytes: &[u8]) -> Result<SnapshotTable, DataFusionError> {
        let wire: WireSnapshot =
            serde_json::from_slice(bytes).map_err(|e| DataFusionError::External(Box::new(e)))?;
        let n_files = schema
            .fields()
            .len()
            .saturating_sub(wire.partition_columns.len());
        let file_schema = Arc::new(schema.project(&(0..n_files).collect::<Vec<_>>())?);
        let files = wire
            .files
            .into_iter()
            .map(|f| {
                let meta = ObjectMeta {
                    location: object_store::path::Path::from(f.path),
                    last_modified: chrono::DateTime::from_timestamp_millis(f.modified_ms)
                        .unwrap_or_default(),
                    size: f.size,
                    e_tag: None,
                    version: None,
                };
                let mut pf = PartitionedFile::from(meta);
                pf.partition_values = f.values.into_iter().map(ScalarValue::Utf8).collect();
                pf
            })
            .collect();
        Ok(SnapshotTable {
            schema,
            file_schema,
            partition_columns: wire.partition_columns,
            files,
            store_url: ObjectStoreUrl::parse(&wire.store_url)?,
        })
    }
}

#[async_trait]
impl TableProvider for SnapshotTable {
    fn schema(&self) -> SchemaRef {
        self.schema.clone()
    }

    fn table_type(&self) -> TableType {
        TableType::Base
    }

    async fn scan(
        &self,
        state: &dyn Session,
        projection: Option<&Vec<usize>>,
        _filters: &[Expr],
        limit: Option<usize>,
    ) -> Result<Arc<dyn ExecutionPlan>, DataFusionError> {
        if self.files.is_empty() {
            let schema = match projection {
                Some(p) => Arc::new(self.schema.project(p)?),
                None => self.schema.clone(),
            };
            return Ok(Arc::new(EmptyExec::new(schema)));
        }
        let groups_wanted = state.config().target_partitions().max(1);
        let mut groups: Vec<Vec<PartitionedFile>> = vec![Vec::new(); groups_wanted];
        for (i, f) in self.files.iter().enumerate() {
            groups[i % groups_wanted].push(f.clone());
        }
        let groups: Vec<FileGroup> = groups
            .into_iter()
            .filter(|g| !g.is_empty())
            .map(FileGroup::new)
            .collect();
        // Lake files are small (one partition of one table): the page index would prune
        // nothing, and each file is best fetched whole, once (crate::small_files).
        let mut options = state.table_options().parquet.clone();
        options.global.enable_page_index = false;
        let table_schema = TableSchemaBuilder::new(self.file_schema.clone())
            .with_table_partition_cols(
                self.partition_columns
                    .iter()
                    .map(|c| Arc::new(Field::new(c, DataType::Utf8, true)))
                    .collect::<Vec<_>>(),
            )
            .build();
        let mut source = ParquetSource::new(table_schema).with_table_parquet_options(options);
        // A cluster's scheduler may not know the lake's store; its executors read with
        // DataFusion's own reader anyway (Ballista's codec carries no reader factory).
        if let Ok(store) = state.runtime_env().object_store(&self.store_url) {
            source = source
                .with_parquet_file_reader_factory(Arc::new(WholeFileReaderFactory::new(store)));
        }
        let config = FileScanConfigBuilder::new(self.store_url.clone(), Arc::new(source))
            .with_file_groups(groups)
            .with_projection_indices(projection.cloned())?
            .with_limit(limit)
            .build();
        Ok(DataSourceExec::from_data_source(config))
    }
}

/// A dimension's rows, read by the client and shipped inside the plan: executors need no
/// copy of the file (dimensions are small; the lake is what is big).
#[derive(Debug)]
pub struct DimensionTable {
    schema: SchemaRef,
    batches: Vec<RecordBatch>,
}

impl DimensionTable {
    pub fn new(schema: SchemaRef, batches: Vec<RecordBatch>) -> DimensionTable {
        DimensionTable { schema, batches }
    }

    #[cfg(feature = "cluster")]
    pub fn write_ipc(&self, buf: &mut Vec<u8>) -> Result<(), DataFusionError> {
        let mut writer = StreamWriter::try_new(buf, &self.schema)?;
        for b in &self.batches {
            writer.write(b)?;
        }
        writer.finish()?;
        Ok(())
    }

    #[cfg(feature = "cluster")]
    pub fn from_ipc(payload: &[u8]) -> Result<DimensionTable, DataFusionError> {
        let reader = StreamReader::try_new(Cursor::new(payload), None)?;
        let schema = reader.schema();
        let batches = reader
            .collect::<Result<Vec<_>, _>>()
            .map_err(DataFusionError::from)?;
        Ok(DimensionTable { schema, batches })
    }
}

#[async_trait]
impl TableProvider for DimensionTable {
    fn schema(&self) -> SchemaRef {
        self.schema.clone()
    }

    fn table_type(&self) -> TableType {
        TableType::Base
    }

    async fn scan(
        &self,
        _state: &dyn Session,
        projection: Option<&Vec<usize>>,
        _filters: &[Expr],
        _limit: Option<usize>,
    ) -> Result<Arc<dyn ExecutionPlan>, DataFusionError> {
        Ok(MemorySourceConfig::try_new_exec(
            std::slice::from_ref(&self.batches),
            self.schema.clone(),
            projection.cloned(),
        )?)
    }
}

#[cfg(all(test, feature = "cluster"))]
mod tests {
    use arrow::array::{Int32Array, StringArray};
    use arrow::datatypes::{DataType, Field, Schema};

    use datafusion::common::TableReference;
    use datafusion::execution::TaskContext;
    use datafusion_proto::logical_plan::LogicalExtensionCodec;

    use super::*;
    use crate::cluster::codec::LakeCodec;

    #[test]
    fn a_dimension_round_trips() {
        let schema = Arc::new(Schema::new(vec![
            Field::new("status", DataType::Int32, false),
            Field::new("description", DataType::Utf8, true),
        ]));
        let batch = RecordBatch::try_new(
            schema.clone(),
            vec![
                Arc::new(Int32Array::from(vec![200, 404])),
                Arc::new(StringArray::from(vec![Some("OK"), None])),
            ],
        )
        .unwrap();
        let table: Arc<dyn TableProvider> =
            Arc::new(DimensionTable::new(schema.clone(), vec![batch.clone()]));
        let codec = LakeCodec::default();
        let mut buf = Vec::new();
        let name = TableReference::bare("status_codes");
        codec
            .try_encode_table_provider(&name, table, &mut buf)
            .unwrap();
        let ctx = TaskContext::default();
        let back = codec
            .try_decode_table_provider(&buf, &name, schema.clone(), &ctx)
            .unwrap();
        let back = back.downcast_ref::<DimensionTable>().unwrap();
        assert_eq!(back.schema, schema);
        assert_eq!(back.batches, vec![batch]);
    }
}
