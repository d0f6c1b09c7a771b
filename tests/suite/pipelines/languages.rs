//! Processors in Python, JavaScript, TypeScript and Rust, as a new user
//! makes them: `eddy processor new`, `eddy processor build` (which
//! installs componentize-py, componentize-js and TypeScript from the
//! registries into the suite's cache on first use), `processor test`,
//! `upload`, `pipeline apply`. Then the same semantics as Rust: the
//! geofence gives the same alerts in all three languages, and exactly-once
//! holds through `kill -9`s of the broker.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::{Mutex, OnceLock};

use eddy_test_plugins as wasm;
use eddy_tests::rng::Rng;

use super::workload::{assert_exactly_once, feed_through_broker_kills, shape_manifest};
use super::{Cluster, by_key};
use crate::harness::{cache_dir, eddy};
use crate::{stderr, stdout};

/// A broker whose compiled processors go to the suite's cache, shared by
/// every test here: a Python component takes seconds of CPU to compile.
async fn cluster() -> Cluster {
    let compiled = cache_dir().join("compiled-brokers");
    Cluster::start_with(&["--compile-cache-dir", compiled.to_str().unwrap()]).await
}

/// The repository's `examples/processors`.
fn examples() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/processors")
}

/// Runs `eddy` in `dir`, failing the test with its stderr if it fails.
fn eddy_in(dir: &Path, args: &[&str]) -> String {
    let out = crate::harness::eddy_command()
        .current_dir(dir)
        .args(args)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "eddy {args:?} in {} failed:\n{}",
        dir.display(),
        stderr(&out)
    );
    stdout(&out)
}

/// A project named `name` copied from `sources` into `dir` under the
/// suite's cache and built there, once per run of the suite; a later run
/// (or `eddy demo`, for the geofences) reuses the build while the sources
/// and the SDK are unchanged.
fn built(dir: &str, name: &str, sources: &[(&Path, &str)], lang: &str) -> PathBuf {
    static BUILT: OnceLock<Mutex<HashMap<String, PathBuf>>> = OnceLock::new();
    let built = BUILT.get_or_init(Default::default);
    // A test that failed while holding it does not poison the others.
    let mut built = built.lock().unwrap_or_else(|e| e.into_inner());
    if let Some(dir) = built.get(dir) {
        return dir.clone();
    }
    let key = dir.to_owned();
    let dir = cache_dir().join(dir);
    // Written only where they differ: an unchanged project is not rebuilt.
    let write = |path: PathBuf, text: &[u8]| {
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        if std::fs::read(&path).ok().as_deref() != Some(text) {
            std::fs::write(&path, text).unwrap();
        }
    };
    let manifest = format!("name = \"{name}\"\nlanguage = \"{lang}\"\n");
    write(dir.join("processor.toml"), manifest.as_bytes());
    for (from, to) in sources {
        write(dir.join(to), &std::fs::read(from).unwrap());
    }
    // Builds only if the sources or the SDK changed since a last run.
    eddy_in(&dir, &["processor", "build"]);
    built.insert(key, dir.clone());
    dir
}

/// The geofence examples, where `eddy demo --lang` builds them too.
fn geofence_python() -> PathBuf {
    let src = examples().join("geofence-python/processor.py");
    built(
        "demo/geofence-python",
        "geofence",
        &[(&src, "processor.py")],
        "python",
    )
}

fn geofence_ts() -> PathBuf {
    let src = examples().join("geofence-ts/src/processor.ts");
    let tsconfig = examples().join("geofence-ts/tsconfig.json");
    built(
        "demo/geofence-ts",
        "geofence",
        &[(&src, "src/processor.ts"), (&tsconfig, "tsconfig.json")],
        "ts",
    )
}

/// The rectangle of `examples/truck-gps/pipeline.yaml`.
const FENCE: [&str; 4] = [
    "min_lat=48.80",
    "max_lat=48.92",
    "min_lon=2.22",
    "max_lon=2.47",
];

/// `eddy processor test` of `processor` on `input` with the fence.
fn geofence_outputs(processor: &Path, input: &Path) -> String {
    let mut args = vec![
        "processor",
        "test",
        processor.to_str().unwrap(),
        "--input",
        input.to_str().unwrap(),
    ];
    for p in FENCE {
        args.extend(["--param", p]);
    }
    let out = eddy(&args);
    assert!(out.status.success(), "{}", stderr(&out));
    stdout(&out)
}

/// Truck positions as the demo makes them: `n` JSON records keyed by
/// truck, five decimals, wandering in and out of the fence.
fn positions(n: usize) -> Vec<(Option<String>, String)> {
    let mut rng = Rng::new(20261206);
    let mut unit = move || rng.below(1_000_000) as f64 / 1e6;
    let mut trucks: Vec<(f64, f64)> = (0..50)
        .map(|_| (48.83 + unit() * 0.06, 2.26 + unit() * 0.17))
        .collect();
    (0..n)
        .map(|i| {
            let t = i % trucks.len();
            let (lat, lon) = &mut trucks[t];
            *lat += (unit() - 0.5) * 0.02;
            *lon += (unit() - 0.5) * 0.03;
            let id = format!("truck-{t:03}");
            let ts = 1_767_225_600_000i64 + i as i64;
            let value =
                format!("{{\"truck_id\":\"{id}\",\"lat\":{lat:.5},\"lon\":{lon:.5},\"ts\":{ts}}}");
            (Some(id), value)
        })
        .collect()
}

#[test]
fn the_geofence_in_python_and_typescript_gives_the_rust_alerts_byte_for_byte() {
    let trucks = examples().join("trucks.jsonl");
    let rust = geofence_outputs(Path::new(wasm::GEOFENCE), &trucks);
    assert_eq!(rust.lines().count(), 4, "{rust}");
    let tmp = tempfile::tempdir().unwrap();
    let many: String = positions(2000)
        .iter()
        .map(|(k, v)| format!("{{\"key\":\"{}\",\"value\":{v}}}\n", k.as_deref().unwrap()))
        .collect();
    let many_path = tmp.path().join("positions.jsonl");
    std::fs::write(&many_path, many).unwrap();
    let rust_many = geofence_outputs(Path::new(wasm::GEOFENCE), &many_path);
    assert!(rust_many.lines().count() > 100, "{rust_many}");
    for (lang, dir) in [("python", geofence_python()), ("typescript", geofence_ts())] {
        assert_eq!(
            geofence_outputs(&dir, &trucks),
            rust,
            "{lang} on trucks.jsonl"
        );
        assert!(
            geofence_outputs(&dir, &many_path) == rust_many,
            "{lang} differs from rust on 2000 positions"
        );
    }
}

/// The geofence pipeline of `examples/truck-gps` for `processor`, from
/// `truck_gps` to `alerts-<processor>`.
fn geofence_manifest(processor: &str) -> String {
    format!(
        "apiVersion: eddy/v1\nkind: Pipeline\nmetadata: {{ name: fence-{processor} }}\nspec:\n  input: {{ topics: [truck_gps], startFrom: earliest }}\n  processor: {{ name: {processor}, params: {{ min_lat: 48.80, max_lat: 48.92, min_lon: 2.22, max_lon: 2.47 }} }}\n  outputs: [ {{ topic: alerts-{processor}, partitions: 3 }} ]\n  delivery: exactly-once\n  onError: {{ deadLetter: dlq-{processor} }}\n"
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exactly_once_geofence_pipelines_in_three_languages_write_the_same_alerts() {
    let (python, ts) = tokio::task::block_in_place(|| (geofence_python(), geofence_ts()));
    let c = cluster().await;
    c.create_topic("truck_gps", 4).await;
    c.upload("rust", wasm::GEOFENCE);
    c.upload("python", python.to_str().unwrap());
    c.upload("ts", ts.to_str().unwrap());
    for processor in ["rust", "python", "ts"] {
        c.apply(&geofence_manifest(processor));
    }
    let mut input = positions(3000);
    input.push((Some("junk".into()), "not json".into()));
    c.produce("truck_gps", &input).await;
    let mut alerts = Vec::new();
    for processor in ["rust", "python", "ts"] {
        c.caught_up(&format!("fence-{processor}"), input.len() as u64)
            .await;
        let out: BTreeMap<String, Vec<String>> =
            by_key(&c.read_all(&format!("alerts-{processor}")).await);
        let dead = c.read_all(&format!("dlq-{processor}")).await;
        assert_eq!(
            dead.len(),
            1,
            "{processor}: the junk record is dead-lettered"
        );
        alerts.push((processor, out));
    }
    let (_, rust) = &alerts[0];
    assert!(rust.values().map(Vec::len).sum::<usize>() > 100);
    for (processor, out) in &alerts[1..] {
        assert!(out == rust, "{processor}'s alerts differ from rust's");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_exception_in_python_or_typescript_is_the_records_dead_letter_reason() {
    let (python, ts) = tokio::task::block_in_place(|| (geofence_python(), geofence_ts()));
    let c = cluster().await;
    c.create_topic("truck_gps", 1).await;
    c.upload("python", python.to_str().unwrap());
    c.upload("ts", ts.to_str().unwrap());
    c.apply(&geofence_manifest("python"));
    c.apply(&geofence_manifest("ts"));
    let input = [
        (
            Some("t1".into()),
            "{\"truck_id\":\"t1\",\"lon\":2.3}".into(),
        ),
        (Some("t2".into()), "[1, 2]".into()),
    ];
    c.produce("truck_gps", &input).await;
    for (processor, prefix) in [("python", "ValueError: "), ("ts", "")] {
        c.caught_up(&format!("fence-{processor}"), 2).await;
        let dead = c.read_all(&format!("dlq-{processor}")).await;
        let mut reasons: Vec<String> = dead
            .iter()
            .map(|r| {
                let (_, reason) = r
                    .headers
                    .iter()
                    .find(|(name, _)| name == "eddy.error.message")
                    .unwrap();
                String::from_utf8(reason.to_vec()).unwrap()
            })
            .collect();
        reasons.sort();
        assert_eq!(
            reasons,
            [
                format!("{prefix}field `lat` is missing or not a number"),
                format!("{prefix}field `truck_id` is missing or not a string"),
            ],
            "{processor}"
        );
    }
}

/// The fault workload's `shape` transform, written in `lang`.
fn shape(lang: &str) -> PathBuf {
    let processors = Path::new(env!("CARGO_MANIFEST_DIR")).join("processors");
    match lang {
        "python" => built(
            "suite-projects/shape-python",
            "shape-python",
            &[(&processors.join("shape.py"), "processor.py")],
            "python",
        ),
        _ => built(
            "suite-projects/shape-js",
            "shape-js",
            &[(&processors.join("shape.js"), "processor.js")],
            "js",
        ),
    }
}

/// Records through a pipeline in `lang` while its broker is killed.
const RECORDS: usize = 20_000;
const KILLS: usize = 3;

async fn exactly_once_through_broker_kills(lang: &str) {
    let name = format!("exactly_once_in_{lang}_survives_its_broker_killed");
    let mut rng = Rng::from_env(&name);
    let processor = tokio::task::block_in_place(|| shape(lang));
    let mut c = cluster().await;
    c.create_topic("in", 4).await;
    c.upload("shape", processor.to_str().unwrap());
    c.apply(&shape_manifest("exactly-once", ""));
    feed_through_broker_kills(&mut c, &mut rng, RECORDS, KILLS, (1500, 3000)).await;
    assert_exactly_once(&c.client, RECORDS, &name, rng.seed()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exactly_once_in_python_survives_its_broker_killed_at_random_points() {
    exactly_once_through_broker_kills("python").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exactly_once_in_javascript_survives_its_broker_killed_at_random_points() {
    exactly_once_through_broker_kills("js").await;
}

/// What a new project's README does to run it: upload the project in
/// `dir` as `name`, create `readings`, apply its `pipeline.yaml`.
fn deploy(dir: &Path, name: &str, broker: &str) {
    let steps: [&[&str]; 3] = [
        &["processor", "upload", name, "."],
        &["topic", "create", "readings", "-p", "3"],
        &["pipeline", "apply", "-f", "pipeline.yaml"],
    ];
    for step in steps {
        let mut args = step.to_vec();
        args.extend(["--bootstrap", broker]);
        eddy_in(dir, &args);
    }
}

/// The README's walkthrough for `lang`: a new project, built, tested on
/// its sample, uploaded, and run by the pipeline its manifest declares.
async fn walkthrough(lang: &str) {
    let tmp = tempfile::tempdir().unwrap();
    let name = format!("hot-{lang}");
    let dir = tmp.path().join(&name);
    tokio::task::block_in_place(|| {
        eddy_in(tmp.path(), &["processor", "new", &name, "--lang", lang]);
        // From the parent directory: paths are the project's, not the caller's.
        let built = eddy_in(tmp.path(), &["processor", "build", &name]);
        assert!(
            built.starts_with(&format!("{name}/build/{name}.wasm")),
            "{built}"
        );
        assert!(dir.join("build").join(format!("{name}.wasm")).is_file());
        eddy_in(&dir, &["processor", "test", "."]);
    });
    let c = cluster().await;
    tokio::task::block_in_place(|| deploy(&dir, &name, &c.broker.addr));
    let readings = [
        (
            Some("sensor-1".to_owned()),
            "{\"sensor\":\"sensor-1\",\"celsius\":31.5}".to_owned(),
        ),
        (
            Some("sensor-2".to_owned()),
            "{\"sensor\":\"sensor-2\",\"celsius\":12.0}".to_owned(),
        ),
    ];
    c.produce("readings", &readings).await;
    c.caught_up(&name, 2).await;
    let hot = c.read_all("hot-readings").await;
    let values: Vec<&[u8]> = hot.iter().map(|r| r.value.as_deref().unwrap()).collect();
    assert_eq!(
        values,
        [&br#"{"sensor":"sensor-1","celsius":31.5,"fahrenheit":88.7}"#[..]],
        "{lang}"
    );
    assert_eq!(hot[0].key.as_deref(), Some(&b"sensor-1"[..]));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_new_python_processor_goes_from_new_to_a_running_pipeline() {
    walkthrough("python").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_new_javascript_processor_goes_from_new_to_a_running_pipeline() {
    walkthrough("js").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_new_typescript_processor_goes_from_new_to_a_running_pipeline() {
    walkthrough("ts").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_new_rust_processor_goes_from_new_to_a_running_pipeline() {
    walkthrough("rust").await;
}

/// `eddy processor new --stateful` in every language: each project
/// builds and passes its own test (the same windows closed with the same
/// averages); then the Python one runs in the pipeline its manifest
/// declares, and a window's average comes out once a later reading moves
/// event time past its end.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_new_stateful_processor_averages_each_sensor_per_minute_in_every_language() {
    let tmp = tempfile::tempdir().unwrap();
    tokio::task::block_in_place(|| {
        for lang in ["rust", "python", "js", "ts"] {
            let name = format!("avg-{lang}");
            eddy_in(
                tmp.path(),
                &["processor", "new", &name, "--lang", lang, "--stateful"],
            );
            let dir = tmp.path().join(&name);
            eddy_in(&dir, &["processor", "build"]);
            eddy_in(&dir, &["processor", "test", "."]);
        }
    });
    let dir = tmp.path().join("avg-python");
    let c = cluster().await;
    tokio::task::block_in_place(|| deploy(&dir, "avg-python", &c.broker.addr));
    let minute = 1_767_225_600_000_i64;
    let readings: Vec<_> = [(20.5, 1_000), (21.0, 30_000), (25.0, 75_000)]
        .into_iter()
        .map(|(celsius, at)| {
            let value = format!("{{\"sensor\":\"sensor-1\",\"celsius\":{celsius}}}");
            (Some("sensor-1".to_owned()), value, Some(minute + at))
        })
        .collect();
    c.produce_at("readings", &readings).await;
    // 75 s minus the manifest's 10 s lateness passes the first minute.
    let out = super::wait_for("the first minute's average", || async {
        c.read_all("sensor-averages").await.into_iter().next()
    })
    .await;
    let value: serde_json::Value = serde_json::from_slice(out.value.as_deref().unwrap()).unwrap();
    assert_eq!(
        value,
        serde_json::json!({
            "sensor": "sensor-1", "start": minute, "end": minute + 60_000,
            "readings": 2, "average": 20.75
        })
    );
}

#[test]
fn a_syntax_error_fails_the_build_with_the_toolchains_own_message() {
    let tmp = tempfile::tempdir().unwrap();
    eddy_in(
        tmp.path(),
        &["processor", "new", "broken", "--lang", "python"],
    );
    let dir = tmp.path().join("broken");
    std::fs::write(dir.join("processor.py"), "def process(:\n").unwrap();
    let out = crate::harness::eddy_command()
        .current_dir(&dir)
        .args(["processor", "build"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = stderr(&out);
    assert!(err.contains("SyntaxError"), "{err}");
    assert!(err.contains("fix what it reports above"), "{err}");
}

#[test]
fn the_demo_in_python_and_in_typescript_finds_the_alerts_the_rust_demo_finds() {
    let demo = |lang: &str| {
        let out = eddy(&[
            "demo",
            "--trucks",
            "100",
            "--positions",
            "10",
            "--lang",
            lang,
        ]);
        let printed = stdout(&out);
        assert!(out.status.success(), "{printed}\n{}", stderr(&out));
        printed
    };
    let alerts = |printed: &str| {
        printed
            .lines()
            .find(|l| l.starts_with("6. the pipeline wrote"))
            .unwrap_or_else(|| panic!("no alerts line in\n{printed}"))
            .to_owned()
    };
    // Built first, where the demo finds them: it builds nothing more.
    geofence_python();
    geofence_ts();
    let rust = demo("rust");
    for (lang, named) in [("python", "Python"), ("js", "TypeScript")] {
        let printed = demo(lang);
        assert!(
            printed.contains(&format!(
                "3. uploaded processor geofence version 1 ({named},"
            )),
            "{printed}"
        );
        assert!(printed.contains("dead-lettered 3"), "{printed}");
        assert_eq!(alerts(&printed), alerts(&rust), "{lang}");
    }
}

/// The running count written in `lang` (`python` or `js`).
fn count(lang: &str) -> PathBuf {
    let processors = Path::new(env!("CARGO_MANIFEST_DIR")).join("processors");
    match lang {
        "python" => built(
            "suite-projects/count-python",
            "count-python",
            &[(&processors.join("count.py"), "processor.py")],
            "python",
        ),
        _ => built(
            "suite-projects/count-js",
            "count-js",
            &[(&processors.join("count.js"), "processor.js")],
            "js",
        ),
    }
}

/// The keyed state works from the Python and JavaScript SDKs as from
/// Rust: `eddy processor test` (which keeps state in memory) gives the
/// same running counts, across batches of 7.
#[test]
fn running_counts_in_python_and_javascript_match_the_rust_plugin() {
    let input = cache_dir().join("suite-projects/count-input.jsonl");
    let lines: String = (0..500)
        .map(|i| format!("{{\"key\":\"k{}\",\"value\":\"x\"}}\n", (i * 7) % 13))
        .collect();
    std::fs::create_dir_all(input.parent().unwrap()).unwrap();
    std::fs::write(&input, lines).unwrap();
    let run = |processor: &Path| {
        let out = eddy(&[
            "processor",
            "test",
            processor.to_str().unwrap(),
            "--input",
            input.to_str().unwrap(),
            "--batch-size",
            "7",
        ]);
        assert!(out.status.success(), "{}", stderr(&out));
        stdout(&out)
    };
    let rust = run(Path::new(wasm::RUNNING_COUNT));
    assert_eq!(rust.lines().count(), 500);
    // Record 499 has key k9 (499 × 7 mod 13), the 39th of its key.
    assert!(
        rust.lines()
            .last()
            .unwrap()
            .contains("\"key\":\"k9\",\"value\":39"),
        "{}",
        rust.lines().last().unwrap()
    );
    for lang in ["python", "js"] {
        let processor = count(lang);
        assert_eq!(run(&processor), rust, "{lang} counts differ from Rust's");
    }
}

/// A stateful exactly-once pipeline in Python keeps its counts exact
/// through broker kills: the state is restored from the changelog.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_running_count_in_python_stays_exact_through_broker_kills() {
    let name = "a_running_count_in_python_stays_exact_through_broker_kills";
    let mut rng = Rng::from_env(name);
    let processor = tokio::task::block_in_place(|| count("python"));
    let mut c = cluster().await;
    c.create_topic("in", 4).await;
    c.upload("count", processor.to_str().unwrap());
    c.apply(&super::stateful::count_manifest());
    super::stateful::feed_through_broker_kills(&mut c, &mut rng, RECORDS, KILLS).await;
    super::stateful::assert_counts_exact(&c, RECORDS, name, rng.seed()).await;
}

/// Timers and windows work from the Python and JavaScript SDKs as from
/// Rust: the window counts of `tests/processors/window_count.{py,js}` are
/// those of `plugins/window-count`, with hopping windows, in batches of 5.
#[test]
fn window_counts_in_python_and_javascript_match_the_rust_plugin() {
    let processors = Path::new(env!("CARGO_MANIFEST_DIR")).join("processors");
    let input = cache_dir().join("suite-projects/window-input.jsonl");
    // 300 records of 7 keys over 10 minutes, out of order by up to 20 s.
    let lines: String = (0..300i64)
        .map(|i| {
            let ts = 1_700_000_000_000 + i * 2_000 - (i * 7_919 % 20_000);
            format!(
                "{{\"key\":\"k{}\",\"value\":\"x\",\"timestamp\":{ts}}}\n",
                i % 7
            )
        })
        .collect();
    std::fs::create_dir_all(input.parent().unwrap()).unwrap();
    std::fs::write(&input, lines).unwrap();
    let run = |processor: &Path| {
        let out = eddy(&[
            "processor",
            "test",
            processor.to_str().unwrap(),
            "--input",
            input.to_str().unwrap(),
            "--batch-size",
            "5",
            "--allowed-lateness-ms",
            "20000",
            "--param",
            "window_ms=60000",
            "--param",
            "advance_ms=20000",
            // Then the input goes quiet and the last windows close, in a
            // call without records.
            "--then-event-time",
            "1700001000000",
        ]);
        assert!(out.status.success(), "{}", stderr(&out));
        stdout(&out)
    };
    let rust = run(Path::new(wasm::WINDOW_COUNT));
    let counted: u64 = rust
        .lines()
        .map(|l| {
            let v: serde_json::Value = serde_json::from_str(l).unwrap();
            v["value"]["count"].as_u64().unwrap()
        })
        .sum();
    // Every record is in three hopping windows, all closed in the end.
    assert_eq!(counted, 3 * 300, "{rust}");
    let python = built(
        "suite-projects/window-python",
        "window-python",
        &[(&processors.join("window_count.py"), "processor.py")],
        "python",
    );
    let js = built(
        "suite-projects/window-js",
        "window-js",
        &[(&processors.join("window_count.js"), "processor.js")],
        "js",
    );
    assert_eq!(run(&python), rust, "Python's windows differ from Rust's");
    assert_eq!(run(&js), rust, "JavaScript's windows differ from Rust's");
}
