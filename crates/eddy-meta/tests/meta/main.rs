//! The metadata store keeps what it was told, across restarts and torn writes.
#![allow(clippy::unwrap_used)]

use std::collections::BTreeMap;
use std::io::Write;

use eddy_meta::{
    BrokerMeta, Command, MetaError, MetaStore, NodeId, TopicId, TopicMeta, assign_replicas,
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
    })
}

#[tokio::test]
async fn commands_survive_a_restart_in_order() {
    let dir = tempfile::tempdir().unwrap();
    let store = MetaStore::open(dir.path()).unwrap();
    let cluster_id = store.state().cluster_id.clone();
    store.propose(broker()).await.unwrap();
    store.propose(topic("a", 2)).await.unwrap();
    store.propose(topic("b", 1)).await.unwrap();
    store
        .propose(Command::DeleteTopic { name: "a".into() })
        .await
        .unwrap();
    let before = store.state();
    drop(store);
    let store = MetaStore::open(dir.path()).unwrap();
    assert_eq!(store.state(), before);
    assert_eq!(store.state().cluster_id, cluster_id);
    assert_eq!(store.state().topics.keys().collect::<Vec<_>>(), ["b"]);
}

#[tokio::test]
async fn a_refused_command_changes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let store = MetaStore::open(dir.path()).unwrap();
    let err = store.propose(topic("a", 1)).await.unwrap_err();
    assert!(err.to_string().contains("unknown broker"), "{err}");
    store.propose(broker()).await.unwrap();
    store.propose(topic("a", 1)).await.unwrap();
    let err = store.propose(topic("a", 3)).await.unwrap_err();
    assert!(matches!(err, MetaError::TopicExists(_)));
    let err = store
        .propose(Command::DeleteTopic { name: "zz".into() })
        .await
        .unwrap_err();
    assert!(matches!(err, MetaError::UnknownTopic(_)));
    let version = store.state().version;
    drop(store);
    assert_eq!(
        MetaStore::open(dir.path()).unwrap().state().version,
        version
    );
}

/// A metadata directory holding two commands: the broker, then topic "a".
async fn broker_and_topic_a() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let store = MetaStore::open(dir.path()).unwrap();
    store.propose(broker()).await.unwrap();
    store.propose(topic("a", 1)).await.unwrap();
    dir
}

#[tokio::test]
async fn a_torn_last_command_is_dropped_but_damage_before_it_is_an_error() {
    let dir = broker_and_topic_a().await;
    let log = dir.path().join("commands.log");
    std::fs::OpenOptions::new()
        .append(true)
        .open(&log)
        .unwrap()
        .write_all(b"1234abcd {\"Crea")
        .unwrap();
    let store = MetaStore::open(dir.path()).unwrap();
    assert_eq!(store.state().version, 2);
    store.propose(topic("b", 1)).await.unwrap();
    drop(store);
    assert_eq!(MetaStore::open(dir.path()).unwrap().state().topics.len(), 2);

    let text = std::fs::read_to_string(&log).unwrap();
    std::fs::write(&log, text.replacen("\"a\"", "\"x\"", 1)).unwrap();
    let err = MetaStore::open(dir.path()).unwrap_err();
    assert!(
        matches!(err, MetaError::CorruptLog { line: 2, .. }),
        "{err}"
    );
}

#[tokio::test]
async fn a_last_command_cut_just_before_its_newline_is_dropped() {
    let dir = broker_and_topic_a().await;
    let log = dir.path().join("commands.log");
    let size = std::fs::metadata(&log).unwrap().len();
    std::fs::OpenOptions::new()
        .write(true)
        .open(&log)
        .unwrap()
        .set_len(size - 1)
        .unwrap();
    let store = MetaStore::open(dir.path()).unwrap();
    assert_eq!(store.state().version, 1, "the unterminated command is gone");
    assert!(store.state().topics.is_empty());
    store.propose(topic("b", 1)).await.unwrap();
    drop(store);
    let store = MetaStore::open(dir.path()).unwrap();
    assert_eq!(store.state().topics.keys().collect::<Vec<_>>(), ["b"]);
}

#[tokio::test]
async fn subscribers_see_every_new_state() {
    let dir = tempfile::tempdir().unwrap();
    let store = MetaStore::open(dir.path()).unwrap();
    let mut rx = store.subscribe();
    store.propose(broker()).await.unwrap();
    rx.changed().await.unwrap();
    assert_eq!(rx.borrow().brokers.len(), 1);
}
