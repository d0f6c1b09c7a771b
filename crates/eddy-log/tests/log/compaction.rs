use eddy_log::CleanupPolicy;

use super::*;

fn compacted_scenario() -> Scenario {
    Scenario::with(|c| {
        c.cleanup_policy = CleanupPolicy::Compact;
        c.delete_retention_ms = 1000;
    })
}

fn put(log: &mut Log, kvs: &[(&str, Option<&str>)], ts: i64) {
    let records: Vec<_> = kvs.iter().map(|(k, v)| (Some(*k), *v)).collect();
    append(log, batch(&records, ts));
}

fn latest(recs: &[Rec]) -> Vec<(String, Option<String>, u64)> {
    recs.iter()
        .map(|r| {
            let s = |b: &Option<Vec<u8>>| b.as_ref().map(|b| String::from_utf8(b.clone()).unwrap());
            (s(&r.key).unwrap_or_default(), s(&r.value), r.offset)
        })
        .collect()
}

#[test]
fn compaction_keeps_the_newest_value_per_key_at_its_original_offset() {
    let s = compacted_scenario();
    let mut log = s.open();
    put(&mut log, &[("a", Some("a1")), ("b", Some("b1"))], START_MS); // 0, 1
    log.roll().unwrap();
    put(&mut log, &[("a", Some("a2")), ("c", Some("c1"))], START_MS); // 2, 3
    log.roll().unwrap();
    put(&mut log, &[("b", Some("b2"))], START_MS); // 4
    log.roll().unwrap();
    put(&mut log, &[("a", Some("a3"))], START_MS); // 5, active: not compacted
    let stats = log.compact().unwrap();
    assert_eq!((stats.segments_read, stats.records_removed), (3, 2));
    let expect = vec![
        ("a".to_string(), Some("a2".to_string()), 2),
        ("c".to_string(), Some("c1".to_string()), 3),
        ("b".to_string(), Some("b2".to_string()), 4),
        ("a".to_string(), Some("a3".to_string()), 5),
    ];
    assert_eq!(latest(&read_all(&log, 1 << 20).unwrap()), expect);
    assert_eq!(log.segments().len(), 3, "the emptied first segment is gone");
    assert_eq!(log.start_offset(), o(2));
    drop(log);
    let log = s.open();
    assert_eq!(
        latest(&read_all(&log, 1 << 20).unwrap()),
        expect,
        "after reopening"
    );
    assert_eq!(
        log.compaction_job()
            .unwrap()
            .run()
            .unwrap()
            .cleaned_segments(),
        0,
        "idempotent"
    );
}

#[test]
fn tombstones_remove_their_key_and_go_after_delete_retention() {
    let s = compacted_scenario();
    let mut log = s.open();
    put(&mut log, &[("k", Some("v")), ("j", Some("w"))], START_MS);
    put(&mut log, &[("k", None)], START_MS);
    log.roll().unwrap();
    put(&mut log, &[("x", Some("y"))], START_MS);
    log.compact().unwrap();
    let keys: Vec<_> = latest(&read_all(&log, 1 << 20).unwrap());
    assert_eq!(
        keys[..2],
        [("j".into(), Some("w".into()), 1), ("k".into(), None, 2)]
    );
    s.clock.set(START_MS + 1000);
    let stats = log.compact().unwrap();
    assert_eq!(stats.tombstones_removed, 1);
    let keys: Vec<_> = latest(&read_all(&log, 1 << 20).unwrap());
    assert_eq!(
        keys,
        [
            ("j".into(), Some("w".into()), 1),
            ("x".into(), Some("y".into()), 3)
        ]
    );
}

#[test]
fn keyless_records_are_kept() {
    let s = compacted_scenario();
    let mut log = s.open();
    append(
        &mut log,
        batch(
            &[
                (None, Some("1")),
                (Some("k"), Some("a")),
                (Some("k"), Some("b")),
            ],
            START_MS,
        ),
    );
    log.roll().unwrap();
    put(&mut log, &[("z", Some("z"))], START_MS);
    log.compact().unwrap();
    assert_eq!(offsets(&read_all(&log, 1 << 20).unwrap()), [0, 2, 3]);
}

#[test]
fn an_interrupted_compaction_either_never_happened_or_completes_on_open() {
    let s = compacted_scenario();
    let build = |s: &Scenario| {
        let mut log = s.open();
        put(
            &mut log,
            &[("a", Some("1")), ("a", Some("2")), ("b", Some("3"))],
            START_MS,
        );
        log.roll().unwrap();
        put(&mut log, &[("c", Some("4"))], START_MS);
        log
    };
    let log = build(&s);
    let output = log.compaction_job().unwrap().run().unwrap();
    drop(output);
    drop(log);
    // Crash before the commit point: the cleaned copy is discarded.
    let log = s.open();
    assert!(s.files("cleaned").is_empty());
    assert_eq!(offsets(&read_all(&log, 1 << 20).unwrap()), [0, 1, 2, 3]);
    // Crash after the commit point: the swap is finished on open.
    let output = log.compaction_job().unwrap().run().unwrap();
    std::mem::forget(output);
    let base = &s.files("log")[0];
    std::fs::rename(
        format!("{}.cleaned", base.display()),
        format!("{}.swap", base.display()),
    )
    .unwrap();
    drop(log);
    let log = s.open();
    assert_eq!(log.recovery().swaps_completed, 1);
    assert_eq!(offsets(&read_all(&log, 1 << 20).unwrap()), [1, 2, 3]);
    assert!(log.segments()[0].compacted);
}

#[test]
fn a_segment_deleted_by_retention_during_compaction_is_left_alone() {
    let s = Scenario::with(|c| {
        c.cleanup_policy = CleanupPolicy::CompactDelete;
        c.retention_ms = Some(1000);
    });
    let mut log = s.open();
    put(&mut log, &[("a", Some("1")), ("a", Some("2"))], START_MS);
    log.roll().unwrap();
    put(&mut log, &[("b", Some("3"))], START_MS + 5000);
    let job = log.compaction_job().unwrap();
    s.clock.set(START_MS + 2000);
    assert_eq!(log.apply_retention().unwrap().segments_deleted, 1);
    let output = job.run().unwrap();
    log.install_compaction(output).unwrap();
    assert!(s.files("cleaned").is_empty());
    assert_eq!(offsets(&read_all(&log, 1 << 20).unwrap()), [2]);
}

/// A changelog batch from producer `pid`: `(key, value, change number)`
/// records, and a commit marker vouching for `committed` changes if given.
fn changes(pid: i64, seq: i32, records: &[(&str, &str, u64)], committed: Option<u64>) -> Vec<u8> {
    let mut b = BatchBuilder::new().producer(ProducerStamp {
        producer_id: ProducerId(pid),
        producer_epoch: ProducerEpoch(0),
        base_sequence: Sequence(seq),
    });
    let numbers: Vec<[u8; 8]> = records.iter().map(|r| r.2.to_be_bytes()).collect();
    let headers: Vec<[(&str, &[u8]); 1]> = numbers
        .iter()
        .map(|n| [(eddy_log::CHANGE_HEADER, &n[..])])
        .collect();
    for ((k, v, _), headers) in records.iter().zip(&headers) {
        b.push(&RecordRef {
            timestamp: Timestamp(START_MS),
            key: Some(k.as_bytes()),
            value: Some(v.as_bytes()),
            headers,
        });
    }
    let count = committed.map(u64::to_be_bytes);
    if let Some(count) = &count {
        b.push(&RecordRef {
            timestamp: Timestamp(START_MS),
            key: Some(b"~committed"),
            value: None,
            headers: &[(eddy_log::COMMITTED_HEADER, &count[..])],
        });
    }
    b.finish().unwrap()
}

fn values_of(log: &Log) -> Vec<String> {
    latest(&read_all(log, 1 << 20).unwrap())
        .into_iter()
        .filter(|(k, _, _)| k != "~committed")
        .map(|(k, v, _)| format!("{k}={}", v.unwrap_or_default()))
        .collect()
}

/// A crash can leave changes past the commit in a changelog; a restore
/// skips them (the replay writes them again). Compaction must not let
/// them replace the committed value of their key, or the restore would
/// find the key without it.
#[test]
fn a_changelog_compacts_only_what_its_markers_vouch_for() {
    let s = Scenario::with(|c| {
        c.cleanup_policy = CleanupPolicy::Compact;
        c.changelog = true;
    });
    let mut log = s.open();
    append(
        &mut log,
        changes(7, 0, &[("a", "1", 0), ("b", "1", 1)], Some(0)),
    );
    append(&mut log, changes(7, 3, &[("a", "2", 2)], Some(3)));
    log.roll().unwrap();
    // Changes 3 and 4 were written, never committed; then the task crashed.
    append(
        &mut log,
        changes(7, 5, &[("a", "3", 3), ("b", "2", 4)], None),
    );
    log.roll().unwrap();
    append(&mut log, changes(7, 7, &[("c", "1", 5)], None)); // active
    log.compact().unwrap();
    assert_eq!(
        values_of(&log),
        ["b=1", "a=2", "a=3", "b=2", "c=1"],
        "a=1 went (a=2 is committed); a=2 and b=1 stay below the uncommitted a=3 and b=2"
    );

    // Once a marker vouches for them, they compact like any record.
    append(&mut log, changes(7, 8, &[], Some(5)));
    log.roll().unwrap();
    log.compact().unwrap();
    assert_eq!(values_of(&log), ["a=3", "b=2", "c=1"]);

    // Another producer's changes, with no marker of its own, stay.
    append(&mut log, changes(9, 0, &[("a", "x", 0)], None));
    log.roll().unwrap();
    log.compact().unwrap();
    assert_eq!(values_of(&log), ["a=3", "b=2", "c=1", "a=x"]);
}

#[test]
fn any_other_log_compacts_changes_whatever_their_headers() {
    let s = compacted_scenario();
    let mut log = s.open();
    append(&mut log, changes(7, 0, &[("a", "1", 0)], None));
    append(&mut log, changes(7, 1, &[("a", "2", 1)], None));
    log.roll().unwrap();
    append(&mut log, changes(7, 2, &[("b", "1", 2)], None));
    log.compact().unwrap();
    assert_eq!(values_of(&log), ["a=2", "b=1"]);
}

/// A pass that covered every sealed segment is not repeated until a
/// segment is sealed or the tombstones' retention has passed: a large
/// compacted log is not read again every interval for nothing.
#[test]
fn compaction_waits_for_a_new_sealed_segment_or_the_tombstone_retention() {
    let s = compacted_scenario();
    let mut log = s.open();
    put(&mut log, &[("a", Some("1")), ("a", Some("2"))], START_MS);
    log.roll().unwrap();
    put(&mut log, &[("b", Some("1"))], START_MS);
    assert_eq!(log.compact().unwrap().records_removed, 1);
    assert!(log.compaction_job().is_none(), "nothing sealed since");
    put(&mut log, &[("a", Some("3"))], START_MS);
    assert!(log.compaction_job().is_none(), "the active segment waits");
    log.roll().unwrap();
    assert_eq!(log.compact().unwrap().records_removed, 1, "a=2 went");
    assert!(log.compaction_job().is_none());
    s.clock.set(START_MS + 1000);
    assert!(
        log.compaction_job().is_some(),
        "tombstones may have come due"
    );
    drop(log);
    assert!(
        s.open().compaction_job().is_some(),
        "a reopened log starts afresh"
    );
}
