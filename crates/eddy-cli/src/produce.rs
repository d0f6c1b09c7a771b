//! `eddy produce TOPIC`: one record per input line.

use std::path::PathBuf;

use anyhow::{Context, bail};
use bytes::Bytes;
use clap::{Args, ValueEnum};
use eddy_client::{Acks, Compression, Producer, ProducerConfig, ProducerRecord};
use tokio::io::{AsyncBufReadExt, AsyncRead, BufReader};

use crate::{Connection, connect};

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum AcksArg {
    /// Do not wait for the broker.
    #[value(name = "0")]
    None,
    /// Wait for the partition leader.
    #[value(name = "1")]
    Leader,
    /// Wait for every in-sync replica.
    All,
}

impl AcksArg {
    pub fn acks(self) -> Acks {
        match self {
            AcksArg::None => Acks::None,
            AcksArg::Leader => Acks::Leader,
            AcksArg::All => Acks::All,
        }
    }
}

#[derive(Debug, Args)]
pub struct ProduceArgs {
    /// The topic to write to.
    topic: String,
    /// Split each line at the first SEP: the text before is the key, after is the value.
    #[arg(long, value_name = "SEP")]
    key_separator: Option<String>,
    /// When the broker answers: 0 (no wait), 1 (leader wrote it), all (every in-sync replica).
    #[arg(long, value_enum, default_value = "all")]
    acks: AcksArg,
    /// Write every record to this partition (default: by key, or spread when keyless).
    #[arg(short, long)]
    partition: Option<u32>,
    /// Read lines from FILE instead of stdin.
    #[arg(long, value_name = "FILE")]
    file: Option<PathBuf>,
    /// How long a batch waits for more records, in ms.
    #[arg(long, default_value_t = 5)]
    linger_ms: u64,
    /// Compress each batch: none, gzip, snappy, lz4 or zstd (Kafka's
    /// compression.type). Every Eddy reader and Kafka consumer reads them.
    #[arg(long, default_value = "none", value_name = "CODEC")]
    compression: Compression,
}

pub async fn run(args: ProduceArgs, conn: &Connection) -> anyhow::Result<()> {
    let client = connect(conn).await?;
    client.partition_count(&args.topic).await?;
    let config = ProducerConfig {
        acks: args.acks.acks(),
        linger_ms: args.linger_ms,
        compression: args.compression,
        ..ProducerConfig::default()
    };
    let producer = Producer::new(client, config);
    let input: Box<dyn AsyncRead + Unpin + Send> = match &args.file {
        Some(path) => Box::new(
            tokio::fs::File::open(path)
                .await
                .with_context(|| format!("opening {}", path.display()))?,
        ),
        None => Box::new(tokio::io::stdin()),
    };
    let mut lines = BufReader::with_capacity(1 << 20, input);
    let mut line = Vec::new();
    let mut sent = 0u64;
    loop {
        line.clear();
        if lines
            .read_until(b'\n', &mut line)
            .await
            .context("reading input")?
            == 0
        {
            break;
        }
        let text = strip_newline(&line);
        let mut record = split(text, args.key_separator.as_deref());
        record.partition = args.partition;
        producer.send(&args.topic, record).await?;
        sent += 1;
    }
    let result = producer.close().await;
    match (result, args.acks) {
        (Ok(()), AcksArg::None) => eprintln!(
            "sent {sent} record(s) to {} (acks=0: not confirmed)",
            args.topic
        ),
        (Ok(()), _) => eprintln!("produced {sent} record(s) to {}", args.topic),
        (Err(e), _) => bail!("{e}; not every record of the {sent} read was acknowledged"),
    }
    Ok(())
}

fn strip_newline(line: &[u8]) -> &[u8] {
    let line = line.strip_suffix(b"\n").unwrap_or(line);
    line.strip_suffix(b"\r").unwrap_or(line)
}

/// A record from one input line.
fn split(line: &[u8], separator: Option<&str>) -> ProducerRecord {
    if let Some(sep) = separator.map(str::as_bytes).filter(|s| !s.is_empty())
        && let Some(at) = line.windows(sep.len()).position(|w| w == sep)
    {
        return ProducerRecord::key_value(
            Bytes::copy_from_slice(&line[..at]),
            Bytes::copy_from_slice(&line[at + sep.len()..]),
        );
    }
    ProducerRecord::value(Bytes::copy_from_slice(line))
}
