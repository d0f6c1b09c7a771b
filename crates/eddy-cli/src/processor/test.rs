//! `eddy processor test` runs a processor on records from a JSON Lines
//! file with no broker: the edit/build/test loop for processor authors.

use std::fs::File;
use std::io::{self, BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{Context, anyhow, bail};
use bytes::Bytes;
use clap::Args;
use eddy_wasm::{
    Config, Header, InputRecord, Instance, MemoryState, Offset, OutputRecord, ProcessError,
    Processor, Runtime, StateBackend, StateSession, Timestamp,
};
use serde_json::{Map, Value, json};

/// Arguments of `eddy processor test`.
#[derive(Debug, Args)]
pub struct TestArgs {
    /// The processor: a WebAssembly component built for wasm32-wasip2, or a
    /// processor project's directory.
    #[arg(value_name = "FILE.wasm|DIR")]
    pub wasm: PathBuf,
    /// Records to process, as JSON Lines (`-` for stdin). Default, for a
    /// project: its sample.jsonl.
    #[arg(long, short, value_name = "records.jsonl")]
    pub input: Option<PathBuf>,
    /// Compare the outputs with the ones in this file instead of printing
    /// them. Default, for a project run on its sample.jsonl: its
    /// expected.jsonl, when there is one.
    #[arg(long, value_name = "outputs.jsonl")]
    pub expect: Option<PathBuf>,
    /// A processor parameter, `name=value`; repeat for more.
    #[arg(long = "param", short, value_name = "NAME=VALUE", value_parser = parse_param)]
    pub params: Vec<(String, String)>,
    /// Records per call to the processor.
    #[arg(long, default_value_t = 256, value_parser = clap::value_parser!(u32).range(1..=65536))]
    pub batch_size: u32,
    /// Time budget of one call, in milliseconds.
    #[arg(long, default_value_t = Config::default().batch_time_ms_max)]
    pub batch_time_ms_max: u64,
    /// Memory cap of the instance, in MiB.
    #[arg(long, default_value_t = (Config::default().memory_bytes_max >> 20) as u32,
          value_parser = clap::value_parser!(u32).range(1..=4096))]
    pub memory_mib_max: u32,
    /// Keyed state the processor may keep, in MiB. The run keeps it in
    /// memory, as one input partition of a pipeline with `spec.state`.
    #[arg(long, default_value_t = 256, value_parser = clap::value_parser!(u32).range(1..=65536))]
    pub state_mib: u32,
    /// How far behind the newest timestamp the watermark stays, in
    /// milliseconds (a pipeline's spec.eventTime.allowedLatenessMs).
    #[arg(long, default_value_t = 0, value_parser = clap::value_parser!(u32).range(0..=604_800_000))]
    pub allowed_lateness_ms: u32,
    /// Make keys expire this many milliseconds of event time after they
    /// were last written (a pipeline's spec.state.ttlMs); 0 keeps them.
    #[arg(long, default_value_t = 0, value_parser = clap::value_parser!(u32).range(0..=2_592_000_000))]
    pub ttl_ms: u32,
    /// After the input, move event time on to this timestamp (milliseconds
    /// since the Unix epoch) and fire the timers that makes due, in a call
    /// without records — as a pipeline's quiet partition does with
    /// spec.eventTime.idleTimeoutMs: the last windows close.
    #[arg(long, value_name = "MS")]
    pub then_event_time: Option<i64>,
    /// Keep compiled processors in this directory, so unchanged ones start
    /// at once next time (default: `compiled` in EDDY_CACHE_DIR, else in
    /// ~/.cache/eddy).
    #[arg(long, value_name = "DIR")]
    pub cache_dir: Option<PathBuf>,
    /// Compile the processor afresh, without the cache.
    #[arg(long, conflicts_with = "cache_dir")]
    pub no_cache: bool,
}

/// What to run, on what, and what to compare with.
struct Plan {
    wasm: PathBuf,
    input: PathBuf,
    expect: Option<PathBuf>,
}

/// A project directory brings its component and its sample records.
fn plan(args: &TestArgs) -> anyhow::Result<Plan> {
    let wasm = super::builder::component_at(&args.wasm)?;
    let is_project = args.wasm.is_dir();
    let (input, expect) = match (&args.input, is_project) {
        (Some(input), _) => (input.clone(), args.expect.clone()),
        (None, true) => {
            let expected = args.wasm.join("expected.jsonl");
            let expect = args
                .expect
                .clone()
                .or_else(|| expected.is_file().then_some(expected));
            (args.wasm.join("sample.jsonl"), expect)
        }
        (None, false) => bail!(
            "say which records to run with --input records.jsonl (`eddy processor test --help` shows the format)"
        ),
    };
    Ok(Plan {
        wasm,
        input,
        expect,
    })
}

fn cache_dir(args: &TestArgs) -> anyhow::Result<Option<PathBuf>> {
    if args.no_cache {
        return Ok(None);
    }
    match &args.cache_dir {
        Some(dir) => Ok(Some(dir.clone())),
        None => Ok(Some(super::toolchain::cache_dir()?.join("compiled"))),
    }
}

fn parse_param(s: &str) -> Result<(String, String), String> {
    match s.split_once('=') {
        Some((name, value)) if !name.is_empty() => Ok((name.to_owned(), value.to_owned())),
        _ => Err(format!("{s:?} is not NAME=VALUE")),
    }
}

pub fn test(args: TestArgs) -> anyhow::Result<()> {
    let plan = plan(&args)?;
    let records = read_records(&plan.input)?;
    let mut expected = match &plan.expect {
        Some(path) => Some(Expected::read(path)?),
        None => None,
    };
    let bytes =
        std::fs::read(&plan.wasm).with_context(|| format!("reading {}", plan.wasm.display()))?;
    let runtime = Runtime::new(Config {
        batch_time_ms_max: args.batch_time_ms_max,
        memory_bytes_max: (args.memory_mib_max as usize) << 20,
        batch_records_max: args.batch_size as usize,
        // One running, and its replacement when it nears its memory limit.
        instances_max: 2,
        cache_dir: cache_dir(&args)?,
        ..Config::default()
    })?;
    let processor = runtime
        .compile(&bytes)
        .map_err(|e| limit_hint(e, &args))
        .with_context(|| format!("loading {}", plan.wasm.display()))?;
    let mut instance = processor
        .instantiate(&args.params)
        .map_err(|e| limit_hint(e, &args))?;
    let stdout = io::stdout();
    let mut out = stdout.lock();
    let mut counters = std::collections::BTreeMap::new();
    let store = Arc::new(MemoryState::default());
    let mut state = StateSession::new(store.clone(), u64::from(args.state_mib) << 20)
        .with_event_time(None, i64::from(args.allowed_lateness_ms))
        .with_ttl((args.ttl_ms > 0).then_some(i64::from(args.ttl_ms)));
    for (n, batch) in records.chunks(args.batch_size as usize).enumerate() {
        let first_index = n * args.batch_size as usize;
        let outputs = match process(&mut instance, batch, &mut state) {
            Ok(outputs) => outputs,
            Err(e) => {
                // Frees the instance's slot for the replay in `explain`.
                drop(instance);
                let hint = flag_hint(e.limit(), &args);
                let explained = explain(e, batch, first_index, &processor, &args.params, &store);
                return Err(anyhow!("{explained:#}{hint}"));
            }
        };
        state.accept_call();
        store.apply(&state.take_changes());
        emit(&outputs, expected.as_mut(), &mut out)?;
        if instance.is_near_memory_limit() {
            // As a pipeline does: a fresh instance before this one runs out.
            add_counters(&mut counters, &instance);
            instance = processor
                .instantiate(&args.params)
                .map_err(|e| limit_hint(e, &args))?;
        }
    }
    if let Some(at) = args.then_event_time {
        state.move_event_time_to(at);
        let outputs = instance
            .process_with_state(&[], &mut state)
            .map_err(|e| anyhow!("firing the timers due at event time {at}: {e}"))?;
        state.accept_call();
        store.apply(&state.take_changes());
        emit(&outputs, expected.as_mut(), &mut out)?;
    }
    add_counters(&mut counters, &instance);
    for (name, value) in counters {
        tracing::info!(counter = name.as_str(), value, "processor counter");
    }
    if !store.is_empty() {
        tracing::info!(
            keys = store.len(),
            bytes = store.bytes(),
            "keyed state at the end"
        );
    }
    if let Some(expected) = expected {
        let matched = expected.finish()?;
        eprintln!(
            "ok: {} record(s) in, {matched} output(s), as {} expects",
            records.len(),
            plan.expect.as_deref().unwrap_or(Path::new("")).display()
        );
    }
    Ok(())
}

/// Checks `outputs` against the expected ones, or prints them.
fn emit(
    outputs: &[OutputRecord],
    mut expected: Option<&mut Expected>,
    out: &mut impl Write,
) -> anyhow::Result<()> {
    for output in outputs {
        match expected.as_mut() {
            Some(expected) => expected.check(&output_json(output))?,
            None => writeln!(out, "{}", output_json(output)).context("writing to stdout")?,
        }
    }
    out.flush().context("writing to stdout")
}

fn add_counters(totals: &mut std::collections::BTreeMap<String, u64>, instance: &Instance) {
    for (name, value) in instance.counters() {
        *totals.entry(name.clone()).or_insert(0) += value;
    }
}

/// The outputs a test expects, checked one by one as they come.
struct Expected {
    path: PathBuf,
    lines: Vec<(usize, Value)>,
    next: usize,
}

impl Expected {
    fn read(path: &Path) -> anyhow::Result<Expected> {
        let text =
            std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
        let mut lines = Vec::new();
        for (i, line) in text.lines().enumerate() {
            if line.trim().is_empty() {
                continue;
            }
            let value: Value = serde_json::from_str(line)
                .with_context(|| format!("{} line {} is not JSON", path.display(), i + 1))?;
            lines.push((i + 1, value));
        }
        Ok(Expected {
            path: path.to_owned(),
            lines,
            next: 0,
        })
    }

    fn check(&mut self, output: &Value) -> anyhow::Result<()> {
        let n = self.next + 1;
        self.next += 1;
        match self.lines.get(n - 1) {
            Some((_, wanted)) if wanted == output => Ok(()),
            Some((line, wanted)) => bail!(
                "output {n} differs from {} line {line}:\n  expected {wanted}\n  got      {output}",
                self.path.display()
            ),
            None => bail!(
                "output {n} is more than the {} {} expects:\n  got {output}",
                self.lines.len(),
                self.path.display()
            ),
        }
    }

    fn finish(self) -> anyhow::Result<usize> {
        if let Some((line, wanted)) = self.lines.get(self.next) {
            bail!(
                "the processor gave {} output(s), but {} expects {}; the first missing, line {line}:\n  {wanted}",
                self.next,
                self.path.display(),
                self.lines.len()
            );
        }
        Ok(self.next)
    }
}

/// Names the flag that raises `limit` in this run.
fn flag_hint(limit: Option<eddy_wasm::Limit>, args: &TestArgs) -> String {
    match limit {
        Some(eddy_wasm::Limit::Memory) => format!(
            "\n  (this run allows {} MiB: raise it with --memory-mib-max)",
            args.memory_mib_max
        ),
        Some(eddy_wasm::Limit::Time) => format!(
            "\n  (this run allows {} ms per batch: raise it with --batch-time-ms-max)",
            args.batch_time_ms_max
        ),
        Some(eddy_wasm::Limit::ComponentSize | eddy_wasm::Limit::Instances) | None => String::new(),
    }
}

/// A limit error with the flag that raises it.
fn limit_hint(e: eddy_wasm::Error, args: &TestArgs) -> anyhow::Error {
    let hint = flag_hint(e.limit(), args);
    if hint.is_empty() {
        anyhow!(e)
    } else {
        anyhow!("{e}{hint}")
    }
}

fn process(
    instance: &mut Instance,
    batch: &[Sample],
    state: &mut StateSession,
) -> Result<Vec<OutputRecord>, ProcessError> {
    let records: Vec<InputRecord> = batch.iter().map(|s| s.record.clone()).collect();
    instance.process_with_state(&records, state)
}

/// The error, with the input line that caused it: the record the processor
/// named, or after a trap in a batch of several records, the first one
/// that traps when the batch is run again one record at a time.
fn explain(
    e: ProcessError,
    batch: &[Sample],
    first_index: usize,
    processor: &Processor,
    params: &[(String, String)],
    store: &Arc<MemoryState>,
) -> anyhow::Error {
    let sample = match &e {
        ProcessError::Record { index, .. } => batch.get(*index),
        ProcessError::Trap { .. } if batch.len() > 1 => {
            match trapping_record(processor, params, batch, store) {
                Some(sample) => {
                    return anyhow!(
                        "{e}\n  line {}: {}\n  (the first record of its batch that traps when run alone)",
                        sample.line,
                        sample.text
                    );
                }
                None => {
                    return anyhow!(
                        "{e}\n  while processing the batch of records {}..={} (lines {}..={}); no record traps when run alone, so the trap needs what came before it in the batch",
                        first_index,
                        first_index + batch.len() - 1,
                        batch[0].line,
                        batch[batch.len() - 1].line
                    );
                }
            }
        }
        ProcessError::Trap { .. } => batch.first(),
        _ => None,
    };
    match sample {
        Some(sample) => anyhow!("{e}\n  line {}: {}", sample.line, sample.text),
        None => anyhow!(e),
    }
}

/// Runs `batch` again one record per call, on a fresh instance and from
/// the state before the batch, and returns the first record whose call
/// traps.
fn trapping_record<'a>(
    processor: &Processor,
    params: &[(String, String)],
    batch: &'a [Sample],
    store: &Arc<MemoryState>,
) -> Option<&'a Sample> {
    let mut instance = processor.instantiate(params).ok()?;
    let mut state = StateSession::new(store.clone(), u64::MAX);
    for sample in batch {
        match instance.process_with_state(std::slice::from_ref(&sample.record), &mut state) {
            Err(ProcessError::Trap { .. }) => return Some(sample),
            // Another kind of failure is not the trap being looked for.
            Err(_) => return None,
            Ok(_) => state.accept_call(),
        }
    }
    None
}

/// One input record and where it came from.
struct Sample {
    line: usize,
    text: String,
    record: InputRecord,
}

fn read_records(path: &PathBuf) -> anyhow::Result<Vec<Sample>> {
    let name = path.display().to_string();
    let reader: Box<dyn BufRead> = if name == "-" {
        Box::new(BufReader::new(io::stdin()))
    } else {
        Box::new(BufReader::new(
            File::open(path).with_context(|| format!("opening {name}"))?,
        ))
    };
    let topic: Arc<str> = Arc::from("input");
    let mut samples = Vec::new();
    for (i, line) in reader.lines().enumerate() {
        let text = line.with_context(|| format!("reading {name}"))?;
        if text.trim().is_empty() {
            continue;
        }
        let record = parse_record(&text, samples.len() as u64, &topic)
            .with_context(|| format!("{name} line {}", i + 1))?;
        samples.push(Sample {
            line: i + 1,
            text,
            record,
        });
    }
    Ok(samples)
}

fn parse_record(
    text: &str,
    position: u64,
    default_topic: &Arc<str>,
) -> anyhow::Result<InputRecord> {
    let value: Value = serde_json::from_str(text).context("not valid JSON")?;
    let Value::Object(fields) = value else {
        bail!("expected a JSON object such as {{\"key\": \"k\", \"value\": {{...}}}}");
    };
    const KNOWN: &[&str] = &[
        "key",
        "value",
        "headers",
        "timestamp",
        "topic",
        "partition",
        "offset",
    ];
    if let Some(unknown) = fields.keys().find(|k| !KNOWN.contains(&k.as_str())) {
        bail!(
            "unknown field {unknown:?}; a record has {}",
            KNOWN.join(", ")
        );
    }
    let key = match fields.get("key") {
        None | Some(Value::Null) => None,
        Some(Value::String(s)) => Some(Bytes::from(s.clone())),
        Some(_) => bail!("\"key\" must be a string or null"),
    };
    let headers = match fields.get("headers") {
        None | Some(Value::Null) => Vec::new(),
        Some(Value::Object(map)) => map
            .iter()
            .map(|(k, v)| Header {
                key: k.clone(),
                value: bytes_of(v).unwrap_or_default(),
            })
            .collect(),
        Some(_) => bail!("\"headers\" must be an object of name: value"),
    };
    let int = |name: &str| -> anyhow::Result<Option<i64>> {
        match fields.get(name) {
            None | Some(Value::Null) => Ok(None),
            Some(v) => v
                .as_i64()
                .map(Some)
                .ok_or_else(|| anyhow!("{name:?} must be an integer")),
        }
    };
    let topic = match fields.get("topic") {
        None | Some(Value::Null) => default_topic.clone(),
        Some(Value::String(s)) => Arc::from(s.as_str()),
        Some(_) => bail!("\"topic\" must be a string"),
    };
    Ok(InputRecord {
        key,
        value: fields.get("value").and_then(bytes_of),
        headers,
        timestamp: Timestamp(int("timestamp")?.unwrap_or(0)),
        topic,
        partition: u32::try_from(int("partition")?.unwrap_or(0))
            .context("\"partition\" must be between 0 and 4294967295")?,
        offset: Offset(match int("offset")? {
            Some(o) => u64::try_from(o).context("\"offset\" must not be negative")?,
            None => position,
        }),
    })
}

/// A string as its bytes, other JSON as its compact text, null as nothing.
fn bytes_of(v: &Value) -> Option<Bytes> {
    match v {
        Value::Null => None,
        Value::String(s) => Some(Bytes::from(s.clone())),
        other => Some(Bytes::from(other.to_string())),
    }
}

fn output_json(o: &OutputRecord) -> Value {
    let mut fields = Map::new();
    fields.insert("topic".into(), json!(o.topic.as_deref()));
    put_bytes(&mut fields, "key", o.key.as_deref(), false);
    put_bytes(&mut fields, "value", o.value.as_deref(), true);
    let headers: Map<String, Value> = o
        .headers
        .iter()
        .map(|h| {
            let v = match std::str::from_utf8(&h.value) {
                Ok(s) => Value::String(s.to_owned()),
                Err(_) => json!({ "hex": hex(&h.value) }),
            };
            (h.key.clone(), v)
        })
        .collect();
    fields.insert("headers".into(), Value::Object(headers));
    fields.insert("timestamp".into(), json!(o.timestamp.map(|t| t.0)));
    Value::Object(fields)
}

fn put_bytes(fields: &mut Map<String, Value>, name: &str, bytes: Option<&[u8]>, as_json: bool) {
    let Some(bytes) = bytes else {
        fields.insert(name.into(), Value::Null);
        return;
    };
    if as_json && let Ok(v) = serde_json::from_slice::<Value>(bytes) {
        fields.insert(name.into(), v);
    } else if let Ok(s) = std::str::from_utf8(bytes) {
        fields.insert(name.into(), Value::String(s.to_owned()));
    } else {
        fields.insert(format!("{name}_hex"), Value::String(hex(bytes)));
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}
