//! Delivery guarantees under `kill -9`: 100,000 records through a
//! pipeline while its worker (or its broker) is killed at seeded random
//! points and restarted. Exactly-once must give exactly the processor
//! applied to the input: count, content and per-key order; at-least-once
//! must lose nothing. Each test prints its seed; `EDDY_TEST_SEED=S`
//! replays one.

use eddy_test_plugins as wasm;

use super::workload::{
    assert_exactly_once, committed, feed, feed_through_broker_kills, lost_and_doubled, outputs,
    shape_manifest,
};
use eddy_tests::worker::TestWorker;

use super::Cluster;
use eddy_tests::rng::Rng;

const RECORDS: usize = 100_000;
/// How many times the worker or broker is killed in a run.
const KILLS: usize = 6;

/// A broker and the transform pipeline reading `in` (4 partitions).
async fn setup(delivery: &str, broker_args: &[&str]) -> Cluster {
    let c = Cluster::start_with(broker_args).await;
    c.create_topic("in", 4).await;
    c.upload("shape", wasm::TRANSFORM);
    c.apply(&shape_manifest(delivery, ""));
    c
}

/// Kills the standalone worker `KILLS` times while records flow, and
/// prints how far the pipeline was at each kill (a kill of an idle
/// pipeline would prove little).
async fn kill_workers(rng: &mut Rng, c: &Cluster, worker: &mut TestWorker) {
    for _ in 0..KILLS {
        tokio::time::sleep(rng.millis(1000, 2500)).await;
        let at = committed(&c.client).await;
        worker.kill9();
        eprintln!("killed the worker with {at} of {RECORDS} records committed");
        tokio::time::sleep(rng.millis(50, 700)).await;
        tokio::task::block_in_place(|| worker.start_again());
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exactly_once_survives_workers_killed_and_paused_at_random_points() {
    let mut rng = Rng::from_env("exactly_once_survives_workers_killed_and_paused_at_random_points");
    let c = setup("exactly-once", &["--no-worker"]).await;
    let mut workers = [
        TestWorker::start(&c.broker.addr, "w1"),
        TestWorker::start(&c.broker.addr, "w2"),
    ];
    let feeding = feed(&c.client, RECORDS);
    for _ in 0..KILLS {
        tokio::time::sleep(rng.millis(1000, 2500)).await;
        let at = committed(&c.client).await;
        let w = &mut workers[rng.below(2) as usize];
        if rng.below(2) == 0 {
            w.kill9();
            eprintln!("killed a worker with {at} of {RECORDS} records committed");
            tokio::time::sleep(rng.millis(50, 700)).await;
            tokio::task::block_in_place(|| w.start_again());
        } else {
            // Past its session timeout (1.5 s) its partitions move; when it
            // wakes it still holds batches it had started, and must not
            // write them twice.
            w.pause();
            eprintln!("paused a worker with {at} of {RECORDS} records committed");
            tokio::time::sleep(rng.millis(2000, 4000)).await;
            w.unpause();
        }
    }
    feeding.await.unwrap();
    c.caught_up("shape", 0).await;
    assert_exactly_once(&c.client, RECORDS, "exactly-once, two workers", rng.seed()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exactly_once_survives_a_worker_killed_at_random_points() {
    let mut rng = Rng::from_env("exactly_once_survives_a_worker_killed_at_random_points");
    let c = setup("exactly-once", &["--no-worker"]).await;
    let mut worker = TestWorker::start(&c.broker.addr, "w1");
    let feeding = feed(&c.client, RECORDS);
    kill_workers(&mut rng, &c, &mut worker).await;
    feeding.await.unwrap();
    c.caught_up("shape", 0).await;
    assert_exactly_once(&c.client, RECORDS, "exactly-once", rng.seed()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exactly_once_survives_its_broker_killed_at_random_points() {
    let mut rng = Rng::from_env("exactly_once_survives_its_broker_killed_at_random_points");
    let mut c = setup("exactly-once", &[]).await;
    feed_through_broker_kills(&mut c, &mut rng, RECORDS, KILLS, (1000, 2500)).await;
    assert_exactly_once(
        &c.client,
        RECORDS,
        "exactly-once, broker killed",
        rng.seed(),
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn at_least_once_loses_nothing_when_its_worker_is_killed() {
    let mut rng = Rng::from_env("at_least_once_loses_nothing_when_its_worker_is_killed");
    let c = setup("at-least-once", &["--no-worker"]).await;
    let mut worker = TestWorker::start(&c.broker.addr, "w1");
    let feeding = feed(&c.client, RECORDS);
    kill_workers(&mut rng, &c, &mut worker).await;
    feeding.await.unwrap();
    c.caught_up("shape", 0).await;
    let (_, per_input) = outputs(&c.client).await;
    let (lost, _) = lost_and_doubled(RECORDS, &per_input);
    let extra: usize = per_input.values().map(|k| k - 1).sum();
    eprintln!("at-least-once: {lost} lost, {extra} duplicates (allowed)");
    assert_eq!(lost, 0, "seed {}", rng.seed());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn at_most_once_never_repeats_an_output_when_its_worker_is_killed() {
    let mut rng = Rng::from_env("at_most_once_never_repeats_an_output_when_its_worker_is_killed");
    let c = setup("at-most-once", &["--no-worker"]).await;
    let mut worker = TestWorker::start(&c.broker.addr, "w1");
    let feeding = feed(&c.client, RECORDS);
    kill_workers(&mut rng, &c, &mut worker).await;
    feeding.await.unwrap();
    c.caught_up("shape", 0).await;
    let (_, per_input) = outputs(&c.client).await;
    let (lost, doubled) = lost_and_doubled(RECORDS, &per_input);
    eprintln!("at-most-once: {lost} lost (allowed), {doubled} duplicated");
    assert_eq!(doubled, 0, "seed {}", rng.seed());
}
