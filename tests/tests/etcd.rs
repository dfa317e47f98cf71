//! The etcd registry against a real etcd: register, list, get, watch, TTL expiry after kill -9,
//! re-registration after an etcd restart, and calls that keep working while etcd is down.

use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use micro::registry::etcd::EtcdRegistry;
use micro::registry::{Action, Node, RegisterOptions, Registry, Service};
use micro_tests::testing::{EchoRequest, TesterClient};
use micro_tests::{wait_for, workspace_bin, Child, Etcd};

fn record(name: &str, id: &str) -> Service {
    Service {
        name: name.into(),
        version: "1.2.3".into(),
        nodes: vec![Node { id: id.into(), address: "127.0.0.1:9".into(), ..Default::default() }],
        ..Default::default()
    }
}

#[tokio::test]
async fn register_list_get_watch_deregister() {
    let etcd = tokio::task::spawn_blocking(Etcd::start).await.unwrap();
    let registry = EtcdRegistry::new(&[format!("http://{}", etcd.address())]);
    let mut watch = registry.watch(Some("greeter")).await.unwrap();

    let a = record("greeter", "greeter-a");
    let b = record("greeter", "greeter-b");
    registry.register(&a, RegisterOptions { ttl: Duration::from_secs(30) }).await.unwrap();
    registry.register(&b, RegisterOptions { ttl: Duration::from_secs(30) }).await.unwrap();
    registry.register(&record("other", "other-1"), RegisterOptions::default()).await.unwrap();

    let got = registry.get_service("greeter").await.unwrap();
    assert_eq!(got.len(), 1);
    let mut ids: Vec<&str> = got[0].nodes.iter().map(|n| n.id.as_str()).collect();
    ids.sort();
    assert_eq!(ids, ["greeter-a", "greeter-b"]);
    let names: Vec<String> = registry.list_services().await.unwrap().into_iter().map(|s| s.name).collect();
    assert_eq!(names, ["greeter", "other"]);

    let first = watch.next().await.unwrap().unwrap();
    assert_eq!((first.action, first.service.nodes[0].id.as_str()), (Action::Create, "greeter-a"));
    assert_eq!(watch.next().await.unwrap().unwrap().action, Action::Create);
    // Renewal with an unchanged record is a keepalive, not a write: no event.
    registry.register(&a, RegisterOptions { ttl: Duration::from_secs(30) }).await.unwrap();
    registry.deregister(&a).await.unwrap();
    let gone = tokio::time::timeout(Duration::from_secs(5), watch.next()).await.unwrap().unwrap().unwrap();
    assert_eq!((gone.action, gone.service.nodes[0].id.as_str()), (Action::Delete, "greeter-a"));
    assert_eq!(registry.get_service("greeter").await.unwrap()[0].nodes.len(), 1);
    assert_eq!(registry.get_service("nobody").await.unwrap_err().code, 404);
}

fn server(etcd: &Etcd, name: &str) -> Child {
    Child(
        Command::new(workspace_bin("server"))
            .env("MICRO_REGISTRY", "etcd")
            .env("MICRO_REGISTRY_ADDRESS", etcd.address())
            .env("MICRO_SERVER_NAME", name)
            .env("MICRO_REGISTER_TTL", "2")
            .env("MICRO_REGISTER_INTERVAL", "500ms")
            .stderr(Stdio::null())
            .spawn()
            .expect("server starts"),
    )
}

#[tokio::test]
async fn killed_node_expires_and_nodes_come_back_after_an_etcd_restart() {
    let mut etcd = tokio::task::spawn_blocking(Etcd::start).await.unwrap();
    let registry = EtcdRegistry::new(&[etcd.address()]);
    let mut killed = server(&etcd, "victim");
    let _survivor = server(&etcd, "survivor");
    wait_for("both registered", Duration::from_secs(10), async || {
        registry.get_service("victim").await.is_ok() && registry.get_service("survivor").await.is_ok()
    })
    .await;

    killed.0.kill().unwrap();
    let start = Instant::now();
    wait_for("the killed node to expire", Duration::from_secs(10), async || {
        registry.get_service("victim").await.is_err_and(|e| e.code == 404)
    })
    .await;
    assert!(start.elapsed() < Duration::from_secs(5), "expired after {:?}", start.elapsed());

    // etcd comes back with nothing: the survivor registers again on its own.
    etcd = tokio::task::spawn_blocking(move || {
        etcd.restart(true);
        etcd
    })
    .await
    .unwrap();
    let registry = EtcdRegistry::new(&[etcd.address()]);
    wait_for("re-registration", Duration::from_secs(10), async || registry.get_service("survivor").await.is_ok()).await;
}

#[tokio::test]
async fn calls_continue_from_the_cache_while_etcd_is_down() {
    let mut etcd = tokio::task::spawn_blocking(Etcd::start).await.unwrap();
    let registry: micro::registry::SharedRegistry = Arc::new(EtcdRegistry::new(&[etcd.address()]));
    let (svc, _) = micro_tests::start_tester(registry.clone(), "a").await;
    let tester = TesterClient::new("testing", micro_tests::client(registry.clone(), 1));
    assert_eq!(tester.echo(EchoRequest { message: "up".into(), ..Default::default() }).await.unwrap().message, "up");

    etcd = tokio::task::spawn_blocking(move || {
        etcd.kill();
        etcd
    })
    .await
    .unwrap();
    assert!(registry.list_services().await.is_err(), "etcd is down");
    let until = Instant::now() + Duration::from_secs(3);
    while Instant::now() < until {
        let reply = tester.echo(EchoRequest { message: "down".into(), ..Default::default() }).await;
        assert_eq!(reply.expect("served from the cache").message, "down");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    drop(etcd);
    svc.server().stop().await;
}
