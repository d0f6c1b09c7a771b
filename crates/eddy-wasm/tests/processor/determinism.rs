//! The same input gives byte-identical output, across runs and instances.

use serde_json::json;

use super::*;

fn gps_batch() -> Vec<InputRecord> {
    let values: Vec<Value> = (0..200)
        .map(|i| {
            let lat = 47.5 + f64::from(i % 23) * 0.1;
            let lon = 1.7 + f64::from(i % 17) * 0.1;
            json!({"truck_id": format!("t{}", i % 7), "lat": lat, "lon": lon, "ts": i})
        })
        .collect();
    json_records(&values)
}

fn run(path: &'static str, params: &[(&str, &str)], batch: &[InputRecord]) -> Vec<OutputRecord> {
    let mut p = instance(path, params);
    let mut out = p.process(&batch[..100]).unwrap();
    out.extend(p.process(&batch[100..]).unwrap());
    out
}

#[test]
fn the_same_input_gives_identical_output_across_instances() {
    let batch = gps_batch();
    let fence = [
        ("min_lat", "48"),
        ("max_lat", "49"),
        ("min_lon", "2"),
        ("max_lon", "3"),
    ];
    let cases: [(&'static str, &[(&str, &str)]); 4] = [
        (wasm::GEOFENCE, &fence),
        (wasm::TRANSFORM, &[("fields", "truck_id:id,lat,lon")]),
        (wasm::ROUTER, &[("field", "truck_id")]),
        (wasm::FILTER, &[("field", "truck_id"), ("equals", "t3")]),
    ];
    for (path, params) in cases {
        let first = run(path, params, &batch);
        assert!(!first.is_empty(), "{path} produced nothing");
        for _ in 0..3 {
            assert_eq!(run(path, params, &batch), first, "{path}");
        }
    }
}

#[test]
fn a_recompiled_processor_gives_identical_output() {
    let batch = gps_batch();
    let params = params_of(&[("fields", "lat:y,lon:x")]);
    let fresh_runtime = Runtime::new(Config {
        cache_dir: None,
        ..test_config()
    })
    .unwrap();
    let recompiled = fresh_runtime
        .compile(&wasm::read(wasm::TRANSFORM).unwrap())
        .unwrap();
    let a = instance(wasm::TRANSFORM, &[("fields", "lat:y,lon:x")])
        .process(&batch)
        .unwrap();
    let b = recompiled
        .instantiate(&params)
        .unwrap()
        .process(&batch)
        .unwrap();
    assert_eq!(a, b);
}
