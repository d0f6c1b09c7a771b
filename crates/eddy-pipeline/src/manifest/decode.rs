//! From a document's YAML tree to a [`Manifest`], checking every rule of the format.

use std::collections::{BTreeMap, HashMap};
use std::ops::RangeInclusive;

use super::reader::{
    self, Fields, Path, Sink, integer, list, mismatch, quote, small_integer, text,
};
use super::rules::{self, NameKind};
use super::time::parse_rfc3339_ms;
use super::tree::{Content, Mark, Node};
use super::types::{
    BatchSpec, Delivery, EventTimeSpec, Input, LimitSpec, Manifest, OnError, Output, PipelineSpec,
    ProcessorRef, StartFrom, StateSpec,
};

const API_VERSION: &str = "eddy/v1";
const KIND: &str = "Pipeline";

// The fields each mapping may have, then those it must have.
const TOP_FIELDS: &[&str] = &["apiVersion", "kind", "metadata", "spec"];
const TOP_REQUIRED: &[&str] = TOP_FIELDS;
const METADATA_FIELDS: &[&str] = &["name"];
const METADATA_REQUIRED: &[&str] = METADATA_FIELDS;
const SPEC_FIELDS: &[&str] = &[
    "input",
    "processor",
    "outputs",
    "delivery",
    "parallelism",
    "batch",
    "limits",
    "onError",
    "state",
    "eventTime",
];
const SPEC_REQUIRED: &[&str] = &["input", "processor", "outputs", "delivery"];
const INPUT_FIELDS: &[&str] = &["topics", "startFrom"];
const INPUT_REQUIRED: &[&str] = &["topics"];
const START_FROM_FIELDS: &[&str] = &["offset", "timestamp"];
const PROCESSOR_FIELDS: &[&str] = &["name", "version", "params"];
const PROCESSOR_REQUIRED: &[&str] = &["name"];
const OUTPUT_FIELDS: &[&str] = &["topic", "partitions", "replicationFactor"];
const OUTPUT_REQUIRED: &[&str] = &["topic"];
const BATCH_FIELDS: &[&str] = &["maxRecords", "maxWaitMs"];
const LIMITS_FIELDS: &[&str] = &["memoryMiB", "cpuMsPerBatch", "stateMiB", "stateDiskMiB"];
const STATE_FIELDS: &[&str] = &["enabled", "ttlMs"];
const EVENT_TIME_FIELDS: &[&str] = &["allowedLatenessMs", "idleTimeoutMs"];
const ON_ERROR_FIELDS: &[&str] = &["deadLetter"];

const DEFAULT_PARALLELISM: u32 = 1;
const PARALLELISM: RangeInclusive<u32> = 1..=256;
const TOPICS_PER_LIST: RangeInclusive<usize> = 1..=64;
const VERSION: RangeInclusive<u32> = 1..=u32::MAX;
const PARTITIONS: RangeInclusive<u32> = 1..=10_000;
const REPLICATION_FACTOR: RangeInclusive<u32> = 1..=16;
const MAX_RECORDS: RangeInclusive<u32> = 1..=65_536;
const MAX_WAIT_MS: RangeInclusive<u32> = 0..=60_000;
const MEMORY_MIB: RangeInclusive<u32> = 1..=super::MEMORY_MIB_MAX;
const CPU_MS_PER_BATCH: RangeInclusive<u32> = 5..=super::CPU_MS_PER_BATCH_MAX;
const STATE_MIB: RangeInclusive<u32> = 1..=super::STATE_MIB_MAX;
const STATE_DISK_MIB: RangeInclusive<u32> = 1..=super::STATE_DISK_MIB_MAX;
const ALLOWED_LATENESS_MS: RangeInclusive<u32> = 0..=super::ALLOWED_LATENESS_MS_MAX;
const IDLE_TIMEOUT_MS: RangeInclusive<u32> = 0..=super::ALLOWED_LATENESS_MS_MAX;
const TTL_MS: RangeInclusive<u32> = 0..=super::STATE_TTL_MS_MAX;

const START_FROM_EXPECTED: &str = "earliest, latest, {offset: N} or {timestamp: RFC3339}";
const ON_ERROR_EXPECTED: &str = "stop, skip or {deadLetter: TOPIC}";

/// Reads one document; `None` once its errors are in `sink`.
pub(super) fn manifest(root: &Node<'_>, sink: &mut Sink) -> Option<Manifest> {
    let top = Fields::new(root, &Path::default(), TOP_FIELDS, sink)?;
    // A foreign apiVersion or kind means a foreign schema: its fields would only be a
    // list of follow-on errors, so nothing else is checked.
    // `&`, not `&&`: both are checked, so both can be reported.
    let header_ok = header_field(&top, "apiVersion", API_VERSION, sink)
        & header_field(&top, "kind", KIND, sink);
    if !header_ok {
        return None;
    }
    // From here on, a missing required field is reported by `check`, and its `get`
    // gives `None`.
    top.check(TOP_REQUIRED, sink);
    let name = top
        .get("metadata")
        .and_then(|node| metadata(node, &top.path_of("metadata"), sink));
    let spec = top
        .get("spec")
        .and_then(|node| spec(node, &top.path_of("spec"), sink));
    Some(Manifest {
        name: name?,
        spec: spec?,
    })
}

/// Checks a field that must hold one exact word. Only a wrong word is fatal: when the
/// field is missing, the rest of the document is still worth checking.
fn header_field(top: &Fields<'_, '_>, name: &str, want: &str, sink: &mut Sink) -> bool {
    let path = top.path_of(name);
    let Some(node) = top.get(name) else {
        return true;
    };
    match text(node, &path, want, sink) {
        Some(found) if found == want => true,
        Some(_) => {
            mismatch(node, &path, want, sink);
            false
        }
        None => false,
    }
}

fn metadata(node: &Node<'_>, path: &Path, sink: &mut Sink) -> Option<String> {
    let fields = Fields::new(node, path, METADATA_FIELDS, sink)?;
    fields.check(METADATA_REQUIRED, sink);
    let name = fields.get("name")?;
    name_value(name, &fields.path_of("name"), NameKind::Pipeline, sink).map(str::to_owned)
}

/// A name-like string, checked against the rules for its kind.
fn name_value<'n>(
    node: &'n Node<'_>,
    path: &Path,
    kind: NameKind,
    sink: &mut Sink,
) -> Option<&'n str> {
    let name = text(node, path, kind.expected(), sink)?;
    match rules::check_name(name, kind) {
        Ok(()) => Some(name),
        Err(message) => {
            sink.report(path, node.mark, message);
            None
        }
    }
}

/// A value together with the place it was written, for checks that span fields.
#[derive(Debug)]
struct Located<T> {
    value: T,
    path: Path,
    mark: Mark,
}

fn spec(node: &Node<'_>, path: &Path, sink: &mut Sink) -> Option<PipelineSpec> {
    let fields = Fields::new(node, path, SPEC_FIELDS, sink)?;
    fields.check(SPEC_REQUIRED, sink);
    let at = |name| fields.path_of(name);
    let input = fields
        .get("input")
        .and_then(|node| input(node, &at("input"), sink));
    let processor = fields
        .get("processor")
        .and_then(|node| processor(node, &at("processor"), sink));
    let outputs = fields
        .get("outputs")
        .and_then(|node| outputs(node, &at("outputs"), sink));
    let delivery = fields
        .get("delivery")
        .and_then(|node| delivery(node, &at("delivery"), sink));
    let parallelism = int_field(
        &fields,
        "parallelism",
        PARALLELISM,
        DEFAULT_PARALLELISM,
        sink,
    );
    let batch = optional(fields.get("batch"), BatchSpec::default(), |node| {
        batch(node, &at("batch"), sink)
    });
    let limits = optional(fields.get("limits"), LimitSpec::default(), |node| {
        limits(node, &at("limits"), sink)
    });
    let state = optional(fields.get("state"), StateSpec::default(), |node| {
        state(node, &at("state"), sink)
    });
    let event_time = optional(fields.get("eventTime"), EventTimeSpec::default(), |node| {
        event_time(node, &at("eventTime"), sink)
    });
    let on_error = match fields.get("onError") {
        Some(node) => on_error(node, &at("onError"), sink),
        None => Some(Located {
            value: OnError::default(),
            path: at("onError"),
            mark: fields.mark(),
        }),
    };

    let (input_topics, start_from) = input?;
    let (outputs, on_error) = (outputs?, on_error?);
    check_topic_graph(&input_topics, &outputs, &on_error, sink);
    let (state, delivery, event_time) = (state?, delivery?, event_time?);
    if state.enabled {
        check_stateful(&fields, &input_topics, delivery, sink);
    } else if let Some(node) = fields.get("eventTime") {
        sink.report(
            &at("eventTime"),
            node.mark,
            "spec.eventTime needs `state: { enabled: true }`: timers and the watermark are \
             kept in the state"
                .to_owned(),
        );
    }
    Some(PipelineSpec {
        input: Input {
            topics: input_topics.into_iter().map(|t| t.value).collect(),
            start_from,
        },
        processor: processor?,
        outputs: outputs.into_iter().map(|o| o.value).collect(),
        delivery,
        parallelism: parallelism?,
        batch: batch?,
        limits: limits?,
        on_error: on_error.value,
        state,
        event_time,
    })
}

fn event_time(node: &Node<'_>, path: &Path, sink: &mut Sink) -> Option<EventTimeSpec> {
    let fields = Fields::new(node, path, EVENT_TIME_FIELDS, sink)?;
    fields.check(&[], sink);
    let allowed_lateness_ms = int_field(&fields, "allowedLatenessMs", ALLOWED_LATENESS_MS, 0, sink);
    let idle_timeout_ms = int_field(&fields, "idleTimeoutMs", IDLE_TIMEOUT_MS, 0, sink);
    Some(EventTimeSpec {
        allowed_lateness_ms: allowed_lateness_ms?,
        idle_timeout_ms: idle_timeout_ms?,
    })
}

/// Keyed state is kept per input partition and restored exactly only with
/// exactly-once delivery, whose producer identity and sequences follow the
/// input position.
fn check_stateful(
    fields: &Fields<'_, '_>,
    inputs: &[Located<String>],
    delivery: Delivery,
    sink: &mut Sink,
) {
    let path = fields.path_of("state");
    let mark = fields
        .get("state")
        .map_or_else(|| fields.mark(), |n| n.mark);
    if delivery != Delivery::ExactlyOnce {
        sink.report(
            &path,
            mark,
            "a pipeline with state needs `delivery: exactly-once`: its state is restored \
             exactly only with the outputs it goes with"
                .to_owned(),
        );
    }
    if inputs.len() != 1 {
        sink.report(
            &path,
            mark,
            format!(
                "a pipeline with state reads exactly one input topic, not {}: state is kept \
                 per input partition (co-partition the inputs into one topic first)",
                inputs.len()
            ),
        );
    }
}

fn state(node: &Node<'_>, path: &Path, sink: &mut Sink) -> Option<StateSpec> {
    let fields = Fields::new(node, path, STATE_FIELDS, sink)?;
    fields.check(&["enabled"], sink);
    let ttl_ms = int_field(&fields, "ttlMs", TTL_MS, 0, sink);
    let enabled = match fields.get("enabled") {
        Some(node) => boolean(node, &fields.path_of("enabled"), sink)?,
        None => return None,
    };
    Some(StateSpec {
        enabled,
        ttl_ms: ttl_ms?,
    })
}

fn boolean(node: &Node<'_>, path: &Path, sink: &mut Sink) -> Option<bool> {
    const EXPECTED: &str = "true or false";
    match text(node, path, EXPECTED, sink)? {
        "true" => Some(true),
        "false" => Some(false),
        _ => {
            mismatch(node, path, EXPECTED, sink);
            None
        }
    }
}

/// An integer field that has a default.
fn int_field(
    fields: &Fields<'_, '_>,
    name: &str,
    range: RangeInclusive<u32>,
    default: u32,
    sink: &mut Sink,
) -> Option<u32> {
    optional_int_field(fields, name, range, sink).map(|n| n.unwrap_or(default))
}

/// An integer field whose absence means something of its own: `Some(None)` when it
/// is absent, `None` when it is given but wrong.
#[allow(
    clippy::option_option,
    reason = "absent, given and wrong are three cases"
)]
fn optional_int_field(
    fields: &Fields<'_, '_>,
    name: &str,
    range: RangeInclusive<u32>,
    sink: &mut Sink,
) -> Option<Option<u32>> {
    match fields.get(name) {
        Some(node) => small_integer(node, &fields.path_of(name), range, sink).map(Some),
        None => Some(None),
    }
}

/// Reads an optional field with `read`, or gives `default` when it is absent.
fn optional<'n, 'a, T>(
    node: Option<&'n Node<'a>>,
    default: T,
    read: impl FnOnce(&'n Node<'a>) -> Option<T>,
) -> Option<T> {
    node.map_or(Some(default), read)
}

/// An output topic equal to an input topic would feed the pipeline its own output,
/// and dead letters must not mix with the records the pipeline reads or writes.
fn check_topic_graph(
    inputs: &[Located<String>],
    outputs: &[Located<Output>],
    on_error: &Located<OnError>,
    sink: &mut Sink,
) {
    let is_input = |topic: &str| inputs.iter().any(|t| t.value == topic);
    for output in outputs {
        let topic = &output.value.topic;
        if is_input(topic) {
            let message = format!(
                "{} is also an input topic; a pipeline cannot write to a topic it reads",
                quote(topic)
            );
            sink.report(&output.path, output.mark, message);
        }
    }
    let OnError::DeadLetter(topic) = &on_error.value else {
        return;
    };
    let clash = if is_input(topic) {
        "an input"
    } else if outputs.iter().any(|o| &o.value.topic == topic) {
        "an output"
    } else {
        return;
    };
    let message = format!(
        "{} is also {clash} topic; the dead-letter topic must differ from every input \
         and output topic",
        quote(topic)
    );
    sink.report(&on_error.path, on_error.mark, message);
}

fn input(
    node: &Node<'_>,
    path: &Path,
    sink: &mut Sink,
) -> Option<(Vec<Located<String>>, StartFrom)> {
    let fields = Fields::new(node, path, INPUT_FIELDS, sink)?;
    fields.check(INPUT_REQUIRED, sink);
    let topics = fields
        .get("topics")
        .and_then(|node| input_topics(node, &fields.path_of("topics"), sink));
    let start_from = optional(fields.get("startFrom"), StartFrom::default(), |node| {
        start_from(node, &fields.path_of("startFrom"), sink)
    });
    Some((topics?, start_from?))
}

fn input_topics(node: &Node<'_>, path: &Path, sink: &mut Sink) -> Option<Vec<Located<String>>> {
    let items = list(node, path, "a list of topic names", sink)?;
    if !count_in_range(node, path, items.len(), "topics", sink) {
        return None;
    }
    let mut topics = Vec::with_capacity(items.len());
    let mut all_read = true;
    for (index, item) in items.iter().enumerate() {
        let path = path.index(index);
        match name_value(item, &path, NameKind::Topic, sink) {
            Some(name) => topics.push(Located {
                value: name.to_owned(),
                path,
                mark: item.mark,
            }),
            None => all_read = false,
        }
    }
    let unique = no_duplicates(topics.iter().map(|t| (t, t.value.as_str())), sink);
    (all_read && unique).then_some(topics)
}

/// Checks the number of entries of a topic list; reports at the list.
fn count_in_range(node: &Node<'_>, path: &Path, count: usize, what: &str, sink: &mut Sink) -> bool {
    let ok = TOPICS_PER_LIST.contains(&count);
    if !ok {
        let (min, max) = (TOPICS_PER_LIST.start(), TOPICS_PER_LIST.end());
        let message = format!("expected {min} to {max} {what}, found {count}");
        sink.report(path, node.mark, message);
    }
    ok
}

/// Reports every topic already listed before it; returns whether there were none.
fn no_duplicates<'t, T: 't>(
    topics: impl Iterator<Item = (&'t Located<T>, &'t str)>,
    sink: &mut Sink,
) -> bool {
    let mut first_seen: HashMap<&str, &Located<T>> = HashMap::new();
    let mut unique = true;
    for (site, topic) in topics {
        if let Some(first) = first_seen.get(topic) {
            let message = format!(
                "{} is listed twice; it is already at {} (line {}, column {})",
                quote(topic),
                first.path,
                first.mark.line,
                first.mark.column
            );
            sink.report(&site.path, site.mark, message);
            unique = false;
        } else {
            first_seen.insert(topic, site);
        }
    }
    unique
}

fn start_from(node: &Node<'_>, path: &Path, sink: &mut Sink) -> Option<StartFrom> {
    match node.content() {
        Content::Map(_) => start_from_map(node, path, sink),
        _ => match text(node, path, START_FROM_EXPECTED, sink)? {
            "earliest" => Some(StartFrom::Earliest),
            "latest" => Some(StartFrom::Latest),
            _ => {
                mismatch(node, path, START_FROM_EXPECTED, sink);
                None
            }
        },
    }
}

fn start_from_map(node: &Node<'_>, path: &Path, sink: &mut Sink) -> Option<StartFrom> {
    let fields = Fields::new(node, path, START_FROM_FIELDS, sink)?;
    if !fields.check(&[], sink) {
        return None;
    }
    match (fields.get("offset"), fields.get("timestamp")) {
        (Some(offset), None) => {
            integer(offset, &fields.path_of("offset"), 0..=u64::MAX, sink).map(StartFrom::Offset)
        }
        (None, Some(timestamp)) => {
            timestamp_ms(timestamp, &fields.path_of("timestamp"), sink).map(StartFrom::Timestamp)
        }
        (Some(_), Some(_)) => {
            let message = "expected either offset or timestamp, found both";
            sink.report(fields.path(), fields.mark(), message);
            None
        }
        (None, None) => {
            mismatch(node, path, START_FROM_EXPECTED, sink);
            None
        }
    }
}

fn timestamp_ms(node: &Node<'_>, path: &Path, sink: &mut Sink) -> Option<i64> {
    const EXPECTED: &str = "an RFC 3339 time from 1970 to 9999 such as 2026-12-01T10:00:00Z";
    let written = text(node, path, EXPECTED, sink)?;
    let ms = parse_rfc3339_ms(written);
    if ms.is_none() {
        mismatch(node, path, EXPECTED, sink);
    }
    ms
}

fn processor(node: &Node<'_>, path: &Path, sink: &mut Sink) -> Option<ProcessorRef> {
    let fields = Fields::new(node, path, PROCESSOR_FIELDS, sink)?;
    fields.check(PROCESSOR_REQUIRED, sink);
    let name = fields
        .get("name")
        .and_then(|node| name_value(node, &fields.path_of("name"), NameKind::Processor, sink));
    // No version means the latest at apply time, not a default version.
    let version = optional_int_field(&fields, "version", VERSION, sink);
    let params = optional(fields.get("params"), BTreeMap::new(), |node| {
        params(node, &fields.path_of("params"), sink)
    });
    Some(ProcessorRef {
        name: name?.to_owned(),
        version: version?,
        params: params?,
    })
}

fn params(node: &Node<'_>, path: &Path, sink: &mut Sink) -> Option<BTreeMap<String, String>> {
    let entries = reader::entries(node, path, "param", sink)?;
    if let Err(message) = rules::check_param_count(entries.len()) {
        sink.report(path, node.mark, message);
        return None;
    }
    let mut params = BTreeMap::new();
    let mut all_read = true;
    for entry in entries {
        let value = param_value(entry.value, &path.field(entry.key), sink);
        if let Err(message) = rules::check_param_name(entry.key) {
            sink.report(path, entry.key_mark, message);
            all_read = false;
        }
        match value {
            Some(value) => {
                params.insert(entry.key.to_owned(), value.to_owned());
            }
            None => all_read = false,
        }
    }
    all_read.then_some(params)
}

/// A param's value: any scalar but null, kept as the text written.
fn param_value<'n>(node: &'n Node<'_>, path: &Path, sink: &mut Sink) -> Option<&'n str> {
    let value = text(node, path, "a string, number or boolean", sink)?;
    match rules::check_param_value(value) {
        Ok(()) => Some(value),
        Err(message) => {
            sink.report(path, node.mark, message);
            None
        }
    }
}

fn outputs(node: &Node<'_>, path: &Path, sink: &mut Sink) -> Option<Vec<Located<Output>>> {
    let items = list(node, path, "a list of outputs", sink)?;
    if !count_in_range(node, path, items.len(), "outputs", sink) {
        return None;
    }
    let mut outputs = Vec::with_capacity(items.len());
    let mut all_read = true;
    for (index, item) in items.iter().enumerate() {
        match output(item, &path.index(index), sink) {
            Some(output) => outputs.push(output),
            None => all_read = false,
        }
    }
    let unique = no_duplicates(outputs.iter().map(|o| (o, o.value.topic.as_str())), sink);
    (all_read && unique).then_some(outputs)
}

/// One output, located at its `topic` value: that is what cross-field checks point at.
fn output(node: &Node<'_>, path: &Path, sink: &mut Sink) -> Option<Located<Output>> {
    let fields = Fields::new(node, path, OUTPUT_FIELDS, sink)?;
    fields.check(OUTPUT_REQUIRED, sink);
    let topic_path = fields.path_of("topic");
    let topic_node = fields.get("topic");
    let topic = topic_node.and_then(|node| name_value(node, &topic_path, NameKind::Topic, sink));
    let partitions = optional_int_field(&fields, "partitions", PARTITIONS, sink);
    let replication_factor =
        optional_int_field(&fields, "replicationFactor", REPLICATION_FACTOR, sink);
    Some(Located {
        value: Output {
            topic: topic?.to_owned(),
            partitions: partitions?,
            replication_factor: replication_factor?,
        },
        path: topic_path,
        mark: topic_node?.mark,
    })
}

fn delivery(node: &Node<'_>, path: &Path, sink: &mut Sink) -> Option<Delivery> {
    const EXPECTED: &str = "at-most-once, at-least-once or exactly-once";
    match text(node, path, EXPECTED, sink)? {
        "at-most-once" => Some(Delivery::AtMostOnce),
        "at-least-once" => Some(Delivery::AtLeastOnce),
        "exactly-once" => Some(Delivery::ExactlyOnce),
        _ => {
            mismatch(node, path, EXPECTED, sink);
            None
        }
    }
}

fn batch(node: &Node<'_>, path: &Path, sink: &mut Sink) -> Option<BatchSpec> {
    let fields = Fields::new(node, path, BATCH_FIELDS, sink)?;
    fields.check(&[], sink);
    let default = BatchSpec::default();
    let max_records = int_field(
        &fields,
        "maxRecords",
        MAX_RECORDS,
        default.max_records,
        sink,
    );
    let max_wait_ms = int_field(&fields, "maxWaitMs", MAX_WAIT_MS, default.max_wait_ms, sink);
    Some(BatchSpec {
        max_records: max_records?,
        max_wait_ms: max_wait_ms?,
    })
}

fn limits(node: &Node<'_>, path: &Path, sink: &mut Sink) -> Option<LimitSpec> {
    let fields = Fields::new(node, path, LIMITS_FIELDS, sink)?;
    fields.check(&[], sink);
    let default = LimitSpec::default();
    let memory_mib = int_field(&fields, "memoryMiB", MEMORY_MIB, default.memory_mib, sink);
    let cpu_ms_per_batch = int_field(
        &fields,
        "cpuMsPerBatch",
        CPU_MS_PER_BATCH,
        default.cpu_ms_per_batch,
        sink,
    );
    let state_mib = int_field(&fields, "stateMiB", STATE_MIB, default.state_mib, sink);
    let state_disk_mib = int_field(
        &fields,
        "stateDiskMiB",
        STATE_DISK_MIB,
        default.state_disk_mib,
        sink,
    );
    Some(LimitSpec {
        memory_mib: memory_mib?,
        cpu_ms_per_batch: cpu_ms_per_batch?,
        state_mib: state_mib?,
        state_disk_mib: state_disk_mib?,
    })
}

/// `onError`, located at the dead-letter topic when there is one.
fn on_error(node: &Node<'_>, path: &Path, sink: &mut Sink) -> Option<Located<OnError>> {
    let value = match node.content() {
        Content::Map(_) => return dead_letter(node, path, sink),
        _ => match text(node, path, ON_ERROR_EXPECTED, sink)? {
            "stop" => OnError::Stop,
            "skip" => OnError::Skip,
            _ => {
                mismatch(node, path, ON_ERROR_EXPECTED, sink);
                return None;
            }
        },
    };
    Some(Located {
        value,
        path: path.clone(),
        mark: node.mark,
    })
}

fn dead_letter(node: &Node<'_>, path: &Path, sink: &mut Sink) -> Option<Located<OnError>> {
    let fields = Fields::new(node, path, ON_ERROR_FIELDS, sink)?;
    if !fields.check(&[], sink) {
        return None;
    }
    let Some(topic_node) = fields.get("deadLetter") else {
        mismatch(node, path, ON_ERROR_EXPECTED, sink);
        return None;
    };
    let topic_path = fields.path_of("deadLetter");
    let topic = name_value(topic_node, &topic_path, NameKind::Topic, sink)?;
    Some(Located {
        value: OnError::DeadLetter(topic.to_owned()),
        path: topic_path,
        mark: topic_node.mark,
    })
}
