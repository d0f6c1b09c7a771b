//! The broker core's own requests and responses.
//!
//! Every protocol Eddy speaks calls the same [`Broker`](crate::Broker)
//! methods with these types and converts to and from its wire messages in
//! one place: gRPC in `crate::grpc`, Kafka in its listener. Nothing here
//! knows a wire format; partitions, offsets and producer identities are
//! newtypes, never bare integers.

mod data;
mod groups;

pub use data::{
    Acks, Chunk, FetchPartition, FetchRequest, FetchResponse, FetchTopic, Fetched, FetchedTopic,
    Header, ListedOffset, ListedTopic, OffsetsRequest, OffsetsTopic, PartitionData, ProduceRequest,
    ProduceResponse, Produced, ProducedTopic, Record, SubscribeRequest, TopicData,
};
pub use eddy_log::LeaderEpoch;
pub use eddy_meta::PartitionId;
pub use groups::{
    Assignor, CommitOffset, CommitOffsets, Committed, GroupDescription, GroupMember, GroupSummary,
    Heartbeat, JoinGroup, Joined, LeaveGroup, MemberAssignment, PartitionLag, Protocol, SyncGroup,
};

/// One partition of one topic.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct TopicPartition {
    pub topic: String,
    pub partition: PartitionId,
}

impl TopicPartition {
    pub fn new(topic: impl Into<String>, partition: PartitionId) -> TopicPartition {
        TopicPartition {
            topic: topic.into(),
            partition,
        }
    }
}

impl std::fmt::Display for TopicPartition {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}-{}", self.topic, self.partition)
    }
}
