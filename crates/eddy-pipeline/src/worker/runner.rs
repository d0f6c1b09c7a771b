//! One pipeline on one worker: a member of the pipeline's consumer group
//! that runs a task per input partition it is assigned.
//!
//! The group uses the cooperative-sticky assignor: a rebalance keeps the
//! partitions that stay, and a partition that moves is first revoked — its
//! task stops, commits and exits — and handed to its new owner only at the
//! next rebalance, after this member rejoins without it. So at most one
//! task per partition runs in each generation.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::Duration;

use eddy_client::{
    Assignor, Client, Committer, GroupConfig, GroupMember, OffsetCommit, Pipelines, TopicPartition,
};
use eddy_proto::v1 as pb;
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio::time::Instant;

use super::Definition;
use super::sandbox::Sandbox;
use super::stats::Stats;
use super::task::{self, TaskEnd, TaskSetup};
use crate::error::{Error, Result};

/// How long a revoked or stopping task may take to commit and exit.
const TASK_STOP_TIMEOUT: Duration = Duration::from_secs(30);
/// How often the member checks for rebalances and finished tasks.
const TICK: Duration = Duration::from_millis(50);
/// How often it checks whether its input topics grew.
const PARTITIONS_CHECK: Duration = Duration::from_secs(5);
/// Waits before a failed task (or join) is tried again.
const RETRY_MIN: Duration = Duration::from_millis(200);
const RETRY_MAX: Duration = Duration::from_secs(5);
const REBALANCE_TIMEOUT_MS: u32 = 60_000;

/// The consumer group of a pipeline.
pub fn group_id(pipeline: &str) -> String {
    format!("pipeline.{pipeline}")
}

/// A running task and how to stop it.
struct TaskHandle {
    stop: watch::Sender<bool>,
    join: JoinHandle<Result<TaskEnd>>,
}

/// A task to start again after it failed.
struct Retry {
    at: Instant,
    wait: Duration,
}

pub(crate) struct Runner {
    pub def: Arc<Definition>,
    pub client: Client,
    pub worker_id: String,
    pub session_timeout_ms: u32,
    pub sandbox: Arc<Sandbox>,
    pub stats: Arc<Stats>,
    pub state_dir: std::path::PathBuf,
}

impl Runner {
    /// Runs until `stop` turns true, then stops every task (each commits)
    /// and leaves the group.
    pub async fn run(self, mut stop: watch::Receiver<bool>) -> Result<()> {
        let def = self.def.clone();
        let config = GroupConfig {
            client_id: self.worker_id.clone(),
            session_timeout_ms: self.session_timeout_ms,
            rebalance_timeout_ms: REBALANCE_TIMEOUT_MS,
            heartbeat_wait_ms: 1_000,
            assignor: Assignor::CooperativeSticky,
            auto_commit: false,
            ..GroupConfig::new(group_id(&def.name))
        };
        let mut member =
            GroupMember::new(&self.client, config, def.spec.input.topics.clone()).await?;
        let setup = Arc::new(self.setup(member.committer()).await?);
        let mut tasks: BTreeMap<TopicPartition, TaskHandle> = BTreeMap::new();
        let mut retries: BTreeMap<TopicPartition, Retry> = BTreeMap::new();
        let mut join_wait = RETRY_MIN;
        let mut counts = BTreeMap::new();
        self.inputs_grew(&mut counts).await;
        'member: while !*stop.borrow() {
            let assignment = match member.join().await {
                Ok(a) => a,
                Err(e) => {
                    tracing::warn!(pipeline = %def.name, error = %e, "joining the pipeline's group failed; retrying");
                    if sleep_or_stop(&mut stop, join_wait).await {
                        break;
                    }
                    join_wait = (join_wait * 2).min(RETRY_MAX);
                    continue;
                }
            };
            join_wait = RETRY_MIN;
            if assignment.lost {
                // Another member may own them already: stop without committing.
                for (_, t) in std::mem::take(&mut tasks) {
                    t.join.abort();
                }
                retries.clear();
            }
            let revoked: Vec<TopicPartition> = tasks
                .keys()
                .filter(|tp| !assignment.partitions.contains(*tp))
                .cloned()
                .collect();
            stop_tasks(&mut tasks, &revoked).await;
            retries.retain(|tp, _| assignment.partitions.contains(tp));
            let added: BTreeSet<TopicPartition> = assignment
                .partitions
                .iter()
                .filter(|tp| !tasks.contains_key(*tp))
                .cloned()
                .collect();
            self.start_tasks(&setup, &member, &added, &mut tasks).await;
            member.set_owned(assignment.partitions.clone());
            tracing::info!(pipeline = %def.name, generation = assignment.generation, partitions = assignment.partitions.len(), "pipeline tasks assigned");
            let mut checked = Instant::now();
            loop {
                if sleep_or_stop(&mut stop, TICK).await {
                    break 'member;
                }
                if member.needs_rejoin() {
                    continue 'member;
                }
                if checked.elapsed() >= PARTITIONS_CHECK {
                    checked = Instant::now();
                    if self.inputs_grew(&mut counts).await {
                        // A join starts a rebalance that assigns the new ones.
                        tracing::info!(pipeline = %def.name, "input partitions added; rebalancing");
                        continue 'member;
                    }
                }
                self.reap(&mut tasks, &mut retries).await;
                self.retry_due(&setup, &member, &mut tasks, &mut retries)
                    .await;
            }
        }
        let all: Vec<TopicPartition> = tasks.keys().cloned().collect();
        stop_tasks(&mut tasks, &all).await;
        if let Err(e) = member.leave().await {
            tracing::debug!(pipeline = %def.name, error = %e, "leaving the group failed; the coordinator expires the member");
        }
        Ok(())
    }

    /// Whether an input topic has more partitions than `counts` says
    /// (which it then records); the group assigns partitions only when it
    /// rebalances.
    async fn inputs_grew(&self, counts: &mut BTreeMap<String, u32>) -> bool {
        let topics = &self.def.spec.input.topics;
        if let Err(e) = self.client.refresh_metadata(topics).await {
            tracing::debug!(error = %e, "metadata refresh failed");
            return false;
        }
        let mut grew = false;
        for t in topics {
            if let Ok(n) = self.client.partition_count(t).await {
                let known = counts.insert(t.clone(), n);
                grew |= known.is_some_and(|k| k < n);
            }
        }
        grew
    }

    /// What every task of this pipeline shares.
    async fn setup(&self, committer: Committer) -> Result<TaskSetup> {
        let spec = &self.def.spec;
        let mut partition_counts = BTreeMap::new();
        let changelog = spec
            .state
            .enabled
            .then(|| crate::manifest::changelog_topic(&self.def.name));
        let topics = spec
            .outputs
            .iter()
            .map(|o| o.topic.clone())
            .chain(spec.on_error.dead_letter_topic().map(str::to_string))
            .chain(changelog.clone());
        for topic in topics {
            let n = self.client.partition_count(&topic).await?;
            partition_counts.insert(Arc::<str>::from(topic), n);
        }
        let named = |topic: &str| partition_counts.keys().find(|t| &***t == topic).cloned();
        let first_output = spec
            .outputs
            .first()
            .and_then(|o| named(&o.topic))
            .ok_or_else(|| Error::Internal("a pipeline without outputs".into()))?;
        let dead_letter = spec.on_error.dead_letter_topic().and_then(named);
        let changelog = changelog.as_deref().and_then(named);
        let first_output_partitions = partition_counts.get(&first_output).copied().unwrap_or(0);
        Ok(TaskSetup {
            def: self.def.clone(),
            sandbox: self.sandbox.clone(),
            client: self.client.clone(),
            committer,
            stats: self.stats.clone(),
            pipelines: Pipelines::new(self.client.clone()),
            partition_counts,
            first_output,
            first_output_partitions,
            dead_letter,
            changelog,
            state_dir: self.state_dir.clone(),
        })
    }

    async fn start_tasks(
        &self,
        setup: &Arc<TaskSetup>,
        member: &GroupMember,
        partitions: &BTreeSet<TopicPartition>,
        tasks: &mut BTreeMap<TopicPartition, TaskHandle>,
    ) {
        if partitions.is_empty() {
            return;
        }
        let committed = match member.committed(partitions).await {
            Ok(c) => c,
            Err(e) => {
                tracing::warn!(pipeline = %self.def.name, error = %e, "reading committed positions failed; the tasks start when retried");
                return;
            }
        };
        for tp in partitions {
            let commit = committed
                .iter()
                .find(|c| c.topic == tp.0 && c.partition == tp.1)
                .cloned();
            tasks.insert(tp.clone(), spawn_task(setup.clone(), tp.clone(), commit));
        }
    }

    /// Collects tasks that ended; failed ones are retried with backoff.
    async fn reap(
        &self,
        tasks: &mut BTreeMap<TopicPartition, TaskHandle>,
        retries: &mut BTreeMap<TopicPartition, Retry>,
    ) {
        let finished: Vec<TopicPartition> = tasks
            .iter()
            .filter(|(_, t)| t.join.is_finished())
            .map(|(tp, _)| tp.clone())
            .collect();
        for tp in finished {
            let Some(t) = tasks.remove(&tp) else { continue };
            let ended = t
                .join
                .await
                .unwrap_or_else(|e| Err(Error::Internal(format!("task panicked: {e}"))));
            match ended {
                Ok(TaskEnd::Failed) => {
                    tracing::info!(pipeline = %self.def.name, topic = %tp.0, partition = tp.1, "task stopped at a failed record");
                }
                Ok(TaskEnd::Stopped) => {}
                Err(e) => {
                    let wait = retries
                        .get(&tp)
                        .map_or(RETRY_MIN, |r| (r.wait * 2).min(RETRY_MAX));
                    tracing::warn!(pipeline = %self.def.name, topic = %tp.0, partition = tp.1, error = %e, retry_in_ms = wait.as_millis() as u64, "task failed; restarting it from its last commit");
                    self.stats.set_last_error(pb::PipelineError {
                        topic: tp.0.to_string(),
                        partition: tp.1,
                        kind: "task".into(),
                        message: e.to_string(),
                        at_ms: eddy_log::Clock::now_ms(&eddy_log::SystemClock),
                        ..Default::default()
                    });
                    retries.insert(
                        tp,
                        Retry {
                            at: Instant::now() + wait,
                            wait,
                        },
                    );
                }
            }
        }
    }

    async fn retry_due(
        &self,
        setup: &Arc<TaskSetup>,
        member: &GroupMember,
        tasks: &mut BTreeMap<TopicPartition, TaskHandle>,
        retries: &mut BTreeMap<TopicPartition, Retry>,
    ) {
        let now = Instant::now();
        let due: BTreeSet<TopicPartition> = retries
            .iter()
            .filter(|(tp, r)| r.at <= now && !tasks.contains_key(*tp))
            .map(|(tp, _)| tp.clone())
            .collect();
        if due.is_empty() {
            return;
        }
        self.start_tasks(setup, member, &due, tasks).await;
        // Kept until the task runs without failing, so the backoff grows.
        for tp in &due {
            if let Some(r) = retries.get_mut(tp) {
                r.at = now + RETRY_MAX * 1000;
            }
        }
    }
}

fn spawn_task(
    setup: Arc<TaskSetup>,
    tp: TopicPartition,
    committed: Option<OffsetCommit>,
) -> TaskHandle {
    let (stop, stopped) = watch::channel(false);
    let join = tokio::spawn(task::run(setup, tp.0, tp.1, committed, stopped));
    TaskHandle { stop, join }
}

/// Asks the tasks to stop (each commits first) and waits for them.
async fn stop_tasks(tasks: &mut BTreeMap<TopicPartition, TaskHandle>, which: &[TopicPartition]) {
    let mut stopping = Vec::new();
    for tp in which {
        if let Some(t) = tasks.remove(tp) {
            let _ = t.stop.send(true);
            stopping.push((tp.clone(), t.join));
        }
    }
    for (tp, join) in stopping {
        let abort = join.abort_handle();
        match tokio::time::timeout(TASK_STOP_TIMEOUT, join).await {
            Ok(Ok(Ok(_))) => {}
            Ok(Ok(Err(e))) => {
                tracing::warn!(topic = %tp.0, partition = tp.1, error = %e, "task failed while stopping; its next owner starts from the last commit");
            }
            Ok(Err(e)) => {
                tracing::warn!(topic = %tp.0, partition = tp.1, error = %e, "task panicked")
            }
            Err(_) => {
                tracing::warn!(topic = %tp.0, partition = tp.1, "task did not stop in time; aborted");
                abort.abort();
            }
        }
    }
}

/// Sleeps for `d`; true when `stop` turned true meanwhile.
async fn sleep_or_stop(stop: &mut watch::Receiver<bool>, d: Duration) -> bool {
    tokio::select! {
        () = tokio::time::sleep(d) => {}
        _ = stop.changed() => {}
    }
    *stop.borrow()
}
