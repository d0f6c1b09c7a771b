//! The faults a seed chooses, one at a time, and the memory samples taken
//! between them.

use std::collections::BTreeMap;
use std::fmt;
use std::time::{Duration, Instant};

use eddy_tests::cluster::{PartitionRow, TestCluster};
use eddy_tests::link::{CLIENTS, Mode};
use eddy_tests::rng::Rng;
use eddy_tests::worker::TestWorker;

use crate::{SESSION, TOPIC};

/// How long the cluster may take to bring every replica back in sync after
/// a fault before the run counts it as not recovered.
const RECOVERY: Duration = Duration::from_secs(60);

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Kind {
    LeaderKill,
    FollowerKill,
    ControllerKill,
    Pause,
    Isolate,
    OneWay,
    Slow,
    ClientCut,
    ClientReplyLoss,
    WorkerKill,
}

impl Kind {
    const ALL: [Kind; 10] = [
        Kind::LeaderKill,
        Kind::FollowerKill,
        Kind::ControllerKill,
        Kind::Pause,
        Kind::Isolate,
        Kind::OneWay,
        Kind::Slow,
        Kind::ClientCut,
        Kind::ClientReplyLoss,
        Kind::WorkerKill,
    ];

    fn name(self) -> &'static str {
        match self {
            Kind::LeaderKill => "leader kill -9",
            Kind::FollowerKill => "follower kill -9",
            Kind::ControllerKill => "controller kill -9",
            Kind::Pause => "pause past session timeout",
            Kind::Isolate => "cut off both ways",
            Kind::OneWay => "one-way black hole",
            Kind::Slow => "slow links",
            Kind::ClientCut => "clients cut off",
            Kind::ClientReplyLoss => "answers to clients lost",
            Kind::WorkerKill => "standalone worker kill -9",
        }
    }
}

/// What was done to the cluster.
#[derive(Debug)]
pub struct Injected {
    pub by_kind: BTreeMap<Kind, u64>,
    /// Each fault as it began: seconds into the run, kind and victim
    /// (printed with a failed run's report, to line up with broker logs).
    pub timeline: Vec<String>,
    /// The processor upload and pipeline applies, started with the first
    /// fault and retried through the next ones: how many attempts failed,
    /// or the command that never succeeded.
    pub deploy: Result<u64, String>,
    /// Faults after which the replicas were not back in sync within
    /// [`RECOVERY`], with what `topic describe` said.
    pub unrecovered: Vec<String>,
    /// Resident memory of each broker, sampled through the run.
    pub memory: BTreeMap<i32, Vec<u64>>,
}

impl fmt::Display for Injected {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.by_kind.is_empty() {
            return write!(f, "none");
        }
        let parts: Vec<String> = self
            .by_kind
            .iter()
            .map(|(k, n)| format!("{} {n}", k.name()))
            .collect();
        write!(f, "{}", parts.join(", "))
    }
}

/// Injects faults chosen by `rng` until `until`, then leaves every broker
/// running and in sync (as far as it can).
pub fn inject(
    cluster: &mut TestCluster,
    worker: &mut TestWorker,
    rng: &mut Rng,
    until: Instant,
) -> Injected {
    let mut injected = Injected {
        by_kind: BTreeMap::new(),
        timeline: Vec::new(),
        deploy: Ok(0),
        unrecovered: Vec::new(),
        memory: BTreeMap::new(),
    };
    let bootstrap = cluster.bootstrap();
    let began = Instant::now();
    let mut deploy = None;
    // Let the workload get going first.
    settle(cluster, &mut injected, rng.millis(1_000, 3_000));
    while Instant::now() < until {
        let kind = *rng.pick(&Kind::ALL);
        let Some(victim) = choose(cluster, rng, kind) else {
            continue;
        };
        *injected.by_kind.entry(kind).or_default() += 1;
        let target = match kind {
            Kind::WorkerKill => "the standalone worker".to_string(),
            _ => format!("broker {victim}"),
        };
        injected.timeline.push(format!(
            "{:6.1} s  {} of {target}",
            began.elapsed().as_secs_f64(),
            kind.name()
        ));
        if deploy.is_none() {
            let bootstrap = bootstrap.clone();
            deploy = Some(std::thread::spawn(move || {
                crate::pipelines::deploy(&bootstrap)
            }));
        }
        let links = cluster.links.as_ref().expect("the chaos cluster is linked");
        let others: Vec<i32> = cluster
            .nodes
            .iter()
            .map(|n| n.id)
            .filter(|&id| id != victim)
            .collect();
        match kind {
            Kind::WorkerKill => {
                worker.kill9();
                settle(cluster, &mut injected, rng.millis(300, 3_000));
                worker.start_again();
            }
            Kind::Pause => {
                cluster.signal(victim, "STOP");
                settle(cluster, &mut injected, SESSION + rng.millis(500, 2_000));
                cluster.signal(victim, "CONT");
            }
            Kind::Isolate => {
                for &other in &others {
                    links.partition(victim, other, Mode::Cut);
                }
                settle(cluster, &mut injected, SESSION + rng.millis(500, 2_000));
                links.heal();
            }
            Kind::OneWay | Kind::ClientCut | Kind::ClientReplyLoss => {
                let (from, to, mode) = match kind {
                    // The victim's calls to one other broker vanish; that
                    // broker's calls to the victim still arrive.
                    Kind::OneWay => (victim, *rng.pick(&others), Mode::Blackhole),
                    Kind::ClientCut => (CLIENTS, victim, Mode::Cut),
                    // Produce requests reach the broker and are written;
                    // the producers never hear so and must send them again.
                    _ => (CLIENTS, victim, Mode::DropReplies),
                };
                links.set(from, to, mode);
                settle(cluster, &mut injected, rng.millis(1_000, 4_000));
                links.heal();
            }
            Kind::Slow => {
                let delay = rng.millis(50, 500);
                for &other in &others {
                    links.delay(victim, other, delay);
                    links.delay(other, victim, delay);
                }
                settle(cluster, &mut injected, rng.millis(2_000, 5_000));
                links.heal();
            }
            Kind::LeaderKill | Kind::FollowerKill | Kind::ControllerKill => {
                cluster.kill9(victim);
                settle(cluster, &mut injected, rng.millis(300, 3_000));
                cluster.start_again(victim);
            }
        }
        if let Err(rows) = await_in_sync(cluster, &mut injected) {
            injected
                .unrecovered
                .push(format!("after {} of broker {victim}: {rows}", kind.name()));
        }
        settle(cluster, &mut injected, rng.millis(1_000, 4_000));
    }
    injected.deploy = match deploy {
        Some(running) => running
            .join()
            .unwrap_or_else(|_| Err("the deploying thread panicked".into())),
        None => crate::pipelines::deploy(&bootstrap),
    };
    injected
}

/// The broker a fault of `kind` hits now, if there is one.
fn choose(cluster: &TestCluster, rng: &mut Rng, kind: Kind) -> Option<i32> {
    let ids: Vec<i32> = cluster.nodes.iter().map(|n| n.id).collect();
    match kind {
        Kind::Pause
        | Kind::Isolate
        | Kind::OneWay
        | Kind::Slow
        | Kind::ClientCut
        | Kind::ClientReplyLoss => Some(*rng.pick(&ids)),
        // The worker is not a broker; any id will do.
        Kind::WorkerKill => Some(0),
        Kind::ControllerKill => ids.iter().find_map(|&id| cluster.controller_seen_by(id)),
        Kind::LeaderKill | Kind::FollowerKill => {
            let rows = describe(cluster)?;
            let row = rng.pick(&rows);
            if kind == Kind::LeaderKill {
                (row.leader > 0).then_some(row.leader)
            } else {
                let followers: Vec<i32> = row
                    .replicas
                    .iter()
                    .copied()
                    .filter(|&r| r != row.leader)
                    .collect();
                (!followers.is_empty()).then(|| *rng.pick(&followers))
            }
        }
    }
}

/// The partitions of the topic as the first broker that answers says.
fn describe(cluster: &TestCluster) -> Option<Vec<PartitionRow>> {
    cluster
        .nodes
        .iter()
        .filter(|n| cluster.is_running(n.id))
        .find_map(|n| cluster.partitions_at(n.id, TOPIC))
        .filter(|rows| !rows.is_empty())
}

fn await_in_sync(cluster: &TestCluster, injected: &mut Injected) -> Result<(), String> {
    let deadline = Instant::now() + RECOVERY;
    loop {
        let rows = describe(cluster);
        if let Some(rows) = &rows
            && rows
                .iter()
                .all(|r| r.leader > 0 && r.isr.len() == r.replicas.len())
        {
            return Ok(());
        }
        if Instant::now() >= deadline {
            return Err(format!("{rows:?}"));
        }
        settle(cluster, injected, Duration::from_millis(250));
    }
}

/// Waits `for_`, sampling every broker's memory twice a second.
fn settle(cluster: &TestCluster, injected: &mut Injected, for_: Duration) {
    let end = Instant::now() + for_;
    loop {
        for n in &cluster.nodes {
            if let Some(rss) = cluster.pid(n.id).and_then(resident_bytes) {
                injected.memory.entry(n.id).or_default().push(rss);
            }
        }
        let now = Instant::now();
        if now >= end {
            return;
        }
        std::thread::sleep((end - now).min(Duration::from_millis(500)));
    }
}

/// A process's resident set size, from `/proc`.
fn resident_bytes(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib * 1024)
}
