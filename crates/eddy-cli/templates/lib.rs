//! {{name}}: an Eddy stream processor.
//!
//! Keeps the readings hotter than the `threshold` parameter (default 30, in
//! degrees Celsius) and adds their temperature in Fahrenheit. Edit `process`
//! to make it yours; `eddy processor test .` runs it on sample.jsonl.

use eddy_processor::serde_json::Value;
use eddy_processor::{Batch, Output, OutputRecord, Params, Processor, RecordError};

struct HotReadings {
    threshold: f64,
}

impl Processor for HotReadings {
    fn init(params: &Params) -> Result<Self, String> {
        // An `Err` here refuses the parameters: the pipeline does not start.
        let threshold = match params.get("threshold") {
            Some(_) => params.parse("threshold")?,
            None => 30.0,
        };
        Ok(HotReadings { threshold })
    }

    fn process(&mut self, batch: &Batch, out: &mut Output) -> Result<(), RecordError> {
        // An `Err` fails this record alone (the pipeline's onError policy
        // decides what happens to it), with its message as the reason.
        eddy_processor::each(batch, out, |record, out| {
            let mut reading = record.json()?;
            let celsius = reading
                .get("celsius")
                .and_then(Value::as_f64)
                .ok_or("field `celsius` is missing or not a number")?;
            if celsius > self.threshold {
                reading["fahrenheit"] = Value::from(celsius * 9.0 / 5.0 + 32.0);
                let value = reading.to_string();
                out.push(OutputRecord {
                    key: record.key(),
                    value: Some(value.as_bytes()),
                    ..OutputRecord::default()
                });
            }
            Ok(())
        })
    }
}

eddy_processor::export_processor!(HotReadings);
