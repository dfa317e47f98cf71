//! The mDNS registry on loopback: two daemons find each other, a 50-endpoint record survives,
//! a clean stop disappears at once and a node that stops renewing expires after its TTL.
//! (The suite runs in a private network namespace; mDNS is scoped to loopback in any case.)

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use micro::registry::{Action, Endpoint, MdnsRegistry, Node, RegisterOptions, Registry, Service, Value};

fn record(name: &str, id: &str, endpoints: usize) -> Service {
    Service {
        name: name.into(),
        version: "1.0.0".into(),
        metadata: BTreeMap::from([("owner".into(), "tests".into())]),
        endpoints: (0..endpoints)
            .map(|i| Endpoint {
                name: format!("Svc.Method{i}"),
                request: Some(Value {
                    name: "Request".into(),
                    r#type: "Request".into(),
                    values: vec![Value { name: format!("field{i}"), r#type: "string".into(), values: vec![] }],
                }),
                response: None,
                metadata: BTreeMap::new(),
            })
            .collect(),
        nodes: vec![Node {
            id: id.into(),
            address: "127.0.0.1:4321".into(),
            metadata: BTreeMap::from([("registry".into(), "mdns".into())]),
        }],
    }
}

fn unique(prefix: &str) -> String {
    format!("{prefix}-{}", std::process::id())
}

#[tokio::test]
async fn two_daemons_discover_each_other_with_a_large_record() {
    // Dotted, as every Go Micro name is: the daemon escapes the dots in its own records.
    let name = unique("go.micro.srv.mdns-big");
    let svc = record(&name, &format!("{name}-node"), 50);
    // A browser that is already running (a gateway, a dashboard) sees a new node at once.
    let browser = MdnsRegistry::new().unwrap();
    browser.list_services().await.unwrap(); // up and listening, as a long-running process is
    let mut watch = browser.watch(Some(&name)).await.unwrap();
    let publisher = MdnsRegistry::new().unwrap();
    let start = Instant::now();
    publisher.register(&svc, RegisterOptions { ttl: Duration::from_secs(30) }).await.unwrap();
    let created =
        tokio::time::timeout(Duration::from_secs(1), watch.next()).await.expect("seen within 1s").unwrap().unwrap();
    assert_eq!(created.action, Action::Create);
    assert!(start.elapsed() < Duration::from_secs(1), "visible after {:?}", start.elapsed());
    let found = browser.get_service(&name).await.unwrap();
    assert_eq!(found.len(), 1);
    assert_eq!(found[0], svc, "the 50-endpoint record round-trips intact");

    // A process that starts later (the CLI) finds it too.
    let late = MdnsRegistry::new().unwrap();
    assert_eq!(late.get_service(&name).await.unwrap()[0], svc);
    let listed = late.list_services().await.unwrap();
    assert!(listed.iter().any(|s| s.name == name));
    // The publisher hears its own node once, not once per spelling of its name: the answers the
    // late process got went to every listener, the publisher's daemon too, and a watch of the
    // publisher saw the node created exactly once.
    let mut own = publisher.watch(Some(&name)).await.unwrap();
    publisher.register(&svc, RegisterOptions { ttl: Duration::from_secs(30) }).await.unwrap();
    let again = MdnsRegistry::new().unwrap();
    assert_eq!(again.get_service(&name).await.unwrap()[0].nodes.len(), 1, "another process hears one node");
    assert_eq!(publisher.get_service(&name).await.unwrap()[0].nodes.len(), 1);
    let mut creates = 0;
    while let Ok(Some(Ok(ev))) = tokio::time::timeout(Duration::from_millis(1), own.next()).await {
        creates += usize::from(ev.action == Action::Create);
    }
    assert_eq!(creates, 0, "re-registering the same node and hearing it back created nothing new");

    let mut watch = browser.watch(Some(&name)).await.unwrap();
    publisher.deregister(&svc).await.unwrap();
    let event =
        tokio::time::timeout(Duration::from_secs(3), watch.next()).await.expect("removal seen").unwrap().unwrap();
    assert_eq!(event.action, Action::Delete);
    // Every other process hears the goodbye too: a clean stop disappears at once.
    micro_tests::wait_for("the goodbye", Duration::from_millis(500), async || late.get_service(&name).await.is_err())
        .await;
    assert_eq!(browser.get_service(&name).await.unwrap_err().code, 404);
}

#[tokio::test]
async fn a_node_that_stops_renewing_expires_after_its_ttl() {
    let publisher = MdnsRegistry::new().unwrap();
    let name = unique("mdns-ttl");
    let svc = record(&name, &format!("{name}-node"), 1);
    publisher.register(&svc, RegisterOptions { ttl: Duration::from_secs(2) }).await.unwrap();
    let browser = MdnsRegistry::new().unwrap();
    assert_eq!(browser.get_service(&name).await.unwrap()[0].nodes.len(), 1);
    // The publisher neither renews nor says goodbye (as if killed); the browser drops it after the TTL.
    let start = Instant::now();
    micro_tests::wait_for("expiry", Duration::from_secs(6), async || browser.get_service(&name).await.is_err()).await;
    assert!(start.elapsed() >= Duration::from_millis(1500), "expired too early: {:?}", start.elapsed());
    drop(publisher);
}

#[tokio::test]
async fn renewed_registrations_outlive_the_ttl() {
    let publisher = MdnsRegistry::new().unwrap();
    let name = unique("mdns-renew");
    let svc = record(&name, &format!("{name}-node"), 1);
    let opts = RegisterOptions { ttl: Duration::from_secs(2) };
    publisher.register(&svc, opts).await.unwrap();
    let browser = MdnsRegistry::new().unwrap();
    assert!(browser.get_service(&name).await.is_ok());
    let until = Instant::now() + Duration::from_secs(4);
    while Instant::now() < until {
        tokio::time::sleep(Duration::from_millis(500)).await;
        publisher.register(&svc, opts).await.unwrap();
        assert!(browser.get_service(&name).await.is_ok(), "a renewed node must not expire");
    }
}
