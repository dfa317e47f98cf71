//! Observability with real peers on loopback: `tester` nodes in their own processes, found through
//! a real etcd, watched by the tools people already run.
//!
//! - traces: a Python client instrumented with the OpenTelemetry SDK starts a trace and calls
//!   service A, which calls B and publishes to C's topic; an OTLP receiver (Python, decoding with
//!   the official opentelemetry-proto types; A and C export over HTTP/protobuf, B over gRPC)
//!   collects the spans: one trace, every hop a child of the one before, with the semantic
//!   attributes; C's JSON log line of the message names the trace;
//! - metrics: Debian's Prometheus scrapes two services and the gateway; its HTTP API then shows
//!   the calls the test made, per method and status;
//! - health and shutdown: `/health/live`, `/health/ready` and the gRPC health watch, and the
//!   order a stopping node goes in: not ready first (still registered, `micro health check`
//!   shows why), then deregistered (a call in flight still running), then drained (the call
//!   answered).

use std::io::BufRead;
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use micro::registry::etcd::EtcdRegistry;
use micro::registry::Registry;
use micro::CallOptions;
use micro_tests::testing::{EchoRequest, TesterClient};
use micro_tests::{curl, free_port, python, repo_root, signal, wait_for, workspace_bin, Child, Etcd};

/// A `tester` node called `name` in etcd, with `envs`; its standard error kept in `log` if given.
fn tester(etcd: &Etcd, name: &str, envs: &[(&str, &str)], log: Option<Lines>) -> Child {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_tester"));
    cmd.env("MICRO_REGISTRY", "etcd")
        .env("MICRO_REGISTRY_ADDRESS", etcd.address())
        .env("MICRO_SERVER_NAME", name)
        .env("MICRO_REGISTER_TTL", "5s")
        .env("MICRO_REGISTER_INTERVAL", "1s")
        .env("TESTER_NODE", name)
        .env("OTEL_BSP_SCHEDULE_DELAY", "100")
        .envs(envs.iter().copied())
        .stderr(if log.is_some() { Stdio::piped() } else { Stdio::null() });
    let mut child = cmd.spawn().expect("tester starts");
    if let Some(log) = log {
        keep_lines(child.stderr.take().expect("stderr"), log);
    }
    Child(child)
}

/// Lines a child wrote, as they come.
type Lines = Arc<Mutex<Vec<String>>>;

fn keep_lines(from: impl std::io::Read + Send + 'static, into: Lines) {
    std::thread::spawn(move || {
        for line in std::io::BufReader::new(from).lines().map_while(Result::ok) {
            into.lock().unwrap().push(line);
        }
    });
}

/// The address of the one node of `service`, once it is registered.
async fn node_address(registry: &EtcdRegistry, service: &str) -> String {
    let mut address = String::new();
    wait_for(&format!("{service} to register"), Duration::from_secs(30), async || {
        match registry.get_service(service).await {
            Ok(versions) => match versions.iter().flat_map(|v| v.nodes.iter()).next() {
                Some(node) => {
                    address = node.address.clone();
                    true
                }
                None => false,
            },
            Err(_) => false,
        }
    })
    .await;
    address
}

async fn registered(registry: &EtcdRegistry, service: &str) -> bool {
    registry.get_service(service).await.is_ok_and(|v| v.iter().any(|v| !v.nodes.is_empty()))
}

/// `tests/python/otel.py receiver`: the OTLP receiver, with its HTTP and gRPC ports.
struct Receiver {
    _child: Child,
    http: u16,
    grpc: u16,
}

impl Receiver {
    fn start() -> Receiver {
        let mut child = Command::new(python())
            .arg(repo_root().join("tests/python/otel.py"))
            .arg("receiver")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .expect("the OTLP receiver starts (the README's test command installs opentelemetry-proto)");
        let mut line = String::new();
        std::io::BufReader::new(child.stdout.take().expect("stdout")).read_line(&mut line).expect("a ports line");
        let ports: Vec<u16> = line.split_whitespace().filter_map(|p| p.parse().ok()).collect();
        assert_eq!(ports.len(), 2, "the receiver printed {line:?}");
        Receiver { _child: Child(child), http: ports[0], grpc: ports[1] }
    }

    /// Every span received so far.
    fn spans(&self) -> Vec<serde_json::Value> {
        let (status, body) = curl(&[&format!("http://127.0.0.1:{}/spans", self.http)]);
        assert_eq!(status, 200, "the receiver answers: {body}");
        serde_json::from_str(&body).expect("spans as JSON")
    }
}

fn attr<'a>(span: &'a serde_json::Value, key: &str) -> &'a serde_json::Value {
    &span["attributes"][key]
}

/// The span of `trace` named `name` of `kind` from `service`.
fn find<'a>(spans: &'a [serde_json::Value], service: &str, kind: &str, name: &str) -> Option<&'a serde_json::Value> {
    spans.iter().find(|s| s["service"] == service && s["kind"] == kind && s["name"] == name)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_trace_covers_every_hop() {
    let etcd = Etcd::start();
    let registry = EtcdRegistry::new(&[etcd.address()]);
    let receiver = Receiver::start();
    let http = format!("http://127.0.0.1:{}", receiver.http);
    let grpc = format!("http://127.0.0.1:{}", receiver.grpc);
    let c_log: Lines = Arc::default();
    let c_envs = [
        ("TESTER_SUBSCRIBE", "chain.events"),
        ("OTEL_EXPORTER_OTLP_ENDPOINT", &http),
        ("OTEL_EXPORTER_OTLP_COMPRESSION", "gzip"),
        ("OTEL_EXPORTER_OTLP_HEADERS", "x-tenant=blue%20team"),
        ("MICRO_LOG_FORMAT", "json"),
    ];
    let _c = tester(&etcd, "chain.c", &c_envs, Some(c_log.clone()));
    let b_envs = [
        ("OTEL_EXPORTER_OTLP_ENDPOINT", grpc.as_str()),
        ("OTEL_EXPORTER_OTLP_PROTOCOL", "grpc"),
        ("OTEL_EXPORTER_OTLP_TRACES_COMPRESSION", "gzip"),
        ("OTEL_EXPORTER_OTLP_TRACES_HEADERS", "x-tenant=green"),
    ];
    let b_log: Lines = Arc::default();
    let _b = tester(&etcd, "chain.b", &b_envs, Some(b_log.clone()));
    let a_envs = [
        ("TESTER_FORWARD", "chain.b"),
        ("TESTER_PUBLISH", "chain.events"),
        ("OTEL_EXPORTER_OTLP_ENDPOINT", http.as_str()),
    ];
    let _a = tester(&etcd, "chain.a", &a_envs, None);
    node_address(&registry, "chain.b").await;
    node_address(&registry, "topic:chain.events").await;
    let a = node_address(&registry, "chain.a").await;

    let out = Command::new(python())
        .arg(repo_root().join("tests/python/otel.py"))
        .args(["client", &a, &http])
        .output()
        .expect("the Python client runs");
    assert!(out.status.success(), "the Python client failed: {}", String::from_utf8_lossy(&out.stderr));
    let result: serde_json::Value = serde_json::from_slice(&out.stdout).expect("the client prints JSON");
    assert_eq!(result["reply"]["node"], "chain.b", "A passed the call to B: {result}");
    let trace_id = result["trace_id"].as_str().expect("a trace id").to_string();

    let mut spans = Vec::new();
    wait_for("every hop's span", Duration::from_secs(30), async || {
        spans = receiver.spans().into_iter().filter(|s| s["trace_id"] == trace_id.as_str()).collect();
        find(&spans, "chain.c", "CONSUMER", "process chain.events").is_some()
            && find(&spans, "chain.b", "SERVER", "testing.Tester/Echo").is_some()
            && spans.iter().filter(|s| s["service"] == "chain.a").count() >= 3
            && spans.iter().any(|s| s["service"] == "python-client" && s["kind"] == "CLIENT")
    })
    .await;
    let dump = serde_json::to_string_pretty(&spans).unwrap();
    let python = spans.iter().find(|s| s["service"] == "python-client" && s["kind"] == "CLIENT").unwrap();
    let a_server =
        find(&spans, "chain.a", "SERVER", "testing.Tester/Echo").unwrap_or_else(|| panic!("A's server span in {dump}"));
    let a_client =
        find(&spans, "chain.a", "CLIENT", "testing.Tester/Echo").unwrap_or_else(|| panic!("A's client span in {dump}"));
    let publish = find(&spans, "chain.a", "PRODUCER", "publish chain.events")
        .unwrap_or_else(|| panic!("A's publish span in {dump}"));
    let b_server = find(&spans, "chain.b", "SERVER", "testing.Tester/Echo").unwrap();
    let process = find(&spans, "chain.c", "CONSUMER", "process chain.events").unwrap();
    let parent = |child: &serde_json::Value, of: &serde_json::Value, what: &str| {
        assert_eq!(child["parent_span_id"], of["span_id"], "{what}\n{dump}");
    };
    parent(a_server, python, "A joined the Python client's trace");
    parent(a_client, a_server, "A's call to B is a child of A's handler");
    parent(b_server, a_client, "B's span is a child of A's call");
    parent(publish, a_server, "A's publish is a child of A's handler");
    parent(process, publish, "C's handling is a child of A's publish");
    for span in [a_server, a_client, b_server] {
        assert_eq!(attr(span, "rpc.system"), "grpc", "{dump}");
        assert_eq!(attr(span, "rpc.service"), "testing.Tester", "{dump}");
        assert_eq!(attr(span, "rpc.method"), "Echo", "{dump}");
        assert_eq!(attr(span, "rpc.grpc.status_code"), 0, "{dump}");
    }
    assert_eq!(attr(a_client, "server.address"), "chain.b");
    for span in [publish, process] {
        assert_eq!(attr(span, "messaging.system"), "http", "{dump}");
        assert_eq!(attr(span, "messaging.destination.name"), "chain.events", "{dump}");
    }
    assert_eq!(attr(publish, "messaging.operation.type"), "send");
    assert_eq!(attr(process, "messaging.operation.type"), "process");
    assert_eq!(attr(publish, "messaging.message.id"), attr(process, "messaging.message.id"));
    assert_eq!(b_server["via"], "grpc", "B exported over OTLP/gRPC");
    assert_eq!(a_server["via"], "http", "A exported over OTLP/HTTP");
    assert_eq!(
        (&a_server["gzip"], &a_server["tenant"]),
        (&false.into(), &serde_json::Value::Null),
        "A: plain, no headers"
    );
    assert_eq!((&process["gzip"], &process["tenant"]), (&true.into(), &"blue team".into()), "C: gzip, its header");
    assert_eq!(b_server["tenant"], "green", "B sent its header as gRPC metadata, its gzip batch decoded");
    // The receiver's gRPC replies are gzip-compressed and carry a partial-success message: B
    // read them (and says what the collector said).
    wait_for("B to read the collector's reply", Duration::from_secs(10), async || {
        b_log.lock().unwrap().iter().any(|l| l.contains("the collector rejected spans") && l.contains("accepted;"))
    })
    .await;
    assert!(!b_log.lock().unwrap().iter().any(|l| l.contains("spans were dropped")), "{:?}", b_log.lock().unwrap());

    // C logged the message in JSON, naming the trace.
    let logged = c_log
        .lock()
        .unwrap()
        .iter()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .find(|v| v["message"] == "heard");
    let logged = logged.expect("C logged the message as one JSON object");
    assert_eq!(logged["text"], "traced");
    assert_eq!(logged["span"]["trace_id"], trace_id.as_str(), "the log line names the trace: {logged}");
    assert_eq!(logged["span"]["span_id"], process["span_id"], "and the span: {logged}");
}

/// Debian's Prometheus: from PATH, or the copy `scripts/setup` unpacked into `.tools/prometheus`.
fn prometheus_bin() -> std::path::PathBuf {
    let unpacked = repo_root().join(".tools/prometheus/usr/bin/prometheus");
    if unpacked.exists() {
        return unpacked;
    }
    "prometheus".into()
}

/// One instant query against Prometheus: `labels → value` of each series.
fn query(prometheus: u16, expr: &str, label: &[&str]) -> Vec<(Vec<String>, f64)> {
    let (status, body) = curl(&[
        "-G",
        &format!("http://127.0.0.1:{prometheus}/api/v1/query"),
        "--data-urlencode",
        &format!("query={expr}"),
    ]);
    if status != 200 {
        return Vec::new();
    }
    let v: serde_json::Value = serde_json::from_str(&body).unwrap_or_default();
    let Some(result) = v["data"]["result"].as_array() else { return Vec::new() };
    let mut out: Vec<(Vec<String>, f64)> = result
        .iter()
        .map(|r| {
            let labels = label.iter().map(|l| r["metric"][l].as_str().unwrap_or_default().to_string()).collect();
            (labels, r["value"][1].as_str().and_then(|s| s.parse().ok()).unwrap_or(f64::NAN))
        })
        .collect();
    out.sort_by(|a, b| a.0.cmp(&b.0));
    out
}

fn series(rows: &[(&[&str], f64)]) -> Vec<(Vec<String>, f64)> {
    let mut out: Vec<(Vec<String>, f64)> =
        rows.iter().map(|(l, v)| (l.iter().map(|s| s.to_string()).collect(), *v)).collect();
    out.sort_by(|a, b| a.0.cmp(&b.0));
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn prometheus_counts_every_call() {
    let etcd = Etcd::start();
    let registry = EtcdRegistry::new(&[etcd.address()]);
    let _a = tester(&etcd, "prom.a", &[], None);
    let _b = tester(&etcd, "prom.b", &[], None);
    let etcd_address = etcd.address();
    let env = [("MICRO_REGISTRY", "etcd"), ("MICRO_REGISTRY_ADDRESS", etcd_address.as_str())];
    let (_gateway, gateway) = micro_tests::listening(
        &workspace_bin("micro"),
        &["api", "--api_address", "127.0.0.1:0", "--handler", "rpc", "--namespace", "prom"],
        &env,
        "api",
    );
    let (a, b) = (node_address(&registry, "prom.a").await, node_address(&registry, "prom.b").await);

    let client = micro_tests::client(Arc::new(EtcdRegistry::new(&[etcd.address()])), 0);
    let echo = |msg: &str, fail_code| EchoRequest { message: msg.into(), fail_code, ..Default::default() };
    for _ in 0..5 {
        TesterClient::new("prom.a", client.clone()).echo(echo("ok", 0)).await.expect("a call to A");
    }
    for _ in 0..2 {
        let e = TesterClient::new("prom.a", client.clone()).echo(echo("no", 404)).await.unwrap_err();
        assert_eq!(e.code, 404);
    }
    for _ in 0..3 {
        TesterClient::new("prom.b", client.clone()).echo(echo("ok", 0)).await.expect("a call to B");
    }
    wait_for("the gateway to see prom.b", Duration::from_secs(20), async || {
        curl(&[
            "-X",
            "POST",
            "-H",
            "content-type: application/json",
            "-d",
            "{}",
            &format!("http://{gateway}/b/tester/peek"),
        ])
        .0 == 200
    })
    .await;
    for _ in 0..4 {
        let (status, body) = curl(&[
            "-X",
            "POST",
            "-H",
            "content-type: application/json",
            "-d",
            r#"{"message":"via the gateway"}"#,
            &format!("http://{gateway}/b/tester/echo"),
        ]);
        assert_eq!(status, 200, "{body}");
    }

    let dir = tempfile::tempdir().unwrap();
    let config = format!(
        "global:\n  scrape_interval: 1s\nscrape_configs:\n  - job_name: micro\n    static_configs:\n      - targets: ['{a}']\n        labels: {{node: a}}\n      - targets: ['{b}']\n        labels: {{node: b}}\n  - job_name: gateway\n    static_configs:\n      - targets: ['{gateway}']\n"
    );
    std::fs::write(dir.path().join("prometheus.yml"), config).unwrap();
    let port = free_port();
    let _prometheus = Child(
        Command::new(prometheus_bin())
            .arg(format!("--config.file={}", dir.path().join("prometheus.yml").display()))
            .arg(format!("--storage.tsdb.path={}", dir.path().join("data").display()))
            .arg(format!("--web.listen-address=127.0.0.1:{port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("prometheus starts (the README's test command unpacks Debian's prometheus)"),
    );

    // Every target scraped once (each on its own schedule) before anything is read: the calls
    // were all made before Prometheus started, so any scrape holds their final counts.
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    loop {
        let up = query(port, "up == 1", &["job", "node"]);
        if up.len() == 3 {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "Prometheus has scraped only {up:?}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let server_calls = "sum by (node, rpc_method, rpc_response_status_code) (rpc_server_call_duration_seconds_count{job=\"micro\", rpc_service=\"testing.Tester\"})";
    let labels = ["node", "rpc_method", "rpc_response_status_code"];
    let want = series(&[(&["a", "Echo", "NOT_FOUND"], 2.0), (&["a", "Echo", "OK"], 5.0), (&["b", "Echo", "OK"], 7.0)]);
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    loop {
        let mut got = query(port, server_calls, &labels);
        // Every endpoint has its series from the start (at 0); the test's readiness probe called
        // Peek at least once, so its count is not fixed.
        got.retain(|(l, v)| l[1] != "Peek" && *v > 0.0);
        if got == want {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "Prometheus shows {got:?}, not {want:?}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }

    let gateway_requests = "sum by (micro_handler, http_response_status_code) (http_server_request_duration_seconds_count{job=\"gateway\", http_request_method=\"POST\"})";
    let got = query(port, gateway_requests, &["micro_handler", "http_response_status_code"]);
    let ok = got.iter().find(|(l, _)| l == &["rpc", "200"]).map(|(_, v)| *v).unwrap_or(0.0);
    assert!(ok >= 5.0, "the gateway counted its 4 calls and at least one probe: {got:?}");
    let echo_via_gateway =
        query(port, "sum(rpc_client_call_duration_seconds_count{job=\"gateway\", rpc_method=\"Echo\"})", &[]);
    assert_eq!(echo_via_gateway.first().map(|r| r.1), Some(4.0), "the gateway's own calls to Echo");
    let up = query(port, "micro_registry_registered{job=\"micro\"}", &["node"]);
    assert_eq!(up, series(&[(&["a"], 1.0), (&["b"], 1.0)]), "both nodes say they are registered");
    let rss = query(port, "process_resident_memory_bytes{job=\"micro\"}", &["node"]);
    assert!(rss.len() == 2 && rss.iter().all(|(_, v)| *v > 1e6), "process metrics of both nodes: {rss:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_goes_not_ready_then_deregistered_then_drained() {
    let etcd = Etcd::start();
    let registry = EtcdRegistry::new(&[etcd.address()]);
    let log: Lines = Arc::default();
    let mut node = tester(&etcd, "drain", &[("MICRO_SHUTDOWN_DELAY", "3s")], Some(log.clone()));
    let addr = node_address(&registry, "drain").await;
    assert_eq!(curl(&[&format!("http://{addr}/health/live")]), (200, "ok\n".into()));
    wait_for("the node to be ready", Duration::from_secs(10), async || {
        curl(&[&format!("http://{addr}/health/ready")]) == (200, "ready\n".to_string())
    })
    .await;

    let watch_lines: Lines = Arc::default();
    let mut watch = Command::new(python())
        .arg(repo_root().join("tests/python/health.py"))
        .args(["watch", &addr])
        .stdout(Stdio::piped())
        .spawn()
        .expect("the health watch starts");
    keep_lines(watch.stdout.take().unwrap(), watch_lines.clone());
    let _watch = Child(watch);
    wait_for("the watch to say SERVING", Duration::from_secs(10), async || {
        watch_lines.lock().unwrap().first().is_some_and(|l| l == "SERVING")
    })
    .await;

    // A call in flight through the whole shutdown.
    let client = micro_tests::client(Arc::new(EtcdRegistry::new(&[etcd.address()])), 0);
    let tester_client = TesterClient::new("drain", client);
    let slow = EchoRequest { message: "slow".into(), sleep_ms: 8000, ..Default::default() };
    let opts = CallOptions::new().address(addr.clone()).timeout(Duration::from_secs(30));
    let in_flight = tokio::spawn(async move { tester_client.echo_with(slow, opts).await });
    wait_for("the call to be in flight", Duration::from_secs(10), async || {
        let (_, metrics) = curl(&[&format!("http://{addr}/metrics")]);
        metrics.lines().any(|l| {
            l.starts_with("rpc_server_active_requests{") && l.contains("rpc_method=\"Echo\"") && l.ends_with(" 1")
        })
    })
    .await;

    signal(&node.0, "TERM");
    let mut told = String::new();
    wait_for("not ready while still registered", Duration::from_secs(10), async || {
        let (status, body) = curl(&[&format!("http://{addr}/health/ready")]);
        status == 503 && body == "not ready: shutting down\n" && registered(&registry, "drain").await
    })
    .await;
    let health = Command::new(workspace_bin("micro"))
        .args(["--registry", "etcd", "--registry_address", &etcd.address(), "health", "check", "drain"])
        .output()
        .expect("micro health check runs");
    told.push_str(&String::from_utf8_lossy(&health.stdout));
    assert!(!health.status.success(), "an unready node fails the check: {told}");
    assert!(told.contains("not ready: shutting down"), "micro health check shows why: {told}");

    wait_for("the node to deregister", Duration::from_secs(15), async || !registered(&registry, "drain").await).await;
    assert!(!in_flight.is_finished(), "deregistered before the call in flight ended");
    let reply = in_flight.await.unwrap().expect("the call in flight is answered");
    assert_eq!(reply.message, "slow");
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    while node.0.try_wait().unwrap().is_none() {
        assert!(std::time::Instant::now() < deadline, "the node exits after draining");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(node.0.wait().unwrap().success());

    let log = log.lock().unwrap().clone();
    let at = |what: &str| log.iter().position(|l| l.contains(what)).unwrap_or_else(|| panic!("{what:?} in {log:#?}"));
    assert!(at("not ready: shutting down") < at("deregistered"), "{log:#?}");
    assert!(at("deregistered") < at("drained"), "{log:#?}");
    wait_for("the watch to say NOT_SERVING", Duration::from_secs(10), async || {
        watch_lines.lock().unwrap().iter().any(|l| l == "NOT_SERVING")
    })
    .await;
    assert_eq!(watch_lines.lock().unwrap()[..2], ["SERVING".to_string(), "NOT_SERVING".to_string()]);
}
