//! The keyed state a call sees (`eddy:processor/state` and `timers`): the
//! caller's store, read-only during the call, under two layers of changes
//! — those of the batch's earlier, accepted calls, and those of the call
//! running.
//!
//! A call whose outputs the caller keeps adds its changes to the batch's
//! ([`StateSession::accept_call`]); a call that fails (a record error, a
//! trap, outputs the caller refuses) loses them with its outputs, so a
//! batch the host narrows down to its failing record keeps exactly the
//! changes of the records it keeps. The caller takes the batch's changes
//! in the order they were made ([`StateSession::take_changes`]), applies
//! them to its store and writes them to its changelog: one change per
//! `put`, `delete`, timer registered, cancelled or fired, never merged, so
//! that the changes are a function of the records processed, however the
//! records were cut into batches.
//!
//! One store holds three namespaces, by the first byte of the stored key:
//! the processor's keys (0), its timers (1, then the time and the key, so
//! that timers sort by time; see `timers.rs` for the event time) and, with
//! `spec.state.ttlMs`, the keys' expiry times (2; see `ttl.rs`).

mod memory;
mod timers;
mod ttl;

use std::collections::BTreeMap;
use std::fmt;
use std::ops::Bound;
use std::sync::Arc;

use bytes::Bytes;

pub use memory::MemoryState;
use timers::EventTime;

use crate::bindings::eddy::processor::state::{Entry, Host};
use crate::state::State;

/// Longest state key, in bytes.
pub const STATE_KEY_BYTES_MAX: usize = 4 << 10;
/// Largest state value, in bytes.
pub const STATE_VALUE_BYTES_MAX: usize = 1 << 20;
/// Most entries one scan returns.
pub const SCAN_ENTRIES_MAX: u32 = 1024;

/// The first byte of a stored key: whose it is.
const USER: u8 = 0;
const TIMER: u8 = 1;
const EXPIRY: u8 = 2;

/// What a call reads its state from: the caller's store as of the batch's
/// start. Read from the call's thread while the caller waits.
pub trait StateBackend: Send + Sync {
    /// The value under `key`. An `Err` is a message for the processor.
    fn get(&self, key: &[u8]) -> Result<Option<Bytes>, String>;

    /// Up to `limit` entries with keys starting with `prefix`, after
    /// `start_after` when given, in key order.
    fn scan(
        &self,
        prefix: &[u8],
        start_after: Option<&[u8]>,
        limit: usize,
    ) -> Result<Vec<(Bytes, Bytes)>, String>;

    /// Bytes of keys and values stored.
    fn bytes(&self) -> u64;
}

/// Where a [`StateBackend::scan`] begins in a store sorted by key: just
/// after `start_after` when it is at or past `prefix`, else at `prefix`.
pub fn scan_start<'a>(prefix: &'a [u8], start_after: Option<&'a [u8]>) -> Bound<&'a [u8]> {
    match start_after {
        Some(s) if s >= prefix => Bound::Excluded(s),
        _ => Bound::Included(prefix),
    }
}

/// One change to the store, as stored (the key with its namespace byte):
/// a `Some` value puts, `None` deletes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StateChange {
    pub key: Bytes,
    pub value: Option<Bytes>,
}

/// Changes in the order made, and the newest per key for reads.
#[derive(Default)]
struct Layer {
    newest: foldhash::HashMap<Bytes, Option<Bytes>>,
    changes: Vec<StateChange>,
    /// How much the layer grew the store's bytes (negative: shrank).
    bytes_delta: i64,
}

impl Layer {
    fn clear(&mut self) {
        self.newest.clear();
        self.changes.clear();
        self.bytes_delta = 0;
    }
}

/// The state of one task (one input partition) for the calls of one
/// batch: attach it to each call with
/// [`Instance::process_with_state`](crate::Instance::process_with_state).
pub struct StateSession {
    base: Option<Arc<dyn StateBackend>>,
    bytes_max: u64,
    batch: Layer,
    call: Layer,
    time: EventTime,
    /// `spec.state.ttlMs`, if set.
    ttl_ms: Option<i64>,
    /// A key with its namespace byte, built here to look it up without an
    /// allocation per read.
    scratch: Vec<u8>,
}

impl fmt::Debug for StateSession {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("StateSession")
            .field("bytes_max", &self.bytes_max)
            .field("batch_changes", &self.batch.changes.len())
            .finish_non_exhaustive()
    }
}

impl Default for StateSession {
    /// No state: every state call fails, saying how to get state.
    fn default() -> Self {
        StateSession {
            base: None,
            bytes_max: 0,
            batch: Layer::default(),
            call: Layer::default(),
            time: EventTime::default(),
            ttl_ms: None,
            scratch: Vec::new(),
        }
    }
}

impl StateSession {
    /// A session over `base`, whose keys and values together may take at
    /// most `bytes_max` bytes, for a task that has processed no record yet
    /// and allows no lateness (see [`StateSession::with_event_time`]).
    pub fn new(base: Arc<dyn StateBackend>, bytes_max: u64) -> StateSession {
        StateSession {
            base: Some(base),
            bytes_max,
            ..StateSession::default()
        }
    }

    /// Sets where event time stands: the highest timestamp of the records
    /// the task has processed (`None`: none yet), and how far behind it the
    /// watermark stays, in milliseconds.
    pub fn with_event_time(mut self, max_timestamp: Option<i64>, lateness_ms: i64) -> Self {
        self.time = EventTime::new(max_timestamp, lateness_ms);
        self
    }

    /// Makes keys expire `ttl_ms` of event time after they were last
    /// written (`None`: never). The processor must then advance after
    /// every record (see `ttl.rs`).
    pub fn with_ttl(mut self, ttl_ms: Option<i64>) -> Self {
        self.ttl_ms = ttl_ms;
        self
    }

    /// Checks, after a call that returned, that it kept the rules its
    /// state needs; the index of the first record it broke them at, with
    /// why. With a TTL, the processor must have advanced past every record.
    pub(crate) fn check_call(&self) -> Result<(), (usize, String)> {
        match (self.ttl_ms, self.time.first_not_advanced()) {
            (Some(_), Some(index)) => Err((
                index,
                "with spec.state.ttlMs the processor must call timers.advance after every \
                 record, in order (Rust: each_with_timers; Python and JavaScript: define \
                 on_timer), so that each write has its record's event time"
                    .to_owned(),
            )),
            _ => Ok(()),
        }
    }

    /// Moves event time on to `timestamp` without a record, as if one
    /// stamped so had been processed (a quiet input); the next call without
    /// records fires the timers that makes due.
    pub fn move_event_time_to(&mut self, timestamp: i64) {
        self.time.move_to(timestamp);
    }

    /// The highest timestamp of the records processed, accepted calls
    /// included: what the caller keeps for the next batch.
    pub fn max_timestamp(&self) -> Option<i64> {
        self.time.max_accepted()
    }

    /// The changes of the calls accepted so far, in the order made; the
    /// session starts over empty (the caller applies them to its store).
    pub fn take_changes(&mut self) -> Vec<StateChange> {
        self.call.clear();
        let changes = std::mem::take(&mut self.batch.changes);
        self.batch.clear();
        changes
    }

    /// Starts a call on records with these timestamps.
    pub(crate) fn begin_call(&mut self, timestamps: impl Iterator<Item = i64>) {
        self.call.clear();
        self.time.begin_call(timestamps);
    }

    /// Keeps the last call's changes: the caller uses its outputs.
    pub fn accept_call(&mut self) {
        if self.batch.changes.is_empty() {
            // Most batches are one call: its layer becomes the batch's,
            // and the batch's empty one (with its room) the next call's.
            std::mem::swap(&mut self.batch, &mut self.call);
        } else {
            self.batch.newest.extend(self.call.newest.drain());
            self.batch.changes.append(&mut self.call.changes);
            self.batch.bytes_delta += self.call.bytes_delta;
        }
        self.call.clear();
        self.time.accept_call();
    }

    /// Drops the last call's changes: it failed, or the caller refuses
    /// its outputs.
    pub fn discard_call(&mut self) {
        self.call.clear();
        self.time.discard_call();
    }

    fn base(&self) -> Result<&Arc<dyn StateBackend>, String> {
        self.base.as_ref().ok_or_else(|| {
            "this processor runs without state: declare `state: {enabled: true}` under spec in \
             the pipeline's manifest (state needs delivery: exactly-once)"
                .to_owned()
        })
    }

    /// The value stored under `raw` (a key with its namespace byte).
    fn get_raw(&self, raw: &[u8]) -> Result<Option<Bytes>, String> {
        let base = self.base()?;
        for layer in [&self.call, &self.batch] {
            if let Some(value) = layer.newest.get(raw) {
                return Ok(value.clone());
            }
        }
        base.get(raw)
    }

    fn set_raw(&mut self, raw: Vec<u8>, value: Option<Vec<u8>>) -> Result<(), String> {
        if let Some(v) = &value
            && self.ttl_ms.is_none()
        {
            check_value(v)?;
        }
        let old = self.get_raw(&raw)?;
        let size = |v: &Option<Bytes>| v.as_ref().map_or(0, |v| (raw.len() + v.len()) as i64);
        let value = value.map(Bytes::from);
        let delta = size(&value) - size(&old);
        if old.is_none() && value.is_none() {
            return Ok(()); // nothing to delete: no change to write
        }
        if delta > 0 {
            let total = self.bytes_now().saturating_add(delta);
            if total as u64 > self.bytes_max {
                return Err(format!(
                    "the task's state would grow to {total} bytes, past its limit of {} MiB; \
                     raise spec.limits.stateDiskMiB in the manifest (--state-mib for `eddy \
                     processor test`), or keep less per key",
                    self.bytes_max >> 20
                ));
            }
        }
        let key = Bytes::from(raw);
        self.call.bytes_delta += delta;
        self.call.newest.insert(key.clone(), value.clone());
        self.call.changes.push(StateChange { key, value });
        Ok(())
    }

    fn bytes_now(&self) -> i64 {
        let base = self.base.as_ref().map_or(0, |b| b.bytes());
        i64::try_from(base).unwrap_or(i64::MAX) + self.batch.bytes_delta + self.call.bytes_delta
    }

    /// Up to `limit` stored entries whose raw keys start with `prefix`,
    /// after `start_after`, in key order, the layers' changes included.
    fn scan_raw(
        &self,
        prefix: &[u8],
        start_after: Option<&[u8]>,
        limit: usize,
    ) -> Result<Vec<(Bytes, Bytes)>, String> {
        let base = self.base()?;
        let in_range = |k: &[u8]| k.starts_with(prefix) && start_after.is_none_or(|s| k > s);
        // The layers' newest value per key, the running call's first.
        let mut changed: BTreeMap<Bytes, Option<Bytes>> = BTreeMap::new();
        for layer in [&self.call, &self.batch] {
            for (k, v) in &layer.newest {
                if in_range(k) {
                    changed.entry(k.clone()).or_insert_with(|| v.clone());
                }
            }
        }
        // Each changed key can hide at most one stored entry.
        let stored = base.scan(prefix, start_after, limit + changed.len())?;
        let mut merged: BTreeMap<Bytes, Bytes> = stored
            .into_iter()
            .filter(|(k, _)| !changed.contains_key(k))
            .collect();
        merged.extend(changed.into_iter().filter_map(|(k, v)| v.map(|v| (k, v))));
        Ok(merged.into_iter().take(limit).collect())
    }

    fn get(&mut self, key: &[u8]) -> Result<Option<Bytes>, String> {
        self.base()?;
        check_key(key)?;
        let mut raw = std::mem::take(&mut self.scratch);
        raw.clear();
        raw.push(USER);
        raw.extend_from_slice(key);
        let found = self.get_raw(&raw);
        self.scratch = raw;
        match self.ttl_ms {
            Some(_) => self.live(found?),
            None => found,
        }
    }

    fn set(&mut self, key: Vec<u8>, value: Option<Vec<u8>>) -> Result<(), String> {
        self.base()?;
        let raw = user_key(&key)?;
        match self.ttl_ms {
            Some(ttl_ms) => self.set_expiring(raw, value, ttl_ms),
            None => self.set_raw(raw, value),
        }
    }

    fn scan(
        &self,
        prefix: &[u8],
        start_after: Option<&[u8]>,
        limit: u32,
    ) -> Result<Vec<(Bytes, Bytes)>, String> {
        self.base()?;
        if limit > SCAN_ENTRIES_MAX {
            return Err(format!(
                "a scan of {limit} entries is over the limit of {SCAN_ENTRIES_MAX}; scan in \
                 pages, passing the last key of one page as start-after of the next"
            ));
        }
        let prefix = user_key(prefix)?;
        let after = start_after.map(user_key).transpose()?;
        let entries = match self.ttl_ms {
            Some(_) => self.scan_live(&prefix, after.as_deref(), limit as usize)?,
            None => self.scan_raw(&prefix, after.as_deref(), limit as usize)?,
        };
        Ok(entries
            .into_iter()
            .map(|(k, v)| (k.slice(1..), v))
            .collect())
    }
}

fn check_value(value: &[u8]) -> Result<(), String> {
    if value.len() > STATE_VALUE_BYTES_MAX {
        return Err(format!(
            "a state value of {} bytes is over the limit of {STATE_VALUE_BYTES_MAX} bytes; \
             keep large values in a topic and their keys in state",
            value.len()
        ));
    }
    Ok(())
}

fn check_key(key: &[u8]) -> Result<(), String> {
    if key.len() > STATE_KEY_BYTES_MAX {
        return Err(format!(
            "a state key of {} bytes is over the limit of {STATE_KEY_BYTES_MAX} bytes",
            key.len()
        ));
    }
    Ok(())
}

/// A processor's key as stored: in the processor's namespace.
fn user_key(key: &[u8]) -> Result<Vec<u8>, String> {
    check_key(key)?;
    let mut raw = Vec::with_capacity(key.len() + 1);
    raw.push(USER);
    raw.extend_from_slice(key);
    Ok(raw)
}

impl Host for State {
    fn get(&mut self, key: Vec<u8>) -> Result<Option<Vec<u8>>, String> {
        Ok(self.call.state.get(&key)?.map(|v| v.to_vec()))
    }

    fn put(&mut self, key: Vec<u8>, value: Vec<u8>) -> Result<(), String> {
        self.call.state.set(key, Some(value))
    }

    fn delete(&mut self, key: Vec<u8>) -> Result<(), String> {
        self.call.state.set(key, None)
    }

    fn scan(
        &mut self,
        prefix: Vec<u8>,
        start_after: Option<Vec<u8>>,
        limit: u32,
    ) -> Result<Vec<Entry>, String> {
        Ok(self
            .call
            .state
            .scan(&prefix, start_after.as_deref(), limit)?
            .into_iter()
            .map(|(key, value)| Entry {
                key: key.to_vec(),
                value: value.to_vec(),
            })
            .collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn session(base: &Arc<MemoryState>) -> StateSession {
        StateSession::new(base.clone(), 1 << 20)
    }

    fn put(s: &mut StateSession, k: &str, v: &str) {
        s.set(k.as_bytes().to_vec(), Some(v.as_bytes().to_vec()))
            .unwrap();
    }

    fn keys(entries: Vec<(Bytes, Bytes)>) -> Vec<String> {
        entries
            .into_iter()
            .map(|(k, v)| {
                format!(
                    "{}={}",
                    String::from_utf8_lossy(&k),
                    String::from_utf8_lossy(&v)
                )
            })
            .collect()
    }

    #[test]
    fn a_failed_call_loses_its_changes_and_an_accepted_one_keeps_them_in_order() {
        let base = Arc::new(MemoryState::default());
        let mut s = session(&base);
        put(&mut s, "a", "1");
        s.accept_call();
        put(&mut s, "a", "2");
        put(&mut s, "b", "1");
        assert_eq!(s.get(b"a").unwrap().as_deref(), Some(&b"2"[..]));
        s.discard_call();
        assert_eq!(s.get(b"a").unwrap().as_deref(), Some(&b"1"[..]));
        assert_eq!(s.get(b"b").unwrap(), None);
        put(&mut s, "a", "3");
        s.set(b"a".to_vec(), None).unwrap();
        s.accept_call();
        let changes = s.take_changes();
        let seen: Vec<_> = changes
            .iter()
            .map(|c| (c.key.clone(), c.value.clone()))
            .collect();
        assert_eq!(
            seen,
            [
                (Bytes::from("\0a"), Some(Bytes::from("1"))),
                (Bytes::from("\0a"), Some(Bytes::from("3"))),
                (Bytes::from("\0a"), None),
            ]
        );
        base.apply(&changes);
        assert!(base.is_empty());
        assert_eq!(base.bytes(), 0);
    }

    #[test]
    fn a_read_after_the_store_took_the_changes_sees_the_store_anew() {
        let base = Arc::new(MemoryState::default());
        let mut s = session(&base);
        assert_eq!(s.get(b"k").unwrap(), None);
        put(&mut s, "k", "1");
        s.accept_call();
        base.apply(&s.take_changes());
        // The same session, as `eddy processor test` keeps it across batches.
        assert_eq!(s.get(b"k").unwrap().as_deref(), Some(&b"1"[..]));
        put(&mut s, "k", "2");
        s.accept_call();
        let changes = s.take_changes();
        assert_eq!(changes.len(), 1);
        base.apply(&changes);
        assert_eq!(s.get(b"k").unwrap().as_deref(), Some(&b"2"[..]));
        assert_eq!(base.bytes(), 3, "a namespace byte, the key, the value");
    }

    #[test]
    fn scans_merge_the_store_with_the_layers_in_key_order() {
        let base = Arc::new(MemoryState::default());
        base.apply(&[
            StateChange {
                key: Bytes::from("\0k1"),
                value: Some(Bytes::from("s")),
            },
            StateChange {
                key: Bytes::from("\0k2"),
                value: Some(Bytes::from("s")),
            },
            StateChange {
                key: Bytes::from("\0x"),
                value: Some(Bytes::from("s")),
            },
        ]);
        let mut s = session(&base);
        s.set(b"k1".to_vec(), None).unwrap();
        s.accept_call();
        put(&mut s, "k3", "c");
        put(&mut s, "k2", "c");
        assert_eq!(keys(s.scan(b"k", None, 10).unwrap()), ["k2=c", "k3=c"]);
        assert_eq!(keys(s.scan(b"k", Some(b"k2"), 10).unwrap()), ["k3=c"]);
        assert_eq!(keys(s.scan(b"", None, 2).unwrap()), ["k2=c", "k3=c"]);
        assert!(s.scan(b"", None, SCAN_ENTRIES_MAX + 1).is_err());
    }

    #[test]
    fn limits_are_refused_with_the_setting_to_change() {
        let base = Arc::new(MemoryState::default());
        let mut s = StateSession::new(base, 1 << 20);
        let err = s
            .set(vec![0; STATE_KEY_BYTES_MAX + 1], Some(vec![]))
            .unwrap_err();
        assert!(err.contains("state key of 4097 bytes"), "{err}");
        let err = s
            .set(b"k".to_vec(), Some(vec![0; STATE_VALUE_BYTES_MAX + 1]))
            .unwrap_err();
        assert!(err.contains("over the limit of 1048576 bytes"), "{err}");
        s.set(b"k".to_vec(), Some(vec![0; 600 << 10])).unwrap();
        let err = s.set(b"j".to_vec(), Some(vec![0; 600 << 10])).unwrap_err();
        assert!(err.contains("spec.limits.stateDiskMiB"), "{err}");
        // Replacing a value with a smaller one always fits.
        s.set(b"k".to_vec(), Some(vec![0; 10])).unwrap();
        let none = StateSession::default().get(b"k").unwrap_err();
        assert!(none.contains("state: {enabled: true}"), "{none}");
    }
}
