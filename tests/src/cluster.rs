//! A cluster of real `eddy serve --peers` processes on 127.0.0.1.

use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use crate::check::Replica;
use crate::link::{CLIENTS, Links};
use crate::process::{Out, eddy_command, files, kill9};

/// How long a broker may take to join (a majority must be up).
const JOIN_TIMEOUT: Duration = Duration::from_secs(60);

/// One broker of a [`TestCluster`].
#[derive(Debug)]
pub struct Node {
    pub id: i32,
    pub addr: String,
    /// Its Kafka listener, when the cluster has them; the same port
    /// after a restart.
    pub kafka: Option<String>,
    pub dir: PathBuf,
    child: Option<Child>,
}

/// Brokers 1..=n, each with its own port and data directory; all killed
/// when dropped.
#[derive(Debug)]
pub struct TestCluster {
    pub nodes: Vec<Node>,
    /// The proxies brokers call each other through, and clients call
    /// them through, when started with [`TestCluster::start_linked`].
    pub links: Option<Links>,
    /// Environment every client command of this cluster runs with (the
    /// TLS CA and credentials of a secured cluster).
    pub client_env: Vec<(String, String)>,
    extra: Vec<String>,
    tmp: Option<tempfile::TempDir>,
}

impl TestCluster {
    /// Starts `n` brokers at once (each waits for a majority before it
    /// says it is listening).
    pub fn start(n: usize, extra: &[&str]) -> TestCluster {
        TestCluster::start_with_links(n, extra, false, false)
    }

    /// [`TestCluster::start`] with a Kafka listener on each broker.
    pub fn start_with_kafka(n: usize, extra: &[&str]) -> TestCluster {
        TestCluster::start_with_links(n, extra, false, true)
    }

    /// Every broker's Kafka address, comma-separated (a Kafka client's
    /// `bootstrap.servers`).
    pub fn kafka_bootstrap(&self) -> String {
        self.nodes
            .iter()
            .filter_map(|n| n.kafka.clone())
            .collect::<Vec<_>>()
            .join(",")
    }

    /// The same, with every call one broker makes to another, and every
    /// client's call after bootstrap, going through a proxy in
    /// [`TestCluster::links`]: each broker advertises its client link.
    pub fn start_linked(n: usize, extra: &[&str]) -> TestCluster {
        TestCluster::start_with_links(n, extra, true, false)
    }

    /// [`TestCluster::start_linked`] with a Kafka listener on each broker
    /// (Kafka clients reach them directly, not through the links).
    pub fn start_linked_with_kafka(n: usize, extra: &[&str]) -> TestCluster {
        TestCluster::start_with_links(n, extra, true, true)
    }

    fn start_with_links(n: usize, extra: &[&str], linked: bool, kafka: bool) -> TestCluster {
        let tmp = tempfile::tempdir().unwrap();
        // Each broker's port stays bound here until it starts: the link
        // proxies take ports of their own meanwhile, and one that took a
        // broker's would route that broker's calls elsewhere, even back to
        // their sender (a Raft node must never call itself).
        let reserve = || -> Vec<std::net::TcpListener> {
            (0..n)
                .map(|_| std::net::TcpListener::bind("127.0.0.1:0").unwrap())
                .collect()
        };
        let reserved = reserve();
        let kafka_ports = if kafka { reserve() } else { Vec::new() };
        let nodes: Vec<Node> = (1..=n as i32)
            .zip(&reserved)
            .map(|(id, port)| Node {
                id,
                addr: port.local_addr().unwrap().to_string(),
                kafka: kafka_ports
                    .get((id - 1) as usize)
                    .map(|p| p.local_addr().unwrap().to_string()),
                dir: tmp.path().join(format!("node-{id}")),
                child: None,
            })
            .collect();
        let links =
            linked.then(|| Links::start(&nodes.iter().map(|n| (n.id, n.addr.clone())).collect()));
        drop(reserved);
        drop(kafka_ports);
        let mut cluster = TestCluster {
            nodes,
            links,
            client_env: Vec::new(),
            extra: extra.iter().map(|s| s.to_string()).collect(),
            tmp: Some(tmp),
        };
        let waiting: Vec<_> = (1..=n as i32).map(|id| cluster.spawn(id)).collect();
        for (id, listening) in (1..=n as i32).zip(waiting) {
            cluster.await_listening(id, listening);
        }
        cluster
    }

    /// Broker `id`'s `--peers`: itself where it listens, the others where
    /// it calls them (through its links, if any).
    fn peers_for(&self, id: i32) -> String {
        self.nodes
            .iter()
            .map(|n| match &self.links {
                Some(links) if n.id != id => format!("{}={}", n.id, links.address(id, n.id)),
                _ => format!("{}={}", n.id, n.addr),
            })
            .collect::<Vec<_>>()
            .join(",")
    }

    fn node(&self, id: i32) -> &Node {
        &self.nodes[(id - 1) as usize]
    }

    fn spawn(&mut self, id: i32) -> mpsc::Receiver<()> {
        let peers = self.peers_for(id);
        let advertise = self
            .links
            .as_ref()
            .map(|links| links.address(CLIENTS, id).to_string());
        let node = &self.nodes[(id - 1) as usize];
        std::fs::create_dir_all(&node.dir).unwrap();
        // Appended to: a restarted broker's log follows its earlier life.
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(node.dir.with_extension("log"))
            .unwrap();
        let mut child = eddy_command()
            .args(["serve", "--node-id", &id.to_string(), "--peers", &peers])
            .arg("--data-dir")
            .arg(&node.dir)
            .args(advertise.iter().flat_map(|a| ["--advertise", a.as_str()]))
            .args(
                node.kafka
                    .iter()
                    .flat_map(|k| ["--kafka-listen", k.as_str()]),
            )
            .args(&self.extra)
            .stdout(Stdio::piped())
            .stderr(log)
            .spawn()
            .expect("eddy starts");
        let stdout = child.stdout.take().unwrap();
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { return };
                if line.contains("listening on ") {
                    let _ = tx.send(());
                }
            }
        });
        self.nodes[(id - 1) as usize].child = Some(child);
        rx
    }

    fn await_listening(&mut self, id: i32, listening: mpsc::Receiver<()>) {
        if listening.recv_timeout(JOIN_TIMEOUT).is_err() {
            let log = std::fs::read_to_string(self.node(id).dir.with_extension("log"))
                .unwrap_or_default();
            panic!("broker {id} did not start within {JOIN_TIMEOUT:?}; its log:\n{log}");
        }
    }

    /// Kills broker `id` with SIGKILL.
    pub fn kill9(&mut self, id: i32) {
        kill9(&mut self.nodes[(id - 1) as usize].child);
    }

    /// Starts broker `id` again on its port and directory.
    pub fn start_again(&mut self, id: i32) {
        assert!(self.node(id).child.is_none(), "broker {id} is running");
        let listening = self.spawn(id);
        self.await_listening(id, listening);
    }

    /// Starts broker `id` again without waiting for it to rejoin (it
    /// serves its port before that); [`TestCluster::await_started`] waits.
    pub fn start_again_in_background(&mut self, id: i32) -> mpsc::Receiver<()> {
        assert!(self.node(id).child.is_none(), "broker {id} is running");
        self.spawn(id)
    }

    /// Waits until a broker started in the background has rejoined.
    pub fn await_started(&mut self, id: i32, started: mpsc::Receiver<()>) {
        self.await_listening(id, started);
    }

    /// Creates `topic` with `partitions`, three replicas and
    /// `min.insync.replicas=2`, at broker 1.
    pub fn create_replicated(&self, topic: &str, partitions: u32) {
        self.ok_at(
            1,
            &[
                "topic",
                "create",
                topic,
                "-p",
                &partitions.to_string(),
                "-r",
                "3",
                "--config",
                "min.insync.replicas=2",
            ],
        );
    }

    /// Runs an `eddy` client command against broker `id` only.
    pub fn eddy_at(&self, id: i32, args: &[&str]) -> Out {
        self.eddy_at_with_input(id, args, b"")
    }

    /// Runs an `eddy` client command against broker `id` only, feeding it
    /// `input`.
    pub fn eddy_at_with_input(&self, id: i32, args: &[&str], input: &[u8]) -> Out {
        self.client(&self.node(id).addr, args, input)
    }

    /// Like `eddy_at`, and fails the test unless it succeeds.
    pub fn ok_at(&self, id: i32, args: &[&str]) -> String {
        let out = self.eddy_at(id, args);
        assert!(
            out.success,
            "eddy {args:?} at broker {id} failed:\n{}",
            out.stderr
        );
        out.stdout
    }

    /// Runs `eddy` with every running broker as bootstrap, feeding it
    /// `input`.
    pub fn eddy_with_input(&self, args: &[&str], input: &[u8]) -> Out {
        self.client(&self.bootstrap(), args, input)
    }

    fn client(&self, bootstrap: &str, args: &[&str], input: &[u8]) -> Out {
        crate::process::run(
            eddy_command()
                .envs(self.client_env.iter().map(|(k, v)| (k, v)))
                .args(args)
                .args(["--bootstrap", bootstrap]),
            input,
        )
    }

    /// Like `eddy_with_input`, and fails the test unless it succeeds.
    pub fn ok_with_input(&self, args: &[&str], input: &[u8]) -> String {
        let out = self.eddy_with_input(args, input);
        assert!(out.success, "eddy {args:?} failed:\n{}", out.stderr);
        out.stdout
    }

    /// Sends a signal (`STOP`, `CONT`, …) to broker `id`.
    pub fn signal(&self, id: i32, sig: &str) {
        let child = self.node(id).child.as_ref().expect("broker is running");
        crate::process::signal(child, sig);
    }

    /// The bootstrap list of every running broker (through the client
    /// links, if any).
    pub fn bootstrap(&self) -> String {
        self.nodes
            .iter()
            .filter(|n| n.child.is_some())
            .map(|n| match &self.links {
                Some(links) => links.address(CLIENTS, n.id),
                None => n.addr.as_str(),
            })
            .collect::<Vec<_>>()
            .join(",")
    }

    /// Runs `eddy` with every running broker as bootstrap.
    pub fn eddy(&self, args: &[&str]) -> Out {
        self.eddy_with_input(args, b"")
    }

    /// Per partition of `topic` as a running broker describes it.
    pub fn partitions(&self, topic: &str) -> Vec<PartitionRow> {
        for n in self.nodes.iter().filter(|n| n.child.is_some()) {
            if let Some(rows) = self.partitions_at(n.id, topic) {
                return rows;
            }
        }
        panic!("no running broker describes {topic}");
    }

    /// Per partition of `topic` as broker `id` describes it.
    pub fn partitions_at(&self, id: i32, topic: &str) -> Option<Vec<PartitionRow>> {
        let out = self.eddy_at(id, &["topic", "describe", topic]);
        out.success.then(|| {
            out.stdout
                .lines()
                .filter(|l| l.trim_start().starts_with(|c: char| c.is_ascii_digit()))
                .map(PartitionRow::parse)
                .collect()
        })
    }

    /// Waits until every partition of `topic` has its whole replica set in
    /// sync, and returns the rows.
    pub fn await_in_sync(&self, topic: &str, within: Duration) -> Vec<PartitionRow> {
        let deadline = Instant::now() + within;
        loop {
            let rows = self.partitions(topic);
            if rows
                .iter()
                .all(|r| r.leader >= 0 && r.isr.len() == r.replicas.len())
            {
                return rows;
            }
            assert!(
                Instant::now() < deadline,
                "{topic} not in sync within {within:?}: {rows:?}"
            );
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    /// The data directory of `topic`-`partition` on broker `id`.
    pub fn partition_dir(&self, id: i32, topic: &str, partition: u32) -> PathBuf {
        self.node(id)
            .dir
            .join("topics")
            .join(format!("{topic}-{partition}"))
    }

    /// The process id of broker `id`, if it is running.
    pub fn pid(&self, id: i32) -> Option<u32> {
        self.node(id).child.as_ref().map(Child::id)
    }

    /// Whether broker `id` is running (it may be paused).
    pub fn is_running(&self, id: i32) -> bool {
        self.node(id).child.is_some()
    }

    /// Every replica of `topic` the rows name, read from its files.
    pub fn replicas(&self, topic: &str, rows: &[PartitionRow]) -> Vec<Replica> {
        rows.iter()
            .flat_map(|r| {
                r.replicas.iter().map(|&broker| Replica {
                    broker,
                    partition: r.partition,
                    records: replica_records(&self.partition_dir(broker, topic, r.partition)),
                })
            })
            .collect()
    }

    /// The address of broker `id`.
    pub fn addr(&self, id: i32) -> &str {
        &self.node(id).addr
    }

    /// The controller leader broker `id` reports, if any.
    pub fn controller_seen_by(&self, id: i32) -> Option<i32> {
        let out = self.eddy_at(id, &["cluster", "describe"]);
        if !out.success {
            return None;
        }
        out.stdout
            .lines()
            .find_map(|l| l.strip_prefix("controller  "))
            .and_then(|c| c.trim().parse().ok())
    }

    /// Waits until broker `id` names a controller leader.
    pub fn await_controller(&self, id: i32, within: Duration) -> i32 {
        let deadline = Instant::now() + within;
        loop {
            if let Some(c) = self.controller_seen_by(id) {
                return c;
            }
            assert!(
                Instant::now() < deadline,
                "no controller leader within {within:?}"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// With `EDDY_TEST_KEEP` set, keeps the brokers' directories (data and
    /// logs) after the cluster stops, and says where: for a run that failed
    /// without panicking.
    pub fn keep_if_asked(&mut self) {
        if std::env::var_os("EDDY_TEST_KEEP").is_some()
            && let Some(tmp) = self.tmp.take()
        {
            eprintln!("kept the brokers' directories in {}", tmp.keep().display());
        }
    }
}

impl Drop for TestCluster {
    fn drop(&mut self) {
        for id in 1..=self.nodes.len() as i32 {
            self.kill9(id);
        }
        if std::thread::panicking() {
            self.keep_if_asked();
            // What the brokers said, for the failure report.
            for n in &self.nodes {
                let log = std::fs::read_to_string(n.dir.with_extension("log")).unwrap_or_default();
                let lines: Vec<&str> = log.lines().collect();
                eprintln!("--- broker {} (last 80 lines) ---", n.id);
                for l in &lines[lines.len().saturating_sub(80)..] {
                    eprintln!("{l}");
                }
            }
        }
    }
}

/// One row of `eddy topic describe`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PartitionRow {
    pub partition: u32,
    pub leader: i32,
    pub epoch: i32,
    pub replicas: Vec<i32>,
    pub isr: Vec<i32>,
    pub high_watermark: u64,
    pub log_end: u64,
}

impl PartitionRow {
    fn parse(line: &str) -> PartitionRow {
        let f: Vec<&str> = line.split_whitespace().collect();
        let ids = |s: &str| -> Vec<i32> {
            s.split(',')
                .filter(|x| !x.is_empty())
                .map(|x| x.parse().unwrap())
                .collect()
        };
        PartitionRow {
            partition: f[0].parse().unwrap(),
            leader: f[1].parse().unwrap_or(-1),
            epoch: f[2].parse().unwrap(),
            replicas: ids(f[3]),
            isr: ids(f[4]),
            high_watermark: f[6].parse().unwrap(),
            log_end: f[7].parse().unwrap(),
        }
    }
}

/// A partition's log as bytes: its segments in order, concatenated.
pub fn log_bytes(dir: &std::path::Path) -> Vec<u8> {
    let mut bytes = Vec::new();
    for f in files(dir, "log") {
        bytes.extend(std::fs::read(f).unwrap());
    }
    bytes
}

/// What one replica's files hold: a digest of the record (key and value)
/// at each offset, read straight from its segments. Reading stops at the
/// first batch that does not parse (a torn tail).
pub fn replica_records(dir: &std::path::Path) -> std::collections::BTreeMap<u64, u64> {
    let mut records = std::collections::BTreeMap::new();
    for f in files(dir, "log") {
        let bytes = std::fs::read(f).unwrap();
        for batch in eddy_log::batches(&bytes, eddy_log::BATCH_BYTES_LIMIT) {
            let Ok(stored) = batch.and_then(|b| b.decoded()) else {
                break;
            };
            for r in stored.iter() {
                let Ok(r) = r else { break };
                let key = crc32c::crc32c(r.key.unwrap_or_default());
                let value = crc32c::crc32c(r.value.unwrap_or_default());
                records.insert(r.offset.0, u64::from(key) << 32 | u64::from(value));
            }
        }
    }
    records
}
