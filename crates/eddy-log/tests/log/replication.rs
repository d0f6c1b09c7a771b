//! A follower's log: copying the leader's batches, cutting back where the
//! logs diverged, starting over, and answering OffsetForLeaderEpoch.

use eddy_log::batch::{set_base_offset, set_leader_epoch};
use eddy_log::{
    BATCH_BYTES_LIMIT, BatchHeader, CheckedBatch, Error, ProducerEpoch, ProducerId, SegmentInfo,
    Sequence, Written, check_batch,
};

use super::*;

/// Segments of about 25 offsets and an index entry every batch or two, so
/// a hundred offsets span several segments.
fn small() -> Scenario {
    Scenario::with(|c| {
        c.segment_bytes = 1024;
        c.index_interval_bytes = 256;
    })
}

/// Appends 5-record batches as the leader in `epoch` until the log ends at `until`.
fn fill(log: &mut Log, epoch: i32, until: u64) {
    while log.end_offset() < o(until) {
        log.append(&values(5, 20, START_MS), LeaderEpoch(epoch))
            .unwrap();
    }
    assert_eq!(log.end_offset(), o(until));
}

/// Epoch 1 wrote 0..40, epoch 3 40..70, epoch 6 70..100; four segments.
fn three_epochs(s: &Scenario) -> Log {
    let mut log = s.open();
    fill(&mut log, 1, 40);
    fill(&mut log, 3, 70);
    fill(&mut log, 6, 100);
    assert_eq!(log.segments().len(), 4);
    log
}

/// A batch as a leader stored it: `n` records from `base`, written in `epoch`.
fn from_leader(base: u64, epoch: i32, n: usize) -> CheckedBatch<Vec<u8>> {
    let mut bytes = values(n, 10, START_MS);
    set_base_offset(&mut bytes, o(base));
    set_leader_epoch(&mut bytes, LeaderEpoch(epoch));
    check_batch(bytes, BATCH_BYTES_LIMIT).unwrap()
}

/// Copies what the follower lacks from the leader, batch by batch, as a
/// fetcher does.
fn catch_up(leader: &Log, follower: &mut Log) {
    while follower.end_offset() < leader.end_offset() {
        let fetched = leader.read(follower.end_offset(), 700, None).unwrap();
        for b in batches(&fetched.bytes, usize::MAX) {
            let checked = check_batch(b.unwrap().as_bytes(), BATCH_BYTES_LIMIT).unwrap();
            follower.append_replicated(&checked).unwrap();
        }
    }
}

/// Every batch of the log, exactly as stored.
fn stored(log: &Log) -> Vec<u8> {
    let mut out = Vec::new();
    let mut from = log.start_offset();
    while from < log.end_offset() {
        let r = log.read(from, 1 << 20, None).unwrap();
        assert!(r.next_offset > from, "reads make progress");
        out.extend_from_slice(&r.bytes);
        from = r.next_offset;
    }
    out
}

fn epochs(log: &Log) -> Vec<(i32, u64)> {
    log.leader_epochs()
        .iter()
        .map(|(e, s)| (e.0, s.0))
        .collect()
}

fn bases(log: &Log) -> Vec<u64> {
    log.segments().iter().map(|s| s.base_offset.0).collect()
}

/// Everything a reopen must reproduce.
#[derive(Debug, PartialEq, Eq)]
struct LogState {
    batches: Vec<u8>,
    segments: Vec<SegmentInfo>,
    epochs: Vec<(i32, u64)>,
    end: Offset,
}

fn state(log: &Log) -> LogState {
    LogState {
        batches: stored(log),
        segments: log.segments(),
        epochs: epochs(log),
        end: log.end_offset(),
    }
}

// Appending as a follower.

#[test]
fn a_replicated_batch_keeps_the_leaders_offsets_and_epoch() {
    let s = Scenario::new();
    let mut log = s.open();
    let a = log.append_replicated(&from_leader(0, 3, 5)).unwrap();
    let b = log.append_replicated(&from_leader(5, 5, 2)).unwrap();
    assert_eq!(
        (a.base_offset, a.last_offset, a.written),
        (o(0), o(4), Written::New)
    );
    assert_eq!((b.base_offset, b.last_offset), (o(5), o(6)));
    assert_eq!(epochs(&log), [(3, 0), (5, 5)]);
    let h = BatchHeader::parse(&log.read(o(5), 1 << 20, None).unwrap().bytes).unwrap();
    assert_eq!((h.base_offset, h.leader_epoch), (o(5), LeaderEpoch(5)));
}

#[test]
fn a_replicated_batch_must_not_start_before_the_log_end() {
    let s = Scenario::new();
    let mut log = s.open();
    log.append_replicated(&from_leader(0, 1, 5)).unwrap();
    for base in [3, 4] {
        let e = log.append_replicated(&from_leader(base, 1, 1)).unwrap_err();
        assert!(
            matches!(e, Error::NotContiguous { expected, got } if expected == o(5) && got == o(base)),
            "{e}"
        );
        assert!(e.to_string().contains("fetch from the log end"), "{e}");
    }
    assert_eq!(log.end_offset(), o(5));
    // A gap is where the leader's compaction removed whole batches.
    log.append_replicated(&from_leader(7, 1, 1)).unwrap();
    assert_eq!(log.end_offset(), o(8));
    let read = log.read(o(5), 1 << 20, None).unwrap();
    let header = eddy_log::BatchHeader::parse(&read.bytes).unwrap();
    assert_eq!(header.base_offset, o(7));
}

#[test]
fn a_replicated_batch_from_an_older_epoch_is_refused() {
    let s = Scenario::new();
    let mut log = s.open();
    log.append_replicated(&from_leader(0, 4, 5)).unwrap();
    let e = log.append_replicated(&from_leader(5, 3, 1)).unwrap_err();
    assert!(
        matches!(
            e,
            Error::StaleEpoch {
                epoch: LeaderEpoch(3),
                latest: Some(LeaderEpoch(4))
            }
        ),
        "{e}"
    );
    assert_eq!(log.end_offset(), o(5));
    log.append_replicated(&from_leader(5, 4, 1)).unwrap();
}

#[test]
fn a_follower_copied_batch_by_batch_is_byte_identical_to_its_leader() {
    let (ls, fs) = (small(), small());
    let mut leader = ls.open();
    fill(&mut leader, 1, 30);
    for seq in (0..20).step_by(4) {
        leader
            .append(&stamped(7, 0, seq, 4), LeaderEpoch(4))
            .unwrap();
    }
    fill(&mut leader, 6, 100);
    let mut follower = fs.open();
    catch_up(&leader, &mut follower);
    assert_eq!(stored(&follower), stored(&leader));
    assert_eq!(epochs(&follower), [(1, 0), (4, 30), (6, 50)]);
    assert_eq!(bases(&follower), bases(&leader), "the same rolls");
    assert!(follower.segments().len() > 2);
}

#[test]
fn a_follower_turned_leader_detects_the_old_leaders_duplicates() {
    let (ls, fs) = (Scenario::new(), Scenario::new());
    let mut leader = ls.open();
    append(&mut leader, values(3, 10, START_MS));
    for seq in (0..12).step_by(4) {
        leader
            .append(&stamped(7, 2, seq, 4), LeaderEpoch(1))
            .unwrap();
    }
    let mut follower = fs.open();
    catch_up(&leader, &mut follower);
    let pid = ProducerId(7);
    assert_eq!(
        follower.producer_state().last_sequence(pid),
        Some((ProducerEpoch(2), Sequence(11)))
    );
    assert_eq!(
        follower.producer_state(),
        leader.producer_state(),
        "the same batches remembered"
    );
    // The producer never heard back about its last batch and resends it.
    let resent = follower
        .append(&stamped(7, 2, 8, 4), LeaderEpoch(2))
        .unwrap();
    assert_eq!(
        (resent.written, resent.base_offset),
        (Written::Duplicate, o(11))
    );
    let next = follower
        .append(&stamped(7, 2, 12, 4), LeaderEpoch(2))
        .unwrap();
    assert_eq!((next.written, next.base_offset), (Written::New, o(15)));
}

// Truncation.

#[test]
fn truncating_inside_a_batch_removes_the_whole_batch() {
    let s = Scenario::new();
    let mut log = s.open();
    fill(&mut log, 0, 15);
    log.truncate_to(o(7)).unwrap();
    assert_eq!(log.end_offset(), o(5), "the batch 5..=9 held offset 7");
    assert_eq!(offsets(&read_all(&log, 1 << 20).unwrap()), [0, 1, 2, 3, 4]);
}

#[test]
fn truncating_at_a_batch_boundary_keeps_everything_before_it() {
    let s = Scenario::new();
    let mut log = s.open();
    fill(&mut log, 0, 15);
    log.truncate_to(o(10)).unwrap();
    assert_eq!(log.end_offset(), o(10));
    assert_eq!(read_all(&log, 1 << 20).unwrap().len(), 10);
}

#[test]
fn truncating_at_a_segment_boundary_leaves_an_empty_active_segment() {
    let s = small();
    let mut log = three_epochs(&s);
    let boundary = log.segments()[2].base_offset;
    log.truncate_to(boundary).unwrap();
    assert_eq!(log.end_offset(), boundary);
    assert_eq!(log.segments().len(), 3);
    assert_eq!(log.segments()[2].size_bytes, 0);
    assert_eq!(s.files("log").len(), 3);
    let next = log.append(&values(1, 1, START_MS), LeaderEpoch(3)).unwrap();
    assert_eq!(next.base_offset, boundary);
}

#[test]
fn truncating_across_segments_deletes_the_later_ones_and_cuts_the_one_holding_the_offset() {
    let s = small();
    let mut log = three_epochs(&s);
    let holding = log.segments()[1];
    log.truncate_to(holding.base_offset.plus(7)).unwrap();
    assert_eq!(log.end_offset(), holding.base_offset.plus(5));
    assert_eq!(bases(&log), [0, holding.base_offset.0]);
    assert!(log.segments()[1].size_bytes < holding.size_bytes);
    for ext in ["log", "index", "timeindex"] {
        assert_eq!(s.files(ext).len(), 2, "{ext} files");
    }
    let kept = read_all(&log, 300).unwrap();
    assert_eq!(
        offsets(&kept),
        (0..holding.base_offset.0 + 5).collect::<Vec<_>>()
    );
}

#[test]
fn truncating_at_the_end_changes_nothing() {
    let s = small();
    let mut log = three_epochs(&s);
    let before = state(&log);
    log.truncate_to(o(100)).unwrap();
    assert_eq!(state(&log), before);
}

#[test]
fn truncating_outside_the_log_is_out_of_range() {
    let s = Scenario::new();
    let mut log = s.open();
    fill(&mut log, 0, 20);
    let past = log.truncate_to(o(21)).unwrap_err();
    assert!(
        matches!(past, Error::OffsetOutOfRange { requested, start, end }
            if (requested, start, end) == (o(21), o(0), o(20))),
        "{past}"
    );
    log.reset_to(o(100)).unwrap();
    fill(&mut log, 0, 110);
    let before = log.truncate_to(o(99)).unwrap_err();
    assert!(
        matches!(before, Error::OffsetOutOfRange { start, .. } if start == o(100)),
        "{before}"
    );
    assert_eq!(log.end_offset(), o(110));
}

#[test]
fn after_truncation_appends_continue_and_a_reopen_finds_the_same_log() {
    let s = small();
    let mut log = three_epochs(&s);
    log.truncate_to(o(57)).unwrap();
    assert_eq!(log.end_offset(), o(55));
    for base in (55..95).step_by(5) {
        log.append_replicated(&from_leader(base, 8, 5)).unwrap();
    }
    let before = state(&log);
    drop(log);
    let log = s.open();
    assert_eq!(state(&log), before);
    let r = log.recovery();
    assert_eq!(
        (r.truncated_bytes, r.index_entries_dropped, r.epochs_rebuilt),
        (0, 0, false),
        "the cut left nothing to repair"
    );
    assert_eq!(
        offsets(&read_all(&log, 300).unwrap()),
        (0..95).collect::<Vec<_>>()
    );
}

#[test]
fn truncation_cuts_the_epoch_history() {
    let s = small();
    let mut log = three_epochs(&s);
    log.truncate_to(o(85)).unwrap();
    assert_eq!(epochs(&log), [(1, 0), (3, 40), (6, 70)]);
    assert_eq!(
        log.end_offset_for_epoch(LeaderEpoch(6)),
        Some((LeaderEpoch(6), o(85)))
    );
    log.truncate_to(o(70)).unwrap();
    assert_eq!(epochs(&log), [(1, 0), (3, 40)]);
    assert_eq!(
        log.end_offset_for_epoch(LeaderEpoch(6)),
        Some((LeaderEpoch(3), o(70)))
    );
    drop(log);
    let log = s.open();
    assert_eq!(epochs(&log), [(1, 0), (3, 40)]);
    assert!(!log.recovery().epochs_rebuilt, "the checkpoint was saved");
}

#[test]
fn truncation_forgets_producer_sequences_past_the_cut() {
    let s = Scenario::new();
    let mut log = s.open();
    for seq in (0..8).step_by(4) {
        log.append(&stamped(5, 0, seq, 4), LeaderEpoch(0)).unwrap();
    }
    log.checkpoint_producers().unwrap();
    for seq in (8..40).step_by(4) {
        log.append(&stamped(5, 0, seq, 4), LeaderEpoch(0)).unwrap();
    }
    log.checkpoint_producers().unwrap();
    log.truncate_to(o(20)).unwrap();
    assert_eq!(
        s.files("snapshot"),
        [s.dir.join(format!("{:020}.snapshot", 8))],
        "the snapshot past the cut is gone"
    );
    assert_eq!(
        log.producer_state().last_sequence(ProducerId(5)),
        Some((ProducerEpoch(0), Sequence(19)))
    );
    let again = log.append(&stamped(5, 0, 20, 4), LeaderEpoch(0)).unwrap();
    assert_eq!((again.written, again.base_offset), (Written::New, o(20)));
    drop(log);
    let mut log = s.open();
    let resent = log.append(&stamped(5, 0, 16, 4), LeaderEpoch(0)).unwrap();
    assert_eq!(
        (resent.written, resent.base_offset),
        (Written::Duplicate, o(16))
    );
}

#[test]
fn a_crash_before_the_history_is_cut_reopens_to_the_shorter_log() {
    let s = small();
    let mut log = three_epochs(&s);
    log.append(&stamped(9, 0, 0, 5), LeaderEpoch(6)).unwrap();
    log.checkpoint_producers().unwrap();
    let history: Vec<_> = std::fs::read_dir(&s.dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| {
            p.extension().is_some_and(|e| e == "snapshot") || p.ends_with("leader-epoch-checkpoint")
        })
        .map(|p| (std::fs::read(&p).unwrap(), p))
        .collect();
    log.truncate_to(o(60)).unwrap();
    let cut = state(&log);
    drop(log);
    // As if the crash came after the data was cut but before the epoch
    // history and producer snapshots were.
    for (bytes, path) in &history {
        std::fs::write(path, bytes).unwrap();
    }
    let mut log = s.open();
    assert_eq!(state(&log), cut);
    assert_eq!(log.producer_state().last_sequence(ProducerId(9)), None);
    let again = log.append(&stamped(9, 0, 0, 5), LeaderEpoch(7)).unwrap();
    assert_eq!((again.written, again.base_offset), (Written::New, o(60)));
}

#[test]
fn a_crash_after_the_later_segments_went_reopens_as_a_prefix() {
    let s = small();
    let log = three_epochs(&s);
    let kept = log.segments()[1];
    drop(log);
    // Truncation deletes the newest segments first, each `.log` before its indexes.
    for path in s.files("log").iter().skip(2) {
        std::fs::remove_file(path).unwrap();
    }
    let log = s.open();
    assert_eq!(log.end_offset(), kept.next_offset);
    assert_eq!(
        offsets(&read_all(&log, 1 << 20).unwrap()),
        (0..kept.next_offset.0).collect::<Vec<_>>()
    );
    assert_eq!(s.files("index").len(), 2, "orphaned indexes are removed");
}

// Starting over.

#[test]
fn reset_starts_the_log_over_empty_at_the_given_offset() {
    let s = small();
    let mut log = three_epochs(&s);
    log.append(&stamped(9, 0, 0, 5), LeaderEpoch(6)).unwrap();
    log.checkpoint_producers().unwrap();
    log.reset_to(o(1000)).unwrap();
    assert_eq!((log.start_offset(), log.end_offset()), (o(1000), o(1000)));
    assert!(log.leader_epochs().is_empty());
    assert!(log.producer_state().is_empty());
    assert_eq!(s.files("log"), [s.dir.join(format!("{:020}.log", 1000))]);
    assert!(s.files("snapshot").is_empty());
    log.append_replicated(&from_leader(1000, 9, 5)).unwrap();
    drop(log);
    let log = s.open();
    assert_eq!((log.start_offset(), log.end_offset()), (o(1000), o(1005)));
    assert_eq!(epochs(&log), [(9, 1000)]);
    assert!(log.producer_state().is_empty());
}

#[test]
fn reset_can_restart_at_an_offset_the_log_already_held() {
    let s = small();
    let mut log = three_epochs(&s);
    log.reset_to(o(0)).unwrap();
    assert_eq!((log.start_offset(), log.end_offset()), (o(0), o(0)));
    assert!(read_all(&log, 1 << 20).unwrap().is_empty());
    drop(log);
    assert_eq!(s.open().end_offset(), o(0));
}

// OffsetForLeaderEpoch.

#[test]
fn end_offset_for_epoch_answers_for_the_newest_epoch_at_or_below_the_one_asked() {
    let s = small();
    let log = three_epochs(&s);
    let answer = |e| log.end_offset_for_epoch(LeaderEpoch(e));
    let at = |e, end| Some((LeaderEpoch(e), o(end)));
    assert_eq!(answer(1), at(1, 40), "present: ends where the next began");
    assert_eq!(answer(3), at(3, 70));
    assert_eq!(answer(6), at(6, 100), "the latest ends at the log end");
    assert_eq!(answer(2), at(1, 40), "between two: the older one");
    assert_eq!(answer(5), at(3, 70));
    assert_eq!(answer(9), at(6, 100), "newer than all: the latest");
    assert_eq!(answer(0), None, "older than all");
}

#[test]
fn an_empty_log_has_no_end_offset_for_any_epoch() {
    let s = Scenario::new();
    let mut log = s.open();
    assert_eq!(log.end_offset_for_epoch(LeaderEpoch(0)), None);
    assert_eq!(log.end_offset_for_epoch(LeaderEpoch(5)), None);
    log.reset_to(o(50)).unwrap();
    assert_eq!(log.end_offset_for_epoch(LeaderEpoch(5)), None);
}
