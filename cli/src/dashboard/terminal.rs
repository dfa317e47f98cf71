//! The `/terminal` page's commands, run on the server: a body `{"line": "..."}` is answered with
//! `{"output": "...", "ok": true|false}`. Calls are made with the browser's own metadata (its
//! `Authorization`), never with the dashboard's token.

use http::{Response, StatusCode};
use micro::client::Client;
use micro::transport::Body;
use micro::{CallOptions, Metadata};

use crate::gateway::json_response;
use crate::global::{within, Global};
use crate::ops::{health, list, pretty, words};

/// What `help` prints.
pub(crate) const HELP: &str = "Commands:
  list services                  every registered service
  get service NAME               versions, nodes and endpoints of a service
  health NAME                    Debug.Health of every node of a service
  call SERVICE ENDPOINT [JSON]   call an endpoint (JSON runs to the end of the line)
  clear                          clear the screen
  help                           this text";

/// Runs one line; the reply is always 200 with `ok` saying whether the command succeeded.
pub(crate) async fn run(global: &Global, client: &Client, metadata: Metadata, body: &[u8]) -> Response<Body> {
    let line = serde_json::from_slice::<serde_json::Value>(body)
        .ok()
        .and_then(|v| v["line"].as_str().map(str::to_string))
        .unwrap_or_default();
    let (output, ok) = match execute(global, client, metadata, line.trim()).await {
        Ok(out) => (out, true),
        Err(e) => (e, false),
    };
    json_response(StatusCode::OK, serde_json::json!({ "output": output, "ok": ok }).to_string())
}

async fn execute(global: &Global, client: &Client, metadata: Metadata, line: &str) -> Result<String, String> {
    let words = words::words(line).map_err(|e| format!("cannot read that line: {e}"))?;
    let words: Vec<&str> = words.iter().map(String::as_str).collect();
    let failed = |e: anyhow::Error| match e.downcast_ref::<micro::Error>() {
        Some(me) => me.detail.clone(),
        None => e.to_string(),
    };
    match words.as_slice() {
        [] => Ok(String::new()),
        ["help"] => Ok(HELP.to_string()),
        ["list", "services"] => list::names(global)
            .await
            .map(|names| {
                let shown = names.iter().filter(|n| !n.starts_with(micro::broker::http::TOPIC_PREFIX));
                shown.cloned().collect::<Vec<_>>().join("\n")
            })
            .map_err(failed),
        ["get", "service", name] => {
            let registry = global.registry().map_err(failed)?;
            let versions =
                within("the registry", global.timeout(), registry.get_service(name)).await.map_err(failed)?;
            if versions.is_empty() {
                return Err(format!("service {name} not found"));
            }
            Ok(crate::format::service(&versions))
        }
        ["health", name] | ["health", "check", name] => match health::check(global, name).await {
            Ok((text, true)) => Ok(text),
            Ok((text, false)) => Err(text),
            Err(e) => Err(failed(e)),
        },
        ["call", service, endpoint, rest @ ..] => {
            let request = match rest {
                [] => "{}",
                [json] => json,
                _ => return Err("usage: call SERVICE ENDPOINT [JSON]".into()),
            };
            serde_json::from_str::<serde_json::Value>(request)
                .map_err(|e| format!("the request is not valid JSON: {e}"))?;
            let opts = CallOptions { metadata, timeout: Some(global.timeout()), ..Default::default() };
            match client.call_json(service, endpoint, request.as_bytes(), opts).await {
                Ok(reply) => Ok(match serde_json::from_slice::<serde_json::Value>(&reply) {
                    Ok(v) => pretty(&v),
                    Err(_) => String::from_utf8_lossy(&reply).into_owned(),
                }),
                Err(e) => Err(format!("error calling {service}.{endpoint}: {}", e.to_json())),
            }
        }
        [first, ..] => Err(format!("unknown command {first:?}; type help for the list")),
    }
}
