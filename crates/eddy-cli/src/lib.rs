//! `eddy`: one binary for the server (`serve`, `dev`, `worker`, `demo`),
//! the client commands (`topic`, `produce`, `consume`, `group`,
//! `processor`, `pipeline`), and the developer tools (`bench`,
//! `processor test`). Each command lives in its own module; this file only
//! parses the command line and reports errors. A library so that the test
//! suite in `tests/` can build the same command into its own binary.

use std::process::ExitCode;

use clap::{Parser, Subcommand};

pub use connection::{Connection, connect};

mod bench;
mod cluster;
mod connection;
mod consume;
mod demo;
mod dev;
mod group;
mod out;
mod pipeline;
mod processor;
mod produce;
mod security;
mod serve;
mod tls;
mod topic;
mod worker;

/// The address `eddy dev` listens on and client commands use by default.
pub const DEFAULT_ADDRESS: &str = "127.0.0.1:9292";

/// Eddy: a streaming platform with partitioned, replicated logs and
/// WebAssembly processors.
#[derive(Debug, Parser)]
#[command(name = "eddy", version, about, propagate_version = true)]
struct Cli {
    /// Log filter, e.g. `info` or `eddy_broker=debug` (default: `RUST_LOG`, else `info`).
    #[arg(long, global = true, env = "EDDY_LOG")]
    log: Option<String>,
    #[command(flatten)]
    conn: Connection,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run a broker.
    Serve(Box<serve::ServeArgs>),
    /// Run a local broker with development defaults (data in ./.eddy), or
    /// with --nodes 3 a local cluster of three
    Dev(dev::DevArgs),
    /// Run the truck-GPS pipeline end to end on an embedded broker in a
    /// temporary directory: topics, the geofence processor, an exactly-once
    /// pipeline, simulated trucks, and the alerts it finds.
    Demo(demo::DemoArgs),
    /// Run a standalone pipeline worker against a cluster.
    Worker(worker::WorkerArgs),
    /// Show the cluster: brokers, controller, unhealthy partitions.
    #[command(subcommand)]
    Cluster(cluster::ClusterCommand),
    /// Create, list, describe, alter and delete topics.
    #[command(subcommand)]
    Topic(topic::TopicCommand),
    /// Write records read from stdin (or a file), one per line.
    Produce(produce::ProduceArgs),
    /// Print records, one value per line.
    Consume(consume::ConsumeArgs),
    /// List and describe consumer groups; reset their offsets.
    #[command(subcommand)]
    Group(group::GroupCommand),
    /// Measure throughput and latency against a running broker.
    #[command(subcommand)]
    Bench(bench::BenchCommand),
    /// Work with WebAssembly processors: make one in Rust, Python,
    /// JavaScript or TypeScript (new, build), test it locally, or upload,
    /// list and delete them in the cluster.
    #[command(subcommand)]
    Processor(processor::ProcessorCommand),
    /// Apply pipeline manifests; list, describe, pause, resume and delete pipelines.
    #[command(subcommand)]
    Pipeline(pipeline::PipelineCommand),
    /// Create, list and delete users; change their passwords.
    #[command(subcommand)]
    User(security::UserCommand),
    /// Create, list and revoke API tokens.
    #[command(subcommand)]
    Token(security::TokenCommand),
    /// Add, list and remove access control entries.
    #[command(subcommand)]
    Acl(security::AclCommand),
    /// Set and list per-principal quotas.
    #[command(subcommand)]
    Quota(security::QuotaCommand),
    /// Show who the broker takes you to be.
    Whoami,
    /// Make the certificates a cluster with TLS needs.
    #[command(subcommand)]
    Tls(tls::TlsCommand),
}

/// Runs the `eddy` command line on this process's arguments.
pub fn main() -> ExitCode {
    let cli = Cli::parse();
    // Servers, and processors under test (their log lines are the point),
    // log at info by default; client commands only warn; the demo tells
    // its own story and logs only errors. openraft narrates every vote
    // and heartbeat at info, so a server hears only its warnings.
    let level = match &cli.command {
        Command::Serve(_) | Command::Dev(_) => "info,openraft=warn",
        Command::Worker(_) => "info",
        Command::Processor(cmd) if processor::is_local(cmd) => "info",
        Command::Demo(_) => "error",
        _ => "warn",
    };
    init_logging(cli.log.as_deref(), level);
    let result = match cli.command {
        Command::Processor(cmd) if processor::is_local(&cmd) => processor::run_local(cmd),
        Command::Tls(cmd) => tls::run(cmd),
        command => runtime().and_then(|rt| rt.block_on(run_async(command, cli.conn))),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

async fn run_async(command: Command, conn: Connection) -> anyhow::Result<()> {
    match command {
        Command::Serve(args) => serve::serve(*args, &conn).await,
        Command::Dev(args) => dev::dev(args).await,
        Command::Cluster(cmd) => cluster::run(cmd, &conn).await,
        Command::Topic(cmd) => topic::run(cmd, &conn).await,
        Command::Produce(args) => produce::run(args, &conn).await,
        Command::Consume(args) => consume::run(args, &conn).await,
        Command::Group(cmd) => group::run(cmd, &conn).await,
        Command::Bench(cmd) => bench::run(cmd, &conn).await,
        Command::Processor(cmd) => processor::run(cmd, &conn).await,
        Command::Pipeline(cmd) => pipeline::run(cmd, &conn).await,
        Command::Worker(args) => worker::run(args, &conn).await,
        Command::Demo(args) => demo::run(args).await,
        Command::User(cmd) => security::user(cmd, &conn).await,
        Command::Token(cmd) => security::token(cmd, &conn).await,
        Command::Acl(cmd) => security::acl(cmd, &conn).await,
        Command::Whoami => security::whoami(&conn).await,
        Command::Quota(cmd) => security::quota(cmd, &conn).await,
        Command::Tls(cmd) => tls::run(cmd),
    }
}

fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    Ok(tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?)
}

/// Logs at `fallback` unless `--log`, `EDDY_LOG` or `RUST_LOG` says
/// otherwise; client commands default to warnings only, so their stdout
/// and stderr stay clean for scripts.
fn init_logging(filter: Option<&str>, fallback: &str) {
    use tracing_subscriber::EnvFilter;
    let filter = match filter {
        Some(f) => EnvFilter::new(f),
        None => EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(fallback)),
    };
    // Colour only on a terminal: broker logs go to files and pipes too.
    let colour = std::io::IsTerminal::is_terminal(&std::io::stderr());
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(colour)
        .with_writer(std::io::stderr)
        .init();
}

#[cfg(test)]
mod tests {
    /// clap checks the definitions (unique names, valid defaults) only
    /// when a command is parsed; this checks every command at once.
    #[test]
    fn every_command_is_well_formed() {
        use clap::CommandFactory;
        super::Cli::command().debug_assert();
    }
}
