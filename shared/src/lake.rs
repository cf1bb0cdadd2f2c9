//! The lake layout: where every file lives under the lake root, defined once.
//!
//! ```text
//! <root>/
//! ├── status_1m/                          a windowed table
//! │   └── dt=2015-05-17/                  day of window_start (UTC)
//! │       └── hour=10/                    hour of window_start (UTC)
//! │           ├── part-<id>.parquet       published, complete, never empty
//! │           └── _SUCCESS                the partition is complete (JSON: rows, files)
//! ├── path_1m/…
//! ├── late/…                              late events (when asked for), by event time
//! ├── reports/top_paths/dt=…/             a report written to the lake (batch-analyze)
//! ├── _staging/                           hidden: files written, not yet published
//! │   └── status_1m/dt=…/hour=…/part-<id>.parquet.inprogress
//! ├── _checkpoints/<pipeline>/            hidden: the stream stage's checkpoints
//! │   └── ckpt-0000000042.bin
//! └── _state/batch-analyze/<pipeline>/    hidden: incremental state and locks of reports
//!     ├── top_paths.json
//!     └── top_paths.lock
//! ```
//!
//! Readers (Spark, DuckDB, Trino, pandas, DataFusion) read `<root>/<table>` as a Hive
//! partitioned table: everything that is not a finished data file starts with `_` or `.`, and
//! staged files do not even end in `.parquet`.
//!
//! Partition values that come from data (key columns in `partition_by`) are escaped the way
//! Hive escapes them ([`escape_partition_value`]): `/`, `=`, `%`, control characters and the
//! rest of Hive's list become `%XX`, so no value can name a directory outside its table.

use std::path::PathBuf;
use std::sync::Arc;

use chrono::{DateTime, Utc};
use object_store::ObjectStore;
use object_store::aws::{AmazonS3, AmazonS3Builder};
use object_store::local::LocalFileSystem;
use object_store::path::{Path, PathPart};
use url::Url;

use crate::config::{S3Config, TimePartitioning};
use crate::schema;

/// Name of the hidden folder where files are staged before they are published.
pub const STAGING_DIR: &str = "_staging";
/// Suffix of staged files: no reader's `*.parquet` pattern matches them.
pub const STAGING_SUFFIX: &str = ".inprogress";
/// The partition commit marker: a partition holding it is complete.
pub const COMMIT_MARKER: &str = "_SUCCESS";
/// Name of the hidden folder holding the stream stage's checkpoints, one folder per pipeline.
pub const CHECKPOINT_DIR: &str = "_checkpoints";
/// Name of the hidden folder holding the state of batch runs (incremental state, locks).
pub const STATE_DIR: &str = "_state";
/// Hive's name for the partition of NULL (and empty) values.
pub const NULL_PARTITION: &str = "__HIVE_DEFAULT_PARTITION__";

#[derive(Debug, thiserror::Error)]
pub enum LakeError {
    #[error("invalid lake root `{root}`: {reason}")]
    InvalidRoot { root: String, reason: String },
    #[error("cannot create the lake directory {}: {source}", path.display())]
    CreateDir {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot open object storage for `{root}`: {source}")]
    Store {
        root: String,
        #[source]
        source: object_store::Error,
    },
}

/// A lake root as written in the YAML or on the command line, before anything is opened.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LakeRoot {
    /// A local directory.
    Local(PathBuf),
    /// `s3://bucket/prefix`.
    S3 { bucket: String, prefix: String },
}

impl LakeRoot {
    /// Parses a root without touching the disk or the network.
    pub fn parse(root: &str) -> Result<LakeRoot, String> {
        let root = root.trim();
        if root.is_empty() {
            return Err("the lake root is empty".into());
        }
        if let Some((scheme, _)) = root.split_once("://") {
            let url = Url::parse(root).map_err(|e| format!("`{root}` is not a URL: {e}"))?;
            return match scheme {
                "file" => url.to_file_path().map(LakeRoot::Local).map_err(|_| {
                    format!("`{root}` is not an absolute file URL (write file:///abs/dir)")
                }),
                "s3" | "s3a" => {
                    let bucket = url.host_str().unwrap_or_default().to_string();
                    if bucket.is_empty() {
                        return Err(format!(
                            "`{root}` names no bucket (write s3://bucket/prefix)"
                        ));
                    }
                    let prefix = url.path().trim_matches('/').to_string();
                    Path::parse(&prefix).map_err(|e| format!("bad prefix in `{root}`: {e}"))?;
                    Ok(LakeRoot::S3 { bucket, prefix })
                }
                other => Err(format!(
                    "`{other}://` is not supported; use a local directory, file:// or s3://"
                )),
            };
        }
        Ok(LakeRoot::Local(PathBuf::from(root)))
    }
}

/// An opened lake: the object store, the root inside it, and the root as a URL (for DataFusion).
#[derive(Debug, Clone)]
pub struct Lake {
    pub store: Arc<dyn ObjectStore>,
    /// The root inside `store`.
    pub root: Path,
    /// The root as a URL ending in `/`, e.g. `file:///data/lake/` or `s3://bucket/prefix/`.
    pub url: Url,
    pub time_partitioning: TimePartitioning,
}

/// An S3 client for `bucket`: the YAML's settings (`s3:`) over the `AWS_*` environment
/// variables, as `object_store` reads them. The one place an S3 store is configured (the
/// stages' lakes and a cluster executor's stores).
pub fn s3_store(bucket: &str, s3: &S3Config) -> Result<AmazonS3, object_store::Error> {
    let mut builder = AmazonS3Builder::from_env().with_bucket_name(bucket);
    if let Some(endpoint) = &s3.endpoint {
        builder = builder.with_endpoint(endpoint);
    }
    if let Some(region) = &s3.region {
        builder = builder.with_region(region);
    }
    if let Some(allow) = s3.allow_http {
        builder = builder.with_allow_http(allow);
    }
    builder.build()
}

impl Lake {
    /// Opens a lake root, creating a local directory if needed. S3 settings come from the YAML,
    /// then from the `AWS_*` environment variables.
    pub fn open(
        root: &str,
        s3: &S3Config,
        time_partitioning: TimePartitioning,
    ) -> Result<Lake, LakeError> {
        let parsed = LakeRoot::parse(root).map_err(|reason| LakeError::InvalidRoot {
            root: root.into(),
            reason,
        })?;
        match parsed {
            LakeRoot::Local(dir) => {
                std::fs::create_dir_all(&dir).map_err(|source| LakeError::CreateDir {
                    path: dir.clone(),
                    source,
                })?;
                let abs = std::fs::canonicalize(&dir).map_err(|source| LakeError::CreateDir {
                    path: dir.clone(),
                    source,
                })?;
                let root_path =
                    Path::from_absolute_path(&abs).map_err(|e| LakeError::InvalidRoot {
                        root: root.into(),
                        reason: e.to_string(),
                    })?;
                let url = Url::from_directory_path(&abs).map_err(|_| LakeError::InvalidRoot {
                    root: root.into(),
                    reason: "not an absolute path".into(),
                })?;
                Ok(Lake {
                    // Counted for the metrics (`store_metrics`), as every lake store.
                    store: Arc::new(crate::store_metrics::InstrumentedStore::new(
                        LocalFileSystem::new(),
                    )),
                    root: root_path,
                    url,
                    time_partitioning,
                })
            }
            LakeRoot::S3 { bucket, prefix } => {
                let store = s3_store(&bucket, s3).map_err(|source| LakeError::Store {
                    root: root.into(),
                    source,
                })?;
                let url_text = if prefix.is_empty() {
                    format!("s3://{bucket}/")
                } else {
                    format!("s3://{bucket}/{prefix}/")
                };
                let url = Url::parse(&url_text).map_err(|e| LakeError::InvalidRoot {
                    root: root.into(),
                    reason: e.to_string(),
                })?;
                Ok(Lake {
                    store: Arc::new(crate::store_metrics::InstrumentedStore::new(store)),
                    root: Path::from(prefix.as_str()),
                    url,
                    time_partitioning,
                })
            }
        }
    }

    /// `<root>/<table>`; a report's table may be several levels deep (`reports/top_paths`).
    pub fn table_dir(&self, table: &str) -> Path {
        below(&self.root, table.split('/'))
    }

    /// The URL of a table directory, ending in `/`.
    pub fn table_url(&self, table: &str) -> Url {
        self.url
            .join(&format!("{table}/"))
            .expect("table names are validated path segments")
    }

    /// A path of this lake's store as a user writes it, for messages: `/data/lake/t/…` on a
    /// local disk (the store's paths have no leading `/`), `s3://bucket/prefix/t/…` on S3.
    pub fn display(&self, path: &Path) -> String {
        match self.url.scheme() {
            "file" => format!("/{path}"),
            scheme => format!(
                "{scheme}://{}/{path}",
                self.url.host_str().unwrap_or_default()
            ),
        }
    }

    /// The lake root as a user writes it (see [`Lake::display`]).
    pub fn display_root(&self) -> String {
        self.display(&self.root)
    }

    /// A partition directory of a table.
    pub fn partition_dir(&self, table: &str, partition: &PartitionPath) -> Path {
        below(
            &self.table_dir(table),
            partition.segments.iter().map(String::as_str),
        )
    }

    /// The published path of a data file.
    pub fn data_file(&self, table: &str, partition: &PartitionPath, file: &str) -> Path {
        below(
            &self.table_dir(table),
            partition.segments.iter().map(String::as_str).chain([file]),
        )
    }

    /// The hidden staging path of a data file that will be published at [`Lake::data_file`]:
    /// flat below `_staging/<table>/`, named by a hash of the partition and the file name
    /// (the file name alone may repeat across partitions). One directory for every
    /// partition: a directory per partition, created once to stage and once to publish, was
    /// most of the cost of small files on a local disk. The staged path is recorded with the
    /// target in each checkpoint, so nothing needs to decode it.
    pub fn staging_file(&self, table: &str, partition: &PartitionPath, file: &str) -> Path {
        let hash = crate::hash::fnv1a64(partition.segments.join("/").as_bytes());
        let staged = format!("{hash:016x}-{file}{STAGING_SUFFIX}");
        let segments = std::iter::once(STAGING_DIR).chain(table.split('/'));
        below(&self.root, segments.chain([staged.as_str()]))
    }

    /// The committed partitions of a table (those holding [`COMMIT_MARKER`]), as their
    /// `name=value` segments below the table directory.
    pub async fn committed_partitions(
        &self,
        table: &str,
    ) -> Result<Vec<Vec<String>>, object_store::Error> {
        use futures::TryStreamExt;
        let dir = self.table_dir(table);
        let metas: Vec<_> = self.store.list(Some(&dir)).try_collect().await?;
        let mut out: Vec<Vec<String>> = metas
            .iter()
            .filter(|m| m.location.filename() == Some(COMMIT_MARKER))
            .map(|m| {
                let mut parts = self.below_table(table, &m.location);
                parts.pop();
                parts
            })
            .collect();
        out.sort();
        Ok(out)
    }

    /// The segments of `path` below the directory of `table` (partition directories, then
    /// the file name).
    pub fn below_table(&self, table: &str, path: &Path) -> Vec<String> {
        let depth = self.table_dir(table).parts().count();
        path.parts()
            .skip(depth)
            .map(|p| p.as_ref().to_string())
            .collect()
    }

    /// The `dt=` directories of a table (values as written, escaped), sorted: one listing
    /// of the table directory, so a run that wants a few days never lists the others.
    pub async fn days(&self, table: &str) -> Result<Vec<String>, object_store::Error> {
        let listing = self
            .store
            .list_with_delimiter(Some(&self.table_dir(table)))
            .await?;
        let prefix = format!("{}=", schema::DT);
        let mut days: Vec<String> = listing
            .common_prefixes
            .iter()
            .filter_map(|p| p.filename()?.strip_prefix(&prefix).map(str::to_string))
            .collect();
        days.sort();
        Ok(days)
    }

    /// Everything below one `dt=` directory of a table.
    pub async fn day_objects(
        &self,
        table: &str,
        day: &str,
    ) -> Result<Vec<object_store::ObjectMeta>, object_store::Error> {
        use futures::TryStreamExt;
        let dir = below(
            &self.table_dir(table),
            [format!("{}={day}", schema::DT).as_str()],
        );
        self.store.list(Some(&dir)).try_collect().await
    }

    /// `<root>/_state/<tool>/<pipeline>`: run state and locks of a tool.
    pub fn state_dir(&self, tool: &str, pipeline: &str) -> Path {
        below(&self.root, [STATE_DIR, tool, pipeline])
    }

    /// `<root>/_checkpoints/<pipeline>`.
    pub fn checkpoint_dir(&self, pipeline: &str) -> Path {
        below(&self.root, [CHECKPOINT_DIR, pipeline])
    }

    /// The end (µs, exclusive) of the time partition a partition path starts with
    /// (`dt=2015-05-17/hour=10/…` ends at 11:00); `None` if it starts otherwise.
    pub fn time_end_of(&self, segments: &[String]) -> Option<i64> {
        let day = segments
            .first()?
            .strip_prefix(&format!("{}=", schema::DT))?;
        let day = chrono::NaiveDate::parse_from_str(day, "%Y-%m-%d").ok()?;
        let start = day.and_hms_opt(0, 0, 0)?.and_utc();
        let end = match self.time_partitioning {
            TimePartitioning::Hour => {
                let hour: i64 = segments
                    .get(1)?
                    .strip_prefix(&format!("{}=", schema::HOUR))?
                    .parse()
                    .ok()?;
                start + chrono::Duration::hours(hour + 1)
            }
            TimePartitioning::Day => start + chrono::Duration::days(1),
        };
        Some(end.timestamp_micros())
    }

    /// The time partition of a timestamp (µs since the epoch, UTC).
    pub fn time_partition(&self, micros: i64) -> PartitionPath {
        let t = DateTime::<Utc>::from_timestamp_micros(micros).unwrap_or_default();
        let mut segments = vec![format!("{}={}", schema::DT, t.format("%Y-%m-%d"))];
        if self.time_partitioning == TimePartitioning::Hour {
            segments.push(format!("{}={}", schema::HOUR, t.format("%H")));
        }
        PartitionPath { segments }
    }
}

/// `base/seg1/seg2/…`, each segment taken as it is. `Path::join` would percent-encode the
/// `%` of escaped partition values a second time; our segments are already safe (no `/`, no
/// control character, never `.` or `..`), which `PathPart::parse` checks.
fn below<'a>(base: &Path, segments: impl IntoIterator<Item = &'a str>) -> Path {
    let extra = segments
        .into_iter()
        .map(|s| PathPart::parse(s).unwrap_or_else(|e| panic!("unsafe path segment: {e}")));
    base.parts().chain(extra).collect()
}

/// The partition directories of a file below its table, e.g. `dt=2015-05-17/hour=10`.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct PartitionPath {
    /// `name=escaped value`, outermost first. Each is one safe path segment.
    pub segments: Vec<String>,
}

impl PartitionPath {
    /// Adds a partition from a data value (`None` is NULL).
    pub fn push_value(&mut self, column: &str, value: Option<&str>) {
        self.segments
            .push(format!("{column}={}", escape_partition_value(value)));
    }
}

impl std::fmt::Display for PartitionPath {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.segments.join("/"))
    }
}

/// Characters Hive escapes in partition values (`FileUtils.escapePathName`).
fn needs_escape(c: char) -> bool {
    matches!(
        c,
        '\u{01}'
            ..='\u{1F}'
                | '\u{7F}'
                | '"'
                | '#'
                | '%'
                | '\''
                | '*'
                | '/'
                | ':'
                | '='
                | '?'
                | '\\'
                | '{'
                | '['
                | ']'
                | '^'
    ) || c == '\0'
}

/// Escapes a partition value as Hive does; NULL and the empty string become
/// [`NULL_PARTITION`]. The values `.` and `..` are escaped whole, so that even a reader that
/// drops the `name=` prefix sees no relative path.
pub fn escape_partition_value(value: Option<&str>) -> String {
    let Some(v) = value.filter(|v| !v.is_empty()) else {
        return NULL_PARTITION.to_string();
    };
    if v == "." || v == ".." {
        return v.replace('.', "%2E");
    }
    let mut out = String::with_capacity(v.len());
    for c in v.chars() {
        if needs_escape(c) {
            out.push_str(&format!("%{:02X}", c as u32));
        } else {
            out.push(c);
        }
    }
    out
}

/// The inverse of [`escape_partition_value`] (NULL for [`NULL_PARTITION`]).
pub fn unescape_partition_value(escaped: &str) -> Option<String> {
    if escaped == NULL_PARTITION {
        return None;
    }
    let b = escaped.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' && i + 2 < b.len() {
            let hex = |c: u8| (c as char).to_digit(16);
            if let (Some(hi), Some(lo)) = (hex(b[i + 1]), hex(b[i + 2])) {
                out.push((hi * 16 + lo) as u8);
                i += 3;
                continue;
            }
        }
        out.push(b[i]);
        i += 1;
    }
    Some(String::from_utf8_lossy(&out).into_owned())
}

/// Whether a file or directory name is a helper that readers skip (`_…` or `.…`).
pub fn is_hidden(name: &str) -> bool {
    name.starts_with('_') || name.starts_with('.')
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn parses_roots() {
        assert_eq!(
            LakeRoot::parse("lake").unwrap(),
            LakeRoot::Local("lake".into())
        );
        assert_eq!(
            LakeRoot::parse("file:///tmp/x").unwrap(),
            LakeRoot::Local("/tmp/x".into())
        );
        assert_eq!(
            LakeRoot::parse("s3://b/p/q/").unwrap(),
            LakeRoot::S3 {
                bucket: "b".into(),
                prefix: "p/q".into()
            }
        );
        assert!(LakeRoot::parse("gs://b").is_err());
        assert!(LakeRoot::parse("").is_err());
        assert!(LakeRoot::parse("s3:///x").is_err());
    }

    #[test]
    fn escapes_like_hive() {
        assert_eq!(escape_partition_value(Some("../../etc")), "..%2F..%2Fetc");
        assert_eq!(escape_partition_value(Some("a=b%c")), "a%3Db%25c");
        assert_eq!(escape_partition_value(Some("..")), "%2E%2E");
        assert_eq!(escape_partition_value(Some("line\nbreak")), "line%0Abreak");
        assert_eq!(escape_partition_value(Some("/index.html")), "%2Findex.html");
        assert_eq!(escape_partition_value(Some("")), NULL_PARTITION);
        assert_eq!(escape_partition_value(None), NULL_PARTITION);
        assert_eq!(escape_partition_value(Some("200")), "200");
    }

    #[test]
    fn partition_paths_stay_inside_the_table() {
        let dir = tempfile::tempdir().unwrap();
        let lake = Lake::open(
            dir.path().to_str().unwrap(),
            &S3Config::default(),
            TimePartitioning::Hour,
        )
        .unwrap();
        let mut part = lake.time_partition(1_431_856_800_000_000);
        assert_eq!(part.to_string(), "dt=2015-05-17/hour=10");
        part.push_value("path", Some("../../../etc/passwd"));
        let file = lake.data_file("t", &part, "part-0.parquet");
        let table = lake.table_dir("t");
        assert!(file.prefix_matches(&table), "{file} is outside {table}");
        assert_eq!(file.parts().count(), table.parts().count() + 4);
        // Escaped once: the `%` of the escape is not encoded again.
        assert!(
            file.as_ref()
                .ends_with("/path=..%2F..%2F..%2Fetc%2Fpasswd/part-0.parquet"),
            "{file}"
        );
        let on_disk = object_store::local::LocalFileSystem::new()
            .path_to_filesystem(&file)
            .unwrap();
        assert!(
            on_disk.ends_with("path=..%2F..%2F..%2Fetc%2Fpasswd/part-0.parquet"),
            "{}",
            on_disk.display()
        );
    }

    proptest! {
        #[test]
        fn escaping_round_trips_and_is_one_segment(v in "\\PC{1,20}") {
            let e = escape_partition_value(Some(&v));
            prop_assert!(!e.contains('/'));
            prop_assert!(e != "." && e != "..");
            let joined = format!("t/k={}", e);
            prop_assert!(Path::parse(joined).is_ok());
            prop_assert_eq!(unescape_partition_value(&e), Some(v));
        }
    }
}
