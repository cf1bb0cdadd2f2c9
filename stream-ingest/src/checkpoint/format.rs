//! The bytes of a checkpoint, and the older formats still read.
//!
//! ```text
//! file = "SICKPT" version:u16 | postcard(Checkpoint) | fnv1a64(body):u64 LE
//! ```
//!
//! Postcard is not self-describing: a type that changes changes the bytes. Every format
//! still read has its types frozen in its own file with the migration to today's
//! (`v6.rs`, `v5.rs`), the way Arroyo keeps each checkpointed type with its `migrate`.

use serde::{Deserialize, Serialize};
use shared::commit::PendingFile;
use shared::hash::fnv1a64;

use super::CheckpointError;
use super::spec::PipelineSpec;
use super::state::EngineSnapshot;
use super::{v5, v6};

/// Version of the checkpoint format written; this one and formats 6 and 5 are read, a
/// checkpoint of any other version is not restored.
pub const FORMAT_VERSION: u16 = 7;
const MAGIC: &[u8; 6] = b"SICKPT";

/// One checkpoint.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Checkpoint {
    pub id: u64,
    /// The first checkpoint of this generation: the run that started the pipeline's output
    /// from scratch. Files of earlier generations are removed once it is durable.
    pub generation: u64,
    pub pipeline: String,
    /// The input it was reading (`--input` or the pipeline's source), to refuse resuming on another.
    pub input: String,
    pub engine: EngineSnapshot,
    /// Staged files to publish once this checkpoint is durable.
    pub pending: Vec<PendingFile>,
    /// The dimension version files this checkpoint and the kept ones before it name (set
    /// by [`super::CheckpointStore::write`]).
    pub dimension_files: Vec<String>,
    /// What computed the state: the tables in the order of `engine.tables`. `None` in a
    /// checkpoint of format 6 or 5, which did not record it: its tables are taken to be the
    /// pipeline file's, in order.
    pub spec: Option<PipelineSpec>,
    /// Tables this checkpoint rebuilt (`run --rebuild`): once it is durable, their files and
    /// markers committed by earlier checkpoints are removed (again on a restart from it).
    pub rebuilt: Vec<String>,
}

impl Checkpoint {
    pub fn encode(&self) -> Result<Vec<u8>, CheckpointError> {
        let body = postcard::to_stdvec(self).map_err(|e| CheckpointError::Encode(e.to_string()))?;
        let mut out = Vec::with_capacity(body.len() + 16);
        out.extend_from_slice(MAGIC);
        out.extend_from_slice(&FORMAT_VERSION.to_le_bytes());
        out.extend_from_slice(&body);
        out.extend_from_slice(&fnv1a64(&body).to_le_bytes());
        Ok(out)
    }

    /// Decodes a checkpoint (of this format or an older one still read); why not, when it
    /// is damaged or of another version.
    pub fn decode(data: &[u8]) -> Result<Checkpoint, String> {
        if data.len() < 16 || &data[..6] != MAGIC {
            return Err("not a checkpoint (bad header or truncated)".into());
        }
        let version = u16::from_le_bytes([data[6], data[7]]);
        let (body, sum) = data[8..].split_at(data.len() - 16);
        let expected = u64::from_le_bytes(sum.try_into().expect("8 bytes"));
        let known = [FORMAT_VERSION, v6::VERSION, v5::VERSION];
        if !known.contains(&version) {
            return Err(format!(
                "format version {version}; this build reads {FORMAT_VERSION}, {} and {} (a checkpoint of a newer release: run that release, or start over with --from-scratch)",
                v6::VERSION,
                v5::VERSION
            ));
        }
        if fnv1a64(body) != expected {
            return Err("checksum mismatch (damaged or partly written)".into());
        }
        let decoded = match version {
            v5::VERSION => postcard::from_bytes::<v5::Checkpoint>(body).map(Checkpoint::from),
            v6::VERSION => postcard::from_bytes::<v6::Checkpoint>(body).map(Checkpoint::from),
            _ => postcard::from_bytes(body),
        };
        decoded.map_err(|e| format!("cannot decode: {e}"))
    }
}
