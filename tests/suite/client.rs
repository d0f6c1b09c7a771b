//! The Rust client against a real broker that goes away and comes back,
//! and against one that takes calls and never answers them.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use eddy_client::{
    Acks, Admin, Client, ClientConfig, Consumer, ConsumerConfig, GroupConfig, Producer,
    ProducerConfig, ProducerRecord, Start,
};
use eddy_proto::v1::cluster_server::{Cluster, ClusterServer};
use eddy_proto::v1::consume_server::{Consume, ConsumeServer};
use eddy_proto::v1::groups_server::{Groups, GroupsServer};
use eddy_proto::v1::produce_server::{Produce, ProduceServer};
use eddy_proto::v1::{
    BrokerInfo, CommitOffsetsRequest, CommitOffsetsResponse, DeleteGroupRequest,
    DeleteGroupResponse, DescribeGroupRequest, DescribeGroupResponse, DescribeProducerRequest,
    DescribeProducerResponse, FetchOffsetsRequest, FetchOffsetsResponse, FetchRequest,
    FetchResponse, HeartbeatRequest, HeartbeatResponse, InitProducerIdRequest,
    InitProducerIdResponse, JoinGroupRequest, JoinGroupResponse, LeaveGroupRequest,
    LeaveGroupResponse, ListGroupsRequest, ListGroupsResponse, ListOffsetsRequest,
    ListOffsetsResponse, MetadataRequest, MetadataResponse, PartitionMetadata, ProduceRequest,
    ProduceResponse, SubscribeRequest, SubscribeResponse, TopicMetadata,
};
use tonic::transport::server::TcpIncoming;

use crate::harness::TestBroker;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retries_across_a_broker_restart_never_reorder_a_partition() {
    let mut b = TestBroker::start();
    b.ok(&["topic", "create", "o", "-p", "2"]);
    let client = Client::connect(ClientConfig::new(b.addr.clone()))
        .await
        .unwrap();
    let config = ProducerConfig {
        acks: Acks::All,
        linger_ms: 1,
        batch_bytes_max: 2048,
        retry_backoff_ms: 50,
        delivery_timeout_ms: 60_000,
        ..ProducerConfig::default()
    };
    let producer = Producer::new(client.clone(), config);
    const N: u64 = 20_000;
    let sending = {
        let producer = producer.clone();
        tokio::spawn(async move {
            for i in 0..N {
                let r = ProducerRecord::value(Bytes::from(i.to_string())).partition((i % 2) as u32);
                producer.send("o", r).await.unwrap();
                if i % 500 == 0 {
                    tokio::task::yield_now().await;
                }
            }
            producer.flush().await
        })
    };
    tokio::time::sleep(Duration::from_millis(150)).await;
    tokio::task::spawn_blocking(move || {
        b.restart();
        b
    })
    .await
    .map(|restarted| sending_done(sending, restarted, client, N))
    .unwrap()
    .await;
}

async fn sending_done(
    sending: tokio::task::JoinHandle<eddy_client::Result<()>>,
    b: TestBroker,
    _old: Client,
    n: u64,
) {
    sending
        .await
        .unwrap()
        .expect("every record is eventually acknowledged");
    let client = Client::connect(ClientConfig::new(b.addr.clone()))
        .await
        .unwrap();
    let mut consumer = Consumer::new(client, ConsumerConfig::default());
    for p in 0..2 {
        consumer.assign("o", p, Start::Earliest).await.unwrap();
    }
    let mut seen: Vec<Vec<u64>> = vec![Vec::new(), Vec::new()];
    let mut total = std::collections::BTreeSet::new();
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    while total.len() < n as usize {
        assert!(
            std::time::Instant::now() < deadline,
            "only {} of {n} records came back",
            total.len()
        );
        for f in consumer.poll(Duration::from_millis(500)).await.unwrap() {
            for r in f.records().unwrap() {
                let v: u64 = std::str::from_utf8(r.value.as_deref().unwrap())
                    .unwrap()
                    .parse()
                    .unwrap();
                if total.insert(v) {
                    seen[r.partition as usize].push(v); // first occurrences only
                }
            }
        }
    }
    for (p, values) in seen.iter().enumerate() {
        assert!(
            values.windows(2).all(|w| w[0] < w[1]),
            "partition {p} is in send order"
        );
        assert_eq!(values.len() as u64, n / 2);
    }
}

/// Bulk data a consumer has not read yet must never hold up anything else
/// on the same client: control calls, heartbeats, produce acknowledgements.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_consumer_that_stops_polling_never_blocks_other_calls_on_the_same_client() {
    let b = TestBroker::start();
    b.ok(&["topic", "create", "w", "-p", "4"]);
    let mut config = ClientConfig::new(b.addr.clone());
    // Small HTTP/2 windows, so a small backlog fills them.
    config.stream_window_bytes = 256 << 10;
    config.connection_window_bytes = 512 << 10;
    let client = Client::connect(config).await.unwrap();
    let producer = Producer::new(
        client.clone(),
        ProducerConfig {
            acks: Acks::All,
            batch_bytes_max: 64 << 10,
            ..ProducerConfig::default()
        },
    );
    let value = Bytes::from(vec![b'x'; 1024]);
    for i in 0..4096u32 {
        let record = ProducerRecord::value(value.clone()).partition(i % 4);
        producer.send("w", record).await.unwrap();
    }
    producer.flush().await.unwrap();

    let consumer_config = ConsumerConfig {
        partition_bytes_max: 64 << 10,
        ..ConsumerConfig::default()
    };
    let mut consumer = Consumer::new(client.clone(), consumer_config);
    let mut group = GroupConfig::new("idle");
    group.session_timeout_ms = 2_000;
    group.auto_commit = false;
    consumer.subscribe(group, &["w"]).await.unwrap();
    let mut read = 0;
    while read == 0 {
        for f in consumer.poll(Duration::from_millis(200)).await.unwrap() {
            read += f.record_count();
        }
    }
    // The consumer stops polling for longer than its session timeout while
    // its streams fill every window they may.
    tokio::time::sleep(Duration::from_millis(3_000)).await;

    let admin = Admin::new(client.clone());
    let described = tokio::time::timeout(Duration::from_secs(5), admin.describe_group("idle"))
        .await
        .expect("control calls are not held up")
        .unwrap();
    assert_eq!(
        described.members.len(),
        1,
        "heartbeats kept the member alive"
    );
    let ticket = producer
        .send("w", ProducerRecord::value("more").partition(0))
        .await
        .unwrap();
    tokio::time::timeout(Duration::from_secs(5), ticket.wait())
        .await
        .expect("produce acknowledgements are not held up")
        .unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    while read < 4097 && std::time::Instant::now() < deadline {
        for f in consumer.poll(Duration::from_millis(200)).await.unwrap() {
            read += f.record_count();
        }
    }
    assert_eq!(read, 4097, "the consumer resumes where it stopped");
}

/// A broker that takes every produce, consume and group call and never
/// answers it; it answers metadata (naming itself the leader of `t`'s one
/// partition, and so, with no `__consumer_offsets` named, every group's
/// coordinator) or, unless `answers_metadata`, takes that call too and
/// never answers. Its connections stay healthy (HTTP/2 pings are
/// answered), so no keep-alive gives up on it: only the client's own
/// bounds can.
struct Unanswering {
    address: String,
    answers_metadata: bool,
}

impl Unanswering {
    /// Serves one on an ephemeral port; returns its address.
    async fn start(answers_metadata: bool) -> (String, tokio::task::JoinHandle<()>) {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = listener.local_addr().unwrap().to_string();
        let broker = Arc::new(Unanswering {
            address: address.clone(),
            answers_metadata,
        });
        let server = tokio::spawn(async move {
            let served = tonic::transport::Server::builder()
                .add_service(ClusterServer::from_arc(broker.clone()))
                .add_service(ProduceServer::from_arc(broker.clone()))
                .add_service(ConsumeServer::from_arc(broker.clone()))
                .add_service(GroupsServer::from_arc(broker))
                .serve_with_incoming(TcpIncoming::from(listener))
                .await;
            served.unwrap();
        });
        (address, server)
    }
}

/// Client settings that give up on a silent broker after 300 ms.
fn impatient(bootstrap: String) -> ClientConfig {
    ClientConfig {
        request_timeout_ms: 300,
        ..ClientConfig::new(bootstrap)
    }
}

#[tonic::async_trait]
impl Cluster for Unanswering {
    async fn metadata(
        &self,
        _: tonic::Request<MetadataRequest>,
    ) -> Result<tonic::Response<MetadataResponse>, tonic::Status> {
        if !self.answers_metadata {
            std::future::pending::<()>().await;
        }
        Ok(tonic::Response::new(MetadataResponse {
            cluster_id: "unanswering".into(),
            controller_id: 1,
            brokers: vec![BrokerInfo {
                node_id: 1,
                address: self.address.clone(),
                fenced: false,
            }],
            topics: vec![TopicMetadata {
                name: "t".into(),
                topic_id: "t-1".into(),
                partitions: vec![PartitionMetadata {
                    partition: 0,
                    leader: 1,
                    leader_epoch: 1,
                    replicas: vec![1],
                    isr: vec![1],
                }],
                internal: false,
            }],
        }))
    }
}

#[tonic::async_trait]
impl Produce for Unanswering {
    type ProduceStreamStream = tokio_stream::Empty<Result<ProduceResponse, tonic::Status>>;

    async fn produce(
        &self,
        _: tonic::Request<ProduceRequest>,
    ) -> Result<tonic::Response<ProduceResponse>, tonic::Status> {
        std::future::pending().await
    }

    async fn produce_stream(
        &self,
        _: tonic::Request<tonic::Streaming<ProduceRequest>>,
    ) -> Result<tonic::Response<Self::ProduceStreamStream>, tonic::Status> {
        std::future::pending().await
    }

    async fn init_producer_id(
        &self,
        _: tonic::Request<InitProducerIdRequest>,
    ) -> Result<tonic::Response<InitProducerIdResponse>, tonic::Status> {
        std::future::pending().await
    }

    async fn describe_producer(
        &self,
        _: tonic::Request<DescribeProducerRequest>,
    ) -> Result<tonic::Response<DescribeProducerResponse>, tonic::Status> {
        std::future::pending().await
    }
}

#[tonic::async_trait]
impl Groups for Unanswering {
    async fn join_group(
        &self,
        _: tonic::Request<JoinGroupRequest>,
    ) -> Result<tonic::Response<JoinGroupResponse>, tonic::Status> {
        std::future::pending().await
    }

    async fn heartbeat(
        &self,
        _: tonic::Request<HeartbeatRequest>,
    ) -> Result<tonic::Response<HeartbeatResponse>, tonic::Status> {
        std::future::pending().await
    }

    async fn leave_group(
        &self,
        _: tonic::Request<LeaveGroupRequest>,
    ) -> Result<tonic::Response<LeaveGroupResponse>, tonic::Status> {
        std::future::pending().await
    }

    async fn commit_offsets(
        &self,
        _: tonic::Request<CommitOffsetsRequest>,
    ) -> Result<tonic::Response<CommitOffsetsResponse>, tonic::Status> {
        std::future::pending().await
    }

    async fn fetch_offsets(
        &self,
        _: tonic::Request<FetchOffsetsRequest>,
    ) -> Result<tonic::Response<FetchOffsetsResponse>, tonic::Status> {
        std::future::pending().await
    }

    async fn list_groups(
        &self,
        _: tonic::Request<ListGroupsRequest>,
    ) -> Result<tonic::Response<ListGroupsResponse>, tonic::Status> {
        std::future::pending().await
    }

    async fn describe_group(
        &self,
        _: tonic::Request<DescribeGroupRequest>,
    ) -> Result<tonic::Response<DescribeGroupResponse>, tonic::Status> {
        std::future::pending().await
    }

    async fn delete_group(
        &self,
        _: tonic::Request<DeleteGroupRequest>,
    ) -> Result<tonic::Response<DeleteGroupResponse>, tonic::Status> {
        std::future::pending().await
    }
}

#[tonic::async_trait]
impl Consume for Unanswering {
    type SubscribeStream = tokio_stream::Empty<Result<SubscribeResponse, tonic::Status>>;

    async fn fetch(
        &self,
        _: tonic::Request<FetchRequest>,
    ) -> Result<tonic::Response<FetchResponse>, tonic::Status> {
        std::future::pending().await
    }

    async fn subscribe(
        &self,
        _: tonic::Request<SubscribeRequest>,
    ) -> Result<tonic::Response<Self::SubscribeStream>, tonic::Status> {
        std::future::pending().await
    }

    async fn list_offsets(
        &self,
        _: tonic::Request<ListOffsetsRequest>,
    ) -> Result<tonic::Response<ListOffsetsResponse>, tonic::Status> {
        std::future::pending().await
    }
}

/// A call a broker takes and never answers fails as retriable after
/// `request_timeout_ms`, so neither a send (waiting for the producer's id)
/// nor a flush (waiting for a produce stream to open) outlives the delivery
/// timeout. Without the bound both wait for ever: nothing else notices.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_broker_that_never_answers_holds_no_send_or_flush_past_the_delivery_timeout() {
    let (address, server) = Unanswering::start(true).await;
    let client = Client::connect(impatient(address)).await.unwrap();
    let bounded = |idempotence| ProducerConfig {
        acks: if idempotence { Acks::All } else { Acks::Leader },
        idempotence,
        request_timeout_ms: 300,
        delivery_timeout_ms: 2_000,
        retry_backoff_ms: 50,
        ..ProducerConfig::default()
    };
    let limit = Duration::from_secs(20);

    // Idempotent: the first send asks for a producer id.
    let producer = Producer::new(client.clone(), bounded(true));
    let send = producer.send("t", ProducerRecord::value(Bytes::from_static(b"a")));
    let sent = tokio::time::timeout(limit, send).await;
    let e = sent
        .expect("the send gave up")
        .expect_err("the send failed");
    assert!(e.to_string().contains("request_timeout_ms"), "{e}");

    // Not idempotent: the record is buffered, and the flush sends it.
    let producer = Producer::new(client, bounded(false));
    let ticket = producer
        .send("t", ProducerRecord::value(Bytes::from_static(b"b")))
        .await
        .unwrap();
    let flushed = tokio::time::timeout(limit, producer.flush()).await;
    let e = flushed
        .expect("the flush gave up")
        .expect_err("the flush failed");
    assert!(e.to_string().contains("delivery_timeout_ms"), "{e}");
    assert!(ticket.wait().await.is_err(), "the record failed");
    server.abort();
}

/// A call any broker can answer (metadata, a producer id) moves on to the
/// next broker when the one asked first takes it and never answers: the
/// producer reaches the live broker behind a silent bootstrap broker.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_call_any_broker_can_answer_moves_on_from_one_that_never_answers() {
    let b = TestBroker::start();
    b.ok(&["topic", "create", "f"]);
    let (silent, server) = Unanswering::start(false).await;
    let client = Client::connect(impatient(format!("{silent},{}", b.addr)))
        .await
        .unwrap();
    let producer = Producer::new(client, ProducerConfig::default());
    let delivered = async {
        let ticket = producer
            .send("f", ProducerRecord::value(Bytes::from_static(b"x")))
            .await?;
        ticket.wait().await
    };
    let delivered = tokio::time::timeout(Duration::from_secs(20), delivered)
        .await
        .expect("the producer moved on from the silent broker");
    delivered.expect("the record was delivered by the live broker");
    server.abort();
}

/// A partition leader that takes a consumer's call for a position and
/// never answers fails it as retriable after `request_timeout_ms`: it is
/// asked again, then given up, not waited for for ever.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_leader_that_never_answers_holds_no_position_for_ever() {
    let (address, server) = Unanswering::start(true).await;
    let client = Client::connect(impatient(address)).await.unwrap();
    let mut consumer = Consumer::new(client, ConsumerConfig::default());
    let assigned = tokio::time::timeout(
        Duration::from_secs(60),
        consumer.assign("t", 0, Start::Earliest),
    )
    .await;
    let e = assigned
        .expect("the position was given up")
        .expect_err("no position");
    assert!(e.to_string().contains("request_timeout_ms"), "{e}");
    server.abort();
}

/// A group coordinator that takes a join and never answers fails it as
/// retriable once `request_timeout_ms` has passed beyond the rebalance it
/// may wait for: the consumer looks for the coordinator again and then
/// gives the join up, not waited for for ever.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_coordinator_that_never_answers_holds_no_join_for_ever() {
    let (address, server) = Unanswering::start(true).await;
    let client = Client::connect(impatient(address)).await.unwrap();
    let mut consumer = Consumer::new(client, ConsumerConfig::default());
    let group = GroupConfig {
        rebalance_timeout_ms: 200,
        ..GroupConfig::new("g")
    };
    consumer.subscribe(group, &["t"]).await.unwrap();
    let polled = tokio::time::timeout(
        Duration::from_secs(90),
        consumer.poll(Duration::from_millis(100)),
    )
    .await;
    let e = polled.expect("the join was given up").expect_err("no join");
    assert!(e.to_string().contains("request_timeout_ms"), "{e}");
    server.abort();
}
