//! Streaming endpoints over websocket: every text (or binary) frame from the browser is one
//! request message (JSON), every reply one text frame; the request side closes with the socket,
//! and the socket closes when the stream ends (with the error JSON as the close reason if it
//! failed). A query string on the upgrade request is sent as the first message, so
//! `ws://host/svc/stream?count=3` works for server streams.
//!
//! Messages and frames over the gateway's body limit close the socket (1009, message too big);
//! the upgrade's `Origin` was checked by the gateway like any request's. A socket stays counted
//! against the listener's connection cap while it lives, at most [`MAX_BRIDGES`] are open at
//! once (each holds a stream to a service), and one whose peer sends nothing, not even the pong
//! to a ping, for [`IDLE`] is closed.

use bytes::Bytes;
use futures_util::future::BoxFuture;
use futures_util::{SinkExt, Stream, StreamExt};
use http::{HeaderValue, Response, StatusCode};
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use micro::client::{Client, ClientSender};
use micro::codec::RawMessage;
use micro::transport::Body;
use micro::{CallOptions, Error};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio_tungstenite::tungstenite::protocol::{frame::coding::CloseCode, CloseFrame, Role, WebSocketConfig};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::WebSocketStream;

/// The most websockets bridged at once (each holds an HTTP/2 stream to a service, whose
/// connections take 1024).
pub(crate) const MAX_BRIDGES: usize = 512;

/// How often the bridge pings, and how long a silent peer keeps its socket.
const PING: std::time::Duration = std::time::Duration::from_secs(30);
const IDLE: std::time::Duration = std::time::Duration::from_secs(75);

/// The most bytes of a close frame's reason (RFC 6455 §5.5: 125 bytes of payload, 2 for the code).
const MAX_REASON: usize = 123;

/// A close frame with `reason` cut to fit, at a character boundary.
fn close(code: CloseCode, reason: &str) -> Message {
    let mut end = reason.len().min(MAX_REASON);
    while !reason.is_char_boundary(end) {
        end -= 1;
    }
    Message::Close(Some(CloseFrame { code, reason: reason[..end].to_string().into() }))
}

/// Open bridges, against [`MAX_BRIDGES`].
pub(crate) fn bridges() -> std::sync::Arc<tokio::sync::Semaphore> {
    static BRIDGES: std::sync::OnceLock<std::sync::Arc<tokio::sync::Semaphore>> = std::sync::OnceLock::new();
    BRIDGES.get_or_init(|| std::sync::Arc::new(tokio::sync::Semaphore::new(MAX_BRIDGES))).clone()
}

/// Whether the request asks to become a websocket.
pub(crate) fn is_upgrade<B>(req: &http::Request<B>) -> bool {
    req.headers().get(http::header::UPGRADE).is_some_and(crate::edge::is_websocket)
}

/// The socket settings for a bridge whose messages may be at most `max` bytes.
pub(crate) fn config(max: usize) -> WebSocketConfig {
    WebSocketConfig::default().max_message_size(Some(max)).max_frame_size(Some(max))
}

/// Where the bridge sends request messages: the sending half of a call.
pub(crate) trait Requests: Send {
    /// Sends one request message.
    fn send(&mut self, message: Bytes) -> BoxFuture<'_, Result<(), Error>>;
}

impl Requests for ClientSender<RawMessage> {
    fn send(&mut self, message: Bytes) -> BoxFuture<'_, Result<(), Error>> {
        Box::pin(async move { self.send_bytes(&message).await })
    }
}

/// Answers the upgrade and bridges the socket to a stream of `endpoint`.
pub(crate) fn bridge(
    mut req: http::Request<Incoming>,
    client: Client,
    service: String,
    endpoint: String,
    opts: CallOptions,
    max: usize,
) -> Response<Body> {
    let Some(key) = req.headers().get("sec-websocket-key").map(|k| k.as_bytes().to_vec()) else {
        let mut resp = Response::new(Body::full("missing Sec-WebSocket-Key\n"));
        *resp.status_mut() = StatusCode::BAD_REQUEST;
        return resp;
    };
    let Ok(permit) = bridges().try_acquire_owned() else {
        let mut resp = Response::new(Body::full(format!("{MAX_BRIDGES} websockets are open; try again later\n")));
        *resp.status_mut() = StatusCode::SERVICE_UNAVAILABLE;
        return resp;
    };
    let connection = req.extensions_mut().remove::<micro::transport::http::Connection>();
    let first = first_message(req.uri().query());
    let upgrade = hyper::upgrade::on(&mut req);
    tokio::spawn(async move {
        let _held = (permit, connection);
        let Ok(upgraded) = upgrade.await else { return };
        let mut ws = WebSocketStream::from_raw_socket(TokioIo::new(upgraded), Role::Server, Some(config(max))).await;
        match client.stream_json(&service, &endpoint, opts).await {
            Ok((tx, replies)) => pump(ws, first, max, tx, replies).await,
            Err(e) => {
                let _ = ws.send(close(CloseCode::Error, &e.to_json())).await;
            }
        }
    });
    let mut resp = Response::new(Body::empty());
    *resp.status_mut() = StatusCode::SWITCHING_PROTOCOLS;
    let h = resp.headers_mut();
    h.insert(http::header::UPGRADE, HeaderValue::from_static("websocket"));
    h.insert(http::header::CONNECTION, HeaderValue::from_static("Upgrade"));
    let accept = tokio_tungstenite::tungstenite::handshake::derive_accept_key(&key);
    if let Ok(v) = HeaderValue::from_str(&accept) {
        h.insert("sec-websocket-accept", v);
    }
    resp
}

/// The query of the upgrade request as the first message, if it has one.
pub(crate) fn first_message(query: Option<&str>) -> Option<String> {
    query.filter(|q| !q.is_empty()).map(|q| serde_json::Value::Object(micro::api::pairs_to_json(q)).to_string())
}

/// Moves messages both ways until the stream ends: frames from the socket become requests (until
/// the socket's side closes or breaks), replies become text frames, and the socket is closed
/// with the stream's outcome. A first message (from the upgrade's query) over `max` bytes closes
/// the socket as too big, as a frame would.
pub(crate) async fn pump<IO, Q, R>(
    ws: WebSocketStream<IO>,
    first: Option<String>,
    max: usize,
    requests: Q,
    mut replies: R,
) where
    IO: AsyncRead + AsyncWrite + Unpin,
    Q: Requests,
    R: Stream<Item = Result<RawMessage, Error>> + Unpin,
{
    let (mut sink, mut source) = ws.split();
    let mut tx = Some(requests);
    if let Some(first) = first {
        if first.len() > max {
            let _ =
                sink.send(close(CloseCode::Size, &format!("the query makes a message larger than {max} bytes"))).await;
            return;
        }
        if let Some(t) = tx.as_mut() {
            let _ = t.send(Bytes::from(first)).await;
        }
    }
    let mut ping = tokio::time::interval_at(tokio::time::Instant::now() + PING, PING);
    let mut heard = tokio::time::Instant::now();
    loop {
        tokio::select! {
            _ = ping.tick() => {
                if heard.elapsed() >= IDLE {
                    let _ = sink.send(close(CloseCode::Away, "the peer went silent")).await;
                    return;
                }
                if sink.send(Message::Ping(Bytes::new())).await.is_err() {
                    return;
                }
            },
            frame = source.next() => {
                heard = tokio::time::Instant::now();
                if tx.is_none() {
                    // The request side is closed; frames (pongs, a close) only say the peer lives.
                    if matches!(frame, None | Some(Err(_))) {
                        return;
                    }
                    continue;
                }
                let message = match frame {
                    Some(Ok(Message::Text(t))) => Some(Bytes::from(t)),
                    Some(Ok(Message::Binary(b))) => Some(b),
                    Some(Ok(Message::Close(_))) | None => { tx = None; None }
                    Some(Err(e)) => {
                        tx = None;
                        let _ = sink.send(close(close_code(&e), &e.to_string())).await;
                        None
                    }
                    Some(Ok(_)) => None,
                };
                if let (Some(m), Some(t)) = (message, tx.as_mut()) {
                    let _ = t.send(m).await;
                }
            },
            reply = replies.next() => {
                let done = match reply {
                    Some(Ok(m)) => {
                        if sink.send(reply_frame(m)).await.is_err() {
                            return;
                        }
                        continue;
                    }
                    Some(Err(e)) => close(CloseCode::Error, &e.to_json()),
                    None => close(CloseCode::Normal, ""),
                };
                let _ = sink.send(done).await;
                return;
            },
        }
    }
}

/// The frame for a reply: text when it is UTF-8 (JSON), binary otherwise.
fn reply_frame(m: RawMessage) -> Message {
    match String::from_utf8(m.0.to_vec()) {
        Ok(text) => Message::Text(text.into()),
        Err(_) => Message::Binary(m.0),
    }
}

/// The close code for a socket that broke: 1009 for a message over the limit, 1002 otherwise.
fn close_code(e: &tokio_tungstenite::tungstenite::Error) -> CloseCode {
    use tokio_tungstenite::tungstenite::error::{CapacityError, Error as WsError};
    match e {
        WsError::Capacity(CapacityError::MessageTooLong { .. }) => CloseCode::Size,
        _ => CloseCode::Protocol,
    }
}
