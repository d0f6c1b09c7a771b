//! openraft's outgoing RPCs over a [`Transport`] the broker provides: this
//! crate encodes openraft's messages as JSON and maps failures to what
//! openraft expects; the broker only moves bytes (over gRPC, to the same
//! port clients use). The receiving side is `MetaStore::handle`.
//!
//! Failure mapping, which decides openraft's retries: a call that certainly
//! never reached the peer is `Unreachable` (openraft backs off before the
//! next try); any other transport failure is a network error (retried at
//! once); an error the peer's Raft returned travels in the answer and
//! becomes a remote error. openraft never asks for a client to the node
//! itself.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use openraft::error::{
    NetworkError, RPCError, RemoteError, ReplicationClosed, StreamingError, Unreachable,
};
use openraft::network::RPCOption;
use openraft::raft::{
    AppendEntriesRequest, AppendEntriesResponse, SnapshotResponse, VoteRequest, VoteResponse,
};
use openraft::{BasicNode, OptionalSend, RaftNetwork, RaftNetworkFactory};
use serde::Serialize;
use serde::de::DeserializeOwned;

use super::{RaftId, TypeConfig, typ};

/// Which call a message is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Rpc {
    AppendEntries,
    Vote,
    /// `header` is the sender's vote and the snapshot's meta, `data` the snapshot.
    InstallSnapshot,
    /// A command a follower forwards to the leader.
    Propose,
    /// A follower asks the leader for its read index.
    ReadIndex,
}

/// Why a call failed.
#[derive(Debug, Clone, thiserror::Error)]
pub enum TransportError {
    /// It certainly never reached the peer (refused, cannot connect), so
    /// retrying cannot repeat it.
    #[error("unreachable: {0}")]
    Unreachable(String),
    /// It may have reached the peer.
    #[error("{0}")]
    Failed(String),
}

/// The future a [`Transport`] call returns.
pub type CallFuture<'a> = Pin<Box<dyn Future<Output = Result<Bytes, TransportError>> + Send + 'a>>;

/// How voters reach one another: a call to the peer at `address`, whose
/// answer is what its `MetaStore::handle` returned.
pub trait Transport: Send + Sync + 'static {
    fn call<'a>(
        &'a self,
        address: &'a str,
        rpc: Rpc,
        header: Bytes,
        data: Bytes,
        timeout: Duration,
    ) -> CallFuture<'a>;
}

/// openraft's network factory over a transport.
#[derive(Clone)]
pub(crate) struct Network {
    pub transport: Arc<dyn Transport>,
    /// Where this node calls each voter: its own `--peers` list. The
    /// membership records the addresses the first voter was given, which
    /// other nodes may reach differently (through a proxy, say).
    pub addresses: Arc<std::collections::BTreeMap<RaftId, String>>,
}

impl RaftNetworkFactory<TypeConfig> for Network {
    type Network = Peer;

    /// Must not connect or fail: failures surface at the first call.
    async fn new_client(&mut self, target: RaftId, node: &BasicNode) -> Peer {
        let addr = self
            .addresses
            .get(&target)
            .cloned()
            .unwrap_or_else(|| node.addr.clone());
        Peer {
            target,
            addr,
            node: node.clone(),
            transport: self.transport.clone(),
        }
    }
}

pub(crate) struct Peer {
    target: RaftId,
    addr: String,
    node: BasicNode,
    transport: Arc<dyn Transport>,
}

/// A transport failure before openraft's per-call error types.
enum Fail {
    Unreachable(Unreachable),
    Network(NetworkError),
}

impl From<TransportError> for Fail {
    fn from(e: TransportError) -> Fail {
        match &e {
            TransportError::Unreachable(_) => Fail::Unreachable(Unreachable::new(&e)),
            TransportError::Failed(_) => Fail::Network(NetworkError::new(&e)),
        }
    }
}

impl<E: std::error::Error> From<Fail> for RPCError<RaftId, BasicNode, E> {
    fn from(f: Fail) -> Self {
        match f {
            Fail::Unreachable(u) => RPCError::Unreachable(u),
            Fail::Network(n) => RPCError::Network(n),
        }
    }
}

impl From<Fail> for typ::StreamingError {
    fn from(f: Fail) -> Self {
        match f {
            Fail::Unreachable(u) => StreamingError::Unreachable(u),
            Fail::Network(n) => StreamingError::Network(n),
        }
    }
}

pub(crate) fn to_json<T: Serialize>(v: &T) -> Result<Bytes, String> {
    serde_json::to_vec(v)
        .map(Bytes::from)
        .map_err(|e| format!("cannot encode a Raft message: {e}"))
}

pub(crate) fn from_json<T: DeserializeOwned>(b: &[u8]) -> Result<T, String> {
    serde_json::from_slice(b).map_err(|e| format!("not a Raft message: {e}"))
}

fn encode<T: Serialize>(v: &T) -> Result<Bytes, Fail> {
    to_json(v).map_err(|e| Fail::Network(NetworkError::new(&TransportError::Failed(e))))
}

fn decode<T: DeserializeOwned>(b: &[u8]) -> Result<T, Fail> {
    from_json(b).map_err(|e| Fail::Network(NetworkError::new(&TransportError::Failed(e))))
}

impl Peer {
    async fn call(
        &self,
        rpc: Rpc,
        header: Bytes,
        data: Bytes,
        ttl: Duration,
    ) -> Result<Bytes, Fail> {
        Ok(self
            .transport
            .call(&self.addr, rpc, header, data, ttl)
            .await?)
    }

    fn remote<E: std::error::Error>(&self, e: E) -> RemoteError<RaftId, BasicNode, E> {
        RemoteError::new_with_node(self.target, self.node.clone(), e)
    }
}

impl RaftNetwork<TypeConfig> for Peer {
    /// openraft bounds this call by `heartbeat_interval` itself.
    async fn append_entries(
        &mut self,
        rpc: AppendEntriesRequest<TypeConfig>,
        option: RPCOption,
    ) -> Result<AppendEntriesResponse<RaftId>, typ::RPCError> {
        let answer = self
            .call(
                Rpc::AppendEntries,
                encode(&rpc)?,
                Bytes::new(),
                option.hard_ttl(),
            )
            .await?;
        let result: Result<AppendEntriesResponse<RaftId>, typ::RaftError> = decode(&answer)?;
        result.map_err(|e| RPCError::RemoteError(self.remote(e)))
    }

    async fn vote(
        &mut self,
        rpc: VoteRequest<RaftId>,
        option: RPCOption,
    ) -> Result<VoteResponse<RaftId>, typ::RPCError> {
        let answer = self
            .call(Rpc::Vote, encode(&rpc)?, Bytes::new(), option.hard_ttl())
            .await?;
        let result: Result<VoteResponse<RaftId>, typ::RaftError> = decode(&answer)?;
        result.map_err(|e| RPCError::RemoteError(self.remote(e)))
    }

    /// The whole snapshot in one call; openraft adds no timeout here, so
    /// the transport enforces `install_snapshot_timeout`.
    async fn full_snapshot(
        &mut self,
        vote: typ::Vote,
        snapshot: typ::Snapshot,
        cancel: impl Future<Output = ReplicationClosed> + OptionalSend + 'static,
        option: RPCOption,
    ) -> Result<SnapshotResponse<RaftId>, typ::StreamingError> {
        let header = encode(&(vote, &snapshot.meta))?;
        let data = Bytes::from(*snapshot.snapshot);
        let ttl = option.hard_ttl();
        let answer = tokio::select! {
            closed = cancel => return Err(StreamingError::Closed(closed)),
            r = self.call(Rpc::InstallSnapshot, header, data, ttl) => r?,
        };
        let result: Result<SnapshotResponse<RaftId>, typ::Fatal> = decode(&answer)?;
        result.map_err(|e| StreamingError::RemoteError(self.remote(e)))
    }
}
