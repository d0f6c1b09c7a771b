//! Partition replication between brokers (Kafka's model).
//!
//! A follower copies its leader's log through the `Replication.Fetch` RPC,
//! one long-polling fetch loop per leader broker covering every partition
//! it follows there (`fetcher.rs`); the leader answers from its log and
//! learns from each fetch offset how far the follower got, which moves
//! the high watermark (`serve.rs`). Leaders ask the controller to shrink
//! the ISR when a follower lags past `replica_lag_time_max_ms` and to grow
//! it when one catches up ([`isr_loop`]); the controller's metadata stays
//! the truth, and the next metadata change brings the new ISR back here.

mod fetcher;
mod serve;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use eddy_meta::{Command, NodeId};
use parking_lot::Mutex;
use tokio::sync::Notify;
use tokio::task::JoinHandle;

use crate::broker::{Broker, blocking};
use crate::partition::{Partition, Role};

pub use serve::ReplicationService;

/// One leader's fetch loop and the partitions it fetches.
#[derive(Debug)]
struct Fetcher {
    address: String,
    partitions: Arc<Mutex<Vec<Arc<Partition>>>>,
    /// Tells the loop its partitions changed.
    changed: Arc<Notify>,
    task: JoinHandle<()>,
}

/// The fetch loops of this broker, by leader.
#[derive(Debug, Default)]
pub(crate) struct Fetchers {
    running: Mutex<HashMap<NodeId, Fetcher>>,
}

impl Fetchers {
    /// Stops every fetch loop (shutdown).
    pub fn stop_all(&self) {
        for (_, f) in self.running.lock().drain() {
            f.task.abort();
        }
    }
}

impl Broker {
    /// Points a fetch loop at each leader this broker follows partitions
    /// of, with exactly those partitions; stops loops with none left.
    pub(crate) fn sync_fetchers(self: &Arc<Self>) {
        let state = self.meta.state();
        let mut wanted: HashMap<NodeId, Vec<Arc<Partition>>> = HashMap::new();
        for p in self.topics.partitions() {
            if let Role::Follower { leader } = p.role() {
                wanted.entry(leader).or_default().push(p);
            }
        }
        let mut running = self.fetchers.running.lock();
        running.retain(|leader, f| {
            let keep = wanted.contains_key(leader)
                && self.peer_address(*leader, &state).as_ref() == Some(&f.address);
            if !keep {
                f.task.abort();
            }
            keep
        });
        for (leader, partitions) in wanted {
            if let Some(f) = running.get(&leader) {
                *f.partitions.lock() = partitions;
                f.changed.notify_one();
                continue;
            }
            let Some(address) = self.peer_address(leader, &state) else {
                tracing::warn!(
                    leader = leader.0,
                    "the metadata names a leader it does not list; not fetching from it"
                );
                continue;
            };
            let shared = Arc::new(Mutex::new(partitions));
            let changed = Arc::new(Notify::new());
            let task = tokio::spawn(fetcher::run(
                self.clone(),
                leader,
                address.clone(),
                shared.clone(),
                changed.clone(),
            ));
            running.insert(
                leader,
                Fetcher {
                    address,
                    partitions: shared,
                    changed,
                    task,
                },
            );
        }
    }
}

/// How often leaders check their followers' lag.
const ISR_CHECK_INTERVAL: Duration = Duration::from_millis(500);
/// High watermarks are saved every this many ISR checks.
const CHECKPOINTS_EVERY: u32 = 10;

/// Asks the controller for the ISR changes this broker's leaders want and
/// the hand-overs of damaged ones, and saves high watermarks now and then.
pub(crate) async fn isr_loop(broker: Arc<Broker>) {
    let lag_max = broker.config.replication.replica_lag_time_max_ms as i64;
    let mut ticks = 0u32;
    loop {
        tokio::time::sleep(ISR_CHECK_INTERVAL).await;
        let now = broker.now_ms();
        let state = broker.meta.state();
        let live = |n| state.is_live(n);
        for p in broker.topics.partitions() {
            let Some(change) = p.wanted_isr_change(now, lag_max, &live) else {
                continue;
            };
            tracing::info!(
                topic = %p.topic, partition = p.id.0,
                isr = ?change.isr.iter().map(|n| n.0).collect::<Vec<_>>(),
                "asking the controller to change the ISR"
            );
            if let Err(e) = broker.meta.propose(Command::AlterIsr(change)).await {
                tracing::info!(topic = %p.topic, partition = p.id.0, error = %e, "ISR change not made");
                p.isr_change_failed();
            }
        }
        for p in broker.topics.partitions() {
            let Some(resign) = p.wanted_resignation(now) else {
                continue;
            };
            if let Err(e) = broker.meta.propose(Command::Resign(resign)).await {
                tracing::warn!(topic = %p.topic, partition = p.id.0, error = %e, "could not hand the damaged partition over");
            }
        }
        ticks += 1;
        if ticks.is_multiple_of(CHECKPOINTS_EVERY) {
            let b = broker.clone();
            let saved = blocking(move || {
                for p in b.topics.partitions() {
                    p.checkpoint_high_watermark()
                        .map_err(crate::error::BrokerError::log(&p.topic, p.id))?;
                }
                Ok(())
            })
            .await;
            if let Err(e) = saved {
                tracing::warn!(error = %e, "could not save high watermarks");
            }
        }
    }
}
