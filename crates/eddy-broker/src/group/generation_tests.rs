//! A group's generation survives a restart as the newest one, however
//! fast its rebalances come.
#![allow(clippy::unwrap_used)]

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use eddy_meta::NodeId;
use eddy_proto::v1 as pb;

use crate::{Broker, BrokerConfig};

async fn open(dir: &std::path::Path) -> Arc<Broker> {
    let mut config =
        BrokerConfig::new(NodeId(1), dir.to_path_buf(), "127.0.0.1:0".parse().unwrap());
    config.groups.offsets_topic_partitions = 1;
    config.groups.initial_rebalance_delay_ms = 0;
    Broker::open(config, "127.0.0.1:1".into()).await.unwrap()
}

async fn generation(b: &Arc<Broker>) -> i32 {
    let req = pb::DescribeGroupRequest {
        group_id: "g".into(),
    };
    b.describe_group(req).await.unwrap().generation
}

/// A new member joins group `g`, reading topic `t`.
async fn join(b: &Arc<Broker>) -> pb::JoinGroupResponse {
    b.join_group(pb::JoinGroupRequest {
        group_id: "g".into(),
        topics: vec!["t".into()],
        ..Default::default()
    })
    .await
    .unwrap()
}

async fn leave(b: &Arc<Broker>, member_id: String) {
    b.leave_group(pb::LeaveGroupRequest {
        group_id: "g".into(),
        member_id,
    })
    .await
    .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_newest_generation_is_the_one_written_last() {
    let dir = tempfile::tempdir().unwrap();
    let b = open(dir.path()).await;
    b.create_topic("t", 1, 1, BTreeMap::new()).await.unwrap();
    for _ in 0..40 {
        let joined = join(&b).await;
        leave(&b, joined.member_id).await;
    }
    let last = generation(&b).await;
    assert!(last >= 40, "{last}");
    // The writes are in the background; wait for the last one.
    for _ in 0..100 {
        if b.groups.persisted.lock().get("g") == Some(&last) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(b.groups.persisted.lock().get("g"), Some(&last));
    b.close().await.unwrap();
    drop(b);
    let b = open(dir.path()).await;
    b.groups_loaded().await.unwrap();
    assert_eq!(
        generation(&b).await,
        last,
        "no older generation landed after it"
    );
}

/// Found by the chaos soak (seed 20261201): a coordinator killed between
/// answering a join and writing its generation left its successor an
/// older generation, which it then handed out again to other owners.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_member_learns_a_generation_only_once_it_is_written() {
    let dir = tempfile::tempdir().unwrap();
    let b = open(dir.path()).await;
    b.create_topic("t", 1, 1, BTreeMap::new()).await.unwrap();
    for _ in 0..20 {
        let joined = join(&b).await;
        let written = b.groups.persisted.lock().get("g").copied();
        assert!(
            written.is_some_and(|w| w >= joined.generation),
            "generation {} answered while {written:?} is written",
            joined.generation
        );
        leave(&b, joined.member_id).await;
    }
    b.close().await.unwrap();
}
