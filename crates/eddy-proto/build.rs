//! Compiles `proto/` with protox (pure Rust, so no system `protoc` is
//! needed) and generates prost messages and tonic services from it. Bytes
//! fields become `bytes::Bytes`, so record batches move without copies.

use std::path::PathBuf;

use prost::Message;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let files = [
        "common",
        "cluster",
        "admin",
        "produce",
        "consume",
        "groups",
        "processors",
        "pipelines",
        "controller",
        "replication",
        "security",
    ]
    .map(|f| format!("proto/eddy/v1/{f}.proto"));
    for f in &files {
        println!("cargo:rerun-if-changed={f}");
    }
    let fds = protox::compile(&files, ["proto"])?;
    let out = PathBuf::from(std::env::var("OUT_DIR")?);
    std::fs::write(out.join("eddy_descriptor.bin"), fds.encode_to_vec())?;
    tonic_prost_build::configure()
        .bytes(".")
        .build_client(true)
        .build_server(true)
        .compile_fds(fds)?;
    Ok(())
}
