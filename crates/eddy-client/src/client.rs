//! Connections and cluster metadata.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use eddy_proto::v1::{
    DescribeProducerRequest, DescribeProducerTopic, MetadataRequest, MetadataResponse,
    admin_client::AdminClient, cluster_client::ClusterClient, consume_client::ConsumeClient,
    produce_client::ProduceClient,
};
use eddy_proto::{AuthChannel as Channel, ClientTls, Credentials};
use parking_lot::RwLock;
use tonic::transport::Endpoint;

use crate::error::{ClientError, Result};

/// The internal topic of committed offsets (its partition leaders coordinate groups).
pub(crate) const OFFSETS_TOPIC: &str = "__consumer_offsets";

/// How long a call that only a partition's leader can answer keeps
/// looking for a leader that moved (an election takes a few seconds).
const LEADER_SEARCH: Duration = Duration::from_secs(15);

/// Client settings.
#[derive(Debug, Clone)]
pub struct ClientConfig {
    /// Brokers of the cluster as host:port, separated by commas; the client
    /// connects to the first that answers.
    pub bootstrap: String,
    pub connect_timeout_ms: u64,
    /// HTTP/2 pings on every connection this often, idle or not…
    pub keep_alive_interval_ms: u64,
    /// …and a connection whose broker has not answered a ping within this
    /// is closed, failing its calls as retriable: a broker that is paused,
    /// cut off without a reset, or whose answers are lost is given up on
    /// instead of waited for without end.
    pub keep_alive_timeout_ms: u64,
    /// How long one broker may take to answer a call before the client
    /// gives it up as unavailable: one any broker can answer (metadata, a
    /// producer id, admin and catalog calls) is asked of the next broker; a
    /// group coordinator's or a partition leader's call is retried like
    /// any retriable failure. Calls that wait at the broker by design (a
    /// join for its rebalance, a heartbeat for its wait) get that wait on
    /// top. A broker whose connection is healthy but that never answers
    /// holds no call for longer. Uploads are not bounded by it.
    pub request_timeout_ms: u64,
    /// Largest message the client sends.
    pub request_bytes_max: usize,
    /// Largest message the client accepts.
    pub response_bytes_max: usize,
    /// HTTP/2: how much a broker may send on one stream before the client
    /// has read it (several messages, so the next travels while one is decoded).
    pub stream_window_bytes: u32,
    /// HTTP/2: how much all streams of one connection may have unread; this
    /// bounds the memory a connection's responses take.
    pub connection_window_bytes: u32,
    /// TLS to the brokers (their CA, and a client certificate for mutual
    /// TLS); `None` connects in plain text.
    pub tls: Option<ClientTls>,
    /// What every call carries to say who is calling.
    pub credentials: Credentials,
}

impl ClientConfig {
    pub fn new(bootstrap: impl Into<String>) -> ClientConfig {
        ClientConfig {
            bootstrap: bootstrap.into(),
            connect_timeout_ms: 5_000,
            keep_alive_interval_ms: 10_000,
            keep_alive_timeout_ms: 10_000,
            request_timeout_ms: 30_000,
            request_bytes_max: 64 << 20,
            response_bytes_max: 256 << 20,
            stream_window_bytes: 32 << 20,
            connection_window_bytes: 64 << 20,
            tls: None,
            credentials: Credentials::none(),
        }
    }
}

/// A connection to an Eddy cluster; cheap to clone.
#[derive(Debug, Clone)]
pub struct Client {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    config: ClientConfig,
    /// The bootstrap broker this client reached, and the channel to it.
    bootstrap_address: String,
    bootstrap: Channel,
    /// Channels by broker address.
    channels: RwLock<HashMap<String, Channel>>,
    metadata: RwLock<Option<Arc<MetadataResponse>>>,
    /// The broker that last answered a call any broker can answer (the
    /// bootstrap broker until it cannot be reached): asked first next time,
    /// so that a dead bootstrap broker is not tried before every call.
    answering: RwLock<String>,
}

impl Client {
    /// Connects to the first bootstrap broker that answers.
    pub async fn connect(config: ClientConfig) -> Result<Client> {
        let addresses: Vec<&str> = config
            .bootstrap
            .split(',')
            .map(str::trim)
            .filter(|a| !a.is_empty())
            .collect();
        let mut last = None;
        let mut reached = None;
        for address in &addresses {
            match connect(address, &config).await {
                Ok(channel) => {
                    reached = Some((address.to_string(), channel));
                    break;
                }
                Err(e) => last = Some(e),
            }
        }
        let Some((bootstrap_address, bootstrap)) = reached else {
            return Err(last.unwrap_or_else(|| {
                ClientError::Invalid("no bootstrap broker given: pass one or more HOST:PORT".into())
            }));
        };
        Ok(Client {
            inner: Arc::new(Inner {
                config,
                answering: RwLock::new(bootstrap_address.clone()),
                bootstrap_address,
                bootstrap,
                channels: RwLock::new(HashMap::new()),
                metadata: RwLock::new(None),
            }),
        })
    }

    pub fn config(&self) -> &ClientConfig {
        &self.inner.config
    }

    /// The shared control connection to the bootstrap broker.
    pub fn bootstrap_channel(&self) -> Channel {
        self.inner.bootstrap.clone()
    }

    /// The bootstrap broker this client reached.
    pub fn bootstrap_address(&self) -> &str {
        &self.inner.bootstrap_address
    }

    /// What each partition's leader knows of `producer_id`: per partition,
    /// in request order, `Some((epoch, last sequence))` or `None` when it
    /// has no state for it. Only a leader answers (a follower's view may
    /// be behind); a leader that moved is followed for up to
    /// [`LEADER_SEARCH`].
    pub async fn describe_producer(
        &self,
        producer_id: i64,
        partitions: &[(String, u32)],
    ) -> Result<Vec<Option<(i16, i32)>>> {
        let mut out = Vec::with_capacity(partitions.len());
        for (topic, partition) in partitions {
            let deadline = tokio::time::Instant::now() + LEADER_SEARCH;
            let mut backoff = Duration::from_millis(50);
            let known = loop {
                match self
                    .describe_producer_at_leader(producer_id, topic, *partition)
                    .await
                {
                    Err(e) if e.is_retriable() && tokio::time::Instant::now() < deadline => {
                        tracing::debug!(error = %e, topic, partition, "asking the partition's leader again");
                        tokio::time::sleep(backoff).await;
                        backoff = (backoff * 2).min(Duration::from_secs(1));
                        if let Err(e) = self.refresh_metadata(std::slice::from_ref(topic)).await {
                            tracing::debug!(error = %e, "metadata refresh failed");
                        }
                    }
                    other => break other?,
                }
            };
            out.push(known);
        }
        Ok(out)
    }

    async fn describe_producer_at_leader(
        &self,
        producer_id: i64,
        topic: &str,
        partition: u32,
    ) -> Result<Option<(i16, i32)>> {
        let request = DescribeProducerRequest {
            producer_id,
            topics: vec![DescribeProducerTopic {
                topic: topic.to_string(),
                partitions: vec![partition],
            }],
        };
        let channel = self.leader(topic, partition).await?;
        let mut rpc = self.produce_client(channel);
        let asked = rpc.describe_producer(request);
        let response = self.answer_within(Duration::ZERO, asked).await?;
        let state = response
            .partitions
            .into_iter()
            .next()
            .ok_or_else(|| ClientError::Invalid("empty DescribeProducer response".into()))?;
        if let Some(e) = &state.error {
            return Err(ClientError::partition(e));
        }
        Ok(state
            .known
            .then_some((state.producer_epoch as i16, state.last_sequence)))
    }

    pub(crate) fn admin(&self, channel: Channel) -> AdminClient<Channel> {
        AdminClient::new(channel).max_decoding_message_size(self.inner.config.response_bytes_max)
    }

    pub(crate) fn produce_client(&self, channel: Channel) -> ProduceClient<Channel> {
        ProduceClient::new(channel)
            .max_encoding_message_size(self.inner.config.request_bytes_max)
            .max_decoding_message_size(self.inner.config.response_bytes_max)
    }

    pub(crate) fn consume_client(&self, channel: Channel) -> ConsumeClient<Channel> {
        ConsumeClient::new(channel)
            .max_encoding_message_size(self.inner.config.request_bytes_max)
            .max_decoding_message_size(self.inner.config.response_bytes_max)
    }

    /// Fresh metadata for `topics` (all topics when empty), cached for
    /// leader lookups.
    pub async fn refresh_metadata(&self, topics: &[String]) -> Result<Arc<MetadataResponse>> {
        let request = MetadataRequest {
            topics: topics.to_vec(),
            include_internal: false,
        };
        let response = Arc::new(self.metadata_from_any(request).await?);
        if topics.is_empty() {
            *self.inner.metadata.write() = Some(response.clone());
        } else {
            let mut cached = self.inner.metadata.write();
            let mut merged = cached.as_deref().cloned().unwrap_or_default();
            merged.brokers = response.brokers.clone();
            merged.cluster_id = response.cluster_id.clone();
            merged.topics.retain(|t| !topics.contains(&t.name));
            merged.topics.extend(response.topics.iter().cloned());
            *cached = Some(Arc::new(merged));
        }
        Ok(response)
    }

    /// The whole cluster as the bootstrap broker sees it (or, when it
    /// cannot be reached, another broker this client knows of): brokers,
    /// the controller leader, and every topic, internal ones included.
    pub async fn cluster_metadata(&self) -> Result<MetadataResponse> {
        let request = MetadataRequest {
            topics: Vec::new(),
            include_internal: true,
        };
        self.metadata_from_any(request).await
    }

    /// Asks the bootstrap broker, or when it cannot be reached (it died),
    /// the other brokers this client knows of, in turn.
    async fn metadata_from_any(&self, request: MetadataRequest) -> Result<MetadataResponse> {
        let limit = self.inner.config.response_bytes_max;
        self.on_any_broker(|channel| {
            let request = request.clone();
            async move {
                ClusterClient::new(channel)
                    .max_decoding_message_size(limit)
                    .metadata(request)
                    .await
            }
        })
        .await
    }

    /// Makes a call any broker can answer: at the broker that answered
    /// the last such call (at first the bootstrap broker), or when that
    /// cannot be reached (it died) or has not answered within
    /// `request_timeout_ms`, at the other brokers this client knows of, in
    /// turn. The first failure is the one returned when none answers.
    pub(crate) async fn on_any_broker<T, F, Fut>(&self, call: F) -> Result<T>
    where
        F: FnMut(Channel) -> Fut,
        Fut: std::future::Future<Output = std::result::Result<tonic::Response<T>, tonic::Status>>,
    {
        let within = Duration::from_millis(self.inner.config.request_timeout_ms);
        self.on_any_broker_within(Some(within), call).await
    }

    /// [`Client::on_any_broker`] for a call that may take as long as it
    /// must (an upload whose size the caller chose).
    pub(crate) async fn on_any_broker_unbounded<T, F, Fut>(&self, call: F) -> Result<T>
    where
        F: FnMut(Channel) -> Fut,
        Fut: std::future::Future<Output = std::result::Result<tonic::Response<T>, tonic::Status>>,
    {
        self.on_any_broker_within(None, call).await
    }

    async fn on_any_broker_within<T, F, Fut>(
        &self,
        within: Option<Duration>,
        mut call: F,
    ) -> Result<T>
    where
        F: FnMut(Channel) -> Fut,
        Fut: std::future::Future<Output = std::result::Result<tonic::Response<T>, tonic::Status>>,
    {
        let first = self.inner.answering.read().clone();
        let mut others = self.broker_addresses();
        others.retain(|a| *a != first);
        let mut error = None;
        for address in std::iter::once(first).chain(others) {
            let channel = match self.channel_to(&address).await {
                Ok(c) => c,
                Err(e) => {
                    error.get_or_insert(e);
                    continue;
                }
            };
            let answer = match within {
                Some(limit) => match tokio::time::timeout(limit, call(channel)).await {
                    Ok(answer) => answer,
                    Err(_) => {
                        tracing::debug!(%address, "no answer within request_timeout_ms");
                        error.get_or_insert(no_answer(&address, limit));
                        continue;
                    }
                },
                None => call(channel).await,
            };
            match answer {
                Ok(r) => {
                    *self.inner.answering.write() = address;
                    return Ok(r.into_inner());
                }
                Err(status) if unreachable(&status) => {
                    error.get_or_insert(ClientError::from(status));
                }
                Err(status) => return Err(status.into()),
            }
        }
        Err(error.unwrap_or_else(|| ClientError::Invalid("no broker address is known".into())))
    }

    /// Awaits one broker's answer to `call` for at most `request_timeout_ms`
    /// beyond `waits`, how long the call may wait there by design (a join
    /// for its rebalance, a heartbeat for its `wait_ms`); then fails it as
    /// unavailable, which callers retry. A broker that takes a call and
    /// never answers it, while its connection stays healthy (so no
    /// keep-alive gives up on it), holds its caller no longer.
    pub(crate) async fn answer_within<T>(
        &self,
        waits: Duration,
        call: impl std::future::Future<Output = std::result::Result<tonic::Response<T>, tonic::Status>>,
    ) -> Result<T> {
        let limit = waits + Duration::from_millis(self.inner.config.request_timeout_ms);
        match tokio::time::timeout(limit, call).await {
            Ok(answer) => Ok(answer?.into_inner()),
            Err(_) => Err(no_answer("the broker", limit)),
        }
    }

    /// The address of every broker this client knows of: the bootstrap
    /// brokers it was given and those of the cached metadata.
    pub fn broker_addresses(&self) -> Vec<String> {
        let mut addresses: Vec<String> = self
            .inner
            .config
            .bootstrap
            .split(',')
            .map(|a| a.trim().to_string())
            .filter(|a| !a.is_empty())
            .collect();
        addresses.push(self.inner.bootstrap_address.clone());
        if let Some(m) = self.inner.metadata.read().as_ref() {
            addresses.extend(m.brokers.iter().map(|b| b.address.clone()));
        }
        addresses.sort();
        addresses.dedup();
        addresses
    }

    /// Number of partitions of `topic`, from cached metadata if present.
    /// Never 0: a broker answering that a topic has no partitions sent a
    /// malformed answer, which is an error rather than a division by zero
    /// when a record is placed.
    pub async fn partition_count(&self, topic: &str) -> Result<u32> {
        let n = match self.cached_partition_count(topic) {
            Some(n) => n,
            None => {
                self.refresh_metadata(&[topic.to_string()]).await?;
                self.cached_partition_count(topic)
                    .ok_or_else(|| ClientError::Broker {
                        code: eddy_proto::v1::ErrorCode::UnknownTopic,
                        grpc: tonic::Code::NotFound,
                        message: format!(
                            "topic {topic:?} does not exist; create it with `eddy topic create {topic}`"
                        ),
                    })?
            }
        };
        if n == 0 {
            return Err(ClientError::Invalid(format!(
                "the broker's metadata says topic {topic:?} has no partitions, which cannot be; refresh and retry, or check the broker"
            )));
        }
        Ok(n)
    }

    fn cached_partition_count(&self, topic: &str) -> Option<u32> {
        let cached = self.inner.metadata.read();
        let t = cached.as_ref()?.topics.iter().find(|t| t.name == topic)?;
        Some(t.partitions.len() as u32)
    }

    /// The leader of `topic`/`partition` from cached metadata (the broker
    /// that last answered when it is unknown).
    pub fn leader_address(&self, topic: &str, partition: u32) -> String {
        let cached = self.inner.metadata.read();
        cached
            .as_ref()
            .and_then(|m| {
                let t = m.topics.iter().find(|t| t.name == topic)?;
                let leader = t.partitions.get(partition as usize)?.leader;
                Some(
                    m.brokers
                        .iter()
                        .find(|b| b.node_id == leader)?
                        .address
                        .clone(),
                )
            })
            .unwrap_or_else(|| self.inner.answering.read().clone())
    }

    /// The channel to the leader of `topic`/`partition`.
    pub async fn leader(&self, topic: &str, partition: u32) -> Result<Channel> {
        let address = self.leader_address(topic, partition);
        self.channel_to(&address).await
    }

    /// The channel to the coordinator of `group`: the leader of the group's
    /// partition of `__consumer_offsets`, or the broker that last answered
    /// a call any broker can answer while that is unknown.
    pub async fn coordinator(&self, group: &str) -> Result<Channel> {
        let partitions = {
            let cached = self.inner.metadata.read();
            cached
                .as_ref()
                .and_then(|m| m.topics.iter().find(|t| t.name == OFFSETS_TOPIC))
                .map(|t| t.partitions.len() as u32)
        };
        match partitions {
            Some(n) if n > 0 => {
                let p = eddy_log::partitioner::partition_for_key(group.as_bytes(), n);
                self.leader(OFFSETS_TOPIC, p).await
            }
            // No group has been used yet: whichever broker answers
            // creates the offsets topic and names the coordinator.
            _ => {
                let answering = self.inner.answering.read().clone();
                self.channel_to(&answering).await
            }
        }
    }

    /// A new connection of its own to the broker at `address`, for bulk
    /// streams (a producer's or a consumer's). HTTP/2 flow control is per
    /// connection: if bulk data the application has not read yet shared a
    /// connection with control calls (metadata, joins, heartbeats, acks),
    /// those answers could wait behind it forever.
    pub fn dedicated(&self, address: &str) -> Result<Channel> {
        let config = &self.inner.config;
        Ok(config
            .credentials
            .attach(endpoint(address, config)?.connect_lazy()))
    }

    /// The shared control connection to the broker at `address`,
    /// connecting on first use.
    pub async fn channel_to(&self, address: &str) -> Result<Channel> {
        if address == self.inner.bootstrap_address {
            return Ok(self.inner.bootstrap.clone());
        }
        if let Some(c) = self.inner.channels.read().get(address) {
            return Ok(c.clone());
        }
        let channel = connect(address, &self.inner.config).await?;
        self.inner
            .channels
            .write()
            .insert(address.to_string(), channel.clone());
        Ok(channel)
    }
}

/// Whether a failed call means the broker could not be reached. A broker
/// killed a moment ago may still accept a connection and then reset it
/// mid-call, which tonic reports as `Unknown` ("transport error") without
/// an Eddy error code: that counts too, as `ClientError::from` already
/// counts it retriable.
fn unreachable(status: &tonic::Status) -> bool {
    match status.code() {
        tonic::Code::Unavailable | tonic::Code::Cancelled | tonic::Code::DeadlineExceeded => true,
        tonic::Code::Unknown => status
            .metadata()
            .get(eddy_proto::ERROR_CODE_METADATA)
            .is_none(),
        _ => false,
    }
}

/// The retriable failure of a call `who` took and did not answer within
/// `limit`.
fn no_answer(who: &str, limit: Duration) -> ClientError {
    ClientError::Broker {
        code: eddy_proto::v1::ErrorCode::Unavailable,
        grpc: tonic::Code::DeadlineExceeded,
        message: format!(
            "{who} did not answer within request_timeout_ms ({} ms)",
            limit.as_millis()
        ),
    }
}

/// Largest HTTP/2 frame the client accepts (the broker uses the same).
const FRAME_BYTES: u32 = 1 << 20;

/// HTTP/2 settings matching the broker's: big windows and frames so large
/// batches stream without stalls.
async fn connect(address: &str, config: &ClientConfig) -> Result<Channel> {
    let channel = endpoint(address, config)?
        .connect()
        .await
        .map_err(|e| ClientError::Connect {
            address: address.to_string(),
            reason: connect_failure(&e, config),
        })?;
    Ok(config.credentials.attach(channel))
}

/// Why a connection failed, with what to do when TLS is the likely cause.
fn connect_failure(e: &tonic::transport::Error, config: &ClientConfig) -> String {
    let reason = error_chain(e);
    let lower = reason.to_lowercase();
    if config.tls.is_some() && (lower.contains("certificate") || lower.contains("tls")) {
        format!(
            "{reason} (the broker's certificate must be signed by the CA given with --tls-ca or EDDY_TLS_CA, for the host name or IP address you connect to)"
        )
    } else if config.tls.is_none() && lower.contains("connection reset") {
        format!(
            "{reason} (if the broker takes only TLS connections, give its CA with --tls-ca or EDDY_TLS_CA)"
        )
    } else {
        reason
    }
}

fn endpoint(address: &str, config: &ClientConfig) -> Result<Endpoint> {
    let fail = |reason: String| ClientError::Connect {
        address: address.to_string(),
        reason,
    };
    Ok(eddy_proto::link::endpoint(address, config.tls.as_ref())
        .map_err(fail)?
        .connect_timeout(Duration::from_millis(config.connect_timeout_ms))
        .tcp_nodelay(true)
        .initial_stream_window_size(config.stream_window_bytes)
        .initial_connection_window_size(config.connection_window_bytes)
        // Let the broker send megabyte batches in few large DATA frames
        // (the default, 16 KiB, costs ~500 frames per 8 MiB message).
        .max_frame_size(FRAME_BYTES)
        .http2_keep_alive_interval(Duration::from_millis(config.keep_alive_interval_ms))
        .keep_alive_timeout(Duration::from_millis(config.keep_alive_timeout_ms))
        .keep_alive_while_idle(true))
}

fn error_chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut source = e.source();
    while let Some(inner) = source {
        s.push_str(": ");
        s.push_str(&inner.to_string());
        source = inner.source();
    }
    s
}
