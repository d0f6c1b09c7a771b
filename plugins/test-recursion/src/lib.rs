//! Test-only: `process` recurses without end. The host's wasm stack cap
//! must stop it with a stack-overflow trap.

use eddy_processor::{Batch, Output, OutputRecord, Params, Processor, RecordError};

struct Recursion;

impl Processor for Recursion {
    fn init(_params: &Params) -> Result<Self, String> {
        Ok(Recursion)
    }

    fn process(&mut self, batch: &Batch, out: &mut Output) -> Result<(), RecordError> {
        let depth = descend(std::hint::black_box(batch.len() as u64));
        out.push(OutputRecord::value(depth.to_string().as_bytes()));
        Ok(())
    }
}

#[allow(unconditional_recursion)]
fn descend(n: u64) -> u64 {
    let frame = std::hint::black_box([n; 16]);
    descend(frame[3].wrapping_add(1)).wrapping_add(frame[7])
}

eddy_processor::export_processor!(Recursion);
