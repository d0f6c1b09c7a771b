//! Reading: long-poll fetch, streaming subscribe, offset lookups.
//!
//! Stored batches go out as they are on disk (`Bytes` from one positioned
//! read); decoding them is the protocol layer's business.

use std::ops::ControlFlow;
use std::sync::Arc;

use eddy_log::{LeaderEpoch, Offset};
use tokio::sync::{mpsc, watch};
use tokio::time::Instant;

use crate::api::{
    Chunk, FetchRequest, FetchResponse, Fetched, FetchedTopic, ListedOffset, ListedTopic,
    OffsetsRequest, SubscribeRequest, TopicPartition,
};
use crate::broker::{Broker, blocking};
use crate::error::BrokerError;
use crate::partition::{Partition, StartAt};

/// Default for a whole fetch response when the request gives no limit.
const FETCH_BYTES_DEFAULT: usize = 50 << 20;

#[derive(Clone)]
struct Target {
    topic_index: usize,
    partition: Arc<Partition>,
    offset: Offset,
    max_bytes: usize,
}

impl Broker {
    /// Long-poll fetch: answers once `min_bytes` are there, a partition
    /// fails, or `max_wait` (capped by `fetch_wait_ms_max`) has passed.
    pub async fn fetch(self: &Arc<Self>, req: FetchRequest) -> Result<FetchResponse, BrokerError> {
        let limits = &self.config.limits;
        let mut targets = Vec::new();
        for (topic_index, t) in req.topics.iter().enumerate() {
            let topic = self.topics.get(&t.topic)?;
            for p in &t.partitions {
                targets.push(Target {
                    topic_index,
                    partition: topic.partition(p.partition)?.clone(),
                    offset: p.offset,
                    max_bytes: p.max_bytes.unwrap_or(limits.fetch_partition_bytes_default),
                });
            }
        }
        let total_max = req
            .max_bytes
            .unwrap_or(FETCH_BYTES_DEFAULT)
            .min(limits.fetch_bytes_max);
        let wait = req
            .max_wait
            .min(std::time::Duration::from_millis(limits.fetch_wait_ms_max));
        let deadline = Instant::now() + wait;
        let mut watchers: Vec<watch::Receiver<Offset>> = targets
            .iter()
            .map(|t| t.partition.watch_high_watermark())
            .collect();
        let mut shutdown = self.shutdown_signal();
        let names: Vec<String> = req.topics.iter().map(|t| t.topic.clone()).collect();
        loop {
            self.check_lease()?;
            for w in &mut watchers {
                w.borrow_and_update();
            }
            let (targets_now, names_now) = (targets.clone(), names.clone());
            let (response, bytes) =
                blocking(move || Ok(read_all(&targets_now, names_now, total_max))).await?;
            // A partition error (such as an offset out of range) will not go
            // away by waiting: answer it at once.
            let failed = response
                .topics
                .iter()
                .flat_map(|t| &t.partitions)
                .any(|p| p.error.is_some());
            if failed || bytes >= req.min_bytes || Instant::now() >= deadline || *shutdown.borrow()
            {
                return Ok(response);
            }
            tokio::select! {
                gone = any_changed(&mut watchers) => if gone { return Ok(response) },
                () = tokio::time::sleep_until(deadline) => {}
                _ = shutdown.changed() => {}
            }
        }
    }

    /// Starts following one partition; the stream ends when the client goes
    /// away, the topic is deleted or the broker shuts down. `shape` turns
    /// each chunk read (or the error that ends the stream) into the
    /// protocol's message, in the same task; it breaks to end the stream
    /// after that message.
    pub async fn subscribe<T: Send + 'static>(
        self: &Arc<Self>,
        req: SubscribeRequest,
        mut shape: impl FnMut(Result<Chunk, BrokerError>) -> ControlFlow<T, T> + Send + 'static,
    ) -> Result<mpsc::Receiver<T>, BrokerError> {
        let permit = self.subscription_permits.clone().try_acquire_owned().map_err(|_| {
            BrokerError::LimitExceeded(format!(
                "this broker already serves {} subscriptions (subscriptions_max); close some or use Fetch",
                self.config.limits.subscriptions_max
            ))
        })?;
        let topic = self.topics.get(&req.topic)?;
        let partition = topic.partition(req.partition)?.clone();
        let start = req.start;
        let p = partition.clone();
        self.check_lease()?;
        let mut offset = blocking(move || p.resolve(start)).await?;
        let max_bytes = req
            .max_bytes
            .map_or(self.config.limits.fetch_partition_bytes_default, |n| {
                n.min(self.config.limits.fetch_bytes_max)
            });
        let (tx, rx) = mpsc::channel(self.config.limits.subscription_buffer_max);
        let mut shutdown = self.shutdown_signal();
        let broker = self.clone();
        tokio::spawn(async move {
            let _permit = permit;
            let mut hw = partition.watch_high_watermark();
            loop {
                hw.borrow_and_update();
                let p = partition.clone();
                let read = match broker.check_lease() {
                    Ok(()) => blocking(move || p.read(offset, max_bytes)).await,
                    Err(e) => Err(e),
                };
                let read = match read {
                    Ok(r) => r,
                    Err(e) => {
                        let (ControlFlow::Break(message) | ControlFlow::Continue(message)) =
                            shape(Err(e));
                        let _ = tx.send(message).await;
                        return;
                    }
                };
                if read.bytes.is_empty() {
                    tokio::select! {
                        changed = hw.changed() => if changed.is_err() { return },
                        _ = shutdown.changed() => return,
                        () = tx.closed() => return,
                    }
                    continue;
                }
                let chunk = Chunk {
                    from: offset,
                    batches: read.bytes,
                    high_watermark: partition.high_watermark(),
                    next_offset: read.next_offset,
                };
                offset = read.next_offset;
                let (message, go_on) = match shape(Ok(chunk)) {
                    ControlFlow::Continue(m) => (m, true),
                    ControlFlow::Break(m) => (m, false),
                };
                if tx.send(message).await.is_err() || !go_on {
                    return;
                }
            }
        });
        Ok(rx)
    }

    /// Where a leader epoch ended on one partition's leader (see
    /// [`Partition::epoch_end`]).
    pub fn epoch_end(
        &self,
        tp: &TopicPartition,
        current: Option<LeaderEpoch>,
        epoch: LeaderEpoch,
    ) -> Result<Option<(LeaderEpoch, Offset)>, BrokerError> {
        self.check_lease()?;
        self.topics
            .get(&tp.topic)?
            .partition(tp.partition)?
            .epoch_end(current, epoch)
    }

    /// Offset lookups; a partition that fails carries its own error.
    pub async fn list_offsets(
        self: &Arc<Self>,
        req: OffsetsRequest,
    ) -> Result<Vec<ListedTopic>, BrokerError> {
        self.check_lease()?;
        let mut work = Vec::new();
        for t in req.topics {
            let topic = self.topics.get(&t.topic)?;
            let mut parts = Vec::new();
            for (partition, at) in t.partitions {
                parts.push((topic.partition(partition)?.clone(), at));
            }
            work.push((t.topic, parts));
        }
        blocking(move || {
            Ok(work
                .into_iter()
                .map(|(topic, parts)| ListedTopic {
                    topic,
                    partitions: parts.into_iter().map(|(p, at)| lookup(&p, at)).collect(),
                })
                .collect())
        })
        .await
    }
}

fn lookup(p: &Partition, at: StartAt) -> ListedOffset {
    let offsets = p.offsets();
    let (offset, timestamp) = match at {
        // Past the newest record: the high watermark, as Kafka answers.
        StartAt::Timestamp(ts) => match p.record_for_timestamp(ts) {
            Ok(Some((offset, found))) => (Ok(offset), Some(found)),
            Ok(None) => (p.resolve(StartAt::Latest), None),
            Err(e) => (Err(e), None),
        },
        at => (p.resolve(at), None),
    };
    ListedOffset {
        partition: p.id,
        offset,
        timestamp,
        log_start: offsets.log_start,
        high_watermark: offsets.high_watermark,
    }
}

/// Reads every target; the first batch with data may exceed the total
/// budget (so a large batch can always be fetched), the others stay within it.
fn read_all(targets: &[Target], names: Vec<String>, total_max: usize) -> (FetchResponse, usize) {
    let mut topics: Vec<FetchedTopic> = names
        .into_iter()
        .map(|topic| FetchedTopic {
            topic,
            partitions: Vec::new(),
        })
        .collect();
    let mut total = 0usize;
    for t in targets {
        let p = &t.partition;
        let offsets = p.offsets();
        let mut result = Fetched {
            partition: p.id,
            from: t.offset,
            high_watermark: offsets.high_watermark,
            log_start: offsets.log_start,
            next_offset: t.offset,
            batches: bytes::Bytes::new(),
            error: None,
        };
        let budget = if total == 0 {
            t.max_bytes
        } else {
            t.max_bytes.min(total_max.saturating_sub(total))
        };
        if budget > 0 {
            match p.read(t.offset, budget) {
                Ok(read) if total > 0 && total + read.bytes.len() > total_max => {}
                Ok(read) => {
                    total += read.bytes.len();
                    result.next_offset = read.next_offset;
                    result.batches = read.bytes;
                }
                Err(e) => result.error = Some(e),
            }
        }
        topics[t.topic_index].partitions.push(result);
    }
    (FetchResponse { topics }, total)
}

/// Waits until any watched high watermark moves. Returns true when a
/// partition went away (its topic was deleted), so the caller stops waiting.
async fn any_changed(watchers: &mut [watch::Receiver<Offset>]) -> bool {
    if watchers.is_empty() {
        return futures::future::pending().await;
    }
    let futures = watchers.iter_mut().map(|w| Box::pin(w.changed()));
    let (result, _, _) = futures::future::select_all(futures).await;
    result.is_err()
}
