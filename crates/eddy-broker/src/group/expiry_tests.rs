//! Empty groups expire `offsets_retention_ms` after they became empty,
//! dated by their last commit, across restarts.
#![allow(clippy::unwrap_used)]

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Instant;

use eddy_log::ManualClock;
use eddy_meta::NodeId;

use crate::api::{CommitOffset, CommitOffsets, PartitionId, TopicPartition};
use crate::{Broker, BrokerConfig};

const RETENTION_MS: i64 = 60_000;
const T0: i64 = 1_700_000_000_000;

struct Scenario {
    dir: tempfile::TempDir,
    clock: Arc<ManualClock>,
}

impl Scenario {
    fn new() -> Scenario {
        Scenario {
            dir: tempfile::tempdir().unwrap(),
            clock: Arc::new(ManualClock::new(T0)),
        }
    }

    async fn open(&self) -> Arc<Broker> {
        let mut config = BrokerConfig::new(
            NodeId(1),
            self.dir.path().to_path_buf(),
            "127.0.0.1:0".parse().unwrap(),
        );
        config.groups.offsets_topic_partitions = 2;
        config.groups.offsets_retention_ms = RETENTION_MS;
        Broker::open_with_clock(config, "127.0.0.1:1".into(), self.clock.clone())
            .await
            .unwrap()
    }
}

/// An admin commit (no member), as `eddy group reset-offsets` makes.
async fn commit(b: &Arc<Broker>, group: &str, offset: u64) {
    b.commit_offsets(CommitOffsets {
        group_id: group.into(),
        member_id: String::new(),
        generation: -1,
        offsets: vec![CommitOffset {
            partition: TopicPartition::new("t", PartitionId(0)),
            offset: eddy_log::Offset(offset),
            metadata: Default::default(),
        }],
    })
    .await
    .unwrap();
}

async fn groups(b: &Arc<Broker>) -> Vec<String> {
    let listed = b.list_groups().await.unwrap();
    listed.into_iter().map(|g| g.group_id).collect()
}

async fn committed(b: &Arc<Broker>, group: &str) -> usize {
    b.fetch_offsets(group, &[]).await.unwrap().len()
}

async fn tick(b: &Arc<Broker>) {
    b.groups_loaded().await.unwrap();
    let expired = b.tick_groups(Instant::now());
    b.expire_groups(expired).await;
}

#[tokio::test]
async fn an_empty_group_expires_after_the_retention_counted_from_its_last_commit() {
    let s = Scenario::new();
    let b = s.open().await;
    b.create_topic("t", 1, 1, BTreeMap::new()).await.unwrap();
    commit(&b, "old", 5).await;
    s.clock.advance(40_000);
    commit(&b, "newer", 7).await;
    tick(&b).await;
    assert_eq!(groups(&b).await, ["newer", "old"]);

    s.clock.advance(25_000); // "old" is 65 s past its commit, "newer" 25 s
    tick(&b).await;
    assert_eq!(groups(&b).await, ["newer"]);
    assert_eq!(committed(&b, "old").await, 0);
    assert_eq!(committed(&b, "newer").await, 1);
    b.close().await.unwrap();
    drop(b);

    // After a restart "newer" is still dated by its commit, not the restart.
    s.clock.advance(40_000);
    let b = s.open().await;
    tick(&b).await;
    assert!(
        groups(&b).await.is_empty(),
        "65 s had passed since its last commit"
    );
    b.close().await.unwrap();
    drop(b);
    let b = s.open().await;
    assert!(groups(&b).await.is_empty(), "tombstones keep them gone");
    assert_eq!(committed(&b, "newer").await, 0);
}
