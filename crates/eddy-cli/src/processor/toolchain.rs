//! The toolchains that build processors, installed on first use from the
//! package registries into Eddy's cache directory: componentize-py from
//! PyPI (its wheel carries CPython for WebAssembly), componentize-js and
//! TypeScript from npm, and the `wasm32-wasip2` target with rustup. Each
//! is pinned to a version known to build components this host runs.
//!
//! An install goes to a temporary directory that is renamed into place
//! when complete, so an interrupted install is started again and two
//! builds installing at once cannot mix their files.

use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::Duration;

use anyhow::{Context, bail};
use indicatif::{ProgressBar, ProgressStyle};

/// componentize-py, from PyPI.
pub const COMPONENTIZE_PY: &str = "componentize-py==0.25.1";
/// componentize-js and TypeScript, from npm.
const NODE_PACKAGES: &[(&str, &str)] = &[
    ("@bytecodealliance/componentize-js", "0.23.0"),
    ("typescript", "5.9.3"),
];

/// Eddy's cache: `EDDY_CACHE_DIR`, else `$XDG_CACHE_HOME/eddy`, else
/// `~/.cache/eddy`. Holds installed toolchains and compiled processors.
pub fn cache_dir() -> anyhow::Result<PathBuf> {
    if let Some(dir) = std::env::var_os("EDDY_CACHE_DIR").filter(|d| !d.is_empty()) {
        return Ok(PathBuf::from(dir));
    }
    if let Some(dir) = std::env::var_os("XDG_CACHE_HOME").filter(|d| !d.is_empty()) {
        return Ok(PathBuf::from(dir).join("eddy"));
    }
    match std::env::var_os("HOME").filter(|d| !d.is_empty()) {
        Some(home) => Ok(PathBuf::from(home).join(".cache").join("eddy")),
        None => bail!("cannot tell where to cache toolchains: set EDDY_CACHE_DIR (or HOME)"),
    }
}

/// componentize-py, installed: a directory to put on `PYTHONPATH`.
#[derive(Debug)]
pub struct Python {
    pub python: String,
    pub packages: PathBuf,
}

impl Python {
    /// A command running componentize-py with `args`.
    pub fn componentize_py(&self) -> Command {
        let mut cmd = Command::new(&self.python);
        cmd.env("PYTHONPATH", &self.packages)
            .env("PYTHONDONTWRITEBYTECODE", "1")
            .arg("-c")
            .arg("import sys; from componentize_py import script; sys.argv[0] = 'componentize-py'; sys.exit(script())");
        cmd
    }
}

/// Installs componentize-py if it is not in the cache yet.
pub fn python() -> anyhow::Result<Python> {
    let python = find_program(&["python3", "python"]).context(
        "building a Python processor needs Python 3 with pip (to install and run componentize-py); install it and try again",
    )?;
    let version = COMPONENTIZE_PY.replace("==", "-");
    let packages = cache_dir()?.join("toolchains").join(version);
    install_once(&packages, &format!("{COMPONENTIZE_PY} from PyPI"), |dir| {
        let mut cmd = Command::new(&python);
        cmd.args([
            "-m",
            "pip",
            "install",
            "--disable-pip-version-check",
            "--no-input",
            "--quiet",
            "--target",
        ])
        .arg(dir)
        .arg(COMPONENTIZE_PY);
        run_quietly(cmd, "pip install").map_err(|e| {
            anyhow::anyhow!(
                "{e}\ninstalling {COMPONENTIZE_PY} from PyPI failed: the first build of a Python processor needs to reach PyPI (check the network or pip's proxy settings); later builds work offline"
            )
        })
    })?;
    Ok(Python { python, packages })
}

/// componentize-js and TypeScript, installed.
#[derive(Debug)]
pub struct Node {
    pub node: String,
    pub modules: PathBuf,
}

impl Node {
    /// A command running componentize-js.
    pub fn componentize_js(&self) -> Command {
        let mut cmd = Command::new(&self.node);
        cmd.arg(
            self.modules
                .join("node_modules/@bytecodealliance/componentize-js/src/cli.js"),
        );
        cmd
    }

    /// A command running the TypeScript compiler.
    pub fn tsc(&self) -> Command {
        let mut cmd = Command::new(&self.node);
        cmd.arg(self.modules.join("node_modules/typescript/bin/tsc"));
        cmd
    }
}

/// Installs componentize-js and TypeScript if they are not in the cache yet.
pub fn node() -> anyhow::Result<Node> {
    let node = find_program(&["node"]).context(
        "building a JavaScript or TypeScript processor needs Node.js 18 or later with npm (to install and run componentize-js); install it and try again",
    )?;
    let npm = find_program(&["npm"])
        .context("building a JavaScript or TypeScript processor needs npm, which comes with Node.js; install it and try again")?;
    let key: String = NODE_PACKAGES
        .iter()
        .map(|(name, version)| format!("{}-{version}", name.rsplit('/').next().unwrap_or(name)))
        .collect::<Vec<_>>()
        .join("+");
    let modules = cache_dir()?.join("toolchains").join(key);
    let what = NODE_PACKAGES
        .iter()
        .map(|(name, version)| format!("{name}@{version}"))
        .collect::<Vec<_>>()
        .join(" and ");
    install_once(&modules, &format!("{what} from npm"), |dir| {
        let dependencies: serde_json::Map<String, serde_json::Value> = NODE_PACKAGES
            .iter()
            .map(|(name, version)| ((*name).to_owned(), serde_json::Value::from(*version)))
            .collect();
        let manifest = serde_json::json!({
            "name": "eddy-processor-toolchain",
            "private": true,
            "dependencies": dependencies,
        });
        std::fs::write(dir.join("package.json"), manifest.to_string())
            .context("writing the toolchain's package.json")?;
        let mut cmd = Command::new(&npm);
        cmd.current_dir(dir)
            .args(["install", "--no-audit", "--no-fund", "--loglevel=error"]);
        run_quietly(cmd, "npm install").map_err(|e| {
            anyhow::anyhow!(
                "{e}\ninstalling {what} from npm failed: the first build of a JavaScript or TypeScript processor needs to reach the npm registry (check the network or npm's proxy settings); later builds work offline"
            )
        })
    })?;
    Ok(Node { node, modules })
}

/// Adds the `wasm32-wasip2` target with rustup if it is missing.
pub fn rust() -> anyhow::Result<()> {
    find_program(&["cargo"]).context(
        "building a Rust processor needs cargo; install Rust with rustup (https://rustup.rs) and try again",
    )?;
    let installed = Command::new("rustup")
        .args(["target", "list", "--installed"])
        .output();
    match installed {
        Ok(out) if out.status.success() => {
            if String::from_utf8_lossy(&out.stdout)
                .lines()
                .any(|l| l.trim() == "wasm32-wasip2")
            {
                return Ok(());
            }
        }
        // Without rustup, cargo's own error will say if the target is missing.
        _ => return Ok(()),
    }
    let spinner =
        Spinner::start("installing the wasm32-wasip2 target (rustup target add wasm32-wasip2)");
    let mut cmd = Command::new("rustup");
    cmd.args(["target", "add", "wasm32-wasip2"]);
    let result = run_quietly(cmd, "rustup target add wasm32-wasip2");
    spinner.finish(result.is_ok());
    result
}

/// Runs `install` into a fresh directory beside `dir` and renames it into
/// place, unless `dir` is there already.
fn install_once(
    dir: &Path,
    what: &str,
    install: impl FnOnce(&Path) -> anyhow::Result<()>,
) -> anyhow::Result<()> {
    if dir.is_dir() {
        return Ok(());
    }
    let parent = dir.parent().context("a toolchain directory has a parent")?;
    std::fs::create_dir_all(parent).with_context(|| format!("creating {}", parent.display()))?;
    let staging = tempfile::Builder::new()
        .prefix(".installing-")
        .tempdir_in(parent)
        .with_context(|| format!("creating a directory in {}", parent.display()))?;
    let spinner = Spinner::start(&format!(
        "installing {what} (first use only; cached in {})",
        parent.display()
    ));
    let result = install(staging.path());
    spinner.finish(result.is_ok());
    result?;
    let staged = staging.keep();
    if let Err(e) = std::fs::rename(&staged, dir) {
        let _ = std::fs::remove_dir_all(&staged);
        // Another build finished the same install first: use that one.
        if !dir.is_dir() {
            return Err(e).with_context(|| format!("moving the install to {}", dir.display()));
        }
    }
    Ok(())
}

/// The first of `names` that runs (`NAME --version` succeeds).
fn find_program(names: &[&str]) -> anyhow::Result<String> {
    for name in names {
        let ok = Command::new(name)
            .arg("--version")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success());
        if ok {
            return Ok((*name).to_owned());
        }
    }
    bail!("none of {} was found on PATH", names.join(", "))
}

/// Runs `cmd`, keeping its output for the error when it fails.
pub fn run_quietly(mut cmd: Command, what: &str) -> anyhow::Result<()> {
    let out = cmd
        .stdin(Stdio::null())
        .output()
        .with_context(|| format!("running {what}"))?;
    check(&out, what)
}

/// Turns a failed run into an error carrying what the tool printed.
pub fn check(out: &Output, what: &str) -> anyhow::Result<()> {
    if out.status.success() {
        return Ok(());
    }
    let mut said = String::from_utf8_lossy(&out.stderr).trim().to_owned();
    let stdout = String::from_utf8_lossy(&out.stdout);
    if !stdout.trim().is_empty() {
        if !said.is_empty() {
            said.push('\n');
        }
        said.push_str(stdout.trim());
    }
    bail!("{what} failed ({}):\n{said}", out.status)
}

/// A spinner on a terminal, one line on stderr otherwise.
pub struct Spinner(ProgressBar);

impl Spinner {
    pub fn start(message: &str) -> Spinner {
        if !std::io::stderr().is_terminal() {
            eprintln!("{message}…");
            return Spinner(ProgressBar::hidden());
        }
        let bar = ProgressBar::new_spinner();
        if let Ok(style) = ProgressStyle::with_template("{spinner} {msg} {elapsed}") {
            bar.set_style(style);
        }
        bar.set_message(message.to_owned());
        bar.enable_steady_tick(Duration::from_millis(120));
        Spinner(bar)
    }

    pub fn finish(self, ok: bool) {
        if ok {
            self.0
                .finish_with_message(format!("{} done", self.0.message()));
        } else {
            self.0.abandon();
        }
    }
}
