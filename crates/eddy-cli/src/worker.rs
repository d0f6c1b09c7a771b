//! `eddy worker`: a standalone pipeline worker, for more capacity or to
//! keep processors off the brokers' machines. It joins the groups of the
//! running pipelines like the worker inside every broker.

use std::path::PathBuf;

use anyhow::Context;
use clap::Args;
use eddy_pipeline::worker::{Worker, WorkerConfig};

use crate::{Connection, connect};

#[derive(Debug, Args)]
pub struct WorkerArgs {
    /// This worker's id, shown as the owner of the partitions it runs
    /// (default: worker-<host>-<pid>).
    #[arg(long)]
    id: Option<String>,
    /// Keep compiled processors here, so a restart does not compile again
    /// (default: $XDG_CACHE_HOME/eddy/processors, else ~/.cache/eddy/processors).
    #[arg(long, value_name = "DIR")]
    cache_dir: Option<PathBuf>,
    /// A worker silent this long (killed, cut off) is dropped from the
    /// pipelines' groups and its partitions move to other workers.
    #[arg(long, default_value_t = 10_000, value_parser = clap::value_parser!(u32).range(500..=300_000))]
    session_timeout_ms: u32,
    /// Where stateful pipelines keep keyed state that outgrew
    /// spec.limits.stateMiB; emptied as the worker starts, so give each
    /// worker its own (default: eddy-worker-<id>-state in the temporary
    /// directory).
    #[arg(long, value_name = "DIR")]
    state_dir: Option<PathBuf>,
}

pub async fn run(args: WorkerArgs, conn: &Connection) -> anyhow::Result<()> {
    let id = args.id.unwrap_or_else(default_id);
    let cache = args.cache_dir.unwrap_or_else(default_cache_dir);
    let runtime = eddy_wasm::Runtime::new(eddy_pipeline::worker::sandbox_config(Some(cache)))
        .context("starting the processor runtime")?;
    let client = connect(conn).await?;
    let worker = Worker::new(
        client,
        runtime,
        WorkerConfig {
            session_timeout_ms: args.session_timeout_ms,
            state_dir: args
                .state_dir
                .unwrap_or_else(|| std::env::temp_dir().join(format!("eddy-worker-{id}-state"))),
            ..WorkerConfig::new(id.clone())
        },
    );
    let (stop, stopped) = tokio::sync::watch::channel(false);
    let signals = crate::serve::Signals::catch()?;
    let running = tokio::spawn(worker.run(stopped));
    // Tests and scripts wait for this line.
    crate::out::outln!("eddy worker {id} running pipelines from {}", conn.bootstrap);
    signals.wait().await;
    tracing::info!("stopping the worker");
    let _ = stop.send(true);
    running.await.context("the worker failed")?;
    Ok(())
}

fn default_id() -> String {
    let host = std::fs::read_to_string("/etc/hostname")
        .map(|h| h.trim().to_string())
        .unwrap_or_default();
    let host = if host.is_empty() {
        "local".into()
    } else {
        host
    };
    format!("worker-{host}-{}", std::process::id())
}

fn default_cache_dir() -> PathBuf {
    let base = std::env::var_os("XDG_CACHE_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache")))
        .unwrap_or_else(std::env::temp_dir);
    base.join("eddy").join("processors")
}
