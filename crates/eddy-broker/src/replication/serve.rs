//! The leader's side of replication: the `Replication` gRPC service.

use std::sync::Arc;
use std::time::Duration;

use eddy_log::{LeaderEpoch, Offset};
use eddy_meta::{NodeId, PartitionId};
use eddy_proto::v1::replication_server::Replication;
use eddy_proto::v1::{
    ReplicaFetchPartition, ReplicaFetchRequest, ReplicaFetchResponse, ReplicaFetchResult,
};
use tonic::{Request, Response, Status};

use crate::broker::{Broker, blocking};
use crate::error::BrokerError;
use crate::partition::{FetchPosition, FollowerFetch};

/// Answers followers' fetches from this broker's leader replicas.
#[derive(Debug, Clone)]
pub struct ReplicationService {
    broker: Arc<Broker>,
}

impl ReplicationService {
    pub fn new(broker: Arc<Broker>) -> ReplicationService {
        ReplicationService { broker }
    }
}

#[tonic::async_trait]
impl Replication for ReplicationService {
    async fn fetch(
        &self,
        request: Request<ReplicaFetchRequest>,
    ) -> Result<Response<ReplicaFetchResponse>, Status> {
        let req = Arc::new(request.into_inner());
        let limits = &self.broker.config.replication;
        let wait =
            Duration::from_millis(u64::from(req.max_wait_ms).min(limits.replica_fetch_wait_ms_max));
        let deadline = tokio::time::Instant::now() + wait;
        let mut shutdown = self.broker.shutdown_signal();
        loop {
            // Registered before reading, so an append in between still wakes us.
            let appended = self.broker.topics.appended().notified();
            tokio::pin!(appended);
            appended.as_mut().enable();
            let (broker, r) = (self.broker.clone(), req.clone());
            let (partitions, news) = blocking(move || Ok(read_all(&broker, &r))).await?;
            let now = tokio::time::Instant::now();
            if news || now >= deadline || *shutdown.borrow() {
                return Ok(Response::new(ReplicaFetchResponse { partitions }));
            }
            tokio::select! {
                _ = appended => {}
                _ = tokio::time::sleep_until(deadline) => {}
                _ = shutdown.changed() => {}
            }
        }
    }
}

/// One pass over the request's partitions; also says whether any of them
/// has something for the follower (data, or a cut to make).
fn read_all(broker: &Broker, req: &ReplicaFetchRequest) -> (Vec<ReplicaFetchResult>, bool) {
    let limits = &broker.config.replication;
    let mut budget = (req.max_bytes as usize).clamp(1, limits.replica_fetch_bytes_max);
    let now = broker.now_ms();
    let replica = NodeId(req.replica_id);
    let mut news = false;
    let results = req
        .partitions
        .iter()
        .map(|p| {
            let max = (p.max_bytes as usize)
                .min(limits.replica_fetch_partition_bytes_max)
                .min(budget);
            let result = serve_one(broker, replica, p, max, now);
            match result {
                Ok(fetched) => {
                    news |= match &fetched {
                        FollowerFetch::Records { bytes, .. } => !bytes.is_empty(),
                        FollowerFetch::Diverging { .. } | FollowerFetch::Behind { .. } => true,
                    };
                    let r = to_result(p, fetched);
                    budget = budget.saturating_sub(r.records.len());
                    r
                }
                Err(e) => ReplicaFetchResult {
                    topic: p.topic.clone(),
                    partition: p.partition,
                    error: Some(e.to_partition_error()),
                    ..Default::default()
                },
            }
        })
        .collect();
    (results, news)
}

fn serve_one(
    broker: &Broker,
    replica: NodeId,
    p: &ReplicaFetchPartition,
    max_bytes: usize,
    now_ms: i64,
) -> Result<FollowerFetch, BrokerError> {
    let topic = broker.topics.get(&p.topic)?;
    let partition = topic.partition(PartitionId(p.partition))?;
    let position = FetchPosition {
        fetch_offset: Offset(p.fetch_offset),
        last_fetched_epoch: (p.last_fetched_epoch >= 0)
            .then_some(LeaderEpoch(p.last_fetched_epoch)),
        leader_epoch: LeaderEpoch(p.current_leader_epoch),
    };
    partition.serve_follower(replica, position, max_bytes.max(1), now_ms)
}

fn to_result(p: &ReplicaFetchPartition, fetched: FollowerFetch) -> ReplicaFetchResult {
    let base = ReplicaFetchResult {
        topic: p.topic.clone(),
        partition: p.partition,
        ..Default::default()
    };
    match fetched {
        FollowerFetch::Records {
            bytes,
            high_watermark,
            log_start,
        } => ReplicaFetchResult {
            records: bytes,
            high_watermark: high_watermark.0,
            log_start_offset: log_start.0,
            ..base
        },
        FollowerFetch::Diverging {
            epoch,
            end_offset,
            high_watermark,
            log_start,
        } => ReplicaFetchResult {
            diverging: true,
            diverging_epoch: epoch.map_or(-1, |e| e.0),
            diverging_end_offset: end_offset.0,
            high_watermark: high_watermark.0,
            log_start_offset: log_start.0,
            ..base
        },
        FollowerFetch::Behind { log_start } => ReplicaFetchResult {
            error: Some(eddy_proto::v1::PartitionError {
                code: eddy_proto::v1::ErrorCode::OffsetOutOfRange as i32,
                message: format!("the leader's log starts at {log_start}"),
            }),
            log_start_offset: log_start.0,
            ..base
        },
    }
}
