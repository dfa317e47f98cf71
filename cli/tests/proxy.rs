//! `micro proxy` in front of two real nodes (mDNS on loopback), used by a client whose own
//! registry is empty: every call kind passes, the nodes share the load, and after one node is
//! killed no later call fails.

use std::collections::BTreeSet;
mod common;

use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use micro::client::{Client, ClientOptions};
use micro::registry::MemoryRegistry;
use micro::CallOptions;
use micro_tests::testing::*;
use micro_tests::{workspace_bin, Child};

fn node(service: &str, name: &str) -> Child {
    Child(
        Command::new(workspace_bin("tester"))
            .env("MICRO_REGISTRY", "mdns")
            .env("MICRO_SERVER_NAME", service)
            .env("MICRO_REGISTER_TTL", "2")
            .env("MICRO_REGISTER_INTERVAL", "500ms")
            .env("TESTER_NODE", name)
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    )
}

fn proxy() -> (Child, String) {
    common::listening(&["proxy", "--proxy_address", "127.0.0.1:0"], "proxy")
}

#[tokio::test]
async fn a_client_without_a_registry_calls_through_the_proxy() {
    let service = format!("proxied{}", std::process::id());
    let mut a = node(&service, "a");
    let _b = node(&service, "b");
    let (_proxy, addr) = tokio::task::spawn_blocking(proxy).await.unwrap();

    // This client's registry is empty: it can only reach services through the proxy.
    let client = Client::new(
        Arc::new(MemoryRegistry::new()),
        ClientOptions { proxy: Some(addr), retries: 1, ..Default::default() },
    );
    let tester = TesterClient::new(service.clone(), client.clone());
    let mut seen = BTreeSet::new();
    let deadline = Instant::now() + Duration::from_secs(15);
    while seen.len() < 2 {
        assert!(Instant::now() < deadline, "both nodes should answer through the proxy, saw {seen:?}");
        if let Ok(r) = tester.echo_with(EchoRequest::default(), CallOptions::new().metadata("x-via", "proxy")).await {
            assert_eq!(r.metadata.get("x-via").map(String::as_str), Some("proxy"), "metadata is kept");
            seen.insert(r.node);
        } else {
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    let json = client
        .call_json(&service, "Tester.Echo", br#"{"message":"json via proxy"}"#, CallOptions::new())
        .await
        .unwrap();
    assert!(String::from_utf8_lossy(&json).contains("json via proxy"));
    let mut count = tester.count(CountRequest { to: 3, fail_at: 0 }).await.unwrap();
    let mut n = 0;
    while count.message().await.unwrap().is_some() {
        n += 1;
    }
    assert_eq!(n, 3);
    let (tx, mut rx) = tester.shout().await.unwrap();
    tx.send(Line { text: "hi".into() }).await.unwrap();
    assert_eq!(rx.message().await.unwrap().unwrap().text, "HI");
    drop(tx);
    let err = tester.echo(EchoRequest { fail_code: 409, ..Default::default() }).await.unwrap_err();
    assert_eq!(err.code, 409, "errors pass through: {err}");

    // Publishing goes through the proxy too (this client has no broker of its own).
    let seen: Arc<std::sync::Mutex<Vec<String>>> = Arc::default();
    let mut o = micro::options::Options::default();
    o.register_interval = Duration::ZERO;
    let listener = micro::Service::builder()
        .name(format!("{service}.listener"))
        .options(o)
        .registry(Arc::new(micro::registry::MdnsRegistry::new().unwrap()))
        .build()
        .unwrap();
    let s = seen.clone();
    micro::register_subscriber(listener.server(), &format!("{service}.events"), move |req: micro::Request<Line>| {
        let s = s.clone();
        async move {
            s.lock().unwrap().push(req.text.clone());
            Ok(())
        }
    });
    listener.start().await.unwrap();
    let publisher = micro::Publisher::new(format!("{service}.events"), client.clone());
    let deadline = Instant::now() + Duration::from_secs(10);
    while seen.lock().unwrap().is_empty() {
        assert!(Instant::now() < deadline, "the message never arrived");
        let _ = publisher.publish(&Line { text: "via proxy".into() }).await;
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert_eq!(seen.lock().unwrap()[0], "via proxy");
    listener.stop().await;

    a.0.kill().unwrap();
    a.0.wait().unwrap();
    for i in 0..40 {
        let r = tester.echo(EchoRequest::default()).await;
        assert_eq!(r.unwrap_or_else(|e| panic!("call {i} after the kill failed: {e}")).node, "b");
    }
}

#[tokio::test]
async fn a_front_door_for_one_service_serves_plain_grpc_clients() {
    let service = format!("door{}", std::process::id());
    let _node = node(&service, "behind");
    let (_proxy, addr) = tokio::task::spawn_blocking({
        let service = service.clone();
        move || common::listening(&["proxy", "--proxy_address", "127.0.0.1:0", "--service", &service], "proxy")
    })
    .await
    .unwrap();
    // A client that knows nothing of micro: no registry, no proxy header, just the address.
    let plain = Client::new(Arc::new(MemoryRegistry::new()), ClientOptions { proxy: None, ..Default::default() });
    let tester = TesterClient::new("anything", plain);
    let deadline = Instant::now() + Duration::from_secs(15);
    let reply = loop {
        match tester
            .echo_with(
                EchoRequest { message: "door".into(), ..Default::default() },
                CallOptions::new().address(addr.clone()),
            )
            .await
        {
            Ok(r) => break r,
            Err(e) => {
                assert!(Instant::now() < deadline, "the front door never answered: {e}");
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    };
    assert_eq!((reply.message.as_str(), reply.node.as_str()), ("door", "behind"));
}
