//! Test-only: `process` panics on the first record, naming its offset.
//! The host must report the panic message.

use eddy_processor::{InputRecord, OutputRecord, Params, Processor, RecordError};

struct Panic;

impl Processor for Panic {
    fn init(_params: &Params) -> Result<Self, String> {
        Ok(Panic)
    }

    fn process(&mut self, batch: Vec<InputRecord>) -> Result<Vec<OutputRecord>, RecordError> {
        let offset = batch.first().map_or(0, |r| r.offset);
        panic!("test-panic: record at offset {offset} is cursed");
    }
}

eddy_processor::export_processor!(Panic);
