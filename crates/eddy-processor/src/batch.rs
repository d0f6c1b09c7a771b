//! The input side: a batch and views of its records.

use serde_json::Value;

use crate::bindings::eddy::processor::types::{InputBatch, InputRecord, Span};

/// One batch of input records from one partition, in offset order.
#[derive(Debug)]
pub struct Batch {
    raw: InputBatch,
}

impl From<InputBatch> for Batch {
    fn from(raw: InputBatch) -> Self {
        Batch { raw }
    }
}

impl Batch {
    /// Number of records.
    pub fn len(&self) -> usize {
        self.raw.records.len()
    }

    pub fn is_empty(&self) -> bool {
        self.raw.records.is_empty()
    }

    /// The records, in offset order.
    pub fn records(&self) -> impl ExactSizeIterator<Item = Record<'_>> {
        self.raw
            .records
            .iter()
            .enumerate()
            .map(|(index, raw)| Record {
                batch: self,
                index,
                raw,
            })
    }

    /// The record at `index`.
    pub fn get(&self, index: usize) -> Option<Record<'_>> {
        self.raw.records.get(index).map(|raw| Record {
            batch: self,
            index,
            raw,
        })
    }

    fn bytes(&self, span: Span) -> &[u8] {
        let start = span.start as usize;
        self.raw
            .data
            .get(start..start + span.len as usize)
            .unwrap_or_default()
    }
}

/// A view of one input record. Cheap to copy; borrows the batch.
#[derive(Debug, Clone, Copy)]
pub struct Record<'a> {
    batch: &'a Batch,
    index: usize,
    raw: &'a InputRecord,
}

impl<'a> Record<'a> {
    /// Position in the batch (0 for the first record).
    pub fn index(&self) -> usize {
        self.index
    }

    /// The key; `None` for a record without one.
    pub fn key(&self) -> Option<&'a [u8]> {
        self.raw.key.map(|s| self.batch.bytes(s))
    }

    /// The value; `None` for a tombstone.
    pub fn value(&self) -> Option<&'a [u8]> {
        self.raw.value.map(|s| self.batch.bytes(s))
    }

    /// The headers, in order: (name, value).
    pub fn headers(&self) -> impl Iterator<Item = (&'a str, &'a [u8])> + use<'a> {
        let batch = self.batch;
        let span = self.raw.headers;
        let start = span.start as usize;
        let headers = batch
            .raw
            .headers
            .get(start..start + span.len as usize)
            .unwrap_or_default();
        headers.iter().map(move |h| {
            let name = std::str::from_utf8(batch.bytes(h.name)).unwrap_or_default();
            (name, batch.bytes(h.value))
        })
    }

    /// The value of the first header named `name`.
    pub fn header(&self, name: &str) -> Option<&'a [u8]> {
        self.headers().find(|(n, _)| *n == name).map(|(_, v)| v)
    }

    /// Milliseconds since the Unix epoch.
    pub fn timestamp(&self) -> i64 {
        self.raw.timestamp
    }

    /// The topic the record was read from.
    pub fn topic(&self) -> &'a str {
        self.batch
            .raw
            .topics
            .get(self.raw.topic as usize)
            .map_or("", String::as_str)
    }

    pub fn partition(&self) -> u32 {
        self.raw.partition
    }

    pub fn offset(&self) -> u64 {
        self.raw.offset
    }

    /// The value parsed as a JSON document (see [`crate::json::parse`]).
    pub fn json(&self) -> Result<Value, String> {
        crate::json::parse(self.value())
    }
}
