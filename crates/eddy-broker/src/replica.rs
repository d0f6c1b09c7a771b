//! What a partition replica knows about its place in the replica set: its
//! role and epochs, and as leader each follower's progress, from which the
//! high watermark and ISR changes follow. Pure bookkeeping, no I/O; the
//! partition holds it behind a lock.

use std::collections::BTreeMap;

use eddy_log::{LeaderEpoch, Offset};
use eddy_meta::{NodeId, PartitionMeta};

/// What this broker does for a partition.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    Leader,
    Follower {
        leader: NodeId,
    },
    /// No leader (none of the ISR is live), or not yet told.
    Offline,
}

/// What applying new metadata changed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Transition {
    Unchanged,
    /// Role or leader epoch changed.
    Changed,
}

/// A follower as its leader sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Progress {
    /// Everything below this is on the follower (its last fetch offset);
    /// unknown until it fetches from this leader.
    pub log_end: Option<Offset>,
    /// When it last had everything the leader had (Kafka's
    /// lastCaughtUpTime); it leaves the ISR when this gets too old.
    pub caught_up_ms: i64,
    /// The leader's log end and the time at its previous fetch: reaching
    /// that end in the next fetch counts as caught up as of that time, so
    /// a follower keeping pace with a busy leader stays in sync.
    last_fetch_leader_end: Offset,
    last_fetch_ms: i64,
}

#[derive(Debug, Clone)]
pub(crate) struct Leadership {
    pub role: Role,
    pub leader_epoch: LeaderEpoch,
    pub partition_epoch: u32,
    pub replicas: Vec<NodeId>,
    pub isr: Vec<NodeId>,
    /// As leader: the log end when this leader epoch began. A follower
    /// rejoins the ISR only once it has everything before it.
    pub epoch_start: Offset,
    /// As leader: every other replica's progress.
    pub followers: BTreeMap<NodeId, Progress>,
    /// An ISR change sent to the controller and not yet in the metadata.
    pub pending_isr: Option<Vec<NodeId>>,
}

impl Leadership {
    pub fn offline() -> Leadership {
        Leadership {
            role: Role::Offline,
            leader_epoch: LeaderEpoch(0),
            partition_epoch: 0,
            replicas: Vec::new(),
            isr: Vec::new(),
            epoch_start: Offset::ZERO,
            followers: BTreeMap::new(),
            pending_isr: None,
        }
    }

    /// Takes the metadata's word for the partition; `log_end` is this
    /// replica's log end now.
    pub fn apply(
        &mut self,
        me: NodeId,
        pm: &PartitionMeta,
        log_end: Offset,
        now_ms: i64,
    ) -> Transition {
        let role = match pm.leader {
            Some(l) if l == me => Role::Leader,
            Some(l) => Role::Follower { leader: l },
            None => Role::Offline,
        };
        let changed = role != self.role || pm.leader_epoch != self.leader_epoch;
        if pm.partition_epoch != self.partition_epoch || changed {
            self.pending_isr = None;
        }
        self.role = role;
        self.leader_epoch = pm.leader_epoch;
        self.partition_epoch = pm.partition_epoch;
        self.replicas = pm.replicas.clone();
        self.isr = pm.isr.clone();
        if changed && role == Role::Leader {
            self.epoch_start = log_end;
            self.followers.clear();
        }
        if role == Role::Leader {
            for r in pm.replicas.iter().filter(|r| **r != me) {
                self.followers.entry(*r).or_insert(Progress {
                    log_end: None,
                    // A grace period: lagging is counted from now.
                    caught_up_ms: now_ms,
                    last_fetch_leader_end: Offset::ZERO,
                    last_fetch_ms: now_ms,
                });
            }
            self.followers.retain(|r, _| pm.replicas.contains(r));
        } else {
            self.followers.clear();
        }
        if changed {
            Transition::Changed
        } else {
            Transition::Unchanged
        }
    }

    /// Records a follower's fetch from `fetch_offset` while the leader's
    /// log ends at `leader_end`.
    pub fn record_fetch(
        &mut self,
        replica: NodeId,
        fetch_offset: Offset,
        leader_end: Offset,
        now_ms: i64,
    ) {
        let Some(p) = self.followers.get_mut(&replica) else {
            return;
        };
        if fetch_offset >= leader_end {
            p.caught_up_ms = now_ms;
        } else if fetch_offset >= p.last_fetch_leader_end {
            p.caught_up_ms = p.caught_up_ms.max(p.last_fetch_ms);
        }
        p.log_end = Some(fetch_offset);
        p.last_fetch_leader_end = leader_end;
        p.last_fetch_ms = now_ms;
    }

    /// The offset below which every replica the high watermark must wait
    /// for has the data: the ISR, plus followers being added to it (the
    /// wider set while a change is pending, as Kafka does).
    pub fn high_watermark(&self, me: NodeId, leader_end: Offset) -> Offset {
        let mut hw = leader_end;
        let pending = self.pending_isr.iter().flatten();
        for r in self.isr.iter().chain(pending).filter(|r| **r != me) {
            match self.followers.get(r).and_then(|p| p.log_end) {
                Some(end) => hw = hw.min(end),
                // Not heard from since this leader took over.
                None => return Offset::ZERO,
            }
        }
        hw
    }

    /// The ISR this leader should ask the controller for, if it differs
    /// from the current one: followers that lagged longer than `lag_max_ms`
    /// leave, followers that caught up with the high watermark and this
    /// epoch's start join — if `live` (the controller would refuse a
    /// fenced broker: a follower that died caught up still looks caught up
    /// here until its lag passes `lag_max_ms`, and asking for it again and
    /// again would write a refused change to the metadata log each time).
    pub fn wanted_isr(
        &self,
        me: NodeId,
        hw: Offset,
        now_ms: i64,
        lag_max_ms: i64,
        live: &dyn Fn(NodeId) -> bool,
    ) -> Option<Vec<NodeId>> {
        if self.role != Role::Leader || self.pending_isr.is_some() {
            return None;
        }
        let mut isr: Vec<NodeId> = self
            .isr
            .iter()
            .copied()
            .filter(|r| {
                *r == me
                    || self
                        .followers
                        .get(r)
                        .is_some_and(|p| now_ms - p.caught_up_ms <= lag_max_ms)
            })
            .collect();
        for (r, p) in &self.followers {
            let caught_up = p
                .log_end
                .is_some_and(|end| end >= hw && end >= self.epoch_start);
            let recent = now_ms - p.caught_up_ms <= lag_max_ms;
            if !isr.contains(r) && caught_up && recent && live(*r) {
                isr.push(*r);
            }
        }
        if !isr.contains(&me) {
            isr.insert(0, me);
        }
        let mut a = isr.clone();
        let mut b = self.isr.clone();
        a.sort();
        b.sort();
        (a != b).then(|| {
            // In replica order, like the metadata's own lists.
            let mut ordered: Vec<NodeId> = self
                .replicas
                .iter()
                .copied()
                .filter(|r| isr.contains(r))
                .collect();
            ordered.extend(isr.iter().filter(|r| !self.replicas.contains(r)));
            ordered
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const ME: NodeId = NodeId(1);

    fn meta(leader: i32, epoch: i32, isr: &[i32]) -> PartitionMeta {
        PartitionMeta {
            replicas: vec![NodeId(1), NodeId(2), NodeId(3)],
            leader: Some(NodeId(leader)),
            leader_epoch: LeaderEpoch(epoch),
            isr: isr.iter().copied().map(NodeId).collect(),
            partition_epoch: 0,
        }
    }

    #[test]
    fn the_high_watermark_waits_for_every_isr_member() {
        let mut l = Leadership::offline();
        assert_eq!(
            l.apply(ME, &meta(1, 3, &[1, 2, 3]), Offset(10), 0),
            Transition::Changed
        );
        assert_eq!(
            l.high_watermark(ME, Offset(10)),
            Offset::ZERO,
            "followers unheard"
        );
        l.record_fetch(NodeId(2), Offset(10), Offset(10), 1);
        l.record_fetch(NodeId(3), Offset(7), Offset(10), 1);
        assert_eq!(l.high_watermark(ME, Offset(10)), Offset(7));
        l.record_fetch(NodeId(3), Offset(10), Offset(12), 2);
        assert_eq!(l.high_watermark(ME, Offset(12)), Offset(10));
        // Out of the ISR, a follower no longer holds it back.
        l.apply(
            ME,
            &PartitionMeta {
                partition_epoch: 1,
                ..meta(1, 3, &[1, 2])
            },
            Offset(12),
            3,
        );
        l.record_fetch(NodeId(2), Offset(12), Offset(12), 3);
        assert_eq!(l.high_watermark(ME, Offset(12)), Offset(12));
    }

    #[test]
    fn laggards_leave_the_isr_and_caught_up_followers_rejoin() {
        let mut l = Leadership::offline();
        l.apply(ME, &meta(1, 0, &[1, 2, 3]), Offset(0), 0);
        // Follower 2 keeps pace with a busy leader (never exactly at its
        // end, but always past where the leader was at its last fetch).
        for t in 1..100 {
            l.record_fetch(
                NodeId(2),
                Offset(t * 10),
                Offset(t * 10 + 5),
                t as i64 * 1000,
            );
        }
        // Follower 3 never fetches.
        let hw = l.high_watermark(ME, Offset(995));
        let wanted = l.wanted_isr(ME, hw, 99_000, 30_000, &|_| true);
        assert_eq!(wanted, Some(vec![NodeId(1), NodeId(2)]));
        l.apply(
            ME,
            &PartitionMeta {
                partition_epoch: 1,
                ..meta(1, 0, &[1, 2])
            },
            Offset(995),
            99_000,
        );
        let hw = l.high_watermark(ME, Offset(995));
        assert_eq!(hw, Offset(990));
        assert_eq!(l.wanted_isr(ME, hw, 99_000, 30_000, &|_| true), None);
        // Follower 3 comes back and catches up with the high watermark.
        l.record_fetch(NodeId(3), Offset(500), Offset(995), 99_500);
        assert_eq!(
            l.wanted_isr(ME, hw, 99_500, 30_000, &|_| true),
            None,
            "behind the high watermark"
        );
        l.record_fetch(NodeId(3), Offset(995), Offset(995), 100_000);
        assert_eq!(
            l.wanted_isr(ME, hw, 100_000, 30_000, &|_| true),
            Some(vec![NodeId(1), NodeId(2), NodeId(3)])
        );
    }

    #[test]
    fn a_follower_rejoins_only_past_the_start_of_the_leaders_epoch() {
        let mut l = Leadership::offline();
        l.apply(ME, &meta(1, 5, &[1]), Offset(100), 0);
        l.record_fetch(NodeId(2), Offset(80), Offset(100), 1);
        // The ISR is the leader alone, so the high watermark is its log end.
        let hw = l.high_watermark(ME, Offset(100));
        assert_eq!(hw, Offset(100));
        assert_eq!(
            l.wanted_isr(ME, Offset(80), 1, 30_000, &|_| true),
            None,
            "before the epoch start"
        );
        l.record_fetch(NodeId(2), Offset(100), Offset(100), 2);
        assert_eq!(
            l.wanted_isr(ME, hw, 2, 30_000, &|_| true),
            Some(vec![NodeId(1), NodeId(2)])
        );
    }

    #[test]
    fn a_fenced_follower_is_not_asked_back_into_the_isr() {
        let mut l = Leadership::offline();
        l.apply(ME, &meta(1, 0, &[1, 2]), Offset(100), 0);
        l.record_fetch(NodeId(2), Offset(100), Offset(100), 1);
        // The controller took follower 2 out (fenced: it died caught up).
        l.apply(
            ME,
            &PartitionMeta {
                partition_epoch: 1,
                ..meta(1, 0, &[1])
            },
            Offset(100),
            2,
        );
        let hw = l.high_watermark(ME, Offset(100));
        let fenced = |n: NodeId| n != NodeId(2);
        assert_eq!(l.wanted_isr(ME, hw, 3, 30_000, &fenced), None);
        assert_eq!(
            l.wanted_isr(ME, hw, 3, 30_000, &|_| true),
            Some(vec![NodeId(1), NodeId(2)]),
            "live again, it rejoins"
        );
    }

    #[test]
    fn a_new_epoch_forgets_follower_progress_and_a_follower_keeps_none() {
        let mut l = Leadership::offline();
        l.apply(ME, &meta(1, 0, &[1, 2, 3]), Offset(0), 0);
        l.record_fetch(NodeId(2), Offset(5), Offset(5), 1);
        assert_eq!(
            l.apply(ME, &meta(1, 0, &[1, 2, 3]), Offset(5), 2),
            Transition::Unchanged
        );
        assert_eq!(l.followers[&NodeId(2)].log_end, Some(Offset(5)));
        assert_eq!(
            l.apply(ME, &meta(2, 1, &[2, 3]), Offset(5), 3),
            Transition::Changed
        );
        assert_eq!(l.role, Role::Follower { leader: NodeId(2) });
        assert!(l.followers.is_empty());
        assert_eq!(
            l.apply(ME, &meta(1, 2, &[1, 3]), Offset(5), 4),
            Transition::Changed
        );
        assert_eq!(l.followers[&NodeId(2)].log_end, None);
        assert_eq!(l.epoch_start, Offset(5));
    }
}
