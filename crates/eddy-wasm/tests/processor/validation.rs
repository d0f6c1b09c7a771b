//! Components are checked on load; refusals name the problem.

use super::*;

#[test]
fn every_example_plugin_is_accepted() {
    for path in [
        wasm::FILTER,
        wasm::TRANSFORM,
        wasm::ROUTER,
        wasm::GEOFENCE,
        wasm::PASSTHROUGH,
    ] {
        processor(path);
    }
}

#[test]
fn a_component_importing_what_the_host_does_not_offer_is_refused_by_name() {
    let err = refusal(wasm::TEST_FOREIGN_IMPORT);
    let Error::ForbiddenImports { imports } = &err else {
        panic!("{err}")
    };
    let names: Vec<&str> = imports.iter().map(|r| r.import.as_str()).collect();
    assert_eq!(names, ["acme:secrets/vault@0.1.0"]);
    let text = err.to_string();
    assert!(
        text.contains("`acme:secrets/vault@0.1.0` (not an interface the Eddy host offers)"),
        "{text}"
    );
}

#[test]
fn a_component_using_files_sockets_clocks_and_randomness_loads() {
    // What language runtimes import: each is linked with no capability.
    processor(wasm::TEST_WASI);
}

#[test]
fn a_component_of_another_world_is_refused_naming_the_missing_export() {
    let err = refusal(wasm::TEST_WRONG_WORLD);
    assert!(matches!(err, Error::WrongWorld { .. }), "{err}");
    let text = err.to_string();
    assert!(text.contains("`init`") && text.contains("shout"), "{text}");
}

#[test]
fn bytes_that_are_not_a_component_are_refused() {
    let err = runtime().compile(b"\0asm\x01\0\0\0").unwrap_err();
    assert!(matches!(err, Error::Invalid(_)), "{err}");
    assert!(err.to_string().contains("wasm32-wasip2"), "{err}");
    assert!(matches!(
        runtime().compile(b"hello").unwrap_err(),
        Error::Invalid(_)
    ));
}

#[test]
fn a_component_over_the_size_limit_is_refused_before_compiling() {
    let rt = Runtime::new(Config {
        component_bytes_max: 1024,
        cache_dir: None,
        ..test_config()
    })
    .unwrap();
    let err = rt
        .compile(&wasm::read(wasm::PASSTHROUGH).unwrap())
        .unwrap_err();
    assert!(matches!(err, Error::TooLarge { limit: 1024, .. }), "{err}");
}

#[test]
fn the_digest_is_the_sha256_of_the_bytes() {
    let p = processor(wasm::PASSTHROUGH);
    let bytes = wasm::read(wasm::PASSTHROUGH).unwrap();
    assert_eq!(*p.digest(), eddy_wasm::Digest::of(&bytes));
    assert_eq!(p.digest().to_string().len(), 64);
}
