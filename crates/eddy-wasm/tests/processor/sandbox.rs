//! Hostile and broken processors fail alone, within their limits, with
//! the guest's own message, and the host keeps working.

use std::time::{Duration, Instant};

use eddy_wasm::{InstanceConfig, ProcessError, TrapKind};

use super::*;

fn trap_of(path: &'static str) -> (TrapKind, String, Instance) {
    trap_on(instance(path, &[]), &[b"x"])
}

/// The trap `p` hits processing a batch of records with `values`.
fn trap_on(mut p: Instance, values: &[&[u8]]) -> (TrapKind, String, Instance) {
    match p.process(&records(values.iter().copied())) {
        Err(ProcessError::Trap { kind, message }) => (kind, message, p),
        other => panic!("expected a trap, got {other:?}"),
    }
}

/// After a failure the runtime still runs a healthy processor.
fn host_still_works() {
    let mut p = instance(wasm::PASSTHROUGH, &[]);
    assert_eq!(p.process(&records([&b"alive"[..]])).unwrap().len(), 1);
}

#[test]
fn a_runaway_loop_is_stopped_within_its_time_budget() {
    let mut p = instance(wasm::TEST_LOOP, &[]);
    let budget = Duration::from_millis(runtime().config().batch_time_ms_max);
    let start = Instant::now();
    let err = p.process(&records([&b"x"[..]])).unwrap_err();
    let took = start.elapsed();
    assert!(
        matches!(
            err,
            ProcessError::Trap {
                kind: TrapKind::Timeout,
                ..
            }
        ),
        "{err}"
    );
    assert!(err.to_string().contains("time budget"), "{err}");
    // The budget counts ticks of a shared timer, whose first tick after
    // the call starts comes anywhere within one tick: a stop can come up to
    // one tick short of the budget.
    let tick = Duration::from_millis(eddy_wasm::EPOCH_TICK_MS);
    assert!(
        took + tick >= budget,
        "stopped after {took:?}, more than a tick before the budget {budget:?}"
    );
    assert!(
        took < budget + Duration::from_millis(500),
        "took {took:?} for a budget of {budget:?}"
    );
    host_still_works();
}

#[test]
fn a_memory_bomb_fails_its_allocation_at_the_cap() {
    let (kind, message, _) = trap_of(wasm::TEST_MEMORY_BOMB);
    assert_eq!(kind, TrapKind::OutOfMemory, "{message}");
    assert!(
        message.contains("memory allocation of 1048576 bytes failed"),
        "{message}"
    );
    host_still_works();
}

#[test]
fn an_instance_whose_memory_grew_past_three_quarters_of_its_cap_says_so() {
    // test_config caps memory at 32 MiB: the line is at 24.
    let mut p = instance(wasm::TEST_MEMORY_BOMB, &[("mode", "leak")]);
    let at_start = p.memory_bytes();
    assert!(at_start > 0 && !p.is_near_memory_limit(), "{at_start}");
    p.process(&records([&b"10"[..]])).unwrap();
    assert!(
        p.memory_bytes() >= at_start + (10 << 20),
        "{}",
        p.memory_bytes()
    );
    assert!(!p.is_near_memory_limit(), "{}", p.memory_bytes());
    p.process(&records([&b"14"[..]])).unwrap();
    assert!(p.is_near_memory_limit(), "{}", p.memory_bytes());
    assert!(!p.is_poisoned());
}

#[test]
fn a_refused_allocation_the_guest_coped_with_does_not_explain_a_later_trap() {
    let mut p = instance(wasm::TEST_MEMORY_BOMB, &[("mode", "try")]);
    assert!(p.process(&records([&b"try"[..]])).unwrap().is_empty());
    let (kind, message, _) = trap_on(p, &[b"panic"]);
    assert_eq!(kind, TrapKind::Panic, "{message}");
    assert!(message.contains("asked to panic"), "{message}");
}

#[test]
fn a_panic_is_reported_with_the_guest_message() {
    let (kind, message, _) = trap_of(wasm::TEST_PANIC);
    assert_eq!(kind, TrapKind::Panic);
    assert!(
        message.contains("test-panic: record at offset 0 is cursed"),
        "{message}"
    );
    host_still_works();
}

#[test]
fn deep_recursion_hits_the_stack_cap() {
    let p = instance(wasm::TEST_RECURSION, &[("mode", "wasm-stack")]);
    let (kind, message, _) = trap_on(p, &[b"x"]);
    assert_eq!(kind, TrapKind::StackOverflow, "{message}");
    assert!(message.contains("stack_bytes_max"), "{message}");
    host_still_works();
}

#[test]
fn overflowing_the_guest_stack_in_linear_memory_is_a_stack_overflow() {
    let (kind, message, _) = trap_of(wasm::TEST_RECURSION);
    assert_eq!(kind, TrapKind::StackOverflow, "{message}");
    assert!(
        message.contains("overflowed its stack in linear memory")
            && message.contains("-zstack-size"),
        "{message}"
    );
    host_still_works();
}

#[test]
fn a_trapped_instance_refuses_further_batches() {
    let (_, _, mut p) = trap_of(wasm::TEST_PANIC);
    assert!(p.is_poisoned());
    assert_eq!(
        p.process(&records([&b"x"[..]])).unwrap_err(),
        ProcessError::Poisoned
    );
}

#[test]
fn a_fresh_instance_of_a_trapped_processor_works_again() {
    let (_, _, _dead) = trap_of(wasm::TEST_PANIC);
    let mut fresh = instance(wasm::TEST_PANIC, &[]);
    // It panics again (that is what it does), but as a new, clean instance.
    assert!(matches!(
        fresh.process(&records([&b"x"[..]])),
        Err(ProcessError::Trap {
            kind: TrapKind::Panic,
            ..
        })
    ));
}

#[test]
fn failures_do_not_disturb_other_instances() {
    let mut healthy = instance(wasm::PASSTHROUGH, &[]);
    let _ = trap_of(wasm::TEST_MEMORY_BOMB);
    let _ = trap_of(wasm::TEST_PANIC);
    assert_eq!(
        healthy
            .process(&records([&b"still here"[..]]))
            .unwrap()
            .len(),
        1
    );
}

#[test]
fn oversized_batches_are_refused_before_the_call() {
    let mut p = instance(wasm::PASSTHROUGH, &[]);
    let limit = runtime().config().batch_records_max;
    let big = records(std::iter::repeat_n(&b"x"[..], limit + 1));
    let err = p.process(&big).unwrap_err();
    assert_eq!(
        err,
        ProcessError::BatchTooLarge {
            records: limit + 1,
            limit
        }
    );
    assert!(!p.is_poisoned());
}

#[test]
fn an_instance_keeps_its_time_budget_after_its_runtime_is_dropped() {
    let p = instance_in(
        Config {
            cache_dir: None,
            instances_max: 1,
            ..test_config()
        },
        wasm::TEST_LOOP,
    );
    let start = Instant::now();
    let (kind, message, _) = trap_on(p, &[b"x"]);
    assert_eq!(kind, TrapKind::Timeout, "{message}");
    assert!(start.elapsed() < Duration::from_secs(5));
}

/// An instance of the plugin at `path` in a runtime of its own, set up
/// with `config`. The caller holds only the instance: the runtime and the
/// processor handles are dropped here.
fn instance_in(config: Config, path: &str) -> Instance {
    Runtime::new(config)
        .unwrap()
        .compile(&wasm::read(path).unwrap())
        .unwrap()
        .instantiate(&[])
        .unwrap()
}

#[test]
fn batches_over_the_byte_limit_are_refused_before_the_call() {
    let mut p = instance_in(
        Config {
            batch_bytes_max: 1000,
            ..test_config()
        },
        wasm::PASSTHROUGH,
    );
    // Each record: a 2-byte key (`k0`, `k1`) and its value.
    let fits = records([&[b'v'; 496][..], &[b'v'; 500][..]]);
    assert_eq!(p.process(&fits).unwrap().len(), 2);
    let over = records([&[b'v'; 497][..], &[b'v'; 500][..]]);
    let err = p.process(&over).unwrap_err();
    assert_eq!(
        err,
        ProcessError::BatchBytesTooLarge {
            bytes: 1001,
            limit: 1000
        }
    );
    assert!(err.to_string().contains("batch_bytes_max"), "{err}");
    assert!(!p.is_poisoned());
    assert_eq!(p.process(&fits).unwrap().len(), 2);
}

#[test]
fn instances_are_limited_by_the_pool() {
    let rt = Runtime::new(Config {
        instances_max: 2,
        ..test_config()
    })
    .unwrap();
    let p = rt.compile(&wasm::read(wasm::PASSTHROUGH).unwrap()).unwrap();
    let a = p.instantiate(&[]).unwrap();
    let _b = p.instantiate(&[]).unwrap();
    let err = p.instantiate(&[]).unwrap_err();
    assert!(err.to_string().contains("instances_max"), "{err}");
    drop(a);
    p.instantiate(&[]).unwrap();
}

#[test]
fn an_output_batch_pointing_outside_its_data_is_refused() {
    let (kind, message, p) = trap_of(wasm::TEST_BAD_OUTPUT);
    assert_eq!(kind, TrapKind::Other);
    assert!(
        message.contains("invalid output batch") && message.contains("outside its 4 bytes"),
        "{message}"
    );
    assert!(p.is_poisoned());
    host_still_works();
}

#[test]
fn an_output_batch_whose_lists_disagree_on_the_record_count_is_refused() {
    let p = instance(wasm::TEST_BAD_OUTPUT, &[("mode", "short-column")]);
    let (_, message, p) = trap_on(p, &[b"x"]);
    assert!(
        message.contains("lists 2 records, so its layout needs 14 entries"),
        "{message}"
    );
    assert!(p.is_poisoned());
    host_still_works();
}

#[test]
fn an_output_batch_forwarding_a_record_past_the_batch_is_refused() {
    let p = instance(wasm::TEST_BAD_OUTPUT, &[("mode", "bad-forward")]);
    let (_, message, p) = trap_on(p, &[b"x", b"y"]);
    assert!(
        message.contains("forwards input record 2 of a batch of 2 records"),
        "{message}"
    );
    assert!(p.is_poisoned());
    host_still_works();
}

#[test]
fn a_component_that_needs_more_memory_than_the_cap_is_refused_on_load() {
    let config = Config {
        memory_bytes_max: 64 << 10,
        cache_dir: None,
        instances_max: 2,
        ..test_config()
    };
    let rt = Runtime::new(config).unwrap();
    let err = rt
        .compile(&wasm::read(wasm::PASSTHROUGH).unwrap())
        .unwrap_err();
    assert!(matches!(err, Error::MemoryLimit { .. }), "{err}");
    assert_eq!(err.limit(), Some(eddy_wasm::Limit::Memory));
    assert!(err.to_string().contains("memory_bytes_max"), "{err}");
}

#[test]
fn an_instance_whose_own_memory_cap_is_below_what_it_starts_with_is_refused_naming_it() {
    let p = processor(wasm::PASSTHROUGH);
    let err = p
        .instantiate_with(
            &[],
            InstanceConfig {
                memory_bytes_max: Some(64 << 10),
                ..InstanceConfig::default()
            },
        )
        .unwrap_err();
    assert!(matches!(err, Error::MemoryLimit { .. }), "{err}");
    assert!(
        err.to_string().contains("64 KiB (memory_bytes_max)"),
        "{err}"
    );
    host_still_works();
}

#[test]
fn a_call_returning_more_records_than_allowed_fails() {
    let mut p = instance_in(
        Config {
            output_records_max: 2,
            cache_dir: None,
            instances_max: 2,
            ..test_config()
        },
        wasm::PASSTHROUGH,
    );
    assert_eq!(p.process(&records([&b"a"[..], b"b"])).unwrap().len(), 2);
    let err = p.process(&records([&b"a"[..], b"b", b"c"])).unwrap_err();
    assert!(err.to_string().contains("output_records_max=2"), "{err}");
}
