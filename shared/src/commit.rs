//! How a data file becomes visible in the lake: the commit protocol, in one place.
//!
//! 1. **stage**: the complete file is written under a hidden name in `_staging/` (one atomic
//!    `PUT` on object storage, a write to a temporary file then a rename on local disk);
//! 2. **publish**: the staged file is renamed to its final name under the table (an atomic
//!    `rename(2)` on local disk; copy then delete on S3, where the copy is atomic too).
//!
//! Between the two steps, the stream stage **pre-commits**: it writes a checkpoint that
//! lists the staged files ([`PendingFile`]). Publishing is idempotent
//! ([`FileCommitter::publish_pending`]), so after a crash the files of the newest checkpoint
//! are published again (a no-op for those already done) and every other staged file is
//! removed: it belongs to work after the checkpoint, which the restart replays.
//!
//! A reader therefore sees a file whole or not at all. A final name holds the id of the
//! checkpoint that commits it and a hash of the content ([`data_file_name`]): a replay of
//! the same work writes the same name, different rows never overwrite each other, and the
//! files of checkpoints that a restart has to redo can be found by name and retracted
//! ([`FileCommitter::retract`]) — the case of a damaged newest checkpoint.
//!
//! 3. **commit a partition**: once no event can add to a partition, a [`PartitionMarker`]
//!    (`_SUCCESS`, JSON) is written into it, naming its files. It is the last write to the
//!    partition, except for compaction, which replaces the files it names (see
//!    `stream-ingest compact`).

use bytes::Bytes;
use futures::TryStreamExt;
use object_store::path::Path;
use object_store::{ObjectStoreExt, PutPayload};

use crate::hash::fnv1a64;
use crate::lake::{COMMIT_MARKER, Lake, PartitionPath, STAGING_DIR};

/// A step of the protocol that failed. Paths are written as the user writes the lake root
/// ([`Lake::display`]: `/data/lake/t/…`, `s3://bucket/prefix/t/…`).
#[derive(Debug, thiserror::Error)]
pub enum CommitError {
    #[error("cannot stage {path}: {source}")]
    Stage {
        path: String,
        #[source]
        source: object_store::Error,
    },
    #[error("cannot publish {from} as {to}: {source}")]
    Publish {
        from: String,
        to: String,
        #[source]
        source: object_store::Error,
    },
    #[error("a checkpoint names an invalid path: {0}")]
    BadPath(String),
    #[error(transparent)]
    Marker(#[from] MarkerError),
    #[error("cannot replace files in {path}: {source}")]
    Replace {
        path: String,
        #[source]
        source: object_store::Error,
    },
    #[error("cannot clean the staging area {path}: {source}")]
    Clean {
        path: String,
        #[source]
        source: object_store::Error,
    },
}

/// A complete file under its hidden staging name, ready to publish.
#[derive(Debug, Clone)]
pub struct StagedFile {
    pub table: String,
    pub partition: PartitionPath,
    pub staged: Path,
    pub target: Path,
    pub rows: u64,
    pub bytes: u64,
}

/// A staged file as recorded in a checkpoint, to be published once the checkpoint is durable.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct PendingFile {
    pub table: String,
    /// The partition directories, e.g. `dt=2015-05-17/hour=10`.
    pub partition: String,
    pub staged: String,
    pub target: String,
    pub rows: u64,
    pub bytes: u64,
}

impl From<&StagedFile> for PendingFile {
    fn from(f: &StagedFile) -> Self {
        PendingFile {
            table: f.table.clone(),
            partition: f.partition.to_string(),
            staged: f.staged.to_string(),
            target: f.target.to_string(),
            rows: f.rows,
            bytes: f.bytes,
        }
    }
}

/// Stages and publishes data files of one lake.
#[derive(Debug, Clone)]
pub struct FileCommitter {
    lake: Lake,
    /// Called at the named steps of a replacement (`mid-replace`: the new file published,
    /// the old ones not yet removed), for the binaries' crash tests ([`crate::fault`]).
    fault: Option<fn(&str)>,
    /// The unit of state whose files this committer cleans and retracts (`p3`: a Kafka
    /// partition's, see [`unit_of`]); `None`: the files without a unit.
    unit: Option<String>,
}

impl FileCommitter {
    pub fn new(lake: Lake) -> Self {
        FileCommitter {
            lake,
            fault: None,
            unit: None,
        }
    }

    /// Cleans and retracts only the files of `unit` (several processes share the tables,
    /// each writing the files of its own units).
    pub fn for_unit(mut self, unit: Option<String>) -> Self {
        self.unit = unit;
        self
    }

    /// Whether a data or staged file name is of this committer's unit.
    fn owns(&self, name: &str) -> bool {
        unit_of(name) == self.unit.as_deref()
    }

    /// Calls `point` at the fault points of the protocol (see the `fault` field).
    pub fn with_fault_points(mut self, point: fn(&str)) -> Self {
        self.fault = Some(point);
        self
    }

    pub fn lake(&self) -> &Lake {
        &self.lake
    }

    /// Writes a complete file under its hidden staging name.
    pub async fn stage(
        &self,
        table: &str,
        partition: &PartitionPath,
        name: &str,
        data: Bytes,
        rows: u64,
    ) -> Result<StagedFile, CommitError> {
        let staged = self.lake.staging_file(table, partition, name);
        let target = self.lake.data_file(table, partition, name);
        let bytes = data.len() as u64;
        self.lake
            .store
            .put(&staged, PutPayload::from_bytes(data))
            .await
            .map_err(|source| CommitError::Stage {
                path: self.lake.display(&staged),
                source,
            })?;
        Ok(StagedFile {
            table: table.to_string(),
            partition: partition.clone(),
            staged,
            target,
            rows,
            bytes,
        })
    }

    /// Publishes a pre-committed file; done already (by a run that crashed after it) is fine.
    pub async fn publish_pending(&self, file: &PendingFile) -> Result<(), CommitError> {
        let parse = |p: &str| Path::parse(p).map_err(|e| CommitError::BadPath(format!("{p}: {e}")));
        let (staged, target) = (parse(&file.staged)?, parse(&file.target)?);
        let publish_err = |source| CommitError::Publish {
            from: self.lake.display(&staged),
            to: self.lake.display(&target),
            source,
        };
        match self.lake.store.rename(&staged, &target).await {
            Ok(()) => Ok(()),
            Err(object_store::Error::NotFound { .. }) => {
                match self.lake.store.head(&target).await {
                    Ok(_) => Ok(()),
                    Err(source) => Err(publish_err(source)),
                }
            }
            Err(source) => Err(publish_err(source)),
        }
    }

    /// Writes a partition's `_SUCCESS` marker (idempotent: the same content again).
    pub async fn write_marker(&self, marker: &PartitionMarker) -> Result<(), MarkerError> {
        self.write_marker_file(&MarkerFile {
            marker: marker.clone(),
            earlier: Vec::new(),
        })
        .await
    }

    /// Commits a partition: writes its marker or, when an earlier commit marked it already,
    /// extends that marker with the new files. That happens when a bounded run flushed its
    /// open windows (`end_of_input: flush`) and a later run's events add rows to a partition
    /// it committed. The marker keeps the commits it extends (`earlier`), so a retraction
    /// of the newer commit goes back to them ([`Self::retract`]). A replay of a commit
    /// already done changes nothing.
    pub async fn commit_partition(&self, marker: &PartitionMarker) -> Result<(), MarkerError> {
        let path = self
            .lake
            .data_file(&marker.table, &marker.partition_path(), COMMIT_MARKER);
        let Some(old) = self.read_marker_file(&path).await? else {
            return self.write_marker(marker).await;
        };
        let done = |f: &String| old.marker.files.contains(f);
        if marker.files.iter().all(done) {
            return Ok(());
        }
        let mut merged = marker.clone();
        merged.files = old.marker.files.clone();
        merged
            .files
            .extend(marker.files.iter().filter(|f| !done(f)).cloned());
        merged.rows += old.marker.rows;
        let mut earlier = old.earlier;
        earlier.push(old.marker);
        self.write_marker_file(&MarkerFile {
            marker: merged,
            earlier,
        })
        .await
    }

    /// The marker at `path` with the commits it extends; `None` when there is none.
    async fn read_marker_file(&self, path: &Path) -> Result<Option<MarkerFile>, MarkerError> {
        let read = async { self.lake.store.get(path).await?.bytes().await };
        let body = match read.await {
            Ok(body) => body,
            Err(object_store::Error::NotFound { .. }) => return Ok(None),
            Err(source) => {
                return Err(MarkerError::Read {
                    path: self.lake.display(path),
                    source,
                });
            }
        };
        serde_json::from_slice(&body)
            .map(Some)
            .map_err(|e| MarkerError::Invalid {
                path: self.lake.display(path),
                reason: e.to_string(),
            })
    }

    async fn write_marker_file(&self, file: &MarkerFile) -> Result<(), MarkerError> {
        let m = &file.marker;
        let path = self
            .lake
            .data_file(&m.table, &m.partition_path(), COMMIT_MARKER);
        let body = serde_json::to_vec_pretty(file).expect("a marker serializes");
        self.lake
            .store
            .put(&path, PutPayload::from(body))
            .await
            .map_err(|source| MarkerError::Write {
                path: self.lake.display(&path),
                source,
            })?;
        Ok(())
    }

    /// Reads the `_SUCCESS` marker at `path`.
    pub async fn read_marker(&self, path: &Path) -> Result<PartitionMarker, MarkerError> {
        match self.read_marker_file(path).await? {
            Some(file) => Ok(file.marker),
            None => Err(MarkerError::Read {
                path: self.lake.display(path),
                source: object_store::Error::NotFound {
                    path: path.to_string(),
                    source: "no commit marker".into(),
                },
            }),
        }
    }

    /// Replaces files of a committed partition by one staged file: writes the intent, then
    /// publishes the new file, removes the old ones, rewrites the marker and drops the
    /// intent. A crash at any point leaves the intent, and [`Self::finish_replacements`]
    /// rolls it forward (or back, if the new file was never staged).
    pub async fn replace(&self, r: &Replacement) -> Result<(), CommitError> {
        let intent =
            self.lake
                .data_file(&r.marker.table, &r.marker.partition_path(), REPLACE_INTENT);
        let body = serde_json::to_vec_pretty(r).expect("a replacement serializes");
        self.lake
            .store
            .put(&intent, PutPayload::from(body))
            .await
            .map_err(|source| CommitError::Replace {
                path: self.lake.display(&intent),
                source,
            })?;
        self.finish_replacement(r, &intent).await
    }

    async fn finish_replacement(&self, r: &Replacement, intent: &Path) -> Result<(), CommitError> {
        let err = |path: &Path| {
            let path = self.lake.display(path);
            move |source| CommitError::Replace { path, source }
        };
        let exists = |p: &str| {
            let p = Path::parse(p).map_err(|e| CommitError::BadPath(format!("{p}: {e}")));
            async move {
                match self.lake.store.head(&p?).await {
                    Ok(_) => Ok(true),
                    Err(object_store::Error::NotFound { .. }) => Ok(false),
                    Err(source) => Err(CommitError::Replace {
                        path: self.lake.display(intent),
                        source,
                    }),
                }
            }
        };
        if !exists(&r.file.staged).await? && !exists(&r.file.target).await? {
            // The new file never made it: nothing was changed, give up.
            tracing::warn!(
                intent = %self.lake.display(intent),
                "abandoning a replacement whose new file is gone"
            );
        } else {
            self.publish_pending(&r.file).await?;
            if let Some(point) = self.fault {
                point("mid-replace");
            }
            let partition = r.marker.partition_path();
            for old in &r.replaces {
                let path = self.lake.data_file(&r.marker.table, &partition, old);
                self.remove(&path).await.map_err(err(&path))?;
            }
            self.write_marker(&r.marker).await?;
        }
        self.remove(intent).await.map_err(err(intent))
    }

    /// Every object under `prefix`.
    async fn list(&self, prefix: &Path) -> Result<Vec<object_store::ObjectMeta>, CommitError> {
        self.lake
            .store
            .list(Some(prefix))
            .try_collect()
            .await
            .map_err(|source| CommitError::Clean {
                path: self.lake.display(prefix),
                source,
            })
    }

    /// Deletes an object; gone already is fine.
    async fn remove(&self, path: &Path) -> Result<(), object_store::Error> {
        match self.lake.store.delete(path).await {
            Ok(()) | Err(object_store::Error::NotFound { .. }) => Ok(()),
            Err(e) => Err(e),
        }
    }

    /// Finishes the replacements a crash interrupted in `table`; returns how many.
    pub async fn finish_replacements(&self, table: &str) -> Result<usize, CommitError> {
        let metas = self.list(&self.lake.table_dir(table)).await?;
        let mut done = 0;
        for meta in metas {
            if meta.location.filename() != Some(REPLACE_INTENT) {
                continue;
            }
            let read = async { self.lake.store.get(&meta.location).await?.bytes().await };
            let shown = self.lake.display(&meta.location);
            let body = read.await.map_err(|source| CommitError::Replace {
                path: shown.clone(),
                source,
            })?;
            let r: Replacement = serde_json::from_slice(&body)
                .map_err(|e| CommitError::BadPath(format!("{shown}: {e}")))?;
            tracing::info!(intent = %shown, "finishing an interrupted replacement");
            self.finish_replacement(&r, &meta.location).await?;
            done += 1;
        }
        Ok(done)
    }

    /// Finishes a replacement a crash interrupted in one partition, if there is one (a GET
    /// of its intent, no listing); returns whether there was.
    pub async fn finish_replacement_in(
        &self,
        table: &str,
        partition: &PartitionPath,
    ) -> Result<bool, CommitError> {
        let intent = self.lake.data_file(table, partition, REPLACE_INTENT);
        let body = match self.lake.store.get(&intent).await {
            Ok(r) => r.bytes().await,
            Err(e) => Err(e),
        };
        let shown = self.lake.display(&intent);
        let body = match body {
            Ok(b) => b,
            Err(object_store::Error::NotFound { .. }) => return Ok(false),
            Err(source) => {
                return Err(CommitError::Replace {
                    path: shown.clone(),
                    source,
                });
            }
        };
        let r: Replacement = serde_json::from_slice(&body)
            .map_err(|e| CommitError::BadPath(format!("{shown}: {e}")))?;
        tracing::info!(intent = %shown, "finishing an interrupted replacement");
        self.finish_replacement(&r, &intent).await?;
        Ok(true)
    }

    /// Removes from `table` the data files and markers committed by the checkpoints that
    /// `redo` selects: the work a restart redoes (after a newer checkpoint that does not
    /// read back, or to rebuild from scratch). Returns the number of files removed.
    pub async fn retract(
        &self,
        table: &str,
        redo: impl Fn(u64) -> bool,
    ) -> Result<usize, CommitError> {
        let clean = |path: &Path| {
            let path = self.lake.display(path);
            move |source| CommitError::Clean { path, source }
        };
        let metas = self.list(&self.lake.table_dir(table)).await?;
        let mut removed = 0;
        for meta in metas {
            let name = meta.location.filename().unwrap_or_default();
            let retract = if name == COMMIT_MARKER {
                // The markers of a table written by several units commit the files of all
                // of them: a unit never removes one (a replay rewrites the same files).
                if self.unit.is_some() {
                    continue;
                }
                match self.read_marker_file(&meta.location).await {
                    Ok(Some(m)) if redo(m.marker.checkpoint) => {
                        !self.back_to_earlier(m, &redo).await?
                    }
                    Ok(_) => false,
                    // A marker that does not read back is rewritten by the replay.
                    Err(e) => {
                        tracing::warn!(error = %e, "removing an unreadable commit marker");
                        true
                    }
                }
            } else {
                self.owns(name) && checkpoint_of(name).is_some_and(&redo)
            };
            if retract {
                self.remove(&meta.location)
                    .await
                    .map_err(clean(&meta.location))?;
                removed += 1;
            }
        }
        Ok(removed)
    }

    /// Rewrites a marker to be redone as the newest commit it extended that stays; whether
    /// there was one (else the marker goes).
    async fn back_to_earlier(
        &self,
        m: MarkerFile,
        redo: &impl Fn(u64) -> bool,
    ) -> Result<bool, MarkerError> {
        let mut earlier = m.earlier;
        while let Some(e) = earlier.pop() {
            if !redo(e.checkpoint) {
                let back = MarkerFile { marker: e, earlier };
                self.write_marker_file(&back).await?;
                return Ok(true);
            }
        }
        Ok(false)
    }

    /// Removes what a crashed run left in the staging area of `table`. Returns the number of
    /// files removed.
    pub async fn clean_staging(&self, table: &str) -> Result<usize, CommitError> {
        let prefix = self.lake.root.clone().join(STAGING_DIR).join(table);
        let mut leftovers = self.list(&prefix).await?;
        leftovers.retain(|m| self.owns(m.location.filename().unwrap_or_default()));
        for meta in &leftovers {
            self.remove(&meta.location)
                .await
                .map_err(|source| CommitError::Clean {
                    path: self.lake.display(&meta.location),
                    source,
                })?;
        }
        Ok(leftovers.len())
    }
}

/// The final name of a data file: `part-<label>-c<checkpoint>-<content hash>.parquet`. The
/// label orders files by time in a listing (e.g. the first window start, `20150517T1005`);
/// the checkpoint id says which checkpoint commits the file; the hash makes the name a
/// function of the content.
pub fn data_file_name(label: &str, checkpoint: u64, content: &[u8]) -> String {
    format!(
        "part-{label}-c{checkpoint:010}-{:016x}.parquet",
        fnv1a64(content)
    )
}

/// The unit of state in a data file name (`part-<time>-p3-c…`: Kafka partition 3's) or a
/// staged one (`<hash>-part-….inprogress`); `None` for a file without a unit.
pub fn unit_of(name: &str) -> Option<&str> {
    let name = name.strip_suffix(".inprogress").unwrap_or(name);
    let start = name.find("part-")?;
    let rest = name[start..]
        .strip_prefix("part-")?
        .strip_suffix(".parquet")?;
    let label = rest.rsplitn(3, '-').nth(2)?;
    let (_, unit) = label.rsplit_once('-')?;
    // `p3`, or `p1_3` (partition 3 of a pipeline's second topic).
    let digits = unit.strip_prefix('p')?;
    let (first, second) = digits.split_once('_').unwrap_or((digits, "0"));
    let number = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
    (number(first) && number(second)).then_some(unit)
}

/// The checkpoint id in a data file name made by [`data_file_name`].
pub fn checkpoint_of(name: &str) -> Option<u64> {
    let rest = name.strip_prefix("part-")?.strip_suffix(".parquet")?;
    let mut parts = rest.rsplitn(3, '-');
    let _hash = parts.next()?;
    parts.next()?.strip_prefix('c')?.parse().ok()
}

/// The intent of a replacement in progress, kept in the partition until it is done.
pub const REPLACE_INTENT: &str = "_REPLACING";

/// Files of a committed partition replaced by one staged file (compaction): what
/// [`FileCommitter::replace`] writes as its intent before it starts, so that a crash in the
/// middle is finished by [`FileCommitter::finish_replacements`].
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Replacement {
    /// The new file, staged.
    pub file: PendingFile,
    /// Names of the files it replaces, in the same partition.
    pub replaces: Vec<String>,
    /// The partition's marker once done.
    pub marker: PartitionMarker,
}

/// The `_SUCCESS` file's JSON body: the marker, and the earlier commits of the partition
/// it extends, oldest first (absent unless a later run added files to a committed
/// partition; see [`FileCommitter::commit_partition`]).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
struct MarkerFile {
    #[serde(flatten)]
    marker: PartitionMarker,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    earlier: Vec<PartitionMarker>,
}

/// A committed partition: the `_SUCCESS` file's JSON body.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct PartitionMarker {
    pub table: String,
    /// The partition directories, e.g. `["dt=2015-05-17", "hour=10"]`.
    pub partition: Vec<String>,
    pub rows: u64,
    /// The data files of the partition.
    pub files: Vec<String>,
    /// The watermark when it was committed (µs).
    pub watermark: i64,
    /// The checkpoint that committed it.
    #[serde(default)]
    pub checkpoint: u64,
}

/// A committed partition as `stream-ingest run --emit-commits` prints it, one JSON object per
/// line on standard output, and `batch-analyze run --follow-commits` reads it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct CommitEvent {
    pub table: String,
    /// The partition directories, e.g. `dt=2015-05-17/hour=10`.
    pub partition: String,
    /// The partition's URL, e.g. `file:///data/lake/status_1m/dt=2015-05-17/hour=10/`.
    pub path: String,
    pub rows: u64,
    /// The watermark when it was committed, µs since the epoch (UTC); `i64::MAX` at the end
    /// of a bounded input.
    pub watermark_us: i64,
    /// The same as RFC 3339 (UTC), for people; absent at the end of a bounded input.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub watermark: Option<String>,
}

impl CommitEvent {
    pub fn new(lake: &Lake, m: &PartitionMarker) -> CommitEvent {
        let partition = m.partition_path().to_string();
        let path = lake
            .table_url(&m.table)
            .join(&format!("{partition}/"))
            .map(|u| u.to_string())
            .unwrap_or_default();
        CommitEvent {
            table: m.table.clone(),
            partition,
            path,
            rows: m.rows,
            watermark_us: m.watermark,
            watermark: chrono::DateTime::from_timestamp_micros(m.watermark)
                .filter(|_| m.watermark < i64::MAX)
                .map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::AutoSi, true)),
        }
    }

    /// The `dt=` value of the partition.
    pub fn day(&self) -> Option<&str> {
        self.partition
            .split('/')
            .find_map(|s| s.strip_prefix(&format!("{}=", crate::schema::DT)))
    }
}

impl PartitionMarker {
    pub fn partition_path(&self) -> PartitionPath {
        PartitionPath {
            segments: self.partition.clone(),
        }
    }
}

/// A commit marker that cannot be written or read back; the path as the user writes it
/// ([`Lake::display`]).
#[derive(Debug, thiserror::Error)]
pub enum MarkerError {
    #[error("cannot write the commit marker {path}: {source}")]
    Write {
        path: String,
        #[source]
        source: object_store::Error,
    },
    #[error("cannot read the commit marker {path}: {source}")]
    Read {
        path: String,
        #[source]
        source: object_store::Error,
    },
    #[error("the commit marker {path} is not valid JSON: {reason}")]
    Invalid { path: String, reason: String },
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{S3Config, TimePartitioning};

    #[tokio::test]
    async fn staged_files_are_invisible_until_published() {
        let dir = tempfile::tempdir().unwrap();
        let lake = lake(dir.path());
        let committer = FileCommitter::new(lake.clone());
        let part = lake.time_partition(0);
        let name = data_file_name("19700101T0000", 1, b"rows");
        let staged = committer
            .stage("t", &part, &name, Bytes::from_static(b"rows"), 1)
            .await
            .unwrap();
        let visible = dir.path().join("t/dt=1970-01-01/hour=00").join(&name);
        assert!(!visible.exists());
        // Flat below the table's staging directory, named by the partition's hash.
        let staged_at = dir.path().join("_staging/t").join(format!(
            "{:016x}-{name}.inprogress",
            fnv1a64(b"dt=1970-01-01/hour=00")
        ));
        assert!(staged_at.exists(), "{}", staged_at.display());
        committer
            .publish_pending(&PendingFile::from(&staged))
            .await
            .unwrap();
        // Publishing again (a restart after a crash) is a no-op.
        committer
            .publish_pending(&PendingFile::from(&staged))
            .await
            .unwrap();
        assert_eq!(std::fs::read(&visible).unwrap(), b"rows");
        assert_eq!(committer.clean_staging("t").await.unwrap(), 0);
    }

    #[tokio::test]
    async fn leftovers_are_cleaned() {
        let dir = tempfile::tempdir().unwrap();
        let lake = lake(dir.path());
        let committer = FileCommitter::new(lake.clone());
        committer
            .stage(
                "t",
                &lake.time_partition(0),
                "x.parquet",
                Bytes::from_static(b"x"),
                1,
            )
            .await
            .unwrap();
        assert_eq!(committer.clean_staging("t").await.unwrap(), 1);
        assert_eq!(committer.clean_staging("t").await.unwrap(), 0);
    }

    fn lake(dir: &std::path::Path) -> Lake {
        Lake::open(
            dir.to_str().unwrap(),
            &S3Config::default(),
            TimePartitioning::Hour,
        )
        .unwrap()
    }

    fn marker(files: &[&str], checkpoint: u64) -> PartitionMarker {
        PartitionMarker {
            table: "t".into(),
            partition: vec!["dt=1970-01-01".into(), "hour=00".into()],
            rows: 3,
            files: files.iter().map(|f| f.to_string()).collect(),
            watermark: 0,
            checkpoint,
        }
    }

    /// A partition committed by a flush and extended by a later run: one marker names both
    /// commits' files; a replay changes nothing; redoing the later commit goes back to the
    /// earlier marker instead of removing the partition's commit.
    #[tokio::test]
    async fn a_committed_partition_is_extended_and_retracted_back() {
        let dir = tempfile::tempdir().unwrap();
        let lake = lake(dir.path());
        let c = FileCommitter::new(lake.clone());
        let path = lake.data_file("t", &lake.time_partition(0), COMMIT_MARKER);
        let first = marker(&["a"], 1);
        c.commit_partition(&first).await.unwrap();
        assert_eq!(c.read_marker(&path).await.unwrap(), first);
        let later = marker(&["b"], 3);
        c.commit_partition(&later).await.unwrap();
        let merged = c.read_marker(&path).await.unwrap();
        assert_eq!(
            (merged.files.clone(), merged.rows),
            (vec!["a".to_string(), "b".to_string()], 6)
        );
        assert_eq!(merged.checkpoint, 3);
        // A replay of either commit: the same marker.
        c.commit_partition(&later).await.unwrap();
        c.commit_partition(&first).await.unwrap();
        assert_eq!(c.read_marker(&path).await.unwrap(), merged);
        // Readers see a marker as before (the commit it extends is an extra field).
        let json: serde_json::Value = serde_json::from_slice(
            &std::fs::read(dir.path().join("t/dt=1970-01-01/hour=00/_SUCCESS")).unwrap(),
        )
        .unwrap();
        assert_eq!(json["earlier"][0]["files"][0], "a");
        // Redo checkpoint 3: back to checkpoint 1's marker; redo 1 too: no marker.
        c.retract("t", |ck| ck > 2).await.unwrap();
        assert_eq!(c.read_marker(&path).await.unwrap(), first);
        c.commit_partition(&later).await.unwrap();
        c.retract("t", |ck| ck >= 1).await.unwrap();
        assert!(c.read_marker(&path).await.is_err());
    }

    #[tokio::test]
    async fn retraction_removes_what_later_checkpoints_committed() {
        let dir = tempfile::tempdir().unwrap();
        let lake = lake(dir.path());
        let c = FileCommitter::new(lake.clone());
        let part = lake.time_partition(0);
        let mut names = Vec::new();
        for ck in 1..=3u64 {
            let name = data_file_name("19700101T0000", ck, &[ck as u8]);
            let staged = c
                .stage("t", &part, &name, Bytes::from(vec![ck as u8]), 1)
                .await
                .unwrap();
            c.publish_pending(&PendingFile::from(&staged))
                .await
                .unwrap();
            names.push(name);
        }
        c.write_marker(&marker(&["x"], 3)).await.unwrap();
        let partition = dir.path().join("t/dt=1970-01-01/hour=00");
        // Redo checkpoint 3: its file and its marker go.
        assert_eq!(c.retract("t", |ck| ck > 2).await.unwrap(), 2);
        assert!(!partition.join(COMMIT_MARKER).exists());
        assert!(!partition.join(&names[2]).exists());
        assert!(partition.join(&names[1]).exists());
        // A rebuild from checkpoint 5 on: everything older goes.
        assert_eq!(c.retract("t", |ck| ck < 5).await.unwrap(), 2);
        assert_eq!(std::fs::read_dir(&partition).unwrap().count(), 0);
    }

    #[tokio::test]
    async fn an_interrupted_replacement_is_finished() {
        let dir = tempfile::tempdir().unwrap();
        let lake = lake(dir.path());
        let c = FileCommitter::new(lake.clone());
        let part = lake.time_partition(0);
        let partition = dir.path().join("t/dt=1970-01-01/hour=00");
        for old in ["a", "b"] {
            let staged = c
                .stage("t", &part, old, Bytes::from_static(b"old"), 1)
                .await
                .unwrap();
            c.publish_pending(&PendingFile::from(&staged))
                .await
                .unwrap();
        }
        c.write_marker(&marker(&["a", "b"], 1)).await.unwrap();
        let staged = c
            .stage("t", &part, "ab", Bytes::from_static(b"new"), 2)
            .await
            .unwrap();
        let r = Replacement {
            file: PendingFile::from(&staged),
            replaces: vec!["a".into(), "b".into()],
            marker: marker(&["ab"], 1),
        };
        // A crash after the intent, the publication and one removal.
        let intent = lake.data_file("t", &part, REPLACE_INTENT);
        lake.store
            .put(&intent, PutPayload::from(serde_json::to_vec(&r).unwrap()))
            .await
            .unwrap();
        c.publish_pending(&r.file).await.unwrap();
        std::fs::remove_file(partition.join("a")).unwrap();
        assert_eq!(c.finish_replacements("t").await.unwrap(), 1);
        let mut left: Vec<String> = std::fs::read_dir(&partition)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        left.sort();
        assert_eq!(left, ["_SUCCESS", "ab"]);
        let m = c
            .read_marker(&lake.data_file("t", &part, COMMIT_MARKER))
            .await
            .unwrap();
        assert_eq!(m.files, ["ab"]);
        assert_eq!(c.finish_replacements("t").await.unwrap(), 0);
        // A replacement whose new file never made it changes nothing.
        let r2 = Replacement {
            file: PendingFile {
                staged: "_staging/t/gone.inprogress".into(),
                target: "t/gone".into(),
                ..r.file.clone()
            },
            replaces: vec!["ab".into()],
            marker: marker(&["gone"], 1),
        };
        lake.store
            .put(&intent, PutPayload::from(serde_json::to_vec(&r2).unwrap()))
            .await
            .unwrap();
        assert_eq!(c.finish_replacements("t").await.unwrap(), 1);
        assert!(partition.join("ab").exists());
        assert!(!partition.join(REPLACE_INTENT).exists());
    }

    #[tokio::test]
    async fn errors_name_paths_as_the_user_writes_the_lake() {
        let dir = tempfile::tempdir().unwrap();
        let lake = lake(dir.path());
        let c = FileCommitter::new(lake.clone());
        let part = lake.time_partition(0);
        let path = lake.data_file("t", &part, COMMIT_MARKER);
        lake.store
            .put(&path, PutPayload::from_static(b"{\"table\": "))
            .await
            .unwrap();
        let on_disk = dir
            .path()
            .canonicalize()
            .unwrap()
            .join("t/dt=1970-01-01/hour=00/_SUCCESS");
        let e = c.read_marker(&path).await.unwrap_err().to_string();
        assert!(
            e.starts_with(&format!(
                "the commit marker {} is not valid JSON: ",
                on_disk.display()
            )),
            "{e}"
        );
        assert_eq!(lake.display(&path), on_disk.display().to_string());
        assert!(lake.display_root().starts_with('/'));
    }

    #[test]
    fn names_follow_content() {
        assert_eq!(data_file_name("a", 1, b"x"), data_file_name("a", 1, b"x"));
        assert_ne!(data_file_name("a", 1, b"x"), data_file_name("a", 1, b"y"));
        assert_eq!(
            checkpoint_of(&data_file_name("20150517T1005", 42, b"x")),
            Some(42)
        );
        assert_eq!(checkpoint_of("part-x.parquet"), None);
        assert_eq!(checkpoint_of("_SUCCESS"), None);
        assert_eq!(fnv1a64(b""), 0xcbf2_9ce4_8422_2325);
    }

    #[test]
    fn units_are_read_from_data_and_staged_names() {
        let plain = data_file_name("20150517T100503", 42, b"x");
        let unit = data_file_name("20150517T100503-p12", 42, b"x");
        assert_eq!(unit_of(&plain), None);
        assert_eq!(unit_of(&unit), Some("p12"));
        assert_eq!(checkpoint_of(&unit), Some(42));
        assert_eq!(unit_of(&format!("00ab12cd-{unit}.inprogress")), Some("p12"));
        assert_eq!(unit_of(&format!("00ab12cd-{plain}.inprogress")), None);
        assert_eq!(unit_of("part-x-pa-c0000000001-00.parquet"), None);
        assert_eq!(unit_of("_SUCCESS"), None);
        let second_topic = data_file_name("20150517T100503-p1_12", 42, b"x");
        assert_eq!(unit_of(&second_topic), Some("p1_12"));
        assert_eq!(unit_of("part-x-p1_-c0000000001-00.parquet"), None);
    }
}
