//! How our tables cross the wire to a Ballista scheduler.
//!
//! DataFusion's plan serialization knows listing tables and views, not the tables a run
//! registers: a lake table is a [`SnapshotTable`] (a fixed list of files), a dimension in
//! cluster mode a [`DimensionTable`] (its rows, read once by the client). [`LakeCodec`]
//! writes both as a tag byte and a payload and reads them back on the scheduler; everything
//! else goes to Ballista's own codec. The scheduler then plans a snapshot table into a plain
//! Parquet scan, which Ballista's physical codec carries to the executors as it is.

use std::io::Cursor;
use std::sync::Arc;

use arrow::array::RecordBatch;
use arrow::datatypes::SchemaRef;
use arrow::ipc::reader::StreamReader;
use arrow::ipc::writer::StreamWriter;
use async_trait::async_trait;
use ballista_core::serde::BallistaLogicalExtensionCodec;
use datafusion::catalog::{Session, TableProvider};
use datafusion::common::TableReference;
use datafusion::datasource::TableType;
use datafusion::datasource::file_format::FileFormatFactory;
use datafusion::datasource::memory::MemorySourceConfig;
use datafusion::error::{DataFusionError, Result};
use datafusion::execution::TaskContext;
use datafusion::logical_expr::{AggregateUDF, Expr, Extension, LogicalPlan, ScalarUDF, WindowUDF};
use datafusion::physical_plan::ExecutionPlan;
use datafusion_proto::logical_plan::LogicalExtensionCodec;

use crate::catalog::SnapshotTable;

const SNAPSHOT: u8 = 1;
const DIMENSION: u8 = 2;

/// Ballista's logical codec, plus our two tables.
#[derive(Debug, Default)]
pub struct LakeCodec {
    inner: BallistaLogicalExtensionCodec,
}

impl LogicalExtensionCodec for LakeCodec {
    fn try_decode(
        &self,
        buf: &[u8],
        inputs: &[LogicalPlan],
        ctx: &TaskContext,
    ) -> Result<Extension> {
        self.inner.try_decode(buf, inputs, ctx)
    }

    fn try_encode(&self, node: &Extension, buf: &mut Vec<u8>) -> Result<()> {
        self.inner.try_encode(node, buf)
    }

    fn try_decode_table_provider(
        &self,
        buf: &[u8],
        table_ref: &TableReference,
        schema: SchemaRef,
        ctx: &TaskContext,
    ) -> Result<Arc<dyn TableProvider>> {
        match buf.split_first() {
            Some((&SNAPSHOT, payload)) => Ok(Arc::new(SnapshotTable::from_wire(schema, payload)?)),
            Some((&DIMENSION, payload)) => Ok(Arc::new(DimensionTable::from_ipc(payload)?)),
            _ => self
                .inner
                .try_decode_table_provider(buf, table_ref, schema, ctx),
        }
    }

    fn try_encode_table_provider(
        &self,
        table_ref: &TableReference,
        node: Arc<dyn TableProvider>,
        buf: &mut Vec<u8>,
    ) -> Result<()> {
        if let Some(t) = node.downcast_ref::<SnapshotTable>() {
            buf.push(SNAPSHOT);
            buf.extend_from_slice(&t.to_wire()?);
            Ok(())
        } else if let Some(t) = node.downcast_ref::<DimensionTable>() {
            buf.push(DIMENSION);
            t.write_ipc(buf)
        } else {
            self.inner.try_encode_table_provider(table_ref, node, buf)
        }
    }

    fn try_decode_file_format(
        &self,
        buf: &[u8],
        ctx: &TaskContext,
    ) -> Result<Arc<dyn FileFormatFactory>> {
        self.inner.try_decode_file_format(buf, ctx)
    }

    fn try_encode_file_format(
        &self,
        buf: &mut Vec<u8>,
        node: Arc<dyn FileFormatFactory>,
    ) -> Result<()> {
        self.inner.try_encode_file_format(buf, node)
    }

    fn try_decode_udf(&self, name: &str, buf: &[u8]) -> Result<Arc<ScalarUDF>> {
        self.inner.try_decode_udf(name, buf)
    }

    fn try_encode_udf(&self, node: &ScalarUDF, buf: &mut Vec<u8>) -> Result<()> {
        self.inner.try_encode_udf(node, buf)
    }

    fn try_decode_udaf(&self, name: &str, buf: &[u8]) -> Result<Arc<AggregateUDF>> {
        self.inner.try_decode_udaf(name, buf)
    }

    fn try_encode_udaf(&self, node: &AggregateUDF, buf: &mut Vec<u8>) -> Result<()> {
        self.inner.try_encode_udaf(node, buf)
    }

    fn try_decode_udwf(&self, name: &str, buf: &[u8]) -> Result<Arc<WindowUDF>> {
        self.inner.try_decode_udwf(name, buf)
    }

    fn try_encode_udwf(&self, node: &WindowUDF, buf: &mut Vec<u8>) -> Result<()> {
        self.inner.try_encode_udwf(node, buf)
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

    fn write_ipc(&self, buf: &mut Vec<u8>) -> Result<()> {
        let mut writer = StreamWriter::try_new(buf, &self.schema)?;
        for b in &self.batches {
            writer.write(b)?;
        }
        writer.finish()?;
        Ok(())
    }

    fn from_ipc(payload: &[u8]) -> Result<DimensionTable> {
        let reader = StreamReader::try_new(Cursor::new(payload), None)?;
        let schema = reader.schema();
        let batches = reader
            .collect::<std::result::Result<Vec<_>, _>>()
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
    ) -> Result<Arc<dyn ExecutionPlan>> {
        Ok(MemorySourceConfig::try_new_exec(
            std::slice::from_ref(&self.batches),
            self.schema.clone(),
            projection.cloned(),
        )?)
    }
}

#[cfg(test)]
mod tests {
    use arrow::array::{Int32Array, StringArray};
    use arrow::datatypes::{DataType, Field, Schema};

    use super::*;

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
