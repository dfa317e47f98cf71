//! One port, every RPC protocol, proved with clients other people wrote: connect-es
//! (`@connectrpc/connect-node`, its Connect JSON and binary, gRPC-Web and gRPC transports, over
//! HTTP/1.1, h2c and TLS), `@grpc/grpc-js`, and in headless Chromium `@connectrpc/connect-web`
//! and Google's `grpc-web` (text mode) calling a service on another origin. Malformed requests of every protocol get that protocol's
//! own error while the server keeps serving.

use std::time::Duration;

use base64::Engine as _;
use micro::options::Options;
use micro::Service;
use micro_tests::browser::Browser;
use micro_tests::certs::Certs;
use micro_tests::testing::*;
use micro_tests::{curl, curl_head, h2_request, memory_registry, node, repo_root, Tester};
use serde_json::{json, Value};

/// A Tester node with `opts` on a random loopback port.
async fn service(opts: Options) -> (Service, std::net::SocketAddr) {
    let opts = Options { register_interval: Duration::ZERO, ..opts };
    let service =
        Service::builder().name("testing").options(opts).registry(memory_registry()).build().expect("service builds");
    register_tester_handler(service.server(), Tester { node: "one-port".into() });
    let addr = service.start().await.expect("service starts");
    (service, addr)
}

/// The encoded descriptors of testing.proto, in a temp file for connect-es.
fn descriptor_file() -> tempfile::NamedTempFile {
    let file = tempfile::NamedTempFile::new().expect("a temp file");
    std::fs::write(file.path(), FILE_DESCRIPTOR_SET).expect("descriptors written");
    file
}

/// What every connect-node transport must have seen (`streams_up`: client and bidi streaming,
/// which need HTTP/2).
fn check_connect_node(v: &Value, streams_up: bool) {
    let who = format!("{} over HTTP/{}", v["transport"], v["httpVersion"]);
    let echo = &v["echo"];
    assert_eq!(echo["message"], "from connect-node", "{who}: {v}");
    assert_eq!(echo["big"], "1152921504606846976", "{who}: int64 beyond 2^53");
    assert_eq!(echo["peer"], "connect-node", "{who}: request headers reach the handler");
    let left = echo["deadlineMs"].as_i64().unwrap_or(-1);
    assert!((1..=5000).contains(&left), "{who}: the caller's timeout reaches the handler, {left} ms left");
    assert!(echo["contentType"].as_str().is_some_and(|c| c.starts_with("application/")), "{who}: {echo}");
    assert_eq!(v["gzip"], json!({ "same": true, "length": 240000 }), "{who}");
    assert_eq!(v["peek"]["message"], "peeked", "{who}");
    assert_eq!(v["count"], json!([1, 2, 3, 4, 5]), "{who}");
    let fails = &v["countFails"];
    assert_eq!((&fails["values"], &fails["error"]["code"]), (&json!([1, 2]), &json!(6)), "{who}: {fails}");
    assert_eq!(fails["error"]["message"], "failed at 3", "{who}");
    assert_eq!(fails["error"]["details"], json!(["google.rpc.ErrorInfo"]), "{who}: the micro error as a detail");
    if streams_up {
        assert_eq!(v["sum"], 10, "{who}: client streaming");
        assert_eq!(v["shout"], json!(["ONE", "TWO"]), "{who}: bidi streaming");
    }
    assert_eq!(v["deadline"]["error"]["code"], 4, "{who}: DEADLINE_EXCEEDED");
    let bomb = &v["bomb"]["error"];
    assert_eq!(bomb["code"], 8, "{who}: a gzip bomb is RESOURCE_EXHAUSTED: {bomb}");
    assert!(bomb["message"].as_str().is_some_and(|m| m.contains("inflates")), "{who}: {bomb}");
    for code in 1..=16 {
        let got = &v["codes"][code.to_string()];
        assert_eq!(got["code"], code, "{who}: code {code} crosses: {got}");
        assert_eq!(got["message"], format!("asked to fail: code {code}"), "{who}");
    }
    let calls: Vec<&str> = v["calls"].as_array().expect("calls").iter().filter_map(Value::as_str).collect();
    assert!(calls.iter().any(|c| c.starts_with("POST /testing.Tester/Echo sent=gzip got=gzip")), "{who}: {calls:?}");
    assert!(calls.iter().any(|c| c.starts_with("POST /testing.Tester/Count sent=")), "{who}: {calls:?}");
    let get = v["transport"].as_str().is_some_and(|t| t.starts_with("connect"));
    assert_eq!(
        calls.iter().any(|c| c.starts_with("GET /testing.Tester/Peek")),
        get,
        "{who}: Connect calls NO_SIDE_EFFECTS methods with GET: {calls:?}"
    );
}

#[tokio::test]
async fn connect_node_speaks_connect_grpc_web_and_grpc_on_one_port() {
    let (svc, addr) = service(Options::default()).await;
    let descriptors = descriptor_file();
    let url = format!("http://{addr}");
    let desc = descriptors.path().to_str().expect("a path");
    for (transport, version) in [
        ("connect-json", "1.1"),
        ("connect-json", "2"),
        ("connect-proto", "1.1"),
        ("connect-proto", "2"),
        ("grpc-web", "1.1"),
        ("grpc-web", "2"),
        ("grpc-web-json", "2"),
        ("grpc", "2"),
    ] {
        let v = node("connect.mjs", &[&url, desc, transport, version]).await;
        check_connect_node(&v, version == "2");
    }
    svc.stop().await;
}

#[tokio::test]
async fn connect_node_over_tls_with_http2_and_http1() {
    let certs = Certs::generate();
    let opts = Options {
        server_tls_cert: Some(certs.arg("server.pem")),
        server_tls_key: Some(certs.arg("server.key")),
        ..Options::default()
    };
    let (svc, addr) = service(opts).await;
    let descriptors = descriptor_file();
    let url = format!("https://localhost:{}", addr.port());
    let desc = descriptors.path().to_str().expect("a path");
    let ca = certs.arg("ca.pem");
    for (transport, version) in [("connect-proto", "2"), ("grpc-web", "1.1"), ("grpc", "2")] {
        let v = node("connect.mjs", &[&url, desc, transport, version, &ca]).await;
        check_connect_node(&v, version == "2");
    }
    svc.stop().await;
}

#[tokio::test]
async fn grpc_js_makes_every_kind_of_call() {
    let (svc, addr) = service(Options::default()).await;
    let protos = repo_root().join("tests/proto");
    let v = node("grpcjs.mjs", &[&addr.to_string(), protos.to_str().expect("a path")]).await;
    assert_eq!(v["echo"]["message"], "from grpc-js", "{v}");
    assert_eq!(v["echo"]["big"], "1152921504606846976");
    assert_eq!(v["echo"]["peer"], "grpc-js", "metadata reaches the handler");
    let left = v["echo"]["deadlineMs"].as_i64().unwrap_or(-1);
    assert!((1..=5000).contains(&left), "the deadline reaches the handler: {left} ms left");
    assert_eq!(v["gzip"]["same"], true);
    assert_eq!(v["deadline"]["code"], 4);
    assert_eq!(v["bomb"]["code"], 8, "{}", v["bomb"]);
    assert!(v["bomb"]["details"].as_str().is_some_and(|d| d.contains("inflates")), "grpc-js sent it compressed");
    let status = &v["notFound"]["status"];
    assert_eq!((status["code"].as_i64(), status["message"].as_str()), (Some(5), Some("asked to fail: no")), "{v}");
    assert_eq!(status["type"], "type.googleapis.com/google.rpc.ErrorInfo");
    assert_eq!(
        status["info"],
        json!({ "id": "testing", "code": "404", "status": "Not Found", "detail": "asked to fail: no" })
    );
    for code in 1..=16 {
        assert_eq!(v["codes"][code.to_string()], code, "code {code}");
    }
    assert_eq!(v["count"], json!({ "values": [1, 2, 3, 4, 5], "code": 0 }));
    assert_eq!(v["sum"], 18);
    assert_eq!(v["shout"], json!({ "got": ["HEY", "YOU"], "code": 0 }));
    svc.stop().await;
}

/// The page's own origin: a second server that serves the page and the bundled connect-web.
async fn page_server(bundle: Vec<u8>) -> (micro::server::Server, std::net::SocketAddr) {
    let server = micro::server::Server::default();
    let bundle = bytes::Bytes::from(bundle);
    let descriptors = base64::engine::general_purpose::STANDARD.encode(FILE_DESCRIPTOR_SET);
    server.serve_web(move |page: micro::web::Page| {
        let (bundle, descriptors) = (bundle.clone(), descriptors.clone());
        async move {
            if page.path() == "/bundle.js" {
                return micro::web::Response::text(bundle).header("content-type", "text/javascript");
            }
            let html = format!(
                "<!doctype html><html><head><script src=\"/bundle.js\"></script></head><body>\
                 <script>window.descriptors = {descriptors:?};</script></body></html>"
            );
            micro::web::Response::html(html)
        }
    });
    let addr = server.start().expect("the page server starts");
    (server, addr)
}

#[tokio::test]
async fn connect_web_in_chromium_calls_a_service_on_another_origin() {
    let dir = tempfile::tempdir().expect("a temp dir");
    let bundle = dir.path().join("bundle.js");
    let node_dir = repo_root().join("tests/node");
    let built = std::process::Command::new(node_dir.join("node_modules/.bin/esbuild"))
        .args(["web.mjs", "--bundle", "--format=iife", "--log-level=warning"])
        .arg(format!("--outfile={}", bundle.display()))
        .current_dir(&node_dir)
        .status()
        .expect("esbuild runs (the README's test command installs it)");
    assert!(built.success(), "esbuild bundles connect-web");
    let (page, page_addr) = page_server(std::fs::read(&bundle).expect("the bundle")).await;
    let page_origin = format!("http://127.0.0.1:{}", page_addr.port());
    let allowed = Options { server_cors_allowed_origins: vec![page_origin.clone()], ..Options::default() };
    let (svc, addr) = service(allowed).await;
    let (closed, closed_addr) = service(Options::default()).await;

    let mut browser = Browser::launch(800, 600).await;
    browser.open(&format!("{page_origin}/")).await;
    browser.wait("window.testerReady", "the bundle to load").await;
    for kind in ["connect", "grpc-web", "grpc-web-text"] {
        let call = format!("callTester('http://127.0.0.1:{}', window.descriptors, '{kind}')", addr.port());
        let v = browser.eval(&call).await;
        assert_eq!(v["echo"], format!("from {kind} in a browser"), "{kind}: {v}");
        assert_eq!(v["peer"], "browser", "{kind}: the page's headers pass the preflight");
        assert_eq!(v["peek"], "peek", "{kind}");
        assert_eq!(v["count"], json!([1, 2, 3, 4]), "{kind}: server streaming through fetch");
        assert_eq!(
            v["failure"],
            json!({ "code": 7, "message": "asked to fail: no" }),
            "{kind}: errors readable cross-origin"
        );
        // A service that did not list the page's origin: the browser gets nothing.
        let call = format!("callTester('http://127.0.0.1:{}', window.descriptors, '{kind}')", closed_addr.port());
        let v = browser.eval(&call).await;
        assert!(v["error"].is_string() && v["echo"].is_null(), "{kind}: an unlisted origin is refused: {v}");
    }
    drop(browser);
    svc.stop().await;
    closed.stop().await;
    page.stop().await;
}

#[tokio::test]
async fn preflights_answer_listed_origins_only() {
    let opts = Options { server_cors_allowed_origins: vec!["http://app.localhost:3000".into()], ..Options::default() };
    let (svc, addr) = service(opts).await;
    let url = format!("http://{addr}/testing.Tester/Echo");
    let preflight = |origin: &str| {
        curl_head(&[
            "-X",
            "OPTIONS",
            "-H",
            &format!("origin: {origin}"),
            "-H",
            "access-control-request-method: POST",
            "-H",
            "access-control-request-headers: content-type,connect-protocol-version",
            &url,
        ])
    };
    let (status, head, _) = preflight("http://app.localhost:3000");
    assert_eq!(status, 204, "{head}");
    assert!(head.contains("access-control-allow-origin: http://app.localhost:3000"), "{head}");
    assert!(head.contains("connect-protocol-version"), "{head}");
    let (status, head, _) = preflight("http://evil.example");
    assert_eq!(status, 403, "{head}");
    assert!(!head.contains("access-control-allow-origin"), "{head}");
    // A simple cross-origin GET (no preflight) from an unlisted page does not run.
    let (status, body) = curl(&[
        "-H",
        "origin: http://evil.example",
        &format!("http://{addr}/testing.Tester/Peek?encoding=json&message=%7B%7D"),
    ]);
    assert_eq!(status, 403, "{body}");
    svc.stop().await;
}

#[tokio::test]
async fn a_loopback_service_answers_its_names_and_refuses_others() {
    let opts = Options { server_advertise: Some("10.1.2.3:8080".into()), ..Options::default() };
    let (svc, addr) = service(opts).await;
    let url = format!("http://{addr}/testing.Tester/Echo");
    let call = |host: &str| {
        let host = format!("host: {host}");
        curl(&["-H", &host, "-H", "content-type: application/json", "-d", r#"{"message":"hi"}"#, &url]).0
    };
    for ok in [addr.to_string(), format!("localhost:{}", addr.port()), "10.1.2.3:8080".into(), "micro".into()] {
        assert_eq!(call(&ok), 200, "{ok}: its own name");
    }
    for bad in ["evil.example", "10.1.2.4:8080", "127.0.0.1.evil.example"] {
        assert_eq!(call(bad), 403, "{bad}: a rebound name");
    }
    svc.stop().await;
}

/// `message` as a gRPC frame of `flag`.
fn frame(flag: u8, message: &[u8]) -> Vec<u8> {
    let mut f = vec![flag];
    f.extend((message.len() as u32).to_be_bytes());
    f.extend(message);
    f
}

fn gzip(data: &[u8]) -> Vec<u8> {
    micro::transport::compression::compress(data).to_vec()
}

/// The EchoRequest `{message}` in protobuf.
fn echo_proto(message: &str) -> Vec<u8> {
    micro::codec::Codec::Proto
        .encode(&EchoRequest { message: message.into(), ..Default::default() })
        .expect("encodes")
        .to_vec()
}

/// A body file for curl.
fn body_file(dir: &std::path::Path, name: &str, data: &[u8]) -> String {
    let path = dir.join(name);
    std::fs::write(&path, data).expect("a body file");
    format!("@{}", path.display())
}

/// A Tester for the malformed-input tests, with a scratch dir for bodies and a gzip bomb (5 MiB
/// that compresses to a few KB).
struct Target {
    svc: Service,
    addr: std::net::SocketAddr,
    dir: tempfile::TempDir,
    url: String,
    bomb: Vec<u8>,
}

impl Target {
    async fn start() -> Target {
        let (svc, addr) = service(Options::default()).await;
        let dir = tempfile::tempdir().expect("a temp dir");
        let url = format!("http://{addr}/testing.Tester/Echo");
        Target { svc, addr, dir, url, bomb: gzip(&echo_proto(&"a".repeat(5 << 20))) }
    }
}

/// curl POSTs `body` (through a file in `dir`) to `url` with `headers` (`-H` pairs and flags).
fn post(dir: &std::path::Path, name: &str, url: &str, headers: &[&str], body: &[u8]) -> (u16, String) {
    let file = body_file(dir, name, body);
    let mut args = headers.to_vec();
    args.extend(["--data-binary", &file, url]);
    curl(&args)
}

#[tokio::test]
async fn malformed_grpc_web_gets_grpc_web_errors_and_the_server_keeps_serving() {
    let Target { svc, dir, url, bomb, .. } = Target::start().await;

    // gRPC-Web: the status comes in the trailer frame, HTTP 200.
    let grpc_web = |name: &str, body: &[u8], extra: &[&str]| {
        let headers = [&["-H", "content-type: application/grpc-web+proto", "-H", "x-grpc-web: 1"], extra].concat();
        post(dir.path(), name, &url, &headers, body)
    };
    let (status, body) = grpc_web("bad-flag", &frame(0x07, b"x"), &[]);
    assert_eq!(status, 200);
    assert!(body.contains("grpc-status: 3") && body.contains("malformed frame"), "{body}");
    let (_, body) = grpc_web("short", &[0, 0, 0, 0, 9, 1], &[]);
    assert!(body.contains("grpc-status: 3"), "a truncated frame: {body}");
    let (_, body) = grpc_web("br", &frame(1, b"x"), &["-H", "grpc-encoding: br"]);
    assert!(body.contains("grpc-status: 12") && body.contains("unsupported compression"), "{body}");
    let (_, body) = grpc_web("bomb", &frame(1, &bomb), &["-H", "grpc-encoding: gzip"]);
    assert!(body.contains("grpc-status: 8") && body.contains("inflates"), "{body}");
    let (_, body) = grpc_web("fine", &frame(0, &echo_proto("web")), &[]);
    assert!(body.contains("grpc-status: 0") && body.contains("web"), "{body}");

    // gRPC-Web text: base64 both ways.
    let text = |name: &str, body: &[u8]| {
        let (status, body) = post(dir.path(), name, &url, &["-H", "content-type: application/grpc-web-text"], body);
        let decoded = base64::engine::general_purpose::STANDARD.decode(body.trim()).unwrap_or_default();
        (status, String::from_utf8_lossy(&decoded).into_owned())
    };
    let (status, body) = text("text-bad", b"!!!!not base64");
    assert_eq!(status, 200);
    assert!(body.contains("grpc-status: 3") && body.contains("base64"), "{body}");
    let good = base64::engine::general_purpose::STANDARD.encode(frame(0, &echo_proto("in text")));
    let (_, body) = text("text-good", good.as_bytes());
    assert!(body.contains("grpc-status: 0") && body.contains("in text"), "{body}");
    svc.stop().await;
}

#[tokio::test]
async fn malformed_connect_and_grpc_get_their_errors_and_the_server_keeps_serving() {
    let Target { svc, addr, dir, url, bomb } = Target::start().await;

    // Connect unary: an HTTP status from the code and the error JSON.
    let connect = |name: &str, body: &[u8], extra: &[&str]| {
        let headers = [&["-H", "content-type: application/proto", "-H", "connect-protocol-version: 1"], extra].concat();
        let (status, body) = post(dir.path(), name, &url, &headers, body);
        (status, serde_json::from_str::<Value>(&body).unwrap_or(Value::Null))
    };
    let (status, v) = connect("c-gzip-bad", b"not gzip at all", &["-H", "content-encoding: gzip"]);
    assert_eq!((status, &v["code"]), (400, &json!("invalid_argument")), "{v}");
    let (status, v) = connect("c-br", b"x", &["-H", "content-encoding: br"]);
    assert_eq!((status, &v["code"]), (501, &json!("unimplemented")), "{v}");
    let (status, v) = connect("c-bomb", &bomb, &["-H", "content-encoding: gzip"]);
    assert_eq!((status, &v["code"]), (429, &json!("resource_exhausted")), "{v}");
    let (status, v) = connect("c-junk", b"\xff\xff\xff", &[]);
    assert_eq!((status, &v["code"]), (400, &json!("invalid_argument")), "{v}");
    let (status, body) = curl(&[&format!("{url}?encoding=proto&base64=1&message=%25%25%25")]);
    assert_eq!(status, 405, "Echo is not free of side effects: {body}");
    let peek = format!("http://{addr}/testing.Tester/Peek");
    let (status, body) = curl(&[&format!("{peek}?encoding=proto&base64=1&message=***")]);
    let v: Value = serde_json::from_str(&body).unwrap_or(Value::Null);
    assert_eq!((status, &v["code"]), (400, &json!("invalid_argument")), "bad base64 in a GET: {body}");
    let (status, body) = curl(&[&format!("{peek}?encoding=json&message=%7B%22message%22%3A%22got%22%7D")]);
    assert_eq!(status, 200, "{body}");
    assert!(body.contains("\"got\""), "{body}");

    // Connect streams: HTTP 200, the error in the end-of-stream message.
    let count = format!("http://{addr}/testing.Tester/Count");
    let stream = |name: &str, body: &[u8], extra: &[&str]| {
        post(dir.path(), name, &count, &[&["-H", "content-type: application/connect+proto"], extra].concat(), body)
    };
    let (status, body) = stream("s-bad", &frame(0x40, b"x"), &[]);
    assert_eq!(status, 200);
    assert!(body.contains("\"invalid_argument\""), "{body}");
    let (_, body) = stream("s-br", &frame(0, b""), &["-H", "connect-content-encoding: br"]);
    assert!(body.contains("\"unimplemented\""), "{body}");

    // gRPC itself: a compressed frame the request never announced, and a bomb.
    let (_, trailers) =
        h2_request(&addr.to_string(), "/testing.Tester/Echo", &[("content-type", "application/grpc")], frame(1, b"xx"))
            .await;
    assert_eq!(trailers["grpc-status"], "13", "{trailers:?}");
    let (_, trailers) = h2_request(
        &addr.to_string(),
        "/testing.Tester/Echo",
        &[("content-type", "application/grpc"), ("grpc-encoding", "gzip")],
        frame(1, &bomb),
    )
    .await;
    assert_eq!(trailers["grpc-status"], "8", "{trailers:?}");

    // After all of it, the same server answers every protocol.
    let (status, v) = connect("c-fine", &echo_proto("still here"), &[]);
    assert_eq!(status, 200, "{v}");
    let (_, trailers) = h2_request(
        &addr.to_string(),
        "/testing.Tester/Echo",
        &[("content-type", "application/grpc")],
        frame(0, &echo_proto("ok")),
    )
    .await;
    assert_eq!(trailers["grpc-status"], "0");
    svc.stop().await;
}
