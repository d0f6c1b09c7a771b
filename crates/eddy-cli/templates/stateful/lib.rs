//! {{name}}: an Eddy stream processor that keeps state.
//!
//! The average reading of each sensor per minute: every reading goes into
//! its sensor's (its key's) one-minute window, kept in the pipeline's keyed
//! state, and once event time passes the window's end the processor emits
//! the window's count and average. `window_ms` (default 60000) sets the
//! window. Edit `process` and `on_timer` to make it yours; `eddy processor
//! test .` runs it on sample.jsonl.

use eddy_processor::serde_json::{Value, json};
use eddy_processor::timers::{self, Timer};
use eddy_processor::windows::{Added, Windows};
use eddy_processor::{
    Batch, Output, OutputRecord, Params, Processor, RecordError, each_with_timers,
};

struct SensorAverages {
    windows: Windows,
}

/// A window's aggregate, as kept in the state: how many readings (f64)
/// and their sum, 16 bytes.
fn decode(aggregate: Option<&[u8]>) -> (f64, f64) {
    let (mut n, mut sum) = ([0u8; 8], [0u8; 8]);
    if let Some(a) = aggregate.filter(|a| a.len() == 16) {
        n.copy_from_slice(&a[..8]);
        sum.copy_from_slice(&a[8..]);
    }
    (f64::from_be_bytes(n), f64::from_be_bytes(sum))
}

fn encode(n: f64, sum: f64) -> Vec<u8> {
    [n.to_be_bytes(), sum.to_be_bytes()].concat()
}

impl Processor for SensorAverages {
    fn init(params: &Params) -> Result<Self, String> {
        // An `Err` here refuses the parameters: the pipeline does not start.
        let window_ms: i64 = match params.get("window_ms") {
            Some(_) => params.parse("window_ms")?,
            None => 60_000,
        };
        if window_ms <= 0 {
            return Err(format!("window_ms must be positive, not {window_ms}"));
        }
        Ok(SensorAverages {
            windows: Windows::tumbling(window_ms),
        })
    }

    fn process(&mut self, batch: &Batch, out: &mut Output) -> Result<(), RecordError> {
        // Calls `on_timer` right after the record that makes a timer due,
        // so a window closes at the same place in the input on every run.
        each_with_timers(self, batch, out, |this, record, _out| {
            let reading = record.json()?;
            let celsius = reading
                .get("celsius")
                .and_then(Value::as_f64)
                .ok_or("field `celsius` is missing or not a number")?;
            let sensor = record.key().ok_or("a reading needs its sensor as its key")?;
            let added = this.windows.add(sensor, record.timestamp(), |aggregate| {
                let (n, sum) = decode(aggregate);
                encode(n + 1.0, sum + celsius)
            })?;
            match added {
                Added::Open => Ok(()),
                // An `Err` fails this record alone: the pipeline's onError
                // policy decides what happens to it.
                Added::Late => Err(format!(
                    "late: its window closed (timestamp {} is behind the watermark {})",
                    record.timestamp(),
                    timers::watermark()
                )),
            }
        })
    }

    fn on_timer(&mut self, timer: Timer, out: &mut Output) -> Result<(), String> {
        let Some(window) = self.windows.close(&timer)? else {
            return Ok(());
        };
        let (n, sum) = decode(Some(&window.aggregate));
        let value = json!({
            "sensor": String::from_utf8_lossy(&window.key),
            "start": window.start,
            "end": window.end,
            "readings": n as u64,
            "average": sum / n,
        })
        .to_string();
        out.push(OutputRecord {
            key: Some(&window.key),
            value: Some(value.as_bytes()),
            timestamp: Some(window.end - 1),
            ..OutputRecord::default()
        });
        Ok(())
    }
}

eddy_processor::export_processor!(SensorAverages);
