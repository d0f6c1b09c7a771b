use std::fs::OpenOptions;
use std::io::Write;

use eddy_log::{Error, LeaderEpoch};

use super::*;

fn ten_batches(s: &Scenario) -> Vec<AppendInfo> {
    let mut log = s.open();
    (0..10)
        .map(|_| append(&mut log, values(3, 300, START_MS)))
        .collect()
}

fn active_log(s: &Scenario) -> PathBuf {
    s.files("log").pop().unwrap()
}

#[test]
fn reopening_scans_only_the_tail_after_the_last_index_entry() {
    let s = Scenario::new();
    let mut log = s.open();
    let one = values(8, 1000, START_MS);
    let len = one.len() as u64;
    for _ in 0..200 {
        append(&mut log, one.clone());
    }
    log.close().unwrap();
    let log = s.open();
    let r = log.recovery();
    assert_eq!(r.truncated_bytes, 0);
    assert!(
        r.bytes_scanned <= 4096 + len,
        "scanned {} bytes",
        r.bytes_scanned
    );
    assert_eq!(log.end_offset(), o(1600));
}

#[test]
fn a_torn_tail_is_cut_at_the_last_whole_batch_and_appends_continue() {
    let s = Scenario::new();
    let infos = ten_batches(&s);
    let path = active_log(&s);
    let size = std::fs::metadata(&path).unwrap().len();
    let f = OpenOptions::new().write(true).open(&path).unwrap();
    f.set_len(size - 100).unwrap();
    let mut log = s.open();
    assert_eq!(log.end_offset(), infos[9].base_offset);
    assert!(log.recovery().truncated_bytes > 0);
    assert!(
        log.recovery()
            .truncation_reason
            .as_deref()
            .unwrap()
            .contains("past the end")
    );
    let next = append(&mut log, values(1, 1, START_MS));
    assert_eq!(next.base_offset, infos[9].base_offset);
    assert_eq!(read_all(&log, 1 << 20).unwrap().len(), 28);
}

#[test]
fn garbage_after_the_last_batch_is_cut_off() {
    let s = Scenario::new();
    ten_batches(&s);
    let path = active_log(&s);
    let size = std::fs::metadata(&path).unwrap().len();
    OpenOptions::new()
        .append(true)
        .open(&path)
        .unwrap()
        .write_all(&[0u8; 77])
        .unwrap();
    let log = s.open();
    assert_eq!(log.recovery().truncated_bytes, 77);
    assert_eq!(std::fs::metadata(&path).unwrap().len(), size);
    assert_eq!(log.end_offset(), o(30));
}

#[test]
fn a_crc_mismatch_in_the_tail_truncates_from_that_batch() {
    let s = Scenario::new();
    ten_batches(&s);
    let path = active_log(&s);
    let size = std::fs::metadata(&path).unwrap().len();
    flip_byte(&path, size - 10, 0x40);
    let log = s.open();
    assert_eq!(log.end_offset(), o(27));
    assert!(
        log.recovery()
            .truncation_reason
            .as_deref()
            .unwrap()
            .contains("CRC")
    );
}

#[test]
fn indexes_that_disagree_with_their_log_are_rebuilt() {
    let s = Scenario::with(|c| {
        c.index_interval_bytes = 512;
        c.segment_bytes = 8 * 1024;
    });
    let mut log = s.open();
    for i in 0..60 {
        append(&mut log, values(2, 100, START_MS + i));
    }
    log.close().unwrap();
    let paths: Vec<_> = s
        .files("index")
        .into_iter()
        .chain(s.files("timeindex"))
        .collect();
    for (i, p) in paths.iter().enumerate() {
        match i % 3 {
            0 => std::fs::write(p, [0xab; 37]).unwrap(),
            1 => std::fs::remove_file(p).unwrap(),
            _ => std::fs::write(p, [0u8; 24]).unwrap(),
        }
    }
    let log = s.open();
    assert!(log.recovery().index_entries_dropped > 0 || log.recovery().batches_scanned > 0);
    for from in 0..120 {
        let recs = decode(&log.read(o(from), 1, None).unwrap().bytes);
        assert!(recs.iter().any(|r| r.offset == from), "offset {from}");
    }
    let at = log.offset_for_timestamp(Timestamp(START_MS + 30)).unwrap();
    assert_eq!(at, Some(o(60)));
}

#[test]
fn a_corrupt_sealed_segment_is_reported_and_never_served() {
    let s = Scenario::with(|c| c.segment_bytes = 4096);
    let mut log = s.open();
    for _ in 0..20 {
        append(&mut log, values(3, 300, START_MS));
    }
    log.close().unwrap();
    let sealed = &s.files("log")[0];
    flip_byte(sealed, 1500, 0x01);
    let log = s.open();
    let err = read_all(&log, 1 << 20).unwrap_err();
    assert!(matches!(err, Error::Corrupt { .. }), "{err}");
    assert!(err.to_string().contains("restore the partition"), "{err}");
    assert!(
        log.end_offset() > o(0),
        "the log still opens and serves the rest"
    );
    let last = log
        .read(log.segments().last().unwrap().base_offset, 1 << 20, None)
        .unwrap();
    assert!(!last.bytes.is_empty());
}

#[test]
fn a_lost_epoch_checkpoint_is_rebuilt_from_the_log() {
    let s = Scenario::new();
    let mut log = s.open();
    log.append(&values(1, 1, START_MS), LeaderEpoch(2)).unwrap();
    log.append(&values(1, 1, START_MS), LeaderEpoch(5)).unwrap();
    drop(log);
    std::fs::remove_file(s.dir.join("leader-epoch-checkpoint")).unwrap();
    let log = s.open();
    assert!(log.recovery().epochs_rebuilt);
    assert_eq!(
        log.leader_epochs(),
        &[(LeaderEpoch(2), o(0)), (LeaderEpoch(5), o(1))]
    );
    assert_eq!(read_all(&log, 1 << 20).unwrap().len(), 2);
}

#[test]
fn a_truncated_tail_takes_its_epochs_with_it() {
    let s = Scenario::new();
    let mut log = s.open();
    log.append(&values(1, 1, START_MS), LeaderEpoch(1)).unwrap();
    log.append(&values(1, 1, START_MS), LeaderEpoch(2)).unwrap();
    drop(log);
    let path = active_log(&s);
    let size = std::fs::metadata(&path).unwrap().len();
    OpenOptions::new()
        .write(true)
        .open(&path)
        .unwrap()
        .set_len(size - 1)
        .unwrap();
    let mut log = s.open();
    assert_eq!(log.leader_epochs(), &[(LeaderEpoch(1), o(0))]);
    log.append(&values(1, 1, START_MS), LeaderEpoch(1)).unwrap();
    assert_eq!(read_all(&log, 1 << 20).unwrap().len(), 2);
}

/// Cuts the last `bytes` off the file at `path`.
fn shorten(path: &Path, bytes: u64) {
    let size = std::fs::metadata(path).unwrap().len();
    OpenOptions::new()
        .write(true)
        .open(path)
        .unwrap()
        .set_len(size - bytes)
        .unwrap();
}

/// 20 batches of 3 records in 4 KiB segments, closed cleanly; returns the
/// length of one batch (they are all alike).
fn sealed_segments(s: &Scenario) -> u64 {
    let mut log = s.open();
    for _ in 0..20 {
        append(&mut log, values(3, 300, START_MS));
    }
    let len = log.read(o(0), 1, None).unwrap().bytes.len() as u64;
    log.close().unwrap();
    assert!(s.files("log").len() > 2);
    len
}

#[test]
fn a_sealed_segment_with_a_torn_header_at_its_end_is_an_error_not_a_hang() {
    let s = Scenario::with(|c| c.segment_bytes = 4096);
    let batch_len = sealed_segments(&s);
    // A power loss left only the first 30 bytes of the last batch.
    shorten(&s.files("log")[0], batch_len - 30);
    let log = s.open();
    assert_eq!(log.recovery().corrupt_segments.len(), 1);
    let first = log.read(o(0), 1 << 20, None).unwrap();
    assert!(
        !first.bytes.is_empty(),
        "the whole batches before it are served"
    );
    let err = log.read(first.next_offset, 1 << 20, None).unwrap_err();
    assert!(matches!(err, Error::Corrupt { .. }), "{err}");
    assert!(err.to_string().contains("into a batch header"), "{err}");
}

#[test]
fn a_sealed_segment_missing_its_last_batches_is_reported_not_skipped() {
    let s = Scenario::with(|c| c.segment_bytes = 4096);
    let batch_len = sealed_segments(&s);
    shorten(&s.files("log")[0], batch_len);
    let log = s.open();
    let corrupt = &log.recovery().corrupt_segments;
    assert_eq!(corrupt.len(), 1, "{corrupt:?}");
    assert!(corrupt[0].2.contains("missing"), "{corrupt:?}");
    let first = log.read(o(0), 1 << 20, None).unwrap();
    let err = log.read(first.next_offset, 1 << 20, None).unwrap_err();
    assert!(err.to_string().contains("missing"), "{err}");
    assert!(matches!(err, Error::Corrupt { .. }), "{err}");
}

#[test]
fn a_damaged_header_does_not_break_the_epoch_rebuild() {
    let s = Scenario::with(|c| c.segment_bytes = 4096);
    let mut log = s.open();
    for epoch in [1, 1, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2] {
        log.append(&values(3, 300, START_MS), LeaderEpoch(epoch))
            .unwrap();
    }
    let batch_len = log.read(o(0), 1, None).unwrap().bytes.len() as u64;
    log.close().unwrap();
    assert!(s.files("log").len() > 1);
    let sealed = s.files("log")[0].clone();
    let at = 3 * batch_len;
    assert!(at + batch_len <= std::fs::metadata(&sealed).unwrap().len());
    // Base offset and leader epoch are outside the CRC: the fourth batch
    // now claims offset 0 and epoch 3, which would make history go back.
    let f = OpenOptions::new().write(true).open(&sealed).unwrap();
    std::os::unix::fs::FileExt::write_all_at(&f, &0u64.to_be_bytes(), at).unwrap();
    std::os::unix::fs::FileExt::write_all_at(&f, &3u32.to_be_bytes(), at + 12).unwrap();
    std::fs::remove_file(s.dir.join("leader-epoch-checkpoint")).unwrap();
    let log = s.open();
    assert!(log.recovery().epochs_rebuilt);
    assert_eq!(
        log.leader_epochs(),
        &[(LeaderEpoch(1), o(0)), (LeaderEpoch(2), o(6))]
    );
    let err = log.read(o(9), 1 << 20, None).unwrap_err();
    assert!(matches!(err, Error::Corrupt { .. }), "{err}");
}

#[test]
fn an_active_segment_keeps_its_age_across_restarts() {
    let s = Scenario::with(|c| c.segment_ms = 60_000);
    let mut log = s.open();
    append(&mut log, values(1, 10, START_MS));
    drop(log);
    s.clock.advance(45_000);
    let mut log = s.open();
    append(&mut log, values(1, 10, START_MS + 45_000));
    assert_eq!(log.segments().len(), 1);
    drop(log);
    s.clock.advance(20_000);
    let mut log = s.open();
    append(&mut log, values(1, 10, START_MS + 65_000));
    assert_eq!(
        log.segments().len(),
        2,
        "65 s after its first batch the segment rolls, restarts or not"
    );
}

/// Writes `bytes` at `at` in the file at `path`.
fn overwrite(path: &Path, at: u64, bytes: &[u8]) {
    use std::os::unix::fs::FileExt;
    let f = OpenOptions::new().write(true).open(path).unwrap();
    f.write_all_at(bytes, at).unwrap();
}

#[test]
fn a_damaged_index_entry_in_a_sealed_segment_costs_a_longer_scan_not_a_failed_read() {
    let s = Scenario::with(|c| {
        c.index_interval_bytes = 512;
        c.segment_bytes = 16 * 1024;
    });
    let mut log = s.open();
    for i in 0..120 {
        append(&mut log, values(2, 100, START_MS + i));
    }
    log.close().unwrap();
    let index = &s.files("index")[0];
    let entries = std::fs::metadata(index).unwrap().len() / 8;
    assert!(entries > 6, "the first segment has {entries} index entries");
    // Entry 3 now points into the middle of a batch, entry 4 names an
    // offset its batch does not start at; the last entry, which opening
    // checks, is intact.
    overwrite(index, 3 * 8 + 4, &77u32.to_be_bytes());
    overwrite(index, 4 * 8, &1u32.to_be_bytes());
    let log = s.open();
    assert_eq!(log.recovery().corrupt_segments.len(), 0);
    for from in 0..80 {
        let recs = decode(&log.read(o(from), 1, None).unwrap().bytes);
        assert!(recs.iter().any(|r| r.offset == from), "offset {from}");
    }
    let all = read_all(&log, 1 << 20).unwrap();
    assert_eq!(offsets(&all), (0..240).collect::<Vec<_>>());
    for i in [10, 25, 40] {
        let at = log.offset_for_timestamp(Timestamp(START_MS + i)).unwrap();
        assert_eq!(at, Some(o(2 * i as u64)), "timestamp {i}");
    }
}

#[test]
fn a_roll_that_left_an_empty_segment_file_behind_can_roll_again() {
    let s = Scenario::new();
    let infos = ten_batches(&s);
    let mut log = s.open();
    // A roll that failed after creating its file (the disk was full)
    // leaves an empty segment named for the next offset.
    let next = infos[9].base_offset.0 + 3;
    std::fs::write(s.dir.join(format!("{next:020}.log")), b"").unwrap();
    log.roll().expect("the empty leftover is taken over");
    let info = append(&mut log, values(1, 1, START_MS));
    assert_eq!(info.base_offset.0, next);
    assert_eq!(read_all(&log, 1 << 20).unwrap().len(), 31);
}
