//! Test-only: `process` panics on the first record, naming its offset.
//! The host must report the panic message.
//!
//! With the param `when=VALUE`, it forwards every record and panics only
//! on a record whose value is VALUE.

use eddy_processor::{Batch, Output, Params, Processor, RecordError};

struct Panic {
    when: Option<Vec<u8>>,
}

impl Processor for Panic {
    fn init(params: &Params) -> Result<Self, String> {
        Ok(Panic {
            when: params.get("when").map(|v| v.as_bytes().to_vec()),
        })
    }

    fn process(&mut self, batch: &Batch, out: &mut Output) -> Result<(), RecordError> {
        let Some(when) = &self.when else {
            let offset = batch.get(0).map_or(0, |r| r.offset());
            panic!("test-panic: record at offset {offset} is cursed");
        };
        for record in batch.records() {
            if record.value() == Some(when.as_slice()) {
                panic!("test-panic: record at offset {} is cursed", record.offset());
            }
            out.forward(&record);
        }
        Ok(())
    }
}

eddy_processor::export_processor!(Panic);
