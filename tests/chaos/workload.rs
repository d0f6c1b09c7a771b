//! What runs against the cluster while faults happen: idempotent `acks=all`
//! producers writing numbered values across the partitions, and a consumer
//! group whose members come and go, commit what they read, and say which
//! partitions they own in which generation.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use eddy_client::{
    Acks, Admin, Client, Consumer, ConsumerConfig, DeliveryTicket, GroupConfig, Producer,
    ProducerConfig, ProducerRecord,
};
use eddy_tests::check::{Acked, Claim, Committed};
use eddy_tests::rng::Rng;
use tokio::task::JoinHandle;

use crate::{PARTITIONS, TOPIC};

/// The group the members join.
pub const GROUP: &str = "chaos-readers";
/// Producers running at once; each writes `p<id>-<n>` for n = 0, 1, 2…
const PRODUCERS: u64 = 2;
/// Records each producer sends per second, about.
const RATE: u64 = 1_000;
/// Members of the group at any time.
const MEMBERS: usize = 2;

/// What the workload saw.
#[derive(Debug, Default)]
pub struct Observed {
    pub sent: u64,
    pub acked: Vec<Acked>,
    /// Records written to the pipelines' input, and those refused.
    pub fed: u64,
    pub fed_refused: u64,
    pub refused: u64,
    pub polls: u64,
    pub consumed: u64,
    pub commits: u64,
    pub commits_refused: u64,
    pub members: u64,
    /// Each member's view after each poll: its generation and partitions.
    pub claims: Vec<Claim>,
    /// The group's committed offsets as the coordinator reported them,
    /// in the order they were sampled.
    pub committed: Vec<Committed>,
}

/// What each part of the workload is doing, by name: when the workload
/// does not finish, the report says which part is stuck where.
#[derive(Debug, Clone, Default)]
pub struct Progress(Arc<Mutex<BTreeMap<String, String>>>);

impl Progress {
    fn set(&self, part: &str, step: impl Into<String>) {
        if let Ok(mut parts) = self.0.lock() {
            parts.insert(part.to_string(), step.into());
        }
    }

    /// The parts not done, with their step.
    pub fn unfinished(&self) -> Vec<String> {
        let Ok(parts) = self.0.lock() else {
            return vec!["(progress unreadable)".into()];
        };
        parts
            .iter()
            .filter(|(_, step)| *step != "done")
            .map(|(part, step)| format!("{part}: {step}"))
            .collect()
    }
}

/// Runs until `stop`, then flushes the producers and closes the members.
pub async fn run(
    bootstrap: String,
    seed: u64,
    stop: Arc<AtomicBool>,
    progress: Progress,
) -> Observed {
    let client = Client::connect(eddy_tests::secured::client_config(bootstrap.clone()))
        .await
        .expect("the cluster answers");
    let producers: Vec<JoinHandle<(u64, Vec<Acked>, u64)>> = (1..=PRODUCERS)
        .map(|id| {
            let progress = progress.clone();
            tokio::spawn(produce(client.clone(), id, stop.clone(), progress))
        })
        .collect();
    let feeder = tokio::spawn(feed(client.clone(), stop.clone(), progress.clone()));
    let sampler = tokio::spawn(sample_commits(
        client.clone(),
        stop.clone(),
        progress.clone(),
    ));
    let group = tokio::spawn(churn(client, Rng::new(seed), stop, progress));
    let mut observed = Observed::default();
    for p in producers {
        let (sent, acked, refused) = p.await.unwrap();
        observed.sent += sent;
        observed.acked.extend(acked);
        observed.refused += refused;
    }
    (observed.fed, observed.fed_refused) = feeder.await.unwrap();
    observed.committed = sampler.await.unwrap();
    for m in group.await.unwrap() {
        observed.polls += m.polls;
        observed.consumed += m.consumed;
        observed.commits += m.commits;
        observed.commits_refused += m.commits_refused;
        observed.members += 1;
        observed.claims.extend(m.claims);
    }
    observed
}

/// How often a producer's flush that has not finished reports its state.
const FLUSH_REPORT: Duration = Duration::from_secs(30);

/// One producer: numbered values, round-robin over the partitions, paced.
async fn produce(
    client: Client,
    id: u64,
    stop: Arc<AtomicBool>,
    progress: Progress,
) -> (u64, Vec<Acked>, u64) {
    let part = format!("producer {id}");
    progress.set(&part, "sending");
    let producer = Producer::new(
        client,
        ProducerConfig {
            acks: Acks::All,
            linger_ms: 2,
            retry_backoff_ms: 20,
            retry_backoff_ms_max: 500,
            delivery_timeout_ms: 120_000,
            ..ProducerConfig::default()
        },
    );
    let mut tickets: Vec<(Acked, DeliveryTicket)> = Vec::new();
    let mut refused = 0;
    let mut n = 0u64;
    while !stop.load(Ordering::Relaxed) {
        let partition = (n % u64::from(PARTITIONS)) as u32;
        let value = format!("p{id}-{n}");
        n += 1;
        match producer
            .send(
                TOPIC,
                ProducerRecord::value(value.clone()).partition(partition),
            )
            .await
        {
            Ok(ticket) => tickets.push((
                Acked {
                    partition,
                    value: value.into_bytes(),
                },
                ticket,
            )),
            Err(_) => refused += 1,
        }
        if n.is_multiple_of(RATE / 100) {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }
    // Errors here belong to single batches; each ticket says which.
    progress.set(&part, "flushing");
    // A flush that takes long says what the producer is waiting for, so
    // that a workload that does not drain names the cause.
    while tokio::time::timeout(FLUSH_REPORT, producer.flush())
        .await
        .is_err()
    {
        progress.set(&part, format!("flushing ({})", producer.diagnosis()));
    }
    progress.set(&part, "waiting for its tickets");
    let mut acked = Vec::new();
    for (record, ticket) in tickets {
        match ticket.wait().await {
            Ok(_) => acked.push(record),
            Err(_) => refused += 1,
        }
    }
    progress.set(&part, "closing");
    let _ = producer.close().await;
    progress.set(&part, "done");
    (n, acked, refused)
}

/// Keyed JSON records for the pipelines, a few hundred a second; returns
/// (sent, refused). What the pipelines must do is judged against the input
/// as stored, so a refused record that was written anyway is no error.
async fn feed(client: Client, stop: Arc<AtomicBool>, progress: Progress) -> (u64, u64) {
    progress.set("feeder", "sending");
    let producer = Producer::new(
        client,
        ProducerConfig {
            acks: Acks::All,
            linger_ms: 5,
            delivery_timeout_ms: 120_000,
            ..ProducerConfig::default()
        },
    );
    let mut tickets = Vec::new();
    let mut refused = 0;
    let mut n = 0;
    while !stop.load(Ordering::Relaxed) {
        let (key, value) = crate::pipelines::input(n);
        n += 1;
        match producer
            .send(
                crate::pipelines::INPUT,
                ProducerRecord::key_value(key, value),
            )
            .await
        {
            Ok(t) => tickets.push(t),
            Err(_) => refused += 1,
        }
        if n.is_multiple_of(10) {
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
    }
    progress.set("feeder", "flushing");
    let _ = producer.flush().await;
    progress.set("feeder", "waiting for its tickets");
    for t in tickets {
        if t.wait().await.is_err() {
            refused += 1;
        }
    }
    progress.set("feeder", "closing");
    let _ = producer.close().await;
    progress.set("feeder", "done");
    (n, refused)
}

/// Every few hundred milliseconds, the group's committed offsets as its
/// coordinator reports them.
async fn sample_commits(
    client: Client,
    stop: Arc<AtomicBool>,
    progress: Progress,
) -> Vec<Committed> {
    let admin = Admin::new(client);
    let mut samples = Vec::new();
    while !stop.load(Ordering::Relaxed) {
        progress.set("commit sampler", "describing the group");
        if let Ok(group) = admin.describe_group(GROUP).await {
            for p in group.partitions.iter().filter(|p| p.topic == TOPIC) {
                if let Some(offset) = p.committed {
                    samples.push(Committed {
                        group: GROUP.into(),
                        partition: p.partition,
                        offset,
                    });
                }
            }
        }
        progress.set("commit sampler", "sleeping");
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    progress.set("commit sampler", "done");
    samples
}

/// What one member did.
#[derive(Debug, Default)]
struct Member {
    polls: u64,
    consumed: u64,
    commits: u64,
    commits_refused: u64,
    claims: Vec<Claim>,
}

/// Keeps [`MEMBERS`] members in the group, replacing the oldest every few
/// seconds.
async fn churn(
    client: Client,
    mut rng: Rng,
    stop: Arc<AtomicBool>,
    progress: Progress,
) -> Vec<Member> {
    let mut running: Vec<(Arc<AtomicBool>, JoinHandle<Member>)> = Vec::new();
    let mut finished = Vec::new();
    let mut next = 0;
    while !stop.load(Ordering::Relaxed) {
        while running.len() < MEMBERS {
            let leave = Arc::new(AtomicBool::new(false));
            let label = format!("member-{next}");
            next += 1;
            running.push((
                leave.clone(),
                tokio::spawn(member(client.clone(), label, leave, progress.clone())),
            ));
        }
        let wait = rng.millis(3_000, 8_000);
        let deadline = tokio::time::Instant::now() + wait;
        while tokio::time::Instant::now() < deadline && !stop.load(Ordering::Relaxed) {
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let (leave, task) = running.remove(0);
        leave.store(true, Ordering::Relaxed);
        finished.push(task.await.unwrap());
    }
    for (leave, task) in running {
        leave.store(true, Ordering::Relaxed);
        finished.push(task.await.unwrap());
    }
    finished
}

/// One member: polls, commits every half second, records what it owns.
async fn member(
    client: Client,
    label: String,
    leave: Arc<AtomicBool>,
    progress: Progress,
) -> Member {
    let mut m = Member::default();
    progress.set(&label, "subscribing");
    let mut consumer = Consumer::new(client, ConsumerConfig::default());
    let mut group = GroupConfig::new(GROUP);
    group.client_id = label.clone();
    group.session_timeout_ms = 6_000;
    group.rebalance_timeout_ms = 10_000;
    group.auto_commit = false;
    if consumer.subscribe(group, &[TOPIC]).await.is_err() {
        progress.set(&label, "done");
        return m;
    }
    let mut last_commit = tokio::time::Instant::now();
    while !leave.load(Ordering::Relaxed) {
        m.polls += 1;
        progress.set(&label, "polling");
        match consumer.poll(Duration::from_millis(200)).await {
            Ok(fetched) => {
                for f in &fetched {
                    m.consumed += f.records().map(|r| r.len() as u64).unwrap_or(0);
                }
            }
            Err(_) => {
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        }
        if let Some(generation) = consumer.generation() {
            for (topic, partition) in consumer.assignment() {
                if &*topic == TOPIC {
                    m.claims.push(Claim {
                        generation,
                        member: label.clone(),
                        partition,
                    });
                }
            }
        }
        if last_commit.elapsed() >= Duration::from_millis(500) {
            last_commit = tokio::time::Instant::now();
            progress.set(&label, "committing");
            match consumer.commit_sync().await {
                Ok(()) => m.commits += 1,
                Err(_) => m.commits_refused += 1,
            }
        }
    }
    progress.set(&label, "closing");
    let _ = consumer.close().await;
    progress.set(&label, "done");
    m
}
