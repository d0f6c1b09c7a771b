//! The Rust client against a real broker that goes away and comes back.

use std::time::Duration;

use bytes::Bytes;
use eddy_client::{
    Acks, Admin, Client, ClientConfig, Consumer, ConsumerConfig, GroupConfig, Producer,
    ProducerConfig, ProducerRecord, Start,
};

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
