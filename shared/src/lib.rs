//! What `stream-ingest` and `batch-analyze` share, so that each concept lives in one place.
//!
//! Start with [`config`]: one YAML file per pipeline is parsed into plain serde structs,
//! validated by a pure function that reports every problem with its field path and line, and
//! only then turned into runtime objects by each binary. Around it:
//!
//! - [`schema`]: the Arrow schema of parsed events (per input format) and of every windowed
//!   table, derived from the config. The writer and the reader both take it from here.
//! - [`lake`]: where things live under the lake root (local disk or object storage): table and
//!   partition directories, Hive-style escaping of partition values, hidden staging names.
//! - [`commit`]: how a file becomes visible: staged under a hidden name, then published by an
//!   atomic rename (or copy on object storage) only once complete.
//! - [`delta`]: the same tables as Delta Lake tables (`lake.format: delta`): a commit to the
//!   table's log makes files visible, with the writer's checkpoint and horizon in it.
//! - [`expr`]: SQL expressions over events (`derive`, table filters), planned and evaluated
//!   with DataFusion.
//! - [`sketch`]: the HyperLogLog and t-digest sketches both stages keep and merge, and their
//!   bytes in the lake.
//! - [`types`]: the Arrow type of each declared field type, and the one timestamp type.
//! - [`hash`]: the content hash (FNV-1a) that names files and checks bytes.
//! - [`duration`]: durations written the same way everywhere (`250ms`, `10s`, `5m`).
//! - [`lock`]: one writer per unit of state (a report, a pipeline's checkpoints): an OS lock
//!   on local disk, a conditional `PUT` with a lease on object storage.
//! - [`store_metrics`]: counters of the lake's object-store requests, errors and retries.

pub mod bytesize;
pub mod commit;
pub mod config;
pub mod delta;
pub mod duration;
pub mod expr;
pub mod fault;
pub mod hash;
pub mod lake;
pub mod lock;
pub mod logging;
pub mod schema;
pub mod sketch;
pub mod store_metrics;
pub mod types;

pub use bytesize::ByteSize;
pub use config::{ConfigError, PipelineConfig};
pub use duration::HumanDuration;
