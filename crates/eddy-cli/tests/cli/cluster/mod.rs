//! Several brokers sharing one metadata quorum.

mod controller;
mod groups;
mod harness;
mod pipelines;
mod replication;
