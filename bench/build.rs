//! Generates the helloworld Greeter twice from the same protox descriptors: once with
//! micro-build (for micro), once with tonic-prost-build (for tonic).

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let proto = "../examples/helloworld/proto/helloworld.proto";
    micro_build::compile_protos(&[proto], &["../examples/helloworld/proto"])?;
    let fds = protox::compile([proto], ["../examples/helloworld/proto"])?;
    let out = std::path::PathBuf::from(std::env::var("OUT_DIR")?).join("tonic");
    std::fs::create_dir_all(&out)?;
    tonic_prost_build::configure().build_client(false).out_dir(&out).compile_fds(fds)?;
    Ok(())
}
