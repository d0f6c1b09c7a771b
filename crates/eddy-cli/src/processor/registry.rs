//! `eddy processor upload|list|describe|delete`: the cluster's registry.

use std::io::IsTerminal;
use std::path::PathBuf;
use std::time::{Duration, UNIX_EPOCH};

use anyhow::Context;
use bytes::Bytes;
use clap::Args;
use eddy_client::Processors;
use eddy_proto::v1::ProcessorVersion;
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

use crate::out::outln;
use crate::{Connection, connect};

/// Arguments of `eddy processor upload`.
#[derive(Debug, Args)]
pub struct UploadArgs {
    /// The processor's name: 1 to 128 characters from [a-zA-Z0-9._-].
    pub name: String,
    /// The component (a `.wasm` file), or a processor project's directory,
    /// built first if its sources changed since its last build.
    #[arg(value_name = "FILE.wasm|DIR")]
    pub wasm: PathBuf,
}

pub async fn upload(args: UploadArgs, conn: &Connection) -> anyhow::Result<()> {
    let path = args.wasm.clone();
    let wasm = tokio::task::spawn_blocking(move || super::builder::component_at(&path))
        .await
        .context("the build did not finish")??;
    let bytes = std::fs::read(&wasm).with_context(|| format!("reading {}", wasm.display()))?;
    let total = bytes.len() as u64;
    let registry = Processors::new(connect(conn).await?);
    let bar = progress_bar(total);
    let shown = bar.clone();
    let result = registry
        .upload(&args.name, Bytes::from(bytes), move |sent| {
            shown.set_position(sent)
        })
        .await;
    bar.finish_and_clear();
    let response = result.with_context(|| format!("uploading {}", wasm.display()))?;
    let v = response
        .version
        .context("the broker answered without a version")?;
    if response.existed {
        outln!(
            "{} version {} already has these bytes; nothing changed (sha256 {}, {})",
            v.name,
            v.version,
            v.sha256,
            size(v.size_bytes)
        );
    } else {
        outln!(
            "uploaded {} version {} (sha256 {}, {})",
            v.name,
            v.version,
            v.sha256,
            size(v.size_bytes)
        );
    }
    Ok(())
}

/// A progress bar on a terminal; hidden when stdout is a file or a pipe.
fn progress_bar(total: u64) -> ProgressBar {
    if !std::io::stdout().is_terminal() {
        return ProgressBar::hidden();
    }
    let bar = ProgressBar::with_draw_target(Some(total), ProgressDrawTarget::stdout());
    if let Ok(style) =
        ProgressStyle::with_template("uploading {wide_bar} {bytes}/{total_bytes} {bytes_per_sec}")
    {
        bar.set_style(style);
    }
    bar.enable_steady_tick(Duration::from_millis(100));
    bar
}

pub async fn list(conn: &Connection) -> anyhow::Result<()> {
    let processors = Processors::new(connect(conn).await?).list().await?;
    outln!(
        "{:<30} {:>7} {:<14} {:>10}  {}",
        "NAME",
        "VERSION",
        "SHA256",
        "SIZE",
        "UPLOADED"
    );
    for p in processors {
        let Some(v) = p.latest else { continue };
        outln!(
            "{:<30} {:>7} {:<14} {:>10}  {}",
            v.name,
            v.version,
            &v.sha256[..v.sha256.len().min(12)],
            size(v.size_bytes),
            when(&v)
        );
    }
    Ok(())
}

pub async fn describe(name: &str, conn: &Connection) -> anyhow::Result<()> {
    let d = Processors::new(connect(conn).await?).describe(name).await?;
    outln!("processor {}  versions {}", d.name, d.versions.len());
    outln!(
        "{:>7} {:<64} {:>10}  {:<20}  USED BY",
        "VERSION",
        "SHA256",
        "SIZE",
        "UPLOADED"
    );
    for v in &d.versions {
        outln!(
            "{:>7} {:<64} {:>10}  {:<20}  {}",
            v.version,
            v.sha256,
            size(v.size_bytes),
            when(v),
            v.used_by.join(", ")
        );
    }
    Ok(())
}

pub async fn delete(name: &str, version: Option<u32>, conn: &Connection) -> anyhow::Result<()> {
    let deleted = Processors::new(connect(conn).await?)
        .delete(name, version)
        .await?;
    let list: Vec<String> = deleted.iter().map(u32::to_string).collect();
    outln!("deleted {name} version(s) {}", list.join(", "));
    Ok(())
}

/// Bytes in the largest unit that keeps a number ≥ 1.
pub fn size(bytes: u64) -> String {
    const UNITS: [&str; 4] = ["B", "KiB", "MiB", "GiB"];
    let mut value = bytes as f64;
    let mut unit = 0;
    while value >= 1024.0 && unit + 1 < UNITS.len() {
        value /= 1024.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{bytes} B")
    } else {
        format!("{value:.1} {}", UNITS[unit])
    }
}

fn when(v: &ProcessorVersion) -> String {
    let at = UNIX_EPOCH + Duration::from_millis(u64::try_from(v.uploaded_at_ms).unwrap_or(0));
    humantime::format_rfc3339_seconds(at).to_string()
}
