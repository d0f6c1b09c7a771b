//! Several brokers sharing one metadata quorum.

mod controller;
mod dev;
mod groups;
mod links;
use eddy_tests::cluster as harness;
mod pipelines;
mod replication;
