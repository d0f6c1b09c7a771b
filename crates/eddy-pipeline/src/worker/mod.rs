//! The pipeline worker: watches the pipeline definitions, runs a group
//! member for each running pipeline (see `runner.rs`), and reports what it
//! counts. Every broker runs one; `eddy worker` runs more. A worker uses
//! only the client API, so an embedded one and a standalone one behave
//! the same.

mod position;
mod runner;
mod sandbox;
mod state;
mod stats;
mod task;

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::Duration;

use eddy_client::{Client, Pipelines, Processors};
use eddy_meta::PipelineId;
use eddy_proto::v1 as pb;
use eddy_wasm::{InstanceConfig, Processor, Runtime};
use tokio::sync::watch;
use tokio::task::JoinHandle;

pub use self::position::{CommitMetadata, Sequences};
use self::runner::Runner;
pub use self::runner::group_id;
use self::sandbox::Sandbox;
use self::stats::Stats;
use crate::error::{Error, Result};
use crate::manifest::PipelineSpec;

/// A pipeline as a worker runs it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Definition {
    pub name: String,
    pub id: PipelineId,
    pub revision: u64,
    pub processor: String,
    pub processor_version: u32,
    pub spec: PipelineSpec,
}

impl Definition {
    fn from_pb(d: &pb::PipelineDefinition) -> Result<Definition> {
        let spec: PipelineSpec = serde_json::from_str(&d.spec_json).map_err(|e| {
            Error::Internal(format!(
                "pipeline {:?} has a spec this worker cannot read: {e}",
                d.name
            ))
        })?;
        let id = u128::from_str_radix(&d.id, 16)
            .map(PipelineId)
            .map_err(|_| {
                Error::Internal(format!("pipeline {:?} has a bad id {:?}", d.name, d.id))
            })?;
        Ok(Definition {
            name: d.name.clone(),
            id,
            revision: d.revision,
            processor: d.processor.clone(),
            processor_version: d.processor_version,
            spec,
        })
    }
}

/// The sandbox settings of a worker's runtime: the most any manifest may
/// ask of an instance (each instance gets its pipeline's own, lower,
/// limits) and components as large as the registry takes.
pub fn sandbox_config(cache_dir: Option<std::path::PathBuf>) -> eddy_wasm::Config {
    eddy_wasm::Config {
        memory_bytes_max: (crate::manifest::MEMORY_MIB_MAX as usize) << 20,
        batch_time_ms_max: u64::from(crate::manifest::CPU_MS_PER_BATCH_MAX),
        component_bytes_max: crate::registry::RegistryConfig::default().processor_bytes_max,
        cache_dir,
        ..eddy_wasm::Config::default()
    }
}

/// Worker settings.
#[derive(Debug, Clone)]
pub struct WorkerConfig {
    /// Shown as the owner of the partitions this worker runs.
    pub id: String,
    /// How often the worker reports its counters.
    pub report_interval: Duration,
    /// A worker silent this long leaves the pipelines' groups, and its
    /// partitions move to the other workers.
    pub session_timeout_ms: u32,
    /// Where tasks keep keyed state that outgrew its memory budget.
    pub state_dir: std::path::PathBuf,
}

impl WorkerConfig {
    pub fn new(id: impl Into<String>) -> WorkerConfig {
        WorkerConfig {
            id: id.into(),
            report_interval: Duration::from_secs(1),
            session_timeout_ms: 10_000,
            state_dir: std::env::temp_dir().join("eddy-worker-state"),
        }
    }
}

/// A pipeline this worker runs.
struct Running {
    def: Arc<Definition>,
    stop: watch::Sender<bool>,
    join: JoinHandle<()>,
    stats: Arc<Stats>,
}

/// Runs pipelines; see the module docs.
#[derive(Debug)]
pub struct Worker {
    client: Client,
    runtime: Runtime,
    config: WorkerConfig,
    /// Compiled processors by (name, version).
    processors: tokio::sync::Mutex<HashMap<(String, u32), Processor>>,
    /// Counters per pipeline incarnation, kept across its revisions.
    stats: parking_lot::Mutex<HashMap<(String, PipelineId), Arc<Stats>>>,
}

/// Waits between attempts to reach the brokers.
const RECONNECT_WAIT: Duration = Duration::from_secs(1);

impl Worker {
    pub fn new(client: Client, runtime: Runtime, config: WorkerConfig) -> Arc<Worker> {
        Arc::new(Worker {
            client,
            runtime,
            config,
            processors: tokio::sync::Mutex::new(HashMap::new()),
            stats: parking_lot::Mutex::new(HashMap::new()),
        })
    }

    /// Runs until `stop` turns true, then stops every pipeline's tasks
    /// (each commits its position) and returns.
    pub async fn run(self: Arc<Self>, mut stop: watch::Receiver<bool>) {
        // What an earlier run left there is a cache of changelogs that the
        // tasks rebuild: removed, not trusted.
        match std::fs::remove_dir_all(&self.config.state_dir) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                tracing::warn!(dir = %self.config.state_dir.display(), error = %e, "cannot clear the state directory");
            }
            _ => {}
        }
        let pipelines = Pipelines::new(self.client.clone());
        let mut running: BTreeMap<String, Running> = BTreeMap::new();
        let mut report = tokio::time::interval(self.config.report_interval);
        'connect: while !*stop.borrow() {
            let mut stream = match pipelines.watch().await {
                Ok(s) => s,
                Err(e) => {
                    tracing::debug!(error = %e, "cannot watch pipelines; retrying");
                    tokio::select! {
                        () = tokio::time::sleep(RECONNECT_WAIT) => continue 'connect,
                        _ = stop.changed() => break 'connect,
                    }
                }
            };
            loop {
                tokio::select! {
                    message = stream.message() => match message {
                        Ok(Some(set)) => self.reconcile(&set, &mut running).await,
                        Ok(None) | Err(_) => {
                            tokio::time::sleep(RECONNECT_WAIT).await;
                            continue 'connect;
                        }
                    },
                    _ = report.tick() => self.report(&pipelines, &running).await,
                    _ = stop.changed() => break 'connect,
                }
            }
        }
        for (_, r) in std::mem::take(&mut running) {
            stop_running(r).await;
        }
        tracing::info!(worker = %self.config.id, "worker stopped");
    }

    /// Starts, restarts and stops pipelines to match the definitions.
    async fn reconcile(
        self: &Arc<Self>,
        set: &pb::PipelineSet,
        running: &mut BTreeMap<String, Running>,
    ) {
        let mut wanted: BTreeMap<String, Definition> = BTreeMap::new();
        for d in &set.pipelines {
            if d.state != pb::PipelineState::Running as i32 {
                continue;
            }
            match Definition::from_pb(d) {
                Ok(def) => {
                    wanted.insert(def.name.clone(), def);
                }
                Err(e) => tracing::warn!(pipeline = %d.name, error = %e, "not running a pipeline"),
            }
        }
        let stale: Vec<String> = running
            .iter()
            .filter(|(name, r)| wanted.get(*name) != Some(&*r.def))
            .map(|(name, _)| name.clone())
            .collect();
        for name in stale {
            if let Some(r) = running.remove(&name) {
                tracing::info!(pipeline = %name, "stopping pipeline on this worker");
                stop_running(r).await;
            }
        }
        // Counters outlive a revision, not the pipeline.
        let known: std::collections::BTreeSet<(String, PipelineId)> = set
            .pipelines
            .iter()
            .filter_map(|d| Definition::from_pb(d).ok())
            .map(|d| (d.name, d.id))
            .collect();
        self.stats.lock().retain(|k, _| known.contains(k));
        for (name, def) in wanted {
            if running.contains_key(&name) {
                continue;
            }
            tracing::info!(pipeline = %name, revision = def.revision, "starting pipeline on this worker");
            running.insert(name, self.start(Arc::new(def)));
        }
    }

    fn start(self: &Arc<Self>, def: Arc<Definition>) -> Running {
        let (stop, stopped) = watch::channel(false);
        let stats = self
            .stats
            .lock()
            .entry((def.name.clone(), def.id))
            .or_default()
            .clone();
        let join = tokio::spawn(
            self.clone()
                .keep_running(def.clone(), stats.clone(), stopped),
        );
        Running {
            def,
            stop,
            join,
            stats,
        }
    }

    /// Runs one pipeline until stopped, starting it again after failures.
    async fn keep_running(
        self: Arc<Self>,
        def: Arc<Definition>,
        stats: Arc<Stats>,
        mut stop: watch::Receiver<bool>,
    ) {
        let mut wait = Duration::from_millis(500);
        while !*stop.borrow() {
            match self.run_pipeline(&def, &stats, stop.clone()).await {
                Ok(()) => return,
                Err(e) => {
                    tracing::warn!(pipeline = %def.name, error = %e, "pipeline could not run on this worker; retrying");
                    stats.set_last_error(pb::PipelineError {
                        kind: "worker".into(),
                        message: e.to_string(),
                        at_ms: eddy_log::Clock::now_ms(&eddy_log::SystemClock),
                        ..Default::default()
                    });
                }
            }
            tokio::select! {
                () = tokio::time::sleep(wait) => {}
                _ = stop.changed() => {}
            }
            wait = (wait * 2).min(Duration::from_secs(10));
        }
    }

    async fn run_pipeline(
        &self,
        def: &Arc<Definition>,
        stats: &Arc<Stats>,
        stop: watch::Receiver<bool>,
    ) -> Result<()> {
        let processor = self
            .processor(&def.processor, def.processor_version)
            .await?;
        let spec = &def.spec;
        let limits = InstanceConfig {
            memory_bytes_max: Some((spec.limits.memory_mib as usize) << 20),
            batch_time_ms_max: Some(u64::from(spec.limits.cpu_ms_per_batch)),
            // The pipeline's id: stable across workers, restarts and
            // re-applies, so a replayed batch draws the same numbers.
            random_seed: def.id.0 as u64 ^ (def.id.0 >> 64) as u64,
        };
        let params = spec
            .processor
            .params
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        let outputs = spec.outputs.iter().map(|o| o.topic.clone()).collect();
        let sandbox = Arc::new(Sandbox::new(
            processor,
            params,
            limits,
            outputs,
            spec.parallelism as usize,
        ));
        if let Err(e) = sandbox.check_init().await {
            // Bad parameters fail every record alike: stop the pipeline
            // with the processor's message rather than skip everything.
            let error = pb::PipelineError {
                kind: "init".into(),
                message: e.to_string(),
                at_ms: eddy_log::Clock::now_ms(&eddy_log::SystemClock),
                ..Default::default()
            };
            stats.set_last_error(error.clone());
            Pipelines::new(self.client.clone())
                .fail(&def.name, &def.id.to_string(), error)
                .await?;
            return Ok(());
        }
        let runner = Runner {
            def: def.clone(),
            client: self.client.clone(),
            worker_id: self.config.id.clone(),
            session_timeout_ms: self.config.session_timeout_ms,
            sandbox,
            stats: stats.clone(),
            state_dir: self.config.state_dir.clone(),
        };
        runner.run(stop).await
    }

    /// The compiled processor, downloading and compiling it on first use
    /// (the runtime's cache makes a compile after a restart a load).
    async fn processor(&self, name: &str, version: u32) -> Result<Processor> {
        let mut cache = self.processors.lock().await;
        if let Some(p) = cache.get(&(name.to_string(), version)) {
            return Ok(p.clone());
        }
        let (_, bytes) = Processors::new(self.client.clone())
            .download(name, version)
            .await?;
        let runtime = self.runtime.clone();
        let processor = tokio::task::spawn_blocking(move || runtime.compile(&bytes))
            .await
            .map_err(|e| Error::Internal(format!("compiling did not finish: {e}")))?
            .map_err(|e| Error::InvalidProcessor(format!("processor {name}@{version}: {e}")))?;
        cache.insert((name.to_string(), version), processor.clone());
        Ok(processor)
    }

    async fn report(&self, pipelines: &Pipelines, running: &BTreeMap<String, Running>) {
        let report = pb::WorkerReport {
            worker_id: self.config.id.clone(),
            pipelines: running
                .values()
                .map(|r| pb::WorkerPipelineReport {
                    name: r.def.name.clone(),
                    id: r.def.id.to_string(),
                    counters: Some(r.stats.counters()),
                    last_error: r.stats.last_error(),
                })
                .collect(),
        };
        if let Err(e) = pipelines.report(report).await {
            tracing::debug!(error = %e, "status report failed");
        }
    }
}

/// Stops a pipeline's tasks (each commits) and waits for them.
async fn stop_running(r: Running) {
    let _ = r.stop.send(true);
    if let Err(e) = r.join.await {
        tracing::warn!(pipeline = %r.def.name, error = %e, "pipeline runner panicked");
    }
}
