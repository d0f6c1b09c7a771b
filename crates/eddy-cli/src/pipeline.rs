//! `eddy pipeline …`: apply manifests and watch pipelines run.

use std::io::Read;
use std::path::PathBuf;

use anyhow::Context;
use clap::Subcommand;
use eddy_client::Pipelines;
use eddy_proto::v1 as pb;

use crate::out::outln;
use crate::{Connection, connect};

#[derive(Debug, Subcommand)]
pub enum PipelineCommand {
    /// Create or update the pipelines of a manifest (YAML, one or more
    /// documents). Everything is checked before anything changes; an
    /// unchanged pipeline is left alone; a changed one continues from its
    /// committed positions. Missing output and dead-letter topics are created.
    Apply {
        /// The manifest (`-` for stdin).
        #[arg(short = 'f', long = "file", value_name = "FILE")]
        file: PathBuf,
    },
    /// List pipelines: name, state, processor@version, delivery, lag.
    List,
    /// Show a pipeline's state, per input partition owner, committed offset
    /// and lag, record counts, and its last error.
    Describe { name: String },
    /// Print the stored manifest as YAML, every default filled in.
    Get { name: String },
    /// Stop consuming; committed positions are kept.
    Pause { name: String },
    /// Run a paused or failed pipeline again (a failed one retries the
    /// record it stopped at).
    Resume { name: String },
    /// Stop the pipeline's tasks and remove it and its consumer group.
    Delete { name: String },
}

pub async fn run(cmd: PipelineCommand, conn: &Connection) -> anyhow::Result<()> {
    let pipelines = Pipelines::new(connect(conn).await?);
    match cmd {
        PipelineCommand::Apply { file } => apply(&pipelines, &file).await,
        PipelineCommand::List => list(&pipelines).await,
        PipelineCommand::Describe { name } => {
            print_description(&pipelines.describe(&name).await?);
            Ok(())
        }
        PipelineCommand::Get { name } => {
            let yaml = pipelines.get(&name).await?;
            outln!("{}", yaml.trim_end());
            Ok(())
        }
        PipelineCommand::Pause { name } => {
            let s = pipelines.pause(&name).await?;
            outln!("pipeline {} paused (state {})", s.name, state(s.state));
            Ok(())
        }
        PipelineCommand::Resume { name } => {
            let s = pipelines.resume(&name).await?;
            outln!("pipeline {} resumed (state {})", s.name, state(s.state));
            Ok(())
        }
        PipelineCommand::Delete { name } => {
            pipelines.delete(&name).await?;
            outln!("deleted pipeline {name}");
            Ok(())
        }
    }
}

async fn apply(pipelines: &Pipelines, file: &PathBuf) -> anyhow::Result<()> {
    let text = if file.as_os_str() == "-" {
        let mut text = String::new();
        std::io::stdin()
            .read_to_string(&mut text)
            .context("reading the manifest from stdin")?;
        text
    } else {
        std::fs::read_to_string(file).with_context(|| format!("reading {}", file.display()))?
    };
    let response = pipelines
        .apply(&text)
        .await
        .with_context(|| format!("applying {}", file.display()))?;
    for r in response.results {
        let what = match pb::ApplyOutcome::try_from(r.outcome) {
            Ok(pb::ApplyOutcome::Created) => "created",
            Ok(pb::ApplyOutcome::Updated) => "updated",
            Ok(pb::ApplyOutcome::Unchanged) => "unchanged (the stored manifest is the same)",
            _ => "applied",
        };
        outln!(
            "pipeline {} {what}: {}@{}",
            r.name,
            r.processor,
            r.processor_version
        );
        for t in r.created_topics {
            outln!("  created topic {t}");
        }
    }
    Ok(())
}

async fn list(pipelines: &Pipelines) -> anyhow::Result<()> {
    outln!(
        "{:<30} {:<9} {:<30} {:<14} {:>10}",
        "NAME",
        "STATE",
        "PROCESSOR",
        "DELIVERY",
        "LAG"
    );
    for s in pipelines.list().await? {
        outln!(
            "{:<30} {:<9} {:<30} {:<14} {:>10}",
            s.name,
            state(s.state),
            format!("{}@{}", s.processor, s.processor_version),
            s.delivery,
            s.lag
        );
    }
    Ok(())
}

pub fn print_description(d: &pb::PipelineDescription) {
    let Some(s) = &d.summary else { return };
    outln!(
        "pipeline {}  state {}  processor {}@{}  delivery {}  lag {}",
        s.name,
        state(s.state),
        s.processor,
        s.processor_version,
        s.delivery,
        s.lag
    );
    if !s.owner.is_empty() {
        outln!("runs as {}", s.owner);
    }
    if let Some(f) = &s.failure {
        outln!("failed at {}", error_line(f));
    }
    let c = d.counters.clone().unwrap_or_default();
    outln!(
        "records in {}  out {}  dead-lettered {}  skipped {}",
        c.records_in,
        c.records_out,
        c.dead_lettered,
        c.skipped
    );
    if c.state_keys > 0 || c.state_bytes > 0 || c.state_restoring > 0 {
        let restoring = if c.state_restoring > 0 {
            format!(
                "  restoring {} task(s), {} changelog records applied so far",
                c.state_restoring, c.state_restored_records
            )
        } else if c.state_restore_ms > 0 {
            format!(
                "  restored from {} changelog records in {} ms",
                c.state_restored_records, c.state_restore_ms
            )
        } else {
            String::new()
        };
        let on_disk = if c.state_tasks_on_disk > 0 {
            format!("  ({} task(s) on disk)", c.state_tasks_on_disk)
        } else {
            String::new()
        };
        outln!(
            "state keys {}  bytes {}{on_disk}{restoring}",
            c.state_keys,
            c.state_bytes
        );
    }
    match (c.watermark_low, c.watermark_high) {
        (Some(low), Some(high)) if low == high => outln!("watermark {}", event_time(low)),
        (Some(low), Some(high)) => outln!(
            "watermark lowest {}  highest {} (one per input partition)",
            event_time(low),
            event_time(high)
        ),
        _ => {}
    }
    if !c.processor.is_empty() {
        let counters: Vec<String> = c
            .processor
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect();
        outln!("processor counters: {}", counters.join(" "));
    }
    let workers = if d.workers.is_empty() {
        "none".to_string()
    } else {
        d.workers.join(", ")
    };
    outln!("group {}  workers {workers}", d.group);
    outln!(
        "{:<30} {:>9} {:<20} {:>12} {:>12} {:>10}",
        "TOPIC",
        "PARTITION",
        "OWNER",
        "COMMITTED",
        "LOG-END",
        "LAG"
    );
    for p in &d.partitions {
        outln!(
            "{:<30} {:>9} {:<20} {:>12} {:>12} {:>10}",
            p.topic,
            p.partition,
            p.owner,
            p.committed.map_or("-".to_string(), |c| c.to_string()),
            p.log_end,
            p.lag
        );
    }
    if let Some(e) = &d.last_error {
        outln!("last error: {}", error_line(e));
    }
}

fn error_line(e: &pb::PipelineError) -> String {
    let at = if e.topic.is_empty() {
        String::new()
    } else {
        format!("{}-{} offset {}: ", e.topic, e.partition, e.offset)
    };
    format!("{at}{} ({})", e.message, e.kind)
}

pub fn state(s: i32) -> &'static str {
    match pb::PipelineState::try_from(s) {
        Ok(pb::PipelineState::Starting) => "starting",
        Ok(pb::PipelineState::Running) => "running",
        Ok(pb::PipelineState::Paused) => "paused",
        Ok(pb::PipelineState::Failed) => "failed",
        _ => "unknown",
    }
}

/// An event time (milliseconds since the Unix epoch) as RFC 3339, to the
/// millisecond; the number itself when it is before the epoch.
fn event_time(ms: i64) -> String {
    match u64::try_from(ms) {
        Ok(ms) => humantime::format_rfc3339_millis(
            std::time::UNIX_EPOCH + std::time::Duration::from_millis(ms),
        )
        .to_string(),
        Err(_) => format!("{ms} ms"),
    }
}
