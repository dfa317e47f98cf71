//! A stand-in Slack on 127.0.0.1, for the bot's tests, speaking Slack's real shapes.
//!
//! `apps.connections.open` (app token `xapp-test`) hands out a Socket Mode websocket; each
//! connection gets `hello`, then the queued envelopes one by one, each after the previous was
//! acknowledged. Events come as Slack sends them: `events_api` envelopes with an `event_callback`
//! payload and an `event_id`, text escaped (`&amp;`, `&lt;`, `&gt;`), links as `<url|url>`,
//! mentions as `<@U0BOT>`. A [`disconnect`] envelope closes the socket as Slack does before a
//! refresh, and the bot must come back for the rest. `chat.postMessage` (bot token `xoxb-test`)
//! records what the bot posted.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};

use futures_util::{SinkExt, StreamExt};
use serde_json::{json, Value};
use tokio_tungstenite::tungstenite::Message;

/// The bot's own user id, as Slack writes it in mentions.
pub const BOT_USER: &str = "U0BOT";

/// What the bot posted (channel, text), the envelopes it acknowledged, and how many times it
/// opened a socket.
#[derive(Default)]
pub struct Slack {
    pub posted: Mutex<Vec<(String, String)>>,
    pub acks: Mutex<Vec<String>>,
    pub connections: Mutex<usize>,
}

/// One thing the stand-in sends on the socket.
#[derive(Debug, Clone)]
pub enum Envelope {
    /// An `events_api` envelope: the event, its id, and its retry attempt.
    Event { event: Value, id: String, retry: u32 },
    /// `{"type":"disconnect"}`: the socket closes and the bot must open another.
    Disconnect,
}

/// Text as Slack delivers it: `&`, `<` and `>` escaped, links wrapped as `<url|url>`.
fn escaped(text: &str) -> String {
    let plain = text.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;");
    plain
        .split(' ')
        .map(|w| {
            let url_end = w.find(|c: char| c == '"' || c == '\'' || c == '}').unwrap_or(w.len());
            let (url, rest) = w.split_at(url_end);
            let url = url.trim_start_matches('"');
            if url.starts_with("http://") || url.starts_with("https://") {
                let start = w.len() - url.len() - rest.len();
                format!("{}<{url}|{url}>{rest}", &w[..start])
            } else {
                w.to_string()
            }
        })
        .collect::<Vec<_>>()
        .join(" ")
}

fn event(kind: &str, channel_type: &str, channel: &str, user: &str, text: String) -> Envelope {
    static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(1);
    let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    Envelope::Event {
        event: json!({"type": kind, "channel_type": channel_type, "channel": channel, "user": user, "text": text, "ts": format!("{n}.000100")}),
        id: format!("Ev{n:08}"),
        retry: 0,
    }
}

/// `user` mentions the bot in channel `C42`: `<@U0BOT> text` (an `app_mention` event).
pub fn mention(user: &str, text: &str) -> Envelope {
    event("app_mention", "channel", "C42", user, format!("<@{BOT_USER}> {}", escaped(text)))
}

/// `user` writes to the bot directly, in channel `D42` (a `message` event of an `im`).
pub fn direct(user: &str, text: &str) -> Envelope {
    event("message", "im", "D42", user, escaped(text))
}

/// `user` writes in channel `C42` without mentioning the bot: not for the bot.
pub fn chatter(user: &str, text: &str) -> Envelope {
    event("message", "channel", "C42", user, escaped(text))
}

/// The same event delivered again, as Slack does when it missed the acknowledgement.
pub fn again(envelope: &Envelope) -> Envelope {
    match envelope {
        Envelope::Event { event, id, retry } => {
            Envelope::Event { event: event.clone(), id: id.clone(), retry: retry + 1 }
        }
        Envelope::Disconnect => Envelope::Disconnect,
    }
}

/// Slack's `disconnect` (before it refreshes a connection).
pub fn disconnect() -> Envelope {
    Envelope::Disconnect
}

/// Serves one socket: `hello`, then envelopes until the queue is empty (then it waits) or a
/// disconnect closes it.
async fn socket(slack: Arc<Slack>, queue: Arc<Mutex<VecDeque<Envelope>>>, stream: tokio::net::TcpStream) {
    let Ok(mut socket) = tokio_tungstenite::accept_async(stream).await else { return };
    *slack.connections.lock().expect("lock") += 1;
    if socket.send(Message::Text(r#"{"type":"hello","num_connections":1}"#.into())).await.is_err() {
        return;
    }
    let mut n = 0;
    loop {
        let next = queue.lock().expect("lock").pop_front();
        let Some(envelope) = next else { break };
        match envelope {
            Envelope::Disconnect => {
                let bye =
                    json!({"type": "disconnect", "reason": "refresh_requested", "debug_info": {"host": "stand-in"}});
                let _ = socket.send(Message::Text(bye.to_string().into())).await;
                let _ = socket.close(None).await;
                return;
            }
            Envelope::Event { event, id, retry } => {
                n += 1;
                let envelope_id = format!("env-{id}-{retry}-{n}");
                let frame = json!({
                    "envelope_id": envelope_id,
                    "type": "events_api",
                    "accepts_response_payload": false,
                    "retry_attempt": retry,
                    "retry_reason": if retry > 0 { "timeout" } else { "" },
                    "payload": {
                        "token": "stand-in", "team_id": "T1", "api_app_id": "A1", "type": "event_callback",
                        "event_id": id, "event_time": 1_700_000_000, "event": event,
                    },
                });
                if socket.send(Message::Text(frame.to_string().into())).await.is_err() {
                    return;
                }
                while let Some(Ok(Message::Text(t))) = socket.next().await {
                    let v: Value = serde_json::from_str(&t).expect("JSON from the bot");
                    if v["envelope_id"] == envelope_id.as_str() {
                        slack.acks.lock().expect("lock").push(envelope_id.clone());
                        break;
                    }
                }
            }
        }
    }
    // Keep the socket open until the test ends.
    while socket.next().await.is_some() {}
}

/// Starts the stand-in with `envelopes` to deliver; returns the Web API's base URL (for
/// `--slack_api_url`).
pub async fn stand_in(slack: Arc<Slack>, envelopes: Vec<Envelope>) -> String {
    let ws = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("a port");
    let ws_addr = ws.local_addr().expect("an address");
    let queue = Arc::new(Mutex::new(VecDeque::from(envelopes)));
    let s = slack.clone();
    tokio::spawn(async move {
        while let Ok((stream, _)) = ws.accept().await {
            tokio::spawn(socket(s.clone(), queue.clone(), stream));
        }
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
                                json!({"ok": true, "url": format!("ws://{ws_addr}/socket")})
                            }
                            "/api/chat.postMessage" if auth == "Bearer xoxb-test" => {
                                let v: Value = serde_json::from_slice(&body).unwrap_or_default();
                                slack.posted.lock().expect("lock").push((
                                    v["channel"].as_str().unwrap_or("").into(),
                                    v["text"].as_str().unwrap_or("").into(),
                                ));
                                json!({"ok": true})
                            }
                            _ => json!({"ok": false, "error": "invalid_auth"}),
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
