//! `eddy processor build`: turns a project into a component with its
//! language's toolchain — componentize-py, componentize-js (after tsc for
//! TypeScript), or cargo — and leaves it in `build/NAME.wasm`.
//!
//! A build first writes this binary's SDK and WIT world into the project.
//! It records a digest of its sources beside the component, so that
//! `processor test DIR` and `processor upload NAME DIR` build only when
//! something changed.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, bail};

use super::project::{BUILD_DIR, Language, Project, WORLD};
use super::toolchain::{self, Spinner};

/// Builds `project` and returns the component's path.
pub fn build(project: &Project) -> anyhow::Result<PathBuf> {
    // First the SDK, so that a new eddy's SDK counts as a change.
    for path in project.write_sdk()? {
        let relative = path.strip_prefix(&project.dir).unwrap_or(&path);
        eprintln!("wrote {} (from this eddy's SDK)", relative.display());
    }
    let out_dir = project.dir.join(BUILD_DIR);
    fs::create_dir_all(&out_dir).with_context(|| format!("creating {}", out_dir.display()))?;
    let output = project.output();
    // A failed build must not leave an older component looking current.
    let _ = fs::remove_file(stamp_path(project));
    match project.language {
        Language::Python => python(project, &output)?,
        Language::Js => js(project, &project.dir.join("processor.js"), &output)?,
        Language::Ts => ts(project, &output)?,
        Language::Rust => rust(project, &output)?,
    }
    // Taken after the build, which may add inputs of its own (Cargo.lock).
    let digest = project.source_digest()?;
    fs::write(stamp_path(project), digest).context("recording the build's sources")?;
    Ok(output)
}

/// The project's component, built first if its sources (or this eddy's
/// SDK) changed since the last build, or it was never built.
pub fn built(project: &Project) -> anyhow::Result<PathBuf> {
    if up_to_date(project)? {
        return Ok(project.output());
    }
    build(project)
}

/// Whether the last build's component is there and was built from the
/// sources and SDK the project has now.
pub fn up_to_date(project: &Project) -> anyhow::Result<bool> {
    let Ok(recorded) = fs::read_to_string(stamp_path(project)) else {
        return Ok(false);
    };
    // The digest covers this eddy's SDK too: a new eddy builds again.
    Ok(project.output().is_file() && recorded == project.source_digest()?)
}

/// The path `eddy processor test|upload` takes: a component as is, or a
/// project directory, built when needed.
pub fn component_at(path: &Path) -> anyhow::Result<PathBuf> {
    if !path.is_dir() {
        return Ok(path.to_owned());
    }
    let project = Project::open(path)?;
    let wasm = built(&project)?;
    Ok(wasm)
}

fn stamp_path(project: &Project) -> PathBuf {
    project.dir.join(BUILD_DIR).join(".sources-sha256")
}

fn python(project: &Project, output: &Path) -> anyhow::Result<()> {
    let python = toolchain::python()?;
    let mut cmd = python.componentize_py();
    cmd.current_dir(&project.dir)
        .args([
            "-d",
            "wit",
            "-w",
            WORLD,
            "componentize",
            "-p",
            ".",
            "processor",
            "-o",
        ])
        .arg(output);
    run_build(cmd, project, "componentize-py", "processor.py")
}

fn js(project: &Project, entry: &Path, output: &Path) -> anyhow::Result<()> {
    let node = toolchain::node()?;
    let mut cmd = node.componentize_js();
    cmd.current_dir(&project.dir)
        .arg(entry)
        .arg("--wit")
        .arg(project.dir.join("wit"))
        .args(["--world-name", WORLD, "--out"])
        .arg(output);
    run_build(cmd, project, "componentize-js", "processor.js")
}

fn ts(project: &Project, output: &Path) -> anyhow::Result<()> {
    let node = toolchain::node()?;
    let js_dir = project.dir.join(BUILD_DIR).join("js");
    let mut tsc = node.tsc();
    tsc.current_dir(&project.dir)
        .args(["-p", "tsconfig.json", "--outDir"])
        .arg(&js_dir);
    run_build(tsc, project, "tsc", "src/processor.ts")?;
    // The SDK is JavaScript with a declaration file: tsc does not emit it.
    let sdk = "eddy-processor.js";
    fs::copy(project.dir.join("src").join(sdk), js_dir.join(sdk))
        .with_context(|| format!("copying src/{sdk} to {}", js_dir.display()))?;
    js(project, &js_dir.join("processor.js"), output)
}

fn rust(project: &Project, output: &Path) -> anyhow::Result<()> {
    toolchain::rust()?;
    let mut cmd = Command::new("cargo");
    cmd.current_dir(&project.dir)
        .args(["build", "--release", "--target", "wasm32-wasip2"]);
    run_build(cmd, project, "cargo build", "src/lib.rs")?;
    let built = project
        .dir
        .join("target/wasm32-wasip2/release")
        .join(format!("{}.wasm", project.name.replace('-', "_")));
    fs::copy(&built, output).with_context(|| {
        format!(
            "copying {} to {}; is the package name in Cargo.toml still {:?}?",
            built.display(),
            output.display(),
            project.name
        )
    })?;
    Ok(())
}

/// Runs one build step with a spinner; a failure carries the tool's own
/// messages and what to look at.
fn run_build(cmd: Command, project: &Project, tool: &str, source: &str) -> anyhow::Result<()> {
    let spinner = Spinner::start(&format!(
        "building {} ({}) with {tool}",
        project.name, project.language
    ));
    let result = toolchain::run_quietly(cmd, tool);
    spinner.finish(result.is_ok());
    if let Err(e) = result {
        bail!(
            "{e:#}\nthe build of {} stopped in {tool}: fix what it reports above (usually in {source}) and run `eddy processor build` again",
            project.dir.display()
        );
    }
    Ok(())
}
