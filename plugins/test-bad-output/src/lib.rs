//! Test-only: implements the world by hand (not through the SDK's
//! `Output`) and returns a record whose value span points past the end of
//! the output data, or (with the param `mode=short-column`) lists of
//! lengths that do not match. The host must refuse the output, not read out of
//! bounds.

use std::sync::atomic::{AtomicBool, Ordering};

use eddy_processor::bindings::eddy::processor::types::{
    InputBatch, OutputBatch, Param, RecordError,
};

struct BadOutput;

static SHORT_COLUMN: AtomicBool = AtomicBool::new(false);

impl eddy_processor::bindings::Guest for BadOutput {
    fn init(params: Vec<Param>) -> Result<(), String> {
        let short = params
            .iter()
            .any(|p| p.name == "mode" && p.value == "short-column");
        SHORT_COLUMN.store(short, Ordering::Relaxed);
        Ok(())
    }

    fn process(_batch: InputBatch) -> Result<OutputBatch, RecordError> {
        // One record with a value (presence bit 2) of a million bytes at 2;
        // or two records with the layout and timestamp of one.
        let presence = if SHORT_COLUMN.load(Ordering::Relaxed) {
            vec![0, 0]
        } else {
            vec![2]
        };
        Ok(OutputBatch {
            data: b"tiny".to_vec(),
            presence,
            // key 0+0, value 2+1000000, no headers, topic 0
            layout: vec![0, 0, 2, 1_000_000, 0, 0, 0],
            timestamps: vec![0],
            headers: Vec::new(),
            topics: Vec::new(),
        })
    }
}

#[allow(unsafe_code)] // the generated export glue
mod export {
    use super::BadOutput;
    eddy_processor::bindings::export!(BadOutput with_types_in eddy_processor::bindings);
}
