//! The host's record types and their conversion to and from the
//! generated component types (borrowed on the way in, so record bytes are
//! copied once, straight into guest memory).

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
    /// Shared by all records of a batch, so cloning it is cheap.
    pub topic: Arc<str>,
    pub partition: u32,
    pub offset: Offset,
}

/// One record a processor asked to produce.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutputRecord {
    /// The output topic; `None` for the pipeline's first output topic.
    pub topic: Option<String>,
    pub key: Option<Bytes>,
    pub value: Option<Bytes>,
    pub headers: Vec<Header>,
    /// `None`: take the input record's timestamp.
    pub timestamp: Option<Timestamp>,
}

/// A batch lowered to the borrowed component types: the headers of all
/// records in one vector, each record borrowing its slice of it.
pub(crate) fn with_wit_batch<R>(
    batch: &[InputRecord],
    f: impl FnOnce(&[wit::InputRecord<'_>]) -> R,
) -> R {
    let headers: Vec<wit::HeaderParam<'_>> = batch
        .iter()
        .flat_map(|r| &r.headers)
        .map(|h| wit::HeaderParam {
            key: &h.key,
            value: &h.value,
        })
        .collect();
    let mut start = 0;
    let records: Vec<wit::InputRecord<'_>> = batch
        .iter()
        .map(|r| {
            let end = start + r.headers.len();
            let record = wit::InputRecord {
                key: r.key.as_deref(),
                value: r.value.as_deref(),
                headers: &headers[start..end],
                timestamp: r.timestamp.0,
                topic: &r.topic,
                partition: r.partition,
                offset: r.offset.0,
            };
            start = end;
            record
        })
        .collect();
    f(&records)
}

impl From<wit::OutputRecord> for OutputRecord {
    fn from(r: wit::OutputRecord) -> Self {
        OutputRecord {
            topic: r.topic,
            key: r.key.map(Bytes::from),
            value: r.value.map(Bytes::from),
            headers: r
                .headers
                .into_iter()
                .map(|h| Header {
                    key: h.key,
                    value: Bytes::from(h.value),
                })
                .collect(),
            timestamp: r.timestamp.map(Timestamp),
        }
    }
}
