//! Broken links between brokers: every call one broker makes to another
//! goes through a proxy the test cuts, black-holes or heals, in one
//! direction or both. Clients still reach every broker.

use std::time::{Duration, Instant};

use eddy_proto::v1 as pb;
use eddy_tests::check;
use eddy_tests::cluster::TestCluster;
use eddy_tests::link::Mode;
use pb::produce_client::ProduceClient;

use crate::grpc::{batch, latest_at, produce_batch};
use crate::harness::numbered_lines;

fn cluster() -> TestCluster {
    let cluster = TestCluster::start_linked(
        3,
        &[
            "--broker-session-timeout-ms",
            "2000",
            "--replica-lag-time-max-ms",
            "2000",
        ],
    );
    cluster.create_replicated("cut", 1);
    cluster
}

/// Every broker but `not`, as a bootstrap list.
fn bootstrap_without(cluster: &TestCluster, not: i32) -> String {
    cluster
        .nodes
        .iter()
        .filter(|n| n.id != not)
        .map(|n| n.addr.as_str())
        .collect::<Vec<_>>()
        .join(",")
}

/// Waits until broker `at` names a leader for partition 0 other than `not`.
fn await_leader_other_than(cluster: &TestCluster, at: i32, not: i32) -> i32 {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if let Some(rows) = cluster.partitions_at(at, "cut")
            && rows[0].leader > 0
            && rows[0].leader != not
        {
            return rows[0].leader;
        }
        assert!(
            Instant::now() < deadline,
            "no new leader within 30 s of cutting off broker {not}"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// One acks=all write sent straight to broker `id`, waiting at most
/// `timeout` for the ISR; whether it was acknowledged.
fn acknowledged_by(cluster: &TestCluster, id: i32, value: &str, timeout: Duration) -> bool {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let addr = format!("http://{}", cluster.addr(id));
    rt.block_on(async move {
        let channel = tonic::transport::Channel::from_shared(addr)
            .unwrap()
            .connect()
            .await
            .unwrap();
        let mut request = produce_batch("cut", 0, batch(&[value]), pb::Acks::All);
        request.timeout_ms = timeout.as_millis() as u32;
        let answer = tokio::time::timeout(
            timeout + Duration::from_secs(5),
            ProduceClient::new(channel).produce(request),
        )
        .await;
        // Errors come back as statuses: an answer is an acknowledgement.
        matches!(answer, Ok(Ok(_)))
    })
}

fn assert_every_record_once_and_replicas_agree(cluster: &TestCluster, expected: &str) {
    let rows = cluster.await_in_sync("cut", Duration::from_secs(60));
    let n = expected.lines().count().to_string();
    let out = cluster.ok_with_input(&["consume", "cut", "-B", "-n", &n], b"");
    assert_eq!(out, expected, "every acknowledged record, once, in order");
    let hw = [(0, rows[0].high_watermark)].into();
    check::replicas_agree(&cluster.replicas("cut", &rows), &hw).assert_passed();
}

#[test]
fn a_leader_cut_off_both_ways_cannot_acknowledge_and_the_others_go_on() {
    let cluster = cluster();
    let links = cluster.links.as_ref().unwrap();
    let before = numbered_lines(0, 500);
    cluster.ok_with_input(&["produce", "cut", "--acks", "all"], before.as_bytes());
    let old = cluster.await_in_sync("cut", Duration::from_secs(30))[0].leader;
    let other = cluster
        .nodes
        .iter()
        .map(|n| n.id)
        .find(|&id| id != old)
        .unwrap();
    for n in &cluster.nodes {
        if n.id != old {
            links.partition(old, n.id, Mode::Cut);
        }
    }
    // Its followers cannot fetch, so an acks=all write to it waits for an
    // ISR it cannot reach, and is never acknowledged.
    assert!(
        !acknowledged_by(&cluster, old, "stale", Duration::from_secs(4)),
        "broker {old}, cut off, acknowledged an acks=all write"
    );
    let new = await_leader_other_than(&cluster, other, old);
    // Nor does it answer readers: past its lease it may have been
    // replaced, and the log end it knows may be old.
    assert_eq!(
        latest_at(cluster.addr(old), "cut"),
        Err("NOT_LEADER".to_string())
    );
    let after = numbered_lines(500, 1000);
    let out = crate::harness::run(
        std::process::Command::new(crate::harness::eddy_binary()).args([
            "produce",
            "cut",
            "--acks",
            "all",
            "--bootstrap",
            &bootstrap_without(&cluster, old),
        ]),
        after.as_bytes(),
    );
    assert!(
        out.success,
        "the majority with leader {new} takes writes: {}",
        out.stderr
    );
    links.heal();
    assert_every_record_once_and_replicas_agree(&cluster, &(before + &after));
}

#[test]
fn a_follower_that_cannot_reach_the_leader_leaves_the_isr_and_rejoins_when_healed() {
    let cluster = cluster();
    let links = cluster.links.as_ref().unwrap();
    cluster.ok_with_input(
        &["produce", "cut", "--acks", "all"],
        numbered_lines(0, 300).as_bytes(),
    );
    let row = cluster.await_in_sync("cut", Duration::from_secs(30))[0].clone();
    let follower = *row.replicas.iter().find(|&&r| r != row.leader).unwrap();
    // One way only: the follower's calls to the leader hang; everything
    // else, the leader's calls to it included, still flows.
    links.set(follower, row.leader, Mode::Blackhole);
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        // Writes keep going (two of three is min.insync.replicas) and the
        // follower, fetching nothing, falls out of the ISR.
        cluster.ok_with_input(&["produce", "cut", "--acks", "all"], b"tick\n");
        let rows = cluster.partitions_at(row.leader, "cut").unwrap();
        if !rows[0].isr.contains(&follower) {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "broker {follower} stayed in the ISR without fetching: {rows:?}"
        );
        std::thread::sleep(Duration::from_millis(300));
    }
    links.heal();
    let rows = cluster.await_in_sync("cut", Duration::from_secs(60));
    assert!(rows[0].isr.contains(&follower), "{rows:?}");
    let hw = [(0, rows[0].high_watermark)].into();
    check::replicas_agree(&cluster.replicas("cut", &rows), &hw).assert_passed();
}

/// Found by the chaos soak (seed 9328): a controller leader cut off both
/// ways kept deciding, from the heartbeats it no longer got, to fence the
/// other brokers. When the cut healed its pending write was forwarded to
/// its successor, which fenced brokers it heard from: every partition went
/// leaderless for a moment and was elected again. A leader's fencing is now
/// its own write, dropped if it was replaced.
#[test]
fn a_controller_cut_off_and_back_fences_no_broker_its_successor_hears_from() {
    let cluster = cluster();
    cluster.create_replicated("spread", 3);
    let links = cluster.links.as_ref().unwrap();
    let old = cluster.await_controller(1, Duration::from_secs(30));
    let others: Vec<i32> = cluster
        .nodes
        .iter()
        .map(|n| n.id)
        .filter(|&id| id != old)
        .collect();
    for &n in &others {
        links.partition(old, n, Mode::Cut);
    }
    // The others elect a controller among them, which fences `old` and
    // moves its leaderships to them.
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let moved = cluster
            .controller_seen_by(others[0])
            .is_some_and(|c| c != old)
            && cluster
                .partitions_at(others[0], "spread")
                .is_some_and(|rows| rows.iter().all(|r| others.contains(&r.leader)));
        if moved {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the majority took over nothing within 30 s of cutting off controller {old}"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    // Past a session, `old` (still thinking it leads) finds both others
    // silent and decides to fence them.
    std::thread::sleep(Duration::from_secs(3));
    let before = cluster.partitions_at(others[0], "spread").unwrap();
    links.heal();
    // Long enough for `old` to learn of its successor and to be unfenced.
    std::thread::sleep(Duration::from_secs(5));
    let after = cluster.partitions_at(others[0], "spread").unwrap();
    for (b, a) in before.iter().zip(&after) {
        assert_eq!(
            (a.leader, a.epoch),
            (b.leader, b.epoch),
            "partition {} was elected again after controller {old} came back: \
             before {before:?}, after {after:?}",
            b.partition
        );
    }
}
