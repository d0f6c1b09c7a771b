//! The metadata store: one voter of the metadata quorum. Read the applied
//! state at any time; change it only by proposing commands, which the
//! quorum's leader orders and every voter applies.
//!
//! A proposal made on a follower is forwarded to the leader. Every voter
//! keeps the whole applied state, so reads are local (and may lag the
//! leader by the entries in flight).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use openraft::BasicNode;
use openraft::error::{ClientWriteError, Fatal, InitializeError, RaftError};
use tokio::sync::watch;
use tokio::time::Instant;

use crate::command_log::CommandLog;
use crate::error::{MetaError, Result};
use crate::raft::log_store::FileLogStore;
use crate::raft::network::{Network, from_json, to_json};
use crate::raft::revive::{self, Parts, Slot};
use crate::raft::state_machine::FileStateMachine;
use crate::raft::{RaftId, Response, Rpc, Transport, TransportError, fsutil, typ};
use crate::state::{Command, MetaState, NodeId, Output};

/// The local command log of Eddy before the quorum; read once to migrate.
const LEGACY_LOG_FILE: &str = "commands.log";
const LEGACY_CLUSTER_ID_FILE: &str = "cluster-id";
const NODE_ID_FILE: &str = "node-id";
const LOCK_FILE: &str = "LOCK";

/// How a voter joins the quorum.
#[derive(Debug, Clone)]
pub struct MetaConfig {
    pub node_id: NodeId,
    /// Every voter, this one included, and the address it is reached at;
    /// empty: this node is the only voter.
    pub voters: BTreeMap<NodeId, String>,
    /// How long a proposal waits for a leader before it fails.
    pub propose_timeout: Duration,
}

impl MetaConfig {
    /// The only voter of its own quorum.
    pub fn single(node_id: NodeId) -> MetaConfig {
        MetaConfig {
            node_id,
            voters: BTreeMap::new(),
            propose_timeout: Duration::from_secs(15),
        }
    }
}

/// Cluster metadata; see the module docs.
pub struct MetaStore {
    id: RaftId,
    /// The running Raft; a new one after a storage error stopped the old
    /// (see `raft/revive.rs`).
    raft: Arc<Slot>,
    sm: FileStateMachine,
    transport: Arc<dyn Transport>,
    voters: BTreeMap<NodeId, String>,
    /// The voters' addresses by Raft id: where this node calls each, for
    /// Raft's own traffic and for forwarded proposals alike.
    addresses: Arc<BTreeMap<RaftId, String>>,
    propose_timeout: Duration,
    /// Held while open: two processes must never write one voter's state.
    _lock: std::fs::File,
}

impl std::fmt::Debug for MetaStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MetaStore")
            .field("id", &self.id)
            .field("voters", &self.voters)
            .finish_non_exhaustive()
    }
}

impl MetaStore {
    /// Opens this voter's state in `dir` (log, vote, snapshot) and joins
    /// the quorum. The lowest-numbered voter initializes the quorum the
    /// first time, and only then; with no other voters this node leads at
    /// once. A directory written by Eddy before the quorum (a local command
    /// log) is taken over: its commands become the first entries.
    pub async fn open(
        dir: &Path,
        config: MetaConfig,
        transport: Arc<dyn Transport>,
    ) -> Result<MetaStore> {
        let id = raft_id(config.node_id)?;
        std::fs::create_dir_all(dir).map_err(MetaError::io("creating", dir))?;
        let lock = lock_dir(dir)?;
        check_node_id(dir, config.node_id)?;
        let log = FileLogStore::open(dir)
            .await
            .map_err(MetaError::io("opening the metadata log in", dir))?;
        let sm = FileStateMachine::open(dir)
            .await
            .map_err(MetaError::io("opening the metadata snapshot in", dir))?;
        let raft_config = crate::raft::config()
            .validate()
            .map_err(|e| MetaError::Invalid(format!("metadata quorum settings: {e}")))?;
        let addresses: Arc<BTreeMap<RaftId, String>> = Arc::new(
            config
                .voters
                .iter()
                .filter_map(|(&n, addr)| Some((raft_id(n).ok()?, addr.clone())))
                .collect(),
        );
        let parts = Parts {
            id,
            config: Arc::new(raft_config),
            network: Network {
                transport: transport.clone(),
                addresses: addresses.clone(),
            },
            log,
            sm: sm.clone(),
        };
        let raft = parts
            .start()
            .await
            .map_err(|e| MetaError::Invalid(format!("starting the metadata quorum: {e}")))?;
        let raft = Arc::new(Slot::new(raft));
        tokio::spawn(revive::watch(Arc::downgrade(&raft), parts));
        let store = MetaStore {
            id,
            raft,
            sm,
            transport,
            voters: config.voters.clone(),
            addresses,
            propose_timeout: config.propose_timeout,
            _lock: lock,
        };
        let members = store.members()?;
        let first = members.keys().next().copied();
        if first == Some(id) && store.initialize(members).await? {
            tracing::info!(node = id, "initialized the metadata quorum");
            if store.voters.len() <= 1 {
                store.migrate(dir).await?;
            }
        }
        Ok(store)
    }

    /// Every voter as openraft names them.
    fn members(&self) -> Result<BTreeMap<RaftId, BasicNode>> {
        if self.voters.is_empty() {
            return Ok(BTreeMap::from([(
                self.id,
                BasicNode {
                    addr: String::new(),
                },
            )]));
        }
        if !self
            .voters
            .keys()
            .any(|&n| raft_id(n).ok() == Some(self.id))
        {
            return Err(MetaError::Invalid(format!(
                "node {} is not among the voters {:?}; give every voter, this one included, in --peers",
                self.id,
                self.voters.keys().map(|n| n.0).collect::<Vec<_>>()
            )));
        }
        self.voters
            .iter()
            .map(|(&n, addr)| Ok((raft_id(n)?, BasicNode { addr: addr.clone() })))
            .collect()
    }

    /// Initializes the quorum if this voter has never been part of one;
    /// whether it did.
    async fn initialize(&self, members: BTreeMap<RaftId, BasicNode>) -> Result<bool> {
        let raft = self.raft.get();
        let initialized = raft
            .is_initialized()
            .await
            .map_err(|e| MetaError::Invalid(format!("metadata quorum: {e}")))?;
        if initialized {
            return Ok(false);
        }
        match raft.initialize(members).await {
            Ok(()) => Ok(true),
            // Already initialized (a vote from a peer got here first).
            Err(RaftError::APIError(InitializeError::NotAllowed(_))) => Ok(false),
            Err(e) => Err(MetaError::Invalid(format!(
                "initializing the metadata quorum: {e}"
            ))),
        }
    }

    /// Takes over a data directory of a single-node Eddy from before the
    /// quorum: its cluster id and commands, in order, then renames the old
    /// log so it is never replayed twice.
    async fn migrate(&self, dir: &Path) -> Result<()> {
        let path = dir.join(LEGACY_LOG_FILE);
        if !path.exists() {
            return Ok(());
        }
        let (_, commands) = CommandLog::open(&path)?;
        if let Ok(id) = std::fs::read_to_string(dir.join(LEGACY_CLUSTER_ID_FILE)) {
            self.propose(Command::InitCluster {
                cluster_id: id.trim().to_string(),
            })
            .await?;
        }
        for cmd in commands {
            self.propose(cmd).await?;
        }
        let done = PathBuf::from(format!("{}.migrated", path.display()));
        std::fs::rename(&path, &done).map_err(MetaError::io("renaming", &path))?;
        tracing::info!(path = %done.display(), "moved the local metadata log into the quorum");
        Ok(())
    }

    /// The only voter of its own quorum: it never calls another.
    pub async fn open_local(dir: &Path, node_id: NodeId) -> Result<MetaStore> {
        MetaStore::open(dir, MetaConfig::single(node_id), Arc::new(NoPeers)).await
    }

    /// The state as this voter has applied it.
    pub fn state(&self) -> Arc<MetaState> {
        self.sm.state()
    }

    /// Notified with every newly applied state.
    pub fn subscribe(&self) -> watch::Receiver<Arc<MetaState>> {
        self.sm.subscribe()
    }

    /// The quorum's leader, if this voter knows one.
    pub fn leader(&self) -> Option<NodeId> {
        let leader = self.raft.get().metrics().borrow().current_leader;
        leader.and_then(|l| i32::try_from(l).ok()).map(NodeId)
    }

    /// Whether this voter leads the quorum right now, confirmed by a
    /// majority (a leader cut off or paused learns here that it was
    /// replaced, rather than acting on its old view).
    pub async fn confirm_leader(&self) -> bool {
        self.raft.get().ensure_linearizable().await.is_ok()
    }

    /// The voters and their addresses, as configured.
    pub fn voters(&self) -> &BTreeMap<NodeId, String> {
        &self.voters
    }

    /// Replicates `cmd` and returns the state once this voter has applied
    /// it. A command the state refuses when the quorum applies it fails
    /// with that refusal.
    pub async fn propose(&self, cmd: Command) -> Result<Arc<MetaState>> {
        Ok(self.propose_for(cmd).await?.0)
    }

    /// [`MetaStore::propose`], with what the command gave (see [`Output`]).
    pub async fn propose_for(&self, cmd: Command) -> Result<(Arc<MetaState>, Option<Output>)> {
        let deadline = Instant::now() + self.propose_timeout;
        loop {
            let remaining = deadline.saturating_duration_since(Instant::now());
            if remaining.is_zero() {
                return Err(self.no_leader());
            }
            let written =
                tokio::time::timeout(remaining, self.raft.get().client_write(cmd.clone()))
                    .await
                    .map_err(|_| self.no_leader())?;
            let forward = match written {
                Ok(response) => return self.applied(response, deadline).await,
                Err(RaftError::APIError(ClientWriteError::ForwardToLeader(f))) => f,
                Err(e) => return Err(write_failed(e)),
            };
            // Called where this node's own --peers list says, like Raft's
            // own traffic.
            if let (Some(leader), Some(node)) = (forward.leader_id, forward.leader_node)
                && leader != self.id
                && let Some(response) = self
                    .forward(
                        self.addresses.get(&leader).unwrap_or(&node.addr),
                        &cmd,
                        remaining,
                    )
                    .await?
            {
                return self.applied(response, deadline).await;
            }
            // No leader known yet (an election), or it moved: try again.
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// [`MetaStore::propose`] for a decision this voter made from what it
    /// alone saw as leader (which brokers it heard from): written only as
    /// its own write, never forwarded. A leader cut off and replaced, whose
    /// write was pending when it learnt so, must not hand its stale view to
    /// its successor (it would fence brokers the successor hears from);
    /// the successor decides afresh.
    pub async fn propose_as_leader(&self, cmd: Command) -> Result<Arc<MetaState>> {
        let deadline = Instant::now() + self.propose_timeout;
        let written = tokio::time::timeout(self.propose_timeout, self.raft.get().client_write(cmd))
            .await
            .map_err(|_| self.no_leader())?;
        match written {
            Ok(response) => Ok(self.applied(response, deadline).await?.0),
            Err(RaftError::APIError(ClientWriteError::ForwardToLeader(_))) => {
                Err(MetaError::Unavailable(
                    "this broker no longer leads the metadata quorum, so what it decided as its leader was not written".into(),
                ))
            }
            Err(e) => Err(write_failed(e)),
        }
    }

    /// Waits until this voter has applied every change the quorum had
    /// committed when it was called, so that [`MetaStore::state`] then
    /// shows what any broker wrote and acknowledged before (a processor
    /// uploaded through another broker, say). Costs the leader a round of
    /// heartbeats to a majority, and a follower one call to the leader.
    pub async fn sync(&self) -> Result<()> {
        let deadline = Instant::now() + self.propose_timeout;
        loop {
            let remaining = deadline.saturating_duration_since(Instant::now());
            if remaining.is_zero() {
                return Err(self.no_leader());
            }
            let asked = tokio::time::timeout(remaining, self.raft.get().get_read_log_id())
                .await
                .map_err(|_| self.no_leader())?;
            let read = match asked {
                Ok((read, _)) => Some(read),
                Err(RaftError::APIError(typ::CheckIsLeaderError::ForwardToLeader(f))) => {
                    match (f.leader_id, f.leader_node) {
                        (Some(leader), Some(node)) if leader != self.id => {
                            let addr = self.addresses.get(&leader).unwrap_or(&node.addr);
                            self.read_index_at(addr, remaining).await?
                        }
                        _ => None,
                    }
                }
                Err(e) => return Err(MetaError::Unavailable(format!("metadata quorum: {e}"))),
            };
            let Some(read) = read else {
                // No leader known yet (an election), or it moved: try again.
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            };
            let Some(index) = read.map(|l| l.index) else {
                return Ok(());
            };
            return self
                .await_applied(
                    index,
                    deadline,
                    "this broker has not caught up with the metadata leader",
                )
                .await;
        }
    }

    /// Waits until this voter has applied the entry at `index`; `behind`
    /// says what it means when it has not by `deadline`.
    async fn await_applied(&self, index: u64, deadline: Instant, behind: &str) -> Result<()> {
        let wait = deadline
            .saturating_duration_since(Instant::now())
            .max(Duration::from_millis(10));
        self.raft
            .get()
            .wait(Some(wait))
            .applied_index_at_least(Some(index), "an entry applied here")
            .await
            .map_err(|e| MetaError::Unavailable(format!("{behind}: {e}")))?;
        Ok(())
    }

    /// The read index of the leader at `addr`; `None` when it should be
    /// asked again (it stopped leading or could not be reached).
    async fn read_index_at(&self, addr: &str, ttl: Duration) -> Result<Option<Option<typ::LogId>>> {
        match self
            .transport
            .call(addr, Rpc::ReadIndex, Bytes::new(), Bytes::new(), ttl)
            .await
        {
            Ok(answer) => {
                let result: std::result::Result<
                    Option<typ::LogId>,
                    typ::RaftError<typ::CheckIsLeaderError>,
                > = from_json(&answer).map_err(MetaError::Invalid)?;
                match result {
                    Ok(read) => Ok(Some(read)),
                    Err(RaftError::APIError(_)) => Ok(None),
                    Err(e) => Err(MetaError::Unavailable(format!(
                        "the metadata leader at {addr}: {e}"
                    ))),
                }
            }
            Err(e) => {
                tracing::debug!(%addr, error = %e, "metadata leader did not give its read index; retrying");
                Ok(None)
            }
        }
    }

    /// Sends `cmd` to the leader at `addr`; `None` when it should be tried
    /// again (the leader moved or could not be reached).
    async fn forward(
        &self,
        addr: &str,
        cmd: &Command,
        ttl: Duration,
    ) -> Result<Option<typ::ClientWriteResponse>> {
        let payload = to_json(cmd).map_err(MetaError::Invalid)?;
        match self
            .transport
            .call(addr, Rpc::Propose, payload, Bytes::new(), ttl)
            .await
        {
            Ok(answer) => {
                let result: std::result::Result<
                    typ::ClientWriteResponse,
                    typ::RaftError<typ::ClientWriteError>,
                > = from_json(&answer).map_err(MetaError::Invalid)?;
                match result {
                    Ok(response) => Ok(Some(response)),
                    Err(RaftError::APIError(ClientWriteError::ForwardToLeader(_))) => Ok(None),
                    Err(e) => Err(MetaError::Unavailable(format!(
                        "the metadata leader at {addr}: {e}"
                    ))),
                }
            }
            Err(TransportError::Unreachable(e)) => {
                tracing::debug!(%addr, error = %e, "metadata leader unreachable; retrying");
                Ok(None)
            }
            Err(TransportError::Failed(e)) => Err(MetaError::Unavailable(format!(
                "the metadata change sent to the leader at {addr} may or may not have been made ({e}); check, then retry"
            ))),
        }
    }

    /// Waits until this voter applied a committed proposal, then gives its
    /// outcome.
    async fn applied(
        &self,
        response: typ::ClientWriteResponse,
        deadline: Instant,
    ) -> Result<(Arc<MetaState>, Option<Output>)> {
        self.await_applied(
            response.log_id.index,
            deadline,
            "the metadata change was committed but this node has not applied it yet",
        )
        .await?;
        match response.data {
            Response::Rejected(r) => Err(r.into_error()),
            Response::Applied { output, .. } => Ok((self.state(), output)),
            Response::None => Ok((self.state(), None)),
        }
    }

    fn no_leader(&self) -> MetaError {
        MetaError::Unavailable(format!(
            "no metadata leader answered within {:?}: a majority of the voters {:?} must be running and reach each other",
            self.propose_timeout,
            self.voters.keys().map(|n| n.0).collect::<Vec<_>>()
        ))
    }

    /// Answers a call from another voter (what the transport delivers).
    pub async fn handle(&self, rpc: Rpc, header: &[u8], data: Bytes) -> Result<Bytes, String> {
        match rpc {
            Rpc::AppendEntries => {
                to_json(&self.raft.get().append_entries(from_json(header)?).await)
            }
            Rpc::Vote => to_json(&self.raft.get().vote(from_json(header)?).await),
            Rpc::InstallSnapshot => {
                let (vote, meta): (typ::Vote, typ::SnapshotMeta) = from_json(header)?;
                let snapshot = typ::Snapshot {
                    meta,
                    snapshot: Box::new(data.to_vec()),
                };
                to_json(&self.raft.get().install_full_snapshot(vote, snapshot).await)
            }
            // No second hop: a leader that moved on answers ForwardToLeader.
            Rpc::Propose => {
                let cmd: Command = from_json(header)?;
                to_json(&self.raft.get().client_write(cmd).await)
            }
            // Leadership confirmed by a majority, as for a read at the
            // leader; the caller waits to have applied that far itself.
            Rpc::ReadIndex => to_json(
                &self
                    .raft
                    .get()
                    .get_read_log_id()
                    .await
                    .map(|(read, _)| read),
            ),
        }
    }

    /// Stops this voter's part in the quorum.
    pub async fn shutdown(&self) {
        if let Err(e) = self.raft.get().shutdown().await {
            tracing::warn!(error = %e, "stopping the metadata quorum");
        }
    }
}

fn raft_id(n: NodeId) -> Result<RaftId> {
    u64::try_from(n.0)
        .map_err(|_| MetaError::Invalid(format!("node id {n} is negative; use 0 or more")))
}

/// Refuses a directory that holds another node's Raft state: a vote and a
/// log mean something only for the id that wrote them.
fn check_node_id(dir: &Path, id: NodeId) -> Result<()> {
    match fsutil::read_opt(dir, NODE_ID_FILE).map_err(MetaError::io("reading", dir))? {
        Some(b) => {
            let found = String::from_utf8_lossy(&b).trim().to_string();
            if found != id.0.to_string() {
                return Err(MetaError::Invalid(format!(
                    "the metadata in {} belongs to node {found}, not {id}",
                    dir.display()
                )));
            }
            Ok(())
        }
        None => fsutil::write_atomic(dir, NODE_ID_FILE, id.0.to_string().as_bytes(), true)
            .map_err(MetaError::io("writing", dir)),
    }
}

fn lock_dir(dir: &Path) -> Result<std::fs::File> {
    let path = dir.join(LOCK_FILE);
    let f = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .map_err(MetaError::io("opening", &path))?;
    f.try_lock().map_err(|e| {
        MetaError::Invalid(format!(
            "{} is in use by another process ({e}); stop it first",
            dir.display()
        ))
    })?;
    Ok(f)
}

/// The transport of a quorum of one, which has no one to call.
#[derive(Debug)]
pub struct NoPeers;

impl Transport for NoPeers {
    fn call<'a>(
        &'a self,
        address: &'a str,
        _rpc: Rpc,
        _header: Bytes,
        _data: Bytes,
        _timeout: Duration,
    ) -> crate::raft::network::CallFuture<'a> {
        Box::pin(async move {
            Err(TransportError::Unreachable(format!(
                "a single-voter quorum calls no one, not {address:?}"
            )))
        })
    }
}

/// What a write the quorum refused means, for whoever asked for it.
fn write_failed(e: typ::RaftError<typ::ClientWriteError>) -> MetaError {
    match e {
        RaftError::Fatal(Fatal::StorageError(e)) => MetaError::Unavailable(format!(
            "this broker could not write the metadata log ({e}); the change was not made. \
             It takes part in the quorum again by itself once its disk can be written: \
             free space on it, then retry"
        )),
        e => MetaError::Unavailable(format!("metadata quorum: {e}")),
    }
}
