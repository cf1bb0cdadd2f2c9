//! Delta Lake tables (`lake.format: delta`): each checkpoint's files of a table go into one
//! commit of the table's log, with `txn(<pipeline>/<table>, version = checkpoint id)` and
//! the writer's horizon ([`shared::delta`]).
//!
//! ```text
//! stage:   <table>/<partition>/part-….parquet under its final name (invisible: no log entry)
//! commit:  per table with files or completed partitions: Adds (+ Removes of a rebuild)
//!          + txn(app, N) + txn(app/horizon, µs), unless the log holds txn(app) ≥ N already
//! recover: the restored checkpoint committed again (a no-op if it was); files of later
//!          checkpoints the log never named deleted; Removes for what `retract` takes back
//! ```
//!
//! A file the log does not name is read by no Delta reader, so nothing is renamed or copied
//! (on S3 the publish copy goes away), and a crash between the Parquet writes and the log
//! commit leaves only invisible files, which the restart deletes and writes again.

use std::collections::{BTreeMap, HashMap};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use arrow::datatypes::Schema;
use async_trait::async_trait;
use futures::TryStreamExt;
use object_store::{ObjectStoreExt, PutPayload};
use shared::commit::{CommitError, PartitionMarker, PendingFile, checkpoint_of, unit_of};
use shared::delta::{self, Add, DeltaTable, FileToAdd, Remove, TableCommit};
use shared::lake::Lake;

use super::{Committer, MergeQueue, Redo};
use crate::IngestError;
use crate::board::Board;
use crate::checkpoint::{Checkpoint, CheckpointStore};
use crate::compact::Merged;
use crate::fault;
use crate::sink::EncodedFile;
use crate::unit::Unit;

/// The Delta committer of one unit of state.
pub struct DeltaCommitter {
    lake: Lake,
    pipeline: String,
    unit: Option<String>,
    /// Every unit writing the tables (a Kafka pipeline's), named in each table's properties.
    writers: Vec<String>,
    /// A Kafka unit's board, where it posts its horizon (members read it to know when a
    /// bounded topic is read to its end).
    board: tokio::sync::Mutex<Option<Board>>,
    /// Committed partitions waiting to be merged (`partition_commit.compact`).
    merges: MergeQueue,
    /// How long removed files stay (`lake.delta.vacuum`), and when each table was last
    /// vacuumed.
    retention: Duration,
    vacuumed: Mutex<HashMap<String, Instant>>,
    /// The `Add` and columns of each staged file, by its path in the store (after a restart,
    /// read again from the file).
    adds: Mutex<HashMap<String, FileToAdd>>,
    /// The tables written, loaded once and kept at their newest version.
    tables: tokio::sync::Mutex<HashMap<String, DeltaTable>>,
}

impl DeltaCommitter {
    pub fn new(lake: Lake, pipeline: &str, unit: &Unit) -> Self {
        let board = unit
            .tag
            .as_ref()
            .map(|tag| Board::new(lake.clone(), pipeline, tag.clone(), unit.all.clone()));
        DeltaCommitter {
            lake,
            pipeline: pipeline.to_string(),
            unit: unit.tag.clone(),
            writers: if unit.tag.is_some() {
                unit.all.clone()
            } else {
                Vec::new()
            },
            board: tokio::sync::Mutex::new(board),
            merges: MergeQueue::new(None),
            retention: VACUUM_EVERY,
            vacuumed: Mutex::new(HashMap::new()),
            adds: Mutex::new(HashMap::new()),
            tables: tokio::sync::Mutex::new(HashMap::new()),
        }
    }

    /// Merges committed partitions into one file (`partition_commit.compact`) by Delta's
    /// OPTIMIZE: one commit removes the small files and adds the merged one.
    pub fn with_compaction(mut self, codec: Option<parquet::basic::Compression>) -> Self {
        self.merges = MergeQueue::new(codec);
        self
    }

    /// Deletes the files removed longer than this ago (`lake.delta.vacuum`).
    pub fn with_retention(mut self, retention: Duration) -> Self {
        self.retention = retention;
        self
    }

    /// VACUUM of a table that has just removed files, at most once per retention period
    /// (or [`VACUUM_EVERY`], if shorter).
    async fn vacuum_if_due(&self, table: &str, t: &mut DeltaTable) -> Result<(), IngestError> {
        let every = self.retention.min(VACUUM_EVERY);
        let due = self
            .vacuumed
            .lock()
            .expect("not poisoned")
            .get(table)
            .is_none_or(|last| last.elapsed() >= every);
        if !due {
            return Ok(());
        }
        let (vacuumed, deleted) = delta::vacuum(t, table, self.retention, false)
            .await
            .map_err(|e| self.error(e))?;
        *t = vacuumed;
        self.vacuumed
            .lock()
            .expect("not poisoned")
            .insert(table.to_string(), Instant::now());
        if deleted > 0 {
            tracing::info!(table, deleted, "vacuum deleted removed files");
        }
        Ok(())
    }

    /// The complete partitions of a table (ending at or before its horizon) in its newest
    /// version: their `name=value` segments, their files, and the newest checkpoint that
    /// wrote one of them.
    pub async fn complete_partitions(
        &self,
        table: &str,
    ) -> Result<Vec<(Vec<String>, usize, u64)>, IngestError> {
        let mut tables = self.tables.lock().await;
        let Some(t) = self.loaded(&mut tables, table).await? else {
            return Ok(Vec::new());
        };
        let horizon = delta::horizon(t, &format!("{}/{table}", self.pipeline))
            .await
            .map_err(|e| self.error(e))?;
        let partitions = delta::files_by_partition(t).map_err(|e| self.error(e))?;
        Ok(partitions
            .into_iter()
            .filter(|(s, _)| self.lake.time_end_of(s).is_some_and(|e| e <= horizon))
            .map(|(s, files)| {
                let newest = files.iter().map(|(p, _)| delta::file_name(p));
                let newest = newest.filter_map(checkpoint_of).max().unwrap_or(0);
                (s, files.len(), newest)
            })
            .collect())
    }

    /// OPTIMIZE of one committed partition: its files (as the log has them now) merged into
    /// one, committed as the Removes of the files and the Add of the merged one, neither a
    /// change of data. A crash before the commit leaves an unnamed file (written again, with
    /// the same name, by the next merge). With `dry_run`, only measures. `None`: nothing to
    /// merge.
    pub async fn merge(
        &self,
        codec: parquet::basic::Compression,
        table: &str,
        segments: Vec<String>,
        dry_run: bool,
    ) -> Result<Option<Merged>, IngestError> {
        let mut tables = self.tables.lock().await;
        let Some(t) = self.loaded(&mut tables, table).await? else {
            return Ok(None);
        };
        let mut partitions = delta::files_by_partition(t).map_err(|e| self.error(e))?;
        let files = partitions.remove(&segments).unwrap_or_default();
        if files.len() < 2 {
            return Ok(None);
        }
        let names: Vec<String> = files
            .iter()
            .map(|(p, _)| delta::file_name(p).to_string())
            .collect();
        let partition = shared::lake::PartitionPath { segments };
        let merged =
            match crate::compact::merge_files(&self.lake, table, &partition, &names, codec).await {
                Ok(m) => m,
                // Files whose columns differ (an aggregate added in between) stay as they are.
                Err(e) => {
                    tracing::warn!(table, %partition, error = %e, "not merging a partition");
                    return Ok(None);
                }
            };
        let figures = Merged {
            files: files.len(),
            bytes_before: merged.bytes_before,
            bytes_after: merged.data.len() as u64,
            rows: merged.rows,
        };
        if !dry_run {
            let add = self.put_merged(table, &partition, merged).await?;
            let commit = TableCommit {
                app_id: self.app_id(table),
                adds: vec![add],
                removes: files
                    .iter()
                    .map(|(p, size)| delta::remove_of(p, *size))
                    .collect(),
                rearranges: true,
                ..TableCommit::default()
            };
            delta::commit(t, table, commit)
                .await
                .map_err(|e| self.error(e))?;
            self.vacuum_if_due(table, t).await?;
        }
        Ok(Some(figures))
    }

    /// Writes a merged file under its final name (no version names it yet); its `Add`.
    async fn put_merged(
        &self,
        table: &str,
        partition: &shared::lake::PartitionPath,
        merged: crate::compact::MergedFile,
    ) -> Result<Add, IngestError> {
        let path = format!("{partition}/{}", merged.name);
        let add = delta::add_action(path.trim_start_matches('/'), &merged.data)
            .map_err(|e| self.error(e))?
            .add;
        let target = self.lake.data_file(table, partition, &merged.name);
        self.lake
            .store
            .put(&target, PutPayload::from_bytes(merged.data))
            .await
            .map_err(|e| self.error(format!("{}: {e}", self.lake.display(&target))))?;
        fault::point("mid-replace");
        Ok(add)
    }

    /// A table of `tables`, loaded into it first if needed; `None` if it has no log yet.
    async fn loaded<'a>(
        &self,
        tables: &'a mut HashMap<String, DeltaTable>,
        table: &str,
    ) -> Result<Option<&'a mut DeltaTable>, IngestError> {
        if !tables.contains_key(table) {
            match delta::open(&self.lake, table)
                .await
                .map_err(|e| self.error(e))?
            {
                Some(t) => tables.insert(table.to_string(), t),
                None => return Ok(None),
            };
        }
        Ok(tables.get_mut(table))
    }

    /// The writer's application id in a table's log.
    fn app_id(&self, table: &str) -> String {
        match &self.unit {
            Some(u) => format!("{}/{table}/{u}", self.pipeline),
            None => format!("{}/{table}", self.pipeline),
        }
    }

    fn error(&self, e: impl std::fmt::Display) -> IngestError {
        IngestError::Delta(e.to_string())
    }

    /// The `Add` and columns of a pending file: kept when it was staged, or (after a
    /// restart) read from the file.
    async fn add_of(&self, f: &PendingFile) -> Result<FileToAdd, IngestError> {
        if let Some(kept) = self.adds.lock().expect("not poisoned").remove(&f.target) {
            return Ok(kept);
        }
        let path = object_store::path::Path::from(f.target.as_str());
        let data = self
            .lake
            .store
            .get(&path)
            .await
            .map_err(|e| self.error(format!("{}: {e}", self.lake.display(&path))))?
            .bytes()
            .await
            .map_err(|e| self.error(e))?;
        delta::add_action(&below_table(f), &data).map_err(|e| self.error(e))
    }

    /// Commits one table's share of a checkpoint.
    async fn commit_table(
        &self,
        table: &str,
        files: &[&PendingFile],
        ck: &Checkpoint,
    ) -> Result<(), IngestError> {
        let mut tables = self.tables.lock().await;
        let mut adds = Vec::new();
        let mut first_file = None;
        for f in files {
            let file = self.add_of(f).await?;
            first_file.get_or_insert((file.schema, f.partition.clone()));
            adds.push(file.add);
        }
        if !tables.contains_key(table) {
            let opened = match &first_file {
                Some((schema, partition)) => Some(self.create(table, schema, partition).await?),
                None => delta::open(&self.lake, table)
                    .await
                    .map_err(|e| self.error(e))?,
            };
            let Some(t) = opened else {
                return Ok(()); // partitions completed, no file ever: nothing to commit
            };
            tables.insert(table.to_string(), t);
        }
        let t = tables.get_mut(table).expect("inserted");
        let removes = if ck.rebuilt.iter().any(|r| r == table) {
            self.removes(t, &|c| c < ck.id)?
        } else {
            Vec::new()
        };
        let file_schema = first_file.map(|(schema, _)| schema);
        let commit = TableCommit {
            app_id: self.app_id(table),
            version: Some(ck.id as i64),
            adds,
            removes,
            horizon: Some(ck.engine.horizon),
            file_schema,
            rearranges: false,
            txns: Vec::new(),
        };
        delta::commit(t, table, commit)
            .await
            .map_err(|e| self.error(e))?;
        Ok(())
    }

    /// Opens the table, creating it with the columns of a first file.
    async fn create(
        &self,
        table: &str,
        schema: &Schema,
        partition: &str,
    ) -> Result<DeltaTable, IngestError> {
        let columns: Vec<String> = partition
            .split('/')
            .filter_map(|s| s.split_once('=').map(|(c, _)| c.to_string()))
            .collect();
        delta::open_or_create(&self.lake, table, schema, &columns, &self.writers)
            .await
            .map_err(|e| self.error(e))
    }

    /// The swap of a Kafka pipeline's rebuild (`rebuild::kafka`), for the whole pipeline:
    /// per table, one commit removes every file and adds the files of each unit's rebuilt
    /// checkpoint, with each unit's txn version and horizon. A table whose swap is in the
    /// log already (a crash after it) is left as it is.
    pub async fn swap_rebuilt(
        &self,
        tables: &[String],
        rebuilt: &[(String, &Checkpoint)],
    ) -> Result<(), IngestError> {
        for table in tables {
            let mut adds = Vec::new();
            let mut first_file = None;
            let mut txns = Vec::new();
            for (unit, ck) in rebuilt {
                for f in ck.pending.iter().filter(|f| f.table == *table) {
                    let file = self.add_of(f).await?;
                    first_file.get_or_insert((file.schema, f.partition.clone()));
                    adds.push(file.add);
                }
                let app = format!("{}/{table}/{unit}", self.pipeline);
                txns.push((format!("{app}/horizon"), ck.engine.horizon));
                txns.push((app, ck.id as i64));
            }
            let Some((app_id, version)) = txns.pop() else {
                continue;
            };
            let mut t = match &first_file {
                Some((schema, partition)) => self.create(table, schema, partition).await?,
                None => match delta::open(&self.lake, table)
                    .await
                    .map_err(|e| self.error(e))?
                {
                    Some(t) => t,
                    None => continue,
                },
            };
            let removes = delta::active_files(&t)
                .map_err(|e| self.error(e))?
                .into_iter()
                .map(|(path, size)| delta::remove_of(&path, size))
                .collect();
            let commit = TableCommit {
                app_id,
                version: Some(version),
                adds,
                removes,
                file_schema: first_file.map(|(schema, _)| schema),
                txns,
                ..TableCommit::default()
            };
            delta::commit(&mut t, table, commit)
                .await
                .map_err(|e| self.error(e))?;
            fault::point("after-rebuild-retract");
        }
        Ok(())
    }

    /// Removes of this unit's files in the table whose checkpoint `redo` selects.
    fn removes(&self, t: &DeltaTable, redo: Redo<'_>) -> Result<Vec<Remove>, IngestError> {
        let files = delta::active_files(t).map_err(|e| self.error(e))?;
        Ok(files
            .into_iter()
            .filter(|(path, _)| {
                let name = delta::file_name(path);
                unit_of(name) == self.unit.as_deref() && checkpoint_of(name).is_some_and(redo)
            })
            .map(|(path, size)| delta::remove_of(&path, size))
            .collect())
    }
}

/// The longest a table with removed files waits for its next VACUUM.
const VACUUM_EVERY: Duration = Duration::from_secs(600);

/// A pending file's path below its table: `<partition>/<name>`.
fn below_table(f: &PendingFile) -> String {
    let name = f.target.rsplit('/').next().unwrap_or_default();
    if f.partition.is_empty() {
        name.to_string()
    } else {
        format!("{}/{name}", f.partition)
    }
}

#[async_trait]
impl Committer for DeltaCommitter {
    async fn stage(&self, file: EncodedFile) -> Result<PendingFile, IngestError> {
        let target = self
            .lake
            .data_file(&file.table, &file.partition, &file.name);
        let rel = format!("{}/{}", file.partition, file.name);
        let rel = rel.trim_start_matches('/');
        let staged = delta::add_action(rel, &file.data).map_err(|e| self.error(e))?;
        let bytes = file.data.len() as u64;
        self.lake
            .store
            .put(&target, PutPayload::from_bytes(file.data))
            .await
            .map_err(|source| CommitError::Stage {
                path: self.lake.display(&target),
                source,
            })?;
        self.adds
            .lock()
            .expect("not poisoned")
            .insert(target.to_string(), staged);
        Ok(PendingFile {
            table: file.table,
            partition: file.partition.to_string(),
            staged: target.to_string(),
            target: target.to_string(),
            rows: file.rows,
            bytes,
        })
    }

    async fn commit(&self, ck: &Checkpoint) -> Result<Vec<PartitionMarker>, IngestError> {
        if !ck.rebuilt.is_empty() && self.board.lock().await.is_some() {
            // A Kafka unit's rebuild is swapped in with every unit's, once all are rebuilt
            // ([`DeltaCommitter::swap_rebuilt`]); its files stay unnamed until then.
            return Ok(Vec::new());
        }
        let mut by_table: BTreeMap<&str, Vec<&PendingFile>> = BTreeMap::new();
        for f in &ck.pending {
            by_table.entry(f.table.as_str()).or_default().push(f);
        }
        for m in &ck.engine.markers {
            by_table.entry(m.table.as_str()).or_default();
        }
        for t in &ck.rebuilt {
            by_table.entry(t.as_str()).or_default();
        }
        let mut first = true;
        for (table, files) in by_table {
            self.commit_table(table, &files, ck).await?;
            if std::mem::take(&mut first) {
                fault::point("mid-publish");
            }
        }
        if let Some(board) = self.board.lock().await.as_mut() {
            board.post_horizon(ck.id, ck.engine.horizon).await?;
        }
        for m in &ck.engine.markers {
            self.merges.queue(m);
        }
        Ok(ck.engine.markers.clone())
    }

    async fn retract(
        &self,
        tables: &[String],
        why: &str,
        redo: Redo<'_>,
    ) -> Result<(), IngestError> {
        let mut open = self.tables.lock().await;
        for table in tables {
            let Some(t) = self.loaded(&mut open, table).await? else {
                continue;
            };
            let removes = self.removes(t, redo)?;
            if removes.is_empty() {
                continue;
            }
            let removed = removes.len();
            let commit = TableCommit {
                app_id: self.app_id(table),
                version: None,
                removes,
                ..TableCommit::default()
            };
            delta::commit(t, table, commit)
                .await
                .map_err(|e| self.error(e))?;
            tracing::warn!(table, removed, "removed files {why}");
        }
        Ok(())
    }

    async fn clean_staging(&self, tables: &[String]) -> Result<(), IngestError> {
        for table in tables {
            let Some(t) = delta::open(&self.lake, table)
                .await
                .map_err(|e| self.error(e))?
            else {
                continue;
            };
            let committed = delta::committed_version(&t, &self.app_id(table))
                .await
                .map_err(|e| self.error(e))?
                .unwrap_or(-1);
            let dir = self.lake.table_dir(table);
            let listed: Vec<_> = self
                .lake
                .store
                .list(Some(&dir))
                .try_collect()
                .await
                .map_err(|e| self.error(e))?;
            let mut removed = 0;
            for meta in listed {
                let name = meta.location.filename().unwrap_or_default();
                let never_committed = unit_of(name) == self.unit.as_deref()
                    && checkpoint_of(name).is_some_and(|c| c as i64 > committed);
                if never_committed {
                    self.lake
                        .store
                        .delete(&meta.location)
                        .await
                        .map_err(|e| self.error(e))?;
                    removed += 1;
                }
            }
            if removed > 0 {
                tracing::info!(
                    table,
                    removed,
                    "removed files of work after the last checkpoint"
                );
            }
        }
        Ok(())
    }

    async fn resume(
        &self,
        restored: &Checkpoint,
        store: &CheckpointStore,
    ) -> Result<(), IngestError> {
        // Lake partitions committed by the older kept checkpoints may still wait for their merge.
        self.merges.resume(restored, store).await?;
        Ok(())
    }

    async fn maintain(&self, oldest_kept: u64) -> Result<(), IngestError> {
        let merges = &self.merges;
        merges
            .merge_due(oldest_kept, |codec, table, segments| async move {
                self.merge(codec, &table, segments, false).await.map(|_| ())
            })
            .await
    }

    fn unsettled(&self) -> bool {
        !self.merges.is_empty()
    }
}
