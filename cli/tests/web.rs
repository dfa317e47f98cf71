//! `micro web` in a real headless Chromium: the registry page and a service's endpoints, a call
//! from the client page, the terminal, a web service behind `/<alias>/`, a service that starts
//! while the home page is open appearing without a reload, and a narrow screen; and a service
//! page's live traffic charts, fed from two nodes' metrics while the test calls them.
//! Screenshots of every page go to `target/artifacts/web/`.

mod common;

use std::path::PathBuf;
use std::process::{Command, Stdio};

use micro::web::{Page, Response};
use micro_tests::browser::Browser;
use micro_tests::Child;
use serde_json::Value;

fn artifact(name: &str) -> PathBuf {
    common::workspace().join("target/artifacts/web").join(name)
}

/// Builds the walkthrough's service (`micro new github.com/micro/example`) and starts it.
fn start_example(parent: &std::path::Path) -> Child {
    let (dir, _) = common::new_project(parent, "service", "github.com/micro/example");
    common::cargo(&dir, &["build"]);
    let child = Command::new(common::scaffolded_binary("example"))
        .env("MICRO_REGISTRY", "mdns")
        .stderr(Stdio::null())
        .spawn()
        .expect("the example service starts");
    Child(child)
}

/// A web service in this process: `go.micro.web.demo`, answering with what it was asked.
async fn start_web_service() -> micro::Service {
    let service = micro::Service::builder()
        .name("go.micro.web.demo")
        .metadata("icon", "/demo/icon.svg")
        .address("127.0.0.1:0")
        .build()
        .unwrap();
    service.server().serve_web(|page: Page| async move {
        match page.path() {
            "/icon.svg" => Response::html(
                r#"<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 8 8"><rect width="8" height="8" fill="teal"/></svg>"#,
            )
            .header("content-type", "image/svg+xml"),
            path => Response::html(format!(
                r#"<!doctype html><title>demo</title><h1 id="demo">demo at {path}</h1><p id="base">{}</p>"#,
                page.base_path()
            )),
        }
    });
    service.start().await.unwrap();
    service
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_dashboard_in_a_real_browser() {
    let tmp = tempfile::tempdir().unwrap();
    let _example = start_example(tmp.path());
    let demo = start_web_service().await;
    let (_web, addr) = common::listening(&["web", "--web_address", "127.0.0.1:0"], "web");
    assert!(addr.starts_with("127.0.0.1:"), "{addr}");
    let url = format!("http://{addr}");
    let mut b = Browser::launch(1280, 900).await;

    // The registry, then one service and its endpoints.
    b.open(&format!("{url}/registry")).await;
    b.wait(
        r#"document.querySelector('a[href="/registry?service=go.micro.srv.example"]')"#,
        "the example service listed",
    )
    .await;
    b.screenshot(&artifact("registry.png")).await;
    b.eval(r#"document.querySelector('a[href="/registry?service=go.micro.srv.example"]').click()"#).await;
    b.wait(r#"document.querySelector('[data-endpoint="Example.Call"]')"#, "the example's endpoints").await;
    let endpoints = b.eval(r#"[...document.querySelectorAll('[data-endpoint]')].map(e => e.dataset.endpoint)"#).await;
    for e in ["Example.Call", "Example.Stream", "Example.PingPong"] {
        assert!(endpoints.as_array().unwrap().contains(&Value::from(e)), "{e} missing from {endpoints}");
    }
    let call_card = b.eval(r#"document.querySelector('[data-endpoint="Example.Call"]').innerText"#).await;
    let call_card = call_card.as_str().unwrap();
    assert!(call_card.contains("name") && call_card.contains("string"), "request fields shown: {call_card}");
    assert!(call_card.contains("msg"), "response fields shown: {call_card}");
    b.screenshot(&artifact("service.png")).await;

    // The client: choose the service and endpoint, get a skeleton, type a request, send it.
    b.open(&format!("{url}/client")).await;
    b.eval(
        r#"(() => { const s = document.querySelector('#service'); s.value = 'go.micro.srv.example';
                    s.dispatchEvent(new Event('change')); })()"#,
    )
    .await;
    b.wait(r#"[...document.querySelectorAll('#endpoint option')].some(o => o.value === 'Example.Call')"#, "endpoints")
        .await;
    b.eval(
        r#"(() => { const e = document.querySelector('#endpoint'); e.value = 'Example.Call';
                    e.dispatchEvent(new Event('change')); })()"#,
    )
    .await;
    let skeleton = b.eval("JSON.parse(document.querySelector('#request').value)").await;
    assert_eq!(skeleton, serde_json::json!({ "name": "" }), "the request skeleton follows the field tree");
    b.eval("(() => { const r = document.querySelector('#request'); r.focus(); r.select(); })()").await;
    b.type_text(r#"{"name": "John"}"#).await;
    b.eval("document.querySelector('#send').click()").await;
    b.wait("document.querySelector('#response').textContent.includes('Hello John')", "the reply").await;
    let reply: Value =
        serde_json::from_str(b.eval("document.querySelector('#response').textContent").await.as_str().unwrap())
            .unwrap();
    assert_eq!(reply, serde_json::json!({ "msg": "Hello John" }));
    let status = b.eval("document.querySelector('#status').textContent").await;
    assert!(status.as_str().unwrap().starts_with("200 OK · "), "status and latency: {status}");
    b.screenshot(&artifact("client.png")).await;

    // An error is shown with its status, not swallowed.
    b.eval(
        r#"(() => { const r = document.querySelector('#request'); r.value = '{"name": 5}';
                    document.querySelector('#send').click(); })()"#,
    )
    .await;
    b.wait("document.querySelector('#status').textContent.startsWith('400')", "a 400 for a bad request").await;

    // The terminal, driven from the keyboard.
    b.open(&format!("{url}/terminal")).await;
    b.wait("document.activeElement && document.activeElement.id === 'line'", "the prompt focused").await;
    b.type_text("list services").await;
    b.press("Enter").await;
    b.wait("document.querySelector('#output').textContent.includes('go.micro.srv.example')", "list services").await;
    b.type_text(r#"call go.micro.srv.example Example.Call {"name": "Jane"}"#).await;
    b.press("Enter").await;
    b.wait("document.querySelector('#output').textContent.includes('Hello Jane')", "a call from the terminal").await;
    b.screenshot(&artifact("terminal.png")).await;

    // A web service behind /<alias>/, with its base path.
    b.open(&format!("{url}/demo/hello?x=1")).await;
    b.wait("document.querySelector('#demo')", "the demo page").await;
    assert_eq!(b.eval("document.querySelector('#demo').textContent").await, "demo at /hello");
    assert_eq!(b.eval("document.querySelector('#base').textContent").await, "/demo");

    // Home: web services first with their icon; a new service appears without a reload.
    b.open(&format!("{url}/")).await;
    b.wait(r#"document.querySelector('#web [data-name="go.micro.web.demo"] img.icon')"#, "the demo card with its icon")
        .await;
    assert_eq!(
        b.eval(r#"document.querySelectorAll('[data-name^="topic:"]').length"#).await,
        0,
        "the broker's subscriber records are not shown as services"
    );
    b.eval("window.stayed = 42").await;
    assert_eq!(b.eval("document.querySelector('[data-name=\"testing\"]') === null").await, true);
    let tester = Command::new(micro_tests::workspace_bin("tester"))
        .env("MICRO_REGISTRY", "mdns")
        .stderr(Stdio::null())
        .spawn()
        .expect("the tester starts");
    let tester = Child(tester);
    b.wait(r#"document.querySelector('[data-name="testing"]')"#, "the new service's card").await;
    assert_eq!(b.eval("window.stayed").await, 42, "the page was updated in place, not reloaded");
    b.screenshot(&artifact("home.png")).await;

    // Search narrows the cards.
    b.eval("document.querySelector('#search').focus()").await;
    b.type_text("testing").await;
    b.wait(r#"document.querySelector('[data-name="go.micro.srv.example"]').hidden"#, "search to filter").await;
    assert_eq!(b.eval(r#"document.querySelector('[data-name="testing"]').hidden"#).await, false);

    // A service that stops leaves the page, again without a reload.
    drop(tester);
    demo.stop().await;
    b.wait(r#"!document.querySelector('[data-name="go.micro.web.demo"]')"#, "the stopped web service to leave").await;

    // A narrow screen: nothing overflows sideways.
    b.viewport(390, 844, true).await;
    for page in ["/", "/registry?service=go.micro.srv.example", "/client", "/terminal"] {
        b.open(&format!("{url}{page}")).await;
        let overflow = b.eval("document.documentElement.scrollWidth - window.innerWidth").await;
        assert!(overflow.as_i64().unwrap() <= 0, "{page} overflows a narrow screen by {overflow}px");
    }
    b.screenshot(&artifact("terminal-narrow.png")).await;
}

#[test]
fn pages_answer_json_when_asked() {
    let (_web, addr) = common::listening(&["web", "--web_address", "127.0.0.1:0"], "web");
    let url = format!("http://{addr}");
    let get = |path: &str, accept: &str| {
        let (code, body) = micro_tests::curl(&["-H", &format!("Accept: {accept}"), &format!("{url}{path}")]);
        (body, code)
    };
    let (body, code) = get("/registry", "application/json");
    assert_eq!(code, 200);
    assert!(serde_json::from_str::<Value>(&body).unwrap().is_array(), "{body}");
    let (body, code) = get("/registry?service=go.micro.srv.nosuch", "application/json");
    assert_eq!(code, 404, "{body}");
    let (body, code) = get("/registry?service=go.micro.srv.nosuch", "text/html");
    assert_eq!(code, 404);
    assert!(body.contains("service go.micro.srv.nosuch not found"), "{body}");
    let (body, code) = get("/assets/app.js", "*/*");
    assert_eq!(code, 200);
    assert!(body.contains("EventSource"));
    let (_, code) = get("/nosuch/page", "text/html");
    assert_eq!(code, 404);
}

/// A tester node of `service`, on mDNS; with `token`, every call and page needs it.
fn tester_node(service: &str, token: Option<&str>) -> Child {
    let mut command = Command::new(micro_tests::workspace_bin("tester"));
    command.env("MICRO_REGISTRY", "mdns").env("MICRO_SERVER_NAME", service).stderr(Stdio::null());
    if let Some(t) = token {
        command.env("MICRO_AUTH_TOKEN", t);
    }
    Child(command.spawn().expect("the tester starts"))
}

/// Calls `Tester.Echo` (every other call fails) and `Tester.Peek` (120 ms each) until `stop`;
/// returns how many Echo calls it made.
fn load(
    tester: micro_tests::testing::TesterClient,
    stop: tokio::sync::watch::Receiver<bool>,
) -> tokio::task::JoinHandle<(u64, std::time::Duration)> {
    use micro_tests::testing::EchoRequest;
    let slow = tester.clone();
    let mut stop_slow = stop.clone();
    tokio::spawn(async move {
        while !*stop_slow.borrow_and_update() {
            let _ = slow.peek(EchoRequest { sleep_ms: 120, ..Default::default() }).await;
        }
    });
    tokio::spawn(async move {
        let started = std::time::Instant::now();
        let mut pace = tokio::time::interval(std::time::Duration::from_millis(20));
        let mut echoes = 0u64;
        while !*stop.borrow() {
            pace.tick().await;
            let fail_code = if echoes.is_multiple_of(2) { 0 } else { 500 };
            let _ = tester.echo(EchoRequest { fail_code, ..Default::default() }).await;
            echoes += 1;
        }
        (echoes, started.elapsed())
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_service_page_charts_its_live_traffic() {
    let service = format!("charted{}", std::process::id());
    let guarded = format!("guarded{}", std::process::id());
    let _nodes = [tester_node(&service, None), tester_node(&service, None), tester_node(&guarded, Some("s3cret"))];
    let (_web, addr) = common::listening(&["web", "--web_address", "127.0.0.1:0"], "web");
    let url = format!("http://{addr}");
    let registry: micro::registry::SharedRegistry = std::sync::Arc::new(micro::registry::MdnsRegistry::new().unwrap());
    let client = micro::client::Client::new(registry, Default::default());
    let tester = micro_tests::testing::TesterClient::new(service.clone(), client);
    let (stop, stopped) = tokio::sync::watch::channel(false);
    let calls = load(tester, stopped);

    // The page is opened once the dashboard's registry shows both nodes.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    loop {
        let nodes = tokio::task::spawn_blocking({
            let url = format!("{url}/registry?service={service}");
            move || {
                let out = Command::new("curl").args(["-s", "-H", "Accept: application/json", &url]).output().unwrap();
                serde_json::from_slice::<Value>(&out.stdout)
                    .ok()
                    .and_then(|v| {
                        v.as_array().map(|a| a.iter().map(|s| s["nodes"].as_array().map_or(0, Vec::len)).sum::<usize>())
                    })
                    .unwrap_or(0)
            }
        })
        .await
        .unwrap();
        if nodes == 2 {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "the dashboard never saw both nodes of {service}");
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    let mut b = Browser::launch(1280, 900).await;
    b.open(&format!("{url}/registry?service={service}")).await;
    let stat = |row: &str, stat: &str| {
        format!(
            r#"Number(document.querySelector('[data-traffic="{row}"] [data-stat="{stat}"]').dataset.value || "NaN")"#
        )
    };
    // Both nodes answer their metrics and the slow endpoint's calls have been seen finishing.
    b.wait(
        &format!(
            r#"document.querySelector('#traffic-note').textContent.startsWith('From 2 nodes') && {} > 0 && {} > 0
               && document.querySelector('[data-traffic="Tester.Echo"] [data-stat="rate"] polyline').getAttribute('points').split(' ').length >= 3"#,
            stat("Tester.Echo", "rate"),
            stat("Tester.Peek", "p50"),
        ),
        "live figures from both nodes",
    )
    .await;
    let read = |v: Value| v.as_f64().unwrap_or(f64::NAN);
    let echo_rate = read(b.eval(&stat("Tester.Echo", "rate")).await);
    let echo_errors = read(b.eval(&stat("Tester.Echo", "errors")).await);
    let echo_p50 = read(b.eval(&stat("Tester.Echo", "p50")).await);
    let peek_errors = read(b.eval(&stat("Tester.Peek", "errors")).await);
    let peek_p50 = read(b.eval(&stat("Tester.Peek", "p50")).await);
    let total_rate = read(b.eval(&stat("*", "rate")).await);
    let slowest = b.eval(r#"[...document.querySelectorAll('tr.slowest')].map(r => r.dataset.traffic)"#).await;
    let shown = b
        .eval(r#"document.querySelector('[data-traffic="Tester.Echo"] [data-stat="errors"] .value').textContent"#)
        .await;
    b.screenshot(&artifact("traffic.png")).await;
    stop.send_replace(true);
    let (echoes, spent) = calls.await.unwrap();
    let made = echoes as f64 / spent.as_secs_f64();

    assert!((0.35..=0.65).contains(&echo_errors), "every other Echo fails, the page shows {echo_errors} ({shown})");
    assert_eq!(peek_errors, 0.0, "Peek never fails");
    assert!((0.1..=0.25).contains(&peek_p50), "Peek takes 120 ms; its p50 is within that bucket: {peek_p50}");
    assert!(echo_p50 < peek_p50 / 4.0, "Echo (p50 {echo_p50}) is far faster than Peek (p50 {peek_p50})");
    assert_eq!(slowest, serde_json::json!(["Tester.Peek"]), "the slow endpoint stands out");
    assert!(
        echo_rate > made * 0.4 && echo_rate < made * 1.6,
        "the page shows {echo_rate} Echo calls/s; the test made {made:.1}/s"
    );
    assert!(total_rate > echo_rate, "the service's row adds every endpoint: {total_rate} vs {echo_rate}");

    // A node that wants a token is read with the page user's own (the client page's token
    // field), never one of the dashboard's: without it the page says why.
    b.open(&format!("{url}/registry?service={guarded}")).await;
    b.wait(
        "document.querySelector('#traffic-note').textContent.includes('did not answer') || document.querySelector('#traffic-note').textContent.includes('cannot')",
        "the refused reading explained",
    )
    .await;
    let note = b.eval("document.querySelector('#traffic-note').textContent").await;
    assert!(note.as_str().unwrap().contains("401"), "the node refused the dashboard's reading: {note}");
    b.eval("sessionStorage.setItem('micro.token', 's3cret')").await;
    b.wait(
        "document.querySelector('#traffic-note').textContent.startsWith('From 1 node,')",
        "the node read with the user's token",
    )
    .await;
}
