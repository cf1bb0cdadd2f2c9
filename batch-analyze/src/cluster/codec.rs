//! How our tables cross the wire to a Ballista scheduler.
//!
//! DataFusion's plan serialization knows listing tables and views, not the tables a run
//! registers: a lake table is a [`SnapshotTable`] (a fixed list of files), a dimension in
//! cluster mode a [`DimensionTable`] (its rows, read once by the client); both are defined in
//! [`crate::tables`]. [`LakeCodec`] writes both as a tag byte and a payload and reads them
//! back on the scheduler; everything else goes to Ballista's own codec. The scheduler then
//! plans a snapshot table into a plain Parquet scan, which Ballista's physical codec carries
//! to the executors as it is.

use std::sync::Arc;

use arrow::datatypes::SchemaRef;
use ballista_core::serde::BallistaLogicalExtensionCodec;
use datafusion::catalog::TableProvider;
use datafusion::common::TableReference;
use datafusion::datasource::file_format::FileFormatFactory;
use datafusion::error::Result;
use datafusion::execution::TaskContext;
use datafusion::logical_expr::{AggregateUDF, Extension, LogicalPlan, ScalarUDF, WindowUDF};
use datafusion_proto::logical_plan::LogicalExtensionCodec;

use crate::tables::{DimensionTable, SnapshotTable};

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
