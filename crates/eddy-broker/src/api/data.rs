//! Moving records: produce, fetch, subscribe and offset lookups.

use std::time::Duration;

use bytes::Bytes;
use eddy_log::{Offset, Timestamp, Written};
use eddy_meta::PartitionId;

use crate::error::BrokerError;
use crate::partition::StartAt;

/// Who must have a write before it is acknowledged.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Acks {
    /// Nobody: the answer carries no offsets.
    None,
    /// The leader.
    Leader,
    /// Every in-sync replica, and at least `min.insync.replicas` of them.
    All,
}

/// A record in structured form, for clients that do not encode batches.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Record {
    pub key: Option<Bytes>,
    /// `None` is a tombstone.
    pub value: Option<Bytes>,
    pub headers: Vec<Header>,
    /// `None`: the broker's clock when it is written.
    pub timestamp: Option<Timestamp>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Header {
    pub key: String,
    pub value: Bytes,
}

#[derive(Debug, Clone)]
pub struct ProduceRequest {
    pub acks: Acks,
    pub topics: Vec<TopicData>,
}

/// What to write to one topic.
#[derive(Debug, Clone, Default)]
pub struct TopicData {
    pub topic: String,
    /// Data for named partitions.
    pub partitions: Vec<PartitionData>,
    /// Records the broker places: keyed ones by murmur2 of the key, keyless
    /// ones together on the topic's next sticky partition.
    pub unplaced: Vec<Record>,
}

/// What to write to one partition: encoded batches written as they are,
/// and structured records encoded into one more batch.
#[derive(Debug, Clone)]
pub struct PartitionData {
    pub partition: PartitionId,
    /// Zero or more encoded record batches, back to back.
    pub batches: Bytes,
    pub records: Vec<Record>,
}

/// Where each batch of a produce request went, in request order by topic;
/// empty for [`Acks::None`].
#[derive(Debug, Clone, Default)]
pub struct ProduceResponse {
    pub topics: Vec<ProducedTopic>,
}

#[derive(Debug, Clone)]
pub struct ProducedTopic {
    pub topic: String,
    pub partitions: Vec<Produced>,
}

/// One batch written (or recognised as an idempotent producer's resend).
#[derive(Debug, Clone)]
pub struct Produced {
    pub partition: PartitionId,
    pub base_offset: Offset,
    pub last_offset: Offset,
    pub record_count: u32,
    pub log_start: Offset,
    pub written: Written,
}

/// A long-poll read of several partitions.
#[derive(Debug, Clone)]
pub struct FetchRequest {
    pub topics: Vec<FetchTopic>,
    /// For the whole response; `None`: the broker's default. The first
    /// batch with data may exceed it, so a large batch can always be read.
    pub max_bytes: Option<usize>,
    /// Answer once this much is there, or at `max_wait`.
    pub min_bytes: usize,
    pub max_wait: Duration,
}

#[derive(Debug, Clone)]
pub struct FetchTopic {
    pub topic: String,
    pub partitions: Vec<FetchPartition>,
}

#[derive(Debug, Clone)]
pub struct FetchPartition {
    pub partition: PartitionId,
    pub offset: Offset,
    /// `None`: the broker's default per partition.
    pub max_bytes: Option<usize>,
}

/// What a fetch read, in request order.
#[derive(Debug, Default)]
pub struct FetchResponse {
    pub topics: Vec<FetchedTopic>,
}

#[derive(Debug)]
pub struct FetchedTopic {
    pub topic: String,
    pub partitions: Vec<Fetched>,
}

/// One partition's part of a fetch. Stored batches go out as they are on
/// disk; the first may begin before the offset asked for.
#[derive(Debug)]
pub struct Fetched {
    pub partition: PartitionId,
    /// The offset asked for.
    pub from: Offset,
    pub high_watermark: Offset,
    pub log_start: Offset,
    /// Where the next fetch of this partition starts.
    pub next_offset: Offset,
    pub batches: Bytes,
    /// An error of this partition alone (such as an offset out of range);
    /// the others are answered.
    pub error: Option<BrokerError>,
}

/// Following one partition as it grows.
#[derive(Debug, Clone)]
pub struct SubscribeRequest {
    pub topic: String,
    pub partition: PartitionId,
    pub start: StartAt,
    /// Per message; `None`: the broker's default.
    pub max_bytes: Option<usize>,
}

/// One message of a subscription: stored batches from `from` on.
#[derive(Debug, Clone)]
pub struct Chunk {
    pub from: Offset,
    pub batches: Bytes,
    pub high_watermark: Offset,
    pub next_offset: Offset,
}

/// Offset lookups: the earliest, the latest, or the first at a time.
#[derive(Debug, Clone, Default)]
pub struct OffsetsRequest {
    pub topics: Vec<OffsetsTopic>,
}

#[derive(Debug, Clone)]
pub struct OffsetsTopic {
    pub topic: String,
    pub partitions: Vec<(PartitionId, StartAt)>,
}

#[derive(Debug)]
pub struct ListedTopic {
    pub topic: String,
    pub partitions: Vec<ListedOffset>,
}

/// One lookup's answer; a partition that fails carries its own error.
#[derive(Debug)]
pub struct ListedOffset {
    pub partition: PartitionId,
    pub offset: Result<Offset, BrokerError>,
    /// For a lookup by timestamp, the found record's own timestamp.
    pub timestamp: Option<Timestamp>,
    pub log_start: Offset,
    pub high_watermark: Offset,
}
