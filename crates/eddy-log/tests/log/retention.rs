use super::*;

const HOUR: i64 = 3600 * 1000;

fn rolled(s: &Scenario, segments: usize, ts_step: i64) -> Log {
    let mut log = s.open();
    for i in 0..segments as i64 {
        append(&mut log, values(10, 100, START_MS + i * ts_step));
        log.roll().unwrap();
    }
    append(
        &mut log,
        values(1, 100, START_MS + segments as i64 * ts_step),
    );
    log
}

#[test]
fn time_retention_deletes_sealed_segments_whose_newest_record_is_too_old() {
    let s = Scenario::with(|c| c.retention_ms = Some(10 * HOUR));
    let mut log = rolled(&s, 5, HOUR);
    s.clock.set(START_MS + 12 * HOUR - 1); // newest at +0h and +1h are past 10h; +2h is not
    let r = log.apply_retention().unwrap();
    assert_eq!(r.segments_deleted, 2);
    assert_eq!(log.start_offset(), o(20));
    assert_eq!(s.files("log").len(), 4);
    assert!(log.read(o(5), 100, None).is_err());
    assert_eq!(read_all(&log, 1 << 20).unwrap().first().unwrap().offset, 20);
}

#[test]
fn size_retention_keeps_the_newest_segments_within_the_limit() {
    let s = Scenario::with(|c| {
        c.retention_ms = None;
        c.retention_bytes = Some(3000);
    });
    let mut log = rolled(&s, 5, 0);
    let seg = log.segments()[0].size_bytes;
    let r = log.apply_retention().unwrap();
    assert!(log.size_bytes() >= 3000, "never below the limit");
    assert!(
        log.size_bytes() - log.segments()[0].size_bytes < 3000,
        "no more than needed"
    );
    assert_eq!(r.bytes_deleted, r.segments_deleted as u64 * seg);
}

#[test]
fn the_active_segment_is_never_deleted() {
    let s = Scenario::with(|c| {
        c.retention_ms = Some(1);
        c.retention_bytes = Some(0);
    });
    let mut log = rolled(&s, 3, 0);
    s.clock.advance(100 * HOUR);
    log.apply_retention().unwrap();
    assert_eq!(log.segments().len(), 1);
    assert_eq!(log.start_offset(), o(30));
    assert_eq!(read_all(&log, 1 << 20).unwrap().len(), 1);
    drop(log);
    let log = s.open();
    assert_eq!((log.start_offset(), log.end_offset()), (o(30), o(31)));
}

#[test]
fn compact_only_topics_are_not_touched_by_retention() {
    let s = Scenario::with(|c| {
        c.retention_ms = Some(1);
        c.cleanup_policy = eddy_log::CleanupPolicy::Compact;
    });
    let mut log = rolled(&s, 3, 0);
    s.clock.advance(100 * HOUR);
    assert_eq!(log.apply_retention().unwrap().segments_deleted, 0);
}
