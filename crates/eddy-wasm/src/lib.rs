//! `eddy-wasm`: Eddy's host for WebAssembly stream processors.
//!
//! A processor is a component implementing the `processor` world of
//! `wit/processor.wit`. [`Runtime::compile`] validates a component (it may
//! import only the `host` interface and the WASI 0.2 interfaces language
//! runtimes need, which the host links with no capability and answers
//! deterministically; it must export `init` and `process`), compiles it
//! (or loads the compilation from the cache, keyed by sha256 and engine
//! settings) and pre-links it. [`Processor::instantiate`] creates a
//! sandboxed [`Instance`] cheaply from the pool (or on demand, for a
//! component too big for a pool slot); [`Instance::process`] runs one
//! batch per call.
//!
//! Each instance has its own linear-memory cap, time budget per call
//! (epoch interruption), wasm stack cap, and bounded log output. A trap
//! (panic, timeout, out of memory, stack overflow) poisons only that
//! instance; the caller drops it and instantiates a fresh one.
//!
//! Architecture invariants: this crate knows nothing about topics' storage,
//! consumer groups, the broker or gRPC; it maps records in to records out.
//! The guest gets no ambient clock, randomness, filesystem, network or
//! environment: WASI's clocks and randomness answer from the batch, its
//! files, sockets and HTTP refuse. Floating-point NaNs are canonicalised,
//! so the same input gives the same output bytes on every run and machine.

mod cache;
mod config;
mod error;
mod instance;
mod keyed_state;
mod record;
mod runtime;
mod state;
mod validate;
mod wasi;

pub use config::{Config, EPOCH_TICK_MS};
pub use eddy_log::{Offset, Timestamp};
pub use error::{Error, Limit, ProcessError, RefusedImport, Result, TrapKind};
pub use instance::{Instance, InstanceConfig, Processor};
pub use keyed_state::{
    MemoryState, SCAN_ENTRIES_MAX, STATE_KEY_BYTES_MAX, STATE_VALUE_BYTES_MAX, StateBackend,
    StateChange, StateSession, scan_start,
};
pub use record::{Header, InputRecord, OutputRecord};
pub use runtime::{Digest, Runtime};

/// Host bindings generated from `wit/processor.wit`: borrowed types for
/// records going into the guest, owned ones for records coming out.
#[allow(
    unsafe_code,
    missing_debug_implementations,
    elided_lifetimes_in_paths,
    unused_variables,
    clippy::all
)]
mod bindings {
    wasmtime::component::bindgen!({
        path: "../../wit",
        world: "eddy:processor/processor@0.2.1",
        ownership: Borrowing { duplicate_if_necessary: true },
    });
}
