//! Event time (`eddy:processor/timers`): the watermark after each record,
//! and timers kept in the state's timer namespace.
//!
//! The watermark after a record is the highest timestamp of the records
//! processed up to it — those of accepted calls, then the running call's
//! up to that record — minus the allowed lateness. A failed call's records
//! do not count, so the watermark at a record is a function of the records
//! processed before it, whatever the batches (the same argument as for the
//! changes). Timers are state entries keyed by namespace byte, time
//! (big-endian with the sign bit flipped, so that keys sort by time) and
//! key, with an empty value: registering, cancelling and firing them are
//! changes like any other.

use bytes::Bytes;

use super::{StateSession, TIMER};
use crate::bindings::eddy::processor::timers::{Host, Timer};
use crate::state::State;

/// Most timers one `advance` returns.
const DUE_MAX: usize = 1024;

/// Where event time stands for one task.
#[derive(Debug, Clone)]
pub(crate) struct EventTime {
    lateness_ms: i64,
    /// The highest timestamp of the records of accepted calls (and of the
    /// batches before), if any.
    max_accepted: Option<i64>,
    /// The running call's records: the highest timestamp up to each.
    call_max: Vec<i64>,
    /// The watermark the running call has advanced to.
    watermark: i64,
    /// The last record of the running call passed to `advance`.
    advanced: Option<u32>,
}

impl Default for EventTime {
    fn default() -> Self {
        EventTime::new(None, 0)
    }
}

impl EventTime {
    pub(crate) fn new(max_timestamp: Option<i64>, lateness_ms: i64) -> EventTime {
        let mut time = EventTime {
            lateness_ms: lateness_ms.max(0),
            max_accepted: max_timestamp,
            call_max: Vec::new(),
            watermark: i64::MIN,
            advanced: None,
        };
        time.watermark = time.watermark_at(max_timestamp);
        time
    }

    fn watermark_at(&self, max: Option<i64>) -> i64 {
        max.map_or(i64::MIN, |m| m.saturating_sub(self.lateness_ms))
    }

    pub(crate) fn move_to(&mut self, timestamp: i64) {
        self.max_accepted = Some(self.max_accepted.map_or(timestamp, |m| m.max(timestamp)));
        self.watermark = self.watermark_at(self.max_accepted);
    }

    pub(crate) fn max_accepted(&self) -> Option<i64> {
        self.max_accepted
    }

    pub(crate) fn begin_call(&mut self, timestamps: impl Iterator<Item = i64>) {
        let mut max = self.max_accepted.unwrap_or(i64::MIN);
        self.call_max.clear();
        for ts in timestamps {
            max = max.max(ts);
            self.call_max.push(max);
        }
        self.watermark = self.watermark_at(self.max_accepted);
        self.advanced = None;
    }

    pub(crate) fn accept_call(&mut self) {
        if let Some(&last) = self.call_max.last() {
            self.max_accepted = Some(last);
        }
        self.call_max.clear();
        self.watermark = self.watermark_at(self.max_accepted);
        self.advanced = None;
    }

    pub(crate) fn discard_call(&mut self) {
        self.call_max.clear();
        self.watermark = self.watermark_at(self.max_accepted);
        self.advanced = None;
    }

    /// The event time of a write made now: the highest timestamp up to the
    /// record being processed — the one after the last passed to
    /// `advance` — or, past the call's last record (in its timers) or in a
    /// call without records, up to the last. A function of the records
    /// processed when the processor advances after every record in order
    /// (see [`EventTime::check_in_order`]).
    pub(crate) fn write_time(&self) -> Option<i64> {
        self.call_max
            .get(self.next_record() as usize)
            .or(self.call_max.last())
            .copied()
            .or(self.max_accepted)
    }

    /// Refuses an `advance` that skips a record or goes back (asked for
    /// by `spec.state.ttlMs`, whose write times need every record's).
    pub(crate) fn check_in_order(&self, index: u32) -> Result<(), String> {
        if index == self.next_record() || Some(index) == self.advanced {
            return Ok(());
        }
        Err(format!(
            "timers.advance({index}) after {}: with spec.state.ttlMs the processor must \
             advance after every record, in order (Rust: each_with_timers; Python and \
             JavaScript: define on_timer)",
            self.advanced
                .map_or_else(|| "none".to_owned(), |a| format!("advance({a})"))
        ))
    }

    /// The first record of the call not passed to `advance`, if any.
    pub(crate) fn first_not_advanced(&self) -> Option<usize> {
        let next = self.next_record() as usize;
        (next < self.call_max.len()).then_some(next)
    }

    /// The record after the last passed to `advance` in the running call.
    fn next_record(&self) -> u32 {
        self.advanced.map_or(0, |a| a.saturating_add(1))
    }

    /// Moves the watermark to the one after the call's record `index`. A
    /// call without records (the host's call for timers alone, see
    /// [`StateSession::next_timer_at`]) takes index 0 and leaves the
    /// watermark where it is.
    fn advance(&mut self, index: u32) -> Result<i64, String> {
        if self.call_max.is_empty() && index == 0 {
            return Ok(self.watermark);
        }
        let max = self.call_max.get(index as usize).copied().ok_or_else(|| {
            format!(
                "timers.advance was given record {index} of a call of {} records",
                self.call_max.len()
            )
        })?;
        self.watermark = self.watermark.max(self.watermark_at(Some(max)));
        self.advanced = Some(index);
        Ok(self.watermark)
    }
}

/// A timer's stored key: namespace, time, key.
fn timer_key(key: &[u8], at: i64) -> Result<Vec<u8>, String> {
    super::check_key(key)?;
    Ok(timed_key(TIMER, at, key))
}

/// A key in a namespace sorted by time: the namespace byte, the time
/// (big-endian, sign bit flipped, so that keys sort by time), the key.
pub(super) fn timed_key(namespace: u8, at: i64, key: &[u8]) -> Vec<u8> {
    let mut raw = Vec::with_capacity(9 + key.len());
    raw.push(namespace);
    raw.extend_from_slice(&((at as u64) ^ (1 << 63)).to_be_bytes());
    raw.extend_from_slice(key);
    raw
}

/// The key and time of a key made by [`timed_key`].
pub(super) fn parse_timer_key(raw: &Bytes) -> Option<(Bytes, i64)> {
    let time: [u8; 8] = raw.get(1..9)?.try_into().ok()?;
    Some((
        raw.slice(9..),
        (u64::from_be_bytes(time) ^ (1 << 63)) as i64,
    ))
}

impl StateSession {
    /// The watermark now: after the running call's records advanced so
    /// far, or as of the records accepted.
    pub fn watermark(&self) -> i64 {
        self.time.watermark
    }

    /// The time of the earliest timer registered, if any. When it is at or
    /// before the watermark, a call without records fires it: the caller
    /// makes one after moving event time on without records (a quiet
    /// input) and after a restore, so that such timers fire at the same
    /// place in the input on every run.
    pub fn next_timer_at(&self) -> Result<Option<i64>, String> {
        self.base()?;
        let Some((raw, _)) = self.scan_raw(&[TIMER], None, 1)?.into_iter().next() else {
            return Ok(None);
        };
        parse_timer_key(&raw)
            .map(|(_, at)| Some(at))
            .ok_or_else(|| "a stored timer is damaged".to_owned())
    }

    pub(super) fn advance(&mut self, index: u32) -> Result<Vec<(Bytes, i64)>, String> {
        self.base()?;
        if self.ttl_ms.is_some() {
            self.time.check_in_order(index)?;
        }
        self.time.advance(index)?;
        if self.ttl_ms.is_some() {
            self.expire()?;
        }
        self.take_due(TIMER, DUE_MAX, "timer")
    }

    /// Removes and returns the entries of the time-sorted `namespace` (see
    /// [`timed_key`]) at or before the watermark, earliest first, at most
    /// `max`: each entry's key and time. `what` names the entries in the
    /// error for a damaged one.
    pub(super) fn take_due(
        &mut self,
        namespace: u8,
        max: usize,
        what: &str,
    ) -> Result<Vec<(Bytes, i64)>, String> {
        let watermark = self.watermark();
        let mut due = Vec::new();
        for (raw, _) in self.scan_raw(&[namespace], None, max)? {
            let Some((key, at)) = parse_timer_key(&raw) else {
                return Err(format!("a stored {what} is damaged"));
            };
            if at > watermark {
                break;
            }
            self.set_raw(raw.to_vec(), None)?;
            due.push((key, at));
        }
        Ok(due)
    }

    fn register(&mut self, key: &[u8], at: i64) -> Result<(), String> {
        self.base()?;
        let watermark = self.watermark();
        if at <= watermark {
            return Err(format!(
                "a timer at {at} is not after the watermark ({watermark}): it would be due \
                 already; register timers after the watermark (timers.watermark), or handle \
                 the record as late"
            ));
        }
        let raw = timer_key(key, at)?;
        if self.get_raw(&raw)?.is_some() {
            return Ok(());
        }
        self.set_raw(raw, Some(Vec::new()))
    }

    fn cancel(&mut self, key: &[u8], at: i64) -> Result<(), String> {
        self.base()?;
        let raw = timer_key(key, at)?;
        self.set_raw(raw, None)
    }
}

impl Host for State {
    fn watermark(&mut self) -> i64 {
        self.call.state.watermark()
    }

    fn advance(&mut self, index: u32) -> Result<Vec<Timer>, String> {
        Ok(self
            .call
            .state
            .advance(index)?
            .into_iter()
            .map(|(key, at)| Timer {
                key: key.to_vec(),
                at,
            })
            .collect())
    }

    fn register(&mut self, key: Vec<u8>, at: i64) -> Result<(), String> {
        self.call.state.register(&key, at)
    }

    fn cancel(&mut self, key: Vec<u8>, at: i64) -> Result<(), String> {
        self.call.state.cancel(&key, at)
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::keyed_state::MemoryState;

    #[test]
    fn timers_fire_in_time_order_once_the_watermark_reaches_them() {
        let base = Arc::new(MemoryState::default());
        let mut s = StateSession::new(base.clone(), 1 << 20).with_event_time(None, 10);
        s.begin_call([100, 90, 130, 200].into_iter());
        assert_eq!(s.watermark(), i64::MIN, "no record processed yet");
        s.register(b"b", 120).unwrap();
        s.register(b"a", 120).unwrap();
        s.register(b"c", 115).unwrap();
        assert!(s.advance(0).unwrap().is_empty(), "watermark 90");
        assert_eq!(s.watermark(), 90);
        let err = s.register(b"late", 90).unwrap_err();
        assert!(err.contains("not after the watermark (90)"), "{err}");
        assert!(
            s.advance(1).unwrap().is_empty(),
            "a lower timestamp keeps 90"
        );
        let due = s.advance(2).unwrap();
        let names: Vec<(&[u8], i64)> = due.iter().map(|(k, at)| (&k[..], *at)).collect();
        assert_eq!(
            names,
            [(&b"c"[..], 115), (&b"a"[..], 120), (&b"b"[..], 120)]
        );
        assert!(s.advance(2).unwrap().is_empty(), "fired once");
        s.accept_call();
        assert_eq!(s.max_timestamp(), Some(200));
        let changes = s.take_changes();
        assert_eq!(changes.len(), 6, "three registered, three fired");
        base.apply(&changes);
        assert!(base.is_empty());
    }

    #[test]
    fn a_discarded_call_moves_neither_the_watermark_nor_the_timers() {
        let base = Arc::new(MemoryState::default());
        let mut s = StateSession::new(base.clone(), 1 << 20).with_event_time(Some(50), 0);
        s.begin_call([60].into_iter());
        s.register(b"k", 70).unwrap();
        s.accept_call();
        base.apply(&s.take_changes());

        s.begin_call([80].into_iter());
        assert_eq!(s.advance(0).unwrap().len(), 1);
        s.discard_call();
        assert_eq!(s.max_timestamp(), Some(60));
        assert_eq!(s.watermark(), 60);
        assert!(s.take_changes().is_empty());

        // Run again, the same call fires the same timer.
        s.begin_call([80].into_iter());
        let due = s.advance(0).unwrap();
        assert_eq!(due, [(Bytes::from_static(b"k"), 70)]);
        assert!(s.advance(3).is_err(), "no record 3 in a call of one");
    }

    #[test]
    fn a_call_without_records_fires_the_timers_due_at_the_watermark() {
        let base = Arc::new(MemoryState::default());
        let mut s = StateSession::new(base.clone(), 1 << 20).with_event_time(Some(100), 0);
        s.begin_call([100].into_iter());
        s.register(b"late", 300).unwrap();
        s.register(b"early", 200).unwrap();
        s.accept_call();
        base.apply(&s.take_changes());
        assert_eq!(s.next_timer_at().unwrap(), Some(200));

        // Event time moved on to 250 without a record (a quiet input).
        let mut s = StateSession::new(base.clone(), 1 << 20).with_event_time(Some(250), 0);
        s.begin_call(std::iter::empty());
        assert_eq!(s.advance(0).unwrap(), [(Bytes::from_static(b"early"), 200)]);
        assert!(s.advance(0).unwrap().is_empty());
        assert!(s.advance(1).is_err(), "no record 1 in a call of none");
        s.accept_call();
        assert_eq!(s.max_timestamp(), Some(250));
        assert_eq!(s.next_timer_at().unwrap(), Some(300));
    }

    #[test]
    fn timer_keys_sort_by_time_across_zero() {
        let keys: Vec<Vec<u8>> = [-5, 0, 7, i64::MIN, i64::MAX]
            .into_iter()
            .map(|at| timer_key(b"k", at).unwrap())
            .collect();
        let mut sorted = keys.clone();
        sorted.sort();
        let times: Vec<i64> = sorted
            .iter()
            .map(|k| parse_timer_key(&Bytes::from(k.clone())).unwrap().1)
            .collect();
        assert_eq!(times, [i64::MIN, -5, 0, 7, i64::MAX]);
    }
}
