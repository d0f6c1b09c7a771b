//! `eddy-processor`: write Eddy stream processors in Rust.
//!
//! A processor is a WebAssembly component implementing the `processor`
//! world of `wit/processor.wit`. This crate generates the guest bindings
//! from that file and hides them behind the [`Processor`] trait, so a
//! processor is a type, two methods and one macro call:
//!
//! ```no_run
//! use eddy_processor::{Batch, Output, Params, Processor, RecordError};
//!
//! struct PassThrough;
//!
//! impl Processor for PassThrough {
//!     fn init(_params: &Params) -> Result<Self, String> {
//!         Ok(PassThrough)
//!     }
//!
//!     fn process(&mut self, batch: &Batch, out: &mut Output) -> Result<(), RecordError> {
//!         batch.records().for_each(|record| out.forward(&record));
//!         Ok(())
//!     }
//! }
//!
//! eddy_processor::export_processor!(PassThrough);
//! ```
//!
//! Build the crate as a `cdylib` for `wasm32-wasip2`
//! (`cargo build --release --target wasm32-wasip2`) and try the `.wasm`
//! with `eddy processor test`.
//!
//! Records are views into the batch ([`Record`]); new records are copied
//! into the [`Output`] as they are pushed, while a forwarded record is only
//! its position in the batch (the host already holds its bytes). Both sides of the call are arenas
//! (one buffer of bytes per batch, and one list of integers per record
//! field), which is what makes a call cheap.
//!
//! A processor that remembers something between records (counts,
//! deduplication, windows) keeps it in [`state`], the keyed store the host
//! restores after a crash, so that an exactly-once pipeline gives the same
//! outputs with or without faults.
//!
//! Architecture invariant: this crate knows nothing about the host; the WIT
//! world is the whole contract. A processor gets no real clock, randomness
//! or I/O: besides the `host` and `state` interfaces it may use only WASI, whose clock and randomness answer from the batch and whose
//! files and sockets refuse every call.

// The generated bindings name this crate by its path, also from inside it.
extern crate self as eddy_processor;

mod batch;
pub mod json;
mod output;
mod params;
pub mod state;
pub mod timers;
pub mod windows;

pub use batch::{Batch, Record};
pub use output::{Output, OutputRecord};
pub use params::Params;
pub use serde_json;

/// Bindings generated from `wit/processor.wit`. Use the types at the crate
/// root instead; this module is public for [`export_processor!`].
#[allow(unsafe_code, missing_debug_implementations, clippy::all)]
pub mod bindings {
    wit_bindgen::generate!({
        path: "../../wit",
        world: "eddy:processor/processor@0.2.1",
        pub_export_macro: true,
        default_bindings_module: "eddy_processor::bindings",
        runtime_path: "eddy_processor::__private::wit_bindgen::rt",
        additional_derives: [PartialEq, Eq],
    });
}

pub use bindings::eddy::processor::host::Level;
pub use bindings::eddy::processor::types::RecordError;

/// A stream processor. The host creates one value per instance with
/// [`Processor::init`] and calls [`Processor::process`] once per batch.
pub trait Processor: Sized + 'static {
    /// Builds the processor from the pipeline's parameters. An `Err` is
    /// shown to the user as-is: say which parameter is wrong and why.
    fn init(params: &Params) -> Result<Self, String>;

    /// Processes one batch from one input partition, in offset order,
    /// pushing the records to produce into `out`. Return a [`RecordError`]
    /// naming the index of a record that cannot be processed (the outputs
    /// of the call are then discarded); [`each`] does that for processors
    /// that work record by record.
    fn process(&mut self, batch: &Batch, out: &mut Output) -> Result<(), RecordError>;

    /// Handles a timer registered with [`timers::register`] that came due:
    /// called by [`each_with_timers`] right after the record that moved the
    /// watermark to it. An `Err(message)` fails that record.
    fn on_timer(&mut self, timer: timers::Timer, out: &mut Output) -> Result<(), String> {
        let _ = (timer, out);
        Ok(())
    }
}

/// Runs `f` on every record of `batch` in order. An `Err(message)` from
/// `f` stops the batch and becomes a [`RecordError`] with that record's
/// index.
pub fn each<F>(batch: &Batch, out: &mut Output, mut f: F) -> Result<(), RecordError>
where
    F: FnMut(Record<'_>, &mut Output) -> Result<(), String>,
{
    for record in batch.records() {
        let index = record.index();
        f(record, out).map_err(|message| RecordError {
            index: u32::try_from(index).unwrap_or(u32::MAX),
            message,
        })?;
    }
    Ok(())
}

/// [`each`] for a processor that uses timers: after each record, the
/// timers the record made due go to [`Processor::on_timer`], in time
/// order, before the next record. A failure of the record or of one of
/// its timers fails the record. A batch without records (the input went
/// quiet, `spec.eventTime.idleTimeoutMs`) fires the timers due.
pub fn each_with_timers<P, F>(
    processor: &mut P,
    batch: &Batch,
    out: &mut Output,
    mut f: F,
) -> Result<(), RecordError>
where
    P: Processor,
    F: FnMut(&mut P, Record<'_>, &mut Output) -> Result<(), String>,
{
    for record in batch.records() {
        let index = record.index();
        let fail = |message| RecordError {
            index: u32::try_from(index).unwrap_or(u32::MAX),
            message,
        };
        f(processor, record, out).map_err(fail)?;
        for timer in timers::due_after(index).map_err(fail)? {
            processor.on_timer(timer, out).map_err(fail)?;
        }
    }
    if batch.is_empty() {
        // A call without records: the input went quiet and event time
        // moved on (spec.eventTime.idleTimeoutMs), or a restore found
        // timers due.
        let fail = |message| RecordError { index: 0, message };
        for timer in timers::due_after(0).map_err(fail)? {
            processor.on_timer(timer, out).map_err(fail)?;
        }
    }
    Ok(())
}

/// Writes `message` to the host's log at `level`.
pub fn log(level: Level, message: &str) {
    bindings::eddy::processor::host::log(level, message);
}

/// Adds `delta` to the counter `name`, reported with the pipeline's status.
pub fn counter_add(name: &str, delta: u64) {
    bindings::eddy::processor::host::counter_add(name, delta);
}

/// Exports a [`Processor`] type as the component's implementation of the
/// `processor` world. Call it once per crate, with the type.
#[macro_export]
macro_rules! export_processor {
    ($processor:ty) => {
        // The generated export glue is `unsafe` by nature (raw exports for
        // the canonical ABI); it is this crate's code, not the caller's.
        #[allow(unsafe_code)]
        const _: () = {
            ::std::thread_local! {
                static INSTANCE: ::core::cell::RefCell<::core::option::Option<$processor>> =
                    const { ::core::cell::RefCell::new(::core::option::Option::None) };
            }

            struct Export;

            impl $crate::bindings::Guest for Export {
                fn init(
                    params: ::std::vec::Vec<$crate::bindings::eddy::processor::types::Param>,
                ) -> ::core::result::Result<(), ::std::string::String> {
                    $crate::__private::init(&INSTANCE, params)
                }

                fn process(
                    batch: $crate::bindings::eddy::processor::types::InputBatch,
                ) -> ::core::result::Result<
                    $crate::bindings::eddy::processor::types::OutputBatch,
                    $crate::RecordError,
                > {
                    $crate::__private::process(&INSTANCE, batch)
                }
            }

    $crate::bindings::export!(Export with_types_in $crate::bindings);
        };
    };
}

/// Support for [`export_processor!`]; not part of the API.
#[doc(hidden)]
pub mod __private {
    use std::cell::RefCell;
    use std::thread::LocalKey;

    pub use wit_bindgen;

    use crate::bindings::eddy::processor::types::{InputBatch, OutputBatch, Param};
    use crate::{Batch, Output, Params, Processor, RecordError};

    type Slot<P> = LocalKey<RefCell<Option<P>>>;

    pub fn init<P: Processor>(slot: &'static Slot<P>, params: Vec<Param>) -> Result<(), String> {
        let processor = P::init(&Params::from(params))?;
        slot.with(|s| *s.borrow_mut() = Some(processor));
        Ok(())
    }

    pub fn process<P: Processor>(
        slot: &'static Slot<P>,
        batch: InputBatch,
    ) -> Result<OutputBatch, RecordError> {
        let batch = Batch::from(batch);
        let mut out = Output::with_capacity(batch.len());
        slot.with(|s| match s.borrow_mut().as_mut() {
            Some(processor) => processor.process(&batch, &mut out),
            None => Err(RecordError {
                index: 0,
                message: "process was called before init".to_owned(),
            }),
        })?;
        Ok(out.into())
    }
}
