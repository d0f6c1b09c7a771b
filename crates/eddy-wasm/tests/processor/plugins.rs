//! What each example plugin does.

use serde_json::json;

use super::*;

#[test]
fn passthrough_returns_every_record_unchanged() {
    let mut p = instance(wasm::PASSTHROUGH, &[]);
    let input = records([&b"one"[..], b"two", b""]);
    let out = p.process(&input).unwrap();
    assert_eq!(out.len(), 3);
    for (i, o) in input.iter().zip(&out) {
        assert_eq!(o.key, i.key);
        assert_eq!(o.value, i.value);
        assert_eq!(o.topic, None);
        assert_eq!(o.timestamp, Some(i.timestamp));
        // Forwarded, not copied: the output shares the input's bytes.
        assert_eq!(
            o.value.as_ref().map(|v| v.as_ptr()),
            i.value.as_ref().map(|v| v.as_ptr())
        );
    }
}

#[test]
fn records_keep_their_headers_and_tombstones() {
    let mut p = instance(wasm::PASSTHROUGH, &[]);
    let mut input = records([&b"x"[..], b"y"]);
    input[0].headers = vec![
        eddy_wasm::Header {
            key: "trace".into(),
            value: Bytes::from_static(b"abc"),
        },
        eddy_wasm::Header {
            key: "empty".into(),
            value: Bytes::new(),
        },
    ];
    input[1].value = None;
    input[1].key = None;
    let out = p.process(&input).unwrap();
    assert_eq!(out[0].headers, input[0].headers);
    assert_eq!(out[1].value, None);
    assert_eq!(out[1].key, None);
}

#[test]
fn an_empty_batch_gives_no_output() {
    let mut p = instance(wasm::PASSTHROUGH, &[]);
    assert!(p.process(&[]).unwrap().is_empty());
}

#[test]
fn filter_keeps_records_whose_field_matches() {
    let mut p = instance(
        wasm::FILTER,
        &[("field", "truck.region"), ("equals", "north")],
    );
    let input = json_records(&[
        json!({"truck": {"region": "north"}, "n": 1}),
        json!({"truck": {"region": "south"}, "n": 2}),
        json!({"n": 3}),
        json!({"truck": {"region": "north"}, "n": 4}),
    ]);
    let out = p.process(&input).unwrap();
    let kept: Vec<_> = json_values(&out).iter().map(|v| v["n"].clone()).collect();
    assert_eq!(kept, [json!(1), json!(4)]);
    assert_eq!(p.counters().get("records-dropped"), Some(&2));
}

#[test]
fn filter_compares_numbers_as_written_and_drops_non_json() {
    let mut p = instance(wasm::FILTER, &[("field", "speed"), ("equals", "80")]);
    let mut input = json_records(&[
        json!({"speed": 80}),
        json!({"speed": "80"}),
        json!({"speed": 81}),
    ]);
    input.extend(records([&b"not json"[..]]));
    assert_eq!(p.process(&input).unwrap().len(), 2);
}

#[test]
fn filter_without_its_params_refuses_to_start() {
    let err = processor(wasm::FILTER)
        .instantiate(&params_of(&[("field", "x")]))
        .unwrap_err();
    assert!(matches!(err, Error::Init(_)), "{err}");
    assert!(
        err.to_string().contains("missing parameter `equals`"),
        "{err}"
    );
}

#[test]
fn transform_projects_and_renames_fields() {
    let mut p = instance(
        wasm::TRANSFORM,
        &[("fields", "truck_id:id, speed,position.lat:lat")],
    );
    let input = json_records(&[
        json!({"truck_id": "t1", "position": {"lat": 48.5, "lon": 2.1}, "speed": 50, "driver": "x"}),
        json!({"truck_id": "t2"}),
    ]);
    let out = p.process(&input).unwrap();
    assert_eq!(
        json_values(&out),
        [
            json!({"id": "t1", "lat": 48.5, "speed": 50}),
            json!({"id": "t2"})
        ]
    );
    // The output object keeps the order the fields were listed in.
    assert_eq!(
        std::str::from_utf8(out[0].value.as_deref().unwrap()).unwrap(),
        r#"{"id":"t1","speed":50,"lat":48.5}"#
    );
    assert_eq!(out[0].key, input[0].key);
}

#[test]
fn transform_reports_the_record_that_is_not_json() {
    let mut p = instance(wasm::TRANSFORM, &[("fields", "a")]);
    let mut input = json_records(&[json!({"a": 1})]);
    input.extend(records([&b"{broken"[..]]));
    let err = p.process(&input).unwrap_err();
    match err {
        eddy_wasm::ProcessError::Record { index, message } => {
            assert_eq!(index, 1);
            assert!(message.contains("not valid JSON"), "{message}");
        }
        other => panic!("expected a record error, got {other}"),
    }
    // A record error leaves the instance usable.
    assert_eq!(p.process(&input[..1]).unwrap().len(), 1);
}

#[test]
fn router_sends_each_record_to_the_topic_named_by_its_field() {
    let mut p = instance(
        wasm::ROUTER,
        &[
            ("field", "kind"),
            ("prefix", "events-"),
            ("default", "unrouted"),
        ],
    );
    let input = json_records(&[
        json!({"kind": "gps"}),
        json!({"kind": "engine"}),
        json!({"other": 1}),
    ]);
    let topics: Vec<_> = p
        .process(&input)
        .unwrap()
        .into_iter()
        .map(|o| o.topic.unwrap().to_string())
        .collect();
    assert_eq!(topics, ["events-gps", "events-engine", "unrouted"]);
}

#[test]
fn router_without_default_refuses_records_it_cannot_route() {
    let mut p = instance(wasm::ROUTER, &[("field", "kind")]);
    let input = json_records(&[json!({"kind": "gps"}), json!({"nope": 1})]);
    let err = p.process(&input).unwrap_err();
    assert!(
        matches!(err, eddy_wasm::ProcessError::Record { index: 1, .. }),
        "{err}"
    );
    assert!(err.to_string().contains("no field `kind`"), "{err}");
}

fn fence() -> Instance {
    instance(
        wasm::GEOFENCE,
        &[
            ("min_lat", "48.0"),
            ("max_lat", "49.0"),
            ("min_lon", "2.0"),
            ("max_lon", "3.0"),
            ("alert_topic", "alerts"),
        ],
    )
}

fn gps(truck: &str, lat: f64, lon: f64, ts: i64) -> Value {
    json!({"truck_id": truck, "lat": lat, "lon": lon, "ts": ts})
}

#[test]
fn geofence_alerts_for_every_position_outside_the_rectangle() {
    let mut p = fence();
    let input = json_records(&[
        gps("t1", 48.5, 2.5, 1),
        gps("t2", 48.6, 2.6, 2),
        gps("t1", 49.5, 2.5, 3), // t1 outside
        gps("t1", 49.6, 2.5, 4), // still outside: another alert
        gps("t2", 48.7, 2.7, 5),
    ]);
    let out = p.process(&input).unwrap();
    assert_eq!(out.len(), 2);
    assert_eq!(out[0].topic.as_deref(), Some("alerts"));
    assert_eq!(out[0].key.as_deref(), Some(&b"t1"[..]));
    assert_eq!(out[0].timestamp, Some(eddy_wasm::Timestamp(3)));
    assert_eq!(
        json_values(&out)[0],
        json!({"alert": "left-geofence", "truck_id": "t1", "lat": 49.5, "lon": 2.5, "ts": 3})
    );
    assert_eq!(out[1].timestamp, Some(eddy_wasm::Timestamp(4)));
}

#[test]
fn geofence_outputs_do_not_depend_on_batch_boundaries() {
    let input = json_records(&[
        gps("t1", 50.0, 2.5, 1),
        gps("t1", 48.5, 2.5, 2),
        gps("t1", 48.5, 3.5, 3),
        gps("t2", 47.0, 2.1, 4),
    ]);
    let whole = fence().process(&input).unwrap();
    let mut one_by_one = fence();
    let singles: Vec<_> = input
        .iter()
        .flat_map(|r| one_by_one.process(std::slice::from_ref(r)).unwrap())
        .collect();
    assert_eq!(whole.len(), 3);
    assert_eq!(singles, whole);
}

#[test]
fn geofence_forgets_a_failed_batch() {
    let mut p = fence();
    let mut bad = json_records(&[gps("t1", 50.0, 2.5, 1)]);
    bad.extend(json_records(&[json!({"truck_id": "t9"})]));
    let err = p.process(&bad).unwrap_err();
    assert!(err.to_string().contains("field `lat`"), "{err}");
    // The record error names the record; the good part alone still alerts.
    assert_eq!(p.process(&bad[..1]).unwrap().len(), 1);
}

#[test]
fn geofence_refuses_an_empty_rectangle() {
    let params = params_of(&[
        ("min_lat", "49"),
        ("max_lat", "48"),
        ("min_lon", "2"),
        ("max_lon", "3"),
    ]);
    let err = processor(wasm::GEOFENCE).instantiate(&params).unwrap_err();
    assert!(err.to_string().contains("rectangle is empty"), "{err}");
}
