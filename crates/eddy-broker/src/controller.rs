//! The metadata quorum's messages between brokers, on the port clients
//! use: the `Controller` gRPC service, answered by this broker's
//! `MetaStore`, and the transport that sends them to the other voters (a
//! channel per peer, connected on first use and reconnected by tonic).

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use eddy_meta::{CallFuture, Rpc, Transport, TransportError};
use eddy_proto::AuthChannel;
use eddy_proto::v1::controller_client::ControllerClient;
use eddy_proto::v1::controller_server::Controller;
use eddy_proto::v1::{BrokerHeartbeatRequest, BrokerHeartbeatResponse, RaftMessage};
use parking_lot::Mutex;
use tonic::{Request, Response, Status};

use crate::broker::Broker;
use crate::links::Links;

/// Largest Raft message either way: a snapshot of a large cluster's
/// metadata is the biggest.
pub const RAFT_MESSAGE_BYTES_MAX: usize = 256 << 20;

/// Sends Raft messages to other brokers over gRPC.
#[derive(Debug)]
pub struct GrpcTransport {
    links: Links,
    clients: Mutex<HashMap<String, ControllerClient<AuthChannel>>>,
}

impl GrpcTransport {
    pub fn new(links: Links) -> GrpcTransport {
        GrpcTransport {
            links,
            clients: Mutex::default(),
        }
    }

    fn client(&self, address: &str) -> Result<ControllerClient<AuthChannel>, TransportError> {
        let mut clients = self.clients.lock();
        if let Some(c) = clients.get(address) {
            return Ok(c.clone());
        }
        let endpoint = self
            .links
            .endpoint(address)
            .map_err(|e| TransportError::Unreachable(format!("bad address {address:?}: {e}")))?
            .connect_timeout(Duration::from_millis(500))
            .tcp_nodelay(true)
            .http2_keep_alive_interval(Duration::from_secs(10))
            .keep_alive_timeout(Duration::from_secs(5));
        let client = ControllerClient::new(self.links.attach(endpoint.connect_lazy()))
            .max_decoding_message_size(RAFT_MESSAGE_BYTES_MAX)
            .max_encoding_message_size(RAFT_MESSAGE_BYTES_MAX);
        clients.insert(address.to_string(), client.clone());
        Ok(client)
    }
}

impl Transport for GrpcTransport {
    fn call<'a>(
        &'a self,
        address: &'a str,
        rpc: Rpc,
        header: Bytes,
        data: Bytes,
        timeout: Duration,
    ) -> CallFuture<'a> {
        Box::pin(async move {
            let mut client = self.client(address)?;
            let mut request = Request::new(RaftMessage { header, data });
            request.set_timeout(timeout);
            let call = async {
                match rpc {
                    Rpc::AppendEntries => client.append_entries(request).await,
                    Rpc::Vote => client.vote(request).await,
                    Rpc::InstallSnapshot => client.install_snapshot(request).await,
                    Rpc::Propose => client.propose(request).await,
                    Rpc::ReadIndex => client.read_index(request).await,
                }
            };
            match tokio::time::timeout(timeout, call).await {
                Ok(Ok(answer)) => Ok(answer.into_inner().header),
                Ok(Err(status)) if never_sent(&status) => {
                    Err(TransportError::Unreachable(status.to_string()))
                }
                Ok(Err(status)) => Err(TransportError::Failed(status.to_string())),
                Err(_) => Err(TransportError::Failed(format!(
                    "no answer from {address} within {timeout:?}"
                ))),
            }
        })
    }
}

/// Whether a failed call certainly never reached the peer (it could not
/// connect), so that trying again cannot repeat it.
fn never_sent(s: &Status) -> bool {
    if s.code() != tonic::Code::Unavailable {
        return false;
    }
    let mut source: Option<&(dyn std::error::Error + 'static)> = std::error::Error::source(s);
    while let Some(e) = source {
        if let Some(io) = e.downcast_ref::<std::io::Error>()
            && matches!(
                io.kind(),
                std::io::ErrorKind::ConnectionRefused
                    | std::io::ErrorKind::TimedOut
                    | std::io::ErrorKind::NotFound
            )
        {
            return true;
        }
        if e.to_string().contains("tcp connect error") {
            return true;
        }
        source = e.source();
    }
    s.message().contains("tcp connect error")
}

/// Answers the other voters' Raft messages with this broker's `MetaStore`.
#[derive(Debug, Clone)]
pub struct ControllerService {
    broker: Arc<Broker>,
}

impl ControllerService {
    pub fn new(broker: Arc<Broker>) -> ControllerService {
        ControllerService { broker }
    }

    async fn answer(
        &self,
        rpc: Rpc,
        request: Request<RaftMessage>,
    ) -> Result<Response<RaftMessage>, Status> {
        let message = request.into_inner();
        let header = self
            .broker
            .meta
            .handle(rpc, &message.header, message.data)
            .await
            .map_err(Status::invalid_argument)?;
        Ok(Response::new(RaftMessage {
            header,
            data: Bytes::new(),
        }))
    }
}

#[tonic::async_trait]
impl Controller for ControllerService {
    async fn append_entries(
        &self,
        request: Request<RaftMessage>,
    ) -> Result<Response<RaftMessage>, Status> {
        self.answer(Rpc::AppendEntries, request).await
    }

    async fn vote(&self, request: Request<RaftMessage>) -> Result<Response<RaftMessage>, Status> {
        self.answer(Rpc::Vote, request).await
    }

    async fn install_snapshot(
        &self,
        request: Request<RaftMessage>,
    ) -> Result<Response<RaftMessage>, Status> {
        self.answer(Rpc::InstallSnapshot, request).await
    }

    async fn propose(
        &self,
        request: Request<RaftMessage>,
    ) -> Result<Response<RaftMessage>, Status> {
        self.answer(Rpc::Propose, request).await
    }

    async fn read_index(
        &self,
        request: Request<RaftMessage>,
    ) -> Result<Response<RaftMessage>, Status> {
        self.answer(Rpc::ReadIndex, request).await
    }

    async fn broker_heartbeat(
        &self,
        request: Request<BrokerHeartbeatRequest>,
    ) -> Result<Response<BrokerHeartbeatResponse>, Status> {
        let node = eddy_meta::NodeId(request.into_inner().node_id);
        let reply = self.broker.answer_heartbeat(node).await?;
        Ok(Response::new(BrokerHeartbeatResponse {
            fenced: reply.fenced,
            metadata_version: reply.metadata_version,
        }))
    }
}
