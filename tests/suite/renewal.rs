//! A producer that takes a new identity after a batch failed for good
//! stamps anew only what its leaders do not hold. The broker here is a
//! small scripted one, so that a batch lands with its answer lost at the
//! exact moment another partition refuses a batch out of order.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use eddy_client::{Client, ClientConfig, Producer, ProducerConfig, ProducerRecord};
use eddy_log::{Batch, BatchHeader};
use eddy_proto::v1 as pb;
use pb::cluster_server::{Cluster, ClusterServer};
use pb::produce_server::{Produce, ProduceServer};
use tokio_stream::StreamExt;
use tokio_stream::wrappers::ReceiverStream;
use tonic::transport::server::TcpIncoming;

/// What the scripted broker holds of topic `t`'s two partitions.
#[derive(Default)]
struct Logs {
    /// Per partition, the values written, in offset order.
    values: [Vec<Bytes>; 2],
    /// Per (producer id, partition): the batches written.
    batches: HashMap<(i64, u32), Vec<Written>>,
    producer_ids: i64,
    /// The first batch written to partition 0 is written and never
    /// answered (its stream goes silent), as when an answer is lost.
    silenced: bool,
    /// The first batch sent to partition 1 is refused out of order, as by
    /// a leader that lost track of the producer's sequences; the request
    /// fails whole, and what came before it in the request stays written.
    refused: bool,
}

/// A batch written: (first sequence, last sequence, base offset).
type Written = (i32, i32, u64);

enum Answer {
    Now(pb::ProduceResponse),
    Never,
}

impl Logs {
    fn last_sequence(&self, producer: i64, partition: u32) -> Option<i32> {
        self.batches
            .get(&(producer, partition))
            .and_then(|b| b.last())
            .map(|b| b.1)
    }

    fn take(&mut self, request: &pb::ProduceRequest) -> Answer {
        let mut results = Vec::new();
        let mut silent = false;
        for data in request.topics.iter().flat_map(|t| &t.partitions) {
            let p = data.partition;
            let h = BatchHeader::parse(&data.batch).unwrap();
            let (producer, first, last) = (h.producer_id.0, h.base_sequence.0, h.last_sequence().0);
            let refuse = |message: &str| {
                Answer::Now(pb::ProduceResponse {
                    correlation_id: request.correlation_id,
                    topics: Vec::new(),
                    error: Some(pb::PartitionError {
                        code: pb::ErrorCode::OutOfOrderSequence as i32,
                        message: message.to_string(),
                    }),
                })
            };
            if p == 1 && !self.refused {
                self.refused = true;
                return refuse("t-1 lost track of the producer's sequences");
            }
            let written = self.batches.entry((producer, p)).or_default();
            if let Some(&(_, _, base)) = written.iter().find(|b| b.0 == first && b.1 == last) {
                results.push(result(p, base, h.record_count, true));
                continue;
            }
            if first != written.last().map_or(0, |b| b.1 + 1) {
                return refuse("a gap in the producer's sequences");
            }
            let base = self.values[p as usize].len() as u64;
            written.push((first, last, base));
            let batch = Batch::parse(&data.batch, usize::MAX).unwrap();
            let records = batch.decoded().unwrap();
            for r in records.iter() {
                let value = r.unwrap().value.unwrap_or_default();
                self.values[p as usize].push(Bytes::copy_from_slice(value));
            }
            results.push(result(p, base, h.record_count, false));
            if p == 0 && !self.silenced {
                self.silenced = true;
                silent = true;
            }
        }
        if silent {
            return Answer::Never;
        }
        Answer::Now(pb::ProduceResponse {
            correlation_id: request.correlation_id,
            topics: vec![pb::TopicProduceResult {
                topic: "t".into(),
                partitions: results,
            }],
            error: None,
        })
    }
}

fn result(partition: u32, base: u64, count: u32, duplicate: bool) -> pb::PartitionProduceResult {
    pb::PartitionProduceResult {
        partition,
        base_offset: base,
        last_offset: base + u64::from(count) - 1,
        record_count: count,
        log_start_offset: 0,
        duplicate,
        offsets_unknown: false,
    }
}

#[derive(Clone)]
struct Scripted {
    address: String,
    logs: Arc<Mutex<Logs>>,
}

impl Scripted {
    async fn start() -> (Scripted, tokio::task::JoinHandle<()>) {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let broker = Scripted {
            address: listener.local_addr().unwrap().to_string(),
            logs: Arc::default(),
        };
        let served = broker.clone();
        let server = tokio::spawn(async move {
            tonic::transport::Server::builder()
                .add_service(ClusterServer::new(served.clone()))
                .add_service(ProduceServer::new(served))
                .serve_with_incoming(TcpIncoming::from(listener))
                .await
                .unwrap();
        });
        (broker, server)
    }
}

#[tonic::async_trait]
impl Cluster for Scripted {
    async fn metadata(
        &self,
        _: tonic::Request<pb::MetadataRequest>,
    ) -> Result<tonic::Response<pb::MetadataResponse>, tonic::Status> {
        let partition = |partition| pb::PartitionMetadata {
            partition,
            leader: 1,
            leader_epoch: 1,
            replicas: vec![1],
            isr: vec![1],
        };
        Ok(tonic::Response::new(pb::MetadataResponse {
            cluster_id: "scripted".into(),
            controller_id: 1,
            brokers: vec![pb::BrokerInfo {
                node_id: 1,
                address: self.address.clone(),
                fenced: false,
            }],
            topics: vec![pb::TopicMetadata {
                name: "t".into(),
                topic_id: "t-1".into(),
                partitions: vec![partition(0), partition(1)],
                internal: false,
            }],
        }))
    }
}

#[tonic::async_trait]
impl Produce for Scripted {
    type ProduceStreamStream = ReceiverStream<Result<pb::ProduceResponse, tonic::Status>>;

    async fn produce(
        &self,
        _: tonic::Request<pb::ProduceRequest>,
    ) -> Result<tonic::Response<pb::ProduceResponse>, tonic::Status> {
        Err(tonic::Status::unimplemented("the producer uses streams"))
    }

    async fn produce_stream(
        &self,
        request: tonic::Request<tonic::Streaming<pb::ProduceRequest>>,
    ) -> Result<tonic::Response<Self::ProduceStreamStream>, tonic::Status> {
        let mut requests = request.into_inner();
        let (tx, rx) = tokio::sync::mpsc::channel(16);
        let logs = self.logs.clone();
        tokio::spawn(async move {
            while let Some(Ok(request)) = requests.next().await {
                let answer = logs.lock().unwrap().take(&request);
                match answer {
                    Answer::Now(response) => {
                        if tx.send(Ok(response)).await.is_err() {
                            return;
                        }
                    }
                    // The stream stays open and says nothing more.
                    Answer::Never => std::future::pending::<()>().await,
                }
            }
        });
        Ok(tonic::Response::new(ReceiverStream::new(rx)))
    }

    async fn init_producer_id(
        &self,
        _: tonic::Request<pb::InitProducerIdRequest>,
    ) -> Result<tonic::Response<pb::InitProducerIdResponse>, tonic::Status> {
        let mut logs = self.logs.lock().unwrap();
        logs.producer_ids += 1;
        Ok(tonic::Response::new(pb::InitProducerIdResponse {
            producer_id: logs.producer_ids,
            producer_epoch: 0,
        }))
    }

    async fn describe_producer(
        &self,
        request: tonic::Request<pb::DescribeProducerRequest>,
    ) -> Result<tonic::Response<pb::DescribeProducerResponse>, tonic::Status> {
        let request = request.into_inner();
        let logs = self.logs.lock().unwrap();
        let partitions = request
            .topics
            .iter()
            .flat_map(|t| t.partitions.iter().map(move |p| (t.topic.clone(), *p)))
            .map(|(topic, partition)| {
                let last = logs.last_sequence(request.producer_id, partition);
                pb::ProducerPartitionState {
                    topic,
                    partition,
                    known: last.is_some(),
                    producer_epoch: 0,
                    last_sequence: last.unwrap_or(-1),
                    error: None,
                }
            })
            .collect();
        Ok(tonic::Response::new(pb::DescribeProducerResponse {
            partitions,
        }))
    }
}

/// A batch that landed while its answer was lost is still unresolved when
/// another partition refuses a batch out of order and the producer takes a
/// new identity. Stamped anew it would land twice; its leader holds it, so
/// it keeps its stamp and is answered as a duplicate.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_new_identity_does_not_write_again_a_batch_that_landed_unanswered() {
    let (broker, server) = Scripted::start().await;
    let client = Client::connect(ClientConfig::new(broker.address.clone()))
        .await
        .unwrap();
    let producer = Producer::new(
        client,
        ProducerConfig {
            linger_ms: 0,
            request_timeout_ms: 1000,
            ..ProducerConfig::default()
        },
    );
    let a = producer
        .send("t", ProducerRecord::value("a").partition(0))
        .await
        .unwrap();
    // Written, and its answer never comes.
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while broker.logs.lock().unwrap().values[0].is_empty() {
        assert!(std::time::Instant::now() < deadline, "`a` never arrived");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let b = producer
        .send("t", ProducerRecord::value("b").partition(1))
        .await
        .unwrap();
    tokio::time::timeout(Duration::from_secs(30), producer.flush())
        .await
        .expect("the flush ends")
        .unwrap();
    a.wait().await.unwrap();
    b.wait().await.unwrap();
    let logs = broker.logs.lock().unwrap();
    assert!(
        logs.refused,
        "partition 1 refused a batch, so a new identity was taken"
    );
    assert_eq!(logs.producer_ids, 2, "one identity, then one new one");
    assert_eq!(logs.values[0], [Bytes::from("a")], "`a` is written once");
    assert_eq!(logs.values[1], [Bytes::from("b")]);
    drop(logs);
    server.abort();
}
