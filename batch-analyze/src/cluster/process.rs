//! `batch-analyze scheduler` and `batch-analyze executor`: a Ballista cluster that knows
//! our tables and functions.
//!
//! Both are Ballista's own processes, configured: the scheduler decodes plans with
//! [`LakeCodec`] and plans them in a session with the sketch functions; executors run tasks
//! with those functions and open the lake's object store by its URL ([`LakeStores`]:
//! `file://` for a directory every executor sees, `s3://bucket` with the query's `lake.s3`
//! settings over the `AWS_*` variables). The scheduler pushes tasks to executors (push-staged
//! scheduling): an executor listens on its `--bind` (Arrow Flight, where other executors and
//! the client fetch its results) and on a free port for tasks, which it tells the scheduler
//! when it registers.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use ballista_core::config::TaskSchedulingPolicy;
use ballista_core::registry::BallistaFunctionRegistry;
use ballista_core::utils::default_session_builder;
use ballista_executor::executor_process::{ExecutorProcessConfig, start_executor_process};
use ballista_scheduler::cluster::BallistaCluster;
use ballista_scheduler::config::SchedulerConfig;
use ballista_scheduler::scheduler_process::start_server;
use datafusion::error::Result;
use datafusion::execution::runtime_env::RuntimeEnvBuilder;
use datafusion::prelude::SessionConfig;

use super::codec::LakeCodec;
use super::stores::LakeStores;
use crate::sketch;

/// Tasks are pushed to executors: Ballista's default, and the one whose recovery from a
/// lost executor works (under pull scheduling a job can hang after one dies).
const POLICY: TaskSchedulingPolicy = TaskSchedulingPolicy::PushStaged;

/// A free port on `ip` for the executor's task service (the scheduler learns it when the
/// executor registers).
fn ephemeral_port(ip: std::net::IpAddr) -> Result<u16, String> {
    std::net::TcpListener::bind((ip, 0))
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .map_err(|e| format!("no free port on {ip}: {e}"))
}

/// How a scheduler runs.
#[derive(Debug, Clone)]
pub struct SchedulerOptions {
    pub bind: SocketAddr,
    /// An executor silent this long is dead: its tasks run again elsewhere.
    pub executor_timeout: Duration,
}

/// How an executor runs.
#[derive(Debug, Clone)]
pub struct ExecutorOptions {
    /// The scheduler, `host:port`.
    pub scheduler: (String, u16),
    /// Where it listens (Arrow Flight).
    pub bind: SocketAddr,
    /// The address others reach it at (default: the bind host).
    pub external_host: Option<String>,
    /// Tasks at once (default: the machine's cores).
    pub slots: usize,
    /// Shuffle files (default: a temporary directory).
    pub work_dir: Option<String>,
}

/// Runs a scheduler until it is stopped.
pub async fn run_scheduler(opts: &SchedulerOptions) -> Result<(), String> {
    let timeout = opts.executor_timeout.as_secs().max(2);
    let config = SchedulerConfig {
        bind_host: opts.bind.ip().to_string(),
        bind_port: opts.bind.port(),
        external_host: opts.bind.ip().to_string(),
        scheduling_policy: POLICY,
        executor_timeout_seconds: timeout,
        expire_dead_executor_interval_seconds: (timeout / 4).max(1),
        no_executors_grace_period_seconds: timeout,
        override_logical_codec: Some(Arc::new(LakeCodec::default())),
        override_session_builder: Some(Arc::new(|config| {
            let mut state = default_session_builder(config)?;
            sketch::register_in(&mut state)?;
            Ok(state)
        })),
        override_config_producer: Some(Arc::new(super::config)),
        ..SchedulerConfig::default()
    };
    let cluster = BallistaCluster::new_from_config(&config)
        .await
        .map_err(|e| e.to_string())?;
    start_server(cluster, opts.bind, Arc::new(config))
        .await
        .map_err(|e| format!("scheduler on {}: {e}", opts.bind))
}

/// Runs an executor until it is stopped (or its scheduler goes away).
pub async fn run_executor(opts: &ExecutorOptions) -> Result<(), String> {
    let mut registry = BallistaFunctionRegistry::default();
    for f in sketch::udafs() {
        registry
            .aggregate_functions
            .insert(f.name().to_string(), Arc::new(f));
    }
    let mut config = ExecutorProcessConfig {
        bind_host: opts.bind.ip().to_string(),
        external_host: opts.external_host.clone(),
        port: opts.bind.port(),
        scheduler_host: opts.scheduler.0.clone(),
        scheduler_port: opts.scheduler.1,
        scheduler_connect_timeout_seconds: 10,
        task_scheduling_policy: POLICY,
        grpc_port: ephemeral_port(opts.bind.ip())?,
        vcores: opts.slots,
        work_dir: opts.work_dir.clone(),
        executor_heartbeat_interval_seconds: 1,
        override_function_registry: Some(Arc::new(registry)),
        override_logical_codec: Some(Arc::new(LakeCodec::default())),
        override_config_producer: Some(Arc::new(super::config)),
        ..ExecutorProcessConfig::default()
    };
    let stores = Arc::new(LakeStores::default());
    let temp = config.work_dir.clone();
    // Each task's runtime opens S3 with the settings its query came with.
    config.override_runtime_producer = Some(Arc::new(move |session: &SessionConfig| {
        let registry = Arc::new(stores.for_query(session));
        let mut builder = RuntimeEnvBuilder::new().with_object_store_registry(registry);
        if let Some(dir) = &temp {
            builder = builder.with_temp_file_path(dir);
        }
        Ok(Arc::new(builder.build()?))
    }));
    start_executor_process(Arc::new(config))
        .await
        .map_err(|e| format!("executor on {}: {e}", opts.bind))
}
