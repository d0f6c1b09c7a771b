//! The processor registry: uploads checked and validated before anything
//! becomes visible, component bytes stored in `__processors`, names and
//! versions in the metadata store.
//!
//! An upload goes: receive the chunks (refused as soon as they pass the
//! size limit) → check the sha256 → compile and validate with the same
//! runtime and limits the workers use (which also leaves the compiled
//! artifact in the runtime's cache, so no worker on this broker compiles
//! it again) → write the chunks → register the version. Until that last
//! step nothing refers to the bytes, and chunks nothing refers to are
//! removed when the registry next loads.
//!
//! In a cluster, component bytes are written only by the leader of
//! `__processors-0`: another broker that receives an upload or a delete
//! forwards it there, and serves downloads from its own replica (or, if
//! it holds none, from the leader). Names and versions are metadata, the
//! same on every broker.

mod service;
pub(crate) mod store;

use std::collections::BTreeSet;
use std::sync::Arc;

use bytes::{Bytes, BytesMut};
use eddy_broker::Broker;
use eddy_log::{LeaderEpoch, Offset};
use eddy_meta::{Command, MetaState, ProcessorVersion, validate_name};
use eddy_proto::v1 as pb;
use eddy_wasm::{Digest, Runtime};
use tokio::sync::{Mutex, Semaphore};

pub use self::service::ProcessorsService;
pub use self::store::{CHUNK_BYTES, PROCESSORS_TOPIC};
use self::store::{ChunkIndex, ComponentStore, Part, parse_digest};
use crate::error::{Error, Result};

/// Registry settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RegistryConfig {
    /// Largest component accepted, in bytes (components built from Python
    /// are about 40 MB).
    pub processor_bytes_max: usize,
    /// Uploads received at once; more wait. Each holds up to
    /// `processor_bytes_max` in memory.
    pub uploads_max: usize,
}

impl Default for RegistryConfig {
    fn default() -> Self {
        RegistryConfig {
            processor_bytes_max: 64 << 20,
            uploads_max: 2,
        }
    }
}

/// A processor version, as the registry reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredVersion {
    pub name: String,
    pub version: ProcessorVersion,
    /// Pipelines that run it.
    pub used_by: Vec<String>,
}

impl StoredVersion {
    fn of(state: &MetaState, name: &str, version: &ProcessorVersion) -> StoredVersion {
        StoredVersion {
            name: name.to_string(),
            version: version.clone(),
            used_by: state
                .pipelines_using(name, Some(version.version))
                .iter()
                .map(|p| p.name.clone())
                .collect(),
        }
    }

    pub(crate) fn to_pb(&self) -> pb::ProcessorVersion {
        pb::ProcessorVersion {
            name: self.name.clone(),
            version: self.version.version,
            sha256: self.version.sha256.clone(),
            size_bytes: self.version.size_bytes,
            uploaded_at_ms: self.version.uploaded_at_ms,
            used_by: self.used_by.clone(),
        }
    }
}

/// The registry of one broker.
#[derive(Debug)]
pub struct Registry {
    broker: Arc<Broker>,
    runtime: Runtime,
    config: RegistryConfig,
    uploads: Semaphore,
    store: ComponentStore,
    /// Loaded on first use. Its lock also orders the steps that change
    /// what is stored (an upload's commit, a delete, the garbage pass).
    index: Mutex<Option<ChunkIndex>>,
}

impl Registry {
    pub fn new(broker: Arc<Broker>, runtime: Runtime, config: RegistryConfig) -> Registry {
        Registry {
            store: ComponentStore::new(broker.clone()),
            uploads: Semaphore::new(config.uploads_max.max(1)),
            index: Mutex::new(None),
            broker,
            runtime,
            config,
        }
    }

    pub fn config(&self) -> &RegistryConfig {
        &self.config
    }

    /// Receives an upload's messages; see the module docs.
    pub async fn upload(
        &self,
        mut messages: impl futures::Stream<Item = Result<pb::UploadRequest, tonic::Status>> + Unpin,
    ) -> Result<pb::UploadResponse> {
        use futures::StreamExt;
        let _permit = self
            .uploads
            .acquire()
            .await
            .map_err(|_| Error::Internal("the registry is closed".into()))?;
        let mut received = Received::new(self.config.processor_bytes_max);
        while let Some(message) = messages.next().await {
            let message = message.map_err(|status| {
                Error::Invalid(format!(
                    "the upload was cut off ({}); nothing was stored",
                    status.message()
                ))
            })?;
            received.take(message)?;
        }
        let (name, digest, bytes) = received.finish()?;
        let state = self.broker.meta.state();
        if let Some(v) = state
            .processors
            .get(&name)
            .and_then(|p| p.by_sha256(&digest.to_string()))
        {
            return Ok(response(&StoredVersion::of(&state, &name, v), true));
        }
        match self.store.part().await? {
            Part::Leader(epoch) => {
                let (stored, existed) = self.register(&name, digest, bytes, epoch).await?;
                Ok(response(&stored, existed))
            }
            Part::Elsewhere { leader, .. } => {
                tracing::debug!(
                    processor = name,
                    leader,
                    "forwarding an upload to the leader of {PROCESSORS_TOPIC}"
                );
                Ok(leader_registry(&self.broker, &leader)
                    .await?
                    .upload(&name, bytes, |_| {})
                    .await?)
            }
        }
    }

    /// Validates and stores a component whose bytes and digest are checked.
    async fn register(
        &self,
        name: &str,
        digest: Digest,
        bytes: Bytes,
        epoch: LeaderEpoch,
    ) -> Result<(StoredVersion, bool)> {
        self.validate(bytes.clone()).await?;
        let mut index = self.writable_index(epoch).await?;
        let state = self.broker.meta.state();
        if let Some(v) = state
            .processors
            .get(name)
            .and_then(|p| p.by_sha256(&digest.to_string()))
        {
            // Registered by a concurrent upload of the same bytes.
            return Ok((StoredVersion::of(&state, name, v), true));
        }
        let loaded = index
            .as_mut()
            .ok_or_else(|| Error::Internal("registry index missing".into()))?;
        if !loaded.contains(&digest) {
            self.store.write(loaded, digest, &bytes).await?;
        }
        let state = self.broker.meta.state();
        let version = ProcessorVersion {
            version: state
                .processors
                .get(name)
                .and_then(|p| p.latest())
                .map_or(1, |l| l.version + 1),
            sha256: digest.to_string(),
            size_bytes: bytes.len() as u64,
            uploaded_at_ms: self.broker.now_ms(),
        };
        let state = self
            .broker
            .meta
            .propose(Command::RegisterProcessor {
                name: name.to_string(),
                version: version.clone(),
            })
            .await?;
        drop(index);
        let stored = state
            .processors
            .get(name)
            .and_then(|p| p.by_sha256(&version.sha256))
            .ok_or_else(|| Error::Internal("processor missing after registration".into()))?;
        tracing::info!(processor = name, version = stored.version, sha256 = %digest, bytes = bytes.len(), "processor uploaded");
        Ok((StoredVersion::of(&state, name, stored), false))
    }

    /// Compiles the component as a worker would, refusing what will not run.
    async fn validate(&self, bytes: Bytes) -> Result<()> {
        let runtime = self.runtime.clone();
        tokio::task::spawn_blocking(move || runtime.compile(&bytes).map(drop))
            .await
            .map_err(|e| Error::Internal(format!("validation did not finish: {e}")))?
            .map_err(|e| Error::InvalidProcessor(format!("the processor was refused: {e}")))
    }

    /// The chunk index for writing as the leader in `epoch`: loaded again
    /// (removing components no version refers to) the first time this
    /// broker writes in that epoch, since another leader may have written
    /// in between.
    async fn writable_index(
        &self,
        epoch: LeaderEpoch,
    ) -> Result<tokio::sync::MutexGuard<'_, Option<ChunkIndex>>> {
        let mut guard = self.index.lock().await;
        if guard.as_ref().and_then(|i| i.writable_in) != Some(epoch) {
            let mut index = self.store.load().await?;
            let keep = referenced(&self.broker.meta.state());
            self.store.collect_garbage(&mut index, &keep).await?;
            index.writable_in = Some(epoch);
            *guard = Some(index);
        }
        Ok(guard)
    }

    /// The chunk index for reading `digest`: loaded again if it does not
    /// know that component yet (another broker stored it since).
    async fn readable_index(
        &self,
        digest: &Digest,
    ) -> Result<tokio::sync::MutexGuard<'_, Option<ChunkIndex>>> {
        let mut guard = self.index.lock().await;
        if !guard.as_ref().is_some_and(|i| i.contains(digest)) {
            *guard = Some(self.store.load().await?);
        }
        Ok(guard)
    }

    /// Every processor name with its latest version and version count.
    pub fn list(&self) -> Vec<(StoredVersion, u32)> {
        let state = self.broker.meta.state();
        state
            .processors
            .iter()
            .filter_map(|(name, p)| {
                let latest = p.latest()?;
                Some((
                    StoredVersion::of(&state, name, latest),
                    p.versions.len() as u32,
                ))
            })
            .collect()
    }

    /// Every version of one processor, oldest first.
    pub fn describe(&self, name: &str) -> Result<Vec<StoredVersion>> {
        let state = self.broker.meta.state();
        let p = state.processor(name)?;
        Ok(p.versions
            .iter()
            .map(|v| StoredVersion::of(&state, name, v))
            .collect())
    }

    /// Deletes a version (or all of them) and the bytes no version uses any more.
    pub async fn delete(&self, name: &str, version: Option<u32>) -> Result<Vec<u32>> {
        let epoch = match self.store.part().await? {
            Part::Leader(epoch) => epoch,
            Part::Elsewhere { leader, .. } => {
                return Ok(leader_registry(&self.broker, &leader)
                    .await?
                    .delete(name, version)
                    .await?);
            }
        };
        let mut index = self.writable_index(epoch).await?;
        let before = self.broker.meta.state();
        let removed: Vec<ProcessorVersion> = before
            .processor(name)?
            .versions
            .iter()
            .filter(|v| version.is_none_or(|n| n == v.version))
            .cloned()
            .collect();
        let after = self
            .broker
            .meta
            .propose(Command::DeleteProcessor {
                name: name.to_string(),
                version,
            })
            .await?;
        let keep = referenced(&after);
        let loaded = index
            .as_mut()
            .ok_or_else(|| Error::Internal("registry index missing".into()))?;
        for v in &removed {
            if let Some(d) = parse_digest(&v.sha256)
                && !keep.contains(&d)
            {
                self.store.remove(loaded, d).await?;
            }
        }
        let versions: Vec<u32> = removed.iter().map(|v| v.version).collect();
        tracing::info!(processor = name, ?versions, "processor deleted");
        Ok(versions)
    }

    /// A version (0: the latest) and where its component's chunks are;
    /// [`Registry::chunk`] reads them one at a time, so a download holds
    /// one chunk in memory, not the component.
    pub async fn download(&self, name: &str, version: u32) -> Result<(StoredVersion, Chunks)> {
        let state = self.broker.meta.state();
        let p = state.processor(name)?;
        let v = match version {
            0 => p.latest(),
            n => p.version(n),
        }
        .ok_or_else(|| {
            Error::NotFound(format!(
                "processor {name:?} has no version {version}; see `eddy processor describe {name}`"
            ))
        })?;
        let digest = parse_digest(&v.sha256)
            .ok_or_else(|| Error::Internal(format!("bad sha256 {:?} in metadata", v.sha256)))?;
        let stored = StoredVersion::of(&state, name, v);
        if let Part::Elsewhere {
            leader,
            replica: false,
        } = self.store.part().await?
        {
            let (_, bytes) = leader_registry(&self.broker, &leader)
                .await?
                .download(name, v.version)
                .await?;
            return Ok((stored, Chunks::Fetched(bytes)));
        }
        let index = self.readable_index(&digest).await?;
        let loaded = index
            .as_ref()
            .ok_or_else(|| Error::Internal("registry index missing".into()))?;
        let chunks = self.store.chunks(loaded, &digest)?;
        Ok((stored, Chunks::Here(chunks)))
    }

    /// One chunk of a stored component (see [`Registry::download`]).
    pub async fn chunk(&self, at: Offset) -> Result<Bytes> {
        self.store.read_chunk(at).await
    }
}

/// Where a download's bytes come from.
#[derive(Debug)]
pub enum Chunks {
    /// This broker's replica of `__processors`, at these offsets, read one
    /// at a time with [`Registry::chunk`].
    Here(Vec<Offset>),
    /// The whole component, fetched from the leader (this broker holds no
    /// replica).
    Fetched(Bytes),
}

/// An upload's answer.
fn response(stored: &StoredVersion, existed: bool) -> pb::UploadResponse {
    pb::UploadResponse {
        version: Some(stored.to_pb()),
        existed,
    }
}

/// The registry of the broker at `address` (the leader of `__processors`).
async fn leader_registry(broker: &Broker, address: &str) -> Result<eddy_client::Processors> {
    let client = crate::node::connect_internal(broker, address.to_string()).await?;
    Ok(eddy_client::Processors::new(client))
}

/// Every component digest a processor version refers to.
fn referenced(state: &MetaState) -> BTreeSet<Digest> {
    state
        .processors
        .values()
        .flat_map(|p| &p.versions)
        .filter_map(|v| parse_digest(&v.sha256))
        .collect()
}

/// The messages of one upload, checked as they arrive.
struct Received {
    bytes: BytesMut,
    limit: usize,
    done: Option<pb::UploadDone>,
}

impl Received {
    fn new(limit: usize) -> Received {
        Received {
            bytes: BytesMut::new(),
            limit,
            done: None,
        }
    }

    fn take(&mut self, message: pb::UploadRequest) -> Result<()> {
        use pb::upload_request::Part;
        if self.done.is_some() {
            return Err(Error::Invalid(
                "the upload sent more after its final message; nothing was stored".into(),
            ));
        }
        match message.part {
            Some(Part::Chunk(chunk)) => {
                if chunk.len() > CHUNK_BYTES {
                    return Err(Error::Invalid(format!(
                        "an upload chunk has {} bytes; send at most {CHUNK_BYTES} per message",
                        chunk.len()
                    )));
                }
                if self.bytes.len() + chunk.len() > self.limit {
                    return Err(Error::InvalidProcessor(format!(
                        "the component is larger than {} bytes, the registry's limit (processor_bytes_max); build it in release mode and strip debug info",
                        self.limit
                    )));
                }
                self.bytes.extend_from_slice(&chunk);
            }
            Some(Part::Done(done)) => self.done = Some(done),
            None => {
                return Err(Error::Invalid(
                    "an upload message carries neither a chunk nor the final name and sha256"
                        .into(),
                ));
            }
        }
        Ok(())
    }

    fn finish(self) -> Result<(String, Digest, Bytes)> {
        let done = self.done.ok_or_else(|| {
            Error::Invalid(
                "the upload ended without its final message (name and sha256): it was cut off; nothing was stored"
                    .into(),
            )
        })?;
        validate_name("processor", &done.name)?;
        let expected = parse_digest(&done.sha256).ok_or_else(|| {
            Error::Invalid(format!(
                "{:?} is not a sha256: send 64 lowercase hex digits",
                done.sha256
            ))
        })?;
        if self.bytes.is_empty() {
            return Err(Error::InvalidProcessor(
                "the component is empty: no bytes were uploaded".into(),
            ));
        }
        let bytes = self.bytes.freeze();
        let got = Digest::of(&bytes);
        if got != expected {
            return Err(Error::Invalid(format!(
                "the {} bytes received have sha256 {got}, not {expected} as the upload said: they were damaged on the way; nothing was stored, upload again",
                bytes.len()
            )));
        }
        Ok((done.name, got, bytes))
    }
}
