//! The harness Eddy's end-to-end and fault suites share: real `eddy`
//! processes on 127.0.0.1 with their own directories and logs, proxies
//! that break the links to them, one seed for every random choice.
#![allow(clippy::unwrap_used, clippy::expect_used)]

pub mod check;
pub mod cluster;
pub mod kafka;
pub mod link;
pub mod pki;
pub mod process;
pub mod proxy;
pub mod rng;
pub mod secured;
pub mod worker;
