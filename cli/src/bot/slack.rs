//! The Slack input, over Socket Mode: `apps.connections.open` with the app token gives a
//! websocket URL; every envelope that arrives on it is acknowledged (`{"envelope_id": ...}`), and
//! mentions of the bot (`app_mention`) and direct messages (`message` in an `im` channel) are
//! answered with `chat.postMessage` using the bot token; other channel messages are not the
//! bot's. The text is what Slack sends: the leading `<@UBOT>` mention is dropped, `&amp;`,
//! `&lt;` and `&gt;` are unescaped, links `<http://x|x>` become `http://x`, and typographic
//! quotes become plain ones (so JSON typed in Slack stays JSON). An event Slack delivers again
//! (`retry_attempt`) is acknowledged but not answered twice. The connection is opened again when
//! Slack asks (`disconnect`) or when it drops. HTTPS and WSS use rustls with
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
    let mut seen = Seen::default();
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
                    let Some((channel, text)) = wanted(&envelope, &mut seen) else { continue };
                    let who =
                        super::Who::Slack(envelope["payload"]["event"]["user"].as_str().unwrap_or("").to_string());
                    let answer = bot.answer(&text, &who).await;
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

/// The event ids answered lately, so an event Slack delivers again is not answered twice.
#[derive(Default)]
struct Seen {
    ids: std::collections::VecDeque<String>,
}

impl Seen {
    const KEEP: usize = 512;

    /// Records `id`; whether it was new.
    fn first_time(&mut self, id: &str) -> bool {
        if self.ids.iter().any(|s| s == id) {
            return false;
        }
        if self.ids.len() == Self::KEEP {
            self.ids.pop_front();
        }
        self.ids.push_back(id.to_string());
        true
    }
}

/// The channel and the command of an `events_api` envelope the bot answers: a mention of the
/// bot, or a direct message, not from a bot, not an edit, and not one already answered.
fn wanted(envelope: &serde_json::Value, seen: &mut Seen) -> Option<(String, String)> {
    let payload = &envelope["payload"];
    let event = &payload["event"];
    let kind = event["type"].as_str()?;
    let direct = kind == "message" && event["channel_type"] == "im";
    if !(kind == "app_mention" || direct) || event.get("bot_id").is_some() || event.get("subtype").is_some() {
        return None;
    }
    let id = payload["event_id"].as_str().or_else(|| event["client_msg_id"].as_str()).unwrap_or_default();
    if !id.is_empty() && !seen.first_time(id) {
        return None;
    }
    Some((event["channel"].as_str()?.to_string(), command_text(event["text"].as_str()?)))
}

/// A message's text as typed: without the leading mention, with Slack's escapes and link markup
/// undone and typographic quotes made plain.
pub(crate) fn command_text(text: &str) -> String {
    let mut text = text.trim_start();
    if let Some(rest) = text.strip_prefix("<@") {
        if let Some(end) = rest.find('>') {
            text = rest[end + 1..].trim_start();
        }
    }
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(start) = rest.find('<') {
        out.push_str(&rest[..start]);
        let after = &rest[start + 1..];
        let Some(end) = after.find('>') else {
            out.push_str(&rest[start..]);
            rest = "";
            break;
        };
        let inner = &after[..end];
        // `<http://x|label>` and `<mailto:a@b|a@b>` → the address; `<#C1|general>` → `#general`;
        // `<@U1>` stays a mention.
        let shown = match inner.split_once('|') {
            Some((target, label)) if target.starts_with('#') => format!("#{label}"),
            Some((target, _)) => target.strip_prefix("mailto:").unwrap_or(target).to_string(),
            None if inner.starts_with('@') || inner.starts_with('!') => format!("<{inner}>"),
            None => inner.to_string(),
        };
        out.push_str(&shown);
        rest = &after[end + 1..];
    }
    out.push_str(rest);
    out.replace("&lt;", "<")
        .replace("&gt;", ">")
        .replace("&amp;", "&")
        .replace(['\u{201c}', '\u{201d}'], "\"")
        .replace(['\u{2018}', '\u{2019}'], "'")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slack_markup_becomes_what_was_typed() {
        assert_eq!(command_text("<@U0BOT> list services"), "list services");
        assert_eq!(
            command_text(r#"<@U0BOT> call svc X.Y {"url":"<http://a.example/x?a=1&amp;b=2|a.example/x>"}"#),
            r#"call svc X.Y {"url":"http://a.example/x?a=1&b=2"}"#
        );
        assert_eq!(command_text("echo 1 &lt; 2 &amp;&amp; 3 &gt; 2"), "echo 1 < 2 && 3 > 2");
        assert_eq!(command_text("echo \u{201c}hi\u{201d} it\u{2019}s"), "echo \"hi\" it's");
        assert_eq!(command_text("echo <#C1|general> <@U2> <mailto:a@b.c|a@b.c>"), "echo #general <@U2> a@b.c");
        assert_eq!(command_text("echo a < b"), "echo a < b");
    }

    #[test]
    fn only_mentions_and_direct_messages_once_each() {
        let mut seen = Seen::default();
        let env = |kind: &str, channel_type: &str, id: &str| serde_json::json!({"payload": {"event_id": id, "event": {"type": kind, "channel_type": channel_type, "channel": "C1", "user": "U1", "text": "<@U0BOT> ping"}}});
        assert_eq!(wanted(&env("app_mention", "channel", "E1"), &mut seen), Some(("C1".into(), "ping".into())));
        assert_eq!(wanted(&env("app_mention", "channel", "E1"), &mut seen), None, "a retry of E1");
        assert_eq!(wanted(&env("message", "channel", "E2"), &mut seen), None, "a channel message");
        assert!(wanted(&env("message", "im", "E3"), &mut seen).is_some(), "a direct message");
    }
}
