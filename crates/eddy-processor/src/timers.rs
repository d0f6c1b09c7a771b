//! Event-time timers and the watermark of the task's input partition (for
//! pipelines with `spec.state`; timers are kept in the state).
//!
//! The watermark is the lowest event time the task may still see: the
//! highest timestamp processed so far minus `spec.eventTime.allowedLatenessMs`.
//! A timer at `at` is due once the watermark reaches `at`; the host hands
//! due timers over when asked, after each record, so that they fire at the
//! same place in the input on every run. [`each_with_timers`](crate::each_with_timers)
//! asks after every record and calls [`Processor::on_timer`](crate::Processor::on_timer).

use crate::bindings::eddy::processor::timers as host;

/// A timer that came due.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Timer {
    /// The key it was registered for.
    pub key: Vec<u8>,
    /// Its event time, in milliseconds since the Unix epoch.
    pub at: i64,
}

/// The watermark now (`i64::MIN` before any record was processed).
pub fn watermark() -> i64 {
    host::watermark()
}

/// Registers a timer for `key` at `at`; it must be after the watermark.
pub fn register(key: &[u8], at: i64) -> Result<(), String> {
    host::register(key, at)
}

/// Cancels the timer for `key` at `at`, if registered.
pub fn cancel(key: &[u8], at: i64) -> Result<(), String> {
    host::cancel(key, at)
}

/// Moves the watermark past the record at `index` of the batch and returns
/// every timer now due, earliest first (each is removed as it is returned).
pub fn due_after(index: usize) -> Result<Vec<Timer>, String> {
    let index = u32::try_from(index).map_err(|_| format!("record index {index} is too large"))?;
    let mut all = Vec::new();
    loop {
        let due = host::advance(index)?;
        if due.is_empty() {
            return Ok(all);
        }
        all.extend(due.into_iter().map(|t| Timer {
            key: t.key,
            at: t.at,
        }));
    }
}
