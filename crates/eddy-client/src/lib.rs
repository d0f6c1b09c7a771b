//! `eddy-client`: the Rust client for Eddy.
//!
//! - [`Client`]: a connection to a cluster and its metadata (leaders).
//! - [`Producer`]: batching by size and linger, bounded memory, pipelined sends.
//! - [`Consumer`]: partitions assigned by hand or by a consumer group
//!   (cooperative rebalancing, auto or manual commits, a rebalance
//!   listener), one push stream per partition.
//! - [`Admin`]: topics and groups.
//!
//! Architecture invariant: the client knows the wire protocol (`eddy-proto`)
//! and the batch codec (`eddy-log`), never broker internals; keyed records
//! are placed with the same murmur2 partitioner the broker uses.

mod admin;
mod catalog;
mod client;
mod consumer;
mod error;
mod group;
mod member;
mod producer;
mod security;

pub use admin::{Admin, NewTopic};
pub use catalog::{Pipelines, Processors, UPLOAD_CHUNK_BYTES};
pub use client::{Client, ClientConfig};
pub use consumer::{Consumer, ConsumerConfig, ConsumerRecord, Fetched, Start};
pub use eddy_log::Compression;
pub use eddy_proto::v1::{Acks, Assignor, ErrorCode};
pub use eddy_proto::{ClientTls, Credentials};
pub use error::{ClientError, Result};
pub use group::{GroupConfig, OffsetCommit, RebalanceListener, TopicPartition};
pub use member::{Assignment, Committer, GroupMember};
pub use producer::{DeliveryTicket, Producer, ProducerConfig, ProducerRecord};
pub use security::Security;
