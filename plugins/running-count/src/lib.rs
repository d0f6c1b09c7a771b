//! `running-count`: for each input record with key K, outputs key K with
//! the decimal count of records with key K seen so far, this one
//! included. The count lives in the host's keyed state, so an
//! exactly-once pipeline's outputs for K are exactly 1, 2, 3, … n in
//! order, whatever crashes happen on the way: the fault suite checks that.
//!
//! A record without a key is counted under the empty key. Takes no params.

use eddy_processor::{Batch, Output, OutputRecord, Params, Processor, RecordError, each, state};

struct RunningCount;

impl Processor for RunningCount {
    fn init(_params: &Params) -> Result<Self, String> {
        Ok(RunningCount)
    }

    fn process(&mut self, batch: &Batch, out: &mut Output) -> Result<(), RecordError> {
        each(batch, out, |record, out| {
            let key = record.key().unwrap_or_default();
            let n = state::get_u64(key)?.unwrap_or(0) + 1;
            state::put_u64(key, n)?;
            let count = n.to_string();
            out.push(OutputRecord {
                key: Some(key),
                value: Some(count.as_bytes()),
                ..OutputRecord::default()
            });
            Ok(())
        })
    }
}

eddy_processor::export_processor!(RunningCount);
