//! The membership RPCs: join (a long poll until the rebalance completes),
//! heartbeat (a long poll that answers the moment a rebalance starts) and
//! leave, and recording each completed generation.

use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use eddy_log::partitioner::partition_for_key;
use eddy_meta::MetaState;

use super::records::{GroupValue, Key};
use super::state::{ClientAssigned, Group, Member, State};
use super::{
    OFFSETS_TOPIC, REBALANCE_TIMEOUT_DEFAULT_MS, SESSION_TIMEOUT_DEFAULT_MS, check_group_id,
    from_api, to_api, uuid_short,
};
use crate::api::{Heartbeat, JoinGroup, Joined, LeaveGroup, Protocol, SyncGroup};
use crate::broker::Broker;
use crate::error::BrokerError;

/// How long a join waits for its generation to be written before the
/// member is told to join again.
const PERSIST_WAIT: Duration = Duration::from_secs(5);

impl Broker {
    pub async fn join_group(self: &Arc<Self>, req: JoinGroup) -> Result<Joined, BrokerError> {
        check_group_id(&req.group_id)?;
        let cfg = &self.groups.config;
        let session = req
            .session_timeout
            .unwrap_or(Duration::from_millis(u64::from(SESSION_TIMEOUT_DEFAULT_MS)));
        let (min, max) = (cfg.session_timeout_ms_min, cfg.session_timeout_ms_max);
        if !(u64::from(min)..=u64::from(max)).contains(&(session.as_millis() as u64)) {
            return Err(BrokerError::InvalidRequest(format!(
                "session timeout {} ms is outside {min}..={max} ms",
                session.as_millis()
            )));
        }
        let rebalance = req
            .rebalance_timeout
            .unwrap_or(Duration::from_millis(u64::from(
                REBALANCE_TIMEOUT_DEFAULT_MS,
            )));
        let meta = self.meta.state();
        // The coordinator assigns only what exists; a client-assigned
        // group's leader sees the metadata itself.
        if let Protocol::Server(_) = req.protocol {
            if req.topics.is_empty() {
                return Err(BrokerError::InvalidRequest(
                    "a member subscribes to at least one topic".into(),
                ));
            }
            for t in &req.topics {
                meta.topic(t)?;
            }
        }
        self.offsets_topic().await?;
        self.coordinate(&req.group_id).await?;
        let now = Instant::now();
        let delay = Duration::from_millis(cfg.initial_rebalance_delay_ms);
        let (member_id, target, mut events) = {
            let mut groups = self.groups.groups.lock();
            let g = self.group_or_new(&mut groups, &req.group_id)?;
            let others = g.members.keys().any(|m| *m != req.member_id);
            if others && !fits(g, &req.protocol, &req.member_id) {
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
                    client_host: req.client_host.clone(),
                    session_timeout: session,
                    rebalance_timeout: rebalance,
                    topics,
                    owned: from_api(&req.owned),
                    assignment: Vec::new(),
                    protocols: match &req.protocol {
                        Protocol::Client { protocols, .. } => protocols.clone(),
                        Protocol::Server(_) => Vec::new(),
                    },
                    encoded_assignment: Bytes::new(),
                    last_seen: now,
                },
            );
            match &req.protocol {
                Protocol::Server(assignor) => {
                    g.strategy = Some(*assignor);
                    g.client = None;
                }
                Protocol::Client { protocol_type, .. } => {
                    g.strategy = None;
                    let leader = g.client.take().and_then(|c| c.leader);
                    g.client = Some(ClientAssigned {
                        protocol_type: protocol_type.clone(),
                        protocol: None,
                        leader,
                        synced: false,
                    });
                }
            }
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
            let answered = {
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
                (g.completed >= target).then(|| joined(g, &member_id, m))
            };
            if let Some(response) = answered {
                self.await_persisted(&req.group_id, response.generation)
                    .await?;
                return Ok(response);
            }
            tokio::select! {
                changed = events.changed() => if changed.is_err() { return Err(BrokerError::ShuttingDown) },
                _ = shutdown.changed() => return Err(BrokerError::ShuttingDown),
            }
        }
    }

    pub async fn heartbeat(self: &Arc<Self>, req: Heartbeat) -> Result<(), BrokerError> {
        self.coordinate(&req.group_id).await?;
        let wait = req.wait.min(Duration::from_millis(u64::from(
            self.groups.config.heartbeat_wait_ms_max,
        )));
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

    /// A client-assigned member's assignment for its generation: the
    /// leader's call brings every member's; the others wait for it (and
    /// are told to rejoin if a rebalance starts first).
    pub async fn sync_group(self: &Arc<Self>, req: SyncGroup) -> Result<Bytes, BrokerError> {
        self.coordinate(&req.group_id).await?;
        let mut events = {
            let mut groups = self.groups.groups.lock();
            let g = self.member_of(&mut groups, &req.group_id, &req.member_id)?;
            check_sync(g, &req.group_id, req.generation)?;
            let Some(client) = &mut g.client else {
                return Err(BrokerError::InvalidRequest(format!(
                    "group {:?} is assigned by its coordinator; SyncGroup is for groups whose leader assigns (Kafka's classic protocol)",
                    req.group_id
                )));
            };
            if client.leader.as_deref() == Some(req.member_id.as_str()) && !client.synced {
                client.synced = true;
                for a in req.assignments {
                    if let Some(m) = g.members.get_mut(&a.member_id) {
                        m.assignment = from_api(&a.partitions);
                        m.owned = m.assignment.clone();
                        m.encoded_assignment = a.encoded;
                    }
                }
                g.state = State::Stable;
                tracing::info!(group = %req.group_id, generation = g.generation, leader = %req.member_id, "the leader assigned the group's partitions");
                g.bump();
            }
            if let Some(m) = g.members.get_mut(&req.member_id) {
                m.last_seen = Instant::now();
            }
            g.events.subscribe()
        };
        let mut shutdown = self.shutdown_signal();
        loop {
            {
                let mut groups = self.groups.groups.lock();
                let g = self.member_of(&mut groups, &req.group_id, &req.member_id)?;
                check_sync(g, &req.group_id, req.generation)?;
                if g.client.as_ref().is_some_and(|c| c.synced) {
                    let m = g.members.get_mut(&req.member_id);
                    return Ok(m.map_or_else(Bytes::new, |m| {
                        m.last_seen = Instant::now();
                        m.encoded_assignment.clone()
                    }));
                }
            }
            tokio::select! {
                changed = events.changed() => if changed.is_err() { return Err(BrokerError::ShuttingDown) },
                _ = shutdown.changed() => return Err(BrokerError::ShuttingDown),
            }
        }
    }

    pub(super) fn member_of<'a>(
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

    pub async fn leave_group(self: &Arc<Self>, req: LeaveGroup) -> Result<(), BrokerError> {
        self.coordinate(&req.group_id).await?;
        let mut groups = self.groups.groups.lock();
        let g = self.member_of(&mut groups, &req.group_id, &req.member_id)?;
        let delay = Duration::from_millis(self.groups.config.initial_rebalance_delay_ms);
        g.remove_member(&req.member_id, Instant::now(), delay, self.now_ms());
        tracing::info!(group = %req.group_id, member = %req.member_id, "member left");
        Ok(())
    }

    /// The group `id`, created empty if it is new, its `__consumer_offsets`
    /// partition is still loaded here and `groups_max` allows. A group
    /// whose partition was released since the caller's `coordinate` is
    /// someone else's: creating it afresh would hand out its generations
    /// again.
    pub(super) fn group_or_new<'g>(
        &self,
        groups: &'g mut HashMap<String, Group>,
        id: &str,
    ) -> Result<&'g mut Group, BrokerError> {
        if !groups.contains_key(id) {
            if let Ok(topic) = self.topics.get(OFFSETS_TOPIC) {
                let index = partition_for_key(id.as_bytes(), topic.partition_count());
                if !self.groups.loaded.lock().contains_key(&index) {
                    return Err(BrokerError::NotCoordinator {
                        group: id.to_string(),
                    });
                }
            }
            let max = self.groups.config.groups_max;
            if groups.len() >= max {
                return Err(BrokerError::LimitExceeded(format!(
                    "this coordinator already has {max} groups (groups_max); delete idle groups or raise the limit"
                )));
            }
        }
        Ok(groups
            .entry(id.to_string())
            .or_insert_with(|| Group::new(self.now_ms())))
    }

    /// Completes a rebalance, records the generation, and starts the
    /// follow-up rebalance a cooperative assignment may need.
    pub(super) fn finish_rebalance(
        self: &Arc<Self>,
        id: &str,
        g: &mut Group,
        meta: &MetaState,
        now: Instant,
    ) {
        g.complete(meta, now, self.now_ms());
        tracing::info!(group = %id, generation = g.generation, members = g.members.len(), "rebalance complete");
        self.persist_group(id);
        if g.follow_up {
            g.start_rebalance(
                now,
                Duration::from_millis(self.groups.config.initial_rebalance_delay_ms),
            );
        }
    }

    /// Waits until `generation` of `group` is written to
    /// `__consumer_offsets`. No member learns a generation before then: a
    /// coordinator that died first would leave its successor at an older
    /// one, which could then hand the same number out again to other
    /// owners, and a zombie of the first would pass its generation checks.
    async fn await_persisted(&self, group: &str, generation: i32) -> Result<(), BrokerError> {
        let deadline = Instant::now() + PERSIST_WAIT;
        while self
            .groups
            .persisted
            .lock()
            .get(group)
            .is_none_or(|&written| written < generation)
        {
            if Instant::now() >= deadline {
                // The member joins again, and the next generation is
                // written afresh.
                return Err(BrokerError::RebalanceInProgress(group.to_string()));
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        Ok(())
    }

    /// Records a completed rebalance's generation so it survives a restart.
    pub(super) fn persist_group(self: &Arc<Self>, group: &str) {
        // One write pending per group is enough: it writes the generation
        // the group is at when it runs.
        if !self.groups.persisting.lock().insert(group.to_string()) {
            return;
        }
        let this = self.clone();
        let group = group.to_string();
        tokio::spawn(async move {
            if let Err(e) = this.write_generation(&group).await {
                tracing::warn!(%group, error = %e, "could not record the group's generation");
            }
        });
    }

    /// Writes the group's current generation, unless a newer or equal one
    /// is written already: under the partition's write lock, so a
    /// generation never lands after a later one.
    async fn write_generation(self: &Arc<Self>, group: &str) -> Result<(), BrokerError> {
        let writer = self.offsets_writer(group).await;
        // From here on, a rebalance needs a write of its own.
        self.groups.persisting.lock().remove(group);
        let writer = writer?;
        let latest = {
            let groups = self.groups.groups.lock();
            groups
                .get(group)
                .filter(|g| g.strategy.is_some() || g.client.is_some())
                .map(|g| GroupValue {
                    generation: g.generation,
                    assignor: g.strategy,
                })
        };
        let Some(value) = latest else {
            return Ok(());
        };
        let written = self.groups.persisted.lock().get(group).copied();
        if written.is_some_and(|w| w >= value.generation) {
            return Ok(());
        }
        let key = Key::Group {
            group: group.to_string(),
        }
        .encode();
        writer.append(vec![(key, Some(value.encode()))]).await?;
        self.groups
            .persisted
            .lock()
            .insert(group.to_string(), value.generation);
        Ok(())
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

fn check_generation(g: &Group, req: &Heartbeat) -> Result<(), BrokerError> {
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

/// Whether a member joining with `protocol` may join `g` as it is: the
/// same kind of assignment, the same assignor or protocol type, and for a
/// client-assigned group a protocol every other member speaks too.
fn fits(g: &Group, protocol: &Protocol, member: &str) -> bool {
    match protocol {
        Protocol::Server(assignor) => {
            g.client.is_none() && g.strategy.is_none_or(|s| s == *assignor)
        }
        Protocol::Client {
            protocol_type,
            protocols,
        } => {
            g.strategy.is_none()
                && g.client
                    .as_ref()
                    .is_none_or(|c| c.protocol_type == *protocol_type)
                && protocols.iter().any(|(name, _)| {
                    g.members
                        .iter()
                        .filter(|(id, _)| id.as_str() != member)
                        .all(|(_, m)| m.protocols.iter().any(|(n, _)| n == name))
                })
        }
    }
}

/// A member's answer to its join once the rebalance completed.
fn joined(g: &Group, member_id: &str, m: &Member) -> Joined {
    let client = g.client.as_ref();
    let protocol = client.and_then(|c| c.protocol.clone());
    let leader = client.and_then(|c| c.leader.clone()).unwrap_or_default();
    // Only the leader learns the members, each with its metadata for the
    // protocol chosen.
    let members = match &protocol {
        Some(p) if leader == member_id => g
            .members
            .iter()
            .map(|(id, m)| {
                let metadata = m
                    .protocols
                    .iter()
                    .find(|(n, _)| n == p)
                    .map(|(_, meta)| meta.clone())
                    .unwrap_or_default();
                (id.clone(), metadata)
            })
            .collect(),
        _ => Vec::new(),
    };
    Joined {
        generation: g.generation,
        member_id: member_id.to_string(),
        assignment: to_api(&m.assignment),
        assignor: g.strategy,
        follow_up: g.follow_up,
        protocol,
        leader,
        members,
    }
}

/// A SyncGroup belongs to the current generation, after its joins.
fn check_sync(g: &Group, group: &str, generation: i32) -> Result<(), BrokerError> {
    if matches!(g.state, State::Preparing { .. }) {
        return Err(BrokerError::RebalanceInProgress(group.to_string()));
    }
    if g.generation != generation {
        return Err(BrokerError::IllegalGeneration {
            group: group.to_string(),
            sent: generation,
            current: g.generation,
        });
    }
    Ok(())
}
