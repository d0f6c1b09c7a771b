//! `transform`: keeps only some fields of each JSON record, optionally
//! renaming them.
//!
//! Params: `fields`, a comma-separated list of dotted paths, each
//! optionally followed by `:new_name`, e.g. `truck_id:id,position.lat:lat`.
//! The output is a flat JSON object with one member per listed field that
//! the record has (missing fields are left out), in the order listed. A
//! record whose value is not JSON is a record error.

use eddy_processor::serde_json::{Map, Value};
use eddy_processor::{Batch, Output, OutputRecord, Params, Processor, RecordError};

struct Transform {
    /// (path in the input, name in the output)
    fields: Vec<(String, String)>,
}

impl Processor for Transform {
    fn init(params: &Params) -> Result<Self, String> {
        let spec = params.require("fields")?;
        let mut fields = Vec::new();
        for item in spec.split(',').map(str::trim).filter(|s| !s.is_empty()) {
            let (path, name) = match item.split_once(':') {
                Some((path, name)) => (path.trim(), name.trim()),
                None => (item, item),
            };
            if path.is_empty() || name.is_empty() {
                return Err(format!(
                    "parameter `fields`: {item:?} is not `path` or `path:new_name`"
                ));
            }
            fields.push((path.to_owned(), name.to_owned()));
        }
        if fields.is_empty() {
            return Err(
                "parameter `fields` lists no field: pass e.g. fields=id,lat:latitude".into(),
            );
        }
        Ok(Transform { fields })
    }

    fn process(&mut self, batch: &Batch, out: &mut Output) -> Result<(), RecordError> {
        eddy_processor::each(batch, out, |record, out| {
            let value = record.json()?;
            let mut projected = Map::new();
            for (path, name) in &self.fields {
                if let Some(v) = eddy_processor::json::field(&value, path) {
                    projected.insert(name.clone(), v.clone());
                }
            }
            let text = Value::Object(projected).to_string();
            let headers: Vec<(&str, &[u8])> = record.headers().collect();
            out.push(OutputRecord {
                key: record.key(),
                value: Some(text.as_bytes()),
                headers: &headers,
                timestamp: Some(record.timestamp()),
                ..OutputRecord::default()
            });
            Ok(())
        })
    }
}

eddy_processor::export_processor!(Transform);
