//! Test-only: reads a file with `std::fs`, which makes the component
//! import `wasi:filesystem`. The host must refuse to load it.

use eddy_processor::{InputRecord, OutputRecord, Params, Processor, RecordError};

struct ReadsFiles;

impl Processor for ReadsFiles {
    fn init(_params: &Params) -> Result<Self, String> {
        Ok(ReadsFiles)
    }

    fn process(&mut self, _batch: Vec<InputRecord>) -> Result<Vec<OutputRecord>, RecordError> {
        let secret = std::fs::read("/etc/passwd").unwrap_or_default();
        Ok(vec![OutputRecord::with_value(secret)])
    }
}

eddy_processor::export_processor!(ReadsFiles);
