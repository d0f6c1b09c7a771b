//! The broker's error type and how it reaches clients: a gRPC status with
//! a message saying what to do, plus an `eddy-error` metadata entry naming
//! the [`ErrorCode`] for programs.

use eddy_meta::MetaError;
use eddy_proto::v1::{ErrorCode, PartitionError};
use tonic::{Code, Status};

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
        partition: u32,
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
        partition: u32,
        leader: Option<eddy_meta::NodeId>,
        epoch: i32,
    },
    #[error("{0}")]
    InvalidRequest(String),
    #[error("{topic}-{partition}: {source}")]
    Log {
        topic: String,
        partition: u32,
        #[source]
        source: eddy_log::Error,
    },
    #[error(
        "{topic}-{partition} has {isr} in-sync replica(s) but min.insync.replicas is {min}; acks=all cannot be met — use acks=1, lower min.insync.replicas, or bring replicas back"
    )]
    NotEnoughReplicas {
        topic: String,
        partition: u32,
        isr: usize,
        min: u32,
    },
    #[error(
        "{topic}-{partition}: written on the leader, but the in-sync replicas did not confirm it within {waited_ms} ms; retry (an idempotent producer's retry is not written twice)"
    )]
    NotReplicated {
        topic: String,
        partition: u32,
        waited_ms: u64,
    },
    #[error(
        "{topic}-{partition}: the request names leader epoch {sent}, this broker has {current}; {}",
        if sent < current { "the sender follows an old leader: refresh metadata" } else { "this broker's metadata is behind: retry shortly" }
    )]
    LeaderEpochMismatch {
        topic: String,
        partition: u32,
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
    pub(crate) fn log(topic: &str, partition: u32) -> impl FnOnce(eddy_log::Error) -> BrokerError {
        let topic = topic.to_string();
        move |source| BrokerError::Log {
            topic,
            partition,
            source,
        }
    }

    /// The machine-readable kind.
    pub fn code(&self) -> ErrorCode {
        use eddy_log::Error as L;
        match self {
            BrokerError::UnknownTopic(_) => ErrorCode::UnknownTopic,
            BrokerError::UnknownPartition { .. } => ErrorCode::UnknownPartition,
            BrokerError::TopicExists(_) => ErrorCode::TopicExists,
            BrokerError::NotLeader { .. } => ErrorCode::NotLeader,
            BrokerError::InvalidRequest(_) => ErrorCode::InvalidRequest,
            BrokerError::Log { source, .. } => match source {
                L::Batch(_) | L::Config(_) => ErrorCode::InvalidRequest,
                L::OffsetOutOfRange { .. } => ErrorCode::OffsetOutOfRange,
                L::Corrupt { .. } => ErrorCode::CorruptData,
                L::NotContiguous { .. } => ErrorCode::InvalidRequest,
                L::StaleEpoch { .. } => ErrorCode::NotLeader,
                L::Sequence(eddy_log::SequenceError::OutOfOrder { .. }) => {
                    ErrorCode::OutOfOrderSequence
                }
                L::Sequence(eddy_log::SequenceError::Fenced { .. }) => ErrorCode::ProducerFenced,
                L::Io { .. } | L::NotEddyDir { .. } => ErrorCode::StorageError,
            },
            BrokerError::NotEnoughReplicas { .. } => ErrorCode::NotEnoughReplicas,
            BrokerError::NotReplicated { .. } => ErrorCode::NotEnoughReplicasAfterAppend,
            BrokerError::Fenced(_) => ErrorCode::NotLeader,
            BrokerError::NotCoordinator { .. } => ErrorCode::NotCoordinator,
            BrokerError::NotController { .. } => ErrorCode::NotController,
            BrokerError::LeaderEpochMismatch { sent, current, .. } => {
                if sent < current {
                    ErrorCode::FencedLeaderEpoch
                } else {
                    ErrorCode::UnknownLeaderEpoch
                }
            }
            BrokerError::LimitExceeded(_) => ErrorCode::LimitExceeded,
            BrokerError::Meta(e) => match e {
                MetaError::TopicExists(_) => ErrorCode::TopicExists,
                MetaError::UnknownTopic(_) => ErrorCode::UnknownTopic,
                MetaError::NotFound(_) => ErrorCode::NotFound,
                MetaError::Unavailable(_) => ErrorCode::Unavailable,
                MetaError::InvalidTopicName { .. } | MetaError::Invalid(_) => {
                    ErrorCode::InvalidRequest
                }
                MetaError::Io { .. } | MetaError::CorruptLog { .. } => ErrorCode::StorageError,
            },
            BrokerError::UnknownGroup(_) => ErrorCode::InvalidRequest,
            BrokerError::UnknownMember { .. } => ErrorCode::UnknownMember,
            BrokerError::IllegalGeneration { .. } => ErrorCode::IllegalGeneration,
            BrokerError::RebalanceInProgress(_) => ErrorCode::RebalanceInProgress,
            BrokerError::InconsistentAssignor(_) => ErrorCode::InconsistentAssignor,
            BrokerError::GroupNotEmpty(_) => ErrorCode::GroupNotEmpty,
            BrokerError::ShuttingDown => ErrorCode::Unavailable,
            BrokerError::Internal(_) => ErrorCode::Internal,
        }
    }

    fn grpc_code(&self) -> Code {
        if matches!(self, BrokerError::UnknownGroup(_)) {
            return Code::NotFound;
        }
        match self.code() {
            ErrorCode::UnknownTopic | ErrorCode::NotFound => Code::NotFound,
            ErrorCode::InvalidProcessor => Code::InvalidArgument,
            ErrorCode::UnknownPartition | ErrorCode::OffsetOutOfRange => Code::OutOfRange,
            ErrorCode::TopicExists => Code::AlreadyExists,
            ErrorCode::InvalidRequest => Code::InvalidArgument,
            ErrorCode::NotEnoughReplicas
            | ErrorCode::NotLeader
            | ErrorCode::FencedLeaderEpoch
            | ErrorCode::NotCoordinator
            | ErrorCode::NotController => Code::FailedPrecondition,
            ErrorCode::UnknownLeaderEpoch | ErrorCode::NotEnoughReplicasAfterAppend => {
                Code::Unavailable
            }
            ErrorCode::LimitExceeded => Code::ResourceExhausted,
            ErrorCode::CorruptData => Code::DataLoss,
            ErrorCode::RebalanceInProgress
            | ErrorCode::IllegalGeneration
            | ErrorCode::StreamAborted => Code::Aborted,
            ErrorCode::UnknownMember
            | ErrorCode::InconsistentAssignor
            | ErrorCode::GroupNotEmpty
            | ErrorCode::OutOfOrderSequence
            | ErrorCode::ProducerFenced => Code::FailedPrecondition,
            ErrorCode::Unavailable => Code::Unavailable,
            ErrorCode::StorageError if self.is_disk_full() => Code::ResourceExhausted,
            ErrorCode::StorageError | ErrorCode::Internal | ErrorCode::None => Code::Internal,
        }
    }

    fn is_disk_full(&self) -> bool {
        matches!(self, BrokerError::Log { source, .. } if source.is_disk_full())
    }

    /// As a gRPC status, with the code name in `eddy-error` metadata.
    pub fn to_status(&self) -> Status {
        let mut status = Status::new(self.grpc_code(), self.to_string());
        if let Ok(v) = self.code().as_str_name().parse() {
            status
                .metadata_mut()
                .insert(eddy_proto::ERROR_CODE_METADATA, v);
        }
        status
    }

    /// As a per-partition error inside an otherwise successful response.
    pub fn to_partition_error(&self) -> PartitionError {
        PartitionError {
            code: self.code() as i32,
            message: self.to_string(),
        }
    }
}

impl From<BrokerError> for Status {
    fn from(e: BrokerError) -> Status {
        e.to_status()
    }
}
