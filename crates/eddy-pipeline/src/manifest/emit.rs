//! The canonical YAML of a manifest: every field, defaults included, in the order of
//! [`PipelineSpec`], so that two equal manifests always print the same.

use std::collections::BTreeMap;
use std::fmt::{Display, Write as _};

use super::time::format_rfc3339_ms;
use super::types::{
    Delivery, Input, Manifest, OnError, Output, PipelineSpec, ProcessorRef, StartFrom,
};

/// Keys longer than this are written as explicit `? key` entries: YAML refuses an
/// implicit key of more than 1024 characters.
const MAX_IMPLICIT_KEY_CHARS: usize = 1000;

/// Writes `manifest` as a YAML document that [`parse`](super::parse) reads back equal.
///
/// This is what `eddy pipeline get NAME` prints. Strings are written plain when that
/// reads back as the same text, double-quoted otherwise. The one value that does not
/// round-trip is a [`StartFrom::Timestamp`] outside the years 1970 to 9999, which
/// `parse` never produces: it is written as its millisecond count, which `parse`
/// refuses.
#[must_use]
pub fn to_yaml(manifest: &Manifest) -> String {
    let mut out = Writer::default();
    out.line(0, "apiVersion: eddy/v1");
    out.line(0, "kind: Pipeline");
    out.line(0, "metadata:");
    out.field(1, "name", scalar(&manifest.name));
    out.line(0, "spec:");
    spec(&mut out, &manifest.spec);
    out.text
}

fn spec(out: &mut Writer, spec: &PipelineSpec) {
    input(out, &spec.input);
    processor(out, &spec.processor);
    outputs(out, &spec.outputs);
    out.field(1, "delivery", delivery(spec.delivery));
    out.field(1, "parallelism", spec.parallelism);
    out.line(1, "batch:");
    out.field(2, "maxRecords", spec.batch.max_records);
    out.field(2, "maxWaitMs", spec.batch.max_wait_ms);
    out.line(1, "limits:");
    out.field(2, "memoryMiB", spec.limits.memory_mib);
    out.field(2, "cpuMsPerBatch", spec.limits.cpu_ms_per_batch);
    if spec.state.enabled {
        out.field(2, "stateMiB", spec.limits.state_mib);
        out.field(2, "stateDiskMiB", spec.limits.state_disk_mib);
    }
    match &spec.on_error {
        OnError::Stop => out.field(1, "onError", "stop"),
        OnError::Skip => out.field(1, "onError", "skip"),
        OnError::DeadLetter(topic) => {
            out.line(1, "onError:");
            out.field(2, "deadLetter", scalar(topic));
        }
    }
    if spec.state.enabled {
        out.line(1, "state:");
        out.field(2, "enabled", "true");
        if spec.state.ttl_ms != 0 {
            out.field(2, "ttlMs", spec.state.ttl_ms);
        }
    }
    let time = &spec.event_time;
    if time.allowed_lateness_ms != 0 || time.idle_timeout_ms != 0 {
        out.line(1, "eventTime:");
        if time.allowed_lateness_ms != 0 {
            out.field(2, "allowedLatenessMs", time.allowed_lateness_ms);
        }
        if time.idle_timeout_ms != 0 {
            out.field(2, "idleTimeoutMs", time.idle_timeout_ms);
        }
    }
}

fn input(out: &mut Writer, input: &Input) {
    out.line(1, "input:");
    out.line(2, "topics:");
    for topic in &input.topics {
        out.line(3, &format!("- {}", scalar(topic)));
    }
    match input.start_from {
        StartFrom::Earliest => out.field(2, "startFrom", "earliest"),
        StartFrom::Latest => out.field(2, "startFrom", "latest"),
        StartFrom::Offset(offset) => {
            out.line(2, "startFrom:");
            out.field(3, "offset", offset);
        }
        StartFrom::Timestamp(ms) => {
            out.line(2, "startFrom:");
            // An RFC 3339 time has only digits, '-', ':', '.', 'T' and 'Z': plain is safe.
            match format_rfc3339_ms(ms) {
                Some(time) => out.field(3, "timestamp", time),
                None => out.field(3, "timestamp", ms),
            }
        }
    }
}

fn processor(out: &mut Writer, processor: &ProcessorRef) {
    out.line(1, "processor:");
    out.field(2, "name", scalar(&processor.name));
    if let Some(version) = processor.version {
        out.field(2, "version", version);
    }
    params(out, &processor.params);
}

fn params(out: &mut Writer, params: &BTreeMap<String, String>) {
    if params.is_empty() {
        out.line(2, "params: {}");
        return;
    }
    out.line(2, "params:");
    for (name, value) in params {
        let key = scalar(name);
        if key.chars().count() > MAX_IMPLICIT_KEY_CHARS {
            out.line(3, &format!("? {key}"));
            out.line(3, &format!(": {}", scalar(value)));
        } else {
            out.field(3, &key, scalar(value));
        }
    }
}

fn outputs(out: &mut Writer, outputs: &[Output]) {
    out.line(1, "outputs:");
    for output in outputs {
        out.line(2, &format!("- topic: {}", scalar(&output.topic)));
        if let Some(partitions) = output.partitions {
            // Aligned under `topic`, past the "- ".
            out.line(3, &format!("partitions: {partitions}"));
        }
        if let Some(rf) = output.replication_factor {
            out.line(3, &format!("replicationFactor: {rf}"));
        }
    }
}

fn delivery(delivery: Delivery) -> &'static str {
    match delivery {
        Delivery::AtMostOnce => "at-most-once",
        Delivery::AtLeastOnce => "at-least-once",
        Delivery::ExactlyOnce => "exactly-once",
    }
}

/// A string as a YAML scalar that reads back as the same text.
///
/// Plain only for a conservative set of strings (a letter or digit, then letters,
/// digits, '.', '_', '-' or '/'), which covers every name; [`parse`](super::parse)
/// takes such a scalar's text as written even where YAML would see a number or a
/// boolean. The words YAML reads as null are quoted.
fn scalar(text: &str) -> String {
    let starts_well = text
        .chars()
        .next()
        .is_some_and(|c| c.is_ascii_alphanumeric());
    let plain_chars = text
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-' | '/'));
    let is_null_word = matches!(text, "null" | "Null" | "NULL");
    if starts_well && plain_chars && !is_null_word {
        text.to_owned()
    } else {
        double_quoted(text)
    }
}

/// A double-quoted YAML scalar, escaping whatever YAML would not keep as written:
/// quotes, backslashes, line breaks, control characters and the byte-order mark.
fn double_quoted(text: &str) -> String {
    let mut out = String::with_capacity(text.len() + 2);
    out.push('"');
    for c in text.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if c.is_control()
                || matches!(
                    c,
                    '\u{2028}' | '\u{2029}' | '\u{feff}' | '\u{fffe}' | '\u{ffff}'
                ) =>
            {
                // Writing to a String cannot fail.
                let _ = write!(out, "\\u{:04X}", u32::from(c));
            }
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// Builds the text line by line, two spaces per level.
#[derive(Debug, Default)]
struct Writer {
    text: String,
}

impl Writer {
    fn line(&mut self, level: usize, line: &str) {
        for _ in 0..level {
            self.text.push_str("  ");
        }
        self.text.push_str(line);
        self.text.push('\n');
    }

    fn field(&mut self, level: usize, key: &str, value: impl Display) {
        self.line(level, &format!("{key}: {value}"));
    }
}
