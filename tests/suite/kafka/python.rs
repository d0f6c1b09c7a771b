//! PyPI's Kafka clients (confluent-kafka, with its own librdkafka, and
//! kafka-python, pure Python) against the Kafka listener, through the
//! scenarios of `clients.py`.

use std::collections::BTreeMap;
use std::path::Path;
use std::process::Command;

use eddy_tests::process::files;
use eddy_tests::secured::{PASSWORD, SecuredBroker};

use super::{kafka_addr, kafka_broker};
use crate::harness::run;

/// Runs a `clients.py` scenario and parses the JSON line it prints.
pub(super) fn scenario(name: &str, kafka: &str, topic: &str, count: usize) -> serde_json::Value {
    scenario_with(name, kafka, topic, count, &[])
}

fn scenario_with(
    name: &str,
    kafka: &str,
    topic: &str,
    count: usize,
    env: &[(&str, &str)],
) -> serde_json::Value {
    let out = run(
        scenario_command(name, kafka, topic, count).envs(env.iter().copied()),
        b"",
    );
    assert!(
        out.success,
        "clients.py {name} failed: {}\n{}",
        out.stderr, out.stdout
    );
    let line = out.stdout.lines().last().unwrap_or_default();
    serde_json::from_str(line).unwrap_or_else(|e| panic!("{e}: {}", out.stdout))
}

/// The command that runs a `clients.py` scenario (bounded to 180 s).
pub(super) fn scenario_command(name: &str, kafka: &str, topic: &str, count: usize) -> Command {
    eddy_tests::kafka::scenario_command(name, kafka, topic, count, 180)
}

/// `[key, value, partition, offset]` records: every `v{i}` once, each key
/// on one partition, each partition's offsets 0, 1, 2, ... in the order
/// produced.
fn check_records(records: &serde_json::Value, count: usize) {
    let records = records.as_array().unwrap();
    assert_eq!(records.len(), count, "{records:?}");
    let mut partition_of_key: BTreeMap<String, i64> = BTreeMap::new();
    let mut by_partition: BTreeMap<i64, Vec<(i64, usize)>> = BTreeMap::new();
    let mut seen = vec![false; count];
    for r in records {
        let key = r[0].as_str().unwrap().to_string();
        let i: usize = r[1].as_str().unwrap()[1..].parse().unwrap();
        let (partition, offset) = (r[2].as_i64().unwrap(), r[3].as_i64().unwrap());
        assert!(!seen[i], "v{i} twice");
        seen[i] = true;
        assert_eq!(*partition_of_key.entry(key).or_insert(partition), partition);
        by_partition.entry(partition).or_default().push((offset, i));
    }
    for (p, mut rs) in by_partition {
        rs.sort();
        for (n, (offset, _)) in rs.iter().enumerate() {
            assert_eq!(*offset, n as i64, "partition {p} has a gap or a duplicate");
        }
        assert!(
            rs.windows(2).all(|w| w[0].1 < w[1].1),
            "partition {p} out of order"
        );
    }
}

#[test]
fn confluent_kafka_admin_creates_grows_describes_and_deletes_topics() {
    let b = kafka_broker();
    let kafka = kafka_addr(&b);
    let result = scenario("admin", kafka, "made-by-python", 0);
    assert_eq!(result["partitions"], 3, "{result}");
    assert_eq!(result["again"], "TOPIC_ALREADY_EXISTS", "{result}");
    assert_eq!(result["grown"], 5, "{result}");
    assert_eq!(result["shrink"], "INVALID_PARTITIONS", "{result}");
    // [value, source]; source 1 is the topic's own config, 5 the default.
    let configs = &result["configs"];
    assert_eq!(
        configs["cleanup.policy"],
        serde_json::json!(["compact", "1"]),
        "the topic's own config: {result}"
    );
    assert_eq!(
        configs["retention.ms"],
        serde_json::json!(["604800000", "5"]),
        "every entry, defaults too: {result}"
    );
    assert_eq!(configs.as_object().unwrap().len(), 13, "{result}");
    let cluster = &result["cluster"];
    assert_eq!(cluster["controller"], 1, "{result}");
    let port: i64 = kafka.rsplit_once(':').unwrap().1.parse().unwrap();
    assert_eq!(
        cluster["nodes"],
        serde_json::json!([[1, "127.0.0.1", port]]),
        "{result}"
    );
    assert!(!cluster["id"].as_str().unwrap().is_empty(), "{result}");
    assert_eq!(result["gone"], true, "{result}");
    assert!(!b.ok(&["topic", "list"]).contains("made-by-python"));
}

#[test]
fn an_idempotent_librdkafka_producer_and_consumer_move_every_record_once_in_order() {
    let b = kafka_broker();
    let kafka = kafka_addr(&b);
    b.ok(&["topic", "create", "events", "-p", "3"]);
    let produced = scenario("confluent-produce", kafka, "events", 3000);
    assert_eq!(produced["acked"], 3000, "{produced}");
    assert_eq!(produced["unflushed"], 0, "{produced}");
    let consumed = scenario("confluent-consume", kafka, "events", 3000);
    check_records(&consumed["records"], 3000);
    // The same log over gRPC, keys where Eddy's producer puts them.
    let grpc = b.ok(&[
        "consume",
        "events",
        "--from-beginning",
        "-n",
        "3000",
        "--print-key",
        "--print-offset",
    ]);
    assert_eq!(grpc.lines().count(), 3000);
    b.ok_with_input(&["produce", "events", "--key-separator", ":"], b"k3:mine\n");
    let k3_partition = consumed["records"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r[0] == "k3")
        .map(|r| r[2].as_i64().unwrap())
        .unwrap();
    let grpc = b.ok(&[
        "consume",
        "events",
        "-p",
        &k3_partition.to_string(),
        "--from-beginning",
        "--idle-timeout-ms",
        "500",
    ]);
    assert!(
        grpc.lines().any(|l| l == "mine"),
        "k3 from gRPC lands with k3 from librdkafka"
    );
}

#[test]
fn kafka_python_produces_idempotently_and_consumes() {
    let b = kafka_broker();
    let kafka = kafka_addr(&b);
    b.ok(&["topic", "create", "py", "-p", "2"]);
    let result = scenario("kafka-python", kafka, "py", 500);
    assert_eq!(result["acked"], 500, "{result}");
    check_records(&result["records"], 500);
}

#[test]
fn three_librdkafka_consumers_share_a_group_rebalance_when_one_leaves_and_commit() {
    let b = kafka_broker();
    let kafka = kafka_addr(&b);
    b.ok(&["topic", "create", "shared", "-p", "3"]);
    let result = scenario("confluent-group", kafka, "shared", 600);
    assert_eq!(
        result["assigned"],
        serde_json::json!({"c0": 1, "c1": 1, "c2": 1}),
        "one partition each: {result}"
    );
    assert_eq!(
        result["after_leave"]
            .as_object()
            .unwrap()
            .values()
            .map(|v| v.as_i64().unwrap())
            .sum::<i64>(),
        3,
        "the two left hold every partition: {result}"
    );
    assert_eq!(result["first"], 600, "{result}");
    assert_eq!(
        result["second"], 600,
        "nothing read twice after the rebalance: {result}"
    );
    assert_eq!(result["distinct"], 1200, "{result}");
    // Kafka's admin tools see the same group.
    assert_eq!(result["listed"]["readers"], "STABLE", "{result}");
    let described = &result["described"];
    assert_eq!(described["state"], "STABLE", "{result}");
    assert_eq!(described["assignor"], "range", "{result}");
    let members = described["members"].as_array().unwrap();
    assert_eq!(members.len(), 2, "{result}");
    let mut partitions: Vec<i64> = members
        .iter()
        .flat_map(|m| m[1].as_array().unwrap().iter().map(|p| p.as_i64().unwrap()))
        .collect();
    partitions.sort();
    assert_eq!(partitions, [0, 1, 2], "{result}");
    // The coordinator gRPC clients use shows the group and its commits.
    let described = b.ok(&["group", "describe", "readers"]);
    assert!(
        described.contains("state Empty"),
        "every consumer closed: {described}"
    );
    // TOPIC PARTITION COMMITTED LOG-END LAG: each partition committed to
    // its end.
    let rows: Vec<Vec<&str>> = described
        .lines()
        .map(|l| l.split_whitespace().collect::<Vec<_>>())
        .filter(|f| f.first() == Some(&"shared"))
        .collect();
    assert_eq!(rows.len(), 3, "{described}");
    for f in rows {
        assert_eq!(f[2], f[3], "committed up to the end: {described}");
        assert_eq!(f[4], "0", "{described}");
    }
}

/// What the `sasl` scenario's user `reader` may do: write and read the
/// topic `allowed`, in group `sasl-readers`.
const READER_ACLS: [(&str, &str, &str); 3] = [
    ("write", "--topic", "allowed"),
    ("read", "--topic", "allowed"),
    ("read", "--group", "sasl-readers"),
];

/// The `sasl` scenario's result: `count` records written and read back,
/// the forbidden topic refused, a wrong password refused.
fn check_signed_in(result: &serde_json::Value, count: usize) {
    assert_eq!(result["acked"], count, "{result}");
    assert_eq!(
        result["errors"],
        serde_json::json!(["TOPIC_AUTHORIZATION_FAILED"]),
        "{result}"
    );
    assert_eq!(result["consumed"], count, "{result}");
    assert_eq!(result["wrong_password"], "_AUTHENTICATION", "{result}");
}

#[test]
fn a_scram_user_produces_and_consumes_what_its_acls_allow_and_no_more() {
    let s = SecuredBroker::start(&["--kafka-listen", "127.0.0.1:0"]);
    let kafka = kafka_addr(&s.broker).to_string();
    s.as_cluster_ok(&["topic", "create", "allowed", "-p", "2"], b"");
    s.as_cluster_ok(&["topic", "create", "forbidden", "-p", "1"], b"");
    s.create_user("reader");
    for (operation, resource, name) in READER_ACLS {
        s.grant(&[
            "--allow",
            "User:reader",
            "--operation",
            operation,
            resource,
            name,
        ]);
    }
    let result = scenario_with(
        "sasl",
        &kafka,
        "allowed",
        200,
        &[("KAFKA_PASSWORD", PASSWORD)],
    );
    check_signed_in(&result, 200);
    assert_eq!(
        s.as_cluster_ok(
            &[
                "consume",
                "forbidden",
                "--from-beginning",
                "--idle-timeout-ms",
                "500"
            ],
            b""
        ),
        "",
        "nothing reached the forbidden topic"
    );
    let described = s.as_cluster_ok(&["group", "describe", "sasl-readers"], b"");
    assert!(described.contains("allowed"), "{described}");
}

#[test]
fn batches_compressed_with_every_codec_by_both_clients_are_stored_and_read_back() {
    let b = kafka_broker();
    let kafka = kafka_addr(&b);
    b.ok(&["topic", "create", "squeezed", "-p", "2"]);
    let result = scenario("compressed", kafka, "squeezed", 300);
    for codec in ["gzip", "snappy", "lz4", "zstd"] {
        for client in ["confluent", "kafka-python"] {
            assert_eq!(
                result["acked"][format!("{client}-{codec}")],
                300,
                "{result}"
            );
        }
    }
    assert_eq!(result["errors"], serde_json::json!([]), "{result}");
    assert_eq!(result["distinct"], 8 * 300, "{result}");
    // Stored as sent: the log holds batches of every codec.
    let mut codecs = std::collections::BTreeSet::new();
    for partition in 0..2 {
        for segment in files(&b.partition_dir("squeezed", partition), "log") {
            let bytes = std::fs::read(segment).unwrap();
            for batch in eddy_log::batches(&bytes, eddy_log::BATCH_BYTES_LIMIT) {
                codecs.insert(batch.unwrap().compression().unwrap().name());
            }
        }
    }
    assert_eq!(
        codecs.into_iter().collect::<Vec<_>>(),
        ["gzip", "lz4", "snappy", "zstd"]
    );
    // Read over gRPC as any other batch.
    let grpc = b.ok(&["consume", "squeezed", "--from-beginning", "-n", "2400"]);
    assert_eq!(grpc.lines().count(), 2400);
    for codec in ["gzip", "snappy", "lz4", "zstd"] {
        for client in ["confluent", "kafka-python"] {
            let first = format!("{client} {codec} 0 ");
            assert!(
                grpc.lines().any(|l| l.starts_with(&first)),
                "no {first:?} over gRPC"
            );
        }
    }
}

/// A pipeline between Kafka clients: a librdkafka producer (lz4 batches)
/// feeds its input, a librdkafka consumer group reads its output.
#[test]
fn a_pipeline_reads_what_a_kafka_producer_wrote_and_a_kafka_consumer_reads_its_output() {
    let b = kafka_broker();
    let kafka = kafka_addr(&b).to_string();
    b.ok(&["topic", "create", "readings", "-p", "3"]);
    b.ok(&["processor", "upload", "shape", eddy_test_plugins::TRANSFORM]);
    let manifest = "apiVersion: eddy/v1\nkind: Pipeline\nmetadata:\n  name: reshape\nspec:\n  input:\n    topics: [readings]\n  processor:\n    name: shape\n    params: { fields: \"n:number,key\" }\n  outputs:\n    - topic: reshaped\n      partitions: 3\n  delivery: exactly-once\n";
    b.ok_with_input(&["pipeline", "apply", "-f", "-"], manifest.as_bytes());
    let fed = scenario("pipeline-feed", &kafka, "readings", 700);
    assert_eq!(fed["unflushed"], 0, "{fed}");
    let read = scenario("pipeline-read", &kafka, "reshaped", 700);
    let records = read["records"].as_array().unwrap();
    assert_eq!(records.len(), 700, "{read}");
    // Each key's readings in the order produced, each once, reshaped.
    let mut by_key: BTreeMap<String, Vec<i64>> = BTreeMap::new();
    for r in records {
        let key = r[0].as_str().unwrap().to_string();
        let value: serde_json::Value = serde_json::from_str(r[1].as_str().unwrap()).unwrap();
        assert_eq!(value["key"], key.as_str(), "{value}");
        by_key
            .entry(key)
            .or_default()
            .push(value["number"].as_i64().unwrap());
    }
    for (key, numbers) in by_key {
        let k: i64 = key[1..].parse().unwrap();
        let expected: Vec<i64> = (0..700).filter(|n| n % 7 == k).collect();
        assert_eq!(numbers, expected, "key {key}");
    }
}

/// With a certificate, the Kafka listener speaks only TLS (Kafka's
/// SASL_SSL): a SCRAM user works as over plain text, and a client
/// speaking plain text gets its connection closed.
#[test]
fn over_tls_a_scram_user_is_served_and_plain_text_is_closed() {
    use std::io::{Read, Write};

    let tmp = tempfile::tempdir().unwrap();
    let ca = eddy_tests::pki::Ca::new(tmp.path(), "cluster");
    let cert = ca.server("broker-1");
    let secret = tmp.path().join("secret");
    std::fs::write(&secret, "0123456789abcdef0123456789abcdef\n").unwrap();
    let p = |p: &Path| p.to_str().unwrap().to_string();
    let (ca_path, secret_path) = (p(&ca.cert), p(&secret));
    let b = crate::harness::TestBroker::start_with(&[
        "--tls-cert",
        &p(&cert.cert),
        "--tls-key",
        &p(&cert.key),
        "--tls-ca",
        &ca_path,
        "--auth",
        "required",
        "--cluster-secret-file",
        &secret_path,
        "--kafka-listen",
        "127.0.0.1:0",
    ]);
    let env = [
        ("EDDY_TLS_CA", ca_path.as_str()),
        ("EDDY_CLUSTER_SECRET_FILE", secret_path.as_str()),
    ];
    let admin = |args: &[&str], input: &[u8]| {
        let out = b.eddy_with_env(args, input, &env);
        assert!(out.success, "eddy {args:?}: {}", out.stderr);
    };
    admin(&["topic", "create", "allowed", "-p", "2"], b"");
    admin(&["topic", "create", "forbidden", "-p", "1"], b"");
    admin(
        &["user", "create", "reader"],
        format!("{PASSWORD}\n").as_bytes(),
    );
    for (operation, resource, name) in READER_ACLS {
        admin(
            &[
                "acl",
                "add",
                "--allow",
                "User:reader",
                "--operation",
                operation,
                resource,
                name,
            ],
            b"",
        );
    }
    let kafka = kafka_addr(&b).to_string();
    let result = scenario_with(
        "sasl",
        &kafka,
        "allowed",
        100,
        &[("KAFKA_PASSWORD", PASSWORD), ("KAFKA_CA", &ca_path)],
    );
    check_signed_in(&result, 100);

    // A plain-text request gets no answer: the connection is closed.
    let mut plain = std::net::TcpStream::connect(&kafka).unwrap();
    plain
        .set_read_timeout(Some(std::time::Duration::from_secs(20)))
        .unwrap();
    // ApiVersions v0, correlation id 1, no client id.
    plain
        .write_all(&[0, 0, 0, 10, 0, 18, 0, 0, 0, 0, 0, 1, 0xff, 0xff])
        .unwrap();
    let mut answer = Vec::new();
    let read = plain.read_to_end(&mut answer);
    assert!(
        matches!(read, Ok(0)) || read.is_err(),
        "plain text was answered: {answer:?}"
    );
}
