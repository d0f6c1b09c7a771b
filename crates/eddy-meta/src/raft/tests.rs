//! The Raft storage keeps its contracts: openraft's own conformance suite,
//! and the file formats across a reopen, a truncate, a purge and a torn
//! tail.
#![allow(clippy::unwrap_used)]

use std::io::Write;

use openraft::storage::{RaftLogStorage, RaftLogStorageExt};
use openraft::testing::{StoreBuilder, Suite};
use openraft::{CommittedLeaderId, EntryPayload, LogId, RaftLogReader, StorageError};

use super::log_store::FileLogStore;
use super::state_machine::FileStateMachine;
use super::{TypeConfig, typ};
use crate::state::Command;

struct Builder;

impl StoreBuilder<TypeConfig, FileLogStore, FileStateMachine, tempfile::TempDir> for Builder {
    async fn build(
        &self,
    ) -> Result<(tempfile::TempDir, FileLogStore, FileStateMachine), StorageError<u64>> {
        let dir = tempfile::tempdir().unwrap();
        let log = FileLogStore::open(dir.path()).await.unwrap();
        let sm = FileStateMachine::open(dir.path()).await.unwrap();
        Ok((dir, log, sm))
    }
}

/// openraft's suite drives every storage method against its documented
/// contract (it makes its own runtimes, so this is a plain test).
#[test]
#[allow(clippy::result_large_err)]
fn openraft_storage_suite() -> Result<(), StorageError<u64>> {
    Suite::test_all(Builder)
}

fn entry(term: u64, index: u64) -> typ::Entry {
    typ::Entry {
        log_id: LogId::new(CommittedLeaderId::new(term, 1), index),
        payload: EntryPayload::Normal(Command::AllocateProducerIds {
            count: index as u32,
        }),
    }
}

async fn indexes(log: &mut FileLogStore) -> Vec<u64> {
    log.try_get_log_entries(0..u64::MAX)
        .await
        .unwrap()
        .iter()
        .map(|e| e.log_id.index)
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_log_survives_a_reopen_a_truncate_a_purge_and_a_torn_tail() {
    let dir = tempfile::tempdir().unwrap();
    {
        let mut log = FileLogStore::open(dir.path()).await.unwrap();
        log.blocking_append((1..=10).map(|i| entry(1, i)))
            .await
            .unwrap();
        // A follower's conflict: 7.. goes, a new term's entries follow.
        log.truncate(LogId::new(CommittedLeaderId::new(1, 1), 7))
            .await
            .unwrap();
        log.blocking_append((7..=12).map(|i| entry(2, i)))
            .await
            .unwrap();
        log.purge(LogId::new(CommittedLeaderId::new(1, 1), 4))
            .await
            .unwrap();
        log.save_vote(&openraft::Vote::new(2, 1)).await.unwrap();
        assert_eq!(indexes(&mut log).await, (5..=12).collect::<Vec<_>>());
    }
    // A crash in the middle of an append leaves part of a record.
    std::fs::OpenOptions::new()
        .append(true)
        .open(dir.path().join("raft-log.bin"))
        .unwrap()
        .write_all(&[200, 0, 0, 0, 1, 2, 3, 4, b'{'])
        .unwrap();
    let mut log = FileLogStore::open(dir.path()).await.unwrap();
    assert_eq!(indexes(&mut log).await, (5..=12).collect::<Vec<_>>());
    let state = log.get_log_state().await.unwrap();
    assert_eq!(state.last_purged_log_id.unwrap().index, 4);
    assert_eq!(
        state.last_log_id.unwrap(),
        LogId::new(CommittedLeaderId::new(2, 1), 12)
    );
    assert_eq!(
        log.read_vote().await.unwrap(),
        Some(openraft::Vote::new(2, 1))
    );
    let seventh = log.try_get_log_entries(7..8).await.unwrap();
    assert_eq!(
        seventh[0].log_id.leader_id.term, 2,
        "truncated entries stay gone"
    );
    // A purge past the end (a snapshot installed ahead of the log).
    log.purge(LogId::new(CommittedLeaderId::new(3, 1), 20))
        .await
        .unwrap();
    drop(log);
    let mut log = FileLogStore::open(dir.path()).await.unwrap();
    assert!(indexes(&mut log).await.is_empty());
    let last = log.get_log_state().await.unwrap().last_log_id.unwrap();
    assert_eq!(last.index, 20);
    log.blocking_append([entry(3, 21)]).await.unwrap();
    drop(log);
    let mut log = FileLogStore::open(dir.path()).await.unwrap();
    assert_eq!(indexes(&mut log).await, vec![21]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn damage_before_the_end_of_the_log_is_an_error() {
    let dir = tempfile::tempdir().unwrap();
    {
        let mut log = FileLogStore::open(dir.path()).await.unwrap();
        log.blocking_append((1..=5).map(|i| entry(1, i)))
            .await
            .unwrap();
    }
    let path = dir.path().join("raft-log.bin");
    let mut bytes = std::fs::read(&path).unwrap();
    bytes[20] ^= 0xff; // inside the first record
    std::fs::write(&path, bytes).unwrap();
    assert!(FileLogStore::open(dir.path()).await.is_err());
}
