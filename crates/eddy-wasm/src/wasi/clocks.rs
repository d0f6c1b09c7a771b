//! `wasi:clocks` without a clock: the wall clock reads the timestamp of
//! the batch's last record (set by the host before each call, 0 during
//! `init`), and the monotonic clock stands still at 0. A processor that
//! asks for the time therefore gets the same answer when the same batch is
//! replayed, and one that waits for time to pass waits until its time
//! budget traps it.

use wasmtime::component::{ComponentType, Linker, Lower, Resource};

use super::stdio::Pollable;
use super::versioned;
use crate::state::State;

/// `wasi:clocks/wall-clock.datetime`.
#[derive(ComponentType, Lower, Clone, Copy, Debug, PartialEq, Eq)]
#[component(record)]
pub(crate) struct Datetime {
    seconds: u64,
    nanoseconds: u32,
}

impl Datetime {
    /// Milliseconds since the Unix epoch; a time before it reads as the
    /// epoch, since WASI's datetime cannot go below it.
    pub(crate) fn from_millis(ms: i64) -> Datetime {
        let ms = u64::try_from(ms).unwrap_or(0);
        Datetime {
            seconds: ms / 1000,
            nanoseconds: u32::try_from(ms % 1000).unwrap_or(0) * 1_000_000,
        }
    }
}

/// What the clocks claim as their resolution: records carry milliseconds.
const RESOLUTION: Datetime = Datetime {
    seconds: 0,
    nanoseconds: 1_000_000,
};
const RESOLUTION_NS: u64 = 1_000_000;

pub(super) fn add_to_linker(linker: &mut Linker<State>) -> wasmtime::Result<()> {
    let mut wall = linker.instance(&versioned("wasi:clocks/wall-clock"))?;
    wall.func_wrap("now", |store, (): ()| {
        Ok((Datetime::from_millis(store.data().call.wall_clock_ms),))
    })?;
    wall.func_wrap("resolution", |_, (): ()| Ok((RESOLUTION,)))?;

    let mut monotonic = linker.instance(&versioned("wasi:clocks/monotonic-clock"))?;
    monotonic.func_wrap("now", |_, (): ()| Ok((0u64,)))?;
    monotonic.func_wrap("resolution", |_, (): ()| Ok((RESOLUTION_NS,)))?;
    // Waiting never blocks: every pollable is ready at once.
    monotonic.func_wrap("subscribe-instant", |_, (_when,): (u64,)| {
        Ok((Resource::<Pollable>::new_own(0),))
    })?;
    monotonic.func_wrap("subscribe-duration", |_, (_when,): (u64,)| {
        Ok((Resource::<Pollable>::new_own(0),))
    })?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn milliseconds_become_seconds_and_nanoseconds() {
        let t = Datetime::from_millis(1_700_000_000_123);
        assert_eq!((t.seconds, t.nanoseconds), (1_700_000_000, 123_000_000));
        assert_eq!(Datetime::from_millis(-5), Datetime::from_millis(0));
    }
}
