//! End-to-end tests: the real `eddy` binary, real sockets on 127.0.0.1,
//! real files in temporary directories.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod harness;

mod client;
mod cluster;
mod groups;
mod grpc;
mod idempotence;
mod pipelines;
mod processor;
mod proxy;
mod recovery;
mod round_trip;
mod settings;
mod tools;

use std::path::Path;
use std::process::{Command, Output};

/// Runs `eddy` with `args` and returns what it did.
pub fn eddy(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_eddy"))
        .args(args)
        .env_remove("EDDY_LOG")
        .output()
        .unwrap()
}

pub fn stdout(out: &Output) -> String {
    String::from_utf8(out.stdout.clone()).unwrap()
}

pub fn stderr(out: &Output) -> String {
    String::from_utf8(out.stderr.clone()).unwrap()
}

/// Writes `text` to `name` in `dir` and returns its path as a string.
pub fn write(dir: &Path, name: &str, text: &str) -> String {
    let path = dir.join(name);
    std::fs::write(&path, text).unwrap();
    path.to_str().unwrap().to_owned()
}
