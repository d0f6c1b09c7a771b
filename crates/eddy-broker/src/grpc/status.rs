//! How a [`BrokerError`] reaches a gRPC client: a status with the error's
//! message, plus an `eddy-error` metadata entry naming the [`ErrorCode`]
//! for programs.

use eddy_meta::MetaError;
use eddy_proto::v1::{ErrorCode, PartitionError};
use tonic::{Code, Status};

use crate::error::BrokerError;

impl BrokerError {
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

impl From<&BrokerError> for Status {
    fn from(e: &BrokerError) -> Status {
        e.to_status()
    }
}
