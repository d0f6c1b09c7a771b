//! Consumer groups across brokers: the coordinator is the leader of the
//! group's `__consumer_offsets` partition, and moves with it.

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use eddy_log::partitioner::partition_for_key;

use super::harness::TestCluster;

/// Partitions of `__consumer_offsets` (the broker's default).
const OFFSETS_PARTITIONS: u32 = 16;

/// Committed offsets of `group` per partition, from `eddy group describe`.
fn committed(cluster: &TestCluster, group: &str) -> Vec<(u32, u64)> {
    let out = cluster.eddy(&["group", "describe", group]);
    assert!(out.success, "{}", out.stderr);
    out.stdout
        .lines()
        .filter_map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            (f.len() >= 3 && f[0] == "events").then(|| (f[1].parse().ok(), f[2].parse().ok()))
        })
        .filter_map(|(p, c)| Some((p?, c?)))
        .collect()
}

fn values(out: &str) -> Vec<String> {
    out.lines().map(str::to_string).collect()
}

#[test]
fn committed_offsets_outlive_the_coordinator_and_consumption_continues() {
    let mut cluster = TestCluster::start(3, &["--broker-session-timeout-ms", "2000"]);
    cluster.ok_at(1, &["topic", "create", "events", "-p", "3", "-r", "3"]);
    let input: String = (0..1000).map(|i| format!("k{}:{i}\n", i % 7)).collect();
    cluster.ok_with_input(
        &["produce", "events", "--key-separator", ":"],
        input.as_bytes(),
    );

    let first = cluster.ok_with_input(&["consume", "events", "-g", "g", "-B", "-n", "400"], b"");
    let first = values(&first);
    assert_eq!(first.len(), 400);
    let before = committed(&cluster, "g");
    assert_eq!(
        before.iter().map(|(_, c)| c).sum::<u64>(),
        400,
        "{before:?}"
    );

    // Kill the coordinator: the leader of the group's offsets partition.
    let index = partition_for_key(b"g", OFFSETS_PARTITIONS);
    let rows = cluster.partitions("__consumer_offsets");
    assert_eq!(rows.len(), OFFSETS_PARTITIONS as usize, "{rows:?}");
    let coordinator = rows[index as usize].leader;
    cluster.kill9(coordinator);
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let row = cluster.partitions("__consumer_offsets")[index as usize].clone();
        if row.leader > 0 && row.leader != coordinator {
            break;
        }
        assert!(Instant::now() < deadline, "no new coordinator: {row:?}");
        std::thread::sleep(Duration::from_millis(100));
    }

    // The new coordinator has every commit, and the group goes on from them.
    let after = committed(&cluster, "g");
    assert_eq!(after, before, "committed offsets moved");
    let rest = cluster.ok_with_input(&["consume", "events", "-g", "g", "-n", "600"], b"");
    let rest = values(&rest);
    assert_eq!(rest.len(), 600);
    let all: BTreeSet<&String> = first.iter().chain(&rest).collect();
    assert_eq!(all.len(), 1000, "no record twice, none missing");

    cluster.start_again(coordinator);
    let total: u64 = committed(&cluster, "g").iter().map(|(_, c)| c).sum();
    assert_eq!(total, 1000);
}
