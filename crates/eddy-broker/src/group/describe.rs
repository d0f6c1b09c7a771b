//! What `ListGroups` and `DescribeGroup` answer: state, members,
//! assignments and, per partition, the committed offset and lag.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use bytes::Bytes;
use eddy_log::Offset;

use super::assignor::Tp;
use super::to_api;
use crate::api::{
    GroupDescription, GroupMember, GroupSummary, PartitionId, PartitionLag, TopicPartition,
};
use crate::broker::Broker;
use crate::error::BrokerError;

impl Broker {
    /// The groups this broker coordinates (a cluster's client asks every broker).
    pub async fn list_groups(self: &Arc<Self>) -> Result<Vec<GroupSummary>, BrokerError> {
        self.groups_loaded().await?;
        let groups = self.groups.groups.lock();
        let offsets = self.groups.offsets.lock();
        let ids: BTreeSet<&String> = groups.keys().chain(offsets.keys()).collect();
        let groups = ids
            .into_iter()
            .map(|id| {
                let g = groups.get(id);
                GroupSummary {
                    group_id: id.clone(),
                    protocol_type: g
                        .and_then(|g| g.client.as_ref())
                        .map(|c| c.protocol_type.clone()),
                    state: g.map_or("Empty", |g| g.state.name()),
                    members: g.map_or(0, |g| g.members.len() as u32),
                }
            })
            .collect();
        Ok(groups)
    }

    pub async fn describe_group(
        self: &Arc<Self>,
        group_id: &str,
    ) -> Result<GroupDescription, BrokerError> {
        self.coordinate(group_id).await?;
        let (mut resp, owners) = {
            let groups = self.groups.groups.lock();
            let offsets = self.groups.offsets.lock();
            let g = groups.get(group_id);
            if g.is_none() && !offsets.contains_key(group_id) {
                return Err(BrokerError::UnknownGroup(group_id.to_string()));
            }
            let mut owners: BTreeMap<Tp, (String, Option<Offset>)> = BTreeMap::new();
            for (tp, c) in offsets.get(group_id).into_iter().flatten() {
                owners.insert(tp.clone(), (String::new(), Some(c.offset)));
            }
            let members = g.map_or(Vec::new(), |g| {
                g.members
                    .iter()
                    .map(|(id, m)| {
                        for tp in &m.assignment {
                            owners.entry(tp.clone()).or_insert((String::new(), None)).0 =
                                id.clone();
                        }
                        let metadata = g
                            .client
                            .as_ref()
                            .and_then(|c| c.protocol.as_ref())
                            .and_then(|chosen| m.protocols.iter().find(|(p, _)| p == chosen))
                            .map_or_else(Bytes::new, |(_, metadata)| metadata.clone());
                        GroupMember {
                            member_id: id.clone(),
                            client_id: m.client_id.clone(),
                            client_host: m.client_host.clone(),
                            assignment: to_api(&m.assignment),
                            metadata,
                            encoded_assignment: m.encoded_assignment.clone(),
                        }
                    })
                    .collect()
            });
            let resp = GroupDescription {
                group_id: group_id.to_string(),
                state: g.map_or("Empty", |g| g.state.name()),
                generation: g.map_or(0, |g| g.generation),
                assignor: g.and_then(|g| g.strategy),
                protocol_type: g
                    .and_then(|g| g.client.as_ref())
                    .map(|c| c.protocol_type.clone()),
                protocol: g
                    .and_then(|g| g.client.as_ref())
                    .and_then(|c| c.protocol.clone()),
                members,
                partitions: Vec::new(),
            };
            (resp, owners)
        };
        for ((topic, partition), (owner, committed)) in owners {
            let partition = PartitionId(partition);
            let (start, end) = match self
                .topics
                .get(&topic)
                .and_then(|t| t.partition(partition).map(|p| p.offsets()))
            {
                Ok(o) => (o.log_start, o.high_watermark),
                Err(_) => (Offset(0), Offset(0)),
            };
            resp.partitions.push(PartitionLag {
                partition: TopicPartition::new(topic, partition),
                committed,
                log_end: end,
                lag: end
                    .0
                    .saturating_sub(committed.unwrap_or(start).max(start).0),
                owner,
            });
        }
        Ok(resp)
    }
}
