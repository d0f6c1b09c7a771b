//! `eddy demo`: the truck-GPS pipeline end to end, on a broker embedded in
//! this process with its data in a temporary directory. The steps are the
//! ones `examples/truck-gps/README.md` walks through by hand.

use std::collections::BTreeSet;
use std::io::IsTerminal;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use bytes::Bytes;
use clap::Args;
use eddy_broker::BrokerConfig;
use eddy_client::{
    Admin, Client, ClientConfig, Consumer, ConsumerConfig, NewTopic, Pipelines, Processors,
    Producer, ProducerConfig, ProducerRecord, Start,
};
use eddy_meta::NodeId;
use eddy_pipeline::{Node, NodeConfig};
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

use crate::out::outln;
use crate::processor::Language;

/// The manifest the demo applies (the file in the repository, built in).
const MANIFEST: &str = include_str!("../../../examples/truck-gps/pipeline.yaml");
const INPUT: &str = "truck_gps";
const ALERTS: &str = "truck_alerts";
const DEAD_LETTERS: &str = "truck_gps.dlq";
const PIPELINE: &str = "truck-alerts";
/// How long the demo waits for the pipeline to catch up.
const CATCH_UP_TIMEOUT: Duration = Duration::from_secs(60);

#[derive(Debug, Args)]
pub struct DemoArgs {
    /// Trucks to simulate.
    #[arg(long, default_value_t = 1000, value_parser = clap::value_parser!(u32).range(1..=1_000_000))]
    trucks: u32,
    /// GPS positions per truck.
    #[arg(long, default_value_t = 20, value_parser = clap::value_parser!(u32).range(1..=10_000))]
    positions: u32,
    /// Alerts to print.
    #[arg(long, default_value_t = 5)]
    sample: usize,
    /// The geofence processor's language: rust (built into eddy), or
    /// python or js (the TypeScript example), built from the sources in
    /// eddy with their toolchain, installed on first use.
    #[arg(long, value_enum, default_value_t = Language::Rust)]
    lang: Language,
}

/// The geofence examples in Python and TypeScript, built into eddy.
const GEOFENCE_PYTHON: &str =
    include_str!("../../../examples/processors/geofence-python/processor.py");
const GEOFENCE_TS: &str = include_str!("../../../examples/processors/geofence-ts/src/processor.ts");
const GEOFENCE_TSCONFIG: &str =
    include_str!("../../../examples/processors/geofence-ts/tsconfig.json");

/// The geofence component in `lang`: built into eddy for Rust, else built
/// from the example's sources in the cache (again only when they changed).
fn geofence(lang: Language) -> anyhow::Result<(Bytes, &'static str)> {
    let (sources, language, name): (&[(&str, &str)], _, _) = match lang {
        Language::Rust => {
            return Ok((Bytes::from_static(eddy_test_plugins::GEOFENCE_WASM), "Rust"));
        }
        Language::Python => (&[("processor.py", GEOFENCE_PYTHON)], "python", "Python"),
        Language::Js | Language::Ts => (
            &[
                ("src/processor.ts", GEOFENCE_TS),
                ("tsconfig.json", GEOFENCE_TSCONFIG),
            ],
            "ts",
            "TypeScript",
        ),
    };
    let dir = crate::processor::cache_dir()?
        .join("demo")
        .join(format!("geofence-{language}"));
    let manifest = format!("name = \"geofence\"\nlanguage = \"{language}\"\n");
    for (path, text) in [("processor.toml", manifest.as_str())]
        .into_iter()
        .chain(sources.iter().copied())
    {
        crate::processor::write_file(&dir.join(path), text)?;
    }
    let wasm = crate::processor::component_at(&dir)?;
    let bytes = std::fs::read(&wasm).with_context(|| format!("reading {}", wasm.display()))?;
    Ok((Bytes::from(bytes), name))
}

pub async fn run(args: DemoArgs) -> anyhow::Result<()> {
    let lang = args.lang;
    let (component, language) = tokio::task::spawn_blocking(move || geofence(lang))
        .await
        .context("building the geofence did not finish")??;
    let started = Instant::now();
    let tmp = tempfile::Builder::new()
        .prefix("eddy-demo-")
        .tempdir()
        .context("creating a temporary data directory")?;
    let listen: SocketAddr = "127.0.0.1:0".parse()?;
    let config = BrokerConfig::new(NodeId(1), tmp.path().join("data"), listen);
    let mut node_config = NodeConfig::new(config);
    // Compiled once, not at every demo: a Python geofence takes seconds.
    node_config.compile_cache_dir = Some(crate::processor::cache_dir()?.join("compiled"));
    let node = Node::start(node_config).await?;
    let address = node.server.local_addr.to_string();
    outln!(
        "1. started an embedded Eddy on {address} (data in {})",
        tmp.path().display()
    );
    // Ctrl-C stops the node too, so the temporary directory goes with it.
    let signals = crate::serve::Signals::catch()?;
    let result = tokio::select! {
        r = steps(&args, &address, component, language) => r,
        () = signals.wait() => Err(anyhow::anyhow!("interrupted")),
    };
    node.stop().await?;
    result?;
    outln!(
        "done in {:.1} s; the data directory is removed",
        started.elapsed().as_secs_f64()
    );
    Ok(())
}

async fn steps(
    args: &DemoArgs,
    address: &str,
    component: Bytes,
    language: &str,
) -> anyhow::Result<()> {
    let client = Client::connect(ClientConfig::new(address)).await?;
    Admin::new(client.clone())
        .create_topic(NewTopic {
            name: INPUT.into(),
            partitions: 10,
            ..NewTopic::default()
        })
        .await?;
    outln!("2. created topic {INPUT} with 10 partitions");
    let uploaded = Processors::new(client.clone())
        .upload("geofence", component, |_| {})
        .await?;
    let v = uploaded
        .version
        .context("upload answered without a version")?;
    outln!(
        "3. uploaded processor geofence version {} ({language}, {} bytes, sha256 {}…)",
        v.version,
        v.size_bytes,
        &v.sha256[..12]
    );
    let applied = Pipelines::new(client.clone()).apply(MANIFEST).await?;
    for r in &applied.results {
        outln!(
            "4. applied pipeline {} ({}@{}, exactly-once) from examples/truck-gps/pipeline.yaml",
            r.name,
            r.processor,
            r.processor_version
        );
    }
    let produced = produce(&client, args).await?;
    wait_for_pipeline(&client, produced).await?;
    print_alerts(&client, args.sample).await?;
    outln!("7. eddy pipeline describe {PIPELINE}:");
    let d = Pipelines::new(client.clone()).describe(PIPELINE).await?;
    crate::pipeline::print_description(&d);
    Ok(())
}

/// Simulated GPS positions: each truck starts somewhere in central Paris
/// and wanders; some leave the geofence. Three unreadable records show
/// the dead-letter topic at work.
async fn produce(client: &Client, args: &DemoArgs) -> anyhow::Result<u64> {
    let total = u64::from(args.trucks) * u64::from(args.positions) + 3;
    let producer = Producer::new(client.clone(), ProducerConfig::default());
    let bar = progress(total, "producing");
    let mut rng = Rng(0x5eed_0f7a_0c00);
    let start_ts = 1_767_225_600_000i64; // 2026-01-01T00:00:00Z
    let mut trucks: Vec<(f64, f64)> = (0..args.trucks)
        .map(|_| (48.83 + rng.unit() * 0.06, 2.26 + rng.unit() * 0.17))
        .collect();
    for step in 0..args.positions {
        for (i, (lat, lon)) in trucks.iter_mut().enumerate() {
            *lat += (rng.unit() - 0.5) * 0.02;
            *lon += (rng.unit() - 0.5) * 0.03;
            let id = format!("truck-{i:04}");
            let ts = start_ts + i64::from(step) * 10_000 + i as i64;
            let value =
                format!("{{\"truck_id\":\"{id}\",\"lat\":{lat:.5},\"lon\":{lon:.5},\"ts\":{ts}}}");
            let record = ProducerRecord {
                timestamp_ms: Some(ts),
                ..ProducerRecord::key_value(id, value)
            };
            producer.send(INPUT, record).await?;
            bar.inc(1);
        }
    }
    for junk in [
        "not json",
        "{\"truck_id\": \"truck-x\"}",
        "{\"lat\": \"north\"}",
    ] {
        producer
            .send(INPUT, ProducerRecord::key_value("garbage", junk))
            .await?;
        bar.inc(1);
    }
    producer.flush().await?;
    bar.finish_and_clear();
    outln!(
        "5. produced {total} records: {} trucks × {} positions, and 3 unreadable ones",
        args.trucks,
        args.positions
    );
    Ok(total)
}

/// Waits until the pipeline has processed every produced record.
async fn wait_for_pipeline(client: &Client, produced: u64) -> anyhow::Result<()> {
    let pipelines = Pipelines::new(client.clone());
    let deadline = Instant::now() + CATCH_UP_TIMEOUT;
    loop {
        let d = pipelines.describe(PIPELINE).await?;
        let counts = d.counters.clone().unwrap_or_default();
        let lag = d.summary.as_ref().map_or(u64::MAX, |s| s.lag);
        if lag == 0 && counts.records_in >= produced {
            return Ok(());
        }
        if Instant::now() > deadline {
            bail!(
                "the pipeline processed {} of {produced} records in {CATCH_UP_TIMEOUT:?} (lag {lag}); see `eddy pipeline describe {PIPELINE}`",
                counts.records_in
            );
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Reads every alert back and prints a few.
async fn print_alerts(client: &Client, sample: usize) -> anyhow::Result<()> {
    let described = Admin::new(client.clone()).describe_topic(ALERTS).await?;
    let end: u64 = described.partitions.iter().map(|p| p.high_watermark).sum();
    let mut consumer = Consumer::new(client.clone(), ConsumerConfig::default());
    for p in &described.partitions {
        consumer
            .assign(ALERTS, p.partition, Start::Earliest)
            .await?;
    }
    let mut alerts = Vec::new();
    let mut trucks = BTreeSet::new();
    let deadline = Instant::now() + Duration::from_secs(10);
    while (alerts.len() as u64) < end {
        if Instant::now() > deadline {
            bail!("read {} of the {end} alerts in {ALERTS}", alerts.len());
        }
        for f in consumer.poll(Duration::from_millis(200)).await? {
            for r in f.records()? {
                if let Some(k) = &r.key {
                    trucks.insert(k.clone());
                }
                alerts.push(r);
            }
        }
    }
    alerts.sort_by_key(|r| r.timestamp_ms);
    outln!(
        "6. the pipeline wrote {} alerts for {} trucks to {ALERTS}; the first {}:",
        alerts.len(),
        trucks.len(),
        sample.min(alerts.len())
    );
    for r in alerts.iter().take(sample) {
        let value = r.value.as_deref().map(String::from_utf8_lossy);
        outln!("   {}", value.unwrap_or_default());
    }
    let dead = dead_letters(client).await?;
    outln!("   and {dead} unreadable records went to {DEAD_LETTERS}, with headers saying why");
    Ok(())
}

async fn dead_letters(client: &Client) -> anyhow::Result<u64> {
    let admin = Admin::new(client.clone());
    let t = admin.describe_topic(DEAD_LETTERS).await?;
    Ok(t.partitions.iter().map(|p| p.high_watermark).sum())
}

fn progress(total: u64, what: &str) -> ProgressBar {
    if !std::io::stdout().is_terminal() {
        return ProgressBar::hidden();
    }
    let bar = ProgressBar::with_draw_target(Some(total), ProgressDrawTarget::stdout());
    let template = format!("{what} {{wide_bar}} {{pos}}/{{len}} {{per_sec}}");
    if let Ok(style) = ProgressStyle::with_template(&template) {
        bar.set_style(style);
    }
    bar
}

/// A small deterministic generator (xorshift64*), so every run of the
/// demo simulates the same trucks.
struct Rng(u64);

impl Rng {
    fn unit(&mut self) -> f64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        let x = self.0.wrapping_mul(0x2545_f491_4f6c_dd1d);
        (x >> 11) as f64 / (1u64 << 53) as f64
    }
}
