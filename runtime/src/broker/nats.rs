//! The NATS broker (feature `nats`): topics are NATS subjects, queue groups are NATS queue
//! subscriptions, headers travel as NATS headers.
//!
//! Delivery is at most once (core NATS): a message published while no subscriber is connected
//! is gone. Publishing queues the message on the connection and returns; one background flush
//! follows a burst of publishes, and [`Broker::disconnect`] flushes what is left, so a
//! short-lived publisher calls it before it exits. The connection retries at start and reconnects forever after the server goes away;
//! subscriptions resume by themselves once it is back.

use std::sync::Arc;

use async_trait::async_trait;
use futures_util::StreamExt;

use super::{run_handler, Broker, Event, Handler, Message, SubscribeOptions, Subscription};
use crate::transport::nats::Connection;
use crate::Error;

fn err(detail: impl std::fmt::Display) -> Error {
    Error::unavailable(super::ID, format!("nats: {detail}"))
}

/// A message's headers as NATS headers (shared with the JetStream broker).
pub(crate) fn to_headers(message: &Message) -> Result<async_nats::HeaderMap, Error> {
    let mut headers = async_nats::HeaderMap::new();
    for (k, v) in &message.header {
        // A bearer token is for an HTTP inbox; NATS subscribers have no use for it.
        if k.eq_ignore_ascii_case(crate::metadata::AUTHORIZATION) {
            continue;
        }
        match (k.parse::<async_nats::HeaderName>(), v.parse::<async_nats::HeaderValue>()) {
            (Ok(k), Ok(v)) => headers.insert(k, v),
            _ => return Err(Error::bad_request(super::ID, format!("header {k:?} cannot travel in a NATS message"))),
        }
    }
    Ok(headers)
}

/// A NATS message's headers as a message's, without those NATS itself sets (`Nats-*`).
pub(crate) fn from_headers(headers: Option<&async_nats::HeaderMap>) -> std::collections::BTreeMap<String, String> {
    let Some(h) = headers else { return Default::default() };
    h.iter()
        .filter(|(k, _)| !AsRef::<str>::as_ref(*k).get(..5).is_some_and(|p| p.eq_ignore_ascii_case("nats-")))
        .filter_map(|(k, v)| Some((k.to_string(), v.first()?.to_string())))
        .collect()
}

/// The NATS broker.
pub struct NatsBroker {
    conn: Connection,
    /// Woken after each publish; one task flushes, so a burst of publishes shares one flush.
    flush: Arc<Flush>,
    flusher: std::sync::OnceLock<()>,
}

#[derive(Default)]
struct Flush {
    wake: tokio::sync::Notify,
    /// Set when the broker is dropped: the flusher flushes once more and ends.
    closing: std::sync::atomic::AtomicBool,
}

impl Drop for NatsBroker {
    fn drop(&mut self) {
        self.flush.closing.store(true, std::sync::atomic::Ordering::Release);
        self.flush.wake.notify_one();
    }
}

impl NatsBroker {
    /// A broker for the NATS servers at `addresses` (`127.0.0.1:4222` when empty).
    pub fn new(addresses: &[String]) -> Self {
        NatsBroker { conn: Connection::new(addresses), flush: Arc::default(), flusher: std::sync::OnceLock::new() }
    }

    /// The connection, made on first use.
    pub async fn client(&self) -> Result<&async_nats::Client, Error> {
        self.conn.get().await
    }
}

#[async_trait]
impl Broker for NatsBroker {
    async fn connect(&self) -> Result<(), Error> {
        self.client().await.map(|_| ())
    }

    async fn disconnect(&self) -> Result<(), Error> {
        self.client().await?.flush().await.map_err(err)
    }

    async fn publish(&self, topic: &str, message: Message) -> Result<(), Error> {
        super::check_topic(topic)?;
        let client = self.client().await?;
        // Queued on the connection; the flusher sends it without this call waiting for the server.
        let subject = async_nats::Subject::from(topic);
        if message.header.is_empty() {
            client.publish(subject, message.body).await.map_err(err)?;
        } else {
            let headers = to_headers(&message)?;
            client.publish_with_headers(subject, headers, message.body).await.map_err(err)?;
        }
        self.flusher.get_or_init(|| {
            let (client, flush) = (client.clone(), self.flush.clone());
            // The task holds the connection until its last flush, so nothing published is left
            // behind in the buffer when the broker goes away.
            tokio::spawn(async move {
                loop {
                    flush.wake.notified().await;
                    // A flush caught by a reconnect may never be answered: give up on it, and
                    // let the next publish start another.
                    let _ = tokio::time::timeout(std::time::Duration::from_secs(1), client.flush()).await;
                    if flush.closing.load(std::sync::atomic::Ordering::Acquire) {
                        return;
                    }
                }
            });
        });
        self.flush.wake.notify_one();
        Ok(())
    }

    async fn subscribe(&self, topic: &str, handler: Handler, opts: SubscribeOptions) -> Result<Subscription, Error> {
        let client = self.client().await?;
        let mut sub = match &opts.queue {
            Some(q) => client.queue_subscribe(topic.to_string(), q.clone()).await,
            None => client.subscribe(topic.to_string()).await,
        }
        .map_err(err)?;
        // Once the server has the subscription, every later publish (from any connection) sees it.
        client.flush().await.map_err(err)?;
        let topic = topic.to_string();
        let handler = Arc::clone(&handler);
        let task = tokio::spawn(async move {
            while let Some(m) = sub.next().await {
                let header = from_headers(m.headers.as_ref());
                let event =
                    Event { system: "nats", topic: topic.clone(), message: Message { header, body: m.payload } };
                let _ = run_handler(&handler, event).await;
            }
        });
        Ok(Subscription::new(move || task.abort()))
    }

    fn name(&self) -> &'static str {
        "nats"
    }

    fn check(&self) -> Result<(), String> {
        self.conn.check()
    }
}
