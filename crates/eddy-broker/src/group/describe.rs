//! What `ListGroups` and `DescribeGroup` answer: state, members,
//! assignments and, per partition, the committed offset and lag.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use eddy_proto::v1 as pb;

use super::assignor::Tp;
use super::{strategy_pb, to_pb};
use crate::broker::Broker;
use crate::error::BrokerError;

impl Broker {
    /// The groups this broker coordinates (a cluster's client asks every broker).
    pub async fn list_groups(self: &Arc<Self>) -> Result<pb::ListGroupsResponse, BrokerError> {
        self.groups_loaded().await?;
        let groups = self.groups.groups.lock();
        let offsets = self.groups.offsets.lock();
        let ids: BTreeSet<&String> = groups.keys().chain(offsets.keys()).collect();
        let groups = ids
            .into_iter()
            .map(|id| {
                let g = groups.get(id);
                pb::GroupSummary {
                    group_id: id.clone(),
                    state: g.map_or("Empty", |g| g.state.name()).to_string(),
                    members: g.map_or(0, |g| g.members.len() as u32),
                }
            })
            .collect();
        Ok(pb::ListGroupsResponse { groups })
    }

    pub async fn describe_group(
        self: &Arc<Self>,
        req: pb::DescribeGroupRequest,
    ) -> Result<pb::DescribeGroupResponse, BrokerError> {
        self.coordinate(&req.group_id).await?;
        let (mut resp, owners) = {
            let groups = self.groups.groups.lock();
            let offsets = self.groups.offsets.lock();
            let g = groups.get(&req.group_id);
            if g.is_none() && !offsets.contains_key(&req.group_id) {
                return Err(BrokerError::UnknownGroup(req.group_id.clone()));
            }
            let mut owners: BTreeMap<Tp, (String, Option<u64>)> = BTreeMap::new();
            for (tp, c) in offsets.get(&req.group_id).into_iter().flatten() {
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
                        pb::GroupMember {
                            member_id: id.clone(),
                            client_id: m.client_id.clone(),
                            assignment: to_pb(&m.assignment),
                        }
                    })
                    .collect()
            });
            let resp = pb::DescribeGroupResponse {
                group_id: req.group_id.clone(),
                state: g.map_or("Empty", |g| g.state.name()).to_string(),
                generation: g.map_or(0, |g| g.generation),
                assignor: strategy_pb(g.and_then(|g| g.strategy)) as i32,
                members,
                partitions: Vec::new(),
            };
            (resp, owners)
        };
        for ((topic, partition), (owner, committed)) in owners {
            let (start, end) = match self
                .topics
                .get(&topic)
                .and_then(|t| t.partition(partition).map(|p| p.offsets()))
            {
                Ok(o) => (o.log_start.0, o.high_watermark.0),
                Err(_) => (0, 0),
            };
            resp.partitions.push(pb::PartitionLag {
                topic,
                partition,
                committed,
                log_end: end,
                lag: end.saturating_sub(committed.unwrap_or(start).max(start)),
                owner,
            });
        }
        Ok(resp)
    }
}
