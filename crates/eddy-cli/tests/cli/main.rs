//! End-to-end tests: the real `eddy` binary, real sockets on 127.0.0.1,
//! real files in temporary directories.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod harness;

mod client;
mod groups;
mod grpc;
mod idempotence;
mod proxy;
mod recovery;
mod round_trip;
mod settings;
