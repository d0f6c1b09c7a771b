use std::collections::{HashMap, HashSet};

use crate::harness::{TestBroker, keyed_lines};

#[test]
fn produced_lines_come_back_in_order_with_their_keys() {
    let b = TestBroker::start();
    b.ok(&["topic", "create", "orders", "-p", "1"]);
    let input = keyed_lines(500, 7);
    let out = b.eddy_with_input(
        &["produce", "orders", "--key-separator", ":"],
        input.as_bytes(),
    );
    assert!(out.success, "{}", out.stderr);
    assert!(
        out.stderr.contains("produced 500 record(s) to orders"),
        "{}",
        out.stderr
    );
    let consumed = b.ok(&[
        "consume",
        "orders",
        "-B",
        "-n",
        "500",
        "--print-key",
        "--key-separator",
        ":",
    ]);
    assert_eq!(consumed, input);
}

#[test]
fn keyed_records_land_on_one_partition_per_key_as_kafka_places_them() {
    let b = TestBroker::start();
    b.ok(&["topic", "create", "trucks", "-p", "6"]);
    b.ok_with_input(
        &["produce", "trucks", "--key-separator", ":"],
        keyed_lines(300, 20).as_bytes(),
    );
    let mut seen: HashMap<String, HashSet<u32>> = HashMap::new();
    for p in 0..6u32 {
        let out = b.ok(&[
            "consume",
            "trucks",
            "-p",
            &p.to_string(),
            "--offset",
            "0",
            "--idle-timeout-ms",
            "300",
            "--print-key",
            "--key-separator",
            ":",
        ]);
        for line in out.lines() {
            let key = line.split(':').next().unwrap().to_string();
            seen.entry(key).or_default().insert(p);
        }
    }
    assert_eq!(seen.len(), 20);
    for (key, partitions) in seen {
        let expected = eddy_log::partitioner::partition_for_key(key.as_bytes(), 6);
        assert_eq!(partitions, HashSet::from([expected]), "key {key}");
    }
}

#[test]
fn topics_are_created_listed_described_grown_and_deleted() {
    let b = TestBroker::start();
    let out = b.ok(&[
        "topic",
        "create",
        "events",
        "-p",
        "2",
        "--config",
        "retention.ms=3600000",
    ]);
    assert!(
        out.contains("created topic events with 2 partition(s)"),
        "{out}"
    );
    assert!(b.ok(&["topic", "list"]).contains("events"));
    b.ok_with_input(&["produce", "events", "-p", "1"], b"a\nb\nc\n");
    let described = b.ok(&["topic", "describe", "events"]);
    assert!(described.contains("retention.ms=3600000"), "{described}");
    let p1 = described
        .lines()
        .find(|l| l.trim_start().starts_with("1 "))
        .unwrap();
    let cols: Vec<&str> = p1.split_whitespace().collect();
    assert_eq!(
        cols[5..8],
        ["0", "3", "3"],
        "start, high watermark, end: {p1}"
    );
    assert!(
        b.ok(&["topic", "alter", "events", "--partitions", "4"])
            .contains("now has 4 partitions")
    );
    let shrink = b.eddy(&["topic", "alter", "events", "--partitions", "2"]);
    assert!(
        !shrink.success && shrink.stderr.contains("can only be added"),
        "{}",
        shrink.stderr
    );
    b.ok(&["topic", "delete", "events"]);
    assert!(!b.ok(&["topic", "list"]).contains("events"));
    assert!(!b.partition_dir("events", 0).exists(), "data is gone");
    b.ok(&["topic", "create", "events", "-p", "1"]);
    let empty = b.ok(&["consume", "events", "-B", "--idle-timeout-ms", "200"]);
    assert_eq!(empty, "", "a re-created topic starts empty");
}

#[test]
fn consume_follows_new_records_and_stops_after_max_records() {
    let b = TestBroker::start();
    b.ok(&["topic", "create", "live"]);
    b.ok_with_input(&["produce", "live"], b"old\n");
    let mut consumer = std::process::Command::new(crate::harness::eddy_binary())
        .args(["consume", "live", "-n", "2", "--bootstrap", &b.addr])
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    std::thread::sleep(std::time::Duration::from_millis(500));
    b.ok_with_input(&["produce", "live"], b"new-1\nnew-2\nnew-3\n");
    let status = crate::harness::wait_timeout(&mut consumer, std::time::Duration::from_secs(10));
    assert!(status.is_some_and(|s| s.success()));
    let mut out = String::new();
    std::io::Read::read_to_string(&mut consumer.stdout.take().unwrap(), &mut out).unwrap();
    assert_eq!(
        out, "new-1\nnew-2\n",
        "latest by default, then exactly -n records"
    );
}

#[test]
fn client_errors_say_what_is_wrong_and_exit_non_zero() {
    let b = TestBroker::start();
    b.ok(&["topic", "create", "t", "-p", "2"]);
    let cases: &[(&[&str], &str)] = &[
        (
            &["consume", "missing", "-B", "-n", "1"],
            "topic \"missing\" does not exist",
        ),
        (&["produce", "missing"], "topic \"missing\" does not exist"),
        (&["topic", "create", "t"], "topic \"t\" already exists"),
        (&["topic", "create", "bad name"], "invalid topic name"),
        (
            &["topic", "create", "x", "--config", "retention.ms=soon"],
            "retention.ms=\"soon\" is not valid",
        ),
        (
            &["topic", "create", "x", "--config", "retention.hours=1"],
            "unknown setting",
        ),
        (
            &["consume", "t", "-p", "9", "-B"],
            "partition 9 does not exist",
        ),
        (&["produce", "t", "-p", "9"], "partition 9 does not exist"),
        (
            &["consume", "t", "-p", "0", "--offset", "99", "-n", "1"],
            "out of range",
        ),
    ];
    for (args, expected) in cases {
        let out = b.eddy_with_input(args, b"x\n");
        assert!(!out.success, "eddy {args:?} should fail");
        assert!(
            out.stderr.contains(expected),
            "eddy {args:?}: {:?} should mention {expected:?}",
            out.stderr
        );
    }
    let out = crate::harness::run(
        std::process::Command::new(crate::harness::eddy_binary()).args([
            "topic",
            "list",
            "--bootstrap",
            "127.0.0.1:1",
        ]),
        b"",
    );
    assert!(
        !out.success && out.stderr.contains("cannot connect to 127.0.0.1:1"),
        "{}",
        out.stderr
    );
}
