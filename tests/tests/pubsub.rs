//! Pub/sub on the memory, HTTP, NATS and JetStream brokers ([`micro_tests::pubsub`]'s scenario:
//! broadcast reaches every subscriber, a queue group of two gets each message exactly once, JSON
//! and protobuf both decode into the typed argument), subscribers show up in the registry, and
//! NATS subscriptions survive a server restart. RabbitMQ and Kafka run the scenario in
//! `durable.rs`, beside their other proofs.

use std::sync::Arc;
use std::time::Duration;

use micro::broker::{MemoryBroker, SharedBroker};
use micro_tests::pubsub::{broadcast_and_queue, publisher, subscriber, Seen, TOPIC};
use micro_tests::testing::Line;
use micro_tests::{memory_registry, wait_for, Nats};

#[tokio::test]
async fn memory_broker() {
    let broker: SharedBroker = Arc::new(MemoryBroker::new());
    broadcast_and_queue(|| broker.clone(), memory_registry()).await;
}

#[tokio::test]
async fn http_broker_through_the_registry() {
    let registry = memory_registry();
    let r = registry.clone();
    broadcast_and_queue(move || Arc::new(micro::broker::HttpBroker::new(r.clone())), registry.clone()).await;
    // Every subscription was withdrawn when its service stopped.
    assert_eq!(registry.get_service(&format!("topic:{TOPIC}")).await.unwrap_err().code, 404);
}

#[tokio::test]
async fn nats_broker() {
    let nats = tokio::task::spawn_blocking(Nats::start).await.unwrap();
    let addr = vec![nats.address()];
    broadcast_and_queue(move || Arc::new(micro::broker::nats::NatsBroker::new(&addr)), memory_registry()).await;
    drop(nats);
}

#[tokio::test]
async fn jetstream_broker() {
    let nats = tokio::task::spawn_blocking(Nats::start_jetstream).await.unwrap();
    let addr = vec![nats.address()];
    let broker =
        move || -> SharedBroker { Arc::new(micro::broker::jetstream::JetStreamBroker::new(&addr, Default::default())) };
    broadcast_and_queue(broker, memory_registry()).await;
}

#[tokio::test]
async fn subscribers_are_endpoints_and_topics_are_services() {
    let registry = memory_registry();
    let seen: Seen = Arc::default();
    let broker: SharedBroker = Arc::new(micro::broker::HttpBroker::new(registry.clone()));
    let svc = subscriber("shown", registry.clone(), broker, None, &seen).await;
    let names: Vec<String> = registry.list_services().await.unwrap().into_iter().map(|s| s.name).collect();
    assert!(names.contains(&format!("topic:{TOPIC}")), "{names:?}");
    let record = &registry.get_service("pubsub-shown").await.unwrap()[0];
    let subs: Vec<_> = record.endpoints.iter().filter(|e| e.metadata.contains_key("subscriber")).collect();
    assert_eq!(subs.iter().map(|e| e.name.as_str()).collect::<Vec<_>>(), ["Func", "Recorder.Handle"]);
    for e in subs {
        assert_eq!(e.metadata.get("topic").map(String::as_str), Some(TOPIC));
        let req = e.request.as_ref().unwrap();
        assert_eq!(
            (req.name.as_str(), req.values[0].name.as_str(), req.values[0].r#type.as_str()),
            ("Line", "text", "string")
        );
    }
    svc.stop().await;
}

#[tokio::test]
async fn nats_subscriptions_resume_after_a_server_restart() {
    let mut nats = tokio::task::spawn_blocking(Nats::start).await.unwrap();
    let addr = vec![nats.address()];
    let seen: Seen = Arc::default();
    let broker: SharedBroker = Arc::new(micro::broker::nats::NatsBroker::new(&addr));
    let svc = subscriber("survivor", memory_registry(), broker, None, &seen).await;
    let publisher = publisher(memory_registry(), Arc::new(micro::broker::nats::NatsBroker::new(&addr)));
    publisher.publish(&Line { text: "before".into() }).await.unwrap();
    wait_for("before", Duration::from_secs(5), async || seen.lock().unwrap().len() == 2).await;

    nats = tokio::task::spawn_blocking(move || {
        nats.restart();
        nats
    })
    .await
    .unwrap();
    // Both sides reconnect on their own; keep publishing until the subscriber hears again.
    wait_for("delivery after the restart", Duration::from_secs(20), async || {
        let _ = publisher.publish(&Line { text: "after".into() }).await;
        seen.lock().unwrap().iter().any(|(_, t)| t == "after")
    })
    .await;
    svc.stop().await;
    drop(nats);
}
