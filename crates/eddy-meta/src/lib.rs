//! `eddy-meta`: cluster metadata — brokers, topics, partitions, their
//! replicas, leaders, leader epochs and in-sync replicas.
//!
//! Metadata changes only through [`Command`]s, ordered by an openraft
//! quorum among the voters (one voter for a lone broker) and applied by
//! each: a command is checked against the current [`MetaState`] and then
//! applied; applying is deterministic, so every node that applies the same
//! commands in the same order holds the same state. [`MetaStore::propose`]
//! is the one entry point; `leadership.rs` holds the partition-leadership
//! rules (fencing, election, ISR changes).
//!
//! Architecture invariant: this crate knows nothing about record data,
//! segments or gRPC. It stores topic configs as strings; the broker
//! validates them.

mod catalog;
mod command_log;
mod error;
mod leadership;
pub mod raft;
mod security;
mod state;
mod store;

pub use catalog::{
    NAME_LEN_MAX, PipelineFailure, PipelineId, PipelineMeta, PipelineRunState, ProcessorMeta,
    ProcessorVersion, validate_name,
};
pub use error::{MetaError, Result};
pub use leadership::{AlterIsr, Resign, UNCLEAN_ELECTION_CONFIG};
pub use raft::network::CallFuture;
pub use raft::{Rpc, Transport, TransportError};
pub use security::{
    ANY_PRINCIPAL, Acl, Acls, CLUSTER_RESOURCE, Operation, PatternType, Permission, Quota,
    ResourceType, SCRAM_ITERATIONS_MIN, ScramCredential, Security, TokenMeta, UserMeta,
    validate_user_name,
};
pub use state::{
    BrokerMeta, Command, MetaState, NodeId, Output, PartitionId, PartitionMeta, TopicId, TopicMeta,
    assign_replicas, validate_topic_name,
};
pub use store::{MetaConfig, MetaStore, NoPeers};
