//! `eddy processor new NAME --lang …`: a ready project — the processor
//! with a small working example (keep the hot temperature readings; with
//! `--stateful`, each sensor's average per minute in event-time windows
//! kept in the keyed state), sample records and the outputs they should
//! give (the project's test), a pipeline manifest, a README, and the SDK
//! with the WIT contract.

use std::fs;
use std::path::{Path, PathBuf};

use anyhow::{Context, bail};
use clap::Args;

use super::project::{self, Language, MANIFEST, Project};
use crate::out::outln;

/// Arguments of `eddy processor new`.
#[derive(Debug, Args)]
pub struct NewArgs {
    /// The processor's name: a lowercase letter, then lowercase letters,
    /// digits, '-' or '_'.
    pub name: String,
    /// The language to write it in.
    #[arg(long, value_enum)]
    pub lang: Language,
    /// Where to create the project (default: ./NAME). It must not exist, or
    /// be empty.
    #[arg(long, value_name = "DIR")]
    pub dir: Option<PathBuf>,
    /// A stateful example instead: each sensor's average reading per
    /// minute, in event-time windows kept in the pipeline's keyed state and
    /// emitted when they close (its manifest declares `state` and
    /// `eventTime`).
    #[arg(long)]
    pub stateful: bool,
}

/// Files every project gets.
const COMMON: &[(&str, &str)] = &[
    ("README.md", include_str!("../../templates/README.md")),
    (".gitignore", include_str!("../../templates/gitignore")),
];

/// The example's records, outputs and manifest.
const STATELESS_EXAMPLE: &[(&str, &str)] = &[
    ("sample.jsonl", include_str!("../../templates/sample.jsonl")),
    (
        "expected.jsonl",
        include_str!("../../templates/expected.jsonl"),
    ),
    (
        "pipeline.yaml",
        include_str!("../../templates/pipeline.yaml"),
    ),
];
const STATEFUL_EXAMPLE: &[(&str, &str)] = &[
    (
        "sample.jsonl",
        include_str!("../../templates/stateful/sample.jsonl"),
    ),
    (
        "expected.jsonl",
        include_str!("../../templates/stateful/expected.jsonl"),
    ),
    (
        "pipeline.yaml",
        include_str!("../../templates/stateful/pipeline.yaml"),
    ),
];

/// How the README's walkthrough differs between the two examples.
struct Example {
    files: &'static [(&'static str, &'static str)],
    param_example: &'static str,
    output_topic: &'static str,
    run_note: &'static str,
}

const STATELESS: Example = Example {
    files: STATELESS_EXAMPLE,
    param_example: "--param threshold=35",
    output_topic: "hot-readings",
    run_note: "",
};
const STATEFUL: Example = Example {
    files: STATEFUL_EXAMPLE,
    param_example: "--param window_ms=30000",
    output_topic: "sensor-averages",
    run_note: "\nA window's average comes out once event time passes the window's end:\n\
               when a later reading arrives, or, with the input quiet, 10 s of wall\n\
               clock after it (`idleTimeoutMs` in pipeline.yaml), so `consume`\n\
               above may wait up to about 70 s. The windows live in the keyed\n\
               state; `eddy pipeline describe` shows its keys and the watermark.\n\
               `eddy processor test . --then-event-time MS` closes the open windows\n\
               after the input.\n",
};

/// The language's own files, and how the README talks about them.
struct Template {
    files: &'static [(&'static str, &'static str)],
    language: &'static str,
    source: &'static str,
    sdk: &'static str,
    toolchain: &'static str,
}

fn template(lang: Language, stateful: bool) -> Template {
    if stateful {
        return stateful_template(lang);
    }
    match lang {
        Language::Python => Template {
            files: &[("processor.py", include_str!("../../templates/processor.py"))],
            language: "Python",
            source: "processor.py",
            sdk: "`eddy_processor.py`, `wit/`",
            toolchain: "installs componentize-py from PyPI on first use",
        },
        Language::Js => Template {
            files: &[("processor.js", include_str!("../../templates/processor.js"))],
            language: "JavaScript",
            source: "processor.js",
            sdk: "`eddy-processor.js`, `eddy-processor.d.ts`, `wit/`",
            toolchain: "installs componentize-js from npm on first use",
        },
        Language::Ts => Template {
            files: &[
                (
                    "src/processor.ts",
                    include_str!("../../templates/processor.ts"),
                ),
                (
                    "tsconfig.json",
                    include_str!("../../templates/tsconfig.json"),
                ),
            ],
            language: "TypeScript",
            source: "src/processor.ts",
            sdk: "`src/eddy-processor.js`, `src/eddy-processor.d.ts`, `wit/`",
            toolchain: "installs TypeScript and componentize-js from npm on first use",
        },
        Language::Rust => Template {
            files: &[
                ("src/lib.rs", include_str!("../../templates/lib.rs")),
                ("Cargo.toml", include_str!("../../templates/Cargo.toml")),
                (
                    ".cargo/config.toml",
                    include_str!("../../templates/cargo/config.toml"),
                ),
            ],
            language: "Rust",
            source: "src/lib.rs",
            sdk: "`eddy-processor/`, `wit/`",
            toolchain: "adds the wasm32-wasip2 target with rustup on first use",
        },
    }
}

/// The stateful example's sources: the same layout as the stateless ones.
fn stateful_template(lang: Language) -> Template {
    let stateless = template(lang, false);
    let files: &'static [(&'static str, &'static str)] = match lang {
        Language::Python => &[(
            "processor.py",
            include_str!("../../templates/stateful/processor.py"),
        )],
        Language::Js => &[(
            "processor.js",
            include_str!("../../templates/stateful/processor.js"),
        )],
        Language::Ts => &[
            (
                "src/processor.ts",
                include_str!("../../templates/stateful/processor.ts"),
            ),
            (
                "tsconfig.json",
                include_str!("../../templates/tsconfig.json"),
            ),
        ],
        Language::Rust => &[
            (
                "src/lib.rs",
                include_str!("../../templates/stateful/lib.rs"),
            ),
            ("Cargo.toml", include_str!("../../templates/Cargo.toml")),
            (
                ".cargo/config.toml",
                include_str!("../../templates/cargo/config.toml"),
            ),
        ],
    };
    Template { files, ..stateless }
}

pub fn new(args: NewArgs) -> anyhow::Result<()> {
    project::check_name(&args.name)?;
    let dir = args
        .dir
        .clone()
        .unwrap_or_else(|| PathBuf::from(&args.name));
    check_empty(&dir)?;
    let t = template(args.lang, args.stateful);
    let example = if args.stateful { STATEFUL } else { STATELESS };
    let fill = |text: &str| {
        text.replace("{{name}}", &args.name)
            .replace("{{language}}", t.language)
            .replace("{{source}}", t.source)
            .replace("{{sdk}}", t.sdk)
            .replace("{{toolchain}}", t.toolchain)
            .replace("{{param_example}}", example.param_example)
            .replace("{{output_topic}}", example.output_topic)
            .replace("{{run_note}}", example.run_note)
    };
    let manifest = format!(
        "# An Eddy processor project: `eddy processor build` reads this.\nname = \"{}\"\nlanguage = \"{}\"\n",
        args.name, args.lang
    );
    write(&dir, MANIFEST, &manifest)?;
    for (path, text) in COMMON.iter().chain(example.files).chain(t.files) {
        write(&dir, path, &fill(text))?;
    }
    let project = Project::open(&dir)?;
    project.write_sdk()?;
    let shown = dir.display();
    outln!(
        "created {shown}/: a {} processor ({}), with sample.jsonl, expected.jsonl, pipeline.yaml and a README",
        t.language,
        t.source
    );
    outln!("next:");
    outln!("  cd {shown}");
    outln!("  eddy processor build      # {}", t.toolchain);
    outln!("  eddy processor test .     # runs sample.jsonl, checks expected.jsonl");
    outln!("  eddy processor upload {} .", args.name);
    Ok(())
}

fn check_empty(dir: &Path) -> anyhow::Result<()> {
    match fs::read_dir(dir) {
        Ok(mut entries) => {
            if entries.next().is_some() {
                bail!(
                    "{} exists and is not empty; choose another name or --dir",
                    dir.display()
                );
            }
            Ok(())
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(e).with_context(|| format!("reading {}", dir.display())),
    }
}

fn write(dir: &Path, relative: &str, contents: &str) -> anyhow::Result<()> {
    project::write_file(&dir.join(relative), contents).map(|_| ())
}
