//! Pipelines on a cluster: an exactly-once pipeline keeps
//! `output == f(input)` while the brokers running its tasks are killed
//! with `kill -9` (prints its seed; `EDDY_TEST_SEED=S` replays it), a
//! standalone worker outlives the broker it reached first, and a manifest
//! applied at a lagging broker sees a processor uploaded at another.

use eddy_client::{Client, ClientConfig, Pipelines};
use eddy_test_plugins as wasm;
use eddy_tests::worker::TestWorker;

use super::harness::TestCluster;
use crate::pipelines::wait_for;
use crate::pipelines::workload::{assert_exactly_once, committed, feed, shape_manifest};
use eddy_tests::rng::Rng;

const RECORDS: usize = 60_000;
const BROKERS: i32 = 3;
/// How many times a broker is killed in a run.
const KILLS: usize = 3;

/// The broker whose worker owns a randomly chosen input partition (a
/// random broker while none is assigned).
async fn task_host(client: &Client, rng: &mut Rng) -> i32 {
    let owners: Vec<i32> = match Pipelines::new(client.clone()).describe("shape").await {
        Ok(d) => d
            .partitions
            .iter()
            .filter_map(|p| p.owner.strip_prefix("broker-")?.parse().ok())
            .collect(),
        Err(_) => Vec::new(),
    };
    if owners.is_empty() {
        1 + rng.below(BROKERS as u64) as i32
    } else {
        owners[rng.below(owners.len() as u64) as usize]
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exactly_once_holds_while_the_brokers_running_its_tasks_are_killed() {
    let mut rng =
        Rng::from_env("exactly_once_holds_while_the_brokers_running_its_tasks_are_killed");
    let mut cluster = tokio::task::block_in_place(|| {
        let cluster =
            TestCluster::start(BROKERS as usize, &["--broker-session-timeout-ms", "2000"]);
        cluster.ok_at(1, &["topic", "create", "in", "-p", "4", "-r", "3"]);
        cluster.ok_at(1, &["processor", "upload", "shape", wasm::TRANSFORM]);
        let yaml = shape_manifest("exactly-once", "      replicationFactor: 3\n");
        cluster.ok_with_input(&["pipeline", "apply", "-f", "-"], yaml.as_bytes());
        cluster
    });
    let client = Client::connect(ClientConfig::new(cluster.bootstrap()))
        .await
        .unwrap();
    let feeding = feed(&client, RECORDS);
    let mut at = 0;
    for _ in 0..KILLS {
        // Each kill lands on a pipeline that has been making progress.
        at = wait_for("the pipeline to commit more input", || async {
            let now = committed(&client).await;
            (now > at).then_some(now)
        })
        .await;
        tokio::time::sleep(rng.millis(200, 1500)).await;
        let victim = task_host(&client, &mut rng).await;
        tokio::task::block_in_place(|| cluster.kill9(victim));
        eprintln!("killed broker {victim} with {at} of {RECORDS} records committed");
        tokio::time::sleep(rng.millis(300, 2000)).await;
        tokio::task::block_in_place(|| cluster.start_again(victim));
    }
    feeding.await.unwrap();
    wait_for("the pipeline to take every record", || async {
        let d = Pipelines::new(client.clone())
            .describe("shape")
            .await
            .ok()?;
        let done: u64 = d.partitions.iter().filter_map(|p| p.committed).sum();
        (done == RECORDS as u64).then_some(())
    })
    .await;
    // Exactly-once commits a position only once its outputs are
    // acknowledged by every in-sync replica, so they are all readable now.
    assert_exactly_once(&client, RECORDS, "exactly-once on a cluster", rng.seed()).await;
}

/// A worker watches the pipeline definitions and downloads processors at
/// whichever broker answers: one whose first broker died still runs the
/// pipelines applied afterwards.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_worker_whose_first_broker_died_runs_the_pipelines_applied_after() {
    const FED: usize = 2_000;
    let mut cluster = tokio::task::block_in_place(|| {
        let cluster = TestCluster::start(
            BROKERS as usize,
            &["--broker-session-timeout-ms", "2000", "--no-worker"],
        );
        cluster.ok_at(1, &["topic", "create", "in", "-p", "2", "-r", "3"]);
        // Made while all three brokers live: once broker 1 is fenced (2 s
        // after its kill, which a slow apply can outlast) a topic of three
        // replicas is rightly refused.
        cluster.ok_at(1, &["topic", "create", "out", "-p", "3", "-r", "3"]);
        cluster.ok_at(1, &["processor", "upload", "shape", wasm::TRANSFORM]);
        cluster
    });
    // Broker 1 heads the bootstrap list, so the worker reaches it first.
    let _worker = TestWorker::start(&cluster.bootstrap(), "w1");
    tokio::task::block_in_place(|| {
        cluster.kill9(1);
        let yaml = shape_manifest("exactly-once", "");
        cluster.ok_with_input(&["pipeline", "apply", "-f", "-"], yaml.as_bytes());
    });
    let client = Client::connect(ClientConfig::new(cluster.bootstrap()))
        .await
        .unwrap();
    feed(&client, FED).await.unwrap();
    wait_for("the worker to take every record", || async {
        (committed(&client).await == FED as u64).then_some(())
    })
    .await;
    let d = Pipelines::new(client.clone())
        .describe("shape")
        .await
        .unwrap();
    assert!(
        d.partitions.iter().all(|p| p.owner == "w1"),
        "only the worker runs tasks: {:?}",
        d.partitions
    );
    // Reading back waits for every replica to be in sync.
    tokio::task::block_in_place(|| cluster.start_again(1));
    assert_exactly_once(&client, FED, "a worker past its broker", 0).await;
}

/// `pipeline apply` checks the manifest against every metadata change
/// committed before it, not against what its broker has applied so far: a
/// processor uploaded through one broker can be named at once through
/// another whose copy of the metadata lags.
#[test]
fn a_manifest_applied_at_a_lagging_broker_sees_a_processor_just_uploaded() {
    let cluster =
        TestCluster::start_linked(BROKERS as usize, &["--broker-session-timeout-ms", "6000"]);
    cluster.ok_at(1, &["topic", "create", "in", "-p", "2", "-r", "3"]);
    // Creates `__processors`, whose leader registers every upload.
    cluster.ok_at(1, &["processor", "upload", "first", wasm::PASSTHROUGH]);
    let controller = cluster.await_controller(1, std::time::Duration::from_secs(30));
    let registrar = cluster.partitions("__processors")[0].leader;
    let lagging = (1..=BROKERS)
        .find(|&id| id != controller && id != registrar)
        .expect("three brokers hold a third");
    // Below the metadata election timeout (500 ms), so it only lags.
    let links = cluster.links.as_ref().expect("a linked cluster");
    links.delay(controller, lagging, std::time::Duration::from_millis(400));
    cluster.ok_at(
        controller,
        &["processor", "upload", "shape", wasm::TRANSFORM],
    );
    let yaml = shape_manifest("exactly-once", "      replicationFactor: 3\n");
    let applied =
        cluster.eddy_at_with_input(lagging, &["pipeline", "apply", "-f", "-"], yaml.as_bytes());
    assert!(
        applied.success,
        "apply at broker {lagging} (metadata 400 ms behind broker {controller}):\n{}",
        applied.stderr
    );
}
