//! `eddy dev --nodes 3`: a local cluster of child processes. A broker
//! killed with `kill -9` loses nothing acknowledged while the others go
//! on, and SIGTERM (what Ctrl-C sends the whole terminal) stops them all.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use crate::harness::{Out, eddy_binary, run, wait_timeout};

/// A port such that it and the next two are free right now.
fn three_free_ports() -> u16 {
    loop {
        let first = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = first.local_addr().unwrap().port();
        if port > 65_000 {
            continue;
        }
        let next: Vec<_> = (1..3)
            .filter_map(|i| std::net::TcpListener::bind(("127.0.0.1", port + i)).ok())
            .collect();
        if next.len() == 2 {
            return port;
        }
    }
}

fn eddy(bootstrap: &str, args: &[&str], input: &[u8]) -> Out {
    run(
        Command::new(eddy_binary())
            .args(args)
            .env("EDDY_BOOTSTRAP", bootstrap),
        input,
    )
}

/// `eddy dev`, stopped with SIGTERM (which stops its brokers) when the
/// test ends, passed or failed, unless it exited already.
struct Dev(std::process::Child);

impl Drop for Dev {
    fn drop(&mut self) {
        if let Ok(None) = self.0.try_wait() {
            crate::harness::signal(&self.0, "TERM");
            if wait_timeout(&mut self.0, Duration::from_secs(20)).is_none() {
                let _ = self.0.kill();
            }
        }
    }
}

fn alive(pid: u32) -> bool {
    Command::new("kill")
        .args(["-0", &pid.to_string()])
        .stderr(Stdio::null())
        .status()
        .unwrap()
        .success()
}

#[test]
fn dev_nodes_runs_a_cluster_that_outlives_a_killed_broker_and_stops_as_one() {
    let tmp = tempfile::tempdir().unwrap();
    let port = three_free_ports();
    let kafka_port = loop {
        let p = three_free_ports();
        if p.abs_diff(port) > 2 {
            break p;
        }
    };
    let mut dev = Dev(Command::new(eddy_binary())
        .args([
            "dev",
            "--nodes",
            "3",
            "--listen",
            &format!("127.0.0.1:{port}"),
            "--kafka-listen",
            &format!("127.0.0.1:{kafka_port}"),
        ])
        .arg("--data-dir")
        .arg(tmp.path().join(".eddy"))
        .args(["--broker-session-timeout-ms", "2000"])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap());
    let stdout = dev.0.stdout.take().unwrap();
    let (tx, lines) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines() {
            let Ok(line) = line else { return };
            let _ = tx.send(line);
        }
    });
    let mut printed = Vec::new();
    while !printed
        .iter()
        .any(|l: &String| l.contains("Ctrl-C stops them all"))
    {
        match lines.recv_timeout(Duration::from_secs(60)) {
            Ok(line) => printed.push(line),
            Err(_) => panic!("eddy dev did not start its cluster: {printed:?}"),
        }
    }
    // "  node 1  127.0.0.1:PORT  pid PID  data … log …"
    let pids: Vec<u32> = printed
        .iter()
        .filter(|l| l.trim_start().starts_with("node "))
        .map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            f[4].parse().unwrap()
        })
        .collect();
    assert_eq!(pids.len(), 3, "{printed:?}");
    let bootstrap = (0..3)
        .map(|i| format!("127.0.0.1:{}", port + i))
        .collect::<Vec<_>>()
        .join(",");
    assert!(
        printed
            .iter()
            .any(|l| l.contains(&format!("export EDDY_BOOTSTRAP={bootstrap}"))),
        "{printed:?}"
    );
    // One Kafka listener per broker, each in the metadata.
    let kafka = (0..3)
        .map(|i| format!("127.0.0.1:{}", kafka_port + i))
        .collect::<Vec<_>>()
        .join(",");
    assert!(
        printed
            .iter()
            .any(|l| l.contains(&format!("kafka listening on {kafka}"))),
        "{printed:?}"
    );
    let listed = crate::kafka::kcat_ok(&kafka, &["-L"], b"");
    for i in 0..3u16 {
        assert!(
            listed.contains(&format!("broker {} at 127.0.0.1:{}", i + 1, kafka_port + i)),
            "{listed}"
        );
    }

    let created = eddy(
        &bootstrap,
        &[
            "topic",
            "create",
            "orders",
            "-p",
            "3",
            "--config",
            "min.insync.replicas=2",
        ],
        b"",
    );
    assert!(created.success, "{}", created.stderr);
    assert!(
        created.stdout.contains("replication factor 3"),
        "a dev cluster replicates three ways by default: {}",
        created.stdout
    );
    let first: String = (1..=1000).map(|i| format!("{i}\n")).collect();
    let produced = eddy(&bootstrap, &["produce", "orders"], first.as_bytes());
    assert!(produced.success, "{}", produced.stderr);

    // Broker 1 dies; the others take over its partitions.
    assert!(
        Command::new("kill")
            .args(["-9", &pids[0].to_string()])
            .status()
            .unwrap()
            .success()
    );
    let second: String = (1001..=2000).map(|i| format!("{i}\n")).collect();
    let produced = eddy(&bootstrap, &["produce", "orders"], second.as_bytes());
    assert!(
        produced.success,
        "produce after the kill: {}",
        produced.stderr
    );
    let consumed = eddy(
        &bootstrap,
        &["consume", "orders", "--from-beginning", "-n", "2000"],
        b"",
    );
    assert!(consumed.success, "{}", consumed.stderr);
    let mut got: Vec<u32> = consumed
        .stdout
        .lines()
        .map(|l| l.parse().unwrap())
        .collect();
    got.sort();
    assert_eq!(
        got,
        (1..=2000).collect::<Vec<_>>(),
        "every acknowledged record, once"
    );

    let described = eddy(&bootstrap, &["cluster", "describe"], b"");
    assert!(described.success, "{}", described.stderr);
    let row = described
        .stdout
        .lines()
        .find(|l| l.trim_start().starts_with("1 "))
        .unwrap_or_default()
        .to_string();
    assert!(
        row.contains("fenced"),
        "the dead broker shows as fenced: {}",
        described.stdout
    );

    // It tells of the broker that died, and how to start it again.
    let told = lines
        .recv_timeout(Duration::from_secs(10))
        .unwrap_or_default();
    assert!(told.contains("broker 1 exited"), "{told}");

    crate::harness::signal(&dev.0, "TERM");
    let status = wait_timeout(&mut dev.0, Duration::from_secs(40));
    assert!(
        status.is_some_and(|s| s.success()),
        "eddy dev stops cleanly: {status:?}"
    );
    for pid in &pids[1..] {
        assert!(!alive(*pid), "broker pid {pid} stopped with eddy dev");
    }
}
