//! The processor registry: what an upload stores, what it refuses, and
//! that a refusal or a cut-off upload leaves nothing behind.

use std::time::Duration;

use eddy_client::Admin;
use eddy_proto::v1 as pb;
use eddy_test_plugins as wasm;
use pb::processors_client::ProcessorsClient;

use super::{Cluster, manifest};

/// Records in `__processors` (0 if it does not exist yet).
async fn stored_records(c: &Cluster) -> u64 {
    match Admin::new(c.client.clone())
        .describe_topic("__processors")
        .await
    {
        Ok(t) => t.partitions.iter().map(|p| p.high_watermark).sum(),
        Err(_) => 0,
    }
}

async fn assert_nothing_stored(c: &Cluster) {
    let list = c.broker.ok(&["processor", "list"]);
    assert_eq!(list.lines().count(), 1, "only the header: {list}");
    assert_eq!(stored_records(c).await, 0);
}

#[tokio::test]
async fn an_upload_is_versioned_and_the_same_bytes_twice_are_one_version() {
    let c = Cluster::start().await;
    let first = c.upload("fence", wasm::GEOFENCE);
    assert!(
        first.starts_with("uploaded fence version 1 (sha256 "),
        "{first}"
    );
    let again = c.upload("fence", wasm::GEOFENCE);
    assert!(
        again.contains("fence version 1 already has these bytes; nothing changed"),
        "{again}"
    );
    let other = c.upload("fence", wasm::FILTER);
    assert!(other.starts_with("uploaded fence version 2"), "{other}");
    let described = c.broker.ok(&["processor", "describe", "fence"]);
    assert!(described.contains("versions 2"), "{described}");
    let sha = wasm_sha256(wasm::GEOFENCE);
    assert!(
        described.contains(&sha),
        "version 1 is the geofence's bytes: {described}"
    );
    let list = c.broker.ok(&["processor", "list"]);
    let row = list.lines().nth(1).unwrap();
    assert!(row.starts_with("fence") && row.contains(" 2 "), "{list}");
    // The bytes come back whole.
    let (v, bytes) = eddy_client::Processors::new(c.client.clone())
        .download("fence", 1)
        .await
        .unwrap();
    assert_eq!(v.sha256, sha);
    assert_eq!(&bytes[..], &std::fs::read(wasm::GEOFENCE).unwrap()[..]);
}

#[tokio::test]
async fn refused_components_name_the_problem_and_leave_nothing_behind() {
    let c = Cluster::start_with(&["--processor-bytes-max", "100000"]).await;
    let tmp = tempfile::tempdir().unwrap();
    let core_module = crate::write(tmp.path(), "core.wasm", "\0asm\u{1}\0\0\0");
    let empty = crate::write(tmp.path(), "empty.wasm", "");
    let cases = [
        (
            wasm::TEST_WRONG_WORLD,
            "does not implement the world eddy:processor/processor",
        ),
        (
            wasm::TEST_FOREIGN_IMPORT,
            "`acme:secrets/vault@0.1.0` (not an interface the Eddy host offers)",
        ),
        (core_module.as_str(), "not a valid WebAssembly component"),
        (empty.as_str(), "the component is empty"),
        (
            wasm::GEOFENCE,
            "larger than 100000 bytes, the registry's limit (processor_bytes_max)",
        ),
    ];
    for (file, expected) in cases {
        let out = c.broker.eddy(&["processor", "upload", "bad", file]);
        assert!(!out.success, "{file} was accepted");
        assert!(out.stderr.contains(expected), "{file}: {}", out.stderr);
    }
    let bad_name = c
        .broker
        .eddy(&["processor", "upload", "no/slash", wasm::PASSTHROUGH]);
    assert!(
        bad_name.stderr.contains("invalid processor name"),
        "{}",
        bad_name.stderr
    );
    assert_nothing_stored(&c).await;
}

#[tokio::test]
async fn an_upload_cut_off_mid_stream_leaves_nothing() {
    let c = Cluster::start().await;
    let chunk = || pb::UploadRequest {
        part: Some(pb::upload_request::Part::Chunk(bytes::Bytes::from(
            vec![0u8; 1000],
        ))),
    };
    let mut rpc = ProcessorsClient::new(c.client.bootstrap_channel());
    // The stream ends without its final message.
    let err = rpc
        .upload(tokio_stream::iter(vec![chunk(), chunk()]))
        .await
        .unwrap_err();
    assert!(
        err.message().contains("ended without its final message"),
        "{err}"
    );
    // The client goes away in the middle of the stream.
    let (tx, rx) = tokio::sync::mpsc::channel(4);
    tx.send(chunk()).await.unwrap();
    let mut rpc2 = rpc.clone();
    let call = tokio::spawn(async move {
        rpc2.upload(tokio_stream::wrappers::ReceiverStream::new(rx))
            .await
    });
    tokio::time::sleep(Duration::from_millis(300)).await;
    call.abort();
    drop(tx);
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_nothing_stored(&c).await;
    // The registry still works.
    assert!(
        c.upload("p", wasm::PASSTHROUGH)
            .starts_with("uploaded p version 1")
    );
}

#[tokio::test]
async fn delete_is_refused_while_a_pipeline_uses_the_version() {
    let c = Cluster::start().await;
    c.create_topic("in", 1).await;
    c.upload("p", wasm::PASSTHROUGH);
    c.upload("p", wasm::FILTER);
    let pinned = manifest("copy", "p", &["in"], &["out"], "at-least-once", "")
        .replace("    name: p\n", "    name: p\n    version: 1\n");
    c.apply(&pinned);
    let refused = c
        .broker
        .eddy(&["processor", "delete", "p", "--version", "1"]);
    assert!(!refused.success);
    assert!(
        refused.stderr.contains("used by pipeline \"copy\""),
        "{}",
        refused.stderr
    );
    let all = c.broker.eddy(&["processor", "delete", "p"]);
    assert!(
        all.stderr.contains("used by pipeline \"copy\""),
        "{}",
        all.stderr
    );
    // Version 2 is unused and goes.
    let deleted = c.broker.ok(&["processor", "delete", "p", "--version", "2"]);
    assert!(deleted.contains("deleted p version(s) 2"), "{deleted}");
    c.broker.ok(&["pipeline", "delete", "copy"]);
    c.broker.ok(&["processor", "delete", "p"]);
    let err = eddy_client::Processors::new(c.client.clone())
        .download("p", 1)
        .await
        .unwrap_err();
    assert!(err.to_string().contains("does not exist"), "{err}");
}

#[tokio::test]
async fn a_restarted_broker_does_not_compile_a_processor_again() {
    let mut c = Cluster::start().await;
    c.upload("p", wasm::PASSTHROUGH);
    let cache = c.broker.dir.join("processor-cache");
    let compiled = || -> Vec<(std::path::PathBuf, std::time::SystemTime)> {
        let mut files: Vec<_> = std::fs::read_dir(&cache)
            .unwrap()
            .map(|e| e.unwrap().path())
            .filter(|p| p.extension().is_some_and(|e| e == "cwasm"))
            .map(|p| {
                let modified = std::fs::metadata(&p).unwrap().modified().unwrap();
                (p, modified)
            })
            .collect();
        files.sort();
        files
    };
    let before = compiled();
    assert_eq!(before.len(), 1, "the upload compiled it once: {before:?}");
    c.broker.restart();
    c.reconnect().await;
    c.create_topic("in", 1).await;
    c.apply(&manifest(
        "copy",
        "p",
        &["in"],
        &["out"],
        "at-least-once",
        "",
    ));
    c.produce("in", &[(None, "x".into())]).await;
    c.caught_up("copy", 1).await;
    assert_eq!(
        compiled(),
        before,
        "the worker loaded the compiled artifact"
    );
}

fn wasm_sha256(path: &str) -> String {
    use sha2::Digest;
    let bytes = std::fs::read(path).unwrap();
    sha2::Sha256::digest(&bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}
