//! `eddy bench failover`: how long writes stop when a partition's leader
//! dies. Writes one record at a time with acks=all, runs a command that
//! kills the leader (`{node}` in it is the leader's node id), and times
//! from the kill to the first acknowledged write after it, which only a
//! new leader can give.

use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use bytes::Bytes;
use clap::Args;
use eddy_client::{Client, Producer, ProducerConfig, ProducerRecord};

use super::{BenchArgs, header};
use crate::out::outln;

#[derive(Debug, Clone, Args)]
pub struct FailoverArgs {
    #[command(flatten)]
    pub(super) common: BenchArgs,
    /// Shell command that kills a broker, `{node}` replaced by the
    /// partition leader's node id, e.g. `kill -9 $(cat pids/{node})`.
    #[arg(long)]
    kill_command: String,
    /// Seconds of writes before the kill.
    #[arg(long, default_value_t = 2)]
    warmup_s: u64,
}

/// The leader of `topic` partition 0, from fresh metadata.
async fn leader(client: &Client, topic: &str) -> anyhow::Result<i32> {
    let m = client.cluster_metadata().await?;
    m.topics
        .iter()
        .find(|t| t.name == topic)
        .and_then(|t| t.partitions.first())
        .map(|p| p.leader)
        .filter(|&l| l >= 0)
        .with_context(|| format!("{topic} has no leader"))
}

pub async fn run(client: &Client, topic: &str, f: &FailoverArgs) -> anyhow::Result<()> {
    let args = BenchArgs {
        acks: crate::produce::AcksArg::All,
        ..f.common.clone()
    };
    header("failover", topic, &args);
    let producer = Producer::new(
        client.clone(),
        ProducerConfig {
            acks: eddy_client::Acks::All,
            linger_ms: 0,
            // Retries soon after the new leader is known, so the figure is
            // the cluster's, not the client's back-off.
            retry_backoff_ms: 20,
            retry_backoff_ms_max: 100,
            ..ProducerConfig::default()
        },
    );
    let value = Bytes::from(vec![b'e'; args.record_size]);
    let write = || async {
        producer
            .send(topic, ProducerRecord::value(value.clone()))
            .await?
            .wait()
            .await?;
        anyhow::Ok(())
    };
    let warm = Instant::now();
    let mut written = 0u64;
    while warm.elapsed() < Duration::from_secs(f.warmup_s) {
        write().await?;
        written += 1;
    }
    let old = leader(client, topic).await?;
    let command = f.kill_command.replace("{node}", &old.to_string());
    outln!("{written} writes acknowledged by broker {old}; running: {command}");
    let killed = Instant::now();
    let status = std::process::Command::new("sh")
        .args(["-c", &command])
        .status()
        .context("running the kill command")?;
    if !status.success() {
        bail!("the kill command failed ({status})");
    }
    write().await?;
    let failover = killed.elapsed();
    let new = leader(client, topic).await?;
    outln!(
        "failover: broker {old} killed, first acks=all write acknowledged after {:.3} s (leader now broker {new})",
        failover.as_secs_f64()
    );
    producer.close().await?;
    Ok(())
}
