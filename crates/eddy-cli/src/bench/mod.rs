//! `eddy bench produce|consume|e2e|group|pipeline|failover`: throughput and latency
//! against a running broker, reported like the OpenMessaging Benchmark
//! (records/s, MB/s, latency percentiles).

mod failover;
mod pipeline;
mod processor;
mod state;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::Context;
use bytes::{BufMut, Bytes, BytesMut};
use clap::{Args, Subcommand, ValueEnum};
use eddy_client::{
    Admin, Client, Compression, Consumer, ConsumerConfig, DeliveryTicket, GroupConfig, NewTopic,
    Producer, ProducerConfig, ProducerRecord, Start,
};
use hdrhistogram::Histogram;

use crate::out::outln;
use crate::produce::AcksArg;
use crate::{Connection, connect};

#[derive(Debug, Subcommand)]
pub enum BenchCommand {
    /// Producer throughput and publish latency (send → acknowledged).
    Produce(BenchArgs),
    /// Consumer throughput, reading a backlog it first writes (untimed).
    Consume(BenchArgs),
    /// End-to-end latency (send → consumed) at a fixed rate.
    E2e(E2eArgs),
    /// Consumer groups: a group of members draining a backlog against one
    /// consumer, and how long a rebalance takes after a member leaves.
    Group(GroupArgs),
    /// Pipelines through a pass-through processor against a plain
    /// consume→produce copy with the same client: records/s draining a
    /// backlog exactly-once, at-least-once and copied, and the latency a
    /// pipeline adds at a fixed rate.
    Pipeline(pipeline::PipelineArgs),
    /// Processors without a broker: compile time (cold and cached),
    /// instantiate + init, memory per instance, and records/s on 100-byte
    /// JSON records, for several processors (say one per language) in
    /// turn, round by round.
    Processor(processor::ProcessorBenchArgs),
    /// Keyed state: a running count over many keys exactly-once against the
    /// stateless pass-through on the same keyed backlog, the state's size
    /// per key, the time to restore it from the changelog, and how soon a
    /// window's count is out after the record that closes it.
    State(state::StateArgs),
    /// Leader failover: writes one record at a time with acks=all, kills
    /// the partition leader with a command you give, and times the kill to
    /// the first acknowledged write.
    Failover(failover::FailoverArgs),
}

#[derive(Debug, Clone, Args)]
pub struct GroupArgs {
    #[command(flatten)]
    common: BenchArgs,
    /// Members of the group.
    #[arg(long, default_value_t = 3)]
    members: usize,
    /// Session timeout of the members, in ms.
    #[arg(long, default_value_t = 3_000)]
    session_timeout_ms: u32,
}

#[derive(Debug, Clone, Args)]
pub struct BenchArgs {
    /// Topic to use; by default a new `bench-…` topic, deleted afterwards.
    #[arg(long)]
    topic: Option<String>,
    /// Partitions of the new topic.
    #[arg(long, default_value_t = 1)]
    partitions: u32,
    /// Replicas of the new topic (0: the broker's default).
    #[arg(long, default_value_t = 0)]
    replication_factor: u32,
    /// `min.insync.replicas` of the new topic (default: the broker's).
    #[arg(long)]
    min_insync_replicas: Option<u32>,
    /// Bytes per record value.
    #[arg(long, default_value_t = 1024)]
    record_size: usize,
    /// Records to send (default: 1 GiB worth).
    #[arg(long)]
    records: Option<u64>,
    /// Producer batch size in bytes.
    #[arg(long, default_value_t = 1 << 20)]
    batch_bytes: usize,
    /// Producer linger in ms.
    #[arg(long, default_value_t = 5)]
    linger_ms: u64,
    /// Producer acks.
    #[arg(long, value_enum, default_value = "1")]
    acks: AcksArg,
    /// Keep the topic afterwards.
    #[arg(long)]
    keep: bool,
    /// Turn idempotence off (it is on with acks=all).
    #[arg(long)]
    no_idempotence: bool,
    /// Compress the producer's batches: none, gzip, snappy, lz4 or zstd.
    #[arg(long, default_value = "none", value_name = "CODEC")]
    compression: Compression,
    /// What record values hold: `filler` (one byte repeated) or `json`
    /// (varied JSON events, which compress as real data does).
    #[arg(long, value_enum, default_value = "filler")]
    payload: Payload,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Payload {
    Filler,
    Json,
}

#[derive(Debug, Clone, Args)]
pub struct E2eArgs {
    #[command(flatten)]
    common: BenchArgs,
    /// Target rate in MB/s.
    #[arg(long, default_value_t = 50.0)]
    rate_mb: f64,
    /// How long to run, in seconds.
    #[arg(long, default_value_t = 10)]
    duration_s: u64,
}

pub async fn run(cmd: BenchCommand, conn: &Connection) -> anyhow::Result<()> {
    if let BenchCommand::Processor(args) = cmd {
        // Needs no broker: CPU work, on the blocking pool.
        return tokio::task::spawn_blocking(move || processor::run(&args))
            .await
            .context("the benchmark did not finish")?;
    }
    let client = connect(conn).await?;
    let args = match &cmd {
        BenchCommand::Produce(a) | BenchCommand::Consume(a) => a.clone(),
        BenchCommand::E2e(e) => e.common.clone(),
        BenchCommand::Group(g) => g.common.clone(),
        BenchCommand::Failover(f) => f.common.clone(),
        // Makes its own topics.
        BenchCommand::Pipeline(p) => return pipeline::run(&client, p).await,
        BenchCommand::State(s) => return state::run(&client, s).await,
        BenchCommand::Processor(_) => return Ok(()),
    };
    let topic = prepare_topic(&client, &args).await?;
    let result = match cmd {
        BenchCommand::Produce(a) => produce(&client, &topic, &a).await,
        BenchCommand::Consume(a) => consume(&client, &topic, &a).await,
        BenchCommand::E2e(e) => e2e(&client, &topic, &e).await,
        BenchCommand::Group(g) => group(&client, &topic, &g).await,
        BenchCommand::Failover(f) => failover::run(&client, &topic, &f).await,
        BenchCommand::Pipeline(_) | BenchCommand::Processor(_) | BenchCommand::State(_) => Ok(()),
    };
    if args.topic.is_none() && !args.keep {
        Admin::new(client).delete_topic(&topic).await?;
    }
    result
}

async fn prepare_topic(client: &Client, args: &BenchArgs) -> anyhow::Result<String> {
    if let Some(t) = &args.topic
        && client.partition_count(t).await.is_ok()
    {
        return Ok(t.clone());
    }
    let name = args
        .topic
        .clone()
        .unwrap_or_else(|| format!("bench-{}", std::process::id()));
    let mut configs = std::collections::HashMap::new();
    if let Some(n) = args.min_insync_replicas {
        configs.insert("min.insync.replicas".to_string(), n.to_string());
    }
    Admin::new(client.clone())
        .create_topic(NewTopic {
            name: name.clone(),
            partitions: args.partitions,
            replication_factor: args.replication_factor,
            configs,
        })
        .await
        .context("creating the benchmark topic")?;
    Ok(name)
}

fn producer(client: &Client, args: &BenchArgs) -> Producer {
    Producer::new(
        client.clone(),
        ProducerConfig {
            acks: args.acks.acks(),
            linger_ms: args.linger_ms,
            batch_bytes_max: args.batch_bytes,
            buffer_bytes_max: (64 << 20).max(4 * args.batch_bytes),
            idempotence: !args.no_idempotence,
            compression: args.compression,
            ..ProducerConfig::default()
        },
    )
}

fn record_count(args: &BenchArgs) -> u64 {
    args.records
        .unwrap_or((1u64 << 30) / args.record_size.max(1) as u64)
}

fn header(kind: &str, topic: &str, args: &BenchArgs) {
    let replicas = match args.replication_factor {
        0 => "broker default".to_string(),
        n => n.to_string(),
    };
    outln!(
        "eddy bench {kind}: topic {topic}, {} partition(s), replication factor {replicas}, {} B {:?} records, batch {} B, linger {} ms, acks={:?}, idempotence {}, compression {}",
        args.partitions,
        args.record_size,
        args.payload,
        args.batch_bytes,
        args.linger_ms,
        args.acks,
        !args.no_idempotence && args.acks == AcksArg::All,
        args.compression
    );
}

/// Record values of `size` bytes: one value, or a pool of varied JSON
/// events to cycle through (made before the clock starts).
fn values(payload: Payload, size: usize) -> Vec<Bytes> {
    match payload {
        Payload::Filler => vec![Bytes::from(vec![b'e'; size])],
        Payload::Json => (0..1024u64).map(|i| json_event(i, size)).collect(),
    }
}

/// A JSON event of about `size` bytes (exactly, when `size` is at least
/// the fixed fields' length): ids, a device, a region, a reading and
/// words from a small vocabulary, varied by a seeded generator.
fn json_event(i: u64, size: usize) -> Bytes {
    const WORDS: [&str; 16] = [
        "normal", "warning", "door", "open", "closed", "battery", "low", "signal", "lost",
        "restored", "north", "gate", "engine", "idle", "moving", "stopped",
    ];
    let mut state = i.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    let mut next = move || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state
    };
    let mut text = format!(
        "{{\"id\":{i},\"device\":\"sensor-{:04}\",\"region\":\"{}\",\"reading\":{}.{:02},\"ts\":{},\"note\":\"",
        next() % 5000,
        ["north", "south", "east", "west"][(next() % 4) as usize],
        next() % 100,
        next() % 100,
        1_700_000_000_000u64 + next() % 86_400_000
    );
    let fields = text.len();
    while text.len() + 2 < size {
        text.push_str(WORDS[(next() % 16) as usize]);
        text.push(' ');
    }
    // ASCII throughout, so any length is a character boundary.
    text.truncate(size.saturating_sub(2).max(fields));
    text.push_str("\"}");
    Bytes::from(text)
}

/// Sends `n` records, sampling publish latency on every 64th.
async fn send_all(
    producer: &Producer,
    topic: &str,
    n: u64,
    values: &[Bytes],
) -> anyhow::Result<Histogram<u64>> {
    let mut samples: Vec<(Instant, DeliveryTicket)> = Vec::with_capacity((n / 64 + 1) as usize);
    for i in 0..n {
        // Only sampled records read the clock, to keep the loop lean.
        let sent_at = (i % 64 == 0).then(Instant::now);
        let value = values[i as usize % values.len()].clone();
        let ticket = producer.send(topic, ProducerRecord::value(value)).await?;
        if let Some(sent_at) = sent_at {
            samples.push((sent_at, ticket));
        }
    }
    producer.flush().await?;
    let mut hist = histogram();
    for (sent_at, ticket) in samples {
        if let Some(done) = ticket.completed_at() {
            hist.saturating_record(done.saturating_duration_since(sent_at).as_micros() as u64);
        }
    }
    Ok(hist)
}

async fn produce(client: &Client, topic: &str, args: &BenchArgs) -> anyhow::Result<()> {
    header("produce", topic, args);
    let n = record_count(args);
    let producer = producer(client, args);
    let values = values(args.payload, args.record_size);
    let bytes: u64 = (0..n)
        .map(|i| values[i as usize % values.len()].len() as u64)
        .sum();
    let start = Instant::now();
    let hist = send_all(&producer, topic, n, &values).await?;
    let elapsed = start.elapsed();
    producer.close().await?;
    throughput("produce", n, bytes, elapsed);
    latency("publish latency", &hist);
    // What the log holds for them (the leaders' copies, batch headers included).
    let stored: u64 = Admin::new(client.clone())
        .describe_topic(topic)
        .await?
        .partitions
        .iter()
        .map(|p| p.size_bytes)
        .sum();
    outln!(
        "on disk: {:.1} MB for {:.1} MB of values ({:.0}%)",
        stored as f64 / 1e6,
        bytes as f64 / 1e6,
        100.0 * stored as f64 / bytes.max(1) as f64
    );
    Ok(())
}

async fn consume(client: &Client, topic: &str, args: &BenchArgs) -> anyhow::Result<()> {
    header("consume", topic, args);
    let n = record_count(args);
    let count = client.partition_count(topic).await?;
    let mut consumer = Consumer::new(client.clone(), ConsumerConfig::default());
    let mut backlog = 0;
    for p in 0..count {
        let start = consumer.assign(topic, p, Start::Earliest).await?;
        backlog += consumer.resolve(topic, p, Start::Latest).await? - start;
    }
    // An existing topic that already holds enough records is read as it is.
    if backlog < n {
        let producer = producer(client, args);
        send_all(&producer, topic, n, &values(args.payload, args.record_size)).await?;
        producer.close().await?;
    } else {
        outln!("reading the {backlog} records already in {topic}");
    }
    let start = Instant::now();
    let (mut records, mut bytes) = (0u64, 0u64);
    while records < n {
        for f in consumer.poll(Duration::from_millis(500)).await? {
            records += f.record_count();
            bytes += f.bytes.len() as u64;
        }
    }
    let elapsed = start.elapsed();
    outln!("read {records} records ({bytes} bytes of stored batches)");
    throughput("consume", records, bytes, elapsed);
    Ok(())
}

async fn e2e(client: &Client, topic: &str, e: &E2eArgs) -> anyhow::Result<()> {
    let args = &e.common;
    header("e2e", topic, args);
    outln!("target rate {:.1} MB/s for {} s", e.rate_mb, e.duration_s);
    let count = client.partition_count(topic).await?;
    let epoch = Instant::now();
    let mut consumer = Consumer::new(client.clone(), ConsumerConfig::default());
    for p in 0..count {
        consumer.assign(topic, p, Start::Latest).await?;
    }
    let stop = Arc::new(AtomicBool::new(false));
    let reader = {
        let stop = stop.clone();
        tokio::spawn(async move {
            let mut hist = histogram();
            let mut received = 0u64;
            while !stop.load(Ordering::Acquire) {
                for f in consumer.poll(Duration::from_millis(100)).await? {
                    for r in f.records()? {
                        let Some(v) = r.value.as_deref().filter(|v| v.len() >= 8) else {
                            continue;
                        };
                        let sent = u64::from_le_bytes(v[..8].try_into().unwrap_or_default());
                        let now = epoch.elapsed().as_micros() as u64;
                        hist.saturating_record(now.saturating_sub(sent));
                        received += 1;
                    }
                }
            }
            anyhow::Ok((hist, received))
        })
    };
    let producer = producer(client, args);
    let size = args.record_size.max(8);
    let bytes_per_us = e.rate_mb * 1e6 / 1e6;
    let start = Instant::now();
    let deadline = Duration::from_secs(e.duration_s);
    let mut sent = 0u64;
    let filler = vec![b'e'; size - 8];
    // Publish latency (send → acknowledged) of every 64th record.
    let mut acks: Vec<(Instant, DeliveryTicket)> = Vec::new();
    while start.elapsed() < deadline {
        let due = (start.elapsed().as_micros() as f64 * bytes_per_us / size as f64) as u64;
        while sent < due {
            let mut v = BytesMut::with_capacity(size);
            v.put_u64_le(epoch.elapsed().as_micros() as u64);
            v.put_slice(&filler);
            let sent_at = sent.is_multiple_of(64).then(Instant::now);
            let ticket = producer
                .send(topic, ProducerRecord::value(v.freeze()))
                .await?;
            if let Some(at) = sent_at {
                acks.push((at, ticket));
            }
            sent += 1;
        }
        tokio::time::sleep(Duration::from_micros(500)).await;
    }
    let elapsed = start.elapsed();
    producer.close().await?;
    let mut published = histogram();
    for (at, ticket) in acks {
        if let Some(done) = ticket.completed_at() {
            published.saturating_record(done.saturating_duration_since(at).as_micros() as u64);
        }
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    stop.store(true, Ordering::Release);
    let (hist, received) = reader.await.context("consumer task")??;
    outln!("sent {sent}, consumed {received}");
    throughput("produce", sent, sent * size as u64, elapsed);
    latency("publish latency", &published);
    latency("end-to-end latency", &hist);
    Ok(())
}

async fn group(client: &Client, topic: &str, g: &GroupArgs) -> anyhow::Result<()> {
    let args = &g.common;
    header("group", topic, args);
    let n = record_count(args);
    let producer = producer(client, args);
    send_all(&producer, topic, n, &values(args.payload, args.record_size)).await?;
    producer.close().await?;
    let (one, _) = drain(client, topic, 1, n, g, "bench-one").await?;
    outln!("1 consumer: {one:.1} MB/s");
    let (many, members) = drain(client, topic, g.members, n, g, "bench-many").await?;
    outln!(
        "{} members: {many:.1} MB/s together = {:.0}% of one consumer",
        g.members,
        many / one * 100.0
    );
    rebalance_times(client, topic, members, g).await
}

/// A group of `count` members reading `topic` from the start until `n`
/// records are read in all; returns MB/s and the (still joined) members.
async fn drain(
    client: &Client,
    topic: &str,
    count: usize,
    n: u64,
    g: &GroupArgs,
    group: &str,
) -> anyhow::Result<(f64, Vec<Consumer>)> {
    let group = format!("{group}-{}", std::process::id());
    let mut members = Vec::new();
    for i in 0..count {
        let mut c = Consumer::new(client.clone(), ConsumerConfig::default());
        let mut config = GroupConfig::new(&group);
        config.client_id = format!("bench-{i}");
        config.session_timeout_ms = g.session_timeout_ms;
        config.auto_commit = false;
        c.subscribe(config, &[topic]).await?;
        members.push(c);
    }
    let total = Arc::new(AtomicU64::new(0));
    let bytes = Arc::new(AtomicU64::new(0));
    let start = Instant::now();
    let mut tasks = Vec::new();
    for mut c in members {
        let (total, bytes) = (total.clone(), bytes.clone());
        tasks.push(tokio::spawn(async move {
            while total.load(Ordering::Acquire) < n {
                for f in c.poll(Duration::from_millis(100)).await? {
                    bytes.fetch_add(f.bytes.len() as u64, Ordering::AcqRel);
                    total.fetch_add(f.record_count(), Ordering::AcqRel);
                }
            }
            anyhow::Ok(c)
        }));
    }
    let mut done = Vec::new();
    for t in tasks {
        done.push(t.await??);
    }
    let secs = start.elapsed().as_secs_f64();
    Ok((bytes.load(Ordering::Acquire) as f64 / secs / 1e6, done))
}

/// Time until the group is stable without a member that left, gracefully
/// and by disappearing (its session must time out).
async fn rebalance_times(
    client: &Client,
    topic: &str,
    mut members: Vec<Consumer>,
    g: &GroupArgs,
) -> anyhow::Result<()> {
    if members.len() < 3 {
        return Ok(());
    }
    let admin = Admin::new(client.clone());
    let Some(id) = members.first().and_then(|c| c.group_id()) else {
        return Ok(());
    };
    let leaving = members.remove(0);
    // The others keep polling, so they heartbeat and rejoin; the first of
    // them is later killed (its task aborted: no LeaveGroup).
    let stop = Arc::new(AtomicBool::new(false));
    let mut pollers = Vec::new();
    for mut c in members {
        let stop = stop.clone();
        pollers.push(tokio::spawn(async move {
            while !stop.load(Ordering::Acquire) {
                c.poll(Duration::from_millis(50)).await?;
            }
            anyhow::Ok(c)
        }));
    }
    let before = admin.describe_group(&id).await?.members.len();
    let t = Instant::now();
    leaving.close().await?;
    wait_stable(&admin, &id, before - 1, topic).await?;
    outln!(
        "rebalance after a member leaves: {:.3} s",
        t.elapsed().as_secs_f64()
    );
    let t = Instant::now();
    pollers.remove(0).abort(); // dropped without LeaveGroup: the coordinator must notice the silence
    wait_stable(&admin, &id, before - 2, topic).await?;
    outln!(
        "rebalance after a member disappears: {:.3} s (session timeout {:.1} s)",
        t.elapsed().as_secs_f64(),
        f64::from(g.session_timeout_ms) / 1000.0
    );
    stop.store(true, Ordering::Release);
    for p in pollers {
        p.await??.close().await?;
    }
    Ok(())
}

/// Polls the group until it is stable with `members` members that own every
/// partition of `topic`.
async fn wait_stable(
    admin: &Admin,
    group: &str,
    members: usize,
    topic: &str,
) -> anyhow::Result<()> {
    let start = Instant::now();
    loop {
        let d = admin.describe_group(group).await?;
        let of_topic = d.partitions.iter().filter(|p| p.topic == topic);
        let (partitions, owned) = of_topic.fold((0, 0), |(n, o), p| {
            (n + 1, o + usize::from(!p.owner.is_empty()))
        });
        if d.state == "Stable"
            && d.members.len() == members
            && owned == partitions
            && partitions > 0
        {
            return Ok(());
        }
        if start.elapsed() > Duration::from_secs(120) {
            anyhow::bail!("the group did not settle within 120 s");
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

pub(super) fn histogram() -> Histogram<u64> {
    // 1 µs to 100 s at 3 significant digits; the bounds are constants.
    Histogram::new_with_bounds(1, 100_000_000, 3)
        .unwrap_or_else(|_| Histogram::new(3).unwrap_or_else(|_| unreachable!()))
}

pub(super) fn throughput(what: &str, records: u64, bytes: u64, elapsed: Duration) {
    let s = elapsed.as_secs_f64();
    outln!(
        "{what}: {records} records in {s:.2} s = {:.0} records/s, {:.1} MB/s",
        records as f64 / s,
        bytes as f64 / s / 1e6
    );
}

pub(super) fn latency(what: &str, h: &Histogram<u64>) {
    let ms = |us: u64| us as f64 / 1000.0;
    outln!(
        "{what} (ms, {} samples): p50 {:.3}  p99 {:.3}  p99.9 {:.3}  max {:.3}",
        h.len(),
        ms(h.value_at_quantile(0.50)),
        ms(h.value_at_quantile(0.99)),
        ms(h.value_at_quantile(0.999)),
        ms(h.max())
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_payloads_are_valid_json_of_the_size_asked_and_varied() {
        for size in [100, 1024, 4096] {
            let pool = values(Payload::Json, size);
            for v in &pool {
                assert_eq!(v.len(), size);
                let parsed: serde_json::Value = serde_json::from_slice(v).unwrap();
                assert!(parsed["device"].as_str().unwrap().starts_with("sensor-"));
            }
            let distinct: std::collections::HashSet<&Bytes> = pool.iter().collect();
            assert_eq!(distinct.len(), pool.len());
        }
    }
}
