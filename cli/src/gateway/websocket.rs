//! Streaming endpoints over websocket: every text (or binary) frame from the browser is one
//! request message (JSON), every reply one text frame; the request side closes with the socket,
//! and the socket closes when the stream ends (with the error JSON as the close reason if it
//! failed). A query string on the upgrade request is sent as the first message, so
//! `ws://host/svc/stream?count=3` works for server streams.
//!
//! Messages and frames over the gateway's body limit close the socket (1009, message too big);
//! the upgrade's `Origin` was checked by the gateway like any request's.

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

/// Whether the request asks to become a websocket.
pub(crate) fn is_upgrade<B>(req: &http::Request<B>) -> bool {
    req.headers()
        .get(http::header::UPGRADE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.eq_ignore_ascii_case("websocket"))
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
    let first = first_message(req.uri().query());
    let upgrade = hyper::upgrade::on(&mut req);
    tokio::spawn(async move {
        let Ok(upgraded) = upgrade.await else { return };
        let mut ws = WebSocketStream::from_raw_socket(TokioIo::new(upgraded), Role::Server, Some(config(max))).await;
        match client.stream_json(&service, &endpoint, opts).await {
            Ok((tx, replies)) => pump(ws, first, max, tx, replies).await,
            Err(e) => {
                let _ = ws
                    .send(Message::Close(Some(CloseFrame { code: CloseCode::Error, reason: e.to_json().into() })))
                    .await;
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
            let reason = format!("the query makes a message larger than {max} bytes");
            let _ = sink.send(Message::Close(Some(CloseFrame { code: CloseCode::Size, reason: reason.into() }))).await;
            return;
        }
        if let Some(t) = tx.as_mut() {
            let _ = t.send(Bytes::from(first)).await;
        }
    }
    loop {
        tokio::select! {
            frame = source.next(), if tx.is_some() => {
                let message = match frame {
                    Some(Ok(Message::Text(t))) => Some(Bytes::from(t)),
                    Some(Ok(Message::Binary(b))) => Some(b),
                    Some(Ok(Message::Close(_))) | None => { tx = None; None }
                    Some(Err(e)) => {
                        tx = None;
                        let close = CloseFrame { code: close_code(&e), reason: e.to_string().into() };
                        let _ = sink.send(Message::Close(Some(close))).await;
                        None
                    }
                    Some(Ok(_)) => None,
                };
                if let (Some(m), Some(t)) = (message, tx.as_mut()) {
                    let _ = t.send(m).await;
                }
            },
            reply = replies.next() => {
                let close = match reply {
                    Some(Ok(m)) => match String::from_utf8(m.0.to_vec()) {
                        Ok(text) => {
                            if sink.send(Message::Text(text.into())).await.is_err() {
                                return;
                            }
                            continue;
                        }
                        Err(_) => {
                            if sink.send(Message::Binary(m.0)).await.is_err() {
                                return;
                            }
                            continue;
                        }
                    },
                    Some(Err(e)) => CloseFrame { code: CloseCode::Error, reason: e.to_json().into() },
                    None => CloseFrame { code: CloseCode::Normal, reason: "".into() },
                };
                let _ = sink.send(Message::Close(Some(close))).await;
                return;
            },
        }
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
