//! The Kafka clients the tests run against Eddy's Kafka listener:
//! installed by `scripts/kafka-tools` into the target directory (Debian's
//! kcat, PyPI's confluent-kafka and kafka-python), and the scenarios of
//! `suite/kafka/clients.py` that drive the Python ones.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

/// Where `scripts/kafka-tools` put kcat and the Python clients
/// (installed on first use).
pub fn tools_dir() -> &'static Path {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        let root = Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap();
        let out = Command::new(root.join("scripts/kafka-tools"))
            .output()
            .expect("scripts/kafka-tools runs");
        assert!(
            out.status.success(),
            "scripts/kafka-tools could not install the Kafka clients: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let dir = String::from_utf8_lossy(&out.stdout).trim().to_string();
        root.join(dir)
    })
}

/// The command that runs a `clients.py` scenario, bounded to `limit_s`
/// seconds.
pub fn scenario_command(
    name: &str,
    kafka: &str,
    topic: &str,
    count: usize,
    limit_s: u64,
) -> Command {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("suite/kafka/clients.py");
    let mut command = Command::new("timeout");
    command
        .arg(limit_s.to_string())
        .arg("python3")
        .arg(script)
        .args([name, kafka, topic, &count.to_string()])
        .env("PYTHONPATH", tools_dir().join("python"));
    command
}
