//! `eddy bench processor`: what a processor costs, in the sandbox
//! pipelines use, for several processors (one per language, say) measured
//! round by round in turn so that the machine's drift falls on all alike:
//! compiling (cold, and loading from the cache), instantiating with
//! `init`, memory per instance, and records/s on 100-byte JSON records.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use bytes::Bytes;
use clap::Args;
use eddy_wasm::{Config, InputRecord, Offset, Processor, Runtime, Timestamp};

use crate::out::outln;

#[derive(Debug, Clone, Args)]
pub struct ProcessorBenchArgs {
    /// Processors to measure: `.wasm` components or project directories
    /// (built first when their sources changed). Each must accept the
    /// records `eddy processor new` makes (`{"sensor": …, "celsius": …}`),
    /// as that command's example does.
    #[arg(required = true, value_name = "FILE.wasm|DIR")]
    processors: Vec<PathBuf>,
    /// A parameter for every processor, `name=value`; repeat for more.
    #[arg(long = "param", value_name = "NAME=VALUE", value_parser = parse_param)]
    params: Vec<(String, String)>,
    /// Records per call.
    #[arg(long, default_value_t = 256, value_parser = clap::value_parser!(u32).range(1..=65536))]
    batch: u32,
    /// Records per round and processor.
    #[arg(long, default_value_t = 50_000)]
    records: usize,
    /// Rounds; each runs every processor once, in turn.
    #[arg(long, default_value_t = 5, value_parser = clap::value_parser!(u32).range(1..=1000))]
    rounds: u32,
    /// Memory cap of an instance, in MiB (a pipeline's default is 64); an
    /// instance past three quarters of it is replaced, as pipelines do.
    #[arg(long, default_value_t = 64)]
    memory_mib_max: u32,
}

fn parse_param(s: &str) -> Result<(String, String), String> {
    match s.split_once('=') {
        Some((name, value)) if !name.is_empty() => Ok((name.to_owned(), value.to_owned())),
        _ => Err(format!("{s:?} is not NAME=VALUE")),
    }
}

/// One processor's figures.
struct Measured {
    name: String,
    compile_cold: Duration,
    compile_cached: Duration,
    instantiate: Duration,
    memory_at_start: usize,
    memory_after: usize,
    rounds: Vec<f64>,
    outputs_per_round: usize,
    /// Instances replaced because they neared their memory limit.
    replaced: usize,
    processor: Processor,
}

pub fn run(args: &ProcessorBenchArgs) -> anyhow::Result<()> {
    let records = sample_records(args.records);
    let cache = tempfile::tempdir().context("creating a compile cache")?;
    let config = Config {
        memory_bytes_max: (args.memory_mib_max as usize) << 20,
        batch_records_max: args.batch as usize,
        instances_max: 64,
        cache_dir: Some(cache.path().to_owned()),
        ..Config::default()
    };
    let mut measured = Vec::new();
    let mut instances = Vec::new();
    for path in &args.processors {
        let wasm = crate::processor::component_at(path)?;
        let bytes = std::fs::read(&wasm).with_context(|| format!("reading {}", wasm.display()))?;
        let (processor, compile_cold) = timed_compile(&config, &bytes)?;
        let (_, compile_cached) = timed_compile(&config, &bytes)?;
        let instantiate = mean_instantiate(&processor, &args.params)?;
        let instance = processor.instantiate(&args.params)?;
        measured.push(Measured {
            name: path.display().to_string(),
            compile_cold,
            compile_cached,
            instantiate,
            memory_at_start: instance.memory_bytes(),
            memory_after: 0,
            rounds: Vec::new(),
            outputs_per_round: 0,
            replaced: 0,
            processor,
        });
        instances.push(instance);
    }
    for _ in 0..args.rounds {
        for (m, instance) in measured.iter_mut().zip(&mut instances) {
            let started = Instant::now();
            let mut outputs = 0;
            for batch in records.chunks(args.batch as usize) {
                outputs += instance
                    .process(batch)
                    .with_context(|| format!("{} failed a batch", m.name))?
                    .len();
                // As a pipeline does (and the time it takes counts).
                if instance.is_near_memory_limit() {
                    m.memory_after = m.memory_after.max(instance.memory_bytes());
                    *instance = m.processor.instantiate(&args.params)?;
                    m.replaced += 1;
                }
            }
            m.rounds
                .push(records.len() as f64 / started.elapsed().as_secs_f64());
            m.outputs_per_round = outputs;
            m.memory_after = m.memory_after.max(instance.memory_bytes());
        }
    }
    report(&measured, args);
    Ok(())
}

fn timed_compile(config: &Config, bytes: &[u8]) -> anyhow::Result<(Processor, Duration)> {
    let runtime = Runtime::new(config.clone())?;
    let started = Instant::now();
    let processor = runtime.compile(bytes)?;
    Ok((processor, started.elapsed()))
}

/// Instantiate + `init` + drop, averaged over a few.
fn mean_instantiate(
    processor: &Processor,
    params: &[(String, String)],
) -> anyhow::Result<Duration> {
    const N: u32 = 20;
    let started = Instant::now();
    for _ in 0..N {
        drop(processor.instantiate(params)?);
    }
    Ok(started.elapsed() / N)
}

/// `n` readings of 100 bytes of JSON each, a third of them above 30 °C.
fn sample_records(n: usize) -> Vec<InputRecord> {
    let topic: Arc<str> = Arc::from("readings");
    (0..n)
        .map(|i| {
            let sensor = format!("sensor-{:04}", i % 1000);
            let celsius = 20.0 + (i % 15) as f64 + 0.5;
            let mut value = format!("{{\"sensor\":\"{sensor}\",\"celsius\":{celsius},\"note\":\"");
            let pad = 100usize.saturating_sub(value.len() + 2);
            value.push_str(&"x".repeat(pad));
            value.push_str("\"}");
            InputRecord {
                key: Some(Bytes::from(sensor)),
                value: Some(Bytes::from(value)),
                headers: Vec::new(),
                timestamp: Timestamp(1_767_225_600_000 + i as i64),
                topic: topic.clone(),
                partition: 0,
                offset: Offset(i as u64),
            }
        })
        .collect()
}

fn report(measured: &[Measured], args: &ProcessorBenchArgs) {
    outln!(
        "{} rounds of {} records of 100 bytes, batch {}, one instance each",
        args.rounds,
        args.records,
        args.batch
    );
    outln!(
        "{:<40} {:>22} {:>10} {:>10} {:>11} {:>16} {:>8} {:>8}",
        "processor",
        "records/s (min-max)",
        "compile",
        "cached",
        "instantiate",
        "memory (peak)",
        "outputs",
        "replaced"
    );
    for m in measured {
        let mut sorted = m.rounds.clone();
        sorted.sort_by(f64::total_cmp);
        let median = sorted[sorted.len() / 2];
        outln!(
            "{:<40} {:>22} {:>9.2}s {:>9.3}s {:>9.2}ms {:>16} {:>8} {:>8}",
            m.name,
            format!(
                "{} ({}-{})",
                rate(median),
                rate(sorted[0]),
                rate(sorted[sorted.len() - 1])
            ),
            m.compile_cold.as_secs_f64(),
            m.compile_cached.as_secs_f64(),
            m.instantiate.as_secs_f64() * 1e3,
            format!(
                "{:.1}->{:.1} MiB",
                m.memory_at_start as f64 / (1 << 20) as f64,
                m.memory_after as f64 / (1 << 20) as f64
            ),
            m.outputs_per_round,
            m.replaced
        );
    }
}

fn rate(per_second: f64) -> String {
    if per_second >= 1e6 {
        format!("{:.2}M", per_second / 1e6)
    } else {
        format!("{:.1}k", per_second / 1e3)
    }
}
