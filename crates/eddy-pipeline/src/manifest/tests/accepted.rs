//! What is accepted, and what it means.

use std::collections::BTreeMap;

use super::super::{
    BatchSpec, Delivery, EventTimeSpec, Input, LimitSpec, Manifest, OnError, Output, PipelineSpec,
    ProcessorRef, StartFrom, StateSpec, parse,
};
use super::{VALID, with_line};

/// The example of the format's documentation, comments included.
pub(super) const FULL_EXAMPLE: &str = r#"apiVersion: eddy/v1
kind: Pipeline
metadata: { name: truck-alerts }
spec:
  input: { topics: [truck_gps], startFrom: earliest }   # earliest | latest | {offset: N} | {timestamp: RFC3339}
  processor: { name: geofence, version: 2, params: { min_lat: "48.5", max_lat: 49 } }   # version optional
  outputs: [ { topic: truck_alerts, partitions: 10 } ]   # partitions optional (created if missing)
  delivery: exactly-once            # or at-least-once | at-most-once
  parallelism: 4
  batch: { maxRecords: 256, maxWaitMs: 50 }
  limits: { memoryMiB: 64, cpuMsPerBatch: 200 }
  onError: { deadLetter: truck_alerts.dlq }   # or the plain strings skip | stop
"#;

/// Only the required fields.
pub(super) const MINIMAL: &str = "\
apiVersion: eddy/v1
kind: Pipeline
metadata: { name: p }
spec:
  input: { topics: [in] }
  processor: { name: proc }
  outputs: [ { topic: out } ]
  delivery: at-least-once
";

/// The one manifest of `text`, which must be accepted.
#[track_caller]
pub(super) fn parse_one(text: &str) -> Manifest {
    match parse(text) {
        Ok(mut manifests) if manifests.len() == 1 => manifests.remove(0),
        Ok(manifests) => panic!("expected one manifest, got {}", manifests.len()),
        Err(errors) => panic!("refused:\n{errors}\nfor:\n{text}"),
    }
}

fn start_from(line: &str) -> StartFrom {
    parse_one(&with_line(8, line)).spec.input.start_from
}

fn params(line: &str) -> BTreeMap<String, String> {
    parse_one(&with_line(12, line)).spec.processor.params
}

fn strings(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    pairs
        .iter()
        .map(|&(k, v)| (k.to_owned(), v.to_owned()))
        .collect()
}

#[test]
fn the_full_example_gives_exactly_what_it_says() {
    let expected = Manifest {
        name: "truck-alerts".to_owned(),
        spec: PipelineSpec {
            input: Input {
                topics: vec!["truck_gps".to_owned()],
                start_from: StartFrom::Earliest,
            },
            processor: ProcessorRef {
                name: "geofence".to_owned(),
                version: Some(2),
                params: strings(&[("min_lat", "48.5"), ("max_lat", "49")]),
            },
            outputs: vec![Output {
                topic: "truck_alerts".to_owned(),
                partitions: Some(10),
                replication_factor: None,
            }],
            delivery: Delivery::ExactlyOnce,
            parallelism: 4,
            batch: BatchSpec {
                max_records: 256,
                max_wait_ms: 50,
            },
            limits: LimitSpec {
                memory_mib: 64,
                cpu_ms_per_batch: 200,
                state_mib: 256,
                state_disk_mib: 10_240,
            },
            on_error: OnError::DeadLetter("truck_alerts.dlq".to_owned()),
            state: StateSpec::default(),
            event_time: EventTimeSpec::default(),
        },
    };
    assert_eq!(parse_one(FULL_EXAMPLE), expected);
    // Block style means the same as flow style.
    assert_eq!(parse_one(VALID), expected);
}

#[test]
fn a_minimal_manifest_gets_every_default() {
    let expected = Manifest {
        name: "p".to_owned(),
        spec: PipelineSpec {
            input: Input {
                topics: vec!["in".to_owned()],
                start_from: StartFrom::Earliest,
            },
            processor: ProcessorRef {
                name: "proc".to_owned(),
                version: None,
                params: BTreeMap::new(),
            },
            outputs: vec![Output {
                topic: "out".to_owned(),
                partitions: None,
                replication_factor: None,
            }],
            delivery: Delivery::AtLeastOnce,
            parallelism: 1,
            batch: BatchSpec {
                max_records: 256,
                max_wait_ms: 50,
            },
            limits: LimitSpec {
                memory_mib: 64,
                cpu_ms_per_batch: 1000,
                state_mib: 256,
                state_disk_mib: 10_240,
            },
            on_error: OnError::Stop,
            state: StateSpec::default(),
            event_time: EventTimeSpec::default(),
        },
    };
    assert_eq!(parse_one(MINIMAL), expected);
}

#[test]
fn defaults_fill_in_single_missing_fields_of_a_section() {
    let manifest = parse_one(&with_line(18, "  batch: { maxWaitMs: 7 }"));
    assert_eq!(
        manifest.spec.batch,
        BatchSpec {
            max_records: 256,
            max_wait_ms: 7
        }
    );
    let manifest = parse_one(&with_line(19, "  limits: { cpuMsPerBatch: 5 }"));
    assert_eq!(
        manifest.spec.limits,
        LimitSpec {
            memory_mib: 64,
            cpu_ms_per_batch: 5,
            state_mib: 256,
            state_disk_mib: 10_240,
        }
    );
}

#[test]
fn a_stateful_pipeline_declares_state_and_may_bound_it() {
    let yaml = MINIMAL.replace("at-least-once", "exactly-once")
        + "  state: { enabled: true }\n  limits: { stateMiB: 1024 }\n  \
           eventTime: { allowedLatenessMs: 5000 }\n";
    let manifest = parse_one(&yaml);
    assert_eq!(
        manifest.spec.state,
        StateSpec {
            enabled: true,
            ttl_ms: 0
        }
    );
    assert_eq!(manifest.spec.limits.state_mib, 1024);
    assert_eq!(manifest.spec.event_time.allowed_lateness_ms, 5000);
    // The canonical form says so, and reads back the same.
    let printed = super::super::to_yaml(&manifest);
    assert!(printed.contains("    stateMiB: 1024\n"), "{printed}");
    assert!(
        printed.contains("  state:\n    enabled: true\n"),
        "{printed}"
    );
    assert!(
        printed.contains("  eventTime:\n    allowedLatenessMs: 5000\n"),
        "{printed}"
    );
    assert_eq!(parse_one(&printed), manifest);

    // Expiry and the idle timeout print only when set, and read back.
    let yaml = yaml
        .replace("{ enabled: true }", "{ enabled: true, ttlMs: 60000 }")
        .replace(
            "allowedLatenessMs: 5000",
            "allowedLatenessMs: 5000, idleTimeoutMs: 2000",
        );
    let manifest = parse_one(&yaml);
    assert_eq!(manifest.spec.state.ttl_ms, 60_000);
    assert_eq!(manifest.spec.event_time.idle_timeout_ms, 2_000);
    let printed = super::super::to_yaml(&manifest);
    assert!(
        printed.contains("    enabled: true\n    ttlMs: 60000\n"),
        "{printed}"
    );
    assert!(printed.contains("    idleTimeoutMs: 2000\n"), "{printed}");
    assert_eq!(parse_one(&printed), manifest);
}

#[test]
fn writing_a_default_out_is_the_same_as_leaving_it_out() {
    let explicit = MINIMAL.to_owned()
        + "  parallelism: 1\n  batch: { maxRecords: 256, maxWaitMs: 50 }\n  \
           limits: { memoryMiB: 64, cpuMsPerBatch: 1000 }\n  onError: stop\n";
    let explicit = explicit.replace("[in] }", "[in], startFrom: earliest }");
    assert_eq!(parse_one(&explicit), parse_one(MINIMAL));
}

#[test]
fn every_delivery_guarantee_is_accepted() {
    for (word, delivery) in [
        ("at-most-once", Delivery::AtMostOnce),
        ("at-least-once", Delivery::AtLeastOnce),
        ("exactly-once", Delivery::ExactlyOnce),
    ] {
        let manifest = parse_one(&with_line(16, &format!("  delivery: {word}")));
        assert_eq!(manifest.spec.delivery, delivery);
    }
}

#[test]
fn on_error_is_stop_skip_or_a_dead_letter_topic() {
    let on_error = |line: &str| parse_one(&with_line(20, line)).spec.on_error;
    assert_eq!(on_error("  onError: stop"), OnError::Stop);
    assert_eq!(on_error("  onError: skip"), OnError::Skip);
    assert_eq!(
        on_error("  onError: { deadLetter: dlq }"),
        OnError::DeadLetter("dlq".to_owned())
    );
}

#[test]
fn start_from_has_four_forms() {
    assert_eq!(start_from("    startFrom: earliest"), StartFrom::Earliest);
    assert_eq!(start_from("    startFrom: latest"), StartFrom::Latest);
    assert_eq!(
        start_from("    startFrom: { offset: 42 }"),
        StartFrom::Offset(42)
    );
    assert_eq!(
        start_from("    startFrom: { offset: 18446744073709551615 }"),
        StartFrom::Offset(u64::MAX)
    );
    assert_eq!(
        start_from("    startFrom: { timestamp: 2026-12-01T10:00:00Z }"),
        StartFrom::Timestamp(1_796_119_200_000)
    );
}

#[test]
fn start_from_timestamps_are_rfc3339_with_any_offset() {
    let ten_utc = StartFrom::Timestamp(1_796_119_200_000);
    assert_eq!(
        start_from("    startFrom: { timestamp: \"2026-12-01T10:00:00Z\" }"),
        ten_utc
    );
    assert_eq!(
        start_from("    startFrom: { timestamp: 2026-12-01T11:00:00+01:00 }"),
        ten_utc
    );
    assert_eq!(
        start_from("    startFrom: { timestamp: 2026-12-01T05:30:00-04:30 }"),
        ten_utc
    );
    assert_eq!(
        start_from("    startFrom: { timestamp: 2026-12-01t10:00:00z }"),
        ten_utc
    );
    assert_eq!(
        start_from("    startFrom: { timestamp: 2026-12-01T10:00:00.1239Z }"),
        StartFrom::Timestamp(1_796_119_200_123),
        "digits past the millisecond are dropped"
    );
    assert_eq!(
        start_from("    startFrom: { timestamp: 1970-01-01T00:00:00Z }"),
        StartFrom::Timestamp(0)
    );
}

#[test]
fn params_keep_the_text_written_in_the_file() {
    let written = params(
        "    params: { lat: 49.10, flag: true, hex: 0x1F, big: 1e3, text: \"49.10\", \
         single: 'it''s', empty: \"\", word: hello, neg: -0 }",
    );
    let expected = strings(&[
        ("lat", "49.10"),
        ("flag", "true"),
        ("hex", "0x1F"),
        ("big", "1e3"),
        ("text", "49.10"),
        ("single", "it's"),
        ("empty", ""),
        ("word", "hello"),
        ("neg", "-0"),
    ]);
    assert_eq!(written, expected);
}

#[test]
fn params_may_be_written_as_block_scalars() {
    let text = with_line(
        12,
        "    params:\n      query: |\n        SELECT 1\n        FROM t",
    );
    let manifest = parse_one(&text);
    assert_eq!(
        manifest.spec.processor.params,
        strings(&[("query", "SELECT 1\nFROM t\n")])
    );
}

#[test]
fn names_may_look_like_numbers_without_quotes() {
    let manifest = parse_one(&with_line(7, "    topics: [2024, 1e3, true]"));
    assert_eq!(manifest.spec.input.topics, ["2024", "1e3", "true"]);
}

#[test]
fn windows_line_endings_mean_the_same() {
    assert_eq!(parse_one(&VALID.replace('\n', "\r\n")), parse_one(VALID));
    let errors = super::errors_of(&with_line(16, "  delivery: x").replace('\n', "\r\n"));
    assert_eq!((errors[0].line, errors[0].column), (16, 13));
}

#[test]
fn every_document_of_a_file_is_read_in_order() {
    let second = VALID.replace("truck-alerts", "second");
    let file = format!("{VALID}---\n{second}");
    let names: Vec<String> = parse(&file)
        .unwrap_or_else(|e| panic!("{e}"))
        .into_iter()
        .map(|m| m.name)
        .collect();
    assert_eq!(names, ["truck-alerts", "second"]);
}

#[test]
fn empty_documents_are_skipped() {
    let file = format!("---\n{VALID}---\n# nothing here\n---\n{MINIMAL}---\n");
    let manifests = parse(&file).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(manifests.len(), 2);
    assert_eq!(parse("").map(|m| m.len()), Ok(0));
    assert_eq!(parse("# only a comment\n").map(|m| m.len()), Ok(0));
}

#[test]
fn an_alias_stands_for_its_anchored_value() {
    let text = with_line(17, "  parallelism: &n 4").replace("maxRecords: 256", "maxRecords: *n");
    assert_eq!(parse_one(&text).spec.batch.max_records, 4);
}

#[test]
fn the_stored_json_uses_the_manifest_field_names() {
    let manifest = parse_one(VALID);
    let json = serde_json::to_value(&manifest).unwrap_or_else(|e| panic!("{e}"));
    let spec = &json["spec"];
    assert_eq!(spec["delivery"], "exactly-once");
    assert_eq!(spec["input"]["startFrom"], "earliest");
    assert_eq!(spec["limits"]["memoryMiB"], 64);
    assert_eq!(spec["limits"]["cpuMsPerBatch"], 200);
    assert_eq!(spec["batch"]["maxRecords"], 256);
    assert_eq!(spec["onError"]["deadLetter"], "truck_alerts.dlq");
    assert_eq!(spec["processor"]["params"]["max_lat"], "49");
    let back: Manifest = serde_json::from_value(json).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(back, manifest);
}

#[test]
fn the_stored_json_of_every_start_from_reads_back() {
    for start_from in [
        StartFrom::Earliest,
        StartFrom::Latest,
        StartFrom::Offset(7),
        StartFrom::Timestamp(1_796_119_200_000),
    ] {
        let json = serde_json::to_string(&start_from).unwrap_or_else(|e| panic!("{e}"));
        let back: StartFrom = serde_json::from_str(&json).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(back, start_from, "{json}");
    }
}

#[test]
fn an_output_may_name_the_replication_factor_it_is_created_with() {
    let text = MINIMAL.replace(
        "outputs: [ { topic: out } ]",
        "outputs: [ { topic: out, partitions: 6, replicationFactor: 3 } ]",
    );
    let m = parse_one(&text);
    assert_eq!(
        m.spec.outputs,
        vec![Output {
            topic: "out".to_owned(),
            partitions: Some(6),
            replication_factor: Some(3),
        }]
    );
    assert_eq!(parse_one(&super::super::to_yaml(&m)), m);
}
