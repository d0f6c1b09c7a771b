// geofence: an alert for every truck GPS position outside a rectangle.
//
// The TypeScript twin of plugins/geofence (Rust) and ../geofence-python: on
// the same records the three produce the same alerts, byte for byte (for
// coordinates with a fractional part; JavaScript writes 49.0 as 49).
//
// Input: JSON {"truck_id": "t1", "lat": 48.85, "lon": 2.35, "ts": 1700000000000}.
// Params: min_lat, max_lat, min_lon, max_lon (the rectangle, degrees, bounds
// included), alert_topic (optional output topic; by default the pipeline's
// first output).
//
// Each position outside the rectangle gives one alert, keyed by truck id:
// {"alert": "left-geofence", "truck_id", "lat", "lon", "ts"}. Nothing is kept
// between records, so an exactly-once pipeline's replay gives the same alerts.

import { Output, Params, Processor, Record, exportProcessor, log } from "./eddy-processor.js";

class Geofence extends Processor {
  private lat: [number, number];
  private lon: [number, number];
  private alertTopic: string | null;

  constructor(params: Params) {
    super(params);
    this.lat = [params.number("min_lat"), params.number("max_lat")];
    this.lon = [params.number("min_lon"), params.number("max_lon")];
    if (!(this.lat[0] <= this.lat[1] && this.lon[0] <= this.lon[1])) {
      throw new Error("the rectangle is empty: need min_lat <= max_lat and min_lon <= max_lon");
    }
    this.alertTopic = params.get("alert_topic") ?? null;
    log("info", `watching lat ${this.lat[0]}..=${this.lat[1]}, lon ${this.lon[0]}..=${this.lon[1]}`);
  }

  process(record: Record, out: Output): void {
    const position = record.json();
    const truckId = textField(position, "truck_id");
    const lat = numberField(position, "lat");
    const lon = numberField(position, "lon");
    const ts = Number.isSafeInteger(position.ts) ? (position.ts as number) : null;
    if (lat >= this.lat[0] && lat <= this.lat[1] && lon >= this.lon[0] && lon <= this.lon[1]) {
      return;
    }
    out.push({
      key: truckId,
      value: { alert: "left-geofence", truck_id: truckId, lat, lon, ts },
      timestamp: ts,
      topic: this.alertTopic,
    });
  }
}

function textField(position: any, name: string): string {
  const value = position !== null && typeof position === "object" ? position[name] : undefined;
  if (typeof value === "string") return value;
  if (typeof value === "number") return JSON.stringify(value);
  throw new Error(`field \`${name}\` is missing or not a string`);
}

function numberField(position: any, name: string): number {
  const value = position[name];
  if (typeof value !== "number") throw new Error(`field \`${name}\` is missing or not a number`);
  return value;
}

export const { init, process } = exportProcessor(Geofence);
