//! A keyed store in memory: what a pipeline task keeps its state in, and
//! what `eddy processor test` uses.
//!
//! Entries live in a hash map, which is what point reads and writes (nearly
//! every call) touch; the keys are also kept in order, for scans and timers,
//! but only a new or removed key changes that index, not an update. The map
//! hashes with foldhash, seeded at random per process: several times
//! faster than std's SipHash on short keys, and still not a hash an input
//! can be crafted to collide on.

use std::collections::BTreeSet;
use std::ops::Bound;

use bytes::Bytes;
use parking_lot::RwLock;

use super::{StateBackend, StateChange};

#[derive(Debug, Default)]
struct Entries {
    values: foldhash::HashMap<Bytes, Bytes>,
    /// The keys of `values`, in order (sharing their bytes).
    order: BTreeSet<Bytes>,
    /// Bytes of keys and values.
    bytes: u64,
}

/// A store in memory.
#[derive(Debug, Default)]
pub struct MemoryState {
    entries: RwLock<Entries>,
}

impl MemoryState {
    /// Applies changes in order.
    pub fn apply(&self, changes: &[StateChange]) {
        let mut guard = self.entries.write();
        let e = &mut *guard;
        for c in changes {
            let old = match &c.value {
                Some(v) => {
                    e.bytes += (c.key.len() + v.len()) as u64;
                    let old = e.values.insert(c.key.clone(), v.clone());
                    if old.is_none() {
                        e.order.insert(c.key.clone());
                    }
                    old
                }
                None => {
                    let old = e.values.remove(&c.key);
                    if old.is_some() {
                        e.order.remove(&c.key);
                    }
                    old
                }
            };
            if let Some(old) = old {
                e.bytes -= (c.key.len() + old.len()) as u64;
            }
        }
    }

    /// Removes every entry.
    pub fn clear(&self) {
        *self.entries.write() = Entries::default();
    }

    /// How many keys are stored.
    pub fn len(&self) -> usize {
        self.entries.read().values.len()
    }

    /// Whether no key is stored.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Every entry, in key order.
    pub fn entries(&self) -> Vec<(Bytes, Bytes)> {
        let guard = self.entries.read();
        guard
            .order
            .iter()
            .filter_map(|k| guard.values.get(k).map(|v| (k.clone(), v.clone())))
            .collect()
    }
}

impl StateBackend for MemoryState {
    fn get(&self, key: &[u8]) -> Result<Option<Bytes>, String> {
        Ok(self.entries.read().values.get(key).cloned())
    }

    fn scan(
        &self,
        prefix: &[u8],
        start_after: Option<&[u8]>,
        limit: usize,
    ) -> Result<Vec<(Bytes, Bytes)>, String> {
        let guard = self.entries.read();
        let from = super::scan_start(prefix, start_after);
        Ok(guard
            .order
            .range::<[u8], _>((from, Bound::Unbounded))
            .take_while(|k| k.starts_with(prefix))
            .take(limit)
            .filter_map(|k| guard.values.get(k).map(|v| (k.clone(), v.clone())))
            .collect())
    }

    fn bytes(&self) -> u64 {
        self.entries.read().bytes
    }
}
