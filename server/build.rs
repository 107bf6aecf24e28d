//! Generates the gRPC API's Rust code from `proto/brook/v1/brook.proto`. protox compiles the
//! file in Rust, so no `protoc` is needed; the descriptor set it makes is also written to
//! `OUT_DIR/brook_descriptor.bin` for server reflection.

use std::path::PathBuf;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let proto = "proto/brook/v1/brook.proto";
    println!("cargo:rerun-if-changed={proto}");
    let fds = protox::compile([proto], ["proto"])?;
    let out = PathBuf::from(std::env::var("OUT_DIR")?);
    std::fs::write(
        out.join("brook_descriptor.bin"),
        prost::Message::encode_to_vec(&fds),
    )?;
    tonic_prost_build::configure()
        .build_transport(false)
        .compile_fds(fds)?;
    Ok(())
}
