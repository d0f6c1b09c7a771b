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
