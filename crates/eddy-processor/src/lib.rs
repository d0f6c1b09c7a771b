//! `eddy-processor`: write Eddy stream processors in Rust.
//!
//! A processor is a WebAssembly component implementing the `processor`
//! world of `wit/processor.wit`. This crate generates the guest bindings
//! from that file and hides them behind the [`Processor`] trait, so a
//! processor is a type, two methods and one macro call:
//!
//! ```ignore
//! use eddy_processor::{InputRecord, OutputRecord, Params, Processor, RecordError};
//!
//! struct PassThrough;
//!
//! impl Processor for PassThrough {
//!     fn init(_params: &Params) -> Result<Self, String> {
//!         Ok(PassThrough)
//!     }
//!
//!     fn process(&mut self, batch: Vec<InputRecord>) -> Result<Vec<OutputRecord>, RecordError> {
//!         Ok(batch.into_iter().map(OutputRecord::from).collect())
//!     }
//! }
//!
//! eddy_processor::export_processor!(PassThrough);
//! ```
//!
//! Build the crate as a `cdylib` for `wasm32-wasip2`
//! (`cargo build --release --target wasm32-wasip2`) and run the `.wasm`
//! with `eddy processor test`.
//!
//! Architecture invariant: this crate knows nothing about the host; the WIT
//! world is the whole contract. A processor gets no clock, randomness or
//! I/O: the host refuses components that import anything but the `host`
//! interface (logging and counters).

// The generated bindings name this crate by its path, also from inside it.
extern crate self as eddy_processor;

mod json;
mod params;
mod record;

pub use json::{field, parse_json, text};
pub use params::Params;
pub use serde_json;

/// Bindings generated from `wit/processor.wit`. Use the re-exports at the
/// crate root instead; this module is public for [`export_processor!`].
#[allow(unsafe_code, missing_debug_implementations, clippy::all)]
pub mod bindings {
    wit_bindgen::generate!({
        path: "../../wit",
        world: "eddy:processor/processor@0.1.0",
        pub_export_macro: true,
        default_bindings_module: "eddy_processor::bindings",
        runtime_path: "eddy_processor::__private::wit_bindgen::rt",
        additional_derives: [PartialEq, Eq],
    });
}

pub use bindings::eddy::processor::host::Level;
pub use bindings::eddy::processor::types::{Header, InputRecord, OutputRecord, Param, RecordError};

/// A stream processor. The host creates one value per instance with
/// [`Processor::init`] and calls [`Processor::process`] once per batch.
pub trait Processor: Sized + 'static {
    /// Builds the processor from the pipeline's parameters. An `Err` is
    /// shown to the user as-is: say which parameter is wrong and why.
    fn init(params: &Params) -> Result<Self, String>;

    /// Processes one batch from one input partition, in offset order, and
    /// returns the records to produce. Return a [`RecordError`] naming the
    /// index of a record that cannot be processed; [`each`] does that for
    /// processors that work record by record.
    fn process(&mut self, batch: Vec<InputRecord>) -> Result<Vec<OutputRecord>, RecordError>;
}

/// Runs `f` on every record of `batch` in order, collecting what it pushes
/// into the output. An `Err(message)` from `f` stops the batch and becomes
/// a [`RecordError`] carrying that record's index.
pub fn each<F>(batch: Vec<InputRecord>, mut f: F) -> Result<Vec<OutputRecord>, RecordError>
where
    F: FnMut(InputRecord, &mut Vec<OutputRecord>) -> Result<(), String>,
{
    let mut out = Vec::with_capacity(batch.len());
    for (index, record) in batch.into_iter().enumerate() {
        f(record, &mut out).map_err(|message| RecordError {
            index: u32::try_from(index).unwrap_or(u32::MAX),
            message,
        })?;
    }
    Ok(out)
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
                    params: ::std::vec::Vec<$crate::Param>,
                ) -> ::core::result::Result<(), ::std::string::String> {
                    $crate::__private::init(&INSTANCE, params)
                }

                fn process(
                    batch: ::std::vec::Vec<$crate::InputRecord>,
                ) -> ::core::result::Result<
                    ::std::vec::Vec<$crate::OutputRecord>,
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

    use crate::{InputRecord, OutputRecord, Param, Params, Processor, RecordError};

    type Slot<P> = LocalKey<RefCell<Option<P>>>;

    pub fn init<P: Processor>(slot: &'static Slot<P>, params: Vec<Param>) -> Result<(), String> {
        let processor = P::init(&Params::from(params))?;
        slot.with(|s| *s.borrow_mut() = Some(processor));
        Ok(())
    }

    pub fn process<P: Processor>(
        slot: &'static Slot<P>,
        batch: Vec<InputRecord>,
    ) -> Result<Vec<OutputRecord>, RecordError> {
        slot.with(|s| match s.borrow_mut().as_mut() {
            Some(processor) => processor.process(batch),
            None => Err(RecordError {
                index: 0,
                message: "process was called before init".to_owned(),
            }),
        })
    }
}
