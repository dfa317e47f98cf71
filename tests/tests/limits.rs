//! A service's limits, each with its answer, and the service serving on afterwards: concurrent
//! streams per HTTP/2 connection, header size (HTTP/1 and HTTP/2), the HTTP/1 header read timeout
//! (a slow client cannot hold a service). Message size and deadlines are covered in `runtime.rs`
//! (`bad_input_never_stops_the_server`, `the_server_enforces_the_callers_deadline_by_itself`); the
//! tools' listeners (the gateway's slowloris, detection and idle timeouts, the connection cap) in
//! `attacks.rs` (`item06_no_connection_is_held_past_its_deadlines`).

use std::io::{Read, Write};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use futures_util::future::BoxFuture;
use micro::server::{Endpoint, Handler, HandlerWrapper, RawRequest, ServerOptions, UnaryHandler};
use micro::Service;
use micro_tests::testing::*;
use micro_tests::{curl, memory_registry, Tester};

/// Counts the unary calls in flight and remembers the most seen at once.
#[derive(Clone, Default)]
struct Gauge {
    now: Arc<AtomicUsize>,
    most: Arc<AtomicUsize>,
}

struct Gauged {
    gauge: Gauge,
    inner: Arc<dyn UnaryHandler>,
}

impl UnaryHandler for Gauged {
    fn call(&self, req: RawRequest) -> BoxFuture<'static, Result<Bytes, micro::Error>> {
        let gauge = self.gauge.clone();
        let fut = self.inner.call(req);
        Box::pin(async move {
            let n = gauge.now.fetch_add(1, Ordering::SeqCst) + 1;
            gauge.most.fetch_max(n, Ordering::SeqCst);
            let res = fut.await;
            gauge.now.fetch_sub(1, Ordering::SeqCst);
            res
        })
    }
}

impl HandlerWrapper for Gauge {
    fn wrap(&self, _: &Endpoint, inner: Handler) -> Handler {
        match inner {
            Handler::Unary(inner) => Handler::Unary(Arc::new(Gauged { gauge: self.clone(), inner })),
            other => other,
        }
    }
}

async fn server(opts: ServerOptions) -> (Service, std::net::SocketAddr) {
    let svc = Service::builder().name("testing").registry(memory_registry()).server_options(opts).build().unwrap();
    register_tester_handler(svc.server(), Tester::default());
    let addr = svc.start().await.unwrap();
    (svc, addr)
}

fn echo_frame(sleep_ms: u32) -> Bytes {
    use micro::__private::prost::Message as _;
    let msg = EchoRequest { message: "m".into(), sleep_ms, ..Default::default() }.encode_to_vec();
    let mut framed = vec![0u8];
    framed.extend((msg.len() as u32).to_be_bytes());
    framed.extend(msg);
    framed.into()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_streams_per_connection_are_capped() {
    use http_body_util::BodyExt;
    let mut opts = ServerOptions::default();
    opts.serve.max_concurrent_streams = 4;
    let gauge = Gauge::default();
    let svc = Service::builder().name("testing").registry(memory_registry()).server_options(opts).build().unwrap();
    register_tester_handler(svc.server(), Tester::default());
    svc.server().wrap(gauge.clone());
    let addr = svc.start().await.unwrap();

    let stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    let (send, conn) = hyper::client::conn::http2::handshake(
        hyper_util::rt::TokioExecutor::new(),
        hyper_util::rt::TokioIo::new(stream),
    )
    .await
    .unwrap();
    tokio::spawn(conn);
    let call = |send: &hyper::client::conn::http2::SendRequest<http_body_util::Full<Bytes>>| {
        let mut send = send.clone();
        async move {
            let req = http::Request::post(format!("http://{addr}/testing.Tester/Echo"))
                .header("content-type", "application/grpc")
                .header("te", "trailers")
                .body(http_body_util::Full::new(echo_frame(150)))
                .unwrap();
            send.send_request(req).await
        }
    };
    // Streams opened before the client has read the server's SETTINGS may be refused
    // (REFUSED_STREAM: not processed, safe to retry); after them, the client waits its turn.
    let early = futures_util::future::join_all((0..12).map(|_| call(&send))).await;
    let refused = early.iter().filter(|r| r.is_err()).count();
    assert!(early.iter().filter(|r| r.is_ok()).count() >= 4, "{early:?}");
    for e in early.iter().filter_map(|r| r.as_ref().err()) {
        assert!(format!("{e:?}").contains("REFUSED_STREAM"), "{e:?}");
    }
    eprintln!("{refused} of 12 early streams refused");
    gauge.most.store(0, Ordering::SeqCst);
    let calls = (0..12).map(|_| {
        let mut send = send.clone();
        async move {
            let req = http::Request::post(format!("http://{addr}/testing.Tester/Echo"))
                .header("content-type", "application/grpc")
                .header("te", "trailers")
                .body(http_body_util::Full::new(echo_frame(150)))
                .unwrap();
            let resp = send.send_request(req).await.expect("the stream is accepted in its turn");
            let body = resp.into_body().collect().await.unwrap();
            body.trailers().and_then(|t| t.get("grpc-status")).map(|v| v.to_str().unwrap().to_string())
        }
    });
    let statuses = futures_util::future::join_all(calls).await;
    assert!(statuses.iter().all(|s| s.as_deref() == Some("0")), "every call succeeds: {statuses:?}");
    let most = gauge.most.load(Ordering::SeqCst);
    assert!(most <= 4, "{most} calls ran at once on one connection with a limit of 4");
    assert!(most >= 2, "the calls did run concurrently ({most})");
    svc.stop().await;
}

/// Sends raw bytes on a fresh TCP connection and reads what comes back within `wait`.
fn raw(addr: std::net::SocketAddr, request: &[u8], wait: Duration) -> (String, Duration) {
    let mut s = std::net::TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(wait)).unwrap();
    let start = Instant::now();
    s.write_all(request).unwrap();
    let mut out = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        match s.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => out.extend_from_slice(&buf[..n]),
        }
    }
    (String::from_utf8_lossy(&out).to_string(), start.elapsed())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oversized_headers_are_refused_and_the_server_serves_on() {
    let mut opts = ServerOptions::default();
    opts.serve.max_header_size = 16 * 1024;
    let (svc, addr) = server(opts).await;
    let url = format!("http://{addr}/Tester/Echo");
    let big = format!("x-big: {}", "a".repeat(32 * 1024));
    let json = ["-H", "content-type: application/json", "-d", r#"{"message":"m"}"#];
    let (h1, h2, ok) = tokio::task::spawn_blocking(move || {
        let h1 = curl(&[&json[..], &["-H", &big, &url]].concat());
        let h2 = curl(&[&json[..], &["--http2-prior-knowledge", "-H", &big, &url]].concat());
        let ok = curl(&[&json[..], &[url.as_str()]].concat());
        (h1, h2, ok)
    })
    .await
    .unwrap();
    assert_eq!(h1.0, 431, "HTTP/1: Request Header Fields Too Large ({})", h1.1);
    assert_ne!(h2.0, 200, "HTTP/2: the stream is refused");
    assert_eq!(ok.0, 200, "a normal request still works");
    svc.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_client_is_cut_off_and_cannot_hold_the_server() {
    let mut opts = ServerOptions::default();
    opts.serve.header_read_timeout = Duration::from_secs(1);
    let (svc, addr) = server(opts).await;
    // Many clients that send half a request line and stall.
    let stalled: Vec<std::net::TcpStream> = (0..64)
        .map(|_| {
            let mut s = std::net::TcpStream::connect(addr).unwrap();
            s.write_all(b"POST /Tester/Echo HTTP/1.1\r\nHost: x\r\n").unwrap();
            s
        })
        .collect();
    let url = format!("http://{addr}/Tester/Echo");
    let served = tokio::task::spawn_blocking(move || {
        let start = Instant::now();
        let r = curl(&["-H", "content-type: application/json", "-d", r#"{"message":"m"}"#, &url]);
        (r, start.elapsed())
    })
    .await
    .unwrap();
    assert_eq!(served.0 .0, 200, "served while 64 clients stall");
    assert!(served.1 < Duration::from_secs(1), "promptly ({:?})", served.1);
    let (answer, took) = tokio::task::spawn_blocking(move || {
        raw(addr, b"POST /Tester/Echo HTTP/1.1\r\nHost: x\r\n", Duration::from_secs(10))
    })
    .await
    .unwrap();
    assert!(took >= Duration::from_millis(900) && took < Duration::from_secs(5), "cut off after {took:?}");
    assert!(answer.is_empty() || answer.starts_with("HTTP/1.1 408"), "{answer}");
    drop(stalled);
    svc.stop().await;
}
