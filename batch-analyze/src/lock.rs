//! One run per pipeline and report at a time.
//!
//! A run locks every report it computes, in name order (so two runs never wait for each
//! other in a circle), before it reads anything, and keeps the locks until its state is
//! written. The lock lives next to the report's state: `_state/batch-analyze/<pipeline>/
//! <report>.lock`.
//!
//! - **Local lake**: an OS file lock (`flock`) on that file. The kernel drops it when the
//!   process ends, `kill -9` included, so a crashed run never blocks the next one. The file
//!   holds the owner (host, pid, start time) for the message a waiting run prints.
//! - **Object storage**: the lock is an object created with a conditional `PUT`
//!   (`If-None-Match: *`), holding the owner and an expiry. The owner renews it every
//!   [`RENEW_EVERY`]; a run that finds an expired lock (its owner crashed) takes it over with a
//!   conditional `PUT` on the expired version (`If-Match`), so of two runs taking over at
//!   once, only one wins.

use std::path::PathBuf;
use std::time::Duration;

use chrono::{DateTime, Utc};
use object_store::path::Path;
use object_store::{ObjectStoreExt, PutMode, PutOptions, PutPayload, UpdateVersion};
use shared::lake::Lake;

/// How long an object-storage lock lives without renewal.
pub const LOCK_TTL: Duration = Duration::from_secs(60);
/// How often the owner renews an object-storage lock.
pub const RENEW_EVERY: Duration = Duration::from_secs(20);
/// How often a waiting run tries again.
const RETRY_EVERY: Duration = Duration::from_millis(200);

#[derive(Debug, thiserror::Error)]
pub enum LockError {
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

/// Who holds a lock.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
struct Owner {
    host: String,
    pid: u32,
    started: DateTime<Utc>,
    /// Object storage only: the lock is free after this instant.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    expires: Option<DateTime<Utc>>,
}

impl Owner {
    fn me(started: DateTime<Utc>, expires: Option<DateTime<Utc>>) -> Owner {
        Owner {
            host: hostname(),
            pid: std::process::id(),
            started,
            expires,
        }
    }

    fn describe(body: &[u8]) -> String {
        match serde_json::from_slice::<Owner>(body) {
            Ok(o) => format!(
                "pid {} on {} since {}",
                o.pid,
                o.host,
                o.started.format("%Y-%m-%d %H:%M:%S UTC")
            ),
            Err(_) => "another run".into(),
        }
    }
}

fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_string())
        .ok()
        .filter(|h| !h.is_empty())
        .or_else(|| std::env::var("HOSTNAME").ok())
        .unwrap_or_else(|| "localhost".into())
}

/// The locks a run holds. Dropping them releases them.
pub struct Locks {
    held: Vec<Held>,
}

enum Held {
    /// The open, `flock`ed file: closing it releases the lock.
    Local(#[allow(dead_code)] std::fs::File),
    Remote {
        lake: Lake,
        path: Path,
        renew: tokio::task::JoinHandle<()>,
    },
}

impl Locks {
    /// Releases the locks now (object storage: deletes the lock objects).
    pub async fn release(mut self) {
        for h in self.held.drain(..) {
            if let Held::Remote { lake, path, renew } = h {
                renew.abort();
                let _ = lake.store.delete(&path).await;
            }
        }
    }
}

impl Drop for Locks {
    fn drop(&mut self) {
        for h in &self.held {
            if let Held::Remote { renew, .. } = h {
                renew.abort();
            }
        }
    }
}

/// The lock object of a report.
pub fn lock_path(lake: &Lake, pipeline: &str, report: &str) -> Path {
    lake.state_dir(crate::TOOL, pipeline)
        .join(format!("{report}.lock"))
}

/// Locks `reports` (sorted by name), waiting up to `wait` for each.
pub async fn acquire(
    lake: &Lake,
    pipeline: &str,
    reports: &[String],
    wait: Option<Duration>,
) -> Result<Locks, LockError> {
    let mut names: Vec<&String> = reports.iter().collect();
    names.sort();
    names.dedup();
    let deadline = wait.map(|w| tokio::time::Instant::now() + w);
    let started = Utc::now();
    let mut locks = Locks { held: Vec::new() };
    for report in names {
        let path = lock_path(lake, pipeline, report);
        loop {
            let attempt = if lake.url.scheme() == "file" {
                try_local(&path, started).map(|o| o.map(Held::Local))
            } else {
                try_remote(lake, &path, started).await
            };
            let busy_owner = match attempt {
                Ok(Ok(held)) => {
                    locks.held.push(held);
                    break;
                }
                Ok(Err(owner)) => owner,
                Err(reason) => {
                    return Err(LockError::Failed {
                        report: report.clone(),
                        path: lake.display(&path),
                        reason,
                    });
                }
            };
            if deadline.is_none_or(|d| tokio::time::Instant::now() >= d) {
                locks.release().await;
                return Err(LockError::Busy {
                    report: report.clone(),
                    owner: busy_owner,
                    path: lake.display(&path),
                });
            }
            tracing::debug!(report = %report, owner = %busy_owner, "waiting for the lock");
            tokio::time::sleep(RETRY_EVERY).await;
        }
    }
    Ok(locks)
}

/// `Ok(Ok(file))` when locked, `Ok(Err(owner))` when someone else holds it.
fn try_local(path: &Path, started: DateTime<Utc>) -> Result<Result<std::fs::File, String>, String> {
    use std::io::{Read, Seek, Write};
    let file_path = PathBuf::from(format!("/{path}"));
    if let Some(dir) = file_path.parent() {
        std::fs::create_dir_all(dir).map_err(|e| e.to_string())?;
    }
    let mut f = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(&file_path)
        .map_err(|e| e.to_string())?;
    match f.try_lock() {
        Ok(()) => {
            let body = serde_json::to_vec(&Owner::me(started, None)).expect("serializes");
            f.set_len(0)
                .and_then(|_| f.rewind())
                .and_then(|_| f.write_all(&body))
                .map_err(|e| e.to_string())?;
            Ok(Ok(f))
        }
        Err(std::fs::TryLockError::WouldBlock) => {
            let mut body = Vec::new();
            let _ = f.read_to_end(&mut body);
            Ok(Err(Owner::describe(&body)))
        }
        Err(std::fs::TryLockError::Error(e)) => Err(e.to_string()),
    }
}

fn lock_body(started: DateTime<Utc>) -> PutPayload {
    let expires = Utc::now() + LOCK_TTL;
    PutPayload::from(serde_json::to_vec(&Owner::me(started, Some(expires))).expect("serializes"))
}

fn version(r: &object_store::PutResult) -> UpdateVersion {
    UpdateVersion {
        e_tag: r.e_tag.clone(),
        version: r.version.clone(),
    }
}

async fn try_remote(
    lake: &Lake,
    path: &Path,
    started: DateTime<Utc>,
) -> Result<Result<Held, String>, String> {
    let create = PutOptions::from(PutMode::Create);
    let put = match lake.store.put_opts(path, lock_body(started), create).await {
        Ok(r) => Some(r),
        Err(object_store::Error::AlreadyExists { .. }) => None,
        Err(e) => return Err(e.to_string()),
    };
    let put = match put {
        Some(r) => r,
        None => {
            // Held: take it over if it expired.
            let got = match lake.store.get(path).await {
                Ok(g) => g,
                Err(object_store::Error::NotFound { .. }) => return Ok(Err("another run".into())),
                Err(e) => return Err(e.to_string()),
            };
            let current = UpdateVersion {
                e_tag: got.meta.e_tag.clone(),
                version: got.meta.version.clone(),
            };
            let body = got.bytes().await.map_err(|e| e.to_string())?;
            let owner = Owner::describe(&body);
            let expired = serde_json::from_slice::<Owner>(&body)
                .ok()
                .and_then(|o| o.expires)
                .is_none_or(|e| e < Utc::now());
            if !expired {
                return Ok(Err(owner));
            }
            let update = PutOptions::from(PutMode::Update(current));
            match lake.store.put_opts(path, lock_body(started), update).await {
                Ok(r) => {
                    tracing::warn!(lock = %path, previous = %owner, "took over an expired lock");
                    r
                }
                Err(object_store::Error::Precondition { .. }) => return Ok(Err(owner)),
                Err(e) => return Err(e.to_string()),
            }
        }
    };
    let renew = tokio::spawn(renew(lake.clone(), path.clone(), version(&put), started));
    Ok(Ok(Held::Remote {
        lake: lake.clone(),
        path: path.clone(),
        renew,
    }))
}

/// Pushes the expiry of a held lock forward until aborted.
async fn renew(lake: Lake, path: Path, mut current: UpdateVersion, started: DateTime<Utc>) {
    loop {
        tokio::time::sleep(RENEW_EVERY).await;
        let update = PutOptions::from(PutMode::Update(current.clone()));
        match lake.store.put_opts(&path, lock_body(started), update).await {
            Ok(r) => current = version(&r),
            Err(e) => {
                tracing::error!(lock = %path, error = %e, "cannot renew the lock; another run may take it over");
                return;
            }
        }
    }
}
