//! `eddy processor …`: commands for WebAssembly processors. `test` runs
//! one locally with no broker; the others work with the cluster's registry.

mod registry;
mod test;

use clap::Subcommand;

pub use self::test::TestArgs;
use crate::Connection;

#[derive(Debug, Subcommand)]
pub enum ProcessorCommand {
    /// Run a processor locally on sample records and print its outputs.
    ///
    /// Runs FILE.wasm on the records in --input, in batches, with the same
    /// sandbox and limits as a pipeline, and prints one JSON line per output
    /// record on stdout. The processor's log messages go to stderr.
    ///
    /// Input: one JSON object per line; every field is optional:
    ///
    ///   {"key": "truck-1", "value": {"lat": 48.1}, "headers": {"source": "gps"},
    ///    "timestamp": 1700000000000, "topic": "positions", "partition": 0, "offset": 7}
    ///
    /// `value` (and each header value) that is a JSON string is used as its
    /// UTF-8 bytes; any other JSON is used as its compact text; `null` or a
    /// missing value is a tombstone. `key` is a string or null. `timestamp`
    /// defaults to 0, `topic` to "input", `partition` to 0, and `offset` to the
    /// line's position among the records (0, 1, …). Blank lines are skipped.
    ///
    /// Output: one JSON object per line:
    ///
    ///   {"topic": null, "key": "truck-1", "value": {"lat": 48.1}, "headers": {}, "timestamp": null}
    ///
    /// `topic` null means the pipeline's first output topic; `timestamp` null
    /// means the processor left it to the host. `value` is the JSON document when the bytes
    /// are JSON, else a string; bytes that are not UTF-8 are written as hex in
    /// `value_hex` (likewise `key_hex`).
    ///
    /// On a record error or a trap, prints the error with the record that
    /// caused it and exits non-zero; outputs of earlier batches have been
    /// printed by then. After a trap in a batch of several records, the batch
    /// is run again one record at a time to find the record that traps.
    #[command(verbatim_doc_comment)]
    Test(TestArgs),
    /// Upload a processor to the cluster: validated (world, imports, size,
    /// compiles) before it becomes visible, stored as the next version of NAME.
    /// Uploading the same bytes again under the same name changes nothing.
    Upload(registry::UploadArgs),
    /// List processors: name, latest version, sha256 prefix, size, upload time.
    List,
    /// Show every version of a processor and the pipelines using each.
    Describe {
        /// The processor's name.
        name: String,
    },
    /// Delete a processor version, or all versions of a name (refused while
    /// a pipeline uses a version being deleted).
    #[command(disable_version_flag = true)]
    Delete {
        /// The processor's name.
        name: String,
        /// Only this version.
        #[arg(long)]
        version: Option<u32>,
    },
}

/// `test` needs no broker and no async runtime.
pub fn is_local(cmd: &ProcessorCommand) -> bool {
    matches!(cmd, ProcessorCommand::Test(_))
}

pub fn run_local(cmd: ProcessorCommand) -> anyhow::Result<()> {
    match cmd {
        ProcessorCommand::Test(args) => test::test(args),
        _ => anyhow::bail!("this processor command needs a broker"),
    }
}

pub async fn run(cmd: ProcessorCommand, conn: &Connection) -> anyhow::Result<()> {
    match cmd {
        ProcessorCommand::Test(args) => test::test(args),
        ProcessorCommand::Upload(args) => registry::upload(args, conn).await,
        ProcessorCommand::List => registry::list(conn).await,
        ProcessorCommand::Describe { name } => registry::describe(&name, conn).await,
        ProcessorCommand::Delete { name, version } => registry::delete(&name, version, conn).await,
    }
}
