//! Produce: each partition's record batches go to the broker core as the
//! client sent them (CRC checked there, never re-encoded), and each
//! partition gets its own answer, so one partition's error (a leader that
//! moved, a missing right) does not fail the others.

use bytes::Bytes;
use eddy_broker::api::{
    Acks, PartitionData, PartitionId, ProduceRequest as CoreProduce, TopicData,
};
use eddy_log::Written;
use eddy_meta::{Operation, ResourceType};
use kafka_protocol::ResponseError;
use kafka_protocol::messages::init_producer_id_request::InitProducerIdRequest;
use kafka_protocol::messages::init_producer_id_response::InitProducerIdResponse;
use kafka_protocol::messages::produce_request::ProduceRequest;
use kafka_protocol::messages::produce_response::{
    PartitionProduceResponse, ProduceResponse, TopicProduceResponse,
};
use kafka_protocol::messages::{ProducerId as KafkaProducerId, TopicName};
use kafka_protocol::protocol::StrBytes;

use crate::connection::Session;
use crate::{Shared, errors};

/// The answer, or `None` for acks=0 (Kafka sends none).
pub(crate) async fn handle(
    request: ProduceRequest,
    version: i16,
    shared: &Shared,
    session: &Session,
) -> Option<ProduceResponse> {
    let acks = match request.acks {
        0 => Some(Acks::None),
        1 => Some(Acks::Leader),
        -1 => Some(Acks::All),
        _ => None,
    };
    let transactional = request.transactional_id.is_some();
    let mut writes = Vec::new();
    let mut results: Vec<(TopicName, Vec<PartitionProduceResponse>)> = Vec::new();
    for (t, topic) in request.topic_data.into_iter().enumerate() {
        let name = topic.name.0.to_string();
        let allowed = session.may(shared, ResourceType::Topic, &name, Operation::Write);
        let mut answers = Vec::new();
        for p in topic.partition_data {
            let refused = if transactional {
                Some((
                    ResponseError::TransactionalIdAuthorizationFailed,
                    "Eddy does not support transactions: produce without a transactional.id (idempotence is supported)",
                ))
            } else if acks.is_none() {
                Some((
                    ResponseError::InvalidRequiredAcks,
                    "acks must be 0, 1 or -1 (all)",
                ))
            } else if !allowed {
                Some((
                    ResponseError::TopicAuthorizationFailed,
                    "this principal may not write to the topic",
                ))
            } else if p.index < 0 {
                Some((
                    ResponseError::UnknownTopicOrPartition,
                    "a partition index cannot be negative",
                ))
            } else {
                None
            };
            let answer = PartitionProduceResponse::default().with_index(p.index);
            if let Some((error, message)) = refused {
                answers.push(failed(answer, error.code(), message, version));
                continue;
            }
            let batches = p.records.unwrap_or_default();
            writes.push((t, answers.len(), name.clone(), p.index, batches));
            answers.push(answer);
        }
        results.push((topic.name, answers));
    }
    let acks = acks.unwrap_or(Acks::All);
    let written = futures::future::join_all(writes.into_iter().map(
        |(t, i, topic, partition, batches)| async move {
            (t, i, write(shared, acks, topic, partition, batches).await)
        },
    ))
    .await;
    if acks == Acks::None {
        return None;
    }
    for (t, i, outcome) in written {
        let answer = std::mem::take(&mut results[t].1[i]);
        results[t].1[i] = match outcome {
            Ok(done) => answer
                .with_base_offset(done.base_offset)
                .with_log_start_offset(if version >= 5 { done.log_start } else { -1 })
                .with_log_append_time_ms(-1),
            Err(e) => failed(answer, errors::code(&e), &e.to_string(), version),
        };
    }
    Some(
        ProduceResponse::default().with_responses(
            results
                .into_iter()
                .map(|(name, partitions)| {
                    TopicProduceResponse::default()
                        .with_name(name)
                        .with_partition_responses(partitions)
                })
                .collect(),
        ),
    )
}

struct Done {
    base_offset: i64,
    log_start: i64,
}

/// Writes one partition's batches.
async fn write(
    shared: &Shared,
    acks: Acks,
    topic: String,
    partition: i32,
    batches: Bytes,
) -> Result<Done, eddy_broker::BrokerError> {
    let request = CoreProduce {
        acks,
        topics: vec![TopicData {
            topic,
            partitions: vec![PartitionData {
                partition: PartitionId(partition as u32),
                batches,
                records: Vec::new(),
            }],
            unplaced: Vec::new(),
        }],
    };
    let response = shared.broker.produce(request).await?;
    let produced: Vec<_> = response
        .topics
        .into_iter()
        .flat_map(|t| t.partitions)
        .collect();
    // Several batches in one partition's records: Kafka answers with the
    // first one's offset.
    let first = produced.first();
    Ok(Done {
        base_offset: first.map_or(-1, |p| match p.written {
            Written::DuplicateOffsetsUnknown => -1,
            _ => p.base_offset.0 as i64,
        }),
        log_start: first.map_or(-1, |p| p.log_start.0 as i64),
    })
}

fn failed(
    answer: PartitionProduceResponse,
    code: i16,
    message: &str,
    version: i16,
) -> PartitionProduceResponse {
    let mut answer = answer
        .with_error_code(code)
        .with_base_offset(-1)
        .with_log_append_time_ms(-1)
        .with_log_start_offset(-1);
    if version >= 8 {
        answer.error_message = Some(StrBytes::from_string(message.to_string()));
    }
    answer
}

/// A producer id for an idempotent producer: a fresh id, epoch 0. A
/// producer asking to bump its epoch (after an error, KIP-360) gets a
/// fresh id instead, which librdkafka and the Java client accept alike.
pub(crate) async fn init_producer_id(
    request: InitProducerIdRequest,
    shared: &Shared,
    session: &Session,
) -> InitProducerIdResponse {
    let answer = InitProducerIdResponse::default()
        .with_producer_id(KafkaProducerId(-1))
        .with_producer_epoch(-1);
    // As gRPC's rule has it: an idempotent producer may write somewhere.
    let principal = &session.principal;
    if !shared
        .broker
        .authorizer
        .allows_some(principal, ResourceType::Topic, Operation::Write)
    {
        tracing::warn!(target: "eddy::audit", %principal, peer = %session.peer, listener = "kafka", api = "InitProducerId", "denied");
        return answer.with_error_code(ResponseError::ClusterAuthorizationFailed.code());
    }
    // Not retriable, so a transactional producer fails at once.
    if request.transactional_id.is_some() {
        tracing::warn!(peer = %session.peer, "refused a transactional producer: Eddy does not support Kafka transactions");
        return answer.with_error_code(ResponseError::InvalidRequest.code());
    }
    match shared.broker.init_producer_id("").await {
        Ok((id, epoch)) => answer
            .with_producer_id(KafkaProducerId(id.0))
            .with_producer_epoch(epoch.0),
        Err(e) => answer.with_error_code(errors::code(&e)),
    }
}
