//! The typed form of a pipeline manifest, with every default filled in.
//!
//! The serde derives give the JSON form kept in the metadata store: field names are the
//! manifest's own (camelCase), so a stored pipeline reads like the YAML it came from.
//! Deserializing that JSON does not re-validate it; only [`parse`](super::parse) checks
//! ranges and names.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// One `kind: Pipeline` document of a manifest file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Manifest {
    /// `metadata.name`: the pipeline's name, unique on the broker.
    pub name: String,
    /// `spec`: what the pipeline reads, runs and writes.
    pub spec: PipelineSpec,
}

/// `spec`: everything about a pipeline except its name.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PipelineSpec {
    /// `spec.input`: the topics read and where reading starts.
    pub input: Input,
    /// `spec.processor`: the WebAssembly processor that handles each batch.
    pub processor: ProcessorRef,
    /// `spec.outputs`: the topics the processor may write to, in file order.
    pub outputs: Vec<Output>,
    /// `spec.delivery`: the delivery guarantee.
    pub delivery: Delivery,
    /// `spec.parallelism`: how many instances of the processor run at once.
    pub parallelism: u32,
    /// `spec.batch`: how records are grouped before the processor sees them.
    pub batch: BatchSpec,
    /// `spec.limits`: resources one processor instance may use.
    pub limits: LimitSpec,
    /// `spec.onError`: what happens to a batch the processor fails on.
    pub on_error: OnError,
    /// `spec.state`: the keyed state the processor keeps (none by default).
    #[serde(default, skip_serializing_if = "StateSpec::is_default")]
    pub state: StateSpec,
    /// `spec.eventTime`: how the watermark follows the records' timestamps.
    #[serde(default, skip_serializing_if = "EventTimeSpec::is_default")]
    pub event_time: EventTimeSpec,
}

/// `spec.eventTime`: the watermark of each input partition is the highest
/// timestamp processed so far minus `allowedLatenessMs`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct EventTimeSpec {
    /// `allowedLatenessMs`: how far behind the newest record a record may
    /// be and still count (default 0).
    pub allowed_lateness_ms: u32,
    /// `idleTimeoutMs`: after this long without records (by the worker's
    /// clock), a partition's event time moves on with the wall clock, this
    /// far behind it, so that its due timers fire; 0 (the default) waits
    /// for records.
    #[serde(default)]
    pub idle_timeout_ms: u32,
}

impl EventTimeSpec {
    fn is_default(&self) -> bool {
        *self == EventTimeSpec::default()
    }
}

/// `spec.state`: whether the processor keeps keyed state, restored from the
/// pipeline's changelog topic (`<pipeline>.state`) after a failure.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct StateSpec {
    /// `enabled`: the processor may use the `state` interface.
    pub enabled: bool,
    /// `ttlMs`: a key expires once the watermark is this far past where it
    /// stood when the key was last written; 0 (the default) keeps keys
    /// until deleted.
    #[serde(default)]
    pub ttl_ms: u32,
}

impl StateSpec {
    fn is_default(&self) -> bool {
        *self == StateSpec::default()
    }
}

/// `spec.input`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Input {
    /// `spec.input.topics`: the topics read, in file order, without duplicates.
    pub topics: Vec<String>,
    /// `spec.input.startFrom`: where a new pipeline starts reading.
    pub start_from: StartFrom,
}

/// `spec.input.startFrom`: where a pipeline without committed offsets starts reading.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum StartFrom {
    /// `earliest`: the oldest record still kept (the default).
    #[default]
    Earliest,
    /// `latest`: only records appended after the pipeline starts.
    Latest,
    /// `{offset: N}`: offset N of every partition.
    Offset(u64),
    /// `{timestamp: RFC3339}`: the first record at or after this time, in milliseconds
    /// since the Unix epoch (UTC).
    Timestamp(i64),
}

/// `spec.processor`: which processor runs, and its parameters.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ProcessorRef {
    /// `spec.processor.name`: the registered processor's name.
    pub name: String,
    /// `spec.processor.version`: a pinned version, or `None` for the latest version at
    /// the time the pipeline is applied.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version: Option<u32>,
    /// `spec.processor.params`: parameter values exactly as written in the file.
    #[serde(default)]
    pub params: BTreeMap<String, String>,
}

/// One entry of `spec.outputs`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Output {
    /// `topic`: the topic written to.
    pub topic: String,
    /// `partitions`: the partition count used if the topic has to be created, or `None`
    /// for the broker's default. An existing topic is never changed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub partitions: Option<u32>,
    /// `replicationFactor`: the replica count used if the topic has to be
    /// created, or `None` for the broker's default.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub replication_factor: Option<u32>,
}

/// `spec.delivery`: the delivery guarantee from input to outputs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Delivery {
    /// `at-most-once`: a record may be lost after a failure but is never handled twice.
    AtMostOnce,
    /// `at-least-once`: no record is lost, but one may be handled again after a failure.
    AtLeastOnce,
    /// `exactly-once`: every record's effect on the outputs happens exactly once.
    ExactlyOnce,
}

/// `spec.batch`: how many records, or how long, to gather before calling the processor.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct BatchSpec {
    /// `maxRecords`: the most records in one batch (default 256).
    pub max_records: u32,
    /// `maxWaitMs`: the longest wait for a batch to fill, in milliseconds (default 50).
    pub max_wait_ms: u32,
}

impl Default for BatchSpec {
    fn default() -> Self {
        Self {
            max_records: 256,
            max_wait_ms: 50,
        }
    }
}

/// `spec.limits`: the resources one processor instance may use.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct LimitSpec {
    /// `memoryMiB`: the processor's linear memory limit, in MiB (default 64).
    #[serde(rename = "memoryMiB")]
    pub memory_mib: u32,
    /// `cpuMsPerBatch`: the CPU time one batch may take, in milliseconds (default 1000).
    pub cpu_ms_per_batch: u32,
    /// `stateMiB`: the keyed state one task (one input partition) keeps in
    /// memory, keys and values together, in MiB (default 256); past it the
    /// state moves to disk.
    #[serde(rename = "stateMiB", default = "default_state_mib")]
    pub state_mib: u32,
    /// `stateDiskMiB`: the most keyed state one task may keep at all, on
    /// disk, in MiB (default 10240).
    #[serde(rename = "stateDiskMiB", default = "default_state_disk_mib")]
    pub state_disk_mib: u32,
}

fn default_state_mib() -> u32 {
    LimitSpec::default().state_mib
}

fn default_state_disk_mib() -> u32 {
    LimitSpec::default().state_disk_mib
}

impl Default for LimitSpec {
    fn default() -> Self {
        Self {
            memory_mib: 64,
            cpu_ms_per_batch: 1000,
            state_mib: 256,
            state_disk_mib: 10_240,
        }
    }
}

/// `spec.onError`: what happens to a batch the processor fails on.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum OnError {
    /// `stop`: the pipeline stops and waits for an operator (the default).
    #[default]
    Stop,
    /// `skip`: the failed batch is skipped and the pipeline goes on.
    Skip,
    /// `{deadLetter: TOPIC}`: the failed batch's records go to this topic and the
    /// pipeline goes on.
    DeadLetter(String),
}
