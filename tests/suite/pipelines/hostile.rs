//! Hostile processors in pipelines: each is contained by its on-error
//! policy while a healthy pipeline on the same broker keeps running.

use eddy_test_plugins as wasm;

use super::{Cluster, manifest, wait_for};

/// A pipeline `name` running `processor` on `in` with extra spec lines.
fn hostile(name: &str, processor: &str, extra: &str) -> String {
    manifest(
        name,
        processor,
        &["in"],
        &[&format!("{name}-out")],
        "at-least-once",
        extra,
    )
}

#[tokio::test]
async fn loops_memory_bombs_and_panics_are_contained_beside_a_healthy_pipeline() {
    let c = Cluster::start().await;
    c.create_topic("in", 2).await;
    for (name, file) in [
        ("loop", wasm::TEST_LOOP),
        ("bomb", wasm::TEST_MEMORY_BOMB),
        ("panic", wasm::TEST_PANIC),
        ("copy", wasm::PASSTHROUGH),
    ] {
        c.upload(name, file);
    }
    c.apply(&hostile(
        "loop",
        "loop",
        "  limits: { cpuMsPerBatch: 20 }\n  onError: skip\n",
    ));
    c.apply(&hostile(
        "bomb",
        "bomb",
        "  limits: { memoryMiB: 16 }\n  onError: { deadLetter: bomb-dlq }\n",
    ));
    c.apply(&hostile("panic", "panic", "  onError: skip\n"));
    c.apply(&manifest(
        "healthy",
        "copy",
        &["in"],
        &["healthy-out"],
        "exactly-once",
        "",
    ));
    let records: Vec<(Option<String>, String)> = (0..20)
        .map(|i| (Some(format!("k{i}")), format!("v{i}")))
        .collect();
    c.produce("in", &records).await;

    c.caught_up("healthy", 20).await;
    assert_eq!(c.read_all("healthy-out").await.len(), 20);
    for (name, kind) in [
        ("loop", "timeout"),
        ("bomb", "out-of-memory"),
        ("panic", "panic"),
    ] {
        let d = c.caught_up(name, 20).await;
        let counters = d.counters.clone().unwrap();
        assert_eq!(
            counters.skipped + counters.dead_lettered,
            20,
            "{name}: {counters:?}"
        );
        assert_eq!(d.last_error.unwrap().kind, kind, "{name}");
    }
    let dead = c.read_all("bomb-dlq").await;
    assert_eq!(dead.len(), 20);
    assert!(dead.iter().all(|r| {
        r.headers
            .iter()
            .any(|(k, v)| k == "eddy.error.kind" && v.as_ref() == b"out-of-memory")
    }));
    // The broker and the healthy pipeline are still fine.
    c.produce("in", &records).await;
    wait_for("the healthy pipeline to take the next records", || async {
        let d = c.describe("healthy").await;
        (d.counters.unwrap_or_default().records_in >= 40).then_some(())
    })
    .await;
    assert_eq!(c.read_all("healthy-out").await.len(), 40);
}
