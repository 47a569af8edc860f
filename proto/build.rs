//! Compiles `keyward/v1/*.proto` with protox (pure Rust, no system protoc) and writes the
//! descriptor set used by server reflection.
use prost::Message;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let files = [
        "keyward/v1/group.proto",
        "keyward/v1/key.proto",
        "keyward/v1/audit.proto",
        "keyward/v1/crypto.proto",
        "keyward/v1/principal.proto",
    ];
    for f in files {
        println!("cargo:rerun-if-changed={f}");
    }
    let fds = protox::compile(files, ["."])?;
    let out = std::path::PathBuf::from(std::env::var("OUT_DIR")?);
    std::fs::write(out.join("keyward_descriptor.bin"), fds.encode_to_vec())?;
    tonic_prost_build::configure().build_server(true).build_client(true).compile_fds(fds)?;
    Ok(())
}
