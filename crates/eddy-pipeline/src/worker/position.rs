//! What a task commits beside its input offset, and how exactly-once
//! output sequences are resumed from it.
//!
//! The commit metadata names the pipeline incarnation (a commit left by a
//! deleted pipeline of the same name is not a position of this one) and,
//! for exactly-once, the next output sequence of every output partition
//! the task has written to:
//!
//! ```text
//! u8 version=1, [u8; 16] pipeline id, u32 n,
//! n × (u16 topic length, topic UTF-8, u32 partition, i32 next sequence)
//! ```
//!
//! Version 2, written by stateful tasks, adds after that the number of
//! state changes made before the position (`u64`): the changelog records
//! numbered below it are the state as of the commit (see `state.rs`); and
//! the highest timestamp of the records processed before it (`i64`,
//! `i64::MIN` for none), where the watermark resumes.
//!
//! Sequences are a function of the input position: a task that resumes
//! from a commit and replays the same input gives each output record the
//! same sequence it had, so leaders drop what they already hold. A replay
//! may cut batches differently, so a replayed batch could straddle the
//! last sequence a leader holds (it would be refused as out of order);
//! [`Sequences::resume`] therefore starts each partition past what its
//! leader already has, and the task skips that many records there.

use std::collections::BTreeMap;
use std::sync::Arc;

use bytes::Bytes;
use eddy_meta::PipelineId;

/// An output partition: topic and partition number.
pub type OutputPartition = (Arc<str>, u32);

const VERSION: u8 = 1;
const VERSION_WITH_STATE: u8 = 2;

/// The decoded metadata of a task's commit.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct CommitMetadata {
    pub pipeline: Option<PipelineId>,
    /// Next output sequence per output partition (exactly-once only).
    pub sequences: BTreeMap<OutputPartition, i32>,
    /// State changes made before the position (stateful pipelines only).
    pub state_changes: Option<u64>,
    /// The highest timestamp processed before the position (stateful
    /// pipelines only; `None` before any record).
    pub max_timestamp: Option<i64>,
}

impl CommitMetadata {
    pub fn encode(&self, pipeline: PipelineId) -> Bytes {
        let mut out = Vec::with_capacity(29 + self.sequences.len() * 24);
        out.push(match self.state_changes {
            Some(_) => VERSION_WITH_STATE,
            None => VERSION,
        });
        out.extend_from_slice(&pipeline.0.to_be_bytes());
        out.extend_from_slice(&(self.sequences.len() as u32).to_be_bytes());
        for ((topic, partition), next) in &self.sequences {
            out.extend_from_slice(&(topic.len() as u16).to_be_bytes());
            out.extend_from_slice(topic.as_bytes());
            out.extend_from_slice(&partition.to_be_bytes());
            out.extend_from_slice(&next.to_be_bytes());
        }
        if let Some(n) = self.state_changes {
            out.extend_from_slice(&n.to_be_bytes());
            out.extend_from_slice(&self.max_timestamp.unwrap_or(i64::MIN).to_be_bytes());
        }
        Bytes::from(out)
    }

    /// `None` when the bytes are not this format (a commit made by
    /// something else, e.g. `eddy group reset-offsets`, has none).
    pub fn decode(b: &[u8]) -> Option<CommitMetadata> {
        let mut r = Reader(b);
        let version = r.take(1)?[0];
        if version != VERSION && version != VERSION_WITH_STATE {
            return None;
        }
        let pipeline = PipelineId(u128::from_be_bytes(r.take(16)?.try_into().ok()?));
        let n = r.u32()?;
        let mut sequences = BTreeMap::new();
        for _ in 0..n {
            let len = u16::from_be_bytes(r.take(2)?.try_into().ok()?) as usize;
            let topic: Arc<str> = Arc::from(std::str::from_utf8(r.take(len)?).ok()?);
            let partition = r.u32()?;
            let next = i32::from_be_bytes(r.take(4)?.try_into().ok()?);
            sequences.insert((topic, partition), next);
        }
        let (state_changes, max_timestamp) = match version {
            VERSION_WITH_STATE => {
                let changes = u64::from_be_bytes(r.take(8)?.try_into().ok()?);
                let max = i64::from_be_bytes(r.take(8)?.try_into().ok()?);
                (Some(changes), Some(max).filter(|&m| m != i64::MIN))
            }
            _ => (None, None),
        };
        if !r.0.is_empty() {
            return None;
        }
        Some(CommitMetadata {
            pipeline: Some(pipeline),
            sequences,
            state_changes,
            max_timestamp,
        })
    }
}

struct Reader<'a>(&'a [u8]);

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        if self.0.len() < n {
            return None;
        }
        let (head, rest) = self.0.split_at(n);
        self.0 = rest;
        Some(head)
    }

    fn u32(&mut self) -> Option<u32> {
        Some(u32::from_be_bytes(self.take(4)?.try_into().ok()?))
    }
}

/// An exactly-once task's output sequences.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Sequences {
    /// Per output topic, per partition number.
    topics: BTreeMap<Arc<str>, Vec<Slot>>,
}

/// One output partition's sequence state.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
struct Slot {
    /// The sequence the next output record to the partition has.
    next: i32,
    /// Records still to skip: their sequences are at or below what the
    /// partition's leader already holds.
    skip: i32,
}

impl Sequences {
    /// Resumes from a commit's sequences and what each output partition's
    /// leader already holds from this producer (`last`: the last sequence
    /// written there, if any). Returns the sequences and, per partition,
    /// the first sequence the producer must send there.
    pub fn resume(
        committed: &BTreeMap<OutputPartition, i32>,
        last: &BTreeMap<OutputPartition, Option<i32>>,
    ) -> (Sequences, BTreeMap<OutputPartition, i32>) {
        let mut s = Sequences::default();
        let mut first_sent = BTreeMap::new();
        for (p, held) in last {
            let next = committed.get(p).copied().unwrap_or(0);
            let skip = held.map_or(0, |l| (l.saturating_add(1) - next).max(0));
            *s.slot(&p.0, p.1) = Slot { next, skip };
            first_sent.insert(p.clone(), next.saturating_add(skip));
        }
        (s, first_sent)
    }

    /// The next sequence of every partition right after what its leader
    /// holds (`last`, as for [`Sequences::resume`]): where a task numbers
    /// on from when its input moved past its commit, so the records the
    /// commit's sequences counted are gone and none is to be skipped.
    pub fn after_held(
        last: &BTreeMap<OutputPartition, Option<i32>>,
    ) -> BTreeMap<OutputPartition, i32> {
        last.iter()
            .filter_map(|(p, held)| held.map(|l| (p.clone(), l.saturating_add(1))))
            .collect()
    }

    fn slot(&mut self, topic: &Arc<str>, partition: u32) -> &mut Slot {
        let slots = self.topics.entry(topic.clone()).or_default();
        let i = partition as usize;
        if slots.len() <= i {
            slots.resize(i + 1, Slot::default());
        }
        &mut slots[i]
    }

    /// Accounts one output record to `partition` of `topic`; returns
    /// whether it must be sent (false: its leader already has it).
    pub fn take(&mut self, topic: &Arc<str>, partition: u32) -> bool {
        let slot = match self
            .topics
            .get_mut(&**topic)
            .and_then(|slots| slots.get_mut(partition as usize))
        {
            Some(slot) => slot,
            None => self.slot(topic, partition),
        };
        slot.next = if slot.next == i32::MAX {
            0
        } else {
            slot.next + 1
        };
        if slot.skip > 0 {
            slot.skip -= 1;
            return false;
        }
        true
    }

    /// The next sequence of every partition written to, for the commit.
    pub fn snapshot(&self) -> BTreeMap<OutputPartition, i32> {
        let mut out = BTreeMap::new();
        for (topic, slots) in &self.topics {
            for (partition, slot) in slots.iter().enumerate() {
                if slot.next != 0 {
                    out.insert((topic.clone(), partition as u32), slot.next);
                }
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(topic: &str, partition: u32) -> OutputPartition {
        (Arc::from(topic), partition)
    }

    #[test]
    fn metadata_round_trips_and_refuses_other_bytes() {
        let id = PipelineId(0x1234_5678_9abc_def0_1122_3344_5566_7788);
        let mut m = CommitMetadata {
            pipeline: Some(id),
            sequences: BTreeMap::from([(p("out", 0), 7), (p("dlq", 3), 0)]),
            state_changes: None,
            max_timestamp: None,
        };
        assert_eq!(CommitMetadata::decode(&m.encode(id)), Some(m.clone()));
        m.state_changes = Some(1 << 40);
        assert_eq!(CommitMetadata::decode(&m.encode(id)), Some(m.clone()));
        m.max_timestamp = Some(-3);
        assert_eq!(CommitMetadata::decode(&m.encode(id)), Some(m));
        assert_eq!(CommitMetadata::decode(b""), None);
        assert_eq!(CommitMetadata::decode(b"\x03rest"), None);
        let mut trailing = CommitMetadata::default().encode(id).to_vec();
        trailing.push(0);
        assert_eq!(CommitMetadata::decode(&trailing), None);
    }

    #[test]
    fn resuming_skips_what_the_leader_already_holds() {
        let committed = BTreeMap::from([(p("out", 0), 10), (p("out", 1), 4)]);
        let last = BTreeMap::from([
            (p("out", 0), Some(12)), // 10, 11, 12 already written after the commit
            (p("out", 1), Some(3)),  // nothing after the commit
            (p("out", 2), None),     // never written
            (p("out", 3), Some(1)),  // written, but the commit predates it
        ]);
        let (mut s, first) = Sequences::resume(&committed, &last);
        assert_eq!(
            first,
            BTreeMap::from([
                (p("out", 0), 13),
                (p("out", 1), 4),
                (p("out", 2), 0),
                (p("out", 3), 2)
            ])
        );
        let out: Arc<str> = Arc::from("out");
        let sent: Vec<bool> = (0..4).map(|_| s.take(&out, 0)).collect();
        assert_eq!(sent, [false, false, false, true]);
        assert!(s.take(&out, 1));
        assert_eq!(s.snapshot()[&p("out", 0)], 14);
        assert_eq!(s.snapshot()[&p("out", 1)], 5);
    }

    #[test]
    fn numbering_on_after_what_the_leaders_hold_skips_nothing() {
        let last = BTreeMap::from([(p("out", 0), Some(12)), (p("out", 1), None)]);
        let (mut s, first) = Sequences::resume(&Sequences::after_held(&last), &last);
        assert_eq!(first, BTreeMap::from([(p("out", 0), 13), (p("out", 1), 0)]));
        let out: Arc<str> = Arc::from("out");
        assert!(s.take(&out, 0), "the first record is sent, not skipped");
        assert!(s.take(&out, 1));
        assert_eq!(s.snapshot()[&p("out", 0)], 14);
    }
}
