//! The gRPC API directly, as any language's client would use it.

use std::time::{Duration, Instant};

use bytes::Bytes;
use eddy_log::{BatchBuilder, RecordRef, Timestamp};
use eddy_proto::v1 as pb;
use pb::consume_client::ConsumeClient;
use pb::produce_client::ProduceClient;
use tonic::Code;
use tonic::transport::Channel;

use crate::harness::TestBroker;

async fn channel(b: &TestBroker) -> Channel {
    Channel::from_shared(format!("http://{}", b.addr))
        .unwrap()
        .connect()
        .await
        .unwrap()
}

pub(crate) fn batch(values: &[&str]) -> Bytes {
    let mut builder = BatchBuilder::new();
    for v in values {
        builder.push(&RecordRef {
            timestamp: Timestamp(1_700_000_000_000),
            key: None,
            value: Some(v.as_bytes()),
            headers: &[],
        });
    }
    Bytes::from(builder.finish().unwrap())
}

pub(crate) fn produce_batch(
    topic: &str,
    partition: u32,
    batch: Bytes,
    acks: pb::Acks,
) -> pb::ProduceRequest {
    pb::ProduceRequest {
        correlation_id: 7,
        acks: acks as i32,
        timeout_ms: 0,
        topics: vec![pb::TopicProduceData {
            topic: topic.into(),
            partitions: vec![pb::PartitionProduceData {
                partition,
                batch,
                records: vec![],
            }],
            records: vec![],
        }],
    }
}

fn fetch(topic: &str, partition: u32, offset: u64) -> pb::FetchRequest {
    pb::FetchRequest {
        max_wait_ms: 0,
        min_bytes: 0,
        max_bytes: 0,
        decode: true,
        topics: vec![pb::FetchTopic {
            topic: topic.into(),
            partitions: vec![pb::FetchPartition {
                partition,
                offset,
                max_bytes: 0,
            }],
        }],
    }
}

pub(crate) fn eddy_code(status: &tonic::Status) -> &str {
    status
        .metadata()
        .get(eddy_proto::ERROR_CODE_METADATA)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
}

/// Where the broker at `addr` says partition 0 of `topic` ends (a
/// ListOffsets call straight to it, retried until its port answers), or
/// the error code of its answer.
pub(crate) fn latest_at(addr: &str, topic: &str) -> Result<u64, String> {
    let addr = addr.to_string();
    let request = pb::ListOffsetsRequest {
        topics: vec![pb::ListOffsetsTopic {
            topic: topic.to_string(),
            partitions: vec![pb::ListOffsetsPartition {
                partition: 0,
                spec: Some(pb::OffsetSpec {
                    spec: Some(pb::offset_spec::Spec::Latest(true)),
                }),
            }],
        }],
    };
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async move {
        let deadline = Instant::now() + Duration::from_secs(20);
        let channel = loop {
            let connected = Channel::from_shared(format!("http://{addr}"))
                .unwrap()
                .connect_timeout(Duration::from_secs(2))
                .connect()
                .await;
            match connected {
                Ok(c) => break c,
                Err(e) if Instant::now() >= deadline => return Err(e.to_string()),
                Err(_) => tokio::time::sleep(Duration::from_millis(50)).await,
            }
        };
        let mut client = ConsumeClient::new(channel);
        let call = tokio::time::timeout(Duration::from_secs(10), client.list_offsets(request));
        let answer = match call.await {
            Ok(Ok(r)) => r.into_inner(),
            Ok(Err(status)) => return Err(eddy_code(&status).to_string()),
            Err(_) => return Err("timed out".to_string()),
        };
        let p = &answer.topics[0].partitions[0];
        match &p.error {
            Some(e) => Err(pb::ErrorCode::try_from(e.code)
                .map_or("?", |c| c.as_str_name())
                .to_string()),
            None => Ok(p.offset),
        }
    })
}

fn values(resp: &pb::FetchResponse) -> Vec<String> {
    resp.topics[0].partitions[0]
        .records
        .iter()
        .map(|r| String::from_utf8(r.value.clone().unwrap_or_default().to_vec()).unwrap())
        .collect()
}

#[tokio::test]
async fn every_produce_error_has_its_status_and_writes_nothing() {
    let b = TestBroker::start_with(&["--request-bytes-max", "1048576"]);
    b.ok(&["topic", "create", "t", "-p", "2"]);
    b.ok(&[
        "topic",
        "create",
        "strict",
        "--config",
        "min.insync.replicas=2",
    ]);
    let mut p = ProduceClient::new(channel(&b).await);
    let good = batch(&["a", "b"]);
    let mut bad_crc = good.to_vec();
    *bad_crc.last_mut().unwrap() ^= 1;
    let big = batch(&[&"x".repeat(2 << 20)]);
    let cases: Vec<(pb::ProduceRequest, Code, &str, &str)> = vec![
        (
            produce_batch("nope", 0, good.clone(), pb::Acks::All),
            Code::NotFound,
            "UNKNOWN_TOPIC",
            "does not exist",
        ),
        (
            produce_batch("t", 5, good.clone(), pb::Acks::All),
            Code::OutOfRange,
            "UNKNOWN_PARTITION",
            "partition 5 does not exist",
        ),
        (
            produce_batch("t", 0, bad_crc.into(), pb::Acks::All),
            Code::InvalidArgument,
            "INVALID_REQUEST",
            "CRC mismatch",
        ),
        (
            produce_batch("t", 0, good.slice(..40), pb::Acks::All),
            Code::InvalidArgument,
            "INVALID_REQUEST",
            "truncated",
        ),
        (
            produce_batch("t", 0, big, pb::Acks::All),
            Code::InvalidArgument,
            "INVALID_REQUEST",
            "limit of 1048576 bytes",
        ),
        (
            produce_batch("strict", 0, good.clone(), pb::Acks::All),
            Code::FailedPrecondition,
            "NOT_ENOUGH_REPLICAS",
            "min.insync.replicas is 2",
        ),
    ];
    for (req, code, eddy, text) in cases {
        let err = p.produce(req).await.unwrap_err();
        assert_eq!(err.code(), code, "{err:?}");
        assert!(
            err.message().contains(text),
            "{:?} should mention {text:?}",
            err.message()
        );
        assert_eq!(eddy_code(&err), eddy, "{err:?}");
    }
    let described = b.ok(&["topic", "describe", "t"]);
    assert!(
        described
            .lines()
            .skip(2)
            .all(|l| l.split_whitespace().nth(7) == Some("0")),
        "nothing written:\n{described}"
    );
    // A request mixing a good and a bad partition writes neither.
    let mut mixed = produce_batch("t", 0, good.clone(), pb::Acks::All);
    mixed.topics[0].partitions.push(pb::PartitionProduceData {
        partition: 9,
        batch: good.clone(),
        records: vec![],
    });
    assert_eq!(p.produce(mixed).await.unwrap_err().code(), Code::OutOfRange);
    let ok = p
        .produce(produce_batch("strict", 0, good, pb::Acks::Leader))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        ok.topics[0].partitions[0].base_offset, 0,
        "acks=1 still works"
    );
}

#[tokio::test]
async fn admin_errors_have_their_status_codes() {
    use pb::admin_client::AdminClient;
    let b = TestBroker::start();
    let mut admin = AdminClient::new(channel(&b).await);
    let create = |name: &str, configs: &[(&str, &str)]| pb::CreateTopicRequest {
        name: name.into(),
        partitions: 2,
        replication_factor: 0,
        configs: configs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
    };
    admin
        .create_topic(create("small", &[("max.message.bytes", "2048")]))
        .await
        .unwrap();
    let again = admin.create_topic(create("small", &[])).await.unwrap_err();
    assert_eq!(again.code(), Code::AlreadyExists, "{again:?}");
    assert_eq!(eddy_code(&again), "TOPIC_EXISTS");
    let bad = admin
        .create_topic(create("bad", &[("retention.ms", "soon")]))
        .await
        .unwrap_err();
    assert_eq!(bad.code(), Code::InvalidArgument, "{bad:?}");
    assert!(bad.message().contains("retention.ms"), "{bad:?}");
    let missing = admin
        .describe_topic(pb::DescribeTopicRequest {
            name: "missing".into(),
        })
        .await
        .unwrap_err();
    assert_eq!(missing.code(), Code::NotFound, "{missing:?}");
    let shrink = admin
        .create_partitions(pb::CreatePartitionsRequest {
            name: "small".into(),
            total: 1,
        })
        .await
        .unwrap_err();
    assert_eq!(shrink.code(), Code::InvalidArgument, "{shrink:?}");

    // A batch over the topic's max.message.bytes names the setting.
    let mut p = ProduceClient::new(channel(&b).await);
    let big = batch(&[&"x".repeat(4000)]);
    let err = p
        .produce(produce_batch("small", 0, big, pb::Acks::All))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument, "{err:?}");
    assert!(
        err.message().contains("limit of 2048 bytes")
            && err.message().contains("max.message.bytes"),
        "{err:?}"
    );
}

#[tokio::test]
async fn structured_records_are_placed_by_key_and_read_back_decoded() {
    let b = TestBroker::start();
    b.ok(&["topic", "create", "s", "-p", "4"]);
    let mut p = ProduceClient::new(channel(&b).await);
    let alpha = eddy_log::partitioner::partition_for_key(b"alpha", 4);
    let other = (0..)
        .map(|i| format!("k{i}"))
        .find(|k| eddy_log::partitioner::partition_for_key(k.as_bytes(), 4) != alpha)
        .unwrap();
    let record = |k: &str, v: &str| pb::Record {
        key: Some(Bytes::copy_from_slice(k.as_bytes())),
        value: Some(Bytes::copy_from_slice(v.as_bytes())),
        headers: vec![pb::Header {
            key: "h".into(),
            value: Bytes::from_static(b"1"),
        }],
        timestamp_ms: Some(1_700_000_000_123),
    };
    let req = pb::ProduceRequest {
        acks: pb::Acks::All as i32,
        topics: vec![pb::TopicProduceData {
            topic: "s".into(),
            partitions: vec![],
            records: vec![
                record("alpha", "1"),
                record(&other, "2"),
                record("alpha", "3"),
            ],
        }],
        ..Default::default()
    };
    let resp = p.produce(req).await.unwrap().into_inner();
    let result = resp.topics[0]
        .partitions
        .iter()
        .find(|r| r.partition == alpha)
        .unwrap();
    assert_eq!((result.base_offset, result.record_count), (0, 2));
    let mut c = ConsumeClient::new(channel(&b).await);
    let fetched = c.fetch(fetch("s", alpha, 0)).await.unwrap().into_inner();
    assert_eq!(values(&fetched), ["1", "3"]);
    let r = &fetched.topics[0].partitions[0].records[0];
    assert_eq!(r.timestamp_ms, 1_700_000_000_123);
    assert_eq!(r.headers[0].key, "h");
    assert!(
        !fetched.topics[0].partitions[0].batches.is_empty(),
        "stored batches come too"
    );
}

#[tokio::test]
async fn a_produce_stream_answers_in_order_and_stops_writing_at_the_first_failure() {
    let b = TestBroker::start();
    b.ok(&["topic", "create", "st"]);
    let mut p = ProduceClient::new(channel(&b).await);
    let mut requests = vec![
        produce_batch("st", 0, batch(&["1"]), pb::Acks::Leader),
        produce_batch("st", 3, batch(&["x"]), pb::Acks::Leader),
        produce_batch("st", 0, batch(&["2", "3"]), pb::Acks::Leader),
    ];
    for (i, r) in requests.iter_mut().enumerate() {
        r.correlation_id = i as u64;
    }
    let mut responses = p
        .produce_stream(tokio_stream_iter(requests))
        .await
        .unwrap()
        .into_inner();
    let mut got = Vec::new();
    while let Some(r) = responses.message().await.unwrap() {
        got.push(r);
    }
    assert_eq!(
        got.iter().map(|r| r.correlation_id).collect::<Vec<_>>(),
        [0, 1, 2]
    );
    assert_eq!(got[0].topics[0].partitions[0].base_offset, 0);
    assert!(
        got[1]
            .error
            .as_ref()
            .unwrap()
            .message
            .contains("partition 3 does not exist")
    );
    assert_eq!(
        got[2].error.as_ref().unwrap().code,
        pb::ErrorCode::StreamAborted as i32
    );
    let described = b.ok(&["topic", "describe", "st"]);
    let p0 = described
        .lines()
        .find(|l| l.trim_start().starts_with("0 "))
        .unwrap();
    assert_eq!(
        p0.split_whitespace().nth(7),
        Some("1"),
        "only the first request was written: {described}"
    );
}

#[tokio::test]
async fn acks_0_requests_on_a_stream_are_written_in_the_order_sent() {
    let b = TestBroker::start();
    b.ok(&["topic", "create", "a0"]);
    let mut p = ProduceClient::new(channel(&b).await);
    let sent: Vec<String> = (0..200).map(|i| format!("v{i}")).collect();
    let requests: Vec<_> = sent
        .iter()
        .enumerate()
        .map(|(i, v)| {
            let mut r = produce_batch("a0", 0, batch(&[v]), pb::Acks::None);
            r.correlation_id = i as u64;
            r
        })
        .collect();
    let mut responses = p
        .produce_stream(tokio_stream_iter(requests))
        .await
        .unwrap()
        .into_inner();
    while let Some(r) = responses.message().await.unwrap() {
        assert!(r.error.is_none(), "{r:?}");
        assert!(r.topics.is_empty(), "acks=0 answers carry no offsets");
    }
    let mut c = ConsumeClient::new(channel(&b).await);
    let mut got = Vec::new();
    while got.len() < sent.len() {
        let resp = c
            .fetch(fetch("a0", 0, got.len() as u64))
            .await
            .unwrap()
            .into_inner();
        let more = values(&resp);
        assert!(!more.is_empty(), "records missing after {}", got.len());
        got.extend(more);
    }
    assert_eq!(got, sent);
}

fn tokio_stream_iter<T: Send + Unpin + 'static>(
    items: Vec<T>,
) -> impl futures_like::Stream<Item = T> {
    futures_like::iter(items)
}

/// A tiny stream over a vector, to avoid a test-only dependency.
mod futures_like {
    use std::pin::Pin;
    use std::task::{Context, Poll};

    pub use tonic::codegen::tokio_stream::Stream;

    pub struct Iter<T>(std::vec::IntoIter<T>);

    impl<T: Unpin> Stream for Iter<T> {
        type Item = T;
        fn poll_next(mut self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<Option<T>> {
            Poll::Ready(self.0.next())
        }
    }

    pub fn iter<T>(v: Vec<T>) -> Iter<T> {
        Iter(v.into_iter())
    }
}

#[tokio::test]
async fn a_long_poll_fetch_wakes_when_records_arrive() {
    let b = TestBroker::start();
    b.ok(&["topic", "create", "lp"]);
    let mut c = ConsumeClient::new(channel(&b).await);
    let mut req = fetch("lp", 0, 0);
    req.max_wait_ms = 20_000;
    req.min_bytes = 1;
    let waiting = tokio::spawn(async move { c.fetch(req).await });
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(
        !waiting.is_finished(),
        "nothing to read yet: the fetch waits"
    );
    b.ok_with_input(&["produce", "lp"], b"wake\n");
    let resp = tokio::time::timeout(Duration::from_secs(10), waiting)
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    assert_eq!(values(&resp.into_inner()), ["wake"]);
}

#[tokio::test]
async fn fetching_outside_the_log_is_a_partition_error() {
    let b = TestBroker::start();
    b.ok(&["topic", "create", "r"]);
    b.ok_with_input(&["produce", "r"], b"only\n");
    let mut c = ConsumeClient::new(channel(&b).await);
    let resp = c.fetch(fetch("r", 0, 5)).await.unwrap().into_inner();
    let e = resp.topics[0].partitions[0].error.clone().unwrap();
    assert_eq!(e.code, pb::ErrorCode::OffsetOutOfRange as i32);
    assert!(
        e.message.contains("from 0 up to (not including) 1"),
        "{}",
        e.message
    );
    let unknown = c.fetch(fetch("zzz", 0, 0)).await.unwrap_err();
    assert_eq!(unknown.code(), Code::NotFound);
    // Waiting would not help, so a long poll answers the error at once.
    let mut long_poll = fetch("r", 0, 5);
    long_poll.max_wait_ms = 30_000;
    long_poll.min_bytes = 1;
    let resp = tokio::time::timeout(Duration::from_secs(10), c.fetch(long_poll))
        .await
        .expect("a fetch with a partition error answers before its max wait")
        .unwrap()
        .into_inner();
    assert!(resp.topics[0].partitions[0].error.is_some());
}

#[tokio::test]
async fn subscribe_pushes_records_as_they_arrive() {
    let b = TestBroker::start();
    b.ok(&["topic", "create", "sub"]);
    b.ok_with_input(&["produce", "sub"], b"first\n");
    let mut c = ConsumeClient::new(channel(&b).await);
    let req = pb::SubscribeRequest {
        topic: "sub".into(),
        partition: 0,
        start: None,
        max_bytes: 0,
        decode: true,
    };
    let mut stream = c.subscribe(req).await.unwrap().into_inner();
    let first = stream.message().await.unwrap().unwrap();
    assert_eq!(first.records[0].value.as_deref(), Some(&b"first"[..]));
    b.ok_with_input(&["produce", "sub"], b"second\n");
    let next = tokio::time::timeout(Duration::from_secs(10), stream.message())
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    assert_eq!(next.records[0].offset, 1);
    assert_eq!(next.next_offset, 2);
    assert!(!next.batches.is_empty(), "the stored batch comes too");
    assert_eq!(next.high_watermark, 2);
}

#[tokio::test]
async fn subscribe_errors_arrive_as_statuses() {
    let b = TestBroker::start();
    b.ok(&["topic", "create", "se"]);
    let mut c = ConsumeClient::new(channel(&b).await);
    let req = |topic: &str, partition: u32, offset: u64| pb::SubscribeRequest {
        topic: topic.into(),
        partition,
        start: Some(pb::OffsetSpec {
            spec: Some(pb::offset_spec::Spec::Offset(offset)),
        }),
        max_bytes: 0,
        decode: false,
    };
    let unknown = c.subscribe(req("nope", 0, 0)).await.unwrap_err();
    assert_eq!(unknown.code(), Code::NotFound, "{unknown:?}");
    assert_eq!(eddy_code(&unknown), "UNKNOWN_TOPIC");
    let partition = c.subscribe(req("se", 3, 0)).await.unwrap_err();
    assert_eq!(partition.code(), Code::OutOfRange, "{partition:?}");
    let offset = c.subscribe(req("se", 0, 9)).await.unwrap_err();
    assert!(offset.message().contains("offset 9"), "{offset:?}");
}

#[tokio::test]
async fn offsets_are_listed_earliest_latest_and_by_timestamp() {
    let b = TestBroker::start();
    b.ok(&["topic", "create", "o"]);
    let mut p = ProduceClient::new(channel(&b).await);
    for ts in [1000i64, 2000, 3000] {
        let mut builder = BatchBuilder::new();
        builder.push(&RecordRef {
            timestamp: Timestamp(ts),
            key: None,
            value: Some(b"v"),
            headers: &[],
        });
        let req = produce_batch(
            "o",
            0,
            Bytes::from(builder.finish().unwrap()),
            pb::Acks::All,
        );
        p.produce(req).await.unwrap();
    }
    let mut c = ConsumeClient::new(channel(&b).await);
    let spec = |s: pb::offset_spec::Spec| pb::ListOffsetsPartition {
        partition: 0,
        spec: Some(pb::OffsetSpec { spec: Some(s) }),
    };
    let req = pb::ListOffsetsRequest {
        topics: vec![pb::ListOffsetsTopic {
            topic: "o".into(),
            partitions: vec![
                spec(pb::offset_spec::Spec::Earliest(true)),
                spec(pb::offset_spec::Spec::Latest(true)),
                spec(pb::offset_spec::Spec::TimestampMs(1500)),
                spec(pb::offset_spec::Spec::TimestampMs(9999)),
                spec(pb::offset_spec::Spec::Offset(7)),
            ],
        }],
    };
    let resp = c.list_offsets(req).await.unwrap().into_inner();
    let parts = &resp.topics[0].partitions;
    let offsets: Vec<u64> = parts.iter().take(4).map(|p| p.offset).collect();
    assert_eq!(
        offsets,
        [0, 3, 1, 3],
        "earliest, latest, first at/after 1500, none newer → latest"
    );
    assert_eq!(
        parts[4].error.as_ref().unwrap().code,
        pb::ErrorCode::OffsetOutOfRange as i32
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_watchers_hear_not_serving_when_the_broker_shuts_down() {
    use tonic_health::pb::health_check_response::ServingStatus;
    let b = tokio::task::spawn_blocking(TestBroker::start)
        .await
        .unwrap();
    let mut health = tonic_health::pb::health_client::HealthClient::new(channel(&b).await);
    let mut watch = health
        .watch(tonic_health::pb::HealthCheckRequest {
            service: "eddy.v1.Produce".into(),
        })
        .await
        .unwrap()
        .into_inner();
    let first = watch.message().await.unwrap().unwrap();
    assert_eq!(first.status, ServingStatus::Serving as i32);
    let stopping = tokio::task::spawn_blocking(move || {
        let mut b = b;
        b.terminate();
    });
    let next = tokio::time::timeout(Duration::from_secs(10), watch.message())
        .await
        .expect("the watcher hears of the shutdown")
        .unwrap()
        .unwrap();
    assert_eq!(next.status, ServingStatus::NotServing as i32);
    drop((watch, health)); // lets the broker's drain finish
    stopping.await.unwrap();
}

#[tokio::test]
async fn health_and_reflection_answer_generic_tools() {
    let b = TestBroker::start();
    let ch = channel(&b).await;
    let mut health = tonic_health::pb::health_client::HealthClient::new(ch.clone());
    let status = health
        .check(tonic_health::pb::HealthCheckRequest {
            service: "eddy.v1.Produce".into(),
        })
        .await
        .unwrap()
        .into_inner()
        .status;
    assert_eq!(
        status,
        tonic_health::pb::health_check_response::ServingStatus::Serving as i32
    );

    use tonic_reflection::pb::v1::{
        ServerReflectionRequest, server_reflection_client::ServerReflectionClient,
        server_reflection_request::MessageRequest, server_reflection_response::MessageResponse,
    };
    let mut reflection = ServerReflectionClient::new(ch);
    let req = ServerReflectionRequest {
        host: String::new(),
        message_request: Some(MessageRequest::ListServices(String::new())),
    };
    let mut responses = reflection
        .server_reflection_info(futures_like::iter(vec![req]))
        .await
        .unwrap()
        .into_inner();
    let Some(MessageResponse::ListServicesResponse(list)) =
        responses.message().await.unwrap().unwrap().message_response
    else {
        panic!("expected a service list");
    };
    let names: Vec<_> = list.service.into_iter().map(|s| s.name).collect();
    for s in [
        "eddy.v1.Admin",
        "eddy.v1.Cluster",
        "eddy.v1.Produce",
        "eddy.v1.Consume",
    ] {
        assert!(names.iter().any(|n| n == s), "{s} in {names:?}");
    }
}
