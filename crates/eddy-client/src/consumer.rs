//! The consumer: follows each assigned partition with a `Subscribe` stream,
//! so the broker reads and sends the next records while the caller works on
//! the last ones. Memory stays bounded: each stream's messages are capped,
//! the consumer buffers a few messages in all, and HTTP/2 flow control
//! stops a broker when the consumer falls behind.

use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use bytes::Bytes;
use eddy_log::{BATCH_BYTES_LIMIT, RecordIter, batches};
use eddy_proto::AuthChannel as Channel;
use eddy_proto::v1::{
    ErrorCode, ListOffsetsPartition, ListOffsetsRequest, ListOffsetsTopic, OffsetSpec,
    SubscribeRequest, SubscribeResponse, offset_spec,
};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use crate::client::Client;
use crate::error::{ClientError, Result};
use crate::group::{GroupConfig, Membership, OffsetCommit, RebalanceListener, TopicPartition};

/// Where to start reading a partition.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Start {
    Earliest,
    /// Only records produced from now on.
    Latest,
    Offset(u64),
    /// The first record at or after this time (ms since the Unix epoch).
    Timestamp(i64),
}

impl Start {
    fn spec(self) -> OffsetSpec {
        let spec = match self {
            Start::Earliest => offset_spec::Spec::Earliest(true),
            Start::Latest => offset_spec::Spec::Latest(true),
            Start::Offset(o) => offset_spec::Spec::Offset(o),
            Start::Timestamp(ts) => offset_spec::Spec::TimestampMs(ts),
        };
        OffsetSpec { spec: Some(spec) }
    }
}

/// Consumer settings.
#[derive(Debug, Clone)]
pub struct ConsumerConfig {
    /// About the most bytes buffered across all partition streams (each
    /// stream's messages get an equal share, at least 64 KiB), and the most
    /// one `poll` returns.
    pub fetch_bytes_max: u32,
    /// Most bytes per partition per message.
    pub partition_bytes_max: u32,
    /// Where to go when a position falls outside the log (retention
    /// deleted it): `Some(Start::Earliest)`, `Some(Start::Latest)`, or
    /// `None` to fail.
    pub auto_offset_reset: Option<Start>,
}

impl Default for ConsumerConfig {
    fn default() -> Self {
        ConsumerConfig {
            fetch_bytes_max: 64 << 20,
            partition_bytes_max: 8 << 20,
            auto_offset_reset: Some(Start::Earliest),
        }
    }
}

/// Batches fetched from one partition.
#[derive(Debug, Clone)]
pub struct Fetched {
    pub topic: Arc<str>,
    pub partition: u32,
    /// Whole stored batches (Kafka v2); may start before `from`.
    pub bytes: Bytes,
    /// The first offset the caller had not seen.
    pub from: u64,
    /// The offset after the last record here.
    pub next_offset: u64,
    pub high_watermark: u64,
}

/// A record read from a partition, owning its bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConsumerRecord {
    pub topic: Arc<str>,
    pub partition: u32,
    pub offset: u64,
    pub timestamp_ms: i64,
    pub key: Option<Bytes>,
    pub value: Option<Bytes>,
    pub headers: Vec<(String, Bytes)>,
}

impl Fetched {
    /// The records from `from` on, in offset order (values share the
    /// fetched buffer; nothing is copied).
    pub fn records(&self) -> Result<Vec<ConsumerRecord>> {
        let mut out = Vec::new();
        let bad = |e: eddy_log::BatchError| {
            ClientError::Invalid(format!("fetched batch is damaged: {e}"))
        };
        for batch in batches(&self.bytes, BATCH_BYTES_LIMIT) {
            let batch = batch.map_err(bad)?;
            // The fetched bytes themselves, or the records decompressed.
            let section = batch.records_bytes(&self.bytes).map_err(bad)?;
            for record in RecordIter::new(batch.header, &section) {
                let r = record.map_err(bad)?;
                if r.offset.0 < self.from {
                    continue;
                }
                let slice = |b: &[u8]| section.slice_ref(b);
                out.push(ConsumerRecord {
                    topic: self.topic.clone(),
                    partition: self.partition,
                    offset: r.offset.0,
                    timestamp_ms: r.timestamp.0,
                    key: r.key.map(slice),
                    value: r.value.map(slice),
                    headers: r
                        .headers()
                        .map(|(k, v)| (k.to_string(), slice(v)))
                        .collect(),
                });
            }
        }
        Ok(out)
    }

    /// Number of records from `from` on, without decoding them.
    pub fn record_count(&self) -> u64 {
        let mut n = 0;
        for batch in batches(&self.bytes, BATCH_BYTES_LIMIT).flatten() {
            let h = batch.header;
            let first = h.base_offset.0.max(self.from);
            if h.last_offset().0 >= first {
                // Exact unless compaction left gaps in this batch.
                n += (h.last_offset().0 - first + 1).min(u64::from(h.record_count));
            }
        }
        n
    }
}

type Key = (Arc<str>, u32);

/// Reads partitions assigned by hand, or those a consumer group gives it;
/// see the module docs.
pub struct Consumer {
    client: Client,
    config: ConsumerConfig,
    positions: HashMap<Key, u64>,
    /// One Subscribe stream per assigned partition, feeding `events`.
    streams: HashMap<Key, PartitionStream>,
    /// This consumer's own connection per broker, for its streams (control
    /// calls use the client's shared one; see `Client::dedicated`).
    connections: HashMap<String, Channel>,
    stream_epoch: u64,
    events_tx: mpsc::Sender<StreamEvent>,
    events: mpsc::Receiver<StreamEvent>,
    membership: Option<Membership>,
    listener: Option<Box<dyn RebalanceListener>>,
    last_auto_commit: Instant,
}

impl std::fmt::Debug for Consumer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Consumer")
            .field("config", &self.config)
            .field("positions", &self.positions)
            .field("membership", &self.membership)
            .finish()
    }
}

impl Consumer {
    pub fn new(client: Client, config: ConsumerConfig) -> Consumer {
        let (events_tx, events) = mpsc::channel(EVENTS_MAX);
        Consumer {
            client,
            config,
            positions: HashMap::new(),
            streams: HashMap::new(),
            connections: HashMap::new(),
            stream_epoch: 0,
            events_tx,
            events,
            membership: None,
            listener: None,
            last_auto_commit: Instant::now(),
        }
    }

    /// Joins consumer group `group.group_id` reading `topics`; partitions
    /// are assigned by the group (at the next `poll`). Positions start at
    /// the group's committed offsets, or at `auto_offset_reset` for
    /// partitions without a commit.
    pub async fn subscribe(&mut self, group: GroupConfig, topics: &[&str]) -> Result<()> {
        for t in topics {
            self.client.partition_count(t).await?;
        }
        let topics = topics.iter().map(|t| t.to_string()).collect();
        self.membership = Some(Membership::new(&self.client, group, topics).await?);
        Ok(())
    }

    /// Called when the group moves partitions to or from this consumer.
    pub fn set_rebalance_listener(&mut self, listener: Box<dyn RebalanceListener>) {
        self.listener = Some(listener);
    }

    /// The group this consumer reads as a member of, if any.
    pub fn group_id(&self) -> Option<String> {
        self.membership.as_ref().map(|m| m.config.group_id.clone())
    }

    /// The group generation this member is in (`None` without a group).
    pub fn generation(&self) -> Option<i32> {
        self.membership.as_ref().map(|m| m.generation)
    }

    /// Commits the current positions of every assigned partition.
    pub async fn commit_sync(&mut self) -> Result<()> {
        let offsets = self.position_commits(None);
        self.commit_offsets(offsets).await
    }

    /// Commits the current positions in the background; a failure is logged
    /// (the next commit covers the same partitions).
    pub fn commit_async(&mut self) {
        let Some(m) = &self.membership else { return };
        let offsets = self.position_commits(None);
        let commit = m.commit_request(offsets);
        tokio::spawn(async move {
            if let Err(e) = commit.await {
                tracing::warn!(error = %e, "background commit failed");
            }
        });
    }

    /// Commits these offsets (with their metadata) as a group member.
    pub async fn commit_offsets(&mut self, offsets: Vec<OffsetCommit>) -> Result<()> {
        let Some(m) = &self.membership else {
            return Err(ClientError::Invalid(
                "commit needs a group: call subscribe first".into(),
            ));
        };
        m.commit(offsets).await
    }

    /// Commits (with auto-commit) and leaves the group at once, so its
    /// partitions move without waiting for the session timeout.
    pub async fn close(mut self) -> Result<()> {
        self.close_streams();
        let auto = self
            .membership
            .as_ref()
            .is_some_and(|m| m.config.auto_commit);
        if auto {
            self.commit_sync().await?;
        }
        if let Some(m) = self.membership.as_mut() {
            m.leave().await?;
        }
        Ok(())
    }

    fn position_commits(&self, only: Option<&BTreeSet<TopicPartition>>) -> Vec<OffsetCommit> {
        self.positions
            .iter()
            .filter(|(k, _)| only.is_none_or(|o| o.contains(*k)))
            .map(|((topic, partition), &offset)| OffsetCommit {
                topic: topic.clone(),
                partition: *partition,
                offset,
                metadata: Bytes::new(),
            })
            .collect()
    }

    /// Rejoins when the group asks, hands partitions over (committing first),
    /// and auto-commits when due.
    async fn maintain_group(&mut self) -> Result<()> {
        let Some(m) = &self.membership else {
            return Ok(());
        };
        if m.need_rejoin.load(Ordering::Acquire) {
            self.rebalance().await?;
        }
        let Some(m) = &self.membership else {
            return Ok(());
        };
        if m.config.auto_commit
            && self.last_auto_commit.elapsed()
                >= Duration::from_millis(m.config.auto_commit_interval_ms)
        {
            self.last_auto_commit = Instant::now();
            self.commit_async();
        }
        Ok(())
    }

    async fn rebalance(&mut self) -> Result<()> {
        let Some(mut m) = self.membership.take() else {
            return Ok(());
        };
        let result = self.rebalance_with(&mut m).await;
        self.membership = Some(m);
        result
    }

    async fn rebalance_with(&mut self, m: &mut Membership) -> Result<()> {
        let old = m.assigned.clone();
        if m.eager() && !old.is_empty() {
            self.revoke(m, &old).await;
        }
        let joined = m.join().await?;
        if joined.lost && !m.assigned.is_empty() {
            // Another member may own them already: forget them, commit nothing.
            let lost: Vec<TopicPartition> = std::mem::take(&mut m.assigned).into_iter().collect();
            for tp in &lost {
                self.drop_position(tp);
            }
            if let Some(l) = self.listener.as_mut() {
                l.on_lost(&lost);
            }
        }
        let new = joined.assignment;
        let revoked: BTreeSet<TopicPartition> = m.assigned.difference(&new).cloned().collect();
        if !revoked.is_empty() {
            self.revoke(m, &revoked).await;
        }
        let added: BTreeSet<TopicPartition> = new.difference(&m.assigned).cloned().collect();
        m.assigned = new;
        if !added.is_empty() {
            let committed = m.committed(&added).await?;
            for tp in &added {
                let offset = match committed
                    .iter()
                    .find(|c| c.topic == tp.0 && c.partition == tp.1)
                {
                    Some(c) => c.offset,
                    None => {
                        let start = self.config.auto_offset_reset.unwrap_or(Start::Latest);
                        self.resolve(&tp.0, tp.1, start).await?
                    }
                };
                self.set_position(tp.clone(), offset);
            }
            if let Some(l) = self.listener.as_mut() {
                l.on_assigned(&added.iter().cloned().collect::<Vec<_>>());
            }
        }
        tracing::debug!(
            generation = m.generation,
            partitions = m.assigned.len(),
            "joined group"
        );
        Ok(())
    }

    /// Gives partitions up: asks the listener what to commit, commits it
    /// (plus positions with auto-commit), and forgets their positions.
    async fn revoke(&mut self, m: &mut Membership, revoked: &BTreeSet<TopicPartition>) {
        let list: Vec<TopicPartition> = revoked.iter().cloned().collect();
        let mut commits = if m.config.auto_commit {
            self.position_commits(Some(revoked))
        } else {
            Vec::new()
        };
        if let Some(l) = self.listener.as_mut() {
            commits.extend(l.on_revoked(&list));
        }
        if let Err(e) = m.commit(commits).await {
            tracing::warn!(error = %e, "commit before revoking partitions failed; their new owner re-reads from the last commit");
        }
        for tp in revoked {
            self.drop_position(tp);
        }
        m.assigned.retain(|tp| !revoked.contains(tp));
    }

    /// Starts reading `topic`/`partition` at `start` (replacing any earlier position).
    pub async fn assign(&mut self, topic: &str, partition: u32, start: Start) -> Result<u64> {
        let offset = self.resolve(topic, partition, start).await?;
        self.set_position((Arc::from(topic), partition), offset);
        Ok(offset)
    }

    /// Moves an assigned partition's position.
    pub async fn seek(&mut self, topic: &str, partition: u32, start: Start) -> Result<u64> {
        self.assign(topic, partition, start).await
    }

    /// Stops reading a partition.
    pub fn unassign(&mut self, topic: &str, partition: u32) {
        self.drop_position(&(Arc::from(topic), partition));
    }

    /// Reads `key` from `offset` on: (re)opens its stream.
    fn set_position(&mut self, key: Key, offset: u64) {
        self.positions.insert(key.clone(), offset);
        self.open_stream(key, offset, Duration::ZERO);
    }

    fn drop_position(&mut self, key: &Key) {
        self.positions.remove(key);
        if let Some(s) = self.streams.remove(key) {
            s.task.abort();
        }
    }

    /// Starts a Subscribe stream for `key` at `offset` after `delay`; any
    /// earlier stream for it is closed and its undelivered messages are
    /// ignored (they carry an older epoch).
    fn open_stream(&mut self, key: Key, offset: u64, delay: Duration) {
        if let Some(old) = self.streams.remove(&key) {
            old.task.abort();
        }
        self.stream_epoch += 1;
        let epoch = self.stream_epoch;
        // Keep what all streams may hold at once near fetch_bytes_max.
        let share = self.config.fetch_bytes_max as usize / self.positions.len().max(1);
        let max_bytes = share.clamp(
            STREAM_BYTES_MIN,
            (self.config.partition_bytes_max as usize).max(STREAM_BYTES_MIN),
        );
        let address = self.client.leader_address(&key.0, key.1);
        let channel = match self.connections.get(&address) {
            Some(c) => Ok(c.clone()),
            None => self.client.dedicated(&address).inspect(|c| {
                self.connections.insert(address.clone(), c.clone());
            }),
        };
        let spec = StreamSpec {
            key: key.clone(),
            offset,
            max_bytes: max_bytes as u32,
            epoch,
            delay,
        };
        let task = tokio::spawn(run_stream(
            self.client.clone(),
            channel,
            spec,
            self.events_tx.clone(),
        ));
        self.streams.insert(key, PartitionStream { epoch, task });
    }

    /// The next offset to be read from an assigned partition.
    pub fn position(&self, topic: &str, partition: u32) -> Option<u64> {
        self.positions
            .iter()
            .find(|((t, p), _)| &**t == topic && *p == partition)
            .map(|(_, &o)| o)
    }

    pub fn assignment(&self) -> Vec<(Arc<str>, u32)> {
        self.positions.keys().cloned().collect()
    }

    /// The offset `start` means for a partition.
    /// Asks the partition's leader, following a leader that moved
    /// (`NOT_LEADER`, a lost connection) for up to [`RESOLVE_ATTEMPTS`].
    pub async fn resolve(&self, topic: &str, partition: u32, start: Start) -> Result<u64> {
        // Know the topic's leaders before the first ask.
        self.client.partition_count(topic).await?;
        let mut backoff = Duration::from_millis(50);
        let mut attempt = 1;
        loop {
            match self.resolve_once(topic, partition, start).await {
                Err(e)
                    if (e.is_retriable() || propagating(&e, attempt))
                        && attempt < RESOLVE_ATTEMPTS =>
                {
                    tracing::debug!(error = %e, topic, partition, "asking the partition's leader again");
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(Duration::from_secs(1));
                    attempt += 1;
                    if let Err(e) = self.client.refresh_metadata(&[topic.to_string()]).await {
                        tracing::debug!(error = %e, "metadata refresh failed");
                    }
                }
                other => return other,
            }
        }
    }

    async fn resolve_once(&self, topic: &str, partition: u32, start: Start) -> Result<u64> {
        let request = ListOffsetsRequest {
            topics: vec![ListOffsetsTopic {
                topic: topic.to_string(),
                partitions: vec![ListOffsetsPartition {
                    partition,
                    spec: Some(start.spec()),
                }],
            }],
        };
        let channel = self.client.leader(topic, partition).await?;
        let mut rpc = self.client.consume_client(channel);
        let asked = rpc.list_offsets(request);
        let response = self.client.answer_within(Duration::ZERO, asked).await?;
        let result = response
            .topics
            .first()
            .and_then(|t| t.partitions.first())
            .ok_or_else(|| ClientError::Invalid("empty ListOffsets response".into()))?;
        if let Some(e) = &result.error {
            return Err(ClientError::partition(e));
        }
        Ok(result.offset)
    }

    fn close_streams(&mut self) {
        for (_, s) in self.streams.drain() {
            s.task.abort();
        }
    }

    /// Waits up to `max_wait` for records and returns what arrived, per
    /// partition, advancing the positions past it.
    pub async fn poll(&mut self, max_wait: Duration) -> Result<Vec<Fetched>> {
        self.maintain_group().await?;
        if self.positions.is_empty() {
            tokio::time::sleep(max_wait).await;
            return Ok(Vec::new());
        }
        let Ok(Some(first)) = tokio::time::timeout(max_wait, self.events.recv()).await else {
            return Ok(Vec::new());
        };
        let mut out = Vec::new();
        let mut bytes = 0usize;
        let mut next = Some(first);
        while let Some(event) = next.take() {
            bytes += self.take_event(event, &mut out).await?;
            if bytes < self.config.fetch_bytes_max as usize {
                next = self.events.try_recv().ok();
            }
        }
        Ok(out)
    }

    /// Applies one stream event; returns the bytes it delivered.
    async fn take_event(&mut self, event: StreamEvent, out: &mut Vec<Fetched>) -> Result<usize> {
        let current = self.streams.get(&event.key).map(|s| s.epoch);
        if current != Some(event.epoch) {
            return Ok(0); // from a stream since closed or re-opened
        }
        let Some(&position) = self.positions.get(&event.key) else {
            return Ok(0);
        };
        let msg = match event.item {
            Ok(msg) => msg,
            Err(e) if e.code() == ErrorCode::OffsetOutOfRange => {
                let Some(start) = self.config.auto_offset_reset else {
                    return Err(e);
                };
                let (topic, partition) = event.key.clone();
                // Past the end, the log lost what was beyond it (an unclean
                // leader election): what came before was read, so go on from
                // the end rather than read it all again.
                let end = self.resolve(&topic, partition, Start::Latest).await?;
                let offset = if position > end {
                    end
                } else {
                    self.resolve(&topic, partition, start).await?
                };
                tracing::warn!(%topic, partition, position, offset, "position out of range; reset");
                self.set_position(event.key, offset);
                return Ok(0);
            }
            Err(e) if e.is_retriable() => {
                tracing::debug!(error = %e, "partition stream failed; reopening");
                self.client
                    .refresh_metadata(&[event.key.0.to_string()])
                    .await
                    .ok();
                self.open_stream(event.key, position, STREAM_RETRY_DELAY);
                return Ok(0);
            }
            Err(e) => return Err(e),
        };
        if msg.batches.is_empty() || msg.next_offset <= position {
            return Ok(0);
        }
        let len = msg.batches.len();
        out.push(Fetched {
            topic: event.key.0.clone(),
            partition: event.key.1,
            bytes: msg.batches,
            from: position,
            next_offset: msg.next_offset,
            high_watermark: msg.high_watermark,
        });
        self.positions.insert(event.key, msg.next_offset);
        Ok(len)
    }
}

impl Drop for Consumer {
    fn drop(&mut self) {
        self.close_streams();
    }
}

/// Messages waiting in the consumer, across all its partition streams.
const EVENTS_MAX: usize = 8;
/// Smallest message a partition stream asks for.
const STREAM_BYTES_MIN: usize = 64 << 10;
/// Wait before reopening a failed partition stream.
const STREAM_RETRY_DELAY: Duration = Duration::from_millis(100);
/// Whether `e` may only mean that the broker asked has not yet applied
/// the metadata that created the topic (or its partition): brokers apply
/// the controller's changes a moment apart. Tried for the first attempts
/// only, so a topic that does not exist is reported within about 1.5 s.
fn propagating(e: &ClientError, attempt: u32) -> bool {
    attempt <= 5
        && matches!(
            e.code(),
            ErrorCode::UnknownTopic | ErrorCode::UnknownPartition
        )
}

/// Tries at resolving a position before the error is returned (about
/// 8 s of backoff: a leader election's length).
const RESOLVE_ATTEMPTS: u32 = 12;

/// A running Subscribe stream for one partition.
#[derive(Debug)]
struct PartitionStream {
    epoch: u64,
    task: JoinHandle<()>,
}

/// Which partition a stream follows, from where, and how.
#[derive(Debug)]
struct StreamSpec {
    key: Key,
    offset: u64,
    max_bytes: u32,
    epoch: u64,
    /// Wait this long first (a retry after a failure).
    delay: Duration,
}

/// What a partition stream delivered.
#[derive(Debug)]
struct StreamEvent {
    key: Key,
    epoch: u64,
    item: Result<SubscribeResponse>,
}

/// Follows one partition and forwards what arrives; ends with an error
/// event when the stream fails (the consumer decides what to do).
async fn run_stream(
    client: Client,
    channel: Result<Channel>,
    spec: StreamSpec,
    events: mpsc::Sender<StreamEvent>,
) {
    let StreamSpec {
        key,
        offset,
        max_bytes,
        epoch,
        delay,
    } = spec;
    if !delay.is_zero() {
        tokio::time::sleep(delay).await;
    }
    let send = |item| StreamEvent {
        key: key.clone(),
        epoch,
        item,
    };
    let request = SubscribeRequest {
        topic: key.0.to_string(),
        partition: key.1,
        start: Some(Start::Offset(offset).spec()),
        max_bytes,
        decode: false,
    };
    let subscribed = match channel {
        Ok(channel) => client
            .consume_client(channel)
            .subscribe(request)
            .await
            .map_err(ClientError::from),
        Err(e) => Err(e),
    };
    let mut stream = match subscribed {
        Ok(r) => r.into_inner(),
        Err(e) => {
            let _ = events.send(send(Err(e))).await;
            return;
        }
    };
    loop {
        let item = match stream.message().await {
            Ok(Some(msg)) => Ok(msg),
            Ok(None) => Err(ClientError::Broker {
                code: ErrorCode::Unavailable,
                grpc: tonic::Code::Unavailable,
                message: "the broker ended the partition stream".into(),
            }),
            Err(status) => Err(ClientError::from(status)),
        };
        let failed = item.is_err();
        if events.send(send(item)).await.is_err() || failed {
            return;
        }
    }
}
