//! The engine's state as a checkpoint stores it. These are plain data: the engine, its
//! tables and its sinks convert to and from them ([`crate::engine::Engine::snapshot`],
//! [`crate::table::WindowedTable::snapshot`]). A change here changes the checkpoint's bytes:
//! raise [`super::FORMAT_VERSION`] and freeze the old shape beside its migration
//! (`v6.rs`, `v5.rs`).

use serde::{Deserialize, Serialize};
use shared::commit::PartitionMarker;

use crate::aggregate::Acc;
use crate::lookup::LookupSnapshot;
use crate::metrics::EngineStats;
use crate::sink::SinkSnapshot;
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
