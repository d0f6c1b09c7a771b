//! Consumer groups: membership, committed offsets, and what describe shows.

use std::time::Duration;

use bytes::Bytes;
use eddy_log::Offset;

use super::TopicPartition;

/// How the coordinator spreads a group's partitions over its members.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Assignor {
    Range,
    RoundRobin,
    /// Moves as few partitions as it can, in two rebalances (the default).
    CooperativeSticky,
}

/// A member joining (or rejoining) a group; answered when the rebalance
/// it takes part in completes.
#[derive(Debug, Clone)]
pub struct JoinGroup {
    pub group_id: String,
    /// Empty for a new member: the coordinator names it.
    pub member_id: String,
    pub client_id: String,
    /// `None`: the broker's default.
    pub session_timeout: Option<Duration>,
    pub rebalance_timeout: Option<Duration>,
    pub topics: Vec<String>,
    pub assignor: Assignor,
    /// What the member holds now (the cooperative assignor keeps it).
    pub owned: Vec<TopicPartition>,
}

/// A member's part of a completed rebalance.
#[derive(Debug, Clone)]
pub struct Joined {
    pub generation: i32,
    pub member_id: String,
    pub assignment: Vec<TopicPartition>,
    pub assignor: Assignor,
    /// Another rebalance follows at once (a cooperative one's second half).
    pub follow_up: bool,
}

#[derive(Debug, Clone)]
pub struct Heartbeat {
    pub group_id: String,
    pub member_id: String,
    pub generation: i32,
    /// Longest to wait for a rebalance to start before answering.
    pub wait: Duration,
}

#[derive(Debug, Clone)]
pub struct LeaveGroup {
    pub group_id: String,
    pub member_id: String,
}

/// Offsets committed by a member of the generation given, or by an admin
/// (empty member id) for a group without members.
#[derive(Debug, Clone)]
pub struct CommitOffsets {
    pub group_id: String,
    pub member_id: String,
    pub generation: i32,
    pub offsets: Vec<CommitOffset>,
}

#[derive(Debug, Clone)]
pub struct CommitOffset {
    pub partition: TopicPartition,
    pub offset: Offset,
    pub metadata: Bytes,
}

/// A committed offset as the coordinator keeps it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Committed {
    pub offset: Offset,
    pub metadata: Bytes,
    pub commit_ms: i64,
}

#[derive(Debug, Clone)]
pub struct GroupSummary {
    pub group_id: String,
    pub state: &'static str,
    pub members: u32,
}

#[derive(Debug, Clone)]
pub struct GroupDescription {
    pub group_id: String,
    pub state: &'static str,
    pub generation: i32,
    pub assignor: Option<Assignor>,
    pub members: Vec<GroupMember>,
    /// Every partition assigned or committed, with its lag.
    pub partitions: Vec<PartitionLag>,
}

#[derive(Debug, Clone)]
pub struct GroupMember {
    pub member_id: String,
    pub client_id: String,
    pub assignment: Vec<TopicPartition>,
}

#[derive(Debug, Clone)]
pub struct PartitionLag {
    pub partition: TopicPartition,
    pub committed: Option<Offset>,
    /// The high watermark.
    pub log_end: Offset,
    pub lag: u64,
    /// The member it is assigned to; empty if none.
    pub owner: String,
}
