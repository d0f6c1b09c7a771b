//! `eddy processor …`: commands for WebAssembly processors.

use clap::Subcommand;

#[derive(Debug, Subcommand)]
pub enum ProcessorCommand {}

pub fn run(cmd: ProcessorCommand) -> anyhow::Result<()> {
    match cmd {}
}
