//! The engine's state as a checkpoint stores it. These are plain data: the engine, its
//! tables, sinks and lookups convert to and from them ([`crate::engine::Engine::snapshot`],
//! [`crate::table::WindowedTable::snapshot`], [`crate::sink::TableSink::snapshot`]). A
//! change here changes the checkpoint's bytes: raise [`super::format::FORMAT_VERSION`] and
//! freeze the old shape beside its migration (`v6.rs`, `v5.rs`).
//!
//! A few live types are stored as they are, because a copy would cost a conversion per
//! group or per event for nothing: an aggregate's state ([`Acc`], with the sketches of
//! `shared::sketch`, whose bytes are a documented format of their own), the source's
//! [`Position`] (with `sources::tail::TailPosition`), the counters ([`EngineStats`]), and
//! the lake contract's `PendingFile` and `PartitionMarker` (`shared::commit`). They are
//! part of the format all the same: the golden bytes (`tests/golden/checkpoint-v<N>.hex`)
//! pin every one of them.

use std::sync::Arc;

use serde::{Deserialize, Serialize};
use shared::commit::PartitionMarker;

use crate::aggregate::Acc;
use crate::metrics::EngineStats;
use crate::sources::Position;

/// The engine's state in a checkpoint: where the source is, the watermark, every table's
/// open windows and every sink's buffered rows.
///
/// `L` is how a lookup's version is written: [`LookupSnapshot`] now, the bytes themselves in
/// checkpoint format 5 (`v5.rs`).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct EngineSnapshot<L = LookupSnapshot> {
    /// The checkpoint this state belongs to: it commits the files cut before it.
    pub checkpoint: u64,
    /// Where the source is (only the sources look inside).
    pub source: Position,
    pub next_line: u64,
    /// The largest event time seen: the watermark is this minus the bound. Never the end
    /// of time (format 7 on): an end of input that emitted every window records which
    /// windows it emitted early instead ([`TableSnapshot::flushed`]).
    pub max_ts: Option<i64>,
    pub stats: EngineStats,
    /// In the order of the checkpoint's [`super::PipelineSpec::tables`].
    pub tables: Vec<TableSnapshot>,
    /// One per table, in the same order.
    pub sinks: Vec<SinkSnapshot>,
    pub late: Option<SinkSnapshot>,
    pub dead_letter_len: Option<u64>,
    /// Partitions to commit once this checkpoint's files are published.
    pub markers: Vec<PartitionMarker>,
    /// No lake partition ending at or before this instant (µs) gets rows from this engine
    /// any more: where several engines write one table (one per Kafka partition), a lake
    /// partition is committed once every engine's horizon passed its end.
    pub horizon: i64,
    /// The version of each lookup's dimension the events after this checkpoint see.
    pub lookups: Vec<L>,
}

impl<L> EngineSnapshot<L> {
    /// The same state with each lookup's version written another way.
    pub fn map_lookups<M>(self, f: impl FnMut(L) -> M) -> EngineSnapshot<M> {
        EngineSnapshot {
            checkpoint: self.checkpoint,
            source: self.source,
            next_line: self.next_line,
            max_ts: self.max_ts,
            stats: self.stats,
            tables: self.tables,
            sinks: self.sinks,
            late: self.late,
            dead_letter_len: self.dead_letter_len,
            markers: self.markers,
            horizon: self.horizon,
            lookups: self.lookups.into_iter().map(f).collect(),
        }
    }
}

/// A group of a window in a checkpoint: key bytes and aggregate states.
pub type GroupSnapshot = (Vec<u8>, Vec<Acc>);
/// A session in a checkpoint: start, end, aggregate states.
pub type SessionSnapshot = (i64, i64, Vec<Acc>);

/// The state of a windowed table in a checkpoint.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct TableSnapshot {
    /// Open fixed windows: start, then (key bytes, states) per group.
    pub windows: Vec<(i64, Vec<GroupSnapshot>)>,
    /// Open sessions: key bytes, then (start, end, states) per session.
    pub sessions: Vec<(Vec<u8>, Vec<SessionSnapshot>)>,
    pub windows_emitted: u64,
    /// Windows an end of input emitted before the watermark passed them.
    pub flushed: Flushed,
}

/// Windows emitted early, at the end of a bounded input (`end_of_input: flush`): an event
/// of a later run that falls in one is late, as it would be for a window the watermark
/// passed. Those the watermark has passed since are forgotten.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Flushed {
    /// Starts of fixed windows, ascending.
    pub windows: Vec<i64>,
    /// Sessions: key bytes, start, end; in key order.
    pub sessions: Vec<(Vec<u8>, i64, i64)>,
}

impl TableSnapshot {
    /// Keeps the aggregate states of `keep` (old positions, in the new order), with a
    /// state that has not seen every event where `None`: an aggregate added while the
    /// window was open.
    pub fn remap_aggregates(&mut self, keep: &[Option<usize>]) {
        let remap = |accs: &mut Vec<Acc>| {
            let old = std::mem::take(accs);
            *accs = keep
                .iter()
                .map(|k| k.map_or(Acc::Unseen, |i| old[i].clone()))
                .collect();
        };
        for (_, groups) in &mut self.windows {
            groups.iter_mut().for_each(|(_, accs)| remap(accs));
        }
        for (_, list) in &mut self.sessions {
            list.iter_mut().for_each(|(_, _, accs)| remap(accs));
        }
    }
}

/// The buffered rows of a sink in a checkpoint: per partition, Arrow IPC bytes.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct SinkSnapshot {
    pub partitions: Vec<BufferSnapshot>,
    pub written: Vec<(Vec<String>, UncommittedFiles)>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct BufferSnapshot {
    pub segments: Vec<String>,
    pub time_end: i64,
    pub first_time: i64,
    pub opened_ms: i64,
    pub ipc: Vec<u8>,
}

/// Files written to a lake partition that is not committed yet.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct UncommittedFiles {
    pub files: Vec<String>,
    pub rows: u64,
    pub time_end: i64,
}

/// The version of a dimension a checkpoint records (a checkpoint must replay with it even
/// when the file has changed since). The checkpoint holds its digest; the bytes are stored
/// once per version beside the checkpoints ([`super::CheckpointStore`]), not in every checkpoint.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct LookupSnapshot {
    pub table: String,
    /// `fnv1a64` of the bytes.
    pub digest: u64,
    pub len: u64,
    /// The file's bytes: filled in when a checkpoint is read back.
    #[serde(skip)]
    pub data: Arc<[u8]>,
}

impl LookupSnapshot {
    pub fn new(table: &str, data: Arc<[u8]>) -> Self {
        LookupSnapshot {
            table: table.to_string(),
            digest: shared::hash::fnv1a64(&data),
            len: data.len() as u64,
            data,
        }
    }

    /// The name of the version's file: the same bytes, the same name, whichever table.
    pub fn file_name(&self) -> String {
        format!("{:016x}-{}.bin", self.digest, self.len)
    }

    /// Takes the bytes of the version's file, checked against the digest.
    pub fn fill(&mut self, data: &[u8]) -> Result<(), String> {
        if data.len() as u64 != self.len || shared::hash::fnv1a64(data) != self.digest {
            return Err(format!(
                "dimension version {} of lookup `{}` is damaged",
                self.file_name(),
                self.table
            ));
        }
        self.data = Arc::from(data);
        Ok(())
    }
}
