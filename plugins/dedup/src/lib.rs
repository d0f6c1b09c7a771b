//! `dedup`: forwards a record unless a record with the same id was seen
//! within the last `ttl_ms` of event time; then it drops it (counted as
//! `duplicates-dropped`). The ids seen are kept in the keyed state, each
//! with a timer that forgets it once the watermark is `ttl_ms` past the
//! last time it was seen, so the state holds only the ids of one TTL.
//!
//! Params: `id_field` (a top-level field of the JSON value holding the id;
//! default: the record's key), `ttl_ms` (default 3600000: an hour).
//! Keyed state is per input partition: records with one id must arrive
//! in one partition (key the input by the id).

use eddy_processor::timers::{self, Timer};
use eddy_processor::{
    Batch, Output, Params, Processor, Record, RecordError, counter_add, each_with_timers, state,
};

struct Dedup {
    id_field: Option<String>,
    ttl_ms: i64,
}

impl Dedup {
    /// The id to deduplicate `record` by.
    fn id(&self, record: &Record<'_>) -> Result<Vec<u8>, String> {
        let Some(field) = &self.id_field else {
            return record
                .key()
                .map(<[u8]>::to_vec)
                .ok_or_else(|| "the record has no key to deduplicate by".to_owned());
        };
        let value = record
            .json()
            .map_err(|e| format!("the value is not JSON: {e}"))?;
        match value.get(field) {
            Some(eddy_processor::serde_json::Value::String(s)) => Ok(s.as_bytes().to_vec()),
            Some(v) if !v.is_null() => Ok(v.to_string().into_bytes()),
            _ => Err(format!(
                "the value has no field {field:?} to deduplicate by"
            )),
        }
    }
}

impl Processor for Dedup {
    fn init(params: &Params) -> Result<Self, String> {
        let ttl_ms: i64 = match params.get("ttl_ms") {
            Some(_) => params.parse("ttl_ms")?,
            None => 3_600_000,
        };
        if ttl_ms <= 0 {
            return Err(format!("ttl_ms must be positive, not {ttl_ms}"));
        }
        Ok(Dedup {
            id_field: params.get("id_field").map(str::to_owned),
            ttl_ms,
        })
    }

    fn process(&mut self, batch: &Batch, out: &mut Output) -> Result<(), RecordError> {
        each_with_timers(self, batch, out, |this, record, out| {
            let id = this.id(&record)?;
            let ts = record.timestamp();
            let seen = state::get_u64(&id)?.map(|t| t as i64);
            if seen.is_some_and(|seen| (ts - seen).abs() < this.ttl_ms) {
                counter_add("duplicates-dropped", 1);
                return Ok(());
            }
            // Remembered from its newest sighting, until a TTL after it.
            if seen.is_none_or(|seen| ts > seen) {
                if let Some(seen) = seen {
                    timers::cancel(&id, seen + this.ttl_ms)?;
                }
                let expiry = ts + this.ttl_ms;
                if expiry > timers::watermark() {
                    timers::register(&id, expiry)?;
                    state::put_u64(&id, ts as u64)?;
                } else {
                    state::delete(&id)?;
                }
            }
            out.forward(&record);
            Ok(())
        })
    }

    fn on_timer(&mut self, timer: Timer, _out: &mut Output) -> Result<(), String> {
        if state::get_u64(&timer.key)?.map(|t| t as i64 + self.ttl_ms) == Some(timer.at) {
            state::delete(&timer.key)?;
        }
        Ok(())
    }
}

eddy_processor::export_processor!(Dedup);
