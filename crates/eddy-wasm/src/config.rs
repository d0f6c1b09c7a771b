//! Limits and settings of a [`crate::Runtime`].

use std::path::PathBuf;

use crate::error::{Error, Result};

/// How often the runtime's timer advances the engine's epoch; the
/// granularity of [`Config::batch_time_ms_max`].
pub const EPOCH_TICK_MS: u64 = 5;

/// Settings of a [`crate::Runtime`], fixed for its lifetime. Every limit
/// applies to each instance separately: one instance hitting its limit
/// does not affect any other.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Config {
    /// Largest component accepted by [`crate::Runtime::compile`], in bytes.
    pub component_bytes_max: usize,
    /// Largest linear memory of an instance, in bytes. An allocation past
    /// it fails inside the guest (a Rust guest aborts with "memory
    /// allocation of N bytes failed").
    pub memory_bytes_max: usize,
    /// Wall-clock budget of one `init` or `process` call, in milliseconds,
    /// enforced in steps of [`EPOCH_TICK_MS`]. A call still running after
    /// it traps with [`crate::TrapKind::Timeout`].
    pub batch_time_ms_max: u64,
    /// Largest wasm call stack, in bytes; deeper recursion traps with
    /// [`crate::TrapKind::StackOverflow`].
    pub stack_bytes_max: usize,
    /// How many instances may exist at once in this runtime (slots of the
    /// pooling allocator, reserved up front as virtual memory).
    pub instances_max: u32,
    /// Largest number of records in one call to `process`.
    pub batch_records_max: usize,
    /// Largest total of key, value and header bytes in one call to
    /// `process` (at most `u32::MAX`). The batch is copied into the guest's
    /// memory, so keep it well below `memory_bytes_max`; a batch over it is
    /// refused before the call, leaving the instance usable.
    pub batch_bytes_max: usize,
    /// Largest number of records (and of headers) one call may return. A
    /// call returning more fails, before the host builds its records.
    pub output_records_max: usize,
    /// Bytes of guest log output (the `host.log` messages and anything
    /// written to stdout/stderr) kept per call; the rest is dropped.
    pub guest_output_bytes_max: usize,
    /// Distinct counters an instance may create with `host.counter-add`.
    pub counters_max: usize,
    /// Where compiled components are kept between runs, keyed by the
    /// component's sha256 and the engine's settings. `None` compiles every
    /// time.
    pub cache_dir: Option<PathBuf>,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            component_bytes_max: 32 << 20,
            memory_bytes_max: 64 << 20,
            batch_time_ms_max: 1000,
            stack_bytes_max: 512 << 10,
            instances_max: 256,
            batch_records_max: 64 * 1024,
            batch_bytes_max: 16 << 20,
            output_records_max: 1 << 20,
            guest_output_bytes_max: 64 << 10,
            counters_max: 64,
            cache_dir: None,
        }
    }
}

impl Config {
    /// Checks that the settings make sense together.
    pub fn validate(&self) -> Result<()> {
        let bad = |what: String| Err(Error::Config(what));
        if self.memory_bytes_max < (1 << 16) {
            return bad(format!(
                "memory_bytes_max={} is below one wasm page (65536 bytes)",
                self.memory_bytes_max
            ));
        }
        if self.memory_bytes_max > (4 << 30) {
            return bad(format!(
                "memory_bytes_max={} exceeds 4 GiB, the most a 32-bit wasm memory can address",
                self.memory_bytes_max
            ));
        }
        if self.batch_time_ms_max < EPOCH_TICK_MS {
            return bad(format!(
                "batch_time_ms_max={} is below the timer's tick of {EPOCH_TICK_MS} ms",
                self.batch_time_ms_max
            ));
        }
        if self.stack_bytes_max < (64 << 10) {
            return bad(format!(
                "stack_bytes_max={} is too small; give at least 65536 bytes",
                self.stack_bytes_max
            ));
        }
        if self.batch_bytes_max == 0 || u32::try_from(self.batch_bytes_max).is_err() {
            return bad(format!(
                "batch_bytes_max={} must be between 1 and {} (32-bit offsets)",
                self.batch_bytes_max,
                u32::MAX
            ));
        }
        if self.instances_max == 0 || self.batch_records_max == 0 || self.component_bytes_max == 0 {
            return bad(
                "instances_max, batch_records_max and component_bytes_max must be > 0".into(),
            );
        }
        Ok(())
    }
}
