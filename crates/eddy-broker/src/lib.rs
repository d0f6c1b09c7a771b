//! `eddy-broker`: the server side of Eddy.
//!
//! It owns the partitions this broker hosts (each an `eddy-log` log behind a
//! lock, with a leader epoch and a high watermark), the produce and fetch
//! paths, the group coordinator, topic administration on top of
//! `eddy-meta`, and the gRPC services defined in `eddy-proto`. The core
//! ([`Broker`]'s methods) takes and returns the types in [`api`]; gRPC
//! converts to and from them in one module, `grpc`.
//!
//! Architecture invariants: the broker never re-encodes a producer's batch
//! on the hot path (batches arrive as `Bytes` and are written as they are);
//! fetches serve only below the high watermark; every queue and in-flight
//! count has a limit in [`Limits`]; blocking disk I/O runs on tokio's
//! blocking pool. This crate knows nothing about WebAssembly.

pub mod api;
pub mod auth;
mod broker;
mod config;
mod controller;
mod error;
mod fetch;
mod group;
mod grpc;
mod internal;
mod links;
mod liveness;
mod partition;
mod produce;
mod records;
mod replica;
mod replication;
mod server;
mod tls;
mod topics;

pub use broker::{Broker, DATA_DIR_MARKER};
pub use config::{
    BrokerConfig, Limits, PARTITIONS_MAX, ReplicationConfig, TopicConfig, TopicDefaults,
};
pub use error::BrokerError;
pub use group::{GroupConfig, OFFSETS_TOPIC};
pub use grpc::group_description;
pub use internal::{InternalTopic, StoredRecord};
pub use links::Links;
pub use partition::{Partition, PartitionOffsets, Role, StartAt};
pub use server::{
    CONNECTION_WINDOW_BYTES, Connection, Extension, ExtensionFactory, FRAME_BYTES,
    STREAM_WINDOW_BYTES, ServerHandle, start, start_with,
};
pub use tls::{Tls, TlsFiles, common_name, reload_certificates};
pub use topics::{TopicState, Topics};
