//! Metadata: the brokers' Kafka addresses and, per topic, each
//! partition's leader, epoch, replicas and ISR, so clients send each
//! request to the partition's leader.

use std::collections::BTreeMap;

use eddy_meta::{MetaState, Operation, ResourceType, TopicMeta};
use kafka_protocol::ResponseError;
use kafka_protocol::messages::describe_cluster_request::DescribeClusterRequest;
use kafka_protocol::messages::describe_cluster_response::{
    DescribeClusterBroker, DescribeClusterResponse,
};
use kafka_protocol::messages::metadata_request::MetadataRequest;
use kafka_protocol::messages::metadata_response::{
    MetadataResponse, MetadataResponseBroker, MetadataResponsePartition, MetadataResponseTopic,
};
use kafka_protocol::messages::{BrokerId, TopicName};
use kafka_protocol::protocol::StrBytes;

use crate::Shared;
use crate::connection::Session;

pub(crate) async fn handle(
    request: MetadataRequest,
    version: i16,
    shared: &Shared,
    session: &Session,
) -> MetadataResponse {
    let broker = &shared.broker;
    let wanted: Option<Vec<String>> = request.topics.map(|topics| {
        topics
            .into_iter()
            .filter_map(|t| t.name.map(|n| n.0.to_string()))
            .collect()
    });
    // Version 4 added the client's say; before it, Kafka created topics.
    let may_create =
        shared.config.auto_create_topics && (version < 4 || request.allow_auto_topic_creation);
    let mut created_errors = BTreeMap::new();
    if let Some(names) = &wanted {
        for name in names {
            if !may_create || broker.meta.state().topics.contains_key(name) {
                continue;
            }
            if !session.may(shared, ResourceType::Topic, name, Operation::Create) {
                created_errors.insert(name.clone(), ResponseError::TopicAuthorizationFailed);
                continue;
            }
            match broker.create_topic(name, 0, 0, BTreeMap::new()).await {
                Ok(_) => {
                    tracing::info!(topic = %name, peer = %session.peer, "created a topic a Kafka client asked for")
                }
                // Another client's Metadata created it meanwhile.
                Err(eddy_broker::BrokerError::TopicExists(_)) => {}
                Err(e) => {
                    tracing::warn!(topic = %name, error = %e, "could not create a topic a Kafka client asked for");
                    created_errors.insert(
                        name.clone(),
                        ResponseError::try_from_code(crate::errors::code(&e))
                            .unwrap_or(ResponseError::UnknownServerError),
                    );
                }
            }
        }
    }
    let state = broker.meta.state();
    let topics = match wanted {
        // Every topic the principal may describe.
        None => state
            .topics
            .values()
            .filter(|t| {
                shared.broker.authorizer.allows(
                    &session.principal,
                    ResourceType::Topic,
                    &t.name,
                    Operation::Describe,
                )
            })
            .map(|t| topic(t, &state, version))
            .collect(),
        // A topic asked for by name is refused, not hidden.
        Some(names) => names
            .into_iter()
            .map(|name| {
                let error = if let Some(e) = created_errors.get(&name) {
                    Some(*e)
                } else if !session.may(shared, ResourceType::Topic, &name, Operation::Describe) {
                    Some(ResponseError::TopicAuthorizationFailed)
                } else {
                    None
                };
                match (error, state.topics.get(&name)) {
                    (None, Some(t)) => topic(t, &state, version),
                    (error, _) => MetadataResponseTopic::default()
                        .with_name(Some(TopicName(StrBytes::from_string(name))))
                        .with_error_code(
                            error
                                .unwrap_or(ResponseError::UnknownTopicOrPartition)
                                .code(),
                        ),
                }
            })
            .collect(),
    };
    let brokers = live_brokers(&state)
        .map(|(id, host, port)| {
            MetadataResponseBroker::default()
                .with_node_id(id)
                .with_host(StrBytes::from_string(host))
                .with_port(port)
        })
        .collect();
    let mut response = MetadataResponse::default()
        .with_brokers(brokers)
        .with_topics(topics);
    if version >= 1 {
        response.controller_id = BrokerId(broker.meta.leader().map_or(-1, |n| n.0));
    }
    if version >= 2 {
        response.cluster_id = Some(StrBytes::from_string(state.cluster_id.clone()));
    }
    response
}

fn topic(t: &TopicMeta, state: &MetaState, version: i16) -> MetadataResponseTopic {
    let partitions = t
        .partitions
        .iter()
        .enumerate()
        .map(|(i, p)| {
            let leader = p
                .leader
                .filter(|l| state.brokers.get(l).is_some_and(|b| !b.fenced));
            let mut partition = MetadataResponsePartition::default()
                .with_partition_index(i as i32)
                .with_leader_id(BrokerId(leader.map_or(-1, |n| n.0)))
                .with_replica_nodes(p.replicas.iter().map(|n| BrokerId(n.0)).collect())
                .with_isr_nodes(p.isr.iter().map(|n| BrokerId(n.0)).collect());
            if leader.is_none() {
                partition.error_code = ResponseError::LeaderNotAvailable.code();
            }
            if version >= 7 {
                partition.leader_epoch = p.leader_epoch.0;
            }
            partition
        })
        .collect();
    let mut topic = MetadataResponseTopic::default()
        .with_name(Some(TopicName(StrBytes::from_string(t.name.clone()))))
        .with_partitions(partitions);
    if version >= 1 {
        topic.is_internal = t.internal;
    }
    if version >= 10 {
        topic.topic_id = uuid::Uuid::from_u128(t.id.0);
    }
    topic
}

/// Every broker that is not fenced and has a Kafka listener, with the
/// host and port clients reach it at.
fn live_brokers(state: &MetaState) -> impl Iterator<Item = (BrokerId, String, i32)> + '_ {
    state
        .brokers
        .values()
        .filter(|b| !b.fenced)
        .filter_map(|b| {
            let (host, port) = endpoint(state, b.id)?;
            Some((BrokerId(b.id.0), host, port))
        })
}

/// DescribeCluster: the cluster's id, its controller and its brokers.
/// Answered to anyone, as Metadata's broker list is; the cluster's
/// authorized operations only when asked for.
pub(crate) fn describe_cluster(
    request: DescribeClusterRequest,
    version: i16,
    shared: &Shared,
    session: &Session,
) -> DescribeClusterResponse {
    /// Kafka's endpoint types: 1 brokers, 2 controllers.
    const BROKERS: i8 = 1;
    let mut response = DescribeClusterResponse::default();
    if version >= 1 {
        response.endpoint_type = BROKERS;
        if request.endpoint_type != BROKERS {
            return response
                .with_error_code(ResponseError::UnsupportedEndpointType.code())
                .with_error_message(Some(StrBytes::from_static_str(
                    "Eddy's controllers have no Kafka endpoint: ask for brokers (endpoint type 1)",
                )));
        }
    }
    let state = shared.broker.meta.state();
    let brokers = live_brokers(&state)
        .map(|(id, host, port)| {
            DescribeClusterBroker::default()
                .with_broker_id(id)
                .with_host(StrBytes::from_string(host))
                .with_port(port)
        })
        .collect();
    let operations = if request.include_cluster_authorized_operations {
        session.authorized_operations(
            shared,
            ResourceType::Cluster,
            eddy_meta::CLUSTER_RESOURCE,
            &[
                Operation::Create,
                Operation::Alter,
                Operation::Describe,
                Operation::ClusterAction,
            ],
        )
    } else {
        i32::MIN
    };
    response
        .with_cluster_id(StrBytes::from_string(state.cluster_id.clone()))
        .with_controller_id(BrokerId(shared.broker.meta.leader().map_or(-1, |n| n.0)))
        .with_brokers(brokers)
        .with_cluster_authorized_operations(operations)
}

/// Where Kafka clients reach broker `node`, if it has a Kafka listener.
pub(crate) fn endpoint(state: &MetaState, node: eddy_meta::NodeId) -> Option<(String, i32)> {
    let b = state.brokers.get(&node)?;
    let (host, port) = split_host_port(b.kafka_address.as_deref()?)?;
    Some((host.to_string(), i32::from(port)))
}

/// `host:port`, or `[v6]:port`, as two parts.
fn split_host_port(address: &str) -> Option<(&str, u16)> {
    let (host, port) = address.rsplit_once(':')?;
    let host = host.trim_start_matches('[').trim_end_matches(']');
    Some((host, port.parse().ok()?))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses_split_into_host_and_port() {
        assert_eq!(split_host_port("127.0.0.1:9092"), Some(("127.0.0.1", 9092)));
        assert_eq!(split_host_port("[::1]:9093"), Some(("::1", 9093)));
        assert_eq!(split_host_port("broker-2:19092"), Some(("broker-2", 19092)));
        assert_eq!(split_host_port("no-port"), None);
        assert_eq!(split_host_port("h:99999"), None);
    }
}
