//! Protobuf messages to the broker core's types and back: the one place
//! where gRPC's shapes (zero meaning "default", `uint32` partitions,
//! `decode` flags) meet the core's.

use std::time::Duration;

use bytes::Bytes;
use eddy_log::{BATCH_BYTES_LIMIT, Offset, Timestamp, Written, batches};
use eddy_meta::PartitionId;
use eddy_proto::v1 as pb;

use crate::api;
use crate::error::BrokerError;
use crate::partition::StartAt;

/// Zero means "the broker's default" in Eddy's protos.
fn nonzero(n: u32) -> Option<usize> {
    (n != 0).then_some(n as usize)
}

fn millis(n: u32) -> Option<Duration> {
    (n != 0).then(|| Duration::from_millis(u64::from(n)))
}

pub(super) fn produce_request(req: pb::ProduceRequest) -> Result<api::ProduceRequest, BrokerError> {
    let acks = match pb::Acks::try_from(req.acks) {
        Ok(pb::Acks::None) => api::Acks::None,
        Ok(pb::Acks::Leader) => api::Acks::Leader,
        Ok(pb::Acks::All | pb::Acks::Unspecified) => api::Acks::All,
        Err(_) => {
            return Err(BrokerError::InvalidRequest(format!(
                "acks={} is not a known Acks value",
                req.acks
            )));
        }
    };
    let topics = req
        .topics
        .into_iter()
        .map(|t| api::TopicData {
            topic: t.topic,
            partitions: t
                .partitions
                .into_iter()
                .map(|p| api::PartitionData {
                    partition: PartitionId(p.partition),
                    batches: p.batch,
                    records: p.records.into_iter().map(record).collect(),
                })
                .collect(),
            unplaced: t.records.into_iter().map(record).collect(),
        })
        .collect();
    Ok(api::ProduceRequest { acks, topics })
}

fn record(r: pb::Record) -> api::Record {
    api::Record {
        key: r.key,
        value: r.value,
        headers: r
            .headers
            .into_iter()
            .map(|h| api::Header {
                key: h.key,
                value: h.value,
            })
            .collect(),
        timestamp: r.timestamp_ms.map(Timestamp),
    }
}

pub(super) fn produce_response(
    correlation_id: u64,
    response: api::ProduceResponse,
) -> pb::ProduceResponse {
    let topics = response
        .topics
        .into_iter()
        .map(|t| pb::TopicProduceResult {
            topic: t.topic,
            partitions: t
                .partitions
                .into_iter()
                .map(|p| pb::PartitionProduceResult {
                    partition: p.partition.0,
                    base_offset: p.base_offset.0,
                    last_offset: p.last_offset.0,
                    record_count: p.record_count,
                    log_start_offset: p.log_start.0,
                    duplicate: p.written != Written::New,
                    offsets_unknown: p.written == Written::DuplicateOffsetsUnknown,
                })
                .collect(),
        })
        .collect();
    pb::ProduceResponse {
        correlation_id,
        topics,
        error: None,
    }
}

pub(super) fn fetch_request(req: &pb::FetchRequest) -> api::FetchRequest {
    api::FetchRequest {
        topics: req
            .topics
            .iter()
            .map(|t| api::FetchTopic {
                topic: t.topic.clone(),
                partitions: t
                    .partitions
                    .iter()
                    .map(|p| api::FetchPartition {
                        partition: PartitionId(p.partition),
                        offset: Offset(p.offset),
                        max_bytes: nonzero(p.max_bytes),
                    })
                    .collect(),
            })
            .collect(),
        max_bytes: nonzero(req.max_bytes),
        min_bytes: req.min_bytes as usize,
        max_wait: Duration::from_millis(u64::from(req.max_wait_ms)),
    }
}

/// A fetch's answer, its records decoded too if the client asked.
pub(super) fn fetch_response(response: api::FetchResponse, decode: bool) -> pb::FetchResponse {
    let topics = response
        .topics
        .into_iter()
        .map(|t| pb::FetchTopicResult {
            topic: t.topic,
            partitions: t
                .partitions
                .into_iter()
                .map(|p| {
                    let mut result = pb::FetchPartitionResult {
                        partition: p.partition.0,
                        high_watermark: p.high_watermark.0,
                        log_start_offset: p.log_start.0,
                        next_offset: p.next_offset.0,
                        error: p.error.as_ref().map(BrokerError::to_partition_error),
                        ..Default::default()
                    };
                    if decode
                        && result.error.is_none()
                        && let Err(e) = decode_records(&p.batches, p.from, &mut result.records)
                    {
                        result.error = Some(e.to_partition_error());
                    }
                    result.batches = p.batches;
                    result
                })
                .collect(),
        })
        .collect();
    pb::FetchResponse { topics }
}

pub(super) fn subscribe_request(req: &pb::SubscribeRequest) -> api::SubscribeRequest {
    api::SubscribeRequest {
        topic: req.topic.clone(),
        partition: PartitionId(req.partition),
        start: start_at(req.start.as_ref()),
        max_bytes: nonzero(req.max_bytes),
    }
}

pub(super) fn subscribe_response(
    chunk: api::Chunk,
    decode: bool,
) -> Result<pb::SubscribeResponse, BrokerError> {
    let mut message = pb::SubscribeResponse {
        batches: Bytes::new(),
        records: Vec::new(),
        high_watermark: chunk.high_watermark.0,
        next_offset: chunk.next_offset.0,
    };
    if decode {
        decode_records(&chunk.batches, chunk.from, &mut message.records)?;
    }
    message.batches = chunk.batches;
    Ok(message)
}

pub(super) fn offsets_request(req: pb::ListOffsetsRequest) -> api::OffsetsRequest {
    api::OffsetsRequest {
        topics: req
            .topics
            .into_iter()
            .map(|t| api::OffsetsTopic {
                topic: t.topic,
                partitions: t
                    .partitions
                    .into_iter()
                    .map(|p| (PartitionId(p.partition), start_at(p.spec.as_ref())))
                    .collect(),
            })
            .collect(),
    }
}

pub(super) fn offsets_response(topics: Vec<api::ListedTopic>) -> pb::ListOffsetsResponse {
    pb::ListOffsetsResponse {
        topics: topics
            .into_iter()
            .map(|t| pb::ListOffsetsTopicResult {
                topic: t.topic,
                partitions: t
                    .partitions
                    .into_iter()
                    .map(|p| pb::ListOffsetsPartitionResult {
                        partition: p.partition.0,
                        offset: p.offset.as_ref().map_or(0, |o| o.0),
                        log_start_offset: p.log_start.0,
                        high_watermark: p.high_watermark.0,
                        error: p.offset.err().map(|e| e.to_partition_error()),
                    })
                    .collect(),
            })
            .collect(),
    }
}

/// What an `OffsetSpec` asks for; absent means earliest.
fn start_at(spec: Option<&pb::OffsetSpec>) -> StartAt {
    use pb::offset_spec::Spec;
    match spec.and_then(|s| s.spec.as_ref()) {
        None | Some(Spec::Earliest(_)) => StartAt::Earliest,
        Some(Spec::Latest(_)) => StartAt::Latest,
        Some(Spec::Offset(o)) => StartAt::Offset(Offset(*o)),
        Some(Spec::TimestampMs(ts)) => StartAt::Timestamp(Timestamp(*ts)),
    }
}

/// Decodes stored batches into structured records, keeping those at or
/// after `from`.
fn decode_records(
    stored: &[u8],
    from: Offset,
    out: &mut Vec<pb::ConsumedRecord>,
) -> Result<(), BrokerError> {
    let bad = |e: eddy_log::BatchError| {
        BrokerError::Internal(format!("stored batch failed to decode: {e}"))
    };
    for batch in batches(stored, BATCH_BYTES_LIMIT) {
        let records = batch.and_then(|b| b.decoded()).map_err(bad)?;
        for record in records.iter() {
            let record = record.map_err(bad)?;
            if record.offset < from {
                continue;
            }
            out.push(pb::ConsumedRecord {
                offset: record.offset.0,
                timestamp_ms: record.timestamp.0,
                key: record.key.map(Bytes::copy_from_slice),
                value: record.value.map(Bytes::copy_from_slice),
                headers: record
                    .headers()
                    .map(|(k, v)| pb::Header {
                        key: k.to_string(),
                        value: Bytes::copy_from_slice(v),
                    })
                    .collect(),
            });
        }
    }
    Ok(())
}

fn assignor(a: i32) -> Result<api::Assignor, BrokerError> {
    match pb::Assignor::try_from(a) {
        Ok(pb::Assignor::Range) => Ok(api::Assignor::Range),
        Ok(pb::Assignor::RoundRobin) => Ok(api::Assignor::RoundRobin),
        Ok(pb::Assignor::CooperativeSticky | pb::Assignor::Unspecified) => {
            Ok(api::Assignor::CooperativeSticky)
        }
        Err(_) => Err(BrokerError::InvalidRequest(format!(
            "assignor {a} is not a known Assignor"
        ))),
    }
}

fn assignor_pb(a: Option<api::Assignor>) -> i32 {
    (match a {
        Some(api::Assignor::Range) => pb::Assignor::Range,
        Some(api::Assignor::RoundRobin) => pb::Assignor::RoundRobin,
        Some(api::Assignor::CooperativeSticky) => pb::Assignor::CooperativeSticky,
        None => pb::Assignor::Unspecified,
    }) as i32
}

/// Partitions grouped by topic, topics in name order.
fn topic_partitions(tps: &[api::TopicPartition]) -> Vec<pb::TopicPartitions> {
    let mut by_topic: std::collections::BTreeMap<&str, Vec<u32>> = Default::default();
    for tp in tps {
        by_topic.entry(&tp.topic).or_default().push(tp.partition.0);
    }
    by_topic
        .into_iter()
        .map(|(topic, partitions)| pb::TopicPartitions {
            topic: topic.to_string(),
            partitions,
        })
        .collect()
}

fn partitions_of(tps: Vec<pb::TopicPartitions>) -> Vec<api::TopicPartition> {
    tps.into_iter()
        .flat_map(|t| {
            let topic = t.topic;
            t.partitions
                .into_iter()
                .map(move |p| api::TopicPartition::new(topic.clone(), PartitionId(p)))
        })
        .collect()
}

pub(super) fn join_request(
    req: pb::JoinGroupRequest,
    client_host: String,
) -> Result<api::JoinGroup, BrokerError> {
    Ok(api::JoinGroup {
        client_host,
        protocol: api::Protocol::Server(assignor(req.assignor)?),
        group_id: req.group_id,
        member_id: req.member_id,
        client_id: req.client_id,
        session_timeout: millis(req.session_timeout_ms),
        rebalance_timeout: millis(req.rebalance_timeout_ms),
        topics: req.topics,
        owned: partitions_of(req.owned),
    })
}

pub(super) fn join_response(j: api::Joined) -> pb::JoinGroupResponse {
    pb::JoinGroupResponse {
        generation: j.generation,
        member_id: j.member_id,
        assignment: topic_partitions(&j.assignment),
        assignor: assignor_pb(j.assignor),
        follow_up: j.follow_up,
    }
}

pub(super) fn heartbeat_request(req: pb::HeartbeatRequest) -> api::Heartbeat {
    api::Heartbeat {
        group_id: req.group_id,
        member_id: req.member_id,
        generation: req.generation,
        wait: Duration::from_millis(u64::from(req.wait_ms)),
    }
}

pub(super) fn leave_request(req: pb::LeaveGroupRequest) -> api::LeaveGroup {
    api::LeaveGroup {
        group_id: req.group_id,
        member_id: req.member_id,
    }
}

pub(super) fn commit_request(req: pb::CommitOffsetsRequest) -> api::CommitOffsets {
    api::CommitOffsets {
        group_id: req.group_id,
        member_id: req.member_id,
        generation: req.generation,
        offsets: req
            .offsets
            .into_iter()
            .map(|o| api::CommitOffset {
                partition: api::TopicPartition::new(o.topic, PartitionId(o.partition)),
                offset: Offset(o.offset),
                metadata: o.metadata,
            })
            .collect(),
    }
}

pub(super) fn fetch_offsets_partitions(req: pb::FetchOffsetsRequest) -> Vec<api::TopicPartition> {
    partitions_of(req.partitions)
}

pub(super) fn fetch_offsets_response(
    offsets: Vec<(api::TopicPartition, api::Committed)>,
) -> pb::FetchOffsetsResponse {
    pb::FetchOffsetsResponse {
        offsets: offsets
            .into_iter()
            .map(|(tp, c)| pb::PartitionOffset {
                topic: tp.topic,
                partition: tp.partition.0,
                offset: c.offset.0,
                metadata: c.metadata,
            })
            .collect(),
    }
}

pub(super) fn group_summary(g: api::GroupSummary) -> pb::GroupSummary {
    pb::GroupSummary {
        group_id: g.group_id,
        state: g.state.to_string(),
        members: g.members,
    }
}

pub fn group_description(d: api::GroupDescription) -> pb::DescribeGroupResponse {
    pb::DescribeGroupResponse {
        group_id: d.group_id,
        state: d.state.to_string(),
        generation: d.generation,
        assignor: assignor_pb(d.assignor),
        members: d
            .members
            .into_iter()
            .map(|m| pb::GroupMember {
                member_id: m.member_id,
                client_id: m.client_id,
                assignment: topic_partitions(&m.assignment),
            })
            .collect(),
        partitions: d
            .partitions
            .into_iter()
            .map(|p| pb::PartitionLag {
                topic: p.partition.topic,
                partition: p.partition.partition.0,
                committed: p.committed.map(|o| o.0),
                log_end: p.log_end.0,
                lag: p.lag,
                owner: p.owner,
            })
            .collect(),
    }
}
