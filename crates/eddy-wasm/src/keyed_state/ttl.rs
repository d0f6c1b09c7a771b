//! Keys that expire (`spec.state.ttlMs`): a key expires once the watermark
//! reaches the event time it was last written at plus the TTL.
//!
//! With a TTL, a stored value starts with its expiry time (8 bytes,
//! big-endian), and an index in its own namespace (2, then the expiry time
//! and the key, so that it sorts by time) holds one entry per key. Writing
//! a key moves its index entry; `timers.advance` deletes the keys the new
//! watermark reached, oldest first, each deletion a change like any other;
//! reads skip a key that expired but waits for its deletion.
//!
//! A write's event time is that of the record being processed (see
//! `EventTime::write_time`), which the host knows only when the processor
//! advances after every record in order: with a TTL it must, and a call
//! that skips a record fails, saying so.

use bytes::Bytes;

use super::timers::timed_key;
use super::{EXPIRY, StateSession, check_value, user_key};

/// Most expired keys one `advance` deletes; later ones go at the next
/// (reads skip them meanwhile).
const EXPIRED_MAX: usize = 4096;

/// The expiry time and the value of a stored value.
fn split(stored: &Bytes) -> Result<(i64, Bytes), String> {
    let time: [u8; 8] = stored
        .get(..8)
        .and_then(|t| t.try_into().ok())
        .ok_or_else(|| {
            "a stored value lacks its expiry time: was spec.state.ttlMs switched on for \
             state kept without it?"
                .to_owned()
        })?;
    Ok((i64::from_be_bytes(time), stored.slice(8..)))
}

impl StateSession {
    /// The value a processor sees of a stored one: none once expired.
    pub(super) fn live(&self, stored: Option<Bytes>) -> Result<Option<Bytes>, String> {
        let Some(stored) = stored else {
            return Ok(None);
        };
        let (expiry, value) = split(&stored)?;
        Ok((expiry > self.watermark()).then_some(value))
    }

    /// Puts (`Some`) or deletes the processor's key `raw` (with its
    /// namespace byte), moving its index entry.
    pub(super) fn set_expiring(
        &mut self,
        raw: Vec<u8>,
        value: Option<Vec<u8>>,
        ttl_ms: i64,
    ) -> Result<(), String> {
        if let Some(v) = &value {
            check_value(v)?;
        }
        let old_expiry = match self.get_raw(&raw)? {
            Some(stored) => Some(split(&stored)?.0),
            None => None,
        };
        let expiry = value.as_ref().map(|_| {
            self.time
                .write_time()
                .unwrap_or(i64::MIN)
                .saturating_add(ttl_ms)
        });
        if old_expiry != expiry {
            if let Some(e) = old_expiry {
                self.set_raw(timed_key(EXPIRY, e, &raw[1..]), None)?;
            }
            if let Some(e) = expiry {
                self.set_raw(timed_key(EXPIRY, e, &raw[1..]), Some(Vec::new()))?;
            }
        }
        let stored = value.zip(expiry).map(|(v, e)| {
            let mut stored = Vec::with_capacity(8 + v.len());
            stored.extend_from_slice(&e.to_be_bytes());
            stored.extend_from_slice(&v);
            stored
        });
        self.set_raw(raw, stored)
    }

    /// Deletes the keys whose expiry the watermark has reached, oldest
    /// first, at most [`EXPIRED_MAX`].
    pub(super) fn expire(&mut self) -> Result<(), String> {
        for (key, expiry) in self.take_due(EXPIRY, EXPIRED_MAX, "expiry entry")? {
            let raw = user_key(&key)?;
            // Written again since, the key has another entry (this one
            // would have been deleted); the check is for damaged state.
            if let Some(stored) = self.get_raw(&raw)?
                && split(&stored)?.0 == expiry
            {
                self.set_raw(raw, None)?;
            }
        }
        Ok(())
    }

    /// Up to `limit` live entries under the raw `prefix`, after
    /// `start_after`, with their expiry times taken off: pages of stored
    /// entries until `limit` live ones or the end.
    pub(super) fn scan_live(
        &self,
        prefix: &[u8],
        start_after: Option<&[u8]>,
        limit: usize,
    ) -> Result<Vec<(Bytes, Bytes)>, String> {
        let mut live = Vec::new();
        let mut after = start_after.map(Bytes::copy_from_slice);
        while live.len() < limit {
            let page = self.scan_raw(prefix, after.as_deref(), limit)?;
            let full = page.len() == limit;
            after = page.last().map(|(k, _)| k.clone());
            for (key, stored) in page {
                if let Some(value) = self.live(Some(stored))? {
                    live.push((key, value));
                    if live.len() == limit {
                        break;
                    }
                }
            }
            if !full {
                break;
            }
        }
        Ok(live)
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::keyed_state::MemoryState;

    fn session(base: &Arc<MemoryState>, max_timestamp: Option<i64>) -> StateSession {
        StateSession::new(base.clone(), 1 << 20)
            .with_event_time(max_timestamp, 0)
            .with_ttl(Some(100))
    }

    #[test]
    fn a_key_expires_once_the_watermark_passes_its_last_write_plus_the_ttl() {
        let base = Arc::new(MemoryState::default());
        let mut s = session(&base, None);
        s.begin_call([10, 20, 60].into_iter());
        s.set(b"a".to_vec(), Some(b"1".to_vec())).unwrap(); // record 0: at 10
        s.advance(0).unwrap();
        s.set(b"b".to_vec(), Some(b"1".to_vec())).unwrap(); // record 1: at 20
        s.advance(1).unwrap();
        s.set(b"a".to_vec(), Some(b"2".to_vec())).unwrap(); // record 2: at 60
        s.advance(2).unwrap();
        s.accept_call();
        base.apply(&s.take_changes());
        assert_eq!(base.len(), 4, "two keys, one index entry each");

        let mut s = session(&base, Some(60));
        s.begin_call([119, 120, 200].into_iter());
        s.advance(0).unwrap();
        assert_eq!(
            s.get(b"b").unwrap().as_deref(),
            Some(&b"1"[..]),
            "until 120"
        );
        s.advance(1).unwrap();
        assert_eq!(s.get(b"b").unwrap(), None, "expired at 20 + 100");
        assert_eq!(s.get(b"a").unwrap().as_deref(), Some(&b"2"[..]));
        let entries = s.scan(b"", None, 10).unwrap();
        assert_eq!(entries, [(Bytes::from("a"), Bytes::from("2"))]);
        s.advance(2).unwrap();
        assert_eq!(s.get(b"a").unwrap(), None, "expired at 60 + 100");
        s.accept_call();
        base.apply(&s.take_changes());
        assert!(base.is_empty(), "keys and index entries deleted");
    }

    #[test]
    fn a_processor_that_skips_a_record_is_told_to_advance_after_each() {
        let base = Arc::new(MemoryState::default());
        let mut s = session(&base, None);
        s.begin_call([10, 20, 30].into_iter());
        s.advance(0).unwrap();
        s.advance(0).unwrap(); // asking again for more due timers is fine
        let err = s.advance(2).unwrap_err();
        assert!(err.contains("advance after every record"), "{err}");
        assert_eq!(s.time.first_not_advanced(), Some(1));
    }
}
