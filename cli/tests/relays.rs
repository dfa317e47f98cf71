//! The proxies of `micro api --handler http` and of the dashboard (`micro web`'s `/<alias>/`) in
//! front of a real HTTP app found over mDNS on loopback, over plain HTTP and over TLS (a node
//! that registered `secure=true`): a request body and its echo stream both ways (the app answers
//! each piece before the next is sent, which a proxy that buffered whole bodies could not pass),
//! server-sent events arrive one by one, websockets are relayed, and the first path segment names
//! the service.

mod common;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use futures_util::{SinkExt, StreamExt};
use http_body::Frame;
use http_body_util::BodyExt;
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use micro::registry::{MdnsRegistry, Node, Service, SharedRegistry};
use micro::transport::Body;
use tokio::sync::{mpsc, Notify};
use tokio_tungstenite::tungstenite::Message;

/// The app: `…/echo` streams the request body back, `…/events` sends one event, waits for
/// `next`, then sends another, `…/ws` echoes websocket messages, anything else says its path.
async fn app(req: http::Request<Incoming>, next: Arc<Notify>) -> http::Response<Body> {
    let path = req.uri().path().to_string();
    if path.ends_with("/echo") {
        let (tx, rx) = mpsc::channel::<Frame<Bytes>>(4);
        let mut body = req.into_body();
        tokio::spawn(async move {
            while let Some(Ok(frame)) = body.frame().await {
                if let Ok(data) = frame.into_data() {
                    if tx.send(Frame::data(data)).await.is_err() {
                        return;
                    }
                }
            }
        });
        return http::Response::new(Body::channel(rx));
    }
    if path.ends_with("/events") {
        let (tx, rx) = mpsc::channel::<Frame<Bytes>>(4);
        tokio::spawn(async move {
            let _ = tx.send(Frame::data(Bytes::from_static(b"data: one\n\n"))).await;
            next.notified().await;
            let _ = tx.send(Frame::data(Bytes::from_static(b"data: two\n\n"))).await;
        });
        let mut resp = http::Response::new(Body::channel(rx));
        resp.headers_mut().insert("content-type", http::HeaderValue::from_static("text/event-stream"));
        return resp;
    }
    if path.ends_with("/ws") {
        let key = req.headers().get("sec-websocket-key").cloned().unwrap_or(http::HeaderValue::from_static(""));
        let mut req = req;
        let upgrade = hyper::upgrade::on(&mut req);
        tokio::spawn(async move {
            let Ok(io) = upgrade.await else { return };
            let mut ws = tokio_tungstenite::WebSocketStream::from_raw_socket(
                TokioIo::new(io),
                tokio_tungstenite::tungstenite::protocol::Role::Server,
                None,
            )
            .await;
            while let Some(Ok(m)) = ws.next().await {
                if m.is_text() && ws.send(m).await.is_err() {
                    return;
                }
            }
        });
        let accept = tokio_tungstenite::tungstenite::handshake::derive_accept_key(key.as_bytes());
        return http::Response::builder()
            .status(101)
            .header("upgrade", "websocket")
            .header("connection", "Upgrade")
            .header("sec-websocket-accept", accept)
            .body(Body::empty())
            .unwrap();
    }
    http::Response::new(Body::full(format!("path {path}")))
}

/// Serves the app on a random loopback port, over TLS with `tls`; returns the address.
async fn serve(tls: Option<tokio_rustls::TlsAcceptor>, next: Arc<Notify>) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    tokio::spawn(async move {
        loop {
            let Ok((tcp, _)) = listener.accept().await else { return };
            let (tls, next) = (tls.clone(), next.clone());
            tokio::spawn(async move {
                let service = hyper::service::service_fn(move |req| {
                    let next = next.clone();
                    async move { Ok::<_, std::convert::Infallible>(app(req, next).await) }
                });
                let http = hyper::server::conn::http1::Builder::new();
                match tls {
                    Some(acceptor) => {
                        let Ok(stream) = acceptor.accept(tcp).await else { return };
                        let _ = http.serve_connection(TokioIo::new(stream), service).with_upgrades().await;
                    }
                    None => {
                        let _ = http.serve_connection(TokioIo::new(tcp), service).with_upgrades().await;
                    }
                }
            });
        }
    });
    addr
}

fn acceptor(certs: &micro_tests::certs::Certs) -> tokio_rustls::TlsAcceptor {
    use rustls_pki_types::pem::PemObject;
    let chain = rustls_pki_types::CertificateDer::pem_file_iter(certs.path("server.pem"))
        .unwrap()
        .collect::<Result<Vec<_>, _>>()
        .unwrap();
    let key = rustls_pki_types::PrivateKeyDer::from_pem_file(certs.path("server.key")).unwrap();
    let mut config = rustls::ServerConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(chain, key)
        .unwrap();
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    tokio_rustls::TlsAcceptor::from(Arc::new(config))
}

async fn register(registry: &SharedRegistry, name: &str, address: &str, secure: bool) {
    let mut metadata = BTreeMap::new();
    if secure {
        metadata.insert("secure".to_string(), "true".to_string());
    }
    let record = Service {
        name: name.into(),
        version: "latest".into(),
        nodes: vec![Node { id: format!("{name}-1"), address: address.into(), metadata }],
        ..Default::default()
    };
    registry.register(&record, Default::default()).await.unwrap();
}

/// A request to `addr` whose body is sent piece by piece: each piece's echo must come back
/// before the next piece goes.
async fn echo_piece_by_piece(addr: &str, path: &str) {
    let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tcp)).await.unwrap();
    tokio::spawn(conn);
    let (tx, rx) = mpsc::channel::<Frame<Bytes>>(1);
    let req = http::Request::post(path).header("host", addr).body(Body::channel(rx)).unwrap();
    tx.send(Frame::data(Bytes::from_static(b"piece 1;"))).await.unwrap();
    let resp = tokio::time::timeout(Duration::from_secs(10), sender.send_request(req)).await.unwrap().unwrap();
    assert_eq!(resp.status(), 200, "{path}");
    let mut body = resp.into_body();
    for i in 1..=3 {
        let frame = tokio::time::timeout(Duration::from_secs(10), body.frame())
            .await
            .unwrap_or_else(|_| panic!("piece {i} of {path} never came back: the body was held"));
        let data = frame.unwrap().unwrap().into_data().unwrap();
        assert_eq!(data, format!("piece {i};").as_bytes(), "{path}");
        if i < 3 {
            tx.send(Frame::data(Bytes::from(format!("piece {};", i + 1)))).await.unwrap();
        }
    }
    drop(tx);
}

/// Server-sent events through `addr`: the first arrives before the app sends the second.
async fn events_one_by_one(addr: &str, path: &str, next: &Notify) {
    let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tcp)).await.unwrap();
    tokio::spawn(conn);
    let req = http::Request::get(path).header("host", addr).body(Body::empty()).unwrap();
    let resp = sender.send_request(req).await.unwrap();
    assert_eq!(resp.headers()["content-type"], "text/event-stream");
    let mut body = resp.into_body();
    let mut seen = String::new();
    while !seen.contains("data: one\n\n") {
        let frame = tokio::time::timeout(Duration::from_secs(10), body.frame()).await.expect("the first event");
        seen.push_str(&String::from_utf8_lossy(&frame.unwrap().unwrap().into_data().unwrap()));
    }
    assert!(!seen.contains("two"));
    next.notify_one();
    while !seen.contains("data: two\n\n") {
        let frame = tokio::time::timeout(Duration::from_secs(10), body.frame()).await.expect("the second event");
        seen.push_str(&String::from_utf8_lossy(&frame.unwrap().unwrap().into_data().unwrap()));
    }
}

async fn websocket_echo(url: &str) {
    let (mut ws, _) = tokio::time::timeout(Duration::from_secs(10), tokio_tungstenite::connect_async(url))
        .await
        .unwrap()
        .unwrap_or_else(|e| panic!("{url}: {e}"));
    for text in ["hello", "again"] {
        ws.send(Message::text(text)).await.unwrap();
        let back = tokio::time::timeout(Duration::from_secs(10), ws.next()).await.unwrap().unwrap().unwrap();
        assert_eq!(back.into_text().unwrap().as_str(), text, "{url}");
    }
}

/// Waits until `addr` answers `path` with 200.
async fn until_up(addr: &str, path: &str) {
    let url = format!("http://{addr}{path}");
    micro_tests::wait_for(&url.clone(), Duration::from_secs(20), async || {
        let url = url.clone();
        tokio::task::spawn_blocking(move || micro_tests::curl(&[&url]).0 == 200).await.unwrap()
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn streams_events_and_websockets_through_both_proxies() {
    let certs = micro_tests::certs::Certs::generate();
    let ns = format!("go.micro.rl{}", std::process::id());
    let registry: SharedRegistry = Arc::new(MdnsRegistry::new().unwrap());
    let next = Arc::new(Notify::new());
    let plain = serve(None, next.clone()).await;
    let secure = serve(Some(acceptor(&certs)), next.clone()).await;
    register(&registry, &format!("{ns}.site"), &plain, false).await;
    register(&registry, &format!("{ns}.safe"), &secure, true).await;

    let ca = certs.arg("ca.pem");
    let (_gw, gw) = tokio::task::block_in_place(|| {
        common::listening(
            &["api", "--api_address", "127.0.0.1:0", "--namespace", &ns, "--handler", "http", "--client_tls_ca", &ca],
            "api",
        )
    });
    let (_web, web) = tokio::task::block_in_place(|| {
        common::listening(&["web", "--web_address", "127.0.0.1:0", "--namespace", &ns, "--client_tls_ca", &ca], "web")
    });

    // The first segment names the service; the gateway forwards the whole path, the dashboard
    // the rest of it.
    until_up(&gw, "/site/static/css/a.css").await;
    let page = tokio::task::spawn_blocking({
        let gw = gw.clone();
        move || micro_tests::curl(&[&format!("http://{gw}/site/static/css/a.css")])
    });
    assert_eq!(page.await.unwrap().1, "path /site/static/css/a.css");
    until_up(&web, "/site/x").await;
    until_up(&gw, "/safe/x").await;
    until_up(&web, "/safe/x").await;

    for (addr, prefix) in [(&gw, "/site"), (&web, "/site"), (&gw, "/safe"), (&web, "/safe")] {
        echo_piece_by_piece(addr, &format!("{prefix}/echo")).await;
        events_one_by_one(addr, &format!("{prefix}/events"), &next).await;
        websocket_echo(&format!("ws://{addr}{prefix}/ws")).await;
    }

    // Only websockets are relayed: an upgrade to another protocol (an h2c tunnel would escape
    // the proxy's header rules) is not passed on, so the app's 101 is refused.
    let (gw2, web2) = (gw.clone(), web.clone());
    let refused = tokio::task::spawn_blocking(move || {
        let h2c = ["-H", "Connection: Upgrade", "-H", "Upgrade: h2c"];
        [gw2, web2].map(|a| micro_tests::curl(&[&h2c[..], &[&format!("http://{a}/site/ws")]].concat()).0)
    });
    assert_eq!(refused.await.unwrap(), [502, 502]);

    // One body limit: a request that says it is larger gets 413 before the app sees it.
    let (_small, small) = tokio::task::block_in_place(|| {
        common::listening(
            &["api", "--api_address", "127.0.0.1:0", "--namespace", &ns, "--handler", "http", "--max_body", "64"],
            "api",
        )
    });
    until_up(&small, "/site/x").await;
    let big = tokio::task::spawn_blocking(move || {
        micro_tests::curl(&["-d", &"x".repeat(100), &format!("http://{small}/site/echo")]).0
    });
    assert_eq!(big.await.unwrap(), 413);
}
