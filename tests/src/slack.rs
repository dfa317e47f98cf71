//! A stand-in Slack on 127.0.0.1, for the bot's tests: `apps.connections.open` (app token
//! `xapp-test`) hands out a Socket Mode websocket that delivers the given messages one by one,
//! each after the previous envelope was acknowledged; `chat.postMessage` (bot token `xoxb-test`)
//! records what the bot posted.

use std::sync::{Arc, Mutex};

use futures_util::{SinkExt, StreamExt};
use tokio_tungstenite::tungstenite::Message;

/// What the bot posted (channel, text), and the envelopes it acknowledged.
#[derive(Default)]
pub struct Slack {
    pub posted: Mutex<Vec<(String, String)>>,
    pub acks: Mutex<Vec<String>>,
}

/// Starts the stand-in, delivering `messages` as (user id, text) in channel `C42`; returns the
/// Web API's base URL (for `--slack_api_url`).
pub async fn stand_in(slack: Arc<Slack>, messages: Vec<(String, String)>) -> String {
    let ws = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("a port");
    let ws_addr = ws.local_addr().expect("an address");
    let s = slack.clone();
    tokio::spawn(async move {
        let (stream, _) = ws.accept().await.expect("the bot connects");
        let mut socket = tokio_tungstenite::accept_async(stream).await.expect("a websocket");
        socket.send(Message::Text(r#"{"type":"hello"}"#.into())).await.expect("hello sent");
        for (i, (user, text)) in messages.iter().enumerate() {
            let envelope = serde_json::json!({
                "envelope_id": format!("env-{i}"),
                "type": "events_api",
                "payload": {"event": {"type": "message", "channel": "C42", "user": user, "text": text}},
            });
            socket.send(Message::Text(envelope.to_string().into())).await.expect("envelope sent");
            while let Some(Ok(Message::Text(t))) = socket.next().await {
                let v: serde_json::Value = serde_json::from_str(&t).expect("JSON from the bot");
                if let Some(id) = v["envelope_id"].as_str() {
                    s.acks.lock().expect("lock").push(id.to_string());
                    break;
                }
            }
        }
        // Keep the socket open until the test ends.
        while socket.next().await.is_some() {}
    });
    let api = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("a port");
    let api_addr = api.local_addr().expect("an address");
    tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = api.accept().await else { return };
            let slack = slack.clone();
            tokio::spawn(async move {
                let service = hyper::service::service_fn(move |req: http::Request<hyper::body::Incoming>| {
                    let slack = slack.clone();
                    async move {
                        use http_body_util::BodyExt;
                        let path = req.uri().path().to_string();
                        let auth =
                            req.headers().get("authorization").and_then(|v| v.to_str().ok()).unwrap_or("").to_string();
                        let body = req.into_body().collect().await.map(|c| c.to_bytes()).unwrap_or_default();
                        let reply = match path.as_str() {
                            "/api/apps.connections.open" if auth == "Bearer xapp-test" => {
                                serde_json::json!({"ok": true, "url": format!("ws://{ws_addr}/socket")})
                            }
                            "/api/chat.postMessage" if auth == "Bearer xoxb-test" => {
                                let v: serde_json::Value = serde_json::from_slice(&body).unwrap_or_default();
                                slack.posted.lock().expect("lock").push((
                                    v["channel"].as_str().unwrap_or("").into(),
                                    v["text"].as_str().unwrap_or("").into(),
                                ));
                                serde_json::json!({"ok": true})
                            }
                            _ => serde_json::json!({"ok": false, "error": "invalid_auth"}),
                        };
                        Ok::<_, std::convert::Infallible>(http::Response::new(http_body_util::Full::new(
                            bytes::Bytes::from(reply.to_string()),
                        )))
                    }
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(hyper_util::rt::TokioIo::new(stream), service)
                    .await;
            });
        }
    });
    format!("http://{api_addr}/api")
}
