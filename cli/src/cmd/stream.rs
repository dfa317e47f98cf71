//! `micro stream SERVICE ENDPOINT [JSON]`: one JSON value per reply on standard output. After
//! the first request, each line of standard input is sent as a further request (bidirectional
//! endpoints); the sending side closes when standard input does. Inside `micro cli` standard
//! input belongs to the prompt, so only the line's request is sent and the sending side closes
//! after it.

use std::io::BufRead;

use futures_util::StreamExt;

use super::call::{body, options};
use crate::global::Global;
use crate::{Reported, UsageError};

#[derive(Debug, clap::Args)]
pub(crate) struct Args {
    /// The endpoint and the first request (left out: every request comes from standard input).
    #[command(flatten)]
    pub(crate) target: super::call::Target,
}

pub(crate) async fn run(global: &Global, args: Args) -> anyhow::Result<()> {
    let args = args.target;
    let first = match args.request.as_deref() {
        Some(r) => Some(body(Some(r))?),
        None => None,
    };
    let mut opts = options(global, args.address.as_deref(), &args.metadata)?;
    opts.timeout = None;
    let registry = match &args.address {
        Some(_) => std::sync::Arc::new(micro::registry::MemoryRegistry::new()),
        None => global.registry()?,
    };
    let client = global.client(registry)?;
    let fail = |e: micro::Error| -> anyhow::Error {
        eprintln!("error streaming {}.{}: {}", args.service, args.endpoint, e.to_json());
        Reported(1).into()
    };
    let (tx, mut replies) = client.stream_json(&args.service, &args.endpoint, opts).await.map_err(fail)?;
    if let Some(first) = first {
        let compact = serde_json::to_vec(&serde_json::from_str::<serde_json::Value>(&first)?)?;
        tx.send_bytes(&compact).await.map_err(fail)?;
    }
    let (lines_tx, mut lines_rx) = tokio::sync::mpsc::channel::<String>(16);
    if global.is_shared() {
        drop(lines_tx);
    } else {
        stdin_lines(lines_tx);
    }
    let mut tx = Some(tx);
    loop {
        tokio::select! {
            line = lines_rx.recv(), if tx.is_some() => match line {
                Some(line) => {
                    let v: serde_json::Value = serde_json::from_str(&line)
                        .map_err(|e| UsageError(format!("standard input line is not JSON: {e}")))?;
                    if let Some(t) = &tx {
                        t.send_bytes(&serde_json::to_vec(&v)?).await.map_err(fail)?;
                    }
                }
                None => tx = None,
            },
            reply = replies.next() => match reply {
                Some(Ok(m)) => println!("{}", String::from_utf8_lossy(&m.0)),
                Some(Err(e)) => return Err(fail(e)),
                None => return Ok(()),
            },
        }
    }
}

/// Sends the non-empty lines of standard input into `lines` until it closes (on a thread: the
/// process ends with the command, so nothing is left reading).
fn stdin_lines(lines_tx: tokio::sync::mpsc::Sender<String>) {
    std::thread::spawn(move || {
        for line in std::io::stdin().lock().lines() {
            let Ok(line) = line else { break };
            if line.trim().is_empty() {
                continue;
            }
            if lines_tx.blocking_send(line).is_err() {
                break;
            }
        }
    });
}
