//! The host's record types and their conversion to and from the batch
//! arenas of the WIT world: on the way in, every key, value and header is
//! copied once into one buffer, and each per-record field into its column;
//! each is copied once into guest memory. On the way out, the guest's
//! buffer becomes one `Bytes` that the output records slice without
//! copying, and a record the guest forwards shares the input record's
//! bytes: it never leaves the host.

use std::sync::Arc;

use bytes::Bytes;
use eddy_log::{Offset, Timestamp};

use crate::bindings::eddy::processor::types as wit;

/// A record header: a name and opaque bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Header {
    pub key: String,
    pub value: Bytes,
}

/// One record handed to a processor.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InputRecord {
    pub key: Option<Bytes>,
    /// `None` for a tombstone.
    pub value: Option<Bytes>,
    pub headers: Vec<Header>,
    pub timestamp: Timestamp,
    /// Usually shared by all records of a batch, so cloning it is cheap.
    pub topic: Arc<str>,
    pub partition: u32,
    pub offset: Offset,
}

/// One record a processor asked to produce.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutputRecord {
    /// The output topic; `None` for the pipeline's first output topic.
    pub topic: Option<Arc<str>>,
    pub key: Option<Bytes>,
    /// `None` for a tombstone.
    pub value: Option<Bytes>,
    pub headers: Vec<Header>,
    /// `None`: the processor left it to the host (a pipeline uses the
    /// timestamp of the batch's last input record).
    pub timestamp: Option<Timestamp>,
}

/// Bytes of lowering buffer an instance keeps between calls.
const ARENA_BYTES_KEPT: usize = 4 << 20;

/// `presence` bits of the WIT world.
const HAS_KEY: u8 = 1;
const HAS_VALUE: u8 = 2;
const HAS_TIMESTAMP: u8 = 4;
const HAS_TOPIC: u8 = 8;
const FORWARDED: u8 = 16;

/// Entries per record in the `layout` of an `output-batch` (an
/// `input-batch` has eight; see the WIT world for their order).
const OUTPUT_LAYOUT: usize = 7;

/// Buffers for lowering batches, kept by an instance so that steady-state
/// calls allocate nothing on the way in.
#[derive(Default)]
pub(crate) struct Arena {
    data: Vec<u8>,
    presence: Vec<u8>,
    layout: Vec<u32>,
    timestamps: Vec<i64>,
    offsets: Vec<u64>,
    headers: Vec<wit::Header>,
}

/// Why a batch is not lowered: its keys, values and headers add up to
/// `bytes`, more than the limit given to [`Arena::with_batch`].
#[derive(Debug)]
pub(crate) struct BatchTooBig {
    pub(crate) bytes: usize,
}

impl Arena {
    fn clear(&mut self) {
        self.data.clear();
        self.presence.clear();
        self.layout.clear();
        self.timestamps.clear();
        self.offsets.clear();
        self.headers.clear();
    }

    /// Lays `batch` out as an `input-batch` and calls `f` with it, unless
    /// its keys, values and headers add up to more than `bytes_max` (at
    /// most `u32::MAX`, so that every offset fits the WIT spans); that is
    /// checked before anything is copied.
    pub(crate) fn with_batch<R>(
        &mut self,
        batch: &[InputRecord],
        bytes_max: usize,
        f: impl FnOnce(wit::InputBatch<'_>) -> R,
    ) -> Result<R, BatchTooBig> {
        let bytes = payload_bytes(batch);
        if bytes > bytes_max || u32::try_from(bytes).is_err() {
            return Err(BatchTooBig { bytes });
        }
        self.clear();
        self.presence.reserve(batch.len());
        self.layout.reserve(batch.len() * 8);
        self.timestamps.reserve(batch.len());
        self.offsets.reserve(batch.len());
        let mut topics: Vec<&str> = Vec::new();
        let mut last_topic: Option<(&Arc<str>, usize)> = None;
        for r in batch {
            let first_header = self.headers.len();
            for h in &r.headers {
                let header = wit::Header {
                    name: self.bytes(h.key.as_bytes()),
                    value: self.bytes(&h.value),
                };
                self.headers.push(header);
            }
            // Batches come from one partition: the topic rarely changes,
            // and is usually the very same `Arc` as the record before.
            let topic = match last_topic {
                Some((arc, i)) if Arc::ptr_eq(arc, &r.topic) => i,
                _ => {
                    let i = match topics.iter().rposition(|t| *t == &*r.topic) {
                        Some(i) => i,
                        None => {
                            topics.push(&r.topic);
                            topics.len() - 1
                        }
                    };
                    last_topic = Some((&r.topic, i));
                    i
                }
            };
            let mut presence = 0;
            let key = match r.key.as_deref() {
                Some(k) => {
                    presence |= HAS_KEY;
                    self.bytes(k)
                }
                None => span(0, 0),
            };
            let value = match r.value.as_deref() {
                Some(v) => {
                    presence |= HAS_VALUE;
                    self.bytes(v)
                }
                None => span(0, 0),
            };
            self.presence.push(presence);
            self.layout.extend_from_slice(&[
                key.start,
                key.len,
                value.start,
                value.len,
                first_header as u32,
                (self.headers.len() - first_header) as u32,
                topic as u32,
                r.partition,
            ]);
            self.timestamps.push(r.timestamp.0);
            self.offsets.push(r.offset.0);
        }
        let result = f(wit::InputBatch {
            data: &self.data,
            presence: &self.presence,
            layout: &self.layout,
            timestamps: &self.timestamps,
            offsets: &self.offsets,
            headers: &self.headers,
            topics: &topics,
        });
        // Keep buffers warm for the usual batch, not the largest ever seen.
        if self.data.capacity() > ARENA_BYTES_KEPT {
            self.data = Vec::new();
        }
        Ok(result)
    }

    fn bytes(&mut self, bytes: &[u8]) -> wit::Span {
        let start = self.data.len();
        self.data.extend_from_slice(bytes);
        span(start, bytes.len())
    }
}

/// The key, value and header bytes of `batch`: what its `data` will hold.
fn payload_bytes(batch: &[InputRecord]) -> usize {
    let len = |b: &Option<Bytes>| b.as_ref().map_or(0, Bytes::len);
    batch
        .iter()
        .map(|r| {
            let headers: usize = r.headers.iter().map(|h| h.key.len() + h.value.len()).sum();
            len(&r.key) + len(&r.value) + headers
        })
        .fold(0, usize::saturating_add)
}

/// Never wraps: [`Arena::with_batch`] refuses batches whose bytes do not
/// fit `u32` before it lays any out.
fn span(start: usize, len: usize) -> wit::Span {
    wit::Span {
        start: start as u32,
        len: len as u32,
    }
}

/// Turns the guest's `output-batch` into records, checking every list
/// length, span and index, since the guest is not trusted. Forwarded
/// records share the bytes of `inputs`, the batch of the call.
pub(crate) fn outputs(
    batch: wit::OutputBatch,
    inputs: &[InputRecord],
    records_max: usize,
) -> Result<Vec<OutputRecord>, String> {
    let (records, headers) = (batch.presence.len(), batch.headers.len());
    if records > records_max || headers > records_max {
        return Err(format!(
            "it returned {records} records and {headers} headers, more than output_records_max={records_max}"
        ));
    }
    let layout_len = records * OUTPUT_LAYOUT;
    if batch.layout.len() != layout_len || batch.timestamps.len() != records {
        return Err(format!(
            "its presence lists {records} records, so its layout needs {layout_len} entries and its timestamps {records}, but they have {} and {}",
            batch.layout.len(),
            batch.timestamps.len()
        ));
    }
    let data = Bytes::from(batch.data);
    let topics: Vec<Arc<str>> = batch.topics.into_iter().map(Arc::from).collect();
    let slice = |start: u32, len: u32, what: &str| -> Result<Bytes, String> {
        let (start, len) = (start as usize, len as usize);
        match start.checked_add(len) {
            Some(end) if end <= data.len() => Ok(data.slice(start..end)),
            _ => Err(format!(
                "its {what} spans bytes {start}..{start}+{len}, outside its {} bytes of data",
                data.len()
            )),
        }
    };
    let rows = batch.layout.chunks_exact(OUTPUT_LAYOUT);
    let mut out = Vec::with_capacity(records);
    for ((&presence, row), &timestamp) in batch.presence.iter().zip(rows).zip(&batch.timestamps) {
        let &[
            key_start,
            key_len,
            value_start,
            value_len,
            first,
            count,
            topic_index,
        ] = row
        else {
            return Err("its layout is not in groups of seven".to_owned());
        };
        let topic = if presence & HAS_TOPIC == 0 {
            None
        } else {
            Some(topics.get(topic_index as usize).cloned().ok_or_else(|| {
                format!(
                    "it names output topic #{topic_index}, but listed {} topics",
                    topics.len()
                )
            })?)
        };
        let timestamp = (presence & HAS_TIMESTAMP != 0).then_some(Timestamp(timestamp));
        if presence & FORWARDED != 0 {
            // `key_start` is the position of the input record forwarded.
            let input = inputs.get(key_start as usize).ok_or_else(|| {
                format!(
                    "it forwards input record {key_start} of a batch of {} records",
                    inputs.len()
                )
            })?;
            out.push(OutputRecord {
                topic,
                key: input.key.clone(),
                value: input.value.clone(),
                headers: input.headers.clone(),
                timestamp: timestamp.or(Some(input.timestamp)),
            });
            continue;
        }
        let (first, count) = (first as usize, count as usize);
        let headers = first
            .checked_add(count)
            .and_then(|end| batch.headers.get(first..end))
            .ok_or_else(|| {
                format!(
                    "its headers {first}..{first}+{count} are outside its {} headers",
                    batch.headers.len()
                )
            })?
            .iter()
            .map(|h| {
                let name = slice(h.name.start, h.name.len, "header name")?;
                let key = String::from_utf8(name.to_vec())
                    .map_err(|_| "a header name is not UTF-8".to_owned())?;
                Ok(Header {
                    key,
                    value: slice(h.value.start, h.value.len, "header value")?,
                })
            })
            .collect::<Result<Vec<_>, String>>()?;
        let key = (presence & HAS_KEY != 0)
            .then(|| slice(key_start, key_len, "key"))
            .transpose()?;
        let value = (presence & HAS_VALUE != 0)
            .then(|| slice(value_start, value_len, "value"))
            .transpose()?;
        out.push(OutputRecord {
            topic,
            key,
            value,
            headers,
            timestamp,
        });
    }
    Ok(out)
}
