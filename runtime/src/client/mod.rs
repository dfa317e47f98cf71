//! The client: calls services by name.
//!
//! A call picks a node through the [`Selector`](crate::selector::Selector), sends the request on
//! a pooled, multiplexed HTTP/2 connection as gRPC (protobuf for typed calls, `application/grpc+json`
//! for [`Client::call_json`]), and waits up to the request timeout (5 s unless set), which also
//! travels to the server as `grpc-timeout`. Calls that were not processed (the node could not be
//! reached, or refused them for overload), and failed idempotent calls, are retried on another
//! node with a short back-off, `retries` times (1 unless set), while the service's retry budget
//! lasts ([`retry`]). Wrappers ([`CallWrapper`]) layer middleware around every unary call and
//! are asked before every stream opens.

mod publisher;
pub mod retry;
mod wrapper;

use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use futures_util::future::BoxFuture;
use http::HeaderValue;
use http_body_util::BodyExt;

pub use crate::transport::channel::Sender as ClientSender;
pub use publisher::Publisher;
pub use retry::{BudgetOptions, EndpointPolicy};
pub use wrapper::{CallWrapper, Caller, Publish, RawCall};

use crate::broker::SharedBroker;
use crate::codec::{Codec, Decode, Message, RawMessage};
use crate::metadata::Metadata;
use crate::registry::{MemoryRegistry, Node, SharedRegistry};
use crate::selector::{Filter, Outcome, RegistrySelector, Selector, Strategy};
use crate::transport::channel::Channel;
use crate::transport::grpc::{self, Streaming, DEFAULT_MAX_MESSAGE_SIZE};
use crate::transport::http::Pool;
use crate::transport::Body;
use crate::Error;

/// Where a `micro proxy` takes messages to publish for its clients.
pub const PROXY_PUBLISH_PATH: &str = "/_pub/";

/// The header naming the service a call is for, when a `micro proxy` forwards it.
pub const PROXY_SERVICE_HEADER: &str = "micro-service";

/// The id of errors the client itself produces.
pub const ID: &str = crate::error::CLIENT_ID;

/// The id of errors the client itself produces (the same as [`ID`]).
pub const CLIENT_ID: &str = ID;

/// A method as generated code names it: the micro endpoint and the gRPC path.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Method {
    /// `Greeter.SayHello`.
    pub endpoint: &'static str,
    /// `/helloworld.Greeter/SayHello`.
    pub path: &'static str,
}

/// Options of a client.
#[derive(Debug, Clone)]
pub struct ClientOptions {
    /// How long a call may take, retries included.
    pub request_timeout: Duration,
    /// How many times a failed call is tried again.
    pub retries: u32,
    /// How long connecting to a node may take.
    pub connect_timeout: Duration,
    /// Largest reply accepted.
    pub max_message_size: usize,
    /// NATS servers, for nodes whose transport is `nats`.
    pub transport_address: Vec<String>,
    /// Send every call to this `micro proxy` instead of discovering nodes (`MICRO_PROXY`).
    pub proxy: Option<String>,
    /// TLS for nodes registered `secure=true` (and every node when it carries a CA of its own);
    /// the process default when `None`.
    pub tls: Option<crate::transport::tls::ClientTls>,
    /// The retry budget of each service called.
    pub budget: BudgetOptions,
    /// Policies by endpoint name (`Greeter.SayHello`), over the options above.
    pub endpoints: std::collections::HashMap<String, EndpointPolicy>,
}

impl Default for ClientOptions {
    fn default() -> Self {
        ClientOptions {
            request_timeout: Duration::from_secs(5),
            retries: 1,
            connect_timeout: Duration::from_secs(2),
            max_message_size: DEFAULT_MAX_MESSAGE_SIZE,
            transport_address: Vec::new(),
            proxy: std::env::var("MICRO_PROXY").ok().filter(|p| !p.is_empty()),
            tls: None,
            budget: BudgetOptions::default(),
            endpoints: Default::default(),
        }
    }
}

/// Options of one call.
#[derive(Debug, Clone, Default)]
pub struct CallOptions {
    /// Overrides the client's request timeout.
    pub timeout: Option<Duration>,
    /// Metadata sent with the request.
    pub metadata: Metadata,
    /// Calls this address instead of discovering nodes.
    pub address: Option<String>,
    /// Overrides the client's retries.
    pub retries: Option<u32>,
    /// Node filter (version, labels).
    pub filter: Filter,
    /// Whether the call may be repeated after a failure it may have caused (the endpoint's
    /// policy decides when unset).
    pub idempotent: Option<bool>,
    /// For an idempotent call: send it to a second node too if the first has not answered
    /// after this long (the endpoint's policy decides when unset).
    pub hedge: Option<Duration>,
}

impl CallOptions {
    /// Default options.
    pub fn new() -> Self {
        Self::default()
    }

    /// Sets the timeout.
    pub fn timeout(mut self, t: Duration) -> Self {
        self.timeout = Some(t);
        self
    }

    /// Adds metadata.
    pub fn metadata(mut self, key: &str, value: &str) -> Self {
        self.metadata.insert(key, value);
        self
    }

    /// Calls this address directly.
    pub fn address(mut self, addr: impl Into<String>) -> Self {
        self.address = Some(addr.into());
        self
    }

    /// Sets the retries.
    pub fn retries(mut self, n: u32) -> Self {
        self.retries = Some(n);
        self
    }

    /// Says whether the call may be repeated after a failure that may have been processed.
    pub fn idempotent(mut self, idempotent: bool) -> Self {
        self.idempotent = Some(idempotent);
        self
    }

    /// Hedges an idempotent call: a second node is tried too if the first has not answered
    /// after `after`.
    pub fn hedge(mut self, after: Duration) -> Self {
        self.hedge = Some(after);
        self
    }
}

pub(crate) struct Core {
    pub(crate) opts: ClientOptions,
    pub(crate) selector: Arc<dyn Selector>,
    pub(crate) pool: Pool,
    pub(crate) budgets: retry::Budgets,
    #[cfg(feature = "nats")]
    pub(crate) nats: crate::transport::nats::Connection,
}

/// Whether a node is reached over NATS.
fn over_nats(node: &Node) -> bool {
    node.metadata.get("transport").is_some_and(|t| t == "nats")
}

/// A client. Cheap to clone; clones share connections.
#[derive(Clone)]
pub struct Client {
    core: Arc<Core>,
    caller: Arc<dyn Caller>,
    /// Every wrapper, in the order given, asked before each stream opens.
    wrappers: Arc<[Arc<dyn CallWrapper>]>,
    broker: Option<SharedBroker>,
}

impl std::fmt::Debug for Client {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Client").field("opts", &self.core.opts).finish()
    }
}

impl Default for Client {
    fn default() -> Self {
        Self::new(Arc::new(MemoryRegistry::new()), ClientOptions::default())
    }
}

impl Client {
    /// A client discovering nodes in `registry` with the random selector.
    pub fn new(registry: SharedRegistry, opts: ClientOptions) -> Self {
        Self::with_selector(Arc::new(RegistrySelector::new(registry, Strategy::Random)), opts)
    }

    /// A client with its own selector.
    pub fn with_selector(selector: Arc<dyn Selector>, opts: ClientOptions) -> Self {
        let core = Arc::new(Core {
            #[cfg(feature = "nats")]
            nats: crate::transport::nats::Connection::new(&opts.transport_address),
            selector,
            pool: Pool::with_tls(opts.tls.clone()),
            budgets: retry::Budgets::new(opts.budget),
            opts,
        });
        Client { caller: core.clone(), core, wrappers: Arc::new([]), broker: None }
    }

    /// The same client publishing through `broker`.
    pub fn with_broker(mut self, broker: SharedBroker) -> Self {
        self.broker = Some(broker);
        self
    }

    /// Hands a message to a `micro proxy`, which publishes it with its broker
    /// (`POST /_pub/<topic>`, headers as HTTP headers).
    pub(crate) async fn publish_via_proxy(
        &self,
        proxy: &str,
        topic: &str,
        message: &crate::broker::Message,
    ) -> Result<(), Error> {
        let encoded = percent_encoding::utf8_percent_encode(topic, percent_encoding::NON_ALPHANUMERIC).to_string();
        let mut req = http::Request::new(Body::full(message.body.clone()));
        *req.method_mut() = http::Method::POST;
        *req.uri_mut() = http::Uri::builder()
            .scheme("http")
            .authority("micro")
            .path_and_query(format!("{PROXY_PUBLISH_PATH}{encoded}"))
            .build()
            .map_err(|e| Error::bad_request(CLIENT_ID, e))?;
        for (k, v) in &message.header {
            if let (Ok(k), Ok(v)) =
                (http::HeaderName::from_bytes(k.to_ascii_lowercase().as_bytes()), HeaderValue::from_str(v))
            {
                req.headers_mut().insert(k, v);
            }
        }
        let timeout = self.core.opts.request_timeout;
        let resp = tokio::time::timeout(
            timeout,
            self.core.pool.send(
                proxy,
                self.core.pool.tls().is_some_and(|t| t.explicit()),
                req,
                self.core.opts.connect_timeout,
            ),
        )
        .await
        .map_err(|_| Error::timeout(CLIENT_ID, format!("the proxy at {proxy} did not answer")))??;
        if resp.status().is_success() {
            return Ok(());
        }
        let status = resp.status().as_u16();
        let body = resp.into_body().collect().await.map(|c| c.to_bytes()).unwrap_or_default();
        Err(Error::from_json(&String::from_utf8_lossy(&body))
            .unwrap_or_else(|| Error::new(CLIENT_ID, status, "publishing through the proxy failed")))
    }

    /// The broker [`Publisher`]s use.
    pub fn broker(&self) -> Option<&SharedBroker> {
        self.broker.as_ref()
    }

    /// The same client with a wrapper around every unary call (outermost last), also asked
    /// before every stream opens ([`CallWrapper::before_stream`]).
    pub fn wrap(mut self, wrapper: impl CallWrapper) -> Self {
        self.caller = wrapper.wrap(self.caller);
        let mut wrappers = self.wrappers.to_vec();
        wrappers.push(Arc::new(wrapper));
        self.wrappers = wrappers.into();
        self
    }

    /// The options in force.
    pub fn options(&self) -> &ClientOptions {
        &self.core.opts
    }

    /// Calls `method` of `service` with a typed request.
    pub async fn call<Req: Message, Resp: Message>(
        &self,
        service: &str,
        method: &Method,
        req: &Req,
        opts: CallOptions,
    ) -> Result<Resp, Error> {
        let body = Codec::Proto.encode_framed(req)?;
        let reply = self
            .caller
            .call(RawCall {
                service: service.to_string(),
                endpoint: method.endpoint.to_string(),
                path: method.path.to_string(),
                codec: Codec::Proto,
                body,
                opts,
            })
            .await?;
        Codec::Proto.decode(&reply)
    }

    /// Calls `endpoint` (`Service.Method`) of `service` with a JSON request; returns the JSON reply.
    pub async fn call_json(
        &self,
        service: &str,
        endpoint: &str,
        json: &[u8],
        opts: CallOptions,
    ) -> Result<Bytes, Error> {
        self.call_raw(service, endpoint, &format!("/{endpoint}"), Codec::Json, json, opts).await
    }

    /// Calls `path` with a message already encoded with `codec`; returns the reply's bytes.
    pub async fn call_raw(
        &self,
        service: &str,
        endpoint: &str,
        path: &str,
        codec: Codec,
        message: &[u8],
        opts: CallOptions,
    ) -> Result<Bytes, Error> {
        let body = grpc::frame(message);
        self.caller
            .call(RawCall {
                service: service.to_string(),
                endpoint: endpoint.to_string(),
                path: path.to_string(),
                codec,
                body,
                opts,
            })
            .await
    }

    /// Opens a server stream: one request, then every reply.
    pub async fn server_stream<Req: Message, Resp: Message>(
        &self,
        service: &str,
        method: &Method,
        req: &Req,
        opts: CallOptions,
    ) -> Result<Streaming<Resp>, Error> {
        let (tx, stream) = self.open::<Req, Resp>(service, method.path, Codec::Proto, opts).await?;
        tx.send_raw(Codec::Proto.encode_framed(req)?).await?;
        drop(tx);
        Ok(stream)
    }

    /// Opens a client stream: send requests, close, then await the one reply.
    pub async fn client_stream<Req: Message, Resp: Message>(
        &self,
        service: &str,
        method: &Method,
        opts: CallOptions,
    ) -> Result<(ClientSender<Req>, ClientReply<Resp>), Error> {
        let (tx, stream) = self.open(service, method.path, Codec::Proto, opts).await?;
        Ok((tx, ClientReply { stream }))
    }

    /// Opens a bidirectional stream.
    pub async fn bidi_stream<Req: Message, Resp: Message>(
        &self,
        service: &str,
        method: &Method,
        opts: CallOptions,
    ) -> Result<(ClientSender<Req>, Streaming<Resp>), Error> {
        self.open(service, method.path, Codec::Proto, opts).await
    }

    /// Opens a stream to `endpoint` that carries JSON both ways (for tools such as the CLI).
    pub async fn stream_json(
        &self,
        service: &str,
        endpoint: &str,
        opts: CallOptions,
    ) -> Result<(ClientSender<RawMessage>, Streaming<RawMessage>), Error> {
        self.stream_raw(service, endpoint, &format!("/{endpoint}"), Codec::Json, opts).await
    }

    /// Opens a stream to `path` whose messages are bytes already encoded with `codec`.
    pub async fn stream_raw(
        &self,
        service: &str,
        endpoint: &str,
        path: &str,
        codec: Codec,
        opts: CallOptions,
    ) -> Result<(ClientSender<RawMessage>, Streaming<RawMessage>), Error> {
        let _ = endpoint; // errors name the call by its path
        self.open(service, path, codec, opts).await
    }

    async fn open<Req, Resp: Decode>(
        &self,
        service: &str,
        path: &str,
        codec: Codec,
        mut opts: CallOptions,
    ) -> Result<(ClientSender<Req>, Streaming<Resp>), Error> {
        for w in self.wrappers.iter().rev() {
            w.before_stream(service, path, &mut opts)?;
        }
        let core = &self.core;
        let connect_deadline = Instant::now() + opts.timeout.unwrap_or(core.opts.request_timeout);
        let retries = opts.retries.unwrap_or(core.opts.retries);
        let mut filter = opts.filter.clone();
        let mut attempt = 0;
        let mut last: Option<Error> = None;
        loop {
            // With every node tried, the last real failure says more than "no node available".
            let node = match core.node(service, &opts, &filter).await {
                Ok(n) => n,
                Err(e) => return Err(last.take().unwrap_or(e)),
            };
            #[cfg(feature = "nats")]
            if over_nats(&node) {
                let (tx, body) =
                    crate::transport::nats::open(&core.nats, &node.address, path, codec, &opts.metadata).await?;
                let fut: grpc::ResponseFuture = Box::pin(async move { Ok(Some(grpc::stream_body(body))) });
                return Ok((
                    ClientSender::new(tx, codec),
                    Streaming::client(fut, codec, core.opts.max_message_size, service.to_string()),
                ));
            }
            let started = Instant::now();
            let remaining = connect_deadline.saturating_duration_since(started);
            let md = core.metadata(service, &opts);
            match core.channel(&node, service, remaining).open(path, codec, &md, opts.timeout).await {
                Ok(stream) => {
                    core.selector.mark(service, &node, Outcome { result: Ok(()), elapsed: started.elapsed() });
                    core.budgets.record(service, Ok(()));
                    return Ok(stream);
                }
                Err(e) => {
                    core.selector.mark(service, &node, Outcome { result: Err(&e), elapsed: started.elapsed() });
                    core.budgets.record(service, Err(&e));
                    if attempt >= retries
                        || opts.address.is_some()
                        || Instant::now() >= connect_deadline
                        || !core.budgets.may_retry(service)
                    {
                        return Err(e);
                    }
                    filter.exclude.push(node.address);
                    attempt += 1;
                    last = Some(e);
                }
            }
        }
    }
}

/// The reply of a client stream, available once the request stream is closed.
#[derive(Debug)]
pub struct ClientReply<M> {
    stream: Streaming<M>,
}

impl<M: Message> ClientReply<M> {
    /// Waits for the reply.
    pub async fn reply(mut self) -> Result<M, Error> {
        self.stream
            .message()
            .await?
            .ok_or_else(|| Error::internal_server_error(CLIENT_ID, "the server closed the stream without a reply"))
    }
}

impl Core {
    async fn node(&self, service: &str, opts: &CallOptions, filter: &Filter) -> Result<Node, Error> {
        match opts.address.as_ref().or(self.opts.proxy.as_ref()) {
            Some(addr) => Ok(Node { id: addr.clone(), address: addr.clone(), ..Default::default() }),
            None => self.selector.select(service, filter).await,
        }
    }

    /// The metadata to send: the call's, plus the target service when a proxy forwards it.
    fn metadata(&self, service: &str, opts: &CallOptions) -> Metadata {
        let mut md = opts.metadata.clone();
        if opts.address.is_none() && self.opts.proxy.is_some() {
            md.insert(PROXY_SERVICE_HEADER, service);
        }
        md
    }

    /// Whether `node` is reached over TLS.
    fn secure(&self, node: &Node) -> bool {
        crate::transport::tls::node_is_secure(&node.metadata, self.pool.tls())
    }

    async fn attempt(&self, call: &RawCall, node: &Node, timeout: Duration) -> Result<Bytes, Error> {
        if over_nats(node) {
            // Boxed: the NATS request's future is large, and every call would carry its size.
            #[cfg(feature = "nats")]
            return Box::pin(crate::transport::nats::unary(
                &self.nats,
                &node.address,
                &call.path,
                call.codec,
                call.body.slice(5.min(call.body.len())..),
                &call.opts.metadata,
                timeout,
            ))
            .await;
            #[cfg(not(feature = "nats"))]
            return Err(Error::unavailable(CLIENT_ID, "node uses the nats transport; rebuild with --features nats"));
        }
        let md = self.metadata(&call.service, &call.opts);
        self.channel(node, &call.service, timeout)
            .unary_raw(&call.path, call.codec, &md, timeout, call.body.clone())
            .await
    }

    /// The channel to `node` for a call to `service` that may take `timeout`.
    fn channel<'a>(&'a self, node: &'a Node, service: &'a str, timeout: Duration) -> Channel<'a> {
        Channel {
            pool: &self.pool,
            address: &node.address,
            secure: self.secure(node),
            connect_timeout: timeout.min(self.opts.connect_timeout),
            max_message_size: self.opts.max_message_size,
            peer: service,
        }
    }
}

impl Caller for Core {
    fn call(&self, call: RawCall) -> BoxFuture<'_, Result<Bytes, Error>> {
        Box::pin(async move {
            let policy = self.opts.endpoints.get(&call.endpoint);
            let timeout = call.opts.timeout.or(policy.and_then(|p| p.timeout)).unwrap_or(self.opts.request_timeout);
            let deadline = Instant::now() + timeout;
            let retries = call.opts.retries.or(policy.and_then(|p| p.retries)).unwrap_or(self.opts.retries);
            let idempotent = retry::idempotent(&call.opts, policy);
            let hedge = call.opts.hedge.or(policy.and_then(|p| p.hedge)).filter(|_| idempotent);
            let mut filter = call.opts.filter.clone();
            let mut attempt = 0u32;
            let mut last: Option<Error> = None;
            loop {
                let node = match self.node(&call.service, &call.opts, &filter).await {
                    Ok(n) => n,
                    Err(e) => return Err(last.take().unwrap_or(e)),
                };
                let res = match hedge {
                    Some(after) if call.opts.address.is_none() => {
                        self.hedged(&call, &node, &filter, deadline, timeout, after).await
                    }
                    _ => self.timed_attempt(&call, &node, deadline, timeout).await,
                };
                match res {
                    Ok(reply) => return Ok(reply),
                    Err(e)
                        if retry::should_retry(&e, idempotent)
                            && attempt < retries
                            && Instant::now() < deadline
                            && self.budgets.may_retry(&call.service) =>
                    {
                        attempt += 1;
                        if call.opts.address.is_none() {
                            filter.exclude.push(node.address);
                        }
                        let backoff = Duration::from_millis(10u64.pow(attempt.min(3)));
                        tokio::time::sleep(backoff.min(deadline.saturating_duration_since(Instant::now()))).await;
                        tracing::debug!(service = %call.service, endpoint = %call.endpoint, attempt, error = %e.detail, "retrying");
                        last = Some(e);
                    }
                    Err(e) => return Err(e),
                }
            }
        })
    }
}

/// Reports an attempt's outcome to the selector, also when the attempt is dropped unfinished
/// (the losing half of a hedge): it then counts as cancelled, which says nothing of the node.
struct Marking<'a> {
    core: &'a Core,
    service: &'a str,
    node: &'a Node,
    started: Instant,
    direct: bool,
    done: bool,
}

impl Marking<'_> {
    fn finish(mut self, result: Result<(), &Error>) {
        self.done = true;
        if !self.direct {
            let outcome = Outcome { result, elapsed: self.started.elapsed() };
            self.core.selector.mark(self.service, self.node, outcome);
        }
        self.core.budgets.record(self.service, result);
    }
}

impl Drop for Marking<'_> {
    fn drop(&mut self) {
        if !self.done && !self.direct {
            let cancelled = Error::new(CLIENT_ID, 499, "the call was answered by another node first");
            let outcome = Outcome { result: Err(&cancelled), elapsed: self.started.elapsed() };
            self.core.selector.mark(self.service, self.node, outcome);
        }
    }
}

impl Core {
    /// One attempt on `node` within the call's deadline, reported to the selector and the budget.
    async fn timed_attempt(
        &self,
        call: &RawCall,
        node: &Node,
        deadline: Instant,
        timeout: Duration,
    ) -> Result<Bytes, Error> {
        let started = Instant::now();
        let marking = Marking {
            core: self,
            service: &call.service,
            node,
            started,
            direct: call.opts.address.is_some(),
            done: false,
        };
        let remaining = deadline.saturating_duration_since(started);
        let res = match tokio::time::timeout(remaining, self.attempt(call, node, remaining)).await {
            Ok(r) => r,
            Err(_) => Err(Error::timeout(
                CLIENT_ID,
                format!("call to {}.{} timed out after {timeout:?}", call.service, call.endpoint),
            )),
        };
        marking.finish(res.as_ref().map(|_| ()));
        res
    }

    /// An attempt on `node` and, if it has not answered `after`, a second on another node
    /// (while the retry budget allows): the first success wins, the other is dropped.
    async fn hedged(
        &self,
        call: &RawCall,
        node: &Node,
        filter: &Filter,
        deadline: Instant,
        timeout: Duration,
        after: Duration,
    ) -> Result<Bytes, Error> {
        let first = self.timed_attempt(call, node, deadline, timeout);
        tokio::pin!(first);
        tokio::select! {
            res = &mut first => return res,
            _ = tokio::time::sleep(after) => {}
        }
        if !self.budgets.may_retry(&call.service) {
            return first.await;
        }
        let mut others = filter.clone();
        others.exclude.push(node.address.clone());
        let second = match self.node(&call.service, &call.opts, &others).await {
            Ok(n) if n.address != node.address => n,
            _ => return first.await,
        };
        tracing::debug!(service = %call.service, endpoint = %call.endpoint, after = ?after, "hedging");
        let hedge = self.timed_attempt(call, &second, deadline, timeout);
        tokio::pin!(hedge);
        tokio::select! {
            res = &mut first => match res {
                Ok(reply) => Ok(reply),
                Err(_) => hedge.await,
            },
            res = &mut hedge => match res {
                Ok(reply) => Ok(reply),
                Err(_) => first.await,
            },
        }
    }
}
