//! One partition replica hosted by this broker.
//!
//! Shaped for replication from the start: the replica knows its role and
//! leader epoch (stamped into every batch it writes) and keeps a high
//! watermark, the offset below which every in-sync replica has the data.
//! Fetches are served only below it. With a single replica the high
//! watermark moves with every append.
//!
//! Methods here block on disk I/O; async callers run them on the blocking pool.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use eddy_log::{
    AppendInfo, CheckedBatch, Clock, LeaderEpoch, Log, LogConfig, Offset, ProducerEpoch,
    ProducerId, ReadResult, Sequence, Timestamp,
};
use eddy_meta::{NodeId, PartitionId, TopicId};
use parking_lot::RwLock;
use tokio::sync::watch;

/// File in a partition directory naming the topic incarnation it belongs to.
pub const TOPIC_ID_FILE: &str = "topic-id";

/// What this broker does for a partition.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    Leader,
    Follower { leader: NodeId },
}

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
    role: Role,
    leader_epoch: LeaderEpoch,
    log: RwLock<Log>,
    /// The high watermark; fetch long-polls wait on its changes.
    high_watermark: watch::Sender<Offset>,
    /// Replicas in sync, this one included.
    isr_size: usize,
}

impl Partition {
    /// Opens (recovering if needed) or creates the replica in `dir`.
    pub fn open(
        dir: &Path,
        topic: Arc<str>,
        id: PartitionId,
        topic_id: TopicId,
        leader_epoch: LeaderEpoch,
        config: LogConfig,
        clock: Arc<dyn Clock>,
    ) -> eddy_log::Result<Partition> {
        let log = Log::open(dir, config, clock)?;
        let id_file = dir.join(TOPIC_ID_FILE);
        std::fs::write(&id_file, topic_id.to_string()).map_err(|source| eddy_log::Error::Io {
            op: "writing",
            path: id_file,
            source,
        })?;
        let recovery = log.recovery();
        if recovery.truncated_bytes > 0 || !recovery.corrupt_segments.is_empty() {
            tracing::warn!(
                %topic, partition = id.0, truncated_bytes = recovery.truncated_bytes,
                reason = recovery.truncation_reason.as_deref().unwrap_or(""),
                corrupt_segments = recovery.corrupt_segments.len(),
                "recovered partition after an unclean stop"
            );
        }
        let end = log.end_offset();
        Ok(Partition {
            topic,
            id,
            topic_id,
            dir: dir.to_path_buf(),
            role: Role::Leader,
            leader_epoch,
            log: RwLock::new(log),
            high_watermark: watch::Sender::new(end),
            isr_size: 1,
        })
    }

    pub fn role(&self) -> Role {
        self.role
    }

    pub fn leader_epoch(&self) -> LeaderEpoch {
        self.leader_epoch
    }

    pub fn isr_size(&self) -> usize {
        self.isr_size
    }

    pub fn high_watermark(&self) -> Offset {
        *self.high_watermark.borrow()
    }

    /// A receiver that wakes whenever the high watermark moves.
    pub fn watch_high_watermark(&self) -> watch::Receiver<Offset> {
        self.high_watermark.subscribe()
    }

    /// Appends a checked batch as leader.
    pub fn append<B: AsRef<[u8]>>(&self, batch: &CheckedBatch<B>) -> eddy_log::Result<AppendInfo> {
        let mut log = self.log.write();
        let info = log.append_checked(batch, self.leader_epoch)?;
        // One replica: everything written is replicated. Sent under the
        // lock so the watermark only moves forward.
        let end = log.end_offset();
        debug_assert!(end >= self.high_watermark());
        self.high_watermark.send_replace(end);
        Ok(info)
    }

    /// Whole batches from `from`, up to `max_bytes`, below the high watermark.
    pub fn read(&self, from: Offset, max_bytes: usize) -> eddy_log::Result<ReadResult> {
        let log = self.log.read();
        log.read(from, max_bytes, Some(self.high_watermark()))
    }

    /// What this replica knows of an idempotent producer: its newest epoch
    /// and the last sequence written.
    pub fn producer(&self, id: ProducerId) -> Option<(ProducerEpoch, Sequence)> {
        self.log.read().producer_state().last_sequence(id)
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
    pub fn resolve(&self, at: StartAt) -> eddy_log::Result<Offset> {
        let log = self.log.read();
        let hw = self.high_watermark();
        Ok(match at {
            StartAt::Earliest => log.start_offset(),
            StartAt::Latest => hw,
            StartAt::Offset(o) => {
                if o < log.start_offset() || o > hw {
                    return Err(eddy_log::Error::OffsetOutOfRange {
                        requested: o,
                        start: log.start_offset(),
                        end: hw,
                    });
                }
                o
            }
            StartAt::Timestamp(ts) => log.offset_for_timestamp(ts)?.map_or(hw, |o| o.min(hw)),
        })
    }

    /// Replaces the log settings (the topic's configs changed).
    pub fn set_config(&self, config: LogConfig) -> eddy_log::Result<()> {
        self.log.write().set_config(config)
    }

    /// Interval fsync, retention and compaction. Compaction's heavy part
    /// runs without the log lock.
    pub fn housekeeping(&self, retention: bool) -> eddy_log::Result<()> {
        self.log.write().flush_if_due()?;
        if !retention {
            return Ok(());
        }
        let expired = self.log.write().checkpoint_producers()?;
        if expired > 0 {
            tracing::info!(topic = %self.topic, partition = self.id.0, expired, "forgot idle producers");
        }
        let deleted = self.log.write().apply_retention()?;
        if deleted.segments_deleted > 0 {
            tracing::info!(topic = %self.topic, partition = self.id.0, segments = deleted.segments_deleted, bytes = deleted.bytes_deleted, "retention deleted segments");
        }
        let job = self.log.read().compaction_job();
        if let Some(job) = job {
            let output = job.run()?;
            if output.cleaned_segments() > 0 {
                let stats = self.log.write().install_compaction(output)?;
                tracing::info!(topic = %self.topic, partition = self.id.0, removed = stats.records_removed, "compacted");
            }
        }
        Ok(())
    }

    /// Flushes everything to disk (clean shutdown).
    pub fn flush(&self) -> eddy_log::Result<()> {
        self.log.write().flush()
    }
}
