//! A group's generation survives a restart as the newest one, however
//! fast its rebalances come.
#![allow(clippy::unwrap_used)]

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use eddy_log::LeaderEpoch;
use eddy_meta::NodeId;

use super::OFFSETS_TOPIC;
use crate::api::{Assignor, JoinGroup, Joined, LeaveGroup, PartitionId, Protocol};
use crate::error::BrokerError;
use crate::partition::Partition;
use crate::{Broker, BrokerConfig};

async fn open(dir: &std::path::Path) -> Arc<Broker> {
    let mut config =
        BrokerConfig::new(NodeId(1), dir.to_path_buf(), "127.0.0.1:0".parse().unwrap());
    config.groups.offsets_topic_partitions = 1;
    config.groups.initial_rebalance_delay_ms = 0;
    Broker::open(config, "127.0.0.1:1".into()).await.unwrap()
}

async fn generation(b: &Arc<Broker>) -> i32 {
    b.describe_group("g").await.unwrap().generation
}

/// A new member joins group `g`, reading topic `t`.
async fn join(b: &Arc<Broker>) -> Joined {
    b.join_group(JoinGroup {
        group_id: "g".into(),
        member_id: String::new(),
        client_id: String::new(),
        client_host: String::new(),
        session_timeout: None,
        rebalance_timeout: None,
        topics: vec!["t".into()],
        protocol: Protocol::Server(Assignor::CooperativeSticky),
        owned: Vec::new(),
    })
    .await
    .unwrap()
}

async fn leave(b: &Arc<Broker>, member_id: String) {
    b.leave_group(LeaveGroup {
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

/// Moves `__consumer_offsets-0` to a new leader epoch on the same leader,
/// as when the controller takes it offline and back.
fn bump_offsets_epoch(b: &Arc<Broker>, partition: &Partition) {
    let mut pm = b.meta.state().topics[OFFSETS_TOPIC].partitions[0].clone();
    pm.leader_epoch = LeaderEpoch(partition.leader_epoch().0 + 1);
    assert!(partition.apply_metadata(&pm, b.now_ms()));
}

/// A broker coordinating group `g`, which has written a generation and
/// has no members, and its `__consumer_offsets-0`.
async fn broker_with_group(dir: &std::path::Path) -> (Arc<Broker>, Arc<Partition>) {
    let b = open(dir).await;
    b.create_topic("t", 1, 1, BTreeMap::new()).await.unwrap();
    let joined = join(&b).await;
    leave(&b, joined.member_id).await;
    let partition = b
        .topics
        .get(OFFSETS_TOPIC)
        .unwrap()
        .partition(PartitionId(0))
        .unwrap()
        .clone();
    (b, partition)
}

/// Found by the chaos soak (seed 9328): a request loading the groups of a
/// `__consumer_offsets` partition for its new leader epoch raced the
/// ticker forgetting them for the old epoch. The forget landed after the
/// load and the partition stayed marked loaded with its groups gone, so
/// the group began again at generation 1 with nothing committed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn groups_loaded_for_a_new_epoch_survive_a_racing_release() {
    let dir = tempfile::tempdir().unwrap();
    let (b, partition) = broker_with_group(dir.path()).await;
    let stop = Arc::new(AtomicBool::new(false));
    let releaser = {
        let (b, stop) = (b.clone(), stop.clone());
        std::thread::spawn(move || {
            while !stop.load(Ordering::Relaxed) {
                b.release_lost_offsets_partitions();
            }
        })
    };
    for _ in 0..20_000 {
        bump_offsets_epoch(&b, &partition);
        b.coordinate("g").await.unwrap();
        let epoch = partition.leader_epoch();
        let loaded = b.groups.loaded.lock().get(&0).copied();
        let known = b.groups.groups.lock().contains_key("g");
        assert!(
            loaded != Some(epoch) || known,
            "partition marked loaded for epoch {} without its group",
            epoch.0
        );
    }
    stop.store(true, Ordering::Relaxed);
    releaser.join().unwrap();
    b.close().await.unwrap();
}

/// A request that found this broker coordinating, and reaches the group
/// table after the partition was released, must not begin the group
/// afresh at generation 0: it is told to find the coordinator, which
/// loads the group's generation again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_released_group_is_not_begun_afresh() {
    let dir = tempfile::tempdir().unwrap();
    let (b, partition) = broker_with_group(dir.path()).await;
    let before = generation(&b).await;
    bump_offsets_epoch(&b, &partition);
    b.release_lost_offsets_partitions();
    let created = {
        let mut groups = b.groups.groups.lock();
        b.group_or_new(&mut groups, "g").map(|g| g.generation)
    };
    assert!(
        matches!(created, Err(BrokerError::NotCoordinator { .. })),
        "{created:?}"
    );
    b.coordinate("g").await.unwrap();
    let reloaded = {
        let mut groups = b.groups.groups.lock();
        b.group_or_new(&mut groups, "g").map(|g| g.generation)
    };
    assert_eq!(reloaded.unwrap(), before);
    b.close().await.unwrap();
}
