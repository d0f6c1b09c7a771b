//! What admin tools ask about groups: ListGroups and DescribeGroups, from
//! the coordinator `eddy group list|describe` reads.
//!
//! Eddy's own groups (the coordinator assigns) are shown as consumer
//! groups too, protocol `consumer` with the assignor's name and each
//! member's assignment encoded as Kafka's consumer protocol, so Kafka's
//! tools can describe a pipeline's group and its lag.

use bytes::{BufMut, Bytes, BytesMut};
use eddy_broker::BrokerError;
use eddy_broker::api::{Assignor, GroupDescription, GroupMember};
use eddy_meta::{Operation, ResourceType};
use kafka_protocol::ResponseError;
use kafka_protocol::messages::consumer_protocol_assignment::TopicPartition;
use kafka_protocol::messages::describe_groups_request::DescribeGroupsRequest;
use kafka_protocol::messages::describe_groups_response::{
    DescribeGroupsResponse, DescribedGroup, DescribedGroupMember,
};
use kafka_protocol::messages::list_groups_request::ListGroupsRequest;
use kafka_protocol::messages::list_groups_response::{ListGroupsResponse, ListedGroup};
use kafka_protocol::messages::{ConsumerProtocolAssignment, GroupId, TopicName};
use kafka_protocol::protocol::{Encodable, StrBytes};

use crate::connection::Session;
use crate::{Shared, errors};

/// The protocol type Kafka's consumers use, and the one Eddy's own
/// groups are shown with.
const CONSUMER: &str = "consumer";
/// Every group here speaks the classic protocol (KIP-848's are `consumer`).
const CLASSIC: &str = "classic";

fn text(s: impl Into<String>) -> StrBytes {
    StrBytes::from_string(s.into())
}

pub(crate) async fn list_groups(
    request: ListGroupsRequest,
    version: i16,
    shared: &Shared,
    session: &Session,
) -> ListGroupsResponse {
    let groups = match shared.broker.list_groups().await {
        Ok(groups) => groups,
        Err(e) => return ListGroupsResponse::default().with_error_code(errors::code(&e)),
    };
    let wanted_state = |state: &str| {
        request.states_filter.is_empty()
            || request
                .states_filter
                .iter()
                .any(|s| s.eq_ignore_ascii_case(state))
    };
    let wanted_type = request.types_filter.is_empty()
        || request
            .types_filter
            .iter()
            .any(|t| t.eq_ignore_ascii_case(CLASSIC));
    let listed = groups
        .into_iter()
        .filter(|g| wanted_type && wanted_state(g.state))
        // A list shows only what the principal may describe, unaudited:
        // leaving a group out is not refusing a request.
        .filter(|g| {
            shared.broker.authorizer.allows(
                &session.principal,
                ResourceType::Group,
                &g.group_id,
                Operation::Describe,
            )
        })
        .map(|g| {
            let mut listed = ListedGroup::default()
                .with_group_id(GroupId(text(g.group_id)))
                .with_protocol_type(text(g.protocol_type.as_deref().unwrap_or(CONSUMER)));
            if version >= 4 {
                listed.group_state = text(g.state);
            }
            if version >= 5 {
                listed.group_type = text(CLASSIC);
            }
            listed
        })
        .collect();
    ListGroupsResponse::default().with_groups(listed)
}

pub(crate) async fn describe_groups(
    request: DescribeGroupsRequest,
    version: i16,
    shared: &Shared,
    session: &Session,
) -> DescribeGroupsResponse {
    let mut described = Vec::new();
    for group in request.groups {
        let id = group.0.to_string();
        let mut answer = describe(&id, shared, session)
            .await
            .with_group_id(group)
            .with_authorized_operations(i32::MIN);
        if version >= 3 && request.include_authorized_operations {
            answer.authorized_operations = session.authorized_operations(
                shared,
                ResourceType::Group,
                &id,
                &[Operation::Read, Operation::Describe, Operation::Delete],
            );
        }
        if version < 6 {
            answer.error_message = None;
        }
        described.push(answer);
    }
    DescribeGroupsResponse::default().with_groups(described)
}

async fn describe(id: &str, shared: &Shared, session: &Session) -> DescribedGroup {
    let failed = |error: i16, message: String| {
        DescribedGroup::default()
            .with_error_code(error)
            .with_error_message(Some(text(message)))
    };
    if !session.may(shared, ResourceType::Group, id, Operation::Describe) {
        return failed(
            ResponseError::GroupAuthorizationFailed.code(),
            format!("{} may not describe group {id:?}", session.principal),
        );
    }
    match shared.broker.describe_group(id).await {
        Ok(g) => described(g),
        // Kafka describes a group it does not know as Dead, not as an error.
        Err(BrokerError::UnknownGroup(_)) => {
            DescribedGroup::default().with_group_state(text("Dead"))
        }
        Err(e) => failed(errors::code(&e), e.to_string()),
    }
}

fn described(g: GroupDescription) -> DescribedGroup {
    let protocol = match (&g.protocol, g.assignor) {
        (Some(p), _) => p.clone(),
        (None, Some(a)) => assignor_name(a).to_string(),
        (None, None) => String::new(),
    };
    // Kafka shows a protocol only once the group settled on one.
    let protocol = if g.state == "Stable" || g.state == "CompletingRebalance" {
        protocol
    } else {
        String::new()
    };
    let server_assigned = g.protocol_type.is_none();
    let members = g
        .members
        .into_iter()
        .map(|m| member(m, server_assigned))
        .collect();
    DescribedGroup::default()
        .with_group_state(text(g.state))
        .with_protocol_type(text(g.protocol_type.unwrap_or_else(|| CONSUMER.into())))
        .with_protocol_data(text(protocol))
        .with_members(members)
}

fn member(m: GroupMember, server_assigned: bool) -> DescribedGroupMember {
    let assignment = if server_assigned {
        encode_assignment(&m)
    } else {
        m.encoded_assignment
    };
    DescribedGroupMember::default()
        .with_member_id(text(m.member_id))
        .with_client_id(text(m.client_id))
        .with_client_host(text(format!("/{}", m.client_host)))
        .with_member_metadata(m.metadata)
        .with_member_assignment(assignment)
}

/// The names Kafka's clients give these assignors.
fn assignor_name(a: Assignor) -> &'static str {
    match a {
        Assignor::Range => "range",
        Assignor::RoundRobin => "roundrobin",
        Assignor::CooperativeSticky => "cooperative-sticky",
    }
}

/// A server-assigned member's partitions as the consumer protocol's
/// assignment (version 0), which Kafka's admin clients decode.
fn encode_assignment(m: &GroupMember) -> Bytes {
    let mut topics: Vec<TopicPartition> = Vec::new();
    for tp in &m.assignment {
        let partition = tp.partition.0 as i32;
        match topics.iter_mut().find(|t| t.topic.0.as_str() == tp.topic) {
            Some(t) => t.partitions.push(partition),
            None => topics.push(
                TopicPartition::default()
                    .with_topic(TopicName(text(tp.topic.clone())))
                    .with_partitions(vec![partition]),
            ),
        }
    }
    let assignment = ConsumerProtocolAssignment::default().with_assigned_partitions(topics);
    let mut out = BytesMut::new();
    out.put_i16(0);
    match assignment.encode(&mut out, 0) {
        Ok(()) => out.freeze(),
        // Only an over-long string fails, which a topic name cannot be.
        Err(_) => Bytes::new(),
    }
}

#[cfg(test)]
mod tests {
    use eddy_broker::api::{PartitionId, TopicPartition as Tp};

    use super::*;
    use crate::groups::assigned_partitions;

    #[test]
    fn a_server_assigned_members_partitions_read_back_as_a_consumer_assignment() {
        let m = GroupMember {
            member_id: "m".into(),
            client_id: "c".into(),
            client_host: "127.0.0.1".into(),
            assignment: vec![
                Tp::new("a", PartitionId(0)),
                Tp::new("b", PartitionId(1)),
                Tp::new("a", PartitionId(2)),
            ],
            metadata: Bytes::new(),
            encoded_assignment: Bytes::new(),
        };
        let mut decoded = assigned_partitions(&encode_assignment(&m));
        decoded.sort();
        let mut expected = m.assignment.clone();
        expected.sort();
        assert_eq!(decoded, expected);
    }
}
