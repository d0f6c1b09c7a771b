//! `geofence`: watches truck GPS positions and emits an alert for every
//! position outside a rectangle.
//!
//! Input: JSON `{"truck_id": "t1", "lat": 48.85, "lon": 2.35, "ts": 1700000000000}`.
//! Params: `min_lat`, `max_lat`, `min_lon`, `max_lon` (the rectangle,
//! degrees, bounds included), `alert_topic` (optional output topic; by
//! default the pipeline's first output).
//!
//! Each position outside the rectangle gives one alert, keyed by truck id:
//! `{"alert": "left-geofence", "truck_id", "lat", "lon", "ts"}`. The
//! processor keeps no state between records, so its outputs depend only on
//! each record: what exactly-once pipelines need (a replay after a crash may
//! cut batches differently and must give the same alerts).

use eddy_processor::serde_json::{Value, json};
use eddy_processor::{Batch, Output, OutputRecord, Params, Processor, Record, RecordError};

struct Geofence {
    lat: (f64, f64),
    lon: (f64, f64),
    alert_topic: Option<String>,
}

struct Position {
    truck_id: String,
    lat: f64,
    lon: f64,
    ts: Option<i64>,
}

impl Processor for Geofence {
    fn init(params: &Params) -> Result<Self, String> {
        let lat = (params.parse("min_lat")?, params.parse("max_lat")?);
        let lon = (params.parse("min_lon")?, params.parse("max_lon")?);
        if !(lat.0 <= lat.1 && lon.0 <= lon.1) {
            return Err(format!(
                "the rectangle is empty: need min_lat <= max_lat and min_lon <= max_lon, got lat {lat:?}, lon {lon:?}"
            ));
        }
        eddy_processor::log(
            eddy_processor::Level::Info,
            &format!(
                "watching lat {}..={}, lon {}..={}",
                lat.0, lat.1, lon.0, lon.1
            ),
        );
        Ok(Geofence {
            lat,
            lon,
            alert_topic: params.get("alert_topic").map(str::to_owned),
        })
    }

    fn process(&mut self, batch: &Batch, out: &mut Output) -> Result<(), RecordError> {
        eddy_processor::each(batch, out, |record, out| {
            let p = position(&record)?;
            if !self.contains(p.lat, p.lon) {
                self.alert(&p, out);
            }
            Ok(())
        })
    }
}

impl Geofence {
    fn contains(&self, lat: f64, lon: f64) -> bool {
        (self.lat.0..=self.lat.1).contains(&lat) && (self.lon.0..=self.lon.1).contains(&lon)
    }

    fn alert(&self, p: &Position, out: &mut Output) {
        let value = json!({
            "alert": "left-geofence",
            "truck_id": p.truck_id,
            "lat": p.lat,
            "lon": p.lon,
            "ts": p.ts,
        })
        .to_string();
        out.push(OutputRecord {
            topic: self.alert_topic.as_deref(),
            key: Some(p.truck_id.as_bytes()),
            value: Some(value.as_bytes()),
            timestamp: p.ts,
            ..OutputRecord::default()
        });
    }
}

fn position(record: &Record<'_>) -> Result<Position, String> {
    let value = record.json()?;
    let number = |name: &str| {
        value
            .get(name)
            .and_then(Value::as_f64)
            .ok_or_else(|| format!("field `{name}` is missing or not a number"))
    };
    let truck_id = match value.get("truck_id") {
        Some(Value::String(s)) => s.clone(),
        Some(Value::Number(n)) => n.to_string(),
        _ => return Err("field `truck_id` is missing or not a string".into()),
    };
    Ok(Position {
        truck_id,
        lat: number("lat")?,
        lon: number("lon")?,
        ts: value.get("ts").and_then(Value::as_i64),
    })
}

eddy_processor::export_processor!(Geofence);
