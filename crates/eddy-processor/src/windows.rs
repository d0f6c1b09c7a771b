//! Windows by event time, built on [`state`](crate::state) and
//! [`timers`](crate::timers): tumbling and hopping windows
//! ([`Windows`]), and session windows ([`Sessions`]). Each keeps one
//! aggregate (bytes the processor folds records into) per key and window
//! in the state, registers a timer at the window's end, and hands the
//! window back, removed from the state, when that timer comes due — once
//! the watermark shows that no record of the window can still come.
//!
//! A record older than the watermark allows is late: [`Added::Late`] says
//! so, and the processor decides (fail the record so that `onError` sends
//! it to the dead-letter topic, or write it to a side output).
//!
//! Window state lives under keys starting with the byte `0xFF`; keep the
//! processor's own keys clear of it.
//!
//! ```no_run
//! use eddy_processor::timers::Timer;
//! use eddy_processor::windows::{Added, Windows};
//! use eddy_processor::{Batch, Output, OutputRecord, Params, Processor, RecordError, each_with_timers};
//!
//! /// Records per key per minute, emitted when the minute closes.
//! struct PerMinute;
//!
//! const MINUTES: Windows = Windows::tumbling(60_000);
//!
//! impl Processor for PerMinute {
//!     fn init(_params: &Params) -> Result<Self, String> {
//!         Ok(PerMinute)
//!     }
//!
//!     fn process(&mut self, batch: &Batch, out: &mut Output) -> Result<(), RecordError> {
//!         each_with_timers(self, batch, out, |_, record, _| {
//!             let key = record.key().unwrap_or_default();
//!             let added = MINUTES.add(key, record.timestamp(), |count| {
//!                 let n = count.map_or(0, |c| u64::from_be_bytes(c.try_into().unwrap_or([0; 8])));
//!                 (n + 1).to_be_bytes().to_vec()
//!             })?;
//!             match added {
//!                 Added::Late => Err("the record is late: its minute has closed".into()),
//!                 Added::Open => Ok(()),
//!             }
//!         })
//!     }
//!
//!     fn on_timer(&mut self, timer: Timer, out: &mut Output) -> Result<(), String> {
//!         if let Some(w) = MINUTES.close(&timer)? {
//!             let n = u64::from_be_bytes(w.aggregate.try_into().unwrap_or([0; 8]));
//!             let text = format!("{{\"start\":{},\"count\":{n}}}", w.start);
//!             out.push(OutputRecord {
//!                 key: Some(&w.key),
//!                 value: Some(text.as_bytes()),
//!                 timestamp: Some(w.end - 1),
//!                 ..OutputRecord::default()
//!             });
//!         }
//!         Ok(())
//!     }
//! }
//! # eddy_processor::export_processor!(PerMinute);
//! ```

use crate::state;
use crate::timers::{self, Timer};

/// Where windows keep their aggregates (and name their timers).
const WINDOW_PREFIX: &[u8] = b"\xffeddy.window/";
const SESSION_PREFIX: &[u8] = b"\xffeddy.session/";

/// What became of a record added to its windows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Added {
    /// It is in at least one open window.
    Open,
    /// Every window it belongs to has closed: the record is late.
    Late,
}

/// A window that closed, with its aggregate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Closed {
    pub key: Vec<u8>,
    /// The window's first millisecond.
    pub start: i64,
    /// The millisecond after the window's last.
    pub end: i64,
    pub aggregate: Vec<u8>,
}

/// Tumbling (`advance == size`) or hopping windows of `size` milliseconds
/// starting every `advance` milliseconds from the Unix epoch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Windows {
    size_ms: i64,
    advance_ms: i64,
}

impl Windows {
    /// Back-to-back windows of `size_ms` (must be positive).
    pub const fn tumbling(size_ms: i64) -> Windows {
        Windows {
            size_ms,
            advance_ms: size_ms,
        }
    }

    /// Windows of `size_ms` starting every `advance_ms` (both positive,
    /// `advance_ms <= size_ms`); a record is in `size_ms / advance_ms` of
    /// them.
    pub const fn hopping(size_ms: i64, advance_ms: i64) -> Windows {
        Windows {
            size_ms,
            advance_ms,
        }
    }

    fn check(&self) -> Result<(), String> {
        if self.size_ms <= 0 || self.advance_ms <= 0 || self.advance_ms > self.size_ms {
            return Err(format!(
                "windows of {} ms every {} ms: both must be positive, the advance at most the size",
                self.size_ms, self.advance_ms
            ));
        }
        Ok(())
    }

    /// The `[start, end)` of every window containing `ts`, earliest first.
    pub fn of(&self, ts: i64) -> Vec<(i64, i64)> {
        if self.check().is_err() {
            return Vec::new();
        }
        // The last window starting at or before ts, then back while it
        // still contains ts.
        let last = ts.div_euclid(self.advance_ms) * self.advance_ms;
        let mut starts = Vec::new();
        let mut start = last;
        while start > ts - self.size_ms {
            starts.push(start);
            start -= self.advance_ms;
        }
        starts.reverse();
        starts
            .into_iter()
            .map(|s| (s, s.saturating_add(self.size_ms)))
            .collect()
    }

    /// Folds a record at `ts` into the aggregate of `key` in each of its
    /// windows still open: `fold` gets the aggregate so far (`None` for a
    /// window's first record) and returns the new one.
    pub fn add(
        &self,
        key: &[u8],
        ts: i64,
        mut fold: impl FnMut(Option<&[u8]>) -> Vec<u8>,
    ) -> Result<Added, String> {
        self.check()?;
        let watermark = timers::watermark();
        let mut added = Added::Late;
        for (start, end) in self.of(ts) {
            if end <= watermark {
                continue; // closed already
            }
            let name = window_name(start, key);
            let old = state::get(&name)?;
            if old.is_none() {
                timers::register(&name, end)?;
            }
            state::put(&name, &fold(old.as_deref()))?;
            added = Added::Open;
        }
        Ok(added)
    }

    /// The window `timer` closes, with its aggregate (removed from the
    /// state); `None` when the timer is not a window's.
    pub fn close(&self, timer: &Timer) -> Result<Option<Closed>, String> {
        let Some(rest) = timer.key.strip_prefix(WINDOW_PREFIX) else {
            return Ok(None);
        };
        let Some((start, key)) = rest.split_first_chunk::<8>() else {
            return Ok(None);
        };
        let start = i64::from_be_bytes(*start) ^ i64::MIN;
        let Some(aggregate) = state::get(&timer.key)? else {
            return Ok(None);
        };
        state::delete(&timer.key)?;
        Ok(Some(Closed {
            key: key.to_vec(),
            start,
            end: timer.at,
            aggregate,
        }))
    }
}

/// A window's state key: prefix, start (sorting by time), key.
fn window_name(start: i64, key: &[u8]) -> Vec<u8> {
    let mut name = Vec::with_capacity(WINDOW_PREFIX.len() + 8 + key.len());
    name.extend_from_slice(WINDOW_PREFIX);
    name.extend_from_slice(&(start ^ i64::MIN).to_be_bytes());
    name.extend_from_slice(key);
    name
}

/// Session windows: a key's records closer than `gap_ms` to one another
/// make one session, which closes once the watermark is `gap_ms` past its
/// last record. One session per key is open at a time; a record more
/// than the gap after it closes it at once and opens the next, a record
/// more than the gap before it is late.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Sessions {
    gap_ms: i64,
}

impl Sessions {
    /// Sessions that close after `gap_ms` (positive) without a record.
    pub const fn with_gap(gap_ms: i64) -> Sessions {
        Sessions { gap_ms }
    }

    /// Folds a record at `ts` into the open session of `key` (opening one
    /// if there is none). A session the record cannot join is returned
    /// closed, for the processor to emit now.
    pub fn add(
        &self,
        key: &[u8],
        ts: i64,
        fold: impl FnOnce(Option<&[u8]>) -> Vec<u8>,
    ) -> Result<(Added, Option<Closed>), String> {
        if self.gap_ms <= 0 {
            return Err(format!(
                "a session gap of {} ms must be positive",
                self.gap_ms
            ));
        }
        if ts.saturating_add(self.gap_ms) <= timers::watermark() {
            return Ok((Added::Late, None));
        }
        let name = session_name(key);
        let mut closed = None;
        let mut session = match state::get(&name)? {
            None => None,
            Some(stored) => Some(Session::decode(&stored)?),
        };
        if let Some(s) = &session {
            if ts < s.start - self.gap_ms {
                return Ok((Added::Late, None));
            }
            if ts > s.end + self.gap_ms {
                timers::cancel(&name, s.end + self.gap_ms)?;
                closed = session.take().map(|s| s.closed(key));
            }
        }
        let next = match session {
            None => Session {
                start: ts,
                end: ts,
                aggregate: fold(None),
            },
            Some(s) => {
                let end = s.end.max(ts);
                if end != s.end {
                    timers::cancel(&name, s.end + self.gap_ms)?;
                }
                Session {
                    start: s.start.min(ts),
                    end,
                    aggregate: fold(Some(&s.aggregate)),
                }
            }
        };
        timers::register(&name, next.end + self.gap_ms)?;
        state::put(&name, &next.encode())?;
        Ok((Added::Open, closed))
    }

    /// The session `timer` closes, removed from the state; `None` when the
    /// timer is not a session's (or no longer the session's end).
    pub fn close(&self, timer: &Timer) -> Result<Option<Closed>, String> {
        let Some(key) = timer.key.strip_prefix(SESSION_PREFIX) else {
            return Ok(None);
        };
        let Some(stored) = state::get(&timer.key)? else {
            return Ok(None);
        };
        let session = Session::decode(&stored)?;
        if session.end + self.gap_ms != timer.at {
            return Ok(None);
        }
        state::delete(&timer.key)?;
        Ok(Some(session.closed(key)))
    }
}

fn session_name(key: &[u8]) -> Vec<u8> {
    [SESSION_PREFIX, key].concat()
}

/// An open session as stored: start, end, aggregate.
struct Session {
    start: i64,
    end: i64,
    aggregate: Vec<u8>,
}

impl Session {
    fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(16 + self.aggregate.len());
        out.extend_from_slice(&self.start.to_be_bytes());
        out.extend_from_slice(&self.end.to_be_bytes());
        out.extend_from_slice(&self.aggregate);
        out
    }

    fn decode(stored: &[u8]) -> Result<Session, String> {
        let damaged = || "a stored session is damaged".to_owned();
        let (start, rest) = stored.split_first_chunk::<8>().ok_or_else(damaged)?;
        let (end, aggregate) = rest.split_first_chunk::<8>().ok_or_else(damaged)?;
        Ok(Session {
            start: i64::from_be_bytes(*start),
            end: i64::from_be_bytes(*end),
            aggregate: aggregate.to_vec(),
        })
    }

    fn closed(self, key: &[u8]) -> Closed {
        Closed {
            key: key.to_vec(),
            start: self.start,
            end: self.end + 1,
            aggregate: self.aggregate,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_timestamp_falls_in_one_tumbling_window_and_size_over_advance_hopping_ones() {
        assert_eq!(Windows::tumbling(10).of(25), [(20, 30)]);
        assert_eq!(Windows::tumbling(10).of(-1), [(-10, 0)]);
        assert_eq!(
            Windows::hopping(30, 10).of(25),
            [(0, 30), (10, 40), (20, 50)]
        );
        assert!(Windows::hopping(10, 20).of(5).is_empty(), "advance > size");
    }
}
