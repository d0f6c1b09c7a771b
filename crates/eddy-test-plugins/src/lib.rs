//! `eddy-test-plugins`: the processors in `plugins/`, built for
//! `wasm32-wasip2` as part of the normal build, as paths to their `.wasm`
//! files (`FILTER`, `TEST_LOOP`, …, and `ALL`) and as bytes built into the
//! program (`GEOFENCE_WASM`, …; only those a program uses end up in it).
//! For tests, benchmarks, and `eddy demo`, which uploads the geofence.
//!
//! The build script runs a nested `cargo build --release --target
//! wasm32-wasip2` over every crate in `plugins/` and re-runs when a
//! plugin, the SDK (`crates/eddy-processor`) or `wit/` changes.

include!(concat!(env!("OUT_DIR"), "/plugins.rs"));

/// The bytes of a plugin's `.wasm` file.
pub fn read(path: &str) -> std::io::Result<Vec<u8>> {
    std::fs::read(path)
}
