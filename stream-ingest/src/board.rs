//! Commits of tables that several units write (one engine per Kafka partition).
//!
//! An engine knows only its own Kafka partition of the topic: it can say that it will write
//! no more rows into a lake partition (its *horizon* passed the partition's end), not that
//! the other Kafka partitions of the topic will not. So with units, a lake partition is committed —
//! `_SUCCESS` written, listing the files of every unit — only once every unit's horizon
//! passed its end. Each unit posts its horizon and the markers it made but could not commit
//! yet on a board in the lake, after each of its checkpoints; then it reads the other units'
//! posts and commits every lake partition that all of them passed. Any unit may do it: the
//! marker's content is a function of the posts (files sorted, rows summed), so two units that
//! commit the same lake partition write the same bytes. A unit that never posted (a Kafka
//! partition never processed yet) holds every commit back, as Flink's watermark alignment does.
//!
//! ```text
//! _checkpoints/<pipeline>/units/p0.json   {"unit":"p0","checkpoint":12,"horizon":…,"awaiting":[marker…]}
//!                               p1.json   …
//! ```

use std::collections::BTreeMap;

use object_store::path::Path;
use object_store::{ObjectStoreExt, PutPayload};
use serde::{Deserialize, Serialize};
use shared::commit::{FileCommitter, PartitionMarker};
use shared::lake::{COMMIT_MARKER, Lake};

/// Errors of the board (object-store requests).
#[derive(Debug, thiserror::Error)]
#[error("the commit board {path}: {reason}")]
pub struct BoardError {
    pub path: String,
    pub reason: String,
}

/// What a unit posts after each checkpoint.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
struct Post {
    unit: String,
    checkpoint: u64,
    /// No lake partition ending at or before this (µs) gets rows from the unit any more.
    horizon: i64,
    /// The unit's markers whose partitions are not committed yet.
    awaiting: Vec<PartitionMarker>,
}

type Key = (String, Vec<String>);

/// One unit's view of the board.
pub struct Board {
    lake: Lake,
    dir: Path,
    unit: String,
    /// Every unit of the topic(s): a unit without a post holds commits back.
    units: Vec<String>,
    awaiting: BTreeMap<Key, PartitionMarker>,
}

impl Board {
    pub fn new(lake: Lake, pipeline: &str, unit: String, units: Vec<String>) -> Board {
        let dir = lake.checkpoint_dir(pipeline).join("units");
        Board {
            lake,
            dir,
            unit,
            units,
            awaiting: BTreeMap::new(),
        }
    }

    fn post_path(&self, unit: &str) -> Path {
        self.dir.clone().join(format!("{unit}.json"))
    }

    fn error(&self, path: &Path, reason: impl ToString) -> BoardError {
        BoardError {
            path: self.lake.display(path),
            reason: reason.to_string(),
        }
    }

    /// On recovery: takes back the unit's markers still waiting, as of checkpoint `restored`
    /// (markers of later checkpoints are made again by the replay).
    pub async fn restore(&mut self, restored: u64) -> Result<(), BoardError> {
        if let Some(post) = self.read(&self.unit.clone()).await? {
            for m in post.awaiting {
                if m.checkpoint <= restored {
                    self.awaiting
                        .insert((m.table.clone(), m.partition.clone()), m);
                }
            }
        }
        Ok(())
    }

    async fn read(&self, unit: &str) -> Result<Option<Post>, BoardError> {
        let path = self.post_path(unit);
        let got = match self.lake.store.get(&path).await {
            Ok(g) => g,
            Err(object_store::Error::NotFound { .. }) => return Ok(None),
            Err(e) => return Err(self.error(&path, e)),
        };
        let body = got.bytes().await.map_err(|e| self.error(&path, e))?;
        serde_json::from_slice(&body)
            .map(Some)
            .map_err(|e| self.error(&path, e))
    }

    /// Whether every unit has read its Kafka partition to the end (a bounded input): its engine
    /// flushed everything, so its horizon is the end of time.
    pub async fn all_ended(&self) -> Result<bool, BoardError> {
        for unit in &self.units {
            match self.read(unit).await? {
                Some(post) if post.horizon > i64::MAX / 2 => {}
                _ => return Ok(false),
            }
        }
        Ok(true)
    }

    /// After a checkpoint of the unit is durable and its files published: posts its horizon
    /// and markers, then commits every lake partition all units passed. Returns the markers
    /// this unit wrote.
    pub async fn after_checkpoint(
        &mut self,
        committer: &FileCommitter,
        checkpoint: u64,
        horizon: i64,
        markers: &[PartitionMarker],
    ) -> Result<Vec<PartitionMarker>, BoardError> {
        let post = self.post(checkpoint, horizon, markers).await?;
        self.commit_passed_by_all(committer, post).await
    }

    /// Posts the unit's horizon and its markers not committed yet (with `markers`).
    async fn post(
        &mut self,
        checkpoint: u64,
        horizon: i64,
        markers: &[PartitionMarker],
    ) -> Result<Post, BoardError> {
        for m in markers {
            self.awaiting
                .insert((m.table.clone(), m.partition.clone()), m.clone());
        }
        let post = Post {
            unit: self.unit.clone(),
            checkpoint,
            horizon,
            awaiting: self.awaiting.values().cloned().collect(),
        };
        let path = self.post_path(&self.unit);
        let body = serde_json::to_vec(&post).expect("serializes");
        self.lake
            .store
            .put(&path, PutPayload::from(body))
            .await
            .map_err(|e| self.error(&path, e))?;
        Ok(post)
    }

    /// Reads the other units' posts and commits every lake partition all of them passed.
    async fn commit_passed_by_all(
        &mut self,
        committer: &FileCommitter,
        mine: Post,
    ) -> Result<Vec<PartitionMarker>, BoardError> {
        let mut posts = vec![mine];
        for unit in self.units.clone() {
            if unit != self.unit {
                match self.read(&unit).await? {
                    Some(p) => posts.push(p),
                    // Never processed: nothing of the topic can be committed yet.
                    None => return Ok(Vec::new()),
                }
            }
        }
        let passed = posts.iter().map(|p| p.horizon).min().unwrap_or(i64::MIN);
        let written = self.commit_passed(committer, &posts, passed).await?;
        let lake = &self.lake;
        self.awaiting
            .retain(|(_, partition), _| lake.time_end_of(partition).is_none_or(|e| e > passed));
        Ok(written)
    }

    /// Posts the unit's horizon alone: a table format that commits partitions itself
    /// (Delta) still tells the other units when it has read its Kafka partition to the end.
    pub async fn post_horizon(&mut self, checkpoint: u64, horizon: i64) -> Result<(), BoardError> {
        self.post(checkpoint, horizon, &[]).await.map(|_| ())
    }

    /// A rebuild's swap (`rebuild::kafka`): replaces the rebuilt `tables`' markers the unit
    /// waits on with those of its checkpoint `checkpoint` (restored first), and posts them.
    /// Nothing is committed: [`Board::commit_posted`] does, once every unit posted.
    pub async fn repost_rebuilt(
        &mut self,
        tables: &[String],
        checkpoint: u64,
        horizon: i64,
        markers: &[PartitionMarker],
    ) -> Result<(), BoardError> {
        self.restore(checkpoint).await?;
        self.awaiting.retain(|(t, _), _| !tables.contains(t));
        self.post(checkpoint, horizon, markers).await.map(|_| ())
    }

    /// Commits every lake partition all units passed, as their posts say.
    pub async fn commit_posted(
        &mut self,
        committer: &FileCommitter,
    ) -> Result<Vec<PartitionMarker>, BoardError> {
        match self.read(&self.unit.clone()).await? {
            Some(mine) => self.commit_passed_by_all(committer, mine).await,
            None => Ok(Vec::new()),
        }
    }

    /// Writes the marker of every awaited partition that ends at or before `passed`, unless
    /// another unit did.
    async fn commit_passed(
        &self,
        committer: &FileCommitter,
        posts: &[Post],
        passed: i64,
    ) -> Result<Vec<PartitionMarker>, BoardError> {
        let mut due: BTreeMap<Key, Vec<&PartitionMarker>> = BTreeMap::new();
        for m in posts.iter().flat_map(|p| &p.awaiting) {
            if self
                .lake
                .time_end_of(&m.partition)
                .is_some_and(|end| end <= passed)
            {
                due.entry((m.table.clone(), m.partition.clone()))
                    .or_default()
                    .push(m);
            }
        }
        let mut written = Vec::new();
        for ((table, partition), parts) in due {
            let marker = merge_markers(table, partition, &parts);
            let partition_path = shared::lake::PartitionPath {
                segments: marker.partition.clone(),
            };
            let path = self
                .lake
                .data_file(&marker.table, &partition_path, COMMIT_MARKER);
            match self.lake.store.head(&path).await {
                Ok(_) => continue,
                Err(object_store::Error::NotFound { .. }) => {}
                Err(e) => return Err(self.error(&path, e)),
            }
            committer
                .write_marker(&marker)
                .await
                .map_err(|e| self.error(&path, e))?;
            written.push(marker);
        }
        Ok(written)
    }
}

/// One marker for a partition from the markers of each unit that wrote into it: the same
/// bytes whoever merges them.
fn merge_markers(
    table: String,
    partition: Vec<String>,
    parts: &[&PartitionMarker],
) -> PartitionMarker {
    let mut files: Vec<String> = parts.iter().flat_map(|m| m.files.clone()).collect();
    files.sort();
    files.dedup();
    PartitionMarker {
        table,
        partition,
        rows: parts.iter().map(|m| m.rows).sum(),
        files,
        watermark: parts.iter().map(|m| m.watermark).max().unwrap_or(i64::MIN),
        checkpoint: 0,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn marker(files: &[&str], rows: u64, watermark: i64, checkpoint: u64) -> PartitionMarker {
        PartitionMarker {
            table: "t".into(),
            partition: vec!["dt=2015-05-17".into(), "hour=10".into()],
            rows,
            files: files.iter().map(|f| f.to_string()).collect(),
            watermark,
            checkpoint,
        }
    }

    #[test]
    fn merged_markers_are_the_same_whoever_merges_them() {
        let a = marker(
            &["part-b-p1-c3-x.parquet", "part-a-p1-c2-y.parquet"],
            5,
            100,
            3,
        );
        let b = marker(&["part-a-p0-c7-z.parquet"], 2, 90, 7);
        let (t, p) = (a.table.clone(), a.partition.clone());
        let one = merge_markers(t.clone(), p.clone(), &[&a, &b]);
        let two = merge_markers(t, p, &[&b, &a]);
        assert_eq!(one, two);
        assert_eq!(one.rows, 7);
        assert_eq!(one.watermark, 100);
        assert_eq!(one.checkpoint, 0);
        assert_eq!(
            one.files,
            vec![
                "part-a-p0-c7-z.parquet",
                "part-a-p1-c2-y.parquet",
                "part-b-p1-c3-x.parquet"
            ]
        );
    }

    #[test]
    fn a_partition_ends_where_its_time_partition_does() {
        let lake = Lake::open("/tmp/lake", &Default::default(), Default::default()).unwrap();
        let end = lake.time_end_of(&["dt=2015-05-17".into(), "hour=10".into()]);
        assert_eq!(end, Some(1_431_860_400_000_000)); // 2015-05-17T11:00:00Z
        assert_eq!(lake.time_end_of(&["status=200".into()]), None);
    }
}
