//! `window-count`: counts records per key in event-time windows and emits
//! one record per key and window when the window closes — once the
//! watermark (the newest timestamp seen minus the pipeline's allowed
//! lateness) passes its end. Built on the SDK's `windows::Windows`, so its
//! counts live in the keyed state and survive crashes exactly.
//!
//! Params: `window_ms` (window size, default 300000: five minutes),
//! `advance_ms` (for hopping windows; default the size: tumbling),
//! `late_topic` (optional: an output topic for late records, which
//! otherwise fail with a record error and go by the pipeline's onError).
//!
//! Output, keyed like the input, stamped with the window's last
//! millisecond: `{"key":"t1","start":1700000100000,"end":1700000400000,"count":3}`.

use eddy_processor::timers::Timer;
use eddy_processor::windows::{Added, Windows};
use eddy_processor::{
    Batch, Output, OutputRecord, Params, Processor, RecordError, each_with_timers,
};

struct WindowCount {
    windows: Windows,
    late_topic: Option<String>,
}

impl Processor for WindowCount {
    fn init(params: &Params) -> Result<Self, String> {
        let size: i64 = match params.get("window_ms") {
            Some(_) => params.parse("window_ms")?,
            None => 300_000,
        };
        let advance: i64 = match params.get("advance_ms") {
            Some(_) => params.parse("advance_ms")?,
            None => size,
        };
        if size <= 0 || advance <= 0 || advance > size {
            return Err(format!(
                "window_ms ({size}) and advance_ms ({advance}) must be positive, advance_ms at most window_ms"
            ));
        }
        Ok(WindowCount {
            windows: Windows::hopping(size, advance),
            late_topic: params.get("late_topic").map(str::to_owned),
        })
    }

    fn process(&mut self, batch: &Batch, out: &mut Output) -> Result<(), RecordError> {
        each_with_timers(self, batch, out, |this, record, out| {
            let key = record.key().unwrap_or_default();
            let added = this.windows.add(key, record.timestamp(), |count| {
                let n = count.map_or(0, |c| c.try_into().map_or(0, u64::from_be_bytes));
                (n + 1).to_be_bytes().to_vec()
            })?;
            match (added, &this.late_topic) {
                (Added::Open, _) => Ok(()),
                (Added::Late, Some(topic)) => {
                    out.forward_to(&record, Some(topic));
                    Ok(())
                }
                (Added::Late, None) => Err(format!(
                    "late: its window closed (timestamp {} is behind the watermark {})",
                    record.timestamp(),
                    eddy_processor::timers::watermark()
                )),
            }
        })
    }

    fn on_timer(&mut self, timer: Timer, out: &mut Output) -> Result<(), String> {
        let Some(w) = self.windows.close(&timer)? else {
            return Ok(());
        };
        let count = w.aggregate.try_into().map_or(0, u64::from_be_bytes);
        let key = String::from_utf8_lossy(&w.key);
        let value = eddy_processor::serde_json::json!({
            "key": key,
            "start": w.start,
            "end": w.end,
            "count": count,
        })
        .to_string();
        out.push(OutputRecord {
            key: Some(&w.key),
            value: Some(value.as_bytes()),
            timestamp: Some(w.end - 1),
            ..OutputRecord::default()
        });
        Ok(())
    }
}

eddy_processor::export_processor!(WindowCount);
