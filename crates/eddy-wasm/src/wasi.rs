//! The WASI imports that Rust's `wasm32-wasip2` standard library forces on
//! every component, implemented with no capabilities.
//!
//! A plain `cdylib` built with std imports the stdio streams, environment,
//! exit and terminal interfaces even if it never uses them (std's start-up
//! and panic paths reference them), and `std::collections::HashMap` adds
//! `wasi:random/insecure-seed`. Refusing those would refuse every Rust
//! processor, so the host offers exactly these, and nothing with an
//! effect outside the instance:
//!
//! - stdin is empty (closed); stdout and stderr go to the host's log;
//! - the environment, the arguments and the working directory are empty;
//! - there is no terminal;
//! - `exit` traps;
//! - `insecure-seed` is a constant, so hash maps iterate the same way on
//!   every run;
//! - pollables are always ready (nothing ever blocks).
//!
//! Everything else (filesystem, sockets, clocks, real randomness, HTTP) is
//! refused when the component is loaded; see `crate::validate`. These are
//! hand-written `func_wrap`s rather than `wasmtime-wasi`, which would
//! bring an async runtime and every capability only to switch them off.

use wasmtime::component::{ComponentType, Linker, Lower, Resource, ResourceType};

use crate::state::{State, Stream};

/// The WASI version the shims are registered under. Components importing
/// any `0.2.x` version link against it (wasmtime matches semver-compatible
/// imports).
pub(crate) const WASI_VERSION: &str = "0.2.6";

/// Every interface the shims implement, with the functions in it. A
/// component importing anything else is refused, naming the import.
pub(crate) const SHIMS: &[(&str, &[&str])] = &[
    ("wasi:io/error", &["[method]error.to-debug-string"]),
    (
        "wasi:io/poll",
        &["[method]pollable.ready", "[method]pollable.block", "poll"],
    ),
    (
        "wasi:io/streams",
        &[
            "[method]input-stream.read",
            "[method]input-stream.blocking-read",
            "[method]input-stream.subscribe",
            "[method]output-stream.check-write",
            "[method]output-stream.write",
            "[method]output-stream.blocking-write-and-flush",
            "[method]output-stream.flush",
            "[method]output-stream.blocking-flush",
            "[method]output-stream.subscribe",
        ],
    ),
    (
        "wasi:cli/environment",
        &["get-environment", "get-arguments", "initial-cwd"],
    ),
    ("wasi:cli/exit", &["exit"]),
    ("wasi:cli/stdin", &["get-stdin"]),
    ("wasi:cli/stdout", &["get-stdout"]),
    ("wasi:cli/stderr", &["get-stderr"]),
    ("wasi:cli/terminal-input", &[]),
    ("wasi:cli/terminal-output", &[]),
    ("wasi:cli/terminal-stdin", &["get-terminal-stdin"]),
    ("wasi:cli/terminal-stdout", &["get-terminal-stdout"]),
    ("wasi:cli/terminal-stderr", &["get-terminal-stderr"]),
    ("wasi:random/insecure-seed", &["insecure-seed"]),
];

/// The constant returned by `insecure-seed`.
const INSECURE_SEED: (u64, u64) = (0x6564_6479_7365_6564, 0x0123_4567_89ab_cdef);

/// Bytes `check-write` lets the guest write at once.
const WRITE_PERMIT_BYTES: u64 = 4096;

// Host-side resource types; only their identity matters.
struct IoError;
struct Pollable;
struct InputStream;
struct OutputStream;
struct TerminalInput;
struct TerminalOutput;

/// `wasi:io/streams.stream-error`.
#[derive(ComponentType, Lower)]
#[component(variant)]
enum StreamError {
    #[component(name = "last-operation-failed")]
    #[allow(dead_code)] // never constructed: the shims' writes do not fail
    LastOperationFailed(Resource<IoError>),
    #[component(name = "closed")]
    Closed,
}

type StreamResult<T> = Result<T, StreamError>;

fn versioned(interface: &str) -> String {
    format!("{interface}@{WASI_VERSION}")
}

fn no_dtor<T>(_: wasmtime::StoreContextMut<'_, T>, _: u32) -> wasmtime::Result<()> {
    Ok(())
}

pub(crate) fn add_to_linker(linker: &mut Linker<State>) -> wasmtime::Result<()> {
    io(linker)?;
    streams(linker)?;
    cli(linker)?;
    let mut seed = linker.instance(&versioned("wasi:random/insecure-seed"))?;
    seed.func_wrap("insecure-seed", |_, (): ()| Ok((INSECURE_SEED,)))?;
    Ok(())
}

fn io(linker: &mut Linker<State>) -> wasmtime::Result<()> {
    let mut error = linker.instance(&versioned("wasi:io/error"))?;
    error.resource("error", ResourceType::host::<IoError>(), no_dtor)?;
    error.func_wrap(
        "[method]error.to-debug-string",
        |_, (_e,): (Resource<IoError>,)| Ok((String::new(),)),
    )?;

    let mut poll = linker.instance(&versioned("wasi:io/poll"))?;
    poll.resource("pollable", ResourceType::host::<Pollable>(), no_dtor)?;
    poll.func_wrap(
        "[method]pollable.ready",
        |_, (_p,): (Resource<Pollable>,)| Ok((true,)),
    )?;
    poll.func_wrap(
        "[method]pollable.block",
        |_, (_p,): (Resource<Pollable>,)| Ok(()),
    )?;
    poll.func_wrap("poll", |_, (ps,): (Vec<Resource<Pollable>>,)| {
        // Everything is always ready.
        let ready: Vec<u32> = (0..u32::try_from(ps.len()).unwrap_or(u32::MAX)).collect();
        Ok((ready,))
    })?;
    Ok(())
}

fn streams(linker: &mut Linker<State>) -> wasmtime::Result<()> {
    let mut streams = linker.instance(&versioned("wasi:io/streams"))?;
    streams.resource("input-stream", ResourceType::host::<InputStream>(), no_dtor)?;
    streams.resource(
        "output-stream",
        ResourceType::host::<OutputStream>(),
        no_dtor,
    )?;

    // stdin is closed: every read says so.
    streams.func_wrap(
        "[method]input-stream.read",
        |_, (_s, _len): (Resource<InputStream>, u64)| {
            Ok((StreamResult::<Vec<u8>>::Err(StreamError::Closed),))
        },
    )?;
    streams.func_wrap(
        "[method]input-stream.blocking-read",
        |_, (_s, _len): (Resource<InputStream>, u64)| {
            Ok((StreamResult::<Vec<u8>>::Err(StreamError::Closed),))
        },
    )?;
    streams.func_wrap(
        "[method]input-stream.subscribe",
        |_, (_s,): (Resource<InputStream>,)| Ok((Resource::<Pollable>::new_own(0),)),
    )?;

    streams.func_wrap(
        "[method]output-stream.check-write",
        |_, (_s,): (Resource<OutputStream>,)| Ok((StreamResult::Ok(WRITE_PERMIT_BYTES),)),
    )?;
    streams.func_wrap(
        "[method]output-stream.write",
        |mut store, (s, bytes): (Resource<OutputStream>, Vec<u8>)| {
            store
                .data_mut()
                .output
                .write(Stream::from_rep(s.rep()), &bytes);
            Ok((StreamResult::Ok(()),))
        },
    )?;
    streams.func_wrap(
        "[method]output-stream.blocking-write-and-flush",
        |mut store, (s, bytes): (Resource<OutputStream>, Vec<u8>)| {
            store
                .data_mut()
                .output
                .write(Stream::from_rep(s.rep()), &bytes);
            Ok((StreamResult::Ok(()),))
        },
    )?;
    streams.func_wrap(
        "[method]output-stream.flush",
        |_, (_s,): (Resource<OutputStream>,)| Ok((StreamResult::Ok(()),)),
    )?;
    streams.func_wrap(
        "[method]output-stream.blocking-flush",
        |_, (_s,): (Resource<OutputStream>,)| Ok((StreamResult::Ok(()),)),
    )?;
    streams.func_wrap(
        "[method]output-stream.subscribe",
        |_, (_s,): (Resource<OutputStream>,)| Ok((Resource::<Pollable>::new_own(0),)),
    )?;
    Ok(())
}

fn cli(linker: &mut Linker<State>) -> wasmtime::Result<()> {
    let mut env = linker.instance(&versioned("wasi:cli/environment"))?;
    env.func_wrap("get-environment", |_, (): ()| {
        Ok((Vec::<(String, String)>::new(),))
    })?;
    env.func_wrap("get-arguments", |_, (): ()| Ok((Vec::<String>::new(),)))?;
    env.func_wrap("initial-cwd", |_, (): ()| Ok((None::<String>,)))?;

    let mut exit = linker.instance(&versioned("wasi:cli/exit"))?;
    exit.func_wrap(
        "exit",
        |_, (status,): (Result<(), ()>,)| -> wasmtime::Result<()> {
            Err(wasmtime::Error::new(GuestExit {
                success: status.is_ok(),
            }))
        },
    )?;

    let mut stdin = linker.instance(&versioned("wasi:cli/stdin"))?;
    stdin.func_wrap("get-stdin", |_, (): ()| {
        Ok((Resource::<InputStream>::new_own(0),))
    })?;
    let mut stdout = linker.instance(&versioned("wasi:cli/stdout"))?;
    stdout.func_wrap("get-stdout", |_, (): ()| {
        Ok((Resource::<OutputStream>::new_own(Stream::Stdout.rep()),))
    })?;
    let mut stderr = linker.instance(&versioned("wasi:cli/stderr"))?;
    stderr.func_wrap("get-stderr", |_, (): ()| {
        Ok((Resource::<OutputStream>::new_own(Stream::Stderr.rep()),))
    })?;

    let mut input = linker.instance(&versioned("wasi:cli/terminal-input"))?;
    input.resource(
        "terminal-input",
        ResourceType::host::<TerminalInput>(),
        no_dtor,
    )?;
    let mut output = linker.instance(&versioned("wasi:cli/terminal-output"))?;
    output.resource(
        "terminal-output",
        ResourceType::host::<TerminalOutput>(),
        no_dtor,
    )?;
    // No terminal is attached to anything.
    let mut t = linker.instance(&versioned("wasi:cli/terminal-stdin"))?;
    t.func_wrap("get-terminal-stdin", |_, (): ()| {
        Ok((None::<Resource<TerminalInput>>,))
    })?;
    let mut t = linker.instance(&versioned("wasi:cli/terminal-stdout"))?;
    t.func_wrap("get-terminal-stdout", |_, (): ()| {
        Ok((None::<Resource<TerminalOutput>>,))
    })?;
    let mut t = linker.instance(&versioned("wasi:cli/terminal-stderr"))?;
    t.func_wrap("get-terminal-stderr", |_, (): ()| {
        Ok((None::<Resource<TerminalOutput>>,))
    })?;
    Ok(())
}

/// The trap raised when a guest calls `wasi:cli/exit.exit`.
#[derive(Debug, thiserror::Error)]
#[error("the processor called exit({})", if *success { "ok" } else { "error" })]
pub(crate) struct GuestExit {
    success: bool,
}
