//! Helpers shared by the CLI's tests (each test file uses some of them).
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use micro_tests::Child;

/// Starts `micro ARGS` with mDNS, waits for its `<prefix> listening on [scheme://]ADDR` line;
/// returns the process and the address (`host:port`).
pub(crate) fn listening(args: &[&str], prefix: &str) -> (Child, String) {
    micro_tests::listening(Path::new(env!("CARGO_BIN_EXE_micro")), args, &[("MICRO_REGISTRY", "mdns")], prefix)
}

/// The workspace root.
pub(crate) fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap().to_path_buf()
}

/// Runs `cargo ARGS` offline in `dir`, with the target directory every scaffolded project shares;
/// fails the test with cargo's output when it fails.
pub(crate) fn cargo(dir: &Path, args: &[&str]) -> Output {
    let out = Command::new(env!("CARGO"))
        .arg(args[0])
        .arg("--offline")
        .args(&args[1..])
        .current_dir(dir)
        .env("CARGO_TARGET_DIR", workspace().join("target/scaffold"))
        .env_remove("RUSTFLAGS")
        .output()
        .expect("cargo runs");
    assert!(
        out.status.success(),
        "cargo {args:?} failed in {}:\n{}",
        dir.display(),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

/// Writes a project with `micro new PATH --type KIND` under `parent` (with the workspace's lock
/// file, so versions match); returns its directory.
pub(crate) fn new_project(parent: &Path, kind: &str, path: &str) -> (PathBuf, Output) {
    let out = Command::new(env!("CARGO_BIN_EXE_micro"))
        .args(["new", path, "--type", kind])
        .current_dir(parent)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let dir = parent.join(path.rsplit('/').next().unwrap());
    std::fs::copy(workspace().join("Cargo.lock"), dir.join("Cargo.lock")).unwrap();
    (dir, out)
}

/// A scaffolded project's binary.
pub(crate) fn scaffolded_binary(alias: &str) -> PathBuf {
    workspace().join("target/scaffold/debug").join(alias)
}
