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

pub(crate) mod codec;
pub(crate) mod process;
pub(crate) mod stores;

use std::sync::Arc;
use std::time::Duration;

use ballista::prelude::SessionContextExt;
use ballista_core::extension::SessionConfigExt;
use ballista_core::serde::protobuf::scheduler_grpc_client::SchedulerGrpcClient;
use datafusion::error::DataFusionError;
use datafusion::execution::SessionStateBuilder;
use datafusion::execution::runtime_env::{RuntimeEnv, RuntimeEnvBuilder};
use datafusion::execution::session_state::SessionState;
use datafusion::prelude::{SessionConfig, SessionContext};
use shared::config::{QueryEngine, S3Config};
use stores::LakeS3Options;
use tokio::sync::OnceCell;

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
    session(engine, s3)
        .await
        .map_err(|e| format!("{engine}: {}", first_line(&e.to_string())))
}

/// The session configuration every cluster process shares: Ballista's defaults, our
/// options (as the embedded session's), our codec, and room for a query's S3 settings.
pub fn config() -> SessionConfig {
    our_options(SessionConfig::new_with_ballista())
        .with_ballista_logical_extension_codec(Arc::new(codec::LakeCodec::default()))
        .with_option_extension(LakeS3Options::default())
}

/// A session whose queries run on `engine` (which must not be embedded), with the sketch
/// functions registered; its queries carry the pipeline's `lake.s3` settings to executors.
async fn session(engine: &QueryEngine, s3: &S3Config) -> Result<SessionContext, DataFusionError> {
    let url = match engine {
        QueryEngine::Embedded => {
            return Err(DataFusionError::Internal(
                "the embedded engine has no cluster session".into(),
            ));
        }
        QueryEngine::Standalone => {
            let port = STANDALONE.get_or_try_init(start_standalone).await?;
            format!("df://localhost:{port}")
        }
        QueryEngine::Cluster { .. } => engine.to_string(),
    };
    let mut state = session_state()?;
    state
        .config_mut()
        .options_mut()
        .extensions
        .insert(LakeS3Options(s3.clone()));
    let ctx = SessionContext::remote_with_state(&url, state).await?;
    // Ballista's upgrade of the state replaces its functions: ours go in again, for planning
    // here (the cluster's processes have their own).
    crate::sketch::register(&ctx);
    Ok(ctx)
}

/// The port of this process's standalone scheduler, started by the first session.
static STANDALONE: OnceCell<u16> = OnceCell::const_new();

/// The runtime of this process's cluster sessions and of its standalone scheduler and
/// executor: one, so the lake store a run registers (with the YAML's `s3:` settings) is the
/// one a standalone executor reads with.
static RUNTIME: std::sync::OnceLock<Arc<RuntimeEnv>> = std::sync::OnceLock::new();

fn runtime() -> Result<Arc<RuntimeEnv>, DataFusionError> {
    if let Some(runtime) = RUNTIME.get() {
        return Ok(runtime.clone());
    }
    let runtime = RuntimeEnvBuilder::new()
        .with_object_store_registry(Arc::new(stores::LakeStores::default()))
        .build_arc()?;
    Ok(RUNTIME.get_or_init(|| runtime).clone())
}

/// A session state for cluster queries: our codec, the process's [`runtime()`], and the
/// functions a standalone scheduler and executor (built from this state) plan and run with.
fn session_state() -> Result<SessionState, DataFusionError> {
    let mut state = SessionStateBuilder::new()
        .with_default_features()
        .with_config(config())
        .with_runtime_env(runtime()?)
        .build();
    crate::sketch::register_in(&mut state)?;
    Ok(state)
}

/// Starts a scheduler and an executor (one slot per core) inside this process.
async fn start_standalone() -> Result<u16, DataFusionError> {
    let state = session_state()?;
    let failed = |e: ballista_core::error::BallistaError| {
        DataFusionError::Execution(format!("the standalone cluster did not start: {e}"))
    };
    let addr = ballista_scheduler::standalone::new_standalone_scheduler_from_state(&state)
        .await
        .map_err(failed)?;
    let url = format!("http://localhost:{}", addr.port());
    let mut attempts = 0;
    let scheduler = loop {
        match SchedulerGrpcClient::connect(url.clone()).await {
            Ok(client) => break client,
            Err(e) if attempts >= 50 => {
                return Err(DataFusionError::Execution(format!(
                    "the standalone scheduler does not answer: {e}"
                )));
            }
            Err(_) => {
                attempts += 1;
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    };
    let slots = std::thread::available_parallelism().map_or(2, |n| n.get());
    ballista_executor::new_standalone_executor_from_state(scheduler, slots, &state)
        .await
        .map_err(failed)?;
    Ok(addr.port())
}

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
