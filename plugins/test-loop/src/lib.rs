//! Test-only: `process` never returns. The host must stop it within the
//! batch time budget.

use eddy_processor::{Batch, Output, Params, Processor, RecordError};

struct Loop;

impl Processor for Loop {
    fn init(_params: &Params) -> Result<Self, String> {
        Ok(Loop)
    }

    fn process(&mut self, _batch: &Batch, _out: &mut Output) -> Result<(), RecordError> {
        let mut spins = 0u64;
        loop {
            spins = std::hint::black_box(spins.wrapping_add(1));
        }
    }
}

eddy_processor::export_processor!(Loop);
