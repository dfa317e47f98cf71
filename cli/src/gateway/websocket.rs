//! Streaming endpoints over websocket: every text (or binary) frame from the browser is one
//! request message (JSON), every reply one text frame; the request side closes with the socket,
//! and the socket closes when the stream ends (with the error JSON as the close reason if it
//! failed). A query string on the upgrade request is sent as the first message, so
//! `ws://host/svc/stream?count=3` works for server streams.

use futures_util::{SinkExt, StreamExt};
use http::{HeaderValue, Response, StatusCode};
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use micro::client::Client;
use micro::transport::Body;
use micro::CallOptions;
use tokio_tungstenite::tungstenite::protocol::{frame::coding::CloseCode, CloseFrame, Role};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::WebSocketStream;

/// Whether the request asks to become a websocket.
pub(crate) fn is_upgrade(req: &http::Request<Incoming>) -> bool {
    req.headers()
        .get(http::header::UPGRADE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.eq_ignore_ascii_case("websocket"))
}

/// Answers the upgrade and bridges the socket to a stream of `endpoint`.
pub(crate) fn bridge(
    mut req: http::Request<Incoming>,
    client: Client,
    service: String,
    endpoint: String,
    opts: CallOptions,
) -> Response<Body> {
    let Some(key) = req.headers().get("sec-websocket-key").map(|k| k.as_bytes().to_vec()) else {
        let mut resp = Response::new(Body::full("missing Sec-WebSocket-Key\n"));
        *resp.status_mut() = StatusCode::BAD_REQUEST;
        return resp;
    };
    let first = req
        .uri()
        .query()
        .filter(|q| !q.is_empty())
        .map(|q| serde_json::Value::Object(super::pairs_to_json(q)).to_string());
    let upgrade = hyper::upgrade::on(&mut req);
    tokio::spawn(async move {
        let Ok(upgraded) = upgrade.await else { return };
        let ws = WebSocketStream::from_raw_socket(TokioIo::new(upgraded), Role::Server, None).await;
        let (mut sink, mut source) = ws.split();
        let (tx, mut replies) = match client.stream_json(&service, &endpoint, opts).await {
            Ok(s) => s,
            Err(e) => {
                let _ = sink
                    .send(Message::Close(Some(CloseFrame { code: CloseCode::Error, reason: e.to_json().into() })))
                    .await;
                return;
            }
        };
        if let Some(first) = first {
            let _ = tx.send_bytes(first.as_bytes()).await;
        }
        let mut tx = Some(tx);
        loop {
            tokio::select! {
                frame = source.next(), if tx.is_some() => match frame {
                    Some(Ok(Message::Text(t))) => {
                        if let Some(s) = &tx { let _ = s.send_bytes(t.as_bytes()).await; }
                    }
                    Some(Ok(Message::Binary(b))) => {
                        if let Some(s) = &tx { let _ = s.send_bytes(&b).await; }
                    }
                    Some(Ok(Message::Close(_))) | None | Some(Err(_)) => tx = None,
                    Some(Ok(_)) => {}
                },
                reply = replies.next() => match reply {
                    Some(Ok(m)) => {
                        if sink.send(Message::Text(String::from_utf8_lossy(&m.0).into_owned().into())).await.is_err() {
                            return;
                        }
                    }
                    Some(Err(e)) => {
                        let _ = sink.send(Message::Close(Some(CloseFrame { code: CloseCode::Error, reason: e.to_json().into() }))).await;
                        return;
                    }
                    None => {
                        let _ = sink.send(Message::Close(Some(CloseFrame { code: CloseCode::Normal, reason: "".into() }))).await;
                        return;
                    }
                },
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
