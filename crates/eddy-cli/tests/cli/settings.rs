use std::process::Command;

use crate::harness::{EDDY, run, spawn_and_wait};

#[test]
fn settings_come_from_a_toml_file_and_flags_override_it() {
    let tmp = tempfile::tempdir().unwrap();
    let config = tmp.path().join("eddy.toml");
    std::fs::write(
        &config,
        format!(
            "data_dir = {:?}\nlisten = \"127.0.0.1:0\"\ndefault_partitions = 3\n[topic_defaults]\n\"retention.ms\" = \"60000\"\n",
            tmp.path().join("data")
        ),
    )
    .unwrap();
    let mut cmd = Command::new(EDDY);
    cmd.arg("serve")
        .arg("--config")
        .arg(&config)
        .args(["--node-id", "7"]);
    let (mut child, addr) = spawn_and_wait(cmd, "listening on ");
    let out = run(
        Command::new(EDDY).args(["topic", "create", "d", "--bootstrap", &addr]),
        b"",
    );
    assert!(out.stdout.contains("with 3 partition(s)"), "{out:?}");
    let described = run(
        Command::new(EDDY).args(["topic", "describe", "d", "--bootstrap", &addr]),
        b"",
    );
    let p0 = described
        .stdout
        .lines()
        .find(|l| l.trim_start().starts_with("0 "))
        .unwrap();
    assert_eq!(
        p0.split_whitespace().nth(1),
        Some("7"),
        "node 7 leads: {}",
        described.stdout
    );
    let _ = child.kill();
    let _ = child.wait();
    let marker = std::fs::read_to_string(tmp.path().join("data").join("eddy-broker")).unwrap();
    assert_eq!(marker, "node.id=7\n");
}

#[test]
fn a_data_directory_that_is_not_eddys_is_refused() {
    let tmp = tempfile::tempdir().unwrap();
    std::fs::write(tmp.path().join("photo.jpg"), b"not eddy").unwrap();
    let out = run(
        Command::new(EDDY)
            .args(["serve", "--listen", "127.0.0.1:0", "--data-dir"])
            .arg(tmp.path()),
        b"",
    );
    assert!(!out.success);
    assert!(
        out.stderr
            .contains("is not empty and has no eddy-broker file"),
        "{}",
        out.stderr
    );
    assert!(tmp.path().join("photo.jpg").exists());
}

#[test]
fn dev_starts_a_local_broker_and_prints_how_to_use_it() {
    let tmp = tempfile::tempdir().unwrap();
    let mut cmd = Command::new(EDDY);
    cmd.args(["dev", "--listen", "127.0.0.1:0", "--data-dir"])
        .arg(tmp.path().join(".eddy"));
    let (mut child, addr) = spawn_and_wait(cmd, "listening on ");
    let out = run(
        Command::new(EDDY)
            .args(["topic", "list"])
            .env("EDDY_BOOTSTRAP", &addr),
        b"",
    );
    assert!(out.success, "EDDY_BOOTSTRAP is honoured: {}", out.stderr);
    let _ = child.kill();
    let _ = child.wait();
}

#[test]
fn every_command_documents_itself() {
    for args in [
        &["--help"][..],
        &["serve", "--help"],
        &["dev", "--help"],
        &["topic", "create", "--help"],
        &["produce", "--help"],
        &["consume", "--help"],
        &["bench", "e2e", "--help"],
    ] {
        let out = run(Command::new(EDDY).args(args), b"");
        assert!(
            out.success && out.stdout.contains("Usage:"),
            "{args:?}: {out:?}"
        );
    }
}
