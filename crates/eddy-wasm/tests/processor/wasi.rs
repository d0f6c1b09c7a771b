//! What WASI gives a processor: no capability, and the same answers on
//! every replay of a batch.

use super::*;

/// The values `test-wasi` outputs, one per record, asking for `what`.
fn ask(what: &str, batch: &[InputRecord]) -> Vec<String> {
    let mut p = instance(wasm::TEST_WASI, &[("use", what)]);
    p.process(batch)
        .unwrap()
        .iter()
        .map(|o| String::from_utf8(o.value.as_deref().unwrap().to_vec()).unwrap())
        .collect()
}

fn batch_at(first_offset: u64, len: usize) -> Vec<InputRecord> {
    let mut batch = records((0..len).map(|_| &b"x"[..]));
    for (i, r) in batch.iter_mut().enumerate() {
        r.offset = Offset(first_offset + i as u64);
    }
    batch
}

#[test]
fn the_clock_reads_the_batchs_last_timestamp() {
    let batch = batch_at(0, 3);
    let last = batch[2].timestamp.0.to_string();
    assert_eq!(ask("clock", &batch), [last.clone(), last.clone(), last]);
}

#[test]
fn the_monotonic_clock_stands_still_and_sleeping_returns_at_once() {
    let started = std::time::Instant::now();
    assert_eq!(ask("monotonic", &batch_at(0, 2)), ["0", "0"]);
    assert!(started.elapsed() < std::time::Duration::from_secs(5));
}

#[test]
fn random_numbers_are_the_same_on_every_replay_of_a_batch_and_differ_elsewhere() {
    let first = ask("random", &batch_at(10, 3));
    assert_eq!(first.len(), 3);
    assert!(first[0] != first[1] && first[1] != first[2], "{first:?}");
    assert_eq!(ask("random", &batch_at(10, 3)), first, "a replay");
    assert_ne!(ask("random", &batch_at(11, 3)), first, "another position");
}

#[test]
fn two_pipelines_draw_different_numbers_from_the_same_batch() {
    let draw = |seed: u64| {
        let mut p = processor(wasm::TEST_WASI)
            .instantiate_with(
                &params_of(&[("use", "random")]),
                eddy_wasm::InstanceConfig {
                    random_seed: seed,
                    ..eddy_wasm::InstanceConfig::default()
                },
            )
            .unwrap();
        p.process(&batch_at(0, 1)).unwrap()[0].value.clone()
    };
    assert_eq!(draw(1), draw(1));
    assert_ne!(draw(1), draw(2));
}

#[test]
fn files_cannot_be_opened() {
    let seen = ask("file", &batch_at(0, 1));
    assert!(seen[0].starts_with("error: "), "{seen:?}");
}

#[test]
fn connections_and_name_lookups_are_refused() {
    for what in ["connect", "lookup"] {
        let seen = ask(what, &batch_at(0, 1));
        assert!(seen[0].starts_with("error: "), "{what}: {seen:?}");
    }
}

#[test]
fn the_environment_is_empty() {
    assert_eq!(ask("env", &batch_at(0, 1)), ["0 variables, 0 arguments"]);
}
