//! `eddy-kafka`: Kafka's wire protocol over Eddy's broker core, so that
//! Kafka clients (librdkafka, the Java client, kafka-python, kcat) produce
//! to and consume from Eddy unchanged.
//!
//! Messages are encoded and decoded by the `kafka-protocol` crate
//! (generated from Kafka's own schemas); framing, version negotiation and
//! the request loop are here. Every request becomes calls of the broker
//! core's methods with its `api` types, exactly as gRPC's do, so both
//! protocols see one broker state. Stored batches are Kafka v2 record
//! batches already: produce hands the client's batch bytes to the core and
//! fetch hands stored bytes back, neither re-encoded.
//!
//! The modules, one job each: `frame.rs` (length-prefixed frames, with a
//! size limit), `versions.rs` (the APIs and versions served, and
//! ApiVersions), `connection.rs` (one connection's request loop: header,
//! version check, dispatch, answer in order), `errors.rs` (`BrokerError` to
//! Kafka error codes), and for the requests themselves `metadata.rs`
//! (with DescribeCluster), `produce.rs` (with InitProducerId), `fetch.rs`
//! (with ListOffsets and OffsetForLeaderEpoch),
//! `groups.rs` (the classic group protocol, OffsetCommit, OffsetFetch),
//! `group_admin.rs` (ListGroups, DescribeGroups), `admin.rs`
//! (CreateTopics, CreatePartitions, DeleteTopics), `configs.rs`
//! (DescribeConfigs) and `sasl.rs` (signing in with SCRAM-SHA-256 or
//! PLAIN).
//!
//! Architecture invariants: a request is answered, or its connection
//! closed with a warning saying why, never dropped silently; a malformed
//! frame closes only its own connection; every connection has one request
//! in flight (as Kafka brokers do: responses keep their order), and the
//! number of connections and the size of a frame are bounded; every
//! topic a request names is checked against the ACLs through the broker's
//! one `Authorizer`.

mod admin;
mod configs;
mod connection;
mod errors;
mod fetch;
mod frame;
mod group_admin;
mod groups;
mod metadata;
mod produce;
mod sasl;
mod versions;

use std::net::SocketAddr;
use std::sync::Arc;

use eddy_broker::{Broker, Tls};
use tokio::net::TcpListener;
use tokio::sync::{Semaphore, watch};
use tokio::task::JoinHandle;

/// How the Kafka listener behaves.
#[derive(Debug, Clone)]
pub struct KafkaConfig {
    /// Largest request frame accepted; a larger one closes its connection
    /// (Kafka's `socket.request.max.bytes`).
    pub frame_bytes_max: usize,
    /// Connections served at once; more are closed as they arrive.
    pub connections_max: usize,
    /// Create a topic a client's Metadata request names that does not
    /// exist, with the broker's default partitions and replication factor
    /// (Kafka's `auto.create.topics.enable`).
    pub auto_create_topics: bool,
}

impl Default for KafkaConfig {
    fn default() -> Self {
        KafkaConfig {
            frame_bytes_max: 100 << 20,
            connections_max: 10_000,
            auto_create_topics: false,
        }
    }
}

/// What every connection shares.
#[derive(Debug)]
pub(crate) struct Shared {
    pub broker: Arc<Broker>,
    pub config: KafkaConfig,
    /// TLS, when the broker has a certificate: then every Kafka
    /// connection is TLS too (Kafka's SSL and SASL_SSL).
    pub tls: Option<Tls>,
    /// SASL/PLAIN is offered (over TLS, or on loopback, where its
    /// clear-text password cannot be overheard).
    pub plain_allowed: bool,
}

/// A running Kafka listener.
#[derive(Debug)]
pub struct KafkaListener {
    pub local_addr: SocketAddr,
    stop: watch::Sender<bool>,
    task: JoinHandle<()>,
    reload: Option<JoinHandle<()>>,
}

impl KafkaListener {
    /// Serves Kafka clients on `listener` until [`KafkaListener::stop`].
    pub fn start(
        listener: TcpListener,
        broker: Arc<Broker>,
        config: KafkaConfig,
    ) -> std::io::Result<KafkaListener> {
        let local_addr = listener.local_addr()?;
        let tls = match &broker.config.tls {
            Some(files) => Some(Tls::for_kafka(files).map_err(std::io::Error::other)?),
            None => None,
        };
        let reload = tls
            .clone()
            .map(|t| tokio::spawn(eddy_broker::reload_certificates(t)));
        let (stop, stopped) = watch::channel(false);
        let shared = Arc::new(Shared {
            broker,
            config,
            plain_allowed: tls.is_some() || local_addr.ip().is_loopback(),
            tls,
        });
        let task = tokio::spawn(accept(listener, shared, stopped));
        tracing::info!(%local_addr, "Kafka listener started");
        Ok(KafkaListener {
            local_addr,
            stop,
            task,
            reload,
        })
    }

    /// Stops accepting and closes every connection after the request it
    /// is serving.
    pub async fn stop(self) {
        self.stop.send_replace(true);
        let _ = self.task.await;
        if let Some(reload) = self.reload {
            reload.abort();
        }
    }
}

async fn accept(listener: TcpListener, shared: Arc<Shared>, mut stopped: watch::Receiver<bool>) {
    let permits = Arc::new(Semaphore::new(shared.config.connections_max));
    let mut connections = tokio::task::JoinSet::new();
    loop {
        let accepted = tokio::select! {
            a = listener.accept() => a,
            _ = stopped.changed() => break,
        };
        let (stream, peer) = match accepted {
            Ok(a) => a,
            Err(e) => {
                tracing::warn!(error = %e, "Kafka listener: accept failed");
                tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                continue;
            }
        };
        let Ok(permit) = permits.clone().try_acquire_owned() else {
            tracing::warn!(%peer, limit = shared.config.connections_max, "Kafka listener: too many connections; closing the new one");
            continue;
        };
        let _ = stream.set_nodelay(true);
        let shared = shared.clone();
        let stopped = stopped.clone();
        connections.spawn(async move {
            match shared.tls.clone() {
                None => connection::serve(stream, peer, None, shared, stopped).await,
                Some(tls) => {
                    if let Some((stream, name)) = handshake(&tls, stream, peer).await {
                        connection::serve(stream, peer, name, shared, stopped).await;
                    }
                }
            }
            drop(permit);
        });
        // Reap finished connections so the set does not grow.
        while connections.try_join_next().is_some() {}
    }
    while connections.join_next().await.is_some() {}
}

/// How long a connection may take to send its first byte and finish TLS.
const HANDSHAKE_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);
/// The first byte a TLS client sends (a handshake record).
const TLS_HANDSHAKE_RECORD: u8 = 0x16;

/// The TLS side of a new connection, and the common name of the client
/// certificate it presented (verified against `--tls-client-ca`), if any.
/// `None` when the client does not speak TLS or the handshake fails,
/// which is logged: Kafka's protocol has no way to tell the client.
async fn handshake(
    tls: &Tls,
    stream: tokio::net::TcpStream,
    peer: SocketAddr,
) -> Option<(
    tokio_rustls::server::TlsStream<tokio::net::TcpStream>,
    Option<String>,
)> {
    let mut first = [0u8; 1];
    match tokio::time::timeout(HANDSHAKE_TIMEOUT, stream.peek(&mut first)).await {
        Ok(Ok(1)) if first[0] == TLS_HANDSHAKE_RECORD => {}
        Ok(Ok(1)) => {
            tracing::warn!(%peer, "a Kafka client sent plain text to a TLS listener; it must use security.protocol=SSL or SASL_SSL with the cluster's CA");
            return None;
        }
        _ => return None,
    }
    match tokio::time::timeout(HANDSHAKE_TIMEOUT, tls.acceptor.accept(stream)).await {
        Ok(Ok(stream)) => {
            let name = stream
                .get_ref()
                .1
                .peer_certificates()
                .and_then(|chain| chain.first())
                .and_then(eddy_broker::common_name);
            Some((stream, name))
        }
        Ok(Err(e)) => {
            tracing::warn!(%peer, error = %e, "Kafka TLS handshake refused");
            None
        }
        Err(_) => {
            tracing::debug!(%peer, "Kafka TLS handshake did not finish in time");
            None
        }
    }
}
