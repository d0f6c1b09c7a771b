//! Compiled components are cached on disk, keyed by content and engine.

use super::*;

fn cache_files(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut files: Vec<_> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "cwasm"))
        .collect();
    files.sort();
    files
}

fn runtime_with_cache(dir: &std::path::Path) -> Runtime {
    Runtime::new(Config {
        cache_dir: Some(dir.to_owned()),
        instances_max: 4,
        ..test_config()
    })
    .unwrap()
}

#[test]
fn a_compiled_component_is_saved_under_its_sha256() {
    let tmp = tempfile::tempdir().unwrap();
    let bytes = wasm::read(wasm::PASSTHROUGH).unwrap();
    let p = runtime_with_cache(tmp.path()).compile(&bytes).unwrap();
    let files = cache_files(tmp.path());
    assert_eq!(files.len(), 1);
    let name = files[0].file_name().unwrap().to_str().unwrap();
    assert!(name.starts_with(&p.digest().to_string()), "{name}");
}

#[test]
fn a_restarted_runtime_loads_the_cached_compilation() {
    let tmp = tempfile::tempdir().unwrap();
    let bytes = wasm::read(wasm::PASSTHROUGH).unwrap();
    runtime_with_cache(tmp.path()).compile(&bytes).unwrap();
    let before = std::fs::metadata(&cache_files(tmp.path())[0])
        .unwrap()
        .modified()
        .unwrap();
    let p = runtime_with_cache(tmp.path()).compile(&bytes).unwrap();
    assert_eq!(
        p.instantiate(&[])
            .unwrap()
            .process(&records([&b"x"[..]]))
            .unwrap()
            .len(),
        1
    );
    let after = std::fs::metadata(&cache_files(tmp.path())[0])
        .unwrap()
        .modified()
        .unwrap();
    assert_eq!(
        before, after,
        "the cache entry was rewritten, so it was not used"
    );
}

#[test]
fn a_damaged_cache_entry_is_recompiled_not_loaded() {
    let tmp = tempfile::tempdir().unwrap();
    let bytes = wasm::read(wasm::PASSTHROUGH).unwrap();
    runtime_with_cache(tmp.path()).compile(&bytes).unwrap();
    let file = cache_files(tmp.path()).remove(0);
    let mut artifact = std::fs::read(&file).unwrap();
    let middle = artifact.len() / 2;
    artifact[middle] ^= 0xff;
    std::fs::write(&file, &artifact).unwrap();
    let p = runtime_with_cache(tmp.path()).compile(&bytes).unwrap();
    assert_eq!(
        p.instantiate(&[])
            .unwrap()
            .process(&records([&b"x"[..]]))
            .unwrap()
            .len(),
        1
    );
    assert_ne!(
        std::fs::read(&file).unwrap(),
        artifact,
        "the damaged entry was replaced"
    );
}

#[test]
fn refused_components_are_not_cached() {
    let tmp = tempfile::tempdir().unwrap();
    let rt = runtime_with_cache(tmp.path());
    for plugin in [wasm::TEST_WRONG_WORLD, wasm::TEST_FOREIGN_IMPORT] {
        assert!(
            rt.compile(&wasm::read(plugin).unwrap()).is_err(),
            "{plugin}"
        );
    }
    assert_eq!(cache_files(tmp.path()), Vec::<std::path::PathBuf>::new());
}
