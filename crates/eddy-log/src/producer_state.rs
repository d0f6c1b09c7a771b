//! Idempotent producers: per producer id, the epoch, the last sequence
//! number and the offsets of the last few batches, so a batch sent twice is
//! written once.
//!
//! Rules for a batch from producer `p` with epoch `e` and sequences
//! `first..=last`:
//!
//! - `e` below `p`'s known epoch: fenced (a newer incarnation took over).
//! - one of `p`'s last [`BATCHES_KEPT`] batches exactly: a duplicate,
//!   answered with its original offsets and not written again.
//! - `first` right after `p`'s last sequence: written.
//! - wholly at or below the last sequence: an older duplicate, answered
//!   without offsets (they have left the cache).
//! - a gap: out of order.
//!
//! Plain producers start over at sequence 0 with each new epoch. Producers
//! with a stable name (pipelines, [`ProducerId::is_stable`]) keep one
//! sequence across epochs (so after an epoch bump the same rules apply
//! to the sequence the previous epoch reached).
//!
//! The state is rebuilt after a restart from the newest snapshot
//! (`<offset>.snapshot` beside the segments) plus the batch headers after it.

use std::collections::{HashMap, VecDeque};
use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};

use crate::batch::BatchHeader;
use crate::error::{Error, Result};
use crate::types::{Offset, ProducerEpoch, ProducerId, Sequence};

/// Batches remembered per producer for duplicate detection (as Kafka, 5:
/// the most a producer has in flight per partition).
pub const BATCHES_KEPT: usize = 5;

/// Producer ids at or above this are stable-name producers.
pub const STABLE_PRODUCER_ID_BASE: i64 = 1 << 62;

impl ProducerId {
    /// Whether this id belongs to a producer with a stable name, whose
    /// sequence numbers continue across epochs.
    pub fn is_stable(self) -> bool {
        self.0 >= STABLE_PRODUCER_ID_BASE
    }
}

/// Settings for producer state.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ProducerStateConfig {
    /// `producer.id.expiration.ms`: a producer silent this long is forgotten.
    pub expiration_ms: i64,
    /// Producers remembered per partition; the least recently active one is
    /// forgotten to make room.
    pub producers_max: usize,
}

impl Default for ProducerStateConfig {
    fn default() -> Self {
        ProducerStateConfig {
            expiration_ms: 24 * 3600 * 1000,
            producers_max: 10_000,
        }
    }
}

/// Where one remembered batch landed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BatchRecord {
    pub first_sequence: Sequence,
    pub last_sequence: Sequence,
    pub first_offset: Offset,
    pub last_offset: Offset,
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct Entry {
    epoch: ProducerEpoch,
    batches: VecDeque<BatchRecord>,
    last_sequence: Sequence,
    last_seen_ms: i64,
}

/// What to do with a producer's batch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SequenceCheck {
    /// Write it.
    Append,
    /// Already written; here is where.
    Duplicate(BatchRecord),
    /// Already written, longer ago than the cached batches: offsets no
    /// longer known.
    DuplicateUncached,
}

/// Why a producer's batch is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SequenceError {
    #[error(
        "producer {producer} epoch {epoch} is fenced: epoch {current} has taken over; this producer must stop"
    )]
    Fenced {
        producer: ProducerId,
        epoch: ProducerEpoch,
        current: ProducerEpoch,
    },
    #[error(
        "producer {producer} sent sequence {got} but {expected} was expected; batches were lost or reordered — reinitialize the producer"
    )]
    OutOfOrder {
        producer: ProducerId,
        expected: Sequence,
        got: Sequence,
    },
}

fn next(s: Sequence) -> Sequence {
    if s.0 == i32::MAX {
        Sequence(0)
    } else {
        Sequence(s.0 + 1)
    }
}

/// Producer state of one partition.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ProducerState {
    config: ProducerStateConfig,
    entries: HashMap<ProducerId, Entry>,
}

impl ProducerState {
    pub fn new(config: ProducerStateConfig) -> ProducerState {
        ProducerState {
            config,
            entries: HashMap::new(),
        }
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Decides what to do with a batch (no change to the state).
    pub fn check(&self, h: &BatchHeader) -> Result<SequenceCheck, SequenceError> {
        let producer = h.producer_id;
        let (first, last) = (h.base_sequence, h.last_sequence());
        let Some(e) = self.entries.get(&producer) else {
            if producer.is_stable() || first == Sequence(0) {
                return Ok(SequenceCheck::Append);
            }
            return Err(SequenceError::OutOfOrder {
                producer,
                expected: Sequence(0),
                got: first,
            });
        };
        if h.producer_epoch < e.epoch {
            return Err(SequenceError::Fenced {
                producer,
                epoch: h.producer_epoch,
                current: e.epoch,
            });
        }
        let same_stream = h.producer_epoch == e.epoch || producer.is_stable();
        if !same_stream {
            // A plain producer's new epoch starts over at 0.
            if first == Sequence(0) {
                return Ok(SequenceCheck::Append);
            }
            return Err(SequenceError::OutOfOrder {
                producer,
                expected: Sequence(0),
                got: first,
            });
        }
        if let Some(b) = e
            .batches
            .iter()
            .find(|b| b.first_sequence == first && b.last_sequence == last)
        {
            return Ok(SequenceCheck::Duplicate(*b));
        }
        if first == next(e.last_sequence) {
            return Ok(SequenceCheck::Append);
        }
        // Batches are resent unchanged and in order, so a batch wholly at or
        // below the last written sequence was written before: a duplicate
        // whose offsets have left the cache. (Near the i32 wrap this
        // comparison can misjudge; a producer would need 2^31 sequences
        // within one epoch to get there.)
        if first <= last && last <= e.last_sequence {
            return Ok(SequenceCheck::DuplicateUncached);
        }
        Err(SequenceError::OutOfOrder {
            producer,
            expected: next(e.last_sequence),
            got: first,
        })
    }

    /// Records a written batch.
    pub fn update(&mut self, h: &BatchHeader, now_ms: i64) {
        let record = BatchRecord {
            first_sequence: h.base_sequence,
            last_sequence: h.last_sequence(),
            first_offset: h.base_offset,
            last_offset: h.last_offset(),
        };
        if !self.entries.contains_key(&h.producer_id)
            && self.entries.len() >= self.config.producers_max
        {
            self.evict_oldest();
        }
        let e = self.entries.entry(h.producer_id).or_insert_with(|| Entry {
            epoch: h.producer_epoch,
            batches: VecDeque::new(),
            last_sequence: Sequence::NONE,
            last_seen_ms: now_ms,
        });
        if h.producer_epoch != e.epoch && !h.producer_id.is_stable() {
            e.batches.clear();
        }
        e.epoch = h.producer_epoch.max(e.epoch);
        e.last_sequence = record.last_sequence;
        e.last_seen_ms = e.last_seen_ms.max(now_ms);
        e.batches.push_back(record);
        while e.batches.len() > BATCHES_KEPT {
            e.batches.pop_front();
        }
    }

    fn evict_oldest(&mut self) {
        let oldest = self
            .entries
            .iter()
            .min_by_key(|(_, e)| e.last_seen_ms)
            .map(|(p, _)| *p);
        if let Some(p) = oldest {
            self.entries.remove(&p);
        }
    }

    /// Forgets producers silent for longer than the expiration.
    pub fn expire(&mut self, now_ms: i64) -> usize {
        let before = self.entries.len();
        let horizon = now_ms.saturating_sub(self.config.expiration_ms);
        self.entries.retain(|_, e| e.last_seen_ms >= horizon);
        before - self.entries.len()
    }

    /// The last sequence written by `producer`, if it is known.
    pub fn last_sequence(&self, producer: ProducerId) -> Option<(ProducerEpoch, Sequence)> {
        self.entries
            .get(&producer)
            .map(|e| (e.epoch, e.last_sequence))
    }
}

const SNAPSHOT_MAGIC: &[u8; 4] = b"EDPS";
const SNAPSHOT_VERSION: u16 = 1;
/// Snapshots kept in a partition directory.
const SNAPSHOTS_KEPT: usize = 2;

pub(crate) fn snapshot_path(dir: &Path, offset: Offset) -> PathBuf {
    dir.join(format!("{:020}.snapshot", offset.0))
}

impl ProducerState {
    /// Writes the state as of `offset` (the log end) atomically, and drops
    /// all but the newest snapshots.
    pub(crate) fn save_snapshot(&self, dir: &Path, offset: Offset) -> Result<()> {
        let mut body = Vec::new();
        body.extend_from_slice(&(self.entries.len() as u32).to_be_bytes());
        let mut ids: Vec<&ProducerId> = self.entries.keys().collect();
        ids.sort();
        for id in ids {
            let e = &self.entries[id];
            body.extend_from_slice(&id.0.to_be_bytes());
            body.extend_from_slice(&e.epoch.0.to_be_bytes());
            body.extend_from_slice(&e.last_sequence.0.to_be_bytes());
            body.extend_from_slice(&e.last_seen_ms.to_be_bytes());
            body.push(e.batches.len() as u8);
            for b in &e.batches {
                body.extend_from_slice(&b.first_sequence.0.to_be_bytes());
                body.extend_from_slice(&b.last_sequence.0.to_be_bytes());
                body.extend_from_slice(&b.first_offset.0.to_be_bytes());
                body.extend_from_slice(&b.last_offset.0.to_be_bytes());
            }
        }
        let mut file = Vec::with_capacity(body.len() + 10);
        file.extend_from_slice(SNAPSHOT_MAGIC);
        file.extend_from_slice(&SNAPSHOT_VERSION.to_be_bytes());
        file.extend_from_slice(&crc32c::crc32c(&body).to_be_bytes());
        file.extend_from_slice(&body);
        let path = snapshot_path(dir, offset);
        let tmp = path.with_extension("snapshot.tmp");
        let write = || -> std::io::Result<()> {
            let mut f = fs::File::create(&tmp)?;
            f.write_all(&file)?;
            f.sync_all()?;
            fs::rename(&tmp, &path)
        };
        write().map_err(Error::io("writing", &path))?;
        let mut all = list_snapshots(dir)?;
        all.sort();
        for old in all.iter().rev().skip(SNAPSHOTS_KEPT) {
            let p = snapshot_path(dir, *old);
            fs::remove_file(&p).map_err(Error::io("removing", &p))?;
        }
        Ok(())
    }

    /// Loads the newest readable snapshot at or below `end`; snapshots past
    /// `end` (the log was truncated) and damaged ones are deleted. Returns
    /// the state and the offset to replay the log from.
    pub(crate) fn load_snapshot(
        dir: &Path,
        config: ProducerStateConfig,
        end: Offset,
    ) -> Result<(ProducerState, Option<Offset>)> {
        let mut all = list_snapshots(dir)?;
        all.sort();
        while let Some(offset) = all.pop() {
            let path = snapshot_path(dir, offset);
            let decoded = (offset <= end)
                .then(|| fs::read(&path).ok().and_then(|b| decode(&b, config)))
                .flatten();
            match decoded {
                Some(state) => return Ok((state, Some(offset))),
                None => fs::remove_file(&path).map_err(Error::io("removing", &path))?,
            }
        }
        Ok((ProducerState::new(config), None))
    }
}

/// Deletes every snapshot (the log was emptied).
pub(crate) fn delete_snapshots(dir: &Path) -> Result<()> {
    for offset in list_snapshots(dir)? {
        let p = snapshot_path(dir, offset);
        fs::remove_file(&p).map_err(Error::io("removing", &p))?;
    }
    Ok(())
}

fn list_snapshots(dir: &Path) -> Result<Vec<Offset>> {
    let mut out = Vec::new();
    for entry in fs::read_dir(dir).map_err(Error::io("listing", dir))? {
        let entry = entry.map_err(Error::io("listing", dir))?;
        let name = entry.file_name().to_string_lossy().into_owned();
        if let Some(stem) = name.strip_suffix(".snapshot")
            && stem.len() == 20
            && let Ok(o) = stem.parse()
        {
            out.push(Offset(o));
        }
    }
    Ok(out)
}

fn decode(b: &[u8], config: ProducerStateConfig) -> Option<ProducerState> {
    let rest = b.strip_prefix(SNAPSHOT_MAGIC)?;
    let (version, rest) = rest.split_at_checked(2)?;
    if u16::from_be_bytes(version.try_into().ok()?) != SNAPSHOT_VERSION {
        return None;
    }
    let (crc, body) = rest.split_at_checked(4)?;
    if crc32c::crc32c(body) != u32::from_be_bytes(crc.try_into().ok()?) {
        return None;
    }
    let mut r = body;
    let mut take = |n: usize| -> Option<&[u8]> {
        let (head, tail) = r.split_at_checked(n)?;
        r = tail;
        Some(head)
    };
    let count = u32::from_be_bytes(take(4)?.try_into().ok()?);
    let mut state = ProducerState::new(config);
    for _ in 0..count {
        let id = ProducerId(i64::from_be_bytes(take(8)?.try_into().ok()?));
        let epoch = ProducerEpoch(i16::from_be_bytes(take(2)?.try_into().ok()?));
        let last_sequence = Sequence(i32::from_be_bytes(take(4)?.try_into().ok()?));
        let last_seen_ms = i64::from_be_bytes(take(8)?.try_into().ok()?);
        let n = take(1)?[0] as usize;
        let mut batches = VecDeque::with_capacity(n);
        for _ in 0..n {
            batches.push_back(BatchRecord {
                first_sequence: Sequence(i32::from_be_bytes(take(4)?.try_into().ok()?)),
                last_sequence: Sequence(i32::from_be_bytes(take(4)?.try_into().ok()?)),
                first_offset: Offset(u64::from_be_bytes(take(8)?.try_into().ok()?)),
                last_offset: Offset(u64::from_be_bytes(take(8)?.try_into().ok()?)),
            });
        }
        state.entries.insert(
            id,
            Entry {
                epoch,
                batches,
                last_sequence,
                last_seen_ms,
            },
        );
    }
    Some(state)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::batch::{BatchBuilder, ProducerStamp, RecordRef};
    use crate::types::Timestamp;

    fn header(pid: i64, epoch: i16, seq: i32, records: u32, base: u64) -> BatchHeader {
        let mut b = BatchBuilder::new().producer(ProducerStamp {
            producer_id: ProducerId(pid),
            producer_epoch: ProducerEpoch(epoch),
            base_sequence: Sequence(seq),
        });
        for _ in 0..records {
            b.push(&RecordRef {
                timestamp: Timestamp(0),
                key: None,
                value: Some(b"v"),
                headers: &[],
            });
        }
        let h = BatchHeader::parse(&b.finish().unwrap()).unwrap();
        BatchHeader {
            base_offset: Offset(base),
            ..h
        }
    }

    #[test]
    fn a_resent_batch_is_a_duplicate_with_its_original_offsets() {
        let mut s = ProducerState::default();
        let first = header(7, 0, 0, 3, 100);
        assert_eq!(s.check(&first), Ok(SequenceCheck::Append));
        s.update(&first, 0);
        let second = header(7, 0, 3, 2, 103);
        assert_eq!(s.check(&second), Ok(SequenceCheck::Append));
        s.update(&second, 0);
        let again = header(7, 0, 0, 3, 999);
        let Ok(SequenceCheck::Duplicate(b)) = s.check(&again) else {
            panic!("duplicate")
        };
        assert_eq!((b.first_offset, b.last_offset), (Offset(100), Offset(102)));
    }

    #[test]
    fn a_resend_older_than_the_cached_batches_is_still_a_duplicate() {
        let mut s = ProducerState::default();
        for i in 0..10 {
            s.update(&header(7, 0, i * 2, 2, u64::from(i as u32) * 2), 0);
        }
        assert_eq!(
            s.check(&header(7, 0, 4, 2, 0)),
            Ok(SequenceCheck::DuplicateUncached)
        );
        let Ok(SequenceCheck::Duplicate(b)) = s.check(&header(7, 0, 18, 2, 0)) else {
            panic!("the newest batches keep their offsets")
        };
        assert_eq!(b.first_offset, Offset(18));
        assert!(
            matches!(
                s.check(&header(7, 0, 19, 2, 0)),
                Err(SequenceError::OutOfOrder { .. })
            ),
            "a partial overlap is not a resend"
        );
    }

    #[test]
    fn gaps_and_old_epochs_are_refused() {
        let mut s = ProducerState::default();
        s.update(&header(7, 2, 0, 3, 0), 0);
        assert!(matches!(
            s.check(&header(7, 2, 5, 1, 3)),
            Err(SequenceError::OutOfOrder {
                expected: Sequence(3),
                got: Sequence(5),
                ..
            })
        ));
        assert!(matches!(
            s.check(&header(7, 1, 3, 1, 3)),
            Err(SequenceError::Fenced { .. })
        ));
        assert!(
            matches!(
                s.check(&header(8, 0, 4, 1, 3)),
                Err(SequenceError::OutOfOrder { .. })
            ),
            "unknown producers start at 0"
        );
        assert_eq!(
            s.check(&header(7, 3, 0, 1, 3)),
            Ok(SequenceCheck::Append),
            "a new epoch starts over"
        );
        assert!(matches!(
            s.check(&header(7, 3, 3, 1, 3)),
            Err(SequenceError::OutOfOrder { .. })
        ));
    }

    #[test]
    fn stable_producers_keep_their_sequence_across_epochs() {
        let pid = STABLE_PRODUCER_ID_BASE + 1;
        let mut s = ProducerState::default();
        assert_eq!(
            s.check(&header(pid, 0, 40, 10, 0)),
            Ok(SequenceCheck::Append),
            "may start anywhere"
        );
        s.update(&header(pid, 0, 40, 10, 0), 0);
        assert_eq!(
            s.check(&header(pid, 1, 50, 5, 10)),
            Ok(SequenceCheck::Append),
            "continues after a bump"
        );
        s.update(&header(pid, 1, 50, 5, 10), 0);
        assert_eq!(
            s.check(&header(pid, 1, 42, 3, 99)),
            Ok(SequenceCheck::DuplicateUncached)
        );
        assert!(matches!(
            s.check(&header(pid, 0, 55, 1, 15)),
            Err(SequenceError::Fenced { .. })
        ));
        assert!(matches!(
            s.check(&header(pid, 1, 60, 1, 15)),
            Err(SequenceError::OutOfOrder { .. })
        ));
    }

    #[test]
    fn silent_producers_expire_and_the_count_is_bounded() {
        let mut s = ProducerState::new(ProducerStateConfig {
            expiration_ms: 1000,
            producers_max: 2,
        });
        s.update(&header(1, 0, 0, 1, 0), 0);
        s.update(&header(2, 0, 0, 1, 1), 500);
        s.update(&header(3, 0, 0, 1, 2), 600);
        assert_eq!(s.len(), 2);
        assert_eq!(
            s.last_sequence(ProducerId(1)),
            None,
            "the least recently active made room"
        );
        assert_eq!(s.expire(1550), 1);
        assert_eq!(
            s.last_sequence(ProducerId(3)),
            Some((ProducerEpoch(0), Sequence(0)))
        );
    }

    #[test]
    fn snapshots_round_trip_and_damage_is_ignored() {
        let dir = tempfile::tempdir().unwrap();
        let mut s = ProducerState::default();
        s.update(&header(7, 1, 0, 3, 10), 5);
        s.update(&header(STABLE_PRODUCER_ID_BASE, 0, 9, 1, 13), 6);
        s.save_snapshot(dir.path(), Offset(14)).unwrap();
        let (loaded, from) =
            ProducerState::load_snapshot(dir.path(), s.config, Offset(14)).unwrap();
        assert_eq!((loaded, from), (s.clone(), Some(Offset(14))));
        let (_, from) = ProducerState::load_snapshot(dir.path(), s.config, Offset(13)).unwrap();
        assert_eq!(from, None, "a snapshot past the log end is dropped");
        s.save_snapshot(dir.path(), Offset(14)).unwrap();
        let path = snapshot_path(dir.path(), Offset(14));
        let mut bytes = fs::read(&path).unwrap();
        *bytes.last_mut().unwrap() ^= 1;
        fs::write(&path, bytes).unwrap();
        let (loaded, from) =
            ProducerState::load_snapshot(dir.path(), s.config, Offset(14)).unwrap();
        assert!(loaded.is_empty() && from.is_none());
    }
}
