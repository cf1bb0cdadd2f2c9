//! One run per pipeline and report at a time.
//!
//! A run locks every report it computes, in name order (so two runs never wait for each
//! other in a circle), before it reads anything, and keeps the locks until its state is
//! written. The lock lives next to the report's state: `_state/batch-analyze/<pipeline>/
//! <report>.lock`; what a lock is on local disk and on object storage is
//! [`shared::lock`]'s business.

use std::time::Duration;

use object_store::path::Path;
use shared::lake::Lake;
pub use shared::lock::Locks;
use shared::lock::{self, LockTarget};

#[derive(Debug, thiserror::Error)]
pub(crate) enum ReportLockError {
    #[error(
        "report `{report}` is locked by {owner} ({path}); another run is computing it. Try again later, or pass --wait 10m to wait for it"
    )]
    Busy {
        report: String,
        owner: String,
        path: String,
    },
    #[error("cannot lock report `{report}` ({path}): {reason}")]
    Failed {
        report: String,
        path: String,
        reason: String,
    },
}

/// The lock object of a report.
pub fn lock_path(lake: &Lake, pipeline: &str, report: &str) -> Path {
    lake.state_dir(crate::state::TOOL, pipeline)
        .join(format!("{report}.lock"))
}

/// Locks `reports` (in name order), waiting up to `wait` for each.
pub async fn acquire(
    lake: &Lake,
    pipeline: &str,
    reports: &[String],
    wait: Option<Duration>,
) -> Result<Locks, ReportLockError> {
    let mut names: Vec<&String> = reports.iter().collect();
    names.sort();
    names.dedup();
    let targets = names
        .into_iter()
        .map(|r| LockTarget {
            name: r.clone(),
            path: lock_path(lake, pipeline, r),
        })
        .collect();
    lock::acquire(lake, targets, wait)
        .await
        .map_err(|e| match e {
            lock::LockError::Busy { name, owner, path } => ReportLockError::Busy {
                report: name,
                owner,
                path,
            },
            lock::LockError::Failed { name, path, reason }
            | lock::LockError::Lost { name, path, reason } => ReportLockError::Failed {
                report: name,
                path,
                reason,
            },
        })
}
