//! Entry points for the fuzz targets in `fuzz/` and the corpus replay tests; not a public API.
//!
//! The runtime's `micro::fuzzing` covers the gateway's path, query, form and route parsers (they
//! live in `micro::api`); what is left here is what only the tools have: the websocket bridge.

use std::time::Duration;

use bytes::Bytes;
use futures_util::future::BoxFuture;
use micro::codec::RawMessage;
use micro::Error;
use tokio::sync::mpsc;
use tokio_tungstenite::tungstenite::protocol::Role;
use tokio_tungstenite::WebSocketStream;

use crate::gateway::websocket::{config, first_message, pump, Requests};

/// The limit the fuzzed bridge runs with (small, so the fuzzer reaches it).
const MAX: usize = 1024;

/// Request messages the bridge sends; every one is echoed back as a reply, so replies flow too.
struct Echo(mpsc::UnboundedSender<Bytes>);

impl Requests for Echo {
    fn send(&mut self, message: Bytes) -> BoxFuture<'_, Result<(), Error>> {
        assert!(message.len() <= MAX, "a {}-byte message passed a {MAX}-byte limit", message.len());
        let _ = self.0.send(message);
        Box::pin(async { Ok(()) })
    }
}

/// The websocket bridge of `micro api`. The first byte says how long the query string of the
/// upgrade is (the first message); the rest is what a browser sends on the socket, raw frames.
/// The bridge must not panic, must pass on no message over the limit, and must finish once the
/// browser's bytes end. Returns whether any message went through.
pub fn websocket_bridge(data: &[u8]) -> bool {
    let Some((&n, rest)) = data.split_first() else { return false };
    let (query, frames) = rest.split_at(usize::from(n).min(rest.len()));
    let query = String::from_utf8_lossy(query).into_owned();
    let frames = frames.to_vec();
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("a runtime");
    runtime.block_on(async move {
        let (browser, server) = tokio::io::duplex(64 * 1024);
        let ws = WebSocketStream::from_raw_socket(server, Role::Server, Some(config(MAX))).await;
        let (tx, mut rx) = mpsc::unbounded_channel::<Bytes>();
        let (echo_tx, echo_rx) = mpsc::unbounded_channel::<Bytes>();
        let replies = futures_util::stream::unfold(echo_rx, |mut rx| async move {
            rx.recv().await.map(|m| (Ok::<_, Error>(RawMessage(m)), rx))
        });
        let forward = tokio::spawn(async move {
            let mut seen = false;
            while let Some(m) = rx.recv().await {
                seen = true;
                let _ = echo_tx.send(m);
            }
            seen
        });
        let (mut from_bridge, mut to_bridge) = tokio::io::split(browser);
        // What the bridge writes back is read (and dropped) all along, so neither side blocks.
        let drain = tokio::spawn(async move {
            let mut sink = Vec::new();
            let _ = tokio::io::AsyncReadExt::read_to_end(&mut from_bridge, &mut sink).await;
        });
        let feed = tokio::spawn(async move {
            let _ = tokio::io::AsyncWriteExt::write_all(&mut to_bridge, &frames).await;
            let _ = tokio::io::AsyncWriteExt::shutdown(&mut to_bridge).await;
        });
        let first = first_message(Some(&query).filter(|q| !q.is_empty()).map(String::as_str));
        let bridged = tokio::time::timeout(Duration::from_secs(5), pump(ws, first, Echo(tx), Box::pin(replies))).await;
        assert!(bridged.is_ok(), "the bridge did not finish after the browser's bytes ended");
        feed.abort();
        drain.abort();
        forward.await.unwrap_or(false)
    })
}
