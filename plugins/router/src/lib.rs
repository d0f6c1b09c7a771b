//! `router`: sends each JSON record to the output topic named by one of
//! its fields.
//!
//! Params: `field` (dotted path of the field naming the topic), `prefix`
//! (optional, put before the field's value, e.g. `alerts-`), `default`
//! (optional topic for records that lack the field or are not JSON;
//! without it such a record is a record error).

use eddy_processor::json::{Path, raw_text};
use eddy_processor::{Batch, Output, Params, Processor, Record, RecordError};

struct Router {
    /// The `field` param as given, for messages.
    field: String,
    path: Path,
    prefix: String,
    default: Option<String>,
}

impl Processor for Router {
    fn init(params: &Params) -> Result<Self, String> {
        let field = params.require("field")?;
        Ok(Router {
            field: field.to_owned(),
            path: Path::new(field),
            prefix: params.get("prefix").unwrap_or_default().to_owned(),
            default: params.get("default").map(str::to_owned),
        })
    }

    fn process(&mut self, batch: &Batch, out: &mut Output) -> Result<(), RecordError> {
        eddy_processor::each(batch, out, |record, out| {
            let topic = self.topic_for(&record)?;
            out.forward_to(&record, Some(&topic));
            Ok(())
        })
    }
}

impl Router {
    fn topic_for(&self, record: &Record<'_>) -> Result<String, String> {
        let named = match record.value().and_then(|json| self.path.find(json)) {
            Some(raw) if raw != "null" => Ok(format!("{}{}", self.prefix, raw_text(raw))),
            _ => Err(format!(
                "the record has no field `{}` to route by",
                self.field
            )),
        };
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
