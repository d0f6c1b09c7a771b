//! Partition assignors: who reads what. Pure functions, so they are easy to
//! test and deterministic (members and partitions are sorted first).

use std::collections::{BTreeMap, BTreeSet};

pub use crate::api::Assignor;

/// A topic partition.
pub type Tp = (String, u32);

/// What the assignor knows about a member.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MemberInput {
    pub id: String,
    pub topics: BTreeSet<String>,
    /// Partitions the member still holds (cooperative rebalancing keeps them).
    pub owned: Vec<Tp>,
}

/// The result: partitions per member, plus whether some partitions were
/// withheld because their previous owner must revoke them first.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Assignment {
    pub by_member: BTreeMap<String, Vec<Tp>>,
    pub withheld: Vec<Tp>,
}

/// Assigns `partitions` (topic → partition count) to `members`.
pub fn assign(
    strategy: Assignor,
    members: &[MemberInput],
    partitions: &BTreeMap<String, u32>,
) -> Assignment {
    let mut sorted: Vec<&MemberInput> = members.iter().collect();
    sorted.sort_by(|a, b| a.id.cmp(&b.id));
    let mut out = Assignment::default();
    for m in &sorted {
        out.by_member.insert(m.id.clone(), Vec::new());
    }
    match strategy {
        Assignor::Range => range(&sorted, partitions, &mut out),
        Assignor::RoundRobin => round_robin(&sorted, partitions, &mut out),
        Assignor::CooperativeSticky => cooperative_sticky(&sorted, partitions, &mut out),
    }
    for v in out.by_member.values_mut() {
        v.sort();
    }
    out
}

/// Per topic, contiguous ranges; the first members get one extra when the
/// count does not divide.
fn range(members: &[&MemberInput], partitions: &BTreeMap<String, u32>, out: &mut Assignment) {
    for (topic, &count) in partitions {
        let subscribed: Vec<&&MemberInput> = members
            .iter()
            .filter(|m| m.topics.contains(topic))
            .collect();
        if subscribed.is_empty() {
            continue;
        }
        let n = subscribed.len() as u32;
        let (per, extra) = (count / n, count % n);
        let mut next = 0;
        for (i, m) in subscribed.iter().enumerate() {
            let take = per + u32::from((i as u32) < extra);
            for p in next..next + take {
                out.by_member
                    .entry(m.id.clone())
                    .or_default()
                    .push((topic.clone(), p));
            }
            next += take;
        }
    }
}

/// Every partition of every topic, dealt in turn to the members subscribed to it.
fn round_robin(members: &[&MemberInput], partitions: &BTreeMap<String, u32>, out: &mut Assignment) {
    let mut turn = 0usize;
    for (topic, &count) in partitions {
        for p in 0..count {
            for _ in 0..members.len() {
                let m = members[turn % members.len()];
                turn += 1;
                if m.topics.contains(topic) {
                    out.by_member
                        .entry(m.id.clone())
                        .or_default()
                        .push((topic.clone(), p));
                    break;
                }
            }
        }
    }
}

/// Balanced and sticky: members keep what they own up to their fair share,
/// the rest is spread to the least loaded; a partition whose owner is still
/// in the group but must give it up is withheld for one generation.
fn cooperative_sticky(
    members: &[&MemberInput],
    partitions: &BTreeMap<String, u32>,
    out: &mut Assignment,
) {
    let all: Vec<Tp> = partitions
        .iter()
        .filter(|(t, _)| members.iter().any(|m| m.topics.contains(*t)))
        .flat_map(|(t, &n)| (0..n).map(move |p| (t.clone(), p)))
        .collect();
    if members.is_empty() {
        return;
    }
    let total = all.len();
    let m = members.len();
    let (floor, extra) = (total / m, total % m);
    // Members owning the most keep the bigger shares, to move as little as possible.
    let mut by_owned: Vec<&&MemberInput> = members.iter().collect();
    by_owned.sort_by(|a, b| b.owned.len().cmp(&a.owned.len()).then(a.id.cmp(&b.id)));
    let quota: BTreeMap<&str, usize> = by_owned
        .iter()
        .enumerate()
        .map(|(i, mi)| (mi.id.as_str(), floor + usize::from(i < extra)))
        .collect();
    let valid: BTreeSet<&Tp> = all.iter().collect();
    let mut taken: BTreeSet<Tp> = BTreeSet::new();
    let mut previous_owner: BTreeMap<Tp, &str> = BTreeMap::new();
    for mi in &by_owned {
        for tp in &mi.owned {
            previous_owner.entry(tp.clone()).or_insert(mi.id.as_str());
        }
    }
    for mi in &by_owned {
        let keep = mi
            .owned
            .iter()
            .filter(|tp| valid.contains(tp) && mi.topics.contains(&tp.0))
            .filter(|tp| previous_owner.get(*tp) == Some(&mi.id.as_str()))
            .take(quota[mi.id.as_str()])
            .cloned()
            .collect::<Vec<_>>();
        for tp in keep {
            taken.insert(tp.clone());
            out.by_member.entry(mi.id.clone()).or_default().push(tp);
        }
    }
    for tp in all.iter().filter(|tp| !taken.contains(*tp)) {
        let target = members
            .iter()
            .filter(|mi| mi.topics.contains(&tp.0))
            .min_by_key(|mi| {
                let have = out.by_member.get(&mi.id).map_or(0, Vec::len);
                (have >= quota[mi.id.as_str()], have, mi.id.clone())
            });
        let Some(target) = target else { continue };
        match previous_owner.get(tp) {
            Some(owner) if *owner != target.id && members.iter().any(|mi| mi.id == *owner) => {
                out.withheld.push(tp.clone());
            }
            _ => out
                .by_member
                .entry(target.id.clone())
                .or_default()
                .push(tp.clone()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn member(id: &str, topics: &[&str], owned: &[(&str, u32)]) -> MemberInput {
        MemberInput {
            id: id.into(),
            topics: topics.iter().map(|t| t.to_string()).collect(),
            owned: owned.iter().map(|(t, p)| (t.to_string(), *p)).collect(),
        }
    }

    fn counts(a: &Assignment) -> Vec<usize> {
        a.by_member.values().map(Vec::len).collect()
    }

    fn every_partition_once(a: &Assignment, total: usize) {
        let all: Vec<&Tp> = a
            .by_member
            .values()
            .flatten()
            .chain(a.withheld.iter())
            .collect();
        let unique: BTreeSet<&&Tp> = all.iter().collect();
        assert_eq!((all.len(), unique.len()), (total, total), "{a:?}");
    }

    #[test]
    fn range_gives_contiguous_ranges_with_extras_first() {
        let ms = [
            member("a", &["t"], &[]),
            member("b", &["t"], &[]),
            member("c", &["t"], &[]),
        ];
        let a = assign(Assignor::Range, &ms, &BTreeMap::from([("t".into(), 7)]));
        assert_eq!(
            a.by_member["a"],
            [("t".to_string(), 0), ("t".into(), 1), ("t".into(), 2)]
        );
        assert_eq!(counts(&a), [3, 2, 2]);
        every_partition_once(&a, 7);
    }

    #[test]
    fn round_robin_deals_in_turn_and_skips_unsubscribed_members() {
        let ms = [member("a", &["x", "y"], &[]), member("b", &["y"], &[])];
        let parts = BTreeMap::from([("x".into(), 2), ("y".into(), 2)]);
        let a = assign(Assignor::RoundRobin, &ms, &parts);
        assert_eq!(a.by_member["b"], [("y".to_string(), 0)]);
        every_partition_once(&a, 4);
    }

    #[test]
    fn more_members_than_partitions_leaves_some_idle() {
        let ms: Vec<_> = (0..7)
            .map(|i| member(&format!("m{i}"), &["t"], &[]))
            .collect();
        let parts = BTreeMap::from([("t".into(), 6)]);
        for s in [
            Assignor::Range,
            Assignor::RoundRobin,
            Assignor::CooperativeSticky,
        ] {
            let a = assign(s, &ms, &parts);
            every_partition_once(&a, 6);
            assert_eq!(
                a.by_member.values().filter(|v| v.is_empty()).count(),
                1,
                "{s:?}"
            );
        }
    }

    #[test]
    fn cooperative_sticky_keeps_owned_partitions_and_withholds_only_what_moves() {
        let parts = BTreeMap::from([("t".into(), 6)]);
        let two = [
            member("a", &["t"], &[("t", 0), ("t", 1), ("t", 2)]),
            member("b", &["t"], &[("t", 3), ("t", 4), ("t", 5)]),
        ];
        let stable = assign(Assignor::CooperativeSticky, &two, &parts);
        assert!(stable.withheld.is_empty());
        assert_eq!(counts(&stable), [3, 3]);
        let three = [two[0].clone(), two[1].clone(), member("c", &["t"], &[])];
        let a = assign(Assignor::CooperativeSticky, &three, &parts);
        assert_eq!(
            a.by_member["a"].len() + a.by_member["b"].len(),
            4,
            "each keeps two"
        );
        assert!(
            a.by_member["c"].is_empty(),
            "c waits until the owners revoke"
        );
        assert_eq!(a.withheld.len(), 2);
        every_partition_once(&a, 6);
        // The owners revoke; the follow-up rebalance hands the two to c.
        let after = [
            member(
                "a",
                &["t"],
                &a.by_member["a"]
                    .iter()
                    .map(|(t, p)| (t.as_str(), *p))
                    .collect::<Vec<_>>(),
            ),
            member(
                "b",
                &["t"],
                &a.by_member["b"]
                    .iter()
                    .map(|(t, p)| (t.as_str(), *p))
                    .collect::<Vec<_>>(),
            ),
            member("c", &["t"], &[]),
        ];
        let b = assign(Assignor::CooperativeSticky, &after, &parts);
        assert!(b.withheld.is_empty());
        assert_eq!(counts(&b), [2, 2, 2]);
        assert_eq!(b.by_member["a"], a.by_member["a"], "nothing else moved");
    }

    #[test]
    fn cooperative_sticky_hands_a_departed_members_partitions_out_at_once() {
        let parts = BTreeMap::from([("t".into(), 6)]);
        let ms = [
            member("a", &["t"], &[("t", 0), ("t", 1)]),
            member("b", &["t"], &[("t", 2), ("t", 3)]),
        ];
        let a = assign(Assignor::CooperativeSticky, &ms, &parts);
        assert!(
            a.withheld.is_empty(),
            "partitions 4 and 5 had an owner that left"
        );
        assert_eq!(counts(&a), [3, 3]);
        every_partition_once(&a, 6);
    }
}
