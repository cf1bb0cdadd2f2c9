//! What a report last computed, for `--incremental`: `_state/batch-analyze/<pipeline>/
//! <report>.json` in the lake, holding a fingerprint of the report's definition and, per
//! day, a fingerprint of the input the day was computed from (partitions, file names and
//! sizes of the committed files it read; names carry a hash of the content).
//!
//! A day is due when it is new, when its input changed (a late partition, a new file,
//! compaction), or when the report's definition changed. The state is written last, after
//! every output of the run is in place, so a run that dies leaves the old state and the next
//! run does the work again.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use object_store::path::Path;
use object_store::{ObjectStoreExt, PutPayload};
use shared::lake::Lake;

/// The tool's name in the lake's `_state/` folder (its state, and its locks: [`crate::lock`]).
pub(crate) const TOOL: &str = "batch-analyze";

const VERSION: u32 = 1;

#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct ReportState {
    pub version: u32,
    pub pipeline: String,
    pub report: String,
    /// Fingerprint of the report's query, lake output and dimension files.
    pub definition: String,
    /// Day → fingerprint of the input it was computed from.
    pub days: BTreeMap<String, String>,
    /// When the last run that changed this state finished.
    pub updated: DateTime<Utc>,
}

#[derive(Debug, thiserror::Error)]
pub enum StateError {
    #[error("cannot read the run state {path}: {source}")]
    Read {
        path: String,
        #[source]
        source: object_store::Error,
    },
    #[error("cannot write the run state {path}: {source}")]
    Write {
        path: String,
        #[source]
        source: object_store::Error,
    },
}

pub fn state_path(lake: &Lake, pipeline: &str, report: &str) -> Path {
    lake.state_dir(TOOL, pipeline)
        .join(format!("{report}.json"))
}

/// The report's state; `None` when there is none yet, or when it does not read back (a
/// warning, and every day is due again).
pub async fn load(
    lake: &Lake,
    pipeline: &str,
    report: &str,
) -> Result<Option<ReportState>, StateError> {
    let path = state_path(lake, pipeline, report);
    let body = match lake.store.get(&path).await {
        Ok(g) => g.bytes().await,
        Err(e) => Err(e),
    };
    let body = match body {
        Ok(b) => b,
        Err(object_store::Error::NotFound { .. }) => return Ok(None),
        Err(source) => {
            return Err(StateError::Read {
                path: lake.display(&path),
                source,
            });
        }
    };
    match serde_json::from_slice::<ReportState>(&body) {
        Ok(s) if s.version == VERSION => Ok(Some(s)),
        Ok(_) | Err(_) => {
            tracing::warn!(
                state = %lake.display(&path),
                "the run state does not read back; every day is due"
            );
            Ok(None)
        }
    }
}

/// Writes the state (one atomic `PUT`).
pub async fn save(lake: &Lake, state: &ReportState) -> Result<(), StateError> {
    let path = state_path(lake, &state.pipeline, &state.report);
    let body = serde_json::to_vec_pretty(state).expect("state serializes");
    lake.store
        .put(&path, PutPayload::from(body))
        .await
        .map(|_| ())
        .map_err(|source| StateError::Write {
            path: lake.display(&path),
            source,
        })
}

impl ReportState {
    pub fn new(pipeline: &str, report: &str, definition: String) -> ReportState {
        ReportState {
            version: VERSION,
            pipeline: pipeline.into(),
            report: report.into(),
            definition,
            days: BTreeMap::new(),
            updated: Utc::now(),
        }
    }
}
