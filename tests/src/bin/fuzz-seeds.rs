//! Writes the seed inputs of every fuzz target into a corpus directory: `fuzz-seeds DIR` creates
//! `DIR/<target>/seed-<n>`. `scripts/fuzz` runs it before fuzzing.

use std::path::PathBuf;

fn main() {
    let Some(dir) = std::env::args_os().nth(1).map(PathBuf::from) else {
        eprintln!("usage: fuzz-seeds DIR");
        std::process::exit(2);
    };
    for target in micro_tests::fuzz::TARGETS {
        let out = dir.join(target);
        let written = std::fs::create_dir_all(&out).and_then(|()| {
            let seeds = micro_tests::fuzz::seeds(target);
            for (i, (input, _)) in seeds.iter().enumerate() {
                std::fs::write(out.join(format!("seed-{i}")), input)?;
            }
            Ok(seeds.len())
        });
        match written {
            Ok(n) => eprintln!("fuzz-seeds: {n} seeds in {}", out.display()),
            Err(e) => {
                eprintln!("fuzz-seeds: cannot write {}: {e}", out.display());
                std::process::exit(1);
            }
        }
    }
}
