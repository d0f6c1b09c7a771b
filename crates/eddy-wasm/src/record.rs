//! The host's record types and their conversion to and from the batch
//! arenas of the WIT world: on the way in, every key, value and header is
//! copied once into one buffer that is copied once into guest memory; on
//! the way out, the guest's buffer becomes one `Bytes` that the output
//! records slice without copying.

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

/// Buffers for lowering batches, kept by an instance so that steady-state
/// calls allocate nothing on the way in.
#[derive(Default)]
pub(crate) struct Arena {
    data: Vec<u8>,
    headers: Vec<wit::Header>,
    records: Vec<wit::InputRecord>,
}

/// Why a batch cannot be lowered: its bytes do not fit 32-bit offsets.
#[derive(Debug)]
pub(crate) struct BatchTooBig {
    pub(crate) bytes: usize,
}

impl Arena {
    /// Lays `batch` out as an `input-batch` and calls `f` with it.
    pub(crate) fn with_batch<R>(
        &mut self,
        batch: &[InputRecord],
        f: impl FnOnce(wit::InputBatch<'_>) -> R,
    ) -> Result<R, BatchTooBig> {
        self.data.clear();
        self.headers.clear();
        self.records.clear();
        let mut topics: Vec<&str> = Vec::new();
        for r in batch {
            let first_header = self.headers.len();
            for h in &r.headers {
                let header = wit::Header {
                    name: self.bytes(h.key.as_bytes()),
                    value: self.bytes(&h.value),
                };
                self.headers.push(header);
            }
            // Batches come from one partition: the topic rarely changes.
            let topic = match topics.iter().rposition(|t| *t == &*r.topic) {
                Some(i) => i,
                None => {
                    topics.push(&r.topic);
                    topics.len() - 1
                }
            };
            let record = wit::InputRecord {
                key: r.key.as_deref().map(|k| self.bytes(k)),
                value: r.value.as_deref().map(|v| self.bytes(v)),
                headers: span(first_header, self.headers.len() - first_header),
                timestamp: r.timestamp.0,
                topic: topic as u32,
                partition: r.partition,
                offset: r.offset.0,
            };
            self.records.push(record);
        }
        if u32::try_from(self.data.len()).is_err() {
            return Err(BatchTooBig {
                bytes: self.data.len(),
            });
        }
        let result = f(wit::InputBatch {
            data: &self.data,
            headers: &self.headers,
            topics: &topics,
            records: &self.records,
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

/// Offsets past `u32::MAX` wrap here and are caught by the check on the
/// total size in [`Arena::with_batch`].
fn span(start: usize, len: usize) -> wit::Span {
    wit::Span {
        start: start as u32,
        len: len as u32,
    }
}

/// Turns the guest's `output-batch` into records, checking every span and
/// index, since the guest is not trusted.
pub(crate) fn outputs(
    batch: wit::OutputBatch,
    records_max: usize,
) -> Result<Vec<OutputRecord>, String> {
    let (records, headers) = (batch.records.len(), batch.headers.len());
    if records > records_max || headers > records_max {
        return Err(format!(
            "it returned {records} records and {headers} headers, more than output_records_max={records_max}"
        ));
    }
    let data = Bytes::from(batch.data);
    let topics: Vec<Arc<str>> = batch.topics.into_iter().map(Arc::from).collect();
    let slice = |s: wit::Span, what: &str| -> Result<Bytes, String> {
        let (start, len) = (s.start as usize, s.len as usize);
        match start.checked_add(len) {
            Some(end) if end <= data.len() => Ok(data.slice(start..end)),
            _ => Err(format!(
                "its {what} spans bytes {start}..{start}+{len}, outside its {} bytes of data",
                data.len()
            )),
        }
    };
    batch
        .records
        .iter()
        .map(|r| {
            let topic = match r.topic {
                None => None,
                Some(i) => Some(topics.get(i as usize).cloned().ok_or_else(|| {
                    format!(
                        "it names output topic #{i}, but listed {} topics",
                        topics.len()
                    )
                })?),
            };
            let (first, count) = (r.headers.start as usize, r.headers.len as usize);
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
                    let name = slice(h.name, "header name")?;
                    let key = String::from_utf8(name.to_vec())
                        .map_err(|_| "a header name is not UTF-8".to_owned())?;
                    Ok(Header {
                        key,
                        value: slice(h.value, "header value")?,
                    })
                })
                .collect::<Result<Vec<_>, String>>()?;
            Ok(OutputRecord {
                topic,
                key: r.key.map(|s| slice(s, "key")).transpose()?,
                value: r.value.map(|s| slice(s, "value")).transpose()?,
                headers,
                timestamp: r.timestamp.map(Timestamp),
            })
        })
        .collect()
}
