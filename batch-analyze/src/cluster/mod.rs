//! Reports on an Apache DataFusion Ballista cluster (`run --cluster df://HOST:PORT`).
//!
//! Only the execution of a report's query moves: the run still locks, takes its snapshot of
//! the lake, plans the report, writes outputs and state on this machine. The query's logical
//! plan goes to a Ballista scheduler, which cuts it into stages for its executors; the rows
//! come back here and are written exactly as the embedded engine's. The sessions of both
//! engines are made here ([`embedded_session`], [`session_on`]).
//!
//! Why our own scheduler and executor processes (`batch-analyze scheduler`,
//! `batch-analyze executor`) and not the stock Ballista binaries: a lake table is a
//! [`SnapshotTable`](crate::tables::SnapshotTable) (the exact files the commit markers
//! name), which the stock scheduler cannot decode, and the sketch functions
//! ([`crate::sketch`]) must exist on every process that plans or runs a query. Both
//! processes are the Ballista crates with our codec ([`codec`]), our functions and an
//! object-store registry that opens `s3://` lakes with the query's `lake.s3` settings
//! ([`stores`]). Dimension tables travel inside the plan (they are read once, here), so
//! executors need nothing but the lake.
//!
//! Where Ballista's answers could differ from the embedded engine's (it has open
//! wrong-result bugs around window functions and joins), the tests compare both engines'
//! outputs byte for byte on the reference pipelines.

#[cfg(feature = "cluster")]
mod ballista;
#[cfg(feature = "cluster")]
pub(crate) mod codec;
#[cfg(feature = "cluster")]
pub(crate) mod process;
#[cfg(feature = "cluster")]
pub(crate) mod stores;

#[cfg(feature = "cluster")]
pub use ballista::config;

use std::time::Duration;

use datafusion::prelude::{SessionConfig, SessionContext};
use shared::config::{QueryEngine, S3Config};

#[cfg(feature = "cluster")]
use crate::error::first_line;

/// The options every report session has, embedded or on a cluster: no information schema
/// (reports read only the lake's tables).
fn our_options(config: SessionConfig) -> SessionConfig {
    config.with_information_schema(false)
}

/// A session for reports in this process: the lake's sketch functions ([`crate::sketch`])
/// are registered in it.
pub fn embedded_session() -> SessionContext {
    let ctx = SessionContext::new_with_config(our_options(SessionConfig::new()));
    crate::sketch::register(&ctx);
    ctx
}

/// A session whose queries run on `engine`: embedded, or on a cluster; the error is one line
/// that names the engine.
pub async fn session_on(engine: &QueryEngine, s3: &S3Config) -> Result<SessionContext, String> {
    if engine.is_embedded() {
        return Ok(embedded_session());
    }
    #[cfg(feature = "cluster")]
    return ballista::session(engine, s3)
        .await
        .map_err(|e| format!("{engine}: {}", first_line(&e.to_string())));
    #[cfg(not(feature = "cluster"))]
    {
        let _ = s3;
        Err(format!("{engine}: {NO_CLUSTER}"))
    }
}

/// Why a binary built without the `cluster` feature runs no query on a cluster.
#[cfg(not(feature = "cluster"))]
pub const NO_CLUSTER: &str = "this batch-analyze was built without the `cluster` feature (Ballista); build it with the default features to run reports on a cluster";

/// Fails with one line when the scheduler cannot be reached (it is otherwise found out at
/// the first query, deep in a gRPC error).
pub async fn check_reachable(engine: &QueryEngine) -> Result<(), String> {
    let QueryEngine::Cluster { host, port } = engine else {
        return Ok(());
    };
    let address = format!("{host}:{port}");
    let connect = tokio::net::TcpStream::connect(&address);
    match tokio::time::timeout(Duration::from_secs(10), connect).await {
        Ok(Ok(_)) => Ok(()),
        Ok(Err(e)) => Err(format!("{engine}: cannot reach the scheduler: {e}")),
        Err(_) => Err(format!(
            "{engine}: cannot reach the scheduler: no answer in 10s"
        )),
    }
}
