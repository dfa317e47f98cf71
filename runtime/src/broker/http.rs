//! The HTTP broker (the default): no broker process at all.
//!
//! A service that subscribes receives messages on its own server as `POST /_sub/<topic>` and
//! announces each subscription in the registry as a service named `topic:<topic>` whose node is
//! this service's node (metadata `broker=http`, `topic`, and `queue` for queue groups).
//! Publishing looks the topic up (through a watch-fed cache) and posts the message to every
//! subscribing node without a queue and to one member of each queue group, all at once, over the
//! same pooled HTTP/2 connections calls use. Delivery is at most once.
//!
//! Inboxes are guarded like endpoints: a subscriber started with an auth token refuses posts
//! without it. The broker presents the caller's `Authorization` when the message carries one
//! (a tool publishing for its caller), else its own token ([`HttpBroker::with_auth_token`]);
//! and it posts over TLS to subscribers whose node is `secure` (the topic records say so).

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use async_trait::async_trait;
use http::{HeaderName, HeaderValue};

use super::{run_handler, Broker, Event, Handler, Message, SubscribeOptions, Subscription};
use crate::registry::cache::RegistryCache;
use crate::registry::{Node, RegisterOptions, Service, SharedRegistry};
use crate::transport::http::Pool;
use crate::transport::Body;
use crate::Error;

/// The path prefix subscribers receive on.
pub const SUB_PATH: &str = "/_sub/";

/// The header naming the queue group a delivery is for (absent: the broadcast subscribers).
const QUEUE_HEADER: &str = "micro-queue";

/// The prefix of the registry records that list a topic's subscribers.
pub const TOPIC_PREFIX: &str = "topic:";

/// The registry name of a topic's subscribers.
pub fn topic_service(topic: &str) -> String {
    format!("{TOPIC_PREFIX}{topic}")
}

struct LocalSub {
    id: u64,
    queue: Option<String>,
    handler: Handler,
    auto_ack: bool,
}

#[derive(Default)]
struct Attachment {
    node: Option<Node>,
    opts: RegisterOptions,
}

struct Inner {
    registry: SharedRegistry,
    cache: Arc<RegistryCache>,
    pool: Pool,
    subs: RwLock<HashMap<String, Vec<LocalSub>>>,
    attached: Mutex<Attachment>,
    next_id: AtomicU64,
    timeout: Duration,
    /// `Bearer <token>`, presented when a message carries no `Authorization` of its own.
    bearer: Option<HeaderValue>,
}

/// The HTTP broker.
#[derive(Clone)]
pub struct HttpBroker {
    inner: Arc<Inner>,
}

fn err(detail: impl std::fmt::Display) -> Error {
    Error::unavailable(super::ID, format!("http broker: {detail}"))
}

impl HttpBroker {
    /// A broker finding subscribers in `registry`.
    pub fn new(registry: SharedRegistry) -> Self {
        HttpBroker {
            inner: Arc::new(Inner {
                cache: RegistryCache::new(registry.clone(), Duration::from_secs(10)),
                registry,
                pool: Pool::new(),
                subs: RwLock::new(HashMap::new()),
                attached: Mutex::new(Attachment::default()),
                next_id: AtomicU64::new(0),
                timeout: Duration::from_secs(5),
                bearer: None,
            }),
        }
    }

    /// The same broker presenting `credentials` to the inboxes it posts to (a service's own
    /// token and client TLS). Call before the broker is shared.
    pub fn with_credentials(mut self, credentials: super::Credentials) -> Self {
        let bearer = credentials.auth_token.and_then(|t| HeaderValue::from_str(&format!("Bearer {}", t.expose())).ok());
        if let Some(inner) = Arc::get_mut(&mut self.inner) {
            inner.bearer = bearer.map(|mut v| {
                v.set_sensitive(true);
                v
            });
            inner.pool = Pool::with_tls(credentials.tls);
        }
        self
    }

    /// The registry records announcing this node's subscriptions.
    fn records(&self, node: &Node) -> Vec<Service> {
        let subs = self.inner.subs.read().unwrap_or_else(|e| e.into_inner());
        let mut out: Vec<Service> = vec![];
        for (topic, list) in subs.iter() {
            let mut queues: Vec<Option<&String>> = list.iter().map(|s| s.queue.as_ref()).collect();
            queues.sort();
            queues.dedup();
            for q in queues {
                let mut metadata =
                    BTreeMap::from([("broker".to_string(), "http".to_string()), ("topic".to_string(), topic.clone())]);
                if let Some(secure) = node.metadata.get(crate::transport::tls::SECURE) {
                    metadata.insert(crate::transport::tls::SECURE.to_string(), secure.clone());
                }
                let id = match q {
                    Some(q) => {
                        metadata.insert("queue".into(), q.clone());
                        format!("{}-{q}", node.id)
                    }
                    None => node.id.clone(),
                };
                out.push(Service {
                    name: topic_service(topic),
                    version: "latest".into(),
                    nodes: vec![Node { id, address: node.address.clone(), metadata }],
                    ..Default::default()
                });
            }
        }
        out
    }

    async fn post(&self, node: &Node, topic: &str, message: &Message) -> Result<(), Error> {
        let address = node.address.as_str();
        let mut req = http::Request::new(Body::full(message.body.clone()));
        *req.method_mut() = http::Method::POST;
        *req.uri_mut() = http::Uri::builder()
            .scheme("http")
            .authority("micro")
            .path_and_query(format!("{SUB_PATH}{}", encode_topic(topic)))
            .build()
            .map_err(|e| err(format!("topic {topic:?} cannot travel in a path: {e}")))?;
        let headers = req.headers_mut();
        for (k, v) in &message.header {
            if let (Ok(k), Ok(v)) =
                (HeaderName::from_bytes(k.to_ascii_lowercase().as_bytes()), HeaderValue::from_str(v))
            {
                headers.insert(k, v);
            }
        }
        // Which group a delivery is for is the broker's to say, never the message's.
        headers.remove(QUEUE_HEADER);
        if let Some(q) = node.metadata.get("queue").and_then(|q| HeaderValue::from_str(q).ok()) {
            headers.insert(QUEUE_HEADER, q);
        }
        if let Some(bearer) = &self.inner.bearer {
            if !headers.contains_key(http::header::AUTHORIZATION) {
                headers.insert(http::header::AUTHORIZATION, bearer.clone());
            }
        }
        let secure = crate::transport::tls::node_is_secure(&node.metadata, self.inner.pool.tls());
        let resp =
            tokio::time::timeout(self.inner.timeout, self.inner.pool.send(address, secure, req, self.inner.timeout))
                .await
                .map_err(|_| err(format!("{address} did not take the message in time")))??;
        if resp.status().is_success() {
            Ok(())
        } else {
            Err(err(format!("{address} did not handle the message ({})", resp.status())))
        }
    }
}

/// Percent-encodes what a path segment cannot hold.
fn encode_topic(topic: &str) -> String {
    percent_encoding::utf8_percent_encode(topic, percent_encoding::NON_ALPHANUMERIC).to_string()
}

/// Reverses [`encode_topic`].
pub(crate) fn decode_topic(segment: &str) -> String {
    percent_encoding::percent_decode_str(segment).decode_utf8_lossy().into_owned()
}

#[async_trait]
impl Broker for HttpBroker {
    async fn connect(&self) -> Result<(), Error> {
        Ok(())
    }

    async fn disconnect(&self) -> Result<(), Error> {
        let node = self.inner.attached.lock().unwrap_or_else(|e| e.into_inner()).node.take();
        if let Some(node) = node {
            for record in self.records(&node) {
                let _ = self.inner.registry.deregister(&record).await;
            }
        }
        Ok(())
    }

    async fn publish(&self, topic: &str, message: Message) -> Result<(), Error> {
        let entry = match self.inner.cache.get(&topic_service(topic)).await {
            Ok(e) => e,
            Err(e) if e.code == 404 => {
                tracing::debug!(topic, "no subscribers");
                return Ok(());
            }
            Err(e) => return Err(e),
        };
        let mut targets: Vec<&Node> = vec![];
        let mut groups: BTreeMap<&str, Vec<&Node>> = BTreeMap::new();
        for c in &entry.nodes {
            match c.node.metadata.get("queue") {
                Some(q) => groups.entry(q.as_str()).or_default().push(&c.node),
                None => targets.push(&c.node),
            }
        }
        let turn = self.inner.next_id.fetch_add(1, Ordering::Relaxed) as usize;
        for members in groups.values() {
            targets.push(members[turn % members.len()]);
        }
        if targets.is_empty() {
            return Ok(());
        }
        let results = futures_util::future::join_all(targets.iter().map(|n| self.post(n, topic, &message))).await;
        let failures: Vec<&Error> = results.iter().filter_map(|r| r.as_ref().err()).collect();
        for e in &failures {
            tracing::warn!(topic, error = %e.detail, "delivery failed");
        }
        if failures.len() == results.len() {
            return Err(err(format!("no subscriber of {topic} took the message ({})", failures[0].detail)));
        }
        Ok(())
    }

    async fn subscribe(&self, topic: &str, handler: Handler, opts: SubscribeOptions) -> Result<Subscription, Error> {
        let id = self.inner.next_id.fetch_add(1, Ordering::Relaxed);
        self.inner
            .subs
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .entry(topic.to_string())
            .or_default()
            .push(LocalSub { id, queue: opts.queue, handler, auto_ack: opts.auto_ack });
        let attached = {
            let a = self.inner.attached.lock().unwrap_or_else(|e| e.into_inner());
            a.node.clone().map(|n| (n, a.opts))
        };
        if let Some((node, ropts)) = attached {
            for record in self.records(&node).into_iter().filter(|r| r.name == topic_service(topic)) {
                self.inner.registry.register(&record, ropts).await?;
            }
        }
        let inner = Arc::downgrade(&self.inner);
        let topic = topic.to_string();
        Ok(Subscription::new(move || {
            if let Some(inner) = inner.upgrade() {
                if let Some(list) = inner.subs.write().unwrap_or_else(|e| e.into_inner()).get_mut(&topic) {
                    list.retain(|s| s.id != id);
                }
            }
        }))
    }

    fn name(&self) -> &'static str {
        "http"
    }

    async fn attach(&self, node: &Node, opts: RegisterOptions) -> Result<(), Error> {
        {
            let mut a = self.inner.attached.lock().unwrap_or_else(|e| e.into_inner());
            a.node = Some(node.clone());
            a.opts = opts;
        }
        for record in self.records(node) {
            self.inner.registry.register(&record, opts).await?;
        }
        Ok(())
    }

    async fn deliver(&self, topic: &str, message: Message) -> Result<(), Error> {
        let queue = message.get(QUEUE_HEADER).map(str::to_string);
        let handlers: Vec<(Handler, bool)> = {
            let subs = self.inner.subs.read().unwrap_or_else(|e| e.into_inner());
            subs.get(topic)
                .map(|l| l.iter().filter(|s| s.queue == queue).map(|s| (s.handler.clone(), s.auto_ack)).collect())
                .unwrap_or_default()
        };
        if handlers.is_empty() {
            return Err(Error::not_found(super::ID, format!("no subscriber of {topic} here")));
        }
        let mut first_err = None;
        for (h, auto_ack) in handlers {
            if let Err(e) =
                run_handler(&h, Event { system: "http", topic: topic.to_string(), message: message.clone() }).await
            {
                if !auto_ack && first_err.is_none() {
                    first_err = Some(e);
                }
            }
        }
        first_err.map_or(Ok(()), Err)
    }
}
