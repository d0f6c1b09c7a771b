//! Several brokers sharing one metadata quorum.

mod controller;
mod harness;
mod replication;
