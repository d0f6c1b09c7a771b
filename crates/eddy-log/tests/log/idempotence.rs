use eddy_log::{Error, LeaderEpoch, SequenceError, Written};

use super::*;

#[test]
fn a_batch_sent_twice_is_written_once_and_answered_with_the_same_offsets() {
    let s = Scenario::new();
    let mut log = s.open();
    append(&mut log, values(2, 1, START_MS));
    let first = log.append(&stamped(7, 0, 0, 3), LeaderEpoch(0)).unwrap();
    let again = log.append(&stamped(7, 0, 0, 3), LeaderEpoch(0)).unwrap();
    assert_eq!(
        (first.written, again.written),
        (Written::New, Written::Duplicate)
    );
    assert_eq!(
        (again.base_offset, again.last_offset),
        (first.base_offset, first.last_offset)
    );
    assert_eq!(log.end_offset(), o(5));
    assert_eq!(read_all(&log, 1 << 20).unwrap().len(), 5);
}

#[test]
fn gaps_and_fenced_epochs_are_refused_and_write_nothing() {
    let s = Scenario::new();
    let mut log = s.open();
    log.append(&stamped(7, 1, 0, 2), LeaderEpoch(0)).unwrap();
    let gap = log
        .append(&stamped(7, 1, 5, 1), LeaderEpoch(0))
        .unwrap_err();
    assert!(
        matches!(gap, Error::Sequence(SequenceError::OutOfOrder { .. })),
        "{gap}"
    );
    assert!(
        gap.to_string()
            .contains("sent sequence 5 but 2 was expected"),
        "{gap}"
    );
    let fenced = log
        .append(&stamped(7, 0, 2, 1), LeaderEpoch(0))
        .unwrap_err();
    assert!(
        matches!(fenced, Error::Sequence(SequenceError::Fenced { .. })),
        "{fenced}"
    );
    assert_eq!(log.end_offset(), o(2));
}

#[test]
fn deduplication_survives_a_crash_by_replaying_batch_headers() {
    let s = Scenario::new();
    let mut log = s.open();
    for seq in (0..50).step_by(5) {
        log.append(&stamped(9, 0, seq, 5), LeaderEpoch(0)).unwrap();
    }
    drop(log); // no close, no snapshot
    let mut log = s.open();
    assert_eq!(log.recovery().producer_batches_replayed, 10);
    let again = log.append(&stamped(9, 0, 45, 5), LeaderEpoch(0)).unwrap();
    assert_eq!(
        (again.written, again.base_offset),
        (Written::Duplicate, o(45))
    );
    assert_eq!(
        log.append(&stamped(9, 0, 50, 1), LeaderEpoch(0))
            .unwrap()
            .base_offset,
        o(50)
    );
}

#[test]
fn a_clean_close_snapshots_so_a_restart_replays_nothing() {
    let s = Scenario::with(|c| c.segment_bytes = 1024);
    let mut log = s.open();
    for seq in (0..100).step_by(4) {
        log.append(&stamped(3, 0, seq, 4), LeaderEpoch(0)).unwrap();
    }
    assert!(log.segments().len() > 2);
    assert!(
        !s.files("snapshot").is_empty(),
        "each roll leaves a snapshot"
    );
    assert!(s.files("snapshot").len() <= 2, "old snapshots are pruned");
    log.close().unwrap();
    let mut log = s.open();
    assert_eq!(log.recovery().producer_batches_replayed, 0);
    assert_eq!(
        log.append(&stamped(3, 0, 96, 4), LeaderEpoch(0))
            .unwrap()
            .written,
        Written::Duplicate
    );
}

#[test]
fn a_truncated_tail_forgets_the_batches_it_lost() {
    let s = Scenario::new();
    let mut log = s.open();
    log.append(&stamped(4, 0, 0, 2), LeaderEpoch(0)).unwrap();
    log.close().unwrap();
    let mut log = s.open();
    log.append(&stamped(4, 0, 2, 2), LeaderEpoch(0)).unwrap();
    drop(log);
    let path = s.files("log").pop().unwrap();
    let size = std::fs::metadata(&path).unwrap().len();
    std::fs::OpenOptions::new()
        .write(true)
        .open(&path)
        .unwrap()
        .set_len(size - 3)
        .unwrap();
    let mut log = s.open();
    assert_eq!(log.end_offset(), o(2));
    let resent = log.append(&stamped(4, 0, 2, 2), LeaderEpoch(0)).unwrap();
    assert_eq!(
        (resent.written, resent.base_offset),
        (Written::New, o(2)),
        "the lost batch is written again"
    );
}

#[test]
fn a_crash_after_a_snapshot_replays_only_what_came_after_it() {
    let s = Scenario::with(|c| c.index_interval_bytes = 256);
    let mut log = s.open();
    for seq in (0..40).step_by(4) {
        log.append(&stamped(5, 0, seq, 4), LeaderEpoch(0)).unwrap();
    }
    log.checkpoint_producers().unwrap();
    for seq in (40..60).step_by(4) {
        log.append(&stamped(5, 0, seq, 4), LeaderEpoch(0)).unwrap();
    }
    log.append(&stamped(6, 0, 0, 1), LeaderEpoch(0)).unwrap();
    drop(log); // a crash: no close, so no snapshot of the last six batches
    let mut log = s.open();
    assert_eq!(
        log.recovery().producer_batches_replayed,
        6,
        "the snapshot covers the first ten batches"
    );
    let again = log.append(&stamped(5, 0, 56, 4), LeaderEpoch(0)).unwrap();
    assert_eq!(
        (again.written, again.base_offset),
        (Written::Duplicate, o(56))
    );
    let other = log.append(&stamped(6, 0, 0, 1), LeaderEpoch(0)).unwrap();
    assert_eq!(
        other.written,
        Written::Duplicate,
        "a producer first seen after the snapshot"
    );
    let gap = log
        .append(&stamped(5, 0, 64, 1), LeaderEpoch(0))
        .unwrap_err();
    assert!(
        gap.to_string().contains("but 60 was expected"),
        "the snapshot's sequences and the replayed ones join up: {gap}"
    );
}
