use std::io::Write;

use crate::harness::{TestBroker, files};

#[test]
fn a_clean_restart_keeps_every_record() {
    let mut b = TestBroker::start();
    b.ok(&["topic", "create", "durable", "-p", "3"]);
    b.ok_with_input(&["produce", "durable"], "x\n".repeat(1000).as_bytes());
    b.restart();
    let out = b.ok(&["consume", "durable", "-B", "-n", "1000"]);
    assert_eq!(out.lines().count(), 1000);
    b.ok_with_input(&["produce", "durable", "-p", "0"], b"after\n");
    assert!(
        b.ok(&["consume", "durable", "-B", "-n", "1001"])
            .contains("after")
    );
}

#[test]
fn after_kill_9_a_torn_tail_is_cut_and_acknowledged_records_are_served() {
    let mut b = TestBroker::start();
    b.ok(&["topic", "create", "crash", "-p", "1"]);
    let input: String = (0..2000).map(|i| format!("record-{i}\n")).collect();
    b.ok_with_input(&["produce", "crash"], input.as_bytes());
    b.kill9();
    // A write cut short by the crash: half a batch header at the end.
    let segment = files(&b.partition_dir("crash", 0), "log").pop().unwrap();
    let size = std::fs::metadata(&segment).unwrap().len();
    std::fs::OpenOptions::new()
        .append(true)
        .open(&segment)
        .unwrap()
        .write_all(&[0x00, 0x00, 0x07, 0x01, 0xff])
        .unwrap();
    b.start_again();
    assert_eq!(
        std::fs::metadata(&segment).unwrap().len(),
        size,
        "the torn bytes are gone"
    );
    let out = b.ok(&["consume", "crash", "-B", "-n", "2000"]);
    assert_eq!(out, input);
    b.ok_with_input(&["produce", "crash"], b"next\n");
    let tail = b.ok(&[
        "consume",
        "crash",
        "-p",
        "0",
        "--offset",
        "2000",
        "-n",
        "1",
        "--print-offset",
    ]);
    assert_eq!(tail, "0:2000\tnext\n", "offsets continue after the cut");
}

#[test]
fn sigterm_flushes_and_exits_cleanly() {
    let mut b = TestBroker::start_with(&["--flush", "never"]);
    b.ok(&["topic", "create", "f"]);
    b.ok_with_input(&["produce", "f"], b"1\n2\n");
    b.terminate();
    b.start_again();
    assert_eq!(b.ok(&["consume", "f", "-B", "-n", "2"]), "1\n2\n");
}

#[test]
fn a_partition_whose_topic_id_file_was_left_empty_keeps_its_data() {
    let mut b = TestBroker::start();
    b.ok(&["topic", "create", "named", "-p", "2"]);
    b.ok_with_input(&["produce", "named", "-p", "0"], b"kept\n");
    b.ok_with_input(&["produce", "named", "-p", "1"], b"also kept\n");
    b.kill9();
    // A crash in the middle of writing the name (as an older Eddy could
    // leave it), and a name never written.
    std::fs::write(b.partition_dir("named", 0).join("topic-id"), b"").unwrap();
    std::fs::remove_file(b.partition_dir("named", 1).join("topic-id")).unwrap();
    b.start_again();
    let out = b.ok(&[
        "consume",
        "named",
        "-B",
        "-n",
        "2",
        "--idle-timeout-ms",
        "5000",
    ]);
    assert!(
        out.contains("kept\n") && out.contains("also kept\n"),
        "records were removed with a directory that lost its name: {out:?}"
    );
    let named = std::fs::read_to_string(b.partition_dir("named", 0).join("topic-id")).unwrap();
    assert!(!named.trim().is_empty(), "the name is written again");
}
