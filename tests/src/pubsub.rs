//! The pub/sub scenario every broker passes: broadcast reaches every subscriber, a queue group of
//! two gets each message exactly once, JSON and protobuf both decode into the typed argument.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use micro::broker::SharedBroker;
use micro::registry::SharedRegistry;
use micro::server::subscriber::{typed, Subscriber};
use micro::{Metadata, Publisher, Request, Service};

use crate::testing::Line;
use crate::wait_for;

/// What the subscribers saw: (node/kind, text).
pub type Seen = Arc<Mutex<Vec<(String, String)>>>;

/// The topic of the scenario.
pub const TOPIC: &str = "topic.go.micro.srv.pubsub";

struct Recorder {
    node: String,
    seen: Seen,
}

impl micro::Handle<Line> for Recorder {
    async fn handle(&self, msg: Request<Line>) -> Result<(), micro::Error> {
        self.seen.lock().unwrap().push((format!("{}/struct", self.node), msg.text.clone()));
        Ok(())
    }
}

/// A service with a function subscriber and a struct subscriber (or, with a queue, one queued
/// subscriber) on [`TOPIC`].
pub async fn subscriber(
    node: &str,
    registry: SharedRegistry,
    broker: SharedBroker,
    queue: Option<&str>,
    seen: &Seen,
) -> Service {
    let opts = micro::options::Options { register_interval: Duration::ZERO, ..Default::default() };
    let svc = Service::builder()
        .name(format!("pubsub-{node}"))
        .options(opts)
        .registry(registry)
        .broker(broker)
        .build()
        .unwrap();
    let (n, s) = (node.to_string(), seen.clone());
    let record = move |req: Request<Line>| {
        let (n, s) = (n.clone(), s.clone());
        async move {
            s.lock().unwrap().push((format!("{n}/func"), req.text.clone()));
            Ok(())
        }
    };
    match queue {
        Some(q) => svc.server().subscribe(Subscriber::new(TOPIC, "Func", typed(record)).queue(q)),
        None => {
            micro::register_subscriber(svc.server(), TOPIC, record);
            micro::register_struct_subscriber(svc.server(), TOPIC, Recorder { node: node.into(), seen: seen.clone() });
        }
    }
    svc.start().await.unwrap();
    svc
}

/// A publisher of [`TOPIC`].
pub fn publisher(registry: SharedRegistry, broker: SharedBroker) -> Publisher {
    let client = micro::Client::new(registry, Default::default()).with_broker(broker);
    Publisher::new(TOPIC, client)
}

/// Two broadcast subscribers get every message; a queue group of two shares them, each once.
pub async fn broadcast_and_queue(brokers: impl Fn() -> SharedBroker, registry: SharedRegistry) {
    let seen: Seen = Arc::default();
    let a = subscriber("a", registry.clone(), brokers(), None, &seen).await;
    let b = subscriber("b", registry.clone(), brokers(), None, &seen).await;
    let publisher = publisher(registry.clone(), brokers());
    publisher.publish(&Line { text: "proto".into() }).await.unwrap();
    publisher.publish_json(br#"{"text":"json"}"#, &Metadata::new()).await.unwrap();
    wait_for("broadcast", Duration::from_secs(10), async || seen.lock().unwrap().len() >= 8).await;
    let mut got = seen.lock().unwrap().clone();
    got.sort();
    let mut want = vec![];
    for who in ["a/func", "a/struct", "b/func", "b/struct"] {
        for text in ["json", "proto"] {
            want.push((who.to_string(), text.to_string()));
        }
    }
    assert_eq!(got, want, "every subscriber gets every message, JSON and protobuf alike");
    a.stop().await;
    b.stop().await;

    let seen: Seen = Arc::default();
    let q1 = subscriber("q1", registry.clone(), brokers(), Some("workers"), &seen).await;
    let q2 = subscriber("q2", registry.clone(), brokers(), Some("workers"), &seen).await;
    // At least 20 messages, and more until both members have had one (the group picks a
    // member at random for each message).
    let mut sent = 0u32;
    let members = |seen: &Seen| seen.lock().unwrap().iter().map(|(who, _)| who.clone()).collect::<BTreeSet<_>>().len();
    while sent < 20 || members(&seen) < 2 && sent < 200 {
        publisher.publish(&Line { text: sent.to_string() }).await.unwrap();
        sent += 1;
        if sent >= 20 {
            let all = sent as usize;
            wait_for("queue deliveries", Duration::from_secs(10), async || seen.lock().unwrap().len() >= all).await;
        }
    }
    // A duplicate of one of the 20 would reach its member before a later message does: publish
    // markers until each member has seen one, then count.
    let mut marker = 0;
    wait_for("a marker at each member", Duration::from_secs(10), async || {
        marker += 1;
        let _ = publisher.publish(&Line { text: format!("marker-{marker}") }).await;
        let seen = seen.lock().unwrap();
        let members = seen.iter().filter(|(_, t)| t.starts_with("marker")).map(|(who, _)| who.clone());
        members.collect::<std::collections::BTreeSet<_>>().len() == 2
    })
    .await;
    let got: Vec<(String, String)> =
        seen.lock().unwrap().iter().filter(|(_, t)| !t.starts_with("marker")).cloned().collect();
    let mut texts: Vec<u32> = got.iter().map(|(_, t)| t.parse().unwrap()).collect();
    texts.sort();
    assert_eq!(texts, (0..sent).collect::<Vec<_>>(), "each message exactly once in the group");
    let per_node: BTreeMap<&str, usize> = got.iter().fold(BTreeMap::new(), |mut m, (who, _)| {
        *m.entry(who.as_str()).or_default() += 1;
        m
    });
    assert_eq!(per_node.len(), 2, "both members share the work: {per_node:?}");
    q1.stop().await;
    q2.stop().await;
}
