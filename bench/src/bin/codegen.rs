//! Code generation: `bench-codegen PROTO_ROOT ROUNDS` compiles every `.proto` under PROTO_ROOT
//! (e.g. PyPI's googleapis-common-protos) once with protox, then generates Rust from the same
//! FileDescriptorSet with micro-build and with tonic-prost-build, ROUNDS times each, and prints
//! `files <n>`, `micro <median ms> <lines>` and `tonic <median ms> <lines>`.

use std::path::{Path, PathBuf};
use std::time::Instant;

use prost::Message as _;

fn protos(dir: &Path, root: &Path, out: &mut Vec<String>) {
    let Ok(entries) = std::fs::read_dir(dir) else { return };
    for e in entries.flatten() {
        let p = e.path();
        if p.is_dir() {
            protos(&p, root, out);
        } else if p.extension().is_some_and(|x| x == "proto") {
            if let Ok(rel) = p.strip_prefix(root) {
                out.push(rel.display().to_string());
            }
        }
    }
}

fn lines(dir: &Path) -> usize {
    std::fs::read_dir(dir)
        .map(|d| d.flatten().map(|e| std::fs::read_to_string(e.path()).map(|s| s.lines().count()).unwrap_or(0)).sum())
        .unwrap_or(0)
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    v[v.len() / 2]
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().collect();
    let root = PathBuf::from(args.get(1).ok_or("usage: bench-codegen PROTO_ROOT [ROUNDS]")?);
    let rounds: usize = args.get(2).and_then(|v| v.parse().ok()).unwrap_or(3);
    let mut files = vec![];
    protos(&root.join("google"), &root, &mut files);
    // Protobuf's own well-known types come from protox; googleapis ships only its own files.
    files.retain(|f| !f.starts_with("google/protobuf/"));
    files.sort();
    let fds = protox::compile(&files, [&root])?;
    let encoded = fds.encode_to_vec();
    println!("files {}", files.len());
    let tmp = std::env::temp_dir().join(format!("bench-codegen-{}", std::process::id()));
    let (mut micro_ms, mut tonic_ms) = (vec![], vec![]);
    let (mut micro_lines, mut tonic_lines) = (0, 0);
    for round in 0..rounds {
        let dir = tmp.join(format!("micro-{round}"));
        std::fs::create_dir_all(&dir)?;
        let start = Instant::now();
        let out = micro_build::configure().generate(&encoded, &files)?;
        for (name, code) in &out {
            std::fs::write(dir.join(name), code)?;
        }
        micro_ms.push(start.elapsed().as_secs_f64() * 1000.0);
        micro_lines = lines(&dir);

        let dir = tmp.join(format!("tonic-{round}"));
        std::fs::create_dir_all(&dir)?;
        let start = Instant::now();
        tonic_prost_build::configure().out_dir(&dir).compile_fds(fds.clone())?;
        tonic_ms.push(start.elapsed().as_secs_f64() * 1000.0);
        tonic_lines = lines(&dir);
    }
    let _ = std::fs::remove_dir_all(&tmp);
    println!("micro {:.1} {micro_lines}", median(micro_ms));
    println!("tonic {:.1} {tonic_lines}", median(tonic_ms));
    Ok(())
}
