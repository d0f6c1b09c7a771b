//! One pipeline task: owns one input partition for one group generation
//! and moves its records: fetch a batch → process it in the sandbox →
//! produce the outputs → commit the input position.
//!
//! Delivery decides the order of the last two steps:
//!
//! - at-most-once commits a batch's end before producing its outputs: a
//!   crash loses that batch's outputs and never repeats them (the producer
//!   is idempotent, so a retried request is not written twice either).
//! - at-least-once produces (idempotent, acks=all) and commits a position
//!   only once every output before it is acknowledged.
//! - exactly-once does the same with a producer whose id is stable for
//!   (pipeline, input partition); taking the task over bumps its epoch,
//!   fencing the previous owner, and output sequences continue from the
//!   commit (see `position.rs`), so what a replay sends again is dropped
//!   by the leaders as duplicates.
//!
//! A stateful task (`spec.state`) also restores its keyed state from the
//! changelog as it starts, hands it to each batch's calls, and sends the
//! batch's state changes with its outputs; the commit records how many
//! changes precede its position (see `state.rs`).
//!
//! In flight at once: one batch in the sandbox and at most
//! [`PENDING_BATCHES_MAX`] batches awaiting acknowledgement; the consumer
//! and producer bound their own buffers. A slow processor or a slow
//! output slows consumption; nothing queues without bound.

use std::collections::{BTreeMap, VecDeque};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use eddy_client::{
    Client, Committer, Consumer, ConsumerConfig, DeliveryTicket, ErrorCode, Fetched, OffsetCommit,
    Pipelines, Producer, ProducerConfig, ProducerRecord, Start,
};
use eddy_log::partitioner::partition_for_key;
use eddy_proto::v1 as pb;
use eddy_wasm::{Header, InputRecord, OutputRecord};
use tokio::sync::watch;

use super::Definition;
use super::position::{CommitMetadata, OutputPartition, Sequences};
use super::sandbox::{Failure, Sandbox, Segment};
use super::state::{Resume, TaskState, restore_state};
use super::stats::Stats;
use crate::error::{Error, Result};
use crate::manifest::{Delivery, OnError, StartFrom};

/// Batches produced but not yet all acknowledged, per task.
pub const PENDING_BATCHES_MAX: usize = 16;
/// How often a task commits its position while it runs.
const COMMIT_INTERVAL: Duration = Duration::from_millis(100);
/// Bytes of input a task's consumer buffers.
const FETCH_BYTES_MAX: u32 = 4 << 20;
/// Longest wait for input before a task checks whether it should stop.
const IDLE_POLL: Duration = Duration::from_millis(500);

/// What every task of a pipeline on this worker shares.
#[derive(Debug)]
pub struct TaskSetup {
    pub def: Arc<Definition>,
    pub sandbox: Arc<Sandbox>,
    pub client: Client,
    pub committer: Committer,
    pub stats: Arc<Stats>,
    pub pipelines: Pipelines,
    /// Partition counts of the output and dead-letter topics.
    pub partition_counts: BTreeMap<Arc<str>, u32>,
    /// Where outputs that name no topic go, and its partition count.
    pub first_output: Arc<str>,
    pub first_output_partitions: u32,
    pub dead_letter: Option<Arc<str>>,
    /// A stateful pipeline's changelog topic (also in `partition_counts`).
    pub changelog: Option<Arc<str>>,
    /// Where tasks keep state that outgrew its memory budget.
    pub state_dir: std::path::PathBuf,
}

/// How a task ended without an error.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TaskEnd {
    /// Asked to stop; its position is committed.
    Stopped,
    /// It hit a record it cannot process under `onError: stop`; the
    /// pipeline is marked failed there.
    Failed,
}

/// An output record with its destination chosen.
struct Routed {
    topic: Arc<str>,
    partition: u32,
    record: ProducerRecord,
}

/// What a commit records: an input position and what goes with it.
#[derive(Debug, Clone)]
struct Position {
    /// The input offset after the last record processed.
    end: u64,
    /// Exactly-once: the next sequence of each output partition.
    sequences: Option<BTreeMap<OutputPartition, i32>>,
    /// Stateful: the state changes made before `end`.
    state_changes: Option<u64>,
    /// Stateful: the highest timestamp processed before `end`.
    max_timestamp: Option<i64>,
}

/// A batch whose outputs are in flight.
struct Pending {
    position: Position,
    /// The ticket of the batch's last record to each output partition: a
    /// partition's records are acknowledged in order, and a failure of an
    /// earlier one shows in `Producer::error`.
    tickets: Vec<(OutputPartition, DeliveryTicket)>,
}

/// What a task does next.
enum Next {
    /// Process these records.
    Records(Vec<InputRecord>),
    /// The input has been quiet for `spec.eventTime.idleTimeoutMs`.
    Quiet,
    /// Stop.
    Stop,
}

/// Runs the task for `partition` of `topic` from its committed position
/// until `stop` turns true (or it fails).
pub async fn run(
    setup: Arc<TaskSetup>,
    topic: Arc<str>,
    partition: u32,
    committed: Option<OffsetCommit>,
    stop: watch::Receiver<bool>,
) -> Result<TaskEnd> {
    let id = setup.stats.task_id();
    // Forgets the task's state figures however it ends, aborted included.
    let _report = StateReport {
        stats: setup.stats.clone(),
        partition,
        id,
    };
    let mut task = Task::start(setup, topic, partition, committed, id, stop).await?;
    let end = task.run().await?;
    if end == TaskEnd::Stopped {
        task.finish().await?;
    }
    Ok(end)
}

/// Clears what a task reported of its state when it goes.
struct StateReport {
    stats: Arc<Stats>,
    partition: u32,
    id: u64,
}

impl Drop for StateReport {
    fn drop(&mut self) {
        self.stats.clear_state(self.partition, self.id);
    }
}

struct Task {
    setup: Arc<TaskSetup>,
    topic: Arc<str>,
    partition: u32,
    /// This task's id among the pipeline's on this worker.
    id: u64,
    consumer: Consumer,
    producer: Producer,
    /// Exactly-once only.
    sequences: Option<Sequences>,
    /// Stateful pipelines only.
    state: Option<TaskState>,
    leftover: VecDeque<InputRecord>,
    /// The input offset after the last record processed.
    offset: u64,
    /// When the last record arrived (or the task started).
    input_at: Instant,
    /// When the input was last found quiet: found again a poll later.
    quiet_at: Option<Instant>,
    pending: VecDeque<Pending>,
    /// The newest position whose outputs are all acknowledged.
    done: Option<Position>,
    committed_at: Instant,
    stop: watch::Receiver<bool>,
}

impl Task {
    async fn start(
        setup: Arc<TaskSetup>,
        topic: Arc<str>,
        partition: u32,
        committed: Option<OffsetCommit>,
        id: u64,
        stop: watch::Receiver<bool>,
    ) -> Result<Task> {
        let def = &setup.def;
        let metadata = committed
            .as_ref()
            .map(|c| CommitMetadata::decode(&c.metadata).unwrap_or_default());
        // A commit left by an earlier pipeline of the same name is not ours.
        let committed = committed.filter(|_| {
            metadata
                .as_ref()
                .and_then(|m| m.pipeline)
                .is_none_or(|id| id == def.id)
        });
        let start = match &committed {
            Some(c) => Start::Offset(c.offset),
            None => match def.spec.input.start_from {
                StartFrom::Earliest => Start::Earliest,
                StartFrom::Latest => Start::Latest,
                StartFrom::Offset(o) => Start::Offset(o),
                StartFrom::Timestamp(ts) => Start::Timestamp(ts),
            },
        };
        let producer = Producer::new(
            setup.client.clone(),
            producer_config(def, &topic, partition),
        );
        let mut consumer = Consumer::new(
            setup.client.clone(),
            ConsumerConfig {
                fetch_bytes_max: FETCH_BYTES_MAX,
                partition_bytes_max: FETCH_BYTES_MAX,
                // Exactly-once outputs are numbered by input position, so
                // the position moves only through a commit: a position the
                // log no longer holds fails the task, which starts again
                // from its commit (below).
                auto_offset_reset: match def.spec.delivery {
                    Delivery::ExactlyOnce => None,
                    _ => Some(Start::Earliest),
                },
            },
        );
        let (offset, moved) = match consumer.assign(&topic, partition, start).await {
            Err(e) if e.code() == ErrorCode::OffsetOutOfRange => (
                start_anew(&mut consumer, def, &topic, partition, start).await?,
                true,
            ),
            other => (other?, false),
        };
        let metadata = metadata.filter(|_| committed.is_some());
        let (sequences, producer_id) = match def.spec.delivery {
            // Moved past the commit, the records its sequences number are
            // gone: number on after what the leaders hold.
            Delivery::ExactlyOnce if moved => {
                let (s, id) = resume_sequences(&setup, &producer, None).await?;
                (Some(s), Some(id))
            }
            Delivery::ExactlyOnce => {
                let committed_seqs = metadata
                    .as_ref()
                    .map(|m| m.sequences.clone())
                    .unwrap_or_default();
                let (s, id) = resume_sequences(&setup, &producer, Some(&committed_seqs)).await?;
                (Some(s), Some(id))
            }
            _ => (None, None),
        };
        let state = match (&setup.changelog, producer_id) {
            (Some(changelog), Some(producer_id)) => {
                let resume = Resume {
                    changelog,
                    producer_id,
                    metadata: metadata.as_ref(),
                    moved,
                };
                Some(restore_state(&setup, &topic, partition, id, resume).await?)
            }
            (Some(_), None) => {
                return Err(Error::Internal(
                    "a stateful task without an exactly-once producer".into(),
                ));
            }
            _ => None,
        };
        tracing::info!(pipeline = %def.name, %topic, partition, offset, "task started");
        Ok(Task {
            setup,
            topic,
            partition,
            id,
            consumer,
            producer,
            sequences,
            state,
            leftover: VecDeque::new(),
            offset,
            input_at: Instant::now(),
            quiet_at: None,
            pending: VecDeque::new(),
            done: None,
            committed_at: Instant::now(),
            stop,
        })
    }

    async fn run(&mut self) -> Result<TaskEnd> {
        // Timers a restore finds due fire before any record, as they did
        // in the run that committed the event time making them due.
        if self.state.as_ref().map(TaskState::timer_due).transpose()? == Some(true) {
            self.process(Vec::new()).await?;
        }
        loop {
            match self.next_batch().await? {
                Next::Stop => return Ok(TaskEnd::Stopped),
                Next::Quiet => self.on_quiet().await?,
                Next::Records(batch) => {
                    if let Some(end) = self.process(batch).await? {
                        return Ok(end);
                    }
                }
            }
        }
    }

    /// Processes one batch — or, with no records, fires the due timers —
    /// and hands its outputs to the producer. `Some` when the task ends
    /// there.
    async fn process(&mut self, batch: Vec<InputRecord>) -> Result<Option<TaskEnd>> {
        let on_error_stop = matches!(self.setup.def.spec.on_error, OnError::Stop);
        let records = Arc::new(batch);
        let session = self.state.as_ref().map(TaskState::session);
        let run = self
            .setup
            .sandbox
            .run(records.clone(), on_error_stop, session)
            .await?;
        self.setup.stats.add_processor_counters(&run.counters);
        if let Some(failure) = &run.timers_failed {
            self.timers_error(failure);
        }
        // Outputs without a timestamp of their own take the batch's last;
        // a call for timers alone, the event time they fired at.
        let batch_ts = match records.last() {
            Some(r) => r.timestamp.0,
            None => self
                .state
                .as_ref()
                .and_then(TaskState::max_timestamp)
                .unwrap_or(0),
        };
        let (mut routed, stopped_at) = self.route(&records, run.segments, batch_ts)?;
        if let Some(session) = run.state {
            self.route_changes(session, batch_ts, &mut routed)?;
        }
        // Counted last, and read first by a report: a report that
        // counts a record also has every other count it caused.
        Stats::add(&self.setup.stats.records_in, records.len());
        let end = records.last().map_or(self.offset, |r| r.offset.0 + 1);
        self.offset = end;
        if !records.is_empty() {
            self.input_at = Instant::now();
        }
        if let Some(offset) = stopped_at {
            self.send(routed, end).await?;
            self.fail_at(offset).await?;
            return Ok(Some(TaskEnd::Failed));
        }
        if self.setup.def.spec.delivery == Delivery::AtMostOnce {
            self.commit(Position {
                end,
                sequences: None,
                state_changes: None,
                max_timestamp: None,
            })
            .await?;
            self.send(routed, end).await?;
        } else {
            self.send(routed, end).await?;
            self.settle(false).await?;
        }
        Ok(None)
    }

    /// The input has been quiet for `spec.eventTime.idleTimeoutMs`: event
    /// time moves on with the wall clock, that far behind it, when that
    /// makes a timer due. The new event time is committed first — with
    /// every earlier batch acknowledged — so that a restore starts from it
    /// and fires the same timers at the same place (see [`Task::run`]);
    /// then a call without records fires them.
    async fn on_quiet(&mut self) -> Result<()> {
        let idle_ms = i64::from(self.setup.def.spec.event_time.idle_timeout_ms);
        let Some(state) = self.state.as_ref() else {
            return Ok(());
        };
        let to = eddy_log::Clock::now_ms(&eddy_log::SystemClock).saturating_sub(idle_ms);
        let watermark_then = to.saturating_sub(state.lateness_ms());
        let Some(next) = state.next_timer_at()? else {
            return Ok(());
        };
        // Nothing newly due (a timer already due waits for a processor
        // that moves event time itself).
        if next > watermark_then || state.watermark().is_some_and(|w| next <= w) {
            return Ok(());
        }
        // Quiet means caught up: records the task has yet to read (a slow
        // fetch, a task just resumed) must not turn late.
        let end = self
            .consumer
            .resolve(&self.topic, self.partition, Start::Latest)
            .await?;
        if end > self.offset {
            return Ok(());
        }
        self.settle(true).await?;
        if let Some(state) = self.state.as_mut() {
            state.move_event_time_to(to);
        }
        self.commit(self.position(self.offset)).await?;
        self.report_watermark();
        tracing::debug!(pipeline = %self.setup.def.name, topic = %self.topic, partition = self.partition, event_time = to, "input quiet: event time moved on with the wall clock");
        self.process(Vec::new()).await?;
        Ok(())
    }

    /// A call for due timers alone failed: no record to blame, so no policy
    /// applies; the timers stay due and fire after the next record.
    fn timers_error(&self, failure: &Failure) {
        tracing::warn!(pipeline = %self.setup.def.name, topic = %self.topic, partition = self.partition, kind = failure.kind, error = %failure.message, "firing due timers without a record failed");
        self.setup.stats.set_last_error(pb::PipelineError {
            topic: self.topic.to_string(),
            partition: self.partition,
            offset: self.offset,
            kind: failure.kind.to_string(),
            message: format!(
                "firing due timers (no record) failed; they fire after the next record: {}",
                failure.message
            ),
            at_ms: eddy_log::Clock::now_ms(&eddy_log::SystemClock),
        });
    }

    /// The next batch: up to `maxRecords`, or what arrived within
    /// `maxWaitMs` of its first record. `None` when the task must stop.
    async fn next_batch(&mut self) -> Result<Next> {
        let spec = &self.setup.def.spec.batch;
        let max = spec.max_records as usize;
        let wait = Duration::from_millis(u64::from(spec.max_wait_ms));
        let mut batch = Vec::with_capacity(max.min(4096));
        let mut deadline: Option<Instant> = None;
        loop {
            while batch.len() < max
                && let Some(r) = self.leftover.pop_front()
            {
                batch.push(r);
            }
            let now = Instant::now();
            if batch.len() >= max {
                return Ok(Next::Records(batch));
            }
            if !batch.is_empty() && now >= *deadline.get_or_insert(now + wait) {
                return Ok(Next::Records(batch));
            }
            if *self.stop.borrow() {
                return Ok(Next::Stop);
            }
            if batch.is_empty() && self.is_quiet() {
                return Ok(Next::Quiet);
            }
            let poll_wait = deadline.map_or(IDLE_POLL, |d| d.saturating_duration_since(now));
            let fetched = tokio::select! {
                f = self.consumer.poll(poll_wait) => f?,
                _ = self.stop.changed() => return Ok(Next::Stop),
            };
            for f in &fetched {
                decode(f, &mut self.leftover)?;
            }
            // Commits keep going while input is quiet.
            if self.setup.def.spec.delivery != Delivery::AtMostOnce {
                self.settle(false).await?;
            }
        }
    }

    /// Whether the input has been quiet for `spec.eventTime.idleTimeoutMs`
    /// (stateful pipelines that set it only). Checked once per poll.
    fn is_quiet(&mut self) -> bool {
        let idle_ms = self.setup.def.spec.event_time.idle_timeout_ms;
        if idle_ms == 0 || self.state.is_none() || !self.leftover.is_empty() {
            return false;
        }
        let quiet = self.input_at.elapsed() >= Duration::from_millis(u64::from(idle_ms))
            && self.quiet_at.is_none_or(|at| at.elapsed() >= IDLE_POLL);
        if quiet {
            self.quiet_at = Some(Instant::now());
        }
        quiet
    }

    /// Chooses every output's topic and partition, turns failed records
    /// into dead letters or skips, and returns the offset of the record
    /// the task stops at under `onError: stop`.
    fn route(
        &self,
        records: &[InputRecord],
        segments: Vec<Segment>,
        batch_ts: i64,
    ) -> Result<(Vec<Routed>, Option<u64>)> {
        let def = &self.setup.def;
        let first_output = self.setup.first_output.clone();
        let mut routed = Vec::new();
        let mut stopped_at = None;
        for segment in segments {
            match segment {
                Segment::Outputs(outputs) => {
                    for o in outputs {
                        let topic = match &o.topic {
                            // The setup's own name, so that later lookups
                            // compare one pointer's worth of text at most.
                            Some(t) => self
                                .setup
                                .partition_counts
                                .get_key_value(&**t)
                                .map_or_else(|| t.clone(), |(k, _)| k.clone()),
                            None => first_output.clone(),
                        };
                        let partition = self.place(&topic, o.key.as_deref())?;
                        routed.push(Routed {
                            record: producer_record(o, partition, batch_ts),
                            topic,
                            partition,
                        });
                    }
                }
                Segment::Failed { index, failure } => {
                    let record = records.get(index).ok_or_else(|| {
                        Error::Internal(format!("failure at position {index} of a shorter batch"))
                    })?;
                    self.record_error(record, &failure);
                    match &def.spec.on_error {
                        OnError::Stop => {
                            stopped_at = Some(record.offset.0);
                            break;
                        }
                        OnError::Skip => Stats::add(&self.setup.stats.skipped, 1),
                        OnError::DeadLetter(_) => {
                            Stats::add(&self.setup.stats.dead_lettered, 1);
                            let topic = self.setup.dead_letter.clone().ok_or_else(|| {
                                Error::Internal("no dead-letter topic set up".into())
                            })?;
                            let partition = self.place(&topic, record.key.as_deref())?;
                            routed.push(Routed {
                                record: self.dead_letter(record, &failure, partition),
                                topic,
                                partition,
                            });
                        }
                    }
                }
            }
        }
        Ok((routed, stopped_at))
    }

    /// Applies a batch's state changes to the task's store and adds them to
    /// `routed` as changelog records, in the order made.
    fn route_changes(
        &mut self,
        session: eddy_wasm::StateSession,
        batch_ts: i64,
        routed: &mut Vec<Routed>,
    ) -> Result<()> {
        let (Some(state), Some(changelog)) = (self.state.as_mut(), &self.setup.changelog) else {
            return Err(Error::Internal(
                "state changes from a task that keeps no state".into(),
            ));
        };
        for record in state.commit_changes(session, self.partition, batch_ts)? {
            routed.push(Routed {
                topic: changelog.clone(),
                partition: self.partition,
                record,
            });
        }
        let (keys, bytes, on_disk) = (state.keys(), state.bytes(), state.is_on_disk());
        let watermark = state.watermark();
        self.setup.stats.update_state(self.partition, self.id, |s| {
            s.keys = keys;
            s.bytes = bytes;
            s.on_disk = on_disk;
            s.watermark = watermark;
        });
        Ok(())
    }

    /// Reports the task's watermark for `pipeline describe`.
    fn report_watermark(&self) {
        let watermark = self.state.as_ref().and_then(TaskState::watermark);
        self.setup
            .stats
            .update_state(self.partition, self.id, |s| s.watermark = watermark);
    }

    /// Keyed records go where Kafka's partitioner puts their key; keyless
    /// ones to a partition chosen by the input partition, never by time or
    /// arrival, so that a replay places them the same way.
    fn place(&self, topic: &Arc<str>, key: Option<&[u8]>) -> Result<u32> {
        // Most outputs go to the first output topic: no lookup for those.
        let n = if Arc::ptr_eq(topic, &self.setup.first_output) {
            Some(self.setup.first_output_partitions)
        } else {
            self.setup.partition_counts.get(&**topic).copied()
        }
        .filter(|&n| n > 0)
        .ok_or_else(|| Error::Internal(format!("no partition count for output {topic:?}")))?;
        Ok(match key {
            Some(k) => partition_for_key(k, n),
            None => self.partition % n,
        })
    }

    /// The failed input record unchanged, with headers saying what failed.
    fn dead_letter(&self, r: &InputRecord, failure: &Failure, partition: u32) -> ProducerRecord {
        let def = &self.setup.def;
        let mut headers: Vec<(String, Bytes)> = r
            .headers
            .iter()
            .map(|h| (h.key.clone(), h.value.clone()))
            .collect();
        for (name, value) in [
            ("eddy.error.kind", failure.kind.to_string()),
            ("eddy.error.message", failure.message.clone()),
            (
                "eddy.processor",
                format!("{}@{}", def.processor, def.processor_version),
            ),
            ("eddy.pipeline", def.name.clone()),
            ("eddy.source.topic", r.topic.to_string()),
            ("eddy.source.partition", r.partition.to_string()),
            ("eddy.source.offset", r.offset.0.to_string()),
        ] {
            headers.push((name.to_string(), Bytes::from(value)));
        }
        ProducerRecord {
            partition: Some(partition),
            key: r.key.clone(),
            value: r.value.clone(),
            headers,
            timestamp_ms: Some(r.timestamp.0),
        }
    }

    fn record_error(&self, r: &InputRecord, failure: &Failure) {
        tracing::warn!(pipeline = %self.setup.def.name, topic = %r.topic, partition = r.partition, offset = r.offset.0, kind = failure.kind, error = %failure.message, "record failed");
        self.setup.stats.set_last_error(pipeline_error(r, failure));
    }

    /// Hands the outputs to the producer; with delivery guarantees, their
    /// tickets wait in `pending` until acknowledged.
    async fn send(&mut self, routed: Vec<Routed>, end: u64) -> Result<()> {
        let mut tickets: Vec<(OutputPartition, DeliveryTicket)> = Vec::new();
        let changelog = self.setup.changelog.clone();
        let changes = changelog.as_ref().map_or(0, |c| {
            routed.iter().filter(|r| Arc::ptr_eq(&r.topic, c)).count()
        });
        let mut sent = 0;
        // Consecutive records for one topic go to the producer together.
        let mut group: Vec<ProducerRecord> = Vec::new();
        let mut group_topic: Option<Arc<str>> = None;
        for r in routed {
            if let Some(s) = self.sequences.as_mut()
                && !s.take(&r.topic, r.partition)
            {
                continue; // its leader already holds it
            }
            if group_topic
                .as_ref()
                .is_some_and(|t| !Arc::ptr_eq(t, &r.topic) && *t != r.topic)
            {
                sent += self
                    .send_group(&mut group, &group_topic, &mut tickets)
                    .await?;
            }
            group_topic = Some(r.topic);
            group.push(r.record);
        }
        sent += self
            .send_group(&mut group, &group_topic, &mut tickets)
            .await?;
        // Changes are not outputs; a skipped one (its leader had it) is
        // counted as sent, which only lowers the count after a replay.
        Stats::add(&self.setup.stats.records_out, sent.saturating_sub(changes));
        if self.setup.def.spec.delivery != Delivery::AtMostOnce {
            let position = self.position(end);
            self.pending.push_back(Pending { position, tickets });
        }
        Ok(())
    }

    /// Sends `group` (records for `topic`) and keeps the last ticket per
    /// partition.
    async fn send_group(
        &self,
        group: &mut Vec<ProducerRecord>,
        topic: &Option<Arc<str>>,
        tickets: &mut Vec<(OutputPartition, DeliveryTicket)>,
    ) -> Result<usize> {
        let (Some(topic), false) = (topic, group.is_empty()) else {
            return Ok(0);
        };
        let records = std::mem::take(group);
        let partitions: Vec<u32> = records.iter().map(|r| r.partition.unwrap_or(0)).collect();
        let sent = self.producer.send_many(topic, records).await?;
        let n = sent.len();
        for (partition, ticket) in partitions.into_iter().zip(sent) {
            match tickets
                .iter_mut()
                .find(|(p, _)| p.1 == partition && p.0 == *topic)
            {
                Some(last) => last.1 = ticket,
                None => tickets.push(((topic.clone(), partition), ticket)),
            }
        }
        Ok(n)
    }

    /// Moves acknowledged batches out of `pending` and commits when due.
    /// `all` waits for every pending batch and commits at once.
    async fn settle(&mut self, all: bool) -> Result<()> {
        while let Some(front) = self.pending.front() {
            let ready = front
                .tickets
                .iter()
                .all(|(_, t)| t.completed_at().is_some());
            if !ready && !all && self.pending.len() <= PENDING_BATCHES_MAX {
                break;
            }
            let Some(batch) = self.pending.pop_front() else {
                break;
            };
            for (_, t) in batch.tickets {
                t.wait().await?;
            }
            self.done = Some(batch.position);
        }
        if let Some(e) = self.producer.error() {
            return Err(e.into());
        }
        if !(all || self.committed_at.elapsed() >= COMMIT_INTERVAL) {
            return Ok(());
        }
        self.committed_at = Instant::now();
        if let Some(position) = self.done.take()
            && let Err(e) = self.commit(position.clone()).await
        {
            if all {
                return Err(e);
            }
            // Retried at the next interval: the member may be between
            // generations.
            tracing::debug!(error = %e, "commit failed; retrying");
            self.done = Some(position);
        }
        Ok(())
    }

    /// The position after the last batch handed to the producer.
    fn position(&self, end: u64) -> Position {
        Position {
            end,
            sequences: self.sequences.as_ref().map(Sequences::snapshot),
            state_changes: self.state.as_ref().map(TaskState::changes_made),
            max_timestamp: self.state.as_ref().and_then(TaskState::max_timestamp),
        }
    }

    async fn commit(&mut self, position: Position) -> Result<()> {
        let metadata = CommitMetadata {
            pipeline: Some(self.setup.def.id),
            sequences: position.sequences.unwrap_or_default(),
            state_changes: position.state_changes,
            max_timestamp: position.max_timestamp,
        }
        .encode(self.setup.def.id);
        self.setup
            .committer
            .commit(vec![OffsetCommit {
                topic: self.topic.clone(),
                partition: self.partition,
                offset: position.end,
                metadata,
            }])
            .await?;
        if let (Some(state), Some(changes)) = (self.state.as_mut(), position.state_changes) {
            state.committed(changes);
        }
        Ok(())
    }

    /// `onError: stop`: commits the position of the failing record (its
    /// predecessors' outputs acknowledged first) and marks the pipeline
    /// failed there.
    async fn fail_at(&mut self, offset: u64) -> Result<()> {
        self.settle(true).await?;
        // Nothing after the failing record was produced or changed, so the
        // sequences and state now are those of its position.
        self.commit(self.position(offset)).await?;
        let error = self
            .setup
            .stats
            .last_error()
            .unwrap_or_else(|| pb::PipelineError {
                topic: self.topic.to_string(),
                partition: self.partition,
                offset,
                ..Default::default()
            });
        let def = &self.setup.def;
        self.setup
            .pipelines
            .fail(&def.name, &def.id.to_string(), error)
            .await?;
        tracing::warn!(pipeline = %def.name, topic = %self.topic, partition = self.partition, offset, "pipeline stopped at a record it cannot process (onError: stop)");
        Ok(())
    }

    /// On a clean stop: everything produced is acknowledged and committed.
    async fn finish(mut self) -> Result<()> {
        if self.setup.def.spec.delivery == Delivery::AtMostOnce {
            self.producer.flush().await?;
        } else {
            self.settle(true).await?;
        }
        Ok(())
    }
}

/// The records of fetched batches from the caller's position on, as the
/// processor takes them (keys, values and headers share the fetched bytes).
fn decode(f: &Fetched, out: &mut VecDeque<InputRecord>) -> Result<()> {
    let damaged =
        |e: eddy_log::BatchError| Error::Internal(format!("fetched batch is damaged: {e}"));
    for batch in eddy_log::batches(&f.bytes, eddy_log::BATCH_BYTES_LIMIT) {
        let batch = batch.map_err(damaged)?;
        // The fetched bytes themselves, or the records decompressed.
        let section = batch.records_bytes(&f.bytes).map_err(damaged)?;
        for r in eddy_log::RecordIter::new(batch.header, &section) {
            let r = r.map_err(damaged)?;
            if r.offset.0 < f.from {
                continue;
            }
            let slice = |b: &[u8]| section.slice_ref(b);
            out.push_back(InputRecord {
                key: r.key.map(slice),
                value: r.value.map(slice),
                headers: r
                    .headers()
                    .map(|(key, value)| Header {
                        key: key.to_string(),
                        value: slice(value),
                    })
                    .collect(),
                timestamp: r.timestamp,
                topic: f.topic.clone(),
                partition: f.partition,
                offset: r.offset,
            });
        }
    }
    Ok(())
}

/// Where a task whose committed position the input no longer holds starts:
/// the log start when retention deleted records before the pipeline
/// processed them (they are lost to it), the end when the log lost what
/// was past the commit. Either way the pipeline skips input, which is
/// logged; an exactly-once task numbers its outputs on from what the
/// output leaders hold.
async fn start_anew(
    consumer: &mut Consumer,
    def: &Definition,
    topic: &str,
    partition: u32,
    committed: Start,
) -> Result<u64> {
    let earliest = consumer.resolve(topic, partition, Start::Earliest).await?;
    let at = match committed {
        Start::Offset(o) if o < earliest => Start::Earliest,
        _ => Start::Latest,
    };
    let offset = consumer.assign(topic, partition, at).await?;
    tracing::warn!(pipeline = %def.name, %topic, partition, ?committed, offset, "the committed position is no longer in the input (retention deleted it, or the log lost it); starting from the nearest position it holds: records between were not processed");
    Ok(offset)
}

fn producer_config(def: &Definition, topic: &str, partition: u32) -> ProducerConfig {
    let mut config = ProducerConfig {
        linger_ms: 1,
        ..ProducerConfig::default()
    };
    match def.spec.delivery {
        // Idempotent too: a retried request must not write twice.
        Delivery::AtMostOnce | Delivery::AtLeastOnce => {}
        Delivery::ExactlyOnce => {
            config.stable_name = Some(format!("pipeline/{}/{topic}/{partition}", def.id));
        }
    }
    config
}

/// Takes the task's stable producer identity (fencing the previous
/// owner), asks each output partition's leader what it already holds from
/// it, and sets where the producer's sequences continue: from the commit's
/// (`committed`), or right after what each leader holds (`None`). Returns
/// the sequences and the producer's id.
async fn resume_sequences(
    setup: &TaskSetup,
    producer: &Producer,
    committed: Option<&BTreeMap<OutputPartition, i32>>,
) -> Result<(Sequences, i64)> {
    let (producer_id, _epoch) = producer
        .init()
        .await?
        .ok_or_else(|| Error::Internal("an exactly-once task's producer has no identity".into()))?;
    let partitions: Vec<OutputPartition> = setup
        .partition_counts
        .iter()
        .flat_map(|(t, &n)| (0..n).map(move |p| (t.clone(), p)))
        .collect();
    let named: Vec<(String, u32)> = partitions
        .iter()
        .map(|(t, p)| (t.to_string(), *p))
        .collect();
    let held = setup.client.describe_producer(producer_id, &named).await?;
    let last: BTreeMap<OutputPartition, Option<i32>> = partitions
        .into_iter()
        .zip(held)
        .map(|(p, h)| (p, h.map(|(_, seq)| seq)))
        .collect();
    let (sequences, first) = match committed {
        Some(committed) => Sequences::resume(committed, &last),
        None => Sequences::resume(&Sequences::after_held(&last), &last),
    };
    for ((topic, partition), next) in first {
        producer.set_next_sequence(&topic, partition, next);
    }
    Ok((sequences, producer_id))
}

fn producer_record(o: OutputRecord, partition: u32, batch_ts: i64) -> ProducerRecord {
    ProducerRecord {
        partition: Some(partition),
        key: o.key,
        value: o.value,
        headers: o.headers.into_iter().map(|h| (h.key, h.value)).collect(),
        timestamp_ms: Some(o.timestamp.map_or(batch_ts, |t| t.0)),
    }
}

fn pipeline_error(r: &InputRecord, failure: &Failure) -> pb::PipelineError {
    pb::PipelineError {
        topic: r.topic.to_string(),
        partition: r.partition,
        offset: r.offset.0,
        kind: failure.kind.to_string(),
        message: failure.message.clone(),
        at_ms: eddy_log::Clock::now_ms(&eddy_log::SystemClock),
    }
}
