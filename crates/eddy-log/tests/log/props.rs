//! Property tests: any sequence of batches round-trips; a cut anywhere in
//! the active segment recovers exactly the whole batches before it; a
//! flipped byte anywhere in a sealed segment is caught on read.

use eddy_log::{LeaderEpoch, Offset};
use proptest::prelude::*;

use super::*;

type Spec = Vec<(Option<Vec<u8>>, Option<Vec<u8>>, i64)>;

fn batch_specs() -> impl Strategy<Value = Vec<Spec>> {
    let bytes = || proptest::option::of(proptest::collection::vec(any::<u8>(), 0..40));
    let record = (bytes(), bytes(), 0i64..1000);
    proptest::collection::vec(proptest::collection::vec(record, 1..8), 1..30)
}

fn encode(spec: &Spec) -> Vec<u8> {
    let mut b = BatchBuilder::new();
    for (k, v, ts) in spec {
        b.push(&RecordRef {
            timestamp: Timestamp(START_MS + ts),
            key: k.as_deref(),
            value: v.as_deref(),
            headers: &[("h", b"x")],
        });
    }
    b.finish().unwrap()
}

fn expected(specs: &[Spec]) -> Vec<Rec> {
    let mut offset = 0;
    let mut out = Vec::new();
    for spec in specs {
        for (k, v, ts) in spec {
            out.push(Rec {
                offset,
                timestamp: START_MS + ts,
                key: k.clone(),
                value: v.clone(),
            });
            offset += 1;
        }
    }
    out
}

fn small_segments(segment_bytes: u64) -> Scenario {
    Scenario::with(|c| {
        c.segment_bytes = segment_bytes;
        c.index_interval_bytes = 200;
    })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]

    #[test]
    fn any_batches_round_trip(specs in batch_specs(), seg in 1024u64..8192, max in 1usize..4096) {
        let s = small_segments(seg);
        let mut log = s.open();
        for spec in &specs {
            append(&mut log, encode(spec));
        }
        prop_assert_eq!(read_all(&log, max).unwrap(), expected(&specs));
        drop(log);
        prop_assert_eq!(read_all(&s.open(), max).unwrap(), expected(&specs));
    }

    #[test]
    fn a_cut_anywhere_in_the_active_segment_keeps_exactly_the_whole_batches_before_it(
        specs in batch_specs(),
        cut in any::<proptest::sample::Index>(),
    ) {
        let s = small_segments(1 << 30);
        let mut log = s.open();
        let mut ends = Vec::new();
        for spec in &specs {
            append(&mut log, encode(spec));
            ends.push(log.size_bytes());
        }
        drop(log);
        let path = s.files("log").pop().unwrap();
        let size = std::fs::metadata(&path).unwrap().len();
        let cut = cut.index(size as usize + 1) as u64;
        std::fs::OpenOptions::new().write(true).open(&path).unwrap().set_len(cut).unwrap();
        let whole = ends.iter().take_while(|&&end| end <= cut).count();
        let log = s.open();
        prop_assert_eq!(read_all(&log, 1 << 20).unwrap(), expected(&specs[..whole]));
        prop_assert_eq!(log.size_bytes(), if whole == 0 { 0 } else { ends[whole - 1] });
    }

    #[test]
    fn a_flipped_byte_in_a_sealed_segment_is_caught_on_read(
        specs in batch_specs(),
        at in any::<proptest::sample::Index>(),
        mask in 1u8..=255,
    ) {
        let s = small_segments(1024);
        let mut log = s.open();
        for spec in &specs {
            append(&mut log, encode(spec));
        }
        log.roll().unwrap();
        append(&mut log, encode(&specs[0]));
        drop(log);
        let sealed = s.files("log");
        let victim = &sealed[at.index(sealed.len() - 1)];
        let size = std::fs::metadata(victim).unwrap().len();
        flip_byte(victim, at.index(size as usize) as u64, mask);
        let log = s.open();
        prop_assert!(read_all(&log, 1 << 20).is_err());
    }
}

fn damaged_batches() -> impl Strategy<Value = Vec<u8>> {
    (
        batch_specs(),
        any::<proptest::sample::Index>(),
        1u8..=255,
        any::<bool>(),
    )
        .prop_map(|(specs, at, mask, fix_crc)| {
            let mut b = encode(&specs[0]);
            let i = at.index(b.len());
            b[i] ^= mask;
            if fix_crc {
                // Damage the structure behind a valid CRC.
                let crc = crc32c::crc32c(&b[21..]);
                b[17..21].copy_from_slice(&crc.to_be_bytes());
            }
            b
        })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    /// The in-CI cousin of `fuzz/fuzz_targets/batch_decode.rs`.
    #[test]
    fn the_decoder_never_panics_on_damaged_or_arbitrary_bytes(
        bytes in prop_oneof![damaged_batches(), proptest::collection::vec(any::<u8>(), 0..200)],
    ) {
        for batch in eddy_log::batches(&bytes, usize::MAX) {
            let Ok(batch) = batch else { break };
            let _ = batch.validate_records();
            let Ok(records) = batch.decoded() else { break };
            for record in records.iter().flatten() {
                let _ = record.headers().count();
            }
        }
        let s = Scenario::new();
        let mut log = s.open();
        let b = bytes.clone();
        if log.append(&b, LeaderEpoch(0)).is_err() {
            prop_assert_eq!(log.end_offset(), Offset(0));
        }
    }
}
