//! A cluster of real `eddy serve --peers` processes on 127.0.0.1.

use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use crate::harness::{EDDY, Out, run};

/// How long a broker may take to join (a majority must be up).
const JOIN_TIMEOUT: Duration = Duration::from_secs(60);

/// One broker of a [`TestCluster`].
pub struct Node {
    pub id: i32,
    pub addr: String,
    pub dir: PathBuf,
    child: Option<Child>,
}

/// Brokers 1..=n, each with its own port and data directory; all killed
/// when dropped.
pub struct TestCluster {
    pub nodes: Vec<Node>,
    peers: String,
    extra: Vec<String>,
    _tmp: tempfile::TempDir,
}

impl TestCluster {
    /// Starts `n` brokers at once (each waits for a majority before it
    /// says it is listening).
    pub fn start(n: usize, extra: &[&str]) -> TestCluster {
        let tmp = tempfile::tempdir().unwrap();
        let nodes: Vec<Node> = (1..=n as i32)
            .map(|id| Node {
                id,
                addr: format!("127.0.0.1:{}", free_port()),
                dir: tmp.path().join(format!("node-{id}")),
                child: None,
            })
            .collect();
        let peers = nodes
            .iter()
            .map(|n| format!("{}={}", n.id, n.addr))
            .collect::<Vec<_>>()
            .join(",");
        let mut cluster = TestCluster {
            nodes,
            peers,
            extra: extra.iter().map(|s| s.to_string()).collect(),
            _tmp: tmp,
        };
        let waiting: Vec<_> = (1..=n as i32).map(|id| cluster.spawn(id)).collect();
        for (id, listening) in (1..=n as i32).zip(waiting) {
            cluster.await_listening(id, listening);
        }
        cluster
    }

    fn node(&self, id: i32) -> &Node {
        &self.nodes[(id - 1) as usize]
    }

    fn spawn(&mut self, id: i32) -> mpsc::Receiver<()> {
        let node = &self.nodes[(id - 1) as usize];
        std::fs::create_dir_all(&node.dir).unwrap();
        let log = std::fs::File::create(node.dir.with_extension("log")).unwrap();
        let mut child = Command::new(EDDY)
            .args([
                "serve",
                "--node-id",
                &id.to_string(),
                "--peers",
                &self.peers,
            ])
            .arg("--data-dir")
            .arg(&node.dir)
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
        if let Some(mut c) = self.nodes[(id - 1) as usize].child.take() {
            c.kill().unwrap();
            c.wait().unwrap();
        }
    }

    /// Starts broker `id` again on its port and directory.
    pub fn start_again(&mut self, id: i32) {
        assert!(self.node(id).child.is_none(), "broker {id} is running");
        let listening = self.spawn(id);
        self.await_listening(id, listening);
    }

    /// Runs an `eddy` client command against broker `id` only.
    pub fn eddy_at(&self, id: i32, args: &[&str]) -> Out {
        run(
            Command::new(EDDY)
                .args(args)
                .args(["--bootstrap", &self.node(id).addr]),
            b"",
        )
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

    /// Runs `eddy` with every live broker as bootstrap.
    pub fn ok_with_input(&self, args: &[&str], input: &[u8]) -> String {
        let bootstrap = self
            .nodes
            .iter()
            .filter(|n| n.child.is_some())
            .map(|n| n.addr.as_str())
            .collect::<Vec<_>>()
            .join(",");
        let out = run(
            Command::new(EDDY)
                .args(args)
                .args(["--bootstrap", &bootstrap]),
            input,
        );
        assert!(out.success, "eddy {args:?} failed:\n{}", out.stderr);
        out.stdout
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
}

impl Drop for TestCluster {
    fn drop(&mut self) {
        for id in 1..=self.nodes.len() as i32 {
            self.kill9(id);
        }
    }
}

/// A port nothing listens on right now.
fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}
