//! The web dashboard (`micro web`): pages that show the registry and let a person call services.
//!
//! Routes: `/` (every service as a card, web services first), `/registry` and
//! `/registry?service=X` (HTML, or the records as JSON for `Accept: application/json`),
//! `/stats?service=X` (the live traffic of X's endpoints, read from its nodes' metrics, see
//! [`stats`]; the service page charts it), `/client` (a call form; `POST /rpc` makes the call), `/terminal` (a prompt; `POST /terminal`
//! runs one line, see [`terminal`]), `/events` (server-sent events fed by one registry watch,
//! so open pages update as services come and go), `/assets/*` (embedded; nothing is fetched
//! from elsewhere), and `/<alias>/...`, proxied to the web service `<namespace>.<alias>` with
//! the prefix in `X-Micro-Web-Base-Path`.
//!
//! **A dashboard left running while its user browses** must not be usable by the pages they
//! visit. Every request is checked for its host (a DNS-rebinding name is refused) and its origin
//! (another origin is refused); every state-changing request (`POST /rpc`, `POST /terminal`,
//! `POST /login`) must be JSON and carry the session's CSRF token ([`session`]). Calls go out
//! with the browser's own `Authorization` (the client page's token field), never a token of the
//! dashboard's. Listening beyond loopback needs `--web_token`, which every session must log in
//! with. Web services under `/<alias>/` share the dashboard's origin, so their pages are served
//! sandboxed (`Content-Security-Policy: sandbox`, an opaque origin): their scripts cannot read
//! the dashboard or send its requests. The dashboard's cookie does not reach them, and only
//! cookies they scope to their own path come back.

mod pages;
pub(crate) mod session;
mod stats;
pub(crate) mod terminal;

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderMap, HeaderValue, Method, Response, StatusCode};
use http_body::Frame;
use hyper::body::Incoming;
use micro::registry::{Service, SharedRegistry};
use micro::transport::http::Dispatch;
use micro::transport::Body;
use micro::Error;
use tokio::sync::{broadcast, mpsc, watch};

use crate::edge::Policy;
use crate::gateway::{self, error_response, json_response, HttpClient, ID};
use crate::global::{within, Global};
use session::{Session, Sessions};

/// How often an idle event stream sends a comment, so proxies keep it open.
const KEEP_ALIVE: Duration = Duration::from_secs(15);

/// The dashboard's state.
pub(crate) struct Dashboard {
    global: Global,
    registry: SharedRegistry,
    client: micro::client::Client,
    namespace: String,
    nodes: Arc<micro::registry::cache::RegistryCache>,
    http: HttpClient,
    /// Registry changes as SSE frames, for every open `/events` stream.
    events: broadcast::Sender<Bytes>,
    closing: watch::Sender<bool>,
    policy: Policy,
    sessions: Sessions,
    telemetry: crate::telemetry::Telemetry,
    stats: stats::Stats,
}

impl Dashboard {
    /// Builds the dashboard and starts the registry watch that feeds `/events`.
    pub(crate) fn start(
        global: Global,
        registry: SharedRegistry,
        namespace: &str,
        policy: Policy,
        sessions: Sessions,
    ) -> anyhow::Result<Arc<Dashboard>> {
        let (events, _) = broadcast::channel(256);
        let telemetry = crate::telemetry::Telemetry::start("micro.web")?;
        let dashboard = Arc::new(Dashboard {
            nodes: micro::registry::cache::RegistryCache::new(registry.clone(), Duration::from_secs(60)),
            client: telemetry.wrap(global.client_for_callers(registry.clone())?),
            telemetry,
            global,
            registry: registry.clone(),
            namespace: namespace.trim_end_matches('.').to_string(),
            http: gateway::http_client(),
            stats: stats::Stats::new(gateway::http_client()),
            events: events.clone(),
            closing: watch::channel(false).0,
            policy,
            sessions,
        });
        let mut closing = dashboard.closing.subscribe();
        tokio::spawn(async move {
            tokio::select! {
                _ = watch_registry(registry, events) => {}
                _ = closing.wait_for(|c| *c) => {}
            }
        });
        Ok(dashboard)
    }

    /// Ends the open event streams (before a graceful shutdown drains connections).
    pub(crate) fn close(&self) {
        self.closing.send_replace(true);
    }

    /// The alias of a web service (`go.micro.web.blog` → `blog`), if it is one.
    fn alias<'a>(&self, name: &'a str) -> Option<&'a str> {
        name.strip_prefix(&self.namespace)?.strip_prefix('.').filter(|a| !a.is_empty())
    }

    /// Every record of every service (listings carry names only, so each is read), sorted.
    async fn services(&self) -> Result<Vec<Service>, Error> {
        let timeout = self.global.timeout();
        let read = async {
            // The HTTP broker's subscriber records are plumbing, not services to show.
            let mut names: Vec<String> = self
                .registry
                .list_services()
                .await?
                .into_iter()
                .map(|s| s.name)
                .filter(|n| !n.starts_with(micro::broker::http::TOPIC_PREFIX))
                .collect();
            names.sort();
            names.dedup();
            let records = futures_util::future::join_all(names.iter().map(|n| self.registry.get_service(n))).await;
            Ok::<_, Error>(records.into_iter().filter_map(Result::ok).flatten().collect::<Vec<Service>>())
        };
        let mut list = match tokio::time::timeout(timeout, read).await {
            Ok(r) => r?,
            Err(_) => return Err(Error::new(ID, 504, format!("the registry did not answer within {timeout:?}"))),
        };
        list.sort_by(|a, b| a.name.cmp(&b.name).then_with(|| a.version.cmp(&b.version)));
        Ok(list)
    }

    /// Checks the request (host, origin, login, CSRF), serves it, and sends the session cookie
    /// when it is new or changed.
    async fn handle(self: Arc<Self>, req: http::Request<Incoming>) -> Response<Body> {
        let json = wants_json(&req);
        let session = self.sessions.read(req.headers());
        let mut resp = match self.admit(&req, &session) {
            Err(e) => self.failure(json, &e),
            Ok(()) => {
                if let Some(page) = self.telemetry.page(&req) {
                    return page;
                }
                let (resp, session) = self.route(req, session.clone()).await;
                return self.with_cookie(resp, &session);
            }
        };
        if resp.status() == StatusCode::UNAUTHORIZED && !json {
            resp = html(StatusCode::UNAUTHORIZED, self.fill(pages::login(), &session));
        }
        self.with_cookie(resp, &session)
    }

    /// Refuses what the dashboard must not serve: another host, another origin (a web service's
    /// pages under `/<alias>/` may be loaded from anywhere, changed from nowhere else), a session
    /// that has not logged in, a state-changing request that is not JSON or lacks the CSRF token.
    fn admit(&self, req: &http::Request<Incoming>, session: &Session) -> Result<(), Error> {
        self.policy.check_host(req)?;
        let path = req.uri().path();
        let own = is_own_path(path);
        // A web service's pages (and what they load: sandboxed, with an opaque origin, so every
        // subresource is "cross-site") may be fetched from anywhere; a request that would change
        // something must come from the dashboard itself.
        // That includes a web service's websockets: its sandboxed pages open them with
        // `Origin: null`; the service gets the Origin and owns that policy.
        let safe = matches!(*req.method(), Method::GET | Method::HEAD);
        if own || !safe {
            self.policy.check_origin(req)?;
        }
        let open = path == "/login" || path.starts_with("/assets/") || path == "/favicon.ico";
        if self.sessions.login_required() && !session.authenticated && !open {
            return Err(Error::unauthorized(ID, "log in to the dashboard first (its --web_token)"));
        }
        if own && req.method() == Method::POST {
            if !crate::edge::is_media(req.headers().get(http::header::CONTENT_TYPE), &["application/json"]) {
                return Err(Error::new(ID, 415, "the dashboard takes Content-Type: application/json"));
            }
            self.sessions.check_csrf(session, req.headers())?;
        }
        Ok(())
    }

    fn with_cookie(&self, mut resp: Response<Body>, session: &Session) -> Response<Body> {
        if session.changed {
            if let Some(cookie) = self.sessions.cookie(session) {
                resp.headers_mut().append(http::header::SET_COOKIE, cookie);
            }
        }
        resp
    }

    /// A page with the session's CSRF token filled in.
    fn fill(&self, page: String, session: &Session) -> String {
        page.replacen(pages::CSRF_SLOT, &pages::csrf_meta(&self.sessions.csrf(session)), 1)
    }

    /// Serves an admitted request; returns the response and the session (changed by a login).
    async fn route(&self, req: http::Request<Incoming>, session: Session) -> (Response<Body>, Session) {
        let path = req.uri().path().to_string();
        let json = wants_json(&req);
        let query = micro::api::pairs_to_json(req.uri().query().unwrap_or(""));
        let param = |k: &str| query.get(k).and_then(|v| v.as_str()).unwrap_or("").to_string();
        let page = |status, body: String| html(status, self.fill(body, &session));
        let resp = match (req.method(), path.as_str()) {
            (&Method::GET, "/") => match self.services().await {
                Ok(list) => {
                    let index = pages::Index::new(&list, |n| self.alias(n).map(str::to_string));
                    if json {
                        json_response(StatusCode::OK, serde_json::to_vec(&index).unwrap_or_default())
                    } else {
                        page(StatusCode::OK, pages::index(&index))
                    }
                }
                Err(e) => self.failure(json, &e),
            },
            (&Method::GET, "/registry") => self.registry_page(&param("service"), json, &session).await,
            (&Method::GET, "/stats") => {
                self.stats(&param("service"), req.headers().get(http::header::AUTHORIZATION)).await
            }
            (&Method::GET, "/client") => match self.services().await {
                Ok(list) => page(StatusCode::OK, pages::client(&names(&list), &param("service"), &param("endpoint"))),
                Err(e) => self.failure(json, &e),
            },
            (&Method::GET, "/terminal") => page(StatusCode::OK, pages::terminal()),
            (&Method::GET, "/login") => page(StatusCode::OK, pages::login()),
            (&Method::POST, "/login") => return self.login(req, session).await,
            (&Method::POST, "/rpc") => {
                let md = self.policy.metadata(&req);
                match self.policy.read_body(req.into_body()).await {
                    Ok(body) => gateway::rpc_call(&self.client, md, &body, self.global.timeout(), None).await,
                    Err(e) => error_response(&e),
                }
            }
            (&Method::POST, "/terminal") => {
                let md = self.policy.metadata(&req);
                match self.policy.read_body(req.into_body()).await {
                    Ok(body) => terminal::run(&self.global, &self.client, md, &body).await,
                    Err(e) => error_response(&e),
                }
            }
            (&Method::GET, "/events") => self.events(),
            (&Method::GET, p) if p.starts_with("/assets/") => pages::asset(&p["/assets/".len()..]),
            (&Method::GET, "/favicon.ico") => pages::asset("icon.svg"),
            (_, p) if is_own_path(p) => {
                self.failure(json, &Error::method_not_allowed(ID, format!("{} {p} is not served", req.method())))
            }
            _ => self.web(req).await,
        };
        (resp, session)
    }

    /// `POST /login` with `{"token": "..."}`.
    async fn login(&self, req: http::Request<Incoming>, session: Session) -> (Response<Body>, Session) {
        let body = match self.policy.read_body(req.into_body()).await {
            Ok(b) => b,
            Err(e) => return (error_response(&e), session),
        };
        let given = serde_json::from_slice::<serde_json::Value>(&body)
            .ok()
            .and_then(|v| v["token"].as_str().map(str::to_string))
            .unwrap_or_default();
        match self.sessions.login(&session, &given) {
            Ok(logged) => (json_response(StatusCode::OK, r#"{"ok":true}"#), logged),
            Err(e) => (error_response(&e), session),
        }
    }

    fn failure(&self, json: bool, e: &Error) -> Response<Body> {
        if json {
            return error_response(e);
        }
        let status = StatusCode::from_u16(e.code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        html(status, pages::error(status, &e.detail))
    }

    async fn registry_page(&self, service: &str, json: bool, session: &Session) -> Response<Body> {
        if service.is_empty() {
            return match self.services().await {
                Ok(list) if json => json_response(StatusCode::OK, serde_json::to_vec(&list).unwrap_or_default()),
                Ok(list) => html(StatusCode::OK, self.fill(pages::registry(&list), session)),
                Err(e) => self.failure(json, &e),
            };
        }
        match within("the registry", self.global.timeout(), self.registry.get_service(service)).await {
            Ok(versions) if json => json_response(StatusCode::OK, serde_json::to_vec(&versions).unwrap_or_default()),
            Ok(versions) if !versions.is_empty() => {
                html(StatusCode::OK, self.fill(pages::service(&versions, self.alias(service).is_some()), session))
            }
            Ok(_) => self.failure(json, &Error::not_found(micro::registry::ID, format!("service {service} not found"))),
            Err(e) => match e.downcast::<Error>() {
                Ok(me) => self.failure(json, &me),
                Err(other) => self.failure(json, &Error::new(ID, 504, other.to_string())),
            },
        }
    }

    /// `GET /stats?service=X`: the live figures of X's endpoints, as JSON.
    async fn stats(&self, service: &str, authorization: Option<&HeaderValue>) -> Response<Body> {
        if service.is_empty() {
            return error_response(&Error::bad_request(ID, "name the service: /stats?service=NAME"));
        }
        let versions = match within("the registry", self.global.timeout(), self.registry.get_service(service)).await {
            Ok(v) => v,
            Err(e) => {
                return match e.downcast::<Error>() {
                    Ok(me) => error_response(&me),
                    Err(other) => error_response(&Error::new(ID, 504, other.to_string())),
                }
            }
        };
        let endpoints = versions.iter().flat_map(|v| &v.endpoints).map(|e| e.name.clone()).collect();
        let nodes: Vec<micro::registry::Node> = versions.into_iter().flat_map(|v| v.nodes).collect();
        if nodes.is_empty() {
            return error_response(&micro::registry::not_found(service));
        }
        let answer = self.stats.answer(service, &nodes, &endpoints, authorization).await;
        json_response(StatusCode::OK, serde_json::to_vec(&answer).unwrap_or_default())
    }

    /// `text/event-stream` of registry changes: `event: registry` with `{action, service}`.
    fn events(&self) -> Response<Body> {
        let mut changes = self.events.subscribe();
        let mut closing = self.closing.subscribe();
        let (tx, rx) = mpsc::channel::<Frame<Bytes>>(16);
        tokio::spawn(async move {
            if tx.send(Frame::data(Bytes::from_static(b"retry: 1000\n: connected\n\n"))).await.is_err() {
                return;
            }
            loop {
                let frame = tokio::select! {
                    change = changes.recv() => match change {
                        Ok(b) => b,
                        Err(broadcast::error::RecvError::Lagged(_)) => Bytes::from_static(b"event: registry\ndata: {}\n\n"),
                        Err(broadcast::error::RecvError::Closed) => return,
                    },
                    _ = tokio::time::sleep(KEEP_ALIVE) => Bytes::from_static(b": keep-alive\n\n"),
                    _ = closing.wait_for(|c| *c) => return,
                };
                if tx.send(Frame::data(frame)).await.is_err() {
                    return;
                }
            }
        });
        let mut resp = Response::new(Body::channel(rx));
        let h = resp.headers_mut();
        h.insert(http::header::CONTENT_TYPE, HeaderValue::from_static("text/event-stream"));
        h.insert(http::header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
        resp
    }

    /// `/<alias>/...` → the web service `<namespace>.<alias>`, without the prefix.
    async fn web(&self, req: http::Request<Incoming>) -> Response<Body> {
        let path = req.uri().path().to_string();
        let json = wants_json(&req);
        let alias = path.trim_start_matches('/').split('/').next().unwrap_or("").to_string();
        let service = format!("{}.{alias}", self.namespace);
        let not_found =
            || self.failure(json, &Error::not_found(ID, format!("no page at {path} (and no web service {service})")));
        if alias.is_empty() {
            return not_found();
        }
        let node = match self.nodes.get(&service).await {
            Ok(entry) => match entry.nodes.get(micro::selector::random_index(entry.nodes.len())) {
                Some(c) => c.node.clone(),
                None => return not_found(),
            },
            Err(_) => return not_found(),
        };
        let base = format!("/{alias}");
        if path == base {
            let mut resp = Response::new(Body::empty());
            *resp.status_mut() = StatusCode::MOVED_PERMANENTLY;
            let to = format!("{base}/{}", req.uri().query().map(|q| format!("?{q}")).unwrap_or_default());
            if let Ok(v) = HeaderValue::from_str(&to) {
                resp.headers_mut().insert(http::header::LOCATION, v);
            }
            return resp;
        }
        let peer = crate::edge::peer(&req);
        let (mut parts, body) = req.into_parts();
        let rest = parts.uri.path_and_query().map(|p| p.as_str()).unwrap_or("/")[base.len()..].to_string();
        parts.headers = self.policy.proxied_headers(&parts.headers, peer);
        without_dashboard_cookie(&mut parts.headers);
        if let Ok(v) = HeaderValue::from_str(&base) {
            parts.headers.insert("x-micro-web-base-path", v);
        }
        let upstream = gateway::Upstream {
            http: &self.http,
            service: &service,
            address: &node.address,
            secure: micro::transport::tls::node_is_secure(&node.metadata, None),
            timeout: self.global.timeout(),
            body_timeout: self.policy.body_timeout,
            max: self.policy.max_body,
        };
        sandboxed(upstream.forward(parts, body, &rest).await, &base)
    }
}

/// Whether a path is one of the dashboard's own (not a web service's).
fn is_own_path(path: &str) -> bool {
    matches!(
        path,
        "/" | "/registry" | "/stats" | "/client" | "/terminal" | "/login" | "/rpc" | "/events" | "/favicon.ico"
    ) || path.starts_with("/assets/")
}

/// Removes the dashboard's session from the cookies a web service is sent.
fn without_dashboard_cookie(headers: &mut HeaderMap) {
    let kept: Vec<String> = headers
        .get_all(http::header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .map(str::trim)
        .filter(|c| !c.is_empty() && !c.starts_with(session::COOKIE))
        .map(str::to_string)
        .collect();
    headers.remove(http::header::COOKIE);
    if let Ok(v) = HeaderValue::from_str(&kept.join("; ")) {
        if !kept.is_empty() {
            headers.insert(http::header::COOKIE, v);
        }
    }
}

/// A web service's response as the dashboard passes it on: in a sandbox (an opaque origin, so
/// its scripts cannot act as the dashboard), and with only the cookies it scopes to its own
/// path (`base`), none named like the dashboard's.
fn sandboxed(mut resp: Response<Body>, base: &str) -> Response<Body> {
    let h = resp.headers_mut();
    let cookies: Vec<HeaderValue> = h.get_all(http::header::SET_COOKIE).iter().cloned().collect();
    h.remove(http::header::SET_COOKIE);
    for c in cookies {
        let Ok(text) = c.to_str() else { continue };
        let attributes: Vec<(String, String)> = text
            .split(';')
            .skip(1)
            .map(|a| a.trim().split_once('=').map_or((a.trim(), ""), |(k, v)| (k.trim(), v.trim())))
            .map(|(k, v)| (k.to_ascii_lowercase(), v.to_string()))
            .collect();
        // Browsers go by the last Path; a Domain would reach beyond this origin's host.
        let path = attributes.iter().rev().find(|(k, _)| k == "path").map(|(_, v)| v.as_str());
        let scoped = path.is_some_and(|p| p == base || p.starts_with(&format!("{base}/")));
        let domain = attributes.iter().any(|(k, _)| k == "domain");
        if scoped && !domain && !text.trim_start().starts_with(session::COOKIE) {
            h.append(http::header::SET_COOKIE, c);
        }
    }
    // A web service may not wipe the dashboard's storage or its session.
    h.remove("clear-site-data");
    h.append(
        "content-security-policy",
        HeaderValue::from_static("sandbox allow-scripts allow-forms allow-popups allow-downloads"),
    );
    h.insert("x-content-type-options", HeaderValue::from_static("nosniff"));
    resp
}

/// Whether the request asks for JSON rather than a page.
fn wants_json(req: &http::Request<Incoming>) -> bool {
    req.headers()
        .get(http::header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|a| a.contains("application/json") && !a.contains("text/html"))
}

fn names(list: &[Service]) -> Vec<String> {
    let mut names: Vec<String> = list.iter().map(|s| s.name.clone()).collect();
    names.dedup();
    names
}

fn html(status: StatusCode, body: String) -> Response<Body> {
    let mut resp = Response::new(Body::full(body));
    *resp.status_mut() = status;
    let h = resp.headers_mut();
    h.insert(http::header::CONTENT_TYPE, HeaderValue::from_static("text/html; charset=utf-8"));
    h.insert(http::header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    h.insert(
        "content-security-policy",
        HeaderValue::from_static(
            "default-src 'self'; img-src 'self' data:; style-src 'self'; script-src 'self'; frame-ancestors 'none'; form-action 'self'; base-uri 'none'",
        ),
    );
    h.insert("x-content-type-options", HeaderValue::from_static("nosniff"));
    h.insert("x-frame-options", HeaderValue::from_static("DENY"));
    h.insert("referrer-policy", HeaderValue::from_static("no-referrer"));
    resp
}

/// Feeds `events` from the registry's watch, watching again after a failure.
async fn watch_registry(registry: SharedRegistry, events: broadcast::Sender<Bytes>) {
    loop {
        match registry.watch(None).await {
            Ok(mut watcher) => {
                while let Some(Ok(event)) = watcher.next().await {
                    let data = serde_json::json!({ "action": event.action, "service": event.service.name });
                    let _ = events.send(Bytes::from(format!("event: registry\ndata: {data}\n\n")));
                }
            }
            Err(e) => eprintln!("watching the registry failed: {}", e.detail),
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
}

impl Dispatch for Dashboard {
    #[allow(clippy::manual_async_fn)]
    fn dispatch(
        self: Arc<Self>,
        req: http::Request<Incoming>,
    ) -> impl std::future::Future<Output = Response<Body>> + Send + 'static {
        async move {
            let dashboard = self.clone();
            self.telemetry.serve("web", req, |req| dashboard.handle(req)).await
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn web_services_keep_only_cookies_of_their_own_path() {
        let mut resp = Response::new(Body::empty());
        for c in [
            "a=1; Path=/blog/",
            "b=2; Path=/blog/; Path=/",
            "c=3; Path=/",
            "d=4; Path=/blog; Domain=localhost",
            "micro_web_session=x; Path=/blog/",
            "e=5",
        ] {
            resp.headers_mut().append(http::header::SET_COOKIE, HeaderValue::from_static(c));
        }
        resp.headers_mut().insert("clear-site-data", HeaderValue::from_static("\"*\""));
        let resp = sandboxed(resp, "/blog");
        let kept: Vec<&str> =
            resp.headers().get_all(http::header::SET_COOKIE).iter().map(|v| v.to_str().unwrap()).collect();
        assert_eq!(kept, ["a=1; Path=/blog/"], "the last Path counts, no Domain, not the dashboard's own");
        assert!(!resp.headers().contains_key("clear-site-data"));
        assert!(resp.headers()["content-security-policy"].to_str().unwrap().starts_with("sandbox"));
    }
}
