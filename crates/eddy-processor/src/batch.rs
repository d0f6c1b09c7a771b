//! The input side: a batch and views of its records.

use serde_json::Value;

use crate::bindings::eddy::processor::types::InputBatch;

/// `presence` bits of the WIT world.
pub(crate) const HAS_KEY: u8 = 1;
pub(crate) const HAS_VALUE: u8 = 2;
pub(crate) const HAS_TIMESTAMP: u8 = 4;
pub(crate) const HAS_TOPIC: u8 = 8;
pub(crate) const FORWARDED: u8 = 16;

/// Entries per record in an `input-batch`'s `layout`, and their order.
const INPUT_LAYOUT: usize = 8;
const KEY_START: usize = 0;
const KEY_LEN: usize = 1;
const VALUE_START: usize = 2;
const VALUE_LEN: usize = 3;
const HEADER_START: usize = 4;
const HEADER_COUNT: usize = 5;
const TOPIC: usize = 6;
const PARTITION: usize = 7;

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
        self.raw.presence.len()
    }

    pub fn is_empty(&self) -> bool {
        self.raw.presence.is_empty()
    }

    /// The records, in offset order.
    pub fn records(&self) -> impl ExactSizeIterator<Item = Record<'_>> {
        self.rows()
            .iter()
            .zip(&self.raw.presence)
            .enumerate()
            .map(|(index, (row, &presence))| Record {
                batch: self,
                index,
                row,
                presence,
            })
    }

    /// The record at `index`.
    pub fn get(&self, index: usize) -> Option<Record<'_>> {
        Some(Record {
            batch: self,
            index,
            row: self.rows().get(index)?,
            presence: *self.raw.presence.get(index)?,
        })
    }

    /// Each record's group of `layout` entries (the host sends one per
    /// record).
    fn rows(&self) -> &[[u32; INPUT_LAYOUT]] {
        self.raw.layout.as_chunks::<INPUT_LAYOUT>().0
    }

    /// `len` bytes of `data` from `start` (empty if the host sent a bad range).
    fn bytes(&self, start: u32, len: u32) -> &[u8] {
        let start = start as usize;
        start
            .checked_add(len as usize)
            .and_then(|end| self.raw.data.get(start..end))
            .unwrap_or_default()
    }
}

/// Entry `i` of a per-record column (the host sends them all full length).
fn at<T: Copy + Default>(column: &[T], i: usize) -> T {
    column.get(i).copied().unwrap_or_default()
}

/// A view of one input record. Cheap to copy; borrows the batch.
#[derive(Debug, Clone, Copy)]
pub struct Record<'a> {
    batch: &'a Batch,
    index: usize,
    /// This record's entries in `layout`, and its `presence` bits: looked
    /// up once, so the accessors below index fixed-size arrays.
    row: &'a [u32; INPUT_LAYOUT],
    presence: u8,
}

impl<'a> Record<'a> {
    /// Position in the batch (0 for the first record).
    pub fn index(&self) -> usize {
        self.index
    }

    fn has(&self, bit: u8) -> bool {
        self.presence & bit != 0
    }

    /// Entry `field` of this record's group in `layout`.
    fn layout(&self, field: usize) -> u32 {
        self.row[field]
    }

    /// The key; `None` for a record without one.
    pub fn key(&self) -> Option<&'a [u8]> {
        self.has(HAS_KEY).then(|| {
            self.batch
                .bytes(self.layout(KEY_START), self.layout(KEY_LEN))
        })
    }

    /// The value; `None` for a tombstone.
    pub fn value(&self) -> Option<&'a [u8]> {
        self.has(HAS_VALUE).then(|| {
            self.batch
                .bytes(self.layout(VALUE_START), self.layout(VALUE_LEN))
        })
    }

    /// The headers, in order: (name, value).
    pub fn headers(&self) -> impl Iterator<Item = (&'a str, &'a [u8])> + use<'a> {
        let batch = self.batch;
        let start = self.layout(HEADER_START) as usize;
        let count = self.layout(HEADER_COUNT) as usize;
        let headers = start
            .checked_add(count)
            .and_then(|end| batch.raw.headers.get(start..end))
            .unwrap_or_default();
        headers.iter().map(move |h| {
            let name =
                std::str::from_utf8(batch.bytes(h.name.start, h.name.len)).unwrap_or_default();
            (name, batch.bytes(h.value.start, h.value.len))
        })
    }

    /// The value of the first header named `name`.
    pub fn header(&self, name: &str) -> Option<&'a [u8]> {
        self.headers().find(|(n, _)| *n == name).map(|(_, v)| v)
    }

    /// Milliseconds since the Unix epoch.
    pub fn timestamp(&self) -> i64 {
        at(&self.batch.raw.timestamps, self.index)
    }

    /// The topic the record was read from.
    pub fn topic(&self) -> &'a str {
        let i = self.layout(TOPIC) as usize;
        self.batch.raw.topics.get(i).map_or("", String::as_str)
    }

    pub fn partition(&self) -> u32 {
        self.layout(PARTITION)
    }

    pub fn offset(&self) -> u64 {
        at(&self.batch.raw.offsets, self.index)
    }

    /// The value parsed as a JSON document (see [`crate::json::parse`]).
    pub fn json(&self) -> Result<Value, String> {
        crate::json::parse(self.value())
    }
}
