//! Checkpoint format 5, frozen: it carried each lookup's dimension bytes inline and had no
//! list of version files; the next checkpoint stores those bytes as a version file. Its
//! engine state is format 6's ([`super::v6`]), migrated on from there.

use std::sync::Arc;

use serde::Deserialize;
use shared::commit::PendingFile;

use super::state::LookupSnapshot;

use super::state;
use super::v6::EngineSnapshot;

pub const VERSION: u16 = 5;

#[derive(Deserialize)]
pub struct Lookup {
    table: String,
    data: Vec<u8>,
}

#[derive(Deserialize)]
pub struct Checkpoint {
    id: u64,
    generation: u64,
    pipeline: String,
    input: String,
    engine: EngineSnapshot<Lookup>,
    pending: Vec<PendingFile>,
}

impl From<Checkpoint> for super::Checkpoint {
    fn from(c: Checkpoint) -> Self {
        let engine: state::EngineSnapshot<Lookup> = c.engine.into();
        super::Checkpoint {
            id: c.id,
            generation: c.generation,
            pipeline: c.pipeline,
            input: c.input,
            engine: engine.map_lookups(|l| LookupSnapshot::new(&l.table, Arc::from(l.data))),
            pending: c.pending,
            dimension_files: Vec::new(),
            spec: None,
            rebuilt: Vec::new(),
        }
    }
}
