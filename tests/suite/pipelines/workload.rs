//! The delivery-guarantee workload shared by the fault tests of one
//! broker and of a cluster: numbered JSON records fed through a
//! transform pipeline (`shape`, keeping the fields `n` and `key`), and the
//! checks that its output is exactly the transform of the input.

use std::collections::BTreeMap;
use std::time::Duration;

use eddy_client::{Client, Producer, ProducerConfig, ProducerRecord};
use tokio::task::JoinHandle;

use super::{by_key, manifest, read_all};

/// Keys of the input records.
const KEYS: usize = 97;
/// Records the feeder sends between pauses.
const FEED_CHUNK: usize = 2000;

/// Input record `n`: key `k<n % KEYS>`, a JSON value numbering it.
pub fn input(n: usize) -> (String, String) {
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

/// The `shape` pipeline from `in` to `out` with `delivery`; `outputs`
/// adds settings under the output topic (indented six spaces).
pub fn shape_manifest(delivery: &str, output: &str) -> String {
    manifest("shape", "shape", &["in"], &["out"], delivery, "")
        .replace(
            "    name: shape\n",
            "    name: shape\n    params: { fields: \"n,key\" }\n",
        )
        .replace(
            "maxRecords: 64, maxWaitMs: 5",
            "maxRecords: 256, maxWaitMs: 5",
        )
        .replace(
            "      partitions: 3\n",
            &format!("      partitions: 3\n{output}"),
        )
}

/// Feeds input records `0..records` to `in` in the background, paced so
/// that faults land while records flow; idempotent with acks=all, so it
/// rides through broker restarts and leader changes.
pub fn feed(client: &Client, records: usize) -> JoinHandle<()> {
    let producer = Producer::new(client.clone(), ProducerConfig::default());
    tokio::spawn(async move {
        for chunk in (0..records).collect::<Vec<_>>().chunks(FEED_CHUNK) {
            for &n in chunk {
                let (k, v) = input(n);
                producer
                    .send("in", ProducerRecord::key_value(k, v))
                    .await
                    .unwrap();
            }
            producer.flush().await.unwrap();
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
    })
}

/// Output values per key, and how many outputs each input got.
pub async fn outputs(client: &Client) -> (BTreeMap<String, Vec<String>>, BTreeMap<usize, usize>) {
    numbered_in(client, "out").await
}

/// Values per key of `topic`, and how many times each record number is in it.
async fn numbered_in(
    client: &Client,
    topic: &str,
) -> (BTreeMap<String, Vec<String>>, BTreeMap<usize, usize>) {
    let out = read_all(client, topic).await;
    let mut per_input = BTreeMap::new();
    for r in &out {
        let v: serde_json::Value = serde_json::from_slice(r.value.as_deref().unwrap()).unwrap();
        *per_input
            .entry(v["n"].as_u64().unwrap() as usize)
            .or_insert(0) += 1;
    }
    (by_key(&out), per_input)
}

/// Inputs `0..records` that got no output, and those that got more than one.
pub fn lost_and_doubled(records: usize, per_input: &BTreeMap<usize, usize>) -> (usize, usize) {
    let lost = (0..records).filter(|n| !per_input.contains_key(n)).count();
    let doubled = per_input.values().filter(|&&k| k > 1).count();
    (lost, doubled)
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

fn expected_by_key(records: usize) -> BTreeMap<String, Vec<String>> {
    let mut by_key: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for n in 0..records {
        by_key
            .entry(input(n).0)
            .or_default()
            .push(expected_output(n));
    }
    by_key
}

/// Checks that `out` is exactly the transform of inputs `0..records`:
/// none lost, none twice, and per key the same content in the same order.
pub async fn assert_exactly_once(client: &Client, records: usize, what: &str, seed: u64) {
    let (got, per_input) = outputs(client).await;
    let (lost, doubled) = lost_and_doubled(records, &per_input);
    let expected = expected_by_key(records);
    eprintln!(
        "{what}: {} outputs, {lost} lost, {doubled} duplicated, content checksum {:08x} (expected {:08x})",
        per_input.values().sum::<usize>(),
        checksum(&got),
        checksum(&expected)
    );
    if (lost, doubled) != (0, 0) {
        // Where the first and last duplicates are, to tell a replayed
        // stretch of input from a stray retry.
        let out = read_all(client, "out").await;
        let mut at: BTreeMap<usize, Vec<(u32, u64)>> = BTreeMap::new();
        for r in &out {
            let v: serde_json::Value = serde_json::from_slice(r.value.as_deref().unwrap()).unwrap();
            let n = v["n"].as_u64().unwrap() as usize;
            at.entry(n).or_default().push((r.partition, r.offset));
        }
        let mut twice: Vec<_> = at.iter().filter(|(_, v)| v.len() > 1).collect();
        twice.sort_by_key(|(_, v)| v[1]);
        let ends = [
            &twice[..twice.len().min(3)],
            &twice[twice.len().saturating_sub(3)..],
        ];
        eprintln!(
            "{what}: duplicated inputs with their (partition, offset)s in the output, first and last: {ends:?}"
        );
        // Whether the input itself was written twice tells the producer's
        // fault from the pipeline's.
        let (_, inputs) = numbered_in(client, "in").await;
        let (missing, twice) = lost_and_doubled(records, &inputs);
        eprintln!(
            "{what}: the input holds {} records, {missing} missing, {twice} twice",
            inputs.values().sum::<usize>()
        );
    }
    assert_eq!((lost, doubled), (0, 0), "seed {seed}");
    assert!(
        got == expected,
        "per-key content and order differ (seed {seed})"
    );
}

/// Input records the `shape` pipeline has committed, over every
/// partition (0 while no broker answers).
pub async fn committed(client: &Client) -> u64 {
    match eddy_client::Pipelines::new(client.clone())
        .describe("shape")
        .await
    {
        Ok(d) => d.partitions.iter().filter_map(|p| p.committed).sum(),
        Err(_) => 0,
    }
}

/// Feeds `records` input records while the broker is killed (`kill -9`)
/// `kills` times at seeded points `from_ms..to_ms` apart and started
/// again, then waits until the `shape` pipeline has caught up and
/// committed every partition.
pub async fn feed_through_broker_kills(
    c: &mut super::Cluster,
    rng: &mut eddy_tests::rng::Rng,
    records: usize,
    kills: usize,
    (from_ms, to_ms): (u64, u64),
) {
    let feeding = feed(&c.client, records);
    for _ in 0..kills {
        tokio::time::sleep(rng.millis(from_ms, to_ms)).await;
        let at = committed(&c.client).await;
        c.broker.kill9();
        eprintln!("killed the broker with {at} of {records} records committed");
        tokio::time::sleep(rng.millis(50, 500)).await;
        tokio::task::block_in_place(|| c.broker.start_again());
    }
    feeding.await.unwrap();
    c.reconnect().await;
    super::wait_for(
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
}
