//! The stdio, environment, exit and terminal parts of WASI, and the
//! `wasi:io` streams and pollables they hand out: stdin is closed, stdout
//! and stderr go to the host's log, the environment is empty, `exit`
//! traps, and every pollable is ready.

use wasmtime::component::{ComponentType, Linker, Lower, Resource, ResourceType};

use super::{no_dtor, versioned};
use crate::state::{State, Stream};

/// Bytes `check-write` lets the guest write at once.
const WRITE_PERMIT_BYTES: u64 = 4096;

// Host-side resource types; only their identity matters.
struct IoError;
pub(super) struct Pollable;
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

pub(crate) fn add_to_linker(linker: &mut Linker<State>) -> wasmtime::Result<()> {
    io(linker)?;
    streams(linker)?;
    cli(linker)?;
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
    for read in [
        "[method]input-stream.read",
        "[method]input-stream.blocking-read",
    ] {
        streams.func_wrap(read, |_, (_s, _len): (Resource<InputStream>, u64)| {
            Ok((StreamResult::<Vec<u8>>::Err(StreamError::Closed),))
        })?;
    }
    for skip in [
        "[method]input-stream.skip",
        "[method]input-stream.blocking-skip",
    ] {
        streams.func_wrap(skip, |_, (_s, _len): (Resource<InputStream>, u64)| {
            Ok((StreamResult::<u64>::Err(StreamError::Closed),))
        })?;
    }
    streams.func_wrap(
        "[method]input-stream.subscribe",
        |_, (_s,): (Resource<InputStream>,)| Ok((Resource::<Pollable>::new_own(0),)),
    )?;

    streams.func_wrap(
        "[method]output-stream.check-write",
        |_, (_s,): (Resource<OutputStream>,)| Ok((StreamResult::Ok(WRITE_PERMIT_BYTES),)),
    )?;
    for write in [
        "[method]output-stream.write",
        "[method]output-stream.blocking-write-and-flush",
    ] {
        streams.func_wrap(
            write,
            |mut store, (s, bytes): (Resource<OutputStream>, Vec<u8>)| {
                store
                    .data_mut()
                    .output
                    .write(Stream::from_rep(s.rep()), &bytes);
                Ok((StreamResult::Ok(()),))
            },
        )?;
    }
    // Zeroes are not worth logging: accepted and dropped.
    for zeroes in [
        "[method]output-stream.write-zeroes",
        "[method]output-stream.blocking-write-zeroes-and-flush",
    ] {
        streams.func_wrap(zeroes, |_, (_s, _len): (Resource<OutputStream>, u64)| {
            Ok((StreamResult::Ok(()),))
        })?;
    }
    // The only input stream is the closed stdin: nothing to splice.
    for splice in [
        "[method]output-stream.splice",
        "[method]output-stream.blocking-splice",
    ] {
        streams.func_wrap(
            splice,
            |_, (_s, _from, _len): (Resource<OutputStream>, Resource<InputStream>, u64)| {
                Ok((StreamResult::<u64>::Err(StreamError::Closed),))
            },
        )?;
    }
    for flush in [
        "[method]output-stream.flush",
        "[method]output-stream.blocking-flush",
    ] {
        streams.func_wrap(flush, |_, (_s,): (Resource<OutputStream>,)| {
            Ok((StreamResult::Ok(()),))
        })?;
    }
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
