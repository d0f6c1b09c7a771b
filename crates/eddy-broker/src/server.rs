//! Running a broker: the gRPC server (Eddy's services, health, reflection),
//! background housekeeping, and a clean shutdown.

use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use eddy_proto::v1::{
    admin_server::AdminServer, cluster_server::ClusterServer, consume_server::ConsumeServer,
    groups_server::GroupsServer, produce_server::ProduceServer,
};
use tokio::net::TcpListener;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;
use tonic::Status;
use tonic::transport::server::TcpIncoming;

use crate::broker::{Broker, blocking};
use crate::config::BrokerConfig;
use crate::error::BrokerError;
use crate::service::Service;

/// HTTP/2 flow-control windows and frame size: large, so a multi-megabyte
/// batch moves in few frames without waiting for window updates.
pub const STREAM_WINDOW_BYTES: u32 = 8 << 20;
pub const CONNECTION_WINDOW_BYTES: u32 = 32 << 20;
pub const FRAME_BYTES: u32 = 1 << 20;
/// Concurrent gRPC calls per connection.
const STREAMS_PER_CONNECTION_MAX: u32 = 1024;
/// How often interval fsync policies are checked.
const FLUSH_TICK_MS: u64 = 250;

/// A running broker.
#[derive(Debug)]
pub struct ServerHandle {
    pub local_addr: SocketAddr,
    pub broker: Arc<Broker>,
    stop: Option<oneshot::Sender<()>>,
    task: JoinHandle<Result<(), BrokerError>>,
}

impl ServerHandle {
    /// Stops accepting, lets in-flight calls finish (long-polls end at
    /// once), flushes every partition, and returns.
    pub async fn stop(mut self) -> Result<(), BrokerError> {
        self.broker.begin_shutdown();
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        self.task
            .await
            .map_err(|e| BrokerError::Internal(format!("server task failed: {e}")))?
    }
}

/// Binds `config.listen`, opens the broker (recovering partitions after an
/// unclean stop) and starts serving.
pub async fn start(config: BrokerConfig) -> Result<ServerHandle, BrokerError> {
    let listener = TcpListener::bind(config.listen).await.map_err(|e| {
        BrokerError::InvalidRequest(format!(
            "cannot listen on {}: {e}; pick another address with --listen",
            config.listen
        ))
    })?;
    let local_addr = listener
        .local_addr()
        .map_err(|e| BrokerError::Internal(format!("no local address: {e}")))?;
    let address = config
        .advertised_address
        .clone()
        .unwrap_or_else(|| local_addr.to_string());
    let broker = Broker::open(config, address).await?;
    let (stop_tx, stop_rx) = oneshot::channel();
    let task = tokio::spawn(run(broker.clone(), listener, stop_rx));
    Ok(ServerHandle {
        local_addr,
        broker,
        stop: Some(stop_tx),
        task,
    })
}

async fn run(
    broker: Arc<Broker>,
    listener: TcpListener,
    stop: oneshot::Receiver<()>,
) -> Result<(), BrokerError> {
    let limit = broker.config.limits.request_bytes_max;
    let service = Service::new(broker.clone());
    let (health, health_service) = tonic_health::server::health_reporter();
    health.set_serving::<AdminServer<Service>>().await;
    health.set_serving::<ClusterServer<Service>>().await;
    health.set_serving::<ProduceServer<Service>>().await;
    health.set_serving::<ConsumeServer<Service>>().await;
    health.set_serving::<GroupsServer<Service>>().await;
    let reflection = tonic_reflection::server::Builder::configure()
        .register_encoded_file_descriptor_set(eddy_proto::FILE_DESCRIPTOR_SET)
        .build_v1()
        .map_err(|e| BrokerError::Internal(format!("reflection: {e}")))?;
    // `Server::tcp_nodelay` only reaches sockets tonic accepts itself; a
    // listener handed in needs it here, or Nagle's algorithm holds small
    // responses back until the peer's delayed ACK (~40 ms).
    let incoming = TcpIncoming::from(listener).with_nodelay(Some(true));
    let housekeeping = tokio::spawn(housekeeping(broker.clone()));
    let groups = tokio::spawn(crate::group::group_ticker(broker.clone()));
    let result = tonic::transport::Server::builder()
        .tcp_nodelay(true)
        .initial_stream_window_size(STREAM_WINDOW_BYTES)
        .initial_connection_window_size(CONNECTION_WINDOW_BYTES)
        .max_frame_size(FRAME_BYTES)
        .max_concurrent_streams(STREAMS_PER_CONNECTION_MAX)
        .layer(OversizeLayer { limit })
        .add_service(health_service)
        .add_service(reflection)
        .add_service(AdminServer::new(service.clone()).max_decoding_message_size(limit))
        .add_service(ClusterServer::new(service.clone()).max_decoding_message_size(limit))
        .add_service(
            ProduceServer::new(service.clone())
                .max_decoding_message_size(limit)
                .max_encoding_message_size(usize::MAX),
        )
        .add_service(GroupsServer::new(service.clone()).max_decoding_message_size(limit))
        .add_service(
            ConsumeServer::new(service)
                .max_decoding_message_size(limit)
                .max_encoding_message_size(usize::MAX),
        )
        .serve_with_incoming_shutdown(incoming, async {
            let _ = stop.await;
        })
        .await;
    broker.begin_shutdown();
    housekeeping.abort();
    groups.abort();
    broker.close().await?;
    tracing::info!("broker stopped; all partitions flushed");
    result.map_err(|e| BrokerError::Internal(format!("gRPC server: {e}")))
}

/// Interval fsyncs, retention and compaction, in the background.
async fn housekeeping(broker: Arc<Broker>) {
    let mut tick = tokio::time::interval(Duration::from_millis(FLUSH_TICK_MS));
    let retention_every = (broker.config.retention_check_interval_ms / FLUSH_TICK_MS).max(1);
    let mut n: u64 = 0;
    loop {
        tick.tick().await;
        n += 1;
        let retention = n.is_multiple_of(retention_every);
        let b = broker.clone();
        let result = blocking(move || {
            for p in b.topics.partitions() {
                if let Err(e) = p.housekeeping(retention) {
                    tracing::warn!(topic = %p.topic, partition = p.id.0, error = %e, "housekeeping failed");
                }
            }
            Ok(())
        })
        .await;
        if let Err(e) = result {
            tracing::warn!(error = %e, "housekeeping failed");
        }
    }
}

/// Tonic refuses an oversized message before buffering it, but says
/// OUT_OF_RANGE; this names the broker's setting and says INVALID_ARGUMENT.
pub(crate) fn explain_oversize(status: Status, broker: &Broker) -> Status {
    rewrite_oversize(status, broker.config.limits.request_bytes_max)
}

fn rewrite_oversize(status: Status, limit: usize) -> Status {
    if status.code() != tonic::Code::OutOfRange
        || !status
            .message()
            .contains("decoded message length too large")
    {
        return status;
    }
    let found = status
        .message()
        .split("found ")
        .nth(1)
        .and_then(|s| s.split(' ').next())
        .unwrap_or("?")
        .to_string();
    BrokerError::InvalidRequest(format!(
        "request of {found} bytes exceeds the broker's limit of {limit} bytes (request_bytes_max); send smaller requests or raise the limit"
    ))
    .to_status()
}

#[derive(Debug, Clone, Copy)]
struct OversizeLayer {
    limit: usize,
}

impl<S> tower::Layer<S> for OversizeLayer {
    type Service = Oversize<S>;

    fn layer(&self, inner: S) -> Oversize<S> {
        Oversize {
            inner,
            limit: self.limit,
        }
    }
}

#[derive(Debug, Clone)]
struct Oversize<S> {
    inner: S,
    limit: usize,
}

impl<S, B, R> tower::Service<http::Request<B>> for Oversize<S>
where
    S: tower::Service<http::Request<B>, Response = http::Response<R>>,
    S::Future: Send + 'static,
{
    type Response = http::Response<R>;
    type Error = S::Error;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, Self::Error>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: http::Request<B>) -> Self::Future {
        let limit = self.limit;
        let future = self.inner.call(req);
        Box::pin(async move {
            let mut response = future.await?;
            if let Some(status) = Status::from_header_map(response.headers()) {
                let rewritten = rewrite_oversize(status.clone(), limit);
                if rewritten.code() != status.code() {
                    let headers = response.headers_mut();
                    headers.remove("grpc-status");
                    headers.remove("grpc-message");
                    let _ = rewritten.add_header(headers);
                }
            }
            Ok(response)
        })
    }
}
