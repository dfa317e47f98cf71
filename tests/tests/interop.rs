//! Interop with a real gRPC implementation (Python grpcio): its client calls our server, our client
//! calls its server, every call kind, metadata and errors both ways.

use std::process::Command;
use std::time::Duration;

use micro::CallOptions;
use micro_tests::testing::*;
use micro_tests::{client, memory_registry, python, repo_root, start_tester};

fn script() -> std::path::PathBuf {
    repo_root().join("tests/python/interop.py")
}

#[tokio::test]
async fn python_client_calls_our_server() {
    let (svc, addr) = start_tester(memory_registry(), "rust").await;
    let out = tokio::task::spawn_blocking(move || {
        Command::new(python()).arg(script()).arg("client").arg(addr.to_string()).output().expect("python runs")
    })
    .await
    .unwrap();
    assert!(out.status.success(), "python client failed: {}", String::from_utf8_lossy(&out.stderr));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["echo"]["message"], "from python");
    assert_eq!(v["echo"]["big"], 1i64 << 60);
    assert_eq!(v["echo"]["peer"], "python");
    assert_eq!(v["count"], serde_json::json!([1, 2, 3, 4]));
    assert_eq!(v["sum"], 18);
    assert_eq!(v["shout"], serde_json::json!(["A", "BC"]));
    assert_eq!(v["error"]["code"], "NOT_FOUND");
    assert_eq!(v["error"]["details"], "asked to fail: x");
    svc.stop().await;
}

#[tokio::test]
async fn our_client_calls_a_python_server() {
    let server = tokio::task::spawn_blocking(micro_tests::PythonServer::start).await.unwrap();
    let opts = || CallOptions::new().address(server.addr.clone()).timeout(Duration::from_secs(5));
    let tester = TesterClient::new("python", client(memory_registry(), 0));

    let reply = tester
        .echo_with(
            EchoRequest { message: "from rust".into(), big: -5, ..Default::default() },
            opts().metadata("x-peer", "rust"),
        )
        .await
        .unwrap();
    assert_eq!((reply.message.as_str(), reply.node.as_str(), reply.big), ("from rust", "python", -5));
    assert_eq!(reply.metadata.get("x-peer").map(String::as_str), Some("rust"));

    let mut count = tester.count_with(CountRequest { to: 3, fail_at: 0 }, opts()).await.unwrap();
    let mut seen = vec![];
    while let Some(n) = count.message().await.unwrap() {
        seen.push(n.value);
    }
    assert_eq!(seen, [1, 2, 3]);

    let (tx, reply) = tester.sum_with(opts()).await.unwrap();
    for v in [10, 20] {
        tx.send(Number { value: v }).await.unwrap();
    }
    tx.close();
    assert_eq!(reply.reply().await.unwrap().value, 30);

    let (tx, mut rx) = tester.shout_with(opts()).await.unwrap();
    tx.send(Line { text: "hey".into() }).await.unwrap();
    assert_eq!(rx.message().await.unwrap().unwrap().text, "HEY");
    drop(tx);
    assert!(rx.message().await.unwrap().is_none());

    let err = tester
        .echo_with(EchoRequest { message: "x".into(), fail_code: 1, ..Default::default() }, opts())
        .await
        .unwrap_err();
    assert_eq!((err.code, err.detail.as_str()), (404, "python says no: x"));

    let json = client(memory_registry(), 0)
        .call_json("python", "Tester.Echo", br#"{"message":"json"}"#, opts())
        .await
        .unwrap_err();
    assert_eq!(json.code, 501, "grpcio does not speak application/grpc+json or micro endpoint paths: {json}");
}
