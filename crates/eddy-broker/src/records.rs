//! Structured records (for clients that do not encode batches) into a
//! batch.

use eddy_log::{BatchBuilder, RecordRef, Timestamp};

use crate::api::Record;

/// Encodes `records` into one batch; records without a timestamp get `now_ms`.
pub fn encode(records: &[&Record], now_ms: i64) -> Vec<u8> {
    let size: usize = records.iter().map(|r| approximate_size(r)).sum();
    let mut builder = BatchBuilder::with_capacity(size + 128);
    let mut headers: Vec<(&str, &[u8])> = Vec::new();
    for r in records {
        headers.clear();
        headers.extend(r.headers.iter().map(|h| (h.key.as_str(), &h.value[..])));
        builder.push(&RecordRef {
            timestamp: r.timestamp.unwrap_or(Timestamp(now_ms)),
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
