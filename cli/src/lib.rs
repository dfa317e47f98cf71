//! `micro`: the terminal face of the platform, as a library the `micro` binary runs.
//!
//! Exit codes: 0 success, 1 a call or the registry failed, 2 the command line was wrong.
//! Standard output carries data only (JSON for `call` and `stream`); diagnostics go to standard
//! error, as one sentence.
//!
//! The library has one public entry point, [`main`]; everything else is the tools' own. The
//! [`fuzzing`] module exposes the parsers of untrusted input to the fuzz targets in `fuzz/`.
//!
//! # Layers
//! Each module imports only from the lines above its own (`scripts/layers` checks it): the edge
//! policy and formats, then the global flags, the operations every front end shares, the
//! gateway, the front ends that reuse it (and the MCP server), and last the command line that starts them all.
//! 1. `edge`, `format`, `reflect`, `telemetry`
//! 2. `global`
//! 3. `ops`
//! 4. `gateway`
//! 5. `bot`, `dashboard`, `mcp`
//! 6. `cmd`
//! 7. `fuzzing`

mod bot;
mod cmd;
mod dashboard;
mod edge;
mod format;
mod gateway;
mod global;
mod mcp;
mod ops;
mod reflect;
mod telemetry;

#[doc(hidden)]
pub mod fuzzing;

use clap::Parser;

/// Fails with a usage error (exit 2).
#[derive(Debug)]
pub(crate) struct UsageError(pub(crate) String);

impl std::fmt::Display for UsageError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for UsageError {}

/// A failure that was already printed; only the exit code is left to give.
#[derive(Debug)]
pub(crate) struct Reported(pub(crate) i32);

impl std::fmt::Display for Reported {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "exit {}", self.0)
    }
}

impl std::error::Error for Reported {}

/// Parses the command line, runs the command, and exits with its code.
pub fn main() -> ! {
    let cli = cmd::Cli::parse();
    let code = match cmd::run(cli) {
        Ok(()) => 0,
        Err(e) => exit_code(&e),
    };
    std::process::exit(code);
}

/// Prints an error as one line and returns the exit code it stands for.
pub(crate) fn exit_code(e: &anyhow::Error) -> i32 {
    if let Some(r) = e.downcast_ref::<Reported>() {
        return r.0;
    }
    let code = if e.downcast_ref::<UsageError>().is_some() { 2 } else { 1 };
    let mut line = match e.downcast_ref::<micro::Error>() {
        Some(me) => me.detail.clone(),
        None => e.to_string(),
    };
    for cause in e.chain().skip(1) {
        line.push_str(": ");
        line.push_str(&cause.to_string());
    }
    eprintln!("{line}");
    code
}
