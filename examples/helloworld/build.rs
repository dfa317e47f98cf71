//! Generates the helloworld code from proto/helloworld.proto (no protoc needed).

fn main() -> Result<(), Box<dyn std::error::Error>> {
    micro_build::compile_protos(&["proto/helloworld.proto"], &["proto"])?;
    Ok(())
}
