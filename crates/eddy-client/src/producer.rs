//! The producer: records are encoded straight into per-partition batches
//! (Kafka v2, the broker writes them as they are), sealed when full or when
//! `linger_ms` has passed, and sent over one pipelined `ProduceStream` per
//! broker.
//!
//! Memory is bounded: `send` waits for room when `buffer_bytes_max` bytes
//! are buffered or in flight (backpressure), and each connection has at most
//! `requests_in_flight_max` requests outstanding.

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use bytes::Bytes;
use eddy_log::{
    BatchBuilder, ProducerEpoch, ProducerId, ProducerStamp, RecordRef, Sequence, Timestamp,
    partitioner::partition_for_key,
};
use eddy_proto::v1::{
    Acks, InitProducerIdRequest, PartitionProduceData, ProduceRequest, ProduceResponse,
    TopicProduceData,
};
use parking_lot::Mutex;
use tokio::sync::{Notify, OwnedSemaphorePermit, Semaphore, mpsc};
use tokio::time::Instant;
use tokio_stream::wrappers::ReceiverStream;

use crate::client::Client;
use crate::error::{ClientError, Result};

/// Producer settings.
#[derive(Debug, Clone)]
pub struct ProducerConfig {
    pub acks: Acks,
    /// How long a batch waits for more records before it is sent.
    pub linger_ms: u64,
    /// A batch is sent once it reaches this size.
    pub batch_bytes_max: usize,
    /// Bytes buffered or in flight before `send` waits.
    pub buffer_bytes_max: usize,
    /// Produce requests outstanding per broker connection.
    pub requests_in_flight_max: usize,
    /// How long a record may take to be acknowledged, retries included,
    /// before `send`'s ticket (and `flush`) report it failed.
    pub delivery_timeout_ms: u64,
    /// First wait before a retry; doubles per attempt up to `retry_backoff_ms_max`.
    pub retry_backoff_ms: u64,
    pub retry_backoff_ms_max: u64,
    /// Idempotence: the producer gets an id and stamps each batch with
    /// per-partition sequence numbers, so a retried batch is written once.
    /// Needs `acks: Acks::All` (with other acks it is off).
    pub idempotence: bool,
    /// With idempotence, a stable name (e.g. a pipeline task) keeps the same
    /// producer id across restarts; each start bumps its epoch and fences
    /// the previous one.
    pub stable_name: Option<String>,
}

/// A produce request carries batches up to about this size.
const REQUEST_BYTES_TARGET: usize = 2 << 20;

/// Batches a partition may have in flight at once (the broker remembers
/// this many per producer for duplicate detection).
pub const PARTITION_IN_FLIGHT_MAX: usize = eddy_log::BATCHES_KEPT;

impl Default for ProducerConfig {
    fn default() -> Self {
        ProducerConfig {
            acks: Acks::All,
            linger_ms: 5,
            batch_bytes_max: 1 << 20,
            buffer_bytes_max: 64 << 20,
            requests_in_flight_max: 8,
            delivery_timeout_ms: 120_000,
            retry_backoff_ms: 100,
            retry_backoff_ms_max: 1_000,
            idempotence: true,
            stable_name: None,
        }
    }
}

/// A record to send.
#[derive(Debug, Clone, Default)]
pub struct ProducerRecord {
    /// The partition; `None` places keyed records by murmur2(key) and
    /// keyless ones on a sticky partition that changes with each batch.
    pub partition: Option<u32>,
    pub key: Option<Bytes>,
    /// `None` is a tombstone.
    pub value: Option<Bytes>,
    pub headers: Vec<(String, Bytes)>,
    /// Milliseconds since the Unix epoch; `None` is now.
    pub timestamp_ms: Option<i64>,
}

impl ProducerRecord {
    pub fn value(value: impl Into<Bytes>) -> ProducerRecord {
        ProducerRecord {
            value: Some(value.into()),
            ..Default::default()
        }
    }

    pub fn key_value(key: impl Into<Bytes>, value: impl Into<Bytes>) -> ProducerRecord {
        ProducerRecord {
            key: Some(key.into()),
            value: Some(value.into()),
            ..Default::default()
        }
    }

    pub fn partition(mut self, partition: u32) -> ProducerRecord {
        self.partition = Some(partition);
        self
    }
}

/// Completion of one batch, shared by its records' tickets.
#[derive(Debug, Default)]
struct BatchState {
    result: Mutex<Option<Result<Option<u64>>>>,
    completed_at: Mutex<Option<Instant>>,
    done: Notify,
}

impl BatchState {
    fn complete(&self, result: Result<Option<u64>>) {
        *self.completed_at.lock() = Some(Instant::now());
        *self.result.lock() = Some(result);
        self.done.notify_waiters();
    }
}

/// Resolves to a sent record's offset once its batch is acknowledged.
#[derive(Debug, Clone)]
pub struct DeliveryTicket {
    state: Arc<BatchState>,
    index: u32,
}

impl DeliveryTicket {
    /// When the record's batch was acknowledged (or failed), if it has been.
    pub fn completed_at(&self) -> Option<std::time::Instant> {
        self.state.completed_at.lock().map(Instant::into_std)
    }

    /// The record's offset, or why it was not written. The offset is
    /// `None` with acks=0, and for a resent batch the broker had already
    /// written so long ago that it no longer knows where (written once).
    pub async fn wait(self) -> Result<Option<u64>> {
        loop {
            let notified = self.state.done.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            if let Some(result) = self.state.result.lock().clone() {
                return result.map(|base| base.map(|b| b + u64::from(self.index)));
            }
            notified.await;
        }
    }
}

/// A partition of a topic, as the producer keys its state.
type PartitionKey = (Arc<str>, u32);

struct OpenBatch {
    builder: BatchBuilder,
    created: Instant,
    state: Arc<BatchState>,
    permits: u32,
}

struct ReadyBatch {
    /// When it was sealed, counting from 0 for the producer: a partition's
    /// batches must reach the broker in this order, retries included.
    order: u64,
    topic: Arc<str>,
    partition: u32,
    bytes: Bytes,
    records: u32,
    state: Arc<BatchState>,
    permits: u32,
    created: Instant,
    attempts: u32,
}

#[derive(Default)]
struct Accumulator {
    open: HashMap<(Arc<str>, u32), OpenBatch>,
    /// Size of each partition's last sealed batch: a busy partition gets a
    /// full-size buffer at once, a quiet one a small buffer that grows.
    last_size: HashMap<(Arc<str>, u32), usize>,
    ready: VecDeque<ReadyBatch>,
    sticky: HashMap<Arc<str>, u32>,
    /// Topic names, shared so a send does not allocate one.
    topics: HashSet<Arc<str>>,
    /// Idempotence: the producer's identity, and each partition's next sequence.
    identity: Option<ProducerStamp>,
    sequences: HashMap<(Arc<str>, u32), i32>,
    sealed: u64,
    flush_requested: bool,
    closed: bool,
}

struct Shared {
    client: Client,
    config: ProducerConfig,
    acc: Mutex<Accumulator>,
    wake: Notify,
    buffer: Arc<Semaphore>,
    partition_counts: Mutex<HashMap<Arc<str>, u32>>,
    /// Records sent but not yet acknowledged or failed.
    pending: AtomicU64,
    idle: Notify,
    first_error: Mutex<Option<ClientError>>,
    correlation: AtomicU64,
    /// Batches to send again; they go before any new batch, in sealing
    /// order. Lock order: `retry`, then a connection's `pending`, then
    /// `in_flight`.
    retry: Mutex<VecDeque<ReadyBatch>>,
    /// Nothing is sent before this instant (backoff after a failure).
    backoff_until: Mutex<Option<Instant>>,
    /// Leaders may have moved: refresh metadata before sending.
    refresh: AtomicBool,
    /// Per partition: the connection (by id) its in-flight batches are on,
    /// and how many. A partition never has batches in flight on two
    /// connections, and a batch leaves this count only once it is
    /// acknowledged, failed, or back in `retry`; so a later batch can never
    /// overtake one that will be resent.
    in_flight: Mutex<HashMap<PartitionKey, (u64, usize)>>,
    connection_ids: AtomicU64,
    identity: tokio::sync::OnceCell<ProducerStamp>,
}

/// Sends records to Eddy; see the module docs.
#[derive(Clone)]
pub struct Producer {
    shared: Arc<Shared>,
    /// Shared by every clone: when the last one goes, the sender stops.
    _last: Arc<StopOnDrop>,
}

/// Stops a producer's sender once no handle to the producer is left
/// (records not yet sealed are dropped, as after `close` without `flush`).
struct StopOnDrop(Arc<Shared>);

impl Drop for StopOnDrop {
    fn drop(&mut self) {
        self.0.acc.lock().closed = true;
        self.0.wake.notify_one();
    }
}

impl std::fmt::Debug for Producer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Producer")
            .field("config", &self.shared.config)
            .finish()
    }
}

impl Producer {
    pub fn new(client: Client, config: ProducerConfig) -> Producer {
        let shared = Arc::new(Shared {
            buffer: Arc::new(Semaphore::new(config.buffer_bytes_max)),
            client,
            config,
            acc: Mutex::new(Accumulator::default()),
            wake: Notify::new(),
            partition_counts: Mutex::new(HashMap::new()),
            pending: AtomicU64::new(0),
            idle: Notify::new(),
            first_error: Mutex::new(None),
            correlation: AtomicU64::new(0),
            retry: Mutex::new(VecDeque::new()),
            backoff_until: Mutex::new(None),
            refresh: AtomicBool::new(false),
            in_flight: Mutex::new(HashMap::new()),
            connection_ids: AtomicU64::new(0),
            identity: tokio::sync::OnceCell::new(),
        });
        tokio::spawn(sender(shared.clone()));
        Producer {
            _last: Arc::new(StopOnDrop(shared.clone())),
            shared,
        }
    }

    /// Buffers a record, waiting for room if the buffer is full.
    pub async fn send(&self, topic: &str, record: ProducerRecord) -> Result<DeliveryTicket> {
        let (count, size) = self.admit(topic, &record).await?;
        let mut ticket = None;
        self.buffer_group(topic, count, [(record, size)], size, |t| ticket = Some(t))
            .await?;
        ticket.ok_or_else(|| ClientError::Invalid("no ticket for the record sent".into()))
    }

    /// The topic's partition count and the record's size, once the record
    /// is known to fit (and the producer has its identity).
    async fn admit(&self, topic: &str, record: &ProducerRecord) -> Result<(u32, usize)> {
        let count = self.ready(topic).await?;
        Ok((count, self.check(topic, count, record)?))
    }

    /// The topic's partition count, with the producer's identity in hand.
    async fn ready(&self, topic: &str) -> Result<u32> {
        let s = &self.shared;
        let count = self.partition_count(topic).await?;
        if s.config.idempotence && s.config.acks == Acks::All && !s.identity.initialized() {
            self.init_identity().await?;
        }
        Ok(count)
    }

    /// The record's size, if it fits the buffer and names a partition the
    /// topic has.
    fn check(&self, topic: &str, count: u32, record: &ProducerRecord) -> Result<usize> {
        let size = record_size(record);
        if size > self.shared.config.buffer_bytes_max {
            return Err(ClientError::Invalid(format!(
                "a record of {size} bytes does not fit the producer buffer of {} bytes (buffer_bytes_max)",
                self.shared.config.buffer_bytes_max
            )));
        }
        if let Some(p) = record.partition
            && p >= count
        {
            return Err(ClientError::Invalid(format!(
                "topic {topic:?} has {count} partitions; partition {p} does not exist"
            )));
        }
        Ok(size)
    }

    /// Buffers records for one topic, in order, as `send` would one by one
    /// but with one lookup, one wait for buffer room and one lock per group
    /// of records that fits a quarter of the buffer: what a program moving
    /// whole batches (a pipeline task) wants. Returns a ticket per record.
    pub async fn send_many(
        &self,
        topic: &str,
        records: Vec<ProducerRecord>,
    ) -> Result<Vec<DeliveryTicket>> {
        let count = self.ready(topic).await?;
        let mut sized = Vec::with_capacity(records.len());
        for record in records {
            let size = self.check(topic, count, &record)?;
            sized.push((record, size));
        }
        let budget = (self.shared.config.buffer_bytes_max / 4).max(1);
        let mut tickets = Vec::with_capacity(sized.len());
        let mut rest = sized.into_iter().peekable();
        while rest.peek().is_some() {
            let mut group = Vec::new();
            let mut bytes = 0usize;
            while let Some((_, size)) = rest.peek() {
                if !group.is_empty() && bytes + size > budget {
                    break;
                }
                bytes += size;
                if let Some(next) = rest.next() {
                    group.push(next);
                }
            }
            self.buffer_group(topic, count, group, bytes, |t| tickets.push(t))
                .await?;
        }
        Ok(tickets)
    }

    /// Waits for room for `bytes`, then appends `group` under one lock.
    async fn buffer_group(
        &self,
        topic: &str,
        count: u32,
        group: impl IntoIterator<Item = (ProducerRecord, usize)>,
        bytes: usize,
        tickets: impl FnMut(DeliveryTicket),
    ) -> Result<()> {
        let s = &self.shared;
        let permits = u32::try_from(bytes).map_err(|_| {
            ClientError::Invalid(format!("{bytes} bytes of records at once is too many"))
        })?;
        let permit = s
            .buffer
            .clone()
            .acquire_many_owned(permits)
            .await
            .map_err(|_| ClientError::Closed)?;
        permit.forget(); // returned as each batch is acknowledged or fails
        let mut unused = bytes;
        let (wake, result) = {
            let mut acc = s.acc.lock();
            append_group(&mut acc, s, topic, count, group, tickets, &mut unused)
        };
        if unused > 0 {
            s.buffer.add_permits(unused);
        }
        if wake {
            s.wake.notify_one();
        }
        result
    }

    /// Asks the broker for a producer id (once), retrying while the
    /// broker is unreachable.
    async fn init_identity(&self) -> Result<()> {
        let s = &self.shared;
        let stamp = s
            .identity
            .get_or_try_init(|| {
                retrying(&s.config, || async {
                    let stable_name = s.config.stable_name.clone().unwrap_or_default();
                    let request = InitProducerIdRequest { stable_name };
                    let channel = s.client.channel_to(&s.client.config().bootstrap).await?;
                    let mut client = s.client.produce_client(channel);
                    let r = client.init_producer_id(request).await?.into_inner();
                    Ok(ProducerStamp {
                        producer_id: ProducerId(r.producer_id),
                        producer_epoch: ProducerEpoch(r.producer_epoch as i16),
                        base_sequence: Sequence::NONE,
                    })
                })
            })
            .await?;
        s.acc.lock().identity = Some(*stamp);
        Ok(())
    }

    /// With a stable name, where a partition's sequence numbers continue:
    /// the first sequence of the next batch sent there. An exactly-once
    /// pipeline keeps it beside its committed input offset; sending to a
    /// partition before its sequence is set is refused, since a restarted
    /// producer that started again at 0 would have its new records dropped
    /// as duplicates.
    pub fn set_next_sequence(&self, topic: &str, partition: u32, next: i32) {
        let mut acc = self.shared.acc.lock();
        acc.sequences
            .insert((Arc::from(topic), partition), next.max(0));
    }

    /// The first sequence the next batch to `partition` of `topic` will
    /// carry, once the producer has stamped one there or was told it.
    pub fn next_sequence(&self, topic: &str, partition: u32) -> Option<i32> {
        let acc = self.shared.acc.lock();
        acc.sequences.get(&(Arc::from(topic), partition)).copied()
    }

    /// Asks for the producer's identity now rather than at the first send
    /// (idempotence only; `None` without it). A stable-name producer needs
    /// its id before it can learn where its sequences stand.
    pub async fn init(&self) -> Result<Option<(i64, i16)>> {
        let s = &self.shared;
        if !(s.config.idempotence && s.config.acks == Acks::All) {
            return Ok(None);
        }
        if !s.identity.initialized() {
            self.init_identity().await?;
        }
        Ok(self.identity())
    }

    /// The first failure of a record sent by this producer, if any; after
    /// one, later records of the same partitions cannot be trusted to land.
    pub fn error(&self) -> Option<ClientError> {
        self.shared.first_error.lock().clone()
    }

    /// The producer's id and epoch, once idempotence has started.
    pub fn identity(&self) -> Option<(i64, i16)> {
        self.shared
            .identity
            .get()
            .map(|s| (s.producer_id.0, s.producer_epoch.0))
    }

    async fn partition_count(&self, topic: &str) -> Result<u32> {
        if let Some(&n) = self.shared.partition_counts.lock().get(topic) {
            return Ok(n);
        }
        let client = &self.shared.client;
        let n = retrying(&self.shared.config, || client.partition_count(topic)).await?;
        self.shared
            .partition_counts
            .lock()
            .insert(Arc::from(topic), n);
        Ok(n)
    }

    /// Sends everything buffered now and waits until every record sent so
    /// far is acknowledged. Fails if any record failed since the producer
    /// was created.
    pub async fn flush(&self) -> Result<()> {
        let s = &self.shared;
        s.acc.lock().flush_requested = true;
        s.wake.notify_one();
        loop {
            let idle = s.idle.notified();
            tokio::pin!(idle);
            idle.as_mut().enable();
            if s.pending.load(Ordering::Acquire) == 0 {
                break;
            }
            idle.await;
        }
        match s.first_error.lock().clone() {
            Some(e) => Err(e),
            None => Ok(()),
        }
    }

    /// Flushes and stops the producer.
    pub async fn close(self) -> Result<()> {
        let result = self.flush().await;
        self.shared.acc.lock().closed = true;
        self.shared.wake.notify_one();
        result
    }
}

/// Appends records to their partitions' open batches under the
/// accumulator's lock; `unused` keeps the buffer bytes not taken (refunded
/// by the caller). Returns whether the sender must wake, even when a
/// record is refused after others were appended.
fn append_group(
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

/// Runs `f` until it succeeds, fails for good, or the delivery timeout
/// passes, backing off between attempts.
async fn retrying<T, F, Fut>(config: &ProducerConfig, mut f: F) -> Result<T>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<T>>,
{
    let deadline = Instant::now() + Duration::from_millis(config.delivery_timeout_ms);
    let mut backoff = config.retry_backoff_ms;
    loop {
        match f().await {
            Err(e) if e.is_retriable() && Instant::now() < deadline => {
                tracing::debug!(error = %e, "retrying");
                tokio::time::sleep(Duration::from_millis(backoff)).await;
                backoff = (backoff * 2).min(config.retry_backoff_ms_max);
            }
            other => return other,
        }
    }
}

fn record_size(r: &ProducerRecord) -> usize {
    let headers: usize = r.headers.iter().map(|(k, v)| k.len() + v.len() + 4).sum();
    r.key.as_ref().map_or(0, |k| k.len()) + r.value.as_ref().map_or(0, |v| v.len()) + headers + 24
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
        builder: BatchBuilder::with_capacity(capacity + 1024),
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

/// One request in flight, awaiting its response.
struct InFlight {
    batches: Vec<ReadyBatch>,
    _permit: OwnedSemaphorePermit,
}

/// A pipelined stream to one broker. Once `dead` (a request failed or the
/// stream broke) nothing more is sent on it; the broker writes nothing
/// after a failed request either, so its in-flight batches are resent, in
/// order, on a new stream.
struct Connection {
    id: u64,
    tx: mpsc::Sender<ProduceRequest>,
    pending: Arc<Mutex<Pending>>,
    slots: Arc<Semaphore>,
}

#[derive(Default)]
struct Pending {
    requests: VecDeque<(u64, InFlight)>,
    dead: bool,
}

/// The background task: seals lingering batches and sends ready ones.
async fn sender(s: Arc<Shared>) {
    let mut connections: HashMap<String, Connection> = HashMap::new();
    loop {
        let backoff = *s.backoff_until.lock();
        if let Some(until) = backoff.filter(|u| *u > Instant::now()) {
            tokio::time::sleep_until(until).await;
        }
        if s.refresh.swap(false, Ordering::AcqRel) {
            let topics: Vec<String> = s
                .partition_counts
                .lock()
                .keys()
                .map(|t| t.to_string())
                .collect();
            if let Err(e) = s.client.refresh_metadata(&topics).await {
                tracing::debug!(error = %e, "metadata refresh failed");
            }
        }
        let (ready, next_deadline, closed) = take_ready(&s);
        if ready.is_empty() {
            if closed {
                return;
            }
            match next_deadline {
                Some(deadline) => {
                    tokio::select! {
                        () = s.wake.notified() => {}
                        () = tokio::time::sleep_until(deadline) => {}
                    }
                }
                None => s.wake.notified().await,
            }
            continue;
        }
        connections.retain(|_, c| !c.pending.lock().dead);
        let (groups, held) = group_by_leader(&s, ready, &connections);
        for (address, batches) in groups {
            send_request(&s, &mut connections, &address, batches).await;
        }
        if !held.is_empty() {
            // Their partitions still have batches in flight elsewhere; try
            // again when those complete.
            {
                let mut retry = s.retry.lock();
                for b in held.into_iter().rev() {
                    retry.push_front(b);
                }
            }
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
    }
}

/// Seals batches past their linger time (all of them after a flush) and
/// takes every ready batch, retries first, each partition's in sealing order.
fn take_ready(s: &Shared) -> (Vec<ReadyBatch>, Option<Instant>, bool) {
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

/// Groups batches by their leader's address; batches of a partition that
/// has batches in flight on another connection (a dead one included: they
/// are on their way back to `retry`) are held back.
fn group_by_leader(
    s: &Shared,
    ready: Vec<ReadyBatch>,
    connections: &HashMap<String, Connection>,
) -> (Vec<(String, Vec<ReadyBatch>)>, Vec<ReadyBatch>) {
    let mut groups: Vec<(String, Vec<ReadyBatch>)> = Vec::new();
    let mut held = Vec::new();
    let in_flight = s.in_flight.lock();
    let mut held_partitions: HashSet<(Arc<str>, u32)> = HashSet::new();
    // Batches grouped in this pass count toward the per-partition limit too.
    let mut grouped: HashMap<(Arc<str>, u32), usize> = HashMap::new();
    for batch in ready {
        let key = (batch.topic.clone(), batch.partition);
        let leader = s.client.leader_address(&batch.topic, batch.partition);
        let current = connections.get(&leader).map(|c| c.id);
        let (elsewhere, sent) = in_flight
            .get(&key)
            .map_or((false, 0), |&(id, n)| (n > 0 && Some(id) != current, n));
        let now = grouped.entry(key.clone()).or_default();
        if elsewhere || sent + *now >= PARTITION_IN_FLIGHT_MAX || held_partitions.contains(&key) {
            held_partitions.insert(key);
            held.push(batch);
            continue;
        }
        *now += 1;
        match groups.iter_mut().find(|(a, _)| *a == leader) {
            Some((_, v)) => v.push(batch),
            None => groups.push((leader, vec![batch])),
        }
    }
    (groups, held)
}

/// Sends `batches` in as few requests as the request size limit allows.
async fn send_request(
    s: &Arc<Shared>,
    connections: &mut HashMap<String, Connection>,
    address: &str,
    mut batches: Vec<ReadyBatch>,
) {
    while !batches.is_empty() {
        // Several moderate requests keep the broker busy while the next
        // one travels; one huge request would leave nothing in flight.
        let request_max = REQUEST_BYTES_TARGET.min(s.client.config().request_bytes_max);
        let mut size = 0usize;
        let take = batches
            .iter()
            .take_while(|b| {
                size += b.bytes.len() + 64;
                size <= request_max
            })
            .count()
            .max(1);
        let rest = batches.split_off(take);
        let chunk = std::mem::replace(&mut batches, rest);
        if let Err(unsent) = send_one(s, connections, address, chunk).await {
            // The connection failed: keep this request and everything after it, in order.
            requeue(
                s,
                unsent.into_iter().chain(batches.drain(..)).collect(),
                None,
            );
            return;
        }
    }
}

/// Sends one request; gives the batches back if it could not be sent.
async fn send_one(
    s: &Arc<Shared>,
    connections: &mut HashMap<String, Connection>,
    address: &str,
    batches: Vec<ReadyBatch>,
) -> Result<(), Vec<ReadyBatch>> {
    if !connections.contains_key(address) {
        match open_connection(s, address).await {
            Ok(c) => {
                connections.insert(address.to_string(), c);
            }
            Err(e) => {
                tracing::debug!(%address, error = %e, "cannot open a produce stream");
                return Err(batches);
            }
        }
    }
    let Some(conn) = connections.get(address) else {
        return Err(batches);
    };
    let Ok(permit) = conn.slots.clone().acquire_owned().await else {
        return Err(batches);
    };
    let correlation_id = s.correlation.fetch_add(1, Ordering::Relaxed);
    let request = build_request(correlation_id, s.config.acks, &batches);
    {
        let mut pending = conn.pending.lock();
        if pending.dead {
            return Err(batches);
        }
        let mut in_flight = s.in_flight.lock();
        for b in &batches {
            let entry = in_flight
                .entry((b.topic.clone(), b.partition))
                .or_insert((conn.id, 0));
            entry.0 = conn.id;
            entry.1 += 1;
        }
        drop(in_flight);
        pending.requests.push_back((
            correlation_id,
            InFlight {
                batches,
                _permit: permit,
            },
        ));
    }
    if conn.tx.send(request).await.is_err() {
        // The stream is gone; its reader requeues whatever was pending.
        kill(s, &conn.pending, Vec::new(), None);
    }
    Ok(())
}

fn build_request(correlation_id: u64, acks: Acks, batches: &[ReadyBatch]) -> ProduceRequest {
    let mut topics: Vec<TopicProduceData> = Vec::new();
    for b in batches {
        let data = PartitionProduceData {
            partition: b.partition,
            batch: b.bytes.clone(),
            records: Vec::new(),
        };
        match topics.iter_mut().find(|t| *t.topic == *b.topic) {
            Some(t) => t.partitions.push(data),
            None => topics.push(TopicProduceData {
                topic: b.topic.to_string(),
                partitions: vec![data],
                records: Vec::new(),
            }),
        }
    }
    ProduceRequest {
        correlation_id,
        acks: acks as i32,
        timeout_ms: 0,
        topics,
    }
}

async fn open_connection(s: &Arc<Shared>, address: &str) -> Result<Connection> {
    // Its own connection: acknowledgements must never queue behind
    // another component's unread data (see `Client::dedicated`).
    let channel = s.client.dedicated(address)?;
    let (tx, rx) = mpsc::channel(s.config.requests_in_flight_max);
    let mut client = s.client.produce_client(channel);
    let responses = client
        .produce_stream(ReceiverStream::new(rx))
        .await?
        .into_inner();
    let pending: Arc<Mutex<Pending>> = Arc::default();
    tokio::spawn(receive(s.clone(), responses, pending.clone()));
    Ok(Connection {
        id: s.connection_ids.fetch_add(1, Ordering::Relaxed),
        tx,
        pending,
        slots: Arc::new(Semaphore::new(s.config.requests_in_flight_max)),
    })
}

/// Matches responses (which arrive in request order) to their batches.
async fn receive(
    s: Arc<Shared>,
    mut responses: tonic::Streaming<ProduceResponse>,
    pending: Arc<Mutex<Pending>>,
) {
    loop {
        let response = match responses.message().await {
            Ok(Some(r)) => r,
            Ok(None) => {
                let e = unavailable("the broker closed the produce stream");
                kill(&s, &pending, Vec::new(), Some(e));
                return;
            }
            Err(status) => {
                kill(&s, &pending, Vec::new(), Some(ClientError::from(status)));
                return;
            }
        };
        let Some((id, f)) = pending.lock().requests.pop_front() else {
            continue;
        };
        if id != response.correlation_id {
            // Responses come in request order; anything else is a broker bug,
            // and guessing which batches it answers could lose records.
            let e = unavailable(&format!(
                "the broker answered request {} when {id} was next; resending on a new stream",
                response.correlation_id
            ));
            kill(&s, &pending, f.batches, Some(e));
            return;
        }
        match &response.error {
            None => {
                release(&s, &f.batches);
                complete(&s, f, response);
            }
            Some(e) => {
                let e = ClientError::partition(e);
                let mut resend = Vec::new();
                if e.is_retriable() {
                    resend = f.batches;
                } else {
                    release(&s, &f.batches);
                    for b in f.batches {
                        fail(&s, b, e.clone());
                    }
                }
                // The broker wrote nothing after this request: resend the rest.
                kill(&s, &pending, resend, Some(e));
                return;
            }
        }
    }
}

/// Marks a connection dead and requeues `first` (batches of its answered
/// request that must be resent) and everything still pending on it. They
/// are in `retry` before their in-flight counts drop, so the sender never
/// sees a partition as free while one of its batches is on its way back.
fn kill(s: &Shared, pending: &Mutex<Pending>, first: Vec<ReadyBatch>, cause: Option<ClientError>) {
    let mut retry = s.retry.lock();
    let drained: Vec<ReadyBatch> = {
        let mut p = pending.lock();
        p.dead = true;
        let rest = p.requests.drain(..).flat_map(|(_, f)| f.batches);
        first.into_iter().chain(rest).collect()
    };
    // The counts must drop for exactly the batches drained, before
    // `requeue_into` fails the expired ones.
    release(s, &drained);
    requeue_into(s, &mut retry, drained, cause);
}

/// Forgets batches' in-flight counts.
fn release(s: &Shared, batches: &[ReadyBatch]) {
    let mut in_flight = s.in_flight.lock();
    for b in batches {
        let key = (b.topic.clone(), b.partition);
        if let Some(entry) = in_flight.get_mut(&key) {
            entry.1 = entry.1.saturating_sub(1);
            if entry.1 == 0 {
                in_flight.remove(&key);
            }
        }
    }
}

/// Puts batches back to be sent again (in order, after a backoff and a
/// metadata refresh), or fails those past their delivery timeout.
fn requeue(s: &Shared, batches: Vec<ReadyBatch>, cause: Option<ClientError>) {
    let mut retry = s.retry.lock();
    requeue_into(s, &mut retry, batches, cause);
}

fn requeue_into(
    s: &Shared,
    retry: &mut VecDeque<ReadyBatch>,
    batches: Vec<ReadyBatch>,
    cause: Option<ClientError>,
) {
    if batches.is_empty() {
        return;
    }
    let timeout = Duration::from_millis(s.config.delivery_timeout_ms);
    let cause = cause.unwrap_or_else(|| unavailable("the connection to the broker failed"));
    let mut attempts = 0;
    for mut b in batches {
        if b.created.elapsed() >= timeout {
            let e = ClientError::Invalid(format!(
                "not acknowledged within delivery_timeout_ms ({} ms); last error: {cause}",
                s.config.delivery_timeout_ms
            ));
            fail(s, b, e);
            continue;
        }
        b.attempts += 1;
        attempts = attempts.max(b.attempts);
        retry.push_back(b);
    }
    let shift = attempts.saturating_sub(1).min(16);
    let backoff = (s.config.retry_backoff_ms << shift).min(s.config.retry_backoff_ms_max);
    *s.backoff_until.lock() = Some(Instant::now() + Duration::from_millis(backoff));
    s.refresh.store(true, Ordering::Release);
    s.wake.notify_one();
    tracing::debug!(%cause, backoff_ms = backoff, "produce failed; retrying");
}

fn unavailable(message: &str) -> ClientError {
    ClientError::Broker {
        code: eddy_proto::v1::ErrorCode::Unavailable,
        grpc: tonic::Code::Unavailable,
        message: message.to_string(),
    }
}

fn complete(s: &Shared, f: InFlight, response: ProduceResponse) {
    let mut results: HashMap<(String, u32), VecDeque<Option<u64>>> = HashMap::new();
    for t in response.topics {
        for p in t.partitions {
            results
                .entry((t.topic.clone(), p.partition))
                .or_default()
                // A duplicate too old for the broker to remember where it
                // landed: written once, offsets unknown.
                .push_back((!p.offsets_unknown).then_some(p.base_offset));
        }
    }
    for b in f.batches {
        let key = (b.topic.to_string(), b.partition);
        let base = results.get_mut(&key).and_then(|q| q.pop_front()).flatten();
        finish(s, b, Ok(base));
    }
}

fn fail(s: &Shared, b: ReadyBatch, e: ClientError) {
    s.first_error.lock().get_or_insert_with(|| e.clone());
    finish(s, b, Err(e));
}

fn finish(s: &Shared, b: ReadyBatch, result: Result<Option<u64>>) {
    b.state.complete(result);
    s.buffer.add_permits(b.permits as usize);
    let before = s.pending.fetch_sub(u64::from(b.records), Ordering::AcqRel);
    if before == u64::from(b.records) {
        s.idle.notify_waiters();
    }
}
