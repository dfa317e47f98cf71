//! `protoc-gen-micro`: the protoc plugin. Reads a `CodeGeneratorRequest` on stdin, writes a
//! `CodeGeneratorResponse` on stdout with one Rust file per proto package.

use std::io::{Read, Write};

use prost::Message;
use prost_types::compiler::{code_generator_response, CodeGeneratorResponse};

/// The parts of `CodeGeneratorRequest` we read, with files kept as raw bytes so that options'
/// extensions (`google.api.http`) survive.
#[derive(Clone, PartialEq, Message)]
struct Request {
    #[prost(string, repeated, tag = "1")]
    file_to_generate: Vec<String>,
    #[prost(string, optional, tag = "2")]
    parameter: Option<String>,
    #[prost(bytes = "vec", repeated, tag = "15")]
    proto_file: Vec<Vec<u8>>,
}

/// `FileDescriptorSet` with raw files.
#[derive(Clone, PartialEq, Message)]
struct RawSet {
    #[prost(bytes = "vec", repeated, tag = "1")]
    file: Vec<Vec<u8>>,
}

fn config(parameter: &str) -> Result<micro_build::Config, String> {
    // Plugin output is usually committed, so all of it is pretty-printed (`format=false` skips it).
    let mut cfg = micro_build::configure().format(true);
    for opt in parameter.split(',').map(str::trim).filter(|s| !s.is_empty()) {
        let (key, value) = opt.split_once('=').unwrap_or((opt, "true"));
        let flag = || match value {
            "true" => Ok(true),
            "false" => Ok(false),
            _ => Err(format!("option {key} takes true or false, not {value:?}")),
        };
        cfg = match key {
            "services_only" => cfg.services_only(flag()?),
            "client" => cfg.build_client(flag()?),
            "server" => cfg.build_server(flag()?),
            "format" => cfg.format(flag()?),
            "include_file" => cfg.include_file(value),
            "extern_path" => {
                let (proto, rust) = value
                    .split_once('=')
                    .ok_or_else(|| format!("extern_path takes .proto.path=::rust::path, not {value:?}"))?;
                cfg.extern_path(proto, rust)
            }
            _ => {
                return Err(format!(
                    "unknown option {key:?} (valid: services_only, client, server, format, extern_path, include_file)"
                ))
            }
        };
    }
    Ok(cfg)
}

fn run(input: &[u8]) -> CodeGeneratorResponse {
    let mut response = CodeGeneratorResponse {
        supported_features: Some(code_generator_response::Feature::Proto3Optional as u64),
        ..Default::default()
    };
    let result = Request::decode(input)
        .map_err(|e| format!("protoc-gen-micro: invalid CodeGeneratorRequest on stdin: {e}"))
        .and_then(|req| {
            let cfg = config(req.parameter.as_deref().unwrap_or(""))?;
            let set = RawSet { file: req.proto_file }.encode_to_vec();
            cfg.generate(&set, &req.file_to_generate).map_err(|e| e.to_string())
        });
    match result {
        Ok(files) => {
            response.file = files
                .into_iter()
                .map(|(name, content)| code_generator_response::File {
                    name: Some(name),
                    content: Some(content),
                    ..Default::default()
                })
                .collect();
        }
        Err(e) => response.error = Some(e),
    }
    response
}

fn main() {
    let mut input = Vec::new();
    if let Err(e) = std::io::stdin().read_to_end(&mut input) {
        eprintln!("protoc-gen-micro: cannot read stdin: {e}");
        std::process::exit(1);
    }
    if input.is_empty() {
        eprintln!("protoc-gen-micro: this is a protoc plugin; run it as `protoc --micro_out=DIR file.proto`");
        std::process::exit(2);
    }
    let out = run(&input).encode_to_vec();
    if let Err(e) = std::io::stdout().write_all(&out) {
        eprintln!("protoc-gen-micro: cannot write stdout: {e}");
        std::process::exit(1);
    }
}
