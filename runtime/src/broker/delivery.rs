//! What the durable brokers (`nats-js`, `rabbitmq`, `kafka`) share: how many times and how soon
//! a message whose handler failed is delivered again, the dead-letter topic that takes it after
//! the last try, a handler run that turns a panic into a failure, and the memory of messages
//! already handled that keeps a redelivery from running a handler twice.
//!
//! Their common contract: a message is acknowledged only after its handler returned `Ok`; a
//! handler that fails or panics gets it again after [`Delivery::retry_delay`]; after
//! [`Delivery::max_deliveries`] tries it is published to [`dead_letter_topic`] with the reason
//! and acknowledged. Queue groups are durable (what is published while every member is away
//! waits for them); a subscriber without a queue gets what is published while it is subscribed.

#![cfg_attr(not(any(feature = "nats", feature = "rabbitmq", feature = "kafka")), allow(dead_code))]

use std::collections::{HashSet, VecDeque};
use std::panic::AssertUnwindSafe;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use futures_util::FutureExt;

use super::{run_handler, Event, Handler, Message};
use crate::Error;

/// The suffix of a topic's dead-letter topic.
pub const DEAD_LETTER_SUFFIX: &str = ".dlq";
/// Header of a dead letter: why its last try failed.
pub const DEAD_REASON_HEADER: &str = "Micro-Dead-Reason";
/// Header of a dead letter: how many times it was delivered.
pub const DELIVERIES_HEADER: &str = "Micro-Deliveries";
/// Header choosing the partition a message goes to (Kafka orders messages per key).
pub const KEY_HEADER: &str = "Micro-Key";

/// The topic that takes the messages of `topic` that no try could handle.
pub fn dead_letter_topic(topic: &str) -> String {
    format!("{topic}{DEAD_LETTER_SUFFIX}")
}

/// How the durable brokers redeliver.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Delivery {
    /// Tries before a message goes to its dead-letter topic (0: tried for ever).
    pub max_deliveries: u32,
    /// How long a delivery may stay unacknowledged before the server gives it to another
    /// subscriber (a handler that runs longer is told nothing, and may run twice).
    pub ack_wait: Duration,
    /// The wait before the second try; it doubles with each further try, up to `ack_wait`.
    pub retry_delay: Duration,
}

impl Default for Delivery {
    fn default() -> Self {
        Delivery { max_deliveries: 5, ack_wait: Duration::from_secs(30), retry_delay: Duration::from_secs(1) }
    }
}

impl Delivery {
    /// The wait before the try after the `delivered`-th (1 for the first delivery).
    pub fn retry_delay(&self, delivered: u32) -> Duration {
        let doublings = delivered.saturating_sub(1).min(20);
        self.retry_delay.saturating_mul(1 << doublings).min(self.ack_wait.max(self.retry_delay))
    }

    /// Whether the `delivered`-th try was the last one.
    pub fn exhausted(&self, delivered: u32) -> bool {
        self.max_deliveries > 0 && delivered >= self.max_deliveries
    }
}

/// The dead letter of `message`, which `delivered` tries of `topic` could not handle.
pub fn dead_letter(topic: &str, message: &Message, delivered: u32, reason: &str) -> Message {
    let mut dead = message.clone();
    dead.header.insert(super::TOPIC_HEADER.to_string(), dead_letter_topic(topic));
    dead.header.insert(DEAD_REASON_HEADER.to_string(), reason.chars().take(1024).collect());
    dead.header.insert(DELIVERIES_HEADER.to_string(), delivered.to_string());
    dead
}

/// Runs `handler` for `event`; a panic is a failure like any other (the message is tried again),
/// and the subscription goes on.
pub(crate) async fn handle(handler: &Handler, event: Event) -> Result<(), Error> {
    let (topic, id) = (event.topic.clone(), event.message.get(super::ID_HEADER).unwrap_or_default().to_string());
    match AssertUnwindSafe(run_handler(handler, event)).catch_unwind().await {
        Ok(res) => res,
        Err(panic) => {
            let what = panic
                .downcast_ref::<&str>()
                .map(|s| s.to_string())
                .or_else(|| panic.downcast_ref::<String>().cloned())
                .unwrap_or_else(|| "a panic".into());
            tracing::warn!(%topic, message_id = %id, panic = %what, "subscriber panicked");
            Err(Error::internal_server_error(super::ID, format!("the subscriber panicked: {what}")))
        }
    }
}

/// A message key (a peer-chosen `Micro-Id`, of any length) as 64 bits, hashed with this
/// process's own random key: what a subscription remembers costs 8 bytes a message, however
/// long the ids, and no peer can aim a collision.
pub(crate) fn fingerprint(key: &str) -> u64 {
    static KEYS: std::sync::OnceLock<std::hash::RandomState> = std::sync::OnceLock::new();
    std::hash::BuildHasher::hash_one(KEYS.get_or_init(std::hash::RandomState::new), key)
}

/// The keys of the last messages a subscription handled, so that a redelivery of one (its
/// acknowledgement lost to a reconnect) is acknowledged again without running the handler.
/// Bounded: the oldest key is forgotten first.
pub(crate) struct Handled {
    order: VecDeque<u64>,
    keys: HashSet<u64>,
    cap: usize,
}

impl Handled {
    /// A memory of the last `cap` messages.
    pub(crate) fn new(cap: usize) -> Self {
        Handled { order: VecDeque::with_capacity(cap.min(1024)), keys: HashSet::new(), cap: cap.max(1) }
    }

    /// Whether the message `key` was handled.
    pub(crate) fn contains(&self, key: &str) -> bool {
        self.keys.contains(&fingerprint(key))
    }

    /// Remembers that `key` was handled.
    pub(crate) fn insert(&mut self, key: &str) {
        let key = fingerprint(key);
        if !self.keys.insert(key) {
            return;
        }
        self.order.push_back(key);
        if self.order.len() > self.cap {
            if let Some(old) = self.order.pop_front() {
                self.keys.remove(&old);
            }
        }
    }
}

/// Subscriptions of a broker that lost their server, for its readiness check: an [`Outage`] is
/// counted while it lives.
#[derive(Clone, Default)]
pub(crate) struct Outages(Arc<AtomicUsize>);

impl Outages {
    /// A lost connection, counted until dropped (also when its subscription ends meanwhile).
    pub(crate) fn begin(&self) -> Outage {
        self.0.fetch_add(1, Ordering::Relaxed);
        Outage(self.0.clone())
    }

    /// `Ok` when no subscription is without its server; else how many are, in a sentence.
    pub(crate) fn check(&self, server: &str) -> Result<(), String> {
        match self.0.load(Ordering::Relaxed) {
            0 => Ok(()),
            n => Err(format!("{n} subscription(s) reconnecting to {server}")),
        }
    }
}

/// One subscription without its server.
pub(crate) struct Outage(Arc<AtomicUsize>);

impl Drop for Outage {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

/// How many handled messages each durable subscription remembers.
pub(crate) const HANDLED: usize = 8192;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn delays_double_up_to_the_ack_wait() {
        let d = Delivery { max_deliveries: 4, ack_wait: Duration::from_secs(5), retry_delay: Duration::from_secs(1) };
        let delays: Vec<u64> = (1..=5).map(|n| d.retry_delay(n).as_secs()).collect();
        assert_eq!(delays, [1, 2, 4, 5, 5]);
        assert!(!d.exhausted(3) && d.exhausted(4));
        assert!(!Delivery { max_deliveries: 0, ..d }.exhausted(1000));
    }

    #[test]
    fn handled_forgets_the_oldest() {
        let mut h = Handled::new(2);
        for k in ["a", "b", "a", "c"] {
            h.insert(k);
        }
        assert!(!h.contains("a") && h.contains("b") && h.contains("c"));
    }

    #[test]
    fn handled_keys_cost_the_same_however_long() {
        let mut h = Handled::new(2);
        let huge = "x".repeat(1 << 20);
        h.insert(&huge);
        assert!(h.contains(&huge) && !h.contains(&huge[1..]));
        assert_eq!(std::mem::size_of_val(h.order.front().unwrap()), 8);
    }

    #[test]
    fn dead_letters_say_why() {
        let m = Message { header: [("Micro-Id".to_string(), "1".to_string())].into(), body: "x".into() };
        let dead = dead_letter("orders", &m, 3, "boom");
        assert_eq!(dead.get(super::super::TOPIC_HEADER), Some("orders.dlq"));
        assert_eq!((dead.get(DEAD_REASON_HEADER), dead.get(DELIVERIES_HEADER)), (Some("boom"), Some("3")));
        assert_eq!(dead.body, m.body);
    }
}
