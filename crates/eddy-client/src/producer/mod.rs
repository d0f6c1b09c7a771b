//! The producer: records are encoded straight into per-partition batches
//! (Kafka v2, the broker writes them as they are), sealed when full or when
//! `linger_ms` has passed, and sent over one pipelined `ProduceStream` per
//! broker.
//!
//! Memory is bounded: `send` waits for room when `buffer_bytes_max` bytes
//! are buffered or in flight (backpressure), and each connection has at most
//! `requests_in_flight_max` requests outstanding.
//!
//! This module is the public face and the state the two halves share;
//! `accumulator.rs` batches records, `sender.rs` sends batches.

mod accumulator;
mod renewal;
mod sender;

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use bytes::Bytes;
use eddy_log::{Compression, ProducerEpoch, ProducerId, ProducerStamp, Sequence};
use eddy_proto::v1::{Acks, InitProducerIdRequest};
use parking_lot::Mutex;
use tokio::sync::{Notify, Semaphore};
use tokio::time::Instant;

use self::accumulator::{Accumulator, PartitionKey, ReadyBatch, append_group};
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
    /// How long a sent request may wait for its answer before the stream
    /// it went on is given up and its batches are sent again on a new one
    /// (idempotence makes that safe). Longer than the broker's wait for
    /// `acks=all` replication (30 s by default), so a slow ISR is not
    /// mistaken for a lost answer. Opening a stream is bounded by it too.
    /// (Metadata and producer ids, which any broker answers, are bounded
    /// by the client's own `request_timeout_ms`.)
    pub request_timeout_ms: u64,
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
    /// The codec each batch's records are compressed with (Kafka's
    /// `compression.type`); every Eddy reader and Kafka consumer reads
    /// them. Batches are compressed as they are sealed.
    pub compression: Compression,
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
            request_timeout_ms: 40_000,
            retry_backoff_ms: 100,
            retry_backoff_ms_max: 1_000,
            idempotence: true,
            stable_name: None,
            compression: Compression::None,
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

/// A producer id from any broker that answers (the bootstrap broker may
/// have died): the one kept for `stable_name`, or a fresh one if empty.
async fn ask_producer_id(s: &Shared, stable_name: String) -> Result<ProducerStamp> {
    let request = InitProducerIdRequest { stable_name };
    let r = s
        .client
        .on_any_broker(|channel| {
            let request = request.clone();
            let mut client = s.client.produce_client(channel);
            async move { client.init_producer_id(request).await }
        })
        .await?;
    Ok(ProducerStamp {
        producer_id: ProducerId(r.producer_id),
        producer_epoch: ProducerEpoch(r.producer_epoch as i16),
        base_sequence: Sequence::NONE,
    })
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
    /// The first failure since the last flush.
    unflushed_error: Mutex<Option<ClientError>>,
    /// A batch failed for good: the broker's view of this producer's
    /// sequences is in doubt, so it takes a new identity before sending
    /// more (see `sender::renew_identity`).
    renew: AtomicBool,
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
    /// What the sender task is doing (see [`Producer::diagnosis`]).
    sender_step: Mutex<&'static str>,
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
            unflushed_error: Mutex::new(None),
            renew: AtomicBool::new(false),
            correlation: AtomicU64::new(0),
            retry: Mutex::new(VecDeque::new()),
            backoff_until: Mutex::new(None),
            refresh: AtomicBool::new(false),
            in_flight: Mutex::new(HashMap::new()),
            connection_ids: AtomicU64::new(0),
            identity: tokio::sync::OnceCell::new(),
            sender_step: Mutex::new("starting"),
        });
        tokio::spawn(sender::sender(shared.clone()));
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
                retrying(&s.config, || {
                    ask_producer_id(s, s.config.stable_name.clone().unwrap_or_default())
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

    /// The first failure of a record sent by this producer, if any. An
    /// idempotent producer goes on with a new identity after one (so later
    /// records land, in order), but what failed is not written again.
    pub fn error(&self) -> Option<ClientError> {
        self.shared.first_error.lock().clone()
    }

    /// The producer's id and epoch, once idempotence has started (a new
    /// id after a batch failed for good, without a stable name).
    pub fn identity(&self) -> Option<(i64, i16)> {
        self.shared
            .acc
            .lock()
            .identity
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
    /// far is acknowledged or failed. Fails with the first failure since
    /// the previous flush (each record's own outcome is in its ticket).
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
        match s.unflushed_error.lock().take() {
            Some(e) => Err(e),
            None => Ok(()),
        }
    }

    /// What the producer holds and what its sender is doing, in one line:
    /// for a program that finds a flush taking long to say why.
    pub fn diagnosis(&self) -> String {
        let s = &self.shared;
        let in_flight: Vec<String> = s
            .in_flight
            .lock()
            .iter()
            .map(|((t, p), (conn, n))| format!("{t}-{p}: {n} on stream {conn}"))
            .collect();
        let backoff = s
            .backoff_until
            .lock()
            .map(|u| u.saturating_duration_since(Instant::now()));
        format!(
            "{} records unfinished, {} batches to resend, in flight [{}], new id wanted: {}, backoff {:?}; sender: {}",
            s.pending.load(Ordering::Acquire),
            s.retry.lock().len(),
            in_flight.join(", "),
            s.renew.load(Ordering::Acquire),
            backoff,
            *s.sender_step.lock()
        )
    }

    /// Flushes and stops the producer.
    pub async fn close(self) -> Result<()> {
        let result = self.flush().await;
        self.shared.acc.lock().closed = true;
        self.shared.wake.notify_one();
        result
    }
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
