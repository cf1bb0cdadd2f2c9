//! The Ballista side of [`super`]: sessions whose queries run on a cluster, and the
//! standalone scheduler and executor started inside this process.

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
use tokio::sync::OnceCell;

use super::stores::{self, LakeS3Options};
use super::{codec, our_options};

/// The session configuration every cluster process shares: Ballista's defaults, our
/// options (as the embedded session's), our codec, and room for a query's S3 settings.
pub fn config() -> SessionConfig {
    our_options(SessionConfig::new_with_ballista())
        .with_ballista_logical_extension_codec(Arc::new(codec::LakeCodec::default()))
        .with_option_extension(LakeS3Options::default())
}

/// A session whose queries run on `engine` (which must not be embedded), with the sketch
/// functions registered; its queries carry the pipeline's `lake.s3` settings to executors.
pub(super) async fn session(
    engine: &QueryEngine,
    s3: &S3Config,
) -> Result<SessionContext, DataFusionError> {
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
