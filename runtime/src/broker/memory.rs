//! The in-memory broker: one process, immediate delivery.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use async_trait::async_trait;

use super::{run_handler, Broker, Event, Handler, Message, SubscribeOptions, Subscription};
use crate::Error;

struct Sub {
    id: u64,
    queue: Option<String>,
    handler: Handler,
}

#[derive(Default)]
struct Inner {
    topics: Mutex<HashMap<String, Vec<Sub>>>,
    next_id: AtomicU64,
    turn: AtomicUsize,
}

/// A broker inside this process.
#[derive(Default, Clone)]
pub struct MemoryBroker {
    inner: Arc<Inner>,
}

impl MemoryBroker {
    /// An empty broker.
    pub fn new() -> Self {
        Self::default()
    }
}

#[async_trait]
impl Broker for MemoryBroker {
    async fn connect(&self) -> Result<(), Error> {
        Ok(())
    }

    async fn disconnect(&self) -> Result<(), Error> {
        self.inner.topics.lock().unwrap_or_else(|e| e.into_inner()).clear();
        Ok(())
    }

    async fn publish(&self, topic: &str, message: Message) -> Result<(), Error> {
        let targets: Vec<Handler> = {
            let topics = self.inner.topics.lock().unwrap_or_else(|e| e.into_inner());
            let Some(subs) = topics.get(topic) else { return Ok(()) };
            let mut out: Vec<Handler> = subs.iter().filter(|s| s.queue.is_none()).map(|s| s.handler.clone()).collect();
            let mut queues: HashMap<&str, Vec<&Sub>> = HashMap::new();
            for s in subs {
                if let Some(q) = &s.queue {
                    queues.entry(q).or_default().push(s);
                }
            }
            let turn = self.inner.turn.fetch_add(1, Ordering::Relaxed);
            out.extend(queues.values().map(|members| members[turn % members.len()].handler.clone()));
            out
        };
        for h in targets {
            let _ =
                run_handler(&h, Event { system: "memory", topic: topic.to_string(), message: message.clone() }).await;
        }
        Ok(())
    }

    async fn subscribe(&self, topic: &str, handler: Handler, opts: SubscribeOptions) -> Result<Subscription, Error> {
        let id = self.inner.next_id.fetch_add(1, Ordering::Relaxed);
        self.inner.topics.lock().unwrap_or_else(|e| e.into_inner()).entry(topic.to_string()).or_default().push(Sub {
            id,
            queue: opts.queue,
            handler,
        });
        let inner = Arc::downgrade(&self.inner);
        let topic = topic.to_string();
        Ok(Subscription::new(move || {
            if let Some(inner) = inner.upgrade() {
                let mut topics = inner.topics.lock().unwrap_or_else(|e| e.into_inner());
                if let Some(subs) = topics.get_mut(&topic) {
                    subs.retain(|s| s.id != id);
                }
            }
        }))
    }

    fn name(&self) -> &'static str {
        "memory"
    }
}
