//! `eddy bench state`: what keyed state costs a pipeline.
//!
//! A keyed backlog (records cycling over `--keys` keys) is drained by two
//! exactly-once pipelines, timed from the first commit to no lag: the
//! stateless pass-through and `running-count`, which reads and writes one
//! key per record and writes one changelog record per record. Then the
//! stateful pipeline is paused and resumed, and its tasks restore every
//! key from the changelog: the restore time is what the tasks report
//! (changelog read and applied, not the group join). Last, the window
//! close latency: with `window-count` on 1-second windows, a record that
//! moves the watermark past a window's end is sent, and timed to the
//! window's count being read from the output.

use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use bytes::Bytes;
use clap::Args;
use eddy_client::{
    Admin, Client, Consumer, ConsumerConfig, Pipelines, Processors, Producer, ProducerConfig,
    ProducerRecord, Start,
};
use hdrhistogram::Histogram;

use super::pipeline::{PipelineArgs, Spec, create, drain};
use super::{histogram, latency, throughput};
use crate::out::outln;

#[derive(Debug, Clone, Args)]
pub struct StateArgs {
    /// Records in the backlog.
    #[arg(long, default_value_t = 2_000_000)]
    records: u64,
    /// Distinct keys the records cycle over.
    #[arg(long, default_value_t = 1_000_000)]
    keys: u64,
    /// Bytes per record value.
    #[arg(long, default_value_t = 100)]
    record_size: usize,
    /// Partitions of the input topic.
    #[arg(long, default_value_t = 4)]
    partitions: u32,
    /// Records per processor call.
    #[arg(long, default_value_t = 1024)]
    max_records: u32,
    /// Drain the stateful pipeline first (alternate it between runs).
    #[arg(long)]
    stateful_first: bool,
    /// Windows to close for the latency figure (0 skips it).
    #[arg(long, default_value_t = 200)]
    windows: u64,
    /// After the first restore, wait up to this long for the broker to
    /// compact the changelog (run it with a short
    /// --retention-check-interval-ms) and time a restore again (0 skips).
    #[arg(long, default_value_t = 0)]
    compaction_wait_secs: u64,
}

/// Longest a restore may take.
const RESTORE_TIMEOUT: Duration = Duration::from_secs(600);

pub async fn run(client: &Client, args: &StateArgs) -> anyhow::Result<()> {
    let run = format!("bench-{}", std::process::id());
    let processors = Processors::new(client.clone());
    let passthrough = format!("{run}-passthrough");
    let count = format!("{run}-count");
    for (name, wasm) in [
        (&passthrough, eddy_test_plugins::PASSTHROUGH_WASM),
        (&count, eddy_test_plugins::RUNNING_COUNT_WASM),
    ] {
        processors
            .upload(name, Bytes::from_static(wasm), |_| {})
            .await
            .with_context(|| format!("uploading {name}"))?;
    }
    let input = format!("{run}-in");
    create(client, &input, args.partitions).await?;
    outln!(
        "state bench: {} records of {} bytes over {} keys in {} partitions, exactly-once, batch {}",
        args.records,
        args.record_size,
        args.keys,
        args.partitions,
        args.max_records
    );
    fill(client, &input, args).await?;
    let as_pipeline = PipelineArgs::for_state(args.records, args.partitions, args.max_records);
    let mut order = [("stateless", &passthrough), ("stateful", &count)];
    if args.stateful_first {
        order.reverse();
    }
    let admin = Admin::new(client.clone());
    let pipelines = Pipelines::new(client.clone());
    let mut rates = Vec::new();
    let stateful_name = format!("{run}-stateful");
    for (kind, processor) in order {
        let name = format!("{run}-{kind}");
        let output = format!("{name}-out");
        let spec = Spec {
            name: &name,
            processor,
            input: &input,
            output: &output,
            delivery: "exactly-once",
            args: &as_pipeline,
            max_wait_ms: 5,
            extra: if kind == "stateful" {
                "  state: { enabled: true }\n  limits: { stateMiB: 4096 }\n"
            } else {
                ""
            },
        };
        let d = drain(client, &spec).await?;
        let size = args.record_size as u64;
        throughput(
            &format!("pipeline exactly-once {kind}"),
            d.records,
            d.records * size,
            d.took,
        );
        rates.push((kind, d.records as f64 / d.took.as_secs_f64()));
        if kind == "stateless" {
            pipelines.delete(&name).await?;
            admin.delete_topic(&output).await?;
        }
    }
    let rate_of = |k: &str| rates.iter().find(|(x, _)| *x == k).map_or(0.0, |r| r.1);
    outln!(
        "pipeline exactly-once stateful (running count): {:.0}% of stateless",
        100.0 * rate_of("stateful") / rate_of("stateless")
    );
    let before = footprint(client, &stateful_name).await?;
    restore(client, &stateful_name).await?;
    if args.compaction_wait_secs > 0 {
        let wait = Duration::from_secs(args.compaction_wait_secs);
        compacted(client, &stateful_name, before, wait).await?;
        restore(client, &stateful_name).await?;
    }
    pipelines.delete(&stateful_name).await?;
    if args.windows > 0 {
        window_latency(client, &run, args.windows).await?;
    }
    for name in [&passthrough, &count] {
        processors.delete(name, None).await?;
    }
    for topic in admin.list_topics(false).await? {
        if topic.name.starts_with(&run) {
            admin.delete_topic(&topic.name).await?;
        }
    }
    Ok(())
}

/// Writes the backlog: record `i` has key `k<i % keys>`, so each key's
/// records share a partition and its running count climbs to
/// `records / keys`.
async fn fill(client: &Client, topic: &str, args: &StateArgs) -> anyhow::Result<()> {
    let producer = Producer::new(client.clone(), ProducerConfig::default());
    let value = Bytes::from(vec![b'v'; args.record_size]);
    for i in 0..args.records {
        let key = format!("k{:08}", i % args.keys.max(1));
        producer
            .send(topic, ProducerRecord::key_value(key, value.clone()))
            .await?;
    }
    producer.flush().await?;
    Ok(())
}

/// The state's size: bytes of keys and values per key in the tasks, and
/// the changelog's bytes on disk per key (compaction has not run yet: the
/// log holds one record per change). Returns the changelog's bytes.
async fn footprint(client: &Client, name: &str) -> anyhow::Result<u64> {
    let d = Pipelines::new(client.clone()).describe(name).await?;
    let c = d.counters.unwrap_or_default();
    let changelog = Admin::new(client.clone())
        .describe_topic(&format!("{name}.state"))
        .await?;
    let disk: u64 = changelog.partitions.iter().map(|p| p.size_bytes).sum();
    let records: u64 = changelog.partitions.iter().map(|p| p.high_watermark).sum();
    let keys = c.state_keys.max(1);
    outln!(
        "state: {} keys, {:.1} bytes of key and value per key in memory; changelog {} records, {:.1} bytes on disk per record",
        c.state_keys,
        c.state_bytes as f64 / keys as f64,
        records,
        disk as f64 / records.max(1) as f64
    );
    Ok(disk)
}

/// Waits until the changelog is compacted (no longer shrinking, and
/// smaller than `before` bytes), up to `wait`.
async fn compacted(client: &Client, name: &str, before: u64, wait: Duration) -> anyhow::Result<()> {
    let admin = Admin::new(client.clone());
    let started = Instant::now();
    let mut last = before;
    let mut steady_since = Instant::now();
    loop {
        let topic = admin.describe_topic(&format!("{name}.state")).await?;
        let disk: u64 = topic.partitions.iter().map(|p| p.size_bytes).sum();
        if disk != last {
            last = disk;
            steady_since = Instant::now();
        }
        let steady = steady_since.elapsed() > Duration::from_secs(5);
        if (disk < before && steady) || started.elapsed() > wait {
            outln!(
                "changelog compacted: {before} → {disk} bytes on disk after {:.0} s",
                started.elapsed().as_secs_f64()
            );
            return Ok(());
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

/// Pauses and resumes the pipeline, and reports how long its tasks took
/// to read the changelog back.
async fn restore(client: &Client, name: &str) -> anyhow::Result<()> {
    let pipelines = Pipelines::new(client.clone());
    let before = pipelines.describe(name).await?.counters.unwrap_or_default();
    pipelines.pause(name).await?;
    let deadline = Instant::now() + RESTORE_TIMEOUT;
    // Paused once no task owns a partition and the workers' reports say
    // so (they hold no state).
    loop {
        let d = pipelines.describe(name).await?;
        let keys = d.counters.as_ref().map_or(0, |c| c.state_keys);
        if d.partitions.iter().all(|p| p.owner.is_empty()) && keys == 0 {
            break;
        }
        if Instant::now() > deadline {
            bail!("pipeline {name} did not pause");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let resumed = Instant::now();
    pipelines.resume(name).await?;
    loop {
        let c = pipelines.describe(name).await?.counters.unwrap_or_default();
        if c.state_keys == before.state_keys
            && c.state_restoring == 0
            && c.state_restored_records > 0
        {
            outln!(
                "restore: {} keys from {} changelog records in {} ms (the slowest task); {} ms from resume to all restored",
                c.state_keys,
                c.state_restored_records,
                c.state_restore_ms,
                resumed.elapsed().as_millis()
            );
            return Ok(());
        }
        if Instant::now() > deadline {
            bail!("pipeline {name} did not restore its state in {RESTORE_TIMEOUT:?}");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Closes `windows` 1-second windows one at a time and times each from
/// the send of the record that closes it to its count being read.
async fn window_latency(client: &Client, run: &str, windows: u64) -> anyhow::Result<()> {
    let processor = format!("{run}-windows");
    Processors::new(client.clone())
        .upload(
            &processor,
            Bytes::from_static(eddy_test_plugins::WINDOW_COUNT_WASM),
            |_| {},
        )
        .await?;
    let input = format!("{run}-win-in");
    let output = format!("{run}-win-out");
    create(client, &input, 1).await?;
    let manifest = format!(
        "apiVersion: eddy/v1\nkind: Pipeline\nmetadata: {{ name: {processor} }}\nspec:\n  input: {{ topics: [{input}] }}\n  processor: {{ name: {processor}, params: {{ window_ms: \"1000\" }} }}\n  outputs: [ {{ topic: {output}, partitions: 1 }} ]\n  delivery: exactly-once\n  batch: {{ maxRecords: 256, maxWaitMs: 1 }}\n  state: {{ enabled: true }}\n"
    );
    let pipelines = Pipelines::new(client.clone());
    pipelines.apply(&manifest).await?;
    let producer = Producer::new(
        client.clone(),
        ProducerConfig {
            linger_ms: 0,
            ..ProducerConfig::default()
        },
    );
    let mut consumer = Consumer::new(client.clone(), ConsumerConfig::default());
    let mut hist: Histogram<u64> = histogram();
    let mut waited_for = 0u64;
    for i in 0..=windows {
        // Record i opens window i and closes window i - 1.
        let record = ProducerRecord {
            key: Some("w".into()),
            value: Some("x".into()),
            timestamp_ms: Some(1_000 * i as i64 + 500),
            ..ProducerRecord::default()
        };
        let sent = Instant::now();
        producer.send(&input, record).await?;
        producer.flush().await?;
        if i == 0 {
            consumer.assign(&output, 0, Start::Earliest).await?;
            continue;
        }
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let got: u64 = consumer
                .poll(Duration::from_millis(100))
                .await?
                .iter()
                .map(|f| f.record_count())
                .sum();
            if got > 0 {
                hist.record(sent.elapsed().as_micros() as u64)?;
                waited_for += got;
                break;
            }
            if Instant::now() > deadline {
                bail!("window {i} was not emitted within 30 s");
            }
        }
    }
    latency(
        &format!("window close (send of the closing record → count read), {waited_for} windows"),
        &hist,
    );
    pipelines.delete(&processor).await?;
    Processors::new(client.clone())
        .delete(&processor, None)
        .await?;
    Ok(())
}
