//! `eddy group …`

use anyhow::bail;
use clap::{Args, Subcommand};
use eddy_client::{Admin, Consumer, ConsumerConfig, Start};

use crate::out::outln;
use crate::{Connection, connect};

#[derive(Debug, Subcommand)]
pub enum GroupCommand {
    /// List consumer groups.
    List,
    /// Show a group's state, members, and per-partition committed offset, end and lag.
    Describe { group: String },
    /// Move a group's committed offsets (only while the group has no members).
    ResetOffsets(ResetArgs),
}

#[derive(Debug, Args)]
pub struct ResetArgs {
    group: String,
    /// The topic whose offsets to move (all its partitions).
    #[arg(long)]
    topic: String,
    /// To the first offset still kept.
    #[arg(long, group = "to")]
    to_earliest: bool,
    /// To the end: skip everything produced so far.
    #[arg(long, group = "to")]
    to_latest: bool,
    /// To this offset in every partition.
    #[arg(long, group = "to", value_name = "N")]
    to_offset: Option<u64>,
}

pub async fn run(cmd: GroupCommand, conn: &Connection) -> anyhow::Result<()> {
    let client = connect(conn).await?;
    let admin = Admin::new(client.clone());
    match cmd {
        GroupCommand::List => {
            outln!("{:<40} {:<20} {:>7}", "GROUP", "STATE", "MEMBERS");
            for g in admin.list_groups().await? {
                outln!("{:<40} {:<20} {:>7}", g.group_id, g.state, g.members);
            }
        }
        GroupCommand::Describe { group } => {
            let d = admin.describe_group(&group).await?;
            outln!(
                "group {}  state {}  generation {}  members {}",
                d.group_id,
                d.state,
                d.generation,
                d.members.len()
            );
            for m in &d.members {
                let parts: Vec<String> = m
                    .assignment
                    .iter()
                    .flat_map(|t| t.partitions.iter().map(move |p| format!("{}-{p}", t.topic)))
                    .collect();
                outln!(
                    "  member {} ({}): {}",
                    m.member_id,
                    m.client_id,
                    if parts.is_empty() {
                        "idle".to_string()
                    } else {
                        parts.join(", ")
                    }
                );
            }
            outln!(
                "{:<30} {:>9} {:>12} {:>12} {:>10}  OWNER",
                "TOPIC",
                "PARTITION",
                "COMMITTED",
                "LOG-END",
                "LAG"
            );
            for p in &d.partitions {
                let committed = p.committed.map_or("-".to_string(), |c| c.to_string());
                outln!(
                    "{:<30} {:>9} {:>12} {:>12} {:>10}  {}",
                    p.topic,
                    p.partition,
                    committed,
                    p.log_end,
                    p.lag,
                    p.owner
                );
            }
        }
        GroupCommand::ResetOffsets(args) => {
            let to = match (args.to_earliest, args.to_latest, args.to_offset) {
                (true, _, _) => Start::Earliest,
                (_, true, _) => Start::Latest,
                (_, _, Some(n)) => Start::Offset(n),
                _ => bail!("say where to: --to-earliest, --to-latest or --to-offset N"),
            };
            let count = client.partition_count(&args.topic).await?;
            let reader = Consumer::new(client.clone(), ConsumerConfig::default());
            let mut offsets = Vec::new();
            for p in 0..count {
                let offset = match to {
                    // An explicit offset is taken as given, clamped to what the log holds.
                    Start::Offset(n) => {
                        let earliest = reader.resolve(&args.topic, p, Start::Earliest).await?;
                        let latest = reader.resolve(&args.topic, p, Start::Latest).await?;
                        n.clamp(earliest, latest)
                    }
                    other => reader.resolve(&args.topic, p, other).await?,
                };
                offsets.push((args.topic.clone(), p, offset));
            }
            admin
                .set_group_offsets(&args.group, offsets.clone())
                .await?;
            for (t, p, o) in offsets {
                outln!("{t}-{p} -> {o}");
            }
        }
    }
    Ok(())
}
