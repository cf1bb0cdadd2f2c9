//! Report outputs: CSV, Parquet, JSON lines, or a terminal table; to standard output or to
//! `DIR/<report>.<ext>`, written under a hidden temporary name in `DIR` and renamed into
//! place once complete, so a reader (or a cron job's next step) never sees half a report.

use std::io::Write;
use std::path::{Path, PathBuf};

use arrow::array::RecordBatch;
use arrow::datatypes::SchemaRef;
use arrow::error::ArrowError;
use parquet::arrow::ArrowWriter;
use parquet::errors::ParquetError;

/// Output formats of a report.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum OutputFormat {
    /// Comma-separated values with a header; NULL is an empty field.
    Csv,
    /// Apache Parquet.
    Parquet,
    /// One JSON object per row (JSON lines).
    Json,
    /// An aligned text table, for people.
    Table,
    /// One self-contained HTML page for the whole run: each report as a table and its chart.
    Html,
}

impl OutputFormat {
    pub fn extension(&self) -> &'static str {
        match self {
            OutputFormat::Csv => "csv",
            OutputFormat::Parquet => "parquet",
            OutputFormat::Json => "jsonl",
            OutputFormat::Table => "txt",
            OutputFormat::Html => "html",
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum OutputError {
    #[error("arrow: {0}")]
    Arrow(#[from] ArrowError),
    #[error("parquet: {0}")]
    Parquet(#[from] ParquetError),
    #[error("cannot write {}: {source}", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

/// Encodes a report in a format.
pub fn encode(
    format: OutputFormat,
    schema: &SchemaRef,
    batches: &[RecordBatch],
) -> Result<Vec<u8>, OutputError> {
    let mut out = Vec::new();
    match format {
        OutputFormat::Csv => {
            let mut w = arrow::csv::WriterBuilder::new()
                .with_header(true)
                .build(&mut out);
            if batches.is_empty() {
                w.write(&RecordBatch::new_empty(schema.clone()))?;
            }
            for b in batches {
                w.write(b)?;
            }
        }
        OutputFormat::Json => {
            let mut w = arrow::json::LineDelimitedWriter::new(&mut out);
            for b in batches {
                w.write(b)?;
            }
            w.finish()?;
        }
        OutputFormat::Parquet => {
            let mut w = ArrowWriter::try_new(&mut out, schema.clone(), None)?;
            for b in batches {
                w.write(b)?;
            }
            w.close()?;
        }
        OutputFormat::Html => {
            let page = crate::html::render(
                "report",
                "",
                &[crate::html::HtmlReport {
                    name: "report",
                    description: None,
                    schema,
                    batches,
                    chart: None,
                }],
            );
            out.extend_from_slice(page.as_bytes());
        }
        OutputFormat::Table => {
            let text = if batches.is_empty() {
                arrow::util::pretty::pretty_format_batches(&[RecordBatch::new_empty(
                    schema.clone(),
                )])?
            } else {
                arrow::util::pretty::pretty_format_batches(batches)?
            };
            writeln!(out, "{text}").expect("writing to a Vec cannot fail");
        }
    }
    Ok(out)
}

/// Writes `DIR/<name>.<ext>` atomically: a hidden temporary file, synced, then renamed.
pub fn write_atomically(dir: &Path, file_name: &str, data: &[u8]) -> Result<PathBuf, OutputError> {
    let target = dir.join(file_name);
    let io = |source| OutputError::Io {
        path: target.clone(),
        source,
    };
    std::fs::create_dir_all(dir).map_err(io)?;
    let tmp = dir.join(format!(".{file_name}.tmp-{}", std::process::id()));
    let result = (|| {
        let mut f = std::fs::File::create(&tmp)?;
        f.write_all(data)?;
        f.sync_all()?;
        std::fs::rename(&tmp, &target)
    })();
    if let Err(e) = result {
        let _ = std::fs::remove_file(&tmp);
        return Err(io(e));
    }
    Ok(target)
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow::array::{Int64Array, StringArray};
    use arrow::datatypes::{DataType, Field, Schema};
    use std::sync::Arc;

    fn batch() -> RecordBatch {
        let schema = Arc::new(Schema::new(vec![
            Field::new("dt", DataType::Utf8, true),
            Field::new("requests", DataType::Int64, true),
        ]));
        RecordBatch::try_new(
            schema,
            vec![
                Arc::new(StringArray::from(vec![Some("2015-05-17"), None])),
                Arc::new(Int64Array::from(vec![3, 4])),
            ],
        )
        .unwrap()
    }

    #[test]
    fn formats() {
        let b = batch();
        let csv = encode(OutputFormat::Csv, &b.schema(), std::slice::from_ref(&b)).unwrap();
        assert_eq!(
            String::from_utf8(csv).unwrap(),
            "dt,requests\n2015-05-17,3\n,4\n"
        );
        let json = encode(OutputFormat::Json, &b.schema(), std::slice::from_ref(&b)).unwrap();
        assert_eq!(
            String::from_utf8(json).unwrap(),
            "{\"dt\":\"2015-05-17\",\"requests\":3}\n{\"requests\":4}\n"
        );
        let table = String::from_utf8(
            encode(OutputFormat::Table, &b.schema(), std::slice::from_ref(&b)).unwrap(),
        )
        .unwrap();
        assert!(table.contains("| 2015-05-17 | 3        |"), "{table}");
        let pq = encode(OutputFormat::Parquet, &b.schema(), std::slice::from_ref(&b)).unwrap();
        assert_eq!(&pq[..4], b"PAR1");
        let empty = encode(OutputFormat::Csv, &b.schema(), &[]).unwrap();
        assert_eq!(String::from_utf8(empty).unwrap(), "dt,requests\n");
    }

    #[test]
    fn atomic_write_leaves_no_temporary_file() {
        let dir = tempfile::tempdir().unwrap();
        let p = write_atomically(dir.path(), "r.csv", b"a\n").unwrap();
        assert_eq!(std::fs::read(&p).unwrap(), b"a\n");
        let names: Vec<_> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names, vec![std::ffi::OsString::from("r.csv")]);
    }
}
