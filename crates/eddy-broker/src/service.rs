//! The gRPC boundary: proto requests in, [`Broker`] calls, proto responses
//! out, [`BrokerError`]s turned into statuses.

use std::pin::Pin;
use std::sync::Arc;

use eddy_meta::{Operation, ResourceType};
use eddy_proto::v1 as pb;
use eddy_proto::v1::{
    admin_server::Admin, cluster_server::Cluster, consume_server::Consume, groups_server::Groups,
    produce_server::Produce,
};
use futures::Stream;
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Request, Response, Status, Streaming};

use prost::Message;

use crate::auth::Caller;
use crate::auth::quota::{self, Rate};
use crate::broker::Broker;
use crate::error::BrokerError;
use crate::topics::TopicState;

/// Implements every Eddy service over one broker.
#[derive(Debug, Clone)]
pub struct Service {
    broker: Arc<Broker>,
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

#[tonic::async_trait]
impl Produce for Service {
    async fn produce(
        &self,
        req: Request<pb::ProduceRequest>,
    ) -> Result<Response<pb::ProduceResponse>, Status> {
        let caller = Caller::of(&req)?;
        caller.check(req.get_ref().topics.iter().map(|t| t.topic.as_str()))?;
        let bytes = req.get_ref().encoded_len() as u64;
        let response = self.broker.produce(req.into_inner()).await?;
        quota::wait(caller.throttle(Rate::Produce, bytes)).await;
        Ok(Response::new(response))
    }

    async fn init_producer_id(
        &self,
        req: Request<pb::InitProducerIdRequest>,
    ) -> Result<Response<pb::InitProducerIdResponse>, Status> {
        let (producer_id, epoch) = self
            .broker
            .init_producer_id(&req.into_inner().stable_name)
            .await?;
        Ok(Response::new(pb::InitProducerIdResponse {
            producer_id,
            producer_epoch: i32::from(epoch),
        }))
    }

    async fn describe_producer(
        &self,
        req: Request<pb::DescribeProducerRequest>,
    ) -> Result<Response<pb::DescribeProducerResponse>, Status> {
        Caller::of(&req)?.check(req.get_ref().topics.iter().map(|t| t.topic.as_str()))?;
        let req = req.into_inner();
        let wanted: Vec<(String, u32)> = req
            .topics
            .into_iter()
            .flat_map(|t| {
                let topic = t.topic;
                t.partitions.into_iter().map(move |p| (topic.clone(), p))
            })
            .collect();
        let partitions = self
            .broker
            .describe_producer(eddy_log::ProducerId(req.producer_id), &wanted)
            .into_iter()
            .zip(wanted)
            .map(|(state, (topic, partition))| match state {
                Ok(known) => pb::ProducerPartitionState {
                    topic,
                    partition,
                    known: known.is_some(),
                    producer_epoch: known.map_or(-1, |(e, _)| i32::from(e.0)),
                    last_sequence: known.map_or(-1, |(_, s)| s.0),
                    error: None,
                },
                Err(e) => pb::ProducerPartitionState {
                    topic,
                    partition,
                    known: false,
                    producer_epoch: -1,
                    last_sequence: -1,
                    error: Some(e.to_partition_error()),
                },
            })
            .collect();
        Ok(Response::new(pb::DescribeProducerResponse { partitions }))
    }

    type ProduceStreamStream = BoxStream<pb::ProduceResponse>;

    async fn produce_stream(
        &self,
        req: Request<Streaming<pb::ProduceRequest>>,
    ) -> Result<Response<Self::ProduceStreamStream>, Status> {
        let caller = Caller::of(&req)?;
        let mut requests = req.into_inner();
        let queue = self.broker.config.limits.produce_stream_queue_max;
        let (tx, rx) = mpsc::channel(queue);
        // A reader decodes the next requests while the current one is
        // written; one writer handles them in order, so records keep their
        // order in every partition. Both queues are bounded, and HTTP/2 flow
        // control bounds what the client can send ahead.
        let (req_tx, mut req_rx) = mpsc::channel::<Result<pb::ProduceRequest, Status>>(2);
        let broker = self.broker.clone();
        let mut shutdown = broker.shutdown_signal();
        tokio::spawn(async move {
            loop {
                // At shutdown the stream ends after the requests already read.
                let message = tokio::select! {
                    m = requests.message() => m,
                    _ = shutdown.changed() => return,
                };
                let next = match message {
                    Ok(Some(r)) => Ok(r),
                    Ok(None) => return,
                    Err(status) => Err(crate::server::explain_oversize(status, &broker)),
                };
                let failed = next.is_err();
                if req_tx.send(next).await.is_err() || failed {
                    return;
                }
            }
        });
        let broker = self.broker.clone();
        tokio::spawn(async move {
            let mut failed = false;
            while let Some(next) = req_rx.recv().await {
                let request = match next {
                    Ok(r) => r,
                    Err(status) => {
                        let _ = tx.send(Err(status)).await;
                        return;
                    }
                };
                let correlation_id = request.correlation_id;
                let bytes = request.encoded_len() as u64;
                // Each request is checked as it comes: an ACL removed
                // while the stream is open stops it.
                if let Err(status) = caller.check(request.topics.iter().map(|t| t.topic.as_str())) {
                    let _ = tx.send(Err(status)).await;
                    return;
                }
                let response = if failed {
                    aborted(correlation_id)
                } else {
                    match broker.produce(request).await {
                        Ok(r) => r,
                        Err(e) => {
                            failed = true;
                            pb::ProduceResponse {
                                correlation_id,
                                topics: Vec::new(),
                                error: Some(e.to_partition_error()),
                            }
                        }
                    }
                };
                // Past the caller's quota the answer waits, and with it the
                // stream (its queue is bounded).
                quota::wait(caller.throttle(Rate::Produce, bytes)).await;
                if tx.send(Ok(response)).await.is_err() {
                    return;
                }
            }
        });
        Ok(Response::new(Box::pin(ReceiverStream::new(rx))))
    }
}

/// The answer to a stream request after an earlier one failed.
fn aborted(correlation_id: u64) -> pb::ProduceResponse {
    pb::ProduceResponse {
        correlation_id,
        topics: Vec::new(),
        error: Some(pb::PartitionError {
            code: pb::ErrorCode::StreamAborted as i32,
            message: "an earlier request on this stream failed, so this one was not written; resend it on a new stream".into(),
        }),
    }
}

#[tonic::async_trait]
impl Consume for Service {
    async fn fetch(
        &self,
        req: Request<pb::FetchRequest>,
    ) -> Result<Response<pb::FetchResponse>, Status> {
        let caller = Caller::of(&req)?;
        caller.check(req.get_ref().topics.iter().map(|t| t.topic.as_str()))?;
        let response = self.broker.fetch(req.into_inner()).await?;
        quota::wait(caller.throttle(Rate::Fetch, response.encoded_len() as u64)).await;
        Ok(Response::new(response))
    }

    type SubscribeStream = BoxStream<pb::SubscribeResponse>;

    async fn subscribe(
        &self,
        req: Request<pb::SubscribeRequest>,
    ) -> Result<Response<Self::SubscribeStream>, Status> {
        let caller = Caller::of(&req)?;
        caller.check([req.get_ref().topic.as_str()])?;
        let rx = quota::throttled(self.broker.subscribe(req.into_inner()).await?, &caller);
        Ok(Response::new(Box::pin(ReceiverStream::new(rx))))
    }

    async fn list_offsets(
        &self,
        req: Request<pb::ListOffsetsRequest>,
    ) -> Result<Response<pb::ListOffsetsResponse>, Status> {
        Caller::of(&req)?.check(req.get_ref().topics.iter().map(|t| t.topic.as_str()))?;
        Ok(Response::new(
            self.broker.list_offsets(req.into_inner()).await?,
        ))
    }
}

#[tonic::async_trait]
impl Groups for Service {
    async fn join_group(
        &self,
        req: Request<pb::JoinGroupRequest>,
    ) -> Result<Response<pb::JoinGroupResponse>, Status> {
        Caller::of(&req)?.check([req.get_ref().group_id.as_str()])?;
        Ok(Response::new(
            self.broker.join_group(req.into_inner()).await?,
        ))
    }

    async fn heartbeat(
        &self,
        req: Request<pb::HeartbeatRequest>,
    ) -> Result<Response<pb::HeartbeatResponse>, Status> {
        Caller::of(&req)?.check([req.get_ref().group_id.as_str()])?;
        self.broker.heartbeat(req.into_inner()).await?;
        Ok(Response::new(pb::HeartbeatResponse {}))
    }

    async fn leave_group(
        &self,
        req: Request<pb::LeaveGroupRequest>,
    ) -> Result<Response<pb::LeaveGroupResponse>, Status> {
        Caller::of(&req)?.check([req.get_ref().group_id.as_str()])?;
        self.broker.leave_group(req.into_inner()).await?;
        Ok(Response::new(pb::LeaveGroupResponse {}))
    }

    async fn commit_offsets(
        &self,
        req: Request<pb::CommitOffsetsRequest>,
    ) -> Result<Response<pb::CommitOffsetsResponse>, Status> {
        let caller = Caller::of(&req)?;
        caller.check([req.get_ref().group_id.as_str()])?;
        for o in &req.get_ref().offsets {
            caller.check_op(ResourceType::Topic, &o.topic, Operation::Read)?;
        }
        self.broker.commit_offsets(req.into_inner()).await?;
        Ok(Response::new(pb::CommitOffsetsResponse {}))
    }

    async fn fetch_offsets(
        &self,
        req: Request<pb::FetchOffsetsRequest>,
    ) -> Result<Response<pb::FetchOffsetsResponse>, Status> {
        let caller = Caller::of(&req)?;
        caller.check([req.get_ref().group_id.as_str()])?;
        for t in &req.get_ref().partitions {
            caller.check_op(ResourceType::Topic, &t.topic, Operation::Describe)?;
        }
        Ok(Response::new(
            self.broker.fetch_offsets(req.into_inner()).await?,
        ))
    }

    async fn list_groups(
        &self,
        req: Request<pb::ListGroupsRequest>,
    ) -> Result<Response<pb::ListGroupsResponse>, Status> {
        let caller = Caller::of(&req)?;
        let mut groups = self.broker.list_groups().await?;
        groups
            .groups
            .retain(|g| caller.may(ResourceType::Group, &g.group_id, Operation::Describe));
        Ok(Response::new(groups))
    }

    async fn describe_group(
        &self,
        req: Request<pb::DescribeGroupRequest>,
    ) -> Result<Response<pb::DescribeGroupResponse>, Status> {
        Caller::of(&req)?.check([req.get_ref().group_id.as_str()])?;
        Ok(Response::new(
            self.broker.describe_group(req.into_inner()).await?,
        ))
    }

    async fn delete_group(
        &self,
        req: Request<pb::DeleteGroupRequest>,
    ) -> Result<Response<pb::DeleteGroupResponse>, Status> {
        Caller::of(&req)?.check([req.get_ref().group_id.as_str()])?;
        self.broker.delete_group(&req.into_inner().group_id).await?;
        Ok(Response::new(pb::DeleteGroupResponse {}))
    }
}

impl From<&BrokerError> for Status {
    fn from(e: &BrokerError) -> Status {
        e.to_status()
    }
}
