//! Checkers: each takes what a run observed and says whether one property
//! held, with counts and the first few places where it did not. They are
//! plain functions over plain data, so a test can hand each one a history
//! that breaks its property and see it fail.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::fmt;

/// How many problems a verdict spells out; the rest are only counted.
const EXAMPLES: usize = 10;

/// One checker's finding.
#[derive(Debug, Clone)]
pub struct Verdict {
    pub name: String,
    /// How many things were checked (records, offsets, samples…).
    pub checked: u64,
    /// How many of them broke the property.
    pub failures: u64,
    /// The first few failures, described.
    pub examples: Vec<String>,
}

impl Verdict {
    pub fn new(name: impl Into<String>) -> Verdict {
        Verdict {
            name: name.into(),
            checked: 0,
            failures: 0,
            examples: Vec::new(),
        }
    }

    /// Counts one failure, described by `what` if it is among the first.
    pub fn fail(&mut self, what: impl FnOnce() -> String) {
        self.failures += 1;
        if self.examples.len() < EXAMPLES {
            self.examples.push(what());
        }
    }

    pub fn passed(&self) -> bool {
        self.failures == 0
    }

    /// Fails the calling test with the verdict unless it passed.
    #[track_caller]
    pub fn assert_passed(&self) {
        assert!(self.passed(), "{self}");
    }
}

impl fmt::Display for Verdict {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.passed() {
            write!(f, "PASS  {:<44} {} checked", self.name, self.checked)
        } else {
            write!(
                f,
                "FAIL  {:<44} {} of {} checked",
                self.name, self.failures, self.checked
            )?;
            for e in &self.examples {
                write!(f, "\n        {e}")?;
            }
            if self.failures > self.examples.len() as u64 {
                write!(
                    f,
                    "\n        … and {} more",
                    self.failures - self.examples.len() as u64
                )?;
            }
            Ok(())
        }
    }
}

/// A record as read back from a partition.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Read {
    pub offset: u64,
    pub key: Option<Vec<u8>>,
    pub value: Vec<u8>,
}

/// What a consumer read from each partition of a topic, in offset order.
pub type Partitions = BTreeMap<u32, Vec<Read>>;

/// A record a producer was told was written (`acks=all`), and where.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Acked {
    pub partition: u32,
    pub value: Vec<u8>,
}

fn show(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// Every acknowledged record can be read back from the partition it was
/// acknowledged on.
pub fn acknowledged_readable(acked: &[Acked], read: &Partitions) -> Verdict {
    let mut v = Verdict::new("acknowledged records readable");
    let present: HashSet<(u32, &[u8])> = read
        .iter()
        .flat_map(|(&p, records)| records.iter().map(move |r| (p, r.value.as_slice())))
        .collect();
    for a in acked {
        v.checked += 1;
        if !present.contains(&(a.partition, a.value.as_slice())) {
            v.fail(|| format!("lost: {} on partition {}", show(&a.value), a.partition));
        }
    }
    v
}

/// No value appears twice: with idempotence a retried batch is written
/// once. (Every value the workloads write is unique.)
pub fn no_duplicates(read: &Partitions) -> Verdict {
    let mut v = Verdict::new("no duplicates");
    let mut first: HashMap<&[u8], (u32, u64)> = HashMap::new();
    for (&p, records) in read {
        for r in records {
            v.checked += 1;
            if let Some(&(p0, o0)) = first.get(r.value.as_slice()) {
                v.fail(|| {
                    format!(
                        "{} at {p0}@{o0} and again at {p}@{}",
                        show(&r.value),
                        r.offset
                    )
                });
            } else {
                first.insert(&r.value, (p, r.offset));
            }
        }
    }
    v
}

/// Within each partition, offsets only grow, and the records each producer
/// wrote appear in the order it sent them. `sequence` reads (producer,
/// sequence number) from a value, or `None` for values it does not know.
pub fn order_per_partition(
    read: &Partitions,
    sequence: impl Fn(&[u8]) -> Option<(u64, u64)>,
) -> Verdict {
    let mut v = Verdict::new("order per partition");
    for (&p, records) in read {
        let mut last_offset: Option<u64> = None;
        let mut last_seq: HashMap<u64, (u64, u64)> = HashMap::new();
        for r in records {
            v.checked += 1;
            if let Some(o) = last_offset
                && r.offset <= o
            {
                v.fail(|| format!("partition {p}: offset {} after {o}", r.offset));
            }
            last_offset = Some(r.offset);
            let Some((producer, seq)) = sequence(&r.value) else {
                continue;
            };
            if let Some(&(prev, at)) = last_seq.get(&producer)
                && seq <= prev
            {
                v.fail(|| {
                    format!(
                        "partition {p}: producer {producer}'s #{seq} at offset {} after #{prev} at {at}",
                        r.offset
                    )
                });
            }
            last_seq.insert(producer, (seq, r.offset));
        }
    }
    v
}

/// One replica of one partition: the digest of the record at each offset.
#[derive(Debug, Clone)]
pub struct Replica {
    pub broker: i32,
    pub partition: u32,
    pub records: BTreeMap<u64, u64>,
}

/// No offset below the high watermark holds different records on
/// different replicas of a partition. `high_watermarks` bounds each
/// partition; offsets a replica lacks are not counted here (they are the
/// readability checker's business).
pub fn replicas_agree(replicas: &[Replica], high_watermarks: &BTreeMap<u32, u64>) -> Verdict {
    let mut v = Verdict::new("replicas agree");
    let mut by_partition: BTreeMap<u32, Vec<&Replica>> = BTreeMap::new();
    for r in replicas {
        by_partition.entry(r.partition).or_default().push(r);
    }
    for (p, reps) in by_partition {
        let hw = high_watermarks.get(&p).copied().unwrap_or(u64::MAX);
        let mut seen: BTreeMap<u64, (u64, i32)> = BTreeMap::new();
        for rep in reps {
            for (&offset, &digest) in rep.records.range(..hw) {
                match seen.get(&offset) {
                    None => {
                        v.checked += 1;
                        seen.insert(offset, (digest, rep.broker));
                    }
                    Some(&(d, b)) if d != digest => v.fail(|| {
                        format!(
                            "partition {p} offset {offset}: broker {b} and broker {} hold different records",
                            rep.broker
                        )
                    }),
                    Some(_) => {}
                }
            }
        }
    }
    v
}

/// A group's committed offset for one partition, as seen at one moment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Committed {
    pub group: String,
    pub partition: u32,
    pub offset: u64,
}

/// Committed offsets, sampled in time order, never go backwards.
pub fn commits_never_regress(samples: &[Committed]) -> Verdict {
    let mut v = Verdict::new("committed offsets never regress");
    let mut last: HashMap<(&str, u32), u64> = HashMap::new();
    for s in samples {
        v.checked += 1;
        let key = (s.group.as_str(), s.partition);
        if let Some(&prev) = last.get(&key)
            && s.offset < prev
        {
            v.fail(|| {
                format!(
                    "group {} partition {}: committed {} after {prev}",
                    s.group, s.partition, s.offset
                )
            });
        }
        let high = last.get(&key).copied().unwrap_or(0).max(s.offset);
        last.insert(key, high);
    }
    v
}

/// A member's claim, in some generation of a group, to own a partition.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Claim {
    pub generation: i32,
    pub member: String,
    pub partition: u32,
}

/// In every generation, each partition has at most one owner. Members
/// repeat their claims after every poll; each distinct claim counts once.
pub fn one_owner_per_generation(claims: &[Claim]) -> Verdict {
    let mut v = Verdict::new("one owner per generation");
    let mut owner: HashMap<(i32, u32), &str> = HashMap::new();
    let mut seen: HashSet<(i32, u32, &str)> = HashSet::new();
    for c in claims {
        if !seen.insert((c.generation, c.partition, &c.member)) {
            continue;
        }
        v.checked += 1;
        match owner.get(&(c.generation, c.partition)) {
            Some(&m) if m != c.member => v.fail(|| {
                format!(
                    "generation {} partition {}: owned by {m} and by {}",
                    c.generation, c.partition, c.member
                )
            }),
            Some(_) => {}
            None => {
                owner.insert((c.generation, c.partition), &c.member);
            }
        }
    }
    v
}

/// What a pipeline's output holds per key, in order, against what the
/// processor applied to the input gives.
fn compare_outputs(
    v: &mut Verdict,
    expected: &BTreeMap<Vec<u8>, Vec<Vec<u8>>>,
    actual: &BTreeMap<Vec<u8>, Vec<Vec<u8>>>,
    duplicates_allowed: bool,
) -> u64 {
    let mut duplicates = 0;
    for (key, want) in expected {
        let got = actual.get(key).map(Vec::as_slice).unwrap_or_default();
        v.checked += want.len() as u64;
        let mut counts: HashMap<&[u8], usize> = HashMap::new();
        for g in got {
            *counts.entry(g).or_default() += 1;
        }
        for w in want {
            match counts.get(w.as_slice()) {
                None | Some(0) => v.fail(|| format!("key {}: lost {}", show(key), show(w))),
                Some(1) => {}
                Some(&n) => {
                    duplicates += n as u64 - 1;
                    if !duplicates_allowed {
                        v.fail(|| format!("key {}: {} written {n} times", show(key), show(w)));
                    }
                }
            }
        }
        if !duplicates_allowed && got.len() == want.len() && got != want.as_slice() {
            v.fail(|| format!("key {}: the right records in the wrong order", show(key)));
        }
    }
    for (key, got) in actual {
        let want: HashSet<&[u8]> = expected
            .get(key)
            .map(|w| w.iter().map(Vec::as_slice).collect())
            .unwrap_or_default();
        for g in got.iter().filter(|g| !want.contains(g.as_slice())) {
            v.fail(|| {
                format!(
                    "key {}: {} is not the processor's output",
                    show(key),
                    show(g)
                )
            });
        }
    }
    duplicates
}

/// An exactly-once pipeline's output is the processor applied to its
/// input: the same records per key, each once, in the input's order.
pub fn exactly_once(
    expected: &BTreeMap<Vec<u8>, Vec<Vec<u8>>>,
    actual: &BTreeMap<Vec<u8>, Vec<Vec<u8>>>,
) -> Verdict {
    let mut v = Verdict::new("exactly-once output = f(input)");
    compare_outputs(&mut v, expected, actual, false);
    v
}

/// An at-least-once pipeline loses nothing; duplicates are allowed and
/// counted (returned beside the verdict).
pub fn at_least_once(
    expected: &BTreeMap<Vec<u8>, Vec<Vec<u8>>>,
    actual: &BTreeMap<Vec<u8>, Vec<Vec<u8>>>,
) -> (Verdict, u64) {
    let mut v = Verdict::new("at-least-once loses nothing");
    let duplicates = compare_outputs(&mut v, expected, actual, true);
    (v, duplicates)
}

/// A broker's resident memory, sampled over a run, stays under `limit`
/// bytes and does not keep growing: the last third of the samples peaks at
/// most `growth` bytes above the first third's peak.
pub fn memory_bounded(samples: &[u64], limit: u64, growth: u64) -> Verdict {
    let mut v = Verdict::new("broker memory bounded");
    for (i, &s) in samples.iter().enumerate() {
        v.checked += 1;
        if s > limit {
            v.fail(|| {
                format!(
                    "sample {i}: {} MiB over the limit {} MiB",
                    s >> 20,
                    limit >> 20
                )
            });
        }
    }
    if samples.len() >= 6 {
        let third = samples.len() / 3;
        let early = samples[..third].iter().max().copied().unwrap_or(0);
        let late = samples[samples.len() - third..]
            .iter()
            .max()
            .copied()
            .unwrap_or(0);
        if late > early + growth {
            v.fail(|| {
                format!(
                    "still growing: peak {} MiB in the first third, {} MiB in the last",
                    early >> 20,
                    late >> 20
                )
            });
        }
    }
    v
}

#[cfg(test)]
mod tests {
    //! Each checker passes a history that keeps its property and fails one
    //! that breaks it.
    use super::*;

    fn read(records: &[(u64, &str)]) -> Vec<Read> {
        records
            .iter()
            .map(|&(offset, value)| Read {
                offset,
                key: None,
                value: value.as_bytes().to_vec(),
            })
            .collect()
    }

    fn acked(partition: u32, value: &str) -> Acked {
        Acked {
            partition,
            value: value.as_bytes().to_vec(),
        }
    }

    #[test]
    fn a_lost_acknowledged_record_is_named() {
        let log: Partitions = [(0, read(&[(0, "p1-0"), (1, "p1-1")]))].into();
        acknowledged_readable(&[acked(0, "p1-0"), acked(0, "p1-1")], &log).assert_passed();
        let v = acknowledged_readable(
            &[acked(0, "p1-0"), acked(0, "p1-2"), acked(1, "p1-1")],
            &log,
        );
        assert_eq!(v.failures, 2, "{v}");
        assert!(v.examples[0].contains("p1-2 on partition 0"), "{v}");
        assert!(v.examples[1].contains("p1-1 on partition 1"), "{v}");
    }

    #[test]
    fn a_duplicate_is_found_across_partitions() {
        let ok: Partitions = [(0, read(&[(0, "a"), (1, "b")])), (1, read(&[(0, "c")]))].into();
        no_duplicates(&ok).assert_passed();
        let dup: Partitions = [(0, read(&[(0, "a"), (1, "b")])), (1, read(&[(0, "a")]))].into();
        let v = no_duplicates(&dup);
        assert_eq!(v.failures, 1, "{v}");
        assert!(v.examples[0].contains("a at 0@0 and again at 1@0"), "{v}");
    }

    fn seq(value: &[u8]) -> Option<(u64, u64)> {
        let s = std::str::from_utf8(value).ok()?;
        let (p, n) = s.strip_prefix('p')?.split_once('-')?;
        Some((p.parse().ok()?, n.parse().ok()?))
    }

    #[test]
    fn reordering_within_a_producer_is_found() {
        let ok: Partitions = [(0, read(&[(0, "p1-0"), (1, "p2-0"), (2, "p1-1"), (3, "x")]))].into();
        order_per_partition(&ok, seq).assert_passed();
        let bad: Partitions = [(0, read(&[(0, "p1-1"), (1, "p2-0"), (2, "p1-0")]))].into();
        let v = order_per_partition(&bad, seq);
        assert_eq!(v.failures, 1, "{v}");
        assert!(
            v.examples[0].contains("producer 1's #0 at offset 2 after #1 at 0"),
            "{v}"
        );
        let offsets: Partitions = [(0, read(&[(5, "x"), (5, "y")]))].into();
        assert!(!order_per_partition(&offsets, seq).passed());
    }

    fn replica(broker: i32, records: &[(u64, u64)]) -> Replica {
        Replica {
            broker,
            partition: 0,
            records: records.iter().copied().collect(),
        }
    }

    #[test]
    fn replicas_that_differ_below_the_high_watermark_are_found() {
        let hw = [(0, 3)].into();
        let a = replica(1, &[(0, 10), (1, 11), (2, 12), (3, 13)]);
        // Above the high watermark a follower may differ (it truncates later).
        let b = replica(2, &[(0, 10), (1, 11), (2, 12), (3, 99)]);
        replicas_agree(&[a.clone(), b], &hw).assert_passed();
        let c = replica(3, &[(0, 10), (1, 77)]);
        let v = replicas_agree(&[a, c], &hw);
        assert_eq!(v.failures, 1, "{v}");
        assert!(
            v.examples[0].contains("offset 1: broker 1 and broker 3"),
            "{v}"
        );
    }

    fn committed(partition: u32, offset: u64) -> Committed {
        Committed {
            group: "g".into(),
            partition,
            offset,
        }
    }

    #[test]
    fn a_committed_offset_going_back_is_found() {
        let ok = [
            committed(0, 5),
            committed(1, 2),
            committed(0, 5),
            committed(0, 9),
        ];
        commits_never_regress(&ok).assert_passed();
        let bad = [
            committed(0, 5),
            committed(0, 9),
            committed(1, 1),
            committed(0, 7),
        ];
        let v = commits_never_regress(&bad);
        assert_eq!(v.failures, 1, "{v}");
        assert!(v.examples[0].contains("committed 7 after 9"), "{v}");
    }

    fn claim(generation: i32, member: &str, partition: u32) -> Claim {
        Claim {
            generation,
            member: member.into(),
            partition,
        }
    }

    #[test]
    fn two_owners_in_one_generation_are_found() {
        let ok = [
            claim(1, "a", 0),
            claim(1, "b", 1),
            claim(2, "b", 0),
            claim(1, "a", 0),
        ];
        one_owner_per_generation(&ok).assert_passed();
        let bad = [claim(1, "a", 0), claim(1, "b", 0), claim(1, "b", 0)];
        let v = one_owner_per_generation(&bad);
        assert_eq!(v.failures, 1, "{v}");
        assert!(v.examples[0].contains("owned by a and by b"), "{v}");
    }

    fn outputs(pairs: &[(&str, &[&str])]) -> BTreeMap<Vec<u8>, Vec<Vec<u8>>> {
        pairs
            .iter()
            .map(|(k, vs)| {
                (
                    k.as_bytes().to_vec(),
                    vs.iter().map(|v| v.as_bytes().to_vec()).collect(),
                )
            })
            .collect()
    }

    #[test]
    fn exactly_once_refuses_loss_duplicates_order_and_strangers() {
        let want = outputs(&[("k1", &["a", "b", "c"]), ("k2", &["d"])]);
        exactly_once(&want, &want).assert_passed();
        for (broken, what) in [
            (outputs(&[("k1", &["a", "c"]), ("k2", &["d"])]), "lost b"),
            (
                outputs(&[("k1", &["a", "b", "b", "c"]), ("k2", &["d"])]),
                "b written 2 times",
            ),
            (
                outputs(&[("k1", &["a", "c", "b"]), ("k2", &["d"])]),
                "wrong order",
            ),
            (
                outputs(&[("k1", &["a", "b", "c"]), ("k2", &["d", "z"])]),
                "z is not",
            ),
        ] {
            let v = exactly_once(&want, &broken);
            assert!(!v.passed(), "{what} went unnoticed");
            assert!(v.examples.iter().any(|e| e.contains(what)), "{what}: {v}");
        }
    }

    #[test]
    fn at_least_once_counts_duplicates_and_refuses_loss() {
        let want = outputs(&[("k1", &["a", "b"])]);
        let doubled = outputs(&[("k1", &["a", "b", "a"])]);
        let (v, duplicates) = at_least_once(&want, &doubled);
        v.assert_passed();
        assert_eq!(duplicates, 1);
        let (v, _) = at_least_once(&want, &outputs(&[("k1", &["b"])]));
        assert!(v.examples.iter().any(|e| e.contains("lost a")), "{v}");
    }

    #[test]
    fn memory_over_the_limit_or_still_growing_is_found() {
        const MIB: u64 = 1 << 20;
        let flat: Vec<u64> = [100, 120, 110, 115, 118, 112].map(|m| m * MIB).to_vec();
        memory_bounded(&flat, 512 * MIB, 64 * MIB).assert_passed();
        let leak: Vec<u64> = [100, 150, 200, 250, 300, 350].map(|m| m * MIB).to_vec();
        let v = memory_bounded(&leak, 512 * MIB, 64 * MIB);
        assert!(
            v.examples.iter().any(|e| e.contains("still growing")),
            "{v}"
        );
        // 120, 115, 118 and 112 MiB are over 110.
        let v = memory_bounded(&flat, 110 * MIB, 64 * MIB);
        assert_eq!(v.failures, 4, "{v}");
    }
}
