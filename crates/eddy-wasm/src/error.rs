//! What can go wrong when loading and running a processor.

use std::fmt;
use std::io;
use std::path::PathBuf;

/// Why a component could not be compiled, validated or instantiated.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("invalid runtime configuration: {0}")]
    Config(String),
    #[error("could not set up the WebAssembly engine: {0}")]
    Engine(String),
    #[error(
        "the component is {bytes} bytes, more than the limit of {limit}; build it in release mode and strip debug info, or raise component_bytes_max"
    )]
    TooLarge { bytes: usize, limit: usize },
    #[error(
        "not a valid WebAssembly component: {0}; build processors with `cargo build --release --target wasm32-wasip2` (a core module from wasm32-unknown-unknown or wasm32-wasip1 is not a component)"
    )]
    Invalid(String),
    /// The component needs more core instances, memories or tables than a
    /// slot of the instance pool holds. [`crate::Runtime::compile`] then
    /// allocates its instances on demand instead, so a caller sees this
    /// only if that fails too.
    #[error("the component does not fit a slot of the instance pool: {0}")]
    PoolSlot(String),
    /// The component's memory at start is more than an instance may have.
    #[error(
        "the processor needs more memory than its limit of {} (memory_bytes_max) just to start: {detail}",
        bytes_text(*limit_bytes)
    )]
    MemoryLimit { limit_bytes: usize, detail: String },
    /// Every slot of the instance pool is taken.
    #[error(
        "{limit} processor instances already exist in this runtime, its limit (instances_max); drop unused instances or raise instances_max"
    )]
    TooManyInstances { limit: u32 },
    #[error(
        "the component imports {}, which Eddy processors may not use; remove the code that needs it (processors may import only Eddy's host interface and WASI 0.2, whose clocks and randomness answer from the batch and whose files, sockets and HTTP refuse every call)",
        describe(imports)
    )]
    ForbiddenImports { imports: Vec<RefusedImport> },
    #[error(
        "the component does not implement the world eddy:processor/processor@0.2.x: {detail}; build it with the eddy-processor SDK (`eddy_processor::export_processor!`)"
    )]
    WrongWorld { detail: String },
    #[error("the processor refused its parameters: {0}")]
    Init(String),
    #[error("the processor failed while starting (init): {0}")]
    InitTrap(ProcessError),
    #[error("could not create an instance: {0}")]
    Instantiate(String),
    #[error("{op} {}: {source}", path.display())]
    Cache {
        op: &'static str,
        path: PathBuf,
        #[source]
        source: io::Error,
    },
}

/// A limit a component or an instance went past, so that a caller can
/// name its own setting that raises it (a manifest field, a flag).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Limit {
    /// `component_bytes_max`.
    ComponentSize,
    /// `memory_bytes_max`, or an instance's own memory limit.
    Memory,
    /// `instances_max`.
    Instances,
    /// `batch_time_ms_max`, or an instance's own time budget per call.
    Time,
}

impl Error {
    /// The limit this error is about, if it is about one.
    pub fn limit(&self) -> Option<Limit> {
        match self {
            Error::TooLarge { .. } => Some(Limit::ComponentSize),
            Error::MemoryLimit { .. } => Some(Limit::Memory),
            Error::TooManyInstances { .. } => Some(Limit::Instances),
            Error::InitTrap(e) => e.limit(),
            _ => None,
        }
    }
}

/// One import a component may not have, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RefusedImport {
    /// The import's name, e.g. `wasi:filesystem/types@0.2.6`, or
    /// `interface#function` for a function the host does not offer.
    pub import: String,
    /// What the import would give the processor.
    pub reason: String,
}

/// `bytes` in the largest binary unit that keeps it whole, e.g. "64 MiB".
fn bytes_text(bytes: usize) -> String {
    match bytes {
        b if b >= 1 << 20 && b % (1 << 20) == 0 => format!("{} MiB", b >> 20),
        b if b >= 1 << 10 && b % (1 << 10) == 0 => format!("{} KiB", b >> 10),
        b => format!("{b} bytes"),
    }
}

fn describe(imports: &[RefusedImport]) -> String {
    imports
        .iter()
        .map(|r| format!("`{}` ({})", r.import, r.reason))
        .collect::<Vec<_>>()
        .join(", ")
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Why a call to [`crate::Instance::process`] produced no outputs.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ProcessError {
    /// The processor reported that it cannot process one record. The
    /// instance is still usable.
    #[error("record {index} of the batch was refused by the processor: {message}")]
    Record {
        /// Position of the record in the batch passed to `process`.
        index: usize,
        /// The processor's explanation.
        message: String,
    },
    /// The guest trapped: it panicked, ran out of time, memory or stack,
    /// or broke the component ABI. The instance must not be used again:
    /// drop it and instantiate a fresh one.
    #[error("the processor {kind}: {message}")]
    Trap {
        /// What kind of failure.
        kind: TrapKind,
        /// The guest's own message (a panic message, what it wrote to
        /// stderr) or the engine's description of the trap.
        message: String,
    },
    /// This instance trapped in an earlier call and cannot be used again.
    #[error(
        "this processor instance failed earlier and cannot be used again; drop it and instantiate a fresh one"
    )]
    Poisoned,
    /// The batch is larger than the runtime's `batch_records_max`.
    #[error(
        "the batch has {records} records, more than the limit of {limit}; send smaller batches"
    )]
    BatchTooLarge { records: usize, limit: usize },
    /// The batch's keys, values and headers add up to more bytes than the
    /// runtime's `batch_bytes_max`.
    #[error(
        "the batch holds {bytes} bytes of keys, values and headers, more than the limit of {limit} (batch_bytes_max); send smaller batches"
    )]
    BatchBytesTooLarge { bytes: usize, limit: usize },
}

impl ProcessError {
    /// Whether the instance is unusable after this error (drop it and
    /// instantiate a fresh one).
    pub fn is_fatal(&self) -> bool {
        matches!(self, ProcessError::Trap { .. } | ProcessError::Poisoned)
    }

    /// The limit a trap ran into, if it ran into one (time or memory).
    pub fn limit(&self) -> Option<Limit> {
        match self {
            ProcessError::Trap {
                kind: TrapKind::Timeout,
                ..
            } => Some(Limit::Time),
            ProcessError::Trap {
                kind: TrapKind::OutOfMemory,
                ..
            } => Some(Limit::Memory),
            _ => None,
        }
    }
}

/// What kind of trap stopped a processor.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum TrapKind {
    /// The call ran past `batch_time_ms_max`.
    Timeout,
    /// The guest asked for more memory than `memory_bytes_max`.
    OutOfMemory,
    /// The guest recursed past `stack_bytes_max`, or past the end of its
    /// own stack in linear memory.
    StackOverflow,
    /// The guest panicked (Rust) or aborted.
    Panic,
    /// The guest called `exit`.
    Exit,
    /// Any other trap: out-of-bounds access, division by zero, a bad value
    /// across the component boundary, …
    Other,
}

impl fmt::Display for TrapKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            TrapKind::Timeout => "ran out of time",
            TrapKind::OutOfMemory => "ran out of memory",
            TrapKind::StackOverflow => "overflowed its stack",
            TrapKind::Panic => "panicked",
            TrapKind::Exit => "exited",
            TrapKind::Other => "trapped",
        })
    }
}
