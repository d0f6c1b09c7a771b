//! A keyed store in memory: what a pipeline task keeps its state in, and
//! what `eddy processor test` uses.

use std::collections::BTreeMap;

use bytes::Bytes;

use super::{StateBackend, StateChange};

/// A store in memory, for tests and `eddy processor test`.
#[derive(Debug, Default)]
pub struct MemoryState {
    entries: parking_lot::RwLock<(BTreeMap<Bytes, Bytes>, u64)>,
}

impl MemoryState {
    /// Applies changes in order.
    pub fn apply(&self, changes: &[StateChange]) {
        let mut guard = self.entries.write();
        let (map, bytes) = &mut *guard;
        for c in changes {
            let old = match &c.value {
                Some(v) => {
                    *bytes += (c.key.len() + v.len()) as u64;
                    map.insert(c.key.clone(), v.clone())
                }
                None => map.remove(&c.key),
            };
            if let Some(old) = old {
                *bytes -= (c.key.len() + old.len()) as u64;
            }
        }
    }

    /// Removes every entry.
    pub fn clear(&self) {
        *self.entries.write() = (BTreeMap::new(), 0);
    }

    /// How many keys are stored.
    pub fn len(&self) -> usize {
        self.entries.read().0.len()
    }

    /// Whether no key is stored.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Every entry, in key order.
    pub fn entries(&self) -> Vec<(Bytes, Bytes)> {
        let guard = self.entries.read();
        guard
            .0
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect()
    }
}

impl StateBackend for MemoryState {
    fn get(&self, key: &[u8]) -> Result<Option<Bytes>, String> {
        Ok(self.entries.read().0.get(key).cloned())
    }

    fn scan(
        &self,
        prefix: &[u8],
        start_after: Option<&[u8]>,
        limit: usize,
    ) -> Result<Vec<(Bytes, Bytes)>, String> {
        use std::ops::Bound;
        let guard = self.entries.read();
        let from = match start_after {
            Some(s) if s >= prefix => Bound::Excluded(s),
            _ => Bound::Included(prefix),
        };
        Ok(guard
            .0
            .range::<[u8], _>((from, Bound::Unbounded))
            .take_while(|(k, _)| k.starts_with(prefix))
            .take(limit)
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect())
    }

    fn bytes(&self) -> u64 {
        self.entries.read().1
    }
}
