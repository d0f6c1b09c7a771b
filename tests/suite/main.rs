//! End-to-end tests: the real `eddy` binary, real sockets on 127.0.0.1,
//! real files in temporary directories.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod client;
mod cluster;
mod groups;
mod grpc;
mod idempotence;
mod kafka;
mod pipelines;
mod processor;
mod recovery;
mod renewal;
mod round_trip;
mod security;
mod settings;
mod storage;
mod tools;

pub use eddy_tests::process as harness;
pub use eddy_tests::process::{eddy, stderr, stdout, write};
pub use eddy_tests::proxy;
