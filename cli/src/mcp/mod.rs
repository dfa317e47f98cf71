//! `micro mcp`: the platform as a Model Context Protocol server, so that agents can call its
//! services as tools. The tools are the registry's unary endpoints ([`catalog`]); a call is a
//! JSON call of the endpoint with the tool's arguments, answered with the reply as text and as
//! `structuredContent`, or a tool error with the micro error's detail. The tool list follows the
//! registry: clients of MCP 2026-07-28 hear `notifications/tools/list_changed` on a
//! `subscriptions/listen` stream, clients of earlier versions over stdio on their session.
//!
//! The protocol is the official SDK's (`rmcp`): both transports (stdio and streamable HTTP) and
//! every version it knows. Over HTTP ([`http`]) each request needs a bearer token, which is
//! forwarded to the service as the caller's `Authorization`; the tool never sends one of its own.
//! Every tool is rate limited, and every call is logged (target `micro::mcp::audit`) with the tool,
//! who called it (the peer, and a fingerprint of the token, never the token) and the outcome.

pub(crate) mod catalog;
pub(crate) mod http;

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use micro::{CallOptions, Client, Metadata};
use rmcp::model::{
    CallToolRequestParams, CallToolResponse, CallToolResult, ContentBlock, Implementation, JsonObject, ListToolsResult,
    PaginatedRequestParams, ServerCapabilities, ServerConfig, SubscriptionFilter, Tool,
};
use rmcp::service::{NotificationContext, RequestContext, SubscriptionContext};
use rmcp::{ErrorData, RoleServer, ServerHandler};

use catalog::Catalog;

/// The most `subscriptions/listen` streams open at once.
const MAX_LISTENERS: usize = 1024;

/// Who is calling a tool: what the audit log says of them, and what is forwarded.
#[derive(Debug, Clone, Default)]
pub(crate) struct Caller {
    /// Call metadata from the caller's request (their `Authorization`, trace context).
    pub(crate) metadata: Metadata,
    /// For the audit log: the peer and the token's fingerprint.
    pub(crate) who: String,
}

/// A per-tool token bucket: `rate` calls a second, as many at once.
struct Limits {
    rate: f64,
    buckets: Mutex<HashMap<String, (f64, Instant)>>,
}

impl Limits {
    /// Takes a token for `tool` (one of the catalog's, so the map stays as small as it).
    fn take(&self, tool: &str) -> bool {
        if self.rate <= 0.0 {
            return true;
        }
        let now = Instant::now();
        let mut buckets = self.buckets.lock().unwrap_or_else(|e| e.into_inner());
        if buckets.len() > catalog::MAX_TOOLS {
            buckets.clear();
        }
        let (tokens, at) = buckets.entry(tool.to_string()).or_insert((self.rate, now));
        *tokens = (*tokens + now.duration_since(*at).as_secs_f64() * self.rate).min(self.rate.max(1.0));
        *at = now;
        if *tokens >= 1.0 {
            *tokens -= 1.0;
            true
        } else {
            false
        }
    }
}

/// One of the `MAX_LISTENERS` places, given back when dropped (also when a stream's future is).
struct Slot<'a>(&'a AtomicUsize);

impl<'a> Slot<'a> {
    fn take(count: &'a AtomicUsize) -> Option<Slot<'a>> {
        let before = count.fetch_add(1, Ordering::AcqRel);
        let slot = Slot(count);
        (before < MAX_LISTENERS).then_some(slot)
    }
}

impl Drop for Slot<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

/// What every session of the server shares.
pub(crate) struct Tools {
    catalog: Arc<Catalog>,
    client: Client,
    timeout: Duration,
    limits: Limits,
    listeners: AtomicUsize,
    /// Sessions of earlier protocol versions get `list_changed` on the session itself (stdio).
    notify_sessions: bool,
    /// Whether that session is already told (a repeated `initialized` starts nothing more).
    notifying: AtomicBool,
}

impl Tools {
    /// Tools from `catalog`, called with `client` within `timeout`, at most `rate` calls a second
    /// per tool (0: no limit).
    pub(crate) fn new(catalog: Arc<Catalog>, client: Client, timeout: Duration, rate: f64) -> Arc<Tools> {
        Arc::new(Tools {
            catalog,
            client,
            timeout,
            limits: Limits { rate, buckets: Mutex::default() },
            listeners: AtomicUsize::new(0),
            notify_sessions: false,
            notifying: AtomicBool::new(false),
        })
    }

    /// The same, for a transport whose sessions last as long as the connection (stdio).
    pub(crate) fn with_sessions(self: Arc<Tools>) -> Arc<Tools> {
        match Arc::try_unwrap(self) {
            Ok(mut t) => {
                t.notify_sessions = true;
                Arc::new(t)
            }
            Err(shared) => shared,
        }
    }

    /// The tools now.
    pub(crate) fn list(&self) -> Vec<Tool> {
        self.catalog.tools().values().map(|e| e.tool.clone()).collect()
    }

    /// Calls the tool `name` with `arguments` for `caller`; a failure is a tool error, logged.
    pub(crate) async fn call(&self, name: &str, arguments: Option<JsonObject>, caller: &Caller) -> CallToolResult {
        let started = Instant::now();
        let (outcome, result) = self.answer(name, arguments, caller).await;
        micro::tracing::info!(
            target: "micro::mcp::audit",
            tool = name,
            caller = caller.who.as_str(),
            outcome = outcome.as_str(),
            ms = started.elapsed().as_millis() as u64,
            "tool call"
        );
        result
    }

    async fn answer(&self, name: &str, arguments: Option<JsonObject>, caller: &Caller) -> (String, CallToolResult) {
        let tools = self.catalog.tools();
        let Some(entry) = tools.get(name) else {
            return ("unknown tool".into(), failure(format!("there is no tool {name:?}; tools/list names them")));
        };
        if !self.limits.take(name) {
            let rate = self.limits.rate;
            return (
                "rate limited".into(),
                failure(format!("{name} takes at most {rate} calls a second; try again shortly")),
            );
        }
        let body = serde_json::Value::Object(arguments.unwrap_or_default()).to_string();
        let mut opts = CallOptions::new().timeout(self.timeout);
        opts.metadata = caller.metadata.clone();
        match self.client.call_json(&entry.service, &entry.endpoint, body.as_bytes(), opts).await {
            Ok(reply) => match serde_json::from_slice::<serde_json::Value>(&reply) {
                Ok(value @ serde_json::Value::Object(_)) => ("ok".into(), CallToolResult::structured(value)),
                _ => ("ok".into(), CallToolResult::success(vec![ContentBlock::text(String::from_utf8_lossy(&reply))])),
            },
            Err(e) => (format!("{} {}", e.code, e.status), failure(e.detail)),
        }
    }
}

fn failure(detail: impl Into<String>) -> CallToolResult {
    CallToolResult::error(vec![ContentBlock::text(detail.into())])
}

/// One session's handler: the shared tools.
#[derive(Clone)]
pub(crate) struct Server {
    tools: Arc<Tools>,
    /// Who is on the other end when the transport says nothing of it (stdio).
    caller: Caller,
}

impl Server {
    /// A handler over `tools` for callers the transport describes, else `caller`.
    pub(crate) fn new(tools: Arc<Tools>, caller: Caller) -> Server {
        Server { tools, caller }
    }

    fn caller(&self, context: &RequestContext<RoleServer>) -> Caller {
        // The HTTP transport puts the request's parts, with the caller it found, in the context.
        let parts = context.extensions.get::<::http::request::Parts>();
        parts.and_then(|p| p.extensions.get::<Caller>()).cloned().unwrap_or_else(|| self.caller.clone())
    }
}

impl ServerHandler for Server {
    fn get_info(&self) -> ServerConfig {
        ServerConfig::new(ServerCapabilities::builder().enable_tools().enable_tool_list_changed().build())
            .with_server_info(Implementation::new("micro", env!("CARGO_PKG_VERSION")))
            .with_instructions(
                "The tools are the endpoints of the services in the registry, named service.Endpoint; \
                 each takes the endpoint's request as JSON and answers with its reply.",
            )
    }

    async fn list_tools(
        &self,
        _request: Option<PaginatedRequestParams>,
        _context: RequestContext<RoleServer>,
    ) -> Result<ListToolsResult, ErrorData> {
        Ok(ListToolsResult::with_all_items(self.tools.list()))
    }

    fn get_tool(&self, name: &str) -> Option<Tool> {
        self.tools.catalog.tools().get(name).map(|e| e.tool.clone())
    }

    async fn call_tool(
        &self,
        request: CallToolRequestParams,
        context: RequestContext<RoleServer>,
    ) -> Result<CallToolResponse, ErrorData> {
        let caller = self.caller(&context);
        Ok(self.tools.call(&request.name, request.arguments, &caller).await.into())
    }

    fn accepted_subscription_filter(&self, requested: &SubscriptionFilter) -> Option<SubscriptionFilter> {
        // Tool-list changes are all there is to hear; a stream asking for nothing else is refused.
        let accepted = requested.supported_by(&self.get_info().capabilities);
        (accepted.tools_list_changed == Some(true)).then_some(accepted)
    }

    async fn listen(&self, context: SubscriptionContext) -> Result<(), ErrorData> {
        let Some(_slot) = Slot::take(&self.tools.listeners) else {
            return Err(ErrorData::internal_error(format!("{MAX_LISTENERS} listeners are open; try later"), None));
        };
        let mut changes = self.tools.catalog.subscribe();
        changes.mark_unchanged();
        loop {
            tokio::select! {
                () = context.cancelled() => return Ok(()),
                changed = changes.changed() => {
                    if changed.is_err() {
                        return Ok(());
                    }
                    if let Err(e) = context.sink().notify_tool_list_changed().await {
                        return Err(ErrorData::internal_error(e.to_string(), None));
                    }
                }
            }
        }
    }

    async fn on_initialized(&self, context: NotificationContext<RoleServer>) {
        if !self.tools.notify_sessions || self.tools.notifying.swap(true, Ordering::AcqRel) {
            return;
        }
        let mut changes = self.tools.catalog.subscribe();
        changes.mark_unchanged();
        tokio::spawn(async move {
            while changes.changed().await.is_ok() {
                if context.peer.notify_tool_list_changed().await.is_err() {
                    return;
                }
            }
        });
    }
}
