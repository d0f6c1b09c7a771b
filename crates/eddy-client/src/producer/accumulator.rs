//! Where records wait to be sent: one open batch per partition, sealed
//! when full or when its linger has passed, in the order sealing gives
//! (a partition's batches must reach the broker in that order).

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use bytes::Bytes;
use eddy_log::{
    BatchBuilder, ProducerStamp, RecordRef, Sequence, Timestamp, partitioner::partition_for_key,
};
use tokio::time::Instant;

use super::{BatchState, DeliveryTicket, ProducerConfig, ProducerRecord, Shared};
use crate::error::{ClientError, Result};

/// A partition of a topic, as the producer keys its state.
pub(super) type PartitionKey = (Arc<str>, u32);

pub(super) struct OpenBatch {
    pub(super) builder: BatchBuilder,
    pub(super) created: Instant,
    pub(super) state: Arc<BatchState>,
    pub(super) permits: u32,
}

pub(super) struct ReadyBatch {
    /// When it was sealed, counting from 0 for the producer: a partition's
    /// batches must reach the broker in this order, retries included.
    pub(super) order: u64,
    pub(super) topic: Arc<str>,
    pub(super) partition: u32,
    pub(super) bytes: Bytes,
    pub(super) records: u32,
    pub(super) state: Arc<BatchState>,
    pub(super) permits: u32,
    pub(super) created: Instant,
    pub(super) attempts: u32,
}

#[derive(Default)]
pub(super) struct Accumulator {
    pub(super) open: HashMap<(Arc<str>, u32), OpenBatch>,
    /// Size of each partition's last sealed batch: a busy partition gets a
    /// full-size buffer at once, a quiet one a small buffer that grows.
    pub(super) last_size: HashMap<(Arc<str>, u32), usize>,
    pub(super) ready: VecDeque<ReadyBatch>,
    pub(super) sticky: HashMap<Arc<str>, u32>,
    /// Topic names, shared so a send does not allocate one.
    pub(super) topics: HashSet<Arc<str>>,
    /// Idempotence: the producer's identity, and each partition's next sequence.
    pub(super) identity: Option<ProducerStamp>,
    pub(super) sequences: HashMap<(Arc<str>, u32), i32>,
    pub(super) sealed: u64,
    pub(super) flush_requested: bool,
    pub(super) closed: bool,
}

/// Appends records to their partitions' open batches under the
/// accumulator's lock; `unused` keeps the buffer bytes not taken (refunded
/// by the caller). Returns whether the sender must wake, even when a
/// record is refused after others were appended.
pub(super) fn append_group(
    acc: &mut Accumulator,
    s: &Shared,
    topic: &str,
    count: u32,
    group: impl IntoIterator<Item = (ProducerRecord, usize)>,
    mut tickets: impl FnMut(DeliveryTicket),
    unused: &mut usize,
) -> (bool, Result<()>) {
    if acc.closed {
        return (false, Err(ClientError::Closed));
    }
    let topic: Arc<str> = match acc.topics.get(topic) {
        Some(t) => t.clone(),
        None => {
            let t: Arc<str> = Arc::from(topic);
            acc.topics.insert(t.clone());
            t
        }
    };
    let mut wake = false;
    // The partition last found to have its sequence set (stable names).
    let mut set = None;
    for (record, size) in group {
        let partition = match (record.partition, &record.key) {
            (Some(p), _) => p,
            (None, Some(key)) => partition_for_key(key, count),
            (None, None) => *acc.sticky.entry(topic.clone()).or_insert(0) % count,
        };
        if s.config.stable_name.is_some()
            && acc.identity.is_some()
            && set != Some(partition)
            && !acc.sequences.contains_key(&(topic.clone(), partition))
        {
            let e = ClientError::Invalid(format!(
                "this producer has a stable name, so its sequences continue across restarts and the broker drops anything at or below the last one it wrote: call set_next_sequence({topic:?}, {partition}, N) with the partition's next sequence (0 the first time) before sending there"
            ));
            return (wake, Err(e));
        }
        let (ticket, woke) = append(
            acc,
            &s.config,
            topic.clone(),
            partition,
            count,
            &record,
            size as u32,
        );
        *unused -= size;
        wake |= woke;
        set = Some(partition);
        s.pending.fetch_add(1, Ordering::AcqRel);
        tickets(ticket);
    }
    (wake, Ok(()))
}

/// Adds a record to its partition's open batch, sealing the batch when full.
fn append(
    acc: &mut Accumulator,
    config: &ProducerConfig,
    topic: Arc<str>,
    partition: u32,
    partition_count: u32,
    record: &ProducerRecord,
    permits: u32,
) -> (DeliveryTicket, bool) {
    let timestamp = record
        .timestamp_ms
        .unwrap_or_else(|| eddy_log::Clock::now_ms(&eddy_log::SystemClock));
    let headers: Vec<(&str, &[u8])> = record
        .headers
        .iter()
        .map(|(k, v)| (k.as_str(), &v[..]))
        .collect();
    let rec = RecordRef {
        timestamp: Timestamp(timestamp),
        key: record.key.as_deref(),
        value: record.value.as_deref(),
        headers: &headers,
    };
    let key = (topic, partition);
    // The common case: room in the partition's open batch (one lookup).
    if let Some(batch) = acc.open.get_mut(&key)
        && (batch.builder.record_count() == 0
            || batch.builder.size_bytes() + batch.builder.record_size(&rec)
                <= config.batch_bytes_max)
    {
        return (push(batch, &rec, permits), false);
    }
    // Full (or none yet): seal it and open a new one. The sender must hear
    // of both, to send the sealed batch and to time the new one's linger.
    seal(acc, &key, partition_count);
    let floor = config.batch_bytes_max.min(4 << 10);
    let capacity = acc
        .last_size
        .get(&key)
        .copied()
        .unwrap_or(0)
        .clamp(floor, config.batch_bytes_max.max(floor));
    let batch = acc.open.entry(key).or_insert_with(|| OpenBatch {
        builder: BatchBuilder::with_capacity(capacity + 1024).compression(config.compression),
        created: Instant::now(),
        state: Arc::new(BatchState::default()),
        permits: 0,
    });
    (push(batch, &rec, permits), true)
}

fn push(batch: &mut OpenBatch, rec: &RecordRef<'_>, permits: u32) -> DeliveryTicket {
    let index = batch.builder.record_count();
    batch.builder.push(rec);
    batch.permits += permits;
    DeliveryTicket {
        state: batch.state.clone(),
        index,
    }
}

/// Moves an open batch to the ready queue (stamped with the partition's
/// next sequence when idempotent); a sealed sticky partition moves on.
fn seal(acc: &mut Accumulator, key: &(Arc<str>, u32), partition_count: u32) {
    let Some(open) = acc.open.remove(key) else {
        return;
    };
    let records = open.builder.record_count();
    let mut builder = open.builder;
    if let Some(identity) = acc.identity {
        let next = acc.sequences.entry(key.clone()).or_insert(0);
        builder = builder.producer(ProducerStamp {
            base_sequence: Sequence(*next),
            ..identity
        });
        // Sequences wrap like Kafka's.
        *next = ((i64::from(*next) + i64::from(records)) % (i64::from(i32::MAX) + 1)) as i32;
    }
    let Some(bytes) = builder.finish() else {
        return;
    };
    acc.last_size.insert(key.clone(), bytes.len());
    if let Some(sticky) = acc.sticky.get_mut(&key.0)
        && *sticky % partition_count == key.1
    {
        *sticky = sticky.wrapping_add(1);
    }
    let order = acc.sealed;
    acc.sealed += 1;
    acc.ready.push_back(ReadyBatch {
        order,
        topic: key.0.clone(),
        partition: key.1,
        bytes: Bytes::from(bytes),
        records,
        state: open.state,
        permits: open.permits,
        created: open.created,
        attempts: 0,
    });
}

/// Seals batches past their linger time (all of them after a flush) and
/// takes every ready batch, retries first, each partition's in sealing order.
pub(super) fn take_ready(s: &Shared) -> (Vec<ReadyBatch>, Option<Instant>, bool) {
    let mut ready: Vec<ReadyBatch> = s.retry.lock().drain(..).collect();
    // Retries come back from several places (a dead connection, a failed
    // request, batches held back); sealing order puts each partition's
    // batches back in the order they must be written.
    ready.sort_by_key(|b| b.order);
    let mut acc = s.acc.lock();
    let linger = Duration::from_millis(s.config.linger_ms);
    let now = Instant::now();
    let flush = std::mem::take(&mut acc.flush_requested) || acc.closed;
    let expired: Vec<(Arc<str>, u32)> = acc
        .open
        .iter()
        .filter(|(_, b)| flush || b.created + linger <= now)
        .map(|(k, _)| k.clone())
        .collect();
    let counts = s.partition_counts.lock();
    for key in expired {
        let count = counts.get(&key.0).copied().unwrap_or(1);
        seal(&mut acc, &key, count);
    }
    drop(counts);
    let next = acc.open.values().map(|b| b.created + linger).min();
    ready.extend(acc.ready.drain(..));
    let closed = acc.closed
        && acc.open.is_empty()
        && ready.is_empty()
        && s.pending.load(Ordering::Acquire) == 0;
    (ready, next, closed)
}
