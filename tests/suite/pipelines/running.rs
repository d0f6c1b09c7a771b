//! Pipelines running real processors between topics.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use eddy_proto::v1 as pb;
use eddy_test_plugins as wasm;
use serde_json::Value;

use eddy_tests::worker::TestWorker;

use super::{Cluster, by_key, manifest, numbered, wait_for};

fn values(records: &[eddy_client::ConsumerRecord]) -> Vec<Value> {
    records
        .iter()
        .map(|r| serde_json::from_slice(r.value.as_deref().unwrap_or_default()).unwrap())
        .collect()
}

fn header<'a>(r: &'a eddy_client::ConsumerRecord, name: &str) -> &'a str {
    let (_, v) = r
        .headers
        .iter()
        .find(|(k, _)| k == name)
        .unwrap_or_else(|| panic!("no header {name}: {:?}", r.headers));
    std::str::from_utf8(v).unwrap()
}

#[tokio::test]
async fn a_filter_keeps_only_the_matching_records() {
    let c = Cluster::start().await;
    c.create_topic("in", 3).await;
    c.upload("filter", wasm::FILTER);
    let params = "  processor:\n    name: filter\n    params: { field: region, equals: north }\n";
    let yaml = manifest("north", "filter", &["in"], &["out"], "at-least-once", "")
        .replace("  processor:\n    name: filter\n", params);
    c.apply(&yaml);
    c.produce("in", &numbered(300, 10)).await;
    let d = c.caught_up("north", 300).await;
    let out = c.read_all("out").await;
    let kept: BTreeSet<i64> = values(&out)
        .iter()
        .map(|v| v["n"].as_i64().unwrap())
        .collect();
    assert_eq!(kept, (0..300).filter(|n| n % 3 == 0).collect());
    assert_eq!(out.len(), 100, "no duplicates");
    let counters = d.counters.unwrap();
    assert_eq!(counters.processor["records-dropped"], 200);
}

#[tokio::test]
async fn a_transform_reshapes_every_record_exactly_once_in_key_order() {
    let c = Cluster::start().await;
    c.create_topic("in", 4).await;
    c.upload("shape", wasm::TRANSFORM);
    let yaml = manifest("shape", "shape", &["in"], &["out"], "exactly-once", "").replace(
        "    name: shape\n",
        "    name: shape\n    params: { fields: \"n:number,key\" }\n",
    );
    c.apply(&yaml);
    let input = numbered(400, 7);
    c.produce("in", &input).await;
    c.caught_up("shape", 400).await;
    let got = by_key(&c.read_all("out").await);
    let mut expected: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for (i, (key, _)) in input.iter().enumerate() {
        let key = key.clone().unwrap();
        expected
            .entry(key.clone())
            .or_default()
            .push(format!("{{\"number\":{i},\"key\":\"{key}\"}}"));
    }
    assert_eq!(got, expected);
}

#[tokio::test]
async fn a_router_sends_records_to_several_outputs() {
    let c = Cluster::start().await;
    c.create_topic("in", 2).await;
    c.upload("router", wasm::ROUTER);
    let yaml = manifest(
        "route",
        "router",
        &["in"],
        &["r-north", "r-south", "r-east"],
        "at-least-once",
        // Limits above the defaults are the pipeline's to take.
        "  limits: { memoryMiB: 512, cpuMsPerBatch: 10000 }\n",
    )
    .replace(
        "    name: router\n",
        "    name: router\n    params: { field: region, prefix: r- }\n",
    );
    c.apply(&yaml);
    c.produce("in", &numbered(300, 5)).await;
    c.caught_up("route", 300).await;
    for (topic, rest) in [("r-north", 0), ("r-south", 1), ("r-east", 2)] {
        let out = c.read_all(topic).await;
        let ns: BTreeSet<i64> = values(&out)
            .iter()
            .map(|v| v["n"].as_i64().unwrap())
            .collect();
        assert_eq!(ns, (0..300).filter(|n| n % 3 == rest).collect(), "{topic}");
    }
}

/// Transform pipeline with `on_error`, fed 30 good records and 3 that are
/// not JSON (positions 10, 20 and 30 of one partition).
async fn with_bad_records(c: &Cluster, on_error: &str) {
    c.create_topic("in", 1).await;
    c.upload("shape", wasm::TRANSFORM);
    let yaml = manifest(
        "shape",
        "shape",
        &["in"],
        &["out"],
        "exactly-once",
        on_error,
    )
    .replace(
        "    name: shape\n",
        "    name: shape\n    params: { fields: n }\n",
    );
    c.apply(&yaml);
    let mut good = numbered(30, 3).into_iter();
    let input: Vec<_> = (0..33)
        .map(|at| match at {
            10 | 21 | 32 => (Some("bad".into()), format!("not json {at}")),
            _ => good.next().unwrap(),
        })
        .collect();
    c.produce("in", &input).await;
}

#[tokio::test]
async fn dead_letters_carry_the_error_and_where_the_record_came_from() {
    let c = Cluster::start().await;
    with_bad_records(&c, "  onError: { deadLetter: dlq }\n").await;
    let d = c.caught_up("shape", 33).await;
    assert_eq!(c.read_all("out").await.len(), 30);
    let dead = c.read_all("dlq").await;
    assert_eq!(dead.len(), 3);
    let in_topic = c.read_all("in").await;
    for r in &dead {
        assert!(r.value.as_deref().unwrap().starts_with(b"not json"));
        assert_eq!(header(r, "eddy.error.kind"), "record-error");
        assert!(
            header(r, "eddy.error.message").contains("not valid JSON"),
            "{:?}",
            r.headers
        );
        assert_eq!(header(r, "eddy.processor"), "shape@1");
        assert_eq!(header(r, "eddy.pipeline"), "shape");
        assert_eq!(header(r, "eddy.source.topic"), "in");
        assert_eq!(header(r, "eddy.source.partition"), "0");
        let offset: u64 = header(r, "eddy.source.offset").parse().unwrap();
        let source = &in_topic[offset as usize];
        assert_eq!(source.value, r.value, "the record is passed on unchanged");
        assert_eq!(source.key, r.key);
    }
    let counters = d.counters.unwrap();
    assert_eq!((counters.dead_lettered, counters.skipped), (3, 0));
    let last = d.last_error.unwrap();
    assert_eq!(last.kind, "record-error");
}

#[tokio::test]
async fn skip_counts_and_drops_failed_records() {
    let c = Cluster::start().await;
    with_bad_records(&c, "  onError: skip\n").await;
    let d = c.caught_up("shape", 33).await;
    let ns: BTreeSet<i64> = values(&c.read_all("out").await)
        .iter()
        .map(|v| v["n"].as_i64().unwrap())
        .collect();
    assert_eq!(ns, (0..30).collect());
    assert_eq!(d.counters.unwrap().skipped, 3);
}

#[tokio::test]
async fn stop_fails_the_pipeline_at_the_record_and_resume_retries_it() {
    let c = Cluster::start().await;
    c.create_topic("in", 1).await;
    c.upload("picky", wasm::TEST_PANIC);
    let yaml = manifest("picky", "picky", &["in"], &["out"], "at-least-once", "").replace(
        "    name: picky\n",
        "    name: picky\n    params: { when: boom }\n",
    );
    c.apply(&yaml);
    let mut input: Vec<(Option<String>, String)> =
        (0..10).map(|i| (None, format!("v{i}"))).collect();
    input.push((None, "boom".into()));
    input.extend((11..20).map(|i| (None, format!("v{i}"))));
    c.produce("in", &input).await;
    let d = c.in_state("picky", pb::PipelineState::Failed).await;
    let failure = d.summary.unwrap().failure.unwrap();
    assert_eq!(
        (failure.topic.as_str(), failure.partition, failure.offset),
        ("in", 0, 10)
    );
    assert_eq!(failure.kind, "panic");
    assert!(
        failure.message.contains("record at offset 10 is cursed"),
        "{failure:?}"
    );
    assert_eq!(
        d.partitions[0].committed,
        Some(10),
        "the position stays before it"
    );
    assert_eq!(c.read_all("out").await.len(), 10);
    // Resume retries the record, which fails again.
    let resumed = c.broker.ok(&["pipeline", "resume", "picky"]);
    assert!(resumed.contains("pipeline picky resumed"), "{resumed}");
    wait_for("the retry to fail again", || async {
        let s = c.describe("picky").await.summary.unwrap();
        let again = s
            .failure
            .filter(|f| f.at_ms > failure.at_ms && f.offset == 10);
        (s.state == pb::PipelineState::Failed as i32 && again.is_some()).then_some(())
    })
    .await;
    // With another policy it gets past the record.
    c.apply(&format!("{yaml}  onError: skip\n"));
    c.caught_up("picky", 20).await;
    // Counts arrive with the workers' next report.
    wait_for("the skip to be counted", || async {
        let counters = c.describe("picky").await.counters.unwrap();
        (counters.skipped == 1).then_some(())
    })
    .await;
    assert_eq!(c.read_all("out").await.len(), 19);
    let shown = c.broker.ok(&["pipeline", "describe", "picky"]);
    assert!(shown.contains("state running"), "{shown}");
}

#[tokio::test]
async fn pause_stops_consumption_and_resume_continues() {
    let c = Cluster::start().await;
    c.create_topic("in", 2).await;
    c.upload("p", wasm::PASSTHROUGH);
    c.apply(&manifest(
        "copy",
        "p",
        &["in"],
        &["out"],
        "exactly-once",
        "",
    ));
    c.produce("in", &numbered(50, 5)).await;
    c.caught_up("copy", 50).await;
    let paused = c.pause("copy").await;
    assert!(paused.contains("paused"), "{paused}");
    c.produce("in", &numbered(50, 5)).await;
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let d = c.describe("copy").await;
    assert_eq!(d.summary.unwrap().lag, 50, "nothing consumed while paused");
    assert_eq!(c.read_all("out").await.len(), 50);
    c.broker.ok(&["pipeline", "resume", "copy"]);
    c.caught_up("copy", 0).await;
    assert_eq!(c.read_all("out").await.len(), 100);
}

#[tokio::test]
async fn a_new_processor_version_takes_over_without_loss_or_duplicates() {
    let c = Cluster::start().await;
    c.create_topic("in", 3).await;
    c.upload("p", wasm::PASSTHROUGH);
    let yaml = manifest("evolve", "p", &["in"], &["out"], "exactly-once", "").replace(
        "    name: p\n",
        "    name: p\n    params: { fields: \"n,key\" }\n",
    );
    c.apply(&yaml);
    let input = numbered(3000, 11);
    let (first, second) = input.split_at(1500);
    c.produce("in", first).await;
    let feeding = {
        let client = c.client.clone();
        let rest = second.to_vec();
        tokio::spawn(async move {
            let producer = eddy_client::Producer::new(client, Default::default());
            for chunk in rest.chunks(100) {
                for (k, v) in chunk {
                    let r = eddy_client::ProducerRecord::key_value(k.clone().unwrap(), v.clone());
                    producer.send("in", r).await.unwrap();
                }
                producer.flush().await.unwrap();
                tokio::time::sleep(Duration::from_millis(40)).await;
            }
        })
    };
    // Version 2 (a transform) replaces the pass-through while records flow.
    c.upload("p", wasm::TRANSFORM);
    let updated = c.apply(&yaml);
    assert!(
        updated.contains("pipeline evolve updated: p@2"),
        "{updated}"
    );
    feeding.await.unwrap();
    c.caught_up("evolve", 0).await;
    let out = values(&c.read_all("out").await);
    let mut seen: BTreeMap<i64, usize> = BTreeMap::new();
    for v in &out {
        *seen.entry(v["n"].as_i64().unwrap()).or_default() += 1;
    }
    let twice: Vec<_> = seen.iter().filter(|(_, n)| **n > 1).collect();
    assert!(twice.is_empty(), "duplicates: {twice:?}");
    assert_eq!(seen.len(), 3000, "every input gave one output");
    let transformed = out.iter().filter(|v| v.get("region").is_none()).count();
    assert!(transformed > 0, "version 2 ran");
}

#[tokio::test]
async fn a_standalone_worker_shares_a_pipeline_with_the_brokers_worker() {
    let c = Cluster::start().await;
    c.create_topic("in", 6).await;
    c.upload("p", wasm::PASSTHROUGH);
    c.apply(&manifest(
        "shared",
        "p",
        &["in"],
        &["out"],
        "at-least-once",
        "",
    ));
    let _worker = TestWorker::start(&c.broker.addr, "w1");
    let owners = wait_for("both workers to own partitions", || async {
        let d = c.describe("shared").await;
        let owners: BTreeSet<String> = d.partitions.iter().map(|p| p.owner.clone()).collect();
        let both = owners.contains("broker-1") && owners.contains("w1") && owners.len() == 2;
        (both && d.workers.len() == 2).then_some(d)
    })
    .await;
    assert_eq!(owners.workers, ["broker-1", "w1"]);
    c.produce("in", &numbered(600, 13)).await;
    c.caught_up("shared", 600).await;
    assert_eq!(c.read_all("out").await.len(), 600);
}

#[test]
fn the_demo_runs_end_to_end_and_cleans_up() {
    let out = crate::eddy(&["demo", "--trucks", "100", "--positions", "10"]);
    let printed = crate::stdout(&out);
    assert!(out.status.success(), "{printed}\n{}", crate::stderr(&out));
    for step in [
        "2. created topic truck_gps with 10 partitions",
        "3. uploaded processor geofence version 1",
        "4. applied pipeline truck-alerts (geofence@1, exactly-once)",
        "5. produced 1003 records: 100 trucks × 10 positions, and 3 unreadable ones",
        "and 3 unreadable records went to truck_gps.dlq",
        "records in 1003",
        "dead-lettered 3",
        "the data directory is removed",
    ] {
        assert!(printed.contains(step), "{step:?} in\n{printed}");
    }
    let dir = printed
        .split("(data in ")
        .nth(1)
        .and_then(|rest| rest.split(')').next())
        .unwrap();
    assert!(!std::path::Path::new(dir).exists(), "{dir} was removed");
}

#[tokio::test]
async fn a_deleted_pipeline_applied_again_starts_over() {
    let c = Cluster::start().await;
    c.create_topic("in", 2).await;
    c.upload("p", wasm::PASSTHROUGH);
    let yaml = manifest("copy", "p", &["in"], &["out"], "exactly-once", "");
    c.apply(&yaml);
    c.produce("in", &numbered(40, 4)).await;
    c.caught_up("copy", 40).await;
    let deleted = c.broker.ok(&["pipeline", "delete", "copy"]);
    assert!(deleted.contains("deleted pipeline copy"), "{deleted}");
    let groups = c.broker.ok(&["group", "list"]);
    assert!(
        !groups.contains("pipeline.copy"),
        "the group went too: {groups}"
    );
    let listed = c.broker.ok(&["pipeline", "list"]);
    assert_eq!(listed.lines().count(), 1, "{listed}");
    // A new incarnation reads from the start again, with producers of its
    // own: its outputs are not taken for the old one's duplicates.
    c.apply(&yaml);
    c.caught_up("copy", 40).await;
    wait_for("the second incarnation's outputs", || async {
        (c.read_all("out").await.len() == 80).then_some(())
    })
    .await;
}

#[tokio::test]
async fn at_most_once_delivers_everything_when_nothing_fails() {
    let c = Cluster::start().await;
    c.create_topic("in", 3).await;
    c.upload("p", wasm::PASSTHROUGH);
    c.apply(&manifest(
        "copy",
        "p",
        &["in"],
        &["out"],
        "at-most-once",
        "",
    ));
    c.produce("in", &numbered(300, 9)).await;
    c.caught_up("copy", 300).await;
    let got = by_key(&c.read_all("out").await);
    assert_eq!(got, by_key(&c.read_all("in").await));
}

#[tokio::test]
async fn partitions_added_to_an_input_are_picked_up() {
    let mut c = Cluster::start().await;
    c.create_topic("in", 1).await;
    c.upload("p", wasm::PASSTHROUGH);
    c.apply(&manifest(
        "copy",
        "p",
        &["in"],
        &["out"],
        "exactly-once",
        "",
    ));
    c.produce("in", &numbered(10, 2)).await;
    c.caught_up("copy", 10).await;
    c.broker.ok(&["topic", "alter", "in", "--partitions", "3"]);
    // A fresh client, so the records spread over all three.
    c.reconnect().await;
    let records: Vec<_> = (0..30)
        .map(|i| (Some(format!("n{i}")), format!("v{i}")))
        .collect();
    c.produce("in", &records).await;
    let d = wait_for("the new partitions to be owned and drained", || async {
        let d = c.describe("copy").await;
        let owned = d.partitions.len() == 3 && d.partitions.iter().all(|p| !p.owner.is_empty());
        let drained = d.summary.as_ref().is_some_and(|s| s.lag == 0);
        (owned && drained).then_some(d)
    })
    .await;
    assert!(
        d.partitions.iter().all(|p| p.committed.is_some()),
        "{:?}",
        d.partitions
    );
    assert_eq!(c.read_all("out").await.len(), 40);
}

/// Retention can delete input a paused pipeline has not processed yet,
/// leaving its committed position before the log start. The pipeline goes
/// on from the log start (the deleted records are lost to it, as the
/// worker's log says) instead of failing at its position for ever.
#[tokio::test]
async fn a_pipeline_whose_position_retention_deleted_goes_on_from_the_log_start() {
    let c = Cluster::start_with(&["--retention-check-interval-ms", "200"]).await;
    eddy_client::Admin::new(c.client.clone())
        .create_topic(eddy_client::NewTopic {
            name: "in".into(),
            partitions: 1,
            configs: [("segment.bytes", "1024"), ("retention.bytes", "4096")]
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .into(),
            ..eddy_client::NewTopic::default()
        })
        .await
        .unwrap();
    c.upload("p", wasm::PASSTHROUGH);
    c.apply(&manifest(
        "copy",
        "p",
        &["in"],
        &["out"],
        "exactly-once",
        "",
    ));
    c.produce("in", &numbered(10, 5)).await;
    c.caught_up("copy", 10).await;
    c.pause("copy").await;
    // Two more segments' worth: retention deletes the first two.
    c.produce("in", &numbered(200, 5)).await;
    c.produce("in", &numbered(200, 5)).await;
    let consumer = eddy_client::Consumer::new(c.client.clone(), Default::default());
    let start = wait_for("retention to pass the committed position", || async {
        let start = consumer
            .resolve("in", 0, eddy_client::Start::Earliest)
            .await
            .unwrap();
        (start > 10).then_some(start)
    })
    .await;
    c.broker.ok(&["pipeline", "resume", "copy"]);
    c.caught_up("copy", 0).await;
    let out = c.read_all("out").await;
    assert_eq!(out.len() as u64, 10 + (410 - start), "{start}");
}
