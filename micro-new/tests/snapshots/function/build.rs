//! Generates Rust from `proto/example/example.proto` at build time (no protoc needed).

fn main() -> Result<(), Box<dyn std::error::Error>> {
    micro_build::compile_protos(&["proto/example/example.proto"], &["proto"])?;
    Ok(())
}
