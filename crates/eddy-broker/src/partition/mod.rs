//! One partition replica hosted by this broker.
//!
//! The replica knows its role and leader epoch (stamped into every batch
//! it writes as leader) and keeps a high watermark: the offset below which
//! every in-sync replica has the data. Clients read only below it. As
//! leader it tracks each follower's fetches ([`Leadership`]), which move
//! the high watermark and tell when a follower leaves or rejoins the ISR;
//! as follower it appends what the leader sent, with the leader's offsets
//! and epochs, and truncates where its log diverged from the leader's.
//!
//! Methods here block on disk I/O; async callers run them on the blocking
//! pool. `replicate.rs` holds the two sides of a fetch between replicas,
//! `damage.rs` what a leader does when its own records fail to read back.

mod damage;
mod replicate;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use eddy_log::{
    AppendInfo, CheckedBatch, Clock, LeaderEpoch, Log, LogConfig, Offset, ProducerEpoch,
    ProducerId, ReadResult, Sequence, Timestamp,
};
use eddy_meta::{AlterIsr, NodeId, PartitionId, PartitionMeta, TopicId};
use parking_lot::{Mutex, RwLock};
use tokio::sync::{Notify, watch};

use crate::error::BrokerError;
pub use crate::replica::Role;
use crate::replica::{Leadership, Transition};
pub use replicate::{FetchPosition, FollowerFetch};

/// File in a partition directory naming the topic incarnation it belongs to.
pub const TOPIC_ID_FILE: &str = "topic-id";
/// File in a partition directory holding the last high watermark saved.
const HIGH_WATERMARK_FILE: &str = "high-watermark";

/// Where a partition's offsets stand.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PartitionOffsets {
    pub log_start: Offset,
    pub high_watermark: Offset,
    pub log_end: Offset,
    pub size_bytes: u64,
}

/// Where a reader wants to start.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StartAt {
    Earliest,
    Latest,
    Offset(Offset),
    Timestamp(Timestamp),
}

#[derive(Debug)]
pub struct Partition {
    pub topic: Arc<str>,
    pub id: PartitionId,
    pub topic_id: TopicId,
    pub dir: PathBuf,
    /// This broker.
    me: NodeId,
    log: RwLock<Log>,
    /// Lock order: `leadership`, then `log`.
    leadership: Mutex<Leadership>,
    /// The high watermark; fetch long-polls and acks=all wait on it.
    high_watermark: watch::Sender<Offset>,
    /// Shared by every partition of the broker: woken by each append, for
    /// followers' fetches waiting for new data.
    appended: Arc<Notify>,
    /// Records of this replica found damaged while it led. Lock order:
    /// after `log`.
    damage: Mutex<Option<damage::Damage>>,
}

/// Names the topic incarnation that owns `dir`, unless it already does.
/// Written whole or not at all (a temporary file renamed over it): a
/// directory whose id cannot be read is another incarnation's leftover
/// and gets removed, so a torn write here must never look like one.
fn write_topic_id(dir: &Path, topic_id: TopicId) -> eddy_log::Result<()> {
    let id_file = dir.join(TOPIC_ID_FILE);
    let id = topic_id.to_string();
    if std::fs::read_to_string(&id_file).is_ok_and(|s| s.trim() == id) {
        return Ok(());
    }
    let tmp = dir.join(format!("{TOPIC_ID_FILE}.tmp"));
    let io = |op: &'static str, path: &Path| {
        let path = path.to_path_buf();
        move |source| eddy_log::Error::Io { op, path, source }
    };
    let mut f = std::fs::File::create(&tmp).map_err(io("creating", &tmp))?;
    std::io::Write::write_all(&mut f, id.as_bytes()).map_err(io("writing", &tmp))?;
    f.sync_all().map_err(io("syncing", &tmp))?;
    std::fs::rename(&tmp, &id_file).map_err(io("renaming", &tmp))
}

impl Partition {
    /// Opens (recovering if needed) or creates the replica in `dir`. It
    /// starts offline; [`Partition::apply_metadata`] gives it its role.
    #[allow(clippy::too_many_arguments)]
    pub fn open(
        dir: &Path,
        topic: Arc<str>,
        id: PartitionId,
        topic_id: TopicId,
        me: NodeId,
        config: LogConfig,
        clock: Arc<dyn Clock>,
        appended: Arc<Notify>,
    ) -> eddy_log::Result<Partition> {
        let log = Log::open(dir, config, clock)?;
        write_topic_id(dir, topic_id)?;
        let recovery = log.recovery();
        if recovery.truncated_bytes > 0 || !recovery.corrupt_segments.is_empty() {
            tracing::warn!(
                %topic, partition = id.0, truncated_bytes = recovery.truncated_bytes,
                reason = recovery.truncation_reason.as_deref().unwrap_or(""),
                corrupt_segments = recovery.corrupt_segments.len(),
                "recovered partition after an unclean stop"
            );
        }
        // The last high watermark saved; a leader whose ISR is itself
        // alone moves it to its log end at once.
        let saved = std::fs::read_to_string(dir.join(HIGH_WATERMARK_FILE))
            .ok()
            .and_then(|s| s.trim().parse::<u64>().ok())
            .map_or(log.start_offset(), Offset);
        let hw = saved.clamp(log.start_offset(), log.end_offset());
        Ok(Partition {
            topic,
            id,
            topic_id,
            dir: dir.to_path_buf(),
            me,
            log: RwLock::new(log),
            leadership: Mutex::new(Leadership::offline()),
            high_watermark: watch::Sender::new(hw),
            appended,
            damage: Mutex::new(None),
        })
    }

    pub fn role(&self) -> Role {
        self.leadership.lock().role
    }

    pub fn leader_epoch(&self) -> LeaderEpoch {
        self.leadership.lock().leader_epoch
    }

    /// In-sync replicas, this one included, as the metadata has them.
    pub fn isr_size(&self) -> usize {
        self.leadership.lock().isr.len()
    }

    pub fn high_watermark(&self) -> Offset {
        *self.high_watermark.borrow()
    }

    /// A receiver that wakes whenever the high watermark moves (and when
    /// the replica's role changes, so that waiters look again).
    pub fn watch_high_watermark(&self) -> watch::Receiver<Offset> {
        self.high_watermark.subscribe()
    }

    /// Takes the metadata's word on leader, epochs and ISR. Returns
    /// whether the role or leader epoch changed.
    pub fn apply_metadata(&self, pm: &PartitionMeta, now_ms: i64) -> bool {
        let mut l = self.leadership.lock();
        let log_end = self.log.read().end_offset();
        let transition = l.apply(self.me, pm, log_end, now_ms);
        if l.role == Role::Leader {
            self.advance_high_watermark(&l, log_end);
        }
        if transition == Transition::Changed {
            if matches!(l.role, Role::Follower { .. }) {
                self.repair_damage();
            }
            // Waiters for acks=all re-check the role.
            self.high_watermark.send_modify(|_| {});
            tracing::info!(
                topic = %self.topic, partition = self.id.0, role = ?l.role,
                epoch = l.leader_epoch.0, "partition role changed"
            );
            return true;
        }
        false
    }

    /// Moves the high watermark forward to what the ISR has (never back).
    fn advance_high_watermark(&self, l: &Leadership, log_end: Offset) {
        let hw = l.high_watermark(self.me, log_end);
        self.high_watermark.send_if_modified(|current| {
            if hw > *current {
                *current = hw;
                true
            } else {
                false
            }
        });
    }

    fn not_leader(&self, l: &Leadership) -> BrokerError {
        BrokerError::NotLeader {
            topic: self.topic.to_string(),
            partition: self.id,
            leader: match l.role {
                Role::Follower { leader } => Some(leader),
                Role::Leader => Some(self.me),
                Role::Offline => None,
            },
            epoch: l.leader_epoch.0,
        }
    }

    fn log_error(&self) -> impl FnOnce(eddy_log::Error) -> BrokerError {
        BrokerError::log(&self.topic, self.id)
    }

    /// Appends a checked batch as leader.
    pub fn append<B: AsRef<[u8]>>(
        &self,
        batch: &CheckedBatch<B>,
    ) -> Result<AppendInfo, BrokerError> {
        let l = self.leadership.lock();
        if l.role != Role::Leader {
            return Err(self.not_leader(&l));
        }
        let mut log = self.log.write();
        let info = log
            .append_checked(batch, l.leader_epoch)
            .map_err(self.log_error())?;
        let end = log.end_offset();
        drop(log);
        self.advance_high_watermark(&l, end);
        drop(l);
        self.appended.notify_waiters();
        Ok(info)
    }

    /// The log end now: what a write just made waits to be replicated up to.
    pub fn log_end(&self) -> Offset {
        self.log.read().end_offset()
    }

    /// Waits until the ISR has everything below `end` (acks=all). Fails
    /// when this replica stops leading meanwhile, or after `timeout`.
    pub async fn wait_replicated(&self, end: Offset, timeout: Duration) -> Result<(), BrokerError> {
        let epoch = self.leader_epoch();
        let mut hw = self.watch_high_watermark();
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            {
                let l = self.leadership.lock();
                if l.role != Role::Leader || l.leader_epoch != epoch {
                    return Err(self.not_leader(&l));
                }
            }
            if *hw.borrow_and_update() >= end {
                return Ok(());
            }
            match tokio::time::timeout_at(deadline, hw.changed()).await {
                Ok(Ok(())) => {}
                Ok(Err(_)) => return Err(BrokerError::ShuttingDown),
                Err(_) => {
                    return Err(BrokerError::NotReplicated {
                        topic: self.topic.to_string(),
                        partition: self.id,
                        waited_ms: timeout.as_millis() as u64,
                    });
                }
            }
        }
    }

    /// The ISR change this leader should ask the controller for, if any;
    /// marked pending until the metadata answers (or
    /// [`Partition::isr_change_failed`]).
    pub fn wanted_isr_change(
        &self,
        now_ms: i64,
        lag_max_ms: i64,
        live: &dyn Fn(NodeId) -> bool,
    ) -> Option<AlterIsr> {
        let mut l = self.leadership.lock();
        let hw = self.high_watermark();
        let isr = l.wanted_isr(self.me, hw, now_ms, lag_max_ms, live)?;
        l.pending_isr = Some(isr.clone());
        Some(AlterIsr {
            topic: self.topic.to_string(),
            partition: self.id.0,
            leader: self.me,
            leader_epoch: l.leader_epoch,
            partition_epoch: l.partition_epoch,
            isr,
        })
    }

    /// The controller refused or did not get an ISR change: the next
    /// check may ask again.
    pub fn isr_change_failed(&self) {
        self.leadership.lock().pending_isr = None;
    }

    /// Saves the high watermark, so that a restarted replica does not
    /// start from its log start.
    pub fn checkpoint_high_watermark(&self) -> eddy_log::Result<()> {
        let hw = self.high_watermark();
        let path = self.dir.join(HIGH_WATERMARK_FILE);
        let tmp = self.dir.join(format!("{HIGH_WATERMARK_FILE}.tmp"));
        std::fs::write(&tmp, hw.0.to_string())
            .and_then(|()| std::fs::rename(&tmp, &path))
            .map_err(|source| eddy_log::Error::Io {
                op: "writing",
                path,
                source,
            })
    }

    /// Whole batches from `from`, up to `max_bytes`, below the high
    /// watermark: for consumers, at the leader only. A follower's log may
    /// be behind or about to be cut back, so a position a reader got from
    /// the leader could look out of range here and send it back to the
    /// start of the log (Eddy's readers follow the leader).
    pub fn read(&self, from: Offset, max_bytes: usize) -> Result<ReadResult, BrokerError> {
        self.require_leader()?;
        let log = self.log.read();
        let read = log.read(from, max_bytes, Some(self.high_watermark()));
        self.check_read(from, read).map_err(self.log_error())
    }

    /// Refuses a consumer's request at a replica that does not lead.
    fn require_leader(&self) -> Result<(), BrokerError> {
        let l = self.leadership.lock();
        if l.role != Role::Leader {
            return Err(self.not_leader(&l));
        }
        Ok(())
    }

    /// Whole batches from `from` up to the log end, high watermark or not:
    /// for a new leader loading its own state (group offsets), which must
    /// see what the old leader wrote before the followers confirm it to
    /// this one.
    pub fn read_to_log_end(&self, from: Offset, max_bytes: usize) -> eddy_log::Result<ReadResult> {
        let read = self.log.read().read(from, max_bytes, None);
        self.check_read(from, read)
    }

    /// What this replica, as the leader, knows of an idempotent producer:
    /// its newest epoch and the last sequence written. A follower answers
    /// `NOT_LEADER`: its view may be behind the leader's.
    pub fn leader_producer(
        &self,
        id: ProducerId,
    ) -> Result<Option<(ProducerEpoch, Sequence)>, BrokerError> {
        let l = self.leadership.lock();
        if l.role != Role::Leader {
            return Err(self.not_leader(&l));
        }
        Ok(self.log.read().producer_state().last_sequence(id))
    }

    pub fn offsets(&self) -> PartitionOffsets {
        let log = self.log.read();
        PartitionOffsets {
            log_start: log.start_offset(),
            high_watermark: self.high_watermark(),
            log_end: log.end_offset(),
            size_bytes: log.size_bytes(),
        }
    }

    /// The offset a reader starting at `at` should fetch first. A
    /// timestamp after every record resolves to the high watermark.
    ///
    /// An offset between the high watermark and the log end is valid: it
    /// is readable once the ISR has it. A leader that just restarted
    /// starts from its checkpointed high watermark, below what its
    /// readers have already seen; refusing their positions would send
    /// them back to the start.
    ///
    /// At the leader only, as [`Partition::read`].
    pub fn resolve(&self, at: StartAt) -> Result<Offset, BrokerError> {
        self.require_leader()?;
        let log = self.log.read();
        let hw = self.high_watermark();
        Ok(match at {
            StartAt::Earliest => log.start_offset(),
            StartAt::Latest => hw,
            StartAt::Offset(o) => {
                if o < log.start_offset() || o > log.end_offset() {
                    return Err(self.log_error()(eddy_log::Error::OffsetOutOfRange {
                        requested: o,
                        start: log.start_offset(),
                        end: log.end_offset(),
                    }));
                }
                o
            }
            StartAt::Timestamp(ts) => log
                .offset_for_timestamp(ts)
                .map_err(self.log_error())?
                .map_or(hw, |o| o.min(hw)),
        })
    }

    /// The first record below the high watermark whose timestamp is at
    /// least `ts`: its offset and timestamp (`None`: every record there is
    /// older).
    pub fn record_for_timestamp(
        &self,
        ts: Timestamp,
    ) -> Result<Option<(Offset, Timestamp)>, BrokerError> {
        self.require_leader()?;
        let hw = self.high_watermark();
        let found = self
            .log
            .read()
            .record_for_timestamp(ts)
            .map_err(self.log_error())?;
        Ok(found.filter(|(offset, _)| *offset < hw))
    }

    /// Where the newest epoch at or below `epoch` ended on this leader's
    /// log, the log end for the current epoch (Kafka's
    /// OffsetForLeaderEpoch, with which a consumer notices a log truncated
    /// under it); `None` when every epoch here is newer. `current`, the
    /// asker's idea of the leader epoch, must be this leader's.
    pub fn epoch_end(
        &self,
        current: Option<LeaderEpoch>,
        epoch: LeaderEpoch,
    ) -> Result<Option<(LeaderEpoch, Offset)>, BrokerError> {
        let l = self.leadership.lock();
        if l.role != Role::Leader {
            return Err(self.not_leader(&l));
        }
        if let Some(sent) = current
            && sent != l.leader_epoch
        {
            return Err(BrokerError::LeaderEpochMismatch {
                topic: self.topic.to_string(),
                partition: self.id,
                sent: sent.0,
                current: l.leader_epoch.0,
            });
        }
        Ok(self.log.read().end_offset_for_epoch(epoch))
    }

    /// Replaces the log settings (the topic's configs changed).
    pub fn set_config(&self, config: LogConfig) -> eddy_log::Result<()> {
        self.log.write().set_config(config)
    }

    /// Interval fsync, retention and compaction. Compaction's heavy part
    /// runs without the log lock.
    ///
    /// Retention runs even when the flush or the producer snapshot fails:
    /// on a full disk those writes fail, and deleting old segments is what
    /// frees space. The first such error is returned afterwards.
    pub fn housekeeping(&self, retention: bool) -> eddy_log::Result<()> {
        let flushed = self.log.write().flush_if_due().map(|_| ());
        if !retention {
            return flushed;
        }
        let checkpointed = self.log.write().checkpoint_producers();
        if let Ok(expired @ 1..) = checkpointed {
            tracing::info!(topic = %self.topic, partition = self.id.0, expired, "forgot idle producers");
        }
        let deleted = self.log.write().apply_retention()?;
        if deleted.segments_deleted > 0 {
            tracing::info!(topic = %self.topic, partition = self.id.0, segments = deleted.segments_deleted, bytes = deleted.bytes_deleted, "retention deleted segments");
        }
        let job = self.log.read().compaction_job();
        if let Some(job) = job {
            let output = job.run()?;
            // Installed even when nothing was cleaned: the log remembers
            // the pass, and skips the next until something changes.
            let cleaned = output.cleaned_segments();
            let stats = self.log.write().install_compaction(output)?;
            if cleaned > 0 {
                tracing::info!(topic = %self.topic, partition = self.id.0, removed = stats.records_removed, "compacted");
            }
        }
        flushed.and(checkpointed.map(|_| ()))
    }

    /// Flushes everything to disk (clean shutdown).
    pub fn flush(&self) -> eddy_log::Result<()> {
        self.log.write().flush()?;
        self.checkpoint_high_watermark()
    }
}
