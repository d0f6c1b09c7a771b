//! A compiled processor and its running instances.

use std::collections::BTreeMap;
use std::fmt;
use std::sync::Arc;

use wasmtime::{Store, Trap};

use crate::bindings::{self, eddy::processor::types as wit};
use crate::config::EPOCH_TICK_MS;
use crate::error::{Error, ProcessError, Result, TrapKind};
use crate::keyed_state::StateSession;
use crate::record::{Arena, InputRecord, OutputRecord, outputs};
use crate::runtime::{Digest, Runtime, chain};
use crate::state::State;
use crate::wasi::GuestExit;

/// A validated, compiled processor, ready to instantiate. Cheap to clone;
/// instantiating it is cheap too (the imports are resolved once, here).
#[derive(Clone)]
pub struct Processor {
    runtime: Runtime,
    pre: bindings::ProcessorPre<State>,
    digest: Digest,
    label: Arc<str>,
}

impl fmt::Debug for Processor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Processor")
            .field("digest", &self.digest)
            .finish_non_exhaustive()
    }
}

impl Processor {
    pub(crate) fn new(
        runtime: Runtime,
        pre: bindings::ProcessorPre<State>,
        digest: Digest,
    ) -> Self {
        let hex = digest.to_string();
        let label = Arc::from(&hex[..12]);
        Processor {
            runtime,
            pre,
            digest,
            label,
        }
    }

    /// The sha256 of the component's bytes.
    pub fn digest(&self) -> &Digest {
        &self.digest
    }

    /// Creates an instance and runs its `init` with `params`. Each instance
    /// has its own memory and limits; create one per task.
    pub fn instantiate(&self, params: &[(String, String)]) -> Result<Instance> {
        self.instantiate_with(params, InstanceConfig::default())
    }

    /// [`Processor::instantiate`] with tighter limits than the runtime's
    /// (a pipeline's own memory cap and time budget). A limit above the
    /// runtime's is refused, since the runtime's are the most it can grant.
    pub fn instantiate_with(
        &self,
        params: &[(String, String)],
        limits: InstanceConfig,
    ) -> Result<Instance> {
        let config = &self.runtime.inner.config;
        let memory_bytes_max = limits.memory_bytes_max.unwrap_or(config.memory_bytes_max);
        let batch_time_ms_max = limits.batch_time_ms_max.unwrap_or(config.batch_time_ms_max);
        if memory_bytes_max > config.memory_bytes_max || memory_bytes_max < (1 << 16) {
            return Err(Error::Config(format!(
                "an instance may have 64 KiB to {} bytes of memory (the runtime's memory_bytes_max), not {memory_bytes_max}",
                config.memory_bytes_max
            )));
        }
        if batch_time_ms_max > config.batch_time_ms_max || batch_time_ms_max < EPOCH_TICK_MS {
            return Err(Error::Config(format!(
                "an instance's time budget is {EPOCH_TICK_MS} to {} ms (the runtime's batch_time_ms_max), not {batch_time_ms_max}",
                config.batch_time_ms_max
            )));
        }
        let deadline_ticks = batch_time_ms_max.div_ceil(EPOCH_TICK_MS);
        let mut store = Store::new(
            self.pre.engine(),
            State::new(self.label.clone(), config, memory_bytes_max),
        );
        store.limiter(|state| &mut state.limiter);
        store.epoch_deadline_trap();
        store.set_epoch_deadline(deadline_ticks);
        let bindings = self.pre.instantiate(&mut store).map_err(|e| {
            let detail = chain(&e);
            store.data_mut().output.finish_call();
            if detail.contains("concurrent limit") {
                Error::TooManyInstances {
                    limit: config.instances_max,
                }
            } else if store.data_mut().limiter.refused_bytes.take().is_some()
                || detail.contains("memory")
            {
                Error::MemoryLimit {
                    limit_bytes: memory_bytes_max,
                    detail,
                }
            } else {
                Error::Instantiate(detail)
            }
        })?;
        let mut instance = Instance {
            _runtime: self.runtime.clone(),
            store,
            bindings,
            arena: Arena::default(),
            deadline_ticks,
            batch_records_max: config.batch_records_max,
            batch_bytes_max: config.batch_bytes_max,
            output_records_max: config.output_records_max,
            random_seed: limits.random_seed,
            memory_bytes_max,
            poisoned: false,
        };
        instance
            .store
            .data_mut()
            .call
            .random
            .reseed(&[limits.random_seed]);
        let wit_params: Vec<wit::Param<'_>> = params
            .iter()
            .map(|(name, value)| wit::Param { name, value })
            .collect();
        let result = instance
            .bindings
            .call_init(&mut instance.store, &wit_params);
        match instance.finish(result) {
            Ok(Ok(())) => Ok(instance),
            Ok(Err(message)) => Err(Error::Init(message)),
            Err(e) => Err(Error::InitTrap(e)),
        }
    }
}

/// Settings of one instance. Its limits are each at most the runtime's;
/// `None` takes the runtime's.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct InstanceConfig {
    /// Largest linear memory, in bytes.
    pub memory_bytes_max: Option<usize>,
    /// Wall-clock budget of one call, in milliseconds.
    pub batch_time_ms_max: Option<u64>,
    /// Seeds what `wasi:random` draws, with the batch's topic, partition
    /// and first offset: a pipeline gives its own, so that two pipelines
    /// on the same input draw different numbers, and a replay the same.
    pub random_seed: u64,
}

/// A running processor: one sandbox with its own memory, limits, log
/// output and counters. Use it from one thread at a time.
///
/// After a trap ([`ProcessError::is_fatal`]) the instance refuses further
/// calls: its memory may be in any state. Drop it and instantiate a fresh
/// one from the [`Processor`].
pub struct Instance {
    /// Keeps the runtime's epoch timer running while the instance lives,
    /// even if the caller dropped the runtime and the processor: without
    /// it, the time budget would never run out.
    _runtime: Runtime,
    store: Store<State>,
    bindings: bindings::Processor,
    arena: Arena,
    deadline_ticks: u64,
    batch_records_max: usize,
    batch_bytes_max: usize,
    output_records_max: usize,
    random_seed: u64,
    memory_bytes_max: usize,
    poisoned: bool,
}

/// How full an instance's memory may get, in quarters of its limit,
/// before [`Instance::is_near_memory_limit`] says to replace it.
const MEMORY_QUARTERS_BEFORE_RECYCLING: usize = 3;

impl fmt::Debug for Instance {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Instance")
            .field("poisoned", &self.poisoned)
            .finish_non_exhaustive()
    }
}

impl Instance {
    /// Runs the processor on one batch (one call into the guest) and
    /// returns the records to produce, in order.
    pub fn process(&mut self, batch: &[InputRecord]) -> Result<Vec<OutputRecord>, ProcessError> {
        self.process_inner(batch)
    }

    /// [`Instance::process`] with `state` as the keyed state the call
    /// sees. A failed call's changes are dropped; a successful call's wait
    /// in the session until the caller keeps them with
    /// [`StateSession::accept_call`] (it uses the outputs) or drops them
    /// with [`StateSession::discard_call`] (it refuses the outputs).
    pub fn process_with_state(
        &mut self,
        batch: &[InputRecord],
        state: &mut StateSession,
    ) -> Result<Vec<OutputRecord>, ProcessError> {
        state.begin_call(batch.iter().map(|r| r.timestamp.0));
        self.store.data_mut().call.state = std::mem::take(state);
        let mut result = self.process_inner(batch);
        *state = std::mem::take(&mut self.store.data_mut().call.state);
        if result.is_ok()
            && let Err((index, message)) = state.check_call()
        {
            result = Err(ProcessError::Record { index, message });
        }
        if result.is_err() {
            state.discard_call();
        }
        result
    }

    fn process_inner(&mut self, batch: &[InputRecord]) -> Result<Vec<OutputRecord>, ProcessError> {
        if self.poisoned {
            return Err(ProcessError::Poisoned);
        }
        if batch.len() > self.batch_records_max {
            return Err(ProcessError::BatchTooLarge {
                records: batch.len(),
                limit: self.batch_records_max,
            });
        }
        self.store.set_epoch_deadline(self.deadline_ticks);
        self.set_call_context(batch);
        let (bindings, store) = (&self.bindings, &mut self.store);
        let result = self
            .arena
            .with_batch(batch, self.batch_bytes_max, |b| {
                bindings.call_process(store, b)
            })
            .map_err(|e| ProcessError::BatchBytesTooLarge {
                bytes: e.bytes,
                limit: self.batch_bytes_max,
            })?;
        match self.finish(result)? {
            Ok(out) => outputs(out, batch, self.output_records_max).map_err(|message| {
                self.poisoned = true;
                ProcessError::Trap {
                    kind: TrapKind::Other,
                    message: format!("it returned an invalid output batch: {message}"),
                }
            }),
            Err(e) => {
                let index = usize::try_from(e.index).unwrap_or(usize::MAX);
                // A call without records (for due timers) fails as a whole.
                if index < batch.len() || batch.is_empty() {
                    Err(ProcessError::Record {
                        index,
                        message: e.message,
                    })
                } else {
                    self.poisoned = true;
                    Err(ProcessError::Trap {
                        kind: TrapKind::Other,
                        message: format!(
                            "it reported an error for record {index} of a batch of {} records: {}",
                            batch.len(),
                            e.message
                        ),
                    })
                }
            }
        }
    }

    /// What the WASI clock and randomness answer during a call on
    /// `batch`: functions of the batch alone, so a replay gets the same.
    fn set_call_context(&mut self, batch: &[InputRecord]) {
        let call = &mut self.store.data_mut().call;
        call.wall_clock_ms = batch.last().map_or(0, |r| r.timestamp.0);
        let position = batch.first().map_or([0; 3], |r| {
            [string_hash(&r.topic), u64::from(r.partition), r.offset.0]
        });
        call.random
            .reseed(&[self.random_seed, position[0], position[1], position[2]]);
    }

    /// The counters the processor has set with `host.counter-add`.
    pub fn counters(&self) -> &BTreeMap<String, u64> {
        &self.store.data().counters.values
    }

    /// Bytes of linear memory the instance holds: what it started with
    /// and what it has grown since (memories never shrink).
    pub fn memory_bytes(&self) -> usize {
        self.store.data().limiter.memory_bytes
    }

    /// Whether the instance's memory has grown past three quarters of its
    /// limit. Linear memory never shrinks, and some guests only grow it:
    /// componentize-py 0.25's runtime keeps every `bytes` a call returns
    /// (about 40 bytes per output record), StarlingMonkey lets its
    /// garbage-collected heap grow to some 80 MiB before it collects, and
    /// fails if it cannot. A caller replaces such an instance with a fresh
    /// one between batches (instances keep no state a pipeline relies on)
    /// rather than wait for it to run out of memory in the middle of one.
    pub fn is_near_memory_limit(&self) -> bool {
        self.memory_bytes() >= self.memory_bytes_max / 4 * MEMORY_QUARTERS_BEFORE_RECYCLING
    }

    /// Whether an earlier call trapped, so that this instance is unusable.
    pub fn is_poisoned(&self) -> bool {
        self.poisoned
    }

    /// Ends a call: flushes the guest's output and turns a trap into a
    /// [`ProcessError`], poisoning the instance.
    fn finish<T>(&mut self, result: wasmtime::Result<T>) -> Result<T, ProcessError> {
        let stderr = self.store.data_mut().output.finish_call();
        // A refused growth explains a trap of this call only: a guest that
        // coped with it (`try_reserve`) and trapped later for another
        // reason must not be reported as out of memory.
        let refused = self.store.data_mut().limiter.refused_bytes.take();
        result.map_err(|e| {
            self.poisoned = true;
            classify(&e, &stderr, refused)
        })
    }
}

/// Names a trap, preferring the guest's own words (what it wrote to
/// stderr before dying, e.g. a Rust panic message).
fn classify(e: &wasmtime::Error, stderr: &str, refused_bytes: Option<usize>) -> ProcessError {
    let guest_said = guest_message(stderr);
    let trap = e.downcast_ref::<Trap>().copied();
    let kind = match trap {
        Some(Trap::Interrupt) => TrapKind::Timeout,
        Some(Trap::StackOverflow) => TrapKind::StackOverflow,
        Some(Trap::MemoryOutOfBounds) if below_address_zero(e) => TrapKind::StackOverflow,
        _ if e.downcast_ref::<GuestExit>().is_some() => TrapKind::Exit,
        _ if refused_bytes.is_some() => TrapKind::OutOfMemory,
        Some(Trap::UnreachableCodeReached) if !guest_said.is_empty() => TrapKind::Panic,
        _ => TrapKind::Other,
    };
    // The trap itself, without the wasm backtrace (logged at debug level).
    tracing::debug!(target: "eddy_wasm::guest", error = ?e, "processor trapped");
    let engine_said = e
        .chain()
        .map(|cause| cause.to_string())
        .filter(|text| !text.starts_with("error while executing at wasm backtrace"))
        .collect::<Vec<_>>()
        .join(": ");
    let mut message = match kind {
        TrapKind::Timeout => {
            "it ran past its time budget for one call (batch_time_ms_max)".to_owned()
        }
        TrapKind::OutOfMemory => format!(
            "it tried to grow its memory to {} bytes, past the limit (memory_bytes_max)",
            refused_bytes.unwrap_or_default()
        ),
        TrapKind::StackOverflow if trap == Some(Trap::MemoryOutOfBounds) => {
            "it overflowed its stack in linear memory (it touched memory just below address 0, \
             where a Rust guest's stack ends); recurse less, keep large values off the stack, \
             or link the processor with a larger stack (-C link-arg=-zstack-size=BYTES)"
                .to_owned()
        }
        TrapKind::StackOverflow => "it recursed past its stack limit (stack_bytes_max)".to_owned(),
        _ => String::new(),
    };
    for part in [guest_said.as_str(), engine_said.as_str()] {
        if !part.is_empty() && !message.contains(part) {
            if !message.is_empty() {
                message.push_str("; ");
            }
            message.push_str(part);
        }
    }
    ProcessError::Trap { kind, message }
}

/// How far below address 0 (wrapped around to the top of the 32-bit
/// address space) a fault counts as a stack overflow: Rust and C guests put
/// their stack in linear memory below their data, growing down to 0, so a
/// frame pushed past its end lands just under 4 GiB.
const STACK_WRAP_BYTES: u64 = 1 << 20;

/// Whether `e` is a memory fault just below address 0: what a guest whose
/// stack in linear memory overflowed touches. wasmtime gives the address
/// only in its description of the fault.
fn below_address_zero(e: &wasmtime::Error) -> bool {
    const PREFIX: &str = "memory fault at wasm address 0x";
    e.chain().any(|cause| {
        let text = cause.to_string();
        let Some(hex) = text.strip_prefix(PREFIX) else {
            return false;
        };
        let digits = hex
            .split(|c: char| !c.is_ascii_hexdigit())
            .next()
            .unwrap_or("");
        u64::from_str_radix(digits, 16)
            .is_ok_and(|address| ((1u64 << 32) - STACK_WRAP_BYTES..1 << 32).contains(&address))
    })
}

/// The useful part of a guest's stderr: without blank lines and Rust's
/// "run with RUST_BACKTRACE" hint, at most the last 2 KiB, on one line.
fn guest_message(stderr: &str) -> String {
    const BYTES_MAX: usize = 2048;
    let text = stderr
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with("note: run with `RUST_BACKTRACE=1`"))
        .collect::<Vec<_>>()
        .join(" ");
    if text.len() <= BYTES_MAX {
        return text;
    }
    let mut start = text.len() - BYTES_MAX;
    while !text.is_char_boundary(start) {
        start += 1;
    }
    format!("…{}", &text[start..])
}

/// FNV-1a: a hash of a topic's name that is the same on every machine and
/// version, unlike `std`'s `DefaultHasher`.
fn string_hash(s: &str) -> u64 {
    s.bytes().fold(0xcbf2_9ce4_8422_2325, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
    })
}
