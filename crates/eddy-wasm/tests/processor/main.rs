//! Specification tests for `eddy-wasm`, run against the real plugins in
//! `plugins/` (built by `eddy-test-plugins`). One runtime per test binary
//! and each component compiled once, shared by all tests.
#![allow(clippy::unwrap_used)]

mod cache;
mod determinism;
mod plugins;
mod sandbox;
mod state;
mod validation;
mod wasi;

use std::collections::HashMap;
use std::sync::{Arc, Mutex, OnceLock};

use bytes::Bytes;
use eddy_wasm::{
    Config, Error, InputRecord, Instance, Offset, OutputRecord, Processor, Runtime, Timestamp,
};
use serde_json::Value;

pub use eddy_test_plugins as wasm;

/// Runtimes and processors are shared between threads; an instance moves
/// to the thread that runs its task.
#[test]
fn handles_can_cross_threads() {
    fn shared<T: Send + Sync>() {}
    fn movable<T: Send>() {}
    shared::<Runtime>();
    shared::<Processor>();
    movable::<Instance>();
}

/// Limits small enough that the failure plugins fail fast.
pub fn test_config() -> Config {
    Config {
        memory_bytes_max: 32 << 20,
        batch_time_ms_max: 250,
        instances_max: 64,
        cache_dir: Some(std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join("eddy-wasm-cache")),
        ..Config::default()
    }
}

/// The runtime every test shares.
pub fn runtime() -> &'static Runtime {
    static RUNTIME: OnceLock<Runtime> = OnceLock::new();
    RUNTIME.get_or_init(|| Runtime::new(test_config()).unwrap())
}

/// The plugin at `path`, compiled once per test binary.
pub fn processor(path: &'static str) -> Processor {
    static COMPILED: OnceLock<Mutex<HashMap<&'static str, Processor>>> = OnceLock::new();
    let compiled = COMPILED.get_or_init(Default::default);
    if let Some(p) = compiled.lock().unwrap().get(path) {
        return p.clone();
    }
    let p = runtime().compile(&wasm::read(path).unwrap()).unwrap();
    compiled.lock().unwrap().insert(path, p.clone());
    p
}

/// Compiles the plugin at `path`, expecting a refusal.
pub fn refusal(path: &str) -> Error {
    runtime().compile(&wasm::read(path).unwrap()).unwrap_err()
}

/// An instance of the plugin at `path` with `params`.
pub fn instance(path: &'static str, params: &[(&str, &str)]) -> Instance {
    processor(path).instantiate(&params_of(params)).unwrap()
}

pub fn params_of(params: &[(&str, &str)]) -> Vec<(String, String)> {
    params
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

/// Records on `topic` partition 0 with offsets from 0 and the given values.
pub fn records<'a>(values: impl IntoIterator<Item = &'a [u8]>) -> Vec<InputRecord> {
    let topic: Arc<str> = Arc::from("input");
    values
        .into_iter()
        .enumerate()
        .map(|(i, v)| InputRecord {
            key: Some(Bytes::from(format!("k{i}"))),
            value: Some(Bytes::copy_from_slice(v)),
            headers: Vec::new(),
            timestamp: Timestamp(1_700_000_000_000 + i as i64),
            topic: topic.clone(),
            partition: 0,
            offset: Offset(i as u64),
        })
        .collect()
}

/// Records whose values are the given JSON documents.
pub fn json_records(values: &[Value]) -> Vec<InputRecord> {
    let texts: Vec<String> = values.iter().map(Value::to_string).collect();
    records(texts.iter().map(|t| t.as_bytes()))
}

/// The outputs' values parsed as JSON.
pub fn json_values(outputs: &[OutputRecord]) -> Vec<Value> {
    outputs
        .iter()
        .map(|o| serde_json::from_slice(o.value.as_deref().unwrap()).unwrap())
        .collect()
}
