//! The group coordinator: consumer-group membership, rebalancing, and
//! committed offsets stored in the internal compacted topic
//! `__consumer_offsets`.
//!
//! A group lives on the broker leading partition `murmur2(group) % P` of
//! `__consumer_offsets`. In a group of Eddy's clients the coordinator
//! computes assignments itself (no group leader): a rebalance starts when
//! membership or subscriptions change and completes when every known
//! member has rejoined or the rebalance timeout has passed; members that
//! did not rejoin are removed. A group of Kafka clients (the classic
//! protocol) rebalances the same way, but its leader, a member, assigns:
//! the completed rebalance waits for the leader's SyncGroup.
//!
//! Join and heartbeat are long polls: a heartbeat waits (up to what the
//! member asks) and answers REBALANCE_IN_PROGRESS the moment a rebalance
//! starts, so members learn of rebalances in milliseconds, not at their next
//! heartbeat interval.
//!
//! The modules, one job each: `state.rs` (a group's membership state
//! machine), `membership.rs` (join, heartbeat, leave), `offsets.rs`
//! (committed offsets and `__consumer_offsets`), `describe.rs` (list and
//! describe), `expiry.rs` (sessions, deadlines, retention), `assignor.rs`
//! and `records.rs`.

pub mod assignor;
mod describe;
mod expiry;
#[cfg(test)]
mod expiry_tests;
#[cfg(test)]
mod generation_tests;
mod membership;
mod offsets;
mod records;
mod state;

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;

use eddy_log::LeaderEpoch;
use eddy_meta::TopicId;
use parking_lot::Mutex;

use self::assignor::Tp;
pub(crate) use self::expiry::group_ticker;
use self::state::Group;
use crate::api::{Committed, PartitionId, TopicPartition};
use crate::error::BrokerError;

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

/// Coordinator state of one broker.
#[derive(Debug)]
pub struct Coordinator {
    pub config: GroupConfig,
    groups: Mutex<HashMap<String, Group>>,
    offsets: Mutex<HashMap<String, BTreeMap<Tp, Committed>>>,
    /// Commits to one offsets partition are written and cached in order.
    write_locks: Vec<Arc<tokio::sync::Mutex<()>>>,
    /// Groups whose generation is waiting to be written (at most one
    /// write pending per group), and the newest generation written.
    persisting: Mutex<HashSet<String>>,
    persisted: Mutex<HashMap<String, i32>>,
    /// `__consumer_offsets` partitions whose groups are loaded, and the
    /// leader epoch they were loaded in. Taken after `groups` wherever
    /// both are held, so that loading and forgetting a partition's groups
    /// change both together.
    loaded: Mutex<HashMap<u32, LeaderEpoch>>,
}

impl Coordinator {
    pub fn new(config: GroupConfig) -> Coordinator {
        let write_locks = (0..config.offsets_topic_partitions.max(1))
            .map(|_| Arc::new(tokio::sync::Mutex::new(())))
            .collect();
        Coordinator {
            config,
            groups: Mutex::new(HashMap::new()),
            offsets: Mutex::new(HashMap::new()),
            write_locks,
            persisting: Mutex::new(HashSet::new()),
            persisted: Mutex::new(HashMap::new()),
            loaded: Mutex::new(HashMap::new()),
        }
    }
}

/// Assignors work on plain pairs; the core's callers see [`TopicPartition`]s.
fn to_api(tps: &[Tp]) -> Vec<TopicPartition> {
    tps.iter()
        .map(|(topic, p)| TopicPartition::new(topic.clone(), PartitionId(*p)))
        .collect()
}

fn from_api(tps: &[TopicPartition]) -> Vec<Tp> {
    tps.iter()
        .map(|tp| (tp.topic.clone(), tp.partition.0))
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

fn uuid_short() -> String {
    let id = TopicId::random().to_string();
    id.split('-').next().unwrap_or(&id).to_string()
}
