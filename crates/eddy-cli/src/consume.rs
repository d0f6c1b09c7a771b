//! `eddy consume TOPIC`: one value per line on stdout.

use std::collections::HashMap;
use std::io::Write;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::bail;
use clap::Args;
use eddy_client::{
    Assignor, Consumer, ConsumerConfig, ErrorCode, GroupConfig, OffsetCommit, RebalanceListener,
    Start, TopicPartition,
};

use crate::{Connection, connect};

#[derive(Debug, Args)]
pub struct ConsumeArgs {
    /// The topic to read.
    topic: String,
    /// Start at the first record still kept (default: only new records).
    #[arg(short = 'B', long)]
    from_beginning: bool,
    /// Read only this partition (default: all).
    #[arg(short, long)]
    partition: Option<u32>,
    /// Start at this offset (needs --partition).
    #[arg(long, requires = "partition")]
    offset: Option<u64>,
    /// Stop after this many records.
    #[arg(short = 'n', long)]
    max_records: Option<u64>,
    /// Stop when nothing new arrived for this many ms (default: follow forever).
    #[arg(long, value_name = "MS")]
    idle_timeout_ms: Option<u64>,
    /// Print each record's key before its value.
    #[arg(long)]
    print_key: bool,
    /// Text between key and value with --print-key.
    #[arg(long, value_name = "SEP", default_value = "\t")]
    key_separator: String,
    /// Print PARTITION:OFFSET and a tab before each record.
    #[arg(long)]
    print_offset: bool,
    /// Print each record's headers, as `name=value` separated by `,`, and a
    /// tab before its key or value (e.g. the error headers of dead letters).
    #[arg(long)]
    print_headers: bool,
    /// Read as a member of this consumer group: the group splits the
    /// partitions among its members and remembers what was printed, so the
    /// next run continues there.
    #[arg(short, long, conflicts_with_all = ["partition", "offset"])]
    group: Option<String>,
    /// How the group spreads partitions (with --group).
    #[arg(
        long,
        value_enum,
        default_value = "cooperative-sticky",
        requires = "group"
    )]
    assignor: AssignorArg,
    /// With --group: the group drops this consumer after this long without
    /// a heartbeat (e.g. when it was killed) and gives its partitions to others.
    #[arg(long, default_value_t = 10_000, requires = "group", value_name = "MS")]
    session_timeout_ms: u32,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum AssignorArg {
    Range,
    RoundRobin,
    CooperativeSticky,
}

/// How often a group consumer commits what it printed.
const COMMIT_INTERVAL: Duration = Duration::from_secs(1);

pub async fn run(args: ConsumeArgs, conn: &Connection) -> anyhow::Result<()> {
    let client = connect(conn).await?;
    let count = client.partition_count(&args.topic).await?;
    let partitions: Vec<u32> = match args.partition {
        Some(p) if p >= count => bail!(
            "topic {:?} has {count} partitions; partition {p} does not exist",
            args.topic
        ),
        Some(p) => vec![p],
        None => (0..count).collect(),
    };
    let start = match (args.offset, args.from_beginning) {
        (Some(o), _) => Start::Offset(o),
        (None, true) => Start::Earliest,
        (None, false) => Start::Latest,
    };
    let reset = match &args.group {
        // A group without a commit starts where -B says.
        Some(_) => Some(if args.from_beginning {
            Start::Earliest
        } else {
            Start::Latest
        }),
        None => None,
    };
    let mut consumer = Consumer::new(
        client,
        ConsumerConfig {
            auto_offset_reset: reset,
            ..ConsumerConfig::default()
        },
    );
    match &args.group {
        Some(group) => {
            let mut config = GroupConfig::new(group);
            config.client_id = format!("eddy-consume-{}", std::process::id());
            config.session_timeout_ms = args.session_timeout_ms;
            // Commit exactly what was printed, not what was fetched.
            config.auto_commit = false;
            config.assignor = match args.assignor {
                AssignorArg::Range => Assignor::Range,
                AssignorArg::RoundRobin => Assignor::RoundRobin,
                AssignorArg::CooperativeSticky => Assignor::CooperativeSticky,
            };
            let printed = Arc::new(Mutex::new(HashMap::new()));
            consumer.set_rebalance_listener(Box::new(CommitPrinted(printed.clone())));
            consumer.subscribe(config, &[&args.topic]).await?;
            return follow(&args, consumer, Some(printed)).await;
        }
        None => {
            for p in partitions {
                consumer.assign(&args.topic, p, start).await?;
            }
        }
    }
    follow(&args, consumer, None).await
}

/// Per assigned partition, the offset to commit: after the last printed
/// record, or where reading started when nothing was printed yet (so the
/// next run of the group continues there too, as Kafka commits positions).
type Printed = Arc<Mutex<HashMap<(Arc<str>, u32), u64>>>;

/// Assigned partitions that polls have not returned anything from yet
/// commit their position, which is still where reading starts. (Those a
/// poll returned records from got an entry then, even if none was printed.)
fn note_starts(consumer: &Consumer, printed: &Printed) {
    let mut p = printed.lock().unwrap_or_else(|e| e.into_inner());
    for (topic, partition) in consumer.assignment() {
        if let Some(start) = consumer.position(&topic, partition) {
            p.entry((topic, partition)).or_insert(start);
        }
    }
}

/// Before the group takes a partition away, commit what was printed from it.
struct CommitPrinted(Printed);

impl RebalanceListener for CommitPrinted {
    fn on_revoked(&mut self, revoked: &[TopicPartition]) -> Vec<OffsetCommit> {
        // Removed, too: later commits must not touch the new owner's partitions.
        let mut printed = self.0.lock().unwrap_or_else(|e| e.into_inner());
        revoked
            .iter()
            .filter_map(|tp| printed.remove(tp).map(|offset| commit(tp, offset)))
            .collect()
    }

    fn on_lost(&mut self, lost: &[TopicPartition]) {
        // Another member may own them already: never commit them again.
        let mut printed = self.0.lock().unwrap_or_else(|e| e.into_inner());
        for tp in lost {
            printed.remove(tp);
        }
    }
}

/// Commits what was printed. A commit the group refuses because it moved on
/// (a rebalance started, or this member was dropped) is not fatal: the next
/// poll rejoins, and whoever reads those partitions next starts from the
/// last accepted commit, so records may repeat but none are skipped.
async fn commit_printed(consumer: &mut Consumer, printed: &Printed) -> anyhow::Result<()> {
    note_starts(consumer, printed);
    match consumer.commit_offsets(commits(printed)).await {
        Err(e)
            if matches!(
                e.code(),
                ErrorCode::IllegalGeneration
                    | ErrorCode::UnknownMember
                    | ErrorCode::RebalanceInProgress
            ) =>
        {
            tracing::warn!(error = %e, "commit refused by the group; rejoining");
            Ok(())
        }
        other => Ok(other?),
    }
}

fn commit(tp: &TopicPartition, offset: u64) -> OffsetCommit {
    OffsetCommit {
        topic: tp.0.clone(),
        partition: tp.1,
        offset,
        metadata: Default::default(),
    }
}

fn commits(printed: &Printed) -> Vec<OffsetCommit> {
    let printed = printed.lock().unwrap_or_else(|e| e.into_inner());
    printed.iter().map(|(tp, &o)| commit(tp, o)).collect()
}

async fn follow(
    args: &ConsumeArgs,
    mut consumer: Consumer,
    printed: Option<Printed>,
) -> anyhow::Result<()> {
    let mut last_commit = Instant::now();
    let stdout = std::io::stdout();
    let mut out = std::io::BufWriter::with_capacity(1 << 16, stdout.lock());
    let mut count = 0u64;
    let mut last_data = Instant::now();
    let idle = args.idle_timeout_ms.map(Duration::from_millis);
    let wait = idle.map_or(Duration::from_millis(500), |d| {
        d.min(Duration::from_millis(500))
    });
    loop {
        if args.max_records.is_some_and(|n| count >= n) {
            break;
        }
        if idle.is_some_and(|d| last_data.elapsed() >= d) {
            break;
        }
        if let Some(p) = &printed
            && last_commit.elapsed() >= COMMIT_INTERVAL
        {
            out.flush().or_else(ignore_broken_pipe)?;
            commit_printed(&mut consumer, p).await?;
            last_commit = Instant::now();
        }
        let fetched = consumer.poll(wait).await?;
        if fetched.is_empty() {
            out.flush().or_else(ignore_broken_pipe)?;
            continue;
        }
        last_data = Instant::now();
        for f in fetched {
            if let Some(p) = &printed {
                let mut p = p.lock().unwrap_or_else(|e| e.into_inner());
                p.entry((f.topic.clone(), f.partition)).or_insert(f.from);
            }
            for r in f.records()? {
                if args.max_records.is_some_and(|n| count >= n) {
                    break;
                }
                let written = (|| -> std::io::Result<()> {
                    if args.print_offset {
                        write!(out, "{}:{}\t", r.partition, r.offset)?;
                    }
                    if args.print_headers {
                        for (i, (name, value)) in r.headers.iter().enumerate() {
                            let sep: &[u8] = if i == 0 { b"" } else { b"," };
                            out.write_all(sep)?;
                            out.write_all(name.as_bytes())?;
                            out.write_all(b"=")?;
                            out.write_all(value)?;
                        }
                        out.write_all(b"\t")?;
                    }
                    if args.print_key {
                        out.write_all(r.key.as_deref().unwrap_or(b""))?;
                        out.write_all(args.key_separator.as_bytes())?;
                    }
                    out.write_all(r.value.as_deref().unwrap_or(b""))?;
                    out.write_all(b"\n")
                })();
                if written.is_err() {
                    return Ok(()); // the reader went away (e.g. `| head`)
                }
                count += 1;
                if let Some(p) = &printed {
                    p.lock()
                        .unwrap_or_else(|e| e.into_inner())
                        .insert((r.topic.clone(), r.partition), r.offset + 1);
                }
            }
        }
    }
    out.flush().or_else(ignore_broken_pipe)?;
    if let Some(p) = &printed {
        commit_printed(&mut consumer, p).await?;
    }
    consumer.close().await?;
    Ok(())
}

fn ignore_broken_pipe(e: std::io::Error) -> std::io::Result<()> {
    if e.kind() == std::io::ErrorKind::BrokenPipe {
        Ok(())
    } else {
        Err(e)
    }
}
