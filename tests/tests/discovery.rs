//! Two nodes of one service as real processes discovered over mDNS: round robin alternates,
//! kill -9 of one while calls run loses no later call, and the dead node leaves within its TTL.

use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use micro::client::{Client, ClientOptions};
use micro::registry::{MdnsRegistry, Registry};
use micro::selector::{RegistrySelector, Strategy};
use micro_tests::testing::{EchoRequest, TesterClient};
use micro_tests::{wait_for, Child};

fn node(service: &str, name: &str) -> Child {
    Child(
        Command::new(env!("CARGO_BIN_EXE_tester"))
            .env("MICRO_REGISTRY", "mdns")
            .env("MICRO_SERVER_NAME", service)
            .env("MICRO_REGISTER_TTL", "2")
            .env("MICRO_REGISTER_INTERVAL", "500ms")
            .env("TESTER_NODE", name)
            .stderr(Stdio::null())
            .spawn()
            .expect("tester starts"),
    )
}

#[tokio::test]
async fn round_robin_then_kill_one_node_under_load() {
    let service = format!("discovery-{}", std::process::id());
    let mut a = node(&service, "a");
    let _b = node(&service, "b");
    let registry = Arc::new(MdnsRegistry::new().unwrap());
    wait_for("two nodes", Duration::from_secs(10), async || {
        registry.get_service(&service).await.is_ok_and(|s| s.iter().map(|v| v.nodes.len()).sum::<usize>() == 2)
    })
    .await;

    let selector = Arc::new(RegistrySelector::new(registry.clone(), Strategy::RoundRobin));
    let client = Client::with_selector(selector, ClientOptions { retries: 1, ..Default::default() });
    let tester = TesterClient::new(service.clone(), client);
    let mut seen = vec![];
    for _ in 0..6 {
        seen.push(tester.echo(EchoRequest::default()).await.unwrap().node);
    }
    assert!(seen.windows(2).all(|w| w[0] != w[1]), "round robin alternates: {seen:?}");

    a.0.kill().unwrap();
    a.0.wait().unwrap();
    let killed_at = Instant::now();
    for i in 0..60 {
        let reply = tester.echo(EchoRequest::default()).await;
        assert_eq!(reply.unwrap_or_else(|e| panic!("call {i} after the kill failed: {e}")).node, "b");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    wait_for("the dead node to leave", Duration::from_secs(8), async || {
        registry.get_service(&service).await.is_ok_and(|s| s[0].nodes.len() == 1)
    })
    .await;
    assert!(killed_at.elapsed() < Duration::from_secs(5), "left after {:?}", killed_at.elapsed());
}
