//! Test-only: implements the world by hand (not through the SDK's
//! `Output`) and returns a record whose value span points past the end of
//! the output data; with the param `mode=short-column`, lists of lengths
//! that do not match; with `mode=bad-forward`, a record forwarding an input
//! record past the end of the batch. The host must refuse the output, not
//! read out of bounds.

use std::sync::atomic::{AtomicU8, Ordering};

use eddy_processor::bindings::eddy::processor::types::{
    InputBatch, OutputBatch, Param, RecordError,
};

struct BadOutput;

const SPAN: u8 = 0;
const SHORT_COLUMN: u8 = 1;
const BAD_FORWARD: u8 = 2;

static MODE: AtomicU8 = AtomicU8::new(SPAN);

impl eddy_processor::bindings::Guest for BadOutput {
    fn init(params: Vec<Param>) -> Result<(), String> {
        let mode = match params.iter().find(|p| p.name == "mode") {
            None => SPAN,
            Some(p) if p.value == "short-column" => SHORT_COLUMN,
            Some(p) if p.value == "bad-forward" => BAD_FORWARD,
            Some(p) => return Err(format!("unknown mode {:?}", p.value)),
        };
        MODE.store(mode, Ordering::Relaxed);
        Ok(())
    }

    fn process(batch: InputBatch) -> Result<OutputBatch, RecordError> {
        let records = u32::try_from(batch.presence.len()).unwrap_or(u32::MAX);
        let (presence, layout) = match MODE.load(Ordering::Relaxed) {
            // Two records with the layout and timestamp of one.
            SHORT_COLUMN => (vec![0, 0], vec![0; 7]),
            // Forwarding (bit 16) the record just past the batch's last.
            BAD_FORWARD => (vec![16], vec![records, 0, 0, 0, 0, 0, 0]),
            // A value (bit 2) of a million bytes at 2: key 0+0, value
            // 2+1000000, no headers, topic 0.
            _ => (vec![2], vec![0, 0, 2, 1_000_000, 0, 0, 0]),
        };
        Ok(OutputBatch {
            data: b"tiny".to_vec(),
            presence,
            layout,
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
