//! The manifest format, specified by example.
//!
//! Most tests take [`VALID`], change one line, and state the one error that must come
//! out: its path, line, column and message.

mod accepted;
mod hostile;
mod refused;
mod round_trip;

use super::{ManifestError, parse};

/// A valid manifest with one field per line, so a test can change one field by line
/// number. Columns in the tests count from 1, like the errors.
const VALID: &str = "\
apiVersion: eddy/v1
kind: Pipeline
metadata:
  name: truck-alerts
spec:
  input:
    topics: [truck_gps]
    startFrom: earliest
  processor:
    name: geofence
    version: 2
    params: { min_lat: \"48.5\", max_lat: 49 }
  outputs:
    - topic: truck_alerts
      partitions: 10
  delivery: exactly-once
  parallelism: 4
  batch: { maxRecords: 256, maxWaitMs: 50 }
  limits: { memoryMiB: 64, cpuMsPerBatch: 200 }
  onError: { deadLetter: truck_alerts.dlq }
";

/// [`VALID`] with line `number` (from 1) replaced by `replacement`, which may span
/// several lines, or be empty to drop the line.
fn with_line(number: usize, replacement: &str) -> String {
    let mut lines: Vec<&str> = VALID.lines().collect();
    assert!(
        (1..=lines.len()).contains(&number),
        "VALID has no line {number}"
    );
    if replacement.is_empty() {
        lines.remove(number - 1);
    } else {
        lines[number - 1] = replacement;
    }
    lines.join("\n") + "\n"
}

/// The errors of a file that must be refused.
fn errors_of(text: &str) -> Vec<ManifestError> {
    match parse(text) {
        Ok(manifests) => panic!("accepted, expected a refusal: {manifests:#?}"),
        Err(errors) => errors.into_errors(),
    }
}

/// Asserts that `text` is refused with exactly this one error in document 1.
#[track_caller]
fn assert_refused(text: &str, path: &str, (line, column): (usize, usize), message: &str) {
    assert_refused_in(text, 1, path, (line, column), message);
}

/// Asserts that `text` is refused with exactly this one error.
#[track_caller]
fn assert_refused_in(
    text: &str,
    document: usize,
    path: &str,
    (line, column): (usize, usize),
    message: &str,
) {
    let expected = ManifestError {
        document,
        path: path.to_owned(),
        line,
        column,
        message: message.to_owned(),
    };
    assert_eq!(errors_of(text), vec![expected], "for:\n{text}");
}
