//! Writes the seed inputs of the tools' own fuzz target into a corpus directory:
//! `cargo run -p micro-cli --example fuzz_seeds -- DIR` creates `DIR/websocket_bridge/seed-<n>`.
//! `scripts/fuzz` runs it beside the runtime targets' `fuzz-seeds`.

use std::path::PathBuf;

fn main() {
    let Some(dir) = std::env::args_os().nth(1).map(PathBuf::from) else {
        eprintln!("usage: fuzz_seeds DIR");
        std::process::exit(2);
    };
    let out = dir.join("websocket_bridge");
    let seeds = micro_cli::fuzzing::websocket_seeds();
    let written = std::fs::create_dir_all(&out).and_then(|()| {
        for (i, (input, _)) in seeds.iter().enumerate() {
            std::fs::write(out.join(format!("seed-{i}")), input)?;
        }
        Ok(())
    });
    match written {
        Ok(()) => eprintln!("fuzz_seeds: {} seeds in {}", seeds.len(), out.display()),
        Err(e) => {
            eprintln!("fuzz_seeds: cannot write {}: {e}", out.display());
            std::process::exit(1);
        }
    }
}
