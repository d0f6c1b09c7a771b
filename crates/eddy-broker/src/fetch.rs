//! Reading: long-poll fetch, streaming subscribe, offset lookups.
//!
//! Stored batches go out as they are on disk (`Bytes` from one positioned
//! read); decoding into structured records happens only when a client asks.

use std::sync::Arc;
use std::time::Duration;

use eddy_log::{Offset, Timestamp};
use eddy_proto::v1::{
    FetchPartitionResult, FetchRequest, FetchResponse, FetchTopicResult,
    ListOffsetsPartitionResult, ListOffsetsRequest, ListOffsetsResponse, ListOffsetsTopicResult,
    OffsetSpec, SubscribeRequest, SubscribeResponse, offset_spec,
};
use tokio::sync::{mpsc, watch};
use tokio::time::Instant;

use crate::broker::{Broker, blocking};
use crate::error::BrokerError;
use crate::partition::{Partition, StartAt};
use crate::records;

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
    /// Long-poll fetch; see the `Consume` service docs.
    pub async fn fetch(self: &Arc<Self>, req: FetchRequest) -> Result<FetchResponse, BrokerError> {
        let limits = &self.config.limits;
        let mut targets = Vec::new();
        for (topic_index, t) in req.topics.iter().enumerate() {
            let topic = self.topics.get(&t.topic)?;
            for p in &t.partitions {
                let max_bytes = match p.max_bytes as usize {
                    0 => limits.fetch_partition_bytes_default,
                    n => n,
                };
                targets.push(Target {
                    topic_index,
                    partition: topic.partition(p.partition)?.clone(),
                    offset: Offset(p.offset),
                    max_bytes,
                });
            }
        }
        let total_max = match req.max_bytes as usize {
            0 => FETCH_BYTES_DEFAULT,
            n => n,
        }
        .min(limits.fetch_bytes_max);
        let wait = Duration::from_millis(u64::from(req.max_wait_ms).min(limits.fetch_wait_ms_max));
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
            let decode = req.decode;
            let (response, bytes) =
                blocking(move || Ok(read_all(&targets_now, names_now, total_max, decode))).await?;
            // A partition error (such as an offset out of range) will not go
            // away by waiting: answer it at once.
            let failed = response
                .topics
                .iter()
                .flat_map(|t| &t.partitions)
                .any(|p| p.error.is_some());
            if failed
                || bytes >= req.min_bytes as usize
                || Instant::now() >= deadline
                || *shutdown.borrow()
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
    /// away, the topic is deleted or the broker shuts down.
    pub async fn subscribe(
        self: &Arc<Self>,
        req: SubscribeRequest,
    ) -> Result<mpsc::Receiver<Result<SubscribeResponse, tonic::Status>>, BrokerError> {
        let permit = self.subscription_permits.clone().try_acquire_owned().map_err(|_| {
            BrokerError::LimitExceeded(format!(
                "this broker already serves {} subscriptions (subscriptions_max); close some or use Fetch",
                self.config.limits.subscriptions_max
            ))
        })?;
        let topic = self.topics.get(&req.topic)?;
        let partition = topic.partition(req.partition)?.clone();
        let start = start_at(req.start.as_ref());
        let p = partition.clone();
        self.check_lease()?;
        let mut offset = blocking(move || p.resolve(start)).await?;
        let max_bytes = match req.max_bytes as usize {
            0 => self.config.limits.fetch_partition_bytes_default,
            n => n.min(self.config.limits.fetch_bytes_max),
        };
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
                        let _ = tx.send(Err(e.to_status())).await;
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
                let mut msg = SubscribeResponse {
                    batches: read.bytes,
                    records: Vec::new(),
                    high_watermark: partition.high_watermark().0,
                    next_offset: read.next_offset.0,
                };
                if req.decode
                    && let Err(e) = records::decode(&msg.batches, offset, &mut msg.records)
                {
                    let _ = tx.send(Err(e.to_status())).await;
                    return;
                }
                offset = read.next_offset;
                if tx.send(Ok(msg)).await.is_err() {
                    return;
                }
            }
        });
        Ok(rx)
    }

    /// Offset lookups; a partition that fails carries its own error.
    pub async fn list_offsets(
        self: &Arc<Self>,
        req: ListOffsetsRequest,
    ) -> Result<ListOffsetsResponse, BrokerError> {
        self.check_lease()?;
        let mut work = Vec::new();
        for t in &req.topics {
            let topic = self.topics.get(&t.topic)?;
            let mut parts = Vec::new();
            for p in &t.partitions {
                parts.push((
                    topic.partition(p.partition)?.clone(),
                    start_at(p.spec.as_ref()),
                ));
            }
            work.push((t.topic.clone(), parts));
        }
        blocking(move || {
            let topics = work
                .into_iter()
                .map(|(topic, parts)| ListOffsetsTopicResult {
                    topic,
                    partitions: parts.into_iter().map(|(p, at)| lookup(&p, at)).collect(),
                })
                .collect();
            Ok(ListOffsetsResponse { topics })
        })
        .await
    }
}

fn lookup(p: &Partition, at: StartAt) -> ListOffsetsPartitionResult {
    let offsets = p.offsets();
    let mut result = ListOffsetsPartitionResult {
        partition: p.id.0,
        offset: 0,
        log_start_offset: offsets.log_start.0,
        high_watermark: offsets.high_watermark.0,
        error: None,
    };
    match p.resolve(at) {
        Ok(o) => result.offset = o.0,
        Err(e) => result.error = Some(e.to_partition_error()),
    }
    result
}

/// What an `OffsetSpec` asks for; absent means earliest.
pub(crate) fn start_at(spec: Option<&OffsetSpec>) -> StartAt {
    match spec.and_then(|s| s.spec.as_ref()) {
        None | Some(offset_spec::Spec::Earliest(_)) => StartAt::Earliest,
        Some(offset_spec::Spec::Latest(_)) => StartAt::Latest,
        Some(offset_spec::Spec::Offset(o)) => StartAt::Offset(Offset(*o)),
        Some(offset_spec::Spec::TimestampMs(ts)) => StartAt::Timestamp(Timestamp(*ts)),
    }
}

/// Reads every target; the first batch with data may exceed the total
/// budget (so a large batch can always be fetched), the others stay within it.
fn read_all(
    targets: &[Target],
    names: Vec<String>,
    total_max: usize,
    decode: bool,
) -> (FetchResponse, usize) {
    let mut topics: Vec<FetchTopicResult> = names
        .into_iter()
        .map(|topic| FetchTopicResult {
            topic,
            partitions: Vec::new(),
        })
        .collect();
    let mut total = 0usize;
    for t in targets {
        let p = &t.partition;
        let offsets = p.offsets();
        let mut result = FetchPartitionResult {
            partition: p.id.0,
            high_watermark: offsets.high_watermark.0,
            log_start_offset: offsets.log_start.0,
            next_offset: t.offset.0,
            ..FetchPartitionResult::default()
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
                    result.next_offset = read.next_offset.0;
                    if decode
                        && let Err(e) = records::decode(&read.bytes, t.offset, &mut result.records)
                    {
                        result.error = Some(e.to_partition_error());
                    }
                    result.batches = read.bytes;
                }
                Err(e) => result.error = Some(e.to_partition_error()),
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
