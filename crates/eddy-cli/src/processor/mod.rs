//! `eddy processor …`: commands for WebAssembly processors. `new` and
//! `build` make one from a project in Rust, Python, JavaScript or
//! TypeScript, `test` runs one locally with no broker; the others work
//! with the cluster's registry.

mod builder;

pub(crate) use self::builder::component_at;
pub(crate) use self::project::{Language, write_file};
pub(crate) use self::toolchain::cache_dir;
mod new;
mod project;
mod registry;
mod test;
mod toolchain;

use std::path::PathBuf;

use clap::Subcommand;

pub use self::test::TestArgs;
use crate::Connection;

#[derive(Debug, Subcommand)]
pub enum ProcessorCommand {
    /// Create a processor project: a small working example in the language
    /// chosen, sample records with the outputs they should give, a pipeline
    /// manifest and a README.
    ///
    /// The project builds with `eddy processor build`, which installs the
    /// language's toolchain on first use (componentize-py from PyPI,
    /// componentize-js and TypeScript from npm, or the wasm32-wasip2 target
    /// with rustup), and needs nothing else.
    New(new::NewArgs),
    /// Build a processor project into a WebAssembly component.
    ///
    /// Writes this eddy's SDK and WIT contract into the project, runs the
    /// language's toolchain (installing it into the cache on first use:
    /// EDDY_CACHE_DIR, else ~/.cache/eddy) and prints the path of the
    /// component, DIR/build/NAME.wasm. Nothing is built when neither the
    /// project nor the SDK changed since the last build.
    Build(BuildArgs),
    /// Run a processor locally on sample records and print its outputs.
    ///
    /// Runs FILE.wasm (or a project's component, built first if its sources
    /// changed) on the records in --input, in batches, with the same sandbox
    /// and limits as a pipeline, and prints one JSON line per output record
    /// on stdout. The processor's log messages go to stderr. For a project
    /// directory, --input defaults to its sample.jsonl and --expect to its
    /// expected.jsonl.
    ///
    /// With --expect FILE, compares the outputs with FILE (the same format,
    /// compared as JSON) instead of printing them, and fails on the first
    /// difference.
    ///
    /// Compiled processors are cached by their sha256 (in EDDY_CACHE_DIR,
    /// else ~/.cache/eddy), so an unchanged one starts at once.
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

/// Arguments of `eddy processor build`.
#[derive(Debug, clap::Args)]
pub struct BuildArgs {
    /// The project's directory.
    #[arg(default_value = ".")]
    pub dir: PathBuf,
    /// Build even if nothing changed since the last build.
    #[arg(long)]
    pub force: bool,
}

/// `new`, `build` and `test` need no broker and no async runtime.
pub fn is_local(cmd: &ProcessorCommand) -> bool {
    matches!(
        cmd,
        ProcessorCommand::New(_) | ProcessorCommand::Build(_) | ProcessorCommand::Test(_)
    )
}

pub fn run_local(cmd: ProcessorCommand) -> anyhow::Result<()> {
    match cmd {
        ProcessorCommand::New(args) => new::new(args),
        ProcessorCommand::Build(args) => build(&args),
        ProcessorCommand::Test(args) => test::test(args),
        _ => anyhow::bail!("this processor command needs a broker"),
    }
}

fn build(args: &BuildArgs) -> anyhow::Result<()> {
    let project = project::Project::open(&args.dir)?;
    let wasm = if !args.force && builder::up_to_date(&project)? {
        eprintln!("up to date: nothing changed since the last build (--force builds anyway)");
        project.output()
    } else {
        builder::build(&project)?
    };
    let size = std::fs::metadata(&wasm).map(|m| m.len()).unwrap_or(0);
    // Shown as the user would type it, from where they are.
    let cwd = std::env::current_dir().unwrap_or_default();
    let shown = wasm.strip_prefix(&cwd).unwrap_or(&wasm);
    crate::out::outln!("{} ({:.1} MB)", shown.display(), size as f64 / 1e6);
    Ok(())
}

pub async fn run(cmd: ProcessorCommand, conn: &Connection) -> anyhow::Result<()> {
    match cmd {
        ProcessorCommand::New(_) | ProcessorCommand::Build(_) => run_local(cmd),
        ProcessorCommand::Test(args) => test::test(args),
        ProcessorCommand::Upload(args) => registry::upload(args, conn).await,
        ProcessorCommand::List => registry::list(conn).await,
        ProcessorCommand::Describe { name } => registry::describe(&name, conn).await,
        ProcessorCommand::Delete { name, version } => registry::delete(&name, version, conn).await,
    }
}
