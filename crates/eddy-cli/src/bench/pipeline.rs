//! `eddy bench pipeline`: what a pipeline costs over moving the same
//! records with the client alone.
//!
//! Throughput: a backlog is written to an input topic (untimed), then
//! drained three ways, each timed from its first record to its last:
//! a plain consume→produce copy in this process (the client's consumer and
//! idempotent acks=all producer, which is what a pipeline task is built
//! on, with no processor), and pass-through pipelines at-least-once and
//! exactly-once run by the broker's workers. Latency: records are sent at
//! a fixed rate and timed from send to read, straight from the input topic
//! and through an exactly-once pipeline; the difference is what the
//! pipeline adds.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use bytes::{BufMut, Bytes, BytesMut};
use clap::Args;
use eddy_client::{
    Admin, Client, Consumer, ConsumerConfig, NewTopic, Pipelines, Processors, Producer,
    ProducerConfig, ProducerRecord, Start,
};
use hdrhistogram::Histogram;

use super::{histogram, latency, throughput};
use crate::out::outln;

#[derive(Debug, Clone, Args)]
pub struct PipelineArgs {
    /// Records in the backlog each way drains.
    #[arg(long, default_value_t = 2_000_000)]
    records: u64,
    /// Bytes per record value.
    #[arg(long, default_value_t = 100)]
    record_size: usize,
    /// Partitions of the input and output topics.
    #[arg(long, default_value_t = 4)]
    partitions: u32,
    /// Records per processor call (the manifest's batch.maxRecords).
    #[arg(long, default_value_t = 1024)]
    max_records: u32,
    /// Processor instances per worker (the manifest's parallelism).
    #[arg(long, default_value_t = 2)]
    parallelism: u32,
    /// Rate of the latency run, in MB/s.
    #[arg(long, default_value_t = 10.0)]
    rate_mb: f64,
    /// Length of the latency run, in seconds (0 skips it).
    #[arg(long, default_value_t = 10)]
    duration_s: u64,
    /// Drain exactly-once before at-least-once (alternate it between runs:
    /// on this VM whatever writes fresh data later in a run is slower).
    #[arg(long)]
    exactly_once_first: bool,
    /// The processor the pipelines run, instead of the built-in Rust
    /// pass-through: a `.wasm` component or a project directory (built
    /// first when needed). It must forward every record unchanged, as
    /// `out.forward(record)` does, for the latency run to read it.
    #[arg(long, value_name = "FILE.wasm|DIR")]
    processor: Option<std::path::PathBuf>,
}

impl PipelineArgs {
    /// The settings a drain of `records` needs, for other benchmarks.
    pub(super) fn for_state(records: u64, partitions: u32, max_records: u32) -> PipelineArgs {
        PipelineArgs {
            records,
            record_size: 0,
            partitions,
            max_records,
            parallelism: 2,
            rate_mb: 0.0,
            duration_s: 0,
            exactly_once_first: false,
            processor: None,
        }
    }
}

/// Longest a drain may take.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(600);

pub async fn run(client: &Client, args: &PipelineArgs) -> anyhow::Result<()> {
    let run = format!("bench-{}", std::process::id());
    let processor = format!("{run}-passthrough");
    let (component, described) = match &args.processor {
        None => (
            Bytes::from_static(eddy_test_plugins::PASSTHROUGH_WASM),
            "pass-through processor".to_owned(),
        ),
        Some(path) => {
            let path = path.clone();
            let wasm = tokio::task::spawn_blocking(move || crate::processor::component_at(&path))
                .await
                .context("the build did not finish")??;
            let bytes =
                std::fs::read(&wasm).with_context(|| format!("reading {}", wasm.display()))?;
            (Bytes::from(bytes), format!("processor {}", wasm.display()))
        }
    };
    Processors::new(client.clone())
        .upload(&processor, component, |_| {})
        .await
        .with_context(|| format!("uploading the {described}"))?;
    let input = format!("{run}-in");
    create(client, &input, args.partitions).await?;
    outln!(
        "pipeline bench: {} records of {} bytes in {} partitions, {described}, batch {}, parallelism {}",
        args.records,
        args.record_size,
        args.partitions,
        args.max_records,
        args.parallelism
    );
    fill(client, &input, args).await?;
    let bytes = args.records * args.record_size as u64;
    let copy_topic = format!("{run}-copy");
    let copy = copy(client, &input, &copy_topic, args).await?;
    throughput("pipeline copy (client only)", args.records, bytes, copy);
    let copy_rate = args.records as f64 / copy.as_secs_f64();
    // Each drain's output is deleted before the next starts, so that every
    // one writes into page cache the one before freed.
    let admin = Admin::new(client.clone());
    admin.delete_topic(&copy_topic).await?;
    let mut order = ["at-least-once", "exactly-once"];
    if args.exactly_once_first {
        order.reverse();
    }
    let mut rates = Vec::new();
    for delivery in order {
        let name = format!("{run}-{delivery}");
        let output = format!("{name}-out");
        let spec = Spec {
            name: &name,
            processor: &processor,
            input: &input,
            output: &output,
            delivery,
            args,
            max_wait_ms: 5,
            extra: "",
        };
        let d = drain(client, &spec).await?;
        let size = args.record_size as u64;
        throughput(
            &format!("pipeline {delivery}"),
            d.records,
            d.records * size,
            d.took,
        );
        let rate = d.records as f64 / d.took.as_secs_f64();
        outln!(
            "pipeline {delivery}: {:.0}% of the copy",
            100.0 * rate / copy_rate
        );
        Pipelines::new(client.clone()).delete(&name).await?;
        admin.delete_topic(&output).await?;
        rates.push((delivery, rate));
    }
    let rate_of = |d: &str| rates.iter().find(|(x, _)| *x == d).map_or(0.0, |r| r.1);
    outln!(
        "pipeline exactly-once: {:.0}% of at-least-once",
        100.0 * rate_of("exactly-once") / rate_of("at-least-once")
    );
    let mut names = Vec::new();
    if args.duration_s > 0 {
        latency_run(client, &run, &processor, args, &mut names).await?;
    }
    for name in &names {
        Pipelines::new(client.clone()).delete(name).await?;
    }
    Processors::new(client.clone())
        .delete(&processor, None)
        .await?;
    for topic in admin.list_topics(false).await? {
        if topic.name.starts_with(&run) {
            admin.delete_topic(&topic.name).await?;
        }
    }
    Ok(())
}

pub(super) async fn create(client: &Client, name: &str, partitions: u32) -> anyhow::Result<()> {
    Admin::new(client.clone())
        .create_topic(NewTopic {
            name: name.to_string(),
            partitions,
            ..NewTopic::default()
        })
        .await
        .with_context(|| format!("creating {name}"))?;
    Ok(())
}

fn value(size: usize, stamp: u64) -> Bytes {
    let mut v = BytesMut::with_capacity(size.max(8));
    v.put_u64_le(stamp);
    v.put_bytes(b'p', size.saturating_sub(8));
    v.freeze()
}

/// Writes the backlog, keyless, spread over the partitions.
async fn fill(client: &Client, topic: &str, args: &PipelineArgs) -> anyhow::Result<()> {
    let producer = Producer::new(client.clone(), ProducerConfig::default());
    for i in 0..args.records {
        let record = ProducerRecord::value(value(args.record_size, 0))
            .partition((i % u64::from(args.partitions)) as u32);
        producer.send(topic, record).await?;
    }
    producer.flush().await?;
    Ok(())
}

/// Copies `input` to `output` with a consumer and an idempotent acks=all
/// producer; timed from the first record read to the last acknowledged.
async fn copy(
    client: &Client,
    input: &str,
    output: &str,
    args: &PipelineArgs,
) -> anyhow::Result<Duration> {
    create(client, output, args.partitions).await?;
    let mut consumer = Consumer::new(client.clone(), ConsumerConfig::default());
    for p in 0..args.partitions {
        consumer.assign(input, p, Start::Earliest).await?;
    }
    let producer = Producer::new(
        client.clone(),
        ProducerConfig {
            linger_ms: 1,
            ..ProducerConfig::default()
        },
    );
    let mut copied = 0u64;
    let mut started: Option<Instant> = None;
    let deadline = Instant::now() + DRAIN_TIMEOUT;
    while copied < args.records {
        if Instant::now() > deadline {
            bail!(
                "the copy moved {copied} of {} records in {DRAIN_TIMEOUT:?}",
                args.records
            );
        }
        for f in consumer.poll(Duration::from_millis(100)).await? {
            started.get_or_insert_with(Instant::now);
            let records: Vec<ProducerRecord> = f
                .records()?
                .into_iter()
                .map(|r| ProducerRecord {
                    partition: Some(r.partition),
                    key: r.key,
                    value: r.value,
                    headers: r.headers,
                    timestamp_ms: Some(r.timestamp_ms),
                })
                .collect();
            copied += records.len() as u64;
            // As a pipeline task hands over its outputs: a batch at a time.
            producer.send_many(output, records).await?;
        }
    }
    producer.flush().await?;
    Ok(started.map_or(Duration::ZERO, |s| s.elapsed()))
}

/// A pipeline to apply.
pub(super) struct Spec<'a> {
    pub name: &'a str,
    pub processor: &'a str,
    pub input: &'a str,
    pub output: &'a str,
    pub delivery: &'a str,
    pub args: &'a PipelineArgs,
    pub max_wait_ms: u32,
    /// More of the spec (indented two spaces), such as its state.
    pub extra: &'a str,
}

impl Spec<'_> {
    fn manifest(&self, start: &str) -> String {
        format!(
            "apiVersion: eddy/v1\nkind: Pipeline\nmetadata: {{ name: {} }}\nspec:\n  input: {{ topics: [{}], startFrom: {start} }}\n  processor: {{ name: {} }}\n  outputs: [ {{ topic: {}, partitions: {} }} ]\n  delivery: {}\n  parallelism: {}\n  batch: {{ maxRecords: {}, maxWaitMs: {} }}\n{}",
            self.name,
            self.input,
            self.processor,
            self.output,
            self.args.partitions,
            self.delivery,
            self.args.parallelism,
            self.args.max_records,
            self.max_wait_ms,
            self.extra
        )
    }
}

/// How much of a backlog a pipeline drained after its first commit, and
/// how long that took.
pub(super) struct Drained {
    pub records: u64,
    pub took: Duration,
}

/// Applies the pipeline over the backlog; timed from its first commit
/// (group join and task start are left out, as the copy's start is) to no
/// lag, counting only the records committed after that first commit.
pub(super) async fn drain(client: &Client, spec: &Spec<'_>) -> anyhow::Result<Drained> {
    let pipelines = Pipelines::new(client.clone());
    pipelines.apply(&spec.manifest("earliest")).await?;
    let deadline = Instant::now() + DRAIN_TIMEOUT;
    let mut started: Option<(Instant, u64)> = None;
    loop {
        let d = pipelines.describe(spec.name).await?;
        let done: u64 = d.partitions.iter().filter_map(|p| p.committed).sum();
        let lag = d.summary.as_ref().map_or(u64::MAX, |s| s.lag);
        if done > 0 && started.is_none() {
            started = Some((Instant::now(), done));
        }
        if lag == 0 && done >= spec.args.records {
            let (at, first) = started.unwrap_or((Instant::now(), 0));
            return Ok(Drained {
                records: spec.args.records - first.min(spec.args.records),
                took: at.elapsed(),
            });
        }
        if Instant::now() > deadline {
            bail!(
                "pipeline {} did not drain in {DRAIN_TIMEOUT:?} (lag {lag})",
                spec.name
            );
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Sends at `rate_mb` for `duration_s` and reads both the input and an
/// exactly-once pipeline's output, timing each record from its send.
async fn latency_run(
    client: &Client,
    run: &str,
    processor: &str,
    args: &PipelineArgs,
    names: &mut Vec<String>,
) -> anyhow::Result<()> {
    let input = format!("{run}-lat-in");
    let name = format!("{run}-latency");
    let output = format!("{name}-out");
    create(client, &input, args.partitions).await?;
    let spec = Spec {
        name: &name,
        processor,
        input: &input,
        output: &output,
        delivery: "exactly-once",
        args,
        max_wait_ms: 0,
        extra: "",
    };
    Pipelines::new(client.clone())
        .apply(&spec.manifest("earliest"))
        .await?;
    names.push(name.clone());
    // Let the workers join before the clock starts.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let epoch = Instant::now();
    let stop = Arc::new(AtomicBool::new(false));
    let direct = reader(client, &input, args.partitions, epoch, stop.clone()).await?;
    let through = reader(client, &output, args.partitions, epoch, stop.clone()).await?;
    outln!(
        "latency at {:.1} MB/s for {} s, {} partitions",
        args.rate_mb,
        args.duration_s,
        args.partitions
    );
    let producer = Producer::new(
        client.clone(),
        ProducerConfig {
            linger_ms: 0,
            ..ProducerConfig::default()
        },
    );
    let size = args.record_size.max(8);
    let per_us = args.rate_mb / size as f64;
    let start = Instant::now();
    let mut sent = 0u64;
    while start.elapsed() < Duration::from_secs(args.duration_s) {
        let due = (start.elapsed().as_micros() as f64 * per_us) as u64;
        while sent < due {
            let stamp = epoch.elapsed().as_micros() as u64;
            let record = ProducerRecord::value(value(size, stamp))
                .partition((sent % u64::from(args.partitions)) as u32);
            producer.send(&input, record).await?;
            sent += 1;
        }
        tokio::time::sleep(Duration::from_micros(500)).await;
    }
    producer.flush().await?;
    tokio::time::sleep(Duration::from_secs(1)).await;
    stop.store(true, Ordering::Release);
    let direct = direct.await.context("input reader")??;
    let through = through.await.context("output reader")??;
    latency("latency, producer to consumer", &direct);
    latency(
        "latency, producer through the pipeline to consumer",
        &through,
    );
    let ms = |h: &Histogram<u64>, q: f64| h.value_at_quantile(q) as f64 / 1000.0;
    outln!(
        "latency the pipeline adds: p50 {:.3} ms, p99 {:.3} ms",
        ms(&through, 0.5) - ms(&direct, 0.5),
        ms(&through, 0.99) - ms(&direct, 0.99)
    );
    Ok(())
}

type Reader = tokio::task::JoinHandle<anyhow::Result<Histogram<u64>>>;

/// Reads `topic` from its end until `stop`, recording each record's age.
async fn reader(
    client: &Client,
    topic: &str,
    partitions: u32,
    epoch: Instant,
    stop: Arc<AtomicBool>,
) -> anyhow::Result<Reader> {
    let mut consumer = Consumer::new(client.clone(), ConsumerConfig::default());
    for p in 0..partitions {
        consumer.assign(topic, p, Start::Latest).await?;
    }
    Ok(tokio::spawn(async move {
        let mut hist = histogram();
        while !stop.load(Ordering::Acquire) {
            for f in consumer.poll(Duration::from_millis(100)).await? {
                for r in f.records()? {
                    let Some(v) = r.value.as_deref().filter(|v| v.len() >= 8) else {
                        continue;
                    };
                    let sent = u64::from_le_bytes(v[..8].try_into().unwrap_or_default());
                    let now = epoch.elapsed().as_micros() as u64;
                    hist.saturating_record(now.saturating_sub(sent));
                }
            }
        }
        Ok(hist)
    }))
}
