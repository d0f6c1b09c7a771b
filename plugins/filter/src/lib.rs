//! `filter`: keeps the records whose JSON value has `field` equal to
//! `equals`, drops the others.
//!
//! Params: `field` (a dotted path such as `truck.id`), `equals` (compared
//! with the field as text: strings without quotes, numbers as written).
//! Records that are not JSON, or lack the field, are dropped. Counts the
//! dropped records in the counter `records-dropped`.

use eddy_processor::{InputRecord, OutputRecord, Params, Processor, RecordError};

struct Filter {
    field: String,
    equals: String,
}

impl Processor for Filter {
    fn init(params: &Params) -> Result<Self, String> {
        Ok(Filter {
            field: params.require("field")?.to_owned(),
            equals: params.require("equals")?.to_owned(),
        })
    }

    fn process(&mut self, batch: Vec<InputRecord>) -> Result<Vec<OutputRecord>, RecordError> {
        let records = batch.len();
        let kept = eddy_processor::each(batch, |record, out| {
            if self.keeps(&record) {
                out.push(record.into());
            }
            Ok(())
        })?;
        let dropped = records - kept.len();
        if dropped > 0 {
            eddy_processor::counter_add("records-dropped", dropped as u64);
        }
        Ok(kept)
    }
}

impl Filter {
    fn keeps(&self, record: &InputRecord) -> bool {
        let Ok(value) = record.json() else {
            return false;
        };
        eddy_processor::field(&value, &self.field)
            .is_some_and(|v| eddy_processor::text(v) == self.equals)
    }
}

eddy_processor::export_processor!(Filter);
