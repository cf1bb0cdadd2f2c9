//! One writer per unit of state: locks kept in the lake itself.
//!
//! `batch-analyze` locks each report it computes; `stream-ingest` locks its pipeline's
//! checkpoints. Both use this module, so a lock means the same on every lake:
//!
//! - **Local lake**: an OS file lock (`flock`) on the lock file. The kernel drops it when the
//!   process ends, `kill -9` included, so a crashed holder never blocks the next one. The file
//!   holds the owner (host, pid, start time) for the message a refused process prints.
//! - **Object storage**: the lock is an object created with a conditional `PUT`
//!   (`If-None-Match: *`), holding the owner and an expiry: a lease. The owner renews it every
//!   third of its [`lease_ttl`]; a process that finds an expired lease (its owner crashed)
//!   takes it over with a conditional `PUT` on the expired version (`If-Match`), so of two
//!   processes taking over at once, only one wins. A lease whose holder ran on this machine
//!   and whose process is gone (a `kill -9` and a restart) is taken over at once. A holder whose renewal failed, or that could
//!   not renew for longer than the lease lives, has lost it: [`Locks::check`] says so, and a
//!   writer asks before every publish, so a stale owner stops before it writes.
//!
//! ```text
//! <lock path>   {"host":"…","pid":…,"started":"…","expires":"…"}   (expires: object storage)
//! ```

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use object_store::path::Path;
use object_store::{ObjectStoreExt, PutMode, PutOptions, PutPayload, UpdateVersion};

use crate::lake::Lake;

/// How long an object-storage lease lives without renewal: 60 s, or `LAKE_LOCK_TTL` (tests
/// shorten it to see a takeover without waiting a minute).
pub fn lease_ttl() -> Duration {
    std::env::var("LAKE_LOCK_TTL")
        .ok()
        .and_then(|v| v.parse::<crate::HumanDuration>().ok())
        .map(|d| d.0)
        .unwrap_or(Duration::from_secs(60))
}

/// How often a waiting process tries again.
const RETRY_EVERY: Duration = Duration::from_millis(200);

/// Why a lock was not taken, or is no longer held.
#[derive(Debug, thiserror::Error)]
pub enum LockError {
    #[error("{name} is locked by {owner} ({path})")]
    Busy {
        name: String,
        owner: String,
        path: String,
    },
    #[error("cannot lock {name} ({path}): {reason}")]
    Failed {
        name: String,
        path: String,
        reason: String,
    },
    #[error("lost the lock of {name} ({path}): {reason}")]
    Lost {
        name: String,
        path: String,
        reason: String,
    },
}

/// A lock to take: what it protects (for messages) and where it lives.
#[derive(Debug, Clone)]
pub struct LockTarget {
    pub name: String,
    pub path: Path,
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
    /// The kernel boot and PID namespace of the holder: with the host, where `pid` means
    /// something (two containers may share a host name, never both of these).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    instance: Option<String>,
}

impl Owner {
    fn me(started: DateTime<Utc>, expires: Option<DateTime<Utc>>) -> Owner {
        Owner {
            host: hostname(),
            pid: std::process::id(),
            started,
            expires,
            instance: instance(),
        }
    }

    /// The holder ran in this very machine and PID namespace and its process is gone (a
    /// `kill -9` and a restart): its lease cannot be renewed any more, so it need not be
    /// waited out.
    fn is_dead_here(&self) -> bool {
        self.host == hostname()
            && self.instance.is_some()
            && self.instance == instance()
            && self.pid != std::process::id()
            && !std::path::Path::new(&format!("/proc/{}", self.pid)).exists()
    }

    fn describe(body: &[u8]) -> String {
        match serde_json::from_slice::<Owner>(body) {
            Ok(o) => format!(
                "pid {} on {} since {}",
                o.pid,
                o.host,
                o.started.format("%Y-%m-%d %H:%M:%S UTC")
            ),
            Err(_) => "another process".into(),
        }
    }
}

/// `<boot id>/<pid namespace>`, where the kernel tells them (Linux).
fn instance() -> Option<String> {
    let boot = std::fs::read_to_string("/proc/sys/kernel/random/boot_id").ok()?;
    let ns = std::fs::read_link("/proc/self/ns/pid").ok()?;
    Some(format!("{}/{}", boot.trim(), ns.display()))
}

fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_string())
        .ok()
        .filter(|h| !h.is_empty())
        .or_else(|| std::env::var("HOSTNAME").ok())
        .unwrap_or_else(|| "localhost".into())
}

/// The locks a process holds. Dropping them releases the local ones (and stops renewing the
/// remote ones, which then expire).
pub struct Locks {
    held: Vec<Held>,
}

struct Held {
    target: LockTarget,
    kind: HeldKind,
}

enum HeldKind {
    /// The open, `flock`ed file: closing it releases the lock.
    Local(#[allow(dead_code)] std::fs::File),
    Remote {
        lake: Lake,
        renew: tokio::task::JoinHandle<()>,
        lease: Arc<Lease>,
    },
}

/// What the renewing task tells the holder.
struct Lease {
    ttl: Duration,
    renewed: std::sync::Mutex<Instant>,
    failed: AtomicBool,
}

impl Lease {
    /// Why the lease may be someone else's by now, if it may.
    fn lost(&self) -> Option<String> {
        if self.failed.load(Ordering::SeqCst) {
            return Some("its renewal was refused: another process took it over".into());
        }
        // A margin for clock and request delays: stop well before the expiry others see.
        let age = self.renewed.lock().expect("not poisoned").elapsed();
        (age + self.ttl / 6 >= self.ttl).then(|| {
            format!(
                "not renewed for {} (the lease lives {})",
                crate::HumanDuration(age),
                crate::HumanDuration(self.ttl)
            )
        })
    }
}

impl Locks {
    /// Releases the locks now (object storage: deletes the lock objects).
    pub async fn release(mut self) {
        for h in self.held.drain(..) {
            if let HeldKind::Remote { lake, renew, .. } = h.kind {
                renew.abort();
                let _ = lake.store.delete(&h.target.path).await;
            }
        }
    }

    /// Fails when a lock may have passed to another process (object storage: the lease was
    /// not renewed in time, or another process took it over). Ask before every publish.
    pub fn check(&self) -> Result<(), LockError> {
        for h in &self.held {
            if let HeldKind::Remote { lake, lease, .. } = &h.kind
                && let Some(reason) = lease.lost()
            {
                return Err(LockError::Lost {
                    name: h.target.name.clone(),
                    path: lake.display(&h.target.path),
                    reason,
                });
            }
        }
        Ok(())
    }
}

impl Drop for Locks {
    fn drop(&mut self) {
        for h in &self.held {
            if let HeldKind::Remote { renew, .. } = &h.kind {
                renew.abort();
            }
        }
    }
}

/// Takes every lock of `targets` in the order given (sort them, so that two processes never
/// wait for each other in a circle), waiting up to `wait` for each; none waits without it.
pub async fn acquire(
    lake: &Lake,
    targets: Vec<LockTarget>,
    wait: Option<Duration>,
) -> Result<Locks, LockError> {
    let deadline = wait.map(|w| tokio::time::Instant::now() + w);
    let started = Utc::now();
    let ttl = lease_ttl();
    let mut locks = Locks { held: Vec::new() };
    for target in targets {
        loop {
            let attempt = if lake.url.scheme() == "file" {
                try_local(&target.path, started).map(|o| o.map(HeldKind::Local))
            } else {
                try_remote(lake, &target.path, started, ttl).await
            };
            let busy_owner = match attempt {
                Ok(Ok(kind)) => {
                    locks.held.push(Held { target, kind });
                    break;
                }
                Ok(Err(owner)) => owner,
                Err(reason) => {
                    return Err(LockError::Failed {
                        name: target.name,
                        path: lake.display(&target.path),
                        reason,
                    });
                }
            };
            if deadline.is_none_or(|d| tokio::time::Instant::now() >= d) {
                locks.release().await;
                return Err(LockError::Busy {
                    name: target.name,
                    owner: busy_owner,
                    path: lake.display(&target.path),
                });
            }
            tracing::debug!(lock = %target.name, owner = %busy_owner, "waiting for the lock");
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

fn lock_body(started: DateTime<Utc>, ttl: Duration) -> PutPayload {
    let expires = Utc::now() + ttl;
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
    ttl: Duration,
) -> Result<Result<HeldKind, String>, String> {
    let asked = Instant::now();
    let create = PutOptions::from(PutMode::Create);
    let put = match lake
        .store
        .put_opts(path, lock_body(started, ttl), create)
        .await
    {
        Ok(r) => r,
        Err(object_store::Error::AlreadyExists { .. }) => {
            match take_over_expired(lake, path, started, ttl).await? {
                Ok(r) => r,
                Err(owner) => return Ok(Err(owner)),
            }
        }
        Err(e) => return Err(e.to_string()),
    };
    let lease = Arc::new(Lease {
        ttl,
        renewed: std::sync::Mutex::new(asked),
        failed: AtomicBool::new(false),
    });
    let renew = tokio::spawn(renew(
        lake.clone(),
        path.clone(),
        version(&put),
        started,
        lease.clone(),
    ));
    Ok(Ok(HeldKind::Remote {
        lake: lake.clone(),
        renew,
        lease,
    }))
}

/// A lock object exists: take it over if its lease expired, else say who holds it.
async fn take_over_expired(
    lake: &Lake,
    path: &Path,
    started: DateTime<Utc>,
    ttl: Duration,
) -> Result<Result<object_store::PutResult, String>, String> {
    let got = match lake.store.get(path).await {
        Ok(g) => g,
        Err(object_store::Error::NotFound { .. }) => return Ok(Err("another process".into())),
        Err(e) => return Err(e.to_string()),
    };
    let current = UpdateVersion {
        e_tag: got.meta.e_tag.clone(),
        version: got.meta.version.clone(),
    };
    let body = got.bytes().await.map_err(|e| e.to_string())?;
    let owner = Owner::describe(&body);
    let holder = serde_json::from_slice::<Owner>(&body).ok();
    let expired = holder
        .as_ref()
        .and_then(|o| o.expires)
        .is_none_or(|e| e < Utc::now());
    let dead = holder.as_ref().is_some_and(Owner::is_dead_here);
    if !expired && !dead {
        return Ok(Err(owner));
    }
    let update = PutOptions::from(PutMode::Update(current));
    match lake
        .store
        .put_opts(path, lock_body(started, ttl), update)
        .await
    {
        Ok(r) => {
            let why = if expired {
                "expired"
            } else {
                "its holder's process is gone"
            };
            tracing::warn!(lock = %path, previous = %owner, why, "took over a lock");
            Ok(Ok(r))
        }
        Err(object_store::Error::Precondition { .. }) => Ok(Err(owner)),
        Err(e) => Err(e.to_string()),
    }
}

/// Pushes the expiry of a held lease forward until aborted; marks it failed when another
/// process changed the object (took it over).
async fn renew(
    lake: Lake,
    path: Path,
    mut current: UpdateVersion,
    started: DateTime<Utc>,
    lease: Arc<Lease>,
) {
    loop {
        tokio::time::sleep(lease.ttl / 3).await;
        let asked = Instant::now();
        let update = PutOptions::from(PutMode::Update(current.clone()));
        match lake
            .store
            .put_opts(&path, lock_body(started, lease.ttl), update)
            .await
        {
            Ok(r) => {
                current = version(&r);
                *lease.renewed.lock().expect("not poisoned") = asked;
            }
            Err(
                object_store::Error::Precondition { .. } | object_store::Error::NotFound { .. },
            ) => {
                lease.failed.store(true, Ordering::SeqCst);
                tracing::error!(lock = %path, "the lock was taken over by another process");
                return;
            }
            Err(e) => {
                // A transient error: try again; the holder stops publishing once the lease
                // is too old (`Lease::lost`).
                tracing::warn!(lock = %path, error = %e, "cannot renew the lock; trying again");
            }
        }
    }
}
