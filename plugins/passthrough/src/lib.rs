//! `passthrough`: forwards every record unchanged to the first output
//! topic. The smallest useful processor, a template for new ones and the
//! subject of the host's pass-through benchmark. Takes no params.

use eddy_processor::{Batch, Output, Params, Processor, RecordError};

struct PassThrough;

impl Processor for PassThrough {
    fn init(_params: &Params) -> Result<Self, String> {
        Ok(PassThrough)
    }

    fn process(&mut self, batch: &Batch, out: &mut Output) -> Result<(), RecordError> {
        batch.records().for_each(|record| out.forward(&record));
        Ok(())
    }
}

eddy_processor::export_processor!(PassThrough);
