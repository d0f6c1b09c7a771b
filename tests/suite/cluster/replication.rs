//! Partition replication: acknowledged writes outlive the brokers that
//! took them, and replicas hold the same bytes.

use std::collections::BTreeMap;
use std::io::Write;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use eddy_proto::v1 as pb;
use tonic::transport::Channel;

use super::harness::{TestCluster, log_bytes};
use crate::grpc::{batch, eddy_code, latest_at, produce_batch};
use crate::harness::{eddy_binary, wait_timeout};

/// Session timeout of the brokers under test: failover takes about this.
const SESSION_MS: &str = "2000";

fn cluster() -> TestCluster {
    TestCluster::start(3, &["--broker-session-timeout-ms", SESSION_MS])
}

/// Reads all of `topic` and checks every value `0..n` is there once, and
/// each key's values come in increasing order.
fn check_exactly_once_in_order(cluster: &TestCluster, topic: &str, n: usize) {
    let out = cluster.eddy(&[
        "consume",
        topic,
        "-B",
        "--print-key",
        "--key-separator",
        ":",
        "--idle-timeout-ms",
        "3000",
    ]);
    assert!(out.success, "{}", out.stderr);
    let mut seen = vec![0u32; n];
    let mut last: BTreeMap<&str, i64> = BTreeMap::new();
    for line in out.stdout.lines() {
        let (key, value) = line.split_once(':').unwrap();
        let v: usize = value.parse().unwrap();
        seen[v] += 1;
        let prev = last.insert(key, v as i64).unwrap_or(-1);
        assert!(prev < v as i64, "key {key}: {v} after {prev}");
    }
    let missing: Vec<usize> = (0..n).filter(|&i| seen[i] == 0).collect();
    let twice: Vec<usize> = (0..n).filter(|&i| seen[i] > 1).collect();
    assert!(
        missing.is_empty(),
        "{} acknowledged records lost, e.g. {:?}",
        missing.len(),
        &missing[..missing.len().min(10)]
    );
    assert!(
        twice.is_empty(),
        "{} records twice, e.g. {:?}",
        twice.len(),
        &twice[..twice.len().min(10)]
    );
}

/// Waits until every replica of every partition of `topic` holds the
/// same bytes as its leader.
fn await_identical_replicas(cluster: &TestCluster, topic: &str) {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let rows = cluster.await_in_sync(topic, Duration::from_secs(60));
        let differing: Vec<u32> = rows
            .iter()
            .filter(|r| {
                let leader = log_bytes(&cluster.partition_dir(r.leader, topic, r.partition));
                r.replicas
                    .iter()
                    .any(|&id| log_bytes(&cluster.partition_dir(id, topic, r.partition)) != leader)
            })
            .map(|r| r.partition)
            .collect();
        if differing.is_empty() {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "replicas of {topic} {differing:?} differ"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

#[test]
fn acknowledged_writes_survive_kill_9_of_partition_leaders() {
    let mut cluster = cluster();
    cluster.create_replicated("orders", 2);
    let n = 100_000;
    let mut producer = Command::new(eddy_binary())
        .args([
            "produce",
            "orders",
            "--key-separator",
            ":",
            "--bootstrap",
            &cluster.bootstrap(),
        ])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdin = producer.stdin.take().unwrap();
    // Spread over about 20 s, so that the kills land mid-stream.
    let writer = std::thread::spawn(move || {
        for chunk in 0..40 {
            let lines: String = (chunk * n / 40..(chunk + 1) * n / 40)
                .map(|i| format!("k{}:{i}\n", i % 50))
                .collect();
            stdin.write_all(lines.as_bytes()).unwrap();
            std::thread::sleep(Duration::from_millis(500));
        }
    });
    // Kill the leader of partition 0 three times as the records flow,
    // each down past its session timeout (so it is fenced and replaced)
    // and then restarted.
    let mut killed = Vec::new();
    for _ in 0..3 {
        std::thread::sleep(Duration::from_millis(1000));
        let leader = cluster.partitions("orders")[0].leader;
        assert!(leader > 0, "partition 0 has a leader");
        cluster.kill9(leader);
        killed.push(leader);
        std::thread::sleep(Duration::from_millis(5000));
        cluster.start_again(leader);
    }
    writer.join().unwrap();
    let status = wait_timeout(&mut producer, Duration::from_secs(120)).expect("producer finished");
    let mut stderr = String::new();
    std::io::Read::read_to_string(producer.stderr.as_mut().unwrap(), &mut stderr).unwrap();
    assert!(status.success(), "producer failed: {stderr}");
    assert!(
        stderr.contains(&format!("produced {n} record(s)")),
        "{stderr}"
    );
    let epochs = cluster.partitions("orders")[0].epoch;
    assert!(
        epochs >= 3,
        "three leader changes at least, epoch {epochs} (killed {killed:?})"
    );
    check_exactly_once_in_order(&cluster, "orders", n);
    await_identical_replicas(&cluster, "orders");
}

/// Produces `values` to partition 0 of `topic` through broker `id` only,
/// with the given acks, straight over gRPC; the error code on failure.
fn produce_at(
    cluster: &TestCluster,
    id: i32,
    topic: &str,
    values: &[&str],
    acks: pb::Acks,
) -> Result<(), String> {
    let addr = cluster.addr(id).to_string();
    let request = produce_batch(topic, 0, batch(values), acks);
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async move {
        let channel = Channel::from_shared(format!("http://{addr}"))
            .unwrap()
            .connect_timeout(Duration::from_secs(2))
            .connect()
            .await
            .map_err(|e| e.to_string())?;
        let mut client = pb::produce_client::ProduceClient::new(channel);
        let call = tokio::time::timeout(Duration::from_secs(10), client.produce(request)).await;
        match call {
            Ok(Ok(_)) => Ok(()),
            Ok(Err(status)) => Err(eddy_code(&status).to_string()),
            Err(_) => Err("timed out".to_string()),
        }
    })
}

/// [`produce_at`], retrying for a while on the errors a client retries
/// (a leader or controller election in progress).
fn produce_retrying(cluster: &TestCluster, id: i32, topic: &str, values: &[&str]) {
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        match produce_at(cluster, id, topic, values, pb::Acks::All) {
            Ok(()) => return,
            Err(e) if Instant::now() < deadline => {
                assert!(
                    [
                        "NOT_LEADER",
                        "UNAVAILABLE",
                        "NOT_ENOUGH_REPLICAS",
                        "FENCED_LEADER_EPOCH"
                    ]
                    .contains(&e.as_str()),
                    "{e}"
                );
                std::thread::sleep(Duration::from_millis(100));
            }
            Err(e) => panic!("produce to broker {id} kept failing: {e}"),
        }
    }
}

/// A broker that restarts reads its own copy of the metadata before it
/// can reach the others, and in that copy it may still lead partitions
/// that have moved on without it. Until it has rejoined it serves none of
/// them: a reader would be handed an old end of the log (its high
/// watermark starts from the last checkpoint) and reset its position to
/// it. (Writes were refused before too: its lease has lapsed.)
#[test]
fn a_broker_started_again_leads_nothing_until_it_has_rejoined() {
    let mut cluster = TestCluster::start(3, &["--broker-session-timeout-ms", "6000"]);
    cluster.create_replicated("r", 1);
    let before = cluster.await_in_sync("r", Duration::from_secs(20))[0].clone();
    produce_at(&cluster, before.leader, "r", &["a", "b"], pb::Acks::All).unwrap();
    assert_eq!(latest_at(cluster.addr(before.leader), "r"), Ok(2));
    cluster.kill9(before.leader);
    // Paused within the session timeout, the others neither move its
    // leadership nor answer it: it comes back to no quorum, its copy of
    // the metadata still naming it the leader.
    let others: Vec<i32> = (1..=3).filter(|&id| id != before.leader).collect();
    for &id in &others {
        cluster.signal(id, "STOP");
    }
    let started = cluster.start_again_in_background(before.leader);
    let asked = latest_at(cluster.addr(before.leader), "r");
    let written = produce_at(&cluster, before.leader, "r", &["c"], pb::Acks::Leader);
    for &id in &others {
        cluster.signal(id, "CONT");
    }
    cluster.await_started(before.leader, started);
    assert_eq!(asked, Err("NOT_LEADER".to_string()));
    assert_eq!(written, Err("NOT_LEADER".to_string()));
    let rows = cluster.await_in_sync("r", Duration::from_secs(20));
    produce_retrying(&cluster, rows[0].leader, "r", &["c"]);
    assert_eq!(latest_at(cluster.addr(rows[0].leader), "r"), Ok(3));
    // Nor do followers serve readers, whose logs may lag or be cut back.
    for follower in rows[0].replicas.iter().filter(|&&r| r != rows[0].leader) {
        assert_eq!(
            latest_at(cluster.addr(*follower), "r"),
            Err("NOT_LEADER".to_string())
        );
    }
    await_identical_replicas(&cluster, "r");
}

/// Waits until broker `asked` reports a leader for partition 0 of `topic`
/// other than `old`, and returns (leader, epoch).
fn await_new_leader(cluster: &TestCluster, asked: i32, topic: &str, old: i32) -> (i32, i32) {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        if let Some(rows) = cluster.partitions_at(asked, topic)
            && rows[0].leader > 0
            && rows[0].leader != old
        {
            return (rows[0].leader, rows[0].epoch);
        }
        assert!(Instant::now() < deadline, "no new leader for {topic}-0");
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn a_paused_leader_is_fenced_and_cannot_acknowledge_writes_after_it_resumes() {
    let cluster = cluster();
    cluster.create_replicated("p", 1);
    let old = cluster.partitions("p")[0].leader;
    produce_at(&cluster, old, "p", &["before"], pb::Acks::All).unwrap();
    let other = (1..=3).find(|&id| id != old).unwrap();

    cluster.signal(old, "STOP");
    let (new, epoch) = await_new_leader(&cluster, other, "p", old);
    assert!(epoch >= 1);
    produce_retrying(&cluster, new, "p", &["while-paused"]);
    cluster.signal(old, "CONT");

    // Whether or not it has learnt of its replacement yet, the old leader
    // takes no write for the partition, acks=1 or acks=all.
    for acks in [pb::Acks::Leader, pb::Acks::All] {
        let refused = produce_at(&cluster, old, "p", &["stale"], acks).unwrap_err();
        assert!(refused == "NOT_LEADER", "{acks:?}: {refused}");
    }
    let out = cluster.ok_at(new, &["consume", "p", "-B", "--idle-timeout-ms", "1000"]);
    assert_eq!(out.lines().collect::<Vec<_>>(), ["before", "while-paused"]);
}

#[test]
fn a_replica_that_diverged_truncates_to_the_new_leader_and_catches_up() {
    let mut cluster = cluster();
    cluster.create_replicated("d", 1);
    let old = cluster.partitions("d")[0].leader;
    produce_at(&cluster, old, "d", &["a", "b"], pb::Acks::All).unwrap();
    let followers: Vec<i32> = (1..=3).filter(|&id| id != old).collect();

    // With its followers paused (briefly: not long enough to be fenced),
    // the leader takes acks=1 writes no one else has, and dies.
    for &f in &followers {
        cluster.signal(f, "STOP");
    }
    // Past the leader's longest hold of a fetch: no fetch answer in flight
    // can carry the next records to them.
    std::thread::sleep(Duration::from_millis(700));
    produce_at(&cluster, old, "d", &["lost-1", "lost-2"], pb::Acks::Leader).unwrap();
    cluster.kill9(old);
    for &f in &followers {
        cluster.signal(f, "CONT");
    }
    let (new, _) = await_new_leader(&cluster, followers[0], "d", old);
    produce_retrying(&cluster, new, "d", &["c"]);

    // Back, the old leader's log has records the new leader never had at
    // the same offsets: it must cut them and copy the new leader's.
    cluster.start_again(old);
    await_identical_replicas(&cluster, "d");
    let out = cluster.ok_at(new, &["consume", "d", "-B", "--idle-timeout-ms", "1000"]);
    assert_eq!(out.lines().collect::<Vec<_>>(), ["a", "b", "c"]);
}

/// A leader killed and started again before its session ran out does not
/// lead in its old epoch: its previous run may have lost writes it had
/// not flushed, and its followers would then have to truncate theirs. It
/// gives up its leaderships on the way up, and rejoins the ISR once it
/// has caught up.
#[test]
fn a_leader_started_again_before_it_is_fenced_gives_up_its_leadership() {
    let mut cluster = TestCluster::start(3, &["--broker-session-timeout-ms", "6000"]);
    cluster.create_replicated("r", 1);
    let before = cluster.await_in_sync("r", Duration::from_secs(20))[0].clone();
    produce_at(&cluster, before.leader, "r", &["a", "b"], pb::Acks::All).unwrap();
    cluster.kill9(before.leader);
    cluster.start_again(before.leader);
    // Within the 6 s session: only its own start can have moved anything.
    let after = cluster.partitions("r")[0].clone();
    assert_ne!(after.leader, before.leader, "{after:?}");
    assert!(after.epoch > before.epoch, "{after:?} after {before:?}");
    let rows = cluster.await_in_sync("r", Duration::from_secs(20));
    assert!(rows[0].isr.contains(&before.leader), "{rows:?}");
    produce_retrying(&cluster, rows[0].leader, "r", &["c"]);
    await_identical_replicas(&cluster, "r");
}
