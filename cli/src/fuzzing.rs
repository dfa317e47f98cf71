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
        let bridged =
            tokio::time::timeout(Duration::from_secs(5), pump(ws, first, MAX, Echo(tx), Box::pin(replies))).await;
        assert!(bridged.is_ok(), "the bridge did not finish after the browser's bytes ended");
        feed.abort();
        drain.abort();
        forward.await.unwrap_or(false)
    })
}

/// A frame as a browser sends it: FIN set, masked with `key`.
fn client_frame(opcode: u8, payload: &[u8], key: [u8; 4]) -> Vec<u8> {
    let mut out = vec![0x80 | opcode];
    match payload.len() {
        n if n < 126 => out.push(0x80 | n as u8),
        n if n <= 0xffff => {
            out.push(0x80 | 126);
            out.extend_from_slice(&(n as u16).to_be_bytes());
        }
        n => {
            out.push(0x80 | 127);
            out.extend_from_slice(&(n as u64).to_be_bytes());
        }
    }
    out.extend_from_slice(&key);
    out.extend(payload.iter().enumerate().map(|(i, b)| b ^ key[i % 4]));
    out
}

/// The seed inputs of `websocket_bridge`, each with whether a message must go through.
pub fn websocket_seeds() -> Vec<(Vec<u8>, bool)> {
    let key = [0x12, 0x34, 0x56, 0x78];
    let with_query = |q: &str, frames: &[Vec<u8>]| {
        let mut out = vec![q.len() as u8];
        out.extend_from_slice(q.as_bytes());
        out.extend(frames.iter().flatten());
        out
    };
    let text = client_frame(0x1, br#"{"text":"hello"}"#, key);
    let binary = client_frame(0x2, b"\x0a\x02hi", key);
    let ping = client_frame(0x9, b"p", key);
    let close = client_frame(0x8, &[0x03, 0xe8], key);
    let mut unmasked = client_frame(0x1, b"plain", key);
    unmasked[1] &= 0x7f;
    unmasked.drain(2..6);
    let too_big = client_frame(0x1, &vec![b'x'; MAX + 1], key);
    let mut first_half = client_frame(0x1, &vec![b'a'; MAX / 2 + 1], key);
    first_half[0] &= 0x7f;
    let second_half = client_frame(0x0, &vec![b'b'; MAX / 2 + 1], key);
    vec![
        (with_query("", &[text.clone(), close.clone()]), true),
        (with_query("count=3&name=a+b", &[]), true),
        (with_query("", &[binary, ping, text.clone()]), true),
        (with_query("a=%a\u{e9}", &[text.clone()]), true),
        (with_query("", &[close]), false),
        (with_query("", &[unmasked]), false),
        (with_query("", &[too_big]), false),
        (with_query("", &[first_half, second_half]), false),
        (with_query("", &[text[..5].to_vec()]), false),
        (vec![], false),
    ]
}
