//! Generates Rust from `proto/{{ alias }}/{{ alias }}.proto` at build time (no protoc needed).

fn main() -> Result<(), Box<dyn std::error::Error>> {
    micro_build::compile_protos(&["proto/{{ alias }}/{{ alias }}.proto"], &["proto"])?;
    Ok(())
}
