//! Generates the code of the test protos and of the codegen corpus (so the corpus must compile).

fn main() -> Result<(), Box<dyn std::error::Error>> {
    micro_build::compile_protos(&["proto/testing.proto"], &["proto"])?;
    // Every form of google.api.http, and the OpenAPI document written at build time.
    micro_build::configure()
        .openapi("library.openapi.json", "go.micro.api.library")
        .compile_protos(&["proto/library.proto"], &["proto", "../protoc-gen-micro/tests/protos"])?;
    micro_build::configure()
        .build_client(false)
        .build_server(false)
        .compile_protos(&["../fuzz/proto/fuzz.proto"], &["../fuzz/proto"])?;
    let corpus = std::path::Path::new("../protoc-gen-micro/tests/protos");
    let out = std::path::PathBuf::from(std::env::var("OUT_DIR")?).join("corpus");
    std::fs::create_dir_all(&out)?;
    micro_build::configure().out_dir(out).include_file("mod.rs").compile_protos(
        &[corpus.join("corpus/types.proto"), corpus.join("corpus/shop.proto"), corpus.join("corpus/nopackage.proto")],
        &[corpus],
    )?;
    // Collisions, well-known rpc types, proto2 and a cross-package import, without an include
    // file: the crate nests the packages' modules itself.
    let plain = std::path::PathBuf::from(std::env::var("OUT_DIR")?).join("plain");
    std::fs::create_dir_all(&plain)?;
    micro_build::configure().out_dir(plain).compile_protos(
        &[corpus.join("corpus/collide.proto"), corpus.join("corpus/legacy.proto"), corpus.join("corpus/uses.proto")],
        &[corpus],
    )?;
    Ok(())
}
