//! File-backed Raft log + vote: openraft 0.9 `RaftLogStorage` (storage v2).
//!
//! Layout in the data directory:
//!
//! * `raft-log.bin`  — append-only records `[len: u32 LE][crc32c(payload): u32 LE][payload]`,
//!   payload = JSON of `openraft::Entry<TypeConfig>`, strictly consecutive indexes.
//! * `raft-vote.json` — the last saved `Vote`, replaced atomically + fsync'd.
//! * `raft-purged.json` — the last purged `LogId`, replaced atomically + fsync'd.
//! * `raft-committed.json` — the last committed `LogId`, replaced atomically,
//!   *not* fsync'd (it may legally go backwards, see `save_committed`).
//!
//! The whole live log is also kept in memory (`BTreeMap<index, Entry>`):
//! a metadata log is small and snapshots + purge keep it bounded.
//!
//! Concurrency: openraft calls the `RaftLogStorage` methods from RaftCore
//! only, one at a time (`&mut self`), so writes are naturally serialized.
//! Log readers (clones of this store handed to replication tasks) only read
//! the in-memory map under a short `RwLock`.

use std::collections::BTreeMap;
use std::fmt::Debug;
use std::fs::File;
use std::fs::OpenOptions;
use std::io;
use std::io::Read;
use std::io::Write;
use std::ops::Bound;
use std::ops::RangeBounds;
use std::os::unix::fs::FileExt;
use std::path::Path;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::Mutex;
use std::sync::RwLock;

use openraft::ErrorSubject;
use openraft::ErrorVerb;
use openraft::OptionalSend;
use openraft::RaftLogReader;
use openraft::StorageIOError;
use openraft::storage::LogFlushed;
use openraft::storage::LogState;
use openraft::storage::RaftLogStorage;

use super::TypeConfig;
use super::fsutil;
use super::typ;

const LOG_FILE: &str = "raft-log.bin";
const VOTE_FILE: &str = "raft-vote.json";
const PURGED_FILE: &str = "raft-purged.json";
const COMMITTED_FILE: &str = "raft-committed.json";
const HEADER: usize = 8;
/// Rewrite the log file without its purged prefix once that prefix is at
/// least this big and at least half of the file.
const COMPACT_MIN_BYTES: u64 = 1 << 20;

/// Cheap to clone: clones share everything. openraft gets one clone as the
/// `RaftLogStorage` and more as `LogReader`s.
#[derive(Clone)]
pub struct FileLogStore {
    shared: Arc<Shared>,
}

struct Shared {
    dir: PathBuf,
    mem: RwLock<Mem>,
    /// Only locked inside `spawn_blocking` by the (single) writer.
    file: Mutex<LogFile>,
}

#[derive(Default)]
struct Mem {
    entries: BTreeMap<u64, typ::Entry>,
    last_purged: Option<typ::LogId>,
    vote: Option<typ::Vote>,
    committed: Option<typ::LogId>,
}

struct LogFile {
    dir: PathBuf,
    file: File,
    /// Bytes of valid records in the file.
    len: u64,
    /// Start offset of every live (not purged) entry's record.
    offsets: BTreeMap<u64, u64>,
}

fn io_err(subject: ErrorSubject<u64>, verb: ErrorVerb, e: io::Error) -> typ::StorageError {
    StorageIOError::new(subject, verb, &e).into()
}

fn corrupt(msg: String) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, msg)
}

fn encode_record(out: &mut Vec<u8>, entry: &typ::Entry) -> io::Result<()> {
    let payload = serde_json::to_vec(entry).map_err(io::Error::other)?;
    let len =
        u32::try_from(payload.len()).map_err(|_| corrupt("entry larger than 4 GiB".into()))?;
    out.extend_from_slice(&len.to_le_bytes());
    out.extend_from_slice(&crc32c::crc32c(&payload).to_le_bytes());
    out.extend_from_slice(&payload);
    Ok(())
}

impl FileLogStore {
    /// Open (or create) the log in `dir`. Recovers from a torn tail (a
    /// partially written last record after a crash) by cutting it off; any
    /// other damage is an error — Raft must not silently lose acknowledged
    /// entries.
    pub async fn open(dir: impl AsRef<Path>) -> io::Result<Self> {
        let dir = dir.as_ref().to_path_buf();
        let d = dir.clone();
        let (mem, file) = fsutil::blocking(move || load(&d)).await?;
        Ok(Self {
            shared: Arc::new(Shared {
                dir,
                mem: RwLock::new(mem),
                file: Mutex::new(file),
            }),
        })
    }

    /// Run `f` on the log file in a blocking task.
    async fn with_file<T, F>(&self, f: F) -> io::Result<T>
    where
        F: FnOnce(&mut LogFile) -> io::Result<T> + Send + 'static,
        T: Send + 'static,
    {
        let shared = self.shared.clone();
        fsutil::blocking(move || {
            let mut file = shared
                .file
                .lock()
                .map_err(|_| io::Error::other("log file lock poisoned"))?;
            f(&mut file)
        })
        .await
    }

    fn mem_read(&self) -> std::sync::RwLockReadGuard<'_, Mem> {
        self.shared.mem.read().unwrap_or_else(|p| p.into_inner())
    }

    fn mem_write(&self) -> std::sync::RwLockWriteGuard<'_, Mem> {
        self.shared.mem.write().unwrap_or_else(|p| p.into_inner())
    }
}

fn load(dir: &Path) -> io::Result<(Mem, LogFile)> {
    std::fs::create_dir_all(dir)?;
    let parse = |name: &str| -> io::Result<Option<typ::LogId>> {
        match fsutil::read_opt(dir, name)? {
            None => Ok(None),
            Some(b) => serde_json::from_slice(&b)
                .map(Some)
                .map_err(|e| corrupt(format!("{name}: {e}"))),
        }
    };
    let vote: Option<typ::Vote> = match fsutil::read_opt(dir, VOTE_FILE)? {
        None => None,
        Some(b) => {
            Some(serde_json::from_slice(&b).map_err(|e| corrupt(format!("{VOTE_FILE}: {e}")))?)
        }
    };
    let last_purged = parse(PURGED_FILE)?;
    // Not fsync'd, so after a crash it may be garbage: fall back to "unknown",
    // which is always safe (the state machine just catches up later).
    let committed = parse(COMMITTED_FILE).unwrap_or_else(|e| {
        tracing::warn!("ignoring unreadable {COMMITTED_FILE}: {e}");
        None
    });

    let path = dir.join(LOG_FILE);
    let existed = path.exists();
    let mut file = OpenOptions::new()
        .read(true)
        .append(true)
        .create(true)
        .open(&path)?;
    if !existed {
        fsutil::sync_dir(dir)?;
    }
    let mut buf = Vec::new();
    file.read_to_end(&mut buf)?;

    let purged_idx = last_purged.map(|l| l.index);
    let mut entries = BTreeMap::new();
    let mut offsets = BTreeMap::new();
    let mut dead_bytes = 0u64; // records of purged entries at the start of the file
    let mut prev: Option<u64> = None;
    let mut pos = 0usize;
    while pos < buf.len() {
        let rest = &buf[pos..];
        let torn = |why: &str| -> io::Result<()> {
            // A damaged record is a torn write only if it is the last thing
            // in the file (or is followed only by zeros: preallocated blocks).
            if rest.len() < HEADER || rest.iter().skip(HEADER).all(|b| *b == 0) {
                return Ok(());
            }
            let len = fsutil::le_u32(&rest[0..4]) as usize;
            if HEADER + len >= rest.len() {
                return Ok(());
            }
            Err(corrupt(format!(
                "{LOG_FILE}: {why} at offset {pos}, followed by more data"
            )))
        };
        if rest.len() < HEADER {
            torn("short header")?;
            break;
        }
        let len = fsutil::le_u32(&rest[0..4]) as usize;
        let crc = fsutil::le_u32(&rest[4..8]);
        if len == 0 || HEADER + len > rest.len() {
            torn("bad length")?;
            break;
        }
        let payload = &rest[HEADER..HEADER + len];
        if crc32c::crc32c(payload) != crc {
            torn("bad crc")?;
            break;
        }
        let entry: typ::Entry = serde_json::from_slice(payload)
            .map_err(|e| corrupt(format!("{LOG_FILE}: offset {pos}: {e}")))?;
        let idx = entry.log_id.index;
        if let Some(p) = prev {
            if idx <= p {
                return Err(corrupt(format!("{LOG_FILE}: index {idx} follows {p}")));
            }
            if idx != p + 1 {
                tracing::warn!("{LOG_FILE}: hole between {p} and {idx}");
            }
        }
        prev = Some(idx);
        if purged_idx.is_some_and(|p| idx <= p) {
            if !entries.is_empty() {
                return Err(corrupt(format!(
                    "{LOG_FILE}: purged index {idx} after live entries"
                )));
            }
            dead_bytes = (pos + HEADER + len) as u64;
        } else {
            offsets.insert(idx, pos as u64);
            entries.insert(idx, entry);
        }
        pos += HEADER + len;
    }
    if pos < buf.len() {
        tracing::warn!(
            "{LOG_FILE}: cutting torn tail of {} bytes at offset {pos}",
            buf.len() - pos
        );
        file.set_len(pos as u64)?;
        file.sync_all()?;
    }
    if let (Some(p), Some(first)) = (purged_idx, entries.keys().next())
        && *first != p + 1
    {
        tracing::warn!("{LOG_FILE}: first live index {first} but purged up to {p}");
    }
    let mut lf = LogFile {
        dir: dir.to_path_buf(),
        file,
        len: pos as u64,
        offsets,
    };
    if dead_bytes > 0 {
        // A purge finished its durable step but not the file cleanup (crash,
        // or below the compaction threshold): clean up now.
        lf.drop_prefix()?;
    }
    Ok((
        Mem {
            entries,
            last_purged,
            vote,
            committed,
        },
        lf,
    ))
}

impl LogFile {
    fn append(&mut self, records: Vec<(u64, usize)>, bytes: &[u8]) -> io::Result<()> {
        if let Err(e) = self
            .file
            .write_all(bytes)
            .and_then(|_| self.file.sync_data())
        {
            // Best effort: do not leave a partial batch behind.
            let _ = self.file.set_len(self.len);
            return Err(e);
        }
        let mut off = self.len;
        for (idx, n) in records {
            self.offsets.insert(idx, off);
            off += n as u64;
        }
        self.len = off;
        Ok(())
    }

    /// Remove every record with index >= `index`.
    fn truncate(&mut self, index: u64) -> io::Result<()> {
        let Some((_, &off)) = self.offsets.range(index..).next() else {
            return Ok(());
        };
        self.file.set_len(off)?;
        self.file.sync_data()?;
        self.len = off;
        self.offsets.split_off(&index);
        Ok(())
    }

    /// Forget records with index <= `index` (the purge marker is already
    /// durable) and reclaim their space when worthwhile.
    fn purge(&mut self, index: u64) -> io::Result<()> {
        self.offsets = self.offsets.split_off(&(index + 1));
        let live_start = self.offsets.values().next().copied().unwrap_or(self.len);
        if live_start == self.len || (live_start >= COMPACT_MIN_BYTES && live_start * 2 >= self.len)
        {
            self.drop_prefix()?;
        }
        Ok(())
    }

    /// Rewrite the file so that it starts at the first live record.
    fn drop_prefix(&mut self) -> io::Result<()> {
        let live_start = self.offsets.values().next().copied().unwrap_or(self.len);
        if live_start == 0 {
            return Ok(());
        }
        if live_start == self.len {
            // Nothing live: just empty the file. Safe because everything in
            // it is at or below the durable purge marker.
            self.file.set_len(0)?;
            self.file.sync_all()?;
            self.len = 0;
            return Ok(());
        }
        let mut tail = vec![0u8; (self.len - live_start) as usize];
        self.file.read_exact_at(&mut tail, live_start)?;
        // write raft-log.bin.tmp, fsync, rename over raft-log.bin, fsync dir
        fsutil::write_atomic(&self.dir, LOG_FILE, &tail, true)?;
        self.file = OpenOptions::new()
            .read(true)
            .append(true)
            .open(self.dir.join(LOG_FILE))?;
        self.len -= live_start;
        for off in self.offsets.values_mut() {
            *off -= live_start;
        }
        Ok(())
    }
}

// ---------------------------------------------------------------------------
// openraft traits
// ---------------------------------------------------------------------------

impl RaftLogReader<TypeConfig> for FileLogStore {
    /// Contract: return the entries in `[start, end)` that exist, in order.
    /// Missing entries are allowed (the caller checks); must be consistent
    /// with appends that already returned and with truncate/purge.
    async fn try_get_log_entries<RB: RangeBounds<u64> + Clone + Debug + OptionalSend>(
        &mut self,
        range: RB,
    ) -> Result<Vec<typ::Entry>, typ::StorageError> {
        let start = match range.start_bound() {
            Bound::Included(s) => *s,
            Bound::Excluded(s) => s.saturating_add(1),
            Bound::Unbounded => 0,
        };
        let end = match range.end_bound() {
            Bound::Included(e) => e.saturating_add(1),
            Bound::Excluded(e) => *e,
            Bound::Unbounded => u64::MAX,
        };
        if start >= end {
            // BTreeMap::range panics on inverted ranges.
            return Ok(Vec::new());
        }
        let mem = self.mem_read();
        Ok(mem
            .entries
            .range(start..end)
            .map(|(_, e)| e.clone())
            .collect())
    }
}

impl RaftLogStorage<TypeConfig> for FileLogStore {
    type LogReader = FileLogStore;

    /// Contract: `last_purged_log_id` = last purged id; `last_log_id` = id of
    /// the last present entry, or `last_purged_log_id` when there is none.
    /// Must not consider the state machine's applied id.
    async fn get_log_state(&mut self) -> Result<LogState<TypeConfig>, typ::StorageError> {
        let mem = self.mem_read();
        let last = mem
            .entries
            .values()
            .next_back()
            .map(|e| e.log_id)
            .or(mem.last_purged);
        Ok(LogState {
            last_purged_log_id: mem.last_purged,
            last_log_id: last,
        })
    }

    /// Contract: a reader usable concurrently with writes (replication).
    async fn get_log_reader(&mut self) -> Self::LogReader {
        self.clone()
    }

    /// Contract: the vote is on disk before returning (a node must never
    /// vote twice in a term, even across a crash).
    async fn save_vote(&mut self, vote: &typ::Vote) -> Result<(), typ::StorageError> {
        let bytes = serde_json::to_vec(vote).map_err(|e| StorageIOError::write_vote(&e))?;
        let dir = self.shared.dir.clone();
        fsutil::blocking(move || fsutil::write_atomic(&dir, VOTE_FILE, &bytes, true))
            .await
            .map_err(|e| io_err(ErrorSubject::Vote, ErrorVerb::Write, e))?;
        self.mem_write().vote = Some(*vote);
        Ok(())
    }

    /// Contract: return what `save_vote` last saved (`None` if never).
    async fn read_vote(&mut self) -> Result<Option<typ::Vote>, typ::StorageError> {
        Ok(self.mem_read().vote)
    }

    /// Optional in openraft. We implement it because the state machine is in
    /// memory and only persisted by snapshots: with a saved committed id,
    /// `Raft::new` re-applies `(snapshot, committed]` from the log at startup
    /// so the node serves its pre-crash state at once (also a lone voter).
    /// It may lag (not fsync'd): a smaller committed id is always safe.
    async fn save_committed(
        &mut self,
        committed: Option<typ::LogId>,
    ) -> Result<(), typ::StorageError> {
        let bytes = serde_json::to_vec(&committed).map_err(|e| StorageIOError::write(&e))?;
        let dir = self.shared.dir.clone();
        fsutil::blocking(move || fsutil::write_atomic(&dir, COMMITTED_FILE, &bytes, false))
            .await
            .map_err(|e| io_err(ErrorSubject::Store, ErrorVerb::Write, e))?;
        self.mem_write().committed = committed;
        Ok(())
    }

    async fn read_committed(&mut self) -> Result<Option<typ::LogId>, typ::StorageError> {
        Ok(self.mem_read().committed)
    }

    /// Contract: when this returns the entries are readable; `callback` is
    /// called once they are durable (may be before or after returning);
    /// never leave a hole. We write + fdatasync synchronously, then publish
    /// to memory, then call the callback: simple, and an fsync per batch
    /// (openraft batches entries that arrive together).
    async fn append<I>(
        &mut self,
        entries: I,
        callback: LogFlushed<TypeConfig>,
    ) -> Result<(), typ::StorageError>
    where
        I: IntoIterator<Item = typ::Entry> + OptionalSend,
        I::IntoIter: OptionalSend,
    {
        let entries: Vec<typ::Entry> = entries.into_iter().collect();
        let Some(first) = entries.first() else {
            callback.log_io_completed(Ok(()));
            return Ok(());
        };
        {
            // Overwriting needs an explicit truncate first: refuse, it would
            // break the file's ordering. A gap would be an openraft bug (it
            // never leaves holes); openraft's test suite does append out of
            // sequence after a purge, so only warn.
            let mem = self.mem_read();
            if let Some(&last) = mem.entries.keys().next_back() {
                if first.log_id.index <= last {
                    let e = corrupt(format!(
                        "append at {} but last index is {last}",
                        first.log_id.index
                    ));
                    return Err(io_err(ErrorSubject::Logs, ErrorVerb::Write, e));
                }
                if first.log_id.index != last + 1 {
                    tracing::warn!("log hole: append at {} after {last}", first.log_id.index);
                }
            }
        }
        let mut bytes = Vec::new();
        let mut records = Vec::with_capacity(entries.len());
        for e in &entries {
            let before = bytes.len();
            encode_record(&mut bytes, e)
                .map_err(|err| io_err(ErrorSubject::Logs, ErrorVerb::Write, err))?;
            records.push((e.log_id.index, bytes.len() - before));
        }
        let res = self.with_file(move |f| f.append(records, &bytes)).await;
        match res {
            Ok(()) => {
                {
                    let mut mem = self.mem_write();
                    for e in entries {
                        mem.entries.insert(e.log_id.index, e);
                    }
                }
                callback.log_io_completed(Ok(()));
                Ok(())
            }
            Err(e) => {
                callback.log_io_completed(Err(io::Error::new(e.kind(), e.to_string())));
                Err(io_err(ErrorSubject::Logs, ErrorVerb::Write, e))
            }
        }
    }

    /// Contract: delete entries with index >= `log_id.index` (conflicting
    /// uncommitted entries on a follower); afterwards they must not be
    /// readable; no hole (we cut the file's tail, so there cannot be one).
    async fn truncate(&mut self, log_id: typ::LogId) -> Result<(), typ::StorageError> {
        let index = log_id.index;
        self.with_file(move |f| f.truncate(index))
            .await
            .map_err(|e| io_err(ErrorSubject::Logs, ErrorVerb::Delete, e))?;
        self.mem_write().entries.split_off(&index);
        Ok(())
    }

    /// Contract: delete entries with index <= `log_id.index` (already in a
    /// snapshot); remember `log_id` as last purged (get_log_state must
    /// report it even when the log is then empty); no hole. `log_id` may be
    /// beyond the last entry (after a snapshot was installed).
    ///
    /// Crash safety: the purge marker is made durable first; entries at or
    /// below it are ignored on load, so the file cleanup can be lazy.
    async fn purge(&mut self, log_id: typ::LogId) -> Result<(), typ::StorageError> {
        let bytes = serde_json::to_vec(&log_id).map_err(|e| StorageIOError::write(&e))?;
        let index = log_id.index;
        self.with_file(move |f| {
            fsutil::write_atomic(&f.dir.clone(), PURGED_FILE, &bytes, true)?;
            f.purge(index)
        })
        .await
        .map_err(|e| io_err(ErrorSubject::Logs, ErrorVerb::Delete, e))?;
        let mut mem = self.mem_write();
        mem.entries = mem.entries.split_off(&(index + 1));
        mem.last_purged = Some(log_id);
        Ok(())
    }
}
