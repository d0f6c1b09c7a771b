//! Stateful pipelines: `running-count` keeps a count per key in the host's
//! keyed state, so under exactly-once the outputs for key K are exactly
//! "1", "2", … n in order — whatever is killed on the way. The state is
//! restored from the changelog (`count.state`) after every kill; a restore
//! that read past the commit, or not far enough, shows as a repeated or
//! skipped count. Each test prints its seed; `EDDY_TEST_SEED=S` replays one.

use std::collections::BTreeMap;

use eddy_test_plugins as wasm;
use eddy_tests::rng::Rng;
use eddy_tests::worker::TestWorker;

use super::workload::{feed, input};
use super::{Cluster, by_key, manifest, read_all, wait_for};

const RECORDS: usize = 30_000;
/// How many times a worker or the broker is killed in a run.
const KILLS: usize = 4;

/// The running count from `in` (4 partitions) to `counts`, exactly-once.
pub fn count_manifest() -> String {
    manifest(
        "count",
        "count",
        &["in"],
        &["counts"],
        "exactly-once",
        "  state:\n    enabled: true\n",
    )
    .replace(
        "maxRecords: 64, maxWaitMs: 5",
        "maxRecords: 256, maxWaitMs: 5",
    )
}

async fn setup(broker_args: &[&str]) -> Cluster {
    let c = Cluster::start_with(broker_args).await;
    c.create_topic("in", 4).await;
    c.upload("count", wasm::RUNNING_COUNT);
    c.apply(&count_manifest());
    c
}

/// Sends one record to `in` and returns the error the `count` pipeline
/// stops at (it has `onError: stop`).
async fn first_record_fails(c: &Cluster) -> eddy_proto::v1::PipelineError {
    c.produce("in", &[(Some("k".into()), "v".into())]).await;
    let d = c
        .in_state("count", eddy_proto::v1::PipelineState::Failed)
        .await;
    d.summary.and_then(|s| s.failure).unwrap()
}

/// Waits until the pipeline has read `records` input records and
/// committed them.
async fn caught_up(c: &Cluster, records: usize) {
    wait_for("the count pipeline to catch up", || async {
        let d = eddy_client::Pipelines::new(c.client.clone())
            .describe("count")
            .await
            .ok()?;
        let committed: u64 = d.partitions.iter().filter_map(|p| p.committed).sum();
        (d.summary?.lag == 0 && committed == records as u64).then_some(())
    })
    .await;
}

/// The counts each key must have got: "1" to its number of inputs.
fn expected_counts(records: usize) -> BTreeMap<String, Vec<String>> {
    let mut per_key: BTreeMap<String, usize> = BTreeMap::new();
    for n in 0..records {
        *per_key.entry(input(n).0).or_default() += 1;
    }
    per_key
        .into_iter()
        .map(|(k, n)| (k, (1..=n).map(|i| i.to_string()).collect()))
        .collect()
}

/// Every key's outputs are exactly 1..n in order for inputs `0..records`:
/// no count repeated (a change applied twice, or an output written
/// twice), none skipped.
pub async fn assert_counts_exact(c: &Cluster, records: usize, what: &str, seed: u64) {
    let got = by_key(&read_all(&c.client, "counts").await);
    let expected = expected_counts(records);
    let wrong: Vec<(&String, usize, usize)> = expected
        .iter()
        .filter(|(k, v)| got.get(*k) != Some(v))
        .map(|(k, v)| (k, v.len(), got.get(k).map_or(0, Vec::len)))
        .collect();
    if let Some((key, want, have)) = wrong.first() {
        let values = &got[*key];
        let first_bad = values
            .iter()
            .enumerate()
            .find(|(i, v)| **v != (i + 1).to_string());
        eprintln!(
            "{what}: {} of {} keys wrong; key {key} has {have} outputs (want {want}), first out of order: {first_bad:?}",
            wrong.len(),
            expected.len()
        );
    }
    assert!(
        wrong.is_empty(),
        "{what}: counts are not exact (seed {seed})"
    );
    assert_eq!(
        got.len(),
        expected.len(),
        "{what}: keys that should not be there"
    );
    eprintln!(
        "{what}: {} keys, every one counted 1..n in order",
        got.len()
    );
}

/// Kills (`kill -9`, then starts again) or pauses past its session
/// timeout one of `workers`, `KILLS` times at seeded points while records
/// flow.
async fn kill_and_pause(rng: &mut Rng, workers: &mut [TestWorker]) {
    for _ in 0..KILLS {
        tokio::time::sleep(rng.millis(800, 2000)).await;
        let w = &mut workers[rng.below(workers.len() as u64) as usize];
        if rng.below(2) == 0 {
            w.kill9();
            eprintln!("killed a worker");
            tokio::time::sleep(rng.millis(50, 700)).await;
            tokio::task::block_in_place(|| w.start_again());
        } else {
            // Past its session timeout its partitions move, and their
            // state with them; when it wakes it must not write its
            // batches in flight, changes or outputs, a second time.
            w.pause();
            eprintln!("paused a worker");
            tokio::time::sleep(rng.millis(2000, 4000)).await;
            w.unpause();
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn running_count_stays_exact_through_workers_killed_and_paused() {
    let mut rng = Rng::from_env("running_count_stays_exact_through_workers_killed_and_paused");
    let c = setup(&["--no-worker"]).await;
    let mut workers = [
        TestWorker::start(&c.broker.addr, "w1"),
        TestWorker::start(&c.broker.addr, "w2"),
    ];
    let feeding = feed(&c.client, RECORDS);
    kill_and_pause(&mut rng, &mut workers).await;
    feeding.await.unwrap();
    caught_up(&c, RECORDS).await;
    assert_counts_exact(&c, RECORDS, "running count, two workers", rng.seed()).await;
    // Reports come every few hundred milliseconds; one from a worker that
    // has since lost its partitions must not count their state twice.
    let counters = wait_for("describe to show the 97 keys held", || async {
        let counters = c.describe("count").await.counters.unwrap_or_default();
        (counters.state_keys == 97).then_some(counters)
    })
    .await;
    // Keys k0..k96 (2 or 3 bytes, stored behind a namespace byte), values
    // of 8 bytes.
    assert_eq!(counters.state_bytes, 97 * (1 + 3 + 8) - 10, "{counters:?}");
}

/// Feeds `records` input records while the broker is killed `kills` times
/// and started again, then waits until the count pipeline caught up.
pub async fn feed_through_broker_kills(
    c: &mut Cluster,
    rng: &mut Rng,
    records: usize,
    kills: usize,
) {
    let feeding = feed(&c.client, records);
    for _ in 0..kills {
        tokio::time::sleep(rng.millis(800, 2000)).await;
        c.broker.kill9();
        eprintln!("killed the broker");
        tokio::time::sleep(rng.millis(50, 500)).await;
        tokio::task::block_in_place(|| c.broker.start_again());
    }
    feeding.await.unwrap();
    c.reconnect().await;
    caught_up(c, records).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn running_count_stays_exact_through_broker_kills() {
    let mut rng = Rng::from_env("running_count_stays_exact_through_broker_kills");
    let mut c = setup(&[]).await;
    feed_through_broker_kills(&mut c, &mut rng, RECORDS, KILLS).await;
    assert_counts_exact(&c, RECORDS, "running count, broker killed", rng.seed()).await;
}

/// The changelog holds, per key, the count of the last output: what a
/// restore rebuilds is the state of the run, and after compaction only
/// the newest value per key need be read.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_changelog_holds_the_state_the_outputs_were_made_from() {
    let c = setup(&[]).await;
    let records: Vec<(Option<String>, String)> = (0..2_000)
        .map(|n| {
            let (k, v) = input(n);
            (Some(k), v)
        })
        .collect();
    c.produce("in", &records).await;
    wait_for("the count pipeline to read 2,000 records", || async {
        let d = c.describe("count").await;
        let committed: u64 = d.partitions.iter().filter_map(|p| p.committed).sum();
        (committed == 2_000).then_some(())
    })
    .await;
    // Commit markers (after every 256 changes of a partition) say how many
    // changes were committed when they were sent, for the cleaner.
    let (markers, changelog): (Vec<_>, Vec<_>) = read_all(&c.client, "count.state")
        .await
        .into_iter()
        .partition(|r| r.key.as_deref().is_some_and(|k| k[0] == 0xFF));
    assert_eq!(changelog.len(), 2_000, "one change per put, none merged");
    let mut per_partition = [0usize; 4];
    for r in &changelog {
        per_partition[r.partition as usize] += 1;
    }
    let expected_markers: usize = per_partition.iter().map(|n| n / 256).sum();
    assert_eq!(markers.len(), expected_markers, "{per_partition:?}");
    for m in &markers {
        let count = m
            .headers
            .iter()
            .find(|(name, _)| name == "eddy.committed")
            .map(|(_, v)| u64::from_be_bytes(v[..].try_into().unwrap()))
            .expect("a marker carries its count");
        assert!(
            count <= per_partition[m.partition as usize] as u64,
            "a marker vouches only for changes made"
        );
    }
    let mut newest: BTreeMap<String, u64> = BTreeMap::new();
    for r in &changelog {
        assert!(
            r.headers
                .iter()
                .any(|(name, v)| name == "eddy.change" && v.len() == 8),
            "each change carries its number"
        );
        let value: [u8; 8] = r.value.as_deref().unwrap().try_into().unwrap();
        // Stored keys start with a namespace byte: 0 for the processor's.
        let key = r.key.clone().unwrap();
        assert_eq!(key[0], 0, "a processor's key");
        newest.insert(
            String::from_utf8(key[1..].to_vec()).unwrap(),
            u64::from_be_bytes(value),
        );
    }
    let outputs = by_key(&read_all(&c.client, "counts").await);
    for (key, counts) in &outputs {
        assert_eq!(
            newest[key].to_string(),
            *counts.last().unwrap(),
            "key {key}: the state holds the last count output"
        );
    }
    let topic = eddy_client::Admin::new(c.client.clone())
        .describe_topic("count.state")
        .await
        .unwrap();
    assert_eq!(topic.partitions.len(), 4, "partitioned like the input");
    assert_eq!(
        topic.configs.get("cleanup.policy").map(String::as_str),
        Some("compact")
    );
    assert_eq!(
        topic.configs.get("eddy.changelog").map(String::as_str),
        Some("true"),
        "compacted only up to the commit markers"
    );
    // Deleting the pipeline deletes its state: applied again, it starts
    // from nothing (and from the start of the input).
    c.broker.ok(&["pipeline", "delete", "count"]);
    wait_for("the changelog to go", || async {
        eddy_client::Admin::new(c.client.clone())
            .describe_topic("count.state")
            .await
            .is_err()
            .then_some(())
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn state_needs_exactly_once_one_input_and_cannot_be_switched_on_later() {
    let c = Cluster::start().await;
    c.create_topic("in", 2).await;
    c.create_topic("in2", 2).await;
    c.upload("count", wasm::RUNNING_COUNT);
    let at_least_once = count_manifest().replace("exactly-once", "at-least-once");
    let err = c.apply_refused(&at_least_once);
    assert!(err.contains("needs `delivery: exactly-once`"), "{err}");
    let two_inputs = count_manifest().replace("topics: [in]", "topics: [in, in2]");
    let err = c.apply_refused(&two_inputs);
    assert!(err.contains("exactly one input topic"), "{err}");

    let stateless = count_manifest().replace("  state:\n    enabled: true\n", "");
    c.apply(&stateless);
    let err = c.apply_refused(&count_manifest());
    assert!(err.contains("cannot be changed to run with it"), "{err}");

    // Without state, the processor's first state call fails the record
    // with a message saying what to declare; onError: stop stops there.
    let failure = first_record_fails(&c).await;
    assert!(
        failure.message.contains("state: {enabled: true}"),
        "{failure:?}"
    );
}

/// `spec.state.ttlMs`: a key expires once the watermark passes its last
/// write plus the TTL. `plugins/dedup` is told to remember ids for an hour,
/// but its state keeps them two seconds of event time: an id seen again
/// after that is forwarded again. A processor that does not advance after
/// every record is refused with what to do, and the TTL cannot be switched
/// off for state kept with it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keys_expire_a_ttl_after_their_last_write() {
    let c = Cluster::start().await;
    c.create_topic("ids", 1).await;
    c.upload("dedup", wasm::DEDUP);
    let dedup = manifest(
        "dedup",
        "dedup",
        &["ids"],
        &["unique"],
        "exactly-once",
        "  state:\n    enabled: true\n    ttlMs: 2000\n",
    )
    .replace(
        "    name: dedup\n",
        "    name: dedup\n    params: { ttl_ms: \"3600000\" }\n",
    );
    c.apply(&dedup);
    let t0 = 1_800_000_000_000_i64;
    let ids: Vec<_> = [
        ("a", 0),
        ("a", 100),
        ("z", 5_000),
        ("a", 5_100),
        ("a", 5_200),
    ]
    .into_iter()
    .map(|(id, at)| (Some(id.to_owned()), format!("{id}@{at}"), Some(t0 + at)))
    .collect();
    c.produce_at("ids", &ids).await;
    let forwarded = wait_for("dedup to forward three records", || async {
        let out = read_all(&c.client, "unique").await;
        (out.len() >= 3).then_some(out)
    })
    .await;
    // Read by output partition: sorted to compare.
    let mut values: Vec<String> = forwarded
        .iter()
        .map(|r| String::from_utf8(r.value.as_deref().unwrap().to_vec()).unwrap())
        .collect();
    values.sort();
    assert_eq!(values, ["a@0", "a@5100", "z@5000"], "a expired at 2000");

    let err = c.apply_refused(&dedup.replace("    ttlMs: 2000\n", ""));
    assert!(err.contains("cannot switch ttlMs off"), "{err}");

    // running-count moves no event time: with a TTL its records fail,
    // saying what the processor must do.
    c.create_topic("in", 1).await;
    c.upload("count", wasm::RUNNING_COUNT);
    c.apply(&count_manifest().replace(
        "  state:\n    enabled: true\n",
        "  state:\n    enabled: true\n    ttlMs: 1000\n",
    ));
    let failure = first_record_fails(&c).await;
    assert!(
        failure
            .message
            .contains("must call timers.advance after every record"),
        "{failure:?}"
    );
}

/// Window counts (`plugins/window-count`, 1-second tumbling windows by
/// the producer's timestamps) through workers killed and paused: every
/// (key, window) is emitted exactly once with exactly the count of the
/// input records in it. Timers live in the state, so a restore must bring
/// back the open windows and their timers as of the commit. No record
/// comes after the last windows: they close because the input goes quiet
/// (`spec.eventTime.idleTimeoutMs`), while a worker is killed again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn window_counts_are_exact_and_each_window_closes_once_through_worker_kills() {
    let mut rng =
        Rng::from_env("window_counts_are_exact_and_each_window_closes_once_through_worker_kills");
    let c = Cluster::start_with(&["--no-worker"]).await;
    c.create_topic("in", 4).await;
    c.upload("windows", wasm::WINDOW_COUNT);
    c.apply(
        &manifest(
            "windows",
            "windows",
            &["in"],
            &["counts"],
            "exactly-once",
            "  state:\n    enabled: true\n  eventTime:\n    idleTimeoutMs: 1500\n",
        )
        .replace(
            "    name: windows\n",
            "    name: windows\n    params: { window_ms: \"1000\" }\n",
        ),
    );
    let mut workers = [
        TestWorker::start(&c.broker.addr, "w1"),
        TestWorker::start(&c.broker.addr, "w2"),
    ];
    let feeding = feed(&c.client, RECORDS);
    kill_and_pause(&mut rng, &mut workers).await;
    feeding.await.unwrap();
    wait_for("the window pipeline to catch up", || async {
        let d = c.describe("windows").await;
        let committed: u64 = d.partitions.iter().filter_map(|p| p.committed).sum();
        (committed == RECORDS as u64).then_some(())
    })
    .await;
    // Killed while the quiet partitions' windows close.
    tokio::time::sleep(rng.millis(0, 3000)).await;
    let victim = &mut workers[rng.below(2) as usize];
    victim.kill9();
    tokio::task::block_in_place(|| victim.start_again());

    let mut expected: BTreeMap<(String, i64), u64> = BTreeMap::new();
    for r in read_all(&c.client, "in").await {
        let key = String::from_utf8(r.key.unwrap().to_vec()).unwrap();
        let start = r.timestamp_ms.div_euclid(1000) * 1000;
        *expected.entry((key, start)).or_default() += 1;
    }
    wait_for("every window to close", || async {
        (read_all(&c.client, "counts").await.len() >= expected.len()).then_some(())
    })
    .await;
    // Counters come from the workers' reports: the restarted worker's
    // tasks show theirs after its first report, not at once.
    wait_for("describe to show the tasks' watermarks", || async {
        let counters = c.describe("windows").await.counters.unwrap_or_default();
        counters.watermark_low.is_some_and(|w| w > 0).then_some(())
    })
    .await;
    // A moment for a window emitted twice to show.
    tokio::time::sleep(std::time::Duration::from_secs(2)).await;
    let mut got: BTreeMap<(String, i64), u64> = BTreeMap::new();
    let mut twice = Vec::new();
    for r in read_all(&c.client, "counts").await {
        let v: serde_json::Value = serde_json::from_slice(r.value.as_deref().unwrap()).unwrap();
        let window = (
            v["key"].as_str().unwrap().to_owned(),
            v["start"].as_i64().unwrap(),
        );
        if got
            .insert(window.clone(), v["count"].as_u64().unwrap())
            .is_some()
        {
            twice.push(window);
        }
    }
    assert!(
        twice.is_empty(),
        "windows emitted twice (seed {}): {:?}",
        rng.seed(),
        &twice[..twice.len().min(5)]
    );
    let wrong: Vec<_> = expected
        .iter()
        .filter(|(w, n)| got.get(*w) != Some(n))
        .take(5)
        .collect();
    assert!(
        wrong.is_empty() && got.len() == expected.len(),
        "{} windows expected, {} emitted; wrong: {wrong:?} (seed {})",
        expected.len(),
        got.len(),
        rng.seed()
    );
    eprintln!(
        "{} windows, each emitted once with its exact count",
        got.len()
    );
}

/// What `examples/truck-gps/README.md` section 7 does: the geofence's
/// alerts counted per truck per five minutes, by the example manifests,
/// with the example positions, through the command line.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_truck_gps_example_counts_alerts_per_truck_per_five_minutes() {
    let c = Cluster::start().await;
    let example = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/truck-gps");
    let file = |name: &str| std::fs::read(example.join(name)).unwrap();
    let b = &c.broker;
    b.ok(&["topic", "create", "truck_gps", "-p", "10"]);
    b.ok(&["processor", "upload", "geofence", wasm::GEOFENCE]);
    b.ok(&["processor", "upload", "window-count", wasm::WINDOW_COUNT]);
    c.apply(&String::from_utf8(file("pipeline.yaml")).unwrap());
    let applied = c.apply(&String::from_utf8(file("alerts-per-window.yaml")).unwrap());
    assert!(
        applied.contains(
            "pipeline alerts-per-window created: window-count@1\n  created topic alerts-per-window.state\n  created topic truck_alert_counts\n"
        ),
        "{applied}"
    );
    let produce = ["produce", "truck_gps", "--key-separator", ":"];
    b.ok_with_input(&produce, &file("positions.txt"));
    b.ok_with_input(&produce, &file("positions-later.txt"));
    let out = b.ok(&[
        "consume",
        "truck_alert_counts",
        "-B",
        "-n",
        "3",
        "--print-key",
        "--key-separator",
        " ",
        "--idle-timeout-ms",
        "30000",
    ]);
    let mut lines: Vec<&str> = out.lines().collect();
    lines.sort_unstable();
    assert_eq!(
        lines,
        [
            r#"truck-002 {"key":"truck-002","start":1767225600000,"end":1767225900000,"count":2}"#,
            r#"truck-004 {"key":"truck-004","start":1767225600000,"end":1767225900000,"count":1}"#,
            r#"truck-005 {"key":"truck-005","start":1767225600000,"end":1767225900000,"count":1}"#,
        ]
    );
    // The later alerts' windows are open: an aggregate and a timer each.
    wait_for("describe to show the open windows", || async {
        let d = c.describe("alerts-per-window").await;
        (d.counters.unwrap_or_default().state_keys == 6).then_some(())
    })
    .await;
}

/// A running count whose state outgrows its 1 MiB memory budget moves to
/// disk (redb in the worker's state directory), and stays exact when its
/// worker is killed: the next owner rebuilds the state from the changelog.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn state_past_its_memory_budget_spills_to_disk_and_stays_exact() {
    const KEYS: usize = 40_000;
    let c = Cluster::start_with(&["--no-worker"]).await;
    c.create_topic("in", 2).await;
    c.upload("count", wasm::RUNNING_COUNT);
    c.apply(&(count_manifest() + "  limits: { stateMiB: 1 }\n"));
    let mut worker = TestWorker::start(&c.broker.addr, "w1");
    // Every key twice; with its 50-byte key an entry takes some 60 bytes,
    // so each of the two tasks holds over 1 MiB.
    let key = |n: usize| format!("key-{:06}-{}", n % KEYS, "x".repeat(40));
    let producer = eddy_client::Producer::new(c.client.clone(), Default::default());
    for n in 0..2 * KEYS {
        producer
            .send("in", eddy_client::ProducerRecord::key_value(key(n), "v"))
            .await
            .unwrap();
        if n == KEYS + KEYS / 2 {
            producer.flush().await.unwrap();
            wait_for("the state to spill", || async {
                let c = c.describe("count").await.counters.unwrap_or_default();
                (c.state_tasks_on_disk == 2).then_some(())
            })
            .await;
            worker.kill9();
            tokio::task::block_in_place(|| worker.start_again());
        }
    }
    producer.flush().await.unwrap();
    wait_for("the count pipeline to catch up", || async {
        let d = c.describe("count").await;
        let committed: u64 = d.partitions.iter().filter_map(|p| p.committed).sum();
        (committed == 2 * KEYS as u64).then_some(())
    })
    .await;
    let got = by_key(&read_all(&c.client, "counts").await);
    assert_eq!(got.len(), KEYS);
    let wrong: Vec<_> = got
        .iter()
        .filter(|(_, counts)| **counts != ["1", "2"])
        .take(3)
        .collect();
    assert!(wrong.is_empty(), "counts not 1, 2: {wrong:?}");
    // The rebuilt state is on disk again, every key counted twice.
    let counters = wait_for("the rebuilt state to be reported", || async {
        let c = c.describe("count").await.counters.unwrap_or_default();
        (c.state_keys == KEYS as u64 && c.state_tasks_on_disk == 2).then_some(c)
    })
    .await;
    assert!(counters.state_bytes > 2 << 20, "{counters:?}");
}
