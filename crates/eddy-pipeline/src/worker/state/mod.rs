//! A stateful task's keyed state: the store its processor's calls read,
//! the changelog records its changes become, and the restore from them.
//!
//! Every change a batch makes (`put` or `delete`, in the order made, none
//! merged) becomes one record of the pipeline's compacted changelog topic
//! (`<pipeline>.state`), in the partition numbered like the task's input
//! partition: key = state key, value = the new value (none for a delete),
//! and a header `eddy.change` holding the change's number (8 bytes,
//! big-endian), counted from 0 over the task's whole history. Numbers are
//! a function of the input position like output sequences: the records
//! processed decide which changes are made, whatever the batches.
//!
//! The changelog is written by the task's exactly-once producer with the
//! outputs, so a replayed change is dropped by the leader like a replayed
//! output, and the commit records how many changes precede its position.
//! Restoring reads the changelog from its start and applies, in log order,
//! the records this task's producer wrote whose number is below the
//! committed count: changes past it belong to batches after the commit,
//! which the task is about to replay. Records of other producers (an
//! earlier pipeline of the same name) are skipped. [`restore_state`] does
//! that as a task starts, into a [`TaskStore`] (`store.rs`).
//!
//! After every [`MARKER_EVERY`] changes the task writes a commit marker:
//! a record with the count of changes its newest commit holds (header
//! `eddy.committed`). The cleaner compacts the changelog only up to what
//! the markers vouch for, so that changes past the commit (written, then
//! the task crashed) never replace a key's committed value, which the
//! restore needs. A marker's place among the records depends only on the
//! change numbers, so a replay sends it with the same sequence (its count
//! may differ: any count a marker holds was committed when it was sent).

use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use eddy_client::{Consumer, ConsumerConfig, ProducerRecord, Start};
use eddy_wasm::{StateBackend, StateChange, StateSession};

pub use store::TaskStore;

use super::position::CommitMetadata;
use super::stats::TaskStateStats;
use super::task::TaskSetup;
use crate::error::{Error, Result};

mod store;

/// The header that numbers a changelog record.
pub const CHANGE_HEADER: &str = eddy_log::CHANGE_HEADER;
/// A commit marker follows every this many changes.
pub const MARKER_EVERY: u64 = 256;
/// The key of the commit markers: stored keys start with a namespace byte
/// (0 to 2), never 0xFF.
const MARKER_KEY: &[u8] = b"\xffcommitted";
/// Bytes of changelog a restore buffers.
const RESTORE_FETCH_BYTES: u32 = 16 << 20;
/// How long a restore waits for the changelog to move before it fails (the
/// task is then retried).
const RESTORE_STALL: Duration = Duration::from_secs(30);

/// Which changelog records a restore applies.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RestoreUpTo {
    /// Those numbered below the commit's count of changes.
    Committed(u64),
    /// All of them: the input moved past the commit (retention or a lost
    /// log), so every change written is part of the history kept.
    Everything,
}

/// What a restore reads: one partition of a changelog, the records one
/// producer wrote there, as far as `up_to` says.
#[derive(Debug, Clone, Copy)]
pub struct Changelog<'a> {
    pub topic: &'a str,
    pub partition: u32,
    pub producer_id: i64,
    pub up_to: RestoreUpTo,
}

/// How a restore went, for the log and `pipeline describe`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Restored {
    /// Changelog records read and applied.
    pub applied: u64,
    /// Records skipped: past the commit, or another producer's.
    pub skipped: u64,
    pub elapsed_ms: u64,
}

/// The state of one stateful task.
#[derive(Debug)]
pub struct TaskState {
    store: Arc<TaskStore>,
    bytes_max: u64,
    /// The number the next change gets.
    next_change: u64,
    /// How many changes the newest commit holds, as far as the task knows.
    committed: u64,
    /// The highest timestamp of the records processed, and how far behind
    /// it the watermark stays.
    max_timestamp: Option<i64>,
    lateness_ms: i64,
    /// `spec.state.ttlMs`, if set.
    ttl_ms: Option<i64>,
}

/// Where a restore starts the task's event time.
#[derive(Debug, Clone, Copy)]
pub struct EventTime {
    pub max_timestamp: Option<i64>,
    pub lateness_ms: i64,
    /// `spec.state.ttlMs`, if set.
    pub ttl_ms: Option<i64>,
}

impl TaskState {
    /// Reads `changelog` up to its end as the task starts, into `store`
    /// (empty), a state of at most `bytes_max` bytes whose event time
    /// starts at `time`; `progress` hears the count of records applied as
    /// it grows.
    pub async fn restore(
        client: &eddy_client::Client,
        changelog: Changelog<'_>,
        store: TaskStore,
        bytes_max: u64,
        time: EventTime,
        progress: impl Fn(u64),
    ) -> Result<(TaskState, Restored)> {
        let Changelog {
            topic: changelog,
            partition,
            producer_id,
            up_to,
        } = changelog;
        let started = Instant::now();
        let store = Arc::new(store);
        let mut consumer = Consumer::new(
            client.clone(),
            ConsumerConfig {
                fetch_bytes_max: RESTORE_FETCH_BYTES,
                partition_bytes_max: RESTORE_FETCH_BYTES,
                auto_offset_reset: None,
            },
        );
        let end = consumer
            .resolve(changelog, partition, Start::Latest)
            .await?;
        let mut position = consumer
            .assign(changelog, partition, Start::Earliest)
            .await?;
        let mut restored = Restored::default();
        let mut highest: Option<u64> = None;
        let mut moved_at = Instant::now();
        while position < end {
            let fetched = consumer.poll(Duration::from_millis(500)).await?;
            if fetched.is_empty() {
                if moved_at.elapsed() > RESTORE_STALL {
                    return Err(Error::Internal(format!(
                        "restoring the state from {changelog:?} partition {partition} stalled at offset {position} of {end}; the task is retried"
                    )));
                }
                continue;
            }
            moved_at = Instant::now();
            for f in &fetched {
                let mut changes = Vec::new();
                read_changes(f, end, producer_id, |numbered| {
                    let Some((number, change)) = numbered else {
                        restored.skipped += 1;
                        return;
                    };
                    highest = Some(highest.map_or(number, |h| h.max(number)));
                    let wanted = match up_to {
                        RestoreUpTo::Committed(count) => number < count,
                        RestoreUpTo::Everything => true,
                    };
                    if wanted {
                        restored.applied += 1;
                        changes.push(change);
                    } else {
                        restored.skipped += 1;
                    }
                })?;
                store.apply(&changes)?;
                position = position.max(f.next_offset);
            }
            progress(restored.applied);
        }
        restored.elapsed_ms = started.elapsed().as_millis() as u64;
        let (next_change, committed) = match up_to {
            RestoreUpTo::Committed(count) => (count, count),
            RestoreUpTo::Everything => (highest.map_or(0, |h| h + 1), 0),
        };
        Ok((
            TaskState {
                store,
                bytes_max,
                next_change,
                committed,
                max_timestamp: time.max_timestamp,
                lateness_ms: time.lateness_ms,
                ttl_ms: time.ttl_ms,
            },
            restored,
        ))
    }

    /// A session for the calls of one batch.
    pub fn session(&self) -> StateSession {
        StateSession::new(self.store.clone(), self.bytes_max)
            .with_event_time(self.max_timestamp, self.lateness_ms)
            .with_ttl(self.ttl_ms)
    }

    /// Applies the changes of a batch's session and numbers them; returns
    /// them as changelog records for `partition`, stamped `timestamp_ms`.
    pub fn commit_changes(
        &mut self,
        mut session: StateSession,
        partition: u32,
        timestamp_ms: i64,
    ) -> Result<Vec<ProducerRecord>> {
        self.max_timestamp = session.max_timestamp();
        let changes = session.take_changes();
        self.store.apply(&changes)?;
        let mut records = Vec::with_capacity(changes.len() + 1);
        for c in changes {
            let number = self.next_change;
            self.next_change += 1;
            records.push(ProducerRecord {
                partition: Some(partition),
                key: Some(c.key),
                value: c.value,
                headers: vec![(
                    CHANGE_HEADER.to_string(),
                    Bytes::copy_from_slice(&number.to_be_bytes()),
                )],
                timestamp_ms: Some(timestamp_ms),
            });
            if self.next_change.is_multiple_of(MARKER_EVERY) {
                let count = Bytes::copy_from_slice(&self.committed.to_be_bytes());
                records.push(ProducerRecord {
                    partition: Some(partition),
                    key: Some(Bytes::from_static(MARKER_KEY)),
                    value: Some(count.clone()),
                    headers: vec![(eddy_log::COMMITTED_HEADER.to_string(), count)],
                    timestamp_ms: Some(timestamp_ms),
                });
            }
        }
        Ok(records)
    }

    /// A commit holding `changes` changes succeeded.
    pub fn committed(&mut self, changes: u64) {
        self.committed = self.committed.max(changes);
    }

    /// How many changes precede the next one: what a commit records.
    pub fn changes_made(&self) -> u64 {
        self.next_change
    }

    /// The highest timestamp processed: what a commit records.
    pub fn max_timestamp(&self) -> Option<i64> {
        self.max_timestamp
    }

    /// The watermark: the highest timestamp processed minus the allowed
    /// lateness (`None` before any record).
    pub fn watermark(&self) -> Option<i64> {
        self.max_timestamp
            .map(|m| m.saturating_sub(self.lateness_ms))
    }

    /// Whether a timer is due: registered at or before the watermark.
    /// A call without records fires it (see [`StateSession::next_timer_at`]).
    pub fn timer_due(&self) -> Result<bool> {
        let (Some(next), Some(watermark)) = (self.next_timer_at()?, self.watermark()) else {
            return Ok(false);
        };
        Ok(next <= watermark)
    }

    /// The time of the earliest timer registered, if any.
    pub fn next_timer_at(&self) -> Result<Option<i64>> {
        self.session()
            .next_timer_at()
            .map_err(|e| Error::Internal(format!("reading the task's timers: {e}")))
    }

    /// Moves event time on to `timestamp` without a record (a quiet input,
    /// `spec.eventTime.idleTimeoutMs`), as if a record stamped `timestamp`
    /// had been processed; a commit must record it before any call sees it.
    pub fn move_event_time_to(&mut self, timestamp: i64) {
        self.max_timestamp = Some(self.max_timestamp.map_or(timestamp, |m| m.max(timestamp)));
    }

    /// How far behind the highest timestamp the watermark stays.
    pub fn lateness_ms(&self) -> i64 {
        self.lateness_ms
    }

    /// Keys stored.
    pub fn keys(&self) -> u64 {
        self.store.keys()
    }

    /// Whether the state outgrew its memory budget and lives on disk.
    pub fn is_on_disk(&self) -> bool {
        self.store.is_on_disk()
    }

    /// Bytes of keys and values stored.
    pub fn bytes(&self) -> u64 {
        self.store.bytes()
    }
}

/// Where a stateful task resumes from: its changelog, the producer that
/// writes it, the commit, and whether the input moved past the commit.
pub struct Resume<'a> {
    pub changelog: &'a str,
    pub producer_id: i64,
    pub metadata: Option<&'a CommitMetadata>,
    pub moved: bool,
}

/// Restores a stateful task's state from its changelog, as of the commit
/// (everything written, when the input moved past it), reporting progress
/// in the pipeline's stats.
pub async fn restore_state(
    setup: &TaskSetup,
    topic: &str,
    partition: u32,
    id: u64,
    resume: Resume<'_>,
) -> Result<TaskState> {
    let def = &setup.def;
    let changelog = resume.changelog;
    let partitions = setup.partition_counts.get(changelog).copied().unwrap_or(0);
    if partition >= partitions {
        return Err(Error::Invalid(format!(
            "the state changelog {changelog:?} has {partitions} partitions, too few for input partition {partition}; grow it to match the input (eddy topic alter NAME --partitions N); the task is retried"
        )));
    }
    let up_to = if resume.moved {
        RestoreUpTo::Everything
    } else {
        RestoreUpTo::Committed(resume.metadata.and_then(|m| m.state_changes).unwrap_or(0))
    };
    let time = EventTime {
        max_timestamp: resume.metadata.and_then(|m| m.max_timestamp),
        lateness_ms: i64::from(def.spec.event_time.allowed_lateness_ms),
        ttl_ms: (def.spec.state.ttl_ms > 0).then_some(i64::from(def.spec.state.ttl_ms)),
    };
    let limits = &def.spec.limits;
    // Named by the task's id too: the task it takes over from may still be
    // closing its own on this worker.
    let file = setup
        .state_dir
        .join(def.id.to_string())
        .join(format!("{topic}-{partition}-{id}.redb"));
    let store = TaskStore::new(file, u64::from(limits.state_mib) << 20)?;
    setup
        .stats
        .update_state(partition, id, |s| s.restoring = true);
    let from = Changelog {
        topic: changelog,
        partition,
        producer_id: resume.producer_id,
        up_to,
    };
    let disk_max = u64::from(limits.state_disk_mib) << 20;
    let progress = |applied| {
        setup
            .stats
            .update_state(partition, id, |s| s.restored_records = applied);
    };
    let (state, restored) =
        TaskState::restore(&setup.client, from, store, disk_max, time, progress).await?;
    let (keys, bytes, on_disk) = (state.keys(), state.bytes(), state.is_on_disk());
    let watermark = state.watermark();
    setup.stats.update_state(partition, id, |s| {
        *s = TaskStateStats {
            keys,
            bytes,
            on_disk,
            restoring: false,
            restored_records: restored.applied,
            restore_ms: restored.elapsed_ms.max(1),
            watermark,
        };
    });
    tracing::info!(pipeline = %def.name, %topic, partition, keys, bytes, applied = restored.applied, skipped = restored.skipped, elapsed_ms = restored.elapsed_ms, "state restored from the changelog");
    Ok(state)
}

/// Calls `each` with the number and change of every changelog record of
/// `f` below `end` that `producer_id` wrote, and with `None` for a record
/// of another producer or one without a readable number.
fn read_changes(
    f: &eddy_client::Fetched,
    end: u64,
    producer_id: i64,
    mut each: impl FnMut(Option<(u64, StateChange)>),
) -> Result<()> {
    let damaged =
        |e: eddy_log::BatchError| Error::Internal(format!("a changelog batch is damaged: {e}"));
    for batch in eddy_log::batches(&f.bytes, eddy_log::BATCH_BYTES_LIMIT) {
        let batch = batch.map_err(damaged)?;
        let ours = batch.header.producer_id.0 == producer_id;
        let records = batch.decoded().map_err(damaged)?;
        for r in records.iter() {
            let r = r.map_err(damaged)?;
            if r.offset.0 < f.from || r.offset.0 >= end {
                continue;
            }
            let number = r
                .headers()
                .find(|(name, _)| *name == CHANGE_HEADER)
                .and_then(|(_, v)| <[u8; 8]>::try_from(v).ok())
                .map(u64::from_be_bytes);
            match (ours, number, r.key) {
                // Copied: a slice would keep the whole fetched buffer alive
                // for as long as the store holds the entry.
                (true, Some(number), Some(key)) => each(Some((
                    number,
                    StateChange {
                        key: Bytes::copy_from_slice(key),
                        value: r.value.map(Bytes::copy_from_slice),
                    },
                ))),
                _ => each(None),
            }
        }
    }
    Ok(())
}
