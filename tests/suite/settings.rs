use std::process::Command;

use crate::harness::{eddy_binary, run, spawn_and_wait};

#[test]
fn settings_come_from_a_toml_file_and_the_environment_and_flags_override_it() {
    let tmp = tempfile::tempdir().unwrap();
    let config = tmp.path().join("eddy.toml");
    std::fs::write(
        &config,
        format!(
            "data_dir = {:?}\nlisten = \"127.0.0.1:0\"\nnode_id = 3\ndefault_partitions = 3\n[topic_defaults]\n\"retention.ms\" = \"60000\"\n",
            tmp.path().join("data")
        ),
    )
    .unwrap();
    let mut cmd = Command::new(eddy_binary());
    cmd.arg("serve")
        .arg("--config")
        .arg(&config)
        .args(["--node-id", "7"])
        .env("EDDY_DEFAULT_PARTITIONS", "5");
    let (mut child, addr) = spawn_and_wait(cmd, "listening on ");
    let out = run(
        Command::new(eddy_binary()).args(["topic", "create", "d", "--bootstrap", &addr]),
        b"",
    );
    assert!(
        out.stdout.contains("with 5 partition(s)"),
        "EDDY_DEFAULT_PARTITIONS beats the file: {out:?}"
    );
    // --bootstrap may come anywhere on the line.
    let described = run(
        Command::new(eddy_binary()).args(["--bootstrap", &addr, "topic", "describe", "d"]),
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
        "--node-id beats the file's node_id = 3, so node 7 leads: {}",
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
        Command::new(eddy_binary())
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
    let mut cmd = Command::new(eddy_binary());
    cmd.args(["dev", "--listen", "127.0.0.1:0", "--data-dir"])
        .arg(tmp.path().join(".eddy"));
    let (mut child, addr) = spawn_and_wait(cmd, "listening on ");
    let out = run(
        Command::new(eddy_binary())
            .args(["topic", "list"])
            .env("EDDY_BOOTSTRAP", &addr),
        b"",
    );
    assert!(out.success, "EDDY_BOOTSTRAP is honoured: {}", out.stderr);
    let _ = child.kill();
    let _ = child.wait();
}

#[test]
fn dev_prints_its_address_and_what_to_try() {
    let tmp = tempfile::tempdir().unwrap();
    let mut child = Command::new(eddy_binary())
        .args(["dev", "--listen", "127.0.0.1:0", "--data-dir"])
        .arg(tmp.path().join(".eddy"))
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let mut stdout = std::io::BufReader::new(child.stdout.take().unwrap());
    let mut printed = String::new();
    while !printed.contains("stop with Ctrl-C") {
        let mut line = String::new();
        if std::io::BufRead::read_line(&mut stdout, &mut line).unwrap() == 0 {
            break;
        }
        printed.push_str(&line);
    }
    let _ = child.kill();
    let _ = child.wait();
    let addr = printed
        .split("listening on ")
        .nth(1)
        .and_then(|r| r.split_whitespace().next())
        .unwrap_or_default();
    assert!(addr.starts_with("127.0.0.1:"), "{printed}");
    assert!(
        printed.contains(&format!("eddy topic create demo -p 3 --bootstrap {addr}")),
        "the hints carry the address when it is not the default: {printed}"
    );
    assert!(
        printed.contains("eddy consume demo --from-beginning"),
        "{printed}"
    );
}

#[test]
fn every_bench_runs_and_reports_its_figures() {
    let b = crate::harness::TestBroker::start();
    let small = ["--records", "2000", "--record-size", "200"];
    let produce = b.ok(&[&["bench", "produce", "--acks", "all"][..], &small].concat());
    assert!(
        produce.contains("records/s") && produce.contains("MB/s"),
        "{produce}"
    );
    assert!(
        produce.contains("p99") && produce.contains("p99.9"),
        "{produce}"
    );
    assert!(produce.contains("idempotence true"), "{produce}");
    let consume = b.ok(&[&["bench", "consume"][..], &small].concat());
    assert!(consume.contains("read 2000 records"), "{consume}");
    let e2e = b.ok(&["bench", "e2e", "--duration-s", "1", "--rate-mb", "1"]);
    assert!(e2e.contains("end-to-end latency"), "{e2e}");
    let listed = b.ok(&["topic", "list"]);
    assert!(
        !listed.lines().any(|l| l.starts_with("bench-")),
        "bench topics are deleted afterwards: {listed}"
    );
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
        let out = run(Command::new(eddy_binary()).args(args), b"");
        assert!(
            out.success && out.stdout.contains("Usage:"),
            "{args:?}: {out:?}"
        );
    }
}

#[test]
fn client_commands_take_several_brokers_and_use_the_first_that_answers() {
    let b = crate::harness::TestBroker::start();
    let dead = "127.0.0.1:1";
    let both = format!("{dead},{}", b.addr);
    let out = run(
        Command::new(eddy_binary()).args([
            "topic",
            "create",
            "multi",
            "-p",
            "2",
            "--bootstrap",
            &both,
        ]),
        b"",
    );
    assert!(out.success, "{}", out.stderr);
    assert!(out.stdout.contains("created topic multi"), "{}", out.stdout);
    let none = run(
        Command::new(eddy_binary()).args([
            "topic",
            "list",
            "--bootstrap",
            &format!("{dead}, 127.0.0.1:2"),
        ]),
        b"",
    );
    assert!(!none.success);
    assert!(
        none.stderr.contains("cannot connect to 127.0.0.1:2"),
        "{}",
        none.stderr
    );
}
