//! What tools that are not Eddy's see: Python's gRPC reflection client,
//! and log files.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use eddy_test_plugins as wasm;

use crate::harness::{TestBroker, eddy_binary, spawn_and_wait_logging};

/// Python's grpcio and grpcio-reflection, installed into the target
/// directory on first use (pinned, from PyPI).
fn python_grpc() -> PathBuf {
    let target = eddy_binary().ancestors().nth(2).unwrap();
    let dir = target.join("pytools");
    if !dir.join("grpc_reflection").is_dir() {
        let status = Command::new("python3")
            .args([
                "-m",
                "pip",
                "install",
                "--quiet",
                "--disable-pip-version-check",
            ])
            .arg("--target")
            .arg(&dir)
            .args(["grpcio==1.66.0", "grpcio-reflection==1.66.0"])
            .status()
            .expect("python3 runs");
        assert!(status.success(), "pip could not install grpcio-reflection");
    }
    dir
}

#[test]
fn python_grpc_reflection_sees_every_service_in_both_protocol_versions() {
    let b = TestBroker::start();
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("suite/tools/reflection.py");
    let out = Command::new("python3")
        .arg(script)
        .arg(&b.addr)
        .env("PYTHONPATH", python_grpc())
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    let seen: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    for version in ["v1alpha", "v1"] {
        let names: Vec<&str> = seen[version]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_str().unwrap())
            .collect();
        for service in [
            "eddy.v1.Admin",
            "eddy.v1.Produce",
            "eddy.v1.Consume",
            "eddy.v1.Groups",
            "eddy.v1.Processors",
            "eddy.v1.Pipelines",
            "grpc.health.v1.Health",
        ] {
            assert!(
                names.contains(&service),
                "{version}: {service} in {names:?}"
            );
        }
    }
    assert_eq!(seen["pipelines_file"], "eddy/v1/pipelines.proto");
}

#[test]
fn logs_written_to_a_file_or_a_pipe_carry_no_colour_codes() {
    let tmp = tempfile::tempdir().unwrap();
    let log = tmp.path().join("broker.log");
    let mut cmd = Command::new(eddy_binary());
    cmd.args(["serve", "--listen", "127.0.0.1:0", "--data-dir"])
        .arg(tmp.path().join("data"))
        .env_remove("EDDY_LOG");
    let file = std::fs::File::create(&log).unwrap();
    let (mut child, _) = spawn_and_wait_logging(cmd, "listening on ", Stdio::from(file));
    // A clean stop logs at info on the way out.
    crate::harness::signal(&child, "TERM");
    crate::harness::wait_timeout(&mut child, std::time::Duration::from_secs(20));
    let text = std::fs::read_to_string(&log).unwrap();
    assert!(text.contains("INFO"), "{text}");
    assert!(
        !text.contains('\u{1b}'),
        "colour codes in a log file: {text:?}"
    );
    // A processor under test logs to a pipe.
    let input = crate::write(tmp.path(), "in.jsonl", "{\"value\": \"x\"}\n");
    let out = crate::eddy(&["processor", "test", wasm::PASSTHROUGH, "--input", &input]);
    let stderr = crate::stderr(&out);
    assert!(out.status.success(), "{stderr}");
    assert!(
        !stderr.contains('\u{1b}'),
        "colour codes in a pipe: {stderr:?}"
    );
}
