//! Generates the code of the test protos.

fn main() -> Result<(), Box<dyn std::error::Error>> {
    micro_build::compile_protos(&["proto/testing.proto"], &["proto"])?;
    Ok(())
}
