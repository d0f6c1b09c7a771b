//! The output side: the records a call produces.

use crate::Record;
use crate::bindings::eddy::processor::types::{
    Header, OutputBatch, OutputRecord as RawOutput, Span,
};

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

/// The records a call produces, in order.
#[derive(Debug, Default)]
pub struct Output {
    data: Vec<u8>,
    headers: Vec<Header>,
    topics: Vec<String>,
    records: Vec<RawOutput>,
}

impl Output {
    pub(crate) fn with_capacity(records: usize) -> Output {
        Output {
            records: Vec::with_capacity(records),
            ..Output::default()
        }
    }

    /// Number of records pushed so far.
    pub fn len(&self) -> usize {
        self.records.len()
    }

    pub fn is_empty(&self) -> bool {
        self.records.is_empty()
    }

    /// Produces `record` unchanged (key, value, headers and timestamp) to
    /// the first output topic.
    pub fn forward(&mut self, record: &Record<'_>) {
        self.forward_to(record, None);
    }

    /// Produces `record` unchanged to `topic` (`None`: the first output topic).
    pub fn forward_to(&mut self, record: &Record<'_>, topic: Option<&str>) {
        let first_header = self.headers.len();
        for (name, value) in record.headers() {
            let header = Header {
                name: self.bytes(name.as_bytes()),
                value: self.bytes(value),
            };
            self.headers.push(header);
        }
        let raw = RawOutput {
            topic: topic.map(|t| self.topic(t)),
            key: record.key().map(|k| self.bytes(k)),
            value: record.value().map(|v| self.bytes(v)),
            headers: self.range(first_header),
            timestamp: Some(record.timestamp()),
        };
        self.records.push(raw);
    }

    /// Produces a new record.
    pub fn push(&mut self, record: OutputRecord<'_>) {
        let first_header = self.headers.len();
        for (name, value) in record.headers {
            let header = Header {
                name: self.bytes(name.as_bytes()),
                value: self.bytes(value),
            };
            self.headers.push(header);
        }
        let raw = RawOutput {
            topic: record.topic.map(|t| self.topic(t)),
            key: record.key.map(|k| self.bytes(k)),
            value: record.value.map(|v| self.bytes(v)),
            headers: self.range(first_header),
            timestamp: record.timestamp,
        };
        self.records.push(raw);
    }

    fn bytes(&mut self, bytes: &[u8]) -> Span {
        let start = self.data.len();
        self.data.extend_from_slice(bytes);
        Span {
            start: to_u32(start),
            len: to_u32(bytes.len()),
        }
    }

    fn range(&self, first_header: usize) -> Span {
        Span {
            start: to_u32(first_header),
            len: to_u32(self.headers.len() - first_header),
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

/// Sizes in a wasm32 guest always fit in `u32`.
fn to_u32(n: usize) -> u32 {
    u32::try_from(n).unwrap_or(u32::MAX)
}

impl From<Output> for OutputBatch {
    fn from(out: Output) -> Self {
        OutputBatch {
            data: out.data,
            headers: out.headers,
            topics: out.topics,
            records: out.records,
        }
    }
}
