//! The keyed state the host keeps for a stateful pipeline's task (one per
//! input partition): what a processor remembers between records must live
//! here, not in the processor's own fields, for exactly-once results.
//!
//! Every function fails with a message naming the limit or setting at
//! fault (a key over 4 KiB, a value over 1 MiB, the task's state over
//! `spec.limits.stateDiskMiB`, a pipeline without `spec.state`); return it as
//! the record's error, which [`each`](crate::each) does with `?`:
//!
//! ```no_run
//! use eddy_processor::{Batch, Output, OutputRecord, Params, Processor, RecordError, each, state};
//!
//! struct Count;
//!
//! impl Processor for Count {
//!     fn init(_params: &Params) -> Result<Self, String> {
//!         Ok(Count)
//!     }
//!
//!     fn process(&mut self, batch: &Batch, out: &mut Output) -> Result<(), RecordError> {
//!         each(batch, out, |record, out| {
//!             let key = record.key().unwrap_or_default();
//!             let n = state::get_u64(key)?.unwrap_or(0) + 1;
//!             state::put_u64(key, n)?;
//!             let count = n.to_string();
//!             out.push(OutputRecord {
//!                 key: record.key(),
//!                 value: Some(count.as_bytes()),
//!                 ..OutputRecord::default()
//!             });
//!             Ok(())
//!         })
//!     }
//! }
//! # eddy_processor::export_processor!(Count);
//! ```

use crate::bindings::eddy::processor::state as host;

/// A key and its value.
pub type Entry = (Vec<u8>, Vec<u8>);

/// Most entries one [`scan`] returns.
pub const SCAN_ENTRIES_MAX: u32 = 1024;

/// The value stored under `key`, if any.
pub fn get(key: &[u8]) -> Result<Option<Vec<u8>>, String> {
    host::get(key)
}

/// Stores `value` under `key`.
pub fn put(key: &[u8], value: &[u8]) -> Result<(), String> {
    host::put(key, value)
}

/// Removes `key`; removing an absent key is no error.
pub fn delete(key: &[u8]) -> Result<(), String> {
    host::delete(key)
}

/// Up to `limit` (at most [`SCAN_ENTRIES_MAX`]) entries whose keys start
/// with `prefix`, in key order, after `start_after` when given.
pub fn scan(prefix: &[u8], start_after: Option<&[u8]>, limit: u32) -> Result<Vec<Entry>, String> {
    Ok(host::scan(prefix, start_after, limit)?
        .into_iter()
        .map(|e| (e.key, e.value))
        .collect())
}

/// Every entry whose key starts with `prefix`, in key order, fetched a
/// page at a time.
pub fn scan_all(prefix: &[u8]) -> Result<Vec<Entry>, String> {
    let mut all: Vec<Entry> = Vec::new();
    loop {
        let after = all.last().map(|(k, _)| k.as_slice());
        let page = scan(prefix, after, SCAN_ENTRIES_MAX)?;
        let full = page.len() == SCAN_ENTRIES_MAX as usize;
        all.extend(page);
        if !full {
            return Ok(all);
        }
    }
}

/// A `u64` stored with [`put_u64`] (8 bytes, big-endian) under `key`.
pub fn get_u64(key: &[u8]) -> Result<Option<u64>, String> {
    match get(key)? {
        None => Ok(None),
        Some(v) => v
            .try_into()
            .map(|b| Some(u64::from_be_bytes(b)))
            .map_err(|v: Vec<u8>| {
                format!(
                    "the state value under this key has {} bytes, not the 8 of a u64",
                    v.len()
                )
            }),
    }
}

/// Stores `n` under `key` as 8 big-endian bytes.
pub fn put_u64(key: &[u8], n: u64) -> Result<(), String> {
    put(key, &n.to_be_bytes())
}
