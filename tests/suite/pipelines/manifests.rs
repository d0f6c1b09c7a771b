//! `eddy pipeline apply` refuses bad manifests before anything changes,
//! naming the document, the field and its line:column.

use eddy_test_plugins as wasm;

use super::{Cluster, manifest};

/// A broker with topic `in` and processor `p`, and nothing else.
async fn setup() -> Cluster {
    let c = Cluster::start().await;
    c.create_topic("in", 2).await;
    c.upload("p", wasm::PASSTHROUGH);
    c
}

fn good() -> String {
    manifest("copy", "p", &["in"], &["out"], "at-least-once", "")
}

/// Nothing was created: no pipeline, no output topic.
fn assert_unchanged(c: &Cluster) {
    let pipelines = c.broker.ok(&["pipeline", "list"]);
    assert_eq!(pipelines.lines().count(), 1, "{pipelines}");
    let topics = c.broker.ok(&["topic", "list"]);
    assert!(!topics.contains("out"), "{topics}");
}

#[tokio::test]
async fn refusals_name_the_field_and_its_position() {
    let c = setup().await;
    let cases = [
        (
            good().replace("delivery: at-least-once", "delivery: exactly_once"),
            "document 1, spec.delivery (line 13, column 13): expected at-most-once, at-least-once or exactly-once, found exactly_once",
        ),
        (
            good().replace("    name: p\n", "    name: nope\n"),
            "document 1, spec.processor.name (line 9, column 11): processor \"nope\" does not exist; upload it with `eddy processor upload nope FILE.wasm`",
        ),
        (
            good().replace("    name: p\n", "    name: p\n    version: 7\n"),
            "document 1, spec.processor.version (line 10, column 14): processor \"p\" has no version 7; it has 1",
        ),
        (
            good().replace("topics: [in]", "topics: [in, missing]"),
            "document 1, spec.input.topics[1] (line 7, column 18): topic \"missing\" does not exist",
        ),
        (
            good().replace("- topic: out", "- topic: in"),
            "document 1, spec.outputs[0].topic (line 11, column 14): in is also an input topic",
        ),
        (
            format!("{}  limits: {{ memoryMiB: 0 }}\n", good()),
            "document 1, spec.limits.memoryMiB (line 15, column 24): expected an integer from 1 to 4096, found 0",
        ),
        (
            good().replace("maxRecords", "maxRecord"),
            "document 1, spec.batch (line 14, column 12): unknown field maxRecord; expected maxRecords or maxWaitMs",
        ),
    ];
    for (yaml, expected) in cases {
        let err = c.apply_refused(&yaml);
        assert!(
            err.contains(expected),
            "expected\n  {expected}\nin\n{err}\nfor\n{yaml}"
        );
    }
    assert_unchanged(&c);
}

#[tokio::test]
async fn one_bad_document_refuses_the_whole_file() {
    let c = setup().await;
    let second = manifest("other", "p", &["nope"], &["out2"], "exactly-once", "");
    let err = c.apply_refused(&format!("{}---\n{second}", good()));
    assert!(
        err.contains(
            "document 2, spec.input.topics[0] (line 22, column 14): topic \"nope\" does not exist"
        ),
        "{err}"
    );
    assert_unchanged(&c);
}

#[tokio::test]
async fn document_numbers_count_empty_documents_as_the_parser_does() {
    let c = setup().await;
    let bad = good()
        .replace("name: copy", "name: other")
        .replace("    name: p\n", "    name: nope\n");
    // The empty document between the two `---` is document 2.
    let err = c.apply_refused(&format!("{}---\n---\n{bad}", good()));
    assert!(
        err.contains("document 3, spec.processor.name (line 25, column 11)"),
        "{err}"
    );
}

#[tokio::test]
async fn applying_the_same_manifest_again_changes_nothing() {
    let c = setup().await;
    let created = c.apply(&good());
    assert!(created.contains("pipeline copy created: p@1"), "{created}");
    assert!(created.contains("created topic out"), "{created}");
    let again = c.apply(&good());
    assert!(again.contains("pipeline copy unchanged"), "{again}");
    let changed = c.apply(&good().replace("maxRecords: 64", "maxRecords: 32"));
    assert!(changed.contains("pipeline copy updated"), "{changed}");
    let stored = c.broker.ok(&["pipeline", "get", "copy"]);
    assert!(stored.contains("maxRecords: 32"), "{stored}");
    assert!(
        stored.contains("onError: stop"),
        "defaults are filled in: {stored}"
    );
    // What get prints applies as it is.
    let from_get = c.apply(&stored);
    assert!(from_get.contains("unchanged"), "{from_get}");
}
