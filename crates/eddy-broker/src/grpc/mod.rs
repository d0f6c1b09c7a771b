//! The gRPC boundary: proto requests in, converted to the core's types
//! (`convert.rs`), [`Broker`] calls, proto responses out, [`BrokerError`]s
//! turned into statuses (`status.rs`). `data.rs` serves Produce and
//! Consume, `groups.rs` Groups, this file Cluster and Admin;
//! `subscribe_route.rs` streams Subscribe without copying batches.

mod convert;
mod data;
mod groups;
mod status;
mod subscribe_route;

pub use self::convert::group_description;
pub(crate) use self::subscribe_route::ConsumeRoutes;

use std::pin::Pin;
use std::sync::Arc;

use eddy_meta::{Operation, ResourceType};
use eddy_proto::v1 as pb;
use eddy_proto::v1::{admin_server::Admin, cluster_server::Cluster};
use futures::Stream;
use tonic::{Request, Response, Status};

use crate::auth::Caller;
use crate::broker::Broker;
use crate::topics::TopicState;

/// Implements every Eddy service over one broker.
#[derive(Debug, Clone)]
pub struct Service {
    pub(super) broker: Arc<Broker>,
}

impl Service {
    pub fn new(broker: Arc<Broker>) -> Service {
        Service { broker }
    }

    fn describe(&self, topic: &TopicState) -> pb::TopicDescription {
        let partitions = topic
            .meta
            .partitions
            .iter()
            .enumerate()
            .map(|(i, pm)| {
                let mut d = pb::PartitionDescription {
                    partition: i as u32,
                    leader: pm.leader.map_or(-1, |n| n.0),
                    leader_epoch: pm.leader_epoch.0,
                    replicas: pm.replicas.iter().map(|n| n.0).collect(),
                    isr: pm.isr.iter().map(|n| n.0).collect(),
                    ..Default::default()
                };
                if let Some(Some(p)) = topic.partitions.get(i) {
                    let o = p.offsets();
                    d.log_start_offset = o.log_start.0;
                    d.high_watermark = o.high_watermark.0;
                    d.log_end_offset = o.log_end.0;
                    d.size_bytes = o.size_bytes;
                }
                d
            })
            .collect();
        pb::TopicDescription {
            name: topic.meta.name.clone(),
            topic_id: topic.meta.id.to_string(),
            replication_factor: topic.meta.replication_factor() as u32,
            configs: topic.meta.configs.clone().into_iter().collect(),
            partitions,
            internal: topic.meta.internal,
        }
    }
}

type BoxStream<T> = Pin<Box<dyn Stream<Item = Result<T, Status>> + Send + 'static>>;

#[tonic::async_trait]
impl Cluster for Service {
    async fn metadata(
        &self,
        req: Request<pb::MetadataRequest>,
    ) -> Result<Response<pb::MetadataResponse>, Status> {
        let caller = Caller::of(&req)?;
        let req = req.into_inner();
        let state = self.broker.meta.state();
        // A topic asked for by name is refused, not hidden, so that the
        // client says what is missing (as Kafka's TOPIC_AUTHORIZATION_FAILED).
        for name in req.topics.iter().filter(|t| state.topics.contains_key(*t)) {
            caller.check_op(ResourceType::Topic, name, Operation::Describe)?;
        }
        let wanted = |name: &str, internal: bool| {
            if req.topics.is_empty() {
                req.include_internal || !internal
            } else {
                req.topics.iter().any(|t| t == name)
            }
        };
        let topics = state
            .topics
            .values()
            .filter(|t| wanted(&t.name, t.internal))
            .filter(|t| caller.may(ResourceType::Topic, &t.name, Operation::Describe))
            .map(|t| pb::TopicMetadata {
                name: t.name.clone(),
                topic_id: t.id.to_string(),
                internal: t.internal,
                partitions: t
                    .partitions
                    .iter()
                    .enumerate()
                    .map(|(i, p)| pb::PartitionMetadata {
                        partition: i as u32,
                        leader: p.leader.map_or(-1, |n| n.0),
                        leader_epoch: p.leader_epoch.0,
                        replicas: p.replicas.iter().map(|n| n.0).collect(),
                        isr: p.isr.iter().map(|n| n.0).collect(),
                    })
                    .collect(),
            })
            .collect();
        Ok(Response::new(pb::MetadataResponse {
            cluster_id: state.cluster_id.clone(),
            controller_id: self.broker.meta.leader().map_or(-1, |n| n.0),
            brokers: state
                .brokers
                .values()
                .map(|b| pb::BrokerInfo {
                    node_id: b.id.0,
                    address: b.address.clone(),
                    fenced: b.fenced,
                })
                .collect(),
            topics,
        }))
    }
}

#[tonic::async_trait]
impl Admin for Service {
    async fn create_topic(
        &self,
        req: Request<pb::CreateTopicRequest>,
    ) -> Result<Response<pb::TopicDescription>, Status> {
        Caller::of(&req)?.check([req.get_ref().name.as_str()])?;
        let req = req.into_inner();
        let configs = req.configs.into_iter().collect();
        let topic = self
            .broker
            .create_topic(&req.name, req.partitions, req.replication_factor, configs)
            .await?;
        Ok(Response::new(self.describe(&topic)))
    }

    async fn list_topics(
        &self,
        req: Request<pb::ListTopicsRequest>,
    ) -> Result<Response<pb::ListTopicsResponse>, Status> {
        let caller = Caller::of(&req)?;
        let include_internal = req.into_inner().include_internal;
        let topics = self
            .broker
            .topics
            .all()
            .iter()
            .filter(|t| include_internal || !t.meta.internal)
            .filter(|t| caller.may(ResourceType::Topic, &t.meta.name, Operation::Describe))
            .map(|t| pb::TopicSummary {
                name: t.meta.name.clone(),
                partitions: t.partition_count(),
                replication_factor: t.meta.replication_factor() as u32,
                internal: t.meta.internal,
            })
            .collect();
        Ok(Response::new(pb::ListTopicsResponse { topics }))
    }

    async fn describe_topic(
        &self,
        req: Request<pb::DescribeTopicRequest>,
    ) -> Result<Response<pb::TopicDescription>, Status> {
        Caller::of(&req)?.check([req.get_ref().name.as_str()])?;
        let topic = self.broker.topics.get(&req.into_inner().name)?;
        Ok(Response::new(self.describe(&topic)))
    }

    async fn create_partitions(
        &self,
        req: Request<pb::CreatePartitionsRequest>,
    ) -> Result<Response<pb::TopicDescription>, Status> {
        Caller::of(&req)?.check([req.get_ref().name.as_str()])?;
        let req = req.into_inner();
        let topic = self.broker.create_partitions(&req.name, req.total).await?;
        Ok(Response::new(self.describe(&topic)))
    }

    async fn delete_topic(
        &self,
        req: Request<pb::DeleteTopicRequest>,
    ) -> Result<Response<pb::DeleteTopicResponse>, Status> {
        Caller::of(&req)?.check([req.get_ref().name.as_str()])?;
        self.broker.delete_topic(&req.into_inner().name).await?;
        Ok(Response::new(pb::DeleteTopicResponse {}))
    }
}
