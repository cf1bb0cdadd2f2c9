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
//! A reader therefore sees a file whole or not at all. Final names are derived from the
//! file's content ([`data_file_name`]), so writing the same rows again (a replay, a rerun
//! on the same input) replaces a file by an identical one instead of adding a duplicate,
//! and different rows can never overwrite each other.

use bytes::Bytes;
use futures::TryStreamExt;
use object_store::path::Path;
use object_store::{ObjectStoreExt, PutPayload};

use crate::lake::{Lake, PartitionPath, STAGING_DIR};

#[derive(Debug, thiserror::Error)]
pub enum CommitError {
    #[error("cannot stage {path}: {source}")]
    Stage {
        path: Path,
        #[source]
        source: object_store::Error,
    },
    #[error("cannot publish {from} as {to}: {source}")]
    Publish {
        from: Path,
        to: Path,
        #[source]
        source: object_store::Error,
    },
    #[error("a checkpoint names an invalid path: {0}")]
    BadPath(String),
    #[error("cannot clean the staging area {path}: {source}")]
    Clean {
        path: Path,
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
}

impl FileCommitter {
    pub fn new(lake: Lake) -> Self {
        FileCommitter { lake }
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
                path: staged.clone(),
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
        match self.lake.store.rename(&staged, &target).await {
            Ok(()) => Ok(()),
            Err(object_store::Error::NotFound { .. }) => {
                match self.lake.store.head(&target).await {
                    Ok(_) => Ok(()),
                    Err(source) => Err(CommitError::Publish {
                        from: staged,
                        to: target,
                        source,
                    }),
                }
            }
            Err(source) => Err(CommitError::Publish {
                from: staged,
                to: target,
                source,
            }),
        }
    }

    /// Removes what a crashed run left in the staging area of `table`. Returns the number of
    /// files removed.
    pub async fn clean_staging(&self, table: &str) -> Result<usize, CommitError> {
        let prefix = self.lake.root.clone().join(STAGING_DIR).join(table);
        let leftovers: Vec<_> = self
            .lake
            .store
            .list(Some(&prefix))
            .try_collect()
            .await
            .map_err(|source| CommitError::Clean {
                path: prefix.clone(),
                source,
            })?;
        for meta in &leftovers {
            match self.lake.store.delete(&meta.location).await {
                Ok(()) | Err(object_store::Error::NotFound { .. }) => {}
                Err(source) => {
                    return Err(CommitError::Clean {
                        path: meta.location.clone(),
                        source,
                    });
                }
            }
        }
        Ok(leftovers.len())
    }
}

/// The final name of a data file: `part-<label>-<content hash>.parquet`. The label orders
/// files by time in a listing (e.g. the first window start, `20150517T1005`); the hash makes
/// the name a function of the content.
pub fn data_file_name(label: &str, content: &[u8]) -> String {
    format!("part-{label}-{:016x}.parquet", fnv1a64(content))
}

/// FNV-1a, 64 bits: stable across Rust versions and platforms, unlike `DefaultHasher`.
pub fn fnv1a64(data: &[u8]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for &b in data {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    h
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{S3Config, TimePartitioning};

    #[tokio::test]
    async fn staged_files_are_invisible_until_published() {
        let dir = tempfile::tempdir().unwrap();
        let lake = Lake::open(
            dir.path().to_str().unwrap(),
            &S3Config::default(),
            TimePartitioning::Hour,
        )
        .unwrap();
        let committer = FileCommitter::new(lake.clone());
        let part = lake.time_partition(0);
        let name = data_file_name("19700101T0000", b"rows");
        let staged = committer
            .stage("t", &part, &name, Bytes::from_static(b"rows"), 1)
            .await
            .unwrap();
        let visible = dir.path().join("t/dt=1970-01-01/hour=00").join(&name);
        assert!(!visible.exists());
        assert!(
            dir.path()
                .join("_staging/t/dt=1970-01-01/hour=00")
                .join(format!("{name}.inprogress"))
                .exists()
        );
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
        let lake = Lake::open(
            dir.path().to_str().unwrap(),
            &S3Config::default(),
            TimePartitioning::Hour,
        )
        .unwrap();
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

    #[test]
    fn names_follow_content() {
        assert_eq!(data_file_name("a", b"x"), data_file_name("a", b"x"));
        assert_ne!(data_file_name("a", b"x"), data_file_name("a", b"y"));
        assert_eq!(fnv1a64(b""), 0xcbf2_9ce4_8422_2325);
    }
}
