//! Starts and stops `eddy` processes and runs client commands against them.

use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::{OnceLock, mpsc};
use std::time::Duration;

/// The `eddy` binary under test: `$EDDY_BIN` if set, else the `eddy-node`
/// this package builds, found beside the running test or tool (cargo puts
/// test binaries in `target/<profile>/deps`, binaries one level up).
pub fn eddy_binary() -> &'static Path {
    static BINARY: OnceLock<PathBuf> = OnceLock::new();
    BINARY.get_or_init(|| {
        if let Some(path) = std::env::var_os("EDDY_BIN") {
            return PathBuf::from(path);
        }
        let exe = std::env::current_exe().expect("the running binary has a path");
        let mut dir = exe.parent().expect("a binary lives in a directory");
        if dir.ends_with("deps") {
            dir = dir.parent().expect("deps has a parent");
        }
        let path = dir.join(format!("eddy-node{}", std::env::consts::EXE_SUFFIX));
        assert!(
            path.is_file(),
            "no eddy binary at {}: run the suites with cargo test -p eddy-tests, or set EDDY_BIN",
            path.display()
        );
        path
    })
}

/// Eddy's cache for the processes under test (the toolchains that build
/// processors, compiled processors): `EDDY_CACHE_DIR` if set, else
/// `eddy-cache` in the target directory, so that a second run of the suite
/// installs nothing.
pub fn cache_dir() -> PathBuf {
    if let Some(dir) = std::env::var_os("EDDY_CACHE_DIR") {
        return PathBuf::from(dir);
    }
    let target = eddy_binary()
        .ancestors()
        .nth(2)
        .expect("the eddy binary lives in <target>/<profile>/");
    target.join("eddy-cache")
}

/// A command that runs the `eddy` under test with the suite's cache.
pub fn eddy_command() -> Command {
    let mut cmd = Command::new(eddy_binary());
    cmd.env("EDDY_CACHE_DIR", cache_dir());
    // A secured run's TLS and credentials (`secured::set_access`).
    cmd.envs(crate::secured::access_env());
    cmd
}

/// Runs `eddy` with `args` and returns what it did.
pub fn eddy(args: &[&str]) -> Output {
    eddy_command()
        .args(args)
        .env_remove("EDDY_LOG")
        .output()
        .unwrap()
}

pub fn stdout(out: &Output) -> String {
    String::from_utf8(out.stdout.clone()).unwrap()
}

pub fn stderr(out: &Output) -> String {
    String::from_utf8(out.stderr.clone()).unwrap()
}

/// Writes `text` to `name` in `dir` and returns its path as a string.
pub fn write(dir: &Path, name: &str, text: &str) -> String {
    let path = dir.join(name);
    std::fs::write(&path, text).unwrap();
    path.to_str().unwrap().to_owned()
}

/// How long a broker may take to start.
const START_TIMEOUT: Duration = Duration::from_secs(20);

/// A broker process with its own data directory; killed when dropped.
#[derive(Debug)]
pub struct TestBroker {
    child: Option<Child>,
    pub addr: String,
    /// The Kafka listener's address, when started with `--kafka-listen`.
    pub kafka: Option<String>,
    pub dir: PathBuf,
    extra: Vec<String>,
    _tmp: Option<tempfile::TempDir>,
}

impl TestBroker {
    /// A broker on a free port with a fresh data directory.
    pub fn start() -> TestBroker {
        TestBroker::start_with(&[])
    }

    /// The same, with extra `eddy serve` arguments.
    pub fn start_with(extra: &[&str]) -> TestBroker {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("data");
        let mut b = TestBroker {
            child: None,
            addr: String::new(),
            kafka: None,
            dir,
            extra: extra.iter().map(|s| s.to_string()).collect(),
            _tmp: Some(tmp),
        };
        b.spawn("127.0.0.1:0");
        b
    }

    /// A broker on a free port keeping its data in `dir`, which the caller
    /// owns (a mounted filesystem, say).
    pub fn start_in(dir: &Path, extra: &[&str]) -> TestBroker {
        let mut b = TestBroker {
            child: None,
            addr: String::new(),
            kafka: None,
            dir: dir.to_path_buf(),
            extra: extra.iter().map(|s| s.to_string()).collect(),
            _tmp: None,
        };
        b.spawn("127.0.0.1:0");
        b
    }

    fn spawn(&mut self, listen: &str) {
        let mut cmd = eddy_command();
        cmd.args(["serve", "--data-dir"])
            .arg(&self.dir)
            .args(["--listen", listen]);
        cmd.args(&self.extra);
        let kafka = self.extra.iter().any(|a| a == "--kafka-listen");
        let markers: &[&str] = if kafka {
            &["listening on ", "kafka listening on "]
        } else {
            &["listening on "]
        };
        let (child, mut found) = spawn_and_wait_for(cmd, markers, Stdio::null());
        self.child = Some(child);
        self.addr = found.remove(0);
        self.kafka = found.pop();
    }

    /// Stops with SIGTERM (a clean shutdown) and starts again on the same
    /// port and directory.
    pub fn restart(&mut self) {
        self.terminate();
        let addr = self.addr.clone();
        self.spawn(&addr);
    }

    /// Kills with SIGKILL: no flush, no cleanup.
    pub fn kill9(&mut self) {
        kill9(&mut self.child);
    }

    /// Starts again after `kill9`, on the same port and directory.
    pub fn start_again(&mut self) {
        assert!(self.child.is_none(), "still running");
        let addr = self.addr.clone();
        self.spawn(&addr);
    }

    /// SIGTERM and wait for a clean exit.
    pub fn terminate(&mut self) {
        if let Some(mut c) = self.child.take() {
            signal(&c, "TERM");
            let status = wait_timeout(&mut c, Duration::from_secs(20));
            assert!(
                status.is_some_and(|s| s.success()),
                "broker exits cleanly on SIGTERM: {status:?}"
            );
        }
    }

    /// Runs an `eddy` client command against this broker.
    pub fn eddy(&self, args: &[&str]) -> Out {
        self.eddy_with_input(args, b"")
    }

    pub fn eddy_with_input(&self, args: &[&str], input: &[u8]) -> Out {
        eddy_against(&self.addr, args, input)
    }

    /// Runs an `eddy` client command with extra environment variables.
    pub fn eddy_with_env(&self, args: &[&str], input: &[u8], env: &[(&str, &str)]) -> Out {
        eddy_against_with(&self.addr, args, input, env)
    }

    /// Like `eddy`, and fails the test unless it succeeds.
    pub fn ok(&self, args: &[&str]) -> String {
        self.ok_with_input(args, b"")
    }

    pub fn ok_with_input(&self, args: &[&str], input: &[u8]) -> String {
        let out = self.eddy_with_input(args, input);
        assert!(out.success, "eddy {args:?} failed:\n{}", out.stderr);
        out.stdout
    }

    /// The data directory of one partition.
    pub fn partition_dir(&self, topic: &str, partition: u32) -> PathBuf {
        self.dir.join("topics").join(format!("{topic}-{partition}"))
    }
}

impl Drop for TestBroker {
    fn drop(&mut self) {
        self.kill9();
    }
}

/// What a finished command printed.
#[derive(Debug)]
pub struct Out {
    pub success: bool,
    pub stdout: String,
    pub stderr: String,
}

/// Runs the `eddy` client command `args` against the brokers in
/// `bootstrap`, feeding it `input`.
pub fn eddy_against(bootstrap: &str, args: &[&str], input: &[u8]) -> Out {
    eddy_against_with(bootstrap, args, input, &[])
}

/// `eddy_against` with extra environment variables (credentials, say).
pub fn eddy_against_with(
    bootstrap: &str,
    args: &[&str],
    input: &[u8],
    env: &[(&str, &str)],
) -> Out {
    run(
        eddy_command()
            .envs(env.iter().copied())
            .args(args)
            .args(["--bootstrap", bootstrap]),
        input,
    )
}

pub fn run(cmd: &mut Command, input: &[u8]) -> Out {
    let mut child = cmd
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("eddy runs");
    let mut stdin = child.stdin.take().unwrap();
    let input = input.to_vec();
    let writer = std::thread::spawn(move || {
        let _ = stdin.write_all(&input);
    });
    let output: Output = child.wait_with_output().unwrap();
    writer.join().unwrap();
    Out {
        success: output.status.success(),
        stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
    }
}

/// Spawns a server command and waits for the line announcing its address.
pub fn spawn_and_wait(cmd: Command, marker: &str) -> (Child, String) {
    spawn_and_wait_logging(cmd, marker, Stdio::null())
}

/// [`spawn_and_wait`] with the command's stderr going to `stderr`.
pub fn spawn_and_wait_logging(cmd: Command, marker: &str, stderr: Stdio) -> (Child, String) {
    let (child, mut found) = spawn_and_wait_for(cmd, &[marker], stderr);
    (child, found.remove(0))
}

/// Spawns a server command and waits for a line with each of `markers`,
/// returning the word after each (the first line for each marker counts).
pub fn spawn_and_wait_for(
    mut cmd: Command,
    markers: &[&str],
    stderr: Stdio,
) -> (Child, Vec<String>) {
    let mut child = cmd
        .stdout(Stdio::piped())
        .stderr(stderr)
        .spawn()
        .expect("eddy starts");
    let stdout = child.stdout.take().unwrap();
    let (tx, rx) = mpsc::channel();
    let wanted: Vec<String> = markers.iter().map(|m| m.to_string()).collect();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines() {
            let Ok(line) = line else { return };
            for (i, marker) in wanted.iter().enumerate() {
                if let Some(rest) = line.split(marker.as_str()).nth(1) {
                    let addr = rest
                        .split_whitespace()
                        .next()
                        .unwrap_or_default()
                        .to_string();
                    let _ = tx.send((i, addr));
                }
            }
        }
    });
    let deadline = std::time::Instant::now() + START_TIMEOUT;
    let mut found: Vec<Option<String>> = vec![None; markers.len()];
    while found.iter().any(Option::is_none) {
        let left = deadline.saturating_duration_since(std::time::Instant::now());
        match rx.recv_timeout(left) {
            Ok((i, addr)) => {
                found[i].get_or_insert(addr);
            }
            Err(_) => {
                let _ = child.kill();
                panic!("eddy did not start within {START_TIMEOUT:?} (waiting for {markers:?})");
            }
        }
    }
    (child, found.into_iter().flatten().collect())
}

/// Kills the process in `child` with SIGKILL, if there is one, and reaps it.
pub fn kill9(child: &mut Option<Child>) {
    if let Some(mut c) = child.take() {
        c.kill().unwrap();
        c.wait().unwrap();
    }
}

pub fn signal(child: &Child, sig: &str) {
    let ok = Command::new("kill")
        .arg(format!("-{sig}"))
        .arg(child.id().to_string())
        .status()
        .unwrap();
    assert!(ok.success());
}

pub fn wait_timeout(child: &mut Child, timeout: Duration) -> Option<std::process::ExitStatus> {
    let deadline = std::time::Instant::now() + timeout;
    while std::time::Instant::now() < deadline {
        if let Some(s) = child.try_wait().unwrap() {
            return Some(s);
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let _ = child.kill();
    None
}

/// The files of a partition directory with this extension, sorted.
pub fn files(dir: &Path, ext: &str) -> Vec<PathBuf> {
    let mut v: Vec<_> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == ext))
        .collect();
    v.sort();
    v
}

/// Lines `record-<i>` for `i` in `from..to`, numbers zero-padded to five
/// digits so that they sort as they count.
pub fn numbered_lines(from: usize, to: usize) -> String {
    (from..to).map(|i| format!("record-{i:05}\n")).collect()
}

/// `n` lines `key-<i % keys>:value-<i>`.
pub fn keyed_lines(n: usize, keys: usize) -> String {
    (0..n)
        .map(|i| format!("key-{}:value-{i}\n", i % keys))
        .collect()
}
