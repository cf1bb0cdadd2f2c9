//! `run --rebuild` of a pipeline with a Kafka source: one unit per Kafka partition.
//!
//! Every unit writes its own files into the same lake partitions, and a partition's
//! `_SUCCESS` lists the files of all of them ([`crate::board`]): no unit can swap its share
//! of a table alone. So a rebuild takes every unit's lock (no member may run), rebuilds
//! each unit as a file source's is rebuilt, and swaps them all at once:
//!
//! ```text
//! journal _checkpoints/<pipeline>/rebuild.json {tables, each unit's newest checkpoint}
//!  ─▶ each unit: its Kafka partition from the earliest record to its checkpoint's offset
//!               ─▶ checkpoint R {rebuilt: tables}, its new files published (nothing removed)
//!  ─▶ swap: the tables' markers and each unit's files older than its R removed; each unit
//!           posts its new markers on the board; the partitions every unit passed committed
//!  ─▶ journal deleted
//! ```
//!
//! While the journal exists no member starts ([`unfinished`] makes each unit's recovery
//! refuse, naming the command that finishes the rebuild). The same command goes on where a
//! crash stopped it: a unit whose newest checkpoint is the rebuild's is not rebuilt again,
//! and the swap is done again from the start (each of its steps can be).

use object_store::ObjectStoreExt;
use object_store::path::Path;
use serde::{Deserialize, Serialize};
use shared::config::{KafkaConfig, LakeFormat, LoadedConfig};
use shared::lake::Lake;
use std::collections::BTreeMap;

use super::{Replay, Target, rebuild_unit};
use crate::board::Board;
use crate::checkpoint::{Checkpoint, CheckpointStore};
use crate::commit::Committer;
use crate::commit::delta::DeltaCommitter;
use crate::commit::hive::HiveCommitter;
use crate::member::{KafkaPartition, partitions, unit_tag};
use crate::metrics::Telemetry;
use crate::unit::{Unit, lock_unit, table_names};
use crate::{IngestError, RunOptions, fault};

/// A rebuild in progress, in the lake beside the units' checkpoints.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct Journal {
    tables: Vec<String>,
    /// Each unit's newest checkpoint when the rebuild started (a unit without one has
    /// nothing to rebuild).
    from: BTreeMap<String, u64>,
}

fn journal_path(lake: &Lake, pipeline: &str) -> Path {
    lake.checkpoint_dir(pipeline).join("rebuild.json")
}

fn lake_error(lake: &Lake, path: &Path, e: impl std::fmt::Display) -> IngestError {
    IngestError::Internal(format!("{}: {e}", lake.display(path)))
}

async fn read_journal(lake: &Lake, pipeline: &str) -> Result<Option<Journal>, IngestError> {
    let path = journal_path(lake, pipeline);
    let got = match lake.store.get(&path).await {
        Ok(got) => got,
        Err(object_store::Error::NotFound { .. }) => return Ok(None),
        Err(e) => return Err(lake_error(lake, &path, e)),
    };
    let body = got.bytes().await.map_err(|e| lake_error(lake, &path, e))?;
    serde_json::from_slice(&body)
        .map(Some)
        .map_err(|e| lake_error(lake, &path, format!("not a rebuild journal: {e}")))
}

/// Refuses to run a unit of a Kafka pipeline whose rebuild did not finish: its state and
/// files may be the rebuild's while the others' are not yet.
pub async fn refuse_unfinished(loaded: &LoadedConfig, lake: &Lake) -> Result<(), IngestError> {
    let Some(journal) = read_journal(lake, &loaded.config.name).await? else {
        return Ok(());
    };
    let tables = journal.tables.join(",");
    Err(IngestError::Usage(format!(
        "a rebuild of {tables} did not finish ({} exists): run `stream-ingest run -c {} --rebuild {tables}` again to finish it; no member of the pipeline can start before",
        lake.display(&journal_path(lake, &loaded.config.name)),
        loaded.file.display()
    )))
}

/// Rebuilds `opts.rebuild` in every unit of a Kafka pipeline, then swaps them in.
pub(super) async fn rebuild(
    loaded: &LoadedConfig,
    opts: &RunOptions,
    lake: &Lake,
    kafka: &KafkaConfig,
) -> Result<(), IngestError> {
    let config = &loaded.config;
    let wait = opts.wait.map(|w| w.0);
    // One rebuild (or `compact`) at a time, and no member while it runs.
    let _pipeline = lock_unit(lake, &config.name, &Unit::whole(), wait).await?;
    let topics = kafka.topic.names();
    let kps = {
        let (kafka, topics) = (kafka.clone(), topics.clone());
        tokio::task::spawn_blocking(move || partitions(&kafka, &topics))
            .await
            .map_err(|e| IngestError::Internal(format!("the metadata probe panicked: {e}")))??
    };
    let all: Vec<String> = kps.iter().map(|kp| unit_tag(&topics, kp)).collect();
    let units: Vec<Unit> = all
        .iter()
        .map(|tag| Unit::tagged(tag.clone(), all.clone()))
        .collect();
    let mut locks = Vec::new();
    for unit in &units {
        locks.push(lock_unit(lake, &config.name, unit, wait).await?);
    }
    let journal = begin(loaded, opts, lake, &units).await?;
    for ((kp, unit), locks) in kps.iter().zip(&units).zip(locks) {
        if is_rebuilt(loaded, lake, unit, &journal).await?.is_some() {
            continue;
        }
        let Some(tag) = &unit.tag else { continue };
        if !journal.from.contains_key(tag) {
            continue;
        }
        rebuild_partition(loaded, opts, lake, kafka, kp, unit, locks).await?;
        fault::point("after-rebuild-unit");
    }
    swap(loaded, lake, &units, &journal).await?;
    let path = journal_path(lake, &config.name);
    lake.store
        .delete(&path)
        .await
        .map_err(|e| lake_error(lake, &path, e))?;
    Ok(())
}

/// Rebuilds one unit from its Kafka partition's earliest record.
async fn rebuild_partition(
    loaded: &LoadedConfig,
    opts: &RunOptions,
    lake: &Lake,
    kafka: &KafkaConfig,
    kp: &KafkaPartition,
    unit: &Unit,
    locks: shared::lock::Locks,
) -> Result<(), IngestError> {
    let telemetry = Telemetry::new(&table_names(&loaded.config));
    let target = Target {
        unit,
        identity: kp.identity(),
        locks,
    };
    let source = Replay::Kafka {
        kafka,
        topic: &kp.topic,
        partition: kp.partition,
    };
    rebuild_unit(loaded, opts, lake, target, &source, &telemetry).await?;
    Ok(())
}

/// The journal of this rebuild: the one a crash left (the same tables), or a new one.
async fn begin(
    loaded: &LoadedConfig,
    opts: &RunOptions,
    lake: &Lake,
    units: &[Unit],
) -> Result<Journal, IngestError> {
    let config = &loaded.config;
    if let Some(journal) = read_journal(lake, &config.name).await? {
        if journal.tables != opts.rebuild {
            let tables = journal.tables.join(",");
            return Err(IngestError::Usage(format!(
                "a rebuild of {tables} did not finish: finish it first with `run --rebuild {tables}`, then rebuild {}",
                opts.rebuild.join(",")
            )));
        }
        tracing::warn!(tables = %journal.tables.join(", "), "finishing the rebuild a stopped run began");
        return Ok(journal);
    }
    let mut from = BTreeMap::new();
    for unit in units {
        if let (Some(tag), (Some(ck), _)) = (&unit.tag, store(loaded, lake, unit).latest().await?) {
            from.insert(tag.clone(), ck.id);
        }
    }
    let journal = Journal {
        tables: opts.rebuild.clone(),
        from,
    };
    let path = journal_path(lake, &config.name);
    let body = serde_json::to_vec_pretty(&journal).expect("serializes");
    lake.store
        .put(&path, body.into())
        .await
        .map_err(|e| lake_error(lake, &path, e))?;
    Ok(journal)
}

fn store(loaded: &LoadedConfig, lake: &Lake, unit: &Unit) -> CheckpointStore {
    let config = &loaded.config;
    CheckpointStore::in_dir(
        lake.clone(),
        unit.checkpoint_dir(lake, &config.name),
        config.checkpoint.keep as usize,
    )
}

/// The unit's checkpoint of this rebuild, if it is written.
async fn is_rebuilt(
    loaded: &LoadedConfig,
    lake: &Lake,
    unit: &Unit,
    journal: &Journal,
) -> Result<Option<Checkpoint>, IngestError> {
    let (Some(ck), _) = store(loaded, lake, unit).latest().await? else {
        return Ok(None);
    };
    let from = unit.tag.as_ref().and_then(|t| journal.from.get(t));
    let ours = from.is_some_and(|&from| ck.id > from) && ck.rebuilt == journal.tables;
    Ok(ours.then_some(ck))
}

/// Swaps every unit's rebuilt files in, in the lake's format; then drops the units'
/// checkpoints older than their rebuilt one.
async fn swap(
    loaded: &LoadedConfig,
    lake: &Lake,
    units: &[Unit],
    journal: &Journal,
) -> Result<(), IngestError> {
    let mut rebuilt = Vec::new();
    for unit in units {
        if let Some(ck) = is_rebuilt(loaded, lake, unit, journal).await? {
            rebuilt.push((unit, ck));
        }
    }
    match loaded.config.lake.format {
        LakeFormat::Hive => swap_hive(loaded, lake, &journal.tables, &rebuilt).await?,
        LakeFormat::Delta => {
            let committer = DeltaCommitter::new(lake.clone(), &loaded.config.name, &Unit::whole());
            let tagged: Vec<(String, &Checkpoint)> = rebuilt
                .iter()
                .filter_map(|(u, ck)| Some((u.tag.clone()?, ck)))
                .collect();
            committer.swap_rebuilt(&journal.tables, &tagged).await?;
        }
    }
    for (unit, ck) in &rebuilt {
        let store = store(loaded, lake, unit);
        let older = store.older_than(ck.id).await?;
        store.prune(older).await;
    }
    Ok(())
}

/// The swap in a Hive lake: removes the tables' markers (they list every unit's old files)
/// and files without a unit (merged by `compact`), then each unit's files older than its
/// rebuild; posts each unit's new markers, and commits what all passed.
async fn swap_hive(
    loaded: &LoadedConfig,
    lake: &Lake,
    tables: &[String],
    rebuilt: &[(&Unit, Checkpoint)],
) -> Result<(), IngestError> {
    let why = "replaced by the rebuild";
    let telemetry = Telemetry::new(tables);
    let committer = HiveCommitter::new(lake.clone(), None, telemetry.clone());
    committer.retract(tables, why, &|_| true).await?;
    for (unit, ck) in rebuilt {
        let theirs = HiveCommitter::new(lake.clone(), unit.tag.clone(), telemetry.clone());
        let id = ck.id;
        theirs.retract(tables, why, &move |c| c < id).await?;
    }
    fault::point("after-rebuild-retract");
    let mut board = None;
    for (unit, ck) in rebuilt {
        let tag = unit.tag.clone().unwrap_or_default();
        let mut b = Board::new(lake.clone(), &loaded.config.name, tag, unit.all.clone());
        let state = &ck.engine;
        b.repost_rebuilt(tables, ck.id, state.horizon, &state.markers)
            .await?;
        board = Some(b);
    }
    if let Some(b) = &mut board {
        let committed = b.commit_posted(&committer.files).await?;
        tracing::info!(partitions = committed.len(), "rebuilt partitions committed");
    }
    Ok(())
}
