//! Fetch, ListOffsets and OffsetForLeaderEpoch. Stored batches go back as they are on disk; a
//! fetch from an offset inside a batch gets that whole batch (clients skip
//! the records before the offset, as with Kafka). Each partition gets its
//! own answer: one that moved leader or that the principal may not read
//! does not fail the others.

use std::time::Duration;

use eddy_broker::StartAt;
use eddy_broker::api::{self, LeaderEpoch, PartitionId, TopicPartition};
use eddy_log::{Offset, Timestamp};
use eddy_meta::{Operation, ResourceType};
use kafka_protocol::ResponseError;
use kafka_protocol::messages::TopicName;
use kafka_protocol::messages::fetch_request::FetchRequest;
use kafka_protocol::messages::fetch_response::{
    FetchResponse, FetchableTopicResponse, PartitionData,
};
use kafka_protocol::messages::list_offsets_request::ListOffsetsRequest;
use kafka_protocol::messages::list_offsets_response::{
    ListOffsetsPartitionResponse, ListOffsetsResponse, ListOffsetsTopicResponse,
};
use kafka_protocol::messages::offset_for_leader_epoch_request::OffsetForLeaderEpochRequest;
use kafka_protocol::messages::offset_for_leader_epoch_response::{
    EpochEndOffset, OffsetForLeaderEpochResponse, OffsetForLeaderTopicResult,
};

use crate::connection::Session;
use crate::{Shared, errors};

/// Why a partition is answered without asking the core: `None` when it
/// can be read (this broker leads it and the principal may read it).
fn refusal(shared: &Shared, allowed: bool, topic: &str, partition: i32) -> Option<i16> {
    if !allowed {
        return Some(ResponseError::TopicAuthorizationFailed.code());
    }
    let Ok(index) = u32::try_from(partition) else {
        return Some(ResponseError::UnknownTopicOrPartition.code());
    };
    match shared
        .broker
        .topics
        .get(topic)
        .and_then(|t| t.partition(PartitionId(index)).map(|_| ()))
    {
        Ok(()) => None,
        Err(e) => Some(errors::code(&e)),
    }
}

pub(crate) async fn fetch(
    request: FetchRequest,
    version: i16,
    shared: &Shared,
    session: &Session,
) -> FetchResponse {
    let mut answers: Vec<(TopicName, Vec<PartitionData>)> = Vec::new();
    let mut core = Vec::new();
    let mut positions = Vec::new();
    let mut refused_any = false;
    for (t, topic) in request.topics.into_iter().enumerate() {
        let name = topic.topic.0.to_string();
        let allowed = session.may(shared, ResourceType::Topic, &name, Operation::Read);
        let mut parts = Vec::new();
        let mut wanted = Vec::new();
        for p in topic.partitions {
            let mut answer = PartitionData::default().with_partition_index(p.partition);
            let refused = match refusal(shared, allowed, &name, p.partition) {
                None if p.fetch_offset < 0 => Some(ResponseError::OffsetOutOfRange.code()),
                other => other,
            };
            if let Some(code) = refused {
                answer.error_code = code;
                refused_any = true;
            } else {
                positions.push((t, parts.len()));
                wanted.push(api::FetchPartition {
                    partition: PartitionId(p.partition as u32),
                    offset: Offset(p.fetch_offset as u64),
                    max_bytes: usize::try_from(p.partition_max_bytes).ok(),
                });
            }
            parts.push(answer);
        }
        if !wanted.is_empty() {
            core.push(api::FetchTopic {
                topic: name,
                partitions: wanted,
            });
        }
        answers.push((topic.topic, parts));
    }
    if !core.is_empty() {
        let request = api::FetchRequest {
            topics: core,
            max_bytes: usize::try_from(request.max_bytes).ok().filter(|n| *n > 0),
            min_bytes: usize::try_from(request.min_bytes).unwrap_or(0),
            // An error is answered at once, as Kafka does.
            max_wait: if refused_any {
                Duration::ZERO
            } else {
                Duration::from_millis(u64::try_from(request.max_wait_ms).unwrap_or(0))
            },
        };
        match shared.broker.fetch(request).await {
            Ok(fetched) => {
                let all = fetched.topics.into_iter().flat_map(|t| t.partitions);
                for ((t, i), f) in positions.into_iter().zip(all) {
                    fill(&mut answers[t].1[i], f, version);
                }
            }
            Err(e) => {
                let code = errors::code(&e);
                for (t, i) in positions {
                    answers[t].1[i].error_code = code;
                }
            }
        }
    }
    let mut response = FetchResponse::default().with_responses(
        answers
            .into_iter()
            .map(|(topic, partitions)| {
                FetchableTopicResponse::default()
                    .with_topic(topic)
                    .with_partitions(partitions)
            })
            .collect(),
    );
    if version >= 7 {
        // No fetch sessions: every fetch names its partitions in full.
        response.session_id = 0;
    }
    response
}

fn fill(answer: &mut PartitionData, fetched: api::Fetched, version: i16) {
    if let Some(e) = &fetched.error {
        answer.error_code = errors::code(e);
    }
    answer.high_watermark = fetched.high_watermark.0 as i64;
    answer.last_stable_offset = fetched.high_watermark.0 as i64;
    if version >= 5 {
        answer.log_start_offset = fetched.log_start.0 as i64;
    }
    answer.records = Some(fetched.batches);
}

pub(crate) async fn list_offsets(
    request: ListOffsetsRequest,
    version: i16,
    shared: &Shared,
    session: &Session,
) -> ListOffsetsResponse {
    let state = shared.broker.meta.state();
    let mut answers: Vec<(TopicName, Vec<ListOffsetsPartitionResponse>)> = Vec::new();
    let mut core = Vec::new();
    let mut positions = Vec::new();
    for (t, topic) in request.topics.into_iter().enumerate() {
        let name = topic.name.0.to_string();
        let allowed = session.may(shared, ResourceType::Topic, &name, Operation::Describe);
        let mut parts = Vec::new();
        let mut wanted = Vec::new();
        for p in topic.partitions {
            let mut answer =
                ListOffsetsPartitionResponse::default().with_partition_index(p.partition_index);
            let at = match p.timestamp {
                -1 => Some(StartAt::Latest),
                -2 => Some(StartAt::Earliest),
                ts if ts >= 0 => Some(StartAt::Timestamp(Timestamp(ts))),
                _ => None,
            };
            match (refusal(shared, allowed, &name, p.partition_index), at) {
                (Some(code), _) => answer.error_code = code,
                (None, None) => answer.error_code = ResponseError::InvalidRequest.code(),
                (None, Some(at)) => {
                    positions.push((t, parts.len()));
                    wanted.push((PartitionId(p.partition_index as u32), at));
                    if version >= 4 {
                        answer.leader_epoch = state
                            .topics
                            .get(&name)
                            .and_then(|m| m.partitions.get(p.partition_index as usize))
                            .map_or(-1, |m| m.leader_epoch.0);
                    }
                }
            }
            parts.push(answer);
        }
        if !wanted.is_empty() {
            core.push(api::OffsetsTopic {
                topic: name,
                partitions: wanted,
            });
        }
        answers.push((topic.name, parts));
    }
    if !core.is_empty() {
        match shared
            .broker
            .list_offsets(api::OffsetsRequest { topics: core })
            .await
        {
            Ok(listed) => {
                let all = listed.into_iter().flat_map(|t| t.partitions);
                for ((t, i), l) in positions.into_iter().zip(all) {
                    let answer = &mut answers[t].1[i];
                    match l.offset {
                        Ok(o) => answer.offset = o.0 as i64,
                        Err(e) => answer.error_code = errors::code(&e),
                    }
                    // The found record's timestamp; -1 for the earliest,
                    // the latest, or a time past every record.
                    answer.timestamp = l.timestamp.map_or(-1, |t| t.0);
                }
            }
            Err(e) => {
                let code = errors::code(&e);
                for (t, i) in positions {
                    answers[t].1[i].error_code = code;
                }
            }
        }
    }
    ListOffsetsResponse::default().with_topics(
        answers
            .into_iter()
            .map(|(name, partitions)| {
                ListOffsetsTopicResponse::default()
                    .with_name(name)
                    .with_partitions(partitions)
            })
            .collect(),
    )
}

/// OffsetForLeaderEpoch: where each epoch a consumer last read from ended
/// on the leader's log, so that it notices a log truncated under it
/// (after an unclean election) and resets instead of reading on.
pub(crate) fn offset_for_leader_epoch(
    request: OffsetForLeaderEpochRequest,
    shared: &Shared,
    session: &Session,
) -> OffsetForLeaderEpochResponse {
    let topics = request
        .topics
        .into_iter()
        .map(|topic| {
            let name = topic.topic.0.to_string();
            let allowed = session.may(shared, ResourceType::Topic, &name, Operation::Describe);
            let partitions = topic
                .partitions
                .into_iter()
                .map(|p| {
                    let answer = EpochEndOffset::default()
                        .with_partition(p.partition)
                        .with_leader_epoch(-1)
                        .with_end_offset(-1);
                    if let Some(code) = refusal(shared, allowed, &name, p.partition) {
                        return answer.with_error_code(code);
                    }
                    let tp = TopicPartition::new(name.clone(), PartitionId(p.partition as u32));
                    let current = (p.current_leader_epoch >= 0)
                        .then_some(LeaderEpoch(p.current_leader_epoch));
                    match shared
                        .broker
                        .epoch_end(&tp, current, LeaderEpoch(p.leader_epoch))
                    {
                        Ok(Some((epoch, end))) => answer
                            .with_leader_epoch(epoch.0)
                            .with_end_offset(end.0 as i64),
                        // Every epoch on this log is newer than the one asked.
                        Ok(None) => answer,
                        Err(e) => answer.with_error_code(errors::code(&e)),
                    }
                })
                .collect();
            OffsetForLeaderTopicResult::default()
                .with_topic(topic.topic)
                .with_partitions(partitions)
        })
        .collect();
    OffsetForLeaderEpochResponse::default().with_topics(topics)
}
