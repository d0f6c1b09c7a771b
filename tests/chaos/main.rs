//! Seeded fault runs. A three-broker cluster carries idempotent `acks=all`
//! producers on several partitions and a consumer group whose members come
//! and go, while one seed chooses faults: the leader of a partition, a
//! follower or the controller leader killed with `kill -9` and restarted, a
//! broker paused past its session timeout, a broker cut off from the
//! others both ways, one broker's calls to another black-holed, a broker's
//! links slowed by up to half a second, clients cut off from a broker or
//! its answers to them lost (through the client links every broker
//! advertises), a standalone `eddy worker` killed. While the first faults
//! happen two processors are uploaded and an exactly-once, an
//! at-least-once and a stateful exactly-once (running count) pipeline are
//! applied to a third input. Seed 1 adds a Kafka client: an idempotent
//! librdkafka producer writing through the Kafka listeners. Afterwards every
//! checker in `eddy_tests::check` runs over what was seen, and a report
//! prints the operations, the faults by kind and each verdict.
//!
//! `cargo test -p eddy-tests --test chaos` runs the fixed seeds below;
//! `cargo test -p eddy-tests --release --test chaos -- --seed S --minutes M`
//! replays one seed, or soaks for longer; `--secured` runs it against a
//! cluster with TLS and `--auth required` (as seed 2 always runs).
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod faults;
mod kafka;
mod pipelines;
mod verify;
mod workload;

use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use eddy_tests::check::Verdict;
use eddy_tests::cluster::TestCluster;
use eddy_tests::rng::Rng;
use eddy_tests::secured::{self, SecureCluster};
use eddy_tests::worker::TestWorker;

/// The seeds `cargo test` runs, each for its time of faults. A seed that
/// once found a bug stays here, with the time it took, as its regression
/// case:
/// - 20261201: in a 30-minute soak, two members owned partition 2 in one
///   generation; a coordinator had answered a join before writing the
///   generation, and its successor handed the number out again
///   (`group::generation_tests::a_member_learns_a_generation_only_once_it_is_written`
///   pins the fix down without the 30 minutes).
/// - 5, in 90 s: a broker's answers to its clients were lost and the link
///   then passed bytes again; a producer waited for ever on the stream
///   whose answer never came (`idempotence::a_request_left_unanswered_is_resent_on_a_new_stream_and_written_once`).
/// - 9004, in a minute: a producer's flush outlived its delivery timeout.
///   Its replays passed; the calls that could hold a flush that long (a
///   broker taking a call and never answering it) are bounded now
///   (`client::a_broker_that_never_answers_holds_no_send_or_flush_past_the_delivery_timeout`).
/// - 9328, in a minute: a cut-off controller's fencing, forwarded to its
///   successor when the cut healed, took every partition offline and back
///   (`cluster::links::a_controller_cut_off_and_back_fences_no_broker_its_successor_hears_from`);
///   a join then loaded a group while the ticker forgot it, and the group
///   began again at generation 1
///   (`group::generation_tests::groups_loaded_for_a_new_epoch_survive_a_racing_release`).
/// - 9422, in a minute: an input batch landed with its answer lost, and
///   the producer's new identity after another partition's refusal wrote
///   it a second time
///   (`renewal::a_new_identity_does_not_write_again_a_batch_that_landed_unanswered`).
const FIXED_SEEDS: &[(u64, Duration)] = &[
    (1, Duration::from_secs(40)),
    (2, Duration::from_secs(40)),
    (20261201, Duration::from_secs(40)),
    (5, Duration::from_secs(90)),
    (9004, Duration::from_secs(60)),
    (9328, Duration::from_secs(60)),
    (9422, Duration::from_secs(60)),
];

/// Seeds run against a secured cluster: TLS on every connection, `--auth
/// required` with a cluster secret between brokers, and every client (the
/// workload, the standalone worker, the commands) signed in as a user.
/// `--secured` runs the seeds given that way too.
const SECURED_SEEDS: &[u64] = &[2];

/// Seeds with a Kafka client in the workload: an idempotent librdkafka
/// producer writing through the brokers' Kafka listeners (see `kafka.rs`).
/// Not with `--secured`, where it would need a SASL user.
const KAFKA_SEEDS: &[u64] = &[1];

/// How long the workload may take to flush and close after the faults.
const DRAIN: Duration = Duration::from_secs(180);

/// The topic the producers write and the group reads.
pub const TOPIC: &str = "chaos";
pub const PARTITIONS: u32 = 3;
/// Brokers count a peer dead after this long (`--broker-session-timeout-ms`).
pub const SESSION: Duration = Duration::from_secs(2);

struct Args {
    /// (seed, time of faults).
    runs: Vec<(u64, Duration)>,
    /// Every seed against a secured cluster (`--secured`).
    secured: bool,
}

fn args() -> Result<Args, String> {
    let mut seeds = Vec::new();
    let mut run = None;
    let mut secured = false;
    let mut it = std::env::args().skip(1);
    while let Some(arg) = it.next() {
        let mut value = |name: &str| it.next().ok_or(format!("{name} needs a value"));
        match arg.as_str() {
            "--seed" => seeds.push(
                value("--seed")?
                    .parse()
                    .map_err(|e| format!("--seed: {e}"))?,
            ),
            "--secured" => secured = true,
            "--minutes" => {
                let m: f64 = value("--minutes")?
                    .parse()
                    .map_err(|e| format!("--minutes: {e}"))?;
                if !(m > 0.0 && m < 24.0 * 60.0) {
                    return Err(format!("--minutes: {m} is not between 0 and a day"));
                }
                run = Some(Duration::from_secs_f64(m * 60.0));
            }
            // What cargo test passes to every test binary (filters,
            // libtest flags) is not for this one.
            other => eprintln!("chaos: ignoring {other:?}"),
        }
    }
    let runs = if seeds.is_empty() {
        FIXED_SEEDS
            .iter()
            .map(|&(seed, fixed)| (seed, run.unwrap_or(fixed)))
            .collect()
    } else {
        // A replay defaults to the shortest fixed run.
        let run = run.unwrap_or(Duration::from_secs(40));
        seeds.into_iter().map(|seed| (seed, run)).collect()
    };
    Ok(Args { runs, secured })
}

fn main() -> ExitCode {
    let args = match args() {
        Ok(a) => a,
        Err(e) => {
            eprintln!("chaos: {e}\nusage: chaos [--seed S]... [--minutes M] [--secured]");
            return ExitCode::FAILURE;
        }
    };
    let mut failed = Vec::new();
    for &(seed, length) in &args.runs {
        let secured = args.secured || SECURED_SEEDS.contains(&seed);
        let how = if secured { ", secured" } else { "" };
        println!("chaos: seed {seed}, {length:?} of faults{how}");
        let report = run(seed, length, secured);
        println!("{report}");
        if !report.passed() {
            failed.push((seed, length));
        }
    }
    if failed.is_empty() {
        ExitCode::SUCCESS
    } else {
        let seeds: Vec<u64> = failed.iter().map(|&(seed, _)| seed).collect();
        let (seed, length) = failed[0];
        eprintln!(
            "chaos: seeds {seeds:?} failed; replay one with\n  cargo test -p eddy-tests --test chaos -- --seed {seed} --minutes {:.1}",
            length.as_secs_f64() / 60.0
        );
        ExitCode::FAILURE
    }
}

/// After the faults, the cluster still refuses plain text and callers
/// without credentials, and serves the signed-in admin.
fn still_secured(cluster: &TestCluster, secure: &SecureCluster) -> Verdict {
    let mut v = Verdict::new("secured: TLS and authentication still required");
    let bootstrap = cluster.bootstrap();
    let ca = secure.ca.cert.to_str().unwrap();
    let bare = || {
        let mut cmd = std::process::Command::new(eddy_tests::process::eddy_binary());
        cmd.args(["topic", "list", "--bootstrap", &bootstrap]);
        cmd
    };
    let cases = [
        (
            "plain text",
            eddy_tests::process::run(&mut bare(), b""),
            "takes only TLS",
        ),
        (
            "no credentials",
            eddy_tests::process::run(bare().env("EDDY_TLS_CA", ca), b""),
            "requires authentication",
        ),
        (
            "signed in",
            eddy_tests::process::run(
                eddy_tests::process::eddy_command().args([
                    "topic",
                    "list",
                    "--bootstrap",
                    &bootstrap,
                ]),
                b"",
            ),
            "",
        ),
    ];
    for (what, out, expected) in cases {
        v.checked += 1;
        let as_expected = if expected.is_empty() {
            out.success
        } else {
            !out.success && out.stderr.contains(expected)
        };
        if !as_expected {
            v.fail(|| format!("{what}: {}", out.stderr.trim()));
        }
    }
    v
}

/// One seeded run from a fresh cluster to its verdicts.
fn run(seed: u64, length: Duration, secured: bool) -> Report {
    let started = Instant::now();
    let mut rng = Rng::new(seed);
    let session_ms = SESSION.as_millis().to_string();
    secured::set_access(None);
    let secure = secured.then(SecureCluster::new);
    let mut serve_args = vec!["--broker-session-timeout-ms".to_string(), session_ms];
    if let Some(s) = &secure {
        serve_args.extend(s.serve_args());
    }
    let serve_args: Vec<&str> = serve_args.iter().map(String::as_str).collect();
    let with_kafka = KAFKA_SEEDS.contains(&seed) && !secured;
    let mut cluster = if with_kafka {
        TestCluster::start_linked_with_kafka(3, &serve_args)
    } else {
        TestCluster::start_linked(3, &serve_args)
    };
    if let Some(s) = &secure {
        s.sign_in_as_admin(&cluster);
    }
    cluster.create_replicated(TOPIC, PARTITIONS);
    cluster.create_replicated(pipelines::INPUT, 3);
    let kafka_producer = with_kafka.then(|| kafka::start(&cluster, length));
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let stop = Arc::new(AtomicBool::new(false));
    let progress = workload::Progress::default();
    let work = rt.spawn(workload::run(
        cluster.bootstrap(),
        rng.below(u64::MAX),
        stop.clone(),
        progress.clone(),
    ));
    // A standalone worker shares the pipelines with the brokers' own.
    let mut worker = TestWorker::start(&cluster.bootstrap(), "chaos-worker");
    let faults = faults::inject(&mut cluster, &mut worker, &mut rng, Instant::now() + length);
    stop.store(true, Ordering::Relaxed);
    // Stopped, the workload flushes and closes: a client that hangs here
    // fails the run instead of holding it up without end.
    let observed = match rt.block_on(async { tokio::time::timeout(DRAIN, work).await }) {
        Ok(done) => done.unwrap(),
        Err(_) => {
            panic!(
                "seed {seed}: the workload did not finish within {DRAIN:?} of the last fault: a client hung ({})",
                progress.unfinished().join("; ")
            )
        }
    };
    let mut verdicts = verify::check(&cluster, &rt, &observed, &faults);
    if let Some(producer) = kafka_producer {
        verdicts.extend(kafka::check(producer, &cluster, &rt));
    }
    if let Some(s) = &secure {
        verdicts.push(still_secured(&cluster, s));
    }
    secured::set_access(None);
    if !verdicts.iter().all(Verdict::passed) {
        cluster.keep_if_asked();
    }
    Report {
        seed,
        took: started.elapsed(),
        observed,
        faults,
        verdicts,
    }
}

struct Report {
    seed: u64,
    took: Duration,
    observed: workload::Observed,
    faults: faults::Injected,
    verdicts: Vec<Verdict>,
}

impl Report {
    fn passed(&self) -> bool {
        self.verdicts.iter().all(Verdict::passed)
    }
}

impl std::fmt::Display for Report {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let o = &self.observed;
        writeln!(
            f,
            "seed {} ({:.0} s): {}",
            self.seed,
            self.took.as_secs_f64(),
            if self.passed() { "passed" } else { "FAILED" }
        )?;
        writeln!(
            f,
            "  operations: {} records sent, {} acknowledged, {} refused or timed out; \
             {} polls ({} records), {} commits ({} refused), {} members joined",
            o.sent,
            o.acked.len(),
            o.refused,
            o.polls,
            o.consumed,
            o.commits,
            o.commits_refused,
            o.members
        )?;
        let deploy = match &self.faults.deploy {
            Ok(failed) => format!("done, {failed} failed attempts"),
            Err(e) => format!("FAILED: {e}"),
        };
        writeln!(
            f,
            "  pipelines: {} input records ({} refused); 2 processor uploads and 3 applies during faults: {deploy}",
            o.fed, o.fed_refused
        )?;
        writeln!(f, "  faults: {}", self.faults)?;
        for v in &self.verdicts {
            writeln!(f, "  {v}")?;
        }
        if !self.passed() {
            writeln!(f, "  faults, in seconds since injection began:")?;
            for line in &self.faults.timeline {
                writeln!(f, "    {line}")?;
            }
        }
        Ok(())
    }
}
