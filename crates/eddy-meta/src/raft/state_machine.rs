//! The replicated state machine: `MetaState` behind openraft 0.9's
//! `RaftStateMachine` and `RaftSnapshotBuilder`.
//!
//! The state lives in memory (`Arc<MetaState>`, published on a `watch`
//! channel exactly like eddy-meta's `MetaStore::subscribe`). Durability comes
//! from snapshots (`raft-snapshot.bin`, replaced atomically + fsync'd) plus
//! the Raft log: at startup openraft re-applies the log from the snapshot's
//! last id up to the saved committed id (see `FileLogStore::save_committed`),
//! then keeps applying as the cluster commits more. This is openraft's
//! "persistent snapshot" mode: `apply()` need not fsync anything.
//!
//! Snapshot file: `[b"EDSNAP01"][meta_len: u32 LE][crc32c(meta ++ data): u32 LE][meta JSON][data]`,
//! meta = `SnapshotMeta` (last log id, last membership, snapshot id),
//! data = `MetaState` as JSON (the same bytes travel in InstallSnapshot).

use std::io;
use std::path::Path;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::Mutex;
use std::sync::atomic::AtomicU64;
use std::sync::atomic::Ordering;

use openraft::EntryPayload;
use openraft::OptionalSend;
use openraft::RaftSnapshotBuilder;
use openraft::StorageIOError;
use openraft::storage::RaftStateMachine;
use tokio::sync::watch;

use super::TypeConfig;
use super::fsutil;
use super::typ;
use super::{Rejection, Response};
use crate::state::MetaState;

const SNAPSHOT_FILE: &str = "raft-snapshot.bin";
const MAGIC: &[u8; 8] = b"EDSNAP01";

/// Cheap to clone; clones share the state. openraft owns one clone (moved
/// into its state-machine worker task); the application keeps another to
/// read/subscribe; snapshot builders are further clones.
#[derive(Clone)]
pub struct FileStateMachine {
    shared: Arc<Shared>,
}

struct Shared {
    dir: PathBuf,
    /// Never held across an await.
    inner: Mutex<Inner>,
    /// Serializes snapshot file writes/reads; holds the meta of the file on disk.
    snapshot_file: tokio::sync::Mutex<Option<typ::SnapshotMeta>>,
    tx: watch::Sender<Arc<MetaState>>,
    seq: AtomicU64,
}

struct Inner {
    last_applied: Option<typ::LogId>,
    last_membership: typ::StoredMembership,
    state: Arc<MetaState>,
}

fn encode_snapshot(meta: &typ::SnapshotMeta, data: &[u8]) -> io::Result<Vec<u8>> {
    let meta = serde_json::to_vec(meta).map_err(io::Error::other)?;
    let mut crc = crc32c::crc32c(&meta);
    crc = crc32c::crc32c_append(crc, data);
    let mut out = Vec::with_capacity(16 + meta.len() + data.len());
    out.extend_from_slice(MAGIC);
    out.extend_from_slice(&(meta.len() as u32).to_le_bytes());
    out.extend_from_slice(&crc.to_le_bytes());
    out.extend_from_slice(&meta);
    out.extend_from_slice(data);
    Ok(out)
}

fn decode_snapshot(bytes: &[u8]) -> io::Result<(typ::SnapshotMeta, Vec<u8>)> {
    let bad = |m: &str| io::Error::new(io::ErrorKind::InvalidData, format!("{SNAPSHOT_FILE}: {m}"));
    if bytes.len() < 16 || &bytes[..8] != MAGIC {
        return Err(bad("bad header"));
    }
    let meta_len = fsutil::le_u32(&bytes[8..12]) as usize;
    let crc = fsutil::le_u32(&bytes[12..16]);
    if 16 + meta_len > bytes.len() {
        return Err(bad("truncated"));
    }
    let (meta, data) = bytes[16..].split_at(meta_len);
    if crc32c::crc32c_append(crc32c::crc32c(meta), data) != crc {
        return Err(bad("crc mismatch"));
    }
    let meta = serde_json::from_slice(meta).map_err(|e| bad(&e.to_string()))?;
    Ok((meta, data.to_vec()))
}

impl FileStateMachine {
    /// Load the last snapshot from `dir` (if any). The log entries after it
    /// are re-applied by `Raft::new`.
    pub async fn open(dir: impl AsRef<Path>) -> io::Result<Self> {
        let dir = dir.as_ref().to_path_buf();
        std::fs::create_dir_all(&dir)?;
        let d = dir.clone();
        let loaded = fsutil::blocking(move || match fsutil::read_opt(&d, SNAPSHOT_FILE)? {
            None => Ok(None),
            Some(b) => decode_snapshot(&b).map(Some),
        })
        .await?;
        let (inner, on_disk) = match loaded {
            None => (
                Inner {
                    last_applied: None,
                    last_membership: Default::default(),
                    state: Arc::new(MetaState::default()),
                },
                None,
            ),
            Some((meta, data)) => {
                let state: MetaState = serde_json::from_slice(&data)
                    .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))?;
                (
                    Inner {
                        last_applied: meta.last_log_id,
                        last_membership: meta.last_membership.clone(),
                        state: Arc::new(state),
                    },
                    Some(meta),
                )
            }
        };
        let (tx, _) = watch::channel(inner.state.clone());
        // Snapshot ids only need to be unique per node; seed with wall time
        // so ids do not repeat across restarts.
        let seed = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_micros() as u64)
            .unwrap_or(0);
        Ok(Self {
            shared: Arc::new(Shared {
                dir,
                inner: Mutex::new(inner),
                snapshot_file: tokio::sync::Mutex::new(on_disk),
                tx,
                seq: AtomicU64::new(seed),
            }),
        })
    }

    /// The applied state (what eddy-meta's `MetaStore::state()` returns).
    pub fn state(&self) -> Arc<MetaState> {
        self.shared.tx.borrow().clone()
    }

    /// Changes of the applied state (eddy-meta's `MetaStore::subscribe()`).
    pub fn subscribe(&self) -> watch::Receiver<Arc<MetaState>> {
        self.shared.tx.subscribe()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.shared.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Write the snapshot file unless a newer one is already there.
    async fn persist(
        &self,
        meta: &typ::SnapshotMeta,
        data: &[u8],
    ) -> Result<(), typ::StorageError> {
        let mut on_disk = self.shared.snapshot_file.lock().await;
        if let Some(cur) = on_disk.as_ref()
            && cur.last_log_id > meta.last_log_id
        {
            return Ok(());
        }
        let bytes = encode_snapshot(meta, data)
            .map_err(|e| StorageIOError::write_snapshot(Some(meta.signature()), &e))?;
        let dir = self.shared.dir.clone();
        fsutil::blocking(move || fsutil::write_atomic(&dir, SNAPSHOT_FILE, &bytes, true))
            .await
            .map_err(|e| StorageIOError::write_snapshot(Some(meta.signature()), &e))?;
        *on_disk = Some(meta.clone());
        Ok(())
    }
}

impl RaftSnapshotBuilder<TypeConfig> for FileStateMachine {
    /// Contract: return a snapshot of *all* applied state including the last
    /// applied membership. Runs in its own task, concurrently with `apply`,
    /// so we take a consistent copy (cheap `Arc` clone) under the lock.
    /// We persist it before returning: openraft purges logs up to it next.
    async fn build_snapshot(&mut self) -> Result<typ::Snapshot, typ::StorageError> {
        let (last_applied, last_membership, state) = {
            let g = self.lock();
            (g.last_applied, g.last_membership.clone(), g.state.clone())
        };
        let data =
            serde_json::to_vec(&*state).map_err(|e| StorageIOError::read_state_machine(&e))?;
        let seq = self.shared.seq.fetch_add(1, Ordering::Relaxed);
        let snapshot_id = match last_applied {
            Some(l) => format!("{}-{}-{seq}", l.leader_id, l.index),
            None => format!("none-{seq}"),
        };
        let meta = typ::SnapshotMeta {
            last_log_id: last_applied,
            last_membership,
            snapshot_id,
        };
        self.persist(&meta, &data).await?;
        Ok(typ::Snapshot {
            meta,
            snapshot: Box::new(data),
        })
    }
}

impl RaftStateMachine<TypeConfig> for FileStateMachine {
    type SnapshotBuilder = FileStateMachine;

    /// Contract: last applied log id and last applied membership (may be
    /// newer than last applied; openraft rescans the log for membership).
    async fn applied_state(
        &mut self,
    ) -> Result<(Option<typ::LogId>, typ::StoredMembership), typ::StorageError> {
        let g = self.lock();
        Ok((g.last_applied, g.last_membership.clone()))
    }

    /// Contract: apply committed entries in order, one response per entry
    /// (same order), record each id as last applied, store membership
    /// entries. Must be deterministic. `check` runs here, not at propose
    /// time, so every voter reaches the same verdict.
    async fn apply<I>(&mut self, entries: I) -> Result<Vec<Response>, typ::StorageError>
    where
        I: IntoIterator<Item = typ::Entry> + OptionalSend,
        I::IntoIter: OptionalSend,
    {
        let mut out = Vec::new();
        let mut changed = false;
        let published = {
            let mut g = self.lock();
            for entry in entries {
                g.last_applied = Some(entry.log_id);
                let resp = match entry.payload {
                    EntryPayload::Blank => Response::None,
                    EntryPayload::Normal(cmd) => match g.state.check(&cmd) {
                        Ok(()) => {
                            let st = Arc::make_mut(&mut g.state);
                            st.apply(&cmd);
                            changed = true;
                            Response::Applied {
                                version: st.version,
                                output: st.output_of(&cmd),
                            }
                        }
                        Err(e) => Response::Rejected(Rejection::of(&e)),
                    },
                    EntryPayload::Membership(m) => {
                        g.last_membership = typ::StoredMembership::new(Some(entry.log_id), m);
                        Response::None
                    }
                };
                out.push(resp);
            }
            g.state.clone()
        };
        if changed {
            self.shared.tx.send_replace(published);
        }
        Ok(out)
    }

    async fn get_snapshot_builder(&mut self) -> Self::SnapshotBuilder {
        self.clone()
    }

    /// Contract: an empty buffer to receive a snapshot into. With
    /// `generic-snapshot-data` and our own full-snapshot RPC the server side
    /// builds the `Vec<u8>` itself, so this is only used by openraft's
    /// internal paths / the test suite.
    async fn begin_receiving_snapshot(&mut self) -> Result<Box<Vec<u8>>, typ::StorageError> {
        Ok(Box::new(Vec::new()))
    }

    /// Contract: before returning, replace the state with the snapshot's,
    /// make it the current snapshot (get_current_snapshot returns it), drop
    /// older ones. We validate, persist, then swap in memory.
    async fn install_snapshot(
        &mut self,
        meta: &typ::SnapshotMeta,
        snapshot: Box<Vec<u8>>,
    ) -> Result<(), typ::StorageError> {
        let state: MetaState = serde_json::from_slice(&snapshot)
            .map_err(|e| StorageIOError::read_snapshot(Some(meta.signature()), &e))?;
        self.persist(meta, &snapshot).await?;
        let state = Arc::new(state);
        {
            let mut g = self.lock();
            g.last_applied = meta.last_log_id;
            g.last_membership = meta.last_membership.clone();
            g.state = state.clone();
        }
        self.shared.tx.send_replace(state);
        Ok(())
    }

    /// Contract: the latest snapshot (from build or install), or None.
    /// Used when the leader must send a snapshot to a lagging follower.
    async fn get_current_snapshot(&mut self) -> Result<Option<typ::Snapshot>, typ::StorageError> {
        let guard = self.shared.snapshot_file.lock().await;
        if guard.is_none() {
            return Ok(None);
        }
        let dir = self.shared.dir.clone();
        let loaded = fsutil::blocking(move || match fsutil::read_opt(&dir, SNAPSHOT_FILE)? {
            None => Ok(None),
            Some(b) => decode_snapshot(&b).map(Some),
        })
        .await
        .map_err(|e| StorageIOError::read_snapshot(None, &e))?;
        drop(guard);
        Ok(loaded.map(|(meta, data)| typ::Snapshot {
            meta,
            snapshot: Box::new(data),
        }))
    }
}
