//! Generates the client of Brook's gRPC API from the server's proto file (no `protoc`:
//! protox compiles it in Rust), for `brook grpc://host:port`.

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let proto = "../server/proto/brook/v1/brook.proto";
    println!("cargo:rerun-if-changed={proto}");
    let fds = protox::compile([proto], ["../server/proto"])?;
    tonic_prost_build::configure()
        .build_server(false)
        .build_transport(false)
        .compile_fds(fds)?;
    Ok(())
}
