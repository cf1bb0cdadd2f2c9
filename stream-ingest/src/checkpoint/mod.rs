//! Checkpoints: everything a restart needs to continue exactly where a run stopped.
//!
//! A checkpoint holds the source position, the watermark, every open window's aggregate state
//! (count-distinct sets included), the rows of emitted windows still buffered for their
//! partition, the staged files not yet published, and a format version. It is stored under
//! `<lake>/_checkpoints/<pipeline>/ckpt-<id>.bin` (on S3 too), written in one atomic `PUT`,
//! and ends with a checksum: a damaged or partial checkpoint is detected and skipped, and the
//! newest one that reads back wins. Older ones are pruned (`checkpoint.keep`).
//!
//! The dimension versions a checkpoint's lookups replay with ([`crate::lookup`]) are not in
//! it: each version is stored once, beside the checkpoints, as
//! `dimensions/<fnv1a64>-<len>.bin` (written before the first checkpoint that names it), and
//! the checkpoint names it by digest. A 50 MB dimension costs 50 MB once per version (per
//! Kafka unit: each has its own folder), not once per checkpoint. Each checkpoint also lists
//! every version the kept checkpoints before it name, so the files no kept checkpoint needs
//! can be deleted without reading them. Format 5 (the bytes inline) is still read.
//!
//! The bytes, their version and the migrations from older formats are in `format.rs`,
//! `v6.rs` and `v5.rs`; the state itself in `state.rs`; what computed it in `spec.rs`; and
//! what a restart does with a state computed by another pipeline file in `plan.rs`.

mod format;
pub mod plan;
pub mod spec;
pub mod state;
mod v5;
mod v6;

pub use format::Checkpoint;
pub use spec::PipelineSpec;
pub use state::{EngineSnapshot, Flushed, LookupSnapshot, TableSnapshot};

use std::collections::{BTreeSet, HashSet, VecDeque};
use std::sync::Mutex;

use bytes::Bytes;
use futures::TryStreamExt;
use object_store::path::Path;
use object_store::{ObjectStoreExt, PutPayload};
use shared::commit::PartitionMarker;
use shared::lake::Lake;

#[derive(Debug, thiserror::Error)]
pub enum CheckpointError {
    #[error("cannot write checkpoint {path}: {source}")]
    Write {
        path: Path,
        #[source]
        source: object_store::Error,
    },
    #[error("cannot read {path}: {source}")]
    Read {
        path: Path,
        #[source]
        source: object_store::Error,
    },
    #[error("cannot list checkpoints under {path}: {source}")]
    List {
        path: Path,
        #[source]
        source: object_store::Error,
    },
    #[error("cannot encode checkpoint: {0}")]
    Encode(String),
}

/// The checkpoints of one pipeline in one lake.
pub struct CheckpointStore {
    lake: Lake,
    dir: Path,
    keep: usize,
    versions: Mutex<Versions>,
}

/// What a store knows of the dimension version files beside its checkpoints.
#[derive(Default)]
struct Versions {
    /// The files named by the last `keep` checkpoints written (or, after a restart, by the
    /// restored one and those before it), newest last.
    recent: VecDeque<Vec<String>>,
    /// Files known to be stored.
    stored: HashSet<String>,
    /// The files kept at the last clean-up (`None`: none yet).
    cleaned: Option<Vec<String>>,
}

impl Versions {
    /// Every file a kept checkpoint may need.
    fn live(&self) -> Vec<String> {
        let all: BTreeSet<&String> = self.recent.iter().flatten().collect();
        all.into_iter().cloned().collect()
    }
}

/// Name of the folder beside the checkpoints that holds the dimension versions.
const DIMENSIONS_DIR: &str = "dimensions";

fn file_name(id: u64) -> String {
    format!("ckpt-{id:010}.bin")
}

fn id_of(path: &Path) -> Option<u64> {
    path.filename()?
        .strip_prefix("ckpt-")?
        .strip_suffix(".bin")?
        .parse()
        .ok()
}

impl CheckpointStore {
    pub fn new(lake: Lake, pipeline: &str, keep: usize) -> Self {
        let dir = lake.checkpoint_dir(pipeline);
        Self::in_dir(lake, dir, keep)
    }

    /// The checkpoints kept in `dir` (a unit of state's: `_checkpoints/<pipeline>/p3`).
    pub fn in_dir(lake: Lake, dir: Path, keep: usize) -> Self {
        CheckpointStore {
            lake,
            dir,
            keep: keep.max(1),
            versions: Mutex::default(),
        }
    }

    /// Ids of the stored checkpoints, newest first.
    async fn ids(&self) -> Result<Vec<(u64, Path)>, CheckpointError> {
        // One level only: the units of a Kafka pipeline keep theirs in subdirectories.
        let metas: Vec<_> = self
            .lake
            .store
            .list_with_delimiter(Some(&self.dir))
            .await
            .map(|l| l.objects)
            .map_err(|source| CheckpointError::List {
                path: self.dir.clone(),
                source,
            })?;
        let mut ids: Vec<(u64, Path)> = metas
            .into_iter()
            .filter_map(|m| id_of(&m.location).map(|id| (id, m.location)))
            .collect();
        ids.sort_by_key(|(id, _)| std::cmp::Reverse(*id));
        Ok(ids)
    }

    /// The id of the oldest checkpoint kept: no restart goes back further.
    pub async fn oldest(&self) -> Result<Option<u64>, CheckpointError> {
        Ok(self.kept().await?.last().map(|(id, _)| *id))
    }

    /// The `keep` newest checkpoints, newest first: the ones a restart may restore. Older
    /// ones (left by a crash before pruning) are never restored: a partition committed by
    /// them may have been merged since (see [`crate::compact::mergeable`]).
    async fn kept(&self) -> Result<Vec<(u64, Path)>, CheckpointError> {
        let mut ids = self.ids().await?;
        ids.truncate(self.keep);
        Ok(ids)
    }

    /// The bytes of `path`: `Ok(None)` when it is not there, an error when the store fails
    /// (a timeout or a refused request is not a damaged checkpoint: the start fails, and can
    /// be retried, instead of rebuilding).
    async fn get(&self, path: &Path) -> Result<Option<Bytes>, CheckpointError> {
        let data = match self.lake.store.get(path).await {
            Ok(r) => r.bytes().await,
            Err(e) => Err(e),
        };
        match data {
            Ok(d) => Ok(Some(d)),
            Err(object_store::Error::NotFound { .. }) => Ok(None),
            Err(source) => Err(CheckpointError::Read {
                path: path.clone(),
                source,
            }),
        }
    }

    /// A checkpoint; why not (`Err(reason)`) when it is missing or damaged.
    async fn read(&self, path: &Path) -> Result<Result<Checkpoint, String>, CheckpointError> {
        Ok(match self.get(path).await? {
            Some(data) => Checkpoint::decode(&data),
            None => Err("gone".into()),
        })
    }

    fn versions(&self) -> std::sync::MutexGuard<'_, Versions> {
        self.versions.lock().expect("not poisoned")
    }

    fn version_path(&self, name: &str) -> Path {
        self.dir.clone().join(DIMENSIONS_DIR).join(name)
    }

    /// A checkpoint with the bytes of its dimension versions: it cannot be restored without.
    async fn read_whole(&self, path: &Path) -> Result<Result<Checkpoint, String>, CheckpointError> {
        let mut checkpoint = match self.read(path).await? {
            Ok(c) => c,
            Err(reason) => return Ok(Err(reason)),
        };
        for lookup in &mut checkpoint.engine.lookups {
            if lookup.data.len() as u64 == lookup.len {
                continue; // carried by the checkpoint itself (format 5)
            }
            let name = lookup.file_name();
            let Some(data) = self.get(&self.version_path(&name)).await? else {
                return Ok(Err(format!("dimension version {name} is missing")));
            };
            if let Err(reason) = lookup.fill(&data) {
                return Ok(Err(reason));
            }
            self.versions().stored.insert(name);
        }
        Ok(Ok(checkpoint))
    }

    /// The newest checkpoint that reads back, and the highest id seen (even of a damaged one).
    pub async fn latest(&self) -> Result<(Option<Checkpoint>, u64), CheckpointError> {
        let ids = self.kept().await?;
        let highest = ids.first().map_or(0, |(id, _)| *id);
        for (id, path) in ids {
            match self.read_whole(&path).await? {
                Ok(c) => {
                    self.versions().recent = VecDeque::from([c.dimension_files.clone()]);
                    return Ok((Some(c), highest));
                }
                Err(reason) => {
                    tracing::warn!(checkpoint = id, %reason, "skipping an unreadable checkpoint")
                }
            }
        }
        Ok((None, highest))
    }

    /// The stores of every unit of state that has checkpoints here: this directory's own
    /// (a pipeline that is one unit) and its subdirectories' (a Kafka pipeline's units, as
    /// `p3`), each with its name.
    pub async fn units(&self) -> Result<Vec<(Option<String>, CheckpointStore)>, CheckpointError> {
        let listed = self
            .lake
            .store
            .list_with_delimiter(Some(&self.dir))
            .await
            .map_err(|source| CheckpointError::List {
                path: self.dir.clone(),
                source,
            })?;
        let mut units = Vec::new();
        if listed.objects.iter().any(|m| id_of(&m.location).is_some()) {
            units.push((
                None,
                Self::in_dir(self.lake.clone(), self.dir.clone(), self.keep),
            ));
        }
        for dir in listed.common_prefixes {
            let name = dir.filename().unwrap_or_default().to_string();
            if name != DIMENSIONS_DIR {
                units.push((Some(name), Self::in_dir(self.lake.clone(), dir, self.keep)));
            }
        }
        Ok(units)
    }

    /// The stored checkpoints older than `id`: after a rebuild, none of them may be restored
    /// (the files their state goes with are gone).
    pub async fn older_than(&self, id: u64) -> Result<Vec<Path>, CheckpointError> {
        let ids = self.ids().await?;
        Ok(ids
            .into_iter()
            .filter(|(i, _)| *i < id)
            .map(|(_, p)| p)
            .collect())
    }

    /// The partitions committed by the stored checkpoints older than `restored`: the ones a
    /// crash may have left unmerged (unreadable checkpoints are skipped).
    pub async fn older_markers(
        &self,
        restored: u64,
    ) -> Result<Vec<PartitionMarker>, CheckpointError> {
        let mut markers = Vec::new();
        for (id, path) in self.ids().await? {
            if id >= restored {
                continue;
            }
            if let Ok(c) = self.read(&path).await? {
                markers.extend(c.engine.markers);
            }
        }
        Ok(markers)
    }

    /// Writes a checkpoint atomically. Returns its size, the oldest checkpoint that stays
    /// once the older ones are pruned, and those older ones: [`CheckpointStore::prune`] them
    /// after whatever must happen while they still exist.
    pub async fn write(
        &self,
        checkpoint: &mut Checkpoint,
    ) -> Result<WrittenCheckpoint, CheckpointError> {
        checkpoint.dimension_files = self.store_versions(checkpoint).await?;
        let data = checkpoint.encode()?;
        let size = data.len() as u64;
        let path = self.dir.clone().join(file_name(checkpoint.id));
        self.lake
            .store
            .put(&path, PutPayload::from_bytes(Bytes::from(data)))
            .await
            .map_err(|source| CheckpointError::Write {
                path: path.clone(),
                source,
            })?;
        let ids = self.ids().await?;
        let oldest_kept = ids[..self.keep.min(ids.len())]
            .last()
            .map_or(checkpoint.id, |(id, _)| *id);
        let stale = ids.into_iter().skip(self.keep).map(|(_, p)| p).collect();
        Ok(WrittenCheckpoint {
            bytes: size,
            oldest_kept,
            stale,
        })
    }

    /// Stores the dimension versions `checkpoint` names that are not stored yet; every file
    /// it and the kept checkpoints before it name.
    async fn store_versions(
        &self,
        checkpoint: &Checkpoint,
    ) -> Result<Vec<String>, CheckpointError> {
        let mut names = Vec::new();
        for lookup in &checkpoint.engine.lookups {
            let name = lookup.file_name();
            let known = self.versions().stored.contains(&name);
            if !known {
                let path = self.version_path(&name);
                let bytes = Bytes::from_owner(lookup.data.clone());
                self.lake
                    .store
                    .put(&path, PutPayload::from_bytes(bytes))
                    .await
                    .map_err(|source| CheckpointError::Write { path, source })?;
                self.versions().stored.insert(name.clone());
            }
            names.push(name);
        }
        let mut versions = self.versions();
        versions.recent.push_back(names);
        while versions.recent.len() > self.keep {
            versions.recent.pop_front();
        }
        Ok(versions.live())
    }

    /// Deletes checkpoints that fell out of `keep`, then the dimension versions no kept
    /// checkpoint names.
    pub async fn prune(&self, stale: Vec<Path>) {
        for old in stale {
            if let Err(e) = self.lake.store.delete(&old).await {
                tracing::warn!(checkpoint = %old, error = %e, "cannot prune an old checkpoint");
            }
        }
        if let Err(e) = self.prune_versions().await {
            tracing::warn!(error = %e, "cannot prune old dimension versions");
        }
    }

    /// Deletes the version files no kept checkpoint names (listed only when that set
    /// changed).
    async fn prune_versions(&self) -> Result<(), object_store::Error> {
        let (live, first) = {
            let versions = self.versions();
            let live = versions.live();
            if versions.cleaned.as_ref() == Some(&live) {
                return Ok(());
            }
            (live, versions.cleaned.is_none())
        };
        let dir = self.dir.clone().join(DIMENSIONS_DIR);
        let files: Vec<_> = self.lake.store.list(Some(&dir)).try_collect().await?;
        // A file this store never knew is left alone after the first clean-up: it can only be
        // a newer owner's (this writer lost the unit; its next fenced step stops it).
        for file in files {
            let name = file.location.filename().unwrap_or_default().to_string();
            let known = self.versions().stored.contains(&name);
            if live.binary_search(&name).is_err() && (known || first) {
                self.lake.store.delete(&file.location).await?;
                self.versions().stored.remove(&name);
            }
        }
        self.versions().cleaned = Some(live);
        Ok(())
    }
}

/// What writing a checkpoint left in the store: its size, the oldest checkpoint kept, and
/// the older ones to prune (see [`CheckpointStore::write`]).
#[derive(Debug)]
pub struct WrittenCheckpoint {
    pub bytes: u64,
    pub oldest_kept: u64,
    pub stale: Vec<Path>,
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use shared::config::{S3Config, TimePartitioning, load_str};

    use shared::commit::PendingFile;

    use super::format::FORMAT_VERSION;
    use super::*;
    use crate::engine::Engine;
    use crate::format::parser_for;
    use crate::parallel::parse_chunk;
    use crate::sources::Advance;

    const PIPELINE: &str = "
name: golden
source: { kind: stdin }
format: { kind: apache }
event_time: { field: ts, max_out_of_orderness: 60s }
derive:
  - { name: class, expr: status / 100 }
lookup:
  - { table: codes, on: status, columns: [label], defaults: { label: other } }
dimensions:
  - name: codes
    path: codes.csv
    columns: [{ name: status, type: int32 }, { name: label, type: string }]
tables:
  - name: status_1m
    window: { kind: tumbling, size: 1m }
    key: [status]
    aggregates:
      - { name: requests, fn: count }
      - { name: bytes, fn: sum, column: bytes }
      - { name: bytes_max, fn: max, column: bytes }
      - { name: avg_bytes, fn: avg, column: bytes }
      - { name: hosts, fn: count_distinct, column: host }
      - { name: approx_hosts, fn: approx_distinct, column: host, sketch: true }
      - { name: p90_bytes, fn: approx_percentile, column: bytes, q: 0.9, sketch: true }
  - name: by_class
    window: { kind: tumbling, size: 1m }
    key: [class, label]
    aggregates:
      - { name: requests, fn: count }
  - name: sessions
    window: { kind: session, gap: 5m }
    key: [host]
    aggregates:
      - { name: requests, fn: count }
lake: { root: /nonexistent/lake }
";

    const LINES: &[u8] = b"\
10.0.0.1 - - [17/May/2015:10:05:03 +0000] \"GET /a HTTP/1.1\" 200 512 \"-\" \"x\"
10.0.0.2 - - [17/May/2015:10:05:30 +0000] \"GET /b HTTP/1.1\" 404 0 \"-\" \"x\"
not a log line
10.0.0.1 - - [17/May/2015:10:05:59 +0000] \"GET /a HTTP/1.1\" 200 1024 \"-\" \"x\"
";

    /// A checkpoint of an engine that read a few lines: open fixed windows and sessions with
    /// every kind of aggregate state, a position, counters, a pending file and a marker.
    fn sample() -> Checkpoint {
        let loaded = load_str(PIPELINE, std::path::Path::new("golden.yaml")).unwrap();
        let config = &loaded.config;
        let lake = Lake::open(
            &config.lake.root,
            &config.lake.s3,
            config.lake.partition_time,
        )
        .unwrap();
        let names: Vec<String> = config.tables.iter().map(|t| t.name.clone()).collect();
        let telemetry = crate::metrics::Telemetry::new(&names);
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("codes.csv"), "status,label\n200,ok\n").unwrap();
        let lookups = crate::lookup::Lookups::open(config, |p| dir.path().join(p)).unwrap();
        let mut engine = Engine::new(config, lake, None, Arc::clone(&telemetry), lookups).unwrap();
        engine.set_next_checkpoint(7);
        let parsed = parse_chunk(parser_for(&config.format).as_mut(), LINES, true);
        let mut files = Vec::new();
        engine
            .apply(Some(parsed), Advance::Bytes(LINES.len() as u64), &mut files)
            .unwrap();
        let mut snap = engine.snapshot(&mut files).unwrap();
        assert!(files.is_empty(), "no window closed");
        snap.markers.push(PartitionMarker {
            table: "status_1m".into(),
            partition: vec!["dt=2015-05-17".into(), "hour=09".into()],
            rows: 3,
            files: vec!["part-a-c0000000006-0123456789abcdef.parquet".into()],
            watermark: 1_431_857_103_000_000,
            checkpoint: 7,
        });
        Checkpoint {
            id: 7,
            generation: 2,
            pipeline: "golden".into(),
            input: "stdin".into(),
            engine: snap,
            pending: vec![PendingFile {
                table: "status_1m".into(),
                partition: "dt=2015-05-17/hour=10".into(),
                staged: "_staging/status_1m/x.inprogress".into(),
                target: "status_1m/dt=2015-05-17/hour=10/part-b.parquet".into(),
                rows: 2,
                bytes: 900,
            }],
            dimension_files: vec!["00000000000000ff-42.bin".into()],
            spec: Some(PipelineSpec::of(config)),
            rebuilt: Vec::new(),
        }
    }

    /// The sample checkpoint, numbered `id`, whose lookup saw `bytes`.
    fn with_version(id: u64, bytes: &[u8]) -> Checkpoint {
        let mut c = sample();
        c.id = id;
        c.engine.lookups = vec![LookupSnapshot::new("codes", Arc::from(bytes))];
        c
    }

    fn version_name(bytes: &[u8]) -> String {
        LookupSnapshot::new("codes", Arc::from(bytes)).file_name()
    }

    fn version_files(lake: &std::path::Path) -> Vec<String> {
        let dir = lake.join("_checkpoints/golden").join(DIMENSIONS_DIR);
        let mut names: Vec<String> = std::fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        names
    }

    #[tokio::test]
    async fn a_dimension_version_is_stored_once_and_deleted_once_no_kept_checkpoint_names_it() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().to_str().unwrap();
        let open = || Lake::open(root, &S3Config::default(), TimePartitioning::Hour).unwrap();
        let store = CheckpointStore::new(open(), "golden", 2);
        let (a, b) = (vec![b'a'; 100_000], vec![b'b'; 100_000]);
        let mut files = Vec::new();
        let mut sizes = Vec::new();
        for (id, data) in [(1, &a), (2, &a), (3, &b), (4, &b)] {
            let written = store.write(&mut with_version(id, data)).await.unwrap();
            sizes.push(written.bytes);
            store.prune(written.stale).await;
            files.push(version_files(dir.path()));
        }
        let (va, vb) = (version_name(&a), version_name(&b));
        let both = {
            let mut v = vec![va.clone(), vb.clone()];
            v.sort();
            v
        };
        // Checkpoint 3 switched to b while 2 (kept) still named a; 4 and 3 name b only.
        assert_eq!(files, [vec![va.clone()], vec![va], both, vec![vb.clone()]]);
        // The bytes are in no checkpoint.
        assert!(sizes.iter().all(|s| *s < 10_000), "{sizes:?}");

        // A restart reads the newest checkpoint with the bytes of its version.
        let (restored, highest) = CheckpointStore::new(open(), "golden", 2)
            .latest()
            .await
            .unwrap();
        let restored = restored.unwrap();
        assert_eq!((restored.id, highest), (4, 4));
        assert_eq!(*restored.engine.lookups[0].data, b[..]);
        assert_eq!(restored.dimension_files, std::slice::from_ref(&vb));

        // Damaged or missing, the version makes its checkpoints unrestorable (older ones
        // are tried, and here none is left).
        let path = dir.path().join("_checkpoints/golden/dimensions").join(&vb);
        std::fs::write(&path, &a).unwrap();
        let (restored, _) = CheckpointStore::new(open(), "golden", 2)
            .latest()
            .await
            .unwrap();
        assert!(restored.is_none());
        std::fs::remove_file(&path).unwrap();
        let (restored, _) = CheckpointStore::new(open(), "golden", 2)
            .latest()
            .await
            .unwrap();
        assert!(restored.is_none());
    }

    fn hex(bytes: &[u8]) -> String {
        bytes
            .chunks(32)
            .map(|line| line.iter().map(|b| format!("{b:02x}")).collect::<String>() + "\n")
            .collect()
    }

    fn unhex(text: &str) -> Vec<u8> {
        text.split_whitespace()
            .flat_map(|l| {
                (0..l.len())
                    .step_by(2)
                    .map(move |i| u8::from_str_radix(&l[i..i + 2], 16).unwrap())
            })
            .collect()
    }

    /// A local store whose reads below `dimensions/` fail as a store fails (a timeout).
    #[derive(Debug)]
    struct FailingVersionReads(object_store::local::LocalFileSystem);

    impl std::fmt::Display for FailingVersionReads {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            write!(f, "FailingVersionReads")
        }
    }

    #[async_trait::async_trait]
    impl object_store::ObjectStore for FailingVersionReads {
        async fn put_opts(
            &self,
            location: &Path,
            payload: PutPayload,
            opts: object_store::PutOptions,
        ) -> object_store::Result<object_store::PutResult> {
            self.0.put_opts(location, payload, opts).await
        }

        async fn put_multipart_opts(
            &self,
            location: &Path,
            opts: object_store::PutMultipartOptions,
        ) -> object_store::Result<Box<dyn object_store::MultipartUpload>> {
            self.0.put_multipart_opts(location, opts).await
        }

        async fn get_opts(
            &self,
            location: &Path,
            options: object_store::GetOptions,
        ) -> object_store::Result<object_store::GetResult> {
            if location.as_ref().contains("/dimensions/") {
                return Err(object_store::Error::Generic {
                    store: "test",
                    source: "operation timed out".into(),
                });
            }
            self.0.get_opts(location, options).await
        }

        fn delete_stream(
            &self,
            locations: futures::stream::BoxStream<'static, object_store::Result<Path>>,
        ) -> futures::stream::BoxStream<'static, object_store::Result<Path>> {
            self.0.delete_stream(locations)
        }

        fn list(
            &self,
            prefix: Option<&Path>,
        ) -> futures::stream::BoxStream<'static, object_store::Result<object_store::ObjectMeta>>
        {
            self.0.list(prefix)
        }

        async fn list_with_delimiter(
            &self,
            prefix: Option<&Path>,
        ) -> object_store::Result<object_store::ListResult> {
            self.0.list_with_delimiter(prefix).await
        }

        async fn copy_opts(
            &self,
            from: &Path,
            to: &Path,
            options: object_store::CopyOptions,
        ) -> object_store::Result<()> {
            self.0.copy_opts(from, to, options).await
        }
    }

    /// A store that fails to read a version is not a damaged checkpoint: the start fails
    /// (to be retried) instead of skipping every checkpoint naming it and rebuilding.
    #[tokio::test]
    async fn a_store_failure_reading_a_version_fails_the_start() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().to_str().unwrap();
        let lake = Lake::open(root, &S3Config::default(), TimePartitioning::Hour).unwrap();
        let store = CheckpointStore::new(lake.clone(), "golden", 2);
        for id in [1, 2] {
            store.write(&mut with_version(id, b"codes")).await.unwrap();
        }
        let failing = Lake {
            store: Arc::new(FailingVersionReads(
                object_store::local::LocalFileSystem::new(),
            )),
            ..lake
        };
        let started = CheckpointStore::new(failing, "golden", 2).latest().await;
        match started {
            Err(CheckpointError::Read { path, .. }) => {
                assert!(path.as_ref().contains("/dimensions/"), "{path}")
            }
            other => panic!(
                "expected a read error, got {:?}",
                other.map(|(c, _)| c.map(|c| c.id))
            ),
        }
    }

    /// The golden checkpoint of format 5 (the same engine state, the dimension's bytes
    /// inline) reads back as today's, its dimension bytes taken from it.
    #[tokio::test]
    async fn a_format_5_checkpoint_is_restored_after_the_upgrade() {
        let golden =
            std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/golden/checkpoint-v5.hex");
        let v5 = unhex(&std::fs::read_to_string(golden).unwrap());
        let old = Checkpoint::decode(&v5).unwrap();
        let codes = b"status,label\n200,ok\n";
        assert_eq!(&*old.engine.lookups[0].data, codes);
        let mut today = sample();
        today.dimension_files = Vec::new();
        today.spec = None;
        assert_eq!(old.encode().unwrap(), today.encode().unwrap());

        // In a lake: restored with its bytes; the next checkpoint stores them as a version.
        let dir = tempfile::tempdir().unwrap();
        let ckpts = dir.path().join("_checkpoints/golden");
        std::fs::create_dir_all(&ckpts).unwrap();
        std::fs::write(ckpts.join(file_name(7)), &v5).unwrap();
        let root = dir.path().to_str().unwrap();
        let lake = Lake::open(root, &S3Config::default(), TimePartitioning::Hour).unwrap();
        let store = CheckpointStore::new(lake, "golden", 2);
        let (restored, _) = store.latest().await.unwrap();
        let mut next = restored.unwrap();
        assert_eq!(&*next.engine.lookups[0].data, codes);
        next.id = 8;
        store.write(&mut next).await.unwrap();
        assert_eq!(version_files(dir.path()), [version_name(codes)]);
    }

    /// The golden checkpoint of format 6 reads back as today's, without a spec (its tables
    /// are the pipeline file's, in order) and without windows flushed early.
    #[test]
    fn a_format_6_checkpoint_is_restored_after_the_upgrade() {
        let golden =
            std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/golden/checkpoint-v6.hex");
        let old = Checkpoint::decode(&unhex(&std::fs::read_to_string(golden).unwrap())).unwrap();
        assert!(old.spec.is_none());
        let mut today = sample();
        today.spec = None;
        assert_eq!(old.encode().unwrap(), today.encode().unwrap());
    }

    /// The sample with every part of format 7 set: a spec, and windows and sessions an end
    /// of input flushed.
    fn sample_v7() -> Checkpoint {
        let mut c = sample();
        c.engine.tables[0].flushed = Flushed {
            windows: vec![1_431_857_100_000_000],
            sessions: Vec::new(),
        };
        c.engine.tables[2].flushed = Flushed {
            windows: Vec::new(),
            sessions: vec![(
                b"10.0.0.1".to_vec(),
                1_431_857_103_000_000,
                1_431_857_459_000_000,
            )],
        };
        c
    }

    /// Every change of the checkpoint's bytes must be deliberate: a restart of the new build
    /// cannot read the old checkpoints unless it knows their format. After a deliberate
    /// change, raise [`FORMAT_VERSION`], freeze the old types beside their migration (as
    /// `v6.rs`) and rewrite the golden file with `BLESS=1`.
    #[test]
    fn the_checkpoint_format_is_pinned_by_golden_bytes() {
        let golden = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join(format!("tests/golden/checkpoint-v{FORMAT_VERSION}.hex"));
        let actual = hex(&sample_v7().encode().unwrap());
        if std::env::var_os("BLESS").is_some_and(|v| v == "1") {
            std::fs::create_dir_all(golden.parent().unwrap()).unwrap();
            std::fs::write(&golden, &actual).unwrap();
        }
        let expected = std::fs::read_to_string(&golden)
            .unwrap_or_else(|e| panic!("{}: {e} (BLESS=1 writes it)", golden.display()));
        assert!(
            expected == actual,
            "the checkpoint format changed ({}): if on purpose, raise FORMAT_VERSION and rerun with BLESS=1",
            golden.display()
        );
        // And the golden bytes read back into the same checkpoint.
        let bytes = unhex(&expected);
        let back = Checkpoint::decode(&bytes).unwrap();
        assert_eq!(back.encode().unwrap(), bytes);
        assert_eq!(
            back.engine.source,
            crate::sources::Position::Bytes(LINES.len() as u64)
        );
        assert_eq!(back.spec.unwrap().tables[1].name, "by_class");
    }
}
