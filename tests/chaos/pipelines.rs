//! The pipelines of a chaos run: the `shape` processor (keep the fields `n`
//! and `key` of a JSON record) uploaded while the first faults happen, and
//! applied twice to the same input, exactly-once and at-least-once; and
//! `running-count`, a stateful exactly-once pipeline on the same input
//! whose outputs for each key must be exactly "1", "2", … n in order.
//! Afterwards each output is compared with the processor applied to the
//! input as stored.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use eddy_client::{Client, Pipelines};
use eddy_test_plugins as wasm;
use eddy_tests::check::{self, Partitions, Verdict};
use eddy_tests::process::eddy_against;

/// The topic the pipelines read.
pub const INPUT: &str = "chaos-in";
/// (pipeline, delivery, output topic).
pub const PIPELINES: [(&str, &str, &str); 3] = [
    ("eos", "exactly-once", "eos-out"),
    ("alos", "at-least-once", "alos-out"),
    (COUNT, "exactly-once", "count-out"),
];
/// The stateful pipeline.
const COUNT: &str = "count";
/// How long a command may keep failing while faults settle.
const COMMAND_RETRIES: Duration = Duration::from_secs(90);

/// Input record `n`: its key, and a JSON value the processor trims.
pub fn input(n: u64) -> (String, String) {
    let key = format!("k{}", n % 31);
    let value = format!(
        "{{\"n\":{n},\"key\":\"{key}\",\"pad\":\"{}\"}}",
        "x".repeat(24)
    );
    (key, value)
}

/// What `shape` with `fields: n,key` makes of an input value.
fn shaped(value: &[u8]) -> Option<Vec<u8>> {
    let v: serde_json::Value = serde_json::from_slice(value).ok()?;
    Some(format!("{{\"n\":{},\"key\":{}}}", v["n"], v["key"]).into_bytes())
}

fn manifest(name: &str, delivery: &str, output: &str) -> String {
    let (processor, state) = if name == COUNT {
        ("count", "  state: { enabled: true }\n")
    } else {
        ("shape\n    params: { fields: \"n,key\" }", "")
    };
    format!(
        "apiVersion: eddy/v1\nkind: Pipeline\nmetadata:\n  name: {name}\nspec:\n  input:\n    topics: [{INPUT}]\n  processor:\n    name: {processor}\n  outputs:\n    - topic: {output}\n      partitions: 3\n      replicationFactor: 3\n  delivery: {delivery}\n  batch: {{ maxRecords: 256, maxWaitMs: 5 }}\n{state}"
    )
}

/// Uploads the processor and applies both pipelines through `bootstrap`,
/// retrying each command while faults come and go (a retried upload or
/// apply that had taken effect is a no-op); returns how many attempts
/// failed, or the command that kept failing.
pub fn deploy(bootstrap: &str) -> Result<u64, String> {
    let mut failed = 0;
    let mut eddy = |args: &[&str], input: &str| {
        let deadline = Instant::now() + COMMAND_RETRIES;
        loop {
            let out = eddy_against(bootstrap, args, input.as_bytes());
            if out.success {
                return Ok(());
            }
            failed += 1;
            if Instant::now() >= deadline {
                return Err(format!(
                    "eddy {args:?} kept failing for {COMMAND_RETRIES:?}: {}",
                    out.stderr.trim()
                ));
            }
            std::thread::sleep(Duration::from_millis(500));
        }
    };
    eddy(&["processor", "upload", "shape", wasm::TRANSFORM], "")?;
    eddy(&["processor", "upload", "count", wasm::RUNNING_COUNT], "")?;
    for (name, delivery, output) in PIPELINES {
        eddy(
            &["pipeline", "apply", "-f", "-"],
            &manifest(name, delivery, output),
        )?;
    }
    Ok(failed)
}

/// Waits until both pipelines have committed the whole input.
pub async fn await_caught_up(client: &Client, input_records: u64) -> Result<(), String> {
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let mut behind = Vec::new();
        for (name, _, _) in PIPELINES {
            let done: u64 = match Pipelines::new(client.clone()).describe(name).await {
                Ok(d) => d.partitions.iter().filter_map(|p| p.committed).sum(),
                Err(_) => 0,
            };
            if done < input_records {
                behind.push(format!("{name} at {done} of {input_records}"));
            }
        }
        if behind.is_empty() {
            return Ok(());
        }
        if Instant::now() >= deadline {
            return Err(behind.join(", "));
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

/// Values per key, in (partition, offset) order.
fn by_key(
    read: &Partitions,
    map: impl Fn(&[u8]) -> Option<Vec<u8>>,
) -> BTreeMap<Vec<u8>, Vec<Vec<u8>>> {
    let mut out: BTreeMap<Vec<u8>, Vec<Vec<u8>>> = BTreeMap::new();
    for records in read.values() {
        for r in records {
            let value = map(&r.value).unwrap_or_else(|| r.value.clone());
            out.entry(r.key.clone().unwrap_or_default())
                .or_default()
                .push(value);
        }
    }
    out
}

/// The input's, the exactly-once and the at-least-once verdicts, from the
/// input and each output as read back.
pub fn verdicts(input: &Partitions, outputs: &BTreeMap<&str, Partitions>) -> Vec<Verdict> {
    let expected = by_key(input, shaped);
    let counts = running_counts(input);
    // The input's producer is idempotent too: a record written twice there
    // would show up twice in the exactly-once output, for another reason.
    let mut input_once = check::no_duplicates(input);
    input_once.name = format!("input: {}", input_once.name);
    let mut verdicts = vec![input_once];
    for (name, delivery, output) in PIPELINES {
        let actual = by_key(&outputs[output], |v| Some(v.to_vec()));
        if name == COUNT {
            let mut v = check::exactly_once(&counts, &actual);
            v.name = format!("{name}: every key counted 1..n in order, through the faults");
            verdicts.push(v);
        } else if delivery == "exactly-once" {
            let mut v = check::exactly_once(&expected, &actual);
            v.name = format!("{name}: {}", v.name);
            if !v.passed() {
                v.examples.extend(copies(&outputs[output]));
            }
            verdicts.push(v);
        } else {
            let (mut v, duplicates) = check::at_least_once(&expected, &actual);
            v.name = format!("{name}: {} ({duplicates} duplicates)", v.name);
            verdicts.push(v);
        }
    }
    verdicts
}

/// What `running-count` must output per key: "1" to the number of input
/// records with that key.
fn running_counts(input: &Partitions) -> BTreeMap<Vec<u8>, Vec<Vec<u8>>> {
    let mut per_key: BTreeMap<Vec<u8>, u64> = BTreeMap::new();
    for records in input.values() {
        for r in records {
            *per_key
                .entry(r.key.clone().unwrap_or_default())
                .or_default() += 1;
        }
    }
    per_key
        .into_iter()
        .map(|(k, n)| (k, (1..=n).map(|i| i.to_string().into_bytes()).collect()))
        .collect()
}

/// Where each value written more than once sits (partition and offset of
/// every copy), for a failed exactly-once verdict: copies in one batch, in
/// neighbouring batches or far apart tell different stories.
fn copies(read: &Partitions) -> Vec<String> {
    let mut at: BTreeMap<&[u8], Vec<(u32, u64)>> = BTreeMap::new();
    for (&partition, records) in read {
        for r in records {
            at.entry(&r.value).or_default().push((partition, r.offset));
        }
    }
    at.into_iter()
        .filter(|(_, places)| places.len() > 1)
        .take(10)
        .map(|(value, places)| {
            let places: Vec<String> = places
                .iter()
                .map(|(p, o)| format!("partition {p} offset {o}"))
                .collect();
            format!(
                "{} at {}",
                String::from_utf8_lossy(value),
                places.join(", ")
            )
        })
        .collect()
}
