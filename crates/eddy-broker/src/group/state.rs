//! A group's membership state machine: who is in it, which rebalance it
//! is in, and what each member was assigned.

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use bytes::Bytes;
use eddy_meta::MetaState;
use tokio::sync::watch;

use super::assignor::{Assignor, MemberInput, Tp, assign};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum State {
    Empty,
    Preparing {
        deadline: Instant,
        initial: bool,
    },
    /// A client-assigned group waiting for its leader's assignments, until
    /// the deadline (then it rebalances again).
    Completing {
        deadline: Instant,
    },
    Stable,
}

impl State {
    pub(super) fn name(self) -> &'static str {
        match self {
            State::Empty => "Empty",
            State::Preparing { .. } => "PreparingRebalance",
            State::Completing { .. } => "CompletingRebalance",
            State::Stable => "Stable",
        }
    }
}

/// A group whose leader, a client, assigns (Kafka's classic protocol).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct ClientAssigned {
    /// Every member's protocol type (`consumer`).
    pub(super) protocol_type: String,
    /// The protocol of the current generation, every member's choice.
    pub(super) protocol: Option<String>,
    pub(super) leader: Option<String>,
    /// Whether the leader has handed out this generation's assignments.
    pub(super) synced: bool,
}

#[derive(Debug)]
pub(super) struct Member {
    pub(super) client_id: String,
    pub(super) client_host: String,
    pub(super) session_timeout: Duration,
    pub(super) rebalance_timeout: Duration,
    pub(super) topics: BTreeSet<String>,
    pub(super) owned: Vec<Tp>,
    pub(super) assignment: Vec<Tp>,
    /// A client-assigned member's protocols by preference (name,
    /// metadata), and its assignment as its leader encoded it.
    pub(super) protocols: Vec<(String, Bytes)>,
    pub(super) encoded_assignment: Bytes,
    /// Alive at least until this instant (a waiting heartbeat vouches for
    /// its whole wait, so a dropped call needs no cleanup); the session
    /// timeout counts from here.
    pub(super) last_seen: Instant,
}

#[derive(Debug)]
pub(super) struct Group {
    pub(super) generation: i32,
    /// Who assigns: the coordinator with this assignor, or (`client`) the
    /// leader member; at most one is set.
    pub(super) strategy: Option<Assignor>,
    pub(super) client: Option<ClientAssigned>,
    pub(super) state: State,
    pub(super) members: BTreeMap<String, Member>,
    pub(super) joined: BTreeSet<String>,
    pub(super) follow_up: bool,
    /// Rebalances completed; a joiner waits for the next one.
    pub(super) completed: u64,
    /// Bumped when a rebalance starts or completes.
    pub(super) events: watch::Sender<u64>,
    pub(super) empty_since_ms: Option<i64>,
}

impl Group {
    pub(super) fn new(now_ms: i64) -> Group {
        Group {
            generation: 0,
            strategy: None,
            client: None,
            state: State::Empty,
            members: BTreeMap::new(),
            joined: BTreeSet::new(),
            follow_up: false,
            completed: 0,
            events: watch::Sender::new(0),
            empty_since_ms: Some(now_ms),
        }
    }

    pub(super) fn bump(&self) {
        self.events.send_modify(|n| *n += 1);
    }

    pub(super) fn start_rebalance(&mut self, now: Instant, initial_delay: Duration) {
        if matches!(self.state, State::Preparing { .. }) {
            return;
        }
        let initial = self.state == State::Empty;
        let wait = if initial {
            initial_delay
        } else {
            self.members
                .values()
                .map(|m| m.rebalance_timeout)
                .max()
                .unwrap_or_default()
        };
        self.state = State::Preparing {
            deadline: now + wait,
            initial,
        };
        self.joined.clear();
        self.bump();
    }

    pub(super) fn ready(&self, now: Instant) -> bool {
        match self.state {
            State::Preparing { deadline, initial } => {
                now >= deadline
                    || (!initial && self.members.keys().all(|m| self.joined.contains(m)))
            }
            _ => false,
        }
    }

    /// Ends a rebalance: drops members that did not rejoin and assigns,
    /// or in a client-assigned group picks the leader and the protocol and
    /// waits for the leader's assignments.
    pub(super) fn complete(&mut self, meta: &MetaState, now: Instant, now_ms: i64) {
        let joined = std::mem::take(&mut self.joined);
        self.members.retain(|id, _| joined.contains(id));
        self.generation += 1;
        self.completed += 1;
        self.follow_up = false;
        if self.members.is_empty() {
            self.state = State::Empty;
            self.empty_since_ms = Some(now_ms);
        } else if let Some(client) = &mut self.client {
            let leader = client
                .leader
                .clone()
                .filter(|l| self.members.contains_key(l))
                .or_else(|| self.members.keys().next().cloned());
            client.protocol = leader
                .as_ref()
                .and_then(|l| common_protocol(&self.members, l));
            client.leader = leader;
            client.synced = false;
            for m in self.members.values_mut() {
                m.assignment.clear();
                m.encoded_assignment = Bytes::new();
            }
            let wait = self
                .members
                .values()
                .map(|m| m.rebalance_timeout)
                .max()
                .unwrap_or_default();
            self.state = State::Completing {
                deadline: now + wait,
            };
            self.empty_since_ms = None;
        } else {
            let inputs: Vec<MemberInput> = self
                .members
                .iter()
                .map(|(id, m)| MemberInput {
                    id: id.clone(),
                    topics: m.topics.clone(),
                    owned: m.owned.clone(),
                })
                .collect();
            let partitions: BTreeMap<String, u32> = self
                .members
                .values()
                .flat_map(|m| m.topics.iter())
                .filter_map(|t| {
                    meta.topics
                        .get(t)
                        .map(|tm| (t.clone(), tm.partitions.len() as u32))
                })
                .collect();
            let result = assign(
                self.strategy.unwrap_or(Assignor::CooperativeSticky),
                &inputs,
                &partitions,
            );
            for (id, m) in self.members.iter_mut() {
                m.assignment = result.by_member.get(id).cloned().unwrap_or_default();
                m.owned = m.assignment.clone();
            }
            self.follow_up = !result.withheld.is_empty();
            self.state = State::Stable;
            self.empty_since_ms = None;
        }
        self.bump();
    }

    pub(super) fn remove_member(
        &mut self,
        id: &str,
        now: Instant,
        initial_delay: Duration,
        now_ms: i64,
    ) {
        if self.members.remove(id).is_none() {
            return;
        }
        self.joined.remove(id);
        // The last member gone: no rebalance has anyone left to wait for.
        if self.members.is_empty() {
            self.joined.clear();
            self.state = State::Empty;
            self.empty_since_ms = Some(now_ms);
            self.bump();
        } else {
            self.start_rebalance(now, initial_delay);
        }
    }
}

/// The first of the leader's protocols that every member also speaks.
pub(super) fn common_protocol(members: &BTreeMap<String, Member>, leader: &str) -> Option<String> {
    let leader = members.get(leader)?;
    leader
        .protocols
        .iter()
        .map(|(name, _)| name)
        .find(|name| {
            members
                .values()
                .all(|m| m.protocols.iter().any(|(n, _)| n == *name))
        })
        .cloned()
}
