//! `eddy serve`, and the single broker of `eddy dev`.
//!
//! Settings come from flags, then `EDDY_*` environment variables, then a
//! TOML file (`--config`), then defaults.

use std::collections::BTreeMap;
use std::io::Write;
use std::net::SocketAddr;
use std::path::PathBuf;

use anyhow::{Context, bail};
use clap::Args;
use eddy_broker::auth::{AuthConfig, Secret};
use eddy_broker::{BrokerConfig, TlsFiles, TopicConfig};
use eddy_meta::NodeId;
use eddy_pipeline::{Node, NodeConfig};
use serde::Deserialize;

use crate::{Connection, DEFAULT_ADDRESS};

#[derive(Debug, Args)]
pub struct ServeArgs {
    /// TOML file with settings (keys as the long flags with `_`, plus a
    /// `[topic_defaults]` table of topic configs such as "retention.ms").
    #[arg(long, env = "EDDY_CONFIG")]
    config: Option<PathBuf>,
    /// Directory for metadata and partition data.
    #[arg(long, env = "EDDY_DATA_DIR")]
    data_dir: Option<PathBuf>,
    /// Address to listen on (port 0 picks a free one).
    #[arg(long, env = "EDDY_LISTEN")]
    listen: Option<SocketAddr>,
    /// This broker's node id.
    #[arg(long, env = "EDDY_NODE_ID")]
    node_id: Option<i32>,
    /// Address clients should use to reach this broker, if not the listen
    /// address (with --peers: this broker's address there).
    #[arg(long, env = "EDDY_ADVERTISE")]
    advertise: Option<String>,
    /// Every broker of the cluster as ID=HOST:PORT, comma-separated, this
    /// one included, e.g. `1=10.0.0.1:9092,2=10.0.0.2:9092,3=10.0.0.3:9092`.
    /// These brokers are the metadata controller's voters; an odd number
    /// (3 or 5) survives the loss of a minority. Without it the broker is a
    /// cluster of one.
    #[arg(long, env = "EDDY_PEERS")]
    peers: Option<String>,
    /// This broker's TLS certificate chain (PEM). With --tls-key the
    /// listener takes only TLS, and links to other brokers use TLS,
    /// checked against the CA given with --tls-ca.
    #[arg(long, env = "EDDY_TLS_CERT", value_name = "FILE", requires = "tls_key")]
    tls_cert: Option<PathBuf>,
    /// The private key (PEM) of --tls-cert.
    #[arg(long, env = "EDDY_TLS_KEY", value_name = "FILE", requires = "tls_cert")]
    tls_key: Option<PathBuf>,
    /// Let clients present a certificate signed by this CA (PEM) (mutual
    /// TLS); a client presenting one from another CA is refused.
    #[arg(
        long,
        env = "EDDY_TLS_CLIENT_CA",
        value_name = "FILE",
        requires = "tls_cert"
    )]
    tls_client_ca: Option<PathBuf>,
    /// `required`: every call must carry a user's password, a token or the
    /// cluster secret, and is checked against the ACLs (needs
    /// --cluster-secret-file). `none` (the default): calls without
    /// credentials are served and nothing is denied.
    #[arg(long, env = "EDDY_AUTH", value_name = "MODE", value_parser = ["none", "required"])]
    auth: Option<String>,
    /// Principals allowed everything, comma-separated, e.g. `User:admin`.
    #[arg(
        long,
        env = "EDDY_SUPER_USERS",
        value_name = "PRINCIPALS",
        value_delimiter = ','
    )]
    super_users: Vec<String>,
    /// Start even though the listener is open beyond this machine without
    /// TLS and --auth required: anyone who reaches the port can then read,
    /// write and delete everything, and run code.
    #[arg(long, env = "EDDY_INSECURE")]
    insecure: bool,
    #[command(flatten)]
    kafka: KafkaArgs,
    #[command(flatten)]
    tuning: Tuning,
}

/// The Kafka listener's flags.
#[derive(Debug, Args, Clone, Default)]
pub struct KafkaArgs {
    /// Also speak Kafka's wire protocol, on this address (port 0 picks a
    /// free one): Kafka clients (librdkafka, kcat, Java, kafka-python)
    /// produce and consume without changes. Clients sign in with
    /// SASL/SCRAM-SHA-256 as Eddy users (PLAIN too on a loopback address).
    /// See "Kafka clients" in the README for what is served.
    #[arg(long, env = "EDDY_KAFKA_LISTEN", value_name = "HOST:PORT")]
    pub kafka_listen: Option<SocketAddr>,
    /// Address Kafka clients are told to use for this broker, if not the
    /// Kafka listen address.
    #[arg(
        long,
        env = "EDDY_KAFKA_ADVERTISE",
        value_name = "HOST:PORT",
        requires = "kafka_listen"
    )]
    pub kafka_advertise: Option<String>,
    /// Create a topic that a Kafka client's Metadata request names and
    /// that does not exist, with the default partitions and replication
    /// factor (Kafka's auto.create.topics.enable; off unless given).
    #[arg(long, env = "EDDY_AUTO_CREATE_TOPICS", requires = "kafka_listen")]
    pub auto_create_topics: bool,
}

/// Settings shared by `serve` and `dev`.
#[derive(Debug, Args)]
pub struct Tuning {
    /// Partitions of a topic created without a count.
    #[arg(long, env = "EDDY_DEFAULT_PARTITIONS")]
    default_partitions: Option<u32>,
    /// Replicas of a topic created without a replication factor (default 1;
    /// internal topics always use min(3, brokers)).
    #[arg(long, env = "EDDY_DEFAULT_REPLICATION_FACTOR")]
    default_replication_factor: Option<u32>,
    /// When appends reach the disk: `never` (the default; replication is the
    /// durability), `always` (every batch), or an interval in milliseconds.
    #[arg(long, env = "EDDY_FLUSH")]
    flush: Option<String>,
    /// Largest request the broker accepts, in bytes.
    #[arg(long, env = "EDDY_REQUEST_BYTES_MAX")]
    request_bytes_max: Option<usize>,
    /// How often retention and compaction run, in milliseconds.
    #[arg(long, env = "EDDY_RETENTION_CHECK_INTERVAL_MS")]
    retention_check_interval_ms: Option<u64>,
    /// A consumer group with no members is forgotten, committed offsets and
    /// all, this many minutes after it became empty (default 7 days).
    #[arg(long, env = "EDDY_OFFSETS_RETENTION_MINUTES")]
    offsets_retention_minutes: Option<u64>,
    /// Where compiled processors are kept, so that a restart does not
    /// compile them again (default: DATA_DIR/processor-cache). Brokers on
    /// one machine may share a directory.
    #[arg(long, env = "EDDY_COMPILE_CACHE_DIR", value_name = "DIR")]
    compile_cache_dir: Option<PathBuf>,
    /// Largest processor component an upload may be, in bytes (default 64 MiB).
    #[arg(long, env = "EDDY_PROCESSOR_BYTES_MAX")]
    processor_bytes_max: Option<usize>,
    /// In a cluster: a broker that has not heartbeated the controller for
    /// this long is fenced and its partitions get new leaders (default 6000).
    #[arg(long, env = "EDDY_BROKER_SESSION_TIMEOUT_MS")]
    broker_session_timeout_ms: Option<u64>,
    /// In a cluster: a follower that has not caught up with its leader for
    /// this long leaves the in-sync replicas (default 30000).
    #[arg(long, env = "EDDY_REPLICA_LAG_TIME_MAX_MS")]
    replica_lag_time_max_ms: Option<u64>,
    /// Do not run a pipeline worker in this broker (pipelines then run
    /// only on `eddy worker` processes).
    #[arg(long, env = "EDDY_NO_WORKER")]
    no_worker: bool,
    /// How long this broker's worker may be silent (the broker killed or
    /// cut off) before its pipeline partitions move to other workers
    /// (default 10000).
    #[arg(long, env = "EDDY_WORKER_SESSION_TIMEOUT_MS", value_parser = clap::value_parser!(u32).range(500..=300_000))]
    worker_session_timeout_ms: Option<u32>,
}

impl Tuning {
    /// These settings as `eddy serve` flags, for the brokers `eddy dev
    /// --nodes` starts.
    pub fn to_args(&self) -> Vec<String> {
        let mut args = Vec::new();
        let mut flag = |name: &str, value: Option<String>| {
            if let Some(v) = value {
                args.push(format!("--{name}"));
                args.push(v);
            }
        };
        flag(
            "default-partitions",
            self.default_partitions.map(|v| v.to_string()),
        );
        flag(
            "default-replication-factor",
            self.default_replication_factor.map(|v| v.to_string()),
        );
        flag("flush", self.flush.clone());
        flag(
            "request-bytes-max",
            self.request_bytes_max.map(|v| v.to_string()),
        );
        flag(
            "retention-check-interval-ms",
            self.retention_check_interval_ms.map(|v| v.to_string()),
        );
        flag(
            "offsets-retention-minutes",
            self.offsets_retention_minutes.map(|v| v.to_string()),
        );
        flag(
            "processor-bytes-max",
            self.processor_bytes_max.map(|v| v.to_string()),
        );
        flag(
            "compile-cache-dir",
            self.compile_cache_dir
                .as_ref()
                .map(|d| d.display().to_string()),
        );
        flag(
            "broker-session-timeout-ms",
            self.broker_session_timeout_ms.map(|v| v.to_string()),
        );
        flag(
            "replica-lag-time-max-ms",
            self.replica_lag_time_max_ms.map(|v| v.to_string()),
        );
        flag(
            "worker-session-timeout-ms",
            self.worker_session_timeout_ms.map(|v| v.to_string()),
        );
        if self.no_worker {
            args.push("--no-worker".to_string());
        }
        args
    }

    /// Whether a default replication factor was given.
    pub fn sets_replication_factor(&self) -> bool {
        self.default_replication_factor.is_some()
    }
}

/// The TOML file's shape.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileConfig {
    data_dir: Option<PathBuf>,
    listen: Option<SocketAddr>,
    node_id: Option<i32>,
    advertise: Option<String>,
    peers: Option<String>,
    tls_cert: Option<PathBuf>,
    tls_key: Option<PathBuf>,
    tls_ca: Option<PathBuf>,
    tls_client_ca: Option<PathBuf>,
    auth: Option<String>,
    super_users: Option<Vec<String>>,
    cluster_secret_file: Option<PathBuf>,
    default_partitions: Option<u32>,
    default_replication_factor: Option<u32>,
    flush: Option<String>,
    request_bytes_max: Option<usize>,
    retention_check_interval_ms: Option<u64>,
    offsets_retention_minutes: Option<u64>,
    broker_session_timeout_ms: Option<u64>,
    replica_lag_time_max_ms: Option<u64>,
    produce_in_flight_max: Option<usize>,
    fetch_bytes_max: Option<usize>,
    fetch_wait_ms_max: Option<u64>,
    subscriptions_max: Option<usize>,
    #[serde(default)]
    topic_defaults: BTreeMap<String, String>,
}

pub async fn serve(args: ServeArgs, conn: &Connection) -> anyhow::Result<()> {
    let file = match &args.config {
        Some(path) => {
            let text = std::fs::read_to_string(path)
                .with_context(|| format!("reading {}", path.display()))?;
            toml::from_str(&text)
                .with_context(|| format!("{} is not a valid Eddy config", path.display()))?
        }
        None => FileConfig::default(),
    };
    let Some(data_dir) = args.data_dir.clone().or(file.data_dir.clone()) else {
        bail!(
            "no data directory: pass --data-dir DIR (or set EDDY_DATA_DIR, or data_dir in --config)"
        );
    };
    let node_id = NodeId(args.node_id.or(file.node_id).unwrap_or(1));
    let peers = match args.peers.as_ref().or(file.peers.as_ref()) {
        Some(list) => parse_peers(list).context("--peers")?,
        None => BTreeMap::new(),
    };
    let own = if peers.is_empty() {
        None
    } else {
        let Some(own) = peers.get(&node_id) else {
            bail!(
                "--peers does not name this broker (node {node_id}): list every broker, this one included, or pass the right --node-id"
            );
        };
        Some(own.clone())
    };
    // Among peers, a broker listens where the others will call it unless
    // told otherwise.
    let listen = match (args.listen.or(file.listen), &own) {
        (Some(listen), _) => listen,
        (None, Some(own)) => own.parse().with_context(|| {
            format!("--peers gives {own} for this broker, which is not an IP:PORT to listen on: pass --listen")
        })?,
        (None, None) => DEFAULT_ADDRESS.parse()?,
    };
    let mut config = BrokerConfig::new(node_id, data_dir, listen);
    config.advertised_address = args.advertise.clone().or(file.advertise.clone()).or(own);
    config.peers = peers;
    config.tls = tls_files(&args, conn, &file)?;
    config.auth = auth_config(&args, conn, &file)?;
    refuse_open_network(&config, args.insecure)?;
    refuse_open_kafka(&config, &args.kafka, args.insecure)?;
    apply(&mut config, &args.tuning, &file)?;
    run(config, &args.tuning, &args.kafka, false).await
}

/// Authentication settings from flags, then the config file.
fn auth_config(
    args: &ServeArgs,
    conn: &Connection,
    file: &FileConfig,
) -> anyhow::Result<AuthConfig> {
    let required = match args.auth.as_deref().or(file.auth.as_deref()) {
        None | Some("none") => false,
        Some("required") => true,
        Some(other) => bail!("auth = {other:?}: give \"none\" or \"required\""),
    };
    let super_users: Vec<String> = if args.super_users.is_empty() {
        file.super_users.clone().unwrap_or_default()
    } else {
        args.super_users.clone()
    };
    for u in &super_users {
        if !u.starts_with("User:") || u.len() <= "User:".len() {
            bail!("super user {u:?} is not a principal: write User:NAME");
        }
    }
    let secret_file = conn
        .cluster_secret_file
        .clone()
        .or(file.cluster_secret_file.clone());
    let cluster_secret = match secret_file {
        Some(path) => {
            let secret = crate::connection::first_line(&path, "cluster secret")?;
            if secret.len() < 16 {
                bail!(
                    "the cluster secret in {} is too short: use at least 16 characters (e.g. `openssl rand -hex 32`)",
                    path.display()
                );
            }
            Some(Secret::new(secret))
        }
        None if required => bail!(
            "--auth required needs --cluster-secret-file FILE: a secret (at least 16 characters, e.g. from `openssl rand -hex 32`) that every broker of the cluster shares, so that brokers (and this broker's own pipeline worker) can prove who they are"
        ),
        None => None,
    };
    Ok(AuthConfig {
        required,
        super_users: super_users.into_iter().collect(),
        cluster_secret,
    })
}

/// A broker that anyone on the network could reach, unencrypted or
/// unauthenticated, starts only with --insecure.
fn refuse_open_network(config: &BrokerConfig, insecure: bool) -> anyhow::Result<()> {
    if insecure || config.listen.ip().is_loopback() {
        return Ok(());
    }
    let mut missing = Vec::new();
    if config.tls.is_none() {
        missing.push("TLS (--tls-cert, --tls-key, --tls-ca)");
    }
    if !config.auth.required {
        missing.push("authentication (--auth required)");
    }
    if missing.is_empty() {
        return Ok(());
    }
    bail!(
        "refusing to listen on {} without {}: anyone who reaches it could read, write and delete every topic and run code on this machine. Secure it (see \"A secured cluster\" in the README), listen on 127.0.0.1, or pass --insecure to accept the risk",
        config.listen,
        missing.join(" and ")
    )
}

/// The Kafka listener has no TLS or SASL yet: beyond this machine it
/// starts only when every request must be authorized (and, with no way
/// for a Kafka client to sign in, is then refused) or with --insecure.
fn refuse_open_kafka(
    config: &BrokerConfig,
    kafka: &KafkaArgs,
    insecure: bool,
) -> anyhow::Result<()> {
    let Some(listen) = kafka.kafka_listen else {
        return Ok(());
    };
    if insecure || listen.ip().is_loopback() || config.auth.required {
        return Ok(());
    }
    bail!(
        "refusing to open the Kafka listener on {listen} without authentication: anyone who reaches it could read, write and delete every topic. Listen on 127.0.0.1, give --auth required (Kafka clients then sign in with SASL/SCRAM-SHA-256 as Eddy users), or pass --insecure to accept the risk"
    )
}

/// The TLS set-up from flags, then the config file.
fn tls_files(
    args: &ServeArgs,
    conn: &Connection,
    file: &FileConfig,
) -> anyhow::Result<Option<TlsFiles>> {
    let pick = |flag: &Option<PathBuf>, key: &Option<PathBuf>| flag.clone().or(key.clone());
    let cert = pick(&args.tls_cert, &file.tls_cert);
    let key = pick(&args.tls_key, &file.tls_key);
    let ca = pick(&conn.tls_ca, &file.tls_ca);
    let client_ca = pick(&args.tls_client_ca, &file.tls_client_ca);
    match (cert, key) {
        (Some(cert), Some(key)) => {
            let Some(ca) = ca else {
                bail!(
                    "--tls-cert needs --tls-ca: the CA certificate that signed the brokers' certificates, which this broker checks the other brokers (and its own worker checks it) against"
                );
            };
            Ok(Some(TlsFiles {
                cert,
                key,
                ca,
                client_ca,
            }))
        }
        (None, None) if client_ca.is_some() => {
            bail!("--tls-client-ca needs --tls-cert and --tls-key")
        }
        (None, None) => Ok(None),
        _ => bail!("give --tls-cert and --tls-key together"),
    }
}

/// `eddy dev` with one broker, in this process.
pub async fn dev_node(
    data_dir: PathBuf,
    listen: SocketAddr,
    kafka: &KafkaArgs,
    tuning: &Tuning,
) -> anyhow::Result<()> {
    let mut config = BrokerConfig::new(NodeId(1), data_dir, listen);
    apply(&mut config, tuning, &FileConfig::default())?;
    run(config, tuning, kafka, true).await
}

/// Reads `1=host:port,2=host:port`.
fn parse_peers(list: &str) -> anyhow::Result<BTreeMap<NodeId, String>> {
    let mut peers = BTreeMap::new();
    for entry in list.split(',').map(str::trim).filter(|e| !e.is_empty()) {
        let Some((id, address)) = entry.split_once('=') else {
            bail!("{entry:?} is not ID=HOST:PORT");
        };
        let id: i32 = id
            .trim()
            .parse()
            .ok()
            .filter(|id| *id >= 0)
            .with_context(|| format!("{id:?} in {entry:?} is not a node id (0 or more)"))?;
        let address = address.trim();
        if address
            .rsplit_once(':')
            .is_none_or(|(host, port)| host.is_empty() || port.parse::<u16>().is_err())
        {
            bail!("{address:?} in {entry:?} is not HOST:PORT");
        }
        if peers.insert(NodeId(id), address.to_string()).is_some() {
            bail!("node {id} is listed twice");
        }
    }
    if peers.is_empty() {
        bail!("no brokers given: list them as ID=HOST:PORT,ID=HOST:PORT");
    }
    Ok(peers)
}

fn apply(config: &mut BrokerConfig, t: &Tuning, file: &FileConfig) -> anyhow::Result<()> {
    let defaults = &mut config.topic_defaults;
    if let Some(n) = t.default_partitions.or(file.default_partitions) {
        defaults.partitions = n;
    }
    if let Some(n) = t
        .default_replication_factor
        .or(file.default_replication_factor)
    {
        if n == 0 {
            bail!("--default-replication-factor 0: give 1 or more");
        }
        defaults.replication_factor = n;
    }
    if let Some(flush) = t.flush.as_ref().or(file.flush.as_ref()) {
        defaults.log.set("flush.ms", flush).context("--flush")?;
    }
    let parsed = TopicConfig::parse(defaults, &file.topic_defaults).context("[topic_defaults]")?;
    defaults.log = parsed.log;
    defaults.min_insync_replicas = parsed.min_insync_replicas;
    let limits = &mut config.limits;
    if let Some(v) = t.request_bytes_max.or(file.request_bytes_max) {
        limits.request_bytes_max = v;
    }
    if let Some(v) = file.produce_in_flight_max {
        limits.produce_in_flight_max = v;
    }
    if let Some(v) = file.fetch_bytes_max {
        limits.fetch_bytes_max = v;
    }
    if let Some(v) = file.fetch_wait_ms_max {
        limits.fetch_wait_ms_max = v;
    }
    if let Some(v) = file.subscriptions_max {
        limits.subscriptions_max = v;
    }
    if let Some(v) = t
        .retention_check_interval_ms
        .or(file.retention_check_interval_ms)
    {
        config.retention_check_interval_ms = v.max(1);
    }
    let replication = &mut config.replication;
    if let Some(ms) = t
        .broker_session_timeout_ms
        .or(file.broker_session_timeout_ms)
    {
        if ms < 100 {
            bail!("--broker-session-timeout-ms {ms} is too short: give 100 or more");
        }
        replication.broker_session_timeout_ms = ms;
        // Several heartbeats per session, so one lost heartbeat fences nobody.
        replication.broker_heartbeat_interval_ms = (ms / 6).clamp(10, 500);
    }
    if let Some(ms) = t.replica_lag_time_max_ms.or(file.replica_lag_time_max_ms) {
        if ms < 100 {
            bail!("--replica-lag-time-max-ms {ms} is too short: give 100 or more");
        }
        replication.replica_lag_time_max_ms = ms;
    }
    if let Some(m) = t
        .offsets_retention_minutes
        .or(file.offsets_retention_minutes)
    {
        let ms = m
            .checked_mul(60_000)
            .and_then(|ms| i64::try_from(ms).ok())
            .filter(|&ms| ms > 0)
            .with_context(|| {
                format!("--offsets-retention-minutes {m} is out of range: give 1 or more minutes")
            })?;
        config.groups.offsets_retention_ms = ms;
    }
    Ok(())
}

async fn run(
    mut config: BrokerConfig,
    tuning: &Tuning,
    kafka: &KafkaArgs,
    hints: bool,
) -> anyhow::Result<()> {
    // Bound before the broker registers, so that the metadata carries the
    // address Kafka clients are told (port 0 resolved).
    let kafka_listener = match kafka.kafka_listen {
        Some(listen) => {
            let listener = tokio::net::TcpListener::bind(listen).await.with_context(|| {
                format!("cannot listen for Kafka clients on {listen}: pick another address with --kafka-listen")
            })?;
            let local = listener.local_addr()?;
            config.kafka_advertised_address =
                Some(kafka.kafka_advertise.clone().unwrap_or(local.to_string()));
            if config.auth.required {
                tracing::warn!(
                    "the Kafka listener has no SASL yet: with --auth required, Kafka clients are refused everything"
                );
            }
            Some(listener)
        }
        None => None,
    };
    let data_dir = config.data_dir.clone();
    let node = config.node_id;
    let mut node_config = NodeConfig::new(config);
    node_config.worker = !tuning.no_worker;
    node_config.compile_cache_dir = tuning.compile_cache_dir.clone();
    if let Some(ms) = tuning.worker_session_timeout_ms {
        node_config.worker_session_timeout_ms = ms;
    }
    if let Some(max) = tuning.processor_bytes_max {
        if max == 0 {
            bail!("--processor-bytes-max must be at least 1");
        }
        node_config.registry.processor_bytes_max = max;
        node_config.wasm.component_bytes_max = max;
    }
    let signals = Signals::catch()?;
    let running = Node::start(node_config).await?;
    let handle = &running.server;
    let kafka_listener = match kafka_listener {
        Some(listener) => {
            let config = eddy_kafka::KafkaConfig {
                auto_create_topics: kafka.auto_create_topics,
                frame_bytes_max: handle.broker.config.limits.request_bytes_max,
                ..eddy_kafka::KafkaConfig::default()
            };
            Some(eddy_kafka::KafkaListener::start(
                listener,
                handle.broker.clone(),
                config,
            )?)
        }
        None => None,
    };
    // Tests and scripts read this line to learn the port. A closed stdout
    // must not stop the server, so write errors are ignored here.
    let mut out = std::io::stdout().lock();
    let _ = writeln!(
        out,
        "eddy listening on {} (node {node}, data in {})",
        handle.local_addr,
        data_dir.display()
    );
    if let Some(k) = &kafka_listener {
        let _ = writeln!(out, "kafka listening on {}", k.local_addr);
    }
    if hints {
        let at = if handle.local_addr.to_string() == DEFAULT_ADDRESS {
            String::new()
        } else {
            format!(" --bootstrap {}", handle.local_addr)
        };
        let _ = writeln!(out, "try it (in another terminal):");
        let _ = writeln!(out, "  eddy topic create demo -p 3{at}");
        let _ = writeln!(
            out,
            "  printf 'truck-1:hello\\ntruck-2:world\\n' | eddy produce demo --key-separator :{at}"
        );
        let _ = writeln!(out, "  eddy consume demo --from-beginning --print-key{at}");
        if let Some(k) = &kafka_listener {
            let _ = writeln!(
                out,
                "  kcat -b {} -t demo -C -e   # Kafka clients work too",
                k.local_addr
            );
        }
        let _ = writeln!(
            out,
            "and a pipeline: follow examples/truck-gps/README.md (or run `eddy demo`)"
        );
        let _ = writeln!(out, "stop with Ctrl-C");
    }
    let _ = out.flush();
    drop(out);
    signals.wait().await;
    tracing::info!("shutting down");
    if let Some(k) = kafka_listener {
        k.stop().await;
    }
    running.stop().await?;
    Ok(())
}

/// SIGTERM and Ctrl-C, caught from the moment this is made: made before a
/// server says it is listening, so that a signal sent right after that
/// line stops it cleanly instead of killing it.
#[derive(Debug)]
pub struct Signals {
    term: tokio::signal::unix::Signal,
    interrupt: tokio::signal::unix::Signal,
}

impl Signals {
    pub fn catch() -> anyhow::Result<Signals> {
        use tokio::signal::unix::{SignalKind, signal};
        Ok(Signals {
            term: signal(SignalKind::terminate())?,
            interrupt: signal(SignalKind::interrupt())?,
        })
    }

    /// Waits for either signal.
    pub async fn wait(mut self) {
        tokio::select! {
            _ = self.term.recv() => {}
            _ = self.interrupt.recv() => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn peers_are_id_equals_address() {
        let peers = parse_peers("1=127.0.0.1:9092, 2=broker-2:9092,3=[::1]:9094").unwrap();
        assert_eq!(peers.len(), 3);
        assert_eq!(peers[&NodeId(2)], "broker-2:9092");
        assert_eq!(peers[&NodeId(3)], "[::1]:9094");
        for bad in [
            "",
            "1",
            "1=host",
            "x=h:1",
            "1=h:1,1=h:2",
            "-1=h:1",
            "1=:9092",
        ] {
            assert!(parse_peers(bad).is_err(), "{bad:?} was accepted");
        }
    }
}
