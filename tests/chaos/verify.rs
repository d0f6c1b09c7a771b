//! After the faults: read everything back, from the brokers and from each
//! replica's files, and run every checker.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use eddy_client::{Client, Consumer, ConsumerConfig, Start};
use eddy_tests::check::{self, Partitions, Read, Verdict};
use eddy_tests::cluster::TestCluster;

use crate::faults::Injected;
use crate::workload::Observed;
use crate::{TOPIC, pipelines};

/// Resident memory a debug-build broker may reach in these runs, and how
/// much more it may peak at late in a run than early on.
const MEMORY_LIMIT: u64 = 1 << 30;
const MEMORY_GROWTH: u64 = 256 << 20;

pub fn check(
    cluster: &TestCluster,
    rt: &tokio::runtime::Runtime,
    observed: &Observed,
    injected: &Injected,
) -> Vec<Verdict> {
    let rows = cluster.await_in_sync(TOPIC, Duration::from_secs(60));
    let high_watermarks: BTreeMap<u32, u64> = rows
        .iter()
        .map(|r| (r.partition, r.high_watermark))
        .collect();
    let read = rt.block_on(read_all(cluster.bootstrap(), TOPIC, &high_watermarks));
    let replicas = cluster.replicas(TOPIC, &rows);
    let mut verdicts = vec![
        recovered(injected),
        deployed(injected),
        check::acknowledged_readable(&observed.acked, &read),
        check::no_duplicates(&read),
        check::order_per_partition(&read, sequence),
        check::replicas_agree(&replicas, &high_watermarks),
        check::commits_never_regress(&observed.committed),
        check::one_owner_per_generation(&observed.claims),
    ];
    verdicts.extend(pipelines(cluster, rt));
    for (broker, samples) in &injected.memory {
        let mut v = check::memory_bounded(samples, MEMORY_LIMIT, MEMORY_GROWTH);
        let peak = samples.iter().max().copied().unwrap_or(0);
        v.name = format!("broker {broker} memory bounded (peak {} MiB)", peak >> 20);
        verdicts.push(v);
    }
    verdicts
}

/// Waits for both pipelines to take the whole input, then compares their
/// outputs with the processor applied to it.
fn pipelines(cluster: &TestCluster, rt: &tokio::runtime::Runtime) -> Vec<Verdict> {
    let hws = |topic: &str| -> BTreeMap<u32, u64> {
        cluster
            .await_in_sync(topic, Duration::from_secs(60))
            .iter()
            .map(|r| (r.partition, r.high_watermark))
            .collect()
    };
    let input_hws = hws(pipelines::INPUT);
    let bootstrap = cluster.bootstrap();
    let caught_up = rt.block_on(async {
        let client = Client::connect(eddy_tests::secured::client_config(bootstrap.clone()))
            .await
            .expect("the cluster answers");
        pipelines::await_caught_up(&client, input_hws.values().sum()).await
    });
    let mut v = Verdict::new("pipelines take the whole input");
    v.checked = pipelines::PIPELINES.len() as u64;
    if let Err(behind) = caught_up {
        v.fail(|| format!("within 120 s: {behind}"));
    }
    let input = rt.block_on(read_all(bootstrap.clone(), pipelines::INPUT, &input_hws));
    let mut outputs = BTreeMap::new();
    for (_, _, output) in pipelines::PIPELINES {
        let hw = hws(output);
        outputs.insert(
            output,
            rt.block_on(read_all(bootstrap.clone(), output, &hw)),
        );
    }
    let mut verdicts = vec![v];
    verdicts.extend(pipelines::verdicts(&input, &outputs));
    verdicts
}

/// Whether the cluster came back in sync after every fault.
fn recovered(injected: &Injected) -> Verdict {
    let mut v = Verdict::new("in sync again after each fault");
    v.checked = injected.by_kind.values().sum();
    for what in &injected.unrecovered {
        v.fail(|| what.clone());
    }
    v
}

fn deployed(injected: &Injected) -> Verdict {
    let mut v = Verdict::new("processor uploaded and pipelines applied during faults");
    v.checked = 1 + pipelines::PIPELINES.len() as u64;
    if let Err(e) = &injected.deploy {
        v.fail(|| e.clone());
    }
    v
}

/// (producer, number) from a value `p<producer>-<number>`.
fn sequence(value: &[u8]) -> Option<(u64, u64)> {
    let s = std::str::from_utf8(value).ok()?;
    let (p, n) = s.strip_prefix('p')?.split_once('-')?;
    Some((p.parse().ok()?, n.parse().ok()?))
}

/// Every record of every partition below its high watermark.
pub(crate) async fn read_all(
    bootstrap: String,
    topic: &str,
    high_watermarks: &BTreeMap<u32, u64>,
) -> Partitions {
    let client = Client::connect(eddy_tests::secured::client_config(bootstrap))
        .await
        .expect("the cluster answers");
    let mut consumer = Consumer::new(client, ConsumerConfig::default());
    let mut read: Partitions = BTreeMap::new();
    for &p in high_watermarks.keys() {
        consumer
            .assign(topic, p, Start::Earliest)
            .await
            .expect("partition assignable");
        read.insert(p, Vec::new());
    }
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let done = high_watermarks
            .iter()
            .all(|(&p, &hw)| consumer.position(topic, p).unwrap_or(0) >= hw);
        if done {
            return read;
        }
        assert!(
            Instant::now() < deadline,
            "could not read every partition up to its high watermark {high_watermarks:?} within 60 s"
        );
        let fetched = match consumer.poll(Duration::from_millis(500)).await {
            Ok(f) => f,
            Err(e) => {
                eprintln!("chaos: reading back: {e}; retrying");
                tokio::time::sleep(Duration::from_millis(200)).await;
                continue;
            }
        };
        for f in fetched {
            for r in f.records().expect("records decode") {
                read.entry(r.partition).or_default().push(Read {
                    offset: r.offset,
                    key: r.key.map(|k| k.to_vec()),
                    value: r.value.map(|v| v.to_vec()).unwrap_or_default(),
                });
            }
        }
    }
}
