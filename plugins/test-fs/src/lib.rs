//! Test-only: reads a file with `std::fs`, which makes the component
//! import `wasi:filesystem`. The host must refuse to load it.

use eddy_processor::{Batch, Output, OutputRecord, Params, Processor, RecordError};

struct ReadsFiles;

impl Processor for ReadsFiles {
    fn init(_params: &Params) -> Result<Self, String> {
        Ok(ReadsFiles)
    }

    fn process(&mut self, _batch: &Batch, out: &mut Output) -> Result<(), RecordError> {
        let secret = std::fs::read("/etc/passwd").unwrap_or_default();
        out.push(OutputRecord::value(&secret));
        Ok(())
    }
}

eddy_processor::export_processor!(ReadsFiles);
