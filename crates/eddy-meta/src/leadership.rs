//! Who leads each partition: fencing brokers that stopped heartbeating,
//! electing new leaders from the in-sync replicas, the ISR changes
//! partition leaders ask for (Kafka's AlterPartition), and a leader handing
//! over a partition whose replica it found damaged.
//!
//! Every leader change bumps the partition's leader epoch; every change of
//! leader or ISR bumps its partition epoch, which an ISR change must name,
//! so a leader acting on an old view is refused instead of undoing a newer
//! decision.

use eddy_log::LeaderEpoch;

use crate::error::{MetaError, Result};
use crate::state::{MetaState, NodeId, PartitionMeta, TopicMeta};

/// The topic config that allows electing a replica outside the ISR when no
/// ISR member is left (losing the records only the ISR had).
pub const UNCLEAN_ELECTION_CONFIG: &str = "unclean.leader.election.enable";

impl TopicMeta {
    /// Whether the topic allows unclean leader election.
    pub fn unclean_election(&self) -> bool {
        self.configs
            .get(UNCLEAN_ELECTION_CONFIG)
            .is_some_and(|v| v == "true")
    }
}

impl MetaState {
    /// Whether `id` is registered and not fenced.
    pub fn is_live(&self, id: NodeId) -> bool {
        self.brokers.get(&id).is_some_and(|b| !b.fenced)
    }

    /// Registered brokers that are not fenced, by id.
    pub fn live_brokers(&self) -> Vec<NodeId> {
        self.brokers
            .values()
            .filter(|b| !b.fenced)
            .map(|b| b.id)
            .collect()
    }

    pub(crate) fn check_set_fenced(&self, id: NodeId) -> Result<()> {
        if !self.brokers.contains_key(&id) {
            return Err(MetaError::Invalid(format!("broker {id} is not registered")));
        }
        Ok(())
    }

    /// Fences or unfences a broker and re-elects leaders: a fenced broker
    /// leaves every ISR it can (the last member stays, so that it can lead
    /// again when it returns) and its partitions get new leaders; an
    /// unfenced broker takes the leaderless partitions it may lead.
    pub(crate) fn apply_set_fenced(&mut self, id: NodeId, fenced: bool) {
        let Some(broker) = self.brokers.get_mut(&id) else {
            return;
        };
        broker.fenced = fenced;
        let live: Vec<NodeId> = self.live_brokers();
        for topic in self.topics.values_mut() {
            let unclean = topic.unclean_election();
            for p in &mut topic.partitions {
                if !p.replicas.contains(&id) {
                    continue;
                }
                if fenced {
                    fence_replica(p, id, &live, unclean);
                } else if p.leader.is_none() {
                    elect(p, &live, unclean);
                }
            }
        }
    }

    pub(crate) fn check_alter_isr(&self, a: &AlterIsr) -> Result<()> {
        let p = self.partition(&a.topic, a.partition)?;
        let stale = |why: String| {
            Err(MetaError::Invalid(format!(
                "{}-{}: ISR change refused: {why}; the leader retries with fresh metadata",
                a.topic, a.partition
            )))
        };
        if let Err(why) = led_by(p, a.leader, a.leader_epoch) {
            return stale(why);
        }
        if p.partition_epoch != a.partition_epoch {
            return stale(format!(
                "partition epoch {} is not the current {}",
                a.partition_epoch, p.partition_epoch
            ));
        }
        if !a.isr.contains(&a.leader) {
            return stale("the leader must stay in the ISR".into());
        }
        let mut seen = a.isr.clone();
        seen.sort();
        seen.dedup();
        if seen.len() != a.isr.len() || a.isr.iter().any(|r| !p.replicas.contains(r)) {
            return stale(format!(
                "ISR {:?} is not a set of the replicas {:?}",
                ids(&a.isr),
                ids(&p.replicas)
            ));
        }
        if let Some(dead) = a
            .isr
            .iter()
            .find(|r| !p.isr.contains(r) && !self.is_live(**r))
        {
            return stale(format!("broker {dead} is fenced and cannot join the ISR"));
        }
        Ok(())
    }

    pub(crate) fn check_resign(&self, r: &Resign) -> Result<()> {
        let p = self.partition(&r.topic, r.partition)?;
        if let Err(why) = led_by(p, r.leader, r.leader_epoch) {
            return Err(MetaError::Invalid(format!(
                "{}-{}: {why}; nothing to hand over",
                r.topic, r.partition
            )));
        }
        if !p
            .replicas
            .iter()
            .any(|m| *m != r.leader && p.isr.contains(m) && self.is_live(*m))
        {
            return Err(MetaError::Invalid(format!(
                "{}-{}: broker {} cannot hand leadership over: no other live replica is in sync (ISR {:?}); \
                 it keeps serving what it can read until a replica catches up, or the partition is restored",
                r.topic,
                r.partition,
                r.leader,
                ids(&p.isr)
            )));
        }
        Ok(())
    }

    /// The leader leaves the ISR and another live member of it leads
    /// (`check_resign` passed against this same state).
    pub(crate) fn apply_resign(&mut self, r: &Resign) {
        let live = self.live_brokers();
        if let Some(p) = self
            .topics
            .get_mut(&r.topic)
            .and_then(|t| t.partitions.get_mut(r.partition as usize))
        {
            p.isr.retain(|m| *m != r.leader);
            p.leader = None;
            elect(p, &live, false);
        }
    }

    pub(crate) fn apply_alter_isr(&mut self, a: &AlterIsr) {
        if let Some(p) = self
            .topics
            .get_mut(&a.topic)
            .and_then(|t| t.partitions.get_mut(a.partition as usize))
        {
            p.isr = a.isr.clone();
            p.partition_epoch += 1;
        }
    }

    fn partition(&self, topic: &str, partition: u32) -> Result<&PartitionMeta> {
        let t = self.topic(topic)?;
        t.partitions.get(partition as usize).ok_or_else(|| {
            MetaError::Invalid(format!(
                "{topic} has {} partitions, not {}",
                t.partitions.len(),
                partition + 1
            ))
        })
    }
}

/// A partition leader's request to change its ISR.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct AlterIsr {
    pub topic: String,
    pub partition: u32,
    pub leader: NodeId,
    pub leader_epoch: LeaderEpoch,
    /// The partition epoch the leader's view is from.
    pub partition_epoch: u32,
    pub isr: Vec<NodeId>,
}

/// A partition leader that found its own replica damaged (records it
/// cannot read back) hands the partition to another in-sync replica, and
/// copies the damaged part from it as a follower.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Resign {
    pub topic: String,
    pub partition: u32,
    pub leader: NodeId,
    pub leader_epoch: LeaderEpoch,
    /// What the leader found, for the operator reading the metadata log.
    pub reason: String,
}

/// Whether `leader` leads `p` in `epoch`; if not, what the metadata says.
fn led_by(p: &PartitionMeta, leader: NodeId, epoch: LeaderEpoch) -> Result<(), String> {
    if p.leader == Some(leader) && p.leader_epoch == epoch {
        return Ok(());
    }
    Err(format!(
        "broker {leader} in epoch {epoch} does not lead it (the metadata has {} in epoch {})",
        p.leader
            .map_or("no leader".to_string(), |l| format!("broker {l}")),
        p.leader_epoch
    ))
}

fn fence_replica(p: &mut PartitionMeta, id: NodeId, live: &[NodeId], unclean: bool) {
    let before = (p.leader, p.isr.len());
    if p.isr.len() > 1 {
        p.isr.retain(|r| *r != id);
    }
    if p.leader == Some(id) {
        p.leader = None;
        elect(p, live, unclean);
        if p.leader.is_none() {
            // Offline: the epoch still moves, so the fenced broker's
            // followers and clients stop treating it as the leader.
            p.leader_epoch = LeaderEpoch(p.leader_epoch.0 + 1);
        }
    }
    if (p.leader, p.isr.len()) != before {
        p.partition_epoch += 1;
    }
}

/// Gives a leaderless partition the first live ISR member (in replica
/// order, so the preferred leader when it can), or with `unclean` any live
/// replica, which then is the whole ISR.
fn elect(p: &mut PartitionMeta, live: &[NodeId], unclean: bool) {
    let clean = p
        .replicas
        .iter()
        .find(|r| p.isr.contains(r) && live.contains(r))
        .copied();
    let chosen = match clean {
        Some(r) => Some(r),
        None if unclean => {
            let r = p.replicas.iter().find(|r| live.contains(r)).copied();
            if let Some(r) = r {
                p.isr = vec![r];
            }
            r
        }
        None => None,
    };
    if let Some(r) = chosen {
        p.leader = Some(r);
        p.leader_epoch = LeaderEpoch(p.leader_epoch.0 + 1);
        p.partition_epoch += 1;
    }
}

fn ids(nodes: &[NodeId]) -> Vec<i32> {
    nodes.iter().map(|n| n.0).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::state::{BrokerMeta, Command, TopicId, assign_replicas};

    fn cluster(brokers: i32, rf: usize, configs: &[(&str, &str)]) -> MetaState {
        let mut s = MetaState::default();
        for id in 1..=brokers {
            s.apply(&Command::RegisterBroker(BrokerMeta {
                id: NodeId(id),
                address: format!("h:{id}"),
                kafka_address: None,
                fenced: false,
            }));
        }
        let ids: Vec<NodeId> = (1..=brokers).map(NodeId).collect();
        let t = TopicMeta {
            name: "t".into(),
            id: TopicId(1),
            configs: configs
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            partitions: assign_replicas(&ids, 0, 1, rf).unwrap(),
            internal: false,
        };
        s.apply(&Command::CreateTopic(t));
        s
    }

    fn p(s: &MetaState) -> &PartitionMeta {
        &s.topics["t"].partitions[0]
    }

    fn run(s: &mut MetaState, cmd: Command) -> Result<()> {
        s.check(&cmd)?;
        s.apply(&cmd);
        Ok(())
    }

    fn fence(s: &mut MetaState, id: i32, fenced: bool) {
        run(
            s,
            Command::SetBrokerFenced {
                id: NodeId(id),
                fenced,
            },
        )
        .unwrap();
    }

    #[test]
    fn a_fenced_leader_is_replaced_by_an_isr_member_with_a_new_epoch() {
        let mut s = cluster(3, 3, &[]);
        assert_eq!(p(&s).leader, Some(NodeId(1)));
        fence(&mut s, 1, true);
        assert_eq!(p(&s).leader, Some(NodeId(2)));
        assert_eq!(p(&s).leader_epoch, LeaderEpoch(1));
        assert_eq!(p(&s).isr, [NodeId(2), NodeId(3)]);
        // Back, it is live but not in the ISR until its leader adds it.
        fence(&mut s, 1, false);
        assert_eq!(p(&s).leader, Some(NodeId(2)));
        assert!(s.is_live(NodeId(1)));
        assert_eq!(p(&s).isr, [NodeId(2), NodeId(3)]);
    }

    #[test]
    fn the_last_isr_member_keeps_its_place_and_leads_again_when_it_returns() {
        let mut s = cluster(3, 2, &[]);
        fence(&mut s, 2, true);
        assert_eq!(p(&s).isr, [NodeId(1)]);
        fence(&mut s, 1, true);
        assert_eq!(
            p(&s).leader,
            None,
            "broker 2 is outside the ISR: no clean leader"
        );
        assert_eq!(p(&s).isr, [NodeId(1)]);
        let offline_epoch = p(&s).leader_epoch;
        fence(&mut s, 2, false);
        assert_eq!(
            p(&s).leader,
            None,
            "an out-of-sync replica never leads cleanly"
        );
        fence(&mut s, 1, false);
        assert_eq!(p(&s).leader, Some(NodeId(1)));
        assert!(p(&s).leader_epoch > offline_epoch);
    }

    #[test]
    fn unclean_election_takes_a_live_replica_outside_the_isr() {
        let mut s = cluster(2, 2, &[(UNCLEAN_ELECTION_CONFIG, "true")]);
        fence(&mut s, 2, true);
        fence(&mut s, 1, true);
        fence(&mut s, 2, false);
        assert_eq!(p(&s).leader, Some(NodeId(2)));
        assert_eq!(p(&s).isr, [NodeId(2)]);
    }

    #[test]
    fn isr_changes_need_the_current_leader_epoch_and_partition_epoch() {
        let mut s = cluster(3, 3, &[]);
        let shrink = |leader: i32, epoch: i32, pe: u32, isr: &[i32]| {
            Command::AlterIsr(AlterIsr {
                topic: "t".into(),
                partition: 0,
                leader: NodeId(leader),
                leader_epoch: LeaderEpoch(epoch),
                partition_epoch: pe,
                isr: isr.iter().copied().map(NodeId).collect(),
            })
        };
        run(&mut s, shrink(1, 0, 0, &[1, 2])).unwrap();
        assert_eq!(p(&s).isr, [NodeId(1), NodeId(2)]);
        // The same view again is stale now.
        let err = run(&mut s, shrink(1, 0, 0, &[1])).unwrap_err().to_string();
        assert!(
            err.contains("partition epoch 0 is not the current 1"),
            "{err}"
        );
        // Not the leader; the leader dropping itself; a non-replica; a duplicate.
        assert!(run(&mut s, shrink(2, 0, 1, &[2])).is_err());
        assert!(run(&mut s, shrink(1, 0, 1, &[2])).is_err());
        assert!(run(&mut s, shrink(1, 0, 1, &[1, 4])).is_err());
        assert!(run(&mut s, shrink(1, 0, 1, &[1, 1])).is_err());
        // A fenced broker cannot rejoin.
        fence(&mut s, 3, true);
        let pe = p(&s).partition_epoch;
        let err = run(&mut s, shrink(1, 0, pe, &[1, 2, 3]))
            .unwrap_err()
            .to_string();
        assert!(err.contains("broker 3 is fenced"), "{err}");
        fence(&mut s, 3, false);
        run(&mut s, shrink(1, 0, pe, &[1, 2, 3])).unwrap();
        assert_eq!(p(&s).isr.len(), 3);
        // A new leader's epoch makes the old leader's view stale.
        fence(&mut s, 1, true);
        let pe = p(&s).partition_epoch;
        assert!(run(&mut s, shrink(1, 0, pe, &[1])).is_err());
    }

    #[test]
    fn a_damaged_leader_hands_over_to_a_live_isr_member_and_leaves_the_isr() {
        let mut s = cluster(3, 3, &[]);
        let resign = |leader: i32, epoch: i32| {
            Command::Resign(Resign {
                topic: "t".into(),
                partition: 0,
                leader: NodeId(leader),
                leader_epoch: LeaderEpoch(epoch),
                reason: "corrupt batch".into(),
            })
        };
        // Broker 2 is fenced: broker 3 is the one that can take over.
        fence(&mut s, 2, true);
        run(&mut s, resign(1, 0)).unwrap();
        assert_eq!(p(&s).leader, Some(NodeId(3)));
        assert_eq!(p(&s).leader_epoch, LeaderEpoch(1));
        assert_eq!(p(&s).isr, [NodeId(3)]);
        // An old epoch, or a broker that does not lead, is refused.
        assert!(run(&mut s, resign(1, 0)).is_err());
        // The last live ISR member cannot hand over, and says why.
        let err = run(&mut s, resign(3, 1)).unwrap_err().to_string();
        assert!(err.contains("no other live replica is in sync"), "{err}");
        assert_eq!(p(&s).leader, Some(NodeId(3)));
    }

    #[test]
    fn registering_again_keeps_the_fenced_flag() {
        let mut s = cluster(2, 1, &[]);
        fence(&mut s, 2, true);
        s.apply(&Command::RegisterBroker(BrokerMeta {
            id: NodeId(2),
            address: "elsewhere:2".into(),
            kafka_address: None,
            fenced: false,
        }));
        assert!(s.brokers[&NodeId(2)].fenced);
        assert_eq!(s.brokers[&NodeId(2)].address, "elsewhere:2");
        assert_eq!(s.live_brokers(), [NodeId(1)]);
    }
}
