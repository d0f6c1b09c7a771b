//! Produce and Consume over gRPC.

use std::ops::ControlFlow;
use std::sync::Arc;

use eddy_meta::PartitionId;
use eddy_proto::v1 as pb;
use eddy_proto::v1::{consume_server::Consume, produce_server::Produce};
use prost::Message;
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Request, Response, Status, Streaming};

use super::convert;
use super::{BoxStream, Service};
use crate::auth::Caller;
use crate::auth::quota::{self, Rate};
use crate::broker::Broker;

#[tonic::async_trait]
impl Produce for Service {
    async fn produce(
        &self,
        req: Request<pb::ProduceRequest>,
    ) -> Result<Response<pb::ProduceResponse>, Status> {
        let caller = Caller::of(&req)?;
        caller.check(req.get_ref().topics.iter().map(|t| t.topic.as_str()))?;
        let bytes = req.get_ref().encoded_len() as u64;
        let req = req.into_inner();
        let correlation_id = req.correlation_id;
        let response = self.broker.produce(convert::produce_request(req)?).await?;
        quota::wait(caller.throttle(Rate::Produce, bytes)).await;
        Ok(Response::new(convert::produce_response(
            correlation_id,
            response,
        )))
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
            producer_id: producer_id.0,
            producer_epoch: i32::from(epoch.0),
        }))
    }

    async fn describe_producer(
        &self,
        req: Request<pb::DescribeProducerRequest>,
    ) -> Result<Response<pb::DescribeProducerResponse>, Status> {
        Caller::of(&req)?.check(req.get_ref().topics.iter().map(|t| t.topic.as_str()))?;
        let req = req.into_inner();
        let wanted: Vec<(String, PartitionId)> = req
            .topics
            .into_iter()
            .flat_map(|t| {
                let topic = t.topic;
                t.partitions
                    .into_iter()
                    .map(move |p| (topic.clone(), PartitionId(p)))
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
                    partition: partition.0,
                    known: known.is_some(),
                    producer_epoch: known.map_or(-1, |(e, _)| i32::from(e.0)),
                    last_sequence: known.map_or(-1, |(_, s)| s.0),
                    error: None,
                },
                Err(e) => pb::ProducerPartitionState {
                    topic,
                    partition: partition.0,
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
                    let produced = match convert::produce_request(request) {
                        Ok(request) => broker.produce(request).await,
                        Err(e) => Err(e),
                    };
                    match produced {
                        Ok(r) => convert::produce_response(correlation_id, r),
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
        let req = req.into_inner();
        let response = self.broker.fetch(convert::fetch_request(&req)).await?;
        let response = convert::fetch_response(response, req.decode);
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
        let rx = quota::throttled(subscribe(&self.broker, &req.into_inner()).await?, &caller);
        Ok(Response::new(Box::pin(ReceiverStream::new(rx))))
    }

    async fn list_offsets(
        &self,
        req: Request<pb::ListOffsetsRequest>,
    ) -> Result<Response<pb::ListOffsetsResponse>, Status> {
        Caller::of(&req)?.check(req.get_ref().topics.iter().map(|t| t.topic.as_str()))?;
        let request = convert::offsets_request(req.into_inner());
        Ok(Response::new(convert::offsets_response(
            self.broker.list_offsets(request).await?,
        )))
    }
}

/// A subscription as gRPC messages (records decoded if asked), ending
/// after the first error.
pub(super) async fn subscribe(
    broker: &Arc<Broker>,
    req: &pb::SubscribeRequest,
) -> Result<mpsc::Receiver<Result<pb::SubscribeResponse, Status>>, Status> {
    let decode = req.decode;
    let rx = broker
        .subscribe(convert::subscribe_request(req), move |chunk| {
            match chunk.and_then(|c| convert::subscribe_response(c, decode)) {
                Ok(message) => ControlFlow::Continue(Ok(message)),
                Err(e) => ControlFlow::Break(Err(e.to_status())),
            }
        })
        .await?;
    Ok(rx)
}
