//! A processor project on disk: a directory with a `processor.toml` that
//! names the processor and its language. The SDK of that language and the
//! WIT world travel inside this binary: `processor new` writes them into
//! the project and every `processor build` writes them again, so a project
//! always builds against the contract of the `eddy` that builds it.

use std::fmt;
use std::fs;
use std::path::{Path, PathBuf};

use anyhow::{Context, bail};
use serde::Deserialize;
use sha2::{Digest as _, Sha256};

/// The file that marks a directory as a processor project.
pub const MANIFEST: &str = "processor.toml";
/// Where builds go, inside the project.
pub const BUILD_DIR: &str = "build";
/// The WIT world every processor implements.
pub const WORLD: &str = "eddy:processor/processor@0.2.1";

const WIT: &str = include_str!("../../../../wit/processor.wit");
const PYTHON_SDK: &str = include_str!("../../../../sdk/python/eddy_processor.py");
const JS_SDK: &str = include_str!("../../../../sdk/js/eddy-processor.js");
const JS_SDK_TYPES: &str = include_str!("../../../../sdk/js/eddy-processor.d.ts");

/// The Rust SDK (`crates/eddy-processor`), vendored into Rust projects as
/// a path dependency: it is not on crates.io.
const RUST_SDK: &[(&str, &str)] = &[
    (
        "src/lib.rs",
        include_str!("../../../eddy-processor/src/lib.rs"),
    ),
    (
        "src/batch.rs",
        include_str!("../../../eddy-processor/src/batch.rs"),
    ),
    (
        "src/output.rs",
        include_str!("../../../eddy-processor/src/output.rs"),
    ),
    (
        "src/params.rs",
        include_str!("../../../eddy-processor/src/params.rs"),
    ),
    (
        "src/state.rs",
        include_str!("../../../eddy-processor/src/state.rs"),
    ),
    (
        "src/timers.rs",
        include_str!("../../../eddy-processor/src/timers.rs"),
    ),
    (
        "src/windows.rs",
        include_str!("../../../eddy-processor/src/windows.rs"),
    ),
    (
        "src/json/mod.rs",
        include_str!("../../../eddy-processor/src/json/mod.rs"),
    ),
    (
        "src/json/scan.rs",
        include_str!("../../../eddy-processor/src/json/scan.rs"),
    ),
];

/// The vendored SDK's manifest: the workspace's versions, spelt out.
const RUST_SDK_MANIFEST: &str = r#"# The Eddy processor SDK for Rust, written by `eddy processor build`:
# do not edit (your changes would be overwritten).
[package]
name = "eddy-processor"
version = "0.1.0"
edition = "2024"
publish = false

[dependencies]
serde = { version = "1", default-features = false, features = ["std", "derive"] }
serde_json = { version = "1", features = ["preserve_order", "raw_value"] }
wit-bindgen = { version = "0.61.1", default-features = false, features = ["macros", "realloc"] }
"#;

/// Where the workspace's SDK finds the WIT world, and where the vendored
/// copy does (the project's own `wit/`).
const RUST_SDK_WIT_PATH: (&str, &str) = (r#"path: "../../wit""#, r#"path: "../wit""#);

/// A processor's language: which SDK and toolchain build it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Language {
    Rust,
    Python,
    Js,
    Ts,
}

impl fmt::Display for Language {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Language::Rust => "rust",
            Language::Python => "python",
            Language::Js => "js",
            Language::Ts => "ts",
        })
    }
}

/// `processor.toml`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Manifest {
    name: String,
    language: Language,
}

/// A processor project.
#[derive(Debug, Clone)]
pub struct Project {
    /// The project's directory, as an absolute path.
    pub dir: PathBuf,
    pub name: String,
    pub language: Language,
}

impl Project {
    /// The project in `dir`, which must hold a `processor.toml`.
    pub fn open(dir: &Path) -> anyhow::Result<Project> {
        let path = dir.join(MANIFEST);
        let text = match fs::read_to_string(&path) {
            Ok(text) => text,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => bail!(
                "{} is not a processor project: it has no {MANIFEST}; create one with `eddy processor new NAME --lang python|js|ts|rust`",
                dir.display()
            ),
            Err(e) => return Err(e).with_context(|| format!("reading {}", path.display())),
        };
        let manifest: Manifest = toml::from_str(&text).map_err(|e| {
            anyhow::anyhow!(
                "{} is not valid: {}; it needs `name = \"...\"` and `language = \"rust\" | \"python\" | \"js\" | \"ts\"`",
                path.display(),
                e.message()
            )
        })?;
        check_name(&manifest.name).with_context(|| format!("in {}", path.display()))?;
        // Absolute: the toolchains run in the project's directory.
        let dir = std::path::absolute(dir)
            .with_context(|| format!("finding the absolute path of {}", dir.display()))?;
        Ok(Project {
            dir,
            name: manifest.name,
            language: manifest.language,
        })
    }

    /// The component a build leaves.
    pub fn output(&self) -> PathBuf {
        self.dir.join(BUILD_DIR).join(format!("{}.wasm", self.name))
    }

    /// Writes the SDK and the WIT world into the project, replacing older
    /// copies; returns the files that changed.
    pub fn write_sdk(&self) -> anyhow::Result<Vec<PathBuf>> {
        let mut changed = Vec::new();
        for (path, contents) in sdk_files(self.language) {
            let path = self.dir.join(path);
            if write_file(&path, &contents)? {
                changed.push(path);
            }
        }
        Ok(changed)
    }

    /// A digest of everything a build reads: the project's files (but its
    /// build outputs and installed packages) and this binary's SDK. Equal
    /// digests mean an earlier build can be reused.
    pub fn source_digest(&self) -> anyhow::Result<String> {
        let mut files = Vec::new();
        collect_sources(&self.dir, &self.dir, &mut files)?;
        files.sort();
        let mut hash = Sha256::new();
        hash.update(env!("CARGO_PKG_VERSION").as_bytes());
        hash.update(self.language.to_string().as_bytes());
        for (relative, contents) in sdk_files(self.language) {
            hash.update(relative.as_bytes());
            hash.update(contents.as_bytes());
        }
        for relative in files {
            let contents = fs::read(self.dir.join(&relative))
                .with_context(|| format!("reading {}", relative.display()))?;
            hash.update(relative.to_string_lossy().as_bytes());
            hash.update((contents.len() as u64).to_le_bytes());
            hash.update(&contents);
        }
        Ok(hash.finalize().iter().map(|b| format!("{b:02x}")).collect())
    }
}

/// Writes `contents` to `path`, making its directory, unless the file
/// already holds exactly that (so an unchanged project is not rebuilt);
/// returns whether it wrote.
pub fn write_file(path: &Path, contents: &str) -> anyhow::Result<bool> {
    if fs::read(path).is_ok_and(|old| old == contents.as_bytes()) {
        return Ok(false);
    }
    if let Some(parent) = path.parent() {
        fs::create_dir_all(parent).with_context(|| format!("creating {}", parent.display()))?;
    }
    fs::write(path, contents).with_context(|| format!("writing {}", path.display()))?;
    Ok(true)
}

/// Directories a build writes or a package manager fills: not sources.
const NOT_SOURCES: &[&str] = &[BUILD_DIR, "target", "node_modules", "__pycache__", ".git"];

fn collect_sources(root: &Path, dir: &Path, out: &mut Vec<PathBuf>) -> anyhow::Result<()> {
    for entry in fs::read_dir(dir).with_context(|| format!("reading {}", dir.display()))? {
        let entry = entry?;
        let name = entry.file_name();
        if NOT_SOURCES.iter().any(|n| name == *n) {
            continue;
        }
        let path = entry.path();
        let kind = entry.file_type()?;
        if kind.is_dir() {
            collect_sources(root, &path, out)?;
        } else if kind.is_file() {
            out.push(path.strip_prefix(root).unwrap_or(&path).to_owned());
        }
    }
    Ok(())
}

/// A project name: what `new` accepts, and what every toolchain takes as
/// a package or file name.
pub fn check_name(name: &str) -> anyhow::Result<()> {
    let ok = name.len() <= 64
        && name.starts_with(|c: char| c.is_ascii_lowercase())
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '_');
    if !ok {
        bail!(
            "{name:?} is not a valid processor name: use a lowercase letter, then up to 63 lowercase letters, digits, '-' or '_'"
        );
    }
    Ok(())
}

/// The SDK files of `language`, relative to the project, with their
/// contents.
pub fn sdk_files(language: Language) -> Vec<(String, String)> {
    let mut files = vec![("wit/processor.wit".to_owned(), WIT.to_owned())];
    let mut add = |path: &str, contents: &str| files.push((path.to_owned(), contents.to_owned()));
    match language {
        Language::Python => add("eddy_processor.py", PYTHON_SDK),
        Language::Js => {
            add("eddy-processor.js", JS_SDK);
            add("eddy-processor.d.ts", JS_SDK_TYPES);
        }
        Language::Ts => {
            add("src/eddy-processor.js", JS_SDK);
            add("src/eddy-processor.d.ts", JS_SDK_TYPES);
        }
        Language::Rust => {
            add("eddy-processor/Cargo.toml", RUST_SDK_MANIFEST);
            for (path, contents) in RUST_SDK {
                let contents = if *path == "src/lib.rs" {
                    contents.replace(RUST_SDK_WIT_PATH.0, RUST_SDK_WIT_PATH.1)
                } else {
                    (*contents).to_owned()
                };
                add(&format!("eddy-processor/{path}"), &contents);
            }
        }
    }
    files
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    /// Every source file of `crates/eddy-processor` is vendored: a module
    /// left out breaks every Rust project's build.
    #[test]
    fn the_vendored_rust_sdk_has_every_file_of_the_crate() {
        fn sources(dir: &std::path::Path, base: &std::path::Path, out: &mut Vec<String>) {
            for entry in std::fs::read_dir(dir).unwrap() {
                let path = entry.unwrap().path();
                if path.is_dir() {
                    sources(&path, base, out);
                } else if path.extension().is_some_and(|e| e == "rs") {
                    let relative = path.strip_prefix(base).unwrap();
                    out.push(relative.to_string_lossy().into_owned());
                }
            }
        }
        let crate_dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../eddy-processor");
        let mut on_disk = Vec::new();
        sources(&crate_dir.join("src"), &crate_dir, &mut on_disk);
        on_disk.sort();
        let mut vendored: Vec<String> = RUST_SDK.iter().map(|(p, _)| p.to_string()).collect();
        vendored.sort();
        assert_eq!(vendored, on_disk);
    }

    #[test]
    fn the_vendored_rust_sdk_finds_the_projects_wit() {
        assert!(RUST_SDK[0].1.contains(RUST_SDK_WIT_PATH.0));
        let files = sdk_files(Language::Rust);
        let lib = files
            .iter()
            .find(|(p, _)| p == "eddy-processor/src/lib.rs")
            .unwrap();
        assert!(lib.1.contains(RUST_SDK_WIT_PATH.1), "{}", lib.1);
    }

    #[test]
    fn names_are_checked() {
        assert!(check_name("geofence-2").is_ok());
        for bad in ["", "Geo", "1geo", "geo fence", "geo/fence", &"a".repeat(65)] {
            assert!(check_name(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn a_directory_without_a_manifest_is_refused_saying_how_to_make_one() {
        let tmp = tempfile::tempdir().unwrap();
        let err = Project::open(tmp.path()).unwrap_err().to_string();
        assert!(err.contains("eddy processor new"), "{err}");
        fs::write(
            tmp.path().join(MANIFEST),
            "name = \"x\"\nlanguage = \"cobol\"\n",
        )
        .unwrap();
        let err = Project::open(tmp.path()).unwrap_err().to_string();
        assert!(err.contains("language"), "{err}");
    }
}
