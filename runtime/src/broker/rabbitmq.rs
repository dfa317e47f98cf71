//! The RabbitMQ broker, `--broker rabbitmq` (feature `rabbitmq`; AMQP 0.9.1 with `lapin`).
//!
//! - **Routing**: every message is published, persistent, to the durable topic exchange `micro`
//!   with its topic as routing key (at most 255 bytes; `*` and `#` are AMQP's wildcards).
//!   Publishing is mandatory and confirmed: it returns once the server has taken the message,
//!   and fails when no queue is bound to the topic (its subscribers bind them; none has yet).
//! - **Queue groups**: a durable quorum queue `micro.<queue>.<topic>` per (queue, topic), bound
//!   to the topic; what is published while every member is away waits there. A member that dies
//!   leaves its unacknowledged messages to the others at once (the server requeues them when its
//!   connection drops). A subscriber without a queue has an exclusive, server-named queue that
//!   lives with its connection: it gets what is published while it is connected.
//! - **Acknowledgement** follows [`super::delivery`]: a manual ack after the handler succeeds;
//!   after it fails or panics the message is held for the retry delay, then requeued; the try
//!   count is the quorum queue's `x-delivery-count` (or this process's own count). After the last
//!   try the message goes to the durable queue `micro.<queue>.<topic>.dlq` through the default
//!   exchange (for a subscriber without a queue, to whatever is bound to `<topic>.dlq`), and is
//!   acknowledged. At most 64 messages are in hand per subscription (`basic.qos`).
//! - **Reconnection**: each subscription keeps its own connection and makes it again, with its
//!   queue and binding, after the server goes away (waiting 100 ms, doubling up to 5 s); the
//!   publisher makes a new connection at the next publish.
//! - **Duplicates**: a subscription remembers the last messages it handled (by `Micro-Id`) and
//!   acknowledges a redelivery of one without running the handler; a subscriber that crashes
//!   between its handler's success and the acknowledgement gets the message again.
//!
//! Addresses are `host:port` (user `guest`, vhost `/`) or full `amqp://user:pass@host:port/vhost`
//! URIs; the first one is used.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use futures_util::StreamExt;
use lapin::message::Delivery as AmqpDelivery;
use lapin::options::{
    BasicAckOptions, BasicConsumeOptions, BasicNackOptions, BasicPublishOptions, BasicQosOptions, ConfirmSelectOptions,
    ExchangeDeclareOptions, QueueBindOptions, QueueDeclareOptions,
};
use lapin::types::{AMQPValue, FieldTable, ShortString};
use lapin::{BasicProperties, Channel, Confirmation, Connection, ConnectionProperties, ExchangeKind};

use super::delivery::{self, Delivery, Handled};
use super::{Broker, Event, Handler, Message, SubscribeOptions, Subscription};
use crate::Error;

const SYSTEM: &str = "rabbitmq";
/// The exchange every topic is routed through.
pub const EXCHANGE: &str = "micro";
/// Messages in hand per subscription.
const PREFETCH: u16 = 64;
/// The longest AMQP short string (routing keys, queue names).
const MAX_NAME: usize = 255;

fn err(detail: impl std::fmt::Display) -> Error {
    Error::unavailable(super::ID, format!("rabbitmq: {detail}"))
}

/// The RabbitMQ broker.
pub struct RabbitBroker {
    uri: String,
    delivery: Delivery,
    /// The publisher's confirmed channel, made at the first publish and again after a failure.
    publisher: tokio::sync::Mutex<Option<(Connection, Channel)>>,
    /// Subscriptions without a connection now (readiness).
    down: delivery::Outages,
}

impl RabbitBroker {
    /// A broker for the RabbitMQ server at the first of `addresses` (`127.0.0.1:5672` when none).
    pub fn new(addresses: &[String], delivery: Delivery) -> Self {
        let first = addresses.iter().map(|a| a.trim()).find(|a| !a.is_empty()).unwrap_or("127.0.0.1:5672");
        let uri = if first.contains("://") { first.to_string() } else { format!("amqp://guest:guest@{first}/%2f") };
        RabbitBroker { uri, delivery, publisher: tokio::sync::Mutex::new(None), down: Default::default() }
    }

    /// A confirmed channel to publish on, made anew when the last one broke.
    async fn channel(&self) -> Result<Channel, Error> {
        let mut slot = self.publisher.lock().await;
        if let Some((conn, ch)) = slot.as_ref() {
            if conn.status().connected() && ch.status().connected() {
                return Ok(ch.clone());
            }
        }
        let conn = connect(&self.uri).await?;
        let ch = conn.create_channel().await.map_err(err)?;
        ch.confirm_select(ConfirmSelectOptions::default()).await.map_err(err)?;
        declare_exchange(&ch).await?;
        *slot = Some((conn, ch.clone()));
        Ok(ch)
    }

    async fn publish_once(&self, topic: &str, message: &Message) -> Result<(), Error> {
        let ch = self.channel().await?;
        publish(&ch, EXCHANGE, topic, message).await
    }
}

async fn connect(uri: &str) -> Result<Connection, Error> {
    let props = ConnectionProperties::default().with_connection_name("micro".into());
    Connection::connect(uri, props).await.map_err(|e| err(format!("cannot connect: {e}")))
}

async fn declare_exchange(ch: &Channel) -> Result<(), Error> {
    let opts = ExchangeDeclareOptions { durable: true, ..Default::default() };
    ch.exchange_declare(EXCHANGE.into(), ExchangeKind::Topic, opts, FieldTable::default()).await.map_err(err)
}

/// Publishes `message` to `exchange` with `key`, persistent and mandatory, and waits for the
/// server's confirmation.
async fn publish(ch: &Channel, exchange: &str, key: &str, message: &Message) -> Result<(), Error> {
    let mut headers = FieldTable::default();
    for (k, v) in &message.header {
        // A bearer token is for an HTTP inbox; queue subscribers have no use for it.
        if k.eq_ignore_ascii_case(crate::metadata::AUTHORIZATION) {
            continue;
        }
        headers.insert(k.as_str().into(), AMQPValue::LongString(v.as_str().into()));
    }
    let mut props = BasicProperties::default().with_delivery_mode(2).with_headers(headers);
    if let Some(id) = message.get(super::ID_HEADER) {
        props = props.with_message_id(id.into());
    }
    if let Some(ct) = message.get(super::CONTENT_TYPE_HEADER) {
        props = props.with_content_type(ct.into());
    }
    let opts = BasicPublishOptions { mandatory: true, ..Default::default() };
    let confirm = ch.basic_publish(exchange.into(), key.into(), opts, &message.body, props).await.map_err(err)?;
    match confirm.await.map_err(err)? {
        Confirmation::Ack(None) | Confirmation::NotRequested => Ok(()),
        Confirmation::Ack(Some(_)) => Err(Error::not_found(
            super::ID,
            format!("rabbitmq: no queue is bound to topic {key} (its subscribers bind them; none has subscribed yet)"),
        )),
        Confirmation::Nack(_) => Err(err(format!("the server refused a message for {key}"))),
    }
}

/// Refuses what AMQP cannot carry.
fn check_key(topic: &str) -> Result<(), Error> {
    super::check_topic(topic)?;
    if topic.len() > MAX_NAME - 16 {
        return Err(Error::bad_request(super::ID, format!("rabbitmq: a topic is at most {} bytes", MAX_NAME - 16)));
    }
    Ok(())
}

/// The queue of group `queue` on `topic`: `micro.<queue>.<topic>`, hashed when too long.
fn queue_name(queue: &str, topic: &str) -> String {
    let name = format!("micro.{queue}.{topic}");
    if name.len() + delivery::DEAD_LETTER_SUFFIX.len() <= MAX_NAME {
        return name;
    }
    let h = name.bytes().fold(0xcbf29ce484222325u64, |h, b| (h ^ b as u64).wrapping_mul(0x100000001b3));
    let mut cut = 200;
    while !name.is_char_boundary(cut) {
        cut -= 1;
    }
    format!("{}.{h:016x}", &name[..cut])
}

#[async_trait]
impl Broker for RabbitBroker {
    async fn connect(&self) -> Result<(), Error> {
        self.channel().await.map(|_| ())
    }

    async fn disconnect(&self) -> Result<(), Error> {
        if let Some((conn, _)) = self.publisher.lock().await.take() {
            let _ = conn.close(200, "bye".into()).await;
        }
        Ok(())
    }

    async fn publish(&self, topic: &str, message: Message) -> Result<(), Error> {
        check_key(topic)?;
        match self.publish_once(topic, &message).await {
            Err(e) if e.code == 503 => {
                // The connection broke (a server restart): once more on a new one.
                *self.publisher.lock().await = None;
                self.publish_once(topic, &message).await
            }
            other => other,
        }
    }

    async fn subscribe(&self, topic: &str, handler: Handler, opts: SubscribeOptions) -> Result<Subscription, Error> {
        check_key(topic)?;
        let sub = Arc::new(Consume {
            uri: self.uri.clone(),
            topic: topic.to_string(),
            queue: opts.queue.as_deref().map(|q| queue_name(q, topic)),
            handler,
            delivery: self.delivery,
            handled: Mutex::new(Handled::new(delivery::HANDLED)),
            tries: Mutex::default(),
        });
        // The queue is bound before this returns, so what is published next is kept for it.
        let first = sub.open().await?;
        let down = self.down.clone();
        let task = tokio::spawn(sub.run(first, down));
        Ok(Subscription::new(move || task.abort()))
    }

    fn name(&self) -> &'static str {
        SYSTEM
    }

    fn check(&self) -> Result<(), String> {
        self.down.check("rabbitmq")
    }
}

/// One subscription: its queue, its handler, and what it remembers across deliveries.
struct Consume {
    uri: String,
    topic: String,
    /// The group's durable queue; `None`: an exclusive queue of its own.
    queue: Option<String>,
    handler: Handler,
    delivery: Delivery,
    handled: Mutex<Handled>,
    /// Tries of messages that failed here, by key fingerprint (bounded like `handled`).
    tries: Mutex<HashMap<u64, u32>>,
}

type Open = (Connection, Channel, lapin::Consumer);

impl Consume {
    /// Connects, declares the queue (and a group's dead-letter queue), binds it and consumes.
    async fn open(&self) -> Result<Open, Error> {
        let conn = connect(&self.uri).await?;
        let ch = conn.create_channel().await.map_err(err)?;
        ch.confirm_select(ConfirmSelectOptions::default()).await.map_err(err)?;
        declare_exchange(&ch).await?;
        ch.basic_qos(PREFETCH, BasicQosOptions::default()).await.map_err(err)?;
        let queue = match &self.queue {
            Some(name) => {
                let mut args = FieldTable::default();
                args.insert("x-queue-type".into(), AMQPValue::LongString("quorum".into()));
                let durable = QueueDeclareOptions { durable: true, ..Default::default() };
                ch.queue_declare(name.as_str().into(), durable, args.clone()).await.map_err(err)?;
                let dead = format!("{name}{}", delivery::DEAD_LETTER_SUFFIX);
                ch.queue_declare(dead.as_str().into(), durable, args).await.map_err(err)?;
                ShortString::from(name.as_str())
            }
            None => {
                let own = QueueDeclareOptions { exclusive: true, auto_delete: true, ..Default::default() };
                ch.queue_declare("".into(), own, FieldTable::default()).await.map_err(err)?.name().clone()
            }
        };
        let bind = QueueBindOptions::default();
        ch.queue_bind(queue.clone(), EXCHANGE.into(), self.topic.as_str().into(), bind, FieldTable::default())
            .await
            .map_err(err)?;
        let consumer = ch
            .basic_consume(queue, "".into(), BasicConsumeOptions::default(), FieldTable::default())
            .await
            .map_err(err)?;
        Ok((conn, ch, consumer))
    }

    async fn run(self: Arc<Self>, first: Open, down: delivery::Outages) {
        let mut open = Some(first);
        let mut pause = Duration::from_millis(100);
        // Held while the connection is lost: the broker is not ready meanwhile.
        let mut lost: Option<delivery::Outage> = None;
        loop {
            let (conn, ch, mut consumer) = match open.take() {
                Some(o) => o,
                None => match self.open().await {
                    Ok(o) => o,
                    Err(e) => {
                        tracing::debug!(topic = %self.topic, error = %e.detail, "rabbitmq: reconnecting");
                        tokio::time::sleep(pause).await;
                        pause = (pause * 2).min(Duration::from_secs(5));
                        continue;
                    }
                },
            };
            if lost.take().is_some() {
                tracing::info!(topic = %self.topic, "rabbitmq: subscription resumed");
            }
            pause = Duration::from_millis(100);
            while let Some(d) = consumer.next().await {
                let Ok(d) = d else { break };
                self.one(&ch, d).await;
            }
            drop((conn, ch));
            lost = Some(down.begin());
            tracing::warn!(topic = %self.topic, "rabbitmq: connection lost; subscribing again");
        }
    }

    /// Handles one delivery.
    async fn one(&self, ch: &Channel, d: AmqpDelivery) {
        let header = headers(&d);
        let key = header
            .get(super::ID_HEADER)
            .cloned()
            .or_else(|| d.properties.message_id().as_ref().map(|m| m.to_string()))
            .unwrap_or_else(|| format!("{}#{}", d.routing_key, d.delivery_tag));
        if self.handled.lock().unwrap_or_else(|e| e.into_inner()).contains(&key) {
            let _ = d.acker.ack(BasicAckOptions::default()).await;
            return;
        }
        let delivered = self.tries(&key, &d);
        let message = Message { header, body: d.data.clone().into() };
        let topic = d.routing_key.to_string();
        let event = Event { system: SYSTEM, topic: topic.clone(), message: message.clone() };
        match delivery::handle(&self.handler, event).await {
            Ok(()) => {
                let _ = d.acker.ack(BasicAckOptions::default()).await;
                self.done(&key);
            }
            Err(e) if self.delivery.exhausted(delivered) => {
                let dead = delivery::dead_letter(&topic, &message, delivered, &e.detail);
                let (exchange, to) = match &self.queue {
                    Some(q) => ("", format!("{q}{}", delivery::DEAD_LETTER_SUFFIX)),
                    None => (EXCHANGE, delivery::dead_letter_topic(&topic)),
                };
                match publish(ch, exchange, &to, &dead).await {
                    Ok(()) => {
                        let _ = d.acker.ack(BasicAckOptions::default()).await;
                        self.done(&key);
                    }
                    Err(e) => {
                        tracing::warn!(%topic, error = %e.detail, "rabbitmq: cannot dead-letter a message; it stays");
                        self.requeue(d, self.delivery.ack_wait);
                    }
                }
            }
            Err(_) => self.requeue(d, self.delivery.retry_delay(delivered)),
        }
    }

    /// This delivery's try number: the server's count for a quorum queue, else this process's.
    fn tries(&self, key: &str, d: &AmqpDelivery) -> u32 {
        let server = d.properties.headers().as_ref().and_then(|h| match h.inner().get("x-delivery-count") {
            Some(AMQPValue::LongLongInt(n)) => Some(*n as u32 + 1),
            Some(AMQPValue::LongInt(n)) => Some(*n as u32 + 1),
            _ => None,
        });
        let mut tries = self.tries.lock().unwrap_or_else(|e| e.into_inner());
        if tries.len() >= delivery::HANDLED {
            tries.clear();
        }
        let n = tries.entry(delivery::fingerprint(key)).or_insert(0);
        *n = (*n + 1).max(server.unwrap_or(0));
        *n
    }

    fn done(&self, key: &str) {
        self.tries.lock().unwrap_or_else(|e| e.into_inner()).remove(&delivery::fingerprint(key));
        self.handled.lock().unwrap_or_else(|e| e.into_inner()).insert(key);
    }

    /// Holds the delivery for `wait`, then gives it back to the queue.
    fn requeue(&self, d: AmqpDelivery, wait: Duration) {
        tokio::spawn(async move {
            tokio::time::sleep(wait).await;
            let _ = d.acker.nack(BasicNackOptions { requeue: true, multiple: false }).await;
        });
    }
}

/// A delivery's headers as a message's (string values; the server's `x-*` left out).
fn headers(d: &AmqpDelivery) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    if let Some(h) = d.properties.headers() {
        for (k, v) in h.inner() {
            if k.as_str().starts_with("x-") {
                continue;
            }
            let v = match v {
                AMQPValue::LongString(s) => String::from_utf8_lossy(s.as_bytes()).into_owned(),
                AMQPValue::ShortString(s) => s.to_string(),
                other => format!("{other:?}"),
            };
            out.insert(k.to_string(), v);
        }
    }
    if let Some(ct) = d.properties.content_type() {
        out.entry(super::CONTENT_TYPE_HEADER.to_string()).or_insert_with(|| ct.to_string());
    }
    out
}

#[cfg(test)]
mod tests {
    #[test]
    fn queue_names_fit_amqp() {
        assert_eq!(super::queue_name("workers", "orders.created"), "micro.workers.orders.created");
        let long = super::queue_name("w", &"t".repeat(300));
        assert!(long.len() + 4 <= 255 && long.starts_with("micro.w.ttt"), "{}", long.len());
        assert_ne!(long, super::queue_name("w", &"t".repeat(301)));
    }
}
