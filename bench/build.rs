//! Generates the helloworld Greeter for tonic with tonic-prost-build, from protox descriptors of
//! the same proto the helloworld example generates for micro with micro-build.

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let proto = "../examples/helloworld/proto/helloworld.proto";
    let fds = protox::compile([proto], ["../examples/helloworld/proto"])?;
    let out = std::path::PathBuf::from(std::env::var("OUT_DIR")?).join("tonic");
    std::fs::create_dir_all(&out)?;
    tonic_prost_build::configure().out_dir(&out).compile_fds(fds)?;
    Ok(())
}
