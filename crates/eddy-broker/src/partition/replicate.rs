//! The two sides of a fetch between replicas: the leader serving a
//! follower (checking its epochs, recording its progress) and the follower
//! applying the answer (appending with the leader's offsets and epochs,
//! truncating where its log diverged, starting over past the leader's log
//! start).

use bytes::Bytes;
use eddy_log::{LeaderEpoch, Log, Offset};
use eddy_meta::NodeId;

use super::Partition;
use crate::error::BrokerError;
use crate::replica::Role;

/// What a leader sends a follower for one partition.
#[derive(Debug)]
pub enum FollowerFetch {
    /// Batches from the fetch offset (possibly none yet).
    Records {
        bytes: Bytes,
        high_watermark: Offset,
        log_start: Offset,
    },
    /// The follower's log diverged: it must cut at the smaller of
    /// `end_offset` and its own end of `epoch` (no epoch: its log start).
    Diverging {
        epoch: Option<LeaderEpoch>,
        end_offset: Offset,
        high_watermark: Offset,
        log_start: Offset,
    },
    /// The follower is behind the leader's log start: it must start over
    /// there.
    Behind { log_start: Offset },
}

/// What a follower asks its leader for, per partition.
#[derive(Debug, Clone, Copy)]
pub struct FetchPosition {
    pub fetch_offset: Offset,
    pub last_fetched_epoch: Option<LeaderEpoch>,
    pub leader_epoch: LeaderEpoch,
}

impl Partition {
    /// Serves a follower's fetch as leader: checks its epochs, records its
    /// progress (which may move the high watermark), and reads what comes
    /// next, up to the log end.
    pub fn serve_follower(
        &self,
        replica: NodeId,
        position: FetchPosition,
        max_bytes: usize,
        now_ms: i64,
    ) -> Result<FollowerFetch, BrokerError> {
        let mut l = self.leadership.lock();
        if l.role != Role::Leader {
            return Err(self.not_leader(&l));
        }
        if position.leader_epoch != l.leader_epoch {
            return Err(BrokerError::LeaderEpochMismatch {
                topic: self.topic.to_string(),
                partition: self.id,
                sent: position.leader_epoch.0,
                current: l.leader_epoch.0,
            });
        }
        if !l.replicas.contains(&replica) {
            return Err(BrokerError::InvalidRequest(format!(
                "broker {replica} is not a replica of {}-{}",
                self.topic, self.id.0
            )));
        }
        let log = self.log.read();
        let (start, end) = (log.start_offset(), log.end_offset());
        let hw = self.high_watermark();
        let fetch = position.fetch_offset;
        // Where the follower's last epoch ends on this log: past it, or a
        // different epoch there, and the logs diverged.
        let diverged = match position.last_fetched_epoch {
            Some(epoch) => match log.end_offset_for_epoch(epoch) {
                Some((e, e_end)) if e == epoch && e_end >= fetch => None,
                Some((e, e_end)) => Some((Some(e), e_end)),
                None => Some((None, start)),
            },
            None => None,
        };
        if let Some((epoch, end_offset)) = diverged {
            return Ok(FollowerFetch::Diverging {
                epoch,
                end_offset,
                high_watermark: hw,
                log_start: start,
            });
        }
        if fetch > end {
            // Ahead without an epoch to compare: cut back to this log.
            return Ok(FollowerFetch::Diverging {
                epoch: log.latest_epoch(),
                end_offset: end,
                high_watermark: hw,
                log_start: start,
            });
        }
        if fetch < start {
            return Ok(FollowerFetch::Behind { log_start: start });
        }
        l.record_fetch(replica, fetch, end, now_ms);
        self.advance_high_watermark(&l, end);
        drop(l);
        let read = self
            .check_read(fetch, log.read(fetch, max_bytes, None))
            .map_err(self.log_error())?;
        Ok(FollowerFetch::Records {
            bytes: read.bytes,
            high_watermark: self.high_watermark(),
            log_start: start,
        })
    }

    /// What to ask the leader for as a follower of `leader`; `None` when
    /// this replica does not follow it (any more).
    pub fn fetch_position(&self, leader: NodeId) -> Option<FetchPosition> {
        let l = self.leadership.lock();
        if l.role != (Role::Follower { leader }) {
            return None;
        }
        let log = self.log.read();
        Some(FetchPosition {
            fetch_offset: log.end_offset(),
            last_fetched_epoch: log.latest_epoch(),
            leader_epoch: l.leader_epoch,
        })
    }

    /// Applies a leader's answer as its follower in `epoch`. An answer for
    /// an older role or epoch is dropped.
    pub fn apply_fetched(
        &self,
        leader: NodeId,
        epoch: LeaderEpoch,
        fetched: FollowerFetch,
    ) -> Result<(), BrokerError> {
        let l = self.leadership.lock();
        if l.role != (Role::Follower { leader }) || l.leader_epoch != epoch {
            return Ok(());
        }
        let mut log = self.log.write();
        let set_hw = |leader_hw: Offset, log: &Log| {
            let hw = leader_hw.min(log.end_offset()).max(log.start_offset());
            self.high_watermark.send_if_modified(|current| {
                let changed = *current != hw;
                *current = hw;
                changed
            });
        };
        match fetched {
            FollowerFetch::Records {
                bytes,
                high_watermark,
                ..
            } => {
                let limit = eddy_log::BATCH_BYTES_LIMIT;
                let mut rest = bytes;
                while !rest.is_empty() {
                    let size = eddy_log::BatchHeader::parse(&rest)
                        .map_err(|e| self.log_error()(e.into()))?
                        .total_len();
                    if size > rest.len() {
                        return Err(self.log_error()(
                            eddy_log::BatchError::Truncated {
                                needed: size,
                                available: rest.len(),
                            }
                            .into(),
                        ));
                    }
                    let one = rest.split_to(size);
                    let batch =
                        eddy_log::check_replicated_batch(one, limit).map_err(self.log_error())?;
                    log.append_replicated(&batch).map_err(self.log_error())?;
                }
                set_hw(high_watermark, &log);
            }
            FollowerFetch::Diverging {
                epoch: diverging,
                end_offset,
                high_watermark,
                ..
            } => {
                let own = diverging.and_then(|e| log.end_offset_for_epoch(e));
                let cut = match own {
                    Some((_, own_end)) => own_end.min(end_offset),
                    None => log.start_offset(),
                };
                let cut = cut.clamp(log.start_offset(), log.end_offset());
                tracing::info!(
                    topic = %self.topic, partition = self.id.0, from = log.end_offset().0,
                    to = cut.0, "truncating a diverged follower log"
                );
                log.truncate_to(cut).map_err(self.log_error())?;
                set_hw(high_watermark, &log);
            }
            FollowerFetch::Behind { log_start } => {
                tracing::info!(
                    topic = %self.topic, partition = self.id.0, at = log_start.0,
                    "follower is behind the leader's log start; starting over there"
                );
                log.reset_to(log_start).map_err(self.log_error())?;
                set_hw(log_start, &log);
            }
        }
        Ok(())
    }
}
