//! `filter`: keeps the records whose JSON value has `field` equal to
//! `equals`, drops the others.
//!
//! Params: `field` (a dotted path such as `truck.id`), `equals` (compared
//! with the field as text: strings without quotes, numbers as written).
//! Records that are not JSON, or lack the field, are dropped. Counts the
//! dropped records in the counter `records-dropped`.

use eddy_processor::json::{Path, text_is};
use eddy_processor::{Batch, Output, Params, Processor, Record, RecordError};

struct Filter {
    field: Path,
    equals: String,
}

impl Processor for Filter {
    fn init(params: &Params) -> Result<Self, String> {
        Ok(Filter {
            field: Path::new(params.require("field")?),
            equals: params.require("equals")?.to_owned(),
        })
    }

    fn process(&mut self, batch: &Batch, out: &mut Output) -> Result<(), RecordError> {
        let mut dropped = 0;
        for record in batch.records() {
            if self.keeps(&record) {
                out.forward(&record);
            } else {
                dropped += 1;
            }
        }
        if dropped > 0 {
            eddy_processor::counter_add("records-dropped", dropped);
        }
        Ok(())
    }
}

impl Filter {
    /// Looks at the one field only: the rest of the document is checked
    /// and skipped, not parsed into values.
    fn keeps(&self, record: &Record<'_>) -> bool {
        record
            .value()
            .and_then(|json| self.field.find_bytes(json))
            .is_some_and(|raw| text_is(raw, &self.equals))
    }
}

eddy_processor::export_processor!(Filter);
