//! Eddy's own topics (`__consumer_offsets`, `__processors`): created on
//! first use with a replication factor of min(3, brokers), written with
//! key/value records by the broker itself, and read back whole when their
//! owner loads its state.
//!
//! They live in the log like any topic, so that replication will copy
//! them like any topic.

use std::collections::BTreeMap;
use std::sync::Arc;

use bytes::Bytes;
use eddy_log::{BatchBuilder, CheckedBatch, Offset, RecordRef, Timestamp, check_batch};
use eddy_meta::{Command, PartitionId, TopicId, TopicMeta, assign_replicas};

use crate::broker::{Broker, blocking};
use crate::error::BrokerError;

/// How an internal topic is created.
#[derive(Debug, Clone)]
pub struct InternalTopic {
    pub name: &'static str,
    pub partitions: u32,
    /// Topic configs, e.g. `cleanup.policy=compact`.
    pub configs: BTreeMap<String, String>,
}

/// One record read back from an internal topic.
#[derive(Debug, Clone)]
pub struct StoredRecord {
    pub offset: Offset,
    pub timestamp: Timestamp,
    pub key: Option<Bytes>,
    /// `None` for a tombstone.
    pub value: Option<Bytes>,
}

/// Bytes read per step when scanning a partition.
const SCAN_BYTES: usize = 4 << 20;

impl Broker {
    /// Creates `topic` if it does not exist yet, and opens its partitions here.
    pub async fn ensure_internal_topic(
        self: &Arc<Self>,
        topic: &InternalTopic,
    ) -> Result<(), BrokerError> {
        if !self.meta.state().topics.contains_key(topic.name) {
            let state = self.meta.state();
            let brokers = state.live_brokers();
            let rf = brokers.len().min(3);
            let meta = TopicMeta {
                name: topic.name.to_string(),
                id: TopicId::random(),
                configs: topic.configs.clone(),
                partitions: assign_replicas(
                    &brokers,
                    crate::broker::spread_start(&state),
                    topic.partitions,
                    rf,
                )?,
                internal: true,
            };
            match self.meta.propose(Command::CreateTopic(meta)).await {
                Ok(_) => tracing::info!(topic = topic.name, "created internal topic"),
                // Another request created it first.
                Err(eddy_meta::MetaError::TopicExists(_)) => {}
                Err(e) => return Err(e.into()),
            }
        }
        if self.topics.get(topic.name).is_err() {
            // Created by another request and not opened here yet.
            self.reconcile().await?;
        }
        Ok(())
    }

    /// Appends `records` (key, value; `None` is a tombstone) to one
    /// partition of an internal topic as one batch, and returns the offset
    /// of the first.
    pub async fn append_internal(
        self: &Arc<Self>,
        topic: &str,
        partition: PartitionId,
        records: Vec<(Vec<u8>, Option<Bytes>)>,
    ) -> Result<Offset, BrokerError> {
        self.check_lease()?;
        let p = self.topics.get(topic)?.partition(partition)?.clone();
        let now = self.now_ms();
        let topic = topic.to_string();
        let writer = p.clone();
        let (base, end) = blocking(move || {
            let p = writer;
            let Some(batch) = key_value_batch(&records, now, &topic, partition)? else {
                let end = p.log_end();
                return Ok((end, end));
            };
            let info = p.append(&batch)?;
            Ok((info.base_offset, p.log_end()))
        })
        .await?;
        // Eddy's own records are acknowledged only once the ISR has them.
        self.replicated(&p, end).await?;
        Ok(base)
    }

    /// Every record of one partition of an internal topic, oldest first.
    /// A damaged batch is an error: the caller's state would be incomplete.
    pub async fn scan_internal(
        self: &Arc<Self>,
        topic: &str,
        partition: PartitionId,
    ) -> Result<Vec<StoredRecord>, BrokerError> {
        let p = self.topics.get(topic)?.partition(partition)?.clone();
        let topic = topic.to_string();
        blocking(move || scan(&p, &topic)).await
    }
}

impl Broker {
    /// The records of the batch holding `offset` (and any after it in
    /// the same read) of one partition of an internal topic.
    pub async fn read_internal(
        self: &Arc<Self>,
        topic: &str,
        partition: PartitionId,
        offset: Offset,
    ) -> Result<Vec<StoredRecord>, BrokerError> {
        let p = self.topics.get(topic)?.partition(partition)?.clone();
        let topic = topic.to_string();
        blocking(move || {
            // The first batch comes whole whatever the byte limit; to the
            // log end, as the scan that found `offset` read.
            let read = p
                .read_to_log_end(offset, 1)
                .map_err(BrokerError::log(&topic, p.id))?;
            let mut out = Vec::new();
            decode_into(&read.bytes, offset, &topic, p.id, &mut out)?;
            Ok(out)
        })
        .await
    }
}

/// Key/value records (a `None` value is a tombstone) as one checked batch
/// stamped `now`, or `None` when there are none: what Eddy writes to its
/// own topics.
pub(crate) fn key_value_batch<K: AsRef<[u8]>, V: AsRef<[u8]>>(
    records: &[(K, Option<V>)],
    now: i64,
    topic: &str,
    partition: PartitionId,
) -> Result<Option<CheckedBatch<Vec<u8>>>, BrokerError> {
    let size: usize = records
        .iter()
        .map(|(k, v)| k.as_ref().len() + v.as_ref().map_or(0, |v| v.as_ref().len()) + 32)
        .sum();
    let mut builder = BatchBuilder::with_capacity(size + 128);
    for (k, v) in records {
        builder.push(&RecordRef {
            timestamp: Timestamp(now),
            key: Some(k.as_ref()),
            value: v.as_ref().map(AsRef::as_ref),
            headers: &[],
        });
    }
    let Some(bytes) = builder.finish() else {
        return Ok(None);
    };
    let batch = check_batch(bytes, eddy_log::BATCH_BYTES_LIMIT)
        .map_err(BrokerError::log(topic, partition))?;
    Ok(Some(batch))
}

/// Reads a partition from its start to its log end.
pub(crate) fn scan(
    p: &crate::partition::Partition,
    topic: &str,
) -> Result<Vec<StoredRecord>, BrokerError> {
    let mut out = Vec::new();
    let mut from = p.offsets().log_start;
    loop {
        // To the log end: a leader just elected has the old leader's
        // writes before its high watermark says so.
        let read = p
            .read_to_log_end(from, SCAN_BYTES)
            .map_err(BrokerError::log(topic, p.id))?;
        if read.bytes.is_empty() {
            return Ok(out);
        }
        decode_into(&read.bytes, from, topic, p.id, &mut out)?;
        from = read.next_offset;
    }
}

/// Decodes stored batches into records at or after `from`.
fn decode_into(
    bytes: &Bytes,
    from: Offset,
    topic: &str,
    partition: PartitionId,
    out: &mut Vec<StoredRecord>,
) -> Result<(), BrokerError> {
    let damaged = |e: eddy_log::BatchError| {
        BrokerError::Internal(format!(
            "{topic}-{partition} has a damaged batch at or after offset {}: {e}; its owner's state cannot be loaded whole",
            from.0
        ))
    };
    for batch in eddy_log::batches(bytes, eddy_log::BATCH_BYTES_LIMIT) {
        let batch = batch.map_err(damaged)?;
        let section = batch.records_bytes(bytes).map_err(damaged)?;
        for r in eddy_log::RecordIter::new(batch.header, &section) {
            let r = r.map_err(damaged)?;
            if r.offset < from {
                continue;
            }
            out.push(StoredRecord {
                offset: r.offset,
                timestamp: r.timestamp,
                key: r.key.map(|k| section.slice_ref(k)),
                value: r.value.map(|v| section.slice_ref(v)),
            });
        }
    }
    Ok(())
}
