//! Feeds arbitrary bytes to the batch decoder: it must return an error or a
//! batch, never panic, and a batch it accepts must decode record by record.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    for batch in eddy_log::batches(data, eddy_log::BATCH_BYTES_LIMIT) {
        let Ok(batch) = batch else { break };
        let _ = batch.validate_records();
        for record in batch.records() {
            let Ok(record) = record else { break };
            for header in record.headers() {
                std::hint::black_box(header);
            }
        }
    }
});
