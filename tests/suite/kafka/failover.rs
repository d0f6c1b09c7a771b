//! Kafka clients against a three-broker cluster whose leader dies.

use std::collections::BTreeSet;
use std::io::{BufRead, BufReader};
use std::process::Stdio;
use std::time::Duration;

use eddy_tests::cluster::TestCluster;

use super::python::{scenario, scenario_command};

/// An idempotent librdkafka producer (acks=all) goes on while the leader
/// of a partition it writes to is killed with SIGKILL: every record it
/// was told is written is there, once.
#[test]
fn a_kafka_producer_goes_on_across_a_leader_kill_and_loses_nothing_acknowledged() {
    let mut c = TestCluster::start_with_kafka(3, &[]);
    c.create_replicated("orders", 3);
    c.await_in_sync("orders", Duration::from_secs(30));
    let bootstrap = c.kafka_bootstrap();
    let mut producer = scenario_command("failover-produce", &bootstrap, "orders", 6000)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(producer.stdout.take().unwrap()).lines();
    assert_eq!(
        lines.next().and_then(Result::ok).as_deref(),
        Some("producing"),
        "the producer did not start"
    );
    std::thread::sleep(Duration::from_millis(500));
    let victim = c.partitions("orders")[0].leader;
    c.kill9(victim);
    let last = lines.map_while(Result::ok).last().unwrap_or_default();
    let out = producer.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "the producer failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let result: serde_json::Value = serde_json::from_str(&last).unwrap();
    assert_eq!(result["failures"], 0, "{}", result["failed"]);
    assert_eq!(result["unflushed"], 0);
    let acked: BTreeSet<&str> = result["acked"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a[1].as_str().unwrap())
        .collect();
    assert_eq!(acked.len(), 6000, "every record acknowledged once");

    let survivors: Vec<String> = c
        .nodes
        .iter()
        .filter(|n| n.id != victim)
        .filter_map(|n| n.kafka.clone())
        .collect();
    let read = scenario("read-all", &survivors.join(","), "orders", 6000);
    let values: Vec<&str> = read["values"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap())
        .collect();
    let distinct: BTreeSet<&str> = values.iter().copied().collect();
    assert_eq!(distinct.len(), values.len(), "a record was written twice");
    let lost: Vec<&&str> = acked.difference(&distinct).take(5).collect();
    assert!(lost.is_empty(), "acknowledged but lost: {lost:?}");
}
