//! Test-only: implements the world by hand (not through the SDK's
//! `Output`) and returns a record whose value span points past the end of
//! the output data. The host must refuse the output, not read out of bounds.

use eddy_processor::bindings::eddy::processor::types::{
    InputBatch, OutputBatch, OutputRecord, Param, RecordError, Span,
};

struct BadOutput;

impl eddy_processor::bindings::Guest for BadOutput {
    fn init(_params: Vec<Param>) -> Result<(), String> {
        Ok(())
    }

    fn process(_batch: InputBatch) -> Result<OutputBatch, RecordError> {
        let record = OutputRecord {
            topic: None,
            key: None,
            value: Some(Span {
                start: 2,
                len: 1_000_000,
            }),
            headers: Span { start: 0, len: 0 },
            timestamp: None,
        };
        Ok(OutputBatch {
            data: b"tiny".to_vec(),
            headers: Vec::new(),
            topics: Vec::new(),
            records: vec![record],
        })
    }
}

#[allow(unsafe_code)] // the generated export glue
mod export {
    use super::BadOutput;
    eddy_processor::bindings::export!(BadOutput with_types_in eddy_processor::bindings);
}
