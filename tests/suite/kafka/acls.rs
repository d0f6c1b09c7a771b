//! Every API the Kafka listener advertises, sent as a raw request by a
//! user signed in with SASL who has no ACL, then with exactly the ACL its
//! handler checks: refused first (or, for a list, shown nothing), let
//! through second. An API added to the listener without a case here
//! fails the test, as an RPC without a rule fails `security::rpcs`.

use std::collections::BTreeMap;

use bytes::Bytes;
use eddy_log::{BatchBuilder, RecordRef, Timestamp};
use eddy_tests::secured::{ADMIN, PASSWORD, SecuredBroker};
use kafka_protocol::messages::api_versions_request::ApiVersionsRequest;
use kafka_protocol::messages::create_partitions_request::{
    CreatePartitionsRequest, CreatePartitionsTopic,
};
use kafka_protocol::messages::create_topics_request::{CreatableTopic, CreateTopicsRequest};
use kafka_protocol::messages::delete_topics_request::DeleteTopicsRequest;
use kafka_protocol::messages::describe_cluster_request::DescribeClusterRequest;
use kafka_protocol::messages::describe_configs_request::{
    DescribeConfigsRequest, DescribeConfigsResource,
};
use kafka_protocol::messages::describe_groups_request::DescribeGroupsRequest;
use kafka_protocol::messages::fetch_request::{FetchPartition, FetchRequest, FetchTopic};
use kafka_protocol::messages::find_coordinator_request::FindCoordinatorRequest;
use kafka_protocol::messages::heartbeat_request::HeartbeatRequest;
use kafka_protocol::messages::init_producer_id_request::InitProducerIdRequest;
use kafka_protocol::messages::join_group_request::{JoinGroupRequest, JoinGroupRequestProtocol};
use kafka_protocol::messages::leave_group_request::{LeaveGroupRequest, MemberIdentity};
use kafka_protocol::messages::list_groups_request::ListGroupsRequest;
use kafka_protocol::messages::list_offsets_request::{
    ListOffsetsPartition, ListOffsetsRequest, ListOffsetsTopic,
};
use kafka_protocol::messages::metadata_request::{MetadataRequest, MetadataRequestTopic};
use kafka_protocol::messages::offset_commit_request::{
    OffsetCommitRequest, OffsetCommitRequestPartition, OffsetCommitRequestTopic,
};
use kafka_protocol::messages::offset_fetch_request::{OffsetFetchRequest, OffsetFetchRequestTopic};
use kafka_protocol::messages::offset_for_leader_epoch_request::{
    OffsetForLeaderEpochRequest, OffsetForLeaderPartition, OffsetForLeaderTopic,
};
use kafka_protocol::messages::produce_request::{
    PartitionProduceData, ProduceRequest, TopicProduceData,
};
use kafka_protocol::messages::sync_group_request::SyncGroupRequest;
use kafka_protocol::messages::{ApiKey, GroupId, RequestKind, ResponseKind};

use super::kafka_addr;
use super::raw::{Raw, api_key, text, topic_name};

const TOPIC: &str = "guarded";
const USER: &str = "kafka-user";
const GROUP: &str = "guarded-group";

/// One record batch for Produce.
fn batch() -> Bytes {
    let mut b = BatchBuilder::new();
    b.push(&RecordRef {
        timestamp: Timestamp(1),
        key: None,
        value: Some(b"forged"),
        headers: &[],
    });
    Bytes::from(b.finish().unwrap())
}

/// What one API is asked, the ACL that lets it through (`eddy acl add`
/// arguments; `None`: answered to anyone) and the error codes in its
/// answer: all refusals without the ACL, none with it.
struct Case {
    request: RequestKind,
    grant: Option<&'static [&'static str]>,
    codes: fn(&ResponseKind) -> Vec<i16>,
}

const TOPIC_AUTHORIZATION_FAILED: i16 = 29;
const GROUP_AUTHORIZATION_FAILED: i16 = 30;
const CLUSTER_AUTHORIZATION_FAILED: i16 = 31;
const REFUSALS: [i16; 3] = [
    TOPIC_AUTHORIZATION_FAILED,
    GROUP_AUTHORIZATION_FAILED,
    CLUSTER_AUTHORIZATION_FAILED,
];

fn cases() -> Vec<Case> {
    let group = || GroupId(text(GROUP));
    vec![
        Case {
            request: RequestKind::Metadata(MetadataRequest::default().with_topics(Some(vec![
                MetadataRequestTopic::default().with_name(Some(topic_name(TOPIC))),
            ]))),
            grant: Some(&["--operation", "describe", "--topic", TOPIC]),
            codes: |r| match r {
                ResponseKind::Metadata(m) => m.topics.iter().map(|t| t.error_code).collect(),
                _ => unreachable!(),
            },
        },
        Case {
            request: RequestKind::Produce(
                ProduceRequest::default()
                    .with_acks(-1)
                    .with_timeout_ms(5000)
                    .with_topic_data(vec![
                        TopicProduceData::default()
                            .with_name(topic_name(TOPIC))
                            .with_partition_data(vec![
                                PartitionProduceData::default()
                                    .with_index(0)
                                    .with_records(Some(batch())),
                            ]),
                    ]),
            ),
            grant: Some(&["--operation", "write", "--topic", TOPIC]),
            codes: |r| match r {
                ResponseKind::Produce(p) => p
                    .responses
                    .iter()
                    .flat_map(|t| t.partition_responses.iter().map(|p| p.error_code))
                    .collect(),
                _ => unreachable!(),
            },
        },
        Case {
            request: RequestKind::Fetch(
                FetchRequest::default()
                    .with_max_wait_ms(0)
                    .with_max_bytes(1 << 20)
                    .with_topics(vec![
                        FetchTopic::default()
                            .with_topic(topic_name(TOPIC))
                            .with_partitions(vec![
                                FetchPartition::default()
                                    .with_partition(0)
                                    .with_fetch_offset(0)
                                    .with_partition_max_bytes(1 << 20),
                            ]),
                    ]),
            ),
            grant: Some(&["--operation", "read", "--topic", TOPIC]),
            codes: |r| match r {
                ResponseKind::Fetch(f) => f
                    .responses
                    .iter()
                    .flat_map(|t| t.partitions.iter().map(|p| p.error_code))
                    .collect(),
                _ => unreachable!(),
            },
        },
        Case {
            request: RequestKind::ListOffsets(ListOffsetsRequest::default().with_topics(vec![
                ListOffsetsTopic::default()
                    .with_name(topic_name(TOPIC))
                    .with_partitions(vec![
                        ListOffsetsPartition::default()
                            .with_partition_index(0)
                            .with_timestamp(-1),
                    ]),
            ])),
            grant: Some(&["--operation", "describe", "--topic", TOPIC]),
            codes: |r| match r {
                ResponseKind::ListOffsets(l) => l
                    .topics
                    .iter()
                    .flat_map(|t| t.partitions.iter().map(|p| p.error_code))
                    .collect(),
                _ => unreachable!(),
            },
        },
        Case {
            request: RequestKind::OffsetForLeaderEpoch(
                OffsetForLeaderEpochRequest::default().with_topics(vec![
                    OffsetForLeaderTopic::default()
                        .with_topic(topic_name(TOPIC))
                        .with_partitions(vec![
                            OffsetForLeaderPartition::default()
                                .with_partition(0)
                                .with_current_leader_epoch(-1)
                                .with_leader_epoch(0),
                        ]),
                ]),
            ),
            grant: Some(&["--operation", "describe", "--topic", TOPIC]),
            codes: |r| match r {
                ResponseKind::OffsetForLeaderEpoch(o) => o
                    .topics
                    .iter()
                    .flat_map(|t| t.partitions.iter().map(|p| p.error_code))
                    .collect(),
                _ => unreachable!(),
            },
        },
        Case {
            request: RequestKind::FindCoordinator(
                FindCoordinatorRequest::default().with_coordinator_keys(vec![text(GROUP)]),
            ),
            grant: Some(&["--operation", "describe", "--group", GROUP]),
            codes: |r| match r {
                ResponseKind::FindCoordinator(f) => {
                    f.coordinators.iter().map(|c| c.error_code).collect()
                }
                _ => unreachable!(),
            },
        },
        Case {
            request: RequestKind::JoinGroup(
                JoinGroupRequest::default()
                    .with_group_id(group())
                    .with_session_timeout_ms(10_000)
                    .with_rebalance_timeout_ms(10_000)
                    .with_member_id(text("unknown-member"))
                    .with_protocol_type(text("consumer"))
                    .with_protocols(vec![
                        JoinGroupRequestProtocol::default()
                            .with_name(text("range"))
                            .with_metadata(Bytes::new()),
                    ]),
            ),
            grant: Some(&["--operation", "read", "--group", GROUP]),
            codes: |r| match r {
                ResponseKind::JoinGroup(j) => vec![j.error_code],
                _ => unreachable!(),
            },
        },
        Case {
            request: RequestKind::SyncGroup(
                SyncGroupRequest::default()
                    .with_group_id(group())
                    .with_generation_id(1)
                    .with_member_id(text("unknown-member")),
            ),
            grant: Some(&["--operation", "read", "--group", GROUP]),
            codes: |r| match r {
                ResponseKind::SyncGroup(s) => vec![s.error_code],
                _ => unreachable!(),
            },
        },
        Case {
            request: RequestKind::Heartbeat(
                HeartbeatRequest::default()
                    .with_group_id(group())
                    .with_generation_id(1)
                    .with_member_id(text("unknown-member")),
            ),
            grant: Some(&["--operation", "read", "--group", GROUP]),
            codes: |r| match r {
                ResponseKind::Heartbeat(h) => vec![h.error_code],
                _ => unreachable!(),
            },
        },
        Case {
            request: RequestKind::LeaveGroup(
                LeaveGroupRequest::default()
                    .with_group_id(group())
                    .with_members(vec![
                        MemberIdentity::default().with_member_id(text("unknown-member")),
                    ]),
            ),
            grant: Some(&["--operation", "read", "--group", GROUP]),
            codes: |r| match r {
                ResponseKind::LeaveGroup(l) => vec![l.error_code],
                _ => unreachable!(),
            },
        },
        Case {
            // Committing needs read on the group and on each topic.
            request: RequestKind::OffsetCommit(
                OffsetCommitRequest::default()
                    .with_group_id(group())
                    .with_generation_id_or_member_epoch(-1)
                    .with_topics(vec![
                        OffsetCommitRequestTopic::default()
                            .with_name(topic_name(TOPIC))
                            .with_partitions(vec![
                                OffsetCommitRequestPartition::default()
                                    .with_partition_index(0)
                                    .with_committed_offset(0),
                            ]),
                    ]),
            ),
            grant: Some(&["--operation", "read", "--group", GROUP, "--topic", TOPIC]),
            codes: |r| match r {
                ResponseKind::OffsetCommit(o) => o
                    .topics
                    .iter()
                    .flat_map(|t| t.partitions.iter().map(|p| p.error_code))
                    .collect(),
                _ => unreachable!(),
            },
        },
        Case {
            request: RequestKind::OffsetFetch(
                OffsetFetchRequest::default()
                    .with_group_id(group())
                    .with_topics(Some(vec![
                        OffsetFetchRequestTopic::default()
                            .with_name(topic_name(TOPIC))
                            .with_partition_indexes(vec![0]),
                    ])),
            ),
            grant: Some(&[
                "--operation",
                "describe",
                "--group",
                GROUP,
                "--topic",
                TOPIC,
            ]),
            codes: |r| match r {
                ResponseKind::OffsetFetch(o) => {
                    let mut codes = vec![o.error_code];
                    codes.extend(
                        o.topics
                            .iter()
                            .flat_map(|t| t.partitions.iter().map(|p| p.error_code)),
                    );
                    codes
                }
                _ => unreachable!(),
            },
        },
        Case {
            // An idempotent producer may write to some topic.
            request: RequestKind::InitProducerId(
                InitProducerIdRequest::default()
                    .with_transactional_id(None)
                    .with_transaction_timeout_ms(60_000),
            ),
            grant: Some(&["--operation", "write", "--topic", TOPIC]),
            codes: |r| match r {
                ResponseKind::InitProducerId(i) => vec![i.error_code],
                _ => unreachable!(),
            },
        },
        Case {
            request: RequestKind::CreateTopics(
                CreateTopicsRequest::default()
                    .with_timeout_ms(10_000)
                    .with_topics(vec![
                        CreatableTopic::default()
                            .with_name(topic_name("made-by-anonymous"))
                            .with_num_partitions(1)
                            .with_replication_factor(1),
                    ]),
            ),
            grant: Some(&["--operation", "create", "--topic", "made-by-anonymous"]),
            codes: |r| match r {
                ResponseKind::CreateTopics(c) => c.topics.iter().map(|t| t.error_code).collect(),
                _ => unreachable!(),
            },
        },
        Case {
            request: RequestKind::DeleteTopics(
                DeleteTopicsRequest::default()
                    .with_timeout_ms(10_000)
                    .with_topic_names(vec![topic_name("doomed")]),
            ),
            grant: Some(&["--operation", "delete", "--topic", "doomed"]),
            codes: |r| match r {
                ResponseKind::DeleteTopics(d) => d.responses.iter().map(|t| t.error_code).collect(),
                _ => unreachable!(),
            },
        },
        Case {
            request: RequestKind::CreatePartitions(
                CreatePartitionsRequest::default()
                    .with_timeout_ms(10_000)
                    .with_topics(vec![
                        CreatePartitionsTopic::default()
                            .with_name(topic_name(TOPIC))
                            .with_count(2),
                    ]),
            ),
            grant: Some(&["--operation", "alter", "--topic", TOPIC]),
            codes: |r| match r {
                ResponseKind::CreatePartitions(c) => {
                    c.results.iter().map(|t| t.error_code).collect()
                }
                _ => unreachable!(),
            },
        },
        Case {
            request: RequestKind::DescribeConfigs(
                DescribeConfigsRequest::default().with_resources(vec![
                    DescribeConfigsResource::default()
                        .with_resource_type(2)
                        .with_resource_name(text(TOPIC)),
                    DescribeConfigsResource::default()
                        .with_resource_type(4)
                        .with_resource_name(text("")),
                ]),
            ),
            grant: Some(&["--operation", "describe", "--topic", TOPIC, "--cluster"]),
            codes: |r| match r {
                ResponseKind::DescribeConfigs(d) => {
                    d.results.iter().map(|t| t.error_code).collect()
                }
                _ => unreachable!(),
            },
        },
        Case {
            request: RequestKind::DescribeGroups(
                DescribeGroupsRequest::default().with_groups(vec![group()]),
            ),
            grant: Some(&["--operation", "describe", "--group", GROUP]),
            codes: |r| match r {
                ResponseKind::DescribeGroups(d) => d.groups.iter().map(|g| g.error_code).collect(),
                _ => unreachable!(),
            },
        },
        Case {
            // A list: what may not be described is left out, not refused.
            request: RequestKind::ListGroups(ListGroupsRequest::default()),
            grant: Some(&["--operation", "describe", "--group", GROUP]),
            codes: |r| match r {
                ResponseKind::ListGroups(l) => {
                    let shown = l.groups.iter().any(|g| g.group_id.as_str() == GROUP);
                    vec![if shown {
                        l.error_code
                    } else {
                        GROUP_AUTHORIZATION_FAILED
                    }]
                }
                _ => unreachable!(),
            },
        },
        Case {
            // The brokers are public, as Metadata's broker list is.
            request: RequestKind::DescribeCluster(
                DescribeClusterRequest::default().with_endpoint_type(1),
            ),
            grant: None,
            codes: |r| match r {
                ResponseKind::DescribeCluster(d) => vec![d.error_code],
                _ => unreachable!(),
            },
        },
        Case {
            request: RequestKind::ApiVersions(ApiVersionsRequest::default()),
            grant: None,
            codes: |r| match r {
                ResponseKind::ApiVersions(a) => vec![a.error_code],
                _ => unreachable!(),
            },
        },
    ]
}

/// `--operation X --topic A --group B` as one ACL per resource.
fn acls(grant: &[&'static str]) -> Vec<Vec<&'static str>> {
    let operation = grant[1];
    let mut out = Vec::new();
    let mut rest = &grant[2..];
    while let Some((&flag, tail)) = rest.split_first() {
        let mut acl = vec!["--allow", "User:kafka-user", "--operation", operation, flag];
        if flag == "--cluster" {
            rest = tail;
        } else {
            acl.push(tail[0]);
            rest = &tail[1..];
        }
        out.push(acl);
    }
    out
}

#[test]
fn every_kafka_api_is_refused_without_its_acl_and_answered_with_it() {
    let s = SecuredBroker::start(&["--kafka-listen", "127.0.0.1:0"]);
    let kafka = kafka_addr(&s.broker).to_string();
    s.as_cluster_ok(&["topic", "create", TOPIC, "-p", "1"], b"");
    s.as_cluster_ok(&["topic", "create", "doomed", "-p", "1"], b"");
    s.as_cluster_ok(&["produce", TOPIC], b"classified\n");
    // The group exists (it has committed offsets), so lists could show it.
    s.as_cluster_ok(
        &[
            "group",
            "reset-offsets",
            GROUP,
            "--topic",
            TOPIC,
            "--to-earliest",
        ],
        b"",
    );

    s.create_user(USER);
    let mut raw = Raw::connect(&kafka);
    raw.sign_in(USER, PASSWORD);
    let ResponseKind::ApiVersions(versions) =
        raw.send(&RequestKind::ApiVersions(ApiVersionsRequest::default()), 0)
    else {
        unreachable!()
    };
    let advertised: BTreeMap<i16, i16> = versions
        .api_keys
        .iter()
        .map(|a| (a.api_key, a.max_version))
        .collect();
    let cases = cases();
    // Signing in is answered to anyone, and was done above.
    let mut covered = vec![
        ApiKey::SaslHandshake as i16,
        ApiKey::SaslAuthenticate as i16,
    ];
    covered.extend(cases.iter().map(|c| api_key(&c.request) as i16));
    let uncovered: Vec<i16> = advertised
        .keys()
        .filter(|k| !covered.contains(k))
        .copied()
        .collect();
    assert!(
        uncovered.is_empty(),
        "advertised APIs without an authorization case: {uncovered:?}"
    );

    let mut failures = Vec::new();
    for case in &cases {
        let api = api_key(&case.request);
        let version = advertised[&(api as i16)];
        let refused = |codes: &[i16]| codes.iter().any(|c| REFUSALS.contains(c));
        let codes = (case.codes)(&raw.send(&case.request, version));
        let Some(grant) = case.grant else {
            if refused(&codes) || codes.iter().any(|c| *c != 0) {
                failures.push(format!("{api:?} v{version} is public, yet: {codes:?}"));
            }
            continue;
        };
        // Every part of the answer refused (a request naming a topic and
        // the cluster needs both rights).
        if codes.is_empty() || !codes.iter().all(|c| REFUSALS.contains(c)) {
            failures.push(format!(
                "{api:?} v{version} without an ACL was not refused: {codes:?}"
            ));
        }
        let acls = acls(grant);
        for acl in &acls {
            s.grant(acl);
        }
        let codes = (case.codes)(&raw.send(&case.request, version));
        if refused(&codes) {
            failures.push(format!(
                "{api:?} v{version} with {grant:?} was refused: {codes:?}"
            ));
        }
        for acl in &acls {
            let mut remove = vec!["acl", "remove"];
            remove.extend(acl);
            s.as_user_ok(ADMIN, &remove, b"");
        }
    }
    assert!(failures.is_empty(), "{failures:#?}");
    // Nothing the anonymous client was refused happened.
    assert_eq!(
        s.as_cluster_ok(
            &[
                "consume",
                TOPIC,
                "--from-beginning",
                "--idle-timeout-ms",
                "500"
            ],
            b""
        ),
        "classified\nforged\n",
        "only the produce let through wrote"
    );
}

/// A produce quota holds a Kafka client back as Kafka's brokers do: past
/// a second's worth, the answer says how long (`throttle_time_ms`) and
/// the connection reads nothing more for that long.
#[test]
fn a_kafka_producer_past_its_quota_is_told_and_muted() {
    use std::time::{Duration, Instant};

    let s = SecuredBroker::start(&["--kafka-listen", "127.0.0.1:0"]);
    s.as_cluster_ok(&["topic", "create", TOPIC, "-p", "1"], b"");
    s.create_user(USER);
    s.grant(&[
        "--allow",
        "User:kafka-user",
        "--operation",
        "write",
        "--topic",
        TOPIC,
    ]);
    s.as_user_ok(
        ADMIN,
        &[
            "quota",
            "set",
            "User:kafka-user",
            "--produce-bytes-per-sec",
            "100000",
        ],
        b"",
    );
    let mut raw = Raw::connect(kafka_addr(&s.broker));
    raw.sign_in(USER, PASSWORD);
    let value = vec![b'q'; 99_000];
    let produce = || {
        let mut b = BatchBuilder::new();
        b.push(&RecordRef {
            timestamp: Timestamp(1),
            key: None,
            value: Some(&value),
            headers: &[],
        });
        RequestKind::Produce(
            ProduceRequest::default()
                .with_acks(1)
                .with_timeout_ms(5000)
                .with_topic_data(vec![
                    TopicProduceData::default()
                        .with_name(topic_name(TOPIC))
                        .with_partition_data(vec![
                            PartitionProduceData::default()
                                .with_index(0)
                                .with_records(Some(Bytes::from(b.finish().unwrap()))),
                        ]),
                ]),
        )
    };
    let throttle = |r: ResponseKind| match r {
        ResponseKind::Produce(p) => {
            assert_eq!(p.responses[0].partition_responses[0].error_code, 0);
            p.throttle_time_ms
        }
        _ => unreachable!(),
    };
    // The first second's worth passes untouched.
    assert_eq!(throttle(raw.send(&produce(), 9)), 0);
    // The next is a second over: told, then muted.
    let told = throttle(raw.send(&produce(), 9));
    assert!((500..=1500).contains(&told), "throttle_time_ms {told}");
    let asked = Instant::now();
    let next = throttle(raw.send(&produce(), 9));
    let waited = asked.elapsed();
    assert!(
        waited >= Duration::from_millis(told as u64 / 2),
        "the connection was muted for {waited:?}, told {told} ms"
    );
    assert!(next > 0, "still over the quota: {next}");
}
