//! `BrokerError` as the Kafka error codes clients act on: retriable codes
//! (NOT_LEADER_OR_FOLLOWER, NOT_ENOUGH_REPLICAS, ...) where a retry or a
//! metadata refresh helps, fatal ones where it cannot.

use eddy_broker::BrokerError;
use eddy_log::{BatchError, SequenceError};
use eddy_meta::MetaError;
use kafka_protocol::ResponseError as E;

/// The Kafka error code for `e`.
pub(crate) fn code(e: &BrokerError) -> i16 {
    kind(e).code()
}

fn kind(e: &BrokerError) -> E {
    use eddy_log::Error as L;
    match e {
        BrokerError::UnknownTopic(_) | BrokerError::UnknownPartition { .. } => {
            E::UnknownTopicOrPartition
        }
        BrokerError::TopicExists(_) => E::TopicAlreadyExists,
        // A broker shutting down or cut off from the controller: the
        // client refreshes its metadata and goes to the new leader.
        BrokerError::NotLeader { .. } | BrokerError::Fenced(_) | BrokerError::ShuttingDown => {
            E::NotLeaderOrFollower
        }
        BrokerError::InvalidRequest(_) | BrokerError::LimitExceeded(_) => E::InvalidRequest,
        BrokerError::Log { source, .. } => match source {
            L::Batch(BatchError::UnknownCompression(_)) => E::UnsupportedCompressionType,
            L::Batch(BatchError::BadMagic(_)) => E::UnsupportedForMessageFormat,
            L::Batch(_) => E::CorruptMessage,
            L::Config(_) | L::NotContiguous { .. } => E::InvalidRequest,
            L::OffsetOutOfRange { .. } => E::OffsetOutOfRange,
            L::Corrupt { .. } | L::Io { .. } | L::NotEddyDir { .. } => E::KafkaStorageError,
            L::StaleEpoch { .. } => E::NotLeaderOrFollower,
            L::Sequence(SequenceError::OutOfOrder { .. }) => E::OutOfOrderSequenceNumber,
            L::Sequence(SequenceError::Fenced { .. }) => E::InvalidProducerEpoch,
        },
        BrokerError::NotEnoughReplicas { .. } => E::NotEnoughReplicas,
        BrokerError::NotReplicated { .. } => E::NotEnoughReplicasAfterAppend,
        BrokerError::LeaderEpochMismatch { sent, current, .. } => {
            if sent < current {
                E::FencedLeaderEpoch
            } else {
                E::UnknownLeaderEpoch
            }
        }
        BrokerError::NotCoordinator { .. } => E::NotCoordinator,
        BrokerError::NotController { .. } => E::NotController,
        BrokerError::Meta(m) => match m {
            MetaError::TopicExists(_) => E::TopicAlreadyExists,
            MetaError::UnknownTopic(_) => E::UnknownTopicOrPartition,
            MetaError::InvalidTopicName { .. } => E::InvalidTopicException,
            MetaError::Invalid(_) => E::InvalidRequest,
            MetaError::NotFound(_) => E::ResourceNotFound,
            MetaError::Unavailable(_) => E::RequestTimedOut,
            MetaError::Io { .. } | MetaError::CorruptLog { .. } => E::KafkaStorageError,
        },
        BrokerError::UnknownGroup(_) => E::GroupIdNotFound,
        BrokerError::UnknownMember { .. } => E::UnknownMemberId,
        BrokerError::IllegalGeneration { .. } => E::IllegalGeneration,
        BrokerError::RebalanceInProgress(_) => E::RebalanceInProgress,
        BrokerError::InconsistentAssignor(_) => E::InconsistentGroupProtocol,
        BrokerError::GroupNotEmpty(_) => E::NonEmptyGroup,
        BrokerError::Internal(_) => E::UnknownServerError,
    }
}

#[cfg(test)]
mod tests {
    use eddy_meta::PartitionId;

    use super::*;

    #[test]
    fn clients_are_told_to_retry_where_a_retry_helps() {
        let not_leader = BrokerError::NotLeader {
            topic: "t".into(),
            partition: PartitionId(0),
            leader: None,
            epoch: 3,
        };
        assert_eq!(code(&not_leader), 6);
        let isr = BrokerError::NotEnoughReplicas {
            topic: "t".into(),
            partition: PartitionId(0),
            isr: 1,
            min: 2,
        };
        assert_eq!(code(&isr), 19);
        assert!(kind(&isr).is_retriable());
        assert_eq!(code(&BrokerError::UnknownTopic("t".into())), 3);
        assert_eq!(code(&BrokerError::RebalanceInProgress("g".into())), 27);
        assert_eq!(code(&BrokerError::Internal("x".into())), -1);
    }
}
