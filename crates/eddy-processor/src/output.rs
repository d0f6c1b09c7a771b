//! The output side: the records a call produces.

use crate::Record;
use crate::batch::{FORWARDED, HAS_KEY, HAS_TIMESTAMP, HAS_TOPIC, HAS_VALUE};
use crate::bindings::eddy::processor::types::{Header, OutputBatch, Span};

/// A record to produce, borrowing its parts; [`Output::push`] copies them.
#[derive(Debug, Clone, Copy, Default)]
pub struct OutputRecord<'a> {
    /// The output topic; `None` for the pipeline's first output topic.
    pub topic: Option<&'a str>,
    pub key: Option<&'a [u8]>,
    /// `None` for a tombstone.
    pub value: Option<&'a [u8]>,
    /// (name, value) pairs, in order.
    pub headers: &'a [(&'a str, &'a [u8])],
    /// Milliseconds since the Unix epoch; `None` lets the host choose.
    pub timestamp: Option<i64>,
}

impl<'a> OutputRecord<'a> {
    /// A record with only a value, to the first output topic.
    pub fn value(value: &'a [u8]) -> Self {
        OutputRecord {
            value: Some(value),
            ..OutputRecord::default()
        }
    }
}

/// The records a call produces, in order, kept column by column as the
/// WIT world passes them.
#[derive(Debug, Default)]
pub struct Output {
    data: Vec<u8>,
    presence: Vec<u8>,
    /// [`OUTPUT_LAYOUT`] entries per record: key start and length, value
    /// start and length, first header and header count, topic index.
    layout: Vec<u32>,
    timestamps: Vec<i64>,
    headers: Vec<Header>,
    topics: Vec<String>,
}

/// Entries per record in an `output-batch`'s `layout`.
const OUTPUT_LAYOUT: usize = 7;

impl Output {
    pub(crate) fn with_capacity(records: usize) -> Output {
        Output {
            presence: Vec::with_capacity(records),
            layout: Vec::with_capacity(records * OUTPUT_LAYOUT),
            timestamps: Vec::with_capacity(records),
            ..Output::default()
        }
    }

    /// Number of records pushed so far.
    pub fn len(&self) -> usize {
        self.presence.len()
    }

    pub fn is_empty(&self) -> bool {
        self.presence.is_empty()
    }

    /// Produces `record` unchanged (key, value, headers and timestamp) to
    /// the first output topic.
    pub fn forward(&mut self, record: &Record<'_>) {
        self.forward_to(record, None);
    }

    /// Produces `record` unchanged to `topic` (`None`: the first output
    /// topic). Its bytes are not copied: the host produces the input
    /// record it already holds, so forwarding costs a few integers.
    pub fn forward_to(&mut self, record: &Record<'_>, topic: Option<&str>) {
        let mut presence = FORWARDED;
        let topic = match topic {
            Some(t) => {
                presence |= HAS_TOPIC;
                self.topic(t)
            }
            None => 0,
        };
        self.presence.push(presence);
        let source = to_u32(record.index());
        self.layout
            .extend_from_slice(&[source, 0, 0, 0, 0, 0, topic]);
        self.timestamps.push(0);
    }

    /// Produces a new record.
    pub fn push(&mut self, record: OutputRecord<'_>) {
        let first_header = self.headers.len();
        for (name, value) in record.headers {
            self.header(name, value);
        }
        let parts = Parts {
            topic: record.topic,
            key: record.key,
            value: record.value,
            timestamp: record.timestamp,
        };
        self.record(parts, first_header);
    }

    fn header(&mut self, name: &str, value: &[u8]) {
        let header = Header {
            name: self.bytes(name.as_bytes()),
            value: self.bytes(value),
        };
        self.headers.push(header);
    }

    /// Appends the record's entries to every list.
    fn record(&mut self, parts: Parts<'_>, first_header: usize) {
        let mut presence = 0;
        let key = match parts.key {
            Some(k) => {
                presence |= HAS_KEY;
                self.bytes(k)
            }
            None => Span { start: 0, len: 0 },
        };
        let value = match parts.value {
            Some(v) => {
                presence |= HAS_VALUE;
                self.bytes(v)
            }
            None => Span { start: 0, len: 0 },
        };
        if parts.timestamp.is_some() {
            presence |= HAS_TIMESTAMP;
        }
        let topic = match parts.topic {
            Some(t) => {
                presence |= HAS_TOPIC;
                self.topic(t)
            }
            None => 0,
        };
        self.presence.push(presence);
        let headers = to_u32(self.headers.len() - first_header);
        self.layout.extend_from_slice(&[
            key.start,
            key.len,
            value.start,
            value.len,
            to_u32(first_header),
            headers,
            topic,
        ]);
        self.timestamps.push(parts.timestamp.unwrap_or(0));
    }

    fn bytes(&mut self, bytes: &[u8]) -> Span {
        let start = self.data.len();
        self.data.extend_from_slice(bytes);
        Span {
            start: to_u32(start),
            len: to_u32(bytes.len()),
        }
    }

    fn topic(&mut self, name: &str) -> u32 {
        // Few distinct topics per batch: the last one used is the usual hit.
        if let Some(i) = self.topics.iter().rposition(|t| t == name) {
            return to_u32(i);
        }
        self.topics.push(name.to_owned());
        to_u32(self.topics.len() - 1)
    }
}

/// What one output record is made of.
struct Parts<'a> {
    topic: Option<&'a str>,
    key: Option<&'a [u8]>,
    value: Option<&'a [u8]>,
    timestamp: Option<i64>,
}

/// Sizes in a wasm32 guest always fit in `u32`.
fn to_u32(n: usize) -> u32 {
    u32::try_from(n).unwrap_or(u32::MAX)
}

impl From<Output> for OutputBatch {
    fn from(out: Output) -> Self {
        OutputBatch {
            data: out.data,
            presence: out.presence,
            layout: out.layout,
            timestamps: out.timestamps,
            headers: out.headers,
            topics: out.topics,
        }
    }
}
