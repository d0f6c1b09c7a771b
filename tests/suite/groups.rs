//! Consumer groups with real `eddy consume --group` processes.

use std::collections::{BTreeSet, HashMap};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use bytes::Bytes;
use eddy_proto::v1 as pb;
use pb::groups_client::GroupsClient;
use tonic::Code;

use crate::harness::{TestBroker, eddy_binary, keyed_lines};

/// An `eddy consume --group` process writing to a file.
struct Member {
    child: Child,
    out: PathBuf,
}

impl Member {
    fn start(b: &TestBroker, dir: &Path, name: &str, topic: &str, group: &str) -> Member {
        let out = dir.join(format!("{name}.out"));
        let child = Command::new(eddy_binary())
            .args([
                "consume",
                topic,
                "--group",
                group,
                "-B",
                "--print-offset",
                "--session-timeout-ms",
                "1500",
            ])
            .args(["--bootstrap", &b.addr])
            .stdout(std::fs::File::create(&out).unwrap())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        Member { child, out }
    }

    /// (partition, offset, value) per printed line.
    fn lines(&self) -> Vec<(u32, u64, String)> {
        std::fs::read_to_string(&self.out)
            .unwrap_or_default()
            .lines()
            .filter_map(|l| {
                let (pos, value) = l.split_once('\t')?;
                let (p, o) = pos.split_once(':')?;
                Some((p.parse().ok()?, o.parse().ok()?, value.to_string()))
            })
            .collect()
    }

    fn partitions(&self) -> BTreeSet<u32> {
        self.lines().into_iter().map(|(p, _, _)| p).collect()
    }
}

impl Drop for Member {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Waits until `done` holds, failing after `limit`.
fn eventually(limit: Duration, what: &str, mut done: impl FnMut() -> bool) {
    let start = Instant::now();
    while !done() {
        assert!(start.elapsed() < limit, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn values(members: &[&Member]) -> BTreeSet<String> {
    members
        .iter()
        .flat_map(|m| m.lines())
        .map(|(_, _, v)| v)
        .collect()
}

#[test]
fn three_members_split_six_partitions_and_a_killed_members_partitions_move_without_a_gap() {
    let b = TestBroker::start();
    let tmp = tempfile::tempdir().unwrap();
    b.ok(&["topic", "create", "g", "-p", "6"]);
    b.ok_with_input(
        &["produce", "g", "--key-separator", ":"],
        keyed_lines(600, 60).as_bytes(),
    );
    let mut members: Vec<Member> = (0..3)
        .map(|i| Member::start(&b, tmp.path(), &format!("m{i}"), "g", "G"))
        .collect();
    eventually(Duration::from_secs(30), "the first 600 records", || {
        values(&members.iter().collect::<Vec<_>>()).len() == 600
    });
    let owned: Vec<BTreeSet<u32>> = members.iter().map(Member::partitions).collect();
    let all: BTreeSet<u32> = owned.iter().flatten().copied().collect();
    assert_eq!(all, (0..6).collect(), "every partition is read");
    assert_eq!(
        owned.iter().map(BTreeSet::len).sum::<usize>(),
        6,
        "by exactly one member: {owned:?}"
    );

    // A member dies without leaving; the group notices at its session timeout.
    let dead = members.remove(0);
    let dead_partitions = dead.partitions();
    drop(dead);
    let second: String = (600..1200)
        .map(|i| format!("key-{}:value-{i}\n", i % 60))
        .collect();
    b.ok_with_input(&["produce", "g", "--key-separator", ":"], second.as_bytes());
    eventually(
        Duration::from_secs(30),
        "every record of the second round",
        || {
            let seen = values(&members.iter().collect::<Vec<_>>());
            (600..1200).all(|i| seen.contains(&format!("value-{i}")))
        },
    );
    let survivors: BTreeSet<u32> = members.iter().flat_map(Member::partitions).collect();
    assert!(
        dead_partitions.is_subset(&survivors),
        "{dead_partitions:?} moved to the survivors"
    );
    let described = b.ok(&["group", "describe", "G"]);
    assert!(described.contains("members 2"), "{described}");
}

#[test]
fn a_seventh_member_on_six_partitions_stays_idle_until_another_leaves() {
    let b = TestBroker::start();
    let tmp = tempfile::tempdir().unwrap();
    b.ok(&["topic", "create", "six", "-p", "6"]);
    let mut members: Vec<Member> = (0..7)
        .map(|i| Member::start(&b, tmp.path(), &format!("m{i}"), "six", "G7"))
        .collect();
    let mut described = String::new();
    eventually(Duration::from_secs(30), "a stable group of seven", || {
        described = b.eddy(&["group", "describe", "G7"]).stdout;
        described.contains("state Stable") && described.contains("members 7")
    });
    let member_lines: Vec<&str> = described
        .lines()
        .filter(|l| l.trim_start().starts_with("member "))
        .collect();
    assert_eq!(
        member_lines.iter().filter(|l| l.ends_with("idle")).count(),
        1,
        "{described}"
    );
    let owners: BTreeSet<&str> = described
        .lines()
        .filter(|l| l.starts_with("six "))
        .filter_map(|l| l.split_whitespace().nth(5))
        .collect();
    assert_eq!(
        owners.len(),
        6,
        "six partitions, six different owners:\n{described}"
    );

    // A busy member dies: the idle one takes its partition.
    let idle_client = member_lines
        .iter()
        .find(|l| l.ends_with("idle"))
        .and_then(|l| l.split(['(', ')']).nth(1))
        .unwrap()
        .to_string();
    let busy = members
        .iter()
        .position(|m| format!("eddy-consume-{}", m.child.id()) != idle_client)
        .unwrap();
    drop(members.remove(busy));
    eventually(Duration::from_secs(20), "six busy members", || {
        described = b.eddy(&["group", "describe", "G7"]).stdout;
        described.contains("state Stable")
            && described.contains("members 6")
            && !described.contains("idle")
    });
    assert!(
        described.contains(&idle_client),
        "the idle member took over:\n{described}"
    );
}

#[test]
fn a_group_continues_where_it_stopped_even_across_a_broker_restart() {
    let mut b = TestBroker::start();
    b.ok(&["topic", "create", "c"]);
    let input: String = (1..=20).map(|i| format!("{i}\n")).collect();
    b.ok_with_input(&["produce", "c"], input.as_bytes());
    let first = b.ok(&["consume", "c", "--group", "R", "-B", "-n", "10"]);
    assert_eq!(
        first,
        (1..=10).map(|i| format!("{i}\n")).collect::<String>()
    );
    b.restart();
    let second = b.ok(&["consume", "c", "--group", "R", "-n", "5"]);
    assert_eq!(
        second,
        (11..=15).map(|i| format!("{i}\n")).collect::<String>(),
        "continues at the commit"
    );
    let described = b.ok(&["group", "describe", "R"]);
    let row = described.lines().find(|l| l.starts_with("c ")).unwrap();
    assert_eq!(
        row.split_whitespace().collect::<Vec<_>>()[2..5],
        ["15", "20", "5"],
        "committed, end, lag: {described}"
    );
    assert!(b.ok(&["group", "list"]).contains("R"));
}

#[test]
fn a_second_run_reads_the_partitions_the_first_never_printed_from() {
    let b = TestBroker::start();
    b.ok(&["topic", "create", "two", "-p", "2"]);
    b.ok_with_input(&["produce", "two", "-p", "0"], b"a\nb\n");
    b.ok_with_input(&["produce", "two", "-p", "1"], b"c\nd\n");
    let first = b.ok(&["consume", "two", "--group", "Q", "-B", "-n", "2"]);
    let second = b.ok(&[
        "consume",
        "two",
        "--group",
        "Q",
        "-n",
        "2",
        "--idle-timeout-ms",
        "5000",
    ]);
    let mut all: Vec<&str> = first.lines().chain(second.lines()).collect();
    all.sort();
    assert_eq!(
        all,
        ["a", "b", "c", "d"],
        "the first run committed where it started on the partition it did not print from:\n{first}--\n{second}"
    );
}

#[test]
fn offsets_reset_only_while_the_group_is_empty() {
    let b = TestBroker::start();
    let tmp = tempfile::tempdir().unwrap();
    b.ok(&["topic", "create", "r", "-p", "2"]);
    b.ok_with_input(&["produce", "r", "-p", "0"], b"a\nb\nc\n");
    b.ok(&["consume", "r", "--group", "Z", "-B", "-n", "3"]);
    let reset = b.ok(&[
        "group",
        "reset-offsets",
        "Z",
        "--topic",
        "r",
        "--to-offset",
        "1",
    ]);
    assert!(
        reset.contains("r-0 -> 1") && reset.contains("r-1 -> 0"),
        "{reset}"
    );
    assert_eq!(b.ok(&["consume", "r", "--group", "Z", "-n", "2"]), "b\nc\n");
    let _member = Member::start(&b, tmp.path(), "busy", "r", "Z");
    eventually(Duration::from_secs(20), "an active member", || {
        b.eddy(&["group", "describe", "Z"])
            .stdout
            .contains("members 1")
    });
    let refused = b.eddy(&[
        "group",
        "reset-offsets",
        "Z",
        "--topic",
        "r",
        "--to-earliest",
    ]);
    assert!(
        !refused.success && refused.stderr.contains("has active members"),
        "{}",
        refused.stderr
    );
}

#[tokio::test]
async fn commits_from_a_stale_generation_or_an_unknown_member_are_refused() {
    let b = TestBroker::start();
    b.ok(&["topic", "create", "f", "-p", "2"]);
    let channel = tonic::transport::Channel::from_shared(format!("http://{}", b.addr))
        .unwrap()
        .connect()
        .await
        .unwrap();
    let mut g = GroupsClient::new(channel);
    let join = |member: &str| pb::JoinGroupRequest {
        group_id: "F".into(),
        member_id: member.into(),
        client_id: "test".into(),
        session_timeout_ms: 5_000,
        rebalance_timeout_ms: 5_000,
        topics: vec!["f".into()],
        assignor: pb::Assignor::Range as i32,
        owned: vec![],
    };
    let a = g.join_group(join("")).await.unwrap().into_inner();
    let commit = |member: &str, generation: i32, offset: u64| pb::CommitOffsetsRequest {
        group_id: "F".into(),
        member_id: member.into(),
        generation,
        offsets: vec![pb::PartitionOffset {
            topic: "f".into(),
            partition: 0,
            offset,
            metadata: Bytes::from_static(b"m"),
        }],
    };
    g.commit_offsets(commit(&a.member_id, a.generation, 5))
        .await
        .unwrap();

    // B joins: the group rebalances; A learns it from its heartbeat and rejoins.
    let mut g2 = g.clone();
    let joining_b = tokio::spawn(async move { g2.join_group(join("")).await });
    let hb = pb::HeartbeatRequest {
        group_id: "F".into(),
        member_id: a.member_id.clone(),
        generation: a.generation,
        wait_ms: 5_000,
    };
    let err = g.heartbeat(hb).await.unwrap_err();
    assert_eq!(err.code(), Code::Aborted, "{err:?}");
    let a2 = g.join_group(join(&a.member_id)).await.unwrap().into_inner();
    let b2 = joining_b.await.unwrap().unwrap().into_inner();
    assert_eq!(a2.generation, b2.generation);
    assert!(a2.generation > a.generation);

    let stale = g
        .commit_offsets(commit(&a.member_id, a.generation, 9))
        .await
        .unwrap_err();
    assert_eq!(stale.code(), Code::Aborted);
    assert!(stale.message().contains("rejoin"), "{}", stale.message());
    let unknown = g
        .commit_offsets(commit("nobody", a2.generation, 9))
        .await
        .unwrap_err();
    assert_eq!(unknown.code(), Code::FailedPrecondition);
    let outsider = g.commit_offsets(commit("", -1, 9)).await.unwrap_err();
    assert!(
        outsider.message().contains("has active members"),
        "{}",
        outsider.message()
    );
    let fetched = g
        .fetch_offsets(pb::FetchOffsetsRequest {
            group_id: "F".into(),
            partitions: vec![],
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(fetched.offsets.len(), 1);
    assert_eq!(
        (fetched.offsets[0].offset, &fetched.offsets[0].metadata[..]),
        (5, &b"m"[..]),
        "refused commits changed nothing"
    );
    let mut assigned: HashMap<String, Vec<u32>> = HashMap::new();
    for r in [&a2, &b2] {
        assigned.insert(
            r.member_id.clone(),
            r.assignment
                .iter()
                .flat_map(|t| t.partitions.clone())
                .collect(),
        );
    }
    assert_eq!(
        assigned.values().map(Vec::len).collect::<Vec<_>>(),
        [1, 1],
        "{assigned:?}"
    );
}
