//! Standalone `eddy worker` processes.

use std::process::Child;

use crate::process::{eddy_command, kill9, signal, spawn_and_wait};

/// A standalone `eddy worker` process; killed when dropped.
#[derive(Debug)]
pub struct TestWorker {
    child: Option<Child>,
    bootstrap: String,
    id: String,
    cache: tempfile::TempDir,
}

impl TestWorker {
    /// A worker named `id` joining the pipelines of the cluster at
    /// `bootstrap`.
    pub fn start(bootstrap: &str, id: &str) -> TestWorker {
        let mut w = TestWorker {
            child: None,
            bootstrap: bootstrap.to_string(),
            id: id.to_string(),
            cache: tempfile::tempdir().unwrap(),
        };
        w.spawn();
        w
    }

    fn spawn(&mut self) {
        let mut cmd = eddy_command();
        cmd.args(["worker", "--id", &self.id, "--bootstrap", &self.bootstrap])
            .args(["--session-timeout-ms", "1500"])
            .arg("--cache-dir")
            .arg(self.cache.path());
        let (child, _) = spawn_and_wait(cmd, "running pipelines from ");
        self.child = Some(child);
    }

    /// SIGKILL: no commit, no leave.
    pub fn kill9(&mut self) {
        kill9(&mut self.child);
    }

    pub fn start_again(&mut self) {
        assert!(self.child.is_none(), "still running");
        self.spawn();
    }

    /// SIGSTOP: the process keeps its state but does nothing, as a worker
    /// on a stalled machine; past its session timeout it is a zombie.
    pub fn pause(&self) {
        if let Some(c) = &self.child {
            signal(c, "STOP");
        }
    }

    /// SIGCONT after [`TestWorker::pause`].
    pub fn unpause(&self) {
        if let Some(c) = &self.child {
            signal(c, "CONT");
        }
    }
}

impl Drop for TestWorker {
    fn drop(&mut self) {
        self.kill9();
    }
}
