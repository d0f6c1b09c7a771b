//! The broker: metadata, hosted partitions and the operations the gRPC
//! services expose.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use eddy_log::{Clock, Offset, ProducerEpoch, ProducerId, SystemClock};
use eddy_meta::{
    BrokerMeta, Command, MetaConfig, MetaState, MetaStore, NodeId, Output, TopicId, TopicMeta,
    assign_replicas, validate_topic_name,
};
use tokio::sync::{Semaphore, watch};

use crate::auth::Authorizer;
use crate::config::{BrokerConfig, PARTITIONS_MAX, TopicConfig};
use crate::controller::GrpcTransport;
use crate::error::BrokerError;
use crate::group::Coordinator;
use crate::links::Links;
use crate::liveness::Liveness;
use crate::partition::Partition;
use crate::replication::Fetchers;
use crate::topics::{TopicState, Topics};

/// File that marks a directory as an Eddy broker's data directory.
pub const DATA_DIR_MARKER: &str = "eddy-broker";

#[derive(Debug)]
pub struct Broker {
    pub config: BrokerConfig,
    pub meta: MetaStore,
    pub topics: Topics,
    /// host:port clients are told to use.
    pub address: String,
    pub(crate) clock: Arc<dyn Clock>,
    pub(crate) produce_permits: Arc<Semaphore>,
    pub(crate) subscription_permits: Arc<Semaphore>,
    pub(crate) groups: Coordinator,
    /// Plain producer ids reserved for this broker: (next, end).
    producer_ids: tokio::sync::Mutex<(i64, i64)>,
    shutdown: watch::Sender<bool>,
    pub(crate) liveness: Liveness,
    pub(crate) fetchers: Fetchers,
    /// How this broker connects to brokers.
    pub links: Links,
    /// Checks every call's credentials and rights.
    pub authorizer: Arc<Authorizer>,
}

/// With `--auth required` the brokers' own calls to each other (and a
/// broker's worker's to it) must prove who they are with the secret they
/// share.
fn with_cluster_secret(config: BrokerConfig) -> Result<BrokerConfig, BrokerError> {
    if config.auth.required && config.auth.cluster_secret.is_none() {
        return Err(BrokerError::InvalidRequest(
            "--auth required needs --cluster-secret-file: a file with the secret every broker of the cluster shares, so that brokers (and this broker's own worker) can prove that they are brokers".into(),
        ));
    }
    Ok(config)
}

/// Plain producer ids reserved per metadata command.
const PRODUCER_ID_BLOCK: u32 = 1000;

impl Broker {
    /// Opens the data directory, replays metadata, opens (and recovers)
    /// every hosted partition and registers this broker.
    pub async fn open(config: BrokerConfig, address: String) -> Result<Arc<Broker>, BrokerError> {
        Broker::open_with_clock(config, address, Arc::new(SystemClock)).await
    }

    /// [`Broker::open`] with the clock given: the seam through which tests
    /// drive time (record timestamps, retention, group expiry).
    pub async fn open_with_clock(
        config: BrokerConfig,
        address: String,
        clock: Arc<dyn Clock>,
    ) -> Result<Arc<Broker>, BrokerError> {
        let topics = {
            let config = config.clone();
            let clock = clock.clone();
            blocking(move || {
                claim_data_dir(&config.data_dir, config.node_id)?;
                Topics::new(
                    &config.data_dir,
                    config.node_id,
                    config.topic_defaults.clone(),
                    clock,
                    // Among other voters, only once rejoined (`start_with`).
                    config.peers.len() <= 1,
                )
            })
            .await?
        };
        let meta_config = MetaConfig {
            node_id: config.node_id,
            voters: config.peers.clone(),
            propose_timeout: Duration::from_secs(15),
        };
        let config = with_cluster_secret(config)?;
        let links = Links::new(&config)?;
        let meta = MetaStore::open(
            &config.data_dir.join("meta"),
            meta_config,
            Arc::new(GrpcTransport::new(links.clone())),
        )
        .await?;
        let broker = Arc::new(Broker {
            produce_permits: Arc::new(Semaphore::new(config.limits.produce_in_flight_max)),
            subscription_permits: Arc::new(Semaphore::new(config.limits.subscriptions_max)),
            shutdown: watch::Sender::new(false),
            groups: Coordinator::new(config.groups.clone()),
            producer_ids: tokio::sync::Mutex::new((0, 0)),
            liveness: Liveness::default(),
            fetchers: Fetchers::default(),
            links,
            authorizer: Arc::new(Authorizer::new(config.auth.clone(), meta.subscribe())),
            config,
            meta,
            topics,
            address,
            clock,
        });
        // A quorum of one leads at once; a broker among other voters joins
        // once its server is up and a majority answers (see `start_with`).
        if broker.config.peers.len() <= 1 {
            broker.register().await?;
        }
        broker.reconcile().await?;
        Ok(broker)
    }

    /// Names the cluster if no broker has yet, and records this broker
    /// (its address) in the metadata.
    pub async fn register(self: &Arc<Self>) -> Result<(), BrokerError> {
        if self.meta.state().cluster_id.is_empty() {
            let name = Command::InitCluster {
                cluster_id: TopicId::random().to_string(),
            };
            // Another broker may have named it meanwhile: that one stands.
            if let Err(e) = self.meta.propose(name).await
                && self.meta.state().cluster_id.is_empty()
            {
                return Err(e.into());
            }
        }
        let me = BrokerMeta {
            id: self.config.node_id,
            address: self.address.clone(),
            kafka_address: self.config.kafka_advertised_address.clone(),
            fenced: false,
        };
        let known = self
            .meta
            .state()
            .brokers
            .get(&me.id)
            .map(|b| (b.address.clone(), b.kafka_address.clone()));
        if known != Some((me.address.clone(), me.kafka_address.clone())) {
            self.meta.propose(Command::RegisterBroker(me)).await?;
        }
        Ok(())
    }

    /// Waits until the ISR of `partition` has everything below `end`.
    pub(crate) async fn replicated(
        &self,
        partition: &Partition,
        end: Offset,
    ) -> Result<(), BrokerError> {
        partition
            .wait_replicated(end, self.config.replication.ack_timeout())
            .await
    }

    /// Brings hosted partitions in line with the current metadata.
    pub(crate) async fn reconcile(self: &Arc<Self>) -> Result<(), BrokerError> {
        let this = self.clone();
        blocking(move || this.topics.reconcile(|| this.meta.state())).await?;
        self.sync_fetchers();
        Ok(())
    }

    /// Tells long-polls and subscriptions to end.
    pub fn begin_shutdown(&self) {
        self.shutdown.send_replace(true);
    }

    pub fn shutdown_signal(&self) -> watch::Receiver<bool> {
        self.shutdown.subscribe()
    }

    /// Where this broker calls broker `id`: the address its own `--peers`
    /// list gives, else the one `id` registered (which clients use). The
    /// two differ when the operator routes broker-to-broker traffic
    /// differently from clients' (a separate network, or a test's proxies).
    pub fn peer_address(&self, id: NodeId, state: &MetaState) -> Option<String> {
        self.config
            .peers
            .get(&id)
            .or_else(|| state.brokers.get(&id).map(|b| &b.address))
            .cloned()
    }

    /// The broker's clock, in milliseconds since the Unix epoch.
    pub fn now_ms(&self) -> i64 {
        self.clock.now_ms()
    }

    /// Flushes every partition to disk and leaves the metadata quorum. A
    /// partition that cannot be flushed (a full or failing disk) does not
    /// stop the others; the first failure is returned, each is logged.
    pub async fn close(self: &Arc<Self>) -> Result<(), BrokerError> {
        self.fetchers.stop_all();
        let this = self.clone();
        let flushed = blocking(move || {
            let mut first = Ok(());
            for p in this.topics.partitions() {
                if let Err(e) = p.flush().map_err(BrokerError::log(&p.topic, p.id)) {
                    tracing::error!(topic = %p.topic, partition = p.id.0, error = %e, "could not flush on shutdown; the next start recovers from what reached the disk");
                    if first.is_ok() {
                        first = Err(e);
                    }
                }
            }
            first
        })
        .await;
        self.meta.shutdown().await;
        flushed
    }

    pub async fn create_topic(
        self: &Arc<Self>,
        name: &str,
        partitions: u32,
        replication_factor: u32,
        configs: BTreeMap<String, String>,
    ) -> Result<Arc<TopicState>, BrokerError> {
        validate_topic_name(name, false)?;
        let defaults = self.topics.defaults();
        let partitions = if partitions == 0 {
            defaults.partitions
        } else {
            partitions
        };
        let rf = if replication_factor == 0 {
            defaults.replication_factor
        } else {
            replication_factor
        };
        check_partition_count(partitions)?;
        TopicConfig::parse(defaults, &configs)?;
        let state = self.meta.state();
        if state.topics.contains_key(name) {
            return Err(BrokerError::TopicExists(name.to_string()));
        }
        let brokers = state.live_brokers();
        let assignment = assign_replicas(&brokers, spread_start(&state), partitions, rf as usize)?;
        let meta = TopicMeta {
            name: name.to_string(),
            id: TopicId::random(),
            configs,
            partitions: assignment,
            internal: false,
        };
        self.meta.propose(Command::CreateTopic(meta)).await?;
        self.reconcile().await?;
        tracing::info!(
            topic = name,
            partitions,
            replication_factor = rf,
            "created topic"
        );
        self.topics.get(name)
    }

    pub async fn create_partitions(
        self: &Arc<Self>,
        name: &str,
        total: u32,
    ) -> Result<Arc<TopicState>, BrokerError> {
        let state = self.meta.state();
        let topic = state.topic(name)?;
        let current = topic.partitions.len() as u32;
        if total <= current {
            return Err(BrokerError::InvalidRequest(format!(
                "topic {name:?} already has {current} partitions; partitions can only be added (ask for more than {current})"
            )));
        }
        check_partition_count(total)?;
        let brokers = state.live_brokers();
        let added = assign_replicas(
            &brokers,
            current,
            total - current,
            topic.replication_factor(),
        )?;
        self.meta
            .propose(Command::CreatePartitions {
                name: name.to_string(),
                partitions: added,
            })
            .await?;
        self.reconcile().await?;
        tracing::info!(topic = name, partitions = total, "added partitions");
        self.topics.get(name)
    }

    /// A producer identity: a fresh id, or for a stable name the same id
    /// with the next epoch (fencing the older ones).
    pub async fn init_producer_id(
        &self,
        stable_name: &str,
    ) -> Result<(ProducerId, ProducerEpoch), BrokerError> {
        if !stable_name.is_empty() {
            let (_, output) = self
                .meta
                .propose_for(Command::InitStableProducer {
                    name: stable_name.to_string(),
                })
                .await?;
            return match output {
                Some(Output::StableProducer { id, epoch }) => {
                    Ok((ProducerId(id), ProducerEpoch(epoch)))
                }
                _ => Err(BrokerError::Internal(
                    "the metadata gave no stable producer id".into(),
                )),
            };
        }
        let mut ids = self.producer_ids.lock().await;
        if ids.0 >= ids.1 {
            let (_, output) = self
                .meta
                .propose_for(Command::AllocateProducerIds {
                    count: PRODUCER_ID_BLOCK,
                })
                .await?;
            let Some(Output::ProducerIds { first }) = output else {
                return Err(BrokerError::Internal(
                    "the metadata gave no producer ids".into(),
                ));
            };
            // The block is the one this command reserved, whatever other
            // brokers reserved after it.
            *ids = (first, first + i64::from(PRODUCER_ID_BLOCK));
        }
        let id = ids.0;
        ids.0 += 1;
        Ok((ProducerId(id), ProducerEpoch(0)))
    }

    pub async fn delete_topic(self: &Arc<Self>, name: &str) -> Result<(), BrokerError> {
        if self.meta.state().topic(name)?.internal {
            return Err(BrokerError::InvalidRequest(format!(
                "{name:?} is an internal topic and cannot be deleted"
            )));
        }
        self.meta
            .propose(Command::DeleteTopic {
                name: name.to_string(),
            })
            .await?;
        self.reconcile().await?;
        tracing::info!(topic = name, "deleted topic");
        Ok(())
    }
}

fn check_partition_count(n: u32) -> Result<(), BrokerError> {
    if n == 0 || n > PARTITIONS_MAX {
        return Err(BrokerError::InvalidRequest(format!(
            "a topic has 1 to {PARTITIONS_MAX} partitions, not {n}"
        )));
    }
    Ok(())
}

/// Runs blocking work (disk I/O) on tokio's blocking pool.
pub(crate) async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, BrokerError> + Send + 'static,
) -> Result<T, BrokerError> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| BrokerError::Internal(format!("blocking task failed: {e}")))?
}

/// Makes sure `dir` is this broker's data directory, creating it if it is
/// missing or empty.
fn claim_data_dir(dir: &Path, node_id: eddy_meta::NodeId) -> Result<(), BrokerError> {
    let fail = |reason: String| {
        BrokerError::InvalidRequest(format!(
            "data directory {} {reason}; point --data-dir at an empty directory or this broker's own",
            dir.display()
        ))
    };
    std::fs::create_dir_all(dir).map_err(|e| fail(format!("cannot be created: {e}")))?;
    let marker = dir.join(DATA_DIR_MARKER);
    let expected = format!("node.id={}\n", node_id.0);
    match std::fs::read_to_string(&marker) {
        Ok(text) if text == expected => Ok(()),
        Ok(text) => Err(fail(format!(
            "belongs to another broker ({}), not node {}",
            text.trim(),
            node_id.0
        ))),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let mut entries =
                std::fs::read_dir(dir).map_err(|e| fail(format!("cannot be read: {e}")))?;
            if entries.next().is_some() {
                return Err(fail(format!(
                    "is not empty and has no {DATA_DIR_MARKER} file, so it is not Eddy's"
                )));
            }
            std::fs::write(&marker, expected).map_err(|e| fail(format!("cannot be written: {e}")))
        }
        Err(e) => Err(fail(format!("cannot be read: {e}"))),
    }
}

/// Where a new topic's first leader goes: after every partition placed so
/// far, so that small topics do not all start on the same broker.
pub(crate) fn spread_start(state: &eddy_meta::MetaState) -> u32 {
    let placed: usize = state.topics.values().map(|t| t.partitions.len()).sum();
    placed as u32
}
