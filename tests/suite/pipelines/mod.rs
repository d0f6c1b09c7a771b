//! Pipelines end to end: real `eddy serve` (and `eddy worker`) processes,
//! real processors built from `plugins/`, the `eddy` commands to upload and
//! apply, and the Rust client to feed and read topics.

mod faults;
mod hostile;
mod languages;
mod manifests;
mod registry;
mod running;
pub mod stateful;
pub mod workload;

use std::collections::BTreeMap;
use std::future::Future;
use std::time::{Duration, Instant};

use eddy_client::{
    Admin, Client, ClientConfig, Consumer, ConsumerConfig, ConsumerRecord, NewTopic, Pipelines,
    Producer, ProducerConfig, ProducerRecord, Start,
};
use eddy_proto::v1 as pb;

use crate::harness::TestBroker;

/// A broker (with its own worker unless told otherwise) and a client.
pub struct Cluster {
    pub broker: TestBroker,
    pub client: Client,
}

impl Cluster {
    pub async fn start() -> Cluster {
        Cluster::start_with(&[]).await
    }

    pub async fn start_with(extra: &[&str]) -> Cluster {
        let broker = TestBroker::start_with(extra);
        let client = connect(&broker).await;
        Cluster { broker, client }
    }

    /// Connects again (after the broker restarted).
    pub async fn reconnect(&mut self) {
        self.client = connect(&self.broker).await;
    }

    /// `eddy processor upload NAME FILE`; fails the test if refused.
    pub fn upload(&self, name: &str, wasm: &str) -> String {
        self.broker.ok(&["processor", "upload", name, wasm])
    }

    /// `eddy pipeline apply -f -` with `yaml`; fails the test if refused.
    pub fn apply(&self, yaml: &str) -> String {
        self.broker
            .ok_with_input(&["pipeline", "apply", "-f", "-"], yaml.as_bytes())
    }

    /// `eddy pipeline apply` expected to be refused: its stderr.
    pub fn apply_refused(&self, yaml: &str) -> String {
        let out = self
            .broker
            .eddy_with_input(&["pipeline", "apply", "-f", "-"], yaml.as_bytes());
        assert!(!out.success, "apply was expected to fail:\n{}", out.stdout);
        out.stderr
    }

    pub async fn create_topic(&self, name: &str, partitions: u32) {
        Admin::new(self.client.clone())
            .create_topic(NewTopic {
                name: name.into(),
                partitions,
                ..NewTopic::default()
            })
            .await
            .unwrap();
    }

    /// Produces (key, value) records, idempotent with acks=all.
    pub async fn produce(&self, topic: &str, records: &[(Option<String>, String)]) {
        let stamped: Vec<_> = records
            .iter()
            .map(|(k, v)| (k.clone(), v.clone(), None))
            .collect();
        self.produce_at(topic, &stamped).await;
    }

    /// [`Cluster::produce`] with a timestamp per record (`None`: the
    /// producer's clock).
    pub async fn produce_at(&self, topic: &str, records: &[(Option<String>, String, Option<i64>)]) {
        let producer = Producer::new(self.client.clone(), ProducerConfig::default());
        for (key, value, timestamp_ms) in records {
            let record = ProducerRecord {
                key: key.clone().map(Into::into),
                value: Some(value.clone().into()),
                timestamp_ms: *timestamp_ms,
                ..ProducerRecord::default()
            };
            producer.send(topic, record).await.unwrap();
        }
        producer.flush().await.unwrap();
    }

    /// Every record of `topic` up to its high watermark.
    pub async fn read_all(&self, topic: &str) -> Vec<ConsumerRecord> {
        read_all(&self.client, topic).await
    }

    pub async fn describe(&self, pipeline: &str) -> pb::PipelineDescription {
        Pipelines::new(self.client.clone())
            .describe(pipeline)
            .await
            .unwrap()
    }

    /// Waits until the pipeline has taken at least `records_in` records
    /// and has no lag.
    pub async fn caught_up(&self, pipeline: &str, records_in: u64) -> pb::PipelineDescription {
        wait_for(
            &format!("{pipeline} to process {records_in} records"),
            || async {
                let d = self.describe(pipeline).await;
                let counters = d.counters.clone().unwrap_or_default();
                let lag = d.summary.as_ref().map_or(u64::MAX, |s| s.lag);
                (lag == 0 && counters.records_in >= records_in).then_some(d)
            },
        )
        .await
    }

    /// Pauses `pipeline` and waits until no worker owns its partitions;
    /// returns what `eddy pipeline pause` printed.
    pub async fn pause(&self, pipeline: &str) -> String {
        let paused = self.broker.ok(&["pipeline", "pause", pipeline]);
        wait_for("the workers to leave", || async {
            let d = self.describe(pipeline).await;
            d.partitions
                .iter()
                .all(|p| p.owner.is_empty())
                .then_some(())
        })
        .await;
        paused
    }

    /// Waits until the pipeline is in `state`.
    pub async fn in_state(
        &self,
        pipeline: &str,
        state: pb::PipelineState,
    ) -> pb::PipelineDescription {
        wait_for(&format!("{pipeline} to be {state:?}"), || async {
            let d = self.describe(pipeline).await;
            (d.summary.as_ref().map(|s| s.state) == Some(state as i32)).then_some(d)
        })
        .await
    }
}

/// Every record of `topic` up to its high watermark.
/// On a cluster, once it has settled: every replica in sync, each
/// partition's high watermark at its log end, and the same figures 200 ms
/// apart (a follower's figures can lag), so nothing written is
/// left out.
pub async fn read_all(client: &Client, topic: &str) -> Vec<ConsumerRecord> {
    let admin = Admin::new(client.clone());
    let deadline = Instant::now() + WAIT;
    let mut previous: Option<Vec<u64>> = None;
    let described = loop {
        assert!(Instant::now() < deadline, "{topic} did not settle");
        let Ok(d) = admin.describe_topic(topic).await else {
            tokio::time::sleep(Duration::from_millis(200)).await;
            continue;
        };
        let settled = d
            .partitions
            .iter()
            .all(|p| p.high_watermark == p.log_end_offset && p.isr.len() == p.replicas.len());
        let now: Vec<u64> = d.partitions.iter().map(|p| p.high_watermark).collect();
        if settled && previous.as_ref() == Some(&now) {
            break d;
        }
        previous = settled.then_some(now);
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    let end: u64 = described.partitions.iter().map(|p| p.high_watermark).sum();
    let mut consumer = Consumer::new(client.clone(), ConsumerConfig::default());
    for p in &described.partitions {
        consumer
            .assign(topic, p.partition, Start::Earliest)
            .await
            .unwrap();
    }
    let mut out = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(30);
    while (out.len() as u64) < end {
        assert!(
            Instant::now() < deadline,
            "read {} of {end} records of {topic}",
            out.len()
        );
        for f in consumer.poll(Duration::from_millis(200)).await.unwrap() {
            out.extend(f.records().unwrap());
        }
    }
    out
}

async fn connect(b: &TestBroker) -> Client {
    Client::connect(ClientConfig::new(b.addr.clone()))
        .await
        .unwrap()
}

/// How long a pipeline test waits for something to happen.
pub const WAIT: Duration = Duration::from_secs(60);

/// Polls `f` every 100 ms until it gives `Some`, failing the test after [`WAIT`].
pub async fn wait_for<T, F, Fut>(what: &str, mut f: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let deadline = Instant::now() + WAIT;
    loop {
        if let Some(v) = f().await {
            return v;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// A pipeline manifest: `spec` lines after the required ones are `extra`
/// (indented two spaces, as under `spec:`).
pub fn manifest(
    name: &str,
    processor: &str,
    inputs: &[&str],
    outputs: &[&str],
    delivery: &str,
    extra: &str,
) -> String {
    let outputs: String = outputs
        .iter()
        .map(|o| format!("    - topic: {o}\n      partitions: 3\n"))
        .collect();
    format!(
        "apiVersion: eddy/v1\nkind: Pipeline\nmetadata:\n  name: {name}\nspec:\n  input:\n    topics: [{}]\n  processor:\n    name: {processor}\n  outputs:\n{outputs}  delivery: {delivery}\n  batch: {{ maxRecords: 64, maxWaitMs: 5 }}\n{extra}",
        inputs.join(", ")
    )
}

/// `n` records with keys `k<i % keys>` and JSON values numbering them.
pub fn numbered(n: usize, keys: usize) -> Vec<(Option<String>, String)> {
    (0..n)
        .map(|i| {
            let key = format!("k{}", i % keys);
            let value = format!(
                "{{\"n\":{i},\"key\":\"{key}\",\"region\":\"{}\"}}",
                ["north", "south", "east"][i % 3]
            );
            (Some(key), value)
        })
        .collect()
}

/// Values per key, in the order read (offset order within a partition,
/// and a key lives in one partition).
pub fn by_key(records: &[ConsumerRecord]) -> BTreeMap<String, Vec<String>> {
    let mut sorted: Vec<&ConsumerRecord> = records.iter().collect();
    sorted.sort_by_key(|r| (r.partition, r.offset));
    let mut out: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for r in sorted {
        let key = String::from_utf8_lossy(r.key.as_deref().unwrap_or_default()).into_owned();
        let value = String::from_utf8_lossy(r.value.as_deref().unwrap_or_default()).into_owned();
        out.entry(key).or_default().push(value);
    }
    out
}
