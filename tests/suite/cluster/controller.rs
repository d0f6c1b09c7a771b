//! The metadata controller: one openraft quorum among the `--peers`.

use std::time::{Duration, Instant};

use super::harness::TestCluster;
use crate::{eddy, stderr};

/// Topic names in `eddy topic list` output.
fn topics(list: &str) -> Vec<String> {
    list.lines()
        .skip(1)
        .filter_map(|l| l.split_whitespace().next())
        .map(str::to_string)
        .collect()
}

#[test]
fn metadata_made_on_any_broker_is_seen_by_all_and_outlives_the_controller_leader() {
    let mut cluster = TestCluster::start(3, &[]);
    let leader = cluster.await_controller(1, Duration::from_secs(20));
    let follower = (1..=3).find(|&id| id != leader).unwrap();

    // A follower forwards the change to the leader.
    cluster.ok_at(
        follower,
        &["topic", "create", "spread", "-p", "3", "-r", "1"],
    );
    for id in 1..=3 {
        assert_eq!(
            topics(&cluster.ok_at(id, &["topic", "list"])),
            ["spread"],
            "broker {id}"
        );
    }

    // Each partition lives on its own broker; clients find every leader
    // from any bootstrap broker.
    let input: String = (0..300).map(|i| format!("k{i}:v{i}\n")).collect();
    cluster.ok_with_input(
        &["produce", "spread", "--key-separator", ":"],
        input.as_bytes(),
    );
    let read = cluster.ok_at(follower, &["consume", "spread", "-B", "-n", "300"]);
    assert_eq!(read.lines().count(), 300);
    let describe = cluster.ok_at(leader, &["topic", "describe", "spread"]);
    let leaders: std::collections::BTreeSet<&str> = describe
        .lines()
        .skip(2)
        .filter_map(|l| l.split_whitespace().nth(1))
        .collect();
    assert_eq!(
        leaders.len(),
        3,
        "one partition leader per broker:\n{describe}"
    );

    cluster.kill9(leader);
    let survivor = follower;
    let started = Instant::now();
    let out = cluster.eddy_at(survivor, &["topic", "create", "after", "-r", "1"]);
    assert!(
        out.success,
        "a new controller leader takes changes: {}",
        out.stderr
    );
    let took = started.elapsed();
    assert!(took < Duration::from_secs(15), "took {took:?}");
    let new_leader = cluster.await_controller(survivor, Duration::from_secs(10));
    assert_ne!(new_leader, leader);

    // The old leader comes back as a follower and catches up.
    cluster.start_again(leader);
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let seen = topics(&cluster.ok_at(leader, &["topic", "list"]));
        if seen == ["after", "spread"] {
            break;
        }
        assert!(Instant::now() < deadline, "restarted broker sees {seen:?}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn peers_must_name_this_broker_and_be_well_formed() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().to_str().unwrap();
    let cases = [
        (
            "1=127.0.0.1:1,2=127.0.0.1:2",
            "3",
            "does not name this broker",
        ),
        ("1=127.0.0.1", "1", "not HOST:PORT"),
        ("1=127.0.0.1:1,1=127.0.0.1:2", "1", "listed twice"),
    ];
    for (peers, id, expected) in cases {
        let out = eddy(&[
            "serve",
            "--data-dir",
            data,
            "--node-id",
            id,
            "--peers",
            peers,
        ]);
        assert!(!out.status.success(), "--peers {peers} was accepted");
        assert!(stderr(&out).contains(expected), "{peers}: {}", stderr(&out));
    }
}
