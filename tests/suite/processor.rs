//! `eddy processor test`: run a processor on sample records, no broker.

use eddy_test_plugins as wasm;
use serde_json::{Value, json};

use super::*;

const GPS: &str = r#"{"key": "t1", "value": {"truck_id": "t1", "lat": 48.5, "lon": 2.5, "ts": 10}, "timestamp": 10}
{"key": "t2", "value": {"truck_id": "t2", "lat": 48.6, "lon": 2.6, "ts": 11}}

{"key": "t1", "value": {"truck_id": "t1", "lat": 51.0, "lon": 2.5, "ts": 12}, "headers": {"source": "gps"}}
"#;

fn lines(text: &str) -> Vec<Value> {
    text.lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

#[test]
fn prints_the_outputs_as_json_lines() {
    let tmp = tempfile::tempdir().unwrap();
    let input = write(tmp.path(), "gps.jsonl", GPS);
    let out = eddy(&[
        "processor",
        "test",
        wasm::GEOFENCE,
        "--input",
        &input,
        "--param",
        "min_lat=48",
        "--param",
        "max_lat=49",
        "--param",
        "min_lon=2",
        "--param",
        "max_lon=3",
        "--param",
        "alert_topic=alerts",
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    // The processor's own log line reaches the host's log.
    assert!(
        stderr(&out).contains("watching lat 48..=49, lon 2..=3"),
        "{}",
        stderr(&out)
    );
    assert_eq!(
        lines(&stdout(&out)),
        [json!({
            "topic": "alerts",
            "key": "t1",
            "value": {"alert": "left-geofence", "truck_id": "t1", "lat": 51.0, "lon": 2.5, "ts": 12},
            "headers": {},
            "timestamp": 12,
        })]
    );
}

#[test]
fn keeps_keys_headers_and_plain_text_values() {
    let tmp = tempfile::tempdir().unwrap();
    let input = write(
        tmp.path(),
        "in.jsonl",
        "{\"key\": \"a\", \"value\": \"plain text\", \"headers\": {\"h\": \"v\"}}\n{\"value\": null, \"timestamp\": 1}\n",
    );
    let out = eddy(&[
        "processor",
        "test",
        wasm::PASSTHROUGH,
        "--input",
        &input,
        "--batch-size",
        "1",
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(
        lines(&stdout(&out)),
        [
            json!({"topic": null, "key": "a", "value": "plain text", "headers": {"h": "v"}, "timestamp": 0}),
            json!({"topic": null, "key": null, "value": null, "headers": {}, "timestamp": 1}),
        ]
    );
}

#[test]
fn a_record_error_names_the_line_that_caused_it() {
    let tmp = tempfile::tempdir().unwrap();
    let input = write(
        tmp.path(),
        "in.jsonl",
        "{\"value\": {\"kind\": \"a\"}}\n{\"value\": {\"other\": 1}}\n",
    );
    let out = eddy(&[
        "processor",
        "test",
        wasm::ROUTER,
        "--input",
        &input,
        "-p",
        "field=kind",
    ]);
    assert!(!out.status.success());
    let err = stderr(&out);
    assert!(
        err.contains("error: record 1 of the batch was refused"),
        "{err}"
    );
    assert!(err.contains("line 2: {\"value\": {\"other\": 1}}"), "{err}");
}

#[test]
fn a_panicking_processor_reports_its_message_and_fails() {
    let tmp = tempfile::tempdir().unwrap();
    let input = write(
        tmp.path(),
        "in.jsonl",
        "{\"value\": \"x\", \"offset\": 41}\n",
    );
    let out = eddy(&["processor", "test", wasm::TEST_PANIC, "--input", &input]);
    assert!(!out.status.success());
    let err = stderr(&out);
    assert!(
        err.contains("panicked") && err.contains("record at offset 41 is cursed"),
        "{err}"
    );
}

#[test]
fn a_forbidden_component_is_refused_by_name() {
    let tmp = tempfile::tempdir().unwrap();
    let input = write(tmp.path(), "in.jsonl", "{}\n");
    let out = eddy(&[
        "processor",
        "test",
        wasm::TEST_FOREIGN_IMPORT,
        "--input",
        &input,
    ]);
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains("acme:secrets/vault"),
        "{}",
        stderr(&out)
    );
}

#[test]
fn a_bad_input_line_is_reported_with_its_number() {
    let tmp = tempfile::tempdir().unwrap();
    let input = write(tmp.path(), "in.jsonl", "{}\n{\"vaule\": 1}\n");
    let out = eddy(&["processor", "test", wasm::PASSTHROUGH, "--input", &input]);
    assert!(!out.status.success());
    let err = stderr(&out);
    assert!(
        err.contains("in.jsonl line 2") && err.contains("unknown field \"vaule\""),
        "{err}"
    );
}

#[test]
fn help_documents_the_input_and_output_formats() {
    let out = eddy(&["processor", "test", "--help"]);
    let help = stdout(&out);
    assert!(help.contains("\"timestamp\": 1700000000000"), "{help}");
    assert!(help.contains("value_hex"), "{help}");
}

#[test]
fn reads_records_from_stdin() {
    use std::io::Write;
    use std::process::{Command, Stdio};
    let mut child = Command::new(crate::harness::eddy_binary())
        .args([
            "processor",
            "test",
            wasm::FILTER,
            "--input",
            "-",
            "-p",
            "field=n",
            "-p",
            "equals=2",
        ])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let records = "{\"value\": {\"n\": 1}}\n{\"value\": {\"n\": 2}}\n";
    child
        .stdin
        .take()
        .unwrap()
        .write_all(records.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    let values: Vec<Value> = lines(&stdout(&out))
        .into_iter()
        .map(|l| l["value"].clone())
        .collect();
    assert_eq!(values, [json!({"n": 2})]);
}

#[test]
fn two_runs_print_byte_identical_outputs() {
    let tmp = tempfile::tempdir().unwrap();
    let records: String = (0..300)
        .map(|i| {
            let (lat, lon) = (47.0 + f64::from(i % 29) * 0.1, 1.5 + f64::from(i % 31) * 0.05);
            format!("{{\"value\": {{\"truck_id\": \"t{}\", \"lat\": {lat}, \"lon\": {lon}, \"ts\": {i}}}}}\n", i % 9)
        })
        .collect();
    let input = write(tmp.path(), "gps.jsonl", &records);
    let run = || {
        let out = eddy(&[
            "processor",
            "test",
            wasm::GEOFENCE,
            "--input",
            &input,
            "--batch-size",
            "64",
            "-p",
            "min_lat=48",
            "-p",
            "max_lat=49",
            "-p",
            "min_lon=2",
            "-p",
            "max_lon=3",
        ]);
        assert!(out.status.success(), "{}", stderr(&out));
        out.stdout
    };
    let first = run();
    assert!(!first.is_empty());
    assert_eq!(run(), first);
}

#[test]
fn a_trap_in_a_batch_names_the_record_that_traps() {
    let tmp = tempfile::tempdir().unwrap();
    let input = write(
        tmp.path(),
        "in.jsonl",
        "{\"value\": \"fine\"}\n{\"value\": \"fine\"}\n\n{\"value\": \"boom\", \"offset\": 7}\n{\"value\": \"fine\"}\n",
    );
    let out = eddy(&[
        "processor",
        "test",
        wasm::TEST_PANIC,
        "--input",
        &input,
        "-p",
        "when=boom",
    ]);
    assert!(!out.status.success());
    let err = stderr(&out);
    assert!(err.contains("record at offset 7 is cursed"), "{err}");
    assert!(
        err.contains("line 4: {\"value\": \"boom\", \"offset\": 7}"),
        "{err}"
    );
    // The batch failed as a whole: none of its outputs were printed.
    assert!(
        out.stdout.is_empty(),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
}

#[test]
fn an_instance_whose_memory_only_grows_is_replaced_before_it_runs_out() {
    // Each record leaks 3 MiB; the limit is 16 MiB: one instance would run
    // out within a few records, as componentize-py's leak of returned
    // bytes or StarlingMonkey's growing heap do after many. A fresh one
    // takes over once memory passes three quarters of the limit.
    let tmp = tempfile::tempdir().unwrap();
    let input = write(tmp.path(), "in.jsonl", &"{\"value\": \"3\"}\n".repeat(20));
    let out = eddy(&[
        "processor",
        "test",
        wasm::TEST_MEMORY_BOMB,
        "--input",
        &input,
        "--param",
        "mode=leak",
        "--memory-mib-max",
        "16",
        "--batch-size",
        "1",
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
}
