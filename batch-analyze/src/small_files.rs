//! Reading the lake's small Parquet files with one request each.
//!
//! A lake table is many small files (one per hour partition), and DataFusion's default reader
//! fetches each twice: the footer first, then the column chunks. On a local disk every fetch
//! is an `open` on a blocking thread, on S3 a `GET`; with a few thousand files those round
//! trips, not the decoding, were most of a report's time (bench/README.md). This reader
//! fetches a file smaller than [`WHOLE_FILE_MAX`] whole, once, and serves the footer and
//! every column chunk from that buffer; a larger file goes to DataFusion's reader.
//!
//! Either way, an error reading a file names it: the catalog attaches a [`LakeFile`] to
//! each file of a scan (its path as the user writes the lake, and whether its partition is
//! committed), and the reader turns a failure into a [`LakeFileError`] that says which file
//! and what to do. DataFusion carries it up inside its own error; [`LakeFileError::find`]
//! takes it back out.

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
        let named = file.extensions.get_arc::<LakeFile>().unwrap_or_else(|| {
            Arc::new(LakeFile {
                shown: file.object_meta.location.to_string(),
                origin: FileOrigin::Committed,
            })
        });
        let inner: Box<dyn AsyncFileReader + Send> = if file.object_meta.size > WHOLE_FILE_MAX {
            self.large
                .create_reader(partition_index, file, metadata_size_hint, metrics)?
        } else {
            Box::new(WholeFileReader {
                store: self.store.clone(),
                file,
                data: None,
            })
        };
        Ok(Box::new(NamedReader { inner, file: named }))
    }
}

/// Why a lake file is read, which decides what a user can do when it does not read back.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FileOrigin {
    /// Named by its partition's `_SUCCESS`.
    Committed,
    /// In a partition without `_SUCCESS`, read because of `--include-open`.
    Open,
    /// In the late-events table, which has no markers.
    Late,
}

/// A lake file as messages name it, attached to the file in a scan
/// (`PartitionedFile::extensions`).
#[derive(Debug, Clone)]
pub struct LakeFile {
    /// The path as the user writes the lake: `/data/lake/t/dt=…/part-….parquet`,
    /// `s3://bucket/prefix/t/…` ([`shared::lake::Lake::display`]).
    pub shown: String,
    pub origin: FileOrigin,
}

/// A lake file that could not be read: which one, what went wrong, what to do.
#[derive(Debug, Clone, thiserror::Error)]
#[error("cannot read {path}: {problem}; {hint}")]
pub struct LakeFileError {
    pub path: String,
    pub problem: String,
    pub hint: String,
}

/// What to do about a file that is there but is not valid Parquet.
const REBUILD: &str = "restore it from a backup, or rebuild the lake from its input with `stream-ingest run --from-scratch` (it rewrites every file)";

impl LakeFileError {
    /// Names the file in an error of the Parquet reader.
    pub fn new(file: &LakeFile, error: &ParquetError) -> LakeFileError {
        let io = match error {
            ParquetError::External(e) => e.downcast_ref::<object_store::Error>(),
            _ => None,
        };
        let (problem, hint) = match io {
            Some(object_store::Error::NotFound { .. }) => (
                "it is not there any more".to_string(),
                "it was removed after this run listed its partition (a compaction or a rebuild at the same time?): run again".to_string(),
            ),
            Some(e) => (
                e.to_string(),
                "check that the lake can be read, then run again".to_string(),
            ),
            None => (
                parquet_problem(error),
                match file.origin {
                    FileOrigin::Committed => format!("the file is damaged: {REBUILD}"),
                    FileOrigin::Open => format!(
                        "the file is damaged; its partition is not committed yet and is read because of --include-open: run without --include-open to leave it out, or {REBUILD}"
                    ),
                    FileOrigin::Late => {
                        format!("the file (late events) is damaged: {REBUILD}")
                    }
                },
            ),
        };
        LakeFileError {
            path: file.shown.clone(),
            problem,
            hint,
        }
    }

    /// The lake file error somewhere inside a DataFusion error, if any.
    pub fn find<'a>(error: &'a (dyn std::error::Error + 'static)) -> Option<&'a LakeFileError> {
        let mut next = Some(error);
        while let Some(e) = next {
            if let Some(found) = e.downcast_ref::<LakeFileError>() {
                return Some(found);
            }
            next = e.source();
        }
        None
    }
}

/// Whether a query error comes from decoding Parquet (a damaged file) somewhere below.
pub fn is_parquet_error(error: &(dyn std::error::Error + 'static)) -> bool {
    let mut next = Some(error);
    while let Some(e) = next {
        let arrow_parquet = matches!(
            e.downcast_ref::<arrow::error::ArrowError>(),
            Some(arrow::error::ArrowError::ParquetError(_))
        );
        if arrow_parquet || e.is::<ParquetError>() {
            return true;
        }
        next = e.source();
    }
    false
}

/// A Parquet error's message without the `Parquet error: ` that its `Display` puts first
/// (DataFusion puts another one before it).
fn parquet_problem(error: &ParquetError) -> String {
    match error {
        ParquetError::General(m) => m.strip_prefix("Parquet error: ").unwrap_or(m).to_string(),
        ParquetError::EOF(m) => format!("unexpected end of file: {m}"),
        other => other.to_string(),
    }
}

/// A reader whose errors name the file ([`LakeFileError`]).
struct NamedReader {
    inner: Box<dyn AsyncFileReader + Send>,
    file: Arc<LakeFile>,
}

impl NamedReader {
    fn name(file: &LakeFile, e: ParquetError) -> ParquetError {
        ParquetError::External(Box::new(LakeFileError::new(file, &e)))
    }
}

impl AsyncFileReader for NamedReader {
    fn get_bytes(&mut self, range: Range<u64>) -> BoxFuture<'_, parquet::errors::Result<Bytes>> {
        let file = self.file.clone();
        self.inner
            .get_bytes(range)
            .map(move |r| r.map_err(|e| Self::name(&file, e)))
            .boxed()
    }

    fn get_byte_ranges(
        &mut self,
        ranges: Vec<Range<u64>>,
    ) -> BoxFuture<'_, parquet::errors::Result<Vec<Bytes>>> {
        let file = self.file.clone();
        self.inner
            .get_byte_ranges(ranges)
            .map(move |r| r.map_err(|e| Self::name(&file, e)))
            .boxed()
    }

    fn get_metadata<'a>(
        &'a mut self,
        options: Option<&'a ArrowReaderOptions>,
    ) -> BoxFuture<'a, parquet::errors::Result<Arc<ParquetMetaData>>> {
        let file = self.file.clone();
        self.inner
            .get_metadata(options)
            .map(move |r| r.map_err(|e| Self::name(&file, e)))
            .boxed()
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
