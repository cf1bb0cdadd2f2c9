//! Reading the lake's small Parquet files with one request each.
//!
//! A lake table is many small files (one per hour partition), and DataFusion's default reader
//! fetches each twice: the footer first, then the column chunks. On a local disk every fetch
//! is an `open` on a blocking thread, on S3 a `GET`; with a few thousand files those round
//! trips, not the decoding, were most of a report's time (bench/README.md). This reader
//! fetches a file smaller than [`WHOLE_FILE_MAX`] whole, once, and serves the footer and
//! every column chunk from that buffer; a larger file goes to DataFusion's reader.

use std::ops::Range;
use std::sync::Arc;

use bytes::Bytes;
use datafusion::datasource::listing::PartitionedFile;
use datafusion::datasource::physical_plan::parquet::{
    DefaultParquetFileReaderFactory, ParquetFileReaderFactory,
};
use datafusion::physical_plan::metrics::ExecutionPlanMetricsSet;
use futures::FutureExt;
use futures::future::BoxFuture;
use object_store::{ObjectStore, ObjectStoreExt};
use parquet::arrow::arrow_reader::ArrowReaderOptions;
use parquet::arrow::async_reader::AsyncFileReader;
use parquet::errors::ParquetError;
use parquet::file::metadata::{PageIndexPolicy, ParquetMetaData, ParquetMetaDataReader};

/// Files up to this size are read whole.
pub const WHOLE_FILE_MAX: u64 = 8 << 20;

/// Makes [`WholeFileReader`]s for small files and DataFusion's readers for the others.
#[derive(Debug)]
pub struct WholeFileReaderFactory {
    store: Arc<dyn ObjectStore>,
    large: DefaultParquetFileReaderFactory,
}

impl WholeFileReaderFactory {
    pub fn new(store: Arc<dyn ObjectStore>) -> Self {
        WholeFileReaderFactory {
            large: DefaultParquetFileReaderFactory::new(store.clone()),
            store,
        }
    }
}

impl ParquetFileReaderFactory for WholeFileReaderFactory {
    fn create_reader(
        &self,
        partition_index: usize,
        file: PartitionedFile,
        metadata_size_hint: Option<usize>,
        metrics: &ExecutionPlanMetricsSet,
    ) -> datafusion::common::Result<Box<dyn AsyncFileReader + Send>> {
        if file.object_meta.size > WHOLE_FILE_MAX {
            return self
                .large
                .create_reader(partition_index, file, metadata_size_hint, metrics);
        }
        Ok(Box::new(WholeFileReader {
            store: self.store.clone(),
            file,
            data: None,
        }))
    }
}

/// A Parquet file read whole on first use.
struct WholeFileReader {
    store: Arc<dyn ObjectStore>,
    file: PartitionedFile,
    data: Option<Bytes>,
}

fn external(e: object_store::Error) -> ParquetError {
    ParquetError::External(Box::new(e))
}

impl WholeFileReader {
    async fn data(&mut self) -> parquet::errors::Result<Bytes> {
        if let Some(d) = &self.data {
            return Ok(d.clone());
        }
        let location = &self.file.object_meta.location;
        let data = self
            .store
            .get(location)
            .await
            .map_err(external)?
            .bytes()
            .await
            .map_err(external)?;
        self.data = Some(data.clone());
        Ok(data)
    }
}

fn slice(data: &Bytes, range: Range<u64>) -> parquet::errors::Result<Bytes> {
    let (start, end) = (range.start as usize, range.end as usize);
    if start > end || end > data.len() {
        return Err(ParquetError::EOF(format!(
            "range {start}..{end} of a {}-byte file",
            data.len()
        )));
    }
    Ok(data.slice(start..end))
}

impl AsyncFileReader for WholeFileReader {
    fn get_bytes(&mut self, range: Range<u64>) -> BoxFuture<'_, parquet::errors::Result<Bytes>> {
        async move { slice(&self.data().await?, range) }.boxed()
    }

    fn get_byte_ranges(
        &mut self,
        ranges: Vec<Range<u64>>,
    ) -> BoxFuture<'_, parquet::errors::Result<Vec<Bytes>>> {
        async move {
            let data = self.data().await?;
            ranges.into_iter().map(|r| slice(&data, r)).collect()
        }
        .boxed()
    }

    fn get_metadata<'a>(
        &'a mut self,
        options: Option<&'a ArrowReaderOptions>,
    ) -> BoxFuture<'a, parquet::errors::Result<Arc<ParquetMetaData>>> {
        async move {
            let data = self.data().await?;
            let policy = options.map_or(PageIndexPolicy::Skip, |o| o.column_index_policy());
            let metadata = ParquetMetaDataReader::new()
                .with_page_index_policy(policy)
                .parse_and_finish(&data)?;
            Ok(Arc::new(metadata))
        }
        .boxed()
    }
}
