//! `router`: sends each JSON record to the output topic named by one of
//! its fields.
//!
//! Params: `field` (dotted path of the field naming the topic), `prefix`
//! (optional, put before the field's value, e.g. `alerts-`), `default`
//! (optional topic for records that lack the field or are not JSON;
//! without it such a record is a record error).

use eddy_processor::{InputRecord, OutputRecord, Params, Processor, RecordError};

struct Router {
    field: String,
    prefix: String,
    default: Option<String>,
}

impl Processor for Router {
    fn init(params: &Params) -> Result<Self, String> {
        Ok(Router {
            field: params.require("field")?.to_owned(),
            prefix: params.get("prefix").unwrap_or_default().to_owned(),
            default: params.get("default").map(str::to_owned),
        })
    }

    fn process(&mut self, batch: Vec<InputRecord>) -> Result<Vec<OutputRecord>, RecordError> {
        eddy_processor::each(batch, |record, out| {
            let topic = self.topic_for(&record)?;
            out.push(OutputRecord::from(record).to_topic(topic));
            Ok(())
        })
    }
}

impl Router {
    fn topic_for(&self, record: &InputRecord) -> Result<String, String> {
        let named =
            record
                .json()
                .and_then(|value| match eddy_processor::field(&value, &self.field) {
                    Some(v) if !v.is_null() => {
                        Ok(format!("{}{}", self.prefix, eddy_processor::text(v)))
                    }
                    _ => Err(format!(
                        "the record has no field `{}` to route by",
                        self.field
                    )),
                });
        match (named, &self.default) {
            (Ok(topic), _) => Ok(topic),
            (Err(_), Some(default)) => Ok(default.clone()),
            (Err(e), None) => Err(format!(
                "{e}; pass --param default=TOPIC to route such records"
            )),
        }
    }
}

eddy_processor::export_processor!(Router);
