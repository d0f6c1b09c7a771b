//! What each instance's store holds: its limits, its captured output and
//! its counters. Nothing here is shared between instances.

use std::collections::BTreeMap;
use std::sync::Arc;

use wasmtime::ResourceLimiter;

use crate::bindings::eddy::processor::host::{Host, Level};
use crate::bindings::eddy::processor::types;
use crate::runtime::TABLE_ELEMENTS_MAX;
use crate::wasi::CallRandom;

/// Longest counter name kept, in bytes.
const COUNTER_NAME_BYTES_MAX: usize = 128;

/// The data of one instance's `Store`.
pub(crate) struct State {
    pub(crate) limiter: Limiter,
    pub(crate) output: GuestOutput,
    pub(crate) counters: Counters,
    pub(crate) call: CallContext,
}

/// What the WASI clocks and randomness answer during the current call,
/// set by the host before each call from the batch it passes.
#[derive(Default)]
pub(crate) struct CallContext {
    /// Milliseconds since the Unix epoch: the batch's last timestamp.
    pub(crate) wall_clock_ms: i64,
    pub(crate) random: CallRandom,
    /// The keyed state of the batch's partition (none unless the caller
    /// attached one).
    pub(crate) state: crate::keyed_state::StateSession,
}

impl State {
    pub(crate) fn new(label: Arc<str>, config: &crate::Config, memory_bytes_max: usize) -> State {
        State {
            limiter: Limiter {
                memory_bytes_max,
                refused_bytes: None,
                memory_bytes: 0,
            },
            output: GuestOutput::new(label, config.guest_output_bytes_max),
            counters: Counters {
                values: BTreeMap::new(),
                max: config.counters_max,
            },
            call: CallContext::default(),
        }
    }
}

/// Enforces the memory cap and remembers a refused growth, so that the
/// trap that usually follows can be reported as running out of memory.
pub(crate) struct Limiter {
    memory_bytes_max: usize,
    pub(crate) refused_bytes: Option<usize>,
    /// The instance's linear memories, all together, as they have grown.
    pub(crate) memory_bytes: usize,
}

impl ResourceLimiter for Limiter {
    fn memory_growing(
        &mut self,
        current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        // Each memory is capped alone, as the limit is documented.
        if desired > self.memory_bytes_max {
            self.refused_bytes = Some(desired);
            return Ok(false);
        }
        self.memory_bytes = self
            .memory_bytes
            .saturating_add(desired - current.min(desired));
        Ok(true)
    }

    fn table_growing(
        &mut self,
        _current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        Ok(desired <= TABLE_ELEMENTS_MAX)
    }
}

/// Which guest stream a write came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Stream {
    Stdout,
    Stderr,
}

impl Stream {
    pub(crate) fn rep(self) -> u32 {
        match self {
            Stream::Stdout => 1,
            Stream::Stderr => 2,
        }
    }

    pub(crate) fn from_rep(rep: u32) -> Stream {
        if rep == 1 {
            Stream::Stdout
        } else {
            Stream::Stderr
        }
    }
}

/// The guest's stdout/stderr and log messages: sent to the host's log
/// (`tracing`, target `eddy_wasm::guest`), and stderr kept for the error
/// report when the call traps. Bounded per call.
pub(crate) struct GuestOutput {
    label: Arc<str>,
    stdout: Vec<u8>,
    stderr: Vec<u8>,
    /// Bytes still allowed in this call, across streams and log messages.
    budget: usize,
    budget_max: usize,
    dropped: usize,
}

impl GuestOutput {
    fn new(label: Arc<str>, budget_max: usize) -> GuestOutput {
        GuestOutput {
            label,
            stdout: Vec::new(),
            stderr: Vec::new(),
            budget: budget_max,
            budget_max,
            dropped: 0,
        }
    }

    fn take_budget(&mut self, len: usize) -> usize {
        let kept = len.min(self.budget);
        self.budget -= kept;
        self.dropped += len - kept;
        kept
    }

    pub(crate) fn write(&mut self, stream: Stream, bytes: &[u8]) {
        let kept = self.take_budget(bytes.len());
        let buf = match stream {
            Stream::Stdout => &mut self.stdout,
            Stream::Stderr => &mut self.stderr,
        };
        buf.extend_from_slice(&bytes[..kept]);
    }

    fn log(&mut self, level: Level, message: &str) {
        let kept = self.take_budget(message.len());
        let message = truncate(message, kept);
        if message.is_empty() {
            return;
        }
        let processor = &*self.label;
        match level {
            Level::Trace => tracing::trace!(target: "eddy_wasm::guest", processor, "{message}"),
            Level::Debug => tracing::debug!(target: "eddy_wasm::guest", processor, "{message}"),
            Level::Info => tracing::info!(target: "eddy_wasm::guest", processor, "{message}"),
            Level::Warn => tracing::warn!(target: "eddy_wasm::guest", processor, "{message}"),
            Level::Error => tracing::error!(target: "eddy_wasm::guest", processor, "{message}"),
        }
    }

    /// Ends a call: logs what the guest wrote and returns its stderr (for
    /// an error report), then resets the budget for the next call.
    pub(crate) fn finish_call(&mut self) -> String {
        let processor = &*self.label;
        let stdout = String::from_utf8_lossy(&self.stdout);
        for line in stdout.lines().filter(|l| !l.trim().is_empty()) {
            tracing::info!(target: "eddy_wasm::guest", processor, stream = "stdout", "{line}");
        }
        let stderr = String::from_utf8_lossy(&self.stderr).into_owned();
        for line in stderr.lines().filter(|l| !l.trim().is_empty()) {
            tracing::warn!(target: "eddy_wasm::guest", processor, stream = "stderr", "{line}");
        }
        if self.dropped > 0 {
            tracing::warn!(
                target: "eddy_wasm::guest",
                processor,
                "dropped {} bytes of output past the limit of {} per call",
                self.dropped,
                self.budget_max
            );
        }
        self.stdout.clear();
        self.stderr.clear();
        self.budget = self.budget_max;
        self.dropped = 0;
        stderr
    }
}

/// The longest prefix of `s` with at most `max` bytes, on a char boundary.
fn truncate(s: &str, max: usize) -> &str {
    if s.len() <= max {
        return s;
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}

/// Processor-defined counters (`host.counter-add`).
pub(crate) struct Counters {
    pub(crate) values: BTreeMap<String, u64>,
    max: usize,
}

impl Counters {
    fn add(&mut self, name: String, delta: u64) {
        let name = truncate(&name, COUNTER_NAME_BYTES_MAX);
        if let Some(v) = self.values.get_mut(name) {
            *v = v.saturating_add(delta);
        } else if self.values.len() < self.max {
            self.values.insert(name.to_owned(), delta);
        }
    }
}

impl Host for State {
    fn log(&mut self, level: Level, message: String) {
        self.output.log(level, &message);
    }

    fn counter_add(&mut self, name: String, delta: u64) {
        self.counters.add(name, delta);
    }
}

impl types::Host for State {}
