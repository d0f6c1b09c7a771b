use eddy_log::{Error, LeaderEpoch, Timestamp};

use super::*;

#[test]
fn appends_get_consecutive_offsets_and_read_back_identically() {
    let s = Scenario::new();
    let mut log = s.open();
    let a = append(
        &mut log,
        batch(&[(Some("a"), Some("1")), (None, Some("2"))], START_MS),
    );
    let b = append(&mut log, batch(&[(Some("b"), None)], START_MS + 1));
    assert_eq!(
        (a.base_offset, a.last_offset, a.record_count),
        (o(0), o(1), 2)
    );
    assert_eq!((b.base_offset, b.last_offset), (o(2), o(2)));
    assert_eq!(log.end_offset(), o(3));
    let recs = read_all(&log, 1 << 20).unwrap();
    assert_eq!(offsets(&recs), [0, 1, 2]);
    assert_eq!(recs[0].key.as_deref(), Some(&b"a"[..]));
    assert_eq!(recs[2].value, None);
    assert_eq!(recs[2].timestamp, START_MS + 1);
}

#[test]
fn a_read_returns_whole_batches_within_max_bytes_but_at_least_one() {
    let s = Scenario::new();
    let mut log = s.open();
    let one = values(10, 100, START_MS);
    let len = one.len();
    for _ in 0..5 {
        append(&mut log, one.clone());
    }
    assert_eq!(
        log.read(o(0), 1, None).unwrap().bytes.len(),
        len,
        "one batch even if over the limit"
    );
    assert_eq!(
        log.read(o(0), 2 * len + len / 2, None).unwrap().bytes.len(),
        2 * len
    );
    let all = log.read(o(0), 1 << 20, None).unwrap();
    assert_eq!((all.bytes.len(), all.next_offset), (5 * len, o(50)));
}

#[test]
fn reading_from_inside_a_batch_returns_the_whole_batch_holding_it() {
    let s = Scenario::new();
    let mut log = s.open();
    append(&mut log, values(10, 10, START_MS));
    append(&mut log, values(10, 10, START_MS));
    let r = log.read(o(13), 1 << 20, None).unwrap();
    assert_eq!(offsets(&decode(&r.bytes)).first(), Some(&10));
    assert_eq!(r.next_offset, o(20));
}

#[test]
fn reads_stop_before_the_upper_bound() {
    let s = Scenario::new();
    let mut log = s.open();
    for _ in 0..3 {
        append(&mut log, values(5, 10, START_MS));
    }
    let r = log.read(o(0), 1 << 20, Some(o(10))).unwrap();
    assert_eq!(r.next_offset, o(10));
    assert!(
        log.read(o(10), 1 << 20, Some(o(10)))
            .unwrap()
            .bytes
            .is_empty()
    );
    assert!(
        log.read(o(15), 1 << 20, None).unwrap().bytes.is_empty(),
        "at the end: nothing yet"
    );
}

#[test]
fn reading_outside_the_log_is_out_of_range_with_the_valid_range() {
    let s = Scenario::new();
    let mut log = s.open();
    append(&mut log, values(3, 10, START_MS));
    let err = log.read(o(4), 100, None).unwrap_err();
    assert!(matches!(
        err,
        Error::OffsetOutOfRange {
            start: Offset(0),
            end: Offset(3),
            ..
        }
    ));
    assert!(
        err.to_string().contains("from 0 up to (not including) 3"),
        "{err}"
    );
}

#[test]
fn segments_roll_by_size_and_reads_cross_them_seamlessly() {
    let s = Scenario::with(|c| c.segment_bytes = 4096);
    let mut log = s.open();
    for _ in 0..20 {
        append(&mut log, values(4, 200, START_MS));
    }
    let segments = log.segments();
    assert!(segments.len() >= 4, "{segments:?}");
    for w in segments.windows(2) {
        assert_eq!(w[0].next_offset, w[1].base_offset);
        assert!(w[0].size_bytes <= 4096);
    }
    assert_eq!(s.files("log").len(), segments.len());
    assert!(
        s.files("log")[1]
            .file_name()
            .unwrap()
            .to_str()
            .unwrap()
            .len()
            == 24,
        "20-digit names"
    );
    assert_eq!(
        offsets(&read_all(&log, 1000).unwrap()),
        (0..80).collect::<Vec<_>>()
    );
}

#[test]
fn segments_roll_by_age() {
    let s = Scenario::with(|c| c.segment_ms = 60_000);
    let mut log = s.open();
    append(&mut log, values(1, 10, START_MS));
    s.clock.advance(59_999);
    append(&mut log, values(1, 10, START_MS));
    assert_eq!(log.segments().len(), 1);
    s.clock.advance(1);
    append(&mut log, values(1, 10, START_MS));
    assert_eq!(log.segments().len(), 2);
    assert_eq!(log.segments()[1].base_offset, o(2));
}

#[test]
fn the_sparse_index_finds_every_offset_in_sealed_and_active_segments() {
    let s = Scenario::with(|c| {
        c.index_interval_bytes = 256;
        c.segment_bytes = 16 * 1024;
    });
    let mut log = s.open();
    for i in 0..300 {
        append(&mut log, values(1 + i % 3, 50, START_MS));
    }
    assert!(log.segments().len() > 3);
    for from in (0..log.end_offset().0).step_by(7) {
        let r = log.read(o(from), 1, None).unwrap();
        let recs = decode(&r.bytes);
        assert!(
            recs.first().unwrap().offset <= from && recs.last().unwrap().offset >= from,
            "{from}"
        );
    }
    drop(log);
    let log = s.open();
    for from in (0..log.end_offset().0).step_by(11) {
        let recs = decode(&log.read(o(from), 1, None).unwrap().bytes);
        assert!(recs.iter().any(|r| r.offset == from), "{from} after reopen");
    }
}

#[test]
fn timestamp_lookup_finds_the_first_record_at_or_after_it() {
    let s = Scenario::with(|c| {
        c.segment_bytes = 2048;
        c.index_interval_bytes = 128;
    });
    let mut log = s.open();
    // Timestamps 0, 10, 20, … with one late record that goes back in time.
    for i in 0..100i64 {
        let ts = if i == 50 {
            START_MS + 5
        } else {
            START_MS + i * 10
        };
        append(&mut log, batch(&[(None, Some("x"))], ts));
    }
    let at = |ts: i64| log.offset_for_timestamp(Timestamp(START_MS + ts)).unwrap();
    assert_eq!(at(-1), Some(o(0)));
    assert_eq!(at(0), Some(o(0)));
    assert_eq!(at(1), Some(o(1)));
    assert_eq!(at(300), Some(o(30)));
    assert_eq!(
        at(5),
        Some(o(1)),
        "offset 50 (+5) comes after offset 1 (+10)"
    );
    assert_eq!(at(495), Some(o(51)), "offset 50 went back in time to +5");
    assert_eq!(at(500), Some(o(51)));
    assert_eq!(at(990), Some(o(99)));
    assert_eq!(at(991), None);
}

#[test]
fn invalid_batches_are_refused_and_nothing_is_written() {
    let s = Scenario::with(|c| c.batch_bytes_max = 2048);
    let mut log = s.open();
    let good = values(2, 10, START_MS);
    let check = |log: &mut Log, b: Vec<u8>, want: &str| {
        let err = log.append(&b, LeaderEpoch(0)).unwrap_err();
        assert!(
            err.to_string().contains(want),
            "{err} should mention {want:?}"
        );
    };
    check(
        &mut log,
        values(40, 100, START_MS),
        "exceeds the limit of 2048 bytes",
    );
    check(&mut log, good[..30].to_vec(), "truncated");
    // Said to be gzip, but its records are not.
    let mut compressed = good.clone();
    compressed[22] |= 1; // attributes: gzip
    let crc = crc32c::crc32c(&compressed[21..]);
    compressed[17..21].copy_from_slice(&crc.to_be_bytes());
    check(
        &mut log,
        compressed,
        "gzip records of the batch cannot be decompressed",
    );
    let mut unknown = good.clone();
    unknown[22] |= 7; // attributes: no such codec
    let crc = crc32c::crc32c(&unknown[21..]);
    unknown[17..21].copy_from_slice(&crc.to_be_bytes());
    check(&mut log, unknown, "compression codec 7");
    let mut two = good.clone();
    two.extend_from_slice(&good);
    check(&mut log, two, "follow the record batch");
    let mut damaged = good.clone();
    *damaged.last_mut().unwrap() ^= 0xff;
    check(&mut log, damaged, "CRC mismatch");
    let mut wrong_max = good.clone();
    wrong_max[35..43].copy_from_slice(&(START_MS + 1).to_be_bytes());
    let crc = crc32c::crc32c(&wrong_max[21..]);
    wrong_max[17..21].copy_from_slice(&crc.to_be_bytes());
    check(&mut log, wrong_max, "newest timestamp");
    assert_eq!(log.end_offset(), o(0));
    assert_eq!(log.size_bytes(), 0);
    let err = log
        .append(&good.clone(), LeaderEpoch(0))
        .map(|a| a.base_offset);
    assert!(matches!(err, Ok(Offset(0))), "a good batch still goes in");
}

#[test]
fn leader_epochs_are_stamped_recorded_and_only_grow() {
    let s = Scenario::new();
    let mut log = s.open();
    log.append(&values(2, 1, START_MS), LeaderEpoch(1)).unwrap();
    log.append(&values(2, 1, START_MS), LeaderEpoch(4)).unwrap();
    let err = log
        .append(&values(1, 1, START_MS), LeaderEpoch(3))
        .unwrap_err();
    assert!(matches!(err, Error::StaleEpoch { .. }), "{err}");
    let r = log.read(o(2), 1 << 20, None).unwrap();
    let h = eddy_log::BatchHeader::parse(&r.bytes).unwrap();
    assert_eq!(h.leader_epoch, LeaderEpoch(4));
    drop(log);
    let log = s.open();
    assert_eq!(
        log.leader_epochs(),
        &[(LeaderEpoch(1), o(0)), (LeaderEpoch(4), o(2))]
    );
    assert_eq!(log.epoch_for(o(1)), Some(LeaderEpoch(1)));
}

#[test]
fn a_directory_that_is_not_eddys_is_refused() {
    let s = Scenario::new();
    std::fs::create_dir_all(&s.dir).unwrap();
    std::fs::write(s.dir.join("notes.txt"), "mine").unwrap();
    let err = Log::open(&s.dir, s.config.clone(), s.clock.clone()).unwrap_err();
    assert!(matches!(err, Error::NotEddyDir { .. }));
    assert!(err.to_string().contains("empty directory"), "{err}");
    assert_eq!(
        std::fs::read_to_string(s.dir.join("notes.txt")).unwrap(),
        "mine"
    );
}

#[test]
fn fsync_on_an_interval_waits_for_the_interval() {
    let s = Scenario::with(|c| c.fsync = eddy_log::FsyncPolicy::IntervalMs(100));
    let mut log = s.open();
    append(&mut log, values(1, 1, START_MS));
    assert!(!log.flush_if_due().unwrap());
    s.clock.advance(100);
    assert!(log.flush_if_due().unwrap());
    assert!(!log.flush_if_due().unwrap());
}
