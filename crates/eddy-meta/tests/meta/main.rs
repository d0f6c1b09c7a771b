//! The metadata store keeps what it was told, across restarts, as a quorum
//! of one; and it takes over the local command log Eddy kept before.
#![allow(clippy::unwrap_used)]

use std::collections::BTreeMap;
use std::path::Path;

use eddy_meta::{
    BrokerMeta, Command, MetaError, MetaStore, NodeId, Output, TopicId, TopicMeta, assign_replicas,
};

fn topic(name: &str, partitions: u32) -> Command {
    Command::CreateTopic(TopicMeta {
        name: name.into(),
        id: TopicId::random(),
        configs: BTreeMap::from([("retention.ms".into(), "1000".into())]),
        partitions: assign_replicas(&[NodeId(1)], 0, partitions, 1).unwrap(),
        internal: false,
    })
}

fn broker() -> Command {
    Command::RegisterBroker(BrokerMeta {
        id: NodeId(1),
        address: "127.0.0.1:9092".into(),
        kafka_address: None,
        fenced: false,
    })
}

async fn open(dir: &Path) -> MetaStore {
    MetaStore::open_local(dir, NodeId(1)).await.unwrap()
}

/// Stops the store's quorum before it is dropped, as a broker does.
async fn close(store: MetaStore) {
    store.shutdown().await;
}

#[tokio::test]
async fn commands_survive_a_restart_in_order() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path()).await;
    store.propose(broker()).await.unwrap();
    store.propose(topic("a", 2)).await.unwrap();
    store.propose(topic("b", 1)).await.unwrap();
    store
        .propose(Command::DeleteTopic { name: "a".into() })
        .await
        .unwrap();
    let before = store.state();
    close(store).await;
    let store = open(dir.path()).await;
    assert_eq!(store.state(), before);
    assert_eq!(store.state().topics.keys().collect::<Vec<_>>(), ["b"]);
    close(store).await;
}

#[tokio::test]
async fn a_refused_command_changes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path()).await;
    let err = store.propose(topic("a", 1)).await.unwrap_err();
    assert!(err.to_string().contains("unknown broker"), "{err}");
    store.propose(broker()).await.unwrap();
    store.propose(topic("a", 1)).await.unwrap();
    let err = store.propose(topic("a", 3)).await.unwrap_err();
    assert!(matches!(err, MetaError::TopicExists(_)), "{err}");
    let err = store
        .propose(Command::DeleteTopic { name: "zz".into() })
        .await
        .unwrap_err();
    assert!(matches!(err, MetaError::UnknownTopic(_)));
    let version = store.state().version;
    close(store).await;
    assert_eq!(open(dir.path()).await.state().version, version);
}

#[tokio::test]
async fn a_command_says_what_it_gave_as_of_its_own_entry() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path()).await;
    let (_, first) = store
        .propose_for(Command::AllocateProducerIds { count: 10 })
        .await
        .unwrap();
    let (_, second) = store
        .propose_for(Command::AllocateProducerIds { count: 10 })
        .await
        .unwrap();
    assert_eq!(first, Some(Output::ProducerIds { first: 0 }));
    assert_eq!(second, Some(Output::ProducerIds { first: 10 }));
    let name = "pipeline/x/t/0".to_string();
    let (_, id) = store
        .propose_for(Command::InitStableProducer { name: name.clone() })
        .await
        .unwrap();
    let (_, again) = store
        .propose_for(Command::InitStableProducer { name })
        .await
        .unwrap();
    let (
        Some(Output::StableProducer { id: a, epoch: 0 }),
        Some(Output::StableProducer { id: b, epoch: 1 }),
    ) = (id, again)
    else {
        panic!("{id:?} then {again:?}");
    };
    assert_eq!(a, b, "the same name keeps its id");
    close(store).await;
}

#[tokio::test]
async fn subscribers_see_every_new_state() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path()).await;
    let mut rx = store.subscribe();
    store.propose(broker()).await.unwrap();
    rx.changed().await.unwrap();
    assert_eq!(rx.borrow().brokers.len(), 1);
    close(store).await;
}

#[tokio::test]
async fn a_directory_is_one_nodes_and_one_process_at_a_time() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path()).await;
    let err = MetaStore::open_local(dir.path(), NodeId(1))
        .await
        .unwrap_err();
    assert!(
        err.to_string().contains("in use by another process"),
        "{err}"
    );
    close(store).await;
    let err = MetaStore::open_local(dir.path(), NodeId(2))
        .await
        .unwrap_err();
    assert!(
        err.to_string().contains("belongs to node 1, not 2"),
        "{err}"
    );
}

/// The local command log of an Eddy from before the quorum.
fn legacy_log(dir: &Path, commands: &[Command]) {
    let mut text = String::new();
    for cmd in commands {
        let json = serde_json::to_string(cmd).unwrap();
        text.push_str(&format!("{:08x} {json}\n", crc32c::crc32c(json.as_bytes())));
    }
    std::fs::create_dir_all(dir).unwrap();
    std::fs::write(dir.join("commands.log"), text).unwrap();
    std::fs::write(dir.join("cluster-id"), "old-cluster").unwrap();
}

#[tokio::test]
async fn a_local_command_log_from_before_the_quorum_is_taken_over_once() {
    let dir = tempfile::tempdir().unwrap();
    legacy_log(dir.path(), &[broker(), topic("kept", 3)]);
    let store = open(dir.path()).await;
    let state = store.state();
    assert_eq!(state.cluster_id, "old-cluster");
    assert_eq!(state.brokers.len(), 1);
    assert_eq!(state.topics["kept"].partitions.len(), 3);
    assert!(!dir.path().join("commands.log").exists());
    assert!(dir.path().join("commands.log.migrated").exists());
    close(store).await;
    let store = open(dir.path()).await;
    assert_eq!(store.state().topics.len(), 1, "not replayed twice");
    close(store).await;
}
