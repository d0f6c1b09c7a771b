//! The metadata quorum: `Command`s replicated with openraft among the
//! voters, applied in the same order on every one of them.
//!
//! openraft is pinned at `=0.9.25`, its stable line (0.10 is still an alpha
//! whose API changes between releases; patch releases of 0.9 change
//! election and replication behaviour, hence the exact pin). Features:
//! `serde` (its messages travel as JSON), `storage-v2` (the storage traits
//! are sealed without it) and `generic-snapshot-data` (a snapshot is one
//! `Vec<u8>` sent in one RPC).
//!
//! - `log_store.rs`: the Raft log, vote and purge point in files.
//! - `state_machine.rs`: `MetaState` applied from the log, with snapshots.
//! - `network.rs`: openraft's network over a [`Transport`] the broker gives
//!   (this crate knows nothing about gRPC).
//! - `revive.rs`: starts the core again after a storage error stopped it.
//! - `fsutil.rs`: atomic file replacement.

pub(crate) mod fsutil;
pub(crate) mod log_store;
pub(crate) mod network;
pub(crate) mod revive;
pub(crate) mod state_machine;
#[cfg(test)]
mod tests;

use openraft::BasicNode;
use serde::{Deserialize, Serialize};

use crate::error::MetaError;
use crate::state::Command;

pub use network::{Rpc, Transport, TransportError};

/// What applying one entry gave, sent back to whoever proposed it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Response {
    /// Applied; the state's version after it, and what the command gave
    /// (read from the state right after it, which later entries may have
    /// changed by the time the proposer looks).
    Applied {
        version: u64,
        output: Option<crate::state::Output>,
    },
    /// Refused by `MetaState::check` when it was applied (the entry stays
    /// in the log but changed nothing): the check runs where every voter
    /// reaches the same verdict, not only at the proposer.
    Rejected(Rejection),
    /// A blank or membership entry.
    None,
}

/// Why a command was refused, as it travels between voters.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Rejection {
    TopicExists(String),
    UnknownTopic(String),
    InvalidTopicName { name: String, reason: String },
    Invalid(String),
    NotFound(String),
}

impl Rejection {
    pub(crate) fn of(e: &MetaError) -> Rejection {
        match e {
            MetaError::TopicExists(t) => Rejection::TopicExists(t.clone()),
            MetaError::UnknownTopic(t) => Rejection::UnknownTopic(t.clone()),
            MetaError::InvalidTopicName { name, reason } => Rejection::InvalidTopicName {
                name: name.clone(),
                reason: reason.clone(),
            },
            MetaError::NotFound(m) => Rejection::NotFound(m.clone()),
            other => Rejection::Invalid(other.to_string()),
        }
    }

    pub(crate) fn into_error(self) -> MetaError {
        match self {
            Rejection::TopicExists(t) => MetaError::TopicExists(t),
            Rejection::UnknownTopic(t) => MetaError::UnknownTopic(t),
            Rejection::InvalidTopicName { name, reason } => {
                MetaError::InvalidTopicName { name, reason }
            }
            Rejection::Invalid(m) => MetaError::Invalid(m),
            Rejection::NotFound(m) => MetaError::NotFound(m),
        }
    }
}

/// Raft's node id: an Eddy node id, which is never negative.
pub type RaftId = u64;

openraft::declare_raft_types!(
    pub TypeConfig:
        D = Command,
        R = Response,
        NodeId = RaftId,
        Node = BasicNode,
        Entry = openraft::Entry<TypeConfig>,
        SnapshotData = Vec<u8>,
        AsyncRuntime = openraft::TokioRuntime,
);

/// openraft's generic types for this configuration.
pub(crate) mod typ {
    use openraft::BasicNode;

    use super::{RaftId, TypeConfig};

    pub type Raft = openraft::Raft<TypeConfig>;
    pub type Entry = openraft::Entry<TypeConfig>;
    pub type LogId = openraft::LogId<RaftId>;
    pub type Vote = openraft::Vote<RaftId>;
    pub type StorageError = openraft::StorageError<RaftId>;
    pub type StoredMembership = openraft::StoredMembership<RaftId, BasicNode>;
    pub type SnapshotMeta = openraft::SnapshotMeta<RaftId, BasicNode>;
    pub type Snapshot = openraft::Snapshot<TypeConfig>;
    pub type RaftError<E = openraft::error::Infallible> = openraft::error::RaftError<RaftId, E>;
    pub type RPCError<E = openraft::error::Infallible> =
        openraft::error::RPCError<RaftId, BasicNode, RaftError<E>>;
    pub type Fatal = openraft::error::Fatal<RaftId>;
    pub type StreamingError = openraft::error::StreamingError<TypeConfig, Fatal>;
    pub type ClientWriteError = openraft::error::ClientWriteError<RaftId, BasicNode>;
    pub type ClientWriteResponse = openraft::raft::ClientWriteResponse<TypeConfig>;
    pub type CheckIsLeaderError = openraft::error::CheckIsLeaderError<RaftId, BasicNode>;
}

/// openraft's settings for Eddy's metadata quorum (brokers on one LAN).
pub(crate) fn config() -> openraft::Config {
    openraft::Config {
        cluster_name: "eddy-meta".into(),
        // Also openraft's timeout for every AppendEntries, a follower's
        // fsync included: well above a slow fsync plus a round trip.
        heartbeat_interval: 250,
        // A follower that hears from no leader for this long (random in the
        // range) plus openraft's leader lease (the maximum) campaigns: a dead
        // leader is replaced in 1.5–2 s (a follower with a shorter log waits
        // twice the maximum more, so the most complete one wins).
        election_timeout_min: 500,
        election_timeout_max: 1000,
        install_snapshot_timeout: 10_000,
        // Entries per AppendEntries: bounds one message and one RPC's time.
        max_payload_entries: 256,
        snapshot_policy: openraft::SnapshotPolicy::LogsSinceLast(1000),
        // A briefly lagging follower catches up from the log, not a snapshot.
        max_in_snapshot_log_to_keep: 500,
        purge_batch_size: 64,
        ..Default::default()
    }
}
