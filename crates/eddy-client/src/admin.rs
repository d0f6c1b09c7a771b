//! Topic administration.

use std::collections::HashMap;
use std::time::Duration;

use eddy_proto::v1::{
    CommitOffsetsRequest, CreatePartitionsRequest, CreateTopicRequest, DeleteGroupRequest,
    DeleteTopicRequest, DescribeGroupRequest, DescribeGroupResponse, DescribeTopicRequest,
    GroupSummary, ListGroupsRequest, ListTopicsRequest, PartitionOffset, TopicDescription,
    TopicSummary, admin_client::AdminClient, groups_client::GroupsClient,
};

use crate::client::Client;
use crate::error::{ClientError, Result};
use crate::group::on_coordinator;

/// How long `describe_topic` waits for a partition leader's figures.
const LEADER_ANSWER_TIMEOUT: Duration = Duration::from_secs(2);

/// A topic to create.
#[derive(Debug, Clone, Default)]
pub struct NewTopic {
    pub name: String,
    /// 0: the broker's default.
    pub partitions: u32,
    /// 0: the broker's default.
    pub replication_factor: u32,
    pub configs: HashMap<String, String>,
}

/// Topic administration over a [`Client`].
#[derive(Debug, Clone)]
pub struct Admin {
    client: Client,
}

impl Admin {
    pub fn new(client: Client) -> Admin {
        Admin { client }
    }

    pub async fn create_topic(&self, topic: NewTopic) -> Result<TopicDescription> {
        let req = CreateTopicRequest {
            name: topic.name,
            partitions: topic.partitions,
            replication_factor: topic.replication_factor,
            configs: topic.configs,
        };
        self.client
            .on_any_broker(|c| {
                let req = req.clone();
                async move { self.client.admin(c).create_topic(req).await }
            })
            .await
    }

    pub async fn list_topics(&self, include_internal: bool) -> Result<Vec<TopicSummary>> {
        let req = ListTopicsRequest { include_internal };
        Ok(self
            .client
            .on_any_broker(|c| async move { self.client.admin(c).list_topics(req).await })
            .await?
            .topics)
    }

    /// A topic's partitions, leaders and ISR as the metadata has them, with
    /// each partition's offsets as its leader reports them (a follower's
    /// lag behind). A leader that cannot be reached leaves the bootstrap
    /// broker's own figures in place.
    pub async fn describe_topic(&self, name: &str) -> Result<TopicDescription> {
        let req = DescribeTopicRequest {
            name: name.to_string(),
        };
        let mut described = self
            .client
            .on_any_broker(|c| {
                let req = req.clone();
                async move { self.client.admin(c).describe_topic(req).await }
            })
            .await?;
        let metadata = self.client.cluster_metadata().await?;
        let bootstrap = self.client.bootstrap_address().to_string();
        let mut leaders: Vec<i32> = described.partitions.iter().map(|p| p.leader).collect();
        leaders.sort();
        leaders.dedup();
        for leader in leaders {
            let Some(address) = metadata
                .brokers
                .iter()
                .find(|b| b.node_id == leader)
                .map(|b| b.address.clone())
                .filter(|a| *a != bootstrap)
            else {
                continue;
            };
            // A leader that does not answer soon (paused, dead) keeps
            // the bootstrap broker's figures.
            // A connection to a broker that restarted fails its first
            // call and reconnects: so one more try.
            let ask = async {
                let channel = self.client.channel_to(&address).await.ok()?;
                for _ in 0..2 {
                    let answer = AdminClient::new(channel.clone())
                        .describe_topic(req.clone())
                        .await;
                    if let Ok(answer) = answer {
                        return Some(answer.into_inner());
                    }
                }
                None
            };
            let Ok(Some(theirs)) = tokio::time::timeout(LEADER_ANSWER_TIMEOUT, ask).await else {
                continue;
            };
            for p in described
                .partitions
                .iter_mut()
                .filter(|p| p.leader == leader)
            {
                if let Some(t) = theirs
                    .partitions
                    .iter()
                    .find(|t| t.partition == p.partition)
                {
                    p.log_start_offset = t.log_start_offset;
                    p.high_watermark = t.high_watermark;
                    p.log_end_offset = t.log_end_offset;
                    p.size_bytes = t.size_bytes;
                }
            }
        }
        Ok(described)
    }

    pub async fn create_partitions(&self, name: &str, total: u32) -> Result<TopicDescription> {
        let req = CreatePartitionsRequest {
            name: name.to_string(),
            total,
        };
        self.client
            .on_any_broker(|c| {
                let req = req.clone();
                async move { self.client.admin(c).create_partitions(req).await }
            })
            .await
    }

    /// Every group of the cluster: each broker lists those it coordinates.
    /// A broker that does not answer soon is left out; an error only when
    /// none answers.
    pub async fn list_groups(&self) -> Result<Vec<GroupSummary>> {
        let metadata = self.client.cluster_metadata().await?;
        let mut addresses: Vec<&str> = metadata
            .brokers
            .iter()
            .map(|b| b.address.as_str())
            .collect();
        addresses.push(self.client.bootstrap_address());
        addresses.sort_unstable();
        addresses.dedup();
        let mut groups: Vec<GroupSummary> = Vec::new();
        let mut answered = false;
        let mut last = None;
        for address in addresses {
            let ask = async {
                let channel = self.client.channel_to(address).await?;
                let answer = GroupsClient::new(channel)
                    .list_groups(ListGroupsRequest {})
                    .await?;
                Ok::<_, ClientError>(answer.into_inner().groups)
            };
            match tokio::time::timeout(LEADER_ANSWER_TIMEOUT, ask).await {
                Ok(Ok(theirs)) => {
                    answered = true;
                    groups.extend(theirs);
                }
                Ok(Err(e)) => last = Some(e),
                Err(_) => {
                    last = Some(ClientError::Connect {
                        address: address.to_string(),
                        reason: format!("no answer within {LEADER_ANSWER_TIMEOUT:?}"),
                    })
                }
            }
        }
        if !answered && let Some(e) = last {
            return Err(e);
        }
        groups.sort_by(|a, b| a.group_id.cmp(&b.group_id));
        groups.dedup_by(|a, b| a.group_id == b.group_id);
        Ok(groups)
    }

    pub async fn describe_group(&self, group: &str) -> Result<DescribeGroupResponse> {
        let req = DescribeGroupRequest {
            group_id: group.to_string(),
        };
        on_coordinator(&self.client, group, Duration::ZERO, |mut g| {
            let req = req.clone();
            async move { g.describe_group(req).await }
        })
        .await
    }

    /// Deletes a group and its committed offsets; refused while it has
    /// members.
    pub async fn delete_group(&self, group: &str) -> Result<()> {
        let req = DeleteGroupRequest {
            group_id: group.to_string(),
        };
        on_coordinator(&self.client, group, Duration::ZERO, |mut g| {
            let req = req.clone();
            async move { g.delete_group(req).await }
        })
        .await?;
        Ok(())
    }

    /// Sets a group's committed offsets; refused while the group has members.
    pub async fn set_group_offsets(
        &self,
        group: &str,
        offsets: Vec<(String, u32, u64)>,
    ) -> Result<()> {
        let req = CommitOffsetsRequest {
            group_id: group.to_string(),
            member_id: String::new(),
            generation: -1,
            offsets: offsets
                .into_iter()
                .map(|(topic, partition, offset)| PartitionOffset {
                    topic,
                    partition,
                    offset,
                    metadata: Default::default(),
                })
                .collect(),
        };
        on_coordinator(&self.client, group, Duration::ZERO, |mut g| {
            let req = req.clone();
            async move { g.commit_offsets(req).await }
        })
        .await?;
        Ok(())
    }

    pub async fn delete_topic(&self, name: &str) -> Result<()> {
        let req = DeleteTopicRequest {
            name: name.to_string(),
        };
        self.client
            .on_any_broker(|c| {
                let req = req.clone();
                async move { self.client.admin(c).delete_topic(req).await }
            })
            .await?;
        Ok(())
    }
}
