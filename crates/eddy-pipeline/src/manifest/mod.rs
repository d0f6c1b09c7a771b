//! Pipeline manifests: the YAML files that describe Eddy pipelines.
//!
//! ```yaml
//! apiVersion: eddy/v1
//! kind: Pipeline
//! metadata: { name: truck-alerts }
//! spec:
//!   input: { topics: [truck_gps], startFrom: earliest }
//!   processor: { name: geofence, version: 2, params: { min_lat: "48.5" } }
//!   outputs: [ { topic: truck_alerts, partitions: 10 } ]
//!   delivery: exactly-once
//! ```
//!
//! [`parse`] reads every document of a file into a [`Manifest`] with every default
//! filled in, so that two manifests meaning the same pipeline compare equal;
//! [`to_yaml`] writes one back in canonical form. A refused file gives
//! [`ManifestErrors`]: every independent mistake, each with its document, field path,
//! line and column, and what was expected versus found.
//!
//! YAML is read with `saphyr-parser` 0.3.4, the event parser of saphyr (the maintained
//! successor of `yaml-rust`), with a small typed conversion on top. Its events give
//! every node's line and column and keep each scalar's text and quoting, which is
//! what these error messages and the rule "params keep the text written" need. The
//! serde-based crates (`serde-saphyr`, `serde_yaml_ng`, `serde_norway`) stop at the
//! first error and lose positions by the time ranges, names and cross-field rules
//! are checked. RFC 3339 times are read with `humantime` 2.4, which has no
//! dependencies but knows only UTC, so numeric offsets are applied here.
//!
//! Hostile input is bounded: files over [`MAX_FILE_BYTES`] are refused unread,
//! nesting is limited to 64 levels, an alias shares its anchor's node instead of
//! copying it (so an alias bomb stays as small as its text), and at most 100 errors
//! are reported. Tags (`!!str`) are refused; null is never taken for a default, so
//! a field is either given a value or left out.

mod decode;
mod emit;
mod error;
mod locate;
mod reader;
mod rules;
mod time;
mod tree;
mod types;

#[cfg(test)]
mod tests;

pub use emit::to_yaml;
pub use error::{ManifestError, ManifestErrors};
pub use locate::locate;
pub use types::{
    BatchSpec, Delivery, EventTimeSpec, Input, LimitSpec, Manifest, OnError, Output, PipelineSpec,
    ProcessorRef, StartFrom, StateSpec,
};

use reader::{Path, Sink};

/// The largest `spec.limits.memoryMiB` (a 32-bit wasm memory's 4 GiB).
pub const MEMORY_MIB_MAX: u32 = 4096;
/// The largest `spec.limits.cpuMsPerBatch`.
pub const CPU_MS_PER_BATCH_MAX: u32 = 60_000;
/// The longest `spec.state.ttlMs` (30 days).
pub const STATE_TTL_MS_MAX: u32 = 30 * 24 * 3600 * 1000;
/// The largest `spec.eventTime.allowedLatenessMs` and `idleTimeoutMs` (a week).
pub const ALLOWED_LATENESS_MS_MAX: u32 = 7 * 24 * 3600 * 1000;
/// The largest `spec.limits.stateMiB` (64 GiB per task).
pub const STATE_MIB_MAX: u32 = 65_536;
/// The largest `spec.limits.stateDiskMiB` (1 TiB per task).
pub const STATE_DISK_MIB_MAX: u32 = 1 << 20;
/// The changelog topic of a stateful pipeline's keyed state.
pub fn changelog_topic(pipeline: &str) -> String {
    format!("{pipeline}.state")
}

/// Segment size of a changelog: compaction cleans only sealed segments,
/// and a restore reads the open one whole, so it stays small.
pub const CHANGELOG_SEGMENT_BYTES: u64 = 16 << 20;

/// The topic configs of a changelog: compacted, up to what the pipeline
/// committed (`eddy.changelog`), in small segments.
pub fn changelog_configs() -> std::collections::BTreeMap<String, String> {
    [
        ("cleanup.policy", "compact".to_owned()),
        ("eddy.changelog", "true".to_owned()),
        ("segment.bytes", CHANGELOG_SEGMENT_BYTES.to_string()),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v))
    .collect()
}

/// The largest manifest file read, in bytes (1 MiB).
pub const MAX_FILE_BYTES: usize = 1024 * 1024;

/// Parses every document of a manifest file, in file order.
///
/// Empty documents (such as the one after a trailing `---`) are skipped, so a file
/// with nothing but comments gives an empty list.
///
/// # Errors
///
/// Every error found, in file order. Documents are checked independently; a YAML
/// syntax error ends the file, but the documents before it are still checked.
pub fn parse(text: &str) -> Result<Vec<Manifest>, ManifestErrors> {
    Ok(parse_numbered(text)?.into_iter().map(|(_, m)| m).collect())
}

/// [`parse`], with each manifest's document number in the file (from 1,
/// counting empty documents, as error messages do).
///
/// # Errors
///
/// As [`parse`].
pub fn parse_numbered(text: &str) -> Result<Vec<(usize, Manifest)>, ManifestErrors> {
    let mut sink = Sink::default();
    let manifests = if text.len() > MAX_FILE_BYTES {
        sink.start_document(1);
        let message = format!(
            "the file is {} bytes long; at most {MAX_FILE_BYTES} bytes are allowed",
            text.len()
        );
        sink.report(&Path::default(), tree::Mark::START, message);
        Vec::new()
    } else {
        read_documents(text, &mut sink)
    };
    match ManifestErrors::new(sink.into_errors()) {
        Some(errors) => Err(errors),
        None => Ok(manifests),
    }
}

/// Decodes each non-empty document, then reports what stopped the YAML parser.
fn read_documents(text: &str, sink: &mut Sink) -> Vec<(usize, Manifest)> {
    let loaded = tree::load(text);
    let mut manifests = Vec::with_capacity(loaded.documents.len());
    for document in &loaded.documents {
        if document.root.is_empty_document() {
            continue;
        }
        sink.start_document(document.number);
        let number = document.number;
        manifests.extend(decode::manifest(&document.root, sink).map(|m| (number, m)));
        if sink.is_full() {
            return manifests;
        }
    }
    if let Some(failure) = loaded.failure {
        sink.start_document(failure.document);
        sink.report(&Path::default(), failure.mark, failure.message);
    }
    manifests
}
