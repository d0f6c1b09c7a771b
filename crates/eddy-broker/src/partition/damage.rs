//! A leader whose own records fail to read back (a batch whose CRC no
//! longer matches, a flipped bit on disk) cannot serve them to consumers
//! or followers. It hands the partition to another in-sync replica, whose
//! copy is intact; once it follows, it cuts its log where the failed read
//! started and copies everything from there again from the new leader.
//! With no other replica in sync it keeps leading and serving what it can
//! read, and says so.

use eddy_log::{LeaderEpoch, Offset, ReadResult};
use eddy_meta::Resign;

use super::Partition;
use crate::replica::Role;

/// How long a refused hand-over waits before it is asked for again (a
/// follower may have caught up meanwhile).
const ASK_AGAIN_MS: i64 = 5_000;

/// What a replica found damaged in its own log.
#[derive(Debug)]
pub(super) struct Damage {
    /// The earliest failed read started here; the repair copies again
    /// from here on.
    from: Offset,
    reason: String,
    /// The epoch and time (ms) of the last hand-over asked for.
    asked: Option<(LeaderEpoch, i64)>,
}

impl Partition {
    /// Passes a read of this replica's log through, noting damage when it
    /// failed on corrupt data.
    pub(super) fn check_read(
        &self,
        from: Offset,
        read: eddy_log::Result<ReadResult>,
    ) -> eddy_log::Result<ReadResult> {
        if let Err(e @ eddy_log::Error::Corrupt { .. }) = &read {
            let mut damage = self.damage.lock();
            match &mut *damage {
                Some(d) => d.from = d.from.min(from),
                None => {
                    tracing::error!(
                        topic = %self.topic, partition = self.id.0, from = from.0, error = %e,
                        "this replica's records are damaged; handing the partition to an in-sync replica and copying them again from it"
                    );
                    *damage = Some(Damage {
                        from,
                        reason: e.to_string(),
                        asked: None,
                    });
                }
            }
        }
        read
    }

    /// The hand-over this replica should ask the controller for now: it
    /// leads and found its records damaged, and has not asked in this
    /// epoch lately.
    pub fn wanted_resignation(&self, now_ms: i64) -> Option<Resign> {
        let l = self.leadership.lock();
        if l.role != Role::Leader {
            return None;
        }
        let mut damage = self.damage.lock();
        let d = damage.as_mut()?;
        if let Some((epoch, at)) = d.asked
            && epoch == l.leader_epoch
            && now_ms - at < ASK_AGAIN_MS
        {
            return None;
        }
        d.asked = Some((l.leader_epoch, now_ms));
        Some(Resign {
            topic: self.topic.to_string(),
            partition: self.id.0,
            leader: self.me,
            leader_epoch: l.leader_epoch,
            reason: d.reason.clone(),
        })
    }

    /// As the replica becomes a follower: cuts the log where the damage
    /// was found, so that the fetches that follow copy the rest again.
    pub(super) fn repair_damage(&self) {
        let mut log = self.log.write();
        let mut damage = self.damage.lock();
        let Some(d) = damage.as_ref() else {
            return;
        };
        let cut = d.from.clamp(log.start_offset(), log.end_offset());
        match log.truncate_to(cut) {
            Ok(()) => {
                tracing::warn!(
                    topic = %self.topic, partition = self.id.0, from = cut.0,
                    "cut the damaged records; copying them again from the new leader"
                );
                *damage = None;
                self.high_watermark.send_if_modified(|hw| {
                    let above = *hw > cut;
                    if above {
                        *hw = cut;
                    }
                    above
                });
            }
            Err(e) => tracing::error!(
                topic = %self.topic, partition = self.id.0, error = %e,
                "could not cut the damaged records; restore this replica by deleting its directory while the broker is stopped"
            ),
        }
    }
}
