//! A broker with everything pipelines need: the registry and pipeline
//! services, and its own worker. `eddy serve`, `eddy dev` and `eddy demo`
//! start one of these.

use std::sync::{Arc, OnceLock};
use std::time::Duration;

use eddy_broker::{BrokerConfig, BrokerError, ServerHandle};
use eddy_client::{Client, ClientConfig};
use eddy_wasm::Runtime;
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::error::{Error, Result};
use crate::registry::RegistryConfig;
use crate::worker::{Worker, WorkerConfig};

/// Directory under the data directory where compiled processors are kept.
pub const COMPILE_CACHE_DIR: &str = "processor-cache";
/// Where the broker's worker keeps keyed state past its memory budget,
/// under the data directory (cleared as the worker starts).
pub const STATE_DIR: &str = "pipeline-state";
/// How long a stopping node waits for its worker's tasks to commit.
const WORKER_STOP_TIMEOUT: Duration = Duration::from_secs(30);

/// Everything a node needs to start.
#[derive(Debug, Clone)]
pub struct NodeConfig {
    pub broker: BrokerConfig,
    /// The processor sandbox's limits (the compile cache is
    /// `compile_cache_dir`, whatever `cache_dir` says).
    pub wasm: eddy_wasm::Config,
    /// Where compiled processors are kept; `None`: in the data directory
    /// ([`COMPILE_CACHE_DIR`]). Brokers may share one.
    pub compile_cache_dir: Option<std::path::PathBuf>,
    pub registry: RegistryConfig,
    /// Whether the broker runs its own pipeline worker.
    pub worker: bool,
    /// How long that worker may be silent before its partitions move.
    pub worker_session_timeout_ms: u32,
}

impl NodeConfig {
    pub fn new(broker: BrokerConfig) -> NodeConfig {
        let registry = RegistryConfig::default();
        NodeConfig {
            broker,
            wasm: crate::worker::sandbox_config(None),
            compile_cache_dir: None,
            registry,
            worker: true,
            worker_session_timeout_ms: WorkerConfig::new(String::new()).session_timeout_ms,
        }
    }
}

/// A running node.
#[derive(Debug)]
pub struct Node {
    pub server: ServerHandle,
    worker: Option<(watch::Sender<bool>, JoinHandle<()>)>,
}

impl Node {
    /// Starts the broker (recovering its data), then its worker.
    pub async fn start(config: NodeConfig) -> Result<Node> {
        let cell: Arc<OnceLock<Runtime>> = Arc::new(OnceLock::new());
        let wasm = config.wasm.clone();
        let compile_cache_dir = config.compile_cache_dir.clone();
        let registry = config.registry.clone();
        let runtime_cell = cell.clone();
        let factory: eddy_broker::ExtensionFactory = Box::new(move |broker| {
            // Made once the data directory is claimed: the cache lives in it.
            let cache_dir = compile_cache_dir
                .clone()
                .unwrap_or_else(|| broker.config.data_dir.join(COMPILE_CACHE_DIR));
            let runtime = Runtime::new(eddy_wasm::Config {
                cache_dir: Some(cache_dir),
                ..wasm.clone()
            })
            .map_err(|e| BrokerError::InvalidRequest(format!("processor runtime: {e}")))?;
            let _ = runtime_cell.set(runtime.clone());
            crate::extension(runtime, registry)(broker)
        });
        let server = eddy_broker::start_with(config.broker.clone(), Some(factory)).await?;
        let runtime = cell
            .get()
            .cloned()
            .ok_or_else(|| Error::Internal("the processor runtime was not made".into()))?;
        let worker = if config.worker {
            Some(start_worker(&server, runtime, config.worker_session_timeout_ms).await?)
        } else {
            None
        };
        Ok(Node { server, worker })
    }

    /// Stops the worker (its tasks commit), then the broker.
    pub async fn stop(self) -> Result<()> {
        if let Some((stop, join)) = self.worker {
            let _ = stop.send(true);
            if tokio::time::timeout(WORKER_STOP_TIMEOUT, join)
                .await
                .is_err()
            {
                tracing::warn!("the worker did not stop in time");
            }
        }
        self.server.stop().await?;
        Ok(())
    }
}

async fn start_worker(
    server: &ServerHandle,
    runtime: Runtime,
    session_timeout_ms: u32,
) -> Result<(watch::Sender<bool>, JoinHandle<()>)> {
    let mut addr = server.local_addr;
    if addr.ip().is_unspecified() {
        addr.set_ip(std::net::Ipv4Addr::LOCALHOST.into());
    }
    let address = addr.to_string();
    let client = connect_internal(&server.broker, address).await?;
    let id = format!("broker-{}", server.broker.config.node_id);
    let config = WorkerConfig {
        session_timeout_ms,
        state_dir: server.broker.config.data_dir.join(STATE_DIR),
        ..WorkerConfig::new(id)
    };
    let worker = Worker::new(client, runtime, config);
    let (stop, stopped) = watch::channel(false);
    let join = tokio::spawn(worker.run(stopped));
    Ok((stop, join))
}

/// A client this broker runs (its worker, its pipeline service asking
/// another broker), connecting with the broker's own TLS settings and
/// credentials.
pub(crate) async fn connect_internal(
    broker: &eddy_broker::Broker,
    address: String,
) -> Result<Client> {
    let config = ClientConfig {
        tls: broker.links.tls().cloned(),
        credentials: broker.links.credentials().clone(),
        ..ClientConfig::new(address)
    };
    Ok(Client::connect(config).await?)
}
