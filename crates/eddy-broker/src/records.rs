//! Structured records (for clients that do not encode batches) to and from
//! stored batches.

use eddy_log::{BATCH_BYTES_LIMIT, BatchBuilder, Offset, RecordRef, Timestamp, batches};
use eddy_proto::v1::{ConsumedRecord, Header, Record};

use crate::error::BrokerError;

/// Encodes `records` into one batch; records without a timestamp get `now_ms`.
pub fn encode(records: &[&Record], now_ms: i64) -> Vec<u8> {
    let size: usize = records.iter().map(|r| approximate_size(r)).sum();
    let mut builder = BatchBuilder::with_capacity(size + 128);
    let mut headers: Vec<(&str, &[u8])> = Vec::new();
    for r in records {
        headers.clear();
        headers.extend(r.headers.iter().map(|h| (h.key.as_str(), &h.value[..])));
        builder.push(&RecordRef {
            timestamp: Timestamp(r.timestamp_ms.unwrap_or(now_ms)),
            key: r.key.as_deref(),
            value: r.value.as_deref(),
            headers: &headers,
        });
    }
    builder.finish().unwrap_or_default()
}

fn approximate_size(r: &Record) -> usize {
    let headers: usize = r
        .headers
        .iter()
        .map(|h| h.key.len() + h.value.len() + 4)
        .sum();
    r.key.as_ref().map_or(0, |k| k.len()) + r.value.as_ref().map_or(0, |v| v.len()) + headers + 24
}

/// Decodes stored batches, keeping records at or after `from`.
pub fn decode(
    stored: &[u8],
    from: Offset,
    out: &mut Vec<ConsumedRecord>,
) -> Result<(), BrokerError> {
    let bad = |e: eddy_log::BatchError| {
        BrokerError::Internal(format!("stored batch failed to decode: {e}"))
    };
    for batch in batches(stored, BATCH_BYTES_LIMIT) {
        for record in batch.map_err(bad)?.records() {
            let record = record.map_err(bad)?;
            if record.offset < from {
                continue;
            }
            out.push(ConsumedRecord {
                offset: record.offset.0,
                timestamp_ms: record.timestamp.0,
                key: record.key.map(bytes::Bytes::copy_from_slice),
                value: record.value.map(bytes::Bytes::copy_from_slice),
                headers: record
                    .headers()
                    .map(|(k, v)| Header {
                        key: k.to_string(),
                        value: bytes::Bytes::copy_from_slice(v),
                    })
                    .collect(),
            });
        }
    }
    Ok(())
}
