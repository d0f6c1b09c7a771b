//! A Kafka client in the run: an idempotent librdkafka producer
//! (confluent-kafka, acks=all) writes to its own topic through the
//! brokers' Kafka listeners while the faults go on. Afterwards every
//! record it was told is written must be readable, once.

use std::collections::BTreeMap;
use std::process::{Child, Stdio};
use std::time::Duration;

use eddy_tests::check::{self, Acked, Verdict};
use eddy_tests::cluster::TestCluster;

/// The Kafka producer's topic (three replicas, `min.insync.replicas=2`).
pub const TOPIC: &str = "chaos-kafka";
/// Records it sends per second of faults (its pace: 50 every 20 ms, less
/// while brokers stall).
const RATE: u64 = 2000;
/// How long it may take, beyond the faults, to have every record answered.
const DRAIN_S: u64 = 240;

pub struct KafkaProducer {
    child: Child,
    /// Its stderr (librdkafka's log): a file, so that a long run of
    /// complaints cannot fill a pipe and stall it.
    log: tempfile::NamedTempFile,
}

/// Starts the producer for `length` of faults.
pub fn start(cluster: &TestCluster, length: Duration) -> KafkaProducer {
    cluster.create_replicated(TOPIC, 3);
    let count = (length.as_secs() * RATE) as usize;
    let log = tempfile::NamedTempFile::new().expect("a temporary file");
    let stderr = log.reopen().expect("the temporary file reopens");
    let child = eddy_tests::kafka::scenario_command(
        "failover-produce",
        &cluster.kafka_bootstrap(),
        TOPIC,
        count,
        length.as_secs() + DRAIN_S,
    )
    .stdout(Stdio::piped())
    .stderr(Stdio::from(stderr))
    .spawn()
    .expect("python3 runs the Kafka producer");
    KafkaProducer { child, log }
}

/// Waits for the producer to finish, reads its topic back and judges.
pub fn check(
    producer: KafkaProducer,
    cluster: &TestCluster,
    rt: &tokio::runtime::Runtime,
) -> Vec<Verdict> {
    let KafkaProducer { child, log } = producer;
    let producer_log = log;
    let out = child.wait_with_output().expect("the Kafka producer ran");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let report: Option<serde_json::Value> = stdout
        .lines()
        .last()
        .and_then(|l| serde_json::from_str(l).ok());
    let mut finished = Verdict::new("Kafka producer finished, nothing unsent");
    finished.checked = 1;
    let Some(report) = report.filter(|_| out.status.success()) else {
        let log = std::fs::read_to_string(producer_log.path()).unwrap_or_default();
        finished.fail(|| {
            format!(
                "it failed ({}): {}",
                out.status,
                log.lines().last().unwrap_or_default()
            )
        });
        return vec![finished];
    };
    if report["unflushed"] != 0 {
        finished.fail(|| format!("{} records never answered", report["unflushed"]));
    }
    let acked: Vec<Acked> = report["acked"]
        .as_array()
        .map(|a| {
            a.iter()
                .map(|r| Acked {
                    partition: r[0].as_u64().unwrap_or(u64::MAX) as u32,
                    value: r[1].as_str().unwrap_or_default().as_bytes().to_vec(),
                })
                .collect()
        })
        .unwrap_or_default();
    let rows = cluster.await_in_sync(TOPIC, Duration::from_secs(60));
    let high_watermarks: BTreeMap<u32, u64> = rows
        .iter()
        .map(|r| (r.partition, r.high_watermark))
        .collect();
    let read = rt.block_on(crate::verify::read_all(
        cluster.bootstrap(),
        TOPIC,
        &high_watermarks,
    ));
    let mut readable = check::acknowledged_readable(&acked, &read);
    readable.name = format!(
        "Kafka: acknowledged readable ({} failed sends)",
        report["failures"]
    );
    let mut once = check::no_duplicates(&read);
    once.name = "Kafka: no duplicates".into();
    vec![finished, readable, once]
}
