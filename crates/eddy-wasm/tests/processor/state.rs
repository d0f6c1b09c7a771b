//! The keyed state a call sees: changes carry over between batches once
//! the caller applies them, a refused call's changes are gone, a
//! processor without state gets a clear error, and a component built
//! against the world before state still loads.

use std::sync::Arc;

use bytes::Bytes;
use eddy_wasm::{InputRecord, MemoryState, Offset, StateSession, Timestamp};

use super::{instance, wasm};

fn keyed(keys: &[&str], first_offset: u64) -> Vec<InputRecord> {
    let topic: Arc<str> = Arc::from("input");
    keys.iter()
        .enumerate()
        .map(|(i, k)| InputRecord {
            key: Some(Bytes::copy_from_slice(k.as_bytes())),
            value: Some(Bytes::from_static(b"x")),
            headers: Vec::new(),
            timestamp: Timestamp(1_700_000_000_000),
            topic: topic.clone(),
            partition: 0,
            offset: Offset(first_offset + i as u64),
        })
        .collect()
}

fn counts(outputs: &[eddy_wasm::OutputRecord]) -> Vec<String> {
    outputs
        .iter()
        .map(|o| {
            format!(
                "{}={}",
                String::from_utf8_lossy(o.key.as_deref().unwrap()),
                String::from_utf8_lossy(o.value.as_deref().unwrap())
            )
        })
        .collect()
}

#[test]
fn running_count_continues_across_batches_from_the_applied_changes() {
    let mut counter = instance(wasm::RUNNING_COUNT, &[]);
    let store = Arc::new(MemoryState::default());
    let mut session = StateSession::new(store.clone(), 1 << 20);

    let out = counter
        .process_with_state(&keyed(&["a", "b", "a"], 0), &mut session)
        .unwrap();
    session.accept_call();
    assert_eq!(counts(&out), ["a=1", "b=1", "a=2"]);
    let changes = session.take_changes();
    assert_eq!(changes.len(), 3, "one change per put, none merged");
    store.apply(&changes);

    // A call whose outputs the caller refuses leaves the store as it was.
    counter
        .process_with_state(&keyed(&["a"], 3), &mut session)
        .unwrap();
    session.discard_call();
    assert!(session.take_changes().is_empty());

    // A fresh instance sees the same counts: they live in the store.
    let mut fresh = instance(wasm::RUNNING_COUNT, &[]);
    let out = fresh
        .process_with_state(&keyed(&["a", "c"], 3), &mut session)
        .unwrap();
    session.accept_call();
    assert_eq!(counts(&out), ["a=3", "c=1"]);
    store.apply(&session.take_changes());
    assert_eq!(store.len(), 3);
}

#[test]
fn a_processor_given_no_state_fails_the_record_saying_how_to_declare_it() {
    let mut counter = instance(wasm::RUNNING_COUNT, &[]);
    let err = counter.process(&keyed(&["a"], 0)).unwrap_err();
    let text = err.to_string();
    assert!(text.contains("state: {enabled: true}"), "{text}");
    assert!(
        !counter.is_poisoned(),
        "a record error leaves the instance usable"
    );
}

#[test]
fn a_processor_built_against_the_world_before_state_still_runs() {
    let mut old = instance(wasm::TEST_WORLD_0_2_0, &[]);
    let out = old.process(&keyed(&["a", "b"], 0)).unwrap();
    assert_eq!(out.len(), 2);
    assert_eq!(out[1].key.as_deref(), Some(&b"b"[..]));
}

/// Records with these (key, timestamp)s, offsets from `first_offset`.
fn timed(records: &[(&str, i64)], first_offset: u64) -> Vec<InputRecord> {
    let mut out = keyed(
        &records.iter().map(|(k, _)| *k).collect::<Vec<_>>(),
        first_offset,
    );
    for (r, (_, ts)) in out.iter_mut().zip(records) {
        r.timestamp = Timestamp(*ts);
    }
    out
}

/// Runs batches through `instance` with one state, as a task does.
fn run_batches(
    instance: &mut eddy_wasm::Instance,
    state: &mut StateSession,
    store: &MemoryState,
    batches: &[Vec<InputRecord>],
) -> Vec<String> {
    let mut outputs = Vec::new();
    for batch in batches {
        let out = instance.process_with_state(batch, state).unwrap();
        state.accept_call();
        store.apply(&state.take_changes());
        outputs.extend(
            out.iter()
                .map(|o| String::from_utf8_lossy(o.value.as_deref().unwrap()).into_owned()),
        );
    }
    outputs
}

#[test]
fn windows_close_when_the_watermark_passes_their_end_whatever_the_batches() {
    let records = [
        ("a", 1_000),
        ("b", 5_000),
        ("a", 9_999),
        ("a", 10_000), // the watermark reaches 10,000: [0, 10,000) closes
        ("b", 12_000),
        ("a", 31_000), // [10,000, 20,000) closes, and [20,000, 30,000) had nothing
    ];
    let expected = [
        r#"{"key":"a","start":0,"end":10000,"count":2}"#,
        r#"{"key":"b","start":0,"end":10000,"count":1}"#,
        r#"{"key":"a","start":10000,"end":20000,"count":1}"#,
        r#"{"key":"b","start":10000,"end":20000,"count":1}"#,
    ];
    for cut in [1, 2, 4, 6] {
        let mut counter = instance(wasm::WINDOW_COUNT, &[("window_ms", "10000")]);
        let store = Arc::new(MemoryState::default());
        let mut state = StateSession::new(store.clone(), 1 << 20);
        let all = timed(&records, 0);
        let batches: Vec<Vec<InputRecord>> = all.chunks(cut).map(<[_]>::to_vec).collect();
        let got = run_batches(&mut counter, &mut state, &store, &batches);
        assert_eq!(got, expected, "batches of {cut}");
        assert_eq!(state.max_timestamp(), Some(31_000));
    }
}

#[test]
fn a_late_record_fails_and_allowed_lateness_keeps_its_window_open() {
    let late = timed(&[("a", 1_000), ("a", 25_000), ("a", 2_000)], 0);
    let mut counter = instance(wasm::WINDOW_COUNT, &[("window_ms", "10000")]);
    let store = Arc::new(MemoryState::default());
    let mut state = StateSession::new(store.clone(), 1 << 20);
    run_batches(&mut counter, &mut state, &store, &[late[..2].to_vec()]);
    let err = counter
        .process_with_state(&late[2..], &mut state)
        .unwrap_err()
        .to_string();
    assert!(err.contains("late: its window closed"), "{err}");

    // 20 s of allowed lateness: the window of 2,000 is still open at 25,000.
    let mut counter = instance(wasm::WINDOW_COUNT, &[("window_ms", "10000")]);
    let store = Arc::new(MemoryState::default());
    let mut state = StateSession::new(store.clone(), 1 << 20).with_event_time(None, 20_000);
    let closing = timed(&[("a", 31_000)], 3);
    let got = run_batches(&mut counter, &mut state, &store, &[late, closing]);
    assert_eq!(got, [r#"{"key":"a","start":0,"end":10000,"count":2}"#]);
}

#[test]
fn dedup_drops_an_id_seen_within_its_ttl_and_forgets_it_after() {
    let mut dedup = instance(wasm::DEDUP, &[("ttl_ms", "1000")]);
    let store = Arc::new(MemoryState::default());
    let mut state = StateSession::new(store.clone(), 1 << 20);
    let records = timed(
        &[("x", 0), ("x", 500), ("y", 600), ("x", 1_200), ("z", 5_000)],
        0,
    );
    let out = dedup.process_with_state(&records, &mut state).unwrap();
    state.accept_call();
    store.apply(&state.take_changes());
    let keys: Vec<&[u8]> = out.iter().map(|o| o.key.as_deref().unwrap()).collect();
    assert_eq!(
        keys,
        [b"x", b"y", b"x", b"z"],
        "the x at 500 is a duplicate"
    );
    assert_eq!(dedup.counters().get("duplicates-dropped"), Some(&1));
    // At 5,000 every id but z has expired: only z (and its timer) remain.
    let ids: Vec<Bytes> = store
        .entries()
        .into_iter()
        .map(|(k, _)| k)
        .filter(|k| k[0] == 0)
        .collect();
    assert_eq!(ids, [Bytes::from_static(b"\0z")]);
}
