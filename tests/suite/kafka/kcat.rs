//! kcat (librdkafka) producing and consuming through the Kafka listener,
//! over the same log gRPC clients use.

use super::{kafka_addr, kafka_broker, kcat, kcat_ok};
use eddy_tests::secured::SecuredBroker;

/// `key=value partition offset` lines, sorted.
fn consumed(kafka: &str, topic: &str) -> Vec<String> {
    let out = kcat_ok(
        kafka,
        &["-C", "-t", topic, "-e", "-q", "-f", "%k=%s %p %o\\n"],
        b"",
    );
    let mut lines: Vec<String> = out.lines().map(str::to_string).collect();
    lines.sort();
    lines
}

#[test]
fn kcat_produces_and_consumes_keyed_records_over_the_log_grpc_clients_share() {
    let b = kafka_broker();
    let kafka = kafka_addr(&b);
    b.ok(&["topic", "create", "orders", "-p", "3"]);

    // Kafka in, Kafka and gRPC out.
    let input = "truck-1:north\ntruck-2:south\ntruck-1:east\ntruck-3:west\n";
    kcat_ok(kafka, &["-P", "-t", "orders", "-K:"], input.as_bytes());
    let records = consumed(kafka, "orders");
    assert_eq!(records.len(), 4, "{records:?}");
    // One key, one partition, in the order produced.
    let truck1: Vec<&String> = records
        .iter()
        .filter(|r| r.starts_with("truck-1="))
        .collect();
    assert_eq!(truck1.len(), 2, "{records:?}");
    let partition = |r: &str| r.split(' ').nth(1).unwrap().to_string();
    assert_eq!(partition(truck1[0]), partition(truck1[1]), "{records:?}");
    let grpc = b.ok(&[
        "consume",
        "orders",
        "--from-beginning",
        "-n",
        "4",
        "--print-key",
    ]);
    let mut grpc: Vec<&str> = grpc.lines().collect();
    grpc.sort();
    assert_eq!(
        grpc,
        [
            "truck-1\teast",
            "truck-1\tnorth",
            "truck-2\tsouth",
            "truck-3\twest"
        ]
    );

    // gRPC in, Kafka out, after what Kafka wrote.
    b.ok_with_input(
        &["produce", "orders", "--key-separator", ":"],
        b"truck-9:home\n",
    );
    let records = consumed(kafka, "orders");
    assert_eq!(records.len(), 5, "{records:?}");
    assert!(
        records.iter().any(|r| r.starts_with("truck-9=home ")),
        "{records:?}"
    );

    // With Java's partitioner (murmur2), librdkafka places a key where
    // Eddy's own producer does.
    kcat_ok(
        kafka,
        &[
            "-P",
            "-t",
            "orders",
            "-K:",
            "-X",
            "partitioner=murmur2_random",
        ],
        b"truck-9:work\n",
    );
    let records = consumed(kafka, "orders");
    let truck9: Vec<String> = records
        .iter()
        .filter(|r| r.starts_with("truck-9="))
        .map(|r| partition(r))
        .collect();
    assert_eq!(truck9.len(), 2, "{records:?}");
    assert_eq!(truck9[0], truck9[1], "{records:?}");

    // Offsets: a consumer starting at the end of a partition gets only
    // what comes after.
    let p = partition(truck1[0]);
    let end = kcat_ok(kafka, &["-Q", "-t", &format!("orders:{p}:-1")], b"");
    assert!(
        end.contains("offset 2"),
        "the end offset of partition {p}: {end}"
    );
}

#[test]
fn kcat_sees_the_brokers_and_topics_and_creates_topics_it_names() {
    let b = kafka_broker();
    let kafka = kafka_addr(&b);
    b.ok(&["topic", "create", "three", "-p", "3"]);
    let listed = kcat_ok(kafka, &["-L"], b"");
    assert!(
        listed.contains(&format!("broker 1 at {kafka}")),
        "Metadata advertises the Kafka address: {listed}"
    );
    assert!(
        listed.contains("topic \"three\" with 3 partitions"),
        "{listed}"
    );
    for p in 0..3 {
        assert!(
            listed.contains(&format!("partition {p}, leader 1, replicas: 1, isrs: 1")),
            "{listed}"
        );
    }
    // --auto-create-topics: a producer's first Metadata creates the topic.
    kcat_ok(kafka, &["-P", "-t", "fresh"], b"one\ntwo\n");
    let described = b.ok(&["topic", "describe", "fresh"]);
    assert!(described.contains("fresh"), "{described}");
    assert_eq!(
        b.ok(&["consume", "fresh", "--from-beginning", "-n", "2"]),
        "one\ntwo\n"
    );
}

#[test]
fn a_topic_that_does_not_exist_is_reported_when_auto_creation_is_off() {
    let b = crate::harness::TestBroker::start_with(&["--kafka-listen", "127.0.0.1:0"]);
    let kafka = kafka_addr(&b);
    let out = kcat(kafka, &["-C", "-t", "missing", "-e"], b"");
    assert!(!out.success);
    assert!(
        out.stderr.contains("Unknown topic or partition"),
        "{}",
        out.stderr
    );
    assert!(
        b.eddy(&["topic", "describe", "missing"])
            .stderr
            .contains("does not exist")
    );
}

#[test]
fn the_kafka_listener_enforces_the_same_acls() {
    let s = SecuredBroker::start(&["--kafka-listen", "127.0.0.1:0"]);
    let kafka = kafka_addr(&s.broker);
    s.as_cluster_ok(&["topic", "create", "secret", "-p", "1"], b"");
    s.as_cluster_ok(&["produce", "secret"], b"classified\n");
    // Kafka clients cannot sign in yet: they are anonymous, and the
    // anonymous may do nothing under --auth required.
    let read = kcat(kafka, &["-C", "-t", "secret", "-e"], b"");
    assert!(!read.success);
    assert!(
        read.stderr.contains("authorization failed"),
        "{}",
        read.stderr
    );
    let write = kcat(kafka, &["-P", "-t", "secret"], b"forged\n");
    assert!(
        write.stderr.contains("authorization failed"),
        "{}",
        write.stderr
    );
    let listed = kcat_ok(kafka, &["-L"], b"");
    assert!(
        listed.contains(" 0 topics"),
        "no topic is shown to the anonymous: {listed}"
    );
    assert_eq!(
        s.as_cluster_ok(
            &[
                "consume",
                "secret",
                "--from-beginning",
                "--idle-timeout-ms",
                "500"
            ],
            b""
        ),
        "classified\n",
        "nothing was written"
    );
}

/// README, "Kafka clients": `eddy dev` with kcat, as a newcomer runs it
/// (on free ports instead of 9292 and 9092).
#[test]
fn the_readme_kafka_walkthrough_works_against_eddy_dev() {
    let tmp = tempfile::tempdir().unwrap();
    let mut cmd = crate::harness::eddy_command();
    cmd.args(["dev", "--listen", "127.0.0.1:0", "--data-dir"])
        .arg(tmp.path().join(".eddy"));
    let (child, found) = crate::harness::spawn_and_wait_for(
        cmd,
        &["eddy listening on ", "kafka listening on "],
        std::process::Stdio::null(),
    );
    let mut dev = KilledOnDrop(child);
    let (grpc, kafka) = (&found[0], &found[1]);
    let listed = kcat_ok(kafka, &["-L"], b"");
    assert!(listed.contains(&format!("broker 1 at {kafka}")), "{listed}");
    kcat_ok(
        kafka,
        &["-t", "orders", "-P", "-K:"],
        b"truck-1:north\ntruck-2:south\n",
    );
    let out = kcat_ok(
        kafka,
        &[
            "-t",
            "orders",
            "-C",
            "-e",
            "-q",
            "-f",
            "%k=%s partition %p offset %o\\n",
        ],
        b"",
    );
    assert_eq!(
        out,
        "truck-1=north partition 0 offset 0\ntruck-2=south partition 0 offset 1\n"
    );
    let grpc_out = crate::harness::eddy_against(
        grpc,
        &[
            "consume",
            "orders",
            "--from-beginning",
            "--print-key",
            "-n",
            "2",
        ],
        b"",
    );
    assert_eq!(
        grpc_out.stdout, "truck-1\tnorth\ntruck-2\tsouth\n",
        "{}",
        grpc_out.stderr
    );
    crate::harness::signal(&dev.0, "TERM");
    assert!(
        crate::harness::wait_timeout(&mut dev.0, std::time::Duration::from_secs(20)).is_some(),
        "eddy dev stops on SIGTERM"
    );
}

/// A process killed when the test ends, passed or failed.
struct KilledOnDrop(std::process::Child);

impl Drop for KilledOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Eddy's own producer compresses too, and Kafka consumers read it.
#[test]
fn batches_eddy_compresses_are_read_by_kcat() {
    let b = kafka_broker();
    let kafka = kafka_addr(&b);
    b.ok(&["topic", "create", "packed", "-p", "1"]);
    let mut expected = Vec::new();
    for codec in ["gzip", "snappy", "lz4", "zstd"] {
        let lines: Vec<String> = (0..50).map(|i| format!("{codec} record {i}")).collect();
        let input = lines.join("\n") + "\n";
        b.ok_with_input(
            &["produce", "packed", "--compression", codec],
            input.as_bytes(),
        );
        expected.extend(lines);
    }
    let read = kcat_ok(
        kafka,
        &["-C", "-t", "packed", "-e", "-q", "-f", "%s\\n"],
        b"",
    );
    assert_eq!(read.lines().collect::<Vec<_>>(), expected);
    let wrong = b.eddy(&["produce", "packed", "--compression", "brotli"]);
    assert!(!wrong.success);
    assert!(
        wrong.stderr.contains("none, gzip, snappy, lz4 or zstd"),
        "{}",
        wrong.stderr
    );
}
