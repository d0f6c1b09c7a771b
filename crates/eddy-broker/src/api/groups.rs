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

/// Who hands out a group's partitions.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Protocol {
    /// The coordinator, with this assignor (Eddy's own clients).
    Server(Assignor),
    /// The group's leader, one of its members (Kafka's classic protocol):
    /// the protocol type every member shares (`consumer`), and this
    /// member's protocols by preference, each a name (`range`,
    /// `cooperative-sticky`, ...) and metadata only clients read.
    Client {
        protocol_type: String,
        protocols: Vec<(String, Bytes)>,
    },
}

/// A member joining (or rejoining) a group; answered when the rebalance
/// it takes part in completes.
#[derive(Debug, Clone)]
pub struct JoinGroup {
    pub group_id: String,
    /// Empty for a new member: the coordinator names it.
    pub member_id: String,
    pub client_id: String,
    /// Where the member connects from (its address, as Kafka shows it).
    pub client_host: String,
    /// `None`: the broker's default.
    pub session_timeout: Option<Duration>,
    pub rebalance_timeout: Option<Duration>,
    /// The topics it reads (for a client-assigned member, as its
    /// protocol metadata says: what describe and lag show).
    pub topics: Vec<String>,
    pub protocol: Protocol,
    /// What the member holds now (the cooperative assignor keeps it).
    pub owned: Vec<TopicPartition>,
}

/// A member's part of a completed rebalance.
#[derive(Debug, Clone)]
pub struct Joined {
    pub generation: i32,
    pub member_id: String,
    /// The coordinator's assignment (server-assigned groups; client-
    /// assigned members get theirs from [`SyncGroup`]).
    pub assignment: Vec<TopicPartition>,
    pub assignor: Option<Assignor>,
    /// Another rebalance follows at once (a cooperative one's second half).
    pub follow_up: bool,
    /// Client-assigned groups: the protocol chosen, the leader, and for
    /// the leader alone every member with its metadata for that protocol.
    pub protocol: Option<String>,
    pub leader: String,
    pub members: Vec<(String, Bytes)>,
}

/// A member of a client-assigned group asking for its assignment; the
/// leader brings everyone's.
#[derive(Debug, Clone)]
pub struct SyncGroup {
    pub group_id: String,
    pub member_id: String,
    pub generation: i32,
    pub assignments: Vec<MemberAssignment>,
}

/// One member's assignment as the leader encoded it, and the partitions
/// in it (which describe and lag show).
#[derive(Debug, Clone)]
pub struct MemberAssignment {
    pub member_id: String,
    pub encoded: Bytes,
    pub partitions: Vec<TopicPartition>,
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
    /// A client-assigned group's protocol type (`consumer`); `None` for
    /// a server-assigned one.
    pub protocol_type: Option<String>,
    pub state: &'static str,
    pub members: u32,
}

#[derive(Debug, Clone)]
pub struct GroupDescription {
    pub group_id: String,
    pub state: &'static str,
    pub generation: i32,
    pub assignor: Option<Assignor>,
    /// A client-assigned group's protocol type (`consumer`) and protocol
    /// (`range`, ...).
    pub protocol_type: Option<String>,
    pub protocol: Option<String>,
    pub members: Vec<GroupMember>,
    /// Every partition assigned or committed, with its lag.
    pub partitions: Vec<PartitionLag>,
}

#[derive(Debug, Clone)]
pub struct GroupMember {
    pub member_id: String,
    pub client_id: String,
    pub client_host: String,
    pub assignment: Vec<TopicPartition>,
    /// A client-assigned member's metadata for the group's protocol and
    /// its assignment as the leader encoded it; empty otherwise.
    pub metadata: Bytes,
    pub encoded_assignment: Bytes,
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
