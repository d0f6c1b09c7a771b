//! WASI 0.2 for processors, with no capabilities and no nondeterminism.
//!
//! Components built by the usual toolchains import WASI even when the
//! processor never touches it: Rust's `wasm32-wasip2` std imports stdio,
//! the environment and exit; componentize-py's CPython and
//! componentize-js's StarlingMonkey add clocks, randomness, the
//! filesystem, sockets and HTTP. Refusing them would refuse every such
//! processor, so the host links versions that give nothing away:
//!
//! - `stdio`: stdin is empty (closed); stdout and stderr go to the host's
//!   log under the per-call budget; the environment, the arguments and the
//!   working directory are empty; there is no terminal; `exit` traps;
//!   pollables are always ready (nothing ever blocks).
//! - `clocks`: the wall clock reads the timestamp of the batch's last
//!   record (0 during `init`); the monotonic clock stands still.
//! - `random`: a stream seeded from the instance's seed and the batch's
//!   position (topic, partition, first offset), so a replay of the same
//!   batch draws the same numbers; `insecure-seed` is a constant.
//! - `denied`: the filesystem has no preopened directory, sockets cannot
//!   be created and names never resolve, HTTP requests are refused; each
//!   call returns the interface's own "access denied" error.
//!
//! Anything else (interfaces of other packages, or functions of these
//! interfaces that the shims do not implement) is refused when the
//! component is loaded; see `crate::validate`. The shims are hand-written
//! rather than `wasmtime-wasi`, which would bring an async runtime and
//! every capability only to switch them off.

mod clocks;
mod denied;
mod random;
mod stdio;

use wasmtime::component::Linker;

use crate::state::State;

pub(crate) use self::denied::{denied_package, link_denied};
pub(crate) use self::random::CallRandom;
pub(crate) use self::stdio::GuestExit;

/// The WASI version the shims are registered under. Components importing
/// any `0.2.x` version link against it (wasmtime matches semver-compatible
/// imports).
pub(crate) const WASI_VERSION: &str = "0.2.6";

/// Every interface the shims implement, with the functions in it. A
/// component importing a function not listed here from one of these
/// interfaces, or an interface neither here nor in a denied package, is
/// refused.
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
            "[method]input-stream.skip",
            "[method]input-stream.blocking-skip",
            "[method]input-stream.subscribe",
            "[method]output-stream.check-write",
            "[method]output-stream.write",
            "[method]output-stream.blocking-write-and-flush",
            "[method]output-stream.flush",
            "[method]output-stream.blocking-flush",
            "[method]output-stream.subscribe",
            "[method]output-stream.write-zeroes",
            "[method]output-stream.blocking-write-zeroes-and-flush",
            "[method]output-stream.splice",
            "[method]output-stream.blocking-splice",
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
    ("wasi:clocks/wall-clock", &["now", "resolution"]),
    (
        "wasi:clocks/monotonic-clock",
        &[
            "now",
            "resolution",
            "subscribe-instant",
            "subscribe-duration",
        ],
    ),
    (
        "wasi:random/random",
        &["get-random-bytes", "get-random-u64"],
    ),
    (
        "wasi:random/insecure",
        &["get-insecure-random-bytes", "get-insecure-random-u64"],
    ),
    ("wasi:random/insecure-seed", &["insecure-seed"]),
];

fn versioned(interface: &str) -> String {
    format!("{interface}@{WASI_VERSION}")
}

fn no_dtor<T>(_: wasmtime::StoreContextMut<'_, T>, _: u32) -> wasmtime::Result<()> {
    Ok(())
}

/// Links the shims every component may import. The denied interfaces
/// depend on the component (see [`link_denied`]).
pub(crate) fn add_to_linker(linker: &mut Linker<State>) -> wasmtime::Result<()> {
    stdio::add_to_linker(linker)?;
    clocks::add_to_linker(linker)?;
    random::add_to_linker(linker)?;
    Ok(())
}
