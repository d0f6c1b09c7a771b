//! The consumer: reads assigned partitions with long-poll fetches, keeping
//! the next fetch in flight while the caller works on the last one.

use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use bytes::Bytes;
use eddy_log::{BATCH_BYTES_LIMIT, batches};
use eddy_proto::v1::{
    ErrorCode, FetchPartition, FetchRequest, FetchResponse, FetchTopic, ListOffsetsPartition,
    ListOffsetsRequest, ListOffsetsTopic, OffsetSpec, offset_spec,
};
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
    /// Most bytes per fetch response.
    pub fetch_bytes_max: u32,
    /// Most bytes per partition per fetch.
    pub partition_bytes_max: u32,
    /// The broker answers once this many bytes are ready (or the wait ends).
    pub fetch_bytes_min: u32,
    /// Longest a fetch waits at the broker.
    pub fetch_wait_ms_max: u32,
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
            fetch_bytes_min: 1,
            fetch_wait_ms_max: 500,
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
            for record in batch.records() {
                let r = record.map_err(bad)?;
                if r.offset.0 < self.from {
                    continue;
                }
                let slice = |b: &[u8]| self.bytes.slice_ref(b);
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
    prefetch: Option<JoinHandle<Result<Vec<FetchResponse>>>>,
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
        Consumer {
            client,
            config,
            positions: HashMap::new(),
            prefetch: None,
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
        self.cancel_prefetch();
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
        self.cancel_prefetch();
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
        let (new, _follow_up) = m.join().await?;
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
                self.positions.insert(tp.clone(), offset);
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
            self.positions.remove(tp);
        }
        m.assigned.retain(|tp| !revoked.contains(tp));
    }

    /// Starts reading `topic`/`partition` at `start` (replacing any earlier position).
    pub async fn assign(&mut self, topic: &str, partition: u32, start: Start) -> Result<u64> {
        let offset = self.resolve(topic, partition, start).await?;
        self.cancel_prefetch();
        self.positions.insert((Arc::from(topic), partition), offset);
        Ok(offset)
    }

    /// Moves an assigned partition's position.
    pub async fn seek(&mut self, topic: &str, partition: u32, start: Start) -> Result<u64> {
        self.assign(topic, partition, start).await
    }

    /// Stops reading a partition.
    pub fn unassign(&mut self, topic: &str, partition: u32) {
        self.cancel_prefetch();
        self.positions
            .retain(|(t, p), _| !(&**t == topic && *p == partition));
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
    pub async fn resolve(&self, topic: &str, partition: u32, start: Start) -> Result<u64> {
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
        let response = self
            .client
            .consume_client(channel)
            .list_offsets(request)
            .await?
            .into_inner();
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

    fn cancel_prefetch(&mut self) {
        if let Some(h) = self.prefetch.take() {
            h.abort();
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
        let responses = match self.prefetch.take() {
            Some(h) => h
                .await
                .map_err(|e| ClientError::Invalid(format!("fetch task failed: {e}")))?,
            None => self.start_fetch(max_wait).await,
        };
        let responses = match responses {
            Ok(r) => r,
            Err(e) => return Err(e),
        };
        let fetched = self.apply(responses).await?;
        // Keep the next fetch in flight while the caller processes this one.
        self.prefetch = Some(tokio::spawn(self.fetch_future(max_wait)));
        Ok(fetched)
    }

    async fn start_fetch(&self, max_wait: Duration) -> Result<Vec<FetchResponse>> {
        self.fetch_future(max_wait).await
    }

    /// One fetch per leader for the current positions, as an owned future.
    fn fetch_future(
        &self,
        max_wait: Duration,
    ) -> impl std::future::Future<Output = Result<Vec<FetchResponse>>> + Send + 'static {
        let client = self.client.clone();
        let config = self.config.clone();
        let mut by_leader: HashMap<String, Vec<(Key, u64)>> = HashMap::new();
        for (key, &offset) in &self.positions {
            let address = client.leader_address(&key.0, key.1);
            by_leader
                .entry(address)
                .or_default()
                .push((key.clone(), offset));
        }
        async move {
            let mut responses = Vec::new();
            for (address, parts) in by_leader {
                let channel = client.channel_to(&address).await?;
                let request = fetch_request(&config, &parts, max_wait);
                responses.push(
                    client
                        .consume_client(channel)
                        .fetch(request)
                        .await?
                        .into_inner(),
                );
            }
            Ok(responses)
        }
    }

    /// Advances positions past what was fetched; handles out-of-range positions.
    async fn apply(&mut self, responses: Vec<FetchResponse>) -> Result<Vec<Fetched>> {
        let mut out = Vec::new();
        let mut reset = Vec::new();
        for response in responses {
            for t in response.topics {
                let topic: Arc<str> = Arc::from(t.topic.as_str());
                for p in t.partitions {
                    let key = (topic.clone(), p.partition);
                    let Some(position) = self.positions.get_mut(&key) else {
                        continue;
                    };
                    if let Some(e) = &p.error {
                        if e.code == ErrorCode::OffsetOutOfRange as i32 {
                            reset.push((key, ClientError::partition(e)));
                            continue;
                        }
                        return Err(ClientError::partition(e));
                    }
                    if p.batches.is_empty() || p.next_offset <= *position {
                        continue;
                    }
                    out.push(Fetched {
                        topic: topic.clone(),
                        partition: p.partition,
                        bytes: p.batches,
                        from: *position,
                        next_offset: p.next_offset,
                        high_watermark: p.high_watermark,
                    });
                    *position = p.next_offset;
                }
            }
        }
        for ((topic, partition), e) in reset {
            let Some(start) = self.config.auto_offset_reset else {
                return Err(e);
            };
            let offset = self.resolve(&topic, partition, start).await?;
            tracing::warn!(%topic, partition, offset, "position out of range; reset");
            self.positions.insert((topic, partition), offset);
        }
        Ok(out)
    }
}

impl Drop for Consumer {
    fn drop(&mut self) {
        self.cancel_prefetch();
    }
}

fn fetch_request(
    config: &ConsumerConfig,
    parts: &[(Key, u64)],
    max_wait: Duration,
) -> FetchRequest {
    let mut topics: Vec<FetchTopic> = Vec::new();
    for ((topic, partition), offset) in parts {
        let p = FetchPartition {
            partition: *partition,
            offset: *offset,
            max_bytes: config.partition_bytes_max,
        };
        match topics.iter_mut().find(|t| *t.topic == **topic) {
            Some(t) => t.partitions.push(p),
            None => topics.push(FetchTopic {
                topic: topic.to_string(),
                partitions: vec![p],
            }),
        }
    }
    FetchRequest {
        max_wait_ms: (max_wait.as_millis() as u32).min(config.fetch_wait_ms_max),
        min_bytes: config.fetch_bytes_min,
        max_bytes: config.fetch_bytes_max,
        topics,
        decode: false,
    }
}
