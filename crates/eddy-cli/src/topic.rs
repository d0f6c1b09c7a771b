//! `eddy topic …`

use std::collections::HashMap;

use anyhow::bail;
use clap::Subcommand;
use eddy_client::{Admin, NewTopic};

use crate::out::outln;
use crate::{Connection, connect};

#[derive(Debug, Subcommand)]
pub enum TopicCommand {
    /// Create a topic.
    Create {
        name: String,
        /// Number of partitions (default: the broker's default).
        #[arg(short, long, default_value_t = 0, hide_default_value = true)]
        partitions: u32,
        /// Replicas per partition (default: the broker's default).
        #[arg(short = 'r', long, default_value_t = 0, hide_default_value = true)]
        replication_factor: u32,
        /// Topic config as KEY=VALUE, e.g. retention.ms=86400000,
        /// cleanup.policy=compact, segment.bytes=…; repeatable.
        #[arg(long = "config", value_name = "KEY=VALUE")]
        configs: Vec<String>,
    },
    /// List topics.
    List {
        /// Include internal topics (names starting with "__").
        #[arg(long)]
        internal: bool,
    },
    /// Show a topic's partitions, leaders and offsets.
    Describe { name: String },
    /// Grow a topic to more partitions.
    Alter {
        name: String,
        /// The new total number of partitions.
        #[arg(long)]
        partitions: u32,
    },
    /// Delete a topic and all its data.
    Delete { name: String },
}

pub async fn run(cmd: TopicCommand, conn: &Connection) -> anyhow::Result<()> {
    let admin = Admin::new(connect(conn).await?);
    match cmd {
        TopicCommand::Create {
            name,
            partitions,
            replication_factor,
            configs,
        } => {
            let configs = parse_configs(&configs)?;
            let t = admin
                .create_topic(NewTopic {
                    name,
                    partitions,
                    replication_factor,
                    configs,
                })
                .await?;
            outln!(
                "created topic {} with {} partition(s), replication factor {}",
                t.name,
                t.partitions.len(),
                t.replication_factor
            );
        }
        TopicCommand::List { internal } => {
            let topics = admin.list_topics(internal).await?;
            outln!("{:<40} {:>10} {:>4}", "TOPIC", "PARTITIONS", "RF");
            for t in topics {
                outln!(
                    "{:<40} {:>10} {:>4}",
                    t.name,
                    t.partitions,
                    t.replication_factor
                );
            }
        }
        TopicCommand::Describe { name } => {
            let t = admin.describe_topic(&name).await?;
            outln!(
                "topic {}  id {}  partitions {}  replication factor {}",
                t.name,
                t.topic_id,
                t.partitions.len(),
                t.replication_factor
            );
            let mut configs: Vec<_> = t.configs.iter().collect();
            configs.sort();
            for (k, v) in configs {
                outln!("  {k}={v}");
            }
            outln!(
                "{:>9} {:>6} {:>5} {:>10} {:>10} {:>12} {:>12} {:>12} {:>12}",
                "PARTITION",
                "LEADER",
                "EPOCH",
                "REPLICAS",
                "ISR",
                "START",
                "HIGH-WATER",
                "END",
                "BYTES"
            );
            for p in t.partitions {
                let list = |v: &[i32]| v.iter().map(i32::to_string).collect::<Vec<_>>().join(",");
                outln!(
                    "{:>9} {:>6} {:>5} {:>10} {:>10} {:>12} {:>12} {:>12} {:>12}",
                    p.partition,
                    p.leader,
                    p.leader_epoch,
                    list(&p.replicas),
                    list(&p.isr),
                    p.log_start_offset,
                    p.high_watermark,
                    p.log_end_offset,
                    p.size_bytes
                );
            }
        }
        TopicCommand::Alter { name, partitions } => {
            let t = admin.create_partitions(&name, partitions).await?;
            outln!("topic {} now has {} partitions", t.name, t.partitions.len());
        }
        TopicCommand::Delete { name } => {
            admin.delete_topic(&name).await?;
            outln!("deleted topic {name}");
        }
    }
    Ok(())
}

fn parse_configs(items: &[String]) -> anyhow::Result<HashMap<String, String>> {
    let mut out = HashMap::new();
    for item in items {
        let Some((k, v)) = item.split_once('=') else {
            bail!("--config {item:?} is not KEY=VALUE (e.g. --config retention.ms=3600000)");
        };
        out.insert(k.trim().to_string(), v.trim().to_string());
    }
    Ok(out)
}
