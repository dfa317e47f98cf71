//! Helpers shared by the CLI's tests.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};

use micro_tests::Child;

/// Starts `micro ARGS` with mDNS, waits for its `<prefix> listening on ADDR` line; returns the
/// process and the address.
pub(crate) fn listening(args: &[&str], prefix: &str) -> (Child, String) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_micro"))
        .args(args)
        .env("MICRO_REGISTRY", "mdns")
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stderr.take().unwrap()).lines();
    let marker = format!("{prefix} listening on ");
    let addr = loop {
        let line = lines.next().unwrap_or_else(|| panic!("micro {args:?} exited before listening")).unwrap();
        if let Some(rest) = line.strip_prefix(&marker) {
            break rest.split(' ').next().unwrap().to_string();
        }
    };
    std::thread::spawn(move || for _ in lines {});
    (Child(child), addr)
}
