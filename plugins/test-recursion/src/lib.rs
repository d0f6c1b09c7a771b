//! Test-only: `process` recurses without end.
//!
//! By default each frame keeps an array on the guest's own stack in linear
//! memory, which overflows first: the host must report a stack overflow,
//! not a bare memory fault. With the param `mode=wasm-stack` the frames
//! hold only wasm locals, so the host's wasm stack cap (`stack_bytes_max`)
//! must stop it with a stack-overflow trap.

use eddy_processor::{Batch, Output, OutputRecord, Params, Processor, RecordError};

struct Recursion {
    wasm_stack: bool,
}

impl Processor for Recursion {
    fn init(params: &Params) -> Result<Self, String> {
        Ok(Recursion {
            wasm_stack: params.get("mode") == Some("wasm-stack"),
        })
    }

    fn process(&mut self, batch: &Batch, out: &mut Output) -> Result<(), RecordError> {
        let start = std::hint::black_box(batch.len() as u64);
        let depth = if self.wasm_stack {
            // Called through a pointer the optimiser cannot see through, and
            // not in tail position, so every call is a real wasm frame.
            let step = std::hint::black_box(Step(descend_in_locals));
            descend_in_locals(start, step)
        } else {
            descend_with_array(start)
        };
        out.push(OutputRecord::value(depth.to_string().as_bytes()));
        Ok(())
    }
}

#[allow(unconditional_recursion)]
fn descend_with_array(n: u64) -> u64 {
    let frame = std::hint::black_box([n; 16]);
    descend_with_array(frame[3].wrapping_add(1)).wrapping_add(frame[7])
}

/// The next function to call, passed along by value.
#[derive(Clone, Copy)]
struct Step(fn(u64, Step) -> u64);

fn descend_in_locals(n: u64, step: Step) -> u64 {
    (step.0)(n.wrapping_add(1), step).rotate_left(7) ^ n
}

eddy_processor::export_processor!(Recursion);
