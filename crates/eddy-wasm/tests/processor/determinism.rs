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

#[test]
fn nan_results_are_canonical() {
    // Inputs whose NaN results keep a payload or a sign on x86 unless the
    // engine canonicalises them: a signalling NaN with a payload, a
    // negative quiet NaN with a payload, and 0/0 (x86's default NaN is
    // negative).
    let pairs: [(u64, f64); 3] = [
        (0x7FF0_0000_0000_0001, 1.0),
        (0xFFF8_0000_0000_0042, 2.0),
        (0.0f64.to_bits(), 0.0),
    ];
    let values: Vec<Vec<u8>> = pairs
        .iter()
        .map(|&(a, b)| [a.to_le_bytes(), b.to_bits().to_le_bytes()].concat())
        .collect();
    let out = instance(wasm::TEST_NAN, &[])
        .process(&records(values.iter().map(Vec::as_slice)))
        .unwrap();
    assert_eq!(out.len(), 3);
    let mut nans = 0;
    for (o, (a, b)) in out.iter().zip(pairs) {
        let bytes = o.value.as_deref().unwrap();
        let word = |i: usize| u64::from_le_bytes(bytes[i * 8..i * 8 + 8].try_into().unwrap());
        let a = f64::from_bits(a);
        // What the guest computed, and the canonical NaN of its width.
        let results = [
            (word(0), (a + b).to_bits(), 0x7FF8_0000_0000_0000),
            (word(1), (a / b).to_bits(), 0x7FF8_0000_0000_0000),
            (
                word(2),
                u64::from(((a as f32) + (b as f32)).to_bits()),
                0x7FC0_0000,
            ),
        ];
        for (i, (got, native, canonical)) in results.into_iter().enumerate() {
            let native_is_nan = if i == 2 {
                f32::from_bits(native as u32).is_nan()
            } else {
                f64::from_bits(native).is_nan()
            };
            if native_is_nan {
                nans += 1;
                assert_eq!(got, canonical, "operation {i} on {a:?}, {b}: {got:#x}");
            } else {
                assert_eq!(got, native, "operation {i} on {a:?}, {b}");
            }
        }
    }
    assert_eq!(nans, 7, "the inputs should give seven NaN results");
}
