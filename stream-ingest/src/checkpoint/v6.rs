//! Checkpoint format 6, frozen: read so that the first run after the upgrade to format 7
//! resumes. Format 7 added what computed the state (the pipeline's spec) and the windows an
//! end of input emitted early; a format 6 checkpoint has neither, so its tables are taken
//! to be the pipeline file's in order (as format 6 itself required), and a watermark it
//! stored at the end of time (its end-of-input flush) stays there: every window was emitted.

use serde::Deserialize;
use shared::commit::{PartitionMarker, PendingFile};

use crate::metrics::EngineStats;
use crate::sources::Position;

use super::state::{self, GroupSnapshot, LookupSnapshot, SessionSnapshot, SinkSnapshot};

pub const VERSION: u16 = 6;

#[derive(Deserialize)]
pub struct TableSnapshot {
    windows: Vec<(i64, Vec<GroupSnapshot>)>,
    sessions: Vec<(Vec<u8>, Vec<SessionSnapshot>)>,
    windows_emitted: u64,
}

/// The engine state of formats 6 and 5 (`L`: how a lookup's version is written).
#[derive(Deserialize)]
pub struct EngineSnapshot<L = LookupSnapshot> {
    checkpoint: u64,
    source: Position,
    next_line: u64,
    max_ts: Option<i64>,
    stats: EngineStats,
    tables: Vec<TableSnapshot>,
    sinks: Vec<SinkSnapshot>,
    late: Option<SinkSnapshot>,
    dead_letter_len: Option<u64>,
    markers: Vec<PartitionMarker>,
    horizon: i64,
    lookups: Vec<L>,
}

#[derive(Deserialize)]
pub struct Checkpoint {
    id: u64,
    generation: u64,
    pipeline: String,
    input: String,
    engine: EngineSnapshot,
    pending: Vec<PendingFile>,
    dimension_files: Vec<String>,
}

impl From<TableSnapshot> for state::TableSnapshot {
    fn from(t: TableSnapshot) -> Self {
        state::TableSnapshot {
            windows: t.windows,
            sessions: t.sessions,
            windows_emitted: t.windows_emitted,
            flushed: state::Flushed::default(),
        }
    }
}

impl<L> From<EngineSnapshot<L>> for state::EngineSnapshot<L> {
    fn from(e: EngineSnapshot<L>) -> Self {
        state::EngineSnapshot {
            checkpoint: e.checkpoint,
            source: e.source,
            next_line: e.next_line,
            max_ts: e.max_ts,
            stats: e.stats,
            tables: e.tables.into_iter().map(Into::into).collect(),
            sinks: e.sinks,
            late: e.late,
            dead_letter_len: e.dead_letter_len,
            markers: e.markers,
            horizon: e.horizon,
            lookups: e.lookups,
        }
    }
}

impl From<Checkpoint> for super::Checkpoint {
    fn from(c: Checkpoint) -> Self {
        super::Checkpoint {
            id: c.id,
            generation: c.generation,
            pipeline: c.pipeline,
            input: c.input,
            engine: c.engine.into(),
            pending: c.pending,
            dimension_files: c.dimension_files,
            spec: None,
            rebuilt: Vec::new(),
        }
    }
}
