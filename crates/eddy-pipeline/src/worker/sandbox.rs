//! A pipeline's processor instances on one worker, and one batch run in
//! them with every failure narrowed to the record that causes it.
//!
//! A worker keeps at most `parallelism` instances of a pipeline; its
//! tasks take one for each batch (instances hold no state a task relies
//! on: what a stateful processor remembers is in the task's keyed state,
//! which the task hands to each call of its batch, and which keeps only
//! the changes of the calls whose outputs are kept).
//! Calls into the guest are CPU work and run on the blocking pool.
//!
//! A record error names its record; a trap (panic, timeout, memory, stack)
//! does not, so the batch is run again one record at a time on a fresh
//! instance until the record that traps is found — as `eddy processor
//! test` does. Records before it keep their outputs, the policy decides
//! about it, and the rest of the batch runs again as one call.

use std::collections::BTreeMap;
use std::sync::Arc;

use eddy_wasm::{
    InputRecord, Instance, InstanceConfig, OutputRecord, ProcessError, Processor, StateSession,
    TrapKind,
};
use parking_lot::Mutex;
use tokio::sync::Semaphore;

use crate::error::{Error, Result};

/// Why one input record produced no outputs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Failure {
    /// record-error, timeout, out-of-memory, stack-overflow, panic, exit,
    /// trap or bad-output.
    pub kind: &'static str,
    pub message: String,
}

/// A stretch of a batch's results, in input order.
#[derive(Debug)]
pub enum Segment {
    /// Outputs of consecutive records.
    Outputs(Vec<OutputRecord>),
    /// The record at this position of the batch failed.
    Failed { index: usize, failure: Failure },
}

/// The results of one batch.
#[derive(Debug, Default)]
pub struct BatchRun {
    pub segments: Vec<Segment>,
    /// How much each processor counter grew during the run.
    pub counters: BTreeMap<String, u64>,
    /// The task's state session, holding the changes of the records whose
    /// outputs are in `segments` (stateful pipelines only).
    pub state: Option<StateSession>,
    /// A call without records (for due timers alone) failed: it has no
    /// record to blame, so no policy applies; its changes are dropped.
    pub timers_failed: Option<Failure>,
}

/// The instances of one pipeline on this worker.
#[derive(Debug)]
pub struct Sandbox {
    processor: Processor,
    params: Vec<(String, String)>,
    limits: InstanceConfig,
    /// Topics the processor may name in its outputs.
    outputs: Arc<[String]>,
    idle: Mutex<Vec<Slot>>,
    permits: Arc<Semaphore>,
}

/// An instance with the counters it had when last looked at.
#[derive(Debug)]
struct Slot {
    instance: Instance,
    counters: BTreeMap<String, u64>,
}

impl Sandbox {
    pub fn new(
        processor: Processor,
        params: Vec<(String, String)>,
        limits: InstanceConfig,
        outputs: Vec<String>,
        parallelism: usize,
    ) -> Sandbox {
        Sandbox {
            processor,
            params,
            limits,
            outputs: outputs.into(),
            idle: Mutex::new(Vec::new()),
            permits: Arc::new(Semaphore::new(parallelism.max(1))),
        }
    }

    /// Creates an instance now, so that bad parameters are reported before
    /// any record is read.
    pub async fn check_init(self: &Arc<Self>) -> Result<()> {
        let this = self.clone();
        let slot = tokio::task::spawn_blocking(move || this.instantiate())
            .await
            .map_err(|e| Error::Internal(format!("instantiation did not finish: {e}")))??;
        self.idle.lock().push(slot);
        Ok(())
    }

    /// Runs one batch; `stop_at_failure` ends the run at the first failed
    /// record (the `stop` policy: nothing after it may be produced).
    /// `state` is the task's keyed state, if the pipeline keeps one: every
    /// call sees it, and it comes back in the run with the changes of the
    /// records whose outputs the run keeps.
    pub async fn run(
        self: &Arc<Self>,
        records: Arc<Vec<InputRecord>>,
        stop_at_failure: bool,
        state: Option<StateSession>,
    ) -> Result<BatchRun> {
        let _permit = self
            .permits
            .clone()
            .acquire_owned()
            .await
            .map_err(|_| Error::Internal("the sandbox is closed".into()))?;
        let slot = self.idle.lock().pop();
        let this = self.clone();
        let (run, slot) = tokio::task::spawn_blocking(move || {
            let mut runner = Runner {
                sandbox: &this,
                slot,
                counters: BTreeMap::new(),
                stop_at_failure,
                state,
            };
            let mut segments = Vec::new();
            let mut timers_failed = None;
            let result = if records.is_empty() {
                runner.timers_only(&mut segments).map(|f| timers_failed = f)
            } else {
                runner.range(&records, 0, &mut segments).map(|_| ())
            };
            runner.collect_counters();
            let counters = std::mem::take(&mut runner.counters);
            let state = runner.state.take();
            (
                result.map(|()| BatchRun {
                    segments,
                    counters,
                    state,
                    timers_failed,
                }),
                runner.slot,
            )
        })
        .await
        .map_err(|e| Error::Internal(format!("the processor call did not finish: {e}")))?;
        if let Some(slot) = slot {
            self.idle.lock().push(slot);
        }
        run
    }

    fn instantiate(&self) -> Result<Slot> {
        let instance = self
            .processor
            .instantiate_with(&self.params, self.limits)
            .map_err(|e| {
                Error::Invalid(format!(
                    "the processor cannot start: {e}{}",
                    limit_hint(e.limit())
                ))
            })?;
        Ok(Slot {
            counters: instance.counters().clone(),
            instance,
        })
    }
}

/// One batch run on the blocking pool.
struct Runner<'a> {
    sandbox: &'a Sandbox,
    slot: Option<Slot>,
    counters: BTreeMap<String, u64>,
    stop_at_failure: bool,
    state: Option<StateSession>,
}

/// How one call into the guest failed.
enum CallError {
    /// The processor named the record (the instance is still usable).
    Record(usize, String),
    /// It trapped (the instance is gone) or returned outputs it may not.
    Unnamed(Failure),
    /// The batch is over a size limit: run it in smaller pieces.
    TooLarge,
}

impl CallError {
    /// The failure of a call that cannot be narrowed further: `what` (one
    /// record, or none) failed as a whole.
    fn into_failure(self, what: &str) -> Failure {
        match self {
            CallError::Record(_, message) => Failure {
                kind: "record-error",
                message,
            },
            CallError::Unnamed(f) => f,
            CallError::TooLarge => Failure {
                kind: "too-large",
                message: format!("{what} is over the processor's batch byte limit"),
            },
        }
    }
}

impl Runner<'_> {
    /// Runs `records` (position `base` onwards of the batch) into
    /// `segments`; returns whether the run stopped at a failure.
    fn range(
        &mut self,
        records: &[InputRecord],
        base: usize,
        segments: &mut Vec<Segment>,
    ) -> Result<bool> {
        let mut pos = 0;
        while pos < records.len() {
            let rest = &records[pos..];
            match self.call(rest)? {
                Ok(outputs) => {
                    segments.push(Segment::Outputs(outputs));
                    return Ok(false);
                }
                Err(CallError::Record(index, message)) => {
                    // The call's outputs are discarded: the records before
                    // the failing one run again without it.
                    if self.range(&rest[..index], base + pos, segments)? {
                        return Ok(true);
                    }
                    let failure = Failure {
                        kind: "record-error",
                        message,
                    };
                    segments.push(Segment::Failed {
                        index: base + pos + index,
                        failure,
                    });
                    pos += index + 1;
                    if self.stop_at_failure {
                        return Ok(true);
                    }
                }
                Err(CallError::Unnamed(_)) => match self.one_by_one(rest, base + pos, segments)? {
                    Some(failed) => {
                        pos += failed + 1;
                        if self.stop_at_failure {
                            return Ok(true);
                        }
                    }
                    None => return Ok(false),
                },
                Err(CallError::TooLarge) if rest.len() > 1 => {
                    let half = rest.len() / 2;
                    if self.range(&rest[..half], base + pos, segments)? {
                        return Ok(true);
                    }
                    pos += half;
                }
                Err(e @ CallError::TooLarge) => {
                    let failure = e.into_failure("the record alone");
                    segments.push(Segment::Failed {
                        index: base + pos,
                        failure,
                    });
                    pos += 1;
                    if self.stop_at_failure {
                        return Ok(true);
                    }
                }
            }
        }
        Ok(false)
    }

    /// One call without records, in which a stateful processor fires the
    /// timers that are due (after a quiet input or a restore: see the
    /// task's `run` and `on_quiet`); returns its failure, if it failed.
    fn timers_only(&mut self, segments: &mut Vec<Segment>) -> Result<Option<Failure>> {
        Ok(match self.call(&[])? {
            Ok(outputs) => {
                segments.push(Segment::Outputs(outputs));
                None
            }
            Err(e) => Some(e.into_failure("a call without records")),
        })
    }

    /// Runs records singly until one fails; returns its position in
    /// `records`, or `None` if none fails alone (the failure needed the
    /// records around it; their single outputs stand, since outputs depend
    /// only on each record).
    fn one_by_one(
        &mut self,
        records: &[InputRecord],
        base: usize,
        segments: &mut Vec<Segment>,
    ) -> Result<Option<usize>> {
        for (i, record) in records.iter().enumerate() {
            let failure = match self.call(std::slice::from_ref(record))? {
                Ok(outputs) => {
                    segments.push(Segment::Outputs(outputs));
                    continue;
                }
                Err(e) => e.into_failure("the record alone"),
            };
            segments.push(Segment::Failed {
                index: base + i,
                failure,
            });
            return Ok(Some(i));
        }
        Ok(None)
    }

    /// One call into the guest, on this runner's instance (a fresh one
    /// after a trap). `Err` only when no instance can be made.
    fn call(
        &mut self,
        records: &[InputRecord],
    ) -> Result<std::result::Result<Vec<OutputRecord>, CallError>> {
        let mut slot = match self.slot.take() {
            Some(slot) => slot,
            None => self.sandbox.instantiate()?,
        };
        let result = match self.state.as_mut() {
            Some(state) => slot.instance.process_with_state(records, state),
            None => slot.instance.process(records),
        };
        let outcome = match result {
            Ok(outputs) => match self.check_outputs(&outputs) {
                Ok(()) => Ok(outputs),
                Err(f) => Err(CallError::Unnamed(f)),
            },
            Err(ProcessError::Record { index, message }) => Err(CallError::Record(index, message)),
            Err(ProcessError::BatchTooLarge { .. } | ProcessError::BatchBytesTooLarge { .. }) => {
                Err(CallError::TooLarge)
            }
            Err(e @ (ProcessError::Trap { .. } | ProcessError::Poisoned)) => {
                Err(CallError::Unnamed(trap_failure(&e)))
            }
        };
        // The call's state changes stand or fall with its outputs.
        if let Some(state) = self.state.as_mut() {
            match outcome {
                Ok(_) => state.accept_call(),
                Err(_) => state.discard_call(),
            }
        }
        if slot.instance.is_poisoned() {
            self.absorb(&slot);
        } else if slot.instance.is_near_memory_limit() {
            // Replaced before it runs out of memory in a batch: a guest
            // whose memory only grows would otherwise fail a good record.
            tracing::debug!(
                memory_bytes = slot.instance.memory_bytes(),
                "replacing a processor instance near its memory limit"
            );
            self.absorb(&slot);
        } else {
            self.slot = Some(slot);
        }
        Ok(outcome)
    }

    /// Every output names one of the pipeline's output topics (or none).
    fn check_outputs(&self, outputs: &[OutputRecord]) -> std::result::Result<(), Failure> {
        let allowed = &self.sandbox.outputs;
        match outputs
            .iter()
            .filter_map(|o| o.topic.as_deref())
            .find(|t| !allowed.iter().any(|a| a == t))
        {
            None => Ok(()),
            Some(t) => Err(Failure {
                kind: "bad-output",
                message: format!(
                    "the processor produced a record for topic {t:?}, which is not one of the pipeline's outputs ({})",
                    allowed.join(", ")
                ),
            }),
        }
    }

    fn collect_counters(&mut self) {
        if let Some(mut slot) = self.slot.take() {
            self.absorb(&slot);
            slot.counters = slot.instance.counters().clone();
            self.slot = Some(slot);
        }
    }

    /// Adds what a slot's counters grew by to this run's.
    fn absorb(&mut self, slot: &Slot) {
        for (name, &value) in slot.instance.counters() {
            let before = slot.counters.get(name).copied().unwrap_or(0);
            *self.counters.entry(name.clone()).or_insert(0) += value.saturating_sub(before);
        }
    }
}

fn trap_failure(e: &ProcessError) -> Failure {
    let kind = match e {
        ProcessError::Trap { kind, .. } => match kind {
            TrapKind::Timeout => "timeout",
            TrapKind::OutOfMemory => "out-of-memory",
            TrapKind::StackOverflow => "stack-overflow",
            TrapKind::Panic => "panic",
            TrapKind::Exit => "exit",
            TrapKind::Other => "trap",
        },
        _ => "trap",
    };
    Failure {
        kind,
        message: format!("{e}{}", limit_hint(e.limit())),
    }
}

/// The manifest field that raises `limit`, as advice.
fn limit_hint(limit: Option<eddy_wasm::Limit>) -> &'static str {
    match limit {
        Some(eddy_wasm::Limit::Memory) => "; raise spec.limits.memoryMiB in the manifest",
        Some(eddy_wasm::Limit::Time) => "; raise spec.limits.cpuMsPerBatch in the manifest",
        Some(eddy_wasm::Limit::Instances) => {
            "; lower spec.parallelism, or run more workers (eddy worker)"
        }
        Some(eddy_wasm::Limit::ComponentSize) | None => "",
    }
}
