//! The NATS JetStream broker, `--broker nats-js` (feature `nats`): messages are stored by the
//! server until every queue group that subscribed has handled them.
//!
//! - **Streams**: a topic's stream is the one that already holds its subject, or else
//!   `MICRO_<first segment>`, holding `<seg>` and `<seg>.>`, file storage, kept 7 days (so
//!   `orders.created` and `orders.shipped` share `MICRO_orders`). Subscribers create streams;
//!   a publish to a topic no stream holds fails, saying nobody subscribed (a publisher never
//!   makes the server keep state for topics its callers choose).
//! - **Publishing** returns once the server has stored the message (its `PubAck`); `Micro-Id`
//!   is the message's `Nats-Msg-Id`, so a publish retried within two minutes is stored once.
//! - **Queue groups** are durable pull consumers, one per (queue, topic); what is published
//!   while every member is away is delivered when one comes back. A member that dies with
//!   messages in hand leaves them to the others after [`Delivery::ack_wait`]. A subscriber
//!   without a queue has an ephemeral consumer, resumed after the last message it saw when the
//!   server restarts; it gets what is published while it is subscribed.
//! - **Acknowledgement** follows [`super::delivery`]: `Ack` after the handler succeeds, `Nak`
//!   with the retry delay after it fails or panics, and after the last try the message is
//!   published to `<topic>.dlq` (same stream) and acknowledged. Messages are handled one at a
//!   time per subscription, in stream order.
//! - **Duplicates**: a message whose acknowledgement was lost (the server restarted before it
//!   arrived) is redelivered; the subscription remembers the last messages it handled and
//!   acknowledges such a redelivery without running the handler again. A subscriber that
//!   crashes between its handler's success and the acknowledgement gets the message again.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

use async_nats::jetstream::{self, consumer, stream, AckKind};
use async_trait::async_trait;
use futures_util::StreamExt;

use super::delivery::{self, Delivery, Handled};
use super::nats::{from_headers, to_headers};
use super::{Broker, Event, Handler, Message, SubscribeOptions, Subscription};
use crate::transport::nats::Connection;
use crate::Error;

const SYSTEM: &str = "nats-js";
/// How long a stream keeps a message.
const MAX_AGE: Duration = Duration::from_secs(7 * 24 * 3600);
/// Streams looked up or made by this process, remembered; past this many, forgotten and looked up
/// again.
const MAX_STREAMS: usize = 1024;

fn err(detail: impl std::fmt::Display) -> Error {
    Error::unavailable(super::ID, format!("nats-js: {detail}"))
}

/// The JetStream broker.
pub struct JetStreamBroker {
    conn: Connection,
    delivery: Delivery,
    context: tokio::sync::OnceCell<jetstream::Context>,
    /// Topic → the stream that holds it.
    streams: Mutex<HashMap<String, String>>,
}

impl JetStreamBroker {
    /// A broker for the NATS servers at `addresses` (`127.0.0.1:4222` when empty), with JetStream
    /// enabled (`nats-server -js`).
    pub fn new(addresses: &[String], delivery: Delivery) -> Self {
        JetStreamBroker {
            conn: Connection::new(addresses),
            delivery,
            context: tokio::sync::OnceCell::new(),
            streams: Mutex::default(),
        }
    }

    async fn context(&self) -> Result<&jetstream::Context, Error> {
        let client = self.conn.get().await?;
        Ok(self.context.get_or_init(|| async { jetstream::new(client.clone()) }).await)
    }

    /// The stream holding `topic`: one that already does, or a new `MICRO_<first segment>`.
    async fn stream_for(&self, js: &jetstream::Context, topic: &str) -> Result<stream::Stream, Error> {
        let known = self.streams.lock().unwrap_or_else(|e| e.into_inner()).get(topic).cloned();
        let name = match known {
            Some(name) => name,
            None => {
                let name = match js.stream_by_subject(topic).await {
                    Ok(name) => name,
                    Err(_) => create_stream(js, topic).await?,
                };
                let mut streams = self.streams.lock().unwrap_or_else(|e| e.into_inner());
                if streams.len() >= MAX_STREAMS {
                    streams.clear();
                }
                streams.insert(topic.to_string(), name.clone());
                name
            }
        };
        js.get_stream(&name).await.map_err(|e| err(format!("stream {name}: {e}")))
    }
}

/// Makes the stream `MICRO_<first segment of topic>`, or finds it made meanwhile by another
/// process.
async fn create_stream(js: &jetstream::Context, topic: &str) -> Result<String, Error> {
    let seg = topic.split('.').next().unwrap_or(topic);
    if seg.is_empty() || seg.contains(['*', '>']) {
        return Err(Error::bad_request(super::ID, format!("nats-js: topic {topic:?} must start with a plain segment")));
    }
    let name = stream_name(seg);
    let config = stream::Config {
        name: name.clone(),
        subjects: vec![seg.to_string(), format!("{seg}.>")],
        storage: stream::StorageType::File,
        retention: stream::RetentionPolicy::Limits,
        max_age: MAX_AGE,
        duplicate_window: Duration::from_secs(120),
        ..Default::default()
    };
    match js.create_stream(config).await {
        Ok(_) => Ok(name),
        Err(e) => js
            .stream_by_subject(topic)
            .await
            .map_err(|_| err(format!("cannot create stream {name} (is JetStream on: nats-server -js?): {e}"))),
    }
}

/// A JetStream name (no `.`, `*`, `>`, whitespace or path characters) for `raw`; a name that
/// had to change carries a hash of the original, so two raw names never share one.
fn stream_name(raw: &str) -> String {
    format!("MICRO_{}", safe_name(raw))
}

fn safe_name(raw: &str) -> String {
    let clean: String =
        raw.chars().take(64).map(|c| if c.is_ascii_alphanumeric() || c == '-' || c == '_' { c } else { '_' }).collect();
    if clean == raw {
        clean
    } else {
        format!("{clean}_{:08x}", fnv(raw))
    }
}

fn fnv(s: &str) -> u32 {
    s.bytes().fold(0x811c9dc5u32, |h, b| (h ^ b as u32).wrapping_mul(0x01000193))
}

#[async_trait]
impl Broker for JetStreamBroker {
    async fn connect(&self) -> Result<(), Error> {
        self.context().await.map(|_| ())
    }

    async fn disconnect(&self) -> Result<(), Error> {
        self.conn.get().await?.flush().await.map_err(err)
    }

    async fn publish(&self, topic: &str, message: Message) -> Result<(), Error> {
        super::check_topic(topic)?;
        let js = self.context().await?;
        let mut headers = to_headers(&message)?;
        if let Some(id) = message.get(super::ID_HEADER) {
            headers.insert("Nats-Msg-Id", id);
        }
        let ack = js.publish_with_headers(topic.to_string(), headers, message.body).await.map_err(err)?;
        ack.await.map(|_| ()).map_err(|e| match e.kind() {
            jetstream::context::PublishErrorKind::StreamNotFound => Error::not_found(
                super::ID,
                format!("nats-js: no stream holds topic {topic} (its subscribers create it; none has subscribed yet)"),
            ),
            _ => err(e),
        })
    }

    async fn subscribe(&self, topic: &str, handler: Handler, opts: SubscribeOptions) -> Result<Subscription, Error> {
        super::check_topic(topic)?;
        let js = self.context().await?.clone();
        let stream = self.stream_for(&js, topic).await?;
        let config = consumer_config(topic, opts.queue.as_deref(), &self.delivery);
        // The consumer exists before this returns, so what is published next is kept for it.
        let first =
            make_consumer(&stream, config.clone()).await.map_err(|e| err(format!("consumer for {topic}: {e}")))?;
        let run = Consume { js, stream, config, topic: topic.to_string(), handler, delivery: self.delivery };
        let task = tokio::spawn(run.run(first));
        Ok(Subscription::new(move || task.abort()))
    }

    fn name(&self) -> &'static str {
        SYSTEM
    }

    fn check(&self) -> Result<(), String> {
        self.conn.check()
    }
}

/// The consumer of a subscription: durable and named after (queue, topic) for a queue group,
/// ephemeral otherwise.
fn consumer_config(topic: &str, queue: Option<&str>, d: &Delivery) -> consumer::pull::Config {
    let dead = topic.ends_with(delivery::DEAD_LETTER_SUFFIX);
    consumer::pull::Config {
        durable_name: queue.map(|q| safe_name(&format!("{q}_{topic}"))),
        name: queue.map(|q| safe_name(&format!("{q}_{topic}"))),
        filter_subject: topic.to_string(),
        ack_policy: consumer::AckPolicy::Explicit,
        ack_wait: d.ack_wait,
        // One delivery beyond the last try: a message whose last try died with its process is
        // dead-lettered when it comes back, not left in the stream.
        max_deliver: if d.max_deliveries == 0 { -1 } else { d.max_deliveries as i64 + 1 },
        // A new group starts at what is published from now on, like Kafka's `latest`; a
        // dead-letter topic from its first message (its letters predate any reader).
        deliver_policy: if dead { consumer::DeliverPolicy::All } else { consumer::DeliverPolicy::New },
        inactive_threshold: if queue.is_none() { Duration::from_secs(60) } else { Duration::ZERO },
        max_ack_pending: 1024,
        ..Default::default()
    }
}

/// A durable consumer as it is, or made; an ephemeral one made.
async fn make_consumer(
    stream: &stream::Stream,
    config: consumer::pull::Config,
) -> Result<consumer::Consumer<consumer::pull::Config>, Error> {
    match config.durable_name.clone() {
        Some(name) => stream.get_or_create_consumer(&name, config).await.map_err(err),
        None => stream.create_consumer(config).await.map_err(err),
    }
}

/// One subscription's loop: pulls messages, runs the handler, acknowledges; makes the consumer
/// again when the server lost it.
struct Consume {
    js: jetstream::Context,
    stream: stream::Stream,
    config: consumer::pull::Config,
    topic: String,
    handler: Handler,
    delivery: Delivery,
}

impl Consume {
    async fn run(self, first: consumer::Consumer<consumer::pull::Config>) {
        let mut handled = Handled::new(delivery::HANDLED);
        let mut last_seq = 0u64;
        let mut consumer = Some(first);
        let mut pause = Duration::from_millis(100);
        loop {
            let c = match consumer.take() {
                Some(c) => c,
                None => match self.remake(last_seq).await {
                    Ok(c) => c,
                    Err(e) => {
                        tracing::warn!(topic = %self.topic, error = %e, "nats-js: cannot resume the subscription");
                        tokio::time::sleep(pause).await;
                        pause = (pause * 2).min(Duration::from_secs(5));
                        continue;
                    }
                },
            };
            let Ok(mut messages) = c.stream().heartbeat(Duration::from_secs(5)).messages().await else {
                tokio::time::sleep(pause).await;
                continue;
            };
            pause = Duration::from_millis(100);
            while let Some(m) = messages.next().await {
                match m {
                    Ok(m) => {
                        if let Some(seq) = self.one(m, &mut handled).await {
                            last_seq = last_seq.max(seq);
                        }
                    }
                    Err(e) if e.kind() == consumer::pull::MessagesErrorKind::ConsumerDeleted => break,
                    Err(e) if e.kind() == consumer::pull::MessagesErrorKind::MissingHeartbeat => {
                        // The server is away or restarted; an ephemeral consumer may be gone.
                        if self.config.durable_name.is_none() {
                            break;
                        }
                    }
                    Err(_) => {}
                }
            }
        }
    }

    /// The consumer again: a durable one is found as it was; an ephemeral one starts after the
    /// last message seen.
    async fn remake(&self, last_seq: u64) -> Result<consumer::Consumer<consumer::pull::Config>, Error> {
        let mut config = self.config.clone();
        if config.durable_name.is_none() && last_seq > 0 {
            config.deliver_policy = consumer::DeliverPolicy::ByStartSequence { start_sequence: last_seq + 1 };
        }
        let stream = self.js.get_stream(self.stream.cached_info().config.name.clone()).await.map_err(err)?;
        make_consumer(&stream, config).await
    }

    /// Handles one message; its stream sequence.
    async fn one(&self, m: jetstream::Message, handled: &mut Handled) -> Option<u64> {
        let (seq, delivered) = match m.info() {
            Ok(i) => (i.stream_sequence, i.delivered.max(1) as u32),
            Err(_) => return None,
        };
        let message = Message { header: from_headers(m.headers.as_ref()), body: m.payload.clone() };
        // By `Micro-Id`, so that a message published twice (its PubAck lost) is handled once.
        let key = message.get(super::ID_HEADER).map_or_else(|| format!("#{seq}"), str::to_string);
        if handled.contains(&key) {
            let _ = m.ack().await;
            return Some(seq);
        }
        let topic = m.subject.to_string();
        let outcome = if self.delivery.max_deliveries > 0 && delivered > self.delivery.max_deliveries {
            Err(format!("its last try ended without an answer after {} deliveries", delivered - 1))
        } else {
            let event = Event { system: SYSTEM, topic: topic.clone(), message: message.clone() };
            delivery::handle(&self.handler, event).await.map_err(|e| e.detail)
        };
        match outcome {
            Ok(()) => {
                let _ = m.ack().await;
                handled.insert(&key);
            }
            Err(reason) if self.delivery.exhausted(delivered) => {
                let dead =
                    delivery::dead_letter(&topic, &message, delivered.min(self.delivery.max_deliveries), &reason);
                match self.dead_letter(&topic, dead).await {
                    Ok(()) => {
                        let _ = m.ack_with(AckKind::Term).await;
                        handled.insert(&key);
                    }
                    Err(e) => {
                        tracing::warn!(%topic, error = %e.detail, "nats-js: cannot dead-letter a message; it stays");
                        let _ = m.ack_with(AckKind::Nak(Some(self.delivery.ack_wait))).await;
                    }
                }
            }
            Err(_) => {
                let _ = m.ack_with(AckKind::Nak(Some(self.delivery.retry_delay(delivered)))).await;
            }
        }
        Some(seq)
    }

    async fn dead_letter(&self, topic: &str, dead: Message) -> Result<(), Error> {
        let subject = delivery::dead_letter_topic(topic);
        let headers = to_headers(&dead)?;
        let ack = self.js.publish_with_headers(subject, headers, dead.body).await.map_err(err)?;
        ack.await.map(|_| ()).map_err(err)
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn names_are_jetstream_names() {
        assert_eq!(super::stream_name("orders"), "MICRO_orders");
        let odd = super::stream_name("a b");
        assert!(odd.starts_with("MICRO_a_b_") && odd != super::stream_name("a_b"), "{odd}");
        let c = super::consumer_config("orders.created", Some("workers"), &Default::default());
        let name = c.durable_name.unwrap();
        assert!(name.starts_with("workers_orders_created_") && !name.contains('.'), "{name}");
    }
}
