//! The group coordinator: consumer-group membership, rebalancing, and
//! committed offsets stored in the internal compacted topic
//! `__consumer_offsets`.
//!
//! A group lives on the broker leading partition `murmur2(group) % P` of
//! `__consumer_offsets`. The coordinator computes assignments itself (no
//! group leader): a rebalance starts when membership or subscriptions change
//! and completes when every known member has rejoined or the rebalance
//! timeout has passed; members that did not rejoin are removed.
//!
//! Join and heartbeat are long polls: a heartbeat waits (up to what the
//! member asks) and answers REBALANCE_IN_PROGRESS the moment a rebalance
//! starts, so members learn of rebalances in milliseconds, not at their next
//! heartbeat interval.

pub mod assignor;
#[cfg(test)]
mod expiry_tests;
mod records;

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use eddy_log::{BatchBuilder, RecordRef, Timestamp, check_batch, partitioner::partition_for_key};
use eddy_meta::{MetaState, TopicId};
use eddy_proto::v1 as pb;
use parking_lot::Mutex;
use tokio::sync::{OnceCell, watch};

use self::assignor::{MemberInput, Strategy, Tp, assign};
use self::records::{GroupValue, Key, OffsetValue};
use crate::broker::{Broker, blocking};
use crate::error::BrokerError;
use crate::internal::InternalTopic;

/// The internal topic holding committed offsets.
pub const OFFSETS_TOPIC: &str = "__consumer_offsets";

/// Coordinator settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupConfig {
    /// Partitions of `__consumer_offsets` (fixed when it is created).
    pub offsets_topic_partitions: u32,
    /// How long the first rebalance of an empty group waits for more members.
    pub initial_rebalance_delay_ms: u64,
    /// A group with no members is forgotten, offsets and all, after this long.
    pub offsets_retention_ms: i64,
    pub session_timeout_ms_min: u32,
    pub session_timeout_ms_max: u32,
    pub members_per_group_max: usize,
    pub groups_max: usize,
    /// Longest a heartbeat may wait for a rebalance to start.
    pub heartbeat_wait_ms_max: u32,
}

impl Default for GroupConfig {
    fn default() -> Self {
        GroupConfig {
            offsets_topic_partitions: 16,
            initial_rebalance_delay_ms: 300,
            offsets_retention_ms: 7 * 24 * 3600 * 1000,
            session_timeout_ms_min: 500,
            session_timeout_ms_max: 300_000,
            members_per_group_max: 1000,
            groups_max: 100_000,
            heartbeat_wait_ms_max: 5_000,
        }
    }
}

const SESSION_TIMEOUT_DEFAULT_MS: u32 = 10_000;
const REBALANCE_TIMEOUT_DEFAULT_MS: u32 = 30_000;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    Empty,
    Preparing { deadline: Instant, initial: bool },
    Stable,
}

impl State {
    fn name(self) -> &'static str {
        match self {
            State::Empty => "Empty",
            State::Preparing { .. } => "PreparingRebalance",
            State::Stable => "Stable",
        }
    }
}

#[derive(Debug)]
struct Member {
    client_id: String,
    session_timeout: Duration,
    rebalance_timeout: Duration,
    topics: BTreeSet<String>,
    owned: Vec<Tp>,
    assignment: Vec<Tp>,
    /// Alive at least until this instant (a waiting heartbeat vouches for
    /// its whole wait, so a dropped call needs no cleanup); the session
    /// timeout counts from here.
    last_seen: Instant,
}

#[derive(Debug)]
struct Group {
    generation: i32,
    strategy: Option<Strategy>,
    state: State,
    members: BTreeMap<String, Member>,
    joined: BTreeSet<String>,
    follow_up: bool,
    /// Rebalances completed; a joiner waits for the next one.
    completed: u64,
    /// Bumped when a rebalance starts or completes.
    events: watch::Sender<u64>,
    empty_since_ms: Option<i64>,
}

impl Group {
    fn new(now_ms: i64) -> Group {
        Group {
            generation: 0,
            strategy: None,
            state: State::Empty,
            members: BTreeMap::new(),
            joined: BTreeSet::new(),
            follow_up: false,
            completed: 0,
            events: watch::Sender::new(0),
            empty_since_ms: Some(now_ms),
        }
    }

    fn bump(&self) {
        self.events.send_modify(|n| *n += 1);
    }

    fn start_rebalance(&mut self, now: Instant, initial_delay: Duration) {
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

    fn ready(&self, now: Instant) -> bool {
        match self.state {
            State::Preparing { deadline, initial } => {
                now >= deadline
                    || (!initial && self.members.keys().all(|m| self.joined.contains(m)))
            }
            _ => false,
        }
    }

    /// Ends a rebalance: drops members that did not rejoin and assigns.
    fn complete(&mut self, meta: &MetaState, now_ms: i64) {
        let joined = std::mem::take(&mut self.joined);
        self.members.retain(|id, _| joined.contains(id));
        self.generation += 1;
        self.completed += 1;
        self.follow_up = false;
        if self.members.is_empty() {
            self.state = State::Empty;
            self.empty_since_ms = Some(now_ms);
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
                self.strategy.unwrap_or(Strategy::CooperativeSticky),
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

    fn remove_member(&mut self, id: &str, now: Instant, initial_delay: Duration, now_ms: i64) {
        if self.members.remove(id).is_none() {
            return;
        }
        self.joined.remove(id);
        if self.members.is_empty() && !matches!(self.state, State::Preparing { .. }) {
            self.state = State::Empty;
            self.empty_since_ms = Some(now_ms);
            self.bump();
        } else {
            self.start_rebalance(now, initial_delay);
        }
    }
}

/// A committed offset in memory.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Committed {
    offset: u64,
    metadata: Bytes,
    /// When it was committed (broker clock), which dates an empty group.
    commit_ms: i64,
}

/// Coordinator state of one broker.
#[derive(Debug)]
pub struct Coordinator {
    pub config: GroupConfig,
    groups: Mutex<HashMap<String, Group>>,
    offsets: Mutex<HashMap<String, BTreeMap<Tp, Committed>>>,
    /// Commits to one offsets partition are written and cached in order.
    write_locks: Vec<tokio::sync::Mutex<()>>,
    loaded: OnceCell<()>,
}

impl Coordinator {
    pub fn new(config: GroupConfig) -> Coordinator {
        let write_locks = (0..config.offsets_topic_partitions.max(1))
            .map(|_| tokio::sync::Mutex::new(()))
            .collect();
        Coordinator {
            config,
            groups: Mutex::new(HashMap::new()),
            offsets: Mutex::new(HashMap::new()),
            write_locks,
            loaded: OnceCell::new(),
        }
    }
}

fn strategy(a: i32) -> Result<Strategy, BrokerError> {
    match pb::Assignor::try_from(a) {
        Ok(pb::Assignor::Range) => Ok(Strategy::Range),
        Ok(pb::Assignor::RoundRobin) => Ok(Strategy::RoundRobin),
        Ok(pb::Assignor::CooperativeSticky | pb::Assignor::Unspecified) => {
            Ok(Strategy::CooperativeSticky)
        }
        Err(_) => Err(BrokerError::InvalidRequest(format!(
            "assignor {a} is not a known Assignor"
        ))),
    }
}

fn strategy_pb(s: Option<Strategy>) -> pb::Assignor {
    match s {
        Some(Strategy::Range) => pb::Assignor::Range,
        Some(Strategy::RoundRobin) => pb::Assignor::RoundRobin,
        Some(Strategy::CooperativeSticky) => pb::Assignor::CooperativeSticky,
        None => pb::Assignor::Unspecified,
    }
}

fn to_pb(tps: &[Tp]) -> Vec<pb::TopicPartitions> {
    let mut by_topic: BTreeMap<&str, Vec<u32>> = BTreeMap::new();
    for (t, p) in tps {
        by_topic.entry(t).or_default().push(*p);
    }
    by_topic
        .into_iter()
        .map(|(topic, partitions)| pb::TopicPartitions {
            topic: topic.to_string(),
            partitions,
        })
        .collect()
}

fn from_pb(tps: &[pb::TopicPartitions]) -> Vec<Tp> {
    tps.iter()
        .flat_map(|t| t.partitions.iter().map(|&p| (t.topic.clone(), p)))
        .collect()
}

fn check_group_id(id: &str) -> Result<(), BrokerError> {
    if id.is_empty() || id.len() > 255 {
        return Err(BrokerError::InvalidRequest(
            "a group id has 1 to 255 characters".into(),
        ));
    }
    Ok(())
}

impl Broker {
    /// Loads committed offsets and group generations from
    /// `__consumer_offsets` once, if the topic exists.
    async fn groups_loaded(self: &Arc<Self>) -> Result<(), BrokerError> {
        if !self.meta.state().topics.contains_key(OFFSETS_TOPIC) {
            return Ok(());
        }
        if self.topics.get(OFFSETS_TOPIC).is_err() {
            // Another request created it and has not opened it here yet.
            self.reconcile().await?;
        }
        let this = self.clone();
        self.groups
            .loaded
            .get_or_try_init(|| async move { blocking(move || this.load_offsets()).await })
            .await
            .map(|_| ())
    }

    /// Creates `__consumer_offsets` on first use.
    async fn offsets_topic(self: &Arc<Self>) -> Result<(), BrokerError> {
        let topic = InternalTopic {
            name: OFFSETS_TOPIC,
            partitions: self.groups.config.offsets_topic_partitions,
            configs: BTreeMap::from([
                ("cleanup.policy".to_string(), "compact".to_string()),
                ("segment.bytes".to_string(), (100u64 << 20).to_string()),
                ("retention.ms".to_string(), "-1".to_string()),
            ]),
        };
        self.ensure_internal_topic(&topic).await?;
        self.groups_loaded().await
    }

    fn load_offsets(&self) -> Result<(), BrokerError> {
        let topic = self.topics.get(OFFSETS_TOPIC)?;
        let mut offsets: HashMap<String, BTreeMap<Tp, Committed>> = HashMap::new();
        let mut generations: HashMap<String, Option<GroupValue>> = HashMap::new();
        for p in topic.partitions.iter().flatten() {
            for r in crate::internal::scan(p, OFFSETS_TOPIC)? {
                apply_record(
                    &mut offsets,
                    &mut generations,
                    r.key.as_deref(),
                    r.value.as_deref(),
                );
            }
        }
        let now_ms = self.now_ms();
        let mut groups = self.groups.groups.lock();
        for (id, value) in generations {
            if let Some(v) = value {
                let g = groups.entry(id).or_insert_with(|| Group::new(now_ms));
                g.generation = v.generation;
                g.strategy = Some(v.assignor);
            }
        }
        // Every group with offsets is known, so that it expires; it has been
        // empty since its last commit (members would have committed since).
        for (id, committed) in &offsets {
            let last = committed.values().map(|c| c.commit_ms).max();
            let g = groups
                .entry(id.clone())
                .or_insert_with(|| Group::new(now_ms));
            if let Some(last) = last {
                g.empty_since_ms = Some(last.min(now_ms));
            }
        }
        tracing::info!(groups = offsets.len(), "loaded committed offsets");
        *self.groups.offsets.lock() = offsets;
        Ok(())
    }

    pub async fn join_group(
        self: &Arc<Self>,
        req: pb::JoinGroupRequest,
    ) -> Result<pb::JoinGroupResponse, BrokerError> {
        check_group_id(&req.group_id)?;
        let cfg = &self.groups.config;
        let session_ms = match req.session_timeout_ms {
            0 => SESSION_TIMEOUT_DEFAULT_MS,
            n => n,
        };
        if !(cfg.session_timeout_ms_min..=cfg.session_timeout_ms_max).contains(&session_ms) {
            return Err(BrokerError::InvalidRequest(format!(
                "session timeout {session_ms} ms is outside {}..={} ms",
                cfg.session_timeout_ms_min, cfg.session_timeout_ms_max
            )));
        }
        let rebalance_ms = match req.rebalance_timeout_ms {
            0 => REBALANCE_TIMEOUT_DEFAULT_MS,
            n => n,
        };
        if req.topics.is_empty() {
            return Err(BrokerError::InvalidRequest(
                "a member subscribes to at least one topic".into(),
            ));
        }
        let meta = self.meta.state();
        for t in &req.topics {
            meta.topic(t)?;
        }
        let wanted = strategy(req.assignor)?;
        self.offsets_topic().await?;
        let now = Instant::now();
        let delay = Duration::from_millis(cfg.initial_rebalance_delay_ms);
        let (member_id, target, mut events) = {
            let mut groups = self.groups.groups.lock();
            let g = self.group_or_new(&mut groups, &req.group_id)?;
            let others = g.members.keys().any(|m| *m != req.member_id);
            if others && g.strategy.is_some_and(|s| s != wanted) {
                return Err(BrokerError::InconsistentAssignor(req.group_id.clone()));
            }
            let member_id = if req.member_id.is_empty() {
                if g.members.len() >= cfg.members_per_group_max {
                    return Err(BrokerError::LimitExceeded(format!(
                        "group {:?} already has {} members (members_per_group_max)",
                        req.group_id, cfg.members_per_group_max
                    )));
                }
                let client = if req.client_id.is_empty() {
                    "member"
                } else {
                    req.client_id.as_str()
                };
                format!("{client}-{}", uuid_short())
            } else if g.members.contains_key(&req.member_id) {
                req.member_id.clone()
            } else {
                return Err(BrokerError::UnknownMember {
                    group: req.group_id.clone(),
                    member: req.member_id.clone(),
                });
            };
            let topics: BTreeSet<String> = req.topics.iter().cloned().collect();
            let changed = g.members.get(&member_id).is_none_or(|m| m.topics != topics);
            g.members.insert(
                member_id.clone(),
                Member {
                    client_id: req.client_id.clone(),
                    session_timeout: Duration::from_millis(u64::from(session_ms)),
                    rebalance_timeout: Duration::from_millis(u64::from(rebalance_ms)),
                    topics,
                    owned: from_pb(&req.owned),
                    assignment: Vec::new(),
                    last_seen: now,
                },
            );
            g.strategy = Some(wanted);
            if changed {
                tracing::info!(group = %req.group_id, member = %member_id, "member joined");
            }
            // Any join starts a rebalance (a no-op if one is under way): a
            // known member rejoining a stable group missed a generation.
            g.start_rebalance(now, delay);
            g.joined.insert(member_id.clone());
            let target = g.completed + 1;
            if g.ready(now) {
                self.finish_rebalance(&req.group_id, g, &meta, now);
            }
            (member_id, target, g.events.subscribe())
        };
        let mut shutdown = self.shutdown_signal();
        loop {
            {
                let groups = self.groups.groups.lock();
                let Some(g) = groups.get(&req.group_id) else {
                    return Err(BrokerError::UnknownMember {
                        group: req.group_id.clone(),
                        member: member_id,
                    });
                };
                let Some(m) = g.members.get(&member_id) else {
                    return Err(BrokerError::UnknownMember {
                        group: req.group_id.clone(),
                        member: member_id,
                    });
                };
                if g.completed >= target {
                    return Ok(pb::JoinGroupResponse {
                        generation: g.generation,
                        member_id,
                        assignment: to_pb(&m.assignment),
                        assignor: strategy_pb(g.strategy) as i32,
                        follow_up: g.follow_up,
                    });
                }
            }
            tokio::select! {
                changed = events.changed() => if changed.is_err() { return Err(BrokerError::ShuttingDown) },
                _ = shutdown.changed() => return Err(BrokerError::ShuttingDown),
            }
        }
    }

    pub async fn heartbeat(self: &Arc<Self>, req: pb::HeartbeatRequest) -> Result<(), BrokerError> {
        let wait_ms = req.wait_ms;
        let wait = Duration::from_millis(u64::from(
            wait_ms.min(self.groups.config.heartbeat_wait_ms_max),
        ));
        let mut events = {
            let mut groups = self.groups.groups.lock();
            let g = self.member_of(&mut groups, &req.group_id, &req.member_id)?;
            check_generation(g, &req)?;
            if let Some(m) = g.members.get_mut(&req.member_id) {
                m.last_seen = Instant::now() + wait;
            }
            g.events.subscribe()
        };
        let mut shutdown = self.shutdown_signal();
        // If the call is dropped mid-wait (the client went away), the member
        // stops being vouched for from that moment, not from the wait's end.
        let mut vouch = Vouch {
            broker: self,
            group: &req.group_id,
            member: &req.member_id,
            waiting: true,
        };
        if !wait.is_zero() {
            tokio::select! {
                _ = events.changed() => {}
                () = tokio::time::sleep(wait) => {}
                _ = shutdown.changed() => {}
            }
        }
        vouch.waiting = false;
        let mut groups = self.groups.groups.lock();
        let g = self.member_of(&mut groups, &req.group_id, &req.member_id)?;
        if let Some(m) = g.members.get_mut(&req.member_id) {
            m.last_seen = m.last_seen.max(Instant::now());
        }
        check_generation(g, &req)
    }

    fn member_of<'a>(
        &self,
        groups: &'a mut HashMap<String, Group>,
        group: &str,
        member: &str,
    ) -> Result<&'a mut Group, BrokerError> {
        match groups.get_mut(group) {
            Some(g) if g.members.contains_key(member) => Ok(g),
            _ => Err(BrokerError::UnknownMember {
                group: group.to_string(),
                member: member.to_string(),
            }),
        }
    }

    pub async fn leave_group(
        self: &Arc<Self>,
        req: pb::LeaveGroupRequest,
    ) -> Result<(), BrokerError> {
        let mut groups = self.groups.groups.lock();
        let g = self.member_of(&mut groups, &req.group_id, &req.member_id)?;
        let delay = Duration::from_millis(self.groups.config.initial_rebalance_delay_ms);
        g.remove_member(&req.member_id, Instant::now(), delay, self.now_ms());
        tracing::info!(group = %req.group_id, member = %req.member_id, "member left");
        Ok(())
    }

    pub async fn commit_offsets(
        self: &Arc<Self>,
        req: pb::CommitOffsetsRequest,
    ) -> Result<(), BrokerError> {
        check_group_id(&req.group_id)?;
        if req.offsets.is_empty() {
            return Ok(());
        }
        let meta = self.meta.state();
        for o in &req.offsets {
            let count = meta.topic(&o.topic)?.partitions.len() as u32;
            if o.partition >= count {
                return Err(BrokerError::UnknownPartition {
                    topic: o.topic.clone(),
                    partition: o.partition,
                    count,
                });
            }
        }
        self.offsets_topic().await?;
        let now_ms = self.now_ms();
        {
            let mut groups = self.groups.groups.lock();
            match groups.get_mut(&req.group_id) {
                Some(g) if req.member_id.is_empty() && !g.members.is_empty() => {
                    return Err(BrokerError::GroupNotEmpty(req.group_id.clone()));
                }
                Some(g) if !req.member_id.is_empty() => {
                    if !g.members.contains_key(&req.member_id) {
                        return Err(BrokerError::UnknownMember {
                            group: req.group_id.clone(),
                            member: req.member_id.clone(),
                        });
                    }
                    if g.generation != req.generation {
                        return Err(BrokerError::IllegalGeneration {
                            group: req.group_id.clone(),
                            sent: req.generation,
                            current: g.generation,
                        });
                    }
                }
                None if !req.member_id.is_empty() => {
                    return Err(BrokerError::UnknownMember {
                        group: req.group_id.clone(),
                        member: req.member_id.clone(),
                    });
                }
                Some(g) => {
                    // An admin commit to an empty group: its retention restarts.
                    g.empty_since_ms = Some(now_ms);
                }
                None => {
                    // An admin commit creates the group (empty), so it expires too.
                    self.group_or_new(&mut groups, &req.group_id)?;
                }
            }
        }
        let records: Vec<(Vec<u8>, Option<Vec<u8>>)> = req
            .offsets
            .iter()
            .map(|o| {
                let key = Key::Offset {
                    group: req.group_id.clone(),
                    topic: o.topic.clone(),
                    partition: o.partition,
                };
                let value = OffsetValue {
                    offset: o.offset,
                    commit_ms: now_ms,
                    metadata: o.metadata.to_vec(),
                };
                (key.encode(), Some(value.encode()))
            })
            .collect();
        self.write_offsets(&req.group_id, records).await?;
        let mut cache = self.groups.offsets.lock();
        let entry = cache.entry(req.group_id.clone()).or_default();
        for o in req.offsets {
            entry.insert(
                (o.topic, o.partition),
                Committed {
                    offset: o.offset,
                    metadata: o.metadata,
                    commit_ms: now_ms,
                },
            );
        }
        Ok(())
    }

    /// The group `id`, created empty if it is new and `groups_max` allows.
    fn group_or_new<'g>(
        &self,
        groups: &'g mut HashMap<String, Group>,
        id: &str,
    ) -> Result<&'g mut Group, BrokerError> {
        let max = self.groups.config.groups_max;
        if !groups.contains_key(id) && groups.len() >= max {
            return Err(BrokerError::LimitExceeded(format!(
                "this coordinator already has {max} groups (groups_max); delete idle groups or raise the limit"
            )));
        }
        Ok(groups
            .entry(id.to_string())
            .or_insert_with(|| Group::new(self.now_ms())))
    }

    /// Appends records to the group's partition of `__consumer_offsets`.
    async fn write_offsets(
        self: &Arc<Self>,
        group: &str,
        records: Vec<(Vec<u8>, Option<Vec<u8>>)>,
    ) -> Result<(), BrokerError> {
        let topic = self.topics.get(OFFSETS_TOPIC)?;
        let index = partition_for_key(group.as_bytes(), topic.partition_count());
        let partition = topic.partition(index)?.clone();
        let lock = &self.groups.write_locks[index as usize % self.groups.write_locks.len()];
        let _guard = lock.lock().await;
        let now = self.now_ms();
        blocking(move || {
            let mut builder = BatchBuilder::new();
            for (k, v) in &records {
                builder.push(&RecordRef {
                    timestamp: Timestamp(now),
                    key: Some(k),
                    value: v.as_deref(),
                    headers: &[],
                });
            }
            let Some(bytes) = builder.finish() else {
                return Ok(());
            };
            let batch = check_batch(bytes, eddy_log::BATCH_BYTES_LIMIT)
                .map_err(BrokerError::log(OFFSETS_TOPIC, index))?;
            partition
                .append(&batch)
                .map_err(BrokerError::log(OFFSETS_TOPIC, index))?;
            Ok(())
        })
        .await
    }

    /// Completes a rebalance, records the generation, and starts the
    /// follow-up rebalance a cooperative assignment may need.
    fn finish_rebalance(self: &Arc<Self>, id: &str, g: &mut Group, meta: &MetaState, now: Instant) {
        g.complete(meta, self.now_ms());
        tracing::info!(group = %id, generation = g.generation, members = g.members.len(), "rebalance complete");
        self.persist_group(id, g);
        if g.follow_up {
            g.start_rebalance(
                now,
                Duration::from_millis(self.groups.config.initial_rebalance_delay_ms),
            );
        }
    }

    /// Records a completed rebalance's generation so it survives a restart.
    fn persist_group(self: &Arc<Self>, group: &str, g: &Group) {
        let Some(assignor) = g.strategy else { return };
        let key = Key::Group {
            group: group.to_string(),
        }
        .encode();
        let value = GroupValue {
            generation: g.generation,
            assignor,
        }
        .encode();
        let this = self.clone();
        let group = group.to_string();
        tokio::spawn(async move {
            if let Err(e) = this.write_offsets(&group, vec![(key, Some(value))]).await {
                tracing::warn!(%group, error = %e, "could not record the group's generation");
            }
        });
    }

    pub async fn fetch_offsets(
        self: &Arc<Self>,
        req: pb::FetchOffsetsRequest,
    ) -> Result<pb::FetchOffsetsResponse, BrokerError> {
        check_group_id(&req.group_id)?;
        self.groups_loaded().await?;
        let cache = self.groups.offsets.lock();
        let Some(committed) = cache.get(&req.group_id) else {
            return Ok(pb::FetchOffsetsResponse::default());
        };
        let wanted: Option<BTreeSet<Tp>> =
            (!req.partitions.is_empty()).then(|| from_pb(&req.partitions).into_iter().collect());
        let offsets = committed
            .iter()
            .filter(|(tp, _)| wanted.as_ref().is_none_or(|w| w.contains(*tp)))
            .map(|((topic, partition), c)| pb::PartitionOffset {
                topic: topic.clone(),
                partition: *partition,
                offset: c.offset,
                metadata: c.metadata.clone(),
            })
            .collect();
        Ok(pb::FetchOffsetsResponse { offsets })
    }

    pub async fn list_groups(self: &Arc<Self>) -> Result<pb::ListGroupsResponse, BrokerError> {
        self.groups_loaded().await?;
        let groups = self.groups.groups.lock();
        let offsets = self.groups.offsets.lock();
        let ids: BTreeSet<&String> = groups.keys().chain(offsets.keys()).collect();
        let groups = ids
            .into_iter()
            .map(|id| {
                let g = groups.get(id);
                pb::GroupSummary {
                    group_id: id.clone(),
                    state: g.map_or("Empty", |g| g.state.name()).to_string(),
                    members: g.map_or(0, |g| g.members.len() as u32),
                }
            })
            .collect();
        Ok(pb::ListGroupsResponse { groups })
    }

    pub async fn describe_group(
        self: &Arc<Self>,
        req: pb::DescribeGroupRequest,
    ) -> Result<pb::DescribeGroupResponse, BrokerError> {
        self.groups_loaded().await?;
        let (mut resp, owners) = {
            let groups = self.groups.groups.lock();
            let offsets = self.groups.offsets.lock();
            let g = groups.get(&req.group_id);
            if g.is_none() && !offsets.contains_key(&req.group_id) {
                return Err(BrokerError::UnknownGroup(req.group_id.clone()));
            }
            let mut owners: BTreeMap<Tp, (String, Option<u64>)> = BTreeMap::new();
            for (tp, c) in offsets.get(&req.group_id).into_iter().flatten() {
                owners.insert(tp.clone(), (String::new(), Some(c.offset)));
            }
            let members = g.map_or(Vec::new(), |g| {
                g.members
                    .iter()
                    .map(|(id, m)| {
                        for tp in &m.assignment {
                            owners.entry(tp.clone()).or_insert((String::new(), None)).0 =
                                id.clone();
                        }
                        pb::GroupMember {
                            member_id: id.clone(),
                            client_id: m.client_id.clone(),
                            assignment: to_pb(&m.assignment),
                        }
                    })
                    .collect()
            });
            let resp = pb::DescribeGroupResponse {
                group_id: req.group_id.clone(),
                state: g.map_or("Empty", |g| g.state.name()).to_string(),
                generation: g.map_or(0, |g| g.generation),
                assignor: strategy_pb(g.and_then(|g| g.strategy)) as i32,
                members,
                partitions: Vec::new(),
            };
            (resp, owners)
        };
        for ((topic, partition), (owner, committed)) in owners {
            let (start, end) = match self
                .topics
                .get(&topic)
                .and_then(|t| t.partition(partition).map(|p| p.offsets()))
            {
                Ok(o) => (o.log_start.0, o.high_watermark.0),
                Err(_) => (0, 0),
            };
            resp.partitions.push(pb::PartitionLag {
                topic,
                partition,
                committed,
                log_end: end,
                lag: end.saturating_sub(committed.unwrap_or(start).max(start)),
                owner,
            });
        }
        Ok(resp)
    }
}

/// Undoes a waiting heartbeat's claim on the future when the call is dropped.
struct Vouch<'a> {
    broker: &'a Broker,
    group: &'a str,
    member: &'a str,
    waiting: bool,
}

impl Drop for Vouch<'_> {
    fn drop(&mut self) {
        if !self.waiting {
            return;
        }
        let mut groups = self.broker.groups.groups.lock();
        if let Some(m) = groups
            .get_mut(self.group)
            .and_then(|g| g.members.get_mut(self.member))
        {
            m.last_seen = Instant::now();
        }
    }
}

fn check_generation(g: &Group, req: &pb::HeartbeatRequest) -> Result<(), BrokerError> {
    if matches!(g.state, State::Preparing { .. }) {
        return Err(BrokerError::RebalanceInProgress(req.group_id.clone()));
    }
    if g.generation != req.generation {
        return Err(BrokerError::IllegalGeneration {
            group: req.group_id.clone(),
            sent: req.generation,
            current: g.generation,
        });
    }
    Ok(())
}

fn apply_record(
    offsets: &mut HashMap<String, BTreeMap<Tp, Committed>>,
    generations: &mut HashMap<String, Option<GroupValue>>,
    key: Option<&[u8]>,
    value: Option<&[u8]>,
) {
    let Some(key) = key.and_then(Key::decode) else {
        tracing::warn!("skipping an unreadable {OFFSETS_TOPIC} record");
        return;
    };
    match key {
        Key::Offset {
            group,
            topic,
            partition,
        } => match value.map(OffsetValue::decode) {
            Some(Some(v)) => {
                offsets.entry(group).or_default().insert(
                    (topic, partition),
                    Committed {
                        offset: v.offset,
                        metadata: Bytes::from(v.metadata),
                        commit_ms: v.commit_ms,
                    },
                );
            }
            Some(None) => tracing::warn!(%group, "skipping an unreadable committed offset"),
            None => {
                if let Some(g) = offsets.get_mut(&group) {
                    g.remove(&(topic, partition));
                    if g.is_empty() {
                        offsets.remove(&group);
                    }
                }
            }
        },
        Key::Group { group } => {
            generations.insert(group, value.and_then(GroupValue::decode));
        }
    }
}

fn uuid_short() -> String {
    let id = TopicId::random().to_string();
    id.split('-').next().unwrap_or(&id).to_string()
}

/// Session expiry, rebalance deadlines and expiry of long-empty groups.
pub(crate) async fn group_ticker(broker: Arc<Broker>) {
    let mut tick = tokio::time::interval(Duration::from_millis(100));
    loop {
        tick.tick().await;
        // Groups known only from `__consumer_offsets` must expire too, even
        // if no client asks about groups after a restart.
        if let Err(e) = broker.groups_loaded().await {
            tracing::warn!(error = %e, "cannot load {OFFSETS_TOPIC}; retrying");
            continue;
        }
        let expired = broker.tick_groups(Instant::now());
        broker.expire_groups(expired).await;
    }
}

impl Broker {
    /// Removes members silent past their session timeout, completes due
    /// rebalances, and returns the groups empty for longer than
    /// `offsets_retention_ms` (already forgotten in memory).
    fn tick_groups(self: &Arc<Self>, now: Instant) -> Vec<String> {
        let now_ms = self.now_ms();
        let meta = self.meta.state();
        let delay = Duration::from_millis(self.groups.config.initial_rebalance_delay_ms);
        let retention_ms = self.groups.config.offsets_retention_ms;
        let mut expired = Vec::new();
        let mut groups = self.groups.groups.lock();
        for (id, g) in groups.iter_mut() {
            let silent: Vec<String> = g
                .members
                .iter()
                .filter(|(_, m)| now.saturating_duration_since(m.last_seen) > m.session_timeout)
                .map(|(id, _)| id.clone())
                .collect();
            for m in silent {
                tracing::info!(group = %id, member = %m, "member's session expired");
                g.remove_member(&m, now, delay, now_ms);
            }
            if g.ready(now) {
                self.finish_rebalance(id, g, &meta, now);
            }
            if g.state == State::Empty
                && g.empty_since_ms.is_some_and(|t| now_ms - t > retention_ms)
            {
                expired.push(id.clone());
            }
        }
        for id in &expired {
            groups.remove(id);
        }
        expired
    }

    /// Writes tombstones for the committed offsets and generation of each
    /// expired group, so they stay gone after a restart.
    async fn expire_groups(self: &Arc<Self>, expired: Vec<String>) {
        for id in expired {
            match self.forget_offsets(&id).await {
                Ok(()) => tracing::info!(group = %id, "expired an empty group and its offsets"),
                Err(e) => tracing::warn!(group = %id, error = %e, "could not expire group"),
            }
        }
    }

    /// Drops a group's committed offsets and generation from the cache and
    /// writes their tombstones.
    async fn forget_offsets(self: &Arc<Self>, id: &str) -> Result<(), BrokerError> {
        let keys: Vec<Vec<u8>> = {
            let mut cache = self.groups.offsets.lock();
            let tps = cache.remove(id).unwrap_or_default();
            tps.into_keys()
                .map(|(topic, partition)| {
                    Key::Offset {
                        group: id.to_string(),
                        topic,
                        partition,
                    }
                    .encode()
                })
                .chain(std::iter::once(
                    Key::Group {
                        group: id.to_string(),
                    }
                    .encode(),
                ))
                .collect()
        };
        let records = keys.into_iter().map(|k| (k, None)).collect();
        self.write_offsets(id, records).await
    }

    /// Deletes a group that has no members, with its committed offsets.
    pub async fn delete_group(self: &Arc<Self>, id: &str) -> Result<(), BrokerError> {
        check_group_id(id)?;
        self.groups_loaded().await?;
        {
            let mut groups = self.groups.groups.lock();
            let known = groups.contains_key(id) || self.groups.offsets.lock().contains_key(id);
            if !known {
                return Err(BrokerError::UnknownGroup(id.to_string()));
            }
            if groups.get(id).is_some_and(|g| !g.members.is_empty()) {
                return Err(BrokerError::GroupNotEmpty(id.to_string()));
            }
            groups.remove(id);
        }
        if self.meta.state().topics.contains_key(OFFSETS_TOPIC) {
            self.forget_offsets(id).await?;
        }
        tracing::info!(group = %id, "deleted group and its offsets");
        Ok(())
    }
}
