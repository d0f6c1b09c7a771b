//! Broker liveness (Kafka's KRaft heartbeats, simplified).
//!
//! Every broker of a cluster heartbeats every voter of the metadata
//! quorum; each voter remembers when it last heard from each broker (so a
//! newly elected leader knows at once), and the controller leader answers
//! and fences a broker that stayed silent past `broker_session_timeout_ms`, which
//! moves leadership of its partitions to other ISR members; a fenced
//! broker's next heartbeat unfences it. Fencing is the leader's own write,
//! never forwarded: a leader cut off and replaced drops what it decided
//! from the heartbeats it no longer got. The broker itself holds a lease:
//! it takes writes only while a recent heartbeat (sent within the session
//! timeout) found it unfenced and its own metadata at least as new as the
//! controller's, so a broker that was paused or cut off refuses writes as
//! soon as it runs again, before it has even learnt who replaced it.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use eddy_meta::{Command, NodeId};
use eddy_proto::AuthChannel as Channel;
use eddy_proto::v1::BrokerHeartbeatRequest;
use eddy_proto::v1::controller_client::ControllerClient;
use parking_lot::Mutex;

use crate::broker::Broker;
use crate::error::BrokerError;

/// How often the controller leader looks for silent brokers.
const FENCE_CHECK_INTERVAL: Duration = Duration::from_millis(250);

/// What the controller leader answers a heartbeat.
#[derive(Debug, Clone, Copy)]
pub(crate) struct HeartbeatReply {
    pub fenced: bool,
    pub metadata_version: u64,
}

#[derive(Debug, Default)]
pub(crate) struct Liveness {
    /// Controller side: when each broker was last heard from.
    seen: Mutex<HashMap<NodeId, Instant>>,
    /// Controller side: since when this broker leads the quorum; every
    /// broker gets a session's grace from then.
    leading_since: Mutex<Option<Instant>>,
    /// Broker side: when the last heartbeat that found this broker live
    /// was sent.
    lease: Mutex<Option<Instant>>,
    /// Broker side: connections to the voters, by address.
    channels: Mutex<HashMap<String, Channel>>,
}

impl Broker {
    /// Whether this broker may take writes: alone, always; in a cluster,
    /// while its lease holds.
    /// A broker that starts again gives up what its previous run held:
    /// leaderships and places in ISRs that have other members, as a broker
    /// that missed its session does (Kafka fences a re-registering broker
    /// the same way). Its previous run may have lost writes it had not
    /// flushed (a power loss with `--flush never`); leading again in the
    /// same epoch, it would make followers that hold them truncate. It
    /// catches up as a follower, its heartbeats unfence it, and its
    /// leaders add it back to their ISRs.
    pub(crate) async fn fence_previous_incarnation(&self) -> Result<(), BrokerError> {
        let me = self.config.node_id;
        let state = self.meta.state();
        if self.config.peers.len() <= 1 || state.brokers.get(&me).is_none_or(|b| b.fenced) {
            return Ok(());
        }
        let holds = state
            .topics
            .values()
            .flat_map(|t| &t.partitions)
            .any(|p| p.leader == Some(me) || (p.isr.contains(&me) && p.isr.len() > 1));
        if holds {
            tracing::info!(
                "started again: giving up the leaderships and ISR places of the previous run"
            );
            self.meta
                .propose(Command::SetBrokerFenced {
                    id: me,
                    fenced: true,
                })
                .await?;
        }
        Ok(())
    }

    /// Whether this broker may act as the leader its metadata says it is:
    /// a broker cut off from the controller past the session timeout may
    /// have been replaced, and neither takes writes nor answers readers
    /// (its log end and high watermark may be old).
    pub(crate) fn check_lease(&self) -> Result<(), BrokerError> {
        if self.config.peers.len() <= 1 {
            return Ok(());
        }
        let session = Duration::from_millis(self.config.replication.broker_session_timeout_ms);
        let lease = *self.liveness.lease.lock();
        match lease {
            Some(at) if at.elapsed() < session => Ok(()),
            _ => Err(BrokerError::Fenced(format!(
                "broker {} has not reached the controller within the session timeout ({} ms), so it serves no reads or writes as a leader (another broker may lead its partitions now); retry shortly or against another broker",
                self.config.node_id,
                session.as_millis()
            ))),
        }
    }

    /// A voter's side of a heartbeat from `node`: every voter notes it, so
    /// that a newly elected controller leader knows who is alive without
    /// waiting a whole session; only the leader answers it.
    pub(crate) async fn answer_heartbeat(
        &self,
        node: NodeId,
    ) -> Result<HeartbeatReply, BrokerError> {
        self.liveness.seen.lock().insert(node, Instant::now());
        let me = self.config.node_id;
        if self.meta.leader() != Some(me) || !self.meta.confirm_leader().await {
            return Err(BrokerError::NotController {
                leader: self.meta.leader().filter(|l| *l != me),
            });
        }
        let state = self.meta.state();
        Ok(HeartbeatReply {
            fenced: state.brokers.get(&node).is_none_or(|b| b.fenced),
            metadata_version: state.version,
        })
    }

    /// Sends one heartbeat to every voter and renews the lease if the
    /// controller leader found this broker live.
    pub(crate) async fn heartbeat_voters(&self) -> Result<(), BrokerError> {
        let sent = Instant::now();
        let me = self.config.node_id;
        let timeout = Duration::from_millis(self.config.replication.broker_session_timeout_ms / 2);
        let calls = self.config.peers.iter().map(|(id, address)| async move {
            if *id == me {
                return self.answer_heartbeat(me).await;
            }
            let mut client = ControllerClient::new(self.controller_channel(address)?);
            let mut request = tonic::Request::new(BrokerHeartbeatRequest { node_id: me.0 });
            request.set_timeout(timeout);
            let answer = tokio::time::timeout(timeout, client.broker_heartbeat(request))
                .await
                .map_err(|_| BrokerError::Internal(format!("no heartbeat answer from {address}")))?
                .map_err(|s| {
                    BrokerError::Internal(format!("heartbeat to {address}: {}", s.message()))
                })?
                .into_inner();
            Ok(HeartbeatReply {
                fenced: answer.fenced,
                metadata_version: answer.metadata_version,
            })
        });
        let replies = futures::future::join_all(calls).await;
        let Some(reply) = replies.into_iter().find_map(Result::ok) else {
            return Err(BrokerError::NotController { leader: None });
        };
        if !reply.fenced && self.meta.state().version >= reply.metadata_version {
            let mut lease = self.liveness.lease.lock();
            if lease.is_none_or(|l| l < sent) {
                *lease = Some(sent);
            }
        }
        Ok(())
    }

    fn controller_channel(&self, address: &str) -> Result<Channel, BrokerError> {
        let mut channels = self.liveness.channels.lock();
        if let Some(c) = channels.get(address) {
            return Ok(c.clone());
        }
        let endpoint = self
            .links
            .endpoint(address)
            .map_err(|e| BrokerError::Internal(format!("bad peer address {address:?}: {e}")))?;
        let channel = self.links.attach(
            endpoint
                .connect_timeout(Duration::from_millis(500))
                .tcp_nodelay(true)
                .connect_lazy(),
        );
        channels.insert(address.to_string(), channel.clone());
        Ok(channel)
    }

    /// The controller leader's side: fences brokers silent past the
    /// session timeout, unfences those heard from again.
    async fn check_liveness(&self) {
        let me = self.config.node_id;
        if self.meta.leader() != Some(me) {
            *self.liveness.leading_since.lock() = None;
            return;
        }
        let now = Instant::now();
        let since = *self.liveness.leading_since.lock().get_or_insert(now);
        let session = Duration::from_millis(self.config.replication.broker_session_timeout_ms);
        let state = self.meta.state();
        for b in state.brokers.values() {
            let heard = self.liveness.seen.lock().get(&b.id).copied();
            let change = if b.fenced {
                // Unfenced by a heartbeat sent since it was fenced.
                heard
                    .is_some_and(|h| now - h < session / 2)
                    .then_some(false)
            } else {
                // Every voter notes heartbeats, so a new leader knows when
                // each broker was last heard; one it never heard from gets
                // a session from the start of its leadership.
                let last = heard.unwrap_or(since);
                (now - last > session).then_some(true)
            };
            let Some(fenced) = change else { continue };
            if fenced {
                tracing::warn!(
                    broker = b.id.0,
                    session_ms = session.as_millis() as u64,
                    "fencing a broker that stopped heartbeating; its partitions get new leaders"
                );
            } else {
                tracing::info!(broker = b.id.0, "unfencing a broker that heartbeats again");
            }
            // Decided from this leader's own view of heartbeats: if it was
            // replaced meanwhile, the change is dropped, not forwarded.
            if let Err(e) = self
                .meta
                .propose_as_leader(Command::SetBrokerFenced { id: b.id, fenced })
                .await
            {
                tracing::warn!(broker = b.id.0, error = %e, "could not change the broker's fenced state");
            }
        }
    }
}

/// Heartbeats the controller leader while the broker runs.
pub(crate) async fn heartbeat_loop(broker: Arc<Broker>) {
    let interval = Duration::from_millis(
        broker
            .config
            .replication
            .broker_heartbeat_interval_ms
            .max(10),
    );
    loop {
        if let Err(e) = broker.heartbeat_voters().await {
            tracing::debug!(error = %e, "heartbeat failed");
        }
        tokio::time::sleep(interval).await;
    }
}

/// Runs the controller leader's liveness checks while the broker runs.
pub(crate) async fn fence_loop(broker: Arc<Broker>) {
    loop {
        tokio::time::sleep(FENCE_CHECK_INTERVAL).await;
        broker.check_liveness().await;
    }
}
