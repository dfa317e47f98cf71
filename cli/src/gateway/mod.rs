//! The HTTP API gateway (`micro api`): one HTTP entry point that routes to services found in the
//! registry.
//!
//! Handlers: `meta` (the default: a route declared by an endpoint's metadata wins, else `rpc`),
//! `rpc` (JSON or protobuf body → call → reply in the request's content type), `api` (the whole
//! HTTP request as a message, the reply written as the HTTP response), `http`/`proxy` (reverse
//! proxy to HTTP services), `event` (publish the body to `<namespace>.<first segment>`), `web`
//! (proxy). Streaming endpoints are reached over websocket ([`websocket`]). `POST /rpc` takes `{service, endpoint, address?, request}`; `GET /` the version.
//! Served by the runtime's HTTP server (HTTP/1.1 and HTTP/2, header read timeout, worker
//! threads); routing reads the watch-fed caches, never the registry per request.

pub(crate) mod routes;
pub(crate) mod websocket;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderMap, HeaderValue, Method, Response, StatusCode};
use http_body_util::{BodyExt, Limited};
use hyper::body::Incoming;
use micro::api::resolve;
use micro::client::Client;
use micro::codec::Codec;
use micro::transport::http::Dispatch;
use micro::transport::Body;
use micro::{CallOptions, Error, Metadata, Publisher};

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
    pub(crate) client: Client,
    /// Nodes of the services the `http` handler proxies to (a watch-fed cache).
    pub(crate) nodes: Arc<micro::selector::cache::RegistryCache>,
    pub(crate) routes: Arc<routes::Table>,
    pub(crate) max_body: usize,
    pub(crate) timeout: Duration,
    pub(crate) proxy: HttpClient,
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

/// Query or form pairs → a JSON object (repeated keys become arrays).
pub(crate) fn pairs_to_json(query: &str) -> serde_json::Map<String, serde_json::Value> {
    let mut out = serde_json::Map::new();
    for pair in query.split('&').filter(|p| !p.is_empty()) {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        let (k, v) = (routes::percent_decode(k), serde_json::Value::String(routes::percent_decode(v)));
        match out.get_mut(&k) {
            Some(serde_json::Value::Array(a)) => a.push(v),
            Some(existing) => {
                let first = existing.take();
                *existing = serde_json::Value::Array(vec![first, v]);
            }
            None => {
                out.insert(k, v);
            }
        }
    }
    out
}

fn metadata_from(headers: &HeaderMap) -> Metadata {
    let mut md = Metadata::new();
    for (k, v) in headers {
        if let Ok(v) = v.to_str() {
            md.insert(k.as_str(), v);
        }
    }
    md
}

impl Gateway {
    fn cors_headers(&self, origin: Option<HeaderValue>, resp: &mut Response<Body>) {
        if !self.cors {
            return;
        }
        let h = resp.headers_mut();
        h.insert("access-control-allow-origin", origin.unwrap_or(HeaderValue::from_static("*")));
        h.insert("access-control-allow-methods", HeaderValue::from_static("POST, PATCH, GET, OPTIONS, PUT, DELETE"));
        h.insert(
            "access-control-allow-headers",
            HeaderValue::from_static(
                "Accept, Content-Type, Content-Length, Accept-Encoding, Authorization, X-CSRF-Token",
            ),
        );
        h.insert("access-control-allow-credentials", HeaderValue::from_static("true"));
    }

    fn not_found(&self, service: &str, path: &str) -> Error {
        Error::internal_server_error(
            ID,
            format!(
                "service {service} not found (path {path} in namespace {})",
                if self.namespace.is_empty() { "<none>" } else { &self.namespace }
            ),
        )
    }

    async fn body(&self, body: Incoming) -> Result<Bytes, Error> {
        read_body(body, self.max_body).await
    }

    async fn handle(self: Arc<Self>, req: http::Request<Incoming>) -> Response<Body> {
        let path = req.uri().path().to_string();
        if req.method() == Method::GET && path == "/" {
            return json_response(StatusCode::OK, format!(r#"{{"version":"{}"}}"#, env!("CARGO_PKG_VERSION")));
        }
        if req.method() == Method::POST && path == "/rpc" {
            return self.rpc_endpoint(req).await;
        }
        if websocket::is_upgrade(&req) && !matches!(self.handler, Handler::Http | Handler::Web) {
            let Some(route) = resolve(&self.namespace, &path) else {
                return error_response(&Error::not_found(ID, format!("no service at {path}")));
            };
            let opts = CallOptions { metadata: metadata_from(req.headers()), ..Default::default() };
            return websocket::bridge(req, self.client.clone(), route.service, route.method, opts);
        }
        if matches!(self.handler, Handler::Meta) {
            if let Some((declared, vars)) = self.routes.find(req.method().as_str(), &path) {
                return self.rpc(req, &declared.service, &declared.endpoint, vars).await;
            }
        }
        let Some(route) = resolve(&self.namespace, &path) else {
            return error_response(&Error::not_found(ID, format!("no service at {path}")));
        };
        match self.handler {
            Handler::Meta | Handler::Rpc => self.rpc(req, &route.service, &route.method, BTreeMap::new()).await,
            Handler::Api => self.api(req, &route.service, &route.method).await,
            Handler::Http | Handler::Web => self.proxy(req, &route.service).await,
            Handler::Event => self.event(req).await,
        }
    }

    /// `POST /rpc` with `{service, endpoint, address?, request}`.
    async fn rpc_endpoint(&self, req: http::Request<Incoming>) -> Response<Body> {
        let md = metadata_from(req.headers());
        match self.body(req.into_body()).await {
            Ok(body) => rpc_call(&self.client, md, &body, self.timeout).await,
            Err(e) => error_response(&e),
        }
    }

    async fn rpc(
        &self,
        req: http::Request<Incoming>,
        service: &str,
        endpoint: &str,
        vars: BTreeMap<String, String>,
    ) -> Response<Body> {
        let path = req.uri().path().to_string();
        let ct = req.headers().get(http::header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).unwrap_or("").to_string();
        let query = req.uri().query().unwrap_or("").to_string();
        let method = req.method().clone();
        let md = metadata_from(req.headers());
        let body = match self.body(req.into_body()).await {
            Ok(b) => b,
            Err(e) => return error_response(&e),
        };
        let opts = CallOptions { metadata: md, timeout: Some(self.timeout), ..Default::default() };
        if let Some((Codec::Proto, _)) = Codec::from_content_type(&ct) {
            return match self
                .client
                .call_raw(service, endpoint, &format!("/{endpoint}"), Codec::Proto, &body, opts)
                .await
            {
                Ok(reply) => {
                    let mut resp = Response::new(Body::full(reply));
                    resp.headers_mut().insert(
                        http::header::CONTENT_TYPE,
                        HeaderValue::from_str(&ct).unwrap_or(HeaderValue::from_static("application/protobuf")),
                    );
                    resp
                }
                Err(e) => self.call_error(e, service, &path),
            };
        }
        let mut object = if ct.starts_with("application/x-www-form-urlencoded") {
            pairs_to_json(&String::from_utf8_lossy(&body))
        } else if body.iter().all(u8::is_ascii_whitespace) || method == Method::GET {
            serde_json::Map::new()
        } else {
            match serde_json::from_slice::<serde_json::Value>(&body) {
                Ok(serde_json::Value::Object(m)) => m,
                Ok(_) => return error_response(&Error::bad_request(ID, "the request body must be a JSON object")),
                Err(e) => return error_response(&Error::bad_request(ID, format!("invalid JSON: {e}"))),
            }
        };
        if method == Method::GET {
            for (k, v) in pairs_to_json(&query) {
                object.entry(k).or_insert(v);
            }
        }
        for (k, v) in vars {
            object.insert(k, serde_json::Value::String(v));
        }
        let request = serde_json::Value::Object(object).to_string();
        match self.client.call_json(service, endpoint, request.as_bytes(), opts).await {
            Ok(reply) => json_response(StatusCode::OK, reply),
            Err(e) => self.call_error(e, service, &path),
        }
    }

    fn call_error(&self, e: Error, service: &str, path: &str) -> Response<Body> {
        if e.code == 404 && e.id == "go.micro.registry" {
            return error_response(&self.not_found(service, path));
        }
        error_response(&e)
    }

    /// The `api` handler: the request as `{method, path, header, get, post, body, url}`.
    async fn api(&self, req: http::Request<Incoming>, service: &str, endpoint: &str) -> Response<Body> {
        let (parts, body) = req.into_parts();
        let path = parts.uri.path().to_string();
        let body = match self.body(body).await {
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
        for (k, v) in &parts.headers {
            if let Ok(v) = v.to_str() {
                let key = k.as_str().to_string();
                let e = header.entry(key.clone()).or_insert_with(|| serde_json::json!({"key": key, "values": []}));
                if let Some(a) = e["values"].as_array_mut() {
                    a.push(v.into());
                }
            }
        }
        let ct = parts.headers.get(http::header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).unwrap_or("");
        let post = if ct.starts_with("application/x-www-form-urlencoded") {
            pairs(pairs_to_json(&String::from_utf8_lossy(&body)))
        } else {
            serde_json::json!({})
        };
        let request = serde_json::json!({
            "method": parts.method.as_str(),
            "path": parts.uri.path(),
            "header": header,
            "get": pairs(pairs_to_json(parts.uri.query().unwrap_or(""))),
            "post": post,
            "body": String::from_utf8_lossy(&body),
            "url": parts.uri.to_string(),
        });
        let opts =
            CallOptions { metadata: metadata_from(&parts.headers), timeout: Some(self.timeout), ..Default::default() };
        let reply = match self.client.call_json(service, endpoint, request.to_string().as_bytes(), opts).await {
            Ok(r) => r,
            Err(e) => return self.call_error(e, service, &path),
        };
        let v: serde_json::Value = serde_json::from_slice(&reply).unwrap_or_default();
        let status =
            v["statusCode"].as_u64().and_then(|s| StatusCode::from_u16(s as u16).ok()).unwrap_or(StatusCode::OK);
        let mut resp = Response::new(Body::full(v["body"].as_str().unwrap_or("").to_string()));
        *resp.status_mut() = status;
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

    /// The `http` handler: the request goes as it is to a node of the service.
    async fn proxy(&self, req: http::Request<Incoming>, service: &str) -> Response<Body> {
        let entry = match self.nodes.get(service).await {
            Ok(e) => e,
            Err(_) => return error_response(&self.not_found(service, req.uri().path())),
        };
        let Some(node) = entry.nodes.get(uuid_index(entry.nodes.len())).map(|c| &c.node) else {
            return error_response(&self.not_found(service, req.uri().path()));
        };
        let (parts, body) = req.into_parts();
        let body = match read_body(body, self.max_body).await {
            Ok(b) => b,
            Err(e) => return error_response(&e),
        };
        let pq = parts.uri.path_and_query().map(|p| p.as_str()).unwrap_or("/").to_string();
        forward(&self.proxy, service, &node.address, parts, body, &pq, self.timeout).await
    }

    /// The `event` handler: publishes the body to `<namespace>.<first segment>`.
    async fn event(&self, req: http::Request<Incoming>) -> Response<Body> {
        let first = req.uri().path().trim_matches('/').split('/').next().unwrap_or("").to_string();
        if first.is_empty() {
            return error_response(&Error::bad_request(ID, "the path names no topic"));
        }
        let topic = if self.namespace.is_empty() { first } else { format!("{}.{first}", self.namespace) };
        let md = metadata_from(req.headers());
        let body = match self.body(req.into_body()).await {
            Ok(b) => b,
            Err(e) => return error_response(&e),
        };
        match Publisher::new(topic, self.client.clone()).publish_json(&body, &md).await {
            Ok(()) => json_response(StatusCode::OK, "{}"),
            Err(e) => error_response(&e),
        }
    }
}

/// The HTTP client requests are forwarded with (by the gateway and the dashboard).
pub(crate) type HttpClient =
    hyper_util::client::legacy::Client<hyper_util::client::legacy::connect::HttpConnector, Body>;

/// A pooled HTTP/1.1 client for forwarding.
pub(crate) fn http_client() -> HttpClient {
    hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
        .pool_idle_timeout(Duration::from_secs(30))
        .build_http()
}

/// Reads a request body of at most `max` bytes (413 beyond, 400 when it breaks off).
pub(crate) async fn read_body(body: Incoming, max: usize) -> Result<Bytes, Error> {
    Limited::new(body, max).collect().await.map(|c| c.to_bytes()).map_err(|e| {
        if e.is::<http_body_util::LengthLimitError>() {
            Error::too_large(ID, format!("request body is larger than {max} bytes"))
        } else {
            Error::bad_request(ID, format!("reading the request failed: {e}"))
        }
    })
}

/// The body of `POST /rpc`, `{service, endpoint, address?, request}`: calls the endpoint with the
/// JSON request and `md`, and answers with its JSON reply or its error.
pub(crate) async fn rpc_call(client: &Client, md: Metadata, body: &[u8], timeout: Duration) -> Response<Body> {
    let v: serde_json::Value = match serde_json::from_slice(body) {
        Ok(v) => v,
        Err(e) => return error_response(&Error::bad_request(ID, format!("invalid JSON: {e}"))),
    };
    let (Some(service), Some(endpoint)) = (v["service"].as_str(), v["endpoint"].as_str()) else {
        return error_response(&Error::bad_request(ID, "the body needs \"service\" and \"endpoint\""));
    };
    let request = match &v["request"] {
        serde_json::Value::Null => "{}".to_string(),
        serde_json::Value::String(s) => s.clone(),
        other => other.to_string(),
    };
    let mut opts = CallOptions { metadata: md, timeout: Some(timeout), ..Default::default() };
    if let Some(a) = v["address"].as_str().filter(|a| !a.is_empty()) {
        opts = opts.address(a);
    }
    match client.call_json(service, endpoint, request.as_bytes(), opts).await {
        Ok(reply) => json_response(StatusCode::OK, reply),
        Err(e) => error_response(&e),
    }
}

/// Sends a request (its body already read) to `address` at `path_and_query` over HTTP/1.1 and
/// answers with the reply, read whole; 502 when the node cannot be reached, 504 past `timeout`.
pub(crate) async fn forward(
    http: &HttpClient,
    service: &str,
    address: &str,
    mut parts: http::request::Parts,
    body: Bytes,
    path_and_query: &str,
    timeout: Duration,
) -> Response<Body> {
    parts.uri = match format!("http://{address}{path_and_query}").parse() {
        Ok(u) => u,
        Err(e) => return error_response(&Error::internal_server_error(ID, e)),
    };
    parts.headers.remove(http::header::HOST);
    parts.version = http::Version::HTTP_11;
    let out = http::Request::from_parts(parts, Body::full(body));
    match tokio::time::timeout(timeout, http.request(out)).await {
        Ok(Ok(resp)) => {
            let (parts, body) = resp.into_parts();
            match body.collect().await {
                Ok(b) => Response::from_parts(parts, Body::full(b.to_bytes())),
                Err(e) => error_response(&Error::new(ID, 502, format!("{service}: {e}"))),
            }
        }
        Ok(Err(e)) => error_response(&Error::new(ID, 502, format!("{service} at {address}: {e}"))),
        Err(_) => error_response(&Error::new(ID, 504, format!("{service} did not answer within {timeout:?}"))),
    }
}

/// A random index below `n` (for choosing a node).
pub(crate) fn uuid_index(n: usize) -> usize {
    if n == 0 {
        return 0;
    }
    (uuid::Uuid::new_v4().as_u128() % n as u128) as usize
}

impl Dispatch for Gateway {
    #[allow(clippy::manual_async_fn)]
    fn dispatch(
        self: Arc<Self>,
        req: http::Request<Incoming>,
    ) -> impl std::future::Future<Output = Response<Body>> + Send + 'static {
        async move {
            let origin = req.headers().get(http::header::ORIGIN).cloned();
            if self.cors && req.method() == Method::OPTIONS {
                let mut resp = Response::new(Body::empty());
                *resp.status_mut() = StatusCode::NO_CONTENT;
                self.cors_headers(origin, &mut resp);
                return resp;
            }
            let mut resp = self.clone().handle(req).await;
            self.cors_headers(origin, &mut resp);
            resp
        }
    }
}
