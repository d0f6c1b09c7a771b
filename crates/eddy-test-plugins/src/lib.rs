//! `eddy-test-plugins`: the processors in `plugins/`, built for
//! `wasm32-wasip2` as part of the normal build, as paths to their `.wasm`
//! files (`FILTER`, `TEST_LOOP`, …, and `ALL`). For tests, benchmarks and
//! tools that need real components; dev-depend on it.
//!
//! The build script runs a nested `cargo build --release --target
//! wasm32-wasip2` over every crate in `plugins/` and re-runs when a
//! plugin, the SDK (`crates/eddy-processor`) or `wit/` changes.

include!(concat!(env!("OUT_DIR"), "/plugins.rs"));

/// The bytes of a plugin's `.wasm` file.
pub fn read(path: &str) -> std::io::Result<Vec<u8>> {
    std::fs::read(path)
}
