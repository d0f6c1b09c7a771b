//! A stateful task's store: in memory up to `spec.limits.stateMiB`, then
//! on disk in an embedded database, redb, in the worker's state directory.
//!
//! The store is a cache of the changelog: a task fills it from the
//! changelog as it starts, so a file left by an earlier run (after a crash,
//! or by a task that moved away) is removed, never trusted. Past the memory
//! budget the store moves every entry to disk at once and keeps them there
//! for the rest of the task's life; reads go to redb, whose own cache holds
//! the hot pages.
//!
//! redb rather than fjall: the store needs point reads, prefix scans and
//! one atomic batch of writes per input batch, which a B-tree in one file
//! gives with a small, pure-Rust crate and no background threads; an LSM
//! tree's write throughput matters less here than its compaction threads
//! and memory would cost beside every task.

use std::ops::Bound;
use std::path::{Path, PathBuf};

use bytes::Bytes;
use eddy_wasm::{MemoryState, StateBackend, StateChange};
use parking_lot::RwLock;
use redb::{Database, ReadableDatabase, TableDefinition};

use crate::error::{Error, Result};

const ENTRIES: TableDefinition<'static, &[u8], &[u8]> = TableDefinition::new("entries");

/// The entries on disk, and their count and bytes.
struct Disk {
    db: Database,
    keys: u64,
    bytes: u64,
}

/// One task's keyed store.
pub struct TaskStore {
    memory: MemoryState,
    memory_bytes_max: u64,
    disk: RwLock<Option<Disk>>,
    path: PathBuf,
}

impl std::fmt::Debug for TaskStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TaskStore")
            .field("path", &self.path)
            .field("on_disk", &self.is_on_disk())
            .finish_non_exhaustive()
    }
}

impl TaskStore {
    /// An empty store that keeps up to `memory_bytes_max` bytes in memory
    /// and spills to a database at `path` (removed now if left over).
    pub fn new(path: PathBuf, memory_bytes_max: u64) -> Result<TaskStore> {
        remove_file(&path)?;
        Ok(TaskStore {
            memory: MemoryState::default(),
            memory_bytes_max,
            disk: RwLock::new(None),
            path,
        })
    }

    /// Whether the entries are on disk.
    pub fn is_on_disk(&self) -> bool {
        self.disk.read().is_some()
    }

    /// Keys stored.
    pub fn keys(&self) -> u64 {
        match &*self.disk.read() {
            Some(d) => d.keys,
            None => self.memory.len() as u64,
        }
    }

    /// Applies changes in order: in memory until the budget is passed,
    /// then on disk, in one transaction.
    pub fn apply(&self, changes: &[StateChange]) -> Result<()> {
        let mut disk = self.disk.write();
        if disk.is_none() {
            self.memory.apply(changes);
            if self.memory.bytes() <= self.memory_bytes_max {
                return Ok(());
            }
            *disk = Some(self.spill()?);
            return Ok(());
        }
        let Some(d) = disk.as_mut() else {
            return Ok(());
        };
        write(d, changes.iter().map(|c| (&c.key, c.value.as_ref()))).map_err(|e| {
            Error::Internal(format!(
                "writing the task's state to {} failed: {e} (is the disk full?); the task restarts and rebuilds it from the changelog",
                self.path.display()
            ))
        })
    }

    /// Moves every entry from memory to a new database.
    fn spill(&self) -> Result<Disk> {
        let failed = |e: &dyn std::fmt::Display| {
            Error::Internal(format!(
                "spilling the task's state to {} failed: {e}; the task restarts and rebuilds it from the changelog",
                self.path.display()
            ))
        };
        if let Some(dir) = self.path.parent() {
            std::fs::create_dir_all(dir).map_err(|e| failed(&e))?;
        }
        let db = Database::create(&self.path).map_err(|e| failed(&e))?;
        let mut d = Disk {
            db,
            keys: 0,
            bytes: 0,
        };
        let entries = self.memory.entries();
        write(&mut d, entries.iter().map(|(k, v)| (k, Some(v)))).map_err(|e| failed(&e))?;
        self.memory.clear();
        tracing::info!(path = %self.path.display(), keys = d.keys, bytes = d.bytes, "state spilled to disk past its memory budget");
        Ok(d)
    }
}

/// Writes `changes` in one transaction, keeping the count and bytes.
fn write<'a>(
    d: &mut Disk,
    changes: impl Iterator<Item = (&'a Bytes, Option<&'a Bytes>)>,
) -> std::result::Result<(), redb::Error> {
    let txn = d.db.begin_write()?;
    let (mut keys, mut bytes) = (d.keys, d.bytes);
    {
        let mut table = txn.open_table(ENTRIES)?;
        for (key, value) in changes {
            let old = match value {
                Some(v) => {
                    keys += 1;
                    bytes += (key.len() + v.len()) as u64;
                    table.insert(&key[..], &v[..])?.map(|o| o.value().len())
                }
                None => table.remove(&key[..])?.map(|o| o.value().len()),
            };
            if let Some(old) = old {
                keys -= 1;
                bytes -= (key.len() + old) as u64;
            }
        }
    }
    txn.commit()?;
    (d.keys, d.bytes) = (keys, bytes);
    Ok(())
}

fn remove_file(path: &Path) -> Result<()> {
    match std::fs::remove_file(path) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(Error::Internal(format!(
            "cannot remove the stale state file {}: {e}",
            path.display()
        ))),
        _ => Ok(()),
    }
}

impl Drop for TaskStore {
    fn drop(&mut self) {
        // A cache of the changelog: the next owner rebuilds it.
        if self.disk.get_mut().take().is_some() {
            let _ = std::fs::remove_file(&self.path);
        }
    }
}

fn disk_error(e: impl std::fmt::Display) -> String {
    format!("reading the task's state from disk failed: {e}")
}

impl StateBackend for TaskStore {
    fn get(&self, key: &[u8]) -> std::result::Result<Option<Bytes>, String> {
        let disk = self.disk.read();
        let Some(d) = &*disk else {
            return self.memory.get(key);
        };
        let txn = d.db.begin_read().map_err(disk_error)?;
        let table = txn.open_table(ENTRIES).map_err(disk_error)?;
        Ok(table
            .get(key)
            .map_err(disk_error)?
            .map(|v| Bytes::copy_from_slice(v.value())))
    }

    fn scan(
        &self,
        prefix: &[u8],
        start_after: Option<&[u8]>,
        limit: usize,
    ) -> std::result::Result<Vec<(Bytes, Bytes)>, String> {
        let disk = self.disk.read();
        let Some(d) = &*disk else {
            return self.memory.scan(prefix, start_after, limit);
        };
        let txn = d.db.begin_read().map_err(disk_error)?;
        let table = txn.open_table(ENTRIES).map_err(disk_error)?;
        let from = eddy_wasm::scan_start(prefix, start_after);
        let mut out = Vec::new();
        for entry in table
            .range::<&[u8]>((from, Bound::Unbounded))
            .map_err(disk_error)?
        {
            let (k, v) = entry.map_err(disk_error)?;
            if !k.value().starts_with(prefix) || out.len() >= limit {
                break;
            }
            out.push((
                Bytes::copy_from_slice(k.value()),
                Bytes::copy_from_slice(v.value()),
            ));
        }
        Ok(out)
    }

    fn bytes(&self) -> u64 {
        match &*self.disk.read() {
            Some(d) => d.bytes,
            None => self.memory.bytes(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn change(k: &str, v: Option<&str>) -> StateChange {
        StateChange {
            key: Bytes::copy_from_slice(k.as_bytes()),
            value: v.map(|v| Bytes::copy_from_slice(v.as_bytes())),
        }
    }

    #[test]
    fn past_its_memory_budget_the_store_moves_to_disk_and_reads_the_same() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("task.redb");
        let store = TaskStore::new(path.clone(), 64).unwrap();
        store
            .apply(&[change("a1", Some("x")), change("a2", Some("y"))])
            .unwrap();
        assert!(!store.is_on_disk());
        let big: Vec<StateChange> = (0..10)
            .map(|i| change(&format!("b{i}"), Some("0123456789")))
            .collect();
        store.apply(&big).unwrap();
        assert!(store.is_on_disk(), "past 64 bytes");
        assert!(path.exists());
        store
            .apply(&[change("a1", None), change("b3", Some("z"))])
            .unwrap();
        assert_eq!(store.keys(), 11);
        assert_eq!(store.bytes(), 3 + 10 * 12 - 9);
        assert_eq!(store.get(b"a1").unwrap(), None);
        assert_eq!(store.get(b"b3").unwrap().as_deref(), Some(&b"z"[..]));
        let scanned: Vec<Bytes> = store
            .scan(b"b", Some(b"b7"), 10)
            .unwrap()
            .into_iter()
            .map(|(k, _)| k)
            .collect();
        assert_eq!(scanned, [Bytes::from("b8"), Bytes::from("b9")]);
        drop(store);
        assert!(!path.exists(), "the cache goes with its task");
    }
}
