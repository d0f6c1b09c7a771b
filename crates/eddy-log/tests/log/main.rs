//! Specification tests for `eddy-log`: one scenario helper, short cases.
#![allow(clippy::unwrap_used)]

mod append_read;
mod compaction;
mod idempotence;
mod props;
mod recovery;
mod replication;
mod retention;

use std::path::{Path, PathBuf};
use std::sync::Arc;

use eddy_log::{
    AppendInfo, Batch, BatchBuilder, LeaderEpoch, Log, LogConfig, ManualClock, Offset,
    ProducerEpoch, ProducerId, ProducerStamp, RecordRef, Sequence, Timestamp, batches,
};

/// A decoded record, owned, for comparisons.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rec {
    pub offset: u64,
    pub timestamp: i64,
    pub key: Option<Vec<u8>>,
    pub value: Option<Vec<u8>>,
}

/// A log in a temporary directory with a hand-driven clock.
#[derive(Debug)]
pub struct Scenario {
    _tmp: tempfile::TempDir,
    pub dir: PathBuf,
    pub clock: Arc<ManualClock>,
    pub config: LogConfig,
}

pub const START_MS: i64 = 1_700_000_000_000;

impl Default for Scenario {
    fn default() -> Self {
        Scenario::new()
    }
}

impl Scenario {
    pub fn new() -> Scenario {
        Scenario::with(|_| {})
    }

    pub fn with(configure: impl FnOnce(&mut LogConfig)) -> Scenario {
        let tmp = tempfile::tempdir().unwrap();
        let mut config = LogConfig::default();
        configure(&mut config);
        Scenario {
            dir: tmp.path().join("topic-0"),
            _tmp: tmp,
            clock: Arc::new(ManualClock::new(START_MS)),
            config,
        }
    }

    pub fn open(&self) -> Log {
        Log::open(&self.dir, self.config.clone(), self.clock.clone()).unwrap()
    }

    /// Segment files in the log directory, by extension.
    pub fn files(&self, ext: &str) -> Vec<PathBuf> {
        let mut v: Vec<_> = std::fs::read_dir(&self.dir)
            .unwrap()
            .map(|e| e.unwrap().path())
            .filter(|p| p.extension().is_some_and(|e| e == ext))
            .collect();
        v.sort();
        v
    }
}

/// Encodes a batch of `(key, value)` records stamped `ts`.
pub fn batch(records: &[(Option<&str>, Option<&str>)], ts: i64) -> Vec<u8> {
    let mut b = BatchBuilder::new();
    for (k, v) in records {
        b.push(&RecordRef {
            timestamp: Timestamp(ts),
            key: k.map(str::as_bytes),
            value: v.map(str::as_bytes),
            headers: &[],
        });
    }
    b.finish().unwrap()
}

/// A batch of `n` keyless records with `size`-byte values.
pub fn values(n: usize, size: usize, ts: i64) -> Vec<u8> {
    let value = vec![b'v'; size];
    let mut b = BatchBuilder::new();
    for _ in 0..n {
        b.push(&RecordRef {
            timestamp: Timestamp(ts),
            key: None,
            value: Some(&value),
            headers: &[],
        });
    }
    b.finish().unwrap()
}

/// A batch of `n` records from idempotent producer `pid` in `epoch`, with
/// sequences from `seq`.
pub fn stamped(pid: i64, epoch: i16, seq: i32, n: usize) -> Vec<u8> {
    let mut b = BatchBuilder::new().producer(ProducerStamp {
        producer_id: ProducerId(pid),
        producer_epoch: ProducerEpoch(epoch),
        base_sequence: Sequence(seq),
    });
    for i in 0..n {
        let v = format!("{pid}-{}", seq as usize + i);
        b.push(&RecordRef {
            timestamp: Timestamp(START_MS),
            key: None,
            value: Some(v.as_bytes()),
            headers: &[],
        });
    }
    b.finish().unwrap()
}

pub fn append(log: &mut Log, batch: Vec<u8>) -> AppendInfo {
    log.append(&batch, LeaderEpoch(0)).unwrap()
}

pub fn decode(bytes: &[u8]) -> Vec<Rec> {
    let mut out = Vec::new();
    for b in batches(bytes, usize::MAX) {
        let b: Batch<'_> = b.unwrap();
        let records = b.decoded().unwrap();
        for r in records.iter() {
            let r = r.unwrap();
            out.push(Rec {
                offset: r.offset.0,
                timestamp: r.timestamp.0,
                key: r.key.map(<[u8]>::to_vec),
                value: r.value.map(<[u8]>::to_vec),
            });
        }
    }
    out
}

/// Reads the whole log from its start in `max_bytes` steps.
pub fn read_all(log: &Log, max_bytes: usize) -> eddy_log::Result<Vec<Rec>> {
    let mut out = Vec::new();
    let mut from = log.start_offset();
    loop {
        let r = log.read(from, max_bytes, None)?;
        if r.bytes.is_empty() {
            return Ok(out);
        }
        assert!(r.next_offset > from, "reads make progress");
        out.extend(
            decode(&r.bytes)
                .into_iter()
                .filter(|rec| rec.offset >= from.0),
        );
        from = r.next_offset;
    }
}

pub fn offsets(recs: &[Rec]) -> Vec<u64> {
    recs.iter().map(|r| r.offset).collect()
}

pub fn flip_byte(path: &Path, at: u64, mask: u8) {
    use std::os::unix::fs::FileExt;
    let f = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(path)
        .unwrap();
    let mut b = [0u8];
    f.read_exact_at(&mut b, at).unwrap();
    b[0] ^= mask;
    f.write_all_at(&b, at).unwrap();
}

pub fn o(n: u64) -> Offset {
    Offset(n)
}
