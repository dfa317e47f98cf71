//! The HTTP API gateway (`micro api`): one HTTP entry point that routes to services found in the
//! registry.
//!
//! Handlers: `meta` (the default: a route declared by an endpoint's `google.api.http` bindings
//! wins, transcoded by [`micro::api::transcode`], else `rpc`), `rpc` (`POST` with a JSON or
//! protobuf body → call → reply in the request's content type), `api` (the whole HTTP request as
//! a message, the reply written as the HTTP response), `http`/`proxy` and `web` (reverse proxy to
//! the HTTP service the first path segment names, see [`upstream`]), `event` (publish Go Micro's
//! event envelope of the body to `<namespace>.<first segment>`, named by the rest of the path).
//! Streaming endpoints are reached over websocket ([`websocket`]). `POST /rpc` takes
//! `{service, endpoint, request}` for a service of the namespace; `GET /` the version;
//! `GET /openapi.json` the OpenAPI document of the namespace ([`micro::api::openapi`]).
//!
//! **Safe by default** (see [`crate::edge`] and SECURITY.md): the host and origin of every request
//! are checked, callers' headers reach services without cookies, forwarding headers or the
//! platform's own `micro-*` headers, and the gateway forwards each caller's `Authorization`,
//! never a token of its own. Calls take a body typed `application/json` or `application/protobuf`
//! (browsers cannot send those across origins without a preflight), or none; `GET` reaches only
//! routes an endpoint declared for `GET`. Bodies, bridged websocket messages and upstream replies
//! share one limit (a relayed websocket is bounded by its idle timeout instead). The `http` and
//! `web` handlers proxy HTTP apps, which own their cookies and their own cross-site policy: there
//! only the host is checked (and the origin of websocket upgrades).
//!
//! Served by the runtime's HTTP server (HTTP/1.1 and HTTP/2, timeouts on every phase, worker
//! threads); routing reads the watch-fed caches, never the registry per request.

pub(crate) mod routes;
pub(crate) mod upstream;
pub(crate) mod websocket;

pub(crate) use upstream::{http_client, HttpClient, Upstream};

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderValue, Method, Response, StatusCode};
use hyper::body::Incoming;
use micro::api::{pairs_to_json, resolve, transcode};
use micro::client::Client;
use micro::codec::{Codec, Protocol};
use micro::transport::http::Dispatch;
use micro::transport::Body;
use micro::{CallOptions, Error, Metadata, Publisher};

use crate::edge::Policy;
use routes::Found;

/// The id of the gateway's own errors.
pub(crate) const ID: &str = "go.micro.api";

/// Which handler serves requests.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Handler {
    Meta,
    Rpc,
    Api,
    Http,
    Event,
    Web,
}

impl Handler {
    /// The handler's name, as `--handler` takes it and metrics label it.
    pub(crate) fn name(self) -> &'static str {
        match self {
            Handler::Meta => "meta",
            Handler::Rpc => "rpc",
            Handler::Api => "api",
            Handler::Http => "http",
            Handler::Event => "event",
            Handler::Web => "web",
        }
    }
}

impl std::str::FromStr for Handler {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        Ok(match s {
            "meta" => Handler::Meta,
            "rpc" => Handler::Rpc,
            "api" => Handler::Api,
            "http" | "proxy" => Handler::Http,
            "event" => Handler::Event,
            "web" => Handler::Web,
            _ => return Err(format!("unknown handler \"{s}\" (valid: meta, rpc, api, http, proxy, event, web)")),
        })
    }
}

/// The gateway's settings.
pub(crate) struct Gateway {
    pub(crate) namespace: String,
    pub(crate) handler: Handler,
    pub(crate) cors: bool,
    /// Calls for callers: never with the gateway's own token.
    pub(crate) client: Client,
    /// Nodes of the services the `http` handler proxies to (a watch-fed cache).
    pub(crate) nodes: Arc<micro::registry::cache::RegistryCache>,
    pub(crate) routes: Arc<routes::Table>,
    pub(crate) policy: Policy,
    pub(crate) timeout: Duration,
    pub(crate) proxy: HttpClient,
    pub(crate) telemetry: crate::telemetry::Telemetry,
}

pub(crate) fn json_response(status: StatusCode, body: impl Into<Bytes>) -> Response<Body> {
    let mut resp = Response::new(Body::full(body));
    *resp.status_mut() = status;
    resp.headers_mut().insert(http::header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
    resp
}

pub(crate) fn error_response(e: &Error) -> Response<Body> {
    json_response(StatusCode::from_u16(e.code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR), e.to_json())
}

impl Gateway {
    /// 404: no service answers at the path (Go Micro says 500; nothing failed here).
    fn not_found(&self, service: &str, path: &str) -> Error {
        Error::not_found(
            ID,
            format!(
                "service {service} not found (path {path} in namespace {})",
                if self.namespace.is_empty() { "<none>" } else { &self.namespace }
            ),
        )
    }

    /// Every handler's future is boxed: the future the connection holds stays small, so moving
    /// it (once per request) is cheap.
    async fn handle(self: Arc<Self>, req: http::Request<Incoming>) -> Response<Body> {
        let path = req.uri().path().to_string();
        if req.method() == Method::GET && path == "/" {
            return json_response(StatusCode::OK, format!(r#"{{"version":"{}"}}"#, env!("CARGO_PKG_VERSION")));
        }
        if req.method() == Method::GET
            && path == "/openapi.json"
            && matches!(self.handler, Handler::Meta | Handler::Rpc)
        {
            let doc = self.routes.openapi(self.handler == Handler::Meta);
            return json_response(StatusCode::OK, doc);
        }
        if req.method() == Method::POST && path == "/rpc" {
            return Box::pin(self.rpc_endpoint(req)).await;
        }
        if matches!(self.handler, Handler::Http | Handler::Web) {
            return Box::pin(self.proxy(req)).await;
        }
        if websocket::is_upgrade(&req) {
            let Some(route) = resolve(&self.namespace, &path) else {
                return error_response(&Error::not_found(ID, format!("no service at {path}")));
            };
            let opts = CallOptions { metadata: self.policy.metadata(&req), ..Default::default() };
            return websocket::bridge(
                req,
                self.client.clone(),
                route.service,
                route.method,
                opts,
                self.policy.max_body,
            );
        }
        if matches!(self.handler, Handler::Meta) {
            match self.routes.find(req.method().as_str(), &path) {
                Found::Route(declared, vars) => return Box::pin(self.transcoded(req, &declared, &vars)).await,
                Found::OtherMethods(allow) => {
                    // A POST that the rpc rule leads to a service still reaches it.
                    let rpc = *req.method() == Method::POST
                        && resolve(&self.namespace, &path).is_some_and(|r| self.routes.knows(&r.service, &r.method));
                    if !rpc {
                        return not_allowed(&path, &allow);
                    }
                }
                Found::Nothing => {}
            }
        }
        let Some(route) = resolve(&self.namespace, &path) else {
            return error_response(&Error::not_found(ID, format!("no service at {path}")));
        };
        match self.handler {
            Handler::Meta | Handler::Rpc => Box::pin(self.rpc(req, &route.service, &route.method)).await,
            Handler::Api => Box::pin(self.api(req, &route.service, &route.method)).await,
            Handler::Http | Handler::Web => Box::pin(self.proxy(req)).await,
            Handler::Event => Box::pin(self.event(req)).await,
        }
    }

    /// `POST /rpc` with `{service, endpoint, request}` (JSON), for a service of the namespace.
    async fn rpc_endpoint(&self, req: http::Request<Incoming>) -> Response<Body> {
        if !crate::edge::is_media(req.headers().get(http::header::CONTENT_TYPE), &["application/json"]) {
            return error_response(&unsupported("POST /rpc takes Content-Type: application/json"));
        }
        let md = self.policy.metadata(&req);
        match self.policy.read_body(req.into_body()).await {
            Ok(body) => rpc_call(&self.client, md, &body, self.timeout, Some(&self.namespace)).await,
            Err(e) => error_response(&e),
        }
    }

    /// Calls `endpoint` with the request's body, JSON or protobuf, as it is (the service decodes
    /// it), and answers in the same content type.
    async fn rpc(&self, req: http::Request<Incoming>, service: &str, endpoint: &str) -> Response<Body> {
        let path = req.uri().path().to_string();
        if *req.method() != Method::POST {
            let e = Error::method_not_allowed(
                ID,
                format!("{} reaches only routes declared for it (google.api.http); call {path} with POST and Content-Type: application/json", req.method()),
            );
            let mut resp = error_response(&e);
            resp.headers_mut().insert(http::header::ALLOW, HeaderValue::from_static("POST"));
            return resp;
        }
        let ct = req.headers().get(http::header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).unwrap_or("").to_string();
        let codec = match Codec::from_content_type(&ct) {
            Some((codec, Protocol::Http)) => codec,
            // No type: only an empty body, which is the empty request.
            _ if ct.is_empty() => Codec::Json,
            _ => {
                return error_response(&unsupported(
                    "calls take Content-Type: application/json or application/protobuf",
                ))
            }
        };
        let md = self.policy.metadata(&req);
        let mut body = match self.policy.read_body(req.into_body()).await {
            Ok(b) => b,
            Err(e) => return error_response(&e),
        };
        if ct.is_empty() && !body.is_empty() {
            return error_response(&unsupported("calls take Content-Type: application/json or application/protobuf"));
        }
        if codec == Codec::Json && body.iter().all(u8::is_ascii_whitespace) {
            body = Bytes::from_static(b"{}");
        } else if codec == Codec::Json && body.windows(4).any(|w| w == b"null") {
            body = self.without_nulls(service, endpoint, body);
        }
        let content_type = match HeaderValue::from_str(&ct) {
            Ok(v) if !ct.is_empty() => v,
            _ => HeaderValue::from_static("application/json"),
        };
        if let Some(resp) = self.direct(service, endpoint, &content_type, &md, &body).await {
            return resp;
        }
        let opts = CallOptions { metadata: md, timeout: Some(self.timeout), ..Default::default() };
        // Boxed: the fallback's future is large and rarely needed.
        let call_path = format!("/{endpoint}");
        match Box::pin(self.client.call_raw(service, endpoint, &call_path, codec, &body, opts)).await {
            Ok(reply) => {
                let mut resp = Response::new(Body::full(reply));
                resp.headers_mut().insert(http::header::CONTENT_TYPE, content_type);
                resp
            }
            Err(e) => self.call_error(e, service, &path),
        }
    }

    /// The `rpc` handler's fast path: the call as one plain HTTP/1.1 request (micro's JSON and
    /// protobuf protocol on the service's own port, no gRPC framing) on a pooled keep-alive
    /// connection to a node, the reply passed on as it comes (within the body limit). `None`,
    /// and the client takes the call with its retries, when calls go through a `micro proxy`,
    /// the node is not a micro server on the HTTP transport, the service is not known, or no
    /// connection could be made.
    async fn direct(
        &self,
        service: &str,
        endpoint: &str,
        content_type: &HeaderValue,
        md: &Metadata,
        body: &Bytes,
    ) -> Option<Response<Body>> {
        // Streams and endpoints the registry does not show (yet) go through the client.
        if self.client.options().proxy.is_some() || !self.routes.is_unary(service, endpoint) {
            return None;
        }
        let entry = match self.nodes.get(service).await {
            Ok(e) => e,
            Err(e) if e.code == 404 => return Some(error_response(&self.not_found(service, &format!("/{endpoint}")))),
            Err(_) => return None,
        };
        let node = &entry.nodes.get(micro::selector::random_index(entry.nodes.len()))?.node;
        // Only our own servers answer the plain protocol at `/{endpoint}` (a Go Micro node may not).
        let ours = node.metadata.get("server").is_some_and(|s| s == "micro");
        if !ours || node.metadata.get("transport").is_some_and(|t| t != "http") {
            return None;
        }
        let tls = micro::transport::tls::default_client();
        let scheme = if micro::transport::tls::node_is_secure(&node.metadata, Some(&tls)) { "https" } else { "http" };
        let uri: http::Uri = format!("{scheme}://{}/{endpoint}", node.address).parse().ok()?;
        let mut req = http::Request::new(Body::full(body.clone()));
        *req.method_mut() = Method::POST;
        *req.uri_mut() = uri;
        let h = req.headers_mut();
        for (k, v) in md.headers() {
            h.append(k.clone(), v.clone());
        }
        h.insert(http::header::CONTENT_TYPE, content_type.clone());
        // A transport header, so handlers do not see it among their metadata.
        if let Ok(t) = HeaderValue::from_str(&micro::transport::grpc::format_timeout(self.timeout)) {
            h.insert("grpc-timeout", t);
        }
        let call = crate::telemetry::Call::start(&self.telemetry, service, endpoint, req.headers_mut());
        let resp = match tokio::time::timeout(self.timeout, self.proxy.request(req)).await {
            Ok(Ok(resp)) => resp,
            Ok(Err(e)) if e.is_connect() => return None,
            Ok(Err(e)) => return Some(call.ended(error_response(&Error::new(ID, 502, format!("{service}: {e}"))))),
            Err(_) => {
                let t = self.timeout;
                let e = Error::timeout(ID, format!("{service} did not answer within {t:?}"));
                return Some(call.ended(error_response(&e)));
            }
        };
        let resp = call.ended(resp);
        let (parts, body) = match upstream::pass_reply(resp, service, self.policy.max_body) {
            Ok(reply) => reply,
            Err(e) => return Some(error_response(&e)),
        };
        let body = upstream::deadline(body, self.timeout, "the reply");
        Some(Response::from_parts(parts, body))
    }

    /// A JSON request without the fields it sets to `null` (their defaults), by the endpoint's
    /// field tree; as it was when it is not an object or the tree is not known.
    fn without_nulls(&self, service: &str, endpoint: &str, body: Bytes) -> Bytes {
        let Some(schema) = self.routes.request_of(service, endpoint) else { return body };
        match serde_json::from_slice::<serde_json::Value>(&body) {
            Ok(serde_json::Value::Object(mut m)) => {
                transcode::drop_nulls(&mut m, &schema.values);
                Bytes::from(serde_json::Value::Object(m).to_string())
            }
            _ => body,
        }
    }

    /// A call through a declared route: the path variables, query and body mapped onto the
    /// request as its binding says ([`micro::api::transcode`]), JSON in and out.
    async fn transcoded(
        &self,
        req: http::Request<Incoming>,
        d: &routes::Declared,
        vars: &BTreeMap<String, String>,
    ) -> Response<Body> {
        let ct = req.headers().get(http::header::CONTENT_TYPE).cloned();
        let path = req.uri().path().to_string();
        let query = req.uri().query().unwrap_or("").to_string();
        let md = self.policy.metadata(&req);
        let body = match self.policy.read_body(req.into_body()).await {
            Ok(b) => b,
            Err(e) => return error_response(&e),
        };
        // No type: only an empty body.
        if (ct.is_some() || !body.is_empty()) && !crate::edge::is_media(ct.as_ref(), &["application/json"]) {
            let (m, p) = (&d.binding.method, &d.binding.path);
            return error_response(&unsupported(&format!("{m} {p} takes Content-Type: application/json")));
        }
        let request = match transcode::request(&d.binding, d.request.as_ref(), vars, &query, &body) {
            Ok(object) => serde_json::Value::Object(object).to_string(),
            Err(e) => return error_response(&e),
        };
        let opts = CallOptions { metadata: md, timeout: Some(self.timeout), ..Default::default() };
        match self.client.call_json(&d.service, &d.endpoint, request.as_bytes(), opts).await {
            Ok(reply) => match transcode::response(&d.binding, d.response.as_ref(), &reply) {
                Ok(body) => json_response(StatusCode::OK, body),
                Err(e) => error_response(&e),
            },
            Err(e) => self.call_error(e, &d.service, &path),
        }
    }

    fn call_error(&self, e: Error, service: &str, path: &str) -> Response<Body> {
        if e.code == 404 && e.id == micro::registry::ID {
            return error_response(&self.not_found(service, path));
        }
        error_response(&e)
    }

    /// The `api` handler: the request as `{method, path, header, get, post, body, url}`.
    async fn api(&self, req: http::Request<Incoming>, service: &str, endpoint: &str) -> Response<Body> {
        let md = self.policy.metadata(&req);
        let (parts, body) = req.into_parts();
        let path = parts.uri.path().to_string();
        let body = match self.policy.read_body(body).await {
            Ok(b) => b,
            Err(e) => return error_response(&e),
        };
        let pairs = |m: serde_json::Map<String, serde_json::Value>| -> serde_json::Value {
            m.into_iter()
                .map(|(k, v)| {
                    let values = match v {
                        serde_json::Value::Array(a) => a,
                        other => vec![other],
                    };
                    (k.clone(), serde_json::json!({"key": k, "values": values}))
                })
                .collect::<serde_json::Map<_, _>>()
                .into()
        };
        let mut header = serde_json::Map::new();
        for (key, v) in md.iter() {
            let e = header.entry(key.to_string()).or_insert_with(|| serde_json::json!({"key": key, "values": []}));
            if let Some(a) = e["values"].as_array_mut() {
                a.push(v.into());
            }
        }
        let form = crate::edge::is_media(
            parts.headers.get(http::header::CONTENT_TYPE),
            &["application/x-www-form-urlencoded"],
        );
        let post = if form { pairs(pairs_to_json(&String::from_utf8_lossy(&body))) } else { serde_json::json!({}) };
        let request = serde_json::json!({
            "method": parts.method.as_str(),
            "path": parts.uri.path(),
            "header": header,
            "get": pairs(pairs_to_json(parts.uri.query().unwrap_or(""))),
            "post": post,
            "body": String::from_utf8_lossy(&body),
            "url": parts.uri.to_string(),
        });
        let opts = CallOptions { metadata: md, timeout: Some(self.timeout), ..Default::default() };
        let reply = match self.client.call_json(service, endpoint, request.to_string().as_bytes(), opts).await {
            Ok(r) => r,
            Err(e) => return self.call_error(e, service, &path),
        };
        api_response(&reply)
    }

    /// The `http` and `web` handlers: the request goes to a node of the service its first path
    /// segment names (Go Micro's proxy rule, [`micro::api::proxy_service`]: `/site/static/a.css`
    /// → `<namespace>.site`, `/v1/site/x` → `<namespace>.v1.site`), its body and its reply stream
    /// through ([`upstream`]), a websocket is relayed.
    async fn proxy(&self, req: http::Request<Incoming>) -> Response<Body> {
        let path = req.uri().path().to_string();
        let Some(service) = micro::api::proxy_service(&self.namespace, &path) else {
            return error_response(&Error::not_found(ID, format!("no service at {path}")));
        };
        let entry = match self.nodes.get(&service).await {
            Ok(e) => e,
            Err(_) => return error_response(&self.not_found(&service, &path)),
        };
        let Some(node) = entry.nodes.get(micro::selector::random_index(entry.nodes.len())).map(|c| c.node.clone())
        else {
            return error_response(&self.not_found(&service, &path));
        };
        let peer = crate::edge::peer(&req);
        let (mut parts, body) = req.into_parts();
        parts.headers = self.policy.proxied_headers(&parts.headers, peer);
        let pq = parts.uri.path_and_query().map(|p| p.as_str()).unwrap_or("/").to_string();
        let to = Upstream {
            http: &self.proxy,
            service: &service,
            address: &node.address,
            secure: micro::transport::tls::node_is_secure(&node.metadata, None),
            timeout: self.timeout,
            body_timeout: self.policy.body_timeout,
            max: self.policy.max_body,
        };
        to.forward(parts, body, &pq).await
    }

    /// The `event` handler: publishes Go Micro's event envelope (`micro::api::event::Event`) of a
    /// JSON body to `<namespace>.<first segment>`, named by the rest of the path.
    async fn event(&self, req: http::Request<Incoming>) -> Response<Body> {
        let Some((topic, name)) = micro::api::event::topic_and_name(&self.namespace, req.uri().path()) else {
            return error_response(&Error::bad_request(ID, "the path names no topic"));
        };
        if !crate::edge::is_media(req.headers().get(http::header::CONTENT_TYPE), &["application/json"]) {
            return error_response(&unsupported("events take Content-Type: application/json"));
        }
        let md = self.policy.metadata(&req);
        let body = match self.policy.read_body(req.into_body()).await {
            Ok(b) => b,
            Err(e) => return error_response(&e),
        };
        let mut header = BTreeMap::<String, micro::api::event::Pair>::new();
        // The caller's credential is for the broker's inbox, not for every subscriber to read.
        for (k, v) in md.iter().filter(|(k, _)| *k != http::header::AUTHORIZATION.as_str()) {
            let key = micro::metadata::canonical(k);
            header
                .entry(key.clone())
                .or_insert_with(|| micro::api::event::Pair { key, values: vec![] })
                .values
                .push(v.into());
        }
        let event = micro::api::event::Event {
            name,
            id: uuid::Uuid::new_v4().to_string(),
            timestamp: std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX)),
            header,
            data: String::from_utf8_lossy(&body).into_owned(),
        };
        let json = match serde_json::to_vec(&event) {
            Ok(j) => j,
            Err(e) => return error_response(&Error::internal_server_error(ID, e)),
        };
        match Publisher::new(topic, self.client.clone()).publish_json(&json, &md).await {
            Ok(()) => json_response(StatusCode::OK, "{}"),
            Err(e) => error_response(&e),
        }
    }
}

/// 405 for a path that routes declare for other methods, with `Allow`.
fn not_allowed(path: &str, allow: &[String]) -> Response<Body> {
    let e = Error::method_not_allowed(ID, format!("{path} takes {}", allow.join(", ")));
    let mut resp = error_response(&e);
    if let Ok(v) = HeaderValue::from_str(&allow.join(", ")) {
        resp.headers_mut().insert(http::header::ALLOW, v);
    }
    resp
}

/// 415 with a sentence saying what to send.
fn unsupported(what: &str) -> Error {
    Error::new(ID, 415, what)
}

/// The HTTP response an `api` handler's reply (`{statusCode, header, body}`) describes.
fn api_response(reply: &[u8]) -> Response<Body> {
    let v: serde_json::Value = serde_json::from_slice(reply).unwrap_or_default();
    let status =
        v["statusCode"].as_u64().and_then(|s| u16::try_from(s).ok()).and_then(|s| StatusCode::from_u16(s).ok());
    let mut resp = Response::new(Body::full(v["body"].as_str().unwrap_or("").to_string()));
    *resp.status_mut() = status.unwrap_or(StatusCode::OK);
    if let Some(h) = v["header"].as_object() {
        for (k, pair) in h {
            for value in pair["values"].as_array().into_iter().flatten().filter_map(|x| x.as_str()) {
                if let (Ok(k), Ok(v)) = (http::HeaderName::from_bytes(k.as_bytes()), HeaderValue::from_str(value)) {
                    resp.headers_mut().append(k, v);
                }
            }
        }
    }
    resp
}

/// The body of `POST /rpc`, `{service, endpoint, request}`: calls the endpoint with the JSON
/// request and `md`, and answers with its JSON reply or its error. With a `namespace`, only
/// services in it may be called. There is no address to give: services are called by name.
pub(crate) async fn rpc_call(
    client: &Client,
    md: Metadata,
    body: &[u8],
    timeout: Duration,
    namespace: Option<&str>,
) -> Response<Body> {
    let v: serde_json::Value = match serde_json::from_slice(body) {
        Ok(v) => v,
        Err(e) => return error_response(&Error::bad_request(ID, format!("invalid JSON: {e}"))),
    };
    let (Some(service), Some(endpoint)) = (v["service"].as_str(), v["endpoint"].as_str()) else {
        return error_response(&Error::bad_request(ID, "the body needs \"service\" and \"endpoint\""));
    };
    if !v["address"].is_null() {
        return error_response(&Error::bad_request(ID, "\"address\" is not taken: services are called by name"));
    }
    if let Some(ns) = namespace.filter(|ns| !ns.is_empty()) {
        if !service.strip_prefix(ns).is_some_and(|rest| rest.starts_with('.')) {
            return error_response(&Error::forbidden(ID, format!("service {service} is not in the namespace {ns}")));
        }
    }
    let request = match &v["request"] {
        serde_json::Value::Null => "{}".to_string(),
        serde_json::Value::String(s) => s.clone(),
        other => other.to_string(),
    };
    let opts = CallOptions { metadata: md, timeout: Some(timeout), ..Default::default() };
    match client.call_json(service, endpoint, request.as_bytes(), opts).await {
        Ok(reply) => json_response(StatusCode::OK, reply),
        Err(e) => error_response(&e),
    }
}

impl Dispatch for Gateway {
    #[allow(clippy::manual_async_fn)]
    fn dispatch(
        self: Arc<Self>,
        req: http::Request<Incoming>,
    ) -> impl std::future::Future<Output = Response<Body>> + Send + 'static {
        async move {
            if let Err(e) = self.policy.check_host(&req) {
                return error_response(&e);
            }
            if let Some(page) = self.telemetry.page(&req) {
                return page;
            }
            let own = matches!(req.uri().path(), "/rpc" | "/")
                || (req.uri().path() == "/openapi.json" && matches!(self.handler, Handler::Meta | Handler::Rpc));
            let proxying = matches!(self.handler, Handler::Http | Handler::Web) && !websocket::is_upgrade(&req) && !own;
            if self.cors && !proxying && Policy::is_preflight(&req) {
                return self.policy.preflight(&req);
            }
            if !proxying {
                if let Err(e) = self.policy.check_origin(&req) {
                    return error_response(&e);
                }
            }
            let origin = req.headers().get(http::header::ORIGIN).cloned();
            let gateway = self.clone();
            let mut resp = self.telemetry.serve(self.handler.name(), req, |req| gateway.handle(req)).await;
            if self.cors && !proxying {
                self.policy.cors(origin.as_ref(), &mut resp);
            }
            resp
        }
    }
}
