//! The pipeline control plane on a broker: applying manifests (checked
//! against the metadata before anything changes), pipeline state, and what
//! the workers report.
//!
//! Definitions live in the metadata store, so they survive restarts and
//! will replicate with the controller. Worker reports are kept in memory
//! only, for `describe`: they are counts since each worker started.

mod owner;
mod service;
mod status;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use eddy_broker::{Broker, BrokerError};
use eddy_meta::{Command, MetaState, PipelineFailure, PipelineId, PipelineMeta, PipelineRunState};
use eddy_proto::v1 as pb;
use parking_lot::Mutex;

pub use self::service::PipelinesService;
use crate::error::{Error, Result};
use crate::manifest::{self, Manifest, OnError};
use crate::worker::group_id;

/// How long a worker's report counts after it arrives.
const REPORT_FRESH: Duration = Duration::from_secs(10);
/// Workers whose reports are kept at once.
const WORKERS_MAX: usize = 1024;
/// How long delete waits for the workers to leave the pipeline's group.
const DELETE_GROUP_WAIT: Duration = Duration::from_secs(15);

/// The pipeline control plane of one broker.
#[derive(Debug)]
pub struct Control {
    broker: Arc<Broker>,
    reports: Mutex<BTreeMap<String, (Instant, pb::WorkerReport)>>,
    /// A client of the cluster through this broker, for what another
    /// broker holds: a group whose coordinator is elsewhere, partitions
    /// led elsewhere. Connected on first use.
    client: tokio::sync::OnceCell<eddy_client::Client>,
}

/// What apply did to one pipeline.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    Created,
    Updated,
    Unchanged,
}

/// One pipeline apply created, changed or left alone.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Applied {
    pub name: String,
    pub outcome: Outcome,
    pub processor: String,
    /// The processor version it runs (the latest, if the manifest named none).
    pub processor_version: u32,
    /// Output and dead-letter topics apply created.
    pub created_topics: Vec<String>,
}

impl Control {
    pub fn new(broker: Arc<Broker>) -> Control {
        Control {
            broker,
            reports: Mutex::new(BTreeMap::new()),
            client: tokio::sync::OnceCell::new(),
        }
    }

    /// Creates or updates every pipeline of a manifest; see the service docs.
    /// `owner` is who applies it (`User:NAME`), whose rights it runs with.
    pub async fn apply(&self, text: &str, owner: Option<String>) -> Result<Vec<Applied>> {
        let numbered = manifest::parse_numbered(text)
            .map_err(|errors| Error::Invalid(format!("the manifest was refused:\n{errors}")))?;
        let manifests: Vec<Manifest> = numbered.iter().map(|(_, m)| m.clone()).collect();
        if manifests.is_empty() {
            return Err(Error::Invalid(
                "the manifest holds no pipeline: write one `kind: Pipeline` document (see examples/truck-gps/pipeline.yaml)".into(),
            ));
        }
        // Checked against everything committed so far, wherever it was
        // written: a processor just uploaded through another broker, say.
        self.broker.meta.sync().await?;
        let state = self.broker.meta.state();
        let mut plans = Vec::with_capacity(manifests.len());
        let mut problems = Vec::new();
        for (i, (document, m)) in numbered.iter().enumerate() {
            match plan(&state, text, *document, m, &manifests[..i]) {
                Ok(p) => plans.push(p),
                Err(e) => problems.push(e),
            }
        }
        if !problems.is_empty() {
            return Err(Error::Invalid(format!(
                "the manifest was refused; nothing changed:\n{}",
                problems.join("\n")
            )));
        }
        let mut results = Vec::with_capacity(plans.len());
        for p in plans {
            let created_topics = self.create_topics(&p.manifest).await?;
            let outcome = self.put(&p, owner.clone()).await?;
            tracing::info!(pipeline = %p.manifest.name, ?outcome, "applied pipeline");
            results.push(Applied {
                name: p.manifest.name.clone(),
                outcome,
                processor: p.manifest.spec.processor.name.clone(),
                processor_version: p.version,
                created_topics,
            });
        }
        Ok(results)
    }

    /// Creates the output and dead-letter topics that do not exist yet,
    /// and a stateful pipeline's changelog.
    async fn create_topics(&self, m: &Manifest) -> Result<Vec<String>> {
        let mut created = Vec::new();
        if m.spec.state.enabled {
            created.extend(self.create_changelog(m).await?);
        }
        let dead_letter = m
            .spec
            .on_error
            .dead_letter_topic()
            .map(|t| (t, (None, None)));
        let wanted = m
            .spec
            .outputs
            .iter()
            .map(|o| (o.topic.as_str(), (o.partitions, o.replication_factor)))
            .chain(dead_letter);
        for (topic, (partitions, replication_factor)) in wanted {
            if self.broker.meta.state().topics.contains_key(topic) {
                continue;
            }
            match self
                .broker
                .create_topic(
                    topic,
                    partitions.unwrap_or(0),
                    replication_factor.unwrap_or(0),
                    BTreeMap::new(),
                )
                .await
            {
                Ok(_) => created.push(topic.to_string()),
                Err(BrokerError::TopicExists(_)) => {}
                Err(e) => return Err(e.into()),
            }
        }
        Ok(created)
    }

    /// The changelog of a stateful pipeline's keyed state: compacted (only
    /// the newest value per key is kept), one partition per input
    /// partition, replicated like the broker's topics.
    async fn create_changelog(&self, m: &Manifest) -> Result<Option<String>> {
        let topic = manifest::changelog_topic(&m.name);
        let state = self.broker.meta.state();
        if state.topics.contains_key(&topic) {
            return Ok(None);
        }
        let partitions = m
            .spec
            .input
            .topics
            .first()
            .and_then(|t| state.topics.get(t))
            .map_or(0, |t| t.partitions.len() as u32);
        let configs = manifest::changelog_configs();
        match self
            .broker
            .create_topic(&topic, partitions, 0, configs)
            .await
        {
            Ok(_) => Ok(Some(topic)),
            Err(BrokerError::TopicExists(_)) => Ok(None),
            Err(e) => Err(e.into()),
        }
    }

    async fn put(&self, p: &Plan, owner: Option<String>) -> Result<Outcome> {
        let state = self.broker.meta.state();
        let spec = serde_json::to_string(&p.manifest.spec)
            .map_err(|e| Error::Internal(format!("cannot encode the spec: {e}")))?;
        let old = state.pipelines.get(&p.manifest.name);
        if let Some(old) = old
            && old.spec == spec
            && old.processor_version == p.version
            && old.owner == owner
        {
            return Ok(Outcome::Unchanged);
        }
        let spec_ref = &p.manifest.spec;
        let meta = PipelineMeta {
            name: p.manifest.name.clone(),
            id: old.map_or_else(PipelineId::random, |o| o.id),
            revision: old.map_or(1, |o| o.revision + 1),
            processor: spec_ref.processor.name.clone(),
            processor_version: p.version,
            inputs: spec_ref.input.topics.clone(),
            outputs: spec_ref.outputs.iter().map(|o| o.topic.clone()).collect(),
            dead_letter: spec_ref.on_error.dead_letter_topic().map(str::to_string),
            spec,
            // A paused pipeline stays paused; a failed one runs its new
            // definition.
            state: match old.map(|o| &o.state) {
                Some(PipelineRunState::Paused) => PipelineRunState::Paused,
                _ => PipelineRunState::Running,
            },
            owner,
        };
        self.broker.meta.propose(Command::PutPipeline(meta)).await?;
        Ok(if old.is_some() {
            Outcome::Updated
        } else {
            Outcome::Created
        })
    }

    /// Every pipeline definition, for workers.
    pub fn definitions(&self) -> pb::PipelineSet {
        definitions(&self.broker.meta.state())
    }

    /// Pauses or resumes a pipeline.
    pub async fn set_running(&self, name: &str, running: bool) -> Result<pb::PipelineSummary> {
        let state = self.broker.meta.state();
        let p = state.pipeline(name)?;
        let target = if running {
            if let Some(lost) = self.lost_right(p) {
                return Err(Error::Invalid(format!(
                    "pipeline {name:?} cannot run: {lost}"
                )));
            }
            PipelineRunState::Running
        } else {
            PipelineRunState::Paused
        };
        if p.state != target {
            self.broker
                .meta
                .propose(Command::SetPipelineState {
                    name: name.to_string(),
                    id: p.id,
                    state: target,
                })
                .await?;
            tracing::info!(pipeline = name, running, "pipeline state changed");
        }
        self.summary(name).await
    }

    /// Marks a running pipeline failed at a record (from a worker).
    pub async fn fail(
        &self,
        name: &str,
        id: &str,
        error: pb::PipelineError,
    ) -> Result<pb::PipelineSummary> {
        let state = self.broker.meta.state();
        let p = state.pipeline(name)?;
        let same = u128::from_str_radix(id, 16).is_ok_and(|id| id == p.id.0);
        if same && p.state == PipelineRunState::Running {
            let failure = PipelineFailure {
                topic: error.topic,
                partition: error.partition,
                offset: error.offset,
                kind: error.kind,
                message: error.message,
                at_ms: error.at_ms,
            };
            tracing::warn!(pipeline = name, topic = %failure.topic, partition = failure.partition, offset = failure.offset, error = %failure.message, "pipeline failed");
            self.broker
                .meta
                .propose(Command::SetPipelineState {
                    name: name.to_string(),
                    id: p.id,
                    state: PipelineRunState::Failed(failure),
                })
                .await?;
        }
        self.summary(name).await
    }

    /// Deletes a pipeline, then its consumer group once the workers have
    /// left it.
    pub async fn delete(&self, name: &str) -> Result<()> {
        let stateful = stored_manifest(self.broker.meta.state().pipeline(name)?)?
            .spec
            .state
            .enabled;
        self.broker
            .meta
            .propose(Command::DeletePipeline {
                name: name.to_string(),
            })
            .await?;
        let group = group_id(name);
        let deadline = Instant::now() + DELETE_GROUP_WAIT;
        loop {
            let deleted = match self.broker.delete_group(&group).await {
                Err(BrokerError::NotCoordinator { .. }) => self.delete_remote_group(&group).await,
                local => local.map_err(Error::from),
            };
            match deleted {
                Ok(()) | Err(Error::Broker(BrokerError::UnknownGroup(_))) => break,
                Err(e) if e.code() == pb::ErrorCode::GroupNotEmpty && Instant::now() < deadline => {
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
                Err(e) => {
                    // Its commits name this incarnation, so a pipeline
                    // applied again under the name never resumes from them.
                    tracing::warn!(pipeline = name, error = %e, "could not delete the pipeline's group; it expires with its offsets");
                    break;
                }
            }
        }
        if stateful {
            // The state is this incarnation's alone: a pipeline applied
            // again under the name starts with none.
            let changelog = manifest::changelog_topic(name);
            match self.broker.delete_topic(&changelog).await {
                Ok(_) | Err(BrokerError::UnknownTopic(_)) => {}
                Err(e) => {
                    tracing::warn!(pipeline = name, topic = %changelog, error = %e, "could not delete the pipeline's state changelog; delete it with `eddy topic delete`");
                }
            }
        }
        tracing::info!(pipeline = name, "deleted pipeline");
        Ok(())
    }

    /// Deletes `group` at its coordinator on another broker.
    async fn delete_remote_group(&self, group: &str) -> Result<()> {
        let admin = eddy_client::Admin::new(self.client().await?.clone());
        match admin.delete_group(group).await {
            Err(eddy_client::ClientError::Broker {
                grpc: tonic::Code::NotFound,
                ..
            }) => Err(BrokerError::UnknownGroup(group.to_string()).into()),
            other => other.map_err(Error::from),
        }
    }

    /// The client through this broker, connecting on first use.
    async fn client(&self) -> Result<&eddy_client::Client> {
        let address = self.broker.address.clone();
        let client = self
            .client
            .get_or_try_init(|| crate::node::connect_internal(&self.broker, address))
            .await?;
        Ok(client)
    }

    /// Keeps a worker's report.
    pub fn report(&self, report: pb::WorkerReport) -> Result<()> {
        if report.worker_id.is_empty() || report.worker_id.len() > 256 {
            return Err(Error::Invalid("a worker id has 1 to 256 characters".into()));
        }
        let mut reports = self.reports.lock();
        reports.retain(|_, (at, _)| at.elapsed() < REPORT_FRESH * 6);
        if reports.len() >= WORKERS_MAX && !reports.contains_key(&report.worker_id) {
            return Err(Error::LimitExceeded(format!(
                "this broker already keeps reports of {WORKERS_MAX} workers"
            )));
        }
        reports.insert(report.worker_id.clone(), (Instant::now(), report));
        Ok(())
    }

    /// The stored manifest as canonical YAML.
    pub fn get(&self, name: &str) -> Result<String> {
        let state = self.broker.meta.state();
        let p = state.pipeline(name)?;
        Ok(manifest::to_yaml(&stored_manifest(p)?))
    }
}

/// One manifest checked against the metadata, ready to apply.
struct Plan {
    manifest: Manifest,
    /// The processor version it runs.
    version: u32,
}

/// Checks one document against the metadata: processor and version, input
/// topics, and names unique in the file. Returns the refusals as lines
/// naming the field and its position.
fn plan(
    state: &MetaState,
    text: &str,
    document: usize,
    m: &Manifest,
    earlier: &[Manifest],
) -> std::result::Result<Plan, String> {
    let at = |path: &str, message: String| {
        let position = manifest::locate(text, document, path)
            .map_or(String::new(), |(line, column)| {
                format!(" (line {line}, column {column})")
            });
        format!("document {document}, {path}{position}: {message}")
    };
    if earlier.iter().any(|e| e.name == m.name) {
        return Err(at(
            "metadata.name",
            format!("pipeline {:?} is named twice in this file", m.name),
        ));
    }
    let mut problems = Vec::new();
    let spec = &m.spec;
    let version = match state.processors.get(&spec.processor.name) {
        None => {
            problems.push(at(
                "spec.processor.name",
                format!(
                    "processor {:?} does not exist; upload it with `eddy processor upload {} FILE.wasm`",
                    spec.processor.name, spec.processor.name
                ),
            ));
            0
        }
        Some(p) => match spec.processor.version {
            Some(v) if p.version(v).is_none() => {
                let have: Vec<String> = p.versions.iter().map(|v| v.version.to_string()).collect();
                problems.push(at(
                    "spec.processor.version",
                    format!(
                        "processor {:?} has no version {v}; it has {}",
                        spec.processor.name,
                        have.join(", ")
                    ),
                ));
                0
            }
            Some(v) => v,
            None => p.latest().map_or(0, |l| l.version),
        },
    };
    for (i, topic) in spec.input.topics.iter().enumerate() {
        match state.topics.get(topic) {
            None => problems.push(at(
                &format!("spec.input.topics[{i}]"),
                format!(
                    "topic {topic:?} does not exist; create it with `eddy topic create {topic}`"
                ),
            )),
            Some(t) if t.internal => problems.push(at(
                &format!("spec.input.topics[{i}]"),
                format!("{topic:?} is an internal topic"),
            )),
            Some(_) => {}
        }
    }
    if let Some(old) = state.pipelines.get(&m.name)
        && let Ok(old) = stored_manifest(old)
        && old.spec.state.enabled != spec.state.enabled
    {
        let (was, is) = if spec.state.enabled {
            ("without", "with")
        } else {
            ("with", "without")
        };
        problems.push(at(
            "spec.state",
            format!(
                "pipeline {:?} runs {was} state and cannot be changed to run {is} it: its \
                 committed positions and its changelog would not match; delete it and apply it \
                 anew (it then starts from spec.input.startFrom)",
                m.name
            ),
        ));
    }
    if let Some(old) = state.pipelines.get(&m.name)
        && let Ok(old) = stored_manifest(old)
        && old.spec.state.enabled
        && spec.state.enabled
        && (old.spec.state.ttl_ms == 0) != (spec.state.ttl_ms == 0)
    {
        problems.push(at(
            "spec.state.ttlMs",
            format!(
                "pipeline {:?} keeps its state {} expiry times and cannot switch ttlMs {}:                  its changelog holds values in the other form; change ttlMs to another                  non-zero value, or delete the pipeline and apply it anew",
                m.name,
                if old.spec.state.ttl_ms == 0 { "without" } else { "with" },
                if spec.state.ttl_ms == 0 { "off" } else { "on" },
            ),
        ));
    }
    if spec.state.enabled {
        let changelog = manifest::changelog_topic(&m.name);
        let owned_by_us = state
            .pipelines
            .get(&m.name)
            .and_then(|p| stored_manifest(p).ok())
            .is_some_and(|old| old.spec.state.enabled);
        if spec.outputs.iter().any(|o| o.topic == changelog)
            || spec.input.topics.contains(&changelog)
        {
            problems.push(at(
                "spec.state",
                format!("{changelog:?} is the pipeline's state changelog; it cannot also be an input or output"),
            ));
        } else if state.topics.contains_key(&changelog) && !owned_by_us {
            problems.push(at(
                "spec.state",
                format!(
                    "topic {changelog:?}, where this pipeline would keep its state changelog, \
                     already exists; delete it or name the pipeline differently"
                ),
            ));
        }
    }
    if let Some(other) = state.pipelines.values().find(|p| {
        p.name != m.name
            && spec.outputs.iter().any(|o| p.inputs.contains(&o.topic))
            && spec.input.topics.iter().any(|t| p.outputs.contains(t))
    }) {
        problems.push(at(
            "spec.outputs",
            format!(
                "pipeline {:?} reads these outputs and writes these inputs: the two would feed each other forever",
                other.name
            ),
        ));
    }
    if problems.is_empty() {
        Ok(Plan {
            manifest: m.clone(),
            version,
        })
    } else {
        Err(problems.join("\n"))
    }
}

/// The manifest a stored pipeline was applied from.
fn stored_manifest(p: &PipelineMeta) -> Result<Manifest> {
    let spec = serde_json::from_str(&p.spec).map_err(|e| {
        Error::Internal(format!(
            "pipeline {:?} has an unreadable stored spec: {e}",
            p.name
        ))
    })?;
    Ok(Manifest {
        name: p.name.clone(),
        spec,
    })
}

fn definitions(state: &MetaState) -> pb::PipelineSet {
    pb::PipelineSet {
        pipelines: state
            .pipelines
            .values()
            .map(|p| pb::PipelineDefinition {
                name: p.name.clone(),
                id: p.id.to_string(),
                revision: p.revision,
                state: run_state(&p.state) as i32,
                processor: p.processor.clone(),
                processor_version: p.processor_version,
                spec_json: p.spec.clone(),
            })
            .collect(),
    }
}

fn run_state(s: &PipelineRunState) -> pb::PipelineState {
    match s {
        PipelineRunState::Running => pb::PipelineState::Running,
        PipelineRunState::Paused => pb::PipelineState::Paused,
        PipelineRunState::Failed(_) => pb::PipelineState::Failed,
    }
}

impl OnError {
    /// The dead-letter topic, if the policy writes to one.
    pub fn dead_letter_topic(&self) -> Option<&str> {
        match self {
            OnError::DeadLetter(t) => Some(t),
            OnError::Stop | OnError::Skip => None,
        }
    }
}
