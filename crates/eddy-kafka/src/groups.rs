//! Consumer groups over Kafka's classic protocol, on the coordinator gRPC
//! clients use: FindCoordinator names the broker leading the group's
//! `__consumer_offsets` partition; JoinGroup, SyncGroup, Heartbeat and
//! LeaveGroup are the core's membership with the group's leader (a client)
//! assigning; OffsetCommit and OffsetFetch are the same committed offsets
//! `eddy group describe` shows. The consumer protocol's subscription and
//! assignment bytes are decoded here, so that the coordinator knows each
//! member's topics and partitions (for describe and lag) while clients get
//! back exactly the bytes their leader sent.

use std::time::Duration;

use bytes::{Buf, Bytes};
use eddy_broker::BrokerError;
use eddy_broker::api::{
    CommitOffset, CommitOffsets, Heartbeat, JoinGroup, LeaveGroup, MemberAssignment, PartitionId,
    Protocol, SyncGroup, TopicPartition,
};
use eddy_log::Offset;
use eddy_meta::{Operation, ResourceType};
use kafka_protocol::ResponseError;
use kafka_protocol::messages::find_coordinator_request::FindCoordinatorRequest;
use kafka_protocol::messages::find_coordinator_response::{Coordinator, FindCoordinatorResponse};
use kafka_protocol::messages::heartbeat_request::HeartbeatRequest;
use kafka_protocol::messages::heartbeat_response::HeartbeatResponse;
use kafka_protocol::messages::join_group_request::JoinGroupRequest;
use kafka_protocol::messages::join_group_response::{JoinGroupResponse, JoinGroupResponseMember};
use kafka_protocol::messages::leave_group_request::LeaveGroupRequest;
use kafka_protocol::messages::leave_group_response::{LeaveGroupResponse, MemberResponse};
use kafka_protocol::messages::offset_commit_request::OffsetCommitRequest;
use kafka_protocol::messages::offset_commit_response::{
    OffsetCommitResponse, OffsetCommitResponsePartition, OffsetCommitResponseTopic,
};
use kafka_protocol::messages::offset_fetch_request::OffsetFetchRequest;
use kafka_protocol::messages::offset_fetch_response::{
    OffsetFetchResponse, OffsetFetchResponsePartition, OffsetFetchResponseTopic,
};
use kafka_protocol::messages::sync_group_request::SyncGroupRequest;
use kafka_protocol::messages::sync_group_response::SyncGroupResponse;
use kafka_protocol::messages::{
    BrokerId, ConsumerProtocolAssignment, ConsumerProtocolSubscription, TopicName,
};
use kafka_protocol::protocol::{Decodable, StrBytes};

use crate::connection::Session;
use crate::metadata::endpoint;
use crate::{Shared, errors};

/// Kafka's key types: 0 a group, 1 a transactional id.
const GROUP: i8 = 0;

pub(crate) async fn find_coordinator(
    request: FindCoordinatorRequest,
    version: i16,
    shared: &Shared,
    session: &Session,
) -> FindCoordinatorResponse {
    // Version 4 asks for many keys at once; before, for one.
    let keys: Vec<String> = if version >= 4 {
        request
            .coordinator_keys
            .iter()
            .map(|k| k.to_string())
            .collect()
    } else {
        vec![request.key.to_string()]
    };
    let mut found = Vec::new();
    for key in keys {
        found.push(locate(&key, request.key_type, shared, session).await);
    }
    if version >= 4 {
        return FindCoordinatorResponse::default().with_coordinators(found);
    }
    let one = found.pop().unwrap_or_default();
    let mut response = FindCoordinatorResponse::default()
        .with_error_code(one.error_code)
        .with_node_id(one.node_id)
        .with_host(one.host)
        .with_port(one.port);
    if version >= 1 {
        response.error_message = one.error_message;
    }
    response
}

async fn locate(key: &str, key_type: i8, shared: &Shared, session: &Session) -> Coordinator {
    let answer = Coordinator::default()
        .with_key(StrBytes::from_string(key.to_string()))
        .with_node_id(BrokerId(-1));
    let failed = |answer: Coordinator, error: ResponseError, message: String| {
        answer
            .with_error_code(error.code())
            .with_error_message(Some(StrBytes::from_string(message)))
    };
    if key_type != GROUP {
        // Not retriable: a transactional producer fails at once instead
        // of looking for a coordinator until it times out.
        return failed(
            answer,
            ResponseError::InvalidRequest,
            "Eddy does not support Kafka transactions; only group coordinators exist".into(),
        );
    }
    if !session.may(shared, ResourceType::Group, key, Operation::Describe) {
        return failed(
            answer,
            ResponseError::GroupAuthorizationFailed,
            format!("{} may not describe group {key:?}", session.principal),
        );
    }
    let broker = &shared.broker;
    match broker.group_coordinator(key).await {
        Ok(Some(node)) => match endpoint(&broker.meta.state(), node) {
            Some((host, port)) => answer
                .with_node_id(BrokerId(node.0))
                .with_host(StrBytes::from_string(host))
                .with_port(port),
            None => failed(
                answer,
                ResponseError::CoordinatorNotAvailable,
                format!("the coordinator, broker {node}, has no Kafka listener"),
            ),
        },
        Ok(None) => failed(
            answer,
            ResponseError::CoordinatorNotAvailable,
            "the group's coordinator is being elected; retry".into(),
        ),
        Err(e) => {
            let code = errors::code(&e);
            answer
                .with_error_code(code)
                .with_error_message(Some(StrBytes::from_string(e.to_string())))
        }
    }
}

/// The consumer protocol's type: its metadata and assignments are
/// decoded; any other type's are passed through unread.
const CONSUMER: &str = "consumer";

/// A group right the principal lacks, as Kafka's error.
fn group_denied(shared: &Shared, session: &Session, group: &str, op: Operation) -> Option<i16> {
    (!session.may(shared, ResourceType::Group, group, op))
        .then(|| ResponseError::GroupAuthorizationFailed.code())
}

/// A consumer-protocol message (subscription or assignment): an `i16`
/// version, then the body; a newer version is read as the newest known,
/// which it extends. `None` when it cannot be read.
fn consumer_protocol<T: Decodable>(encoded: &Bytes) -> Option<T> {
    let mut b = encoded.clone();
    if b.remaining() < 2 {
        return None;
    }
    let version = b.get_i16().clamp(0, 3);
    T::decode(&mut b, version).ok()
}

/// The topics a consumer's subscription metadata names.
fn subscribed_topics(metadata: &Bytes) -> Vec<String> {
    consumer_protocol::<ConsumerProtocolSubscription>(metadata)
        .map(|s| s.topics.iter().map(|t| t.to_string()).collect())
        .unwrap_or_default()
}

/// The partitions a consumer's assignment names.
pub(crate) fn assigned_partitions(assignment: &Bytes) -> Vec<TopicPartition> {
    consumer_protocol::<ConsumerProtocolAssignment>(assignment)
        .map(|a| {
            a.assigned_partitions
                .iter()
                .flat_map(|t| {
                    let topic = t.topic.0.to_string();
                    t.partitions
                        .iter()
                        .filter_map(move |p| u32::try_from(*p).ok().map(|p| (topic.clone(), p)))
                })
                .map(|(topic, p)| TopicPartition::new(topic, PartitionId(p)))
                .collect()
        })
        .unwrap_or_default()
}

fn millis(ms: i32) -> Option<Duration> {
    u64::try_from(ms)
        .ok()
        .filter(|ms| *ms > 0)
        .map(Duration::from_millis)
}

pub(crate) async fn join_group(
    request: JoinGroupRequest,
    version: i16,
    shared: &Shared,
    session: &Session,
) -> JoinGroupResponse {
    let group = request.group_id.0.to_string();
    let failed = |code: i16| {
        JoinGroupResponse::default()
            .with_error_code(code)
            .with_generation_id(-1)
            .with_member_id(request.member_id.clone())
    };
    if let Some(code) = group_denied(shared, session, &group, Operation::Read) {
        return failed(code);
    }
    let protocol_type = request.protocol_type.to_string();
    let protocols: Vec<(String, Bytes)> = request
        .protocols
        .iter()
        .map(|p| (p.name.to_string(), p.metadata.clone()))
        .collect();
    let topics = if protocol_type == CONSUMER {
        protocols
            .first()
            .map(|(_, m)| subscribed_topics(m))
            .unwrap_or_default()
    } else {
        Vec::new()
    };
    let join = JoinGroup {
        group_id: group,
        member_id: request.member_id.to_string(),
        client_id: session.client_id.clone(),
        client_host: session.peer.ip().to_string(),
        session_timeout: millis(request.session_timeout_ms),
        // Version 0 has one timeout for both.
        rebalance_timeout: millis(if version >= 1 {
            request.rebalance_timeout_ms
        } else {
            request.session_timeout_ms
        }),
        topics,
        protocol: Protocol::Client {
            protocol_type: protocol_type.clone(),
            protocols,
        },
        owned: Vec::new(),
    };
    match shared.broker.join_group(join).await {
        Ok(joined) => {
            let mut response = JoinGroupResponse::default()
                .with_generation_id(joined.generation)
                .with_protocol_name(Some(StrBytes::from_string(
                    joined.protocol.unwrap_or_default(),
                )))
                .with_leader(StrBytes::from_string(joined.leader))
                .with_member_id(StrBytes::from_string(joined.member_id))
                .with_members(
                    joined
                        .members
                        .into_iter()
                        .map(|(id, metadata)| {
                            JoinGroupResponseMember::default()
                                .with_member_id(StrBytes::from_string(id))
                                .with_metadata(metadata)
                        })
                        .collect(),
                );
            if version >= 7 {
                response.protocol_type = Some(StrBytes::from_string(protocol_type));
            }
            response
        }
        Err(e) => failed(errors::code(&e)),
    }
}

pub(crate) async fn sync_group(
    request: SyncGroupRequest,
    version: i16,
    shared: &Shared,
    session: &Session,
) -> SyncGroupResponse {
    let group = request.group_id.0.to_string();
    if let Some(code) = group_denied(shared, session, &group, Operation::Read) {
        return SyncGroupResponse::default().with_error_code(code);
    }
    let consumer = request
        .protocol_type
        .as_ref()
        .is_none_or(|t| t.as_str() == CONSUMER);
    let assignments = request
        .assignments
        .into_iter()
        .map(|a| MemberAssignment {
            member_id: a.member_id.to_string(),
            partitions: if consumer {
                assigned_partitions(&a.assignment)
            } else {
                Vec::new()
            },
            encoded: a.assignment,
        })
        .collect();
    let sync = SyncGroup {
        group_id: group,
        member_id: request.member_id.to_string(),
        generation: request.generation_id,
        assignments,
    };
    let mut response = match shared.broker.sync_group(sync).await {
        Ok(assignment) => SyncGroupResponse::default().with_assignment(assignment),
        Err(e) => SyncGroupResponse::default().with_error_code(errors::code(&e)),
    };
    if version >= 5 {
        response.protocol_type = request.protocol_type;
        response.protocol_name = request.protocol_name;
    }
    response
}

pub(crate) async fn heartbeat(
    request: HeartbeatRequest,
    shared: &Shared,
    session: &Session,
) -> HeartbeatResponse {
    let group = request.group_id.0.to_string();
    if let Some(code) = group_denied(shared, session, &group, Operation::Read) {
        return HeartbeatResponse::default().with_error_code(code);
    }
    let beat = Heartbeat {
        group_id: group,
        member_id: request.member_id.to_string(),
        generation: request.generation_id,
        wait: Duration::ZERO,
    };
    match shared.broker.heartbeat(beat).await {
        Ok(()) => HeartbeatResponse::default(),
        Err(e) => HeartbeatResponse::default().with_error_code(errors::code(&e)),
    }
}

pub(crate) async fn leave_group(
    request: LeaveGroupRequest,
    version: i16,
    shared: &Shared,
    session: &Session,
) -> LeaveGroupResponse {
    let group = request.group_id.0.to_string();
    if let Some(code) = group_denied(shared, session, &group, Operation::Read) {
        return LeaveGroupResponse::default().with_error_code(code);
    }
    // Version 3 leaves many members at once; before, one.
    let members: Vec<(StrBytes, Option<StrBytes>)> = if version >= 3 {
        request
            .members
            .into_iter()
            .map(|m| (m.member_id, m.group_instance_id))
            .collect()
    } else {
        vec![(request.member_id, None)]
    };
    let mut answers = Vec::new();
    for (member, instance) in members {
        let leave = LeaveGroup {
            group_id: group.clone(),
            member_id: member.to_string(),
        };
        let code = match shared.broker.leave_group(leave).await {
            Ok(()) => 0,
            Err(e) => errors::code(&e),
        };
        answers.push(
            MemberResponse::default()
                .with_member_id(member)
                .with_group_instance_id(instance)
                .with_error_code(code),
        );
    }
    if version >= 3 {
        LeaveGroupResponse::default().with_members(answers)
    } else {
        LeaveGroupResponse::default().with_error_code(answers.first().map_or(0, |a| a.error_code))
    }
}

pub(crate) async fn offset_commit(
    request: OffsetCommitRequest,
    shared: &Shared,
    session: &Session,
) -> OffsetCommitResponse {
    let group = request.group_id.0.to_string();
    let group_error = group_denied(shared, session, &group, Operation::Read);
    let mut answers: Vec<(TopicName, Vec<OffsetCommitResponsePartition>)> = Vec::new();
    let mut commits = Vec::new();
    let mut positions = Vec::new();
    for (t, topic) in request.topics.into_iter().enumerate() {
        let name = topic.name.0.to_string();
        let topic_error = (!session.may(shared, ResourceType::Topic, &name, Operation::Read))
            .then(|| ResponseError::TopicAuthorizationFailed.code());
        let mut parts = Vec::new();
        for p in topic.partitions {
            let mut answer =
                OffsetCommitResponsePartition::default().with_partition_index(p.partition_index);
            let refused = group_error.or(topic_error).or_else(|| {
                (p.partition_index < 0 || p.committed_offset < 0)
                    .then(|| ResponseError::InvalidCommitOffsetSize.code())
            });
            match refused {
                Some(code) => answer.error_code = code,
                None => {
                    positions.push((t, parts.len()));
                    commits.push(CommitOffset {
                        partition: TopicPartition::new(
                            name.clone(),
                            PartitionId(p.partition_index as u32),
                        ),
                        offset: Offset(p.committed_offset as u64),
                        metadata: p
                            .committed_metadata
                            .map(|m| Bytes::copy_from_slice(m.as_bytes()))
                            .unwrap_or_default(),
                    });
                }
            }
            parts.push(answer);
        }
        answers.push((topic.name, parts));
    }
    if !commits.is_empty() {
        let commit = CommitOffsets {
            group_id: group,
            member_id: request.member_id.to_string(),
            generation: request.generation_id_or_member_epoch,
            offsets: commits,
        };
        if let Err(e) = shared.broker.commit_offsets(commit).await {
            let code = commit_error(&e);
            for (t, i) in positions {
                answers[t].1[i].error_code = code;
            }
        }
    }
    OffsetCommitResponse::default().with_topics(
        answers
            .into_iter()
            .map(|(name, partitions)| {
                OffsetCommitResponseTopic::default()
                    .with_name(name)
                    .with_partitions(partitions)
            })
            .collect(),
    )
}

/// A commit's error as Kafka's clients expect it: a simple consumer's
/// commit to a group with members is not "not empty" but an unknown
/// member of that group.
fn commit_error(e: &BrokerError) -> i16 {
    match e {
        BrokerError::GroupNotEmpty(_) => ResponseError::UnknownMemberId.code(),
        other => errors::code(other),
    }
}

pub(crate) async fn offset_fetch(
    request: OffsetFetchRequest,
    version: i16,
    shared: &Shared,
    session: &Session,
) -> OffsetFetchResponse {
    let group = request.group_id.0.to_string();
    if let Some(code) = group_denied(shared, session, &group, Operation::Describe) {
        return offset_fetch_failed(code, version);
    }
    let wanted: Option<Vec<(TopicName, Vec<i32>)>> = request.topics.map(|ts| {
        ts.into_iter()
            .map(|t| (t.name, t.partition_indexes))
            .collect()
    });
    let committed = match shared.broker.fetch_offsets(&group, &[]).await {
        Ok(c) => c,
        Err(e) => return offset_fetch_failed(errors::code(&e), version),
    };
    let lookup = |topic: &str, partition: i32| {
        committed
            .iter()
            .find(|(tp, _)| {
                tp.topic == topic && u32::try_from(partition).is_ok_and(|p| tp.partition.0 == p)
            })
            .map(|(_, c)| c)
    };
    let answer = |topic: &str, partition: i32| {
        let mut a = OffsetFetchResponsePartition::default()
            .with_partition_index(partition)
            .with_committed_offset(-1)
            .with_metadata(Some(StrBytes::from_string(String::new())));
        if !session.may(shared, ResourceType::Topic, topic, Operation::Describe) {
            a.error_code = ResponseError::TopicAuthorizationFailed.code();
        } else if let Some(c) = lookup(topic, partition) {
            a.committed_offset = c.offset.0 as i64;
            a.metadata = Some(StrBytes::from_string(
                String::from_utf8_lossy(&c.metadata).into_owned(),
            ));
        }
        a
    };
    let topics: Vec<OffsetFetchResponseTopic> = match wanted {
        Some(wanted) => wanted
            .into_iter()
            .map(|(name, partitions)| {
                let topic = name.0.to_string();
                OffsetFetchResponseTopic::default()
                    .with_partitions(partitions.iter().map(|p| answer(&topic, *p)).collect())
                    .with_name(name)
            })
            .collect(),
        // Every committed partition (version 2 and later may ask so).
        None => {
            let mut by_topic: std::collections::BTreeMap<String, Vec<i32>> = Default::default();
            for (tp, _) in &committed {
                by_topic
                    .entry(tp.topic.clone())
                    .or_default()
                    .push(tp.partition.0 as i32);
            }
            by_topic
                .into_iter()
                .filter(|(topic, _)| {
                    shared.broker.authorizer.allows(
                        &session.principal,
                        ResourceType::Topic,
                        topic,
                        Operation::Describe,
                    )
                })
                .map(|(topic, partitions)| {
                    OffsetFetchResponseTopic::default()
                        .with_partitions(partitions.iter().map(|p| answer(&topic, *p)).collect())
                        .with_name(TopicName(StrBytes::from_string(topic)))
                })
                .collect()
        }
    };
    OffsetFetchResponse::default().with_topics(topics)
}

/// An OffsetFetch refused whole: the group error exists from version 2.
fn offset_fetch_failed(code: i16, version: i16) -> OffsetFetchResponse {
    let mut response = OffsetFetchResponse::default();
    if version >= 2 {
        response.error_code = code;
    }
    response
}
