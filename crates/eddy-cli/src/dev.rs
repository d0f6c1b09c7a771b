//! `eddy dev`: one local broker with development defaults, or with
//! `--nodes N` a local cluster of N brokers, each an `eddy serve` child
//! process with its own port, data directory and log file. The cluster
//! keeps running when a broker dies (that is what it is for: kill one and
//! watch the others take over); Ctrl-C or SIGTERM stops them all.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Write};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::Duration;

use anyhow::{Context, bail};
use clap::Args;
use tokio::sync::mpsc;

use crate::DEFAULT_ADDRESS;
use crate::serve::{KafkaArgs, Signals, Tuning};

/// How long a broker of the cluster may take to say it is listening (it
/// waits for a majority of the voters).
const START_TIMEOUT: Duration = Duration::from_secs(60);
/// How long the brokers get to stop cleanly before they are killed.
const STOP_TIMEOUT: Duration = Duration::from_secs(30);
/// Largest local cluster.
const NODES_MAX: u16 = 9;

#[derive(Debug, Args)]
pub struct DevArgs {
    /// Directory for data (with --nodes, a directory and a log file per
    /// broker inside it).
    #[arg(long, default_value = ".eddy")]
    data_dir: PathBuf,
    /// Address to listen on (with --nodes, the first broker's; the others
    /// take the next ports).
    #[arg(long, default_value = DEFAULT_ADDRESS)]
    listen: SocketAddr,
    /// Brokers to run. More than one starts a local cluster of `eddy
    /// serve` processes whose topics get min(3, nodes) replicas unless
    /// --default-replication-factor says otherwise.
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u16).range(1..=NODES_MAX as i64))]
    nodes: u16,
    /// Where Kafka clients connect (with --nodes, the first broker's; the
    /// others take the next ports). Default: port 9092 on the --listen
    /// host, or a free port when --listen asks for one (port 0). Topics a
    /// Kafka client names are created on first use.
    #[arg(long, value_name = "HOST:PORT")]
    kafka_listen: Option<SocketAddr>,
    /// Open no Kafka listener.
    #[arg(long, conflicts_with = "kafka_listen")]
    no_kafka: bool,
    #[command(flatten)]
    tuning: Tuning,
}

/// Kafka's usual port, where `eddy dev` listens for Kafka clients.
const KAFKA_PORT: u16 = 9092;

pub async fn dev(args: DevArgs) -> anyhow::Result<()> {
    if args.nodes == 1 {
        let kafka = KafkaArgs {
            kafka_listen: kafka_listen(&args),
            kafka_advertise: None,
            auto_create_topics: true,
        };
        return crate::serve::dev_node(args.data_dir, args.listen, &kafka, &args.tuning).await;
    }
    Cluster::start(&args).await?.run().await
}

/// The (first) Kafka listen address, `None` with --no-kafka.
fn kafka_listen(args: &DevArgs) -> Option<SocketAddr> {
    if args.no_kafka {
        return None;
    }
    let port = if args.listen.port() == 0 {
        0
    } else {
        KAFKA_PORT
    };
    Some(
        args.kafka_listen
            .unwrap_or(SocketAddr::new(args.listen.ip(), port)),
    )
}

/// `first`'s port plus `i`.
fn nth_port(first: SocketAddr, i: u16, flag: &str) -> anyhow::Result<SocketAddr> {
    let port = first.port().checked_add(i).with_context(|| {
        format!(
            "port {} + {i} is past 65535; give a lower {flag} port",
            first.port()
        )
    })?;
    Ok(SocketAddr::new(first.ip(), port))
}

/// One broker of the local cluster.
#[derive(Debug)]
struct Broker {
    id: u16,
    address: SocketAddr,
    /// Where Kafka clients reach it, if anywhere.
    kafka: Option<SocketAddr>,
    dir: PathBuf,
    log: PathBuf,
    /// `None` once it has exited.
    pid: Option<u32>,
    /// The command that starts it again.
    command: String,
}

#[derive(Debug)]
struct Cluster {
    brokers: BTreeMap<u16, Broker>,
    /// Each broker's exit, as it happens.
    exits: mpsc::UnboundedReceiver<(u16, std::io::Result<ExitStatus>)>,
    /// Caught before the first broker started; taken by `run`.
    signals: Option<Signals>,
}

impl Cluster {
    async fn start(args: &DevArgs) -> anyhow::Result<Cluster> {
        let n = args.nodes;
        if args.listen.port() == 0 {
            bail!(
                "--nodes needs fixed ports: give --listen HOST:PORT (the brokers take that port and the next {})",
                n - 1
            );
        }
        let addresses: Vec<SocketAddr> = (0..n)
            .map(|i| nth_port(args.listen, i, "--listen"))
            .collect::<anyhow::Result<_>>()?;
        let kafka_first = kafka_listen(args);
        if kafka_first.is_some_and(|k| k.port() == 0) {
            bail!(
                "--nodes needs fixed ports: give --kafka-listen HOST:PORT (the brokers take that port and the next {}), or --no-kafka",
                n - 1
            );
        }
        let peers = addresses
            .iter()
            .zip(1..)
            .map(|(a, id)| format!("{id}={a}"))
            .collect::<Vec<_>>()
            .join(",");
        std::fs::create_dir_all(&args.data_dir)
            .with_context(|| format!("creating {}", args.data_dir.display()))?;
        let mut tuning = args.tuning.to_args();
        if !args.tuning.sets_replication_factor() {
            tuning.push("--default-replication-factor".into());
            tuning.push(n.min(3).to_string());
        }
        let exe = std::env::current_exe().context("finding the eddy executable")?;
        // Caught before any broker starts, so none is left behind.
        let signals = Signals::catch()?;
        let (exited, exits) = mpsc::unbounded_channel();
        let mut brokers = BTreeMap::new();
        let mut listening = Vec::new();
        for (id, address) in (1..=n).zip(addresses) {
            let dir = args.data_dir.join(format!("node-{id}"));
            let log = args.data_dir.join(format!("node-{id}.log"));
            let mut serve = vec![
                "serve".to_string(),
                "--node-id".into(),
                id.to_string(),
                "--peers".into(),
                peers.clone(),
                "--listen".into(),
                address.to_string(),
                "--data-dir".into(),
                dir.display().to_string(),
            ];
            let kafka = match kafka_first {
                Some(first) => {
                    let kafka = nth_port(first, id - 1, "--kafka-listen")?;
                    serve.extend([
                        "--kafka-listen".into(),
                        kafka.to_string(),
                        "--auto-create-topics".into(),
                    ]);
                    Some(kafka)
                }
                None => None,
            };
            serve.extend(tuning.iter().cloned());
            let (child, ready) = spawn(&exe, &serve, &log)?;
            let pid = Some(child.id());
            watch(id, child, exited.clone());
            listening.push((id, ready));
            brokers.insert(
                id,
                Broker {
                    id,
                    address,
                    kafka,
                    dir,
                    log,
                    pid,
                    command: format!("eddy {}", serve.join(" ")),
                },
            );
        }
        let mut cluster = Cluster {
            brokers,
            exits,
            signals: Some(signals),
        };
        for (id, ready) in listening {
            let started = tokio::time::timeout(START_TIMEOUT, ready).await;
            if !matches!(started, Ok(Ok(()))) {
                let log = cluster.brokers[&id].log.clone();
                cluster.stop().await;
                bail!(
                    "broker {id} did not start within {START_TIMEOUT:?}; see {}",
                    log.display()
                );
            }
        }
        Ok(cluster)
    }

    /// Prints the cluster, then waits for Ctrl-C (or SIGTERM) while
    /// reporting brokers that exit.
    async fn run(mut self) -> anyhow::Result<()> {
        self.print_started();
        let signals = match self.signals.take() {
            Some(s) => s,
            None => Signals::catch()?,
        };
        let stop = signals.wait();
        tokio::pin!(stop);
        loop {
            tokio::select! {
                _ = &mut stop => break,
                Some((id, status)) = self.exits.recv() => self.exited(id, status),
            }
            if self.brokers.values().all(|b| b.pid.is_none()) {
                println!("eddy dev: every broker has exited");
                return Ok(());
            }
        }
        println!("eddy dev: stopping the brokers");
        self.stop().await;
        Ok(())
    }

    fn exited(&mut self, id: u16, status: std::io::Result<ExitStatus>) {
        let Some(b) = self.brokers.get_mut(&id) else {
            return;
        };
        b.pid = None;
        let how = match status {
            Ok(s) => s.to_string(),
            Err(e) => format!("unknown status ({e})"),
        };
        let mut out = std::io::stdout().lock();
        let _ = writeln!(
            out,
            "eddy dev: broker {id} exited ({how}); the others go on. Its log: {}",
            b.log.display()
        );
        let _ = writeln!(
            out,
            "  start it again (in another terminal) with: {}",
            b.command
        );
    }

    fn print_started(&self) {
        let bootstrap = self
            .brokers
            .values()
            .map(|b| b.address.to_string())
            .collect::<Vec<_>>()
            .join(",");
        let mut out = std::io::stdout().lock();
        let _ = writeln!(out, "eddy dev: a cluster of {} brokers", self.brokers.len());
        for b in self.brokers.values() {
            let pid = b.pid.map_or("-".to_string(), |p| p.to_string());
            let kafka = b.kafka.map_or(String::new(), |k| format!("  kafka {k}"));
            let _ = writeln!(
                out,
                "  node {}  {}  pid {pid}  data {}  log {}{kafka}",
                b.id,
                b.address,
                b.dir.display(),
                b.log.display()
            );
        }
        let _ = writeln!(out, "eddy listening on {bootstrap}");
        let kafka: Vec<String> = self
            .brokers
            .values()
            .filter_map(|b| b.kafka.map(|k| k.to_string()))
            .collect();
        if !kafka.is_empty() {
            let _ = writeln!(out, "kafka listening on {}", kafka.join(","));
        }
        let _ = writeln!(out, "try it (in another terminal):");
        let _ = writeln!(out, "  export EDDY_BOOTSTRAP={bootstrap}");
        let _ = writeln!(
            out,
            "  eddy topic create orders -p 3 --config min.insync.replicas=2"
        );
        let _ = writeln!(out, "  seq 1 1000 | eddy produce orders");
        let _ = writeln!(out, "  eddy topic describe orders");
        if let Some(first) = self.brokers.values().find_map(|b| b.pid) {
            let _ = writeln!(
                out,
                "  kill -9 {first}   # broker 1: its partitions get new leaders, nothing acknowledged is lost"
            );
        }
        let _ = writeln!(
            out,
            "  seq 1001 2000 | eddy produce orders && eddy consume orders --from-beginning -n 2000 | wc -l"
        );
        let _ = writeln!(out, "Ctrl-C stops them all.");
    }

    /// Asks every running broker to stop (SIGTERM), and kills those still
    /// running after [`STOP_TIMEOUT`].
    async fn stop(&mut self) {
        for b in self.brokers.values() {
            if let Some(pid) = b.pid {
                signal(pid, rustix::process::Signal::TERM);
            }
        }
        let deadline = tokio::time::Instant::now() + STOP_TIMEOUT;
        while self.brokers.values().any(|b| b.pid.is_some()) {
            match tokio::time::timeout_at(deadline, self.exits.recv()).await {
                Ok(Some((id, _))) => {
                    if let Some(b) = self.brokers.get_mut(&id) {
                        b.pid = None;
                    }
                }
                Ok(None) => break,
                Err(_) => {
                    for b in self.brokers.values().filter(|b| b.pid.is_some()) {
                        eprintln!("eddy dev: broker {} did not stop in time; killing it", b.id);
                        if let Some(pid) = b.pid {
                            signal(pid, rustix::process::Signal::KILL);
                        }
                    }
                    break;
                }
            }
        }
    }
}

/// Starts `eddy serve …` with its stderr (the log) appended to `log`;
/// `ready` fires when it says it is listening.
fn spawn(
    exe: &Path,
    args: &[String],
    log: &Path,
) -> anyhow::Result<(Child, tokio::sync::oneshot::Receiver<()>)> {
    let log_file = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(log)
        .with_context(|| format!("opening {}", log.display()))?;
    let mut child = Command::new(exe)
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(log_file)
        .spawn()
        .with_context(|| format!("starting {}", exe.display()))?;
    let stdout = child
        .stdout
        .take()
        .context("the broker's stdout is not piped")?;
    let (tx, ready) = tokio::sync::oneshot::channel();
    std::thread::spawn(move || {
        let mut tx = Some(tx);
        // Read to the end, so the broker never blocks writing.
        for line in BufReader::new(stdout).lines() {
            let Ok(line) = line else { return };
            if line.contains("listening on ")
                && let Some(tx) = tx.take()
            {
                let _ = tx.send(());
            }
        }
    });
    Ok((child, ready))
}

/// Reports when broker `id` exits (waiting on a thread of its own).
fn watch(
    id: u16,
    mut child: Child,
    exited: mpsc::UnboundedSender<(u16, std::io::Result<ExitStatus>)>,
) {
    std::thread::spawn(move || {
        let status = child.wait();
        let _ = exited.send((id, status));
    });
}

fn signal(pid: u32, signal: rustix::process::Signal) {
    let Some(pid) = i32::try_from(pid)
        .ok()
        .and_then(rustix::process::Pid::from_raw)
    else {
        return;
    };
    if let Err(e) = rustix::process::kill_process(pid, signal) {
        tracing::debug!(%e, pid = pid.as_raw_nonzero().get(), "signalling a broker failed");
    }
}
