//! Storage benchmark: append 1 KiB records in ~1 MiB batches (no fsync),
//! read them back, and reopen the 1 GiB partition after an unclean stop.
//!
//! Run: `cargo bench -p eddy-log --bench log` (set `EDDY_BENCH_DIR` to put
//! the data somewhere other than the system temp directory, and
//! `EDDY_BENCH_GIB` to change the partition size).
#![allow(clippy::unwrap_used, clippy::print_stdout)]

use std::sync::Arc;
use std::time::{Duration, Instant};

use eddy_log::{
    BatchBuilder, Clock, LeaderEpoch, Log, LogConfig, Offset, RecordRef, SystemClock, Timestamp,
};

const RECORD_BYTES: usize = 1024;
const BATCH_BYTES: usize = 1 << 20;
const RUNS: usize = 3;

fn main() {
    let gib: u64 = std::env::var("EDDY_BENCH_GIB")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1);
    let total_bytes = gib << 30;
    let base = std::env::var_os("EDDY_BENCH_DIR").map_or_else(std::env::temp_dir, Into::into);
    let batch = one_mib_batch();
    let records_per_batch = count_records(&batch);
    let batches = total_bytes / batch.len() as u64;
    println!(
        "eddy-log: {} batches of {} records x {RECORD_BYTES} B ({:.2} MiB per batch), {:.2} GiB, fsync never",
        batches,
        records_per_batch,
        batch.len() as f64 / (1 << 20) as f64,
        (batches * batch.len() as u64) as f64 / (1u64 << 30) as f64
    );
    let mut appends = Vec::new();
    let mut reads = Vec::new();
    let mut recoveries = Vec::new();
    for _ in 0..RUNS {
        let tmp = tempfile::tempdir_in(&base).unwrap();
        let dir = tmp.path().join("bench-0");
        let clock = Arc::new(SystemClock);

        let mut log = Log::open(&dir, LogConfig::default(), clock.clone()).unwrap();
        let buf = batch.clone();
        let t = Instant::now();
        for _ in 0..batches {
            log.append(&buf, LeaderEpoch(0)).unwrap();
        }
        appends.push(t.elapsed());

        let t = Instant::now();
        let mut from = Offset(0);
        let mut read_bytes = 0u64;
        loop {
            let r = log.read(from, BATCH_BYTES, None).unwrap();
            if r.bytes.is_empty() {
                break;
            }
            read_bytes += r.bytes.len() as u64;
            from = r.next_offset;
        }
        reads.push(t.elapsed());
        assert_eq!(read_bytes, batches * batch.len() as u64);

        drop(log); // unclean: no close, no flush
        let t = Instant::now();
        let log = Log::open(&dir, LogConfig::default(), clock).unwrap();
        recoveries.push(t.elapsed());
        assert_eq!(log.end_offset(), Offset(batches * records_per_batch));
        let scanned = log.recovery().bytes_scanned;
        println!("  recovery scanned {} KiB of the tail", scanned / 1024);
    }
    let bytes = batches * batch.len() as u64;
    let records = batches * records_per_batch;
    println!(
        "{:<10} {:>12} {:>12} {:>14}",
        "step", "median", "MB/s", "records/s"
    );
    for (name, times) in [("append", &mut appends), ("read", &mut reads)] {
        let d = median(times);
        let s = d.as_secs_f64();
        println!(
            "{name:<10} {:>12.3?} {:>12.0} {:>14.0}",
            d,
            bytes as f64 / s / 1e6,
            records as f64 / s
        );
    }
    println!("{:<10} {:>12.3?}", "recovery", median(&mut recoveries));
}

fn one_mib_batch() -> Vec<u8> {
    let value = vec![b'x'; RECORD_BYTES];
    let mut b = BatchBuilder::with_capacity(BATCH_BYTES + 4096);
    let now = Timestamp(SystemClock.now_ms());
    let record = RecordRef {
        timestamp: now,
        key: None,
        value: Some(&value),
        headers: &[],
    };
    while b.size_bytes() + b.record_size(&record) <= BATCH_BYTES {
        b.push(&record);
    }
    b.finish().unwrap()
}

fn count_records(batch: &[u8]) -> u64 {
    u64::from(eddy_log::BatchHeader::parse(batch).unwrap().record_count)
}

fn median(times: &mut [Duration]) -> Duration {
    times.sort();
    times[times.len() / 2]
}
