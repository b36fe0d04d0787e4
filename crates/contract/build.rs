//! Compiles `proto/` into Rust types at build time. `protox` parses the .proto files in pure Rust
//! (and ships the google/protobuf well-known types), so no system `protoc` is needed.

use std::path::PathBuf;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let proto_root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../proto");
    let files = [
        "bank/v1/transaction.proto",
        "bank/v1/customer.proto",
        "bank/v1/alert.proto",
    ];
    for file in &files {
        println!("cargo:rerun-if-changed={}", proto_root.join(file).display());
    }
    let descriptors = protox::compile(files, [&proto_root])?;
    prost_build::Config::new().compile_fds(descriptors)?;
    Ok(())
}
