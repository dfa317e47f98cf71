//! The Slack input, over Socket Mode: `apps.connections.open` with the app token gives a
//! websocket URL; every envelope that arrives on it is acknowledged (`{"envelope_id": ...}`), and
//! each message event is answered with `chat.postMessage` using the bot token. The connection
//! is opened again when Slack asks (`disconnect`) or when it drops. HTTPS and WSS use rustls with
//! the webpki roots; `--slack_api_url` points it at another server (tests use a plain-HTTP
//! stand-in on 127.0.0.1).

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use futures_util::{SinkExt, StreamExt};
use http_body_util::{BodyExt, Full};
use tokio_tungstenite::tungstenite::Message;

use super::Bot;

/// Where and as whom to talk to Slack.
#[derive(Debug, Clone)]
pub(crate) struct Slack {
    pub(crate) api: String,
    pub(crate) app_token: String,
    pub(crate) bot_token: String,
}

type HttpClient = hyper_util::client::legacy::Client<
    hyper_rustls::HttpsConnector<hyper_util::client::legacy::connect::HttpConnector>,
    Full<Bytes>,
>;

async fn post(
    client: &HttpClient,
    url: &str,
    token: &str,
    body: serde_json::Value,
) -> anyhow::Result<serde_json::Value> {
    let req = http::Request::post(url)
        .header("authorization", format!("Bearer {token}"))
        .header("content-type", "application/json; charset=utf-8")
        .body(Full::new(Bytes::from(body.to_string())))?;
    let resp = tokio::time::timeout(Duration::from_secs(10), client.request(req)).await??;
    let bytes = resp.into_body().collect().await?.to_bytes();
    let v: serde_json::Value = serde_json::from_slice(&bytes)?;
    if v["ok"] != serde_json::Value::Bool(true) {
        anyhow::bail!("slack {url}: {}", v["error"].as_str().unwrap_or("not ok"));
    }
    Ok(v)
}

/// Runs the Slack input until the process stops.
pub(crate) async fn run(bot: Arc<Bot>, slack: Slack) -> anyhow::Result<()> {
    if slack.app_token.is_empty() || slack.bot_token.is_empty() {
        anyhow::bail!("the slack input needs --slack_app_token (xapp-...) and --slack_bot_token (xoxb-...)");
    }
    let https = hyper_rustls::HttpsConnectorBuilder::new().with_webpki_roots().https_or_http().enable_http1().build();
    let client: HttpClient =
        hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new()).build(https);
    let api = slack.api.trim_end_matches('/').to_string();
    loop {
        let opened =
            post(&client, &format!("{api}/apps.connections.open"), &slack.app_token, serde_json::json!({})).await;
        let url = match opened.map(|v| v["url"].as_str().map(str::to_string)) {
            Ok(Some(url)) => url,
            Ok(None) => anyhow::bail!("slack gave no socket URL"),
            Err(e) => {
                eprintln!("bot: slack: {e}; trying again in 2s");
                tokio::time::sleep(Duration::from_secs(2)).await;
                continue;
            }
        };
        let (ws, _) = match tokio_tungstenite::connect_async(url.as_str()).await {
            Ok(ws) => ws,
            Err(e) => {
                eprintln!("bot: slack socket: {e}; trying again in 2s");
                tokio::time::sleep(Duration::from_secs(2)).await;
                continue;
            }
        };
        let (mut sink, mut source) = ws.split();
        while let Some(Ok(msg)) = source.next().await {
            let Message::Text(text) = msg else { continue };
            let Ok(envelope) = serde_json::from_str::<serde_json::Value>(&text) else { continue };
            if let Some(id) = envelope["envelope_id"].as_str() {
                let _ = sink.send(Message::Text(serde_json::json!({ "envelope_id": id }).to_string().into())).await;
            }
            match envelope["type"].as_str() {
                Some("disconnect") => break,
                Some("events_api") => {
                    let event = &envelope["payload"]["event"];
                    let is_message = event["type"] == "message" || event["type"] == "app_mention";
                    if !is_message || event.get("bot_id").is_some() || event.get("subtype").is_some() {
                        continue;
                    }
                    let (Some(channel), Some(text)) = (event["channel"].as_str(), event["text"].as_str()) else {
                        continue;
                    };
                    let who = super::Who::Slack(event["user"].as_str().unwrap_or("").to_string());
                    let answer = bot.answer(text, &who).await;
                    let body = serde_json::json!({ "channel": channel, "text": answer });
                    if let Err(e) = post(&client, &format!("{api}/chat.postMessage"), &slack.bot_token, body).await {
                        eprintln!("bot: slack: {e}");
                    }
                }
                _ => {}
            }
        }
    }
}
