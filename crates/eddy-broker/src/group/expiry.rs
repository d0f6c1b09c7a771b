//! The coordinator's clock work: members silent past their session
//! timeout, rebalance deadlines, and groups empty past
//! `offsets_retention_ms`.

use std::sync::Arc;
use std::time::{Duration, Instant};

use super::OFFSETS_TOPIC;
use super::state::State;
use crate::broker::Broker;

/// Session expiry, rebalance deadlines and expiry of long-empty groups.
pub(crate) async fn group_ticker(broker: Arc<Broker>) {
    let mut tick = tokio::time::interval(Duration::from_millis(100));
    loop {
        tick.tick().await;
        // Groups of partitions led elsewhere now are someone else's; those
        // known only from `__consumer_offsets` must expire too, even if no
        // client asks about groups after a restart.
        broker.release_lost_offsets_partitions();
        if let Err(e) = broker.groups_loaded().await {
            tracing::warn!(error = %e, "cannot load {OFFSETS_TOPIC}; retrying");
            continue;
        }
        let expired = broker.tick_groups(Instant::now());
        broker.expire_groups(expired).await;
    }
}

impl Broker {
    /// Removes members silent past their session timeout, completes due
    /// rebalances, and returns the groups empty for longer than
    /// `offsets_retention_ms` (already forgotten in memory).
    pub(super) fn tick_groups(self: &Arc<Self>, now: Instant) -> Vec<String> {
        let now_ms = self.now_ms();
        let meta = self.meta.state();
        let delay = Duration::from_millis(self.groups.config.initial_rebalance_delay_ms);
        let retention_ms = self.groups.config.offsets_retention_ms;
        let mut expired = Vec::new();
        let mut groups = self.groups.groups.lock();
        for (id, g) in groups.iter_mut() {
            let silent: Vec<String> = g
                .members
                .iter()
                .filter(|(_, m)| now.saturating_duration_since(m.last_seen) > m.session_timeout)
                .map(|(id, _)| id.clone())
                .collect();
            for m in silent {
                tracing::info!(group = %id, member = %m, "member's session expired");
                g.remove_member(&m, now, delay, now_ms);
            }
            if g.ready(now) {
                self.finish_rebalance(id, g, &meta, now);
            }
            // A leader that never handed out the assignments: try again.
            if let State::Completing { deadline } = g.state
                && now >= deadline
            {
                tracing::info!(group = %id, "the leader sent no assignments in time; rebalancing again");
                g.start_rebalance(now, delay);
            }
            if g.state == State::Empty
                && g.empty_since_ms.is_some_and(|t| now_ms - t > retention_ms)
            {
                expired.push(id.clone());
            }
        }
        for id in &expired {
            groups.remove(id);
        }
        expired
    }

    /// Writes tombstones for the committed offsets and generation of each
    /// expired group, so they stay gone after a restart.
    pub(super) async fn expire_groups(self: &Arc<Self>, expired: Vec<String>) {
        for id in expired {
            match self.forget_offsets(&id).await {
                Ok(()) => tracing::info!(group = %id, "expired an empty group and its offsets"),
                Err(e) => tracing::warn!(group = %id, error = %e, "could not expire group"),
            }
        }
    }
}
