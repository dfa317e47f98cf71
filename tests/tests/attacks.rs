//! The edges under attack: one test per defect of the "safe edges" review (numbered as there),
//! each played against the real tools (`micro api`, `micro web`, `micro proxy`, `micro bot`,
//! `micro new`) and services, with curl, raw sockets, a stand-in Slack, a second mDNS responder
//! and headless Chromium as the attackers. Every test failed before the fix it names.
//!
//! 1. SSRF and credential leak · 2. cross-site requests · 3. the unauthenticated inbox · 4. memory
//! from five bytes · 5. resources chosen by the peer · 6. connections held forever · 7. panics
//! from input · 8. a function stopped by a stranger · 9. trusting the registry · 10. header
//! spoofing · 11. web services on the dashboard's origin · 12. code injection through `micro new`.

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use micro::client::ClientOptions;
use micro::options::{Options, Secret};
use micro::registry::{MdnsRegistry, SharedRegistry};
use micro::{CallOptions, Client, Error, Request, ServerStream, Service, Streaming};
use micro_tests::testing::*;
use micro_tests::{curl_head, memory_registry, wait_for, Child, Tester};

const TOKEN: &str = "attack-test-token-9f2c";

fn micro_bin() -> PathBuf {
    micro_tests::workspace_bin("micro")
}

/// `micro ARGS` over mDNS, once it listens; `args[0]` is the command (`api`, `web`, `proxy`).
fn tool(args: &[&str]) -> (Child, String) {
    micro_tests::listening(&micro_bin(), args, &[("MICRO_REGISTRY", "mdns")], args[0])
}

/// A namespace of this test run.
fn ns(tag: &str) -> String {
    format!("go.micro.atk{tag}{}", std::process::id())
}

fn mdns() -> SharedRegistry {
    Arc::new(MdnsRegistry::new().expect("mDNS starts"))
}

async fn blocking<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> T {
    tokio::task::spawn_blocking(f).await.expect("the blocking part did not panic")
}

/// Waits (blocking) until `cond` holds.
fn until(what: &str, mut cond: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while !cond() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// `POST url` with a JSON body and extra headers (`Name: value`).
fn post(url: &str, body: &str, headers: &[&str]) -> (u16, String, String) {
    let mut args = vec!["-H", "Content-Type: application/json", "--data-binary", body];
    for h in headers {
        args.extend(["-H", h]);
    }
    args.push(url);
    curl_head(&args)
}

/// What a [`Recorder`] saw: each Echo message and Shout line with the metadata it came with.
type Seen = Arc<Mutex<Vec<(String, BTreeMap<String, String>)>>>;

/// The Tester, recording what reaches it.
#[derive(Clone, Default)]
struct Recorder {
    seen: Seen,
}

impl Recorder {
    fn messages(&self) -> Vec<String> {
        self.seen.lock().unwrap().iter().map(|(m, _)| m.clone()).collect()
    }
    fn metadata_of(&self, message: &str) -> Option<BTreeMap<String, String>> {
        self.seen.lock().unwrap().iter().find(|(m, _)| m == message).map(|(_, md)| md.clone())
    }
}

impl TesterHandler for Recorder {
    async fn echo(&self, request: Request<EchoRequest>) -> Result<EchoReply, Error> {
        let md = request.metadata().iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        self.seen.lock().unwrap().push((request.message.clone(), md));
        Tester { node: "recorder".into() }.echo(request).await
    }
    async fn peek(&self, request: Request<EchoRequest>) -> Result<EchoReply, Error> {
        Tester::default().peek(request).await
    }
    async fn count(&self, request: Request<CountRequest>, stream: ServerStream<Number>) -> Result<(), Error> {
        Tester::default().count(request, stream).await
    }
    async fn sum(&self, request: Request<Streaming<Number>>) -> Result<Number, Error> {
        Tester::default().sum(request).await
    }
    async fn shout(&self, request: Request<Streaming<Line>>, stream: ServerStream<Line>) -> Result<(), Error> {
        let mut lines = request.into_inner();
        while let Some(line) = lines.message().await? {
            self.seen.lock().unwrap().push((line.text.clone(), BTreeMap::new()));
            stream.send(Line { text: line.text.to_uppercase() }).await?;
        }
        Ok(())
    }
}

fn options(token: bool) -> Options {
    Options { register_interval: Duration::ZERO, auth_token: token.then(|| Secret::new(TOKEN)), ..Options::default() }
}

/// A started service `name` answering with `recorder`.
async fn service(registry: SharedRegistry, name: &str, opts: Options, recorder: &Recorder) -> Service {
    let svc = Service::builder().name(name).options(opts).registry(registry).build().expect("service builds");
    register_tester_handler(svc.server(), recorder.clone());
    svc.start().await.expect("service starts");
    svc
}

/// A dashboard session: its cookie jar and its CSRF token.
struct Session {
    jar: tempfile::NamedTempFile,
    csrf: String,
}

impl Session {
    fn open(web: &str) -> Session {
        Self::open_at(web, "/terminal")
    }

    fn open_at(web: &str, path: &str) -> Session {
        let jar = tempfile::NamedTempFile::new().unwrap();
        let jar_path = jar.path().display().to_string();
        let (code, _, page) = curl_head(&["-c", &jar_path, &format!("http://{web}{path}")]);
        assert_eq!(code, 200, "{page}");
        let csrf = page
            .split(r#"<meta name="csrf-token" content=""#)
            .nth(1)
            .and_then(|rest| rest.split('"').next())
            .unwrap_or_default()
            .to_string();
        assert!(!csrf.is_empty(), "the page carries a CSRF token: {page}");
        Session { jar, csrf }
    }

    fn post(&self, url: &str, body: &str, headers: &[&str]) -> (u16, String, String) {
        let jar = self.jar.path().display().to_string();
        let csrf = format!("X-CSRF-Token: {}", self.csrf);
        let mut with = vec![csrf.as_str()];
        with.extend(headers);
        let mut args = vec!["-b".to_string(), jar];
        args.extend(["-H".to_string(), "Content-Type: application/json".to_string()]);
        for h in with {
            args.extend(["-H".to_string(), h.to_string()]);
        }
        args.extend(["--data-binary".to_string(), body.to_string(), url.to_string()]);
        curl_head(&args.iter().map(String::as_str).collect::<Vec<_>>())
    }
}

// ---- 1. SSRF and credential leak ----

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn item01_rpc_takes_no_address_and_no_tool_lends_its_token() {
    let ns = ns("ssrf");
    let registry = mdns();
    let recorder = Recorder::default();
    let svc = service(registry.clone(), &format!("{ns}.tester"), options(true), &recorder).await;
    let victim = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    victim.set_nonblocking(true).unwrap();
    let victim_addr = victim.local_addr().unwrap().to_string();

    let n = ns.clone();
    blocking(move || {
        let (_gw, gw) = tool(&["api", "--api_address", "127.0.0.1:0", "--namespace", &n, "--auth_token", TOKEN]);
        let bearer = format!("Authorization: Bearer {TOKEN}");
        let url = format!("http://{gw}/tester/echo");
        until("the gateway to reach the service", || post(&url, r#"{"message":"own"}"#, &[&bearer]).0 == 200);
        assert_eq!(post(&url, r#"{"message":"anon"}"#, &[]).0, 401, "the gateway lent its token to a stranger");

        let rpc = format!("http://{gw}/rpc");
        let call = |service: &str, extra: &str| {
            format!(r#"{{"service":"{service}","endpoint":"Tester.Echo","request":{{"message":"rpc"}}{extra}}}"#)
        };
        let tester = format!("{n}.tester");
        assert_eq!(post(&rpc, &call(&tester, ""), &[]).0, 401);
        assert_eq!(post(&rpc, &call(&tester, ""), &[&bearer]).0, 200);
        let aimed = call(&tester, &format!(r#","address":"{victim_addr}""#));
        let (code, _, body) = post(&rpc, &aimed, &[&bearer]);
        assert_eq!(code, 400, "{body}");
        let connected = victim.accept().map(|_| ()).map_err(|e| e.kind());
        assert_eq!(connected, Err(std::io::ErrorKind::WouldBlock), "the gateway connected where the caller said");
        let (code, _, body) = post(&rpc, &call("go.micro.elsewhere.tester", ""), &[&bearer]);
        assert_eq!(code, 403, "outside the namespace: {body}");
    })
    .await;

    // The proxy: a client that brings no token gets the service's 401, whatever the proxy holds.
    let (_px, px) = blocking(|| tool(&["proxy", "--proxy_address", "127.0.0.1:0", "--auth_token", TOKEN])).await;
    let via = |token: Option<&str>| {
        let opts = ClientOptions { proxy: Some(px.clone()), retries: 0, ..Default::default() };
        let client = Client::new(memory_registry(), opts);
        let client = match token {
            Some(t) => client.wrap(micro::wrapper::BearerToken::new(&Secret::new(t))),
            None => client,
        };
        TesterClient::new(&format!("{ns}.tester"), client)
    };
    let echo = |m: &str| EchoRequest { message: m.into(), ..Default::default() };
    let own = via(Some(TOKEN));
    wait_for("the proxy to reach the service", Duration::from_secs(20), async || own.echo(echo("p")).await.is_ok())
        .await;
    assert_eq!(via(None).echo(echo("proxied")).await.unwrap_err().code, 401, "the proxy lent its token");

    // The dashboard: its calls carry the browser's token, never its own.
    let n = ns.clone();
    blocking(move || {
        let (_web, web) = tool(&["web", "--web_address", "127.0.0.1:0", "--auth_token", TOKEN]);
        let session = Session::open(&web);
        let body = format!(r#"{{"service":"{n}.tester","endpoint":"Tester.Echo","request":{{"message":"web"}}}}"#);
        let url = format!("http://{web}/rpc");
        let bearer = format!("Authorization: Bearer {TOKEN}");
        until("the dashboard to reach the service", || session.post(&url, &body, &[&bearer]).0 == 200);
        let (code, _, reply) = session.post(&url, &body, &[]);
        assert_eq!(code, 401, "the dashboard lent its token: {reply}");
        let aimed = format!(r#"{{"service":"{n}.tester","endpoint":"Tester.Echo","address":"127.0.0.1:1"}}"#);
        assert_eq!(session.post(&url, &aimed, &[&bearer]).0, 400);
    })
    .await;
    assert!(!recorder.messages().iter().any(|m| m == "anon" || m == "proxied"), "{:?}", recorder.messages());
    svc.stop().await;
}

// ---- 2. Cross-site requests ----

/// A page of another origin, served by a service of its own on 127.0.0.1.
async fn attacker_site(registry: SharedRegistry) -> (Service, String) {
    let site = Service::builder().name("attacker-site").options(options(false)).registry(registry).build().unwrap();
    site.server().serve_web(|_page: micro::web::Page| async {
        micro::web::Response::html("<!doctype html><title>a page</title>")
    });
    let addr = site.start().await.unwrap();
    (site, format!("http://{addr}/"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn item02_pages_of_other_origins_cannot_use_the_tools() {
    let ns = ns("csrf");
    let registry = mdns();
    let recorder = Recorder::default();
    let svc = service(registry.clone(), &format!("{ns}.tester"), options(false), &recorder).await;
    let published: Arc<Mutex<Vec<String>>> = Arc::default();
    let p = published.clone();
    let listener = Service::builder()
        .name(format!("{ns}.listener"))
        .options(options(false))
        .registry(registry.clone())
        .build()
        .unwrap();
    micro::register_subscriber(listener.server(), &format!("{ns}.topic"), move |req: Request<Line>| {
        let p = p.clone();
        async move {
            p.lock().unwrap().push(req.text.clone());
            Ok(())
        }
    });
    listener.start().await.unwrap();
    let (site, site_url) = attacker_site(registry.clone()).await;

    let n = ns.clone();
    let (tools, gw, web, px) = blocking(move || {
        let (gw_child, gw) = tool(&["api", "--api_address", "127.0.0.1:0", "--namespace", &n]);
        let (web_child, web) = tool(&["web", "--web_address", "127.0.0.1:0"]);
        let (px_child, px) = tool(&["proxy", "--proxy_address", "127.0.0.1:0"]);
        until("the gateway to reach the service", || {
            post(&format!("http://{gw}/tester/echo"), r#"{"message":"ready"}"#, &[]).0 == 200
        });
        (vec![gw_child, web_child, px_child], gw, web, px)
    })
    .await;

    let mut browser = micro_tests::browser::Browser::launch(800, 600).await;
    browser.open(&site_url).await;
    let attack = r#"(async () => {
      const out = {};
      const tester = "NS.tester";
      try {
        const r = await fetch("http://GW/tester/echo", { method: "POST", credentials: "include",
          headers: { "Content-Type": "application/json" }, body: JSON.stringify({ message: "read-by-another-origin" }) });
        out.read = await r.text();
      } catch (e) { out.read = "blocked"; }
      const blind = (url, body) => fetch(url, { method: "POST", mode: "no-cors", credentials: "include",
        headers: { "Content-Type": "text/plain" }, body }).then(() => "sent", () => "blocked");
      out.simple = await blind("http://GW/tester/echo", JSON.stringify({ message: "simple-request" }));
      out.get = await fetch("http://GW/tester/echo?message=simple-get", { mode: "no-cors" }).then(() => "sent", () => "blocked");
      out.terminal = await blind("http://WEB/terminal", JSON.stringify({ line: `call ${tester} Tester.Echo {"message":"terminal-csrf"}` }));
      out.rpc = await blind("http://WEB/rpc", JSON.stringify({ service: tester, endpoint: "Tester.Echo", request: { message: "rpc-csrf" } }));
      try { out.registry = await (await fetch("http://WEB/registry", { headers: { Accept: "application/json" } })).text(); }
      catch (e) { out.registry = "blocked"; }
      out.publish = await blind("http://PX/_pub/NS.topic", JSON.stringify({ text: "pub-csrf" }));
      out.ws = await new Promise((done) => {
        const ws = new WebSocket("ws://GW/tester/shout");
        ws.onopen = () => ws.send(JSON.stringify({ text: "ws-hijack" }));
        ws.onmessage = (m) => done("read " + m.data);
        ws.onerror = () => done("refused");
        ws.onclose = () => done("closed");
        setTimeout(() => done("no answer"), 5000);
      });
      return JSON.stringify(out);
    })()"#
        .replace("NS", &ns)
        .replace("GW", &gw)
        .replace("WEB", &web)
        .replace("PX", &px);
    let out: serde_json::Value = serde_json::from_str(browser.eval(&attack).await.as_str().unwrap()).unwrap();
    assert_eq!(out["read"], "blocked", "another origin read a reply: {out}");
    assert_eq!(out["registry"], "blocked", "another origin read the registry: {out}");
    assert!(!out["ws"].as_str().unwrap().starts_with("read"), "another origin used a websocket: {out}");
    let n = ns.clone();
    // What the blind requests did: nothing reached a service or a subscriber.
    let reached = blocking(move || {
        let (code, _, body) = post(&format!("http://{gw}/tester/echo"), r#"{"message":"after"}"#, &[]);
        assert_eq!(code, 200, "{body}");
        // DNS rebinding: the tools answer only their own names.
        let rebound = |addr: &str, path: &str| {
            let port = addr.rsplit(':').next().unwrap();
            curl_head(&["-H", &format!("Host: attacker.example:{port}"), &format!("http://{addr}{path}")]).0
        };
        assert_eq!(rebound(&gw, "/"), 403);
        assert_eq!(rebound(&web, "/registry"), 403);
        // The same refusals, asked without a browser.
        let evil = "Origin: http://attacker.example";
        let preflight = curl_head(&[
            "-X",
            "OPTIONS",
            "-H",
            evil,
            "-H",
            "Access-Control-Request-Method: POST",
            &format!("http://{gw}/tester/echo"),
        ]);
        assert_eq!(preflight.0, 403);
        assert!(!preflight.1.contains("access-control-allow"), "{}", preflight.1);
        assert_eq!(post(&format!("http://{gw}/tester/echo"), "{}", &[evil]).0, 403);
        // What a browser sends without Origin (an <img>, a link) it marks as another site's.
        let img = curl_head(&["-H", "Sec-Fetch-Site: cross-site", &format!("http://{gw}/tester/echo?message=img")]);
        assert_eq!(img.0, 403, "{}", img.2);
        // The proxy takes only POSTs, and only under its own names (or `micro`).
        let port = px.rsplit(':').next().unwrap();
        assert_eq!(curl_head(&["-H", "Content-Type: application/json", &format!("http://{px}/_pub/{n}.topic")]).0, 405);
        let host = format!("Host: attacker.example:{port}");
        let rebound = ["-H", "Content-Type: application/json", "-H", &host, "-d", "{}"];
        assert_eq!(curl_head(&[&rebound[..], &[&format!("http://{px}/_pub/{n}.topic")]].concat()).0, 403);
        assert_eq!(curl_head(&["-d", "message=form", &format!("http://{gw}/tester/echo")]).0, 415);
        let text = ["-H", "Content-Type: text/plain", "--data-binary", r#"{"text":"x"}"#];
        assert_eq!(curl_head(&[&text[..], &[&format!("http://{px}/_pub/{n}.topic")]].concat()).0, 415);
        assert_eq!(curl_head(&[&text[..], &[&format!("http://{web}/terminal")]].concat()).0, 415);
        let session = Session::open(&web);
        let line = format!(r#"{{"line":"call {n}.tester Tester.Echo {{\"message\":\"no-token\"}}"}}"#);
        let jar = session.jar.path().display().to_string();
        let no_csrf = curl_head(&[
            "-b",
            &jar,
            "-H",
            "Content-Type: application/json",
            "--data-binary",
            &line,
            &format!("http://{web}/terminal"),
        ]);
        assert_eq!(no_csrf.0, 403, "a state-changing request without the CSRF token: {}", no_csrf.2);
        let ok_line = format!(r#"{{"line":"call {n}.tester Tester.Echo {{\"message\":\"from-the-dashboard\"}}"}}"#);
        let (code, _, reply) = session.post(&format!("http://{web}/terminal"), &ok_line, &[]);
        assert!(code == 200 && reply.contains(r#""ok":true"#), "the dashboard's own page works: {reply}");
    })
    .await;
    let _ = reached;
    let messages = recorder.messages();
    for refused in
        ["read-by-another-origin", "simple-request", "simple-get", "terminal-csrf", "rpc-csrf", "ws-hijack", "no-token"]
    {
        assert!(!messages.iter().any(|m| m == refused), "{refused} reached the service: {messages:?}");
    }
    assert!(messages.iter().any(|m| m == "from-the-dashboard"), "{messages:?}");
    assert!(published.lock().unwrap().is_empty(), "another origin published: {:?}", published.lock().unwrap());
    drop(tools);
    site.stop().await;
    listener.stop().await;
    svc.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn item02_the_dashboard_beyond_loopback_needs_a_token_every_session_logs_in_with() {
    // Refused before it binds anything.
    let out = std::process::Command::new(micro_bin()).args(["web", "--web_address", "0.0.0.0:0"]).output().unwrap();
    assert_eq!(out.status.code(), Some(2), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(String::from_utf8_lossy(&out.stderr).contains("--web_token"), "{}", String::from_utf8_lossy(&out.stderr));

    blocking(|| {
        let (_web, web) = tool(&["web", "--web_address", "127.0.0.1:0", "--web_token", "open sesame"]);
        let (code, _, page) = curl_head(&[&format!("http://{web}/registry")]);
        assert_eq!(code, 401);
        assert!(page.contains(r#"id="login""#), "the login page: {page}");
        assert_eq!(curl_head(&["-H", "Accept: application/json", &format!("http://{web}/registry")]).0, 401);
        let session = Session::open_at(&web, "/login");
        let login = format!("http://{web}/login");
        assert_eq!(session.post(&login, r#"{"token":"guess"}"#, &[]).0, 401);
        let (code, head, _) = session.post(&login, r#"{"token":"open sesame"}"#, &[]);
        assert_eq!(code, 200);
        let cookie =
            head.lines().find_map(|l| l.strip_prefix("set-cookie: ")).expect("a new session cookie").to_string();
        let pair = cookie.split(';').next().unwrap().to_string();
        let (code, _, body) = curl_head(&[
            "-H",
            &format!("Cookie: {pair}"),
            "-H",
            "Accept: application/json",
            &format!("http://{web}/registry"),
        ]);
        assert_eq!(code, 200, "{body}");
    })
    .await;
}

// ---- 3. The unauthenticated inbox ----

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn item03_the_inbox_and_web_pages_need_the_token_and_tls_subscribers_get_their_messages() {
    let certs = micro_tests::certs::Certs::generate();
    let registry = memory_registry();
    let topic = "atk.inbox";
    let got: Arc<Mutex<Vec<String>>> = Arc::default();
    let g = got.clone();
    let mut tls = options(true);
    tls.server_tls_cert = Some(certs.arg("server.pem"));
    tls.server_tls_key = Some(certs.arg("server.key"));
    let inbox = Service::builder().name("inbox").options(tls).registry(registry.clone()).build().unwrap();
    micro::register_subscriber(inbox.server(), topic, move |req: Request<Line>| {
        let g = g.clone();
        async move {
            g.lock().unwrap().push(req.text.clone());
            Ok(())
        }
    });
    inbox.server().serve_web(|_page: micro::web::Page| async { micro::web::Response::text("a private page") });
    let addr = inbox.start().await.unwrap();
    let record = registry.get_service(&micro::broker::http::topic_service(topic)).await.unwrap();
    assert_eq!(
        record[0].nodes[0].metadata.get("secure").map(String::as_str),
        Some("true"),
        "the topic record says TLS"
    );

    let ca = certs.arg("ca.pem");
    let (stranger, page, page_with_token) = blocking(move || {
        let base = ["--cacert", ca.as_str()];
        let sub = format!("https://{addr}/_sub/{topic}");
        let body = ["-H", "Content-Type: application/json", "--data-binary", r#"{"text":"from a stranger"}"#];
        let stranger = curl_head(&[&base[..], &body, &[&sub]].concat());
        let page = curl_head(&[&base[..], &[&format!("https://{addr}/about")]].concat());
        let bearer = format!("Authorization: Bearer {TOKEN}");
        let with = curl_head(&[&base[..], &["-H", &bearer, &format!("https://{addr}/about")]].concat());
        (stranger, page, with)
    })
    .await;
    assert_eq!(stranger.0, 401, "the inbox took a message without the token: {}", stranger.2);
    assert_eq!(page.0, 401, "a web page answered without the token");
    assert_eq!((page_with_token.0, page_with_token.2.as_str()), (200, "a private page"));

    // A service with the token and the CA publishes over the HTTP broker: delivered over TLS.
    let mut sender = options(true);
    sender.client_tls_ca = Some(certs.arg("ca.pem"));
    let outbox = Service::builder().name("outbox").options(sender).registry(registry.clone()).build().unwrap();
    outbox.start().await.unwrap();
    micro::Publisher::new(topic, outbox.client().clone()).publish(&Line { text: "signed".into() }).await.unwrap();
    assert_eq!(*got.lock().unwrap(), ["signed"], "only the message with the token arrived");
    outbox.stop().await;
    inbox.stop().await;
}

// ---- 4. Memory from five bytes ----

async fn h2_raw(addr: &str, path: &str, content_type: &str, body: Vec<u8>) -> (u16, http::HeaderMap) {
    micro_tests::h2_request(addr, path, &[("content-type", content_type)], body).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn item04_every_body_frame_message_and_reply_has_a_limit() {
    let ns = ns("mem");
    let registry = mdns();
    let recorder = Recorder::default();
    let svc = service(registry.clone(), &format!("{ns}.tester"), options(false), &recorder).await;
    let site = Service::builder()
        .name(format!("{ns}.site"))
        .options(options(false))
        .registry(registry.clone())
        .build()
        .unwrap();
    site.server().serve_web(|_page: micro::web::Page| async { micro::web::Response::text(vec![b'x'; 8 << 20]) });
    site.start().await.unwrap();

    let n = ns.clone();
    let (tools, gw, px, http_gw) = blocking(move || {
        let (gw_child, gw) = tool(&["api", "--api_address", "127.0.0.1:0", "--namespace", &n]);
        let (http_child, http_gw) =
            tool(&["api", "--api_address", "127.0.0.1:0", "--namespace", &n, "--handler", "http"]);
        let (px_child, px) = tool(&["proxy", "--proxy_address", "127.0.0.1:0", "--service", &format!("{n}.tester")]);
        until("the gateway to reach the service", || {
            post(&format!("http://{gw}/tester/echo"), r#"{"message":"ready"}"#, &[]).0 == 200
        });
        (vec![gw_child, http_child, px_child], gw, px, http_gw)
    })
    .await;

    // A frame header that announces 4 GiB: refused at once, not waited for.
    let mut frame = vec![0u8, 0xff, 0xff, 0xff, 0xff];
    frame.extend_from_slice(b"sixteen bytes...");
    let (status, trailers) = h2_raw(&px, "/testing.Tester/Echo", "application/grpc", frame).await;
    assert_eq!(status, 200);
    assert_eq!(trailers.get("grpc-status").map(|v| v.to_str().unwrap()), Some("8"), "RESOURCE_EXHAUSTED: {trailers:?}");

    let big = vec![b'a'; 5 << 20];
    let big_json = format!(r#"{{"text":"{}"}}"#, String::from_utf8_lossy(&big));
    let (pub_status, reply_status, reply_len) = blocking({
        let (px, http_gw, n) = (px.clone(), http_gw.clone(), ns.clone());
        let big_json = big_json.clone();
        move || {
            let file = tempfile::NamedTempFile::new().unwrap();
            std::fs::write(file.path(), &big_json).unwrap();
            let data = format!("@{}", file.path().display());
            let publish = curl_head(&[
                "-H",
                "Content-Type: application/json",
                "--data-binary",
                &data,
                &format!("http://{px}/_pub/{n}.topic"),
            ]);
            let reply = curl_head(&[&format!("http://{http_gw}/site/big")]);
            (publish.0, reply.0, reply.2.len())
        }
    })
    .await;
    assert_eq!(pub_status, 413, "a 5 MiB /_pub body");
    assert_eq!(reply_status, 502, "an 8 MiB upstream reply is not passed on ({reply_len} bytes came)");

    // A 5 MiB websocket message closes the socket as too big.
    use futures_util::{SinkExt, StreamExt};
    use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
    use tokio_tungstenite::tungstenite::Message;
    let (mut ws, _) = tokio_tungstenite::connect_async(format!("ws://{gw}/tester/shout")).await.unwrap();
    let _ = ws.send(Message::Text(big_json.into())).await;
    let mut close = None;
    while let Some(Ok(m)) = tokio::time::timeout(Duration::from_secs(10), ws.next()).await.unwrap() {
        if let Message::Close(frame) = m {
            close = frame.map(|f| f.code);
            break;
        }
    }
    assert_eq!(close, Some(CloseCode::Size), "the socket is closed as 'message too big'");
    assert!(recorder.messages().iter().all(|m| m.len() < 1024), "no 5 MiB message reached the service");
    drop(tools);
    site.stop().await;
    svc.stop().await;
}

// ---- 5. Resources chosen by the peer ----

/// `POST http://gw{path(i)}` with `{}` for `i` in `0..n`, `concurrency` at a time.
async fn flood(gw: &str, n: usize, concurrency: usize, path: impl Fn(usize) -> String + Send + Sync + 'static) {
    let client: hyper_util::client::legacy::Client<_, http_body_util::Full<bytes::Bytes>> =
        hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new()).build_http();
    let path = Arc::new(path);
    let next = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..concurrency {
        let (client, path, next, gw) = (client.clone(), path.clone(), next.clone(), gw.to_string());
        tasks.spawn(async move {
            loop {
                let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                if i >= n {
                    return;
                }
                let req = http::Request::post(format!("http://{gw}{}", path(i)))
                    .header("content-type", "application/json")
                    .body(http_body_util::Full::new(bytes::Bytes::from_static(b"{}")))
                    .unwrap();
                let resp = client.request(req).await.expect("the gateway answers");
                assert_ne!(resp.status().as_u16(), 200, "a random name was found");
                let _ = http_body_util::BodyExt::collect(resp.into_body()).await;
            }
        });
    }
    while let Some(r) = tasks.join_next().await {
        r.expect("a flood task did not panic");
    }
}

/// A gauge from etcd's `/metrics`.
fn etcd_metric(etcd: &micro_tests::Etcd, name: &str) -> f64 {
    let (_, _, body) = curl_head(&[&format!("http://{}/metrics", etcd.address())]);
    body.lines()
        .find_map(|l| l.strip_prefix(name).and_then(|rest| rest.strip_prefix(' ')))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or_else(|| panic!("etcd has no {name} metric"))
}

/// The resident memory of a process, in KiB.
fn rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("VmRSS")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn item05_names_strangers_make_up_open_no_registry_watches() {
    let etcd = micro_tests::Etcd::start();
    let registry = micro::config::plugins::registry("etcd", &[etcd.address()]).unwrap();
    let ns = ns("watch");
    let recorder = Recorder::default();
    let svc = service(registry.clone(), &format!("{ns}.tester"), options(false), &recorder).await;
    let at = |args: &[&str]| {
        let mut all = args.to_vec();
        all.extend(["--registry", "etcd", "--registry_address"]);
        let addr = etcd.address();
        let owned: Vec<String> = all.iter().map(|s| s.to_string()).chain([addr]).collect();
        move || {
            let refs: Vec<&str> = owned.iter().map(String::as_str).collect();
            tool(&refs)
        }
    };
    let n = ns.clone();
    let (gw_child, gw) = blocking(at(&["api", "--api_address", "127.0.0.1:0", "--namespace", &n])).await;
    let (http_child, http_gw) =
        blocking(at(&["api", "--api_address", "127.0.0.1:0", "--namespace", &n, "--handler", "http"])).await;
    let url = format!("http://{gw}/tester/echo");
    blocking(move || until("the gateway to reach the service", || post(&url, r#"{"message":"ready"}"#, &[]).0 == 200))
        .await;
    let before = etcd_metric(&etcd, "etcd_debugging_mvcc_watcher_total");

    let salt = std::process::id();
    flood(&gw, 1000, 8, move |i| format!("/w{salt}x{i}/call")).await;
    let warm = rss_kib(gw_child.0.id());
    flood(&gw, 9000, 8, move |i| format!("/v{salt}y{i}/call")).await;
    flood(&http_gw, 1000, 8, move |i| format!("/h{salt}z{i}/page")).await;
    let after = rss_kib(gw_child.0.id());
    let watchers = etcd_metric(&etcd, "etcd_debugging_mvcc_watcher_total");
    assert!(watchers <= 64.0, "{watchers} etcd watchers after 11,000 requests for unknown names (from {before})");
    assert!(after < warm + 16 * 1024, "the gateway grew from {warm} KiB to {after} KiB over 9,000 unknown names");
    drop((gw_child, http_child));
    svc.stop().await;
}

// ---- 6. Connections held forever ----

/// Whether the server closed `s` (EOF or reset) before `deadline`.
/// A keep-alive connection that was served one request and has begun its next, or `None` if it
/// was refused.
fn served(addr: &str) -> Option<std::net::TcpStream> {
    let mut s = std::net::TcpStream::connect(addr).ok()?;
    s.write_all(b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n").ok()?;
    s.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    let mut head = [0u8; 12];
    s.read_exact(&mut head).ok()?;
    (&head == b"HTTP/1.1 200").then_some(())?;
    s.write_all(b"GET / HTTP/1.1\r\n").ok()?;
    Some(s)
}

fn closed_by(s: &mut std::net::TcpStream, deadline: Instant) -> bool {
    let mut buf = [0u8; 512];
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return false;
        }
        s.set_read_timeout(Some(left)).unwrap();
        match s.read(&mut buf) {
            Ok(0) => return true,
            Ok(_) => continue,
            Err(e) if matches!(e.kind(), std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut) => {
                return false
            }
            Err(_) => return true,
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn item06_no_connection_is_held_past_its_deadlines() {
    let ns = ns("slow");
    let registry = mdns();
    let recorder = Recorder::default();
    let svc = service(registry.clone(), &format!("{ns}.tester"), options(false), &recorder).await;
    let n = ns.clone();
    blocking(move || {
        let (_gw, gw) = tool(&[
            "api", "--api_address", "127.0.0.1:0", "--namespace", &n,
            "--server_header_timeout", "2s", "--server_read_timeout", "1s",
        ]);
        let url = format!("http://{gw}/tester/echo");
        until("the gateway to reach the service", || post(&url, r#"{"message":"ready"}"#, &[]).0 == 200);

        // A slowloris: 500 connections that send 10 bytes each (half an HTTP/2 preface, half an
        // HTTP/1 request line) and wait.
        let opened = Instant::now();
        let mut held: Vec<std::net::TcpStream> = (0..500)
            .map(|i| {
                let mut s = std::net::TcpStream::connect(&gw).unwrap();
                let start: &[u8] = if i % 2 == 0 { b"PRI * HTTP" } else { b"POST /rpc " };
                s.write_all(start).unwrap();
                s
            })
            .collect();
        let asked = Instant::now();
        let (code, _, body) = post(&url, r#"{"message":"meanwhile"}"#, &[]);
        let took = asked.elapsed();
        assert_eq!(code, 200, "{body}");
        assert!(took < Duration::from_secs(1), "a normal client waited {took:?} behind 500 slow ones");
        let deadline = opened + Duration::from_secs(2) + Duration::from_secs(5);
        let open = held.iter_mut().map(|s| closed_by(s, deadline)).filter(|closed| !closed).count();
        assert_eq!(open, 0, "{open} slow connections still open 5 s after the 2 s header timeout");

        // A body that does not arrive: 408 after the read timeout.
        let mut s = std::net::TcpStream::connect(&gw).unwrap();
        write!(s, "POST /tester/echo HTTP/1.1\r\nHost: {gw}\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n{{\"mess").unwrap();
        s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        let mut answer = String::new();
        let _ = s.read_to_string(&mut answer);
        assert!(answer.starts_with("HTTP/1.1 408"), "a stalled body: {answer:?}");
    })
    .await;

    // A connection cap, and an idle HTTP/2 connection closed.
    let n = ns.clone();
    let (_capped, capped) = blocking(move || {
        tool(&[
            "api",
            "--api_address",
            "127.0.0.1:0",
            "--namespace",
            &n,
            "--server_max_connections",
            "8",
            "--server_idle_timeout",
            "1s",
        ])
    })
    .await;
    let stream = tokio::net::TcpStream::connect(&capped).await.unwrap();
    let (mut sender, conn) = hyper::client::conn::http2::handshake(
        hyper_util::rt::TokioExecutor::new(),
        hyper_util::rt::TokioIo::new(stream),
    )
    .await
    .unwrap();
    let conn = tokio::spawn(conn);
    let req =
        http::Request::get(format!("http://{capped}/")).body(http_body_util::Empty::<bytes::Bytes>::new()).unwrap();
    assert_eq!(sender.send_request(req).await.unwrap().status(), 200);
    let idle_closed = tokio::time::timeout(Duration::from_secs(10), conn).await;
    assert!(idle_closed.is_ok(), "an idle HTTP/2 connection stayed open 10 s past a 1 s idle timeout");
    // Websockets count against the cap for as long as they are open.
    let mut sockets = vec![];
    for _ in 0..8 {
        let (ws, _) =
            tokio_tungstenite::connect_async(format!("ws://{capped}/tester/shout")).await.expect("a websocket");
        sockets.push(ws);
    }
    let c = capped.clone();
    blocking(move || {
        let mut ninth = std::net::TcpStream::connect(&c).unwrap();
        assert!(closed_by(&mut ninth, Instant::now() + Duration::from_secs(2)), "a 9th connection beside 8 websockets");
    })
    .await;
    drop(sockets);
    blocking(move || {
        // Closed sockets free their places; plain connections count the same.
        until("the websockets to close", || {
            let mut probe = std::net::TcpStream::connect(&capped).unwrap();
            probe.write_all(b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n").is_ok() && {
                let mut answer = String::new();
                let _ = probe.read_to_string(&mut answer);
                answer.starts_with("HTTP/1.1 200")
            }
        });
        // Eight connections, each seen to be served (a websocket's place may be freed a moment
        // after the probe's), then left halfway into their next request.
        let deadline = Instant::now() + Duration::from_secs(20);
        let held = loop {
            let held: Vec<std::net::TcpStream> = (0..8).filter_map(|_| served(&capped)).collect();
            if held.len() == 8 {
                break held;
            }
            assert!(Instant::now() < deadline, "8 connections were not all served once the websockets closed");
        };
        let mut ninth = std::net::TcpStream::connect(&capped).unwrap();
        assert!(
            closed_by(&mut ninth, Instant::now() + Duration::from_secs(2)),
            "a 9th connection was held beyond a cap of 8"
        );
        drop(held);
    })
    .await;
    svc.stop().await;
}

// ---- 7. Panics from input ----

/// Sends raw bytes as one HTTP/1.1 request; the status code of the answer (0 for none).
fn raw_status(addr: &str, request: &[u8]) -> u16 {
    let mut s = std::net::TcpStream::connect(addr).unwrap();
    s.write_all(request).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let mut buf = vec![0u8; 4096];
    let n = s.read(&mut buf).unwrap_or(0);
    let head = String::from_utf8_lossy(&buf[..n]);
    head.strip_prefix("HTTP/1.1 ").and_then(|r| r.get(..3)).and_then(|c| c.parse().ok()).unwrap_or(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn item07_malformed_input_gets_an_answer_and_the_tools_keep_serving() {
    let nats = micro_tests::Nats::start();
    let ns = ns("panic");
    let registry = mdns();
    let recorder = Recorder::default();
    let svc = service(registry.clone(), &format!("{ns}.tester"), options(false), &recorder).await;
    let n = ns.clone();
    let nats_addr = nats.address();
    blocking(move || {
        let (_gw, gw) = tool(&["api", "--api_address", "127.0.0.1:0", "--namespace", &n]);
        let (_web, web) = tool(&["web", "--web_address", "127.0.0.1:0"]);
        let (_px, px) =
            tool(&["proxy", "--proxy_address", "127.0.0.1:0", "--broker", "nats", "--broker_address", &nats_addr]);
        let url = format!("http://{gw}/tester/echo");
        until("the gateway to reach the service", || post(&url, r#"{"message":"ready"}"#, &[]).0 == 200);
        // A stray % before a multi-byte character, in a query, a page's query and a websocket's.
        let query = b"?a=%a\xc3\xa9";
        let request = |addr: &str, path: &[u8], extra: &str| {
            let mut r = b"GET ".to_vec();
            r.extend_from_slice(path);
            r.extend_from_slice(query);
            r.extend_from_slice(format!(" HTTP/1.1\r\nHost: {addr}\r\n{extra}Connection: close\r\n\r\n").as_bytes());
            r
        };
        assert_eq!(raw_status(&gw, &request(&gw, b"/tester/echo", "")), 405);
        assert_ne!(raw_status(&web, &request(&web, b"/registry", "")), 0, "the dashboard answered");
        let upgrade =
            "Upgrade: websocket\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n";
        assert_eq!(raw_status(&gw, &request(&gw, b"/tester/shout", upgrade)), 101);
        // A topic with a line feed, published over NATS through the proxy.
        let lf = curl_head(&["-H", "Content-Type: application/json", "-d", "{}", &format!("http://{px}/_pub/a%0Ab")]);
        assert_eq!(lf.0, 400, "{}", lf.2);
        // Everyone still serves.
        assert_eq!(post(&url, r#"{"message":"still"}"#, &[]).0, 200);
        assert_eq!(curl_head(&[&format!("http://{web}/registry")]).0, 200);
        let fine = curl_head(&["-H", "Content-Type: application/json", "-d", "{}", &format!("http://{px}/_pub/a.b")]);
        assert_eq!(fine.0, 200, "{}", fine.2);
    })
    .await;
    svc.stop().await;
}

// ---- 8. A function stopped by a stranger ----

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn item08_a_function_serves_the_first_call_that_reaches_its_handler() {
    let registry = memory_registry();
    let recorder = Recorder::default();
    let svc =
        Service::builder().name("atk-function").options(options(true)).registry(registry.clone()).build().unwrap();
    register_tester_handler(svc.server(), recorder.clone());
    let function = micro::Function::from_service(svc);
    let f = function.clone();
    let running = tokio::spawn(async move { f.run().await });
    let client = |token: Option<&str>| {
        let client = Client::new(registry.clone(), ClientOptions { retries: 0, ..Default::default() });
        match token {
            Some(t) => client.wrap(micro::wrapper::BearerToken::new(&Secret::new(t))),
            None => client,
        }
    };
    let anonymous = client(None);
    wait_for("the function to register", Duration::from_secs(10), async || {
        anonymous.call_json("atk-function", "Debug.Health", b"{}", CallOptions::new()).await.is_ok()
    })
    .await;
    let echo = |m: &str| EchoRequest { message: m.into(), ..Default::default() };
    let stranger = TesterClient::new("atk-function", anonymous.clone());
    assert_eq!(stranger.echo(echo("unauthorized")).await.unwrap_err().code, 401);
    let trusted = client(Some(TOKEN));
    let malformed = trusted.call_json("atk-function", "Tester.Echo", b"{not json", CallOptions::new()).await;
    assert_eq!(malformed.unwrap_err().code, 400);
    assert!(!running.is_finished(), "the function stopped before its call");
    let reply =
        TesterClient::new("atk-function", trusted).echo(echo("the call")).await.expect("the real call is served");
    assert_eq!(reply.message, "the call");
    tokio::time::timeout(Duration::from_secs(20), running)
        .await
        .expect("the function exits after its call")
        .unwrap()
        .unwrap();
    assert_eq!(recorder.messages(), ["the call"]);
}

// ---- 9. Trusting the registry ----

/// Announces a node of `name` over mDNS from `daemon`: the record says `address`, the SRV and A
/// records say `srv`.
fn announce(daemon: &mdns_sd::ServiceDaemon, name: &str, id: &str, address: &str, srv: (&str, u16), secure: bool) {
    let mut metadata = BTreeMap::from([("transport".to_string(), "http".to_string())]);
    if secure {
        metadata.insert("secure".into(), "true".into());
    }
    let record = micro::registry::Service {
        name: name.into(),
        version: "latest".into(),
        nodes: vec![micro::registry::Node { id: id.into(), address: address.into(), metadata }],
        ..Default::default()
    };
    let txt = micro::registry::mdns::encode_txt(&record, Duration::from_secs(60), 1);
    let ip: std::net::IpAddr = srv.0.parse().unwrap();
    let mut info =
        mdns_sd::ServiceInfo::new(micro::registry::mdns::SERVICE_TYPE, id, &format!("{id}.local."), ip, srv.1, txt)
            .unwrap();
    info.set_requires_probe(false);
    daemon.register(info).unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn item09_records_that_lie_are_not_believed_and_only_admins_change_the_registry() {
    let ns = ns("mdns");
    let spoofer = micro::registry::mdns::loopback_daemon().unwrap();
    let (legit, spoof, tls) = (format!("{ns}.legit"), format!("{ns}.spoof"), format!("{ns}.tls"));
    // The liars first, the honest records last: once those are heard, so were the lies.
    announce(&spoofer, &spoof, &format!("{ns}-far-1"), "192.0.2.7:80", ("127.0.0.1", 80), false);
    announce(&spoofer, &spoof, &format!("{ns}-port-1"), "127.0.0.1:7102", ("127.0.0.1", 7103), false);
    announce(&spoofer, &tls, &format!("{ns}-tls-2"), "127.0.0.1:7105", ("127.0.0.1", 7105), false);
    announce(&spoofer, &tls, &format!("{ns}-tls-1"), "127.0.0.1:7104", ("127.0.0.1", 7104), true);
    announce(&spoofer, &legit, &format!("{ns}-legit-1"), "127.0.0.1:7101", ("127.0.0.1", 7101), false);

    let registry = mdns();
    wait_for("the honest records", Duration::from_secs(20), async || {
        registry.get_service(&legit).await.is_ok() && registry.get_service(&tls).await.is_ok()
    })
    .await;
    let names =
        |s: Vec<micro::registry::Service>| s.into_iter().flat_map(|s| s.nodes).map(|n| n.id).collect::<Vec<_>>();
    assert_eq!(registry.get_service(&spoof).await.map(names).unwrap_or_default(), Vec::<String>::new());
    assert_eq!(
        names(registry.get_service(&tls).await.unwrap()),
        [format!("{ns}-tls-1")],
        "no plaintext node for a TLS service"
    );
    let _ = spoofer.shutdown();

    // The bot: a Slack user who is not an admin cannot change the registry; an admin can.
    let slack = Arc::new(micro_tests::slack::Slack::default());
    let record = |id: &str| {
        format!(r#"register service {{"name":"{ns}.bot","nodes":[{{"id":"{id}","address":"127.0.0.1:7106"}}]}}"#)
    };
    let api = micro_tests::slack::stand_in(
        slack.clone(),
        vec![
            micro_tests::slack::mention("U-stranger", &record("stranger")),
            micro_tests::slack::direct("U-admin", &record("admin")),
        ],
    )
    .await;
    let bot = std::process::Command::new(micro_bin())
        .args(["bot", "--inputs", "slack", "--slack_api_url", &api, "--slack_app_token", "xapp-test"])
        .args(["--slack_bot_token", "xoxb-test", "--bot_admins", "U-admin", "--registry", "memory"])
        .stdin(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let _bot = Child(bot);
    wait_for("two replies", Duration::from_secs(20), async || slack.posted.lock().unwrap().len() >= 2).await;
    let posted = slack.posted.lock().unwrap().clone();
    assert!(posted[0].1.contains("only the bot's admins"), "a stranger changed the registry: {}", posted[0].1);
    assert_eq!(posted[1].1, "ok", "an admin may");
}

// ---- 10. Header spoofing ----

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn item10_callers_cannot_set_the_platforms_headers() {
    let ns = ns("hdr");
    let registry = mdns();
    let recorder = Recorder::default();
    let svc = service(registry.clone(), &format!("{ns}.tester"), options(false), &recorder).await;
    // What subscribers hear: the text (the event's data, or the line) and the message's headers.
    let heard: Arc<Mutex<Vec<(String, BTreeMap<String, String>)>>> = Arc::default();
    let listener = Service::builder()
        .name(format!("{ns}.listener"))
        .options(options(false))
        .registry(registry.clone())
        .build()
        .unwrap();
    let h = heard.clone();
    micro::register_subscriber(
        listener.server(),
        &format!("{ns}.events"),
        move |req: Request<micro::api::event::Event>| {
            let h = h.clone();
            async move {
                let md = req.metadata().iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
                h.lock().unwrap().push((req.data.clone(), md));
                Ok(())
            }
        },
    );
    let h = heard.clone();
    micro::register_subscriber(listener.server(), &format!("{ns}.lines"), move |req: Request<Line>| {
        let h = h.clone();
        async move {
            let md = req.metadata().iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
            h.lock().unwrap().push((req.text.clone(), md));
            Ok(())
        }
    });
    listener.start().await.unwrap();
    let n = ns.clone();
    blocking(move || {
        let (_gw, gw) = tool(&["api", "--api_address", "127.0.0.1:0", "--namespace", &n]);
        let (_ev, ev) = tool(&["api", "--api_address", "127.0.0.1:0", "--namespace", &n, "--handler", "event"]);
        let (_px, px) = tool(&["proxy", "--proxy_address", "127.0.0.1:0"]);
        let url = format!("http://{gw}/tester/echo");
        until("the gateway to reach the service", || post(&url, r#"{"message":"ready"}"#, &[]).0 == 200);
        let spoofed = [
            "Cookie: session=stolen",
            "X-Forwarded-For: 6.6.6.6",
            "X-Real-IP: 6.6.6.6",
            "Micro-Topic: elsewhere",
            "Micro-Queue: muted",
            "Micro-Id: chosen",
            "micro-service: go.micro.other",
            "Connection: x-hop",
            "X-Hop: one hop only",
            "X-User: ann",
        ];
        assert_eq!(post(&url, r#"{"message":"spoofed"}"#, &spoofed).0, 200);
        let events = format!("http://{ev}/events");
        assert_eq!(post(&events, r#"{"text":"via the event handler"}"#, &spoofed).0, 200);
        let publish = format!("http://{px}/_pub/{n}.lines");
        assert_eq!(post(&publish, r#"{"text":"via the proxy"}"#, &spoofed).0, 200);
    })
    .await;
    let md = recorder.metadata_of("spoofed").expect("the call arrived");
    assert_eq!(md.get("x-user").map(String::as_str), Some("ann"), "{md:?}");
    assert_eq!(md.get("x-forwarded-for").map(String::as_str), Some("127.0.0.1"), "the real peer: {md:?}");
    for stripped in ["cookie", "x-real-ip", "micro-topic", "micro-queue", "micro-id", "micro-service", "x-hop"] {
        assert!(!md.contains_key(stripped), "{stripped} reached the service: {md:?}");
    }
    wait_for("both events", Duration::from_secs(10), async || heard.lock().unwrap().len() == 2).await;
    for (text, md) in heard.lock().unwrap().iter() {
        let get = |k: &str| md.iter().find(|(m, _)| m.eq_ignore_ascii_case(k)).map(|(_, v)| v.as_str());
        let topic = get("micro-topic").unwrap_or_default();
        assert!(topic == format!("{ns}.events") || topic == format!("{ns}.lines"), "{text}: {md:?}");
        assert_ne!(get("micro-id"), Some("chosen"), "{text}: {md:?}");
        assert!(get("cookie").is_none() && get("micro-queue").is_none(), "{text}: {md:?}");
    }
    listener.stop().await;
    svc.stop().await;
}

// ---- 11. Web services on the dashboard's origin ----

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn item11_a_web_service_cannot_act_as_the_dashboard() {
    let ns = ns("web");
    let registry = mdns();
    let recorder = Recorder::default();
    let svc = service(registry.clone(), &format!("{ns}.tester"), options(false), &recorder).await;
    let alias = format!("evil{}", std::process::id());
    let asked: Arc<Mutex<Vec<(String, String)>>> = Arc::default();
    let a = asked.clone();
    let page = r#"<!doctype html><title>a web service</title><script>
(async () => {
  const report = (k, v) => { new Image().src = "/ALIAS/report?" + k + "=" + encodeURIComponent(v); };
  let token = "";
  try {
    const page = await (await fetch("/terminal")).text();
    token = (page.match(/csrf-token" content="([^"]*)"/) || [])[1] || "";
    report("page", token ? "read" : "no token");
  } catch (e) { report("page", "blocked"); }
  try {
    const r = await fetch("/terminal", { method: "POST", headers: { "Content-Type": "application/json", "X-CSRF-Token": token },
      body: JSON.stringify({ line: 'call NS.tester Tester.Echo {"message":"from-a-web-service"}' }) });
    report("terminal", String(r.status));
  } catch (e) { report("terminal", "blocked"); }
  report("done", "1");
})();
</script>"#
        .replace("ALIAS", &alias)
        .replace("NS", &ns);
    let site = Service::builder()
        .name(format!("go.micro.web.{alias}"))
        .options(options(false))
        .registry(registry.clone())
        .build()
        .unwrap();
    site.server().serve_web(move |p: micro::web::Page| {
        let (a, page) = (a.clone(), page.clone());
        async move {
            a.lock().unwrap().push((
                format!("{}?{}", p.path(), p.query().unwrap_or("")),
                p.header("cookie").unwrap_or("").to_string(),
            ));
            micro::web::Response::html(page)
                .header("set-cookie", "micro_web_session=fixed; Path=/")
                .header("x-note", "a web service")
        }
    });
    site.start().await.unwrap();
    let (web_child, web) = blocking(|| tool(&["web", "--web_address", "127.0.0.1:0"])).await;

    let url = format!("http://{web}/{alias}/");
    let w = url.clone();
    let head = blocking(move || {
        let mut last = (0, String::new(), String::new());
        until("the dashboard to reach the web service", || {
            last = curl_head(&[&w]);
            last.0 == 200
        });
        last.1
    })
    .await;
    assert!(head.contains("content-security-policy: sandbox"), "served without a sandbox: {head}");
    assert!(!head.contains("micro_web_session=fixed"), "a web service set the dashboard's cookie: {head}");

    let mut browser = micro_tests::browser::Browser::launch(800, 600).await;
    browser.open(&format!("http://{web}/terminal")).await;
    browser.open(&url).await;
    wait_for("the web service's script to finish", Duration::from_secs(20), async || {
        asked.lock().unwrap().iter().any(|(p, _)| p.contains("done=1"))
    })
    .await;
    let asked = asked.lock().unwrap().clone();
    let reports: Vec<&String> = asked.iter().map(|(p, _)| p).filter(|p| p.starts_with("/report")).collect();
    assert!(reports.iter().any(|p| p.contains("page=blocked")), "the web service read the dashboard: {reports:?}");
    assert!(!recorder.messages().iter().any(|m| m == "from-a-web-service"), "the web service ran a terminal command");
    assert!(
        asked.iter().all(|(_, cookie)| !cookie.contains("micro_web_session")),
        "the dashboard's cookie reached the web service: {asked:?}"
    );
    drop(web_child);
    site.stop().await;
    svc.stop().await;
}

// ---- 12. Code injection through `micro new` ----

#[test]
fn item12_micro_new_writes_no_code_it_was_handed() {
    let dir = tempfile::tempdir().unwrap();
    let injections: [&[&str]; 4] = [
        &["--fqdn", r#"go.micro.srv.x"); std::process::exit(1); ("#],
        &["--namespace", "go.micro\"; panic!(); \""],
        &["--plugin", r#"registry=etcd"); std::process::exit(1); ("#],
        &["--fqdn", "go.micro.srv.x\n// injected"],
    ];
    for (i, args) in injections.iter().enumerate() {
        let out = std::process::Command::new(micro_bin())
            .args(["new", &format!("github.com/attacker/p{i}")])
            .args(*args)
            .current_dir(dir.path())
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{args:?} was taken: {stderr}");
        assert_eq!(stderr.lines().count(), 1, "one sentence: {stderr}");
        assert!(!dir.path().join(format!("p{i}")).exists(), "{args:?} wrote a project");
    }
    let ok = std::process::Command::new(micro_bin())
        .args(["new", "github.com/attacker/fine", "--namespace", "acme.shop-1", "--plugin", "registry=etcd"])
        .current_dir(dir.path())
        .output()
        .unwrap();
    assert!(ok.status.success(), "{}", String::from_utf8_lossy(&ok.stderr));
    let main = std::fs::read_to_string(dir.path().join("fine/src/main.rs")).unwrap();
    assert!(main.contains(r#".name("acme.shop-1.srv.fine")"#), "{main}");
}
