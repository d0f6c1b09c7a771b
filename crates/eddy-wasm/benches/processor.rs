//! Processor host benchmark: pass-through of 100-byte records at several
//! batch sizes against the same logic as a native Rust closure, the
//! `filter` plugin against the same filter in native Rust, and the cost of
//! creating an instance from a pre-linked processor.
//!
//! Run: `cargo bench -p eddy-wasm --bench processor`. Throughput lines
//! (`thrpt`) are records per second. The last line compares the filter
//! with native again, interleaving the two sides.
#![allow(clippy::unwrap_used)]

use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use criterion::{Criterion, Throughput, criterion_group};
use eddy_processor::json::{Path, text_is};
use eddy_test_plugins as wasm;
use eddy_wasm::{
    Config, InputRecord, Instance, Offset, OutputRecord, Processor, Runtime, Timestamp,
};

const RECORD_BYTES: usize = 100;
const BATCH_SIZES: [usize; 4] = [1, 16, 256, 1024];

fn runtime() -> Runtime {
    Runtime::new(Config {
        batch_records_max: 1024,
        ..Config::default()
    })
    .unwrap()
}

fn compile(rt: &Runtime, path: &str) -> Processor {
    rt.compile(&wasm::read(path).unwrap()).unwrap()
}

/// `n` records with 100-byte JSON values, a third of them in region "north".
fn batch(n: usize) -> Vec<InputRecord> {
    let topic: Arc<str> = Arc::from("positions");
    (0..n)
        .map(|i| {
            let region = ["north", "south", "east"][i % 3];
            let mut value = format!(
                r#"{{"truck_id":"t{:05}","region":"{region}","lat":48.{:05},"lon":2.{:05},"pad":""#,
                i % 100_000,
                i % 99_991,
                i % 99_989
            );
            value.push_str(&"x".repeat(RECORD_BYTES - value.len() - 2));
            value.push_str("\"}");
            assert_eq!(value.len(), RECORD_BYTES);
            InputRecord {
                key: Some(Bytes::from(format!("t{:05}", i % 100_000))),
                value: Some(Bytes::from(value)),
                headers: Vec::new(),
                timestamp: Timestamp(1_700_000_000_000 + i as i64),
                topic: topic.clone(),
                partition: 0,
                offset: Offset(i as u64),
            }
        })
        .collect()
}

fn pass_through_native(batch: &[InputRecord]) -> Vec<OutputRecord> {
    batch
        .iter()
        .map(|r| OutputRecord {
            topic: None,
            key: r.key.clone(),
            value: r.value.clone(),
            headers: r.headers.clone(),
            timestamp: Some(r.timestamp),
        })
        .collect()
}

/// The `filter` plugin's logic in native Rust, with the same JSON lookup
/// from `eddy-processor` compiled for the host.
fn filter_native(batch: &[InputRecord], field: &Path, equals: &str) -> Vec<OutputRecord> {
    batch
        .iter()
        .filter(|r| {
            r.value
                .as_deref()
                .and_then(|json| field.find_bytes(json))
                .is_some_and(|raw| text_is(raw, equals))
        })
        .map(|r| OutputRecord {
            topic: None,
            key: r.key.clone(),
            value: r.value.clone(),
            headers: r.headers.clone(),
            timestamp: Some(r.timestamp),
        })
        .collect()
}

fn pass_through(c: &mut Criterion) {
    let rt = runtime();
    let passthrough = compile(&rt, wasm::PASSTHROUGH);
    let mut instance = passthrough.instantiate(&[]).unwrap();
    let mut group = c.benchmark_group("pass-through");
    for n in BATCH_SIZES {
        let records = batch(n);
        group.throughput(Throughput::Elements(n as u64));
        group.bench_function(format!("wasm/batch-{n}"), |b| {
            b.iter(|| instance.process(&records).unwrap())
        });
        group.bench_function(format!("native/batch-{n}"), |b| {
            b.iter(|| pass_through_native(std::hint::black_box(&records)))
        });
    }
    group.finish();
}

/// The `filter` plugin keeping records whose `region` is `north`.
fn filter_instance(rt: &Runtime) -> Instance {
    let params = [
        ("field".to_owned(), "region".to_owned()),
        ("equals".to_owned(), "north".to_owned()),
    ];
    compile(rt, wasm::FILTER).instantiate(&params).unwrap()
}

fn filter(c: &mut Criterion) {
    let rt = runtime();
    let mut instance = filter_instance(&rt);
    let records = batch(256);
    assert_eq!(
        instance.process(&records).unwrap(),
        filter_native(&records, &Path::new("region"), "north")
    );
    let mut group = c.benchmark_group("filter");
    group.throughput(Throughput::Elements(256));
    group.bench_function("wasm/batch-256", |b| {
        b.iter(|| instance.process(&records).unwrap())
    });
    group.bench_function("native/batch-256", |b| {
        // The parameters come at run time, as the plugin gets them.
        let (field, equals) = std::hint::black_box((Path::new("region"), "north"));
        b.iter(|| filter_native(std::hint::black_box(&records), &field, equals))
    });
    group.finish();
}

fn instantiate(c: &mut Criterion) {
    let rt = runtime();
    let passthrough = compile(&rt, wasm::PASSTHROUGH);
    let mut group = c.benchmark_group("instantiate");
    group.bench_function("passthrough (InstancePre + init + drop)", |b| {
        b.iter(|| drop(passthrough.instantiate(&[]).unwrap()))
    });
    group.finish();
}

fn config() -> Criterion {
    Criterion::default()
        .sample_size(30)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(3))
}

/// The filter against native once more, the two sides interleaved: on this
/// VM the host takes time away in bursts, so two criterion groups run one
/// after the other can see different machines. Runs `ROUNDS` rounds of
/// `CALLS` batches on each side in turn and prints each side's median and
/// fastest round, and their ratios.
fn filter_interleaved() {
    const ROUNDS: usize = 60;
    const CALLS: u32 = 100;
    let rt = runtime();
    let mut instance = filter_instance(&rt);
    let records = batch(256);
    let (field, equals) = std::hint::black_box((Path::new("region"), "north"));
    let per_call = |start: Instant| start.elapsed().as_secs_f64() * 1e6 / f64::from(CALLS);
    let (mut wasm, mut native) = (Vec::new(), Vec::new());
    for _ in 0..ROUNDS {
        let start = Instant::now();
        for _ in 0..CALLS {
            std::hint::black_box(instance.process(&records).unwrap());
        }
        wasm.push(per_call(start));
        let start = Instant::now();
        for _ in 0..CALLS {
            std::hint::black_box(filter_native(
                std::hint::black_box(&records),
                &field,
                equals,
            ));
        }
        native.push(per_call(start));
    }
    wasm.sort_by(f64::total_cmp);
    native.sort_by(f64::total_cmp);
    let (w, n) = (wasm[ROUNDS / 2], native[ROUNDS / 2]);
    println!(
        "filter/interleaved batch-256: wasm {w:.1} µs, native {n:.1} µs, {:.2}x (median of {ROUNDS} rounds); fastest rounds {:.1} µs and {:.1} µs, {:.2}x",
        w / n,
        wasm[0],
        native[0],
        wasm[0] / native[0]
    );
}

criterion_group!(name = benches; config = config(); targets = pass_through, filter, instantiate);

fn main() {
    benches();
    filter_interleaved();
    Criterion::default().configure_from_args().final_summary();
}
