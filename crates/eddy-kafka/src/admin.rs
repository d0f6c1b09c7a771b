//! Topic administration over Kafka: CreateTopics, CreatePartitions and
//! DeleteTopics, with the rights gRPC's Admin service asks for.

use std::collections::BTreeMap;

use eddy_meta::{Operation, ResourceType};
use kafka_protocol::ResponseError;
use kafka_protocol::messages::TopicName;
use kafka_protocol::messages::create_partitions_request::{
    CreatePartitionsRequest, CreatePartitionsTopic,
};
use kafka_protocol::messages::create_partitions_response::{
    CreatePartitionsResponse, CreatePartitionsTopicResult,
};
use kafka_protocol::messages::create_topics_request::{CreatableTopic, CreateTopicsRequest};
use kafka_protocol::messages::create_topics_response::{
    CreatableTopicResult, CreateTopicsResponse,
};
use kafka_protocol::messages::delete_topics_request::DeleteTopicsRequest;
use kafka_protocol::messages::delete_topics_response::{
    DeletableTopicResult, DeleteTopicsResponse,
};
use kafka_protocol::protocol::StrBytes;

use crate::connection::Session;
use crate::{Shared, errors};

pub(crate) async fn create_topics(
    request: CreateTopicsRequest,
    version: i16,
    shared: &Shared,
    session: &Session,
) -> CreateTopicsResponse {
    let mut results = Vec::new();
    for topic in request.topics {
        let name = topic.name.0.to_string();
        let answer = CreatableTopicResult::default().with_name(topic.name.clone());
        let outcome = create(&name, topic, request.validate_only, shared, session).await;
        results.push(match outcome {
            Ok((partitions, replication_factor, id)) => {
                let mut answer = answer.with_error_message(None);
                if version >= 5 {
                    answer.num_partitions = partitions;
                    answer.replication_factor = replication_factor;
                    answer.configs = None;
                }
                if version >= 7 {
                    answer.topic_id = id;
                }
                answer
            }
            Err((code, message)) => answer
                .with_error_code(code)
                .with_error_message(Some(StrBytes::from_string(message))),
        });
    }
    CreateTopicsResponse::default().with_topics(results)
}

/// Creates one topic: its partition count, replication factor and id.
async fn create(
    name: &str,
    topic: CreatableTopic,
    validate_only: bool,
    shared: &Shared,
    session: &Session,
) -> Result<(i32, i16, uuid::Uuid), (i16, String)> {
    let refuse = |e: ResponseError, m: String| Err((e.code(), m));
    if !session.may(shared, ResourceType::Topic, name, Operation::Create) {
        return refuse(
            ResponseError::TopicAuthorizationFailed,
            format!("{} may not create topic {name:?}", session.principal),
        );
    }
    if !topic.assignments.is_empty() {
        return refuse(
            ResponseError::InvalidReplicaAssignment,
            "Eddy places replicas itself: give a partition count and replication factor instead of an assignment".into(),
        );
    }
    let count = |n: i64, what: &str| match n {
        -1 => Ok(0),
        n if n > 0 => u32::try_from(n).map_err(|_| {
            (
                ResponseError::InvalidPartitions.code(),
                format!("{n} {what} is too many"),
            )
        }),
        n => Err((
            ResponseError::InvalidRequest.code(),
            format!("{n} {what}: give 1 or more, or -1 for the broker's default"),
        )),
    };
    let partitions = count(i64::from(topic.num_partitions), "partitions")?;
    let replication_factor = count(i64::from(topic.replication_factor), "replicas")?;
    let configs: BTreeMap<String, String> = topic
        .configs
        .into_iter()
        .filter_map(|c| Some((c.name.to_string(), c.value?.to_string())))
        .collect();
    let broker = &shared.broker;
    if validate_only {
        if broker.meta.state().topics.contains_key(name) {
            return refuse(
                ResponseError::TopicAlreadyExists,
                format!("topic {name:?} already exists"),
            );
        }
        return eddy_meta::validate_topic_name(name, false)
            .map(|()| {
                (
                    topic.num_partitions,
                    topic.replication_factor,
                    uuid::Uuid::nil(),
                )
            })
            .map_err(|e| {
                let e = eddy_broker::BrokerError::from(e);
                (errors::code(&e), e.to_string())
            });
    }
    match broker
        .create_topic(name, partitions, replication_factor, configs)
        .await
    {
        Ok(t) => Ok((
            t.partition_count() as i32,
            t.meta.replication_factor() as i16,
            uuid::Uuid::from_u128(t.meta.id.0),
        )),
        Err(e) => Err((errors::code(&e), e.to_string())),
    }
}

pub(crate) async fn delete_topics(
    request: DeleteTopicsRequest,
    version: i16,
    shared: &Shared,
    session: &Session,
) -> DeleteTopicsResponse {
    let names: Vec<TopicName> = if version >= 6 {
        request.topics.into_iter().filter_map(|t| t.name).collect()
    } else {
        request.topic_names
    };
    let mut results = Vec::new();
    for name in names {
        let topic = name.0.to_string();
        let outcome = if !session.may(shared, ResourceType::Topic, &topic, Operation::Delete) {
            Err((
                ResponseError::TopicAuthorizationFailed.code(),
                format!("{} may not delete topic {topic:?}", session.principal),
            ))
        } else {
            shared
                .broker
                .delete_topic(&topic)
                .await
                .map_err(|e| (errors::code(&e), e.to_string()))
        };
        let mut answer = DeletableTopicResult::default().with_name(Some(name));
        if let Err((code, message)) = outcome {
            answer.error_code = code;
            if version >= 5 {
                answer.error_message = Some(StrBytes::from_string(message));
            }
        }
        results.push(answer);
    }
    DeleteTopicsResponse::default().with_responses(results)
}

pub(crate) async fn create_partitions(
    request: CreatePartitionsRequest,
    shared: &Shared,
    session: &Session,
) -> CreatePartitionsResponse {
    let mut results = Vec::new();
    for topic in request.topics {
        let answer = CreatePartitionsTopicResult::default().with_name(topic.name.clone());
        results.push(
            match add_partitions(topic, request.validate_only, shared, session).await {
                Ok(()) => answer,
                Err((code, message)) => answer
                    .with_error_code(code)
                    .with_error_message(Some(StrBytes::from_string(message))),
            },
        );
    }
    CreatePartitionsResponse::default().with_results(results)
}

/// Grows one topic to `topic.count` partitions.
async fn add_partitions(
    topic: CreatePartitionsTopic,
    validate_only: bool,
    shared: &Shared,
    session: &Session,
) -> Result<(), (i16, String)> {
    let name = topic.name.0.to_string();
    let refuse = |e: ResponseError, m: String| Err((e.code(), m));
    if !session.may(shared, ResourceType::Topic, &name, Operation::Alter) {
        return refuse(
            ResponseError::TopicAuthorizationFailed,
            format!("{} may not alter topic {name:?}", session.principal),
        );
    }
    if topic.assignments.is_some() {
        return refuse(
            ResponseError::InvalidReplicaAssignment,
            "Eddy places replicas itself: give only the new partition count".into(),
        );
    }
    let Some(current) = shared
        .broker
        .meta
        .state()
        .topics
        .get(&name)
        .map(|t| t.partitions.len())
    else {
        return refuse(
            ResponseError::UnknownTopicOrPartition,
            format!("topic {name:?} does not exist"),
        );
    };
    let total = match u32::try_from(topic.count) {
        Ok(n) if n as usize > current && n <= eddy_broker::PARTITIONS_MAX => n,
        _ => {
            return refuse(
                ResponseError::InvalidPartitions,
                format!(
                    "topic {name:?} has {current} partitions: ask for more, up to {}",
                    eddy_broker::PARTITIONS_MAX
                ),
            );
        }
    };
    if validate_only {
        return Ok(());
    }
    shared
        .broker
        .create_partitions(&name, total)
        .await
        .map(|_| ())
        .map_err(|e| (errors::code(&e), e.to_string()))
}
