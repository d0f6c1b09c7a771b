//! Test-only: `process` panics on the first record, naming its offset.
//! The host must report the panic message.

use eddy_processor::{Batch, Output, Params, Processor, RecordError};

struct Panic;

impl Processor for Panic {
    fn init(_params: &Params) -> Result<Self, String> {
        Ok(Panic)
    }

    fn process(&mut self, batch: &Batch, _out: &mut Output) -> Result<(), RecordError> {
        let offset = batch.get(0).map_or(0, |r| r.offset());
        panic!("test-panic: record at offset {offset} is cursed");
    }
}

eddy_processor::export_processor!(Panic);
