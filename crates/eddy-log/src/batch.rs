//! The record batch codec: Kafka's v2 ("magic 2") layout.
//!
//! ```text
//! offset  size  field
//!      0     8  base offset            ┐ outside the CRC: the log rewrites
//!      8     4  batch length (after    │ these two (and the epoch) on append
//!               this field)            ┘ without touching the records
//!     12     4  partition leader epoch
//!     16     1  magic (= 2)
//!     17     4  CRC-32C of bytes 21..end
//!     21     2  attributes (bits 0-2 compression, 3 timestamp type,
//!               4 transactional, 5 control)
//!     23     4  last offset delta
//!     27     8  base timestamp
//!     35     8  max timestamp
//!     43     8  producer id
//!     51     2  producer epoch
//!     53     4  base sequence
//!     57     4  record count
//!     61     …  records
//! ```
//!
//! Each record is `length, attributes, timestamp delta, offset delta, key,
//! value, headers`, with zig-zag varints for every length and delta, and -1
//! for a null key or value. Integers in the header are big-endian. In a
//! compressed batch the records, taken together, are compressed with the
//! attributes' codec ([`crate::Compression`]); [`Batch::decoded`] reads
//! either kind.

use std::borrow::Cow;

use crate::compression::{Compression, DECOMPRESSED_BYTES_MAX};
use crate::types::{LeaderEpoch, Offset, ProducerEpoch, ProducerId, Sequence, Timestamp};
use crate::varint::{get_varint, get_varlong, put_varint, put_varlong, varlong_len};

/// Bytes before the batch-length field's coverage starts (base offset + length).
pub const LOG_OVERHEAD: usize = 12;
/// Size of the fixed batch header; the first record starts here.
pub const HEADER_LEN: usize = 61;
/// The only batch format Eddy reads and writes.
pub const MAGIC: i8 = 2;

const BATCH_LENGTH_AT: usize = 8;
const LEADER_EPOCH_AT: usize = 12;
const MAGIC_AT: usize = 16;
const CRC_AT: usize = 17;
const ATTRIBUTES_AT: usize = 21;
const LAST_OFFSET_DELTA_AT: usize = 23;
const BASE_TIMESTAMP_AT: usize = 27;
const MAX_TIMESTAMP_AT: usize = 35;
const PRODUCER_ID_AT: usize = 43;
const PRODUCER_EPOCH_AT: usize = 51;
const BASE_SEQUENCE_AT: usize = 53;
const RECORD_COUNT_AT: usize = 57;

/// Attribute bits for the compression codec (see [`Compression`]).
pub const ATTR_COMPRESSION_MASK: u16 = 0x07;
/// Attribute bit: the batch belongs to a transaction.
pub const ATTR_TRANSACTIONAL: u16 = 0x10;
/// Attribute bit: the batch holds control records (transaction markers).
pub const ATTR_CONTROL: u16 = 0x20;

/// Why bytes are not a valid record batch.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BatchError {
    #[error("record batch is truncated: it needs {needed} bytes but only {available} are present")]
    Truncated { needed: usize, available: usize },
    #[error(
        "record batch length field says {length} bytes, less than the {HEADER_LEN}-byte header; the bytes are not a record batch"
    )]
    LengthTooSmall { length: i64 },
    #[error(
        "record batch of {size} bytes exceeds the limit of {limit} bytes; send smaller batches or raise the limit (a topic's max.message.bytes)"
    )]
    TooLarge { size: usize, limit: usize },
    #[error(
        "record batch has magic {0}; Eddy reads and writes only magic 2 (Kafka v2 record batches)"
    )]
    BadMagic(i8),
    #[error(
        "record batch CRC mismatch: the header says {stored:#010x} but the content hashes to {computed:#010x}; the batch was damaged in transit or on disk"
    )]
    CrcMismatch { stored: u32, computed: u32 },
    #[error(
        "record batch names compression codec {0}; Eddy knows 0 (none), 1 (gzip), 2 (snappy), 3 (lz4) and 4 (zstd)"
    )]
    UnknownCompression(u16),
    #[error("the {codec} records of the batch cannot be decompressed: {reason}")]
    Decompress { codec: &'static str, reason: String },
    #[error("record batch declares {0} records; a batch holds at least one and at most 2^31-1")]
    BadRecordCount(i32),
    #[error("record {index} of the batch is malformed: {reason}")]
    BadRecord { index: usize, reason: &'static str },
    #[error("record batch declares {declared} records but holds {found}")]
    RecordCountMismatch { declared: i32, found: usize },
    #[error("{extra} bytes follow the record batch; send one batch per partition per request")]
    TrailingBytes { extra: usize },
    #[error(
        "transactional and control batches are not supported; Eddy has no transactions (use an idempotent producer)"
    )]
    Transactional,
    #[error(
        "record batch header says its newest timestamp is {header}, but its records' newest is {records}"
    )]
    MaxTimestampMismatch {
        header: Timestamp,
        records: Timestamp,
    },
}

/// The fixed header of a record batch, decoded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BatchHeader {
    pub base_offset: Offset,
    /// Bytes after the batch-length field; the whole batch is this plus 12.
    pub batch_length: u32,
    pub leader_epoch: LeaderEpoch,
    pub crc: u32,
    pub attributes: u16,
    pub last_offset_delta: u32,
    pub base_timestamp: Timestamp,
    pub max_timestamp: Timestamp,
    pub producer_id: ProducerId,
    pub producer_epoch: ProducerEpoch,
    pub base_sequence: Sequence,
    pub record_count: u32,
}

fn be_i64(b: &[u8], at: usize) -> i64 {
    let mut a = [0u8; 8];
    a.copy_from_slice(&b[at..at + 8]);
    i64::from_be_bytes(a)
}

fn be_i32(b: &[u8], at: usize) -> i32 {
    let mut a = [0u8; 4];
    a.copy_from_slice(&b[at..at + 4]);
    i32::from_be_bytes(a)
}

fn be_i16(b: &[u8], at: usize) -> i16 {
    i16::from_be_bytes([b[at], b[at + 1]])
}

impl BatchHeader {
    /// Decodes the header at the front of `buf` and checks what can be
    /// checked without the body: magic, a sane length, the record count.
    /// `buf` may be shorter than the whole batch.
    pub fn parse(buf: &[u8]) -> Result<BatchHeader, BatchError> {
        if buf.len() < HEADER_LEN {
            return Err(BatchError::Truncated {
                needed: HEADER_LEN,
                available: buf.len(),
            });
        }
        let magic = buf[MAGIC_AT] as i8;
        if magic != MAGIC {
            return Err(BatchError::BadMagic(magic));
        }
        let length = i64::from(be_i32(buf, BATCH_LENGTH_AT));
        if length < (HEADER_LEN - LOG_OVERHEAD) as i64 {
            return Err(BatchError::LengthTooSmall { length });
        }
        let base_offset = be_i64(buf, 0);
        let last_offset_delta = be_i32(buf, LAST_OFFSET_DELTA_AT);
        let record_count = be_i32(buf, RECORD_COUNT_AT);
        if record_count < 1 {
            return Err(BatchError::BadRecordCount(record_count));
        }
        if base_offset < 0 || last_offset_delta < record_count - 1 {
            return Err(BatchError::BadRecord {
                index: 0,
                reason: "the header's offsets are negative or cover fewer offsets than it has records",
            });
        }
        Ok(BatchHeader {
            base_offset: Offset(base_offset as u64),
            batch_length: length as u32,
            leader_epoch: LeaderEpoch(be_i32(buf, LEADER_EPOCH_AT)),
            crc: be_i32(buf, CRC_AT) as u32,
            attributes: be_i16(buf, ATTRIBUTES_AT) as u16,
            last_offset_delta: last_offset_delta as u32,
            base_timestamp: Timestamp(be_i64(buf, BASE_TIMESTAMP_AT)),
            max_timestamp: Timestamp(be_i64(buf, MAX_TIMESTAMP_AT)),
            producer_id: ProducerId(be_i64(buf, PRODUCER_ID_AT)),
            producer_epoch: ProducerEpoch(be_i16(buf, PRODUCER_EPOCH_AT)),
            base_sequence: Sequence(be_i32(buf, BASE_SEQUENCE_AT)),
            record_count: record_count as u32,
        })
    }

    /// Size of the whole batch in bytes.
    pub fn total_len(&self) -> usize {
        LOG_OVERHEAD + self.batch_length as usize
    }

    /// Offset of the batch's last record.
    pub fn last_offset(&self) -> Offset {
        self.base_offset.plus(u64::from(self.last_offset_delta))
    }

    /// Offset right after the batch.
    pub fn next_offset(&self) -> Offset {
        self.last_offset().plus(1)
    }

    /// Sequence number of the batch's last record (wrapping like Kafka's).
    pub fn last_sequence(&self) -> Sequence {
        if self.base_sequence == Sequence::NONE {
            return Sequence::NONE;
        }
        let last = i64::from(self.base_sequence.0) + i64::from(self.last_offset_delta);
        Sequence((last % (i64::from(i32::MAX) + 1)) as i32)
    }
}

/// Overwrites the base offset of the batch at the front of `buf`.
/// The field is outside the CRC, so the batch stays valid.
pub fn set_base_offset(buf: &mut [u8], offset: Offset) {
    buf[0..8].copy_from_slice(&(offset.0 as i64).to_be_bytes());
}

/// Overwrites the partition leader epoch of the batch at the front of `buf`.
pub fn set_leader_epoch(buf: &mut [u8], epoch: LeaderEpoch) {
    buf[LEADER_EPOCH_AT..LEADER_EPOCH_AT + 4].copy_from_slice(&epoch.0.to_be_bytes());
}

/// A copy of the batch `buf` stamped with another producer id, epoch and
/// base sequence, its CRC computed again: for an idempotent producer that
/// took a new identity and resends batches it had stamped with the old.
pub fn restamp(buf: &[u8], stamp: ProducerStamp) -> Result<Vec<u8>, BatchError> {
    BatchHeader::parse(buf)?;
    let mut out = buf.to_vec();
    out[PRODUCER_ID_AT..PRODUCER_EPOCH_AT].copy_from_slice(&stamp.producer_id.0.to_be_bytes());
    out[PRODUCER_EPOCH_AT..BASE_SEQUENCE_AT].copy_from_slice(&stamp.producer_epoch.0.to_be_bytes());
    out[BASE_SEQUENCE_AT..RECORD_COUNT_AT].copy_from_slice(&stamp.base_sequence.0.to_be_bytes());
    let crc = crc32c::crc32c(&out[ATTRIBUTES_AT..]);
    out[CRC_AT..ATTRIBUTES_AT].copy_from_slice(&crc.to_be_bytes());
    Ok(out)
}

/// A whole record batch whose CRC has been checked.
#[derive(Debug, Clone, Copy)]
pub struct Batch<'a> {
    pub header: BatchHeader,
    bytes: &'a [u8],
}

impl<'a> Batch<'a> {
    /// Decodes the batch at the front of `buf` (which may hold more after
    /// it), checking its length against `size_limit` and its CRC.
    pub fn parse(buf: &'a [u8], size_limit: usize) -> Result<Batch<'a>, BatchError> {
        let header = BatchHeader::parse(buf)?;
        let size = header.total_len();
        if size > size_limit {
            return Err(BatchError::TooLarge {
                size,
                limit: size_limit,
            });
        }
        if buf.len() < size {
            return Err(BatchError::Truncated {
                needed: size,
                available: buf.len(),
            });
        }
        let bytes = &buf[..size];
        let computed = crc32c::crc32c(&bytes[ATTRIBUTES_AT..]);
        if computed != header.crc {
            return Err(BatchError::CrcMismatch {
                stored: header.crc,
                computed,
            });
        }
        Ok(Batch { header, bytes })
    }

    /// The batch's bytes, exactly as stored.
    pub fn as_bytes(&self) -> &'a [u8] {
        self.bytes
    }

    /// The codec the batch's records are compressed with.
    pub fn compression(&self) -> Result<Compression, BatchError> {
        Compression::from_attributes(self.header.attributes)
    }

    /// The batch's records, ready to read: borrowed from the batch, or
    /// decompressed (at most [`DECOMPRESSED_BYTES_MAX`] bytes of them).
    pub fn decoded(&self) -> Result<Records<'a>, BatchError> {
        let section = &self.bytes[HEADER_LEN..];
        let section = match self.compression()? {
            Compression::None => Cow::Borrowed(section),
            codec => Cow::Owned(codec.decompress(section, DECOMPRESSED_BYTES_MAX)?),
        };
        Ok(Records {
            header: self.header,
            section,
        })
    }

    /// The records as `Bytes` that keys and values can be sliced from
    /// without copying: a slice of `stored` (the buffer this batch was
    /// parsed from), or the decompressed records. Read them with
    /// [`RecordIter::new`].
    pub fn records_bytes(&self, stored: &bytes::Bytes) -> Result<bytes::Bytes, BatchError> {
        Ok(match self.decoded()?.section {
            Cow::Owned(decompressed) => bytes::Bytes::from(decompressed),
            Cow::Borrowed(section) => {
                let inside = stored.as_ptr_range();
                let range = section.as_ptr_range();
                if inside.start <= range.start && range.end <= inside.end {
                    stored.slice_ref(section)
                } else {
                    bytes::Bytes::copy_from_slice(section)
                }
            }
        })
    }

    /// Walks every record and checks that the body agrees with the header:
    /// well-formed lengths, offset deltas that only grow and stay within the
    /// header's range, the declared record count, no trailing bytes.
    /// Returns the newest record timestamp.
    pub fn validate_records(&self) -> Result<Timestamp, BatchError> {
        let mut found = 0usize;
        let mut max = Timestamp::MIN;
        let records = self.decoded()?;
        for record in records.iter() {
            max = max.max(record?.timestamp);
            found += 1;
        }
        if found != self.header.record_count as usize {
            return Err(BatchError::RecordCountMismatch {
                declared: self.header.record_count as i32,
                found,
            });
        }
        Ok(max)
    }
}

/// A batch's records section, uncompressed: borrowed from the stored
/// batch, or decompressed from it.
#[derive(Debug, Clone)]
pub struct Records<'a> {
    header: BatchHeader,
    section: Cow<'a, [u8]>,
}

impl Records<'_> {
    /// Decodes the records one by one; the iterator stops after the first error.
    pub fn iter(&self) -> RecordIter<'_> {
        RecordIter::new(self.header, &self.section)
    }

    /// Whether the records were decompressed (the batch was compressed).
    pub fn was_compressed(&self) -> bool {
        matches!(self.section, Cow::Owned(_))
    }
}

/// A record as stored, borrowing its bytes from the batch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RecordView<'a> {
    pub offset: Offset,
    pub timestamp: Timestamp,
    pub key: Option<&'a [u8]>,
    pub value: Option<&'a [u8]>,
    header_count: usize,
    headers: &'a [u8],
    /// The whole encoded record, length prefix included.
    encoded: &'a [u8],
}

impl<'a> RecordView<'a> {
    /// The record's headers in order: (name, value). Names are UTF-8.
    pub fn headers(&self) -> HeaderIter<'a> {
        HeaderIter {
            rest: self.headers,
            remaining: self.header_count,
        }
    }

    /// Whether this record is a tombstone (a key with a null value).
    pub fn is_tombstone(&self) -> bool {
        self.value.is_none()
    }
}

/// Iterator over a record's headers; created by [`RecordView::headers`].
#[derive(Debug, Clone)]
pub struct HeaderIter<'a> {
    rest: &'a [u8],
    remaining: usize,
}

impl<'a> Iterator for HeaderIter<'a> {
    type Item = (&'a str, &'a [u8]);

    fn next(&mut self) -> Option<Self::Item> {
        if self.remaining == 0 {
            return None;
        }
        self.remaining -= 1;
        // The record was validated when it was decoded, so these cannot fail;
        // stop quietly rather than panic if they somehow do.
        let mut cursor = Cursor {
            buf: self.rest,
            pos: 0,
        };
        let name = cursor.bytes().ok()??;
        let value = cursor.bytes().ok()?.unwrap_or(&[]);
        self.rest = &self.rest[cursor.pos..];
        Some((std::str::from_utf8(name).ok()?, value))
    }
}

/// Iterator over a batch's records; created by [`Batch::records`].
#[derive(Debug, Clone)]
pub struct RecordIter<'a> {
    header: BatchHeader,
    rest: &'a [u8],
    index: usize,
    last_delta: Option<u32>,
    failed: bool,
}

impl<'a> Iterator for RecordIter<'a> {
    type Item = Result<RecordView<'a>, BatchError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.rest.is_empty() || self.failed {
            return None;
        }
        match self.decode_next() {
            Ok(record) => Some(Ok(record)),
            Err(reason) => {
                self.failed = true;
                Some(Err(BatchError::BadRecord {
                    index: self.index,
                    reason,
                }))
            }
        }
    }
}

impl<'a> RecordIter<'a> {
    /// The records in `section`, the uncompressed records of the batch
    /// whose header is `header` (see [`Batch::records_bytes`]).
    pub fn new(header: BatchHeader, section: &'a [u8]) -> RecordIter<'a> {
        RecordIter {
            header,
            rest: section,
            index: 0,
            last_delta: None,
            failed: false,
        }
    }

    fn decode_next(&mut self) -> Result<RecordView<'a>, &'static str> {
        let (length, n) = get_varint(self.rest).ok_or("its length is not a valid varint")?;
        let length = usize::try_from(length).map_err(|_| "its length is negative")?;
        let body = self
            .rest
            .get(n..n + length)
            .ok_or("its length runs past the end of the batch")?;
        let mut c = Cursor { buf: body, pos: 0 };
        let _attributes = c.byte()?;
        let timestamp_delta = c.varlong()?;
        let offset_delta = u32::try_from(c.varint()?).map_err(|_| "negative offset delta")?;
        if offset_delta > self.header.last_offset_delta {
            return Err("offset delta is past the batch's last offset delta");
        }
        if self.last_delta.is_some_and(|last| offset_delta <= last) {
            return Err("offset deltas do not increase");
        }
        let key = c.bytes()?;
        let value = c.bytes()?;
        let header_count = usize::try_from(c.varint()?).map_err(|_| "negative header count")?;
        let headers_start = c.pos;
        for _ in 0..header_count {
            let name = c.bytes()?.ok_or("null header name")?;
            std::str::from_utf8(name).map_err(|_| "header name is not UTF-8")?;
            c.bytes()?;
        }
        if c.pos != body.len() {
            return Err("its length does not match its content");
        }
        let encoded = &self.rest[..n + length];
        self.rest = &self.rest[n + length..];
        self.index += 1;
        self.last_delta = Some(offset_delta);
        Ok(RecordView {
            offset: self.header.base_offset.plus(u64::from(offset_delta)),
            timestamp: Timestamp(self.header.base_timestamp.0.wrapping_add(timestamp_delta)),
            key,
            value,
            header_count,
            headers: &body[headers_start..],
            encoded,
        })
    }
}

struct Cursor<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl<'a> Cursor<'a> {
    fn byte(&mut self) -> Result<u8, &'static str> {
        let b = *self.buf.get(self.pos).ok_or("ends inside its attributes")?;
        self.pos += 1;
        Ok(b)
    }

    fn varlong(&mut self) -> Result<i64, &'static str> {
        let (v, n) = get_varlong(&self.buf[self.pos..]).ok_or("bad varint")?;
        self.pos += n;
        Ok(v)
    }

    fn varint(&mut self) -> Result<i32, &'static str> {
        let (v, n) = get_varint(&self.buf[self.pos..]).ok_or("bad varint")?;
        self.pos += n;
        Ok(v)
    }

    /// A length-prefixed byte string; -1 is null.
    fn bytes(&mut self) -> Result<Option<&'a [u8]>, &'static str> {
        let len = self.varint()?;
        if len == -1 {
            return Ok(None);
        }
        let len = usize::try_from(len).map_err(|_| "negative length")?;
        let out = self
            .buf
            .get(self.pos..self.pos + len)
            .ok_or("a field runs past the end of the record")?;
        self.pos += len;
        Ok(Some(out))
    }
}

/// Iterates over the whole batches at the front of `buf`, as returned by a
/// log read or a fetch. Stops at the end of `buf`; a trailing partial batch
/// is an error.
pub fn batches(buf: &[u8], size_limit: usize) -> BatchIter<'_> {
    BatchIter {
        rest: buf,
        size_limit,
        failed: false,
    }
}

/// Iterator over concatenated batches; created by [`batches`].
#[derive(Debug, Clone)]
pub struct BatchIter<'a> {
    rest: &'a [u8],
    size_limit: usize,
    failed: bool,
}

impl<'a> Iterator for BatchIter<'a> {
    type Item = Result<Batch<'a>, BatchError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.rest.is_empty() || self.failed {
            return None;
        }
        match Batch::parse(self.rest, self.size_limit) {
            Ok(batch) => {
                self.rest = &self.rest[batch.header.total_len()..];
                Some(Ok(batch))
            }
            Err(e) => {
                self.failed = true;
                Some(Err(e))
            }
        }
    }
}

/// A record to be encoded: what a producer sends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RecordRef<'a> {
    pub timestamp: Timestamp,
    pub key: Option<&'a [u8]>,
    pub value: Option<&'a [u8]>,
    pub headers: &'a [(&'a str, &'a [u8])],
}

/// Producer identity stamped into a batch by an idempotent producer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct ProducerStamp {
    pub producer_id: ProducerId,
    pub producer_epoch: ProducerEpoch,
    pub base_sequence: Sequence,
}

/// Encodes records into one v2 batch with base offset 0; the log assigns
/// the real offsets on append.
#[derive(Debug, Clone)]
pub struct BatchBuilder {
    buf: Vec<u8>,
    count: u32,
    base_timestamp: Option<Timestamp>,
    max_timestamp: Timestamp,
    producer: ProducerStamp,
    compression: Compression,
}

impl Default for BatchBuilder {
    fn default() -> Self {
        BatchBuilder::new()
    }
}

impl BatchBuilder {
    pub fn new() -> BatchBuilder {
        BatchBuilder::with_capacity(4096)
    }

    /// A builder whose buffer starts with room for `bytes`.
    pub fn with_capacity(bytes: usize) -> BatchBuilder {
        let mut buf = Vec::with_capacity(bytes.max(HEADER_LEN));
        buf.resize(HEADER_LEN, 0);
        BatchBuilder {
            buf,
            count: 0,
            base_timestamp: None,
            max_timestamp: Timestamp::MIN,
            producer: ProducerStamp::default(),
            compression: Compression::None,
        }
    }

    /// Compresses the records with `codec` when the batch is finished.
    pub fn compression(mut self, codec: Compression) -> BatchBuilder {
        self.compression = codec;
        self
    }

    /// Stamps the batch with an idempotent producer's identity.
    pub fn producer(mut self, stamp: ProducerStamp) -> BatchBuilder {
        self.producer = stamp;
        self
    }

    /// Records added so far.
    pub fn record_count(&self) -> u32 {
        self.count
    }

    /// Size the batch would have if finished now, before compression.
    pub fn size_bytes(&self) -> usize {
        self.buf.len()
    }

    /// Bytes `record` would add to the batch.
    pub fn record_size(&self, record: &RecordRef<'_>) -> usize {
        let base = self.base_timestamp.unwrap_or(record.timestamp);
        let body = body_len(record, record.timestamp.0.wrapping_sub(base.0), self.count);
        varlong_len(body as i64) + body
    }

    /// Appends a record; the first record's timestamp is the batch's base.
    pub fn push(&mut self, record: &RecordRef<'_>) {
        let base = *self.base_timestamp.get_or_insert(record.timestamp);
        let delta = record.timestamp.0.wrapping_sub(base.0);
        let body = body_len(record, delta, self.count);
        put_varlong(&mut self.buf, body as i64);
        self.buf.push(0); // record attributes: unused
        put_varlong(&mut self.buf, delta);
        put_varint(&mut self.buf, self.count as i32);
        put_opt_bytes(&mut self.buf, record.key);
        put_opt_bytes(&mut self.buf, record.value);
        put_varint(&mut self.buf, record.headers.len() as i32);
        for (name, value) in record.headers {
            put_opt_bytes(&mut self.buf, Some(name.as_bytes()));
            put_opt_bytes(&mut self.buf, Some(value));
        }
        self.max_timestamp = self.max_timestamp.max(record.timestamp);
        self.count += 1;
    }

    /// Writes the header and CRC and returns the encoded batch, or `None`
    /// when no record was added (a batch holds at least one).
    pub fn finish(mut self) -> Option<Vec<u8>> {
        if self.count == 0 {
            return None;
        }
        if self.compression != Compression::None {
            match self.compression.compress(&self.buf[HEADER_LEN..]) {
                Some(compressed) => {
                    self.buf.truncate(HEADER_LEN);
                    self.buf.extend_from_slice(&compressed);
                }
                // Sent uncompressed rather than not at all.
                None => self.compression = Compression::None,
            }
        }
        let len = self.buf.len();
        let base_ts = self.base_timestamp.unwrap_or_default();
        let h = &mut self.buf[..HEADER_LEN];
        h[0..8].copy_from_slice(&0i64.to_be_bytes());
        h[8..12].copy_from_slice(&((len - LOG_OVERHEAD) as i32).to_be_bytes());
        h[LEADER_EPOCH_AT..MAGIC_AT].copy_from_slice(&(-1i32).to_be_bytes());
        h[MAGIC_AT] = MAGIC as u8;
        h[ATTRIBUTES_AT..LAST_OFFSET_DELTA_AT]
            .copy_from_slice(&self.compression.attribute_bits().to_be_bytes());
        h[LAST_OFFSET_DELTA_AT..BASE_TIMESTAMP_AT]
            .copy_from_slice(&((self.count - 1) as i32).to_be_bytes());
        h[BASE_TIMESTAMP_AT..MAX_TIMESTAMP_AT].copy_from_slice(&base_ts.0.to_be_bytes());
        h[MAX_TIMESTAMP_AT..PRODUCER_ID_AT].copy_from_slice(&self.max_timestamp.0.to_be_bytes());
        h[PRODUCER_ID_AT..PRODUCER_EPOCH_AT]
            .copy_from_slice(&self.producer.producer_id.0.to_be_bytes());
        h[PRODUCER_EPOCH_AT..BASE_SEQUENCE_AT]
            .copy_from_slice(&self.producer.producer_epoch.0.to_be_bytes());
        h[BASE_SEQUENCE_AT..RECORD_COUNT_AT]
            .copy_from_slice(&self.producer.base_sequence.0.to_be_bytes());
        h[RECORD_COUNT_AT..HEADER_LEN].copy_from_slice(&(self.count as i32).to_be_bytes());
        let crc = crc32c::crc32c(&self.buf[ATTRIBUTES_AT..]);
        self.buf[CRC_AT..ATTRIBUTES_AT].copy_from_slice(&crc.to_be_bytes());
        Some(self.buf)
    }
}

/// Re-encodes the records of `batch` for which `keep` is true into a new
/// batch with the same base offset, offsets, timestamps, epoch and producer
/// stamp; used by compaction. The new batch is uncompressed. `None` when
/// no record is kept.
pub fn retain_records(
    batch: &Batch<'_>,
    mut keep: impl FnMut(&RecordView<'_>) -> bool,
) -> Result<Option<Vec<u8>>, BatchError> {
    let h = batch.header;
    let mut out = Vec::with_capacity(batch.as_bytes().len());
    out.extend_from_slice(&batch.as_bytes()[..HEADER_LEN]);
    let attributes = h.attributes & !ATTR_COMPRESSION_MASK;
    out[ATTRIBUTES_AT..LAST_OFFSET_DELTA_AT].copy_from_slice(&attributes.to_be_bytes());
    let mut count = 0i32;
    let records = batch.decoded()?;
    for record in records.iter() {
        let record = record?;
        if keep(&record) {
            out.extend_from_slice(record.encoded);
            count += 1;
        }
    }
    if count == 0 {
        return Ok(None);
    }
    if count as u32 == h.record_count {
        // Nothing removed: the batch as it was (still compressed, if it was).
        return Ok(Some(batch.as_bytes().to_vec()));
    }
    let len = out.len();
    out[8..12].copy_from_slice(&((len - LOG_OVERHEAD) as i32).to_be_bytes());
    out[RECORD_COUNT_AT..HEADER_LEN].copy_from_slice(&count.to_be_bytes());
    debug_assert_eq!(h.base_offset, BatchHeader::parse(&out)?.base_offset);
    let crc = crc32c::crc32c(&out[ATTRIBUTES_AT..]);
    out[CRC_AT..ATTRIBUTES_AT].copy_from_slice(&crc.to_be_bytes());
    Ok(Some(out))
}

fn body_len(record: &RecordRef<'_>, timestamp_delta: i64, offset_delta: u32) -> usize {
    let mut n = 1 + varlong_len(timestamp_delta) + varlong_len(i64::from(offset_delta));
    n += opt_bytes_len(record.key) + opt_bytes_len(record.value);
    n += varlong_len(record.headers.len() as i64);
    for (name, value) in record.headers {
        n += opt_bytes_len(Some(name.as_bytes())) + opt_bytes_len(Some(value));
    }
    n
}

fn opt_bytes_len(b: Option<&[u8]>) -> usize {
    match b {
        None => 1,
        Some(b) => varlong_len(b.len() as i64) + b.len(),
    }
}

fn put_opt_bytes(out: &mut Vec<u8>, b: Option<&[u8]>) {
    match b {
        None => put_varint(out, -1),
        Some(b) => {
            put_varlong(out, b.len() as i64);
            out.extend_from_slice(b);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const TS: Timestamp = Timestamp(1_700_000_000_000);

    fn record<'a>(key: Option<&'a [u8]>, value: Option<&'a [u8]>) -> RecordRef<'a> {
        RecordRef {
            timestamp: TS,
            key,
            value,
            headers: &[],
        }
    }

    fn one_batch(records: &[RecordRef<'_>]) -> Vec<u8> {
        let mut b = BatchBuilder::new();
        for r in records {
            b.push(r);
        }
        b.finish().unwrap()
    }

    #[test]
    fn a_restamped_batch_carries_the_new_producer_and_a_valid_crc() {
        let stamp = |id, epoch, seq| ProducerStamp {
            producer_id: ProducerId(id),
            producer_epoch: ProducerEpoch(epoch),
            base_sequence: Sequence(seq),
        };
        let mut b = BatchBuilder::new().producer(stamp(7, 0, 40));
        b.push(&record(Some(b"k"), Some(b"v1")));
        b.push(&record(None, Some(b"v2")));
        let old = b.finish().unwrap();
        let new = restamp(&old, stamp(9, 2, 0)).unwrap();
        let parsed = Batch::parse(&new, usize::MAX).unwrap();
        assert_eq!(parsed.header.producer_id, ProducerId(9));
        assert_eq!(parsed.header.producer_epoch, ProducerEpoch(2));
        assert_eq!(parsed.header.base_sequence, Sequence(0));
        let records = parsed.decoded().unwrap();
        let values: Vec<_> = records.iter().map(|r| r.unwrap().value).collect();
        assert_eq!(values, [Some(&b"v1"[..]), Some(&b"v2"[..])]);
        assert!(
            restamp(&old[..20], stamp(9, 2, 0)).is_err(),
            "a cut batch is refused"
        );
    }

    #[test]
    fn crc32c_is_the_castagnoli_polynomial() {
        assert_eq!(crc32c::crc32c(b"123456789"), 0xe306_9283);
    }

    /// Bytes written out from the v2 layout by hand, CRC computed by an
    /// independent implementation (Python's `crc32c` package).
    #[test]
    fn encoding_matches_a_known_vector() {
        let expected = "00000000000000000000003affffffff02e99b8dd80000000000000000018bcfe568\
                        000000018bcfe56800ffffffffffffffffffffffffffff0000000110000000026b027600";
        let batch = one_batch(&[record(Some(b"k"), Some(b"v"))]);
        let hex: String = batch.iter().map(|b| format!("{b:02x}")).collect();
        assert_eq!(hex, expected);
        let parsed = Batch::parse(&batch, usize::MAX).unwrap();
        assert_eq!(parsed.header.crc, 0xe99b_8dd8);
        assert_eq!(parsed.header.record_count, 1);
        assert_eq!(parsed.header.max_timestamp, TS);
    }

    #[test]
    fn records_round_trip_with_keys_values_headers_and_timestamps() {
        let headers: &[(&str, &[u8])] = &[("trace", b"abc"), ("empty", b"")];
        let records = [
            RecordRef {
                timestamp: TS,
                key: Some(b"key"),
                value: Some(b"value"),
                headers,
            },
            RecordRef {
                timestamp: Timestamp(TS.0 - 5),
                key: None,
                value: Some(b""),
                headers: &[],
            },
            RecordRef {
                timestamp: Timestamp(TS.0 + 9),
                key: Some(b"gone"),
                value: None,
                headers: &[],
            },
        ];
        let batch = one_batch(&records);
        let parsed = Batch::parse(&batch, usize::MAX).unwrap();
        assert_eq!(parsed.validate_records().unwrap(), Timestamp(TS.0 + 9));
        let stored = parsed.decoded().unwrap();
        let decoded: Vec<_> = stored.iter().map(Result::unwrap).collect();
        assert_eq!(decoded.len(), 3);
        for (i, (d, r)) in decoded.iter().zip(&records).enumerate() {
            assert_eq!(d.offset, Offset(i as u64));
            assert_eq!((d.timestamp, d.key, d.value), (r.timestamp, r.key, r.value));
            assert_eq!(d.headers().collect::<Vec<_>>(), r.headers.to_vec());
        }
        assert!(decoded[2].is_tombstone());
    }

    #[test]
    fn size_estimate_matches_the_encoding() {
        let mut b = BatchBuilder::new();
        let r = RecordRef {
            timestamp: TS,
            key: Some(b"k"),
            value: Some(&[7; 300]),
            headers: &[("h", b"v")],
        };
        for _ in 0..10 {
            let before = b.size_bytes();
            let estimate = b.record_size(&r);
            b.push(&r);
            assert_eq!(b.size_bytes() - before, estimate);
        }
    }

    #[test]
    fn an_empty_builder_produces_no_batch() {
        assert_eq!(BatchBuilder::new().finish(), None);
    }

    #[test]
    fn damaged_batches_are_refused_with_the_reason() {
        let good = one_batch(&[record(Some(b"k"), Some(b"v"))]);
        assert!(matches!(
            Batch::parse(&good[..40], usize::MAX),
            Err(BatchError::Truncated {
                needed: 61,
                available: 40
            })
        ));
        assert!(matches!(
            Batch::parse(&good[..65], usize::MAX),
            Err(BatchError::Truncated {
                needed: 70,
                available: 65
            })
        ));
        assert!(matches!(
            Batch::parse(&good, 64),
            Err(BatchError::TooLarge {
                size: 70,
                limit: 64
            })
        ));
        let mut bad = good.clone();
        bad[16] = 1;
        assert!(matches!(
            Batch::parse(&bad, usize::MAX),
            Err(BatchError::BadMagic(1))
        ));
        let mut bad = good.clone();
        *bad.last_mut().unwrap() ^= 1;
        assert!(matches!(
            Batch::parse(&bad, usize::MAX),
            Err(BatchError::CrcMismatch { .. })
        ));
        let mut bad = good.clone();
        bad[8..12].copy_from_slice(&10i32.to_be_bytes());
        assert!(matches!(
            Batch::parse(&bad, usize::MAX),
            Err(BatchError::LengthTooSmall { length: 10 })
        ));
    }

    #[test]
    fn a_record_that_lies_about_its_length_fails_validation_even_with_a_good_crc() {
        let mut batch = one_batch(&[record(Some(b"k"), Some(b"v"))]);
        batch[HEADER_LEN] = 0x12; // record length 9 instead of 8
        let crc = crc32c::crc32c(&batch[ATTRIBUTES_AT..]);
        batch[CRC_AT..ATTRIBUTES_AT].copy_from_slice(&crc.to_be_bytes());
        let parsed = Batch::parse(&batch, usize::MAX).unwrap();
        let err = parsed.validate_records().unwrap_err();
        assert!(
            matches!(err, BatchError::BadRecord { index: 0, .. }),
            "{err}"
        );
    }

    #[test]
    fn retain_records_keeps_offsets_and_stays_valid() {
        let batch = one_batch(&[
            record(Some(b"a"), Some(b"1")),
            record(Some(b"b"), Some(b"2")),
            record(Some(b"c"), Some(b"3")),
        ]);
        let parsed = Batch::parse(&batch, usize::MAX).unwrap();
        let kept = retain_records(&parsed, |r| r.key != Some(b"b"))
            .unwrap()
            .unwrap();
        let kept = Batch::parse(&kept, usize::MAX).unwrap();
        assert_eq!(kept.header.record_count, 2);
        assert_eq!(kept.header.last_offset_delta, 2);
        let records = kept.decoded().unwrap();
        let offsets: Vec<_> = records.iter().map(|r| r.unwrap().offset).collect();
        assert_eq!(offsets, [Offset(0), Offset(2)]);
        assert_eq!(retain_records(&parsed, |_| false).unwrap(), None);
    }

    #[test]
    fn compressed_batches_pass_the_producer_checks_and_read_back_whole() {
        let values: Vec<Vec<u8>> = (0..50).map(|i| format!("value {i}").into_bytes()).collect();
        for codec in Compression::ALL {
            let mut b = BatchBuilder::new().compression(codec);
            for (i, v) in values.iter().enumerate() {
                b.push(&RecordRef {
                    timestamp: Timestamp(TS.0 + i as i64),
                    key: Some(b"k"),
                    value: Some(v),
                    headers: &[("h", b"x")],
                });
            }
            let bytes = b.finish().unwrap();
            let checked = crate::check_batch(&bytes, usize::MAX).unwrap();
            assert_eq!(checked.header().record_count, 50);
            let parsed = Batch::parse(&bytes, usize::MAX).unwrap();
            assert_eq!(parsed.compression().unwrap(), codec);
            let records = parsed.decoded().unwrap();
            assert_eq!(records.was_compressed(), codec != Compression::None);
            let read: Vec<_> = records.iter().map(|r| r.unwrap().value.unwrap()).collect();
            assert_eq!(read, values.iter().map(Vec::as_slice).collect::<Vec<_>>());
            let stored = bytes::Bytes::from(bytes.clone());
            let section = parsed.records_bytes(&stored).unwrap();
            assert_eq!(RecordIter::new(parsed.header, &section).count(), 50);

            // Compaction keeps a compressed batch whole, or writes the kept
            // records uncompressed.
            assert_eq!(
                retain_records(&parsed, |_| true).unwrap(),
                Some(bytes.clone())
            );
            let kept = retain_records(&parsed, |r| r.offset.0 % 2 == 0)
                .unwrap()
                .unwrap();
            let kept = Batch::parse(&kept, usize::MAX).unwrap();
            assert_eq!(kept.compression().unwrap(), Compression::None);
            assert_eq!(kept.decoded().unwrap().iter().count(), 25);
        }
    }

    #[test]
    fn a_compressed_batch_that_does_not_decompress_is_refused_with_the_reason() {
        let mut b = BatchBuilder::new().compression(Compression::Zstd);
        b.push(&record(None, Some(b"payload")));
        let mut bytes = b.finish().unwrap();
        // Cut the compressed records short and make the CRC right again,
        // as a buggy client would send it.
        let cut = bytes.len() - 4;
        bytes.truncate(cut);
        bytes[8..12].copy_from_slice(&((cut - LOG_OVERHEAD) as i32).to_be_bytes());
        let crc = crc32c::crc32c(&bytes[ATTRIBUTES_AT..]);
        bytes[CRC_AT..ATTRIBUTES_AT].copy_from_slice(&crc.to_be_bytes());
        let e = crate::check_batch(&bytes, usize::MAX)
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("zstd records of the batch cannot be decompressed"),
            "{e}"
        );
        // An unknown codec names the ones Eddy knows.
        bytes[ATTRIBUTES_AT + 1] |= 0x07;
        let crc = crc32c::crc32c(&bytes[ATTRIBUTES_AT..]);
        bytes[CRC_AT..ATTRIBUTES_AT].copy_from_slice(&crc.to_be_bytes());
        let e = crate::check_batch(&bytes, usize::MAX)
            .unwrap_err()
            .to_string();
        assert!(e.contains("4 (zstd)"), "{e}");
    }

    #[test]
    fn batches_iterates_concatenated_batches_and_reports_a_partial_tail() {
        let one = one_batch(&[record(None, Some(b"x"))]);
        let mut two = one.clone();
        two.extend_from_slice(&one);
        assert_eq!(batches(&two, usize::MAX).filter(|b| b.is_ok()).count(), 2);
        two.truncate(one.len() + 10);
        let results: Vec<_> = batches(&two, usize::MAX).collect();
        assert!(results[0].is_ok());
        assert!(matches!(results[1], Err(BatchError::Truncated { .. })));
    }

    #[test]
    fn last_sequence_wraps_like_kafka() {
        let mut h = BatchHeader::parse(&one_batch(&[record(None, None)])).unwrap();
        h.base_sequence = Sequence(i32::MAX);
        h.last_offset_delta = 2;
        assert_eq!(h.last_sequence(), Sequence(1));
    }
}
