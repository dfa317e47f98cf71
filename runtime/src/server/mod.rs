//! The server: endpoints, routing, and the request path from HTTP to handler and back.
//!
//! Endpoints are registered before start (generated `register_*_handler` functions do it). At
//! start the routes are frozen into one hash map keyed by path: the gRPC path
//! (`/helloworld.Greeter/SayHello`) and the micro endpoint name (`/Greeter.SayHello`) reach the same
//! handler. Each request is then answered without locks: method, content type and query → wire
//! protocol, codec and compression (`wire`: gRPC, gRPC-Web, Connect or micro's plain HTTP), path
//! → handler, headers → metadata, `grpc-timeout`/`Connect-Timeout-Ms` → deadline. Before any of
//! it, the Host and Origin of the request are checked and preflights answered
//! ([`crate::transport::origin`], with [`ServerOptions::cors_allowed_origins`]).
//!
//! Every server also answers `Debug.Health`, `Debug.Stats`, `grpc.health.v1.Health/Check` and
//! `/Watch`, and gRPC server reflection (v1 and v1alpha), none of which is advertised in the
//! registry, and two plain `GET`s for orchestrators: `/health/live` (200 while the process
//! serves) and `/health/ready` (200, or 503 with the reason in one line). Health is the server's
//! real state ([`Server::set_serving`], [`Server::set_not_ready`], and the broker's
//! [`check`](crate::broker::Broker::check)): a [`Service`] is not ready until its node is
//! registered and again from the moment it begins to shut down. Pages a service adds with
//! [`Server::expose`] (its `/metrics`) are answered to `GET` beside them.
//!
//! [`Service`]: crate::Service

pub mod builtin;
pub mod descriptors;
pub mod handler;
mod pipe;
pub mod reflection;
pub mod subscriber;
mod wire;
pub mod wrapper;

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::{HeaderMap, Method};
use hyper::body::Incoming;

pub use crate::transport::endpoint::{Handler, RawBody, RawRequest, StreamHandler, UnaryHandler};
pub use handler::{bidi_stream, client_stream, server_stream, unary, Request, ServerStream};
pub use subscriber::{register_struct_subscriber, register_subscriber, Handle, Subscriber};
pub use wrapper::HandlerWrapper;

use crate::broker::{self, SharedBroker};
use crate::codec::{Codec, Protocol};
use crate::metadata::Metadata;
use crate::registry;
use crate::transport::grpc::{self, DEFAULT_MAX_MESSAGE_SIZE};
use crate::transport::http::{self as transport, Dispatch, ServeOptions, Serving};
use crate::transport::origin::{OriginPolicy, Preflight};
use crate::transport::Body;
use crate::Error;
use wire::{Call, Wire};

/// The id of errors the server raises itself (replaced by the service's name on the wire).
pub const ID: &str = crate::error::SERVER_ID;

/// One endpoint of a server.
#[derive(Clone)]
pub struct Endpoint {
    /// `Service.Method`, the name clients and tools use.
    pub name: String,
    /// The gRPC path, `/package.Service/Method`, if the endpoint has one.
    pub path: Option<String>,
    /// Fully qualified protobuf type of the request (`.helloworld.HelloRequest`).
    pub request_type: Option<String>,
    /// Fully qualified protobuf type of the response.
    pub response_type: Option<String>,
    /// Metadata advertised in the registry (`stream=true`, HTTP routes, ...).
    pub metadata: BTreeMap<String, String>,
    /// Whether the endpoint is kept out of the registry record.
    pub internal: bool,
    /// What answers it.
    pub handler: Handler,
}

impl Endpoint {
    /// An endpoint named `Service.Method`.
    pub fn new(name: impl Into<String>, handler: Handler) -> Self {
        Endpoint {
            name: name.into(),
            path: None,
            request_type: None,
            response_type: None,
            metadata: BTreeMap::new(),
            internal: false,
            handler,
        }
    }

    /// Sets the gRPC path.
    pub fn path(mut self, path: impl Into<String>) -> Self {
        self.path = Some(path.into());
        self
    }

    /// Sets the request and response protobuf types (for field trees in the registry).
    pub fn types(mut self, request: impl Into<String>, response: impl Into<String>) -> Self {
        self.request_type = Some(request.into());
        self.response_type = Some(response.into());
        self
    }

    /// Adds a metadata entry.
    pub fn metadata(mut self, key: impl Into<String>, value: impl Into<String>) -> Self {
        self.metadata.insert(key.into(), value.into());
        self
    }

    /// Keeps the endpoint out of the registry.
    pub fn internal(mut self) -> Self {
        self.internal = true;
        self
    }
}

/// Options of a server.
#[derive(Debug, Clone)]
pub struct ServerOptions {
    /// Service name.
    pub name: String,
    /// Node id (`<name>-<uuid>`).
    pub id: String,
    /// Service version.
    pub version: String,
    /// Listen address, `127.0.0.1:0` unless set.
    pub address: String,
    /// Address advertised in the registry instead of the listen address.
    pub advertise: Option<String>,
    /// Node metadata.
    pub metadata: BTreeMap<String, String>,
    /// Largest message accepted, in bytes.
    pub max_message_size: usize,
    /// How long in-flight requests may run after shutdown begins.
    pub grace_period: Duration,
    /// HTTP limits and worker threads.
    pub serve: ServeOptions,
    /// Origins whose browser pages may call the service (`scheme://host[:port]`, or `*` for any
    /// origin without credentials); empty: none but the service's own.
    pub cors_allowed_origins: Vec<String>,
    /// Host names requests may be addressed to (`.example.com` matches subdomains); empty:
    /// loopback names when listening on loopback, any host otherwise.
    pub allowed_hosts: Vec<String>,
}

impl Default for ServerOptions {
    fn default() -> Self {
        ServerOptions {
            name: ID.into(),
            id: String::new(),
            version: "latest".into(),
            address: "127.0.0.1:0".into(),
            advertise: None,
            metadata: BTreeMap::new(),
            max_message_size: DEFAULT_MAX_MESSAGE_SIZE,
            grace_period: Duration::from_secs(10),
            serve: ServeOptions::default(),
            cors_allowed_origins: Vec::new(),
            allowed_hosts: Vec::new(),
        }
    }
}

struct Shared {
    opts: RwLock<ServerOptions>,
    endpoints: RwLock<Vec<Endpoint>>,
    descriptors: RwLock<descriptors::DescriptorPool>,
    wrappers: RwLock<Vec<Arc<dyn HandlerWrapper>>>,
    subscribers: RwLock<Vec<Subscriber>>,
    inbox: RwLock<Option<SharedBroker>>,
    web: RwLock<Option<crate::web::WebHandler>>,
    running: Mutex<Option<Serving>>,
    #[cfg(feature = "nats")]
    listening: Mutex<Option<crate::transport::nats::Listening>>,
    started: Instant,
    health: tokio::sync::watch::Sender<Health>,
    /// Why the server is not ready, while it is not.
    reason: RwLock<Arc<str>>,
    pages: RwLock<Vec<(String, StatusPage)>>,
}

/// A page the server answers to `GET` beside its endpoints ([`Server::expose`]).
pub type StatusPage = Arc<dyn Fn() -> crate::web::Response + Send + Sync>;

/// The most of a refused request's body read before the refusal is sent.
const REFUSED_BODY: usize = 64 * 1024;

/// `GET` this: 200 while the process serves.
pub const LIVE_PATH: &str = "/health/live";
/// `GET` this: 200 when ready for calls, 503 with the reason otherwise.
pub const READY_PATH: &str = "/health/ready";

/// What a server says of its health (`Debug.Health`, `grpc.health.v1.Health`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Health {
    /// Nobody said yet: serving once started.
    Unset,
    /// Ready for calls.
    Serving,
    /// Up, but not to be sent calls (not registered yet, or shutting down).
    NotServing,
    /// Stopping: health streams end.
    Stopped,
}

/// A server: endpoints plus the HTTP listener that serves them. Cheap to clone.
#[derive(Clone)]
pub struct Server {
    shared: Arc<Shared>,
}

impl std::fmt::Debug for Server {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Server").field("name", &self.options().name).finish()
    }
}

impl Default for Server {
    fn default() -> Self {
        Self::new(ServerOptions::default())
    }
}

impl Server {
    /// A server with options; built-in endpoints are registered at once.
    pub fn new(mut opts: ServerOptions) -> Self {
        if opts.id.is_empty() {
            opts.id = format!("{}-{}", opts.name, uuid::Uuid::new_v4());
        }
        let server = Server {
            shared: Arc::new(Shared {
                opts: RwLock::new(opts),
                endpoints: RwLock::new(Vec::new()),
                descriptors: RwLock::new(descriptors::DescriptorPool::default()),
                wrappers: RwLock::new(Vec::new()),
                subscribers: RwLock::new(Vec::new()),
                inbox: RwLock::new(None),
                web: RwLock::new(None),
                running: Mutex::new(None),
                #[cfg(feature = "nats")]
                listening: Mutex::new(None),
                started: Instant::now(),
                health: tokio::sync::watch::channel(Health::Unset).0,
                reason: RwLock::new("not started".into()),
                pages: RwLock::new(Vec::new()),
            }),
        };
        builtin::register(&server);
        reflection::register(&server);
        server
    }

    /// The options in force.
    pub fn options(&self) -> ServerOptions {
        self.shared.opts.read().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// Changes options; takes effect at the next start.
    pub fn configure(&self, f: impl FnOnce(&mut ServerOptions)) {
        let mut opts = self.shared.opts.write().unwrap_or_else(|e| e.into_inner());
        f(&mut opts);
        if opts.id.is_empty() || !opts.id.starts_with(&format!("{}-", opts.name)) {
            opts.id = format!("{}-{}", opts.name, uuid::Uuid::new_v4());
        }
    }

    /// Adds an endpoint (replacing one of the same name).
    pub fn handle(&self, endpoint: Endpoint) {
        let mut eps = self.shared.endpoints.write().unwrap_or_else(|e| e.into_inner());
        eps.retain(|e| e.name != endpoint.name);
        eps.push(endpoint);
    }

    /// Adds an encoded `FileDescriptorSet` (generated code embeds one per proto package), used for
    /// endpoint field trees and server reflection.
    pub fn add_descriptors(&self, encoded_set: &[u8]) {
        let mut pool = self.shared.descriptors.write().unwrap_or_else(|e| e.into_inner());
        if let Err(e) = pool.add_encoded(encoded_set) {
            tracing::warn!(error = %e, "ignoring an invalid file descriptor set");
        }
    }

    /// Adds a subscriber; the service subscribes it with its broker when it starts.
    pub fn subscribe(&self, subscriber: Subscriber) {
        self.shared.subscribers.write().unwrap_or_else(|e| e.into_inner()).push(subscriber);
    }

    /// The subscribers, in the order they were added.
    pub fn subscribers(&self) -> Vec<Subscriber> {
        self.shared.subscribers.read().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// Delivers `POST /_sub/<topic>` requests to `broker` (the HTTP broker receives this way).
    /// Takes effect at the next start.
    pub fn set_broker(&self, broker: SharedBroker) {
        *self.shared.inbox.write().unwrap_or_else(|e| e.into_inner()) = Some(broker);
    }

    /// Answers every request that is not an RPC (any method but `POST`, or a path no endpoint
    /// has) with `f`: a small web site beside the endpoints. Takes effect at the next start.
    pub fn serve_web<F, Fut>(&self, f: F)
    where
        F: Fn(crate::web::Page) -> Fut + Send + Sync + 'static,
        Fut: std::future::Future<Output = crate::web::Response> + Send + 'static,
    {
        *self.shared.web.write().unwrap_or_else(|e| e.into_inner()) = Some(crate::web::handler(f));
    }

    /// Answers `GET path` with `page` (for instance `/metrics`), once the wrappers admit the
    /// request ([`HandlerWrapper::admit`]). Takes effect at the next start.
    pub fn expose(&self, path: impl Into<String>, page: StatusPage) {
        let path = path.into();
        let mut pages = self.shared.pages.write().unwrap_or_else(|e| e.into_inner());
        pages.retain(|(p, _)| *p != path);
        pages.push((path, page));
    }

    /// The subscribers, each handler inside every wrapper ([`HandlerWrapper::wrap_subscriber`]),
    /// as the service subscribes them.
    pub fn wrapped_subscribers(&self) -> Vec<Subscriber> {
        let wrappers = self.shared.wrappers.read().unwrap_or_else(|e| e.into_inner());
        let mut subs = self.subscribers();
        for sub in &mut subs {
            for w in wrappers.iter() {
                sub.handler = w.wrap_subscriber(sub, sub.handler.clone());
            }
        }
        subs
    }

    /// Wraps every handler (applied at start, innermost first).
    pub fn wrap(&self, wrapper: impl HandlerWrapper) {
        self.shared.wrappers.write().unwrap_or_else(|e| e.into_inner()).push(Arc::new(wrapper));
    }

    /// Wraps every handler inside every other wrapper (nearest the handler).
    pub(crate) fn wrap_innermost(&self, wrapper: impl HandlerWrapper) {
        self.shared.wrappers.write().unwrap_or_else(|e| e.into_inner()).insert(0, Arc::new(wrapper));
    }

    /// Names of the registered endpoints (internal ones included).
    pub fn endpoint_names(&self) -> Vec<String> {
        let eps = self.shared.endpoints.read().unwrap_or_else(|e| e.into_inner());
        eps.iter().map(|e| e.name.clone()).collect()
    }

    /// The advertised endpoints as registry records, with their field trees.
    pub fn registry_endpoints(&self) -> Vec<registry::Endpoint> {
        let eps = self.shared.endpoints.read().unwrap_or_else(|e| e.into_inner());
        let pool = self.shared.descriptors.read().unwrap_or_else(|e| e.into_inner());
        let mut out: Vec<registry::Endpoint> = eps
            .iter()
            .filter(|e| !e.internal)
            .map(|e| registry::Endpoint {
                name: e.name.clone(),
                request: e.request_type.as_deref().map(|t| pool.value_of(t)),
                response: e.response_type.as_deref().map(|t| pool.value_of(t)),
                metadata: e.metadata.clone(),
            })
            .collect();
        out.sort_by(|a, b| a.name.cmp(&b.name));
        let subs = self.shared.subscribers.read().unwrap_or_else(|e| e.into_inner());
        for sub in subs.iter() {
            if out.iter().any(|e| e.name == sub.name && e.metadata.get("topic") == Some(&sub.topic)) {
                continue;
            }
            out.push(registry::Endpoint {
                name: sub.name.clone(),
                request: sub.message_type.as_deref().map(|t| pool.value_of(t)),
                response: None,
                metadata: [("subscriber".to_string(), "true".to_string()), ("topic".to_string(), sub.topic.clone())]
                    .into(),
            });
        }
        out
    }

    pub(crate) fn descriptors(&self) -> std::sync::RwLockReadGuard<'_, descriptors::DescriptorPool> {
        self.shared.descriptors.read().unwrap_or_else(|e| e.into_inner())
    }

    pub(crate) fn started(&self) -> Instant {
        self.shared.started
    }

    /// Says whether the server is ready for calls; health checks report it, and health watches
    /// are told of the change.
    pub fn set_serving(&self, serving: bool) {
        if !serving {
            return self.set_not_ready("not serving");
        }
        self.set_health(true);
    }

    /// Says the server is not ready for calls, and why (one sentence, shown by `/health/ready`,
    /// `Debug.Health` and `micro health check`).
    pub fn set_not_ready(&self, reason: impl Into<String>) {
        *self.shared.reason.write().unwrap_or_else(|e| e.into_inner()) = reason.into().into();
        self.set_health(false);
    }

    /// Whether the server is ready for calls now; the reason when it is not.
    pub fn readiness(&self) -> Result<(), String> {
        ready(&self.shared)
    }

    fn set_health(&self, serving: bool) {
        self.shared.health.send_if_modified(|h| {
            let next = if serving { Health::Serving } else { Health::NotServing };
            let changed = *h != next;
            if changed {
                *h = next;
            }
            changed
        });
    }

    /// The server's health now.
    pub fn health(&self) -> Health {
        *self.shared.health.borrow()
    }

    /// Follows the server's health (for `grpc.health.v1.Health/Watch`).
    pub(crate) fn watch_health(&self) -> tokio::sync::watch::Receiver<Health> {
        self.shared.health.subscribe()
    }

    /// Starts listening; returns the bound address. Routes are frozen from here on.
    pub fn start(&self) -> Result<std::net::SocketAddr, Error> {
        let opts = self.options();
        let dispatcher = Arc::new(self.dispatcher(&opts));
        let serving = transport::serve(&opts.address, dispatcher, &opts.serve)?;
        let addr = serving.local_addr();
        self.shared.health.send_if_modified(|h| {
            let unset = matches!(h, Health::Unset | Health::Stopped);
            if unset {
                *h = Health::Serving;
            }
            unset
        });
        tracing::info!(service = %opts.name, "listening on {addr}");
        *self.shared.running.lock().unwrap_or_else(|e| e.into_inner()) = Some(serving);
        Ok(addr)
    }

    /// Starts listening on NATS instead of a port; returns the subject (the node's address).
    #[cfg(feature = "nats")]
    pub async fn start_nats(&self, conn: &crate::transport::nats::Connection) -> Result<String, Error> {
        let opts = self.options();
        let subject = crate::transport::nats::node_subject(&opts.id);
        let dispatcher = Arc::new(self.dispatcher(&opts));
        let listening = crate::transport::nats::serve(conn, &subject, dispatcher).await?;
        tracing::info!(service = %opts.name, "listening on NATS subject {subject}");
        *self.shared.listening.lock().unwrap_or_else(|e| e.into_inner()) = Some(listening);
        Ok(subject)
    }

    /// The address the running server listens on.
    pub fn local_addr(&self) -> Option<std::net::SocketAddr> {
        self.shared.running.lock().unwrap_or_else(|e| e.into_inner()).as_ref().map(|s| s.local_addr())
    }

    /// Stops accepting connections and waits (up to the grace period) for in-flight requests;
    /// health watches end.
    pub async fn stop(&self) {
        self.shared.health.send_replace(Health::Stopped);
        #[cfg(feature = "nats")]
        drop(self.shared.listening.lock().unwrap_or_else(|e| e.into_inner()).take());
        let serving = self.shared.running.lock().unwrap_or_else(|e| e.into_inner()).take();
        if let Some(serving) = serving {
            let grace = self.options().grace_period;
            let cut = serving.shutdown(grace).await;
            if cut > 0 {
                tracing::warn!("closed {cut} connections still busy after the {grace:?} grace period");
            }
        }
    }

    fn dispatcher(&self, opts: &ServerOptions) -> Dispatcher {
        let eps = self.shared.endpoints.read().unwrap_or_else(|e| e.into_inner());
        let wrappers = self.shared.wrappers.read().unwrap_or_else(|e| e.into_inner());
        let mut routes = HashMap::new();
        for ep in eps.iter() {
            let mut handler = ep.handler.clone();
            for w in wrappers.iter() {
                handler = w.wrap(ep, handler);
            }
            let mut keys = vec![format!("/{}", ep.name)];
            if let Some((svc, method)) = ep.name.split_once('.') {
                keys.push(format!("/{svc}/{method}"));
            }
            if let Some(p) = &ep.path {
                keys.push(p.clone());
            }
            for k in keys {
                routes.entry(k.into_boxed_str()).or_insert_with(|| handler.clone());
            }
        }
        let inbox = self.shared.inbox.read().unwrap_or_else(|e| e.into_inner()).clone();
        let web = self.shared.web.read().unwrap_or_else(|e| e.into_inner()).clone();
        let pages = self.shared.pages.read().unwrap_or_else(|e| e.into_inner());
        Dispatcher {
            shared: Arc::downgrade(&self.shared),
            pages: pages.iter().map(|(p, f)| (p.as_str().into(), f.clone())).collect(),
            routes,
            id: opts.name.clone(),
            max_message_size: opts.max_message_size,
            body_read_timeout: opts.serve.body_read_timeout,
            inbox,
            web,
            gates: wrappers.clone(),
            origins: OriginPolicy::new(
                &opts.cors_allowed_origins,
                &served_hosts(opts),
                bound_for_policy(&opts.address),
                opts.serve.tls.is_some(),
            ),
            gets: self.descriptors().no_side_effects(),
        }
    }
}

/// The names a server answers beyond its defaults: the listed hosts and, where names are checked
/// at all (on loopback, or with a list), the advertised host and `micro` (what clients before
/// 0.1 put in `:authority`).
fn served_hosts(opts: &ServerOptions) -> Vec<String> {
    let mut hosts = opts.allowed_hosts.clone();
    if !hosts.is_empty() || bound_for_policy(&opts.address).ip().is_loopback() {
        hosts.push("micro".into());
        if let Some(advertise) = &opts.advertise {
            hosts.push(crate::transport::origin::host_of(advertise).to_string());
        }
    }
    hosts
}

/// The address a listen address binds, as far as the Host policy cares: loopback or not.
fn bound_for_policy(address: &str) -> std::net::SocketAddr {
    use std::net::{Ipv4Addr, SocketAddr};
    address.parse::<SocketAddr>().unwrap_or_else(|_| {
        let host = crate::transport::origin::host_of(address);
        let ip =
            if crate::transport::origin::is_loopback_name(host) { Ipv4Addr::LOCALHOST } else { Ipv4Addr::UNSPECIFIED };
        SocketAddr::from((ip, 0))
    })
}

/// Whether the server is ready: its own state, then its broker's.
fn ready(shared: &Shared) -> Result<(), String> {
    match *shared.health.borrow() {
        Health::Serving | Health::Unset => {}
        Health::NotServing => return Err(shared.reason.read().unwrap_or_else(|e| e.into_inner()).to_string()),
        Health::Stopped => return Err("stopped".into()),
    }
    match &*shared.inbox.read().unwrap_or_else(|e| e.into_inner()) {
        Some(broker) => broker.check().map_err(|why| format!("the {} broker is down: {why}", broker.name())),
        None => Ok(()),
    }
}

struct Dispatcher {
    /// The server's state, for health (weak: the server owns what runs the dispatcher).
    shared: std::sync::Weak<Shared>,
    /// Pages answered to `GET` ([`Server::expose`]).
    pages: HashMap<Box<str>, StatusPage>,
    routes: HashMap<Box<str>, Handler>,
    id: String,
    max_message_size: usize,
    body_read_timeout: Duration,
    inbox: Option<SharedBroker>,
    web: Option<crate::web::WebHandler>,
    /// The wrappers, asked to admit what reaches no endpoint (the inbox, web pages).
    gates: Vec<Arc<dyn HandlerWrapper>>,
    /// Who may address the server, and which pages may call it.
    origins: OriginPolicy,
    /// The paths Connect `GET` calls may use.
    gets: std::collections::HashSet<String>,
}

#[cfg(feature = "nats")]
impl crate::transport::nats::Router for Dispatcher {
    fn handler(&self, path: &str) -> Option<Handler> {
        self.routes.get(path).cloned()
    }
    fn max_message_size(&self) -> usize {
        self.max_message_size
    }
}

/// The caller's deadline: `grpc-timeout` (gRPC, gRPC-Web), `Connect-Timeout-Ms` or micro's
/// `Timeout`.
fn deadline_from(headers: &HeaderMap) -> Option<Instant> {
    const GRPC_TIMEOUT: http::HeaderName = http::HeaderName::from_static("grpc-timeout");
    const CONNECT_TIMEOUT: http::HeaderName = http::HeaderName::from_static("connect-timeout-ms");
    const TIMEOUT: http::HeaderName = http::HeaderName::from_static(crate::metadata::TIMEOUT);
    let text = |name: &http::HeaderName| headers.get(name).and_then(|v| v.to_str().ok());
    let timeout = text(&GRPC_TIMEOUT)
        .and_then(grpc::parse_timeout)
        .or_else(|| text(&CONNECT_TIMEOUT).and_then(crate::transport::connect::parse_timeout))
        .or_else(|| text(&TIMEOUT).and_then(|v| crate::metadata::parse_duration(v).ok()))?;
    Instant::now().checked_add(timeout)
}

impl Dispatcher {
    /// A broker message posted to this node (`POST /_sub/<topic>`).
    async fn deliver(&self, broker: SharedBroker, topic: String, req: http::Request<Incoming>) -> http::Response<Body> {
        let (parts, body) = req.into_parts();
        let body = match self.read_body(body, self.max_message_size).await {
            Ok(b) => b,
            Err(e) => return self.error(Wire::Http, Codec::Json, e),
        };
        let mut header = std::collections::BTreeMap::new();
        for (k, v) in &parts.headers {
            let name = k.as_str();
            // The credential was for this inbox, not part of the message.
            if name == crate::metadata::AUTHORIZATION {
                continue;
            }
            if name == "content-type" {
                if let Ok(v) = v.to_str() {
                    header.insert(broker::CONTENT_TYPE_HEADER.to_string(), v.to_string());
                }
            } else if !crate::metadata::is_transport_header(name) {
                if let Ok(v) = v.to_str() {
                    header.insert(crate::metadata::canonical(name), v.to_string());
                }
            }
        }
        match broker.deliver(&topic, broker::Message { header, body }).await {
            Ok(()) => http::Response::new(Body::empty()),
            Err(e) => self.error(Wire::Http, Codec::Json, e),
        }
    }

    /// Reads a unary body of at most `limit` bytes within the body read timeout.
    async fn read_body(&self, body: Incoming, limit: usize) -> Result<Bytes, Error> {
        use crate::transport::body::{read_whole, ReadError};
        read_whole(body, limit, self.body_read_timeout).await.map_err(|e| match e {
            ReadError::TooLarge => grpc::too_large(limit, self.max_message_size),
            ReadError::Broken(why) => Error::new("", 499, format!("reading the request failed: {why}")),
            ReadError::TimedOut => {
                Error::timeout("", format!("the request body did not arrive within {:?}", self.body_read_timeout))
            }
        })
    }

    /// Refuses a request the wrappers did not admit, after reading what is left of a small
    /// body (at most [`REFUSED_BODY`], for a second): a connection closed on unread bytes is
    /// reset, and the client would see the reset instead of the refusal.
    async fn refuse(&self, req: http::Request<Incoming>, e: Error) -> http::Response<Body> {
        let _ = crate::transport::body::read_whole(req.into_body(), REFUSED_BODY, Duration::from_secs(1)).await;
        self.error(Wire::Http, Codec::Json, e)
    }

    /// Asks every wrapper to admit a request that reaches no endpoint.
    fn admit(&self, path: &str, headers: &HeaderMap) -> Result<(), Error> {
        if self.gates.is_empty() {
            return Ok(());
        }
        let metadata = Metadata::from_headers(headers.clone());
        self.gates.iter().try_for_each(|g| g.admit(path, &metadata))
    }

    fn error(&self, wire: Wire, codec: Codec, mut err: Error) -> http::Response<Body> {
        if err.id.is_empty() || err.id.starts_with("go.micro.") {
            err.id.clone_from(&self.id);
        }
        let mut resp = wire::error_reply(wire, codec, &err);
        if err.is_overloaded() {
            resp.headers_mut().insert(http::header::RETRY_AFTER, http::HeaderValue::from_static("1"));
        }
        resp
    }
}

impl Dispatch for Dispatcher {
    #[allow(clippy::manual_async_fn)]
    fn dispatch(
        self: Arc<Self>,
        req: http::Request<Incoming>,
    ) -> impl std::future::Future<Output = http::Response<Body>> + Send + 'static {
        async move {
            let origin = req.headers().get(http::header::ORIGIN).cloned();
            let mut resp = self.route(req).await;
            if origin.is_some() {
                self.origins.cors(origin.as_ref(), resp.headers_mut(), EXPOSE);
            }
            resp
        }
    }
}

/// What the answers to browsers let their pages read.
const EXPOSE: &str = "Grpc-Status, Grpc-Message, Grpc-Status-Details-Bin, Grpc-Encoding, Grpc-Accept-Encoding, \
Connect-Content-Encoding, Connect-Accept-Encoding, Content-Encoding, Micro-Error";

/// What a service's preflight answers allow.
const PREFLIGHT: Preflight = Preflight { methods: "GET, POST", headers: "" };

impl Dispatcher {
    /// Host and Origin checks, then the inbox, a web page or a call.
    async fn route(&self, req: http::Request<Incoming>) -> http::Response<Body> {
        if OriginPolicy::is_preflight(&req) {
            return self.origins.preflight(&req, &PREFLIGHT);
        }
        if let Err(e) = self.origins.check_host("", &req) {
            return self.error(Wire::Http, Codec::Json, e);
        }
        if req.method() == Method::GET {
            if let Some(resp) = self.status_page(&req) {
                return resp;
            }
        }
        if let Some(broker) = &self.inbox {
            if let Some(topic) = req.uri().path().strip_prefix(broker::http::SUB_PATH) {
                if let Err(e) = self.origins.check_origin("", &req) {
                    return self.error(Wire::Http, Codec::Json, e);
                }
                let topic = broker::http::decode_topic(topic);
                return self.inbox(broker.clone(), topic, req).await;
            }
        }
        if let Some(web) = &self.web {
            let call = match *req.method() {
                Method::POST => true,
                Method::GET => req.uri().query().is_some_and(crate::transport::connect::is_get_query),
                _ => false,
            };
            if !call || !self.routes.contains_key(req.uri().path()) {
                // A web site: linked to and posted to from anywhere, as the application decides.
                return self.page(web, req).await;
            }
        }
        if let Err(e) = self.origins.check_origin("", &req) {
            return self.error(wire::guess_of(req.headers()), Codec::Json, e);
        }
        self.rpc(req).await
    }
}

impl Dispatcher {
    /// `GET /health/live`, `/health/ready` (open to all: orchestrators probe without tokens) and
    /// the exposed pages (once admitted); `None` for any other path.
    fn status_page(&self, req: &http::Request<Incoming>) -> Option<http::Response<Body>> {
        let path = req.uri().path();
        let text = |status: u16, line: String| {
            crate::web::Response::text(line + "\n").with_status(status).header("cache-control", "no-store").into_http()
        };
        if path == LIVE_PATH {
            return Some(text(200, "ok".into()));
        }
        if path == READY_PATH {
            let Some(shared) = self.shared.upgrade() else {
                return Some(text(503, "not ready: stopped".into()));
            };
            return Some(match ready(&shared) {
                Ok(()) => text(200, "ready".into()),
                Err(why) => text(503, format!("not ready: {why}")),
            });
        }
        let page = self.pages.get(path)?;
        if let Err(e) = self.admit(path, req.headers()) {
            return Some(self.error(Wire::Http, Codec::Json, e));
        }
        Some(page().into_http())
    }

    /// `POST /_sub/<topic>`: a broker message for this node, once the wrappers admit it.
    async fn inbox(&self, broker: SharedBroker, topic: String, req: http::Request<Incoming>) -> http::Response<Body> {
        if let Err(e) = self.admit(req.uri().path(), req.headers()) {
            return self.refuse(req, e).await;
        }
        self.deliver(broker, topic, req).await
    }

    /// A request for the service's web pages, once the wrappers admit it.
    async fn page(&self, web: &crate::web::WebHandler, req: http::Request<Incoming>) -> http::Response<Body> {
        if let Err(e) = self.admit(req.uri().path(), req.headers()) {
            return self.refuse(req, e).await;
        }
        let (parts, body) = req.into_parts();
        let body = match self.read_body(body, self.max_message_size).await {
            Ok(b) => b,
            Err(e) => return self.error(Wire::Http, Codec::Json, e),
        };
        web(crate::web::Page::new(parts.method, parts.uri, parts.headers, body)).await.into_http()
    }

    /// A call: method, query and headers → wire, codec and compression; path → handler.
    async fn rpc(&self, req: http::Request<Incoming>) -> http::Response<Body> {
        if let Err(e) = self.allowed(req.method(), req.uri()) {
            let mut resp = self.error(wire::guess_of(req.headers()), Codec::Json, e);
            resp.headers_mut().insert(http::header::ALLOW, http::HeaderValue::from_static("POST"));
            return resp;
        }
        let mut call = match Call::of(req.method(), req.uri(), req.headers()) {
            Ok(c) => c,
            Err((wire, e)) => return self.error(wire, Codec::Json, e),
        };
        let (wire, codec) = (call.wire, call.codec);
        let Some(handler) = self.routes.get(req.uri().path()).cloned() else {
            let e = Error::not_found("", format!("unknown endpoint {}", req.uri().path().trim_start_matches('/')));
            return self.error(wire, codec, e);
        };
        let (parts, body) = req.into_parts();
        let deadline = deadline_from(&parts.headers);
        let metadata = Metadata::from_headers(parts.headers);
        let max_message_size = self.max_message_size;
        let encoding = call.request_encoding;
        let raw = |protocol, body| RawRequest { codec, protocol, metadata, deadline, max_message_size, encoding, body };
        match handler {
            Handler::Unary(h) => {
                let message = match self.read_body(body, call.body_limit(max_message_size)).await {
                    Ok(bytes) => call.unary_message(bytes, max_message_size),
                    Err(e) => Err(e),
                };
                let req = match message {
                    Ok(message) => raw(call.handler_protocol(), RawBody::Message(message)),
                    Err(e) => return self.error(wire, codec, e),
                };
                match crate::transport::endpoint::invoke_unary(&*h, req).await {
                    Ok(reply) => call.unary_reply(reply),
                    Err(e) => self.error(wire, codec, e),
                }
            }
            Handler::Stream(h) => {
                if matches!(wire, Wire::Connect | Wire::Http) {
                    let e = Error::bad_request("", "streaming endpoints are served over gRPC, gRPC-Web and Connect streams (Content-Type application/grpc, application/grpc-web or application/connect+proto)");
                    return self.error(wire, codec, e);
                }
                let stream = call.stream_request(body);
                call.stream_reply(h.call(raw(Protocol::Grpc, RawBody::Stream(stream))))
            }
        }
    }

    /// Refuses a method the call may not use (405): `GET` only for Connect calls of methods
    /// declared free of side effects, `POST` otherwise.
    fn allowed(&self, method: &Method, uri: &http::Uri) -> Result<(), Error> {
        if method == Method::POST {
            return Ok(());
        }
        let path = uri.path();
        if method == Method::GET && uri.query().is_some_and(crate::transport::connect::is_get_query) {
            if self.gets.contains(path) {
                return Ok(());
            }
            return Err(Error::method_not_allowed(
                "",
                format!(
                    "{} is not declared free of side effects (idempotency_level = NO_SIDE_EFFECTS); use POST",
                    path.trim_start_matches('/')
                ),
            ));
        }
        Err(Error::method_not_allowed("", format!("{method} is not allowed; use POST")))
    }
}
