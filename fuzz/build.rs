//! Generates the message the json_codec target decodes into.

fn main() -> Result<(), Box<dyn std::error::Error>> {
    micro_build::configure()
        .build_client(false)
        .build_server(false)
        .compile_protos(&["proto/fuzz.proto"], &["proto"])?;
    Ok(())
}
