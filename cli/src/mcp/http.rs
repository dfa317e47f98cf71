//! MCP's streamable HTTP transport at `/mcp`, behind the edge checks every tool makes (Host,
//! Origin, body limit and read timeout, see [`crate::edge`]) and a bearer token. The protocol is
//! rmcp's, served statelessly (MCP 2026-07-28 has no sessions; earlier clients are answered
//! request by request), so no client can make the server keep state for it beyond the requests
//! it has open. `GET /metrics` gives the tool's metrics.

use std::sync::Arc;

use http::{header, HeaderValue, Request, Response};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use micro::transport::http::Dispatch;
use micro::transport::Body;
use micro::{Error, Metadata};
use rmcp::transport::streamable_http_server::session::never::NeverSessionManager;
use rmcp::transport::streamable_http_server::{StreamableHttpServerConfig, StreamableHttpService};

use super::{Caller, Server, Tools};
use crate::edge::Policy;
use crate::gateway::error_response;
use crate::telemetry::Telemetry;

/// Where the protocol is served.
pub(crate) const PATH: &str = "/mcp";

/// The id of this transport's refusals.
const ID: &str = "go.micro.mcp";

/// Headers of the caller's request that travel with the calls a tool makes.
const FORWARDED: [&str; 4] = ["authorization", "traceparent", "tracestate", "baggage"];

/// The HTTP face of the tools.
pub(crate) struct Mcp {
    service: StreamableHttpService<Server, NeverSessionManager>,
    policy: Policy,
    /// SHA-256 digests of the tokens that may call.
    tokens: Vec<Vec<u8>>,
    telemetry: Telemetry,
    /// Ends rmcp's open streams (a `subscriptions/listen` closes gracefully).
    cancel: Box<dyn Fn() + Send + Sync>,
}

impl Mcp {
    /// Serves `tools` to callers with one of `tokens`, under `policy`.
    pub(crate) fn new(tools: Arc<Tools>, tokens: &[String], policy: Policy, telemetry: Telemetry) -> Mcp {
        let config = StreamableHttpServerConfig::default()
            .with_legacy_session_mode(false)
            .with_json_response(true)
            // The edge checks hosts and origins, with the flags every tool takes.
            .disable_allowed_hosts()
            .disable_allowed_origins()
            .with_max_request_body_bytes(policy.max_body);
        let token = config.cancellation_token.clone();
        let cancel = Box::new(move || token.cancel());
        let service = StreamableHttpService::new(
            move || Ok(Server::new(tools.clone(), Caller::default())),
            Arc::new(NeverSessionManager::default()),
            config,
        );
        let tokens = tokens.iter().map(|t| digest(t)).collect();
        Mcp { service, policy, tokens, telemetry, cancel }
    }

    /// Closes the open streams, so that a shutdown need not wait them out.
    pub(crate) fn close(&self) {
        (self.cancel)();
    }

    /// The caller of `req` if it carries one of the tokens.
    fn authenticate<B>(&self, req: &Request<B>) -> Result<Caller, Box<Response<Body>>> {
        let presented = req
            .headers()
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer ").or_else(|| v.strip_prefix("bearer ")))
            .map(str::trim)
            .filter(|t| !t.is_empty());
        let Some(token) = presented else {
            return Err(Box::new(unauthorized(
                "this MCP server needs a bearer token (Authorization: Bearer TOKEN)",
                false,
            )));
        };
        let fingerprint = digest(token);
        if !self.tokens.contains(&fingerprint) {
            return Err(Box::new(unauthorized("the bearer token is not one this MCP server accepts", true)));
        }
        let mut metadata = Metadata::new();
        for name in FORWARDED {
            if let Some(v) = req.headers().get(name) {
                metadata.insert_header(&header::HeaderName::from_static(name), v);
            }
        }
        let peer = crate::edge::peer(req).map_or_else(|| "?".to_string(), |ip| ip.to_string());
        let hex: String = fingerprint[..4].iter().map(|b| format!("{b:02x}")).collect();
        Ok(Caller { metadata, who: format!("{peer} token:{hex}") })
    }

    async fn handle(&self, req: Request<Incoming>) -> Response<Body> {
        if req.uri().path() != PATH {
            return error_response(&Error::not_found(ID, format!("MCP is served at {PATH}")));
        }
        let caller = match self.authenticate(&req) {
            Ok(caller) => caller,
            Err(refusal) => return *refusal,
        };
        let (mut parts, body) = req.into_parts();
        let body = match self.policy.read_body(body).await {
            Ok(body) => body,
            Err(e) => return error_response(&e),
        };
        parts.extensions.insert(caller);
        let mut service = self.service.clone();
        let resp = match tower_call(&mut service, Request::from_parts(parts, Full::new(body))).await {
            Ok(resp) => resp,
            Err(never) => match never {},
        };
        resp.map(|b| Body::boxed(b.map_err(|never| match never {})))
    }
}

/// Calls a tower service (rmcp's) once.
async fn tower_call<S, R>(service: &mut S, req: R) -> Result<S::Response, S::Error>
where
    S: tower_service::Service<R>,
{
    std::future::poll_fn(|cx| service.poll_ready(cx)).await?;
    service.call(req).await
}

fn digest(token: &str) -> Vec<u8> {
    ring::digest::digest(&ring::digest::SHA256, token.as_bytes()).as_ref().to_vec()
}

fn unauthorized(detail: &str, invalid: bool) -> Response<Body> {
    let mut resp = error_response(&Error::unauthorized(ID, detail));
    let challenge = if invalid { r#"Bearer realm="micro", error="invalid_token""# } else { r#"Bearer realm="micro""# };
    resp.headers_mut().insert(header::WWW_AUTHENTICATE, HeaderValue::from_static(challenge));
    resp
}

impl Dispatch for Mcp {
    #[allow(clippy::manual_async_fn)]
    fn dispatch(self: Arc<Self>, req: Request<Incoming>) -> impl std::future::Future<Output = Response<Body>> + Send {
        async move {
            if let Err(e) = self.policy.check_host(&req) {
                return error_response(&e);
            }
            if let Some(page) = self.telemetry.page(&req) {
                return page;
            }
            if Policy::is_preflight(&req) {
                return self.policy.preflight(&req);
            }
            if let Err(e) = self.policy.check_origin(&req) {
                return error_response(&e);
            }
            let origin = req.headers().get(header::ORIGIN).cloned();
            let mcp = self.clone();
            let mut resp = self.telemetry.serve("mcp", req, |req| async move { mcp.handle(req).await }).await;
            self.policy.cors(origin.as_ref(), &mut resp);
            resp
        }
    }
}
