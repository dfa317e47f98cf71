//! Pub/sub: the [`Broker`] plugin point, the messages it carries, and its backends.
//!
//! A message is headers plus a body. Subscribers without a queue each get every message of their
//! topic (broadcast); subscribers sharing a queue name form a group that gets each message once.
//! Backends live one per file:
//! - [`memory`]: one process; delivery is immediate and at most once.
//! - [`http`] (the default): subscribing services receive messages on their own server
//!   (`POST /_sub/<topic>`) and announce each subscription in the registry as a service
//!   `topic:<topic>`; publishers look subscribers up there and post to each (one member per queue
//!   group). At most once: a node that is down when a message is published misses it.
//! - `nats` (feature `nats`): NATS subjects and queue groups; at most once (core NATS); the
//!   connection reconnects by itself after the server restarts.
//! - `nats-js` (feature `nats`, [`jetstream`]), `rabbitmq` (feature `rabbitmq`) and `kafka`
//!   (feature `kafka`): durable, at least once, with redelivery, a retry limit and a dead-letter
//!   topic ([`delivery`] holds their common contract).
//!
//! Handlers that fail are logged with the topic and message id; with `auto_ack` off the failure
//! is reported back to the backend as a missing acknowledgement (the HTTP broker answers 500).
//! The durable brokers acknowledge only what was handled, whatever `auto_ack` says.

pub mod delivery;
pub mod http;
#[cfg(feature = "nats")]
pub mod jetstream;
#[cfg(feature = "kafka")]
pub mod kafka;
pub mod memory;
#[cfg(feature = "nats")]
pub mod nats;
#[cfg(feature = "rabbitmq")]
pub mod rabbitmq;

use std::collections::BTreeMap;
use std::sync::Arc;

use async_trait::async_trait;
use bytes::Bytes;
use futures_util::future::BoxFuture;

use crate::registry::{Node, RegisterOptions};
use crate::secret::Secret;
use crate::Error;

/// The id of broker errors.
pub const ID: &str = "go.micro.broker";

pub use delivery::Delivery;
pub use http::HttpBroker;
pub use memory::MemoryBroker;

/// Header naming the topic.
pub const TOPIC_HEADER: &str = "Micro-Topic";
/// Header holding the message id.
pub const ID_HEADER: &str = "Micro-Id";
/// Header holding the body's content type.
pub const CONTENT_TYPE_HEADER: &str = "Content-Type";
/// Headers only brokers write; a publisher's metadata never sets them.
pub const RESERVED_HEADERS: &[&str] = &["micro-topic", "micro-id", "micro-queue"];

/// A message: headers and a body.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Message {
    /// Headers (`Micro-Topic`, `Micro-Id`, `Content-Type`, and the publisher's metadata).
    pub header: BTreeMap<String, String>,
    /// The encoded payload.
    pub body: Bytes,
}

impl Message {
    /// A header, looked up without regard to case.
    pub fn get(&self, key: &str) -> Option<&str> {
        self.header.iter().find(|(k, _)| k.eq_ignore_ascii_case(key)).map(|(_, v)| v.as_str())
    }
}

/// A received message and its topic.
#[derive(Debug, Clone)]
pub struct Event {
    /// The broker that carried it (`http`, `nats`, `nats-js`, `rabbitmq`, `kafka`, `memory`): `messaging.system` in metrics and
    /// traces.
    pub system: &'static str,
    /// The topic it was published to.
    pub topic: String,
    /// The message.
    pub message: Message,
}

/// What runs for each message of a subscription; an error means "not handled".
pub type Handler = Arc<dyn Fn(Event) -> BoxFuture<'static, Result<(), Error>> + Send + Sync>;

/// How to subscribe.
#[derive(Debug, Clone)]
pub struct SubscribeOptions {
    /// Queue group: each message goes to one member of the group. `None`: every subscriber.
    pub queue: Option<String>,
    /// Acknowledge a message even when its handler fails (the at-most-once brokers); the
    /// durable ones acknowledge only what was handled, and redeliver the rest.
    pub auto_ack: bool,
}

impl Default for SubscribeOptions {
    fn default() -> Self {
        SubscribeOptions { queue: None, auto_ack: true }
    }
}

/// A live subscription; dropping it (or [`Subscription::unsubscribe`]) ends it.
pub struct Subscription {
    cancel: Option<Box<dyn FnOnce() + Send + Sync>>,
}

impl Subscription {
    /// A subscription that runs `cancel` when it ends.
    pub fn new(cancel: impl FnOnce() + Send + Sync + 'static) -> Self {
        Subscription { cancel: Some(Box::new(cancel)) }
    }

    /// Ends the subscription.
    pub fn unsubscribe(mut self) {
        if let Some(c) = self.cancel.take() {
            c();
        }
    }
}

impl Drop for Subscription {
    fn drop(&mut self) {
        if let Some(c) = self.cancel.take() {
            c();
        }
    }
}

impl std::fmt::Debug for Subscription {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Subscription")
    }
}

/// Publishes messages and delivers them to subscribers.
#[async_trait]
pub trait Broker: Send + Sync + 'static {
    /// Connects (idempotent).
    async fn connect(&self) -> Result<(), Error>;
    /// Disconnects; subscriptions end.
    async fn disconnect(&self) -> Result<(), Error>;
    /// Publishes `message` to `topic`.
    async fn publish(&self, topic: &str, message: Message) -> Result<(), Error>;
    /// Runs `handler` for every message of `topic` (or, with a queue, for its share of them).
    async fn subscribe(&self, topic: &str, handler: Handler, opts: SubscribeOptions) -> Result<Subscription, Error>;
    /// The backend's name, as given to `--broker`.
    fn name(&self) -> &'static str;

    /// Whether the broker can carry messages now (readiness asks): an error says why not, in one
    /// sentence. Brokers with no connection of their own (memory, HTTP) are always able.
    fn check(&self) -> Result<(), String> {
        Ok(())
    }

    /// Called once the service's server is up (and again at every re-registration): a broker
    /// that receives through that server announces its subscriptions as `node`.
    async fn attach(&self, node: &Node, opts: RegisterOptions) -> Result<(), Error> {
        let _ = (node, opts);
        Ok(())
    }

    /// A message that arrived on the service's own server (`POST /_sub/<topic>`).
    async fn deliver(&self, topic: &str, message: Message) -> Result<(), Error> {
        let _ = message;
        Err(Error::not_found(ID, format!("the {} broker takes no deliveries for {topic} here", self.name())))
    }
}

/// A shared broker.
pub type SharedBroker = Arc<dyn Broker>;

/// The longest topic accepted, in bytes.
pub const MAX_TOPIC: usize = 1024;

/// Refuses a topic that no backend can carry: empty, longer than [`MAX_TOPIC`], or holding
/// whitespace or control characters (NATS subjects cannot, nor can header values).
pub fn check_topic(topic: &str) -> Result<(), Error> {
    let bad = |why: &str| Err(Error::bad_request(ID, format!("topic {topic:?} {why}")));
    if topic.is_empty() {
        return bad("is empty");
    }
    if topic.len() > MAX_TOPIC {
        return Err(Error::bad_request(ID, format!("a topic is at most {MAX_TOPIC} bytes")));
    }
    if topic.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return bad("holds whitespace or control characters");
    }
    Ok(())
}

/// What a publisher presents to the subscribers it reaches itself (the HTTP broker posts to
/// their inboxes): its own token, for messages that carry no `Authorization` of their caller, and
/// the TLS it reaches `secure` nodes with (the process default when `None`).
#[derive(Debug, Clone, Default)]
pub struct Credentials {
    /// The publisher's bearer token.
    pub auth_token: Option<Secret>,
    /// Client TLS for subscribers served over TLS.
    pub tls: Option<crate::transport::tls::ClientTls>,
}

/// Runs a handler for an event and logs a failure with the topic and message id.
pub(crate) async fn run_handler(handler: &Handler, event: Event) -> Result<(), Error> {
    let topic = event.topic.clone();
    let id = event.message.get(ID_HEADER).unwrap_or_default().to_string();
    let res = handler(event).await;
    if let Err(e) = &res {
        tracing::warn!(%topic, message_id = %id, error = %e.detail, "subscriber failed");
    }
    res
}
