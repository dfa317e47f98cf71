//! The runtime end to end: real servers on loopback, real clients, every call kind, deadlines,
//! metadata, errors both ways, both codecs, retries, graceful shutdown, and bad input.

use std::sync::Arc;
use std::time::{Duration, Instant};

use micro::client::Method;
use micro::CallOptions;
use micro_tests::testing::*;
use micro_tests::{client, curl, memory_registry, start_tester};

#[tokio::test]
async fn unary_through_discovery_with_metadata_and_deadline() {
    let registry = memory_registry();
    let (svc, _) = start_tester(registry.clone(), "a").await;
    let tester = TesterClient::new("testing", client(registry, 1));
    let reply = tester
        .echo_with(
            EchoRequest { message: "hi".into(), big: 1 << 60, ..Default::default() },
            CallOptions::new().metadata("X-User", "ann").timeout(Duration::from_secs(3)),
        )
        .await
        .unwrap();
    assert_eq!(reply.message, "hi");
    assert_eq!(reply.big, 1 << 60);
    assert_eq!(reply.metadata.get("x-user").map(String::as_str), Some("ann"));
    assert!(reply.deadline_ms > 1000 && reply.deadline_ms <= 3000, "deadline {}", reply.deadline_ms);
    svc.stop().await;
}

#[tokio::test]
async fn server_client_and_bidi_streams() {
    let registry = memory_registry();
    let (svc, _) = start_tester(registry.clone(), "a").await;
    let tester = TesterClient::new("testing", client(registry, 1));

    let mut count = tester.count(CountRequest { to: 5, fail_at: 0 }).await.unwrap();
    let mut seen = vec![];
    while let Some(n) = count.message().await.unwrap() {
        seen.push(n.value);
    }
    assert_eq!(seen, vec![1, 2, 3, 4, 5]);

    let mut failing = tester.count(CountRequest { to: 5, fail_at: 3 }).await.unwrap();
    assert_eq!(failing.message().await.unwrap().unwrap().value, 1);
    assert_eq!(failing.message().await.unwrap().unwrap().value, 2);
    let err = failing.message().await.unwrap_err();
    assert_eq!((err.code, err.detail.as_str()), (409, "failed at 3"));

    let (tx, reply) = tester.sum().await.unwrap();
    for v in [1, 2, 3, 4] {
        tx.send(Number { value: v }).await.unwrap();
    }
    tx.close();
    assert_eq!(reply.reply().await.unwrap().value, 10);

    let (tx, mut rx) = tester.shout().await.unwrap();
    for word in ["ping", "pong"] {
        tx.send(Line { text: word.into() }).await.unwrap();
        assert_eq!(rx.message().await.unwrap().unwrap().text, word.to_uppercase());
    }
    drop(tx);
    assert!(rx.message().await.unwrap().is_none());
    svc.stop().await;
}

#[tokio::test]
async fn deadline_is_enforced_on_both_sides() {
    let registry = memory_registry();
    let (svc, _) = start_tester(registry.clone(), "a").await;
    let tester = TesterClient::new("testing", client(registry, 0));
    let start = Instant::now();
    let err = tester
        .echo_with(
            EchoRequest { sleep_ms: 3000, ..Default::default() },
            CallOptions::new().timeout(Duration::from_millis(200)),
        )
        .await
        .unwrap_err();
    assert_eq!(err.code, 408, "{err}");
    assert!(start.elapsed() < Duration::from_secs(2), "took {:?}", start.elapsed());
    svc.stop().await;
}

#[tokio::test]
async fn the_server_enforces_the_callers_deadline_by_itself() {
    let registry = memory_registry();
    let (svc, addr) = start_tester(registry.clone(), "a").await;
    // A raw HTTP/2 client that sends grpc-timeout but never gives up itself: the answer, and
    // its DEADLINE_EXCEEDED, come from the server.
    use micro::__private::prost::Message as _;
    let msg = EchoRequest { message: "slow".into(), sleep_ms: 3000, ..Default::default() }.encode_to_vec();
    let mut framed = vec![0u8];
    framed.extend((msg.len() as u32).to_be_bytes());
    framed.extend(msg);
    let start = Instant::now();
    let headers = [("content-type", "application/grpc"), ("grpc-timeout", "200m")];
    let (status, trailers) = micro_tests::h2_request(&addr.to_string(), "/testing.Tester/Echo", &headers, framed).await;
    let took = start.elapsed();
    assert_eq!(status, 200);
    assert_eq!(trailers.get("grpc-status").and_then(|v| v.to_str().ok()), Some("4"), "DEADLINE_EXCEEDED: {trailers:?}");
    assert!(took < Duration::from_secs(2), "the server gave up at its deadline, not the handler's end: {took:?}");
    svc.stop().await;
}

#[tokio::test]
async fn errors_keep_their_json_and_json_codec_works() {
    let registry = memory_registry();
    let (svc, _) = start_tester(registry.clone(), "a").await;
    let c = client(registry, 1);
    let tester = TesterClient::new("testing", c.clone());
    let err =
        tester.echo(EchoRequest { message: "boom".into(), fail_code: 404, ..Default::default() }).await.unwrap_err();
    assert_eq!(err, micro::Error::not_found("testing", "asked to fail: boom"));

    let reply = c
        .call_json("testing", "Tester.Echo", br#"{"message":"json","big":"9007199254740993"}"#, CallOptions::new())
        .await
        .unwrap();
    let v: serde_json::Value = serde_json::from_slice(&reply).unwrap();
    assert_eq!(v["message"], "json");
    assert_eq!(v["big"], "9007199254740993", "int64 travels as a string: {v}");
    assert_eq!(v["deadlineMs"].as_str().map(|s| s.parse::<i64>().unwrap() > 0), Some(true), "{v}");

    let bad = c.call_json("testing", "Tester.Echo", b"{not json", CallOptions::new()).await.unwrap_err();
    assert_eq!(bad.code, 400, "{bad}");
    let unknown = c.call_json("testing", "Tester.Nope", b"{}", CallOptions::new()).await.unwrap_err();
    assert_eq!(unknown.code, 404, "{unknown}");
    assert!(unknown.detail.contains("Tester.Nope"), "{unknown}");
    svc.stop().await;
}

#[tokio::test]
async fn retries_move_to_another_node() {
    let registry = memory_registry();
    let (a, _) = start_tester(registry.clone(), "a").await;
    let (b, _) = start_tester(registry.clone(), "b").await;
    // Node b dies without deregistering: its record stays, its port refuses connections.
    b.server().stop().await;
    assert_eq!(registry.get_service("testing").await.unwrap()[0].nodes.len(), 2);
    let tester = TesterClient::new("testing", client(registry.clone(), 1));
    for _ in 0..20 {
        let reply = tester.echo(EchoRequest::default()).await.expect("retried onto the live node");
        assert_eq!(reply.node, "a");
    }
    // Without retries, a call that picks the dead node fails (with 2 nodes, 20 calls miss it with
    // a chance of 2^-20).
    let no_retry = TesterClient::new("testing", client(registry.clone(), 0));
    let mut failed = None;
    for _ in 0..20 {
        if let Err(e) = no_retry.echo(EchoRequest::default()).await {
            failed = Some(e);
            break;
        }
    }
    let failed = failed.expect("retries=0 leaves a call to the dead node failed");
    assert_eq!(failed.code, 503, "{failed}");
    a.stop().await;
}

/// The Tester, saying when a call has reached it.
struct Entered {
    entered: Arc<tokio::sync::Notify>,
}

impl TesterHandler for Entered {
    async fn echo(&self, request: micro::Request<EchoRequest>) -> Result<EchoReply, micro::Error> {
        self.entered.notify_one();
        micro_tests::Tester::default().echo(request).await
    }
    async fn peek(&self, request: micro::Request<EchoRequest>) -> Result<EchoReply, micro::Error> {
        micro_tests::Tester::default().peek(request).await
    }
    async fn count(&self, r: micro::Request<CountRequest>, s: micro::ServerStream<Number>) -> Result<(), micro::Error> {
        micro_tests::Tester::default().count(r, s).await
    }
    async fn sum(&self, r: micro::Request<micro::Streaming<Number>>) -> Result<Number, micro::Error> {
        micro_tests::Tester::default().sum(r).await
    }
    async fn shout(
        &self,
        r: micro::Request<micro::Streaming<Line>>,
        s: micro::ServerStream<Line>,
    ) -> Result<(), micro::Error> {
        micro_tests::Tester::default().shout(r, s).await
    }
}

#[tokio::test]
async fn graceful_shutdown_deregisters_first_and_finishes_in_flight_calls() {
    let registry = memory_registry();
    let entered = Arc::new(tokio::sync::Notify::new());
    let svc = micro::Service::builder()
        .name("testing")
        .options(micro::options::Options { register_interval: Duration::ZERO, ..Default::default() })
        .registry(registry.clone())
        .build()
        .unwrap();
    register_tester_handler(svc.server(), Entered { entered: entered.clone() });
    svc.start().await.unwrap();
    let tester = TesterClient::new("testing", client(registry.clone(), 0));
    let reached = entered.notified();
    let slow = tokio::spawn({
        let tester = tester.clone();
        async move { tester.echo(EchoRequest { message: "slow".into(), sleep_ms: 700, ..Default::default() }).await }
    });
    tokio::time::timeout(Duration::from_secs(10), reached).await.expect("the slow call reaches the handler");
    let mut watch = registry.watch(Some("testing")).await.unwrap();
    let stopping = tokio::spawn(async move { svc.stop().await });
    let event = tokio::time::timeout(Duration::from_secs(5), watch.next()).await.unwrap().unwrap().unwrap();
    assert_eq!(event.action, micro::registry::Action::Delete);
    assert!(!stopping.is_finished(), "deregistered before the listener closed");
    assert_eq!(slow.await.unwrap().unwrap().message, "slow");
    stopping.await.unwrap();
    assert_eq!(registry.get_service("testing").await.unwrap_err().code, 404);
}

#[tokio::test]
async fn curl_reaches_the_same_handlers() {
    let registry = memory_registry();
    let svc = micro::Service::builder().name("helloworld").registry(registry).build().unwrap();
    helloworld::helloworld::register_greeter_handler(svc.server(), helloworld::Greeter);
    let addr = svc.start().await.unwrap();
    let url = format!("http://{addr}/helloworld.Greeter/SayHello");
    let out = tokio::task::spawn_blocking(move || {
        let ok = curl(&["-H", "Content-Type: application/json", "-d", r#"{"name":"John"}"#, &url]);
        let bad = curl(&["-H", "Content-Type: application/json", "-d", "{\"name\":", &url]);
        let missing = curl(&["-H", "Content-Type: application/json", "-d", "{}", &url.replace("SayHello", "Nope")]);
        let ct = curl(&["-H", "Content-Type: text/plain", "-d", "hi", &url]);
        let by_name = curl(&[
            "--http2-prior-knowledge",
            "-H",
            "Content-Type: application/json",
            "-d",
            r#"{"name":"h2"}"#,
            &url.replace("helloworld.Greeter/SayHello", "Greeter.SayHello"),
        ]);
        (ok, bad, missing, ct, by_name)
    })
    .await
    .unwrap();
    assert_eq!(out.0, (200, r#"{"message":"Hello John"}"#.to_string()));
    assert_eq!(out.1 .0, 400);
    let bad: micro::Error = serde_json::from_str(&out.1 .1).unwrap();
    assert_eq!((bad.code, bad.id.as_str(), bad.status.as_str()), (400, "helloworld", "Bad Request"));
    assert_eq!(out.2 .0, 404);
    assert!(out.2 .1.contains("unknown endpoint helloworld.Greeter/Nope"), "{}", out.2 .1);
    assert_eq!(out.3 .0, 415);
    assert_eq!(out.4, (200, r#"{"message":"Hello h2"}"#.to_string()));
    svc.stop().await;
}

async fn raw_grpc(addr: std::net::SocketAddr, path: &str, body: Vec<u8>) -> (u16, Option<String>, Option<String>) {
    use http_body_util::BodyExt;
    let stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    let (mut send, conn) = hyper::client::conn::http2::handshake(
        hyper_util::rt::TokioExecutor::new(),
        hyper_util::rt::TokioIo::new(stream),
    )
    .await
    .unwrap();
    tokio::spawn(conn);
    let req = http::Request::post(format!("http://{addr}{path}"))
        .header("content-type", "application/grpc")
        .header("te", "trailers")
        .body(http_body_util::Full::new(bytes::Bytes::from(body)))
        .unwrap();
    let resp = send.send_request(req).await.unwrap();
    let status = resp.status().as_u16();
    let head = resp.headers().get("grpc-status").map(|v| v.to_str().unwrap().to_string());
    let collected = resp.into_body().collect().await.unwrap();
    let trailer = collected.trailers().and_then(|t| t.get("grpc-status")).map(|v| v.to_str().unwrap().to_string());
    (status, head, trailer)
}

#[tokio::test]
async fn bad_input_never_stops_the_server() {
    let registry = memory_registry();
    let mut opts = micro::server::ServerOptions::default();
    opts.max_message_size = 1024;
    let svc =
        micro::Service::builder().name("testing").registry(registry.clone()).server_options(opts).build().unwrap();
    register_tester_handler(svc.server(), micro_tests::Tester::default());
    let addr = svc.start().await.unwrap();
    let path = "/testing.Tester/Echo";
    // Truncated frame, a frame longer than its body, invalid protobuf, oversized, compressed.
    assert_eq!(raw_grpc(addr, path, vec![0, 0, 0]).await.1.as_deref(), Some("3"));
    assert_eq!(raw_grpc(addr, path, vec![0, 0, 0, 0, 9, 1]).await.1.as_deref(), Some("3"));
    assert_eq!(raw_grpc(addr, path, vec![0, 0, 0, 0, 2, 0xff, 0xff]).await.1.as_deref(), Some("3"));
    let mut big = vec![0, 0, 0, 8, 0];
    big.extend(vec![0u8; 2048]);
    assert_eq!(raw_grpc(addr, path, big).await.1.as_deref(), Some("8"), "RESOURCE_EXHAUSTED");
    // Compressed, but the request named no compression: INTERNAL, as the gRPC spec says.
    assert_eq!(raw_grpc(addr, path, vec![1, 0, 0, 0, 0]).await.1.as_deref(), Some("13"));
    assert_eq!(raw_grpc(addr, "/testing.Tester/Nope", vec![0, 0, 0, 0, 0]).await.1.as_deref(), Some("5"));
    // A valid call still works, with its status in the trailers.
    assert_eq!(raw_grpc(addr, path, vec![0, 0, 0, 0, 0]).await, (200, None, Some("0".into())));

    // Oversized over plain HTTP: 413 with error JSON.
    let url = format!("http://{addr}{path}");
    let big_json = format!(r#"{{"message":"{}"}}"#, "x".repeat(4096));
    let (code, body) = tokio::task::spawn_blocking(move || {
        curl(&["-H", "Content-Type: application/json", "--data-binary", &big_json, &url])
    })
    .await
    .unwrap();
    assert_eq!(code, 413, "{body}");
    assert_eq!(serde_json::from_str::<micro::Error>(&body).unwrap().code, 413);

    // A client that goes away in the middle of a stream.
    let tester = TesterClient::new("testing", client(registry.clone(), 0));
    let (tx, mut rx) = tester.shout().await.unwrap();
    tx.send(Line { text: "a".into() }).await.unwrap();
    assert_eq!(rx.message().await.unwrap().unwrap().text, "A");
    drop((tx, rx));
    let mut count = tester.count(CountRequest { to: 100_000, fail_at: 0 }).await.unwrap();
    count.message().await.unwrap();
    drop(count);

    let reply = tester.echo(EchoRequest { message: "still here".into(), ..Default::default() }).await.unwrap();
    assert_eq!(reply.message, "still here");
    svc.stop().await;
}

#[tokio::test]
async fn builtin_health_stats_and_registry_record() {
    let registry = memory_registry();
    let (svc, addr) = start_tester(registry.clone(), "a").await;
    let c = client(registry.clone(), 0);
    let opts = || CallOptions::new().address(addr.to_string());
    let health = c.call_json("testing", "Debug.Health", b"{}", opts()).await.unwrap();
    assert_eq!(&health[..], br#"{"status":"ok"}"#);
    let stats: serde_json::Value =
        serde_json::from_slice(&c.call_json("testing", "Debug.Stats", b"{}", opts()).await.unwrap()).unwrap();
    assert!(stats["memory"].as_u64().unwrap() > 0 && stats["threads"].as_u64().unwrap() > 0, "{stats}");

    const CHECK: Method = Method { endpoint: "Health.Check", path: "/grpc.health.v1.Health/Check" };
    let status: micro::server::builtin::HealthCheckResponse = c
        .call(
            "testing",
            &CHECK,
            &micro::server::builtin::HealthCheckRequest { service: "testing.Tester".into() },
            opts(),
        )
        .await
        .unwrap();
    assert_eq!(status.status, 1);

    let record = &registry.get_service("testing").await.unwrap()[0];
    let node = &record.nodes[0];
    assert!(node.id.starts_with("testing-"), "{}", node.id);
    assert_eq!(node.address, addr.to_string());
    for key in ["transport", "broker", "server", "registry", "protocol"] {
        assert!(node.metadata.contains_key(key), "node metadata lacks {key}");
    }
    let names: Vec<&str> = record.endpoints.iter().map(|e| e.name.as_str()).collect();
    assert_eq!(names, ["Tester.Count", "Tester.Echo", "Tester.Peek", "Tester.Shout", "Tester.Sum"]);
    let echo = &record.endpoints[1];
    let req = echo.request.as_ref().unwrap();
    assert_eq!(req.name, "EchoRequest");
    assert_eq!(
        req.values.iter().map(|v| (v.name.as_str(), v.r#type.as_str())).collect::<Vec<_>>(),
        [
            ("message", "string"),
            ("sleep_ms", "uint32"),
            ("fail_code", "uint32"),
            ("big", "int64"),
            ("grpc_code", "uint32")
        ]
    );
    let resp = echo.response.as_ref().unwrap();
    assert_eq!(resp.values[1].r#type, "map[string]string");
    assert_eq!(record.endpoints[0].metadata.get("stream").map(String::as_str), Some("true"));
    svc.stop().await;
}

/// Refuses calls without `x-token: secret` (Debug.Health stays open: it is internal).
struct NeedsToken;

struct Guarded(std::sync::Arc<dyn micro::server::UnaryHandler>);

impl micro::server::UnaryHandler for Guarded {
    fn call(
        &self,
        req: micro::server::RawRequest,
    ) -> futures_util::future::BoxFuture<'static, Result<bytes::Bytes, micro::Error>> {
        if req.metadata.get("x-token") != Some("secret") {
            return Box::pin(async { Err(micro::Error::unauthorized("auth", "missing token")) });
        }
        self.0.call(req)
    }
}

impl micro::server::HandlerWrapper for NeedsToken {
    fn wrap(&self, endpoint: &micro::server::Endpoint, inner: micro::server::Handler) -> micro::server::Handler {
        match inner {
            micro::server::Handler::Unary(h) if !endpoint.internal => {
                micro::server::Handler::Unary(std::sync::Arc::new(Guarded(h)))
            }
            other => other,
        }
    }
}

/// Adds the token to every call.
struct AddToken(std::sync::Arc<dyn micro::client::Caller>);

impl micro::client::Caller for AddToken {
    fn call(
        &self,
        mut call: micro::client::RawCall,
    ) -> futures_util::future::BoxFuture<'_, Result<bytes::Bytes, micro::Error>> {
        call.opts.metadata.insert("x-token", "secret");
        self.0.call(call)
    }
}

struct TokenWrapper;

impl micro::client::CallWrapper for TokenWrapper {
    fn wrap(&self, inner: std::sync::Arc<dyn micro::client::Caller>) -> std::sync::Arc<dyn micro::client::Caller> {
        std::sync::Arc::new(AddToken(inner))
    }
}

#[tokio::test]
async fn handler_and_call_wrappers_are_layers() {
    let registry = memory_registry();
    let mut opts = micro::options::Options::default();
    opts.register_interval = Duration::ZERO;
    let svc = micro::Service::builder().name("testing").options(opts).registry(registry.clone()).build().unwrap();
    register_tester_handler(svc.server(), micro_tests::Tester::default());
    svc.server().wrap(NeedsToken);
    svc.server().wrap(micro::wrapper::TracingWrapper);
    let addr = svc.start().await.unwrap();

    let plain = client(registry.clone(), 0);
    let err = TesterClient::new("testing", plain.clone()).echo(EchoRequest::default()).await.unwrap_err();
    assert_eq!((err.code, err.detail.as_str()), (401, "missing token"));
    let health = plain.call_json("testing", "Debug.Health", b"{}", CallOptions::new().address(addr.to_string())).await;
    assert!(health.is_ok(), "internal endpoints are not wrapped");

    let wrapped = client(registry, 0).wrap(TokenWrapper).wrap(micro::wrapper::TracingCallWrapper);
    let reply = TesterClient::new("testing", wrapped)
        .echo(EchoRequest { message: "in".into(), ..Default::default() })
        .await
        .unwrap();
    assert_eq!(reply.message, "in");
    assert_eq!(reply.metadata.get("x-token").map(String::as_str), Some("secret"));
    svc.stop().await;
}
