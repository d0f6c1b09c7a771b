//! Consumer-group membership for [`crate::Consumer`]: join, heartbeat in the
//! background, commit and fetch offsets.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use bytes::Bytes;
use eddy_proto::AuthChannel as Channel;
use eddy_proto::v1::{
    Assignor, CommitOffsetsRequest, ErrorCode, FetchOffsetsRequest, HeartbeatRequest,
    JoinGroupRequest, LeaveGroupRequest, PartitionOffset, TopicPartitions,
    groups_client::GroupsClient,
};
use tokio::task::JoinHandle;

use crate::client::Client;
use crate::error::{ClientError, Result};

/// A topic partition.
pub type TopicPartition = (Arc<str>, u32);

/// Group settings for [`crate::Consumer::subscribe`].
#[derive(Debug, Clone)]
pub struct GroupConfig {
    pub group_id: String,
    /// Shown by `eddy group describe`.
    pub client_id: String,
    /// The member is removed when silent this long.
    pub session_timeout_ms: u32,
    /// How long a rebalance waits for members to rejoin.
    pub rebalance_timeout_ms: u32,
    /// How long each heartbeat waits at the coordinator for a rebalance to
    /// start (it answers at once when one does).
    pub heartbeat_wait_ms: u32,
    pub assignor: Assignor,
    /// Commit positions every `auto_commit_interval_ms` (and before
    /// partitions are revoked, and on close).
    pub auto_commit: bool,
    pub auto_commit_interval_ms: u64,
}

impl GroupConfig {
    pub fn new(group_id: impl Into<String>) -> GroupConfig {
        GroupConfig {
            group_id: group_id.into(),
            client_id: "eddy-client".into(),
            session_timeout_ms: 10_000,
            rebalance_timeout_ms: 30_000,
            heartbeat_wait_ms: 1_000,
            assignor: Assignor::CooperativeSticky,
            auto_commit: true,
            auto_commit_interval_ms: 5_000,
        }
    }
}

/// One partition's offset to commit, with optional metadata.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OffsetCommit {
    pub topic: Arc<str>,
    pub partition: u32,
    /// The next offset to read.
    pub offset: u64,
    pub metadata: Bytes,
}

/// Told about partitions changing hands, so at-least-once consumers can
/// commit what they processed before a partition goes to another member.
pub trait RebalanceListener: Send + Sync {
    /// `revoked` are about to go. Return offsets to commit for them; the
    /// consumer commits these (and, with auto-commit, its positions) before
    /// it lets them go.
    fn on_revoked(&mut self, revoked: &[TopicPartition]) -> Vec<OffsetCommit> {
        let _ = revoked;
        Vec::new()
    }

    /// `assigned` are now this member's.
    fn on_assigned(&mut self, assigned: &[TopicPartition]) {
        let _ = assigned;
    }

    /// `lost` were this member's, but the coordinator forgot the member
    /// (it was silent past the session timeout): they may already belong to
    /// another member, so nothing is committed for them.
    fn on_lost(&mut self, lost: &[TopicPartition]) {
        let _ = lost;
    }
}

/// The outcome of a join.
#[derive(Debug)]
pub(crate) struct Joined {
    pub assignment: BTreeSet<TopicPartition>,
    /// The coordinator had forgotten this member, which joined as a new one:
    /// whatever it held before is lost, not revoked.
    pub lost: bool,
}

/// What a member knows about its group.
#[derive(Debug)]
pub(crate) struct Membership {
    pub config: GroupConfig,
    pub topics: Vec<String>,
    pub member_id: String,
    pub generation: i32,
    pub assigned: BTreeSet<TopicPartition>,
    pub need_rejoin: Arc<AtomicBool>,
    heartbeat: Option<JoinHandle<()>>,
    client: Client,
}

impl Membership {
    pub async fn new(
        client: &Client,
        config: GroupConfig,
        topics: Vec<String>,
    ) -> Result<Membership> {
        if config.group_id.is_empty() {
            return Err(ClientError::Invalid("a group id cannot be empty".into()));
        }
        Ok(Membership {
            config,
            topics,
            member_id: String::new(),
            generation: -1,
            assigned: BTreeSet::new(),
            need_rejoin: Arc::new(AtomicBool::new(true)),
            heartbeat: None,
            client: client.clone(),
        })
    }

    pub fn eager(&self) -> bool {
        self.config.assignor != Assignor::CooperativeSticky
            && self.config.assignor != Assignor::Unspecified
    }

    /// Joins (or rejoins) and returns the new assignment. A member the
    /// coordinator forgot joins again as a new member.
    pub async fn join(&mut self) -> Result<Joined> {
        self.stop_heartbeat();
        let owned = if self.eager() {
            Vec::new()
        } else {
            to_pb(&self.assigned)
        };
        let mut request = JoinGroupRequest {
            group_id: self.config.group_id.clone(),
            member_id: self.member_id.clone(),
            client_id: self.config.client_id.clone(),
            session_timeout_ms: self.config.session_timeout_ms,
            rebalance_timeout_ms: self.config.rebalance_timeout_ms,
            topics: self.topics.clone(),
            assignor: self.config.assignor as i32,
            owned,
        };
        let mut lost = false;
        let group = self.config.group_id.clone();
        // The coordinator holds a join until the rebalance is done.
        let waits = Duration::from_millis(u64::from(self.config.rebalance_timeout_ms));
        let joined = on_coordinator(&self.client, &group, waits, |mut g| {
            let request = request.clone();
            async move { g.join_group(request).await }
        })
        .await;
        let response = match joined {
            Err(e) if e.code() == ErrorCode::UnknownMember => {
                lost = true;
                request.member_id.clear();
                request.owned.clear();
                on_coordinator(&self.client, &group, waits, |mut g| {
                    let request = request.clone();
                    async move { g.join_group(request).await }
                })
                .await?
            }
            other => other?,
        };
        self.member_id = response.member_id;
        self.generation = response.generation;
        self.need_rejoin.store(false, Ordering::Release);
        self.start_heartbeat();
        let assignment = response
            .assignment
            .iter()
            .flat_map(|t| {
                let topic: Arc<str> = Arc::from(t.topic.as_str());
                t.partitions.iter().map(move |&p| (topic.clone(), p))
            })
            .collect();
        Ok(Joined { assignment, lost })
    }

    fn start_heartbeat(&mut self) {
        let client = self.client.clone();
        let request = HeartbeatRequest {
            group_id: self.config.group_id.clone(),
            member_id: self.member_id.clone(),
            generation: self.generation,
            wait_ms: self.config.heartbeat_wait_ms,
        };
        let flag = self.need_rejoin.clone();
        let pause =
            Duration::from_millis(u64::from(self.config.session_timeout_ms / 10).clamp(50, 1000));
        let session = Duration::from_millis(u64::from(self.config.session_timeout_ms));
        let wait = Duration::from_millis(u64::from(request.wait_ms));
        self.heartbeat = Some(tokio::spawn(async move {
            let mut failing_since = None;
            loop {
                let answer = match client.coordinator(&request.group_id).await {
                    Ok(channel) => {
                        let mut rpc = GroupsClient::new(channel);
                        let beat = rpc.heartbeat(request.clone());
                        client.answer_within(wait, beat).await
                    }
                    Err(e) => Err(e),
                };
                match answer {
                    Ok(_) => {
                        failing_since = None;
                        if request.wait_ms == 0 {
                            tokio::time::sleep(pause).await;
                        }
                    }
                    Err(e) => {
                        // A new coordinator (after a failover) does not know
                        // this member: join it. So too when this one has
                        // been unreachable for a whole session.
                        let since = *failing_since.get_or_insert_with(tokio::time::Instant::now);
                        if matches!(
                            e.code(),
                            ErrorCode::RebalanceInProgress
                                | ErrorCode::IllegalGeneration
                                | ErrorCode::UnknownMember
                                | ErrorCode::NotCoordinator
                        ) || since.elapsed() >= session
                        {
                            flag.store(true, Ordering::Release);
                            return;
                        }
                        tracing::debug!(error = %e, "heartbeat failed; retrying");
                        if e.is_retriable() {
                            refresh_coordinator(&client).await;
                        }
                        tokio::time::sleep(pause).await;
                    }
                }
            }
        }));
    }

    fn stop_heartbeat(&mut self) {
        if let Some(h) = self.heartbeat.take() {
            h.abort();
        }
    }

    /// Commits offsets as this member (generation and member id).
    pub async fn commit(&self, offsets: Vec<OffsetCommit>) -> Result<()> {
        self.commit_request(offsets).await
    }

    /// The commit as a future that owns what it needs (for background commits).
    pub fn commit_request(
        &self,
        offsets: Vec<OffsetCommit>,
    ) -> impl std::future::Future<Output = Result<()>> + Send + 'static {
        let target = self.commit_target();
        let (member_id, generation) = (self.member_id.clone(), self.generation);
        async move { target.commit(member_id, generation, offsets).await }
    }

    /// Where this member's commits go.
    pub fn commit_target(&self) -> CommitTarget {
        CommitTarget {
            group_id: self.config.group_id.clone(),
            client: self.client.clone(),
        }
    }

    /// Committed offsets of `partitions` (those without a commit are left out).
    pub async fn committed(
        &self,
        partitions: &BTreeSet<TopicPartition>,
    ) -> Result<Vec<OffsetCommit>> {
        let request = FetchOffsetsRequest {
            group_id: self.config.group_id.clone(),
            partitions: to_pb(partitions),
        };
        let response = on_coordinator(
            &self.client,
            &self.config.group_id,
            Duration::ZERO,
            |mut g| {
                let request = request.clone();
                async move { g.fetch_offsets(request).await }
            },
        )
        .await?;
        Ok(response
            .offsets
            .into_iter()
            .map(|o| OffsetCommit {
                topic: Arc::from(o.topic.as_str()),
                partition: o.partition,
                offset: o.offset,
                metadata: o.metadata,
            })
            .collect())
    }

    pub async fn leave(&mut self) -> Result<()> {
        self.stop_heartbeat();
        if self.member_id.is_empty() {
            return Ok(());
        }
        let request = LeaveGroupRequest {
            group_id: self.config.group_id.clone(),
            member_id: self.member_id.clone(),
        };
        on_coordinator(
            &self.client,
            &self.config.group_id,
            Duration::ZERO,
            |mut g| {
                let request = request.clone();
                async move { g.leave_group(request).await }
            },
        )
        .await?;
        Ok(())
    }
}

/// A group's coordinator, for commits.
#[derive(Debug, Clone)]
pub(crate) struct CommitTarget {
    group_id: String,
    client: Client,
}

impl CommitTarget {
    pub async fn commit(
        &self,
        member_id: String,
        generation: i32,
        offsets: Vec<OffsetCommit>,
    ) -> Result<()> {
        if offsets.is_empty() {
            return Ok(());
        }
        let request = CommitOffsetsRequest {
            group_id: self.group_id.clone(),
            member_id,
            generation,
            offsets: offsets
                .into_iter()
                .map(|o| PartitionOffset {
                    topic: o.topic.to_string(),
                    partition: o.partition,
                    offset: o.offset,
                    metadata: o.metadata,
                })
                .collect(),
        };
        on_coordinator(&self.client, &self.group_id, Duration::ZERO, |mut g| {
            let request = request.clone();
            async move { g.commit_offsets(request).await }
        })
        .await?;
        Ok(())
    }
}

impl Drop for Membership {
    fn drop(&mut self) {
        self.stop_heartbeat();
    }
}

/// How long a group call keeps looking for the group's coordinator (a
/// broker failover moves it) before it fails.
const COORDINATOR_SEARCH: Duration = Duration::from_secs(30);

/// Calls the coordinator of `group`; when the broker says it is not the
/// coordinator, cannot be reached or has not answered within
/// `request_timeout_ms` beyond `waits` (how long the call waits there by
/// design), refreshes metadata and calls the new one, for up to
/// [`COORDINATOR_SEARCH`].
pub(crate) async fn on_coordinator<T, F, Fut>(
    client: &Client,
    group: &str,
    waits: Duration,
    mut call: F,
) -> Result<T>
where
    F: FnMut(GroupsClient<Channel>) -> Fut,
    Fut: std::future::Future<Output = std::result::Result<tonic::Response<T>, tonic::Status>>,
{
    let deadline = tokio::time::Instant::now() + COORDINATOR_SEARCH;
    let mut backoff = Duration::from_millis(50);
    loop {
        let attempt = match client.coordinator(group).await {
            Ok(channel) => {
                client
                    .answer_within(waits, call(GroupsClient::new(channel)))
                    .await
            }
            Err(e) => Err(e),
        };
        match attempt {
            Err(e)
                if matches!(
                    e.code(),
                    ErrorCode::NotCoordinator | ErrorCode::Unavailable | ErrorCode::NotLeader
                ) && tokio::time::Instant::now() < deadline =>
            {
                tracing::debug!(error = %e, group, "looking for the group's coordinator again");
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(Duration::from_secs(1));
                refresh_coordinator(client).await;
            }
            other => return other,
        }
    }
}

/// Fresh metadata for `__consumer_offsets`, whose partition leaders are
/// the coordinators.
async fn refresh_coordinator(client: &Client) {
    if let Err(e) = client
        .refresh_metadata(&[crate::client::OFFSETS_TOPIC.to_string()])
        .await
    {
        tracing::debug!(error = %e, "metadata refresh failed");
    }
}

pub(crate) fn to_pb(tps: &BTreeSet<TopicPartition>) -> Vec<TopicPartitions> {
    let mut out: Vec<TopicPartitions> = Vec::new();
    for (t, p) in tps {
        match out.iter_mut().find(|x| *x.topic == **t) {
            Some(x) => x.partitions.push(*p),
            None => out.push(TopicPartitions {
                topic: t.to_string(),
                partitions: vec![*p],
            }),
        }
    }
    out
}
