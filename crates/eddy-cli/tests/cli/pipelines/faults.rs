//! Delivery guarantees under `kill -9`: 100,000 records through a
//! pipeline while its worker (or its broker) is killed at seeded random
//! points and restarted. Exactly-once must give exactly the processor
//! applied to the input: count, content and per-key order; at-least-once
//! must lose nothing. Each test prints its seed; `EDDY_TEST_SEED=S`
//! replays one.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use eddy_client::{Producer, ProducerConfig, ProducerRecord};
use eddy_test_plugins as wasm;
use tokio::task::JoinHandle;

use super::{Cluster, TestWorker, by_key, manifest, wait_for};

const RECORDS: usize = 100_000;
const KEYS: usize = 97;
/// How many times the worker or broker is killed in a run.
const KILLS: usize = 6;

/// A small seeded generator, so a failing run can be replayed.
struct Rng(u64);

impl Rng {
    fn from_env(test: &str) -> Rng {
        let seed = std::env::var("EDDY_TEST_SEED")
            .ok()
            .and_then(|s| s.parse().ok())
            .unwrap_or_else(|| {
                std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .unwrap()
                    .as_nanos() as u64
            });
        eprintln!("{test}: seed {seed} (replay with EDDY_TEST_SEED={seed})");
        Rng(seed | 1)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0 % n
    }

    fn millis(&mut self, from: u64, to: u64) -> Duration {
        Duration::from_millis(from + self.below(to - from))
    }
}

/// Input record `n`: key `k<n % KEYS>`, a JSON value numbering it.
fn input(n: usize) -> (String, String) {
    let key = format!("k{}", n % KEYS);
    let value = format!(
        "{{\"n\":{n},\"key\":\"{key}\",\"pad\":\"{}\"}}",
        "x".repeat(40)
    );
    (key, value)
}

/// What the transform (`fields: n,key`) makes of input `n`.
fn expected_output(n: usize) -> String {
    let (key, _) = input(n);
    format!("{{\"n\":{n},\"key\":\"{key}\"}}")
}

/// Feeds every input record in the background, through broker restarts.
fn feed(c: &Cluster, done: Arc<AtomicBool>) -> JoinHandle<()> {
    let producer = Producer::new(c.client.clone(), ProducerConfig::default());
    tokio::spawn(async move {
        for chunk in (0..RECORDS).collect::<Vec<_>>().chunks(2000) {
            for &n in chunk {
                let (k, v) = input(n);
                producer
                    .send("in", ProducerRecord::key_value(k, v))
                    .await
                    .unwrap();
            }
            producer.flush().await.unwrap();
            // Paced, so that the kills land while records flow.
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
        done.store(true, Ordering::Release);
    })
}

/// A broker and a transform pipeline reading `in` (4 partitions).
async fn setup(delivery: &str, broker_args: &[&str]) -> Cluster {
    let c = Cluster::start_with(broker_args).await;
    c.create_topic("in", 4).await;
    c.upload("shape", wasm::TRANSFORM);
    let yaml = manifest("shape", "shape", &["in"], &["out"], delivery, "")
        .replace(
            "    name: shape\n",
            "    name: shape\n    params: { fields: \"n,key\" }\n",
        )
        .replace(
            "maxRecords: 64, maxWaitMs: 5",
            "maxRecords: 256, maxWaitMs: 5",
        );
    c.apply(&yaml);
    c
}

/// Output values per key, and how many outputs each input got.
async fn outputs(c: &Cluster) -> (BTreeMap<String, Vec<String>>, BTreeMap<usize, usize>) {
    let out = c.read_all("out").await;
    let mut per_input = BTreeMap::new();
    for r in &out {
        let v: serde_json::Value = serde_json::from_slice(r.value.as_deref().unwrap()).unwrap();
        *per_input
            .entry(v["n"].as_u64().unwrap() as usize)
            .or_insert(0) += 1;
    }
    (by_key(&out), per_input)
}

/// CRC-32C of every key's values in order, keys in order.
fn checksum(by_key: &BTreeMap<String, Vec<String>>) -> u32 {
    let mut crc = 0;
    for (key, values) in by_key {
        crc = crc32c::crc32c_append(crc, key.as_bytes());
        for v in values {
            crc = crc32c::crc32c_append(crc, v.as_bytes());
        }
    }
    crc
}

fn expected_by_key() -> BTreeMap<String, Vec<String>> {
    let mut by_key: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for n in 0..RECORDS {
        by_key
            .entry(input(n).0)
            .or_default()
            .push(expected_output(n));
    }
    by_key
}

/// Input records the pipeline has committed, over every partition.
async fn committed(c: &Cluster) -> u64 {
    match eddy_client::Pipelines::new(c.client.clone())
        .describe("shape")
        .await
    {
        Ok(d) => d.partitions.iter().filter_map(|p| p.committed).sum(),
        Err(_) => 0,
    }
}

/// Kills the standalone worker `KILLS` times while records flow, and
/// prints how far the pipeline was at each kill (a kill of an idle
/// pipeline would prove little).
async fn kill_workers(rng: &mut Rng, c: &Cluster, worker: &mut TestWorker) {
    for _ in 0..KILLS {
        tokio::time::sleep(rng.millis(1000, 2500)).await;
        let at = committed(c).await;
        worker.kill9();
        eprintln!("killed the worker with {at} of {RECORDS} records committed");
        tokio::time::sleep(rng.millis(50, 700)).await;
        tokio::task::block_in_place(|| worker.start_again());
    }
}

/// Checks that the output is exactly the transform of every input record.
async fn assert_exactly_once(c: &Cluster, what: &str, seed: u64) {
    let (got, per_input) = outputs(c).await;
    let lost = (0..RECORDS).filter(|n| !per_input.contains_key(n)).count();
    let doubled = per_input.values().filter(|&&k| k > 1).count();
    let expected = expected_by_key();
    eprintln!(
        "{what}: {} outputs, {lost} lost, {doubled} duplicated, content checksum {:08x} (expected {:08x})",
        per_input.values().sum::<usize>(),
        checksum(&got),
        checksum(&expected)
    );
    assert_eq!((lost, doubled), (0, 0), "seed {seed}");
    assert!(
        got == expected,
        "per-key content and order differ (seed {seed})"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exactly_once_survives_workers_killed_and_paused_at_random_points() {
    let mut rng = Rng::from_env("exactly_once_survives_workers_killed_and_paused_at_random_points");
    let c = setup("exactly-once", &["--no-worker"]).await;
    let mut workers = [
        TestWorker::start(&c.broker, "w1"),
        TestWorker::start(&c.broker, "w2"),
    ];
    let done = Arc::new(AtomicBool::new(false));
    let feeding = feed(&c, done.clone());
    for _ in 0..KILLS {
        tokio::time::sleep(rng.millis(1000, 2500)).await;
        let at = committed(&c).await;
        let w = &mut workers[rng.below(2) as usize];
        if rng.below(2) == 0 {
            w.kill9();
            eprintln!("killed a worker with {at} of {RECORDS} records committed");
            tokio::time::sleep(rng.millis(50, 700)).await;
            tokio::task::block_in_place(|| w.start_again());
        } else {
            // Past its session timeout (1.5 s) its partitions move; when it
            // wakes it still holds batches it had started, and must not
            // write them twice.
            w.pause();
            eprintln!("paused a worker with {at} of {RECORDS} records committed");
            tokio::time::sleep(rng.millis(2000, 4000)).await;
            w.unpause();
        }
    }
    feeding.await.unwrap();
    c.caught_up("shape", 0).await;
    assert_exactly_once(&c, "exactly-once, two workers", rng.0).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exactly_once_survives_a_worker_killed_at_random_points() {
    let mut rng = Rng::from_env("exactly_once_survives_a_worker_killed_at_random_points");
    let c = setup("exactly-once", &["--no-worker"]).await;
    let mut worker = TestWorker::start(&c.broker, "w1");
    let done = Arc::new(AtomicBool::new(false));
    let feeding = feed(&c, done.clone());
    kill_workers(&mut rng, &c, &mut worker).await;
    feeding.await.unwrap();
    c.caught_up("shape", 0).await;
    assert_exactly_once(&c, "exactly-once", rng.0).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exactly_once_survives_its_broker_killed_at_random_points() {
    let mut rng = Rng::from_env("exactly_once_survives_its_broker_killed_at_random_points");
    let mut c = setup("exactly-once", &[]).await;
    let done = Arc::new(AtomicBool::new(false));
    let feeding = feed(&c, done.clone());
    for _ in 0..KILLS {
        tokio::time::sleep(rng.millis(1000, 2500)).await;
        let at = committed(&c).await;
        c.broker.kill9();
        eprintln!("killed the broker with {at} of {RECORDS} records committed");
        tokio::time::sleep(rng.millis(50, 500)).await;
        tokio::task::block_in_place(|| c.broker.start_again());
    }
    feeding.await.unwrap();
    c.reconnect().await;
    wait_for(
        "the pipeline to catch up after the last restart",
        || async {
            let d = eddy_client::Pipelines::new(c.client.clone())
                .describe("shape")
                .await
                .ok()?;
            (d.summary?.lag == 0 && d.partitions.iter().all(|p| p.committed.is_some()))
                .then_some(())
        },
    )
    .await;
    assert_exactly_once(&c, "exactly-once, broker killed", rng.0).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn at_least_once_loses_nothing_when_its_worker_is_killed() {
    let mut rng = Rng::from_env("at_least_once_loses_nothing_when_its_worker_is_killed");
    let c = setup("at-least-once", &["--no-worker"]).await;
    let mut worker = TestWorker::start(&c.broker, "w1");
    let done = Arc::new(AtomicBool::new(false));
    let feeding = feed(&c, done.clone());
    kill_workers(&mut rng, &c, &mut worker).await;
    feeding.await.unwrap();
    c.caught_up("shape", 0).await;
    let (_, per_input) = outputs(&c).await;
    let lost = (0..RECORDS).filter(|n| !per_input.contains_key(n)).count();
    let extra: usize = per_input.values().map(|k| k - 1).sum();
    eprintln!("at-least-once: {lost} lost, {extra} duplicates (allowed)");
    assert_eq!(lost, 0, "seed {}", rng.0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn at_most_once_never_repeats_an_output_when_its_worker_is_killed() {
    let mut rng = Rng::from_env("at_most_once_never_repeats_an_output_when_its_worker_is_killed");
    let c = setup("at-most-once", &["--no-worker"]).await;
    let mut worker = TestWorker::start(&c.broker, "w1");
    let done = Arc::new(AtomicBool::new(false));
    let feeding = feed(&c, done.clone());
    kill_workers(&mut rng, &c, &mut worker).await;
    feeding.await.unwrap();
    c.caught_up("shape", 0).await;
    let (_, per_input) = outputs(&c).await;
    let lost = (0..RECORDS).filter(|n| !per_input.contains_key(n)).count();
    let doubled = per_input.values().filter(|&&k| k > 1).count();
    eprintln!("at-most-once: {lost} lost (allowed), {doubled} duplicated");
    assert_eq!(doubled, 0, "seed {}", rng.0);
}
