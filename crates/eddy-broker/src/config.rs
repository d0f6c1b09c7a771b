//! Broker settings. Every limit is named with its unit last.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;

use eddy_log::LogConfig;
use eddy_meta::NodeId;

use crate::auth::AuthConfig;
use crate::error::BrokerError;
use crate::group::GroupConfig;
use crate::tls::TlsFiles;

/// Everything a broker needs to start.
#[derive(Debug, Clone)]
pub struct BrokerConfig {
    pub node_id: NodeId,
    /// Where the broker keeps metadata and partition data.
    pub data_dir: PathBuf,
    /// Address to listen on; port 0 picks a free one.
    pub listen: SocketAddr,
    /// Address clients are told to use (host:port); defaults to the bound address.
    pub advertised_address: Option<String>,
    /// Where Kafka clients reach this broker (host:port), recorded in the
    /// metadata for the others' Kafka Metadata answers; `None`: this
    /// broker has no Kafka listener.
    pub kafka_advertised_address: Option<String>,
    pub limits: Limits,
    pub topic_defaults: TopicDefaults,
    /// How often retention and compaction run over every partition.
    pub retention_check_interval_ms: u64,
    /// Consumer-group coordinator settings.
    pub groups: GroupConfig,
    /// Every voter of the metadata quorum, this broker included, and the
    /// address it listens on; empty: this broker is the only voter.
    pub peers: BTreeMap<NodeId, String>,
    /// Liveness and partition replication.
    pub replication: ReplicationConfig,
    /// TLS on the listener and on links to other brokers; `None`: plain text.
    pub tls: Option<TlsFiles>,
    /// Authentication and ACLs.
    pub auth: AuthConfig,
}

/// How brokers watch each other and copy partitions.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReplicationConfig {
    /// A broker that has not heartbeated the controller for this long is
    /// fenced: its partitions get new leaders (Kafka's
    /// broker.session.timeout.ms). It also stops taking writes itself
    /// once its own heartbeats have failed this long.
    pub broker_session_timeout_ms: u64,
    /// How often a broker heartbeats the controller leader.
    pub broker_heartbeat_interval_ms: u64,
    /// A follower that has not caught up for this long leaves the ISR
    /// (Kafka's replica.lag.time.max.ms).
    pub replica_lag_time_max_ms: u64,
    /// Longest an acks=all write waits for the ISR before the producer is
    /// told to retry.
    pub ack_timeout_ms: u64,
    /// Longest a leader holds a follower's fetch open while it has nothing new.
    pub replica_fetch_wait_ms_max: u64,
    /// Largest answer to one follower fetch, all partitions together.
    pub replica_fetch_bytes_max: usize,
    /// Largest share of it for one partition.
    pub replica_fetch_partition_bytes_max: usize,
}

impl Default for ReplicationConfig {
    fn default() -> Self {
        ReplicationConfig {
            broker_session_timeout_ms: 6_000,
            broker_heartbeat_interval_ms: 500,
            replica_lag_time_max_ms: 30_000,
            ack_timeout_ms: 30_000,
            replica_fetch_wait_ms_max: 500,
            replica_fetch_bytes_max: 16 << 20,
            replica_fetch_partition_bytes_max: 4 << 20,
        }
    }
}

impl ReplicationConfig {
    pub fn ack_timeout(&self) -> std::time::Duration {
        std::time::Duration::from_millis(self.ack_timeout_ms)
    }
}

impl BrokerConfig {
    /// A broker with default settings.
    pub fn new(node_id: NodeId, data_dir: PathBuf, listen: SocketAddr) -> BrokerConfig {
        BrokerConfig {
            node_id,
            data_dir,
            listen,
            advertised_address: None,
            kafka_advertised_address: None,
            limits: Limits::default(),
            topic_defaults: TopicDefaults::default(),
            retention_check_interval_ms: 30_000,
            groups: GroupConfig::default(),
            peers: BTreeMap::new(),
            replication: ReplicationConfig::default(),
            tls: None,
            auth: AuthConfig::default(),
        }
    }
}

/// Bounds on what clients can make the broker hold.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Limits {
    /// Largest gRPC request message accepted.
    pub request_bytes_max: usize,
    /// Produce requests being written at once (acks=0 ones included);
    /// more wait, which pushes back on producers.
    pub produce_in_flight_max: usize,
    /// Largest fetch response.
    pub fetch_bytes_max: usize,
    /// Per-partition fetch size when the request names none.
    pub fetch_partition_bytes_default: usize,
    /// Longest a fetch long-poll may wait.
    pub fetch_wait_ms_max: u64,
    /// Subscribe streams open at once.
    pub subscriptions_max: usize,
    /// Messages a Subscribe stream buffers before it waits for the client.
    pub subscription_buffer_max: usize,
    /// Requests a ProduceStream may have queued ahead of the one being written.
    pub produce_stream_queue_max: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            request_bytes_max: 64 << 20,
            produce_in_flight_max: 64,
            fetch_bytes_max: 64 << 20,
            fetch_partition_bytes_default: 1 << 20,
            fetch_wait_ms_max: 30_000,
            subscriptions_max: 1024,
            subscription_buffer_max: 4,
            produce_stream_queue_max: 16,
        }
    }
}

/// Settings for topics that do not set their own.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TopicDefaults {
    pub partitions: u32,
    pub replication_factor: u32,
    pub min_insync_replicas: u32,
    /// Log settings (segment size, retention, fsync policy, …).
    pub log: LogConfig,
}

impl Default for TopicDefaults {
    fn default() -> Self {
        TopicDefaults {
            partitions: 1,
            replication_factor: 1,
            min_insync_replicas: 1,
            log: LogConfig::default(),
        }
    }
}

/// Largest partition count a topic may have.
pub const PARTITIONS_MAX: u32 = 10_000;

/// A topic's effective settings: the defaults overridden by its configs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TopicConfig {
    pub log: LogConfig,
    pub min_insync_replicas: u32,
}

impl TopicConfig {
    /// Applies `configs` (Kafka-style keys) over `defaults`; an unknown key
    /// or a bad value is refused with the valid choices.
    pub fn parse(
        defaults: &TopicDefaults,
        configs: &BTreeMap<String, String>,
    ) -> Result<TopicConfig, BrokerError> {
        let mut config = TopicConfig {
            log: defaults.log.clone(),
            min_insync_replicas: defaults.min_insync_replicas,
        };
        for (key, value) in configs {
            if key == "min.insync.replicas" {
                config.min_insync_replicas = value
                    .trim()
                    .parse()
                    .ok()
                    .filter(|&v| v >= 1)
                    .ok_or_else(|| {
                        BrokerError::InvalidRequest(format!(
                            "min.insync.replicas={value:?} is not valid: expected an integer ≥ 1"
                        ))
                    })?;
                continue;
            }
            if key == eddy_meta::UNCLEAN_ELECTION_CONFIG {
                // Read by the controller; only the spelling is checked here.
                if value != "true" && value != "false" {
                    return Err(BrokerError::InvalidRequest(format!(
                        "{key}={value:?} is not valid: expected true or false"
                    )));
                }
                continue;
            }
            config.log.set(key, value).map_err(|e| {
                BrokerError::InvalidRequest(format!(
                    "{e} (also known: min.insync.replicas, {})",
                    eddy_meta::UNCLEAN_ELECTION_CONFIG
                ))
            })?;
        }
        config
            .log
            .validate()
            .map_err(|e| BrokerError::InvalidRequest(e.to_string()))?;
        Ok(config)
    }
}
