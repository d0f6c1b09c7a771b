"""geofence: an alert for every truck GPS position outside a rectangle.

The Python twin of plugins/geofence (Rust) and ../geofence-ts: on the same
records the three produce the same alerts, byte for byte (for coordinates
with a fractional part; TypeScript writes 49.0 as 49).

Input: JSON {"truck_id": "t1", "lat": 48.85, "lon": 2.35, "ts": 1700000000000}.
Params: min_lat, max_lat, min_lon, max_lon (the rectangle, degrees, bounds
included), alert_topic (optional output topic; by default the pipeline's
first output).

Each position outside the rectangle gives one alert, keyed by truck id:
{"alert": "left-geofence", "truck_id", "lat", "lon", "ts"}. Nothing is kept
between records, so an exactly-once pipeline's replay gives the same alerts.
"""

import eddy_processor as eddy


class Geofence(eddy.Processor):
    def __init__(self, params):
        self.lat = (params.float("min_lat"), params.float("max_lat"))
        self.lon = (params.float("min_lon"), params.float("max_lon"))
        if not (self.lat[0] <= self.lat[1] and self.lon[0] <= self.lon[1]):
            raise ValueError(
                "the rectangle is empty: need min_lat <= max_lat and min_lon <= max_lon"
            )
        self.alert_topic = params.get("alert_topic")
        eddy.log("info", "watching lat %s..=%s, lon %s..=%s" % (self.lat + self.lon))

    def process(self, record, out):
        position = record.json()
        truck_id = text_field(position, "truck_id")
        lat = number_field(position, "lat")
        lon = number_field(position, "lon")
        ts = position.get("ts")
        if type(ts) is not int:
            ts = None
        if self.lat[0] <= lat <= self.lat[1] and self.lon[0] <= lon <= self.lon[1]:
            return
        alert = {"alert": "left-geofence", "truck_id": truck_id, "lat": lat, "lon": lon, "ts": ts}
        out.push(alert, key=truck_id, timestamp=ts, topic=self.alert_topic)


def text_field(position, name):
    value = position.get(name) if isinstance(position, dict) else None
    if isinstance(value, str):
        return value
    if type(value) in (int, float):
        return eddy.dumps(value)
    raise ValueError("field `%s` is missing or not a string" % name)


def number_field(position, name):
    value = position.get(name)
    if type(value) not in (int, float):
        raise ValueError("field `%s` is missing or not a number" % name)
    return float(value)


WitWorld = eddy.export(Geofence)
