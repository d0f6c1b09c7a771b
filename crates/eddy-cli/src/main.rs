//! `eddy`: one binary for the server (`serve`, `dev`), the client commands
//! (`topic`, `produce`, `consume`, …) and the developer tools (`processor
//! test`, `bench`). Each command lives in its own module; this file only
//! parses the command line and reports errors.

use std::process::ExitCode;

use clap::{Parser, Subcommand};

mod processor;

/// Eddy: a streaming platform with partitioned, replicated logs and
/// WebAssembly processors.
#[derive(Debug, Parser)]
#[command(name = "eddy", version, about, propagate_version = true)]
struct Cli {
    /// Log filter, e.g. `info` or `eddy_broker=debug` (default: `RUST_LOG`, else `info`).
    #[arg(long, global = true, env = "EDDY_LOG")]
    log: Option<String>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Work with WebAssembly processors.
    #[command(subcommand)]
    Processor(processor::ProcessorCommand),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    init_logging(cli.log.as_deref());
    let result = match cli.command {
        Command::Processor(cmd) => processor::run(cmd),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn init_logging(filter: Option<&str>) {
    use tracing_subscriber::EnvFilter;
    let filter = match filter {
        Some(f) => EnvFilter::new(f),
        None => EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info")),
    };
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .init();
}
