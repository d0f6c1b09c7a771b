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
    controller_server::ControllerServer, groups_server::GroupsServer,
    produce_server::ProduceServer, replication_server::ReplicationServer,
    security_server::SecurityServer,
};
use hyper::body::Incoming;
use hyper::server::conn::http2;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use tokio::net::TcpListener;
use tokio::sync::{oneshot, watch};
use tokio::task::{JoinHandle, JoinSet};
use tonic::Status;
use tonic::server::NamedService;
use tonic::service::{Routes, RoutesBuilder};
use tonic_health::ServingStatus;
use tonic_health::server::HealthReporter;
use tower::Layer;

use crate::auth::Authorizer;
use crate::auth::layer::AuthLayer;
use crate::auth::service::SecurityService;
use crate::broker::{Broker, blocking};
use crate::config::BrokerConfig;
use crate::controller::{ControllerService, RAFT_MESSAGE_BYTES_MAX};
use crate::replication::ReplicationService;

/// Largest replica fetch answer sent (the leader's own limit is below).
const REPLICA_FETCH_BYTES_MAX: usize = 256 << 20;
use crate::error::BrokerError;
use crate::grpc::ConsumeRoutes;
use crate::grpc::Service;
use crate::tls::Tls;

/// HTTP/2 flow-control windows and frame size: large, so a multi-megabyte
/// batch moves in few frames without waiting for window updates.
pub const STREAM_WINDOW_BYTES: u32 = 8 << 20;
pub const CONNECTION_WINDOW_BYTES: u32 = 32 << 20;
pub const FRAME_BYTES: u32 = 1 << 20;
/// Concurrent gRPC calls per connection.
const STREAMS_PER_CONNECTION_MAX: u32 = 1024;
/// Response data HTTP/2 may buffer per stream before the socket takes it
/// (hyper's default, 400 KiB, makes a megabyte batch wait on many handoffs).
const SEND_BUFFER_BYTES: usize = 8 << 20;
/// How long shutdown waits for open connections to finish their calls.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(10);
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

/// gRPC services another crate adds to a broker's server: the processor
/// registry and the pipelines, which need what this crate must not know
/// (WebAssembly, manifests).
pub trait Extension: Send + Sync + 'static {
    /// Adds the services to the server's routes.
    fn add_services(&self, routes: &mut RoutesBuilder);
    /// Their full gRPC names, reported by the health service.
    fn service_names(&self) -> Vec<&'static str>;
}

/// Makes a broker's [`Extension`] once the broker is open.
pub type ExtensionFactory =
    Box<dyn FnOnce(&Arc<Broker>) -> Result<Box<dyn Extension>, BrokerError> + Send>;

/// Binds `config.listen`, opens the broker (recovering partitions after an
/// unclean stop) and starts serving.
pub async fn start(config: BrokerConfig) -> Result<ServerHandle, BrokerError> {
    start_with(config, None).await
}

/// [`start`], serving an extension's services beside Eddy's own.
pub async fn start_with(
    config: BrokerConfig,
    extension: Option<ExtensionFactory>,
) -> Result<ServerHandle, BrokerError> {
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
    let extension = match extension {
        Some(make) => Some(make(&broker)?),
        None => None,
    };
    let (stop_tx, stop_rx) = oneshot::channel();
    let task = tokio::spawn(run(broker.clone(), listener, extension, stop_rx));
    let handle = ServerHandle {
        local_addr,
        broker,
        stop: Some(stop_tx),
        task,
    };
    if handle.broker.config.peers.len() > 1 {
        // Now that this broker answers Raft messages, a majority can form.
        if let Err(e) = join_cluster(&handle.broker).await {
            let _ = handle.stop().await;
            return Err(e);
        }
    }
    Ok(handle)
}

/// How long a broker among other voters waits for a majority to form.
const JOIN_TIMEOUT: Duration = Duration::from_secs(120);

/// Registers this broker once the metadata quorum has a leader.
async fn join_cluster(broker: &Arc<Broker>) -> Result<(), BrokerError> {
    let deadline = tokio::time::Instant::now() + JOIN_TIMEOUT;
    let mut fenced_before = false;
    loop {
        let joined = async {
            broker.register().await?;
            if !fenced_before {
                broker.fence_previous_incarnation().await?;
                fenced_before = true;
            }
            broker.reconcile().await?;
            // Take writes from the start: heartbeat until the controller
            // has this broker live (it unfences a returning broker).
            broker.heartbeat_voters().await?;
            broker.check_lease()
        };
        match joined.await {
            Ok(()) => {
                // The previous run's leaderships are given up and this
                // broker's metadata has caught up with that: what it says
                // this broker leads now is current.
                broker.topics.allow_leading();
                return broker.reconcile().await;
            }
            Err(e) if tokio::time::Instant::now() < deadline => {
                tracing::info!(error = %e, "waiting for a majority of the metadata voters");
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
            Err(e) => {
                return Err(BrokerError::Internal(format!(
                    "no metadata quorum formed within {JOIN_TIMEOUT:?}: {e}; start the other voters given in --peers"
                )));
            }
        }
    }
}

/// Opens and closes hosted partitions as the metadata changes, whichever
/// broker changed it.
async fn follow_metadata(broker: Arc<Broker>) {
    let mut changes = broker.meta.subscribe();
    while changes.changed().await.is_ok() {
        if let Err(e) = broker.reconcile().await {
            tracing::warn!(error = %e, "could not bring partitions in line with the metadata");
        }
    }
}

async fn run(
    broker: Arc<Broker>,
    listener: TcpListener,
    extension: Option<Box<dyn Extension>>,
    stop: oneshot::Receiver<()>,
) -> Result<(), BrokerError> {
    let limit = broker.config.limits.request_bytes_max;
    let service = Service::new(broker.clone());
    let extra_names = extension.as_ref().map_or(Vec::new(), |e| e.service_names());
    let (health, health_service) = tonic_health::server::health_reporter();
    report_health(&health, &extra_names, ServingStatus::Serving).await;
    // Both reflection versions: grpcurl and tonic speak v1, while Python's
    // grpcio-reflection, Postman and older tools speak only v1alpha.
    let reflection = || {
        tonic_reflection::server::Builder::configure()
            .register_encoded_file_descriptor_set(eddy_proto::FILE_DESCRIPTOR_SET)
            .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
    };
    let reflection_v1 = reflection()
        .build_v1()
        .map_err(|e| BrokerError::Internal(format!("reflection: {e}")))?;
    let reflection_v1alpha = reflection()
        .build_v1alpha()
        .map_err(|e| BrokerError::Internal(format!("reflection: {e}")))?;
    let mut routes = Routes::builder();
    if let Some(e) = &extension {
        e.add_services(&mut routes);
    }
    routes
        .add_service(health_service)
        .add_service(reflection_v1)
        .add_service(reflection_v1alpha)
        .add_service(
            ControllerServer::new(ControllerService::new(broker.clone()))
                .max_decoding_message_size(RAFT_MESSAGE_BYTES_MAX)
                .max_encoding_message_size(RAFT_MESSAGE_BYTES_MAX),
        )
        .add_service(
            ReplicationServer::new(ReplicationService::new(broker.clone()))
                .max_encoding_message_size(REPLICA_FETCH_BYTES_MAX),
        )
        .add_service(
            SecurityServer::new(SecurityService::new(broker.clone()))
                .max_decoding_message_size(limit),
        )
        .add_service(AdminServer::new(service.clone()).max_decoding_message_size(limit))
        .add_service(ClusterServer::new(service.clone()).max_decoding_message_size(limit))
        .add_service(GroupsServer::new(service.clone()).max_decoding_message_size(limit))
        .add_service(
            ProduceServer::new(service.clone())
                .max_decoding_message_size(limit)
                .max_encoding_message_size(usize::MAX),
        )
        .add_service(ConsumeRoutes::new(
            ConsumeServer::new(service)
                .max_decoding_message_size(limit)
                .max_encoding_message_size(usize::MAX),
            broker.clone(),
        ));
    let routes = routes.routes().prepare();
    let authorized = AuthLayer {
        authorizer: broker.authorizer.clone(),
    }
    .layer(routes);
    let app = OversizeLayer { limit }.layer(authorized);
    let housekeeping = tokio::spawn(housekeeping(broker.clone()));
    let groups = tokio::spawn(crate::group::group_ticker(broker.clone()));
    let metadata = tokio::spawn(follow_metadata(broker.clone()));
    // A cluster's brokers heartbeat the controller, and its leader fences
    // silent ones; leaders manage their ISR.
    let cluster_tasks = if broker.config.peers.len() > 1 {
        vec![
            tokio::spawn(crate::liveness::heartbeat_loop(broker.clone())),
            tokio::spawn(crate::liveness::fence_loop(broker.clone())),
            tokio::spawn(crate::replication::isr_loop(broker.clone())),
        ]
    } else {
        Vec::new()
    };
    let tls = match &broker.config.tls {
        Some(files) => Some(Tls::new(files)?),
        None => None,
    };
    let reload = tls
        .clone()
        .map(|t| tokio::spawn(crate::tls::reload_certificates(t)));
    let connections = accept(listener, app, tls, broker.authorizer.clone(), stop).await;
    broker.begin_shutdown();
    // Health watchers (load balancers, orchestrators) learn at once that
    // this broker is going away, while its connections drain.
    report_health(&health, &extra_names, ServingStatus::NotServing).await;
    drain(connections).await;
    housekeeping.abort();
    if let Some(r) = reload {
        r.abort();
    }
    groups.abort();
    metadata.abort();
    for t in cluster_tasks {
        t.abort();
    }
    broker.close().await?;
    tracing::info!("broker stopped; all partitions flushed");
    Ok(())
}

/// Sets the health of the broker as a whole ("") and of each service.
async fn report_health(health: &HealthReporter, extra: &[&'static str], status: ServingStatus) {
    let own = [
        "",
        <AdminServer<Service> as NamedService>::NAME,
        <ClusterServer<Service> as NamedService>::NAME,
        <ProduceServer<Service> as NamedService>::NAME,
        <ConsumeServer<Service> as NamedService>::NAME,
        <GroupsServer<Service> as NamedService>::NAME,
        <SecurityServer<SecurityService> as NamedService>::NAME,
    ];
    for service in own.iter().chain(extra) {
        health.set_service_status(*service, status).await;
    }
}

/// Serves connections until `stop`; returns the connections still open.
async fn accept<S>(
    listener: TcpListener,
    app: S,
    tls: Option<Tls>,
    authorizer: Arc<Authorizer>,
    mut stop: oneshot::Receiver<()>,
) -> Connections
where
    S: HttpService,
{
    let (closing, _) = watch::channel(false);
    let mut tasks = JoinSet::new();
    let mut next_id: u64 = 0;
    loop {
        let accepted = tokio::select! {
            a = listener.accept() => a,
            _ = &mut stop => break,
        };
        while tasks.try_join_next().is_some() {}
        let (stream, peer) = match accepted {
            Ok(a) => a,
            Err(e) => {
                // Out of file descriptors and the like: back off, keep serving.
                tracing::warn!(error = %e, "accept failed");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        // Without it Nagle holds small responses until the peer's delayed
        // ACK (~40 ms).
        let _ = stream.set_nodelay(true);
        let app = app.clone();
        let tls = tls.clone();
        let closing = closing.subscribe();
        next_id += 1;
        let id = next_id;
        let authorizer = authorizer.clone();
        tasks.spawn(async move {
            serve_one(stream, peer, id, app, tls, closing).await;
            // Its calls no longer count against anyone's connection quota.
            authorizer.connection_closed(id);
        });
    }
    Connections { tasks, closing }
}

/// One accepted connection, plain or TLS, served until it ends.
async fn serve_one<S>(
    stream: tokio::net::TcpStream,
    peer: SocketAddr,
    id: u64,
    app: S,
    tls: Option<Tls>,
    closing: watch::Receiver<bool>,
) where
    S: HttpService,
{
    let Some(tls) = tls else {
        let info = Connection {
            peer,
            tls: false,
            id,
            certificate_name: None,
        };
        return serve_connection(stream, WithConnection::new(app, info), closing).await;
    };
    // A TLS client opens with a handshake record (0x16); anything
    // else is told, in gRPC, that this port takes only TLS.
    let mut first = [0u8; 1];
    match tokio::time::timeout(HANDSHAKE_TIMEOUT, stream.peek(&mut first)).await {
        Ok(Ok(1)) if first[0] == TLS_HANDSHAKE_RECORD => {}
        Ok(Ok(1)) => return serve_connection(stream, TlsRequired, closing).await,
        _ => return,
    }
    match tokio::time::timeout(HANDSHAKE_TIMEOUT, tls.acceptor.accept(stream)).await {
        Ok(Ok(stream)) => {
            let certificate_name = stream
                .get_ref()
                .1
                .peer_certificates()
                .and_then(|chain| chain.first())
                .and_then(crate::tls::common_name)
                .map(Arc::from);
            let info = Connection {
                peer,
                tls: true,
                id,
                certificate_name,
            };
            serve_connection(stream, WithConnection::new(app, info), closing).await;
        }
        Ok(Err(e)) => {
            tracing::warn!(%peer, error = %e, "TLS handshake refused");
        }
        Err(_) => {
            tracing::debug!(%peer, "TLS handshake did not finish in time");
        }
    }
}

/// The first byte of a TLS connection (a handshake record).
const TLS_HANDSHAKE_RECORD: u8 = 0x16;
/// How long a connection may take to send its first byte and finish TLS.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// What the broker's gRPC services are, to hyper.
pub(crate) trait HttpService:
    tower::Service<
        http::Request<Incoming>,
        Response = http::Response<tonic::body::Body>,
        Error: Into<Box<dyn std::error::Error + Send + Sync>>,
        Future: Send + 'static,
    > + Clone
    + Send
    + 'static
{
}

impl<S> HttpService for S where
    S: tower::Service<
            http::Request<Incoming>,
            Response = http::Response<tonic::body::Body>,
            Error: Into<Box<dyn std::error::Error + Send + Sync>>,
            Future: Send + 'static,
        > + Clone
        + Send
        + 'static
{
}

/// Serves HTTP/2 on one connection until it ends or the broker closes.
async fn serve_connection<I, S>(io: I, service: S, mut closing: watch::Receiver<bool>)
where
    I: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
    S: HttpService,
{
    let mut builder = http2::Builder::new(TokioExecutor::new());
    builder
        .timer(TokioTimer::new())
        .initial_stream_window_size(STREAM_WINDOW_BYTES)
        .initial_connection_window_size(CONNECTION_WINDOW_BYTES)
        .max_frame_size(FRAME_BYTES)
        .max_send_buf_size(SEND_BUFFER_BYTES)
        .max_concurrent_streams(STREAMS_PER_CONNECTION_MAX);
    let conn = builder.serve_connection(TokioIo::new(io), TowerToHyperService::new(service));
    tokio::pin!(conn);
    let result = tokio::select! {
        r = conn.as_mut() => r,
        _ = closing.changed() => {
            conn.as_mut().graceful_shutdown();
            conn.await
        }
    };
    if let Err(e) = result {
        tracing::debug!(error = %e, "connection ended with an error");
    }
}

/// Where a call came from: every request carries it as an extension.
#[derive(Debug, Clone)]
pub struct Connection {
    pub peer: SocketAddr,
    /// Whether the connection is TLS.
    pub tls: bool,
    /// Unique among this broker's connections.
    pub id: u64,
    /// The subject's common name of the client certificate the connection
    /// presented (verified against `--tls-client-ca`), if any.
    pub certificate_name: Option<Arc<str>>,
}

/// Adds the [`Connection`] to each request.
#[derive(Debug, Clone)]
struct WithConnection<S> {
    inner: S,
    info: Connection,
}

impl<S> WithConnection<S> {
    fn new(inner: S, info: Connection) -> WithConnection<S> {
        WithConnection { inner, info }
    }
}

impl<S, B> tower::Service<http::Request<B>> for WithConnection<S>
where
    S: tower::Service<http::Request<B>>,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = S::Future;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut req: http::Request<B>) -> Self::Future {
        req.extensions_mut().insert(self.info.clone());
        self.inner.call(req)
    }
}

/// Answers every call on a plain-text connection to a TLS port.
#[derive(Debug, Clone, Copy)]
struct TlsRequired;

impl tower::Service<http::Request<Incoming>> for TlsRequired {
    type Response = http::Response<tonic::body::Body>;
    type Error = std::convert::Infallible;
    type Future = std::future::Ready<Result<Self::Response, Self::Error>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, _req: http::Request<Incoming>) -> Self::Future {
        let status = Status::unauthenticated(
            "this broker takes only TLS connections: connect with TLS, giving the cluster's CA certificate with --tls-ca or EDDY_TLS_CA",
        );
        std::future::ready(Ok(status.into_http()))
    }
}

/// Open connections at shutdown.
struct Connections {
    tasks: JoinSet<()>,
    closing: watch::Sender<bool>,
}

/// Asks every connection to finish its calls and close, waiting at most
/// [`DRAIN_TIMEOUT`]; long-polls and streams end at once on shutdown.
async fn drain(mut c: Connections) {
    c.closing.send_replace(true);
    let all = async { while c.tasks.join_next().await.is_some() {} };
    if tokio::time::timeout(DRAIN_TIMEOUT, all).await.is_err() {
        tracing::warn!("connections still open after {DRAIN_TIMEOUT:?}; closing them");
        c.tasks.abort_all();
    }
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
