//! The broker core's error type. Each message says what went wrong and
//! what to do; each protocol maps the variants to its own codes (gRPC in
//! `grpc/status.rs`).

use eddy_meta::{MetaError, PartitionId};

/// Everything that can go wrong serving a request.
#[derive(Debug, thiserror::Error)]
pub enum BrokerError {
    #[error(
        "topic {0:?} does not exist; create it with `eddy topic create {0}` or list topics with `eddy topic list`"
    )]
    UnknownTopic(String),
    #[error("topic {topic:?} has {count} partitions (0..={}); partition {partition} does not exist", count.saturating_sub(1))]
    UnknownPartition {
        topic: String,
        partition: PartitionId,
        count: u32,
    },
    #[error("topic {0:?} already exists")]
    TopicExists(String),
    #[error(
        "this broker does not lead {topic}-{partition} (leader: {}, epoch {epoch}); refresh metadata and send it to the leader",
        leader.map_or("none".to_string(), |n| format!("node {n}"))
    )]
    NotLeader {
        topic: String,
        partition: PartitionId,
        leader: Option<eddy_meta::NodeId>,
        epoch: i32,
    },
    #[error("{0}")]
    InvalidRequest(String),
    #[error("{topic}-{partition}: {source}")]
    Log {
        topic: String,
        partition: PartitionId,
        #[source]
        source: eddy_log::Error,
    },
    #[error(
        "{topic}-{partition} has {isr} in-sync replica(s) but min.insync.replicas is {min}; acks=all cannot be met — use acks=1, lower min.insync.replicas, or bring replicas back"
    )]
    NotEnoughReplicas {
        topic: String,
        partition: PartitionId,
        isr: usize,
        min: u32,
    },
    #[error(
        "{topic}-{partition}: written on the leader, but the in-sync replicas did not confirm it within {waited_ms} ms; retry (an idempotent producer's retry is not written twice)"
    )]
    NotReplicated {
        topic: String,
        partition: PartitionId,
        waited_ms: u64,
    },
    #[error(
        "{topic}-{partition}: the request names leader epoch {sent}, this broker has {current}; {}",
        if sent < current { "the sender follows an old leader: refresh metadata" } else { "this broker's metadata is behind: retry shortly" }
    )]
    LeaderEpochMismatch {
        topic: String,
        partition: PartitionId,
        sent: i32,
        current: i32,
    },
    #[error(
        "this broker does not coordinate group {group:?} (another broker leads its partition of __consumer_offsets); find the coordinator again"
    )]
    NotCoordinator { group: String },
    /// This broker may not take writes (it lost contact with the controller).
    #[error("{0}")]
    Fenced(String),
    #[error(
        "this broker does not lead the metadata controller ({}); send it to the controller leader",
        leader.map_or("no leader is known yet".to_string(), |n| format!("broker {n} does"))
    )]
    NotController { leader: Option<eddy_meta::NodeId> },
    #[error("{0}")]
    LimitExceeded(String),
    #[error("{0}")]
    Meta(#[from] MetaError),
    #[error("group {0:?} does not exist")]
    UnknownGroup(String),
    #[error(
        "group {group:?} does not know member {member:?} (its session expired or it left); join again"
    )]
    UnknownMember { group: String, member: String },
    #[error("group {group:?} is in generation {current}, not {sent}; rejoin the group")]
    IllegalGeneration {
        group: String,
        sent: i32,
        current: i32,
    },
    #[error("group {0:?} is rebalancing; rejoin it")]
    RebalanceInProgress(String),
    #[error(
        "members of group {0:?} asked for different assignors; use the same one in every member"
    )]
    InconsistentAssignor(String),
    #[error("group {0:?} has active members; stop them first, or commit as a member")]
    GroupNotEmpty(String),
    #[error("the broker is shutting down; retry against another broker or after it restarts")]
    ShuttingDown,
    #[error("internal error: {0}")]
    Internal(String),
}

impl BrokerError {
    pub(crate) fn log(
        topic: &str,
        partition: PartitionId,
    ) -> impl FnOnce(eddy_log::Error) -> BrokerError {
        let topic = topic.to_string();
        move |source| BrokerError::Log {
            topic,
            partition,
            source,
        }
    }
}
