//! `to_yaml` prints the canonical form, and `parse` reads it back unchanged.

use proptest::prelude::*;

use super::super::{Manifest, OnError, StartFrom, parse, to_yaml};
use super::accepted::{FULL_EXAMPLE, MINIMAL, parse_one};

#[track_caller]
fn assert_round_trips(manifest: &Manifest) {
    let yaml = to_yaml(manifest);
    assert_eq!(parse(&yaml), Ok(vec![manifest.clone()]), "for:\n{yaml}");
}

#[test]
fn the_full_example_prints_in_canonical_form() {
    let expected = "\
apiVersion: eddy/v1
kind: Pipeline
metadata:
  name: truck-alerts
spec:
  input:
    topics:
      - truck_gps
    startFrom: earliest
  processor:
    name: geofence
    version: 2
    params:
      max_lat: 49
      min_lat: 48.5
  outputs:
    - topic: truck_alerts
      partitions: 10
  delivery: exactly-once
  parallelism: 4
  batch:
    maxRecords: 256
    maxWaitMs: 50
  limits:
    memoryMiB: 64
    cpuMsPerBatch: 200
  onError:
    deadLetter: truck_alerts.dlq
";
    assert_eq!(to_yaml(&parse_one(FULL_EXAMPLE)), expected);
}

#[test]
fn a_minimal_manifest_prints_every_default() {
    let expected = "\
apiVersion: eddy/v1
kind: Pipeline
metadata:
  name: p
spec:
  input:
    topics:
      - in
    startFrom: earliest
  processor:
    name: proc
    params: {}
  outputs:
    - topic: out
  delivery: at-least-once
  parallelism: 1
  batch:
    maxRecords: 256
    maxWaitMs: 50
  limits:
    memoryMiB: 64
    cpuMsPerBatch: 1000
  onError: stop
";
    assert_eq!(to_yaml(&parse_one(MINIMAL)), expected);
}

#[test]
fn the_full_and_minimal_examples_read_back_unchanged() {
    assert_round_trips(&parse_one(FULL_EXAMPLE));
    assert_round_trips(&parse_one(MINIMAL));
}

#[test]
fn every_start_from_and_on_error_reads_back() {
    let mut manifest = parse_one(MINIMAL);
    for start_from in [
        StartFrom::Earliest,
        StartFrom::Latest,
        StartFrom::Offset(u64::MAX),
        StartFrom::Timestamp(0),
        StartFrom::Timestamp(1_796_119_200_123),
        StartFrom::Timestamp(253_402_300_799_999),
    ] {
        manifest.spec.input.start_from = start_from;
        assert_round_trips(&manifest);
    }
    for on_error in [
        OnError::Stop,
        OnError::Skip,
        OnError::DeadLetter("dlq".to_owned()),
    ] {
        manifest.spec.on_error = on_error;
        assert_round_trips(&manifest);
    }
}

#[test]
fn a_timestamp_prints_as_rfc3339_in_utc() {
    let mut manifest = parse_one(MINIMAL);
    manifest.spec.input.start_from = StartFrom::Timestamp(1_796_119_200_123);
    assert!(
        to_yaml(&manifest).contains("    startFrom:\n      timestamp: 2026-12-01T10:00:00.123Z\n")
    );
}

#[test]
fn strings_yaml_would_misread_are_quoted() {
    let mut manifest = parse_one(MINIMAL);
    manifest.name = "null".to_owned();
    manifest.spec.input.topics = vec!["-".to_owned(), ".hidden".to_owned(), "007".to_owned()];
    let params = [
        ("plain", "48.5"),
        ("spaces", "  two  words  "),
        ("comment", "a #b"),
        ("colon", "a: b"),
        ("quotes", "\"'"),
        ("backslash", "C:\\temp"),
        ("lines", "one\ntwo\r\n"),
        ("control", "\u{0}\u{7}\u{1b}\u{7f}\u{85}"),
        ("separators", "\u{2028}\u{2029}\u{feff}"),
        ("unicode", "grüße 🚚"),
        ("empty", ""),
        ("tilde", "~"),
        ("null", "Null"),
        ("indicator", "- item"),
        ("flow", "[a, {b: c}]"),
        ("anchor", "&a *a !t %"),
        ("a key: with # odd * chars", "v"),
    ];
    manifest.spec.processor.params = params
        .iter()
        .map(|&(k, v)| (k.to_owned(), v.to_owned()))
        .collect();
    assert_round_trips(&manifest);
}

#[test]
fn a_long_escaped_param_name_is_written_as_an_explicit_key() {
    // 256 bytes that each need a six-character escape: past YAML's 1024-character
    // limit for implicit keys.
    let mut manifest = parse_one(MINIMAL);
    let name = "\u{1}".repeat(256);
    manifest.spec.processor.params.insert(name, "v".to_owned());
    assert_round_trips(&manifest);
}

proptest! {
    #[test]
    fn any_params_read_back_unchanged(
        params in prop::collection::btree_map(
            any::<String>().prop_filter("a valid name", |n| !n.is_empty() && n.len() <= 256),
            any::<String>(),
            0..8,
        )
    ) {
        let mut manifest = parse_one(MINIMAL);
        manifest.spec.processor.params = params;
        let yaml = to_yaml(&manifest);
        prop_assert_eq!(parse(&yaml), Ok(vec![manifest]), "for:\n{}", yaml);
    }

    #[test]
    fn any_valid_names_read_back_unchanged(
        name in "[a-zA-Z0-9._-]{1,128}",
        topic in "[a-zA-Z0-9._-]{1,249}",
    ) {
        prop_assume!(name != "." && name != "..");
        prop_assume!(topic != "." && topic != ".." && !topic.starts_with("__") && topic != "out");
        let mut manifest = parse_one(MINIMAL);
        manifest.name = name;
        manifest.spec.input.topics = vec![topic];
        let yaml = to_yaml(&manifest);
        prop_assert_eq!(parse(&yaml), Ok(vec![manifest]), "for:\n{}", yaml);
    }
}
