//! The follower's side of replication: one loop per leader broker that
//! fetches every partition this broker follows there and applies the
//! answers (append, truncate, start over).

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use eddy_log::{LeaderEpoch, Offset};
use eddy_meta::NodeId;
use eddy_proto::v1::replication_client::ReplicationClient;
use eddy_proto::v1::{ErrorCode, ReplicaFetchPartition, ReplicaFetchRequest, ReplicaFetchResult};
use parking_lot::Mutex;
use tokio::sync::Notify;

use crate::broker::{Broker, blocking};
use crate::partition::{FetchPosition, FollowerFetch, Partition};

/// Largest fetch answer a follower accepts (the leader keeps well below).
const RESPONSE_BYTES_MAX: usize = 256 << 20;
/// Waits after a failed fetch, doubling up to the maximum.
const BACKOFF_MIN: Duration = Duration::from_millis(50);
const BACKOFF_MAX: Duration = Duration::from_secs(1);

/// Fetches from `leader` until aborted.
pub(super) async fn run(
    broker: Arc<Broker>,
    leader: NodeId,
    address: String,
    partitions: Arc<Mutex<Vec<Arc<Partition>>>>,
    changed: Arc<Notify>,
) {
    let channel = match broker.links.endpoint(&address) {
        Ok(e) => e
            .connect_timeout(Duration::from_millis(500))
            .tcp_nodelay(true)
            .http2_keep_alive_interval(Duration::from_secs(5))
            .keep_alive_timeout(Duration::from_secs(5))
            .initial_stream_window_size(crate::STREAM_WINDOW_BYTES)
            .initial_connection_window_size(crate::CONNECTION_WINDOW_BYTES)
            .connect_lazy(),
        Err(e) => {
            tracing::error!(leader = leader.0, %address, error = %e, "cannot fetch from a leader with this address");
            return;
        }
    };
    let channel = broker.links.attach(channel);
    let mut client = ReplicationClient::new(channel).max_decoding_message_size(RESPONSE_BYTES_MAX);
    let limits = broker.config.replication.clone();
    let mut backoff = BACKOFF_MIN;
    loop {
        let followed: Vec<(Arc<Partition>, FetchPosition)> = partitions
            .lock()
            .iter()
            .filter_map(|p| p.fetch_position(leader).map(|pos| (p.clone(), pos)))
            .collect();
        if followed.is_empty() {
            let _ = tokio::time::timeout(Duration::from_secs(1), changed.notified()).await;
            continue;
        }
        let request = ReplicaFetchRequest {
            replica_id: broker.config.node_id.0,
            max_wait_ms: limits.replica_fetch_wait_ms_max as u32,
            max_bytes: limits.replica_fetch_bytes_max as u32,
            partitions: followed
                .iter()
                .map(|(p, pos)| ReplicaFetchPartition {
                    topic: p.topic.to_string(),
                    partition: p.id.0,
                    fetch_offset: pos.fetch_offset.0,
                    current_leader_epoch: pos.leader_epoch.0,
                    last_fetched_epoch: pos.last_fetched_epoch.map_or(-1, |e| e.0),
                    max_bytes: limits.replica_fetch_partition_bytes_max as u32,
                })
                .collect(),
        };
        let timeout =
            Duration::from_millis(limits.replica_fetch_wait_ms_max) + Duration::from_secs(10);
        let answer = tokio::select! {
            a = tokio::time::timeout(timeout, client.fetch(request)) => a,
            // The partitions changed: ask again for the new set.
            _ = changed.notified() => continue,
        };
        let results = match answer {
            Ok(Ok(response)) => response.into_inner().partitions,
            Ok(Err(status)) => {
                tracing::debug!(leader = leader.0, error = %status.message(), "replica fetch failed");
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(BACKOFF_MAX);
                continue;
            }
            Err(_) => {
                tracing::debug!(leader = leader.0, "replica fetch timed out");
                continue;
            }
        };
        let failed = {
            let applied = blocking(move || Ok(apply(leader, followed, results))).await;
            applied.unwrap_or(true)
        };
        if failed {
            // Usually metadata in flight (a new leader or epoch): give it
            // a moment instead of asking again at once.
            tokio::time::sleep(backoff).await;
            backoff = (backoff * 2).min(BACKOFF_MAX);
        } else {
            backoff = BACKOFF_MIN;
        }
    }
}

/// Applies one answer; returns whether any partition failed.
fn apply(
    leader: NodeId,
    followed: Vec<(Arc<Partition>, FetchPosition)>,
    results: Vec<ReplicaFetchResult>,
) -> bool {
    let mut failed = false;
    for r in results {
        let Some((p, pos)) = followed
            .iter()
            .find(|(p, _)| p.id.0 == r.partition && *p.topic == *r.topic)
        else {
            continue;
        };
        let fetched = match to_fetched(&r) {
            Ok(f) => f,
            Err(message) => {
                failed = true;
                tracing::debug!(topic = %p.topic, partition = p.id.0, leader = leader.0, %message, "leader refused a replica fetch");
                continue;
            }
        };
        if let Err(e) = p.apply_fetched(leader, pos.leader_epoch, fetched) {
            failed = true;
            tracing::warn!(topic = %p.topic, partition = p.id.0, error = %e, "could not apply what the leader sent");
        }
    }
    failed
}

fn to_fetched(r: &ReplicaFetchResult) -> Result<FollowerFetch, String> {
    if let Some(e) = &r.error {
        if e.code == ErrorCode::OffsetOutOfRange as i32 {
            return Ok(FollowerFetch::Behind {
                log_start: Offset(r.log_start_offset),
            });
        }
        return Err(e.message.clone());
    }
    if r.diverging {
        return Ok(FollowerFetch::Diverging {
            epoch: (r.diverging_epoch >= 0).then_some(LeaderEpoch(r.diverging_epoch)),
            end_offset: Offset(r.diverging_end_offset),
            high_watermark: Offset(r.high_watermark),
            log_start: Offset(r.log_start_offset),
        });
    }
    Ok(FollowerFetch::Records {
        bytes: Bytes::clone(&r.records),
        high_watermark: Offset(r.high_watermark),
        log_start: Offset(r.log_start_offset),
    })
}
