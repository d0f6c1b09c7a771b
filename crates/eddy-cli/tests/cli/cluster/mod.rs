//! Several brokers sharing one metadata quorum.

mod controller;
mod dev;
mod groups;
mod harness;
mod pipelines;
mod replication;
