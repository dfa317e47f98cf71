//! The `micro` binary against real running services: discovered over mDNS (loopback) and over
//! etcd, a Python gRPC server through reflection, and the interactive prompt in a pseudo-terminal.

use std::io::Write;
use std::process::{Command, Output, Stdio};
use std::sync::Arc;
use std::time::Duration;

use micro::registry::{MdnsRegistry, SharedRegistry};
use micro_tests::{Etcd, PythonServer};

fn micro(args: &[&str], env: &[(&str, &str)]) -> Output {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_micro"));
    cmd.args(args).stdin(Stdio::null());
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd.output().expect("micro runs")
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// A `testing` service under a unique name, registered in `registry`.
async fn service(registry: SharedRegistry, name: &str) -> (micro::Service, std::net::SocketAddr) {
    let mut opts = micro::options::Options::default();
    opts.register_interval = Duration::ZERO;
    let svc = micro::Service::builder().name(name).options(opts).registry(registry).build().unwrap();
    micro_tests::testing::register_tester_handler(svc.server(), micro_tests::Tester { node: "n1".into() });
    let addr = svc.start().await.unwrap();
    (svc, addr)
}

async fn blocking<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> T {
    tokio::task::spawn_blocking(f).await.unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn list_get_call_stream_health_over_mdns() {
    let name = format!("go.micro.srv.cli{}", std::process::id());
    let (svc, addr) = service(Arc::new(MdnsRegistry::new().unwrap()), &name).await;
    let env: &[(&str, &str)] = &[("MICRO_REGISTRY", "mdns")];
    let n = name.clone();

    let list = blocking(move || micro(&["list", "services"], env)).await;
    assert!(list.status.success(), "{}", stderr(&list));
    assert!(stdout(&list).lines().any(|l| l == name), "{}", stdout(&list));
    let listed = stdout(&list);
    let mut sorted: Vec<&str> = listed.lines().collect();
    let unsorted = sorted.clone();
    sorted.sort();
    assert_eq!(sorted, unsorted, "sorted");

    let get = blocking(move || micro(&["get", "service", &n], env)).await;
    let text = stdout(&get);
    let node_line = text.lines().nth(5).unwrap_or_default().to_string();
    assert!(node_line.starts_with(&format!("{name}-")), "{text}");
    assert!(
        node_line.contains(&format!("\t{addr}\tbroker=http,protocol=grpc,registry=mdns,server=micro,transport=http")),
        "{text}"
    );
    assert!(text.starts_with(&format!("service  {name}\n\nversion latest\n\nID\tAddress\tMetadata\n")), "{text}");
    assert!(text.contains("\nEndpoint: Tester.Count\nMetadata: description=Counts from 1 to `to`.,stream=true\n\nRequest: {\n\tto uint32\n\tfail_at uint32\n}\n\nResponse: {\n\tvalue int64\n}\n"), "{text}");
    assert!(text.contains("\nEndpoint: Tester.Echo\nMetadata: description=Echoes the message, the caller's metadata and deadline; fails or sleeps on request.\n\nRequest: {\n\tmessage string\n"), "{text}");

    let n = name.clone();
    let json = blocking(move || micro(&["get", "service", &n, "--output", "json"], env)).await;
    let records: serde_json::Value = serde_json::from_slice(&json.stdout).unwrap();
    assert_eq!(records[0]["nodes"][0]["address"], addr.to_string());

    let n = name.clone();
    let call =
        blocking(move || micro(&["call", &n, "Tester.Echo", r#"{"message": "John"}"#, "--metadata", "x-who=cli"], env))
            .await;
    assert!(call.status.success(), "{}", stderr(&call));
    let reply: serde_json::Value = serde_json::from_slice(&call.stdout).unwrap();
    assert_eq!(reply["message"], "John");
    assert_eq!(reply["metadata"]["x-who"], "cli");
    assert!(stdout(&call).starts_with("{\n\t\""), "indented with tabs: {}", stdout(&call));

    let n = name.clone();
    let fail = blocking(move || micro(&["call", &n, "Tester.Echo", r#"{"failCode": 404, "message": "x"}"#], env)).await;
    assert_eq!(fail.status.code(), Some(1));
    assert_eq!(
        stderr(&fail).trim(),
        format!(
            r#"error calling {name}.Tester.Echo: {{"id":"testing","code":404,"detail":"asked to fail: x","status":"Not Found"}}"#
        )
    );
    assert!(fail.stdout.is_empty());

    let n = name.clone();
    let stream = blocking(move || micro(&["stream", &n, "Tester.Count", r#"{"to": 3}"#], env)).await;
    assert!(stream.status.success(), "{}", stderr(&stream));
    assert_eq!(stdout(&stream), "{\"value\":\"1\"}\n{\"value\":\"2\"}\n{\"value\":\"3\"}\n");

    let n = name.clone();
    let bidi = blocking(move || {
        let mut child = Command::new(env!("CARGO_BIN_EXE_micro"))
            .args(["stream", &n, "Tester.Shout"])
            .env("MICRO_REGISTRY", "mdns")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        child.stdin.take().unwrap().write_all(b"{\"text\":\"ping\"}\n{\"text\":\"pong\"}\n").unwrap();
        child.wait_with_output().unwrap()
    })
    .await;
    assert!(bidi.status.success());
    assert_eq!(stdout(&bidi), "{\"text\":\"PING\"}\n{\"text\":\"PONG\"}\n");

    let n = name.clone();
    let health = blocking(move || micro(&["health", "check", &n], env)).await;
    assert!(health.status.success(), "{}", stderr(&health));
    assert!(stdout(&health).contains(&format!("\t{addr}\tok")), "{}", stdout(&health));

    let n = name.clone();
    let stats = blocking(move || micro(&["stats", &n], env)).await;
    assert!(stats.status.success(), "{}", stderr(&stats));
    let mib: f64 = stdout(&stats)
        .split_whitespace()
        .zip(stdout(&stats).split_whitespace().skip(1))
        .find(|(_, unit)| *unit == "MiB")
        .and_then(|(v, _)| v.parse().ok())
        .unwrap_or_default();
    assert!(mib > 0.5, "a running node uses memory: {}", stdout(&stats));

    let missing = blocking(move || micro(&["get", "service", "no.such.service"], env)).await;
    assert_eq!(missing.status.code(), Some(1));
    assert_eq!(stderr(&missing).trim(), "service no.such.service not found");

    let usage = blocking(move || micro(&["--registry", "nosuch", "list", "services"], &[])).await;
    assert_eq!(usage.status.code(), Some(2));
    assert_eq!(stderr(&usage).trim(), r#"unknown registry "nosuch" (valid: mdns, etcd, memory)"#);
    svc.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn over_etcd_with_register_and_an_unreachable_registry() {
    let etcd = blocking(Etcd::start).await;
    let registry: SharedRegistry = Arc::new(micro::registry::etcd::EtcdRegistry::new(&[etcd.address()]));
    let (svc, _) = service(registry, "cli.etcd").await;
    let addr = etcd.address();
    let out = blocking(move || {
        let env = [("MICRO_REGISTRY", "etcd"), ("MICRO_REGISTRY_ADDRESS", addr.as_str())];
        let record =
            r#"{"name":"manual","version":"v9","nodes":[{"id":"manual-1","address":"127.0.0.1:1","metadata":{}}]}"#;
        (
            micro(&["list", "services"], &env),
            micro(&["call", "cli.etcd", "Tester.Echo", r#"{"message":"via etcd"}"#], &env),
            micro(&["register", "service", record], &env),
            micro(&["get", "service", "manual"], &env),
            micro(&["deregister", "service", record], &env),
            micro(&["get", "service", "manual"], &env),
        )
    })
    .await;
    assert_eq!(stdout(&out.0), "cli.etcd\n");
    assert!(stdout(&out.1).contains("\"message\": \"via etcd\""), "{}", stdout(&out.1));
    assert_eq!(stdout(&out.2), "ok\n");
    assert!(stdout(&out.3).starts_with("service  manual\n\nversion v9\n"), "{}", stdout(&out.3));
    assert_eq!(stdout(&out.4), "ok\n");
    assert_eq!(out.5.status.code(), Some(1));

    let port = micro_tests::free_port().to_string();
    let down = blocking(move || {
        let start = std::time::Instant::now();
        let o =
            micro(&["list", "services", "--registry", "etcd", "--registry_address", &format!("127.0.0.1:{port}")], &[]);
        (o, start.elapsed())
    })
    .await;
    assert_eq!(down.0.status.code(), Some(1));
    assert_eq!(stderr(&down.0).lines().count(), 1, "{}", stderr(&down.0));
    assert!(stderr(&down.0).contains("is unreachable"), "{}", stderr(&down.0));
    assert!(down.1 < Duration::from_secs(6), "took {:?}", down.1);
    drop(svc);
}

#[tokio::test]
async fn call_with_address_reaches_a_python_grpc_server_through_reflection() {
    let server = blocking(PythonServer::start).await;
    let addr = server.addr.clone();
    let out = blocking(move || {
        micro(
            &["call", "--address", &addr, "testing.Tester", "Tester.Echo", r#"{"message":"reflected","big":"12"}"#],
            &[],
        )
    })
    .await;
    assert!(out.status.success(), "{}", stderr(&out));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(
        (v["message"].as_str(), v["node"].as_str(), v["big"].as_str()),
        (Some("reflected"), Some("python"), Some("12"))
    );
    let addr = server.addr.clone();
    let err = blocking(move || {
        micro(&["call", "--address", &addr, "testing.Tester", "Tester.Echo", r#"{"failCode":1}"#], &[])
    })
    .await;
    assert_eq!(err.status.code(), Some(1));
    assert!(stderr(&err).contains(r#""code":404"#), "{}", stderr(&err));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn interactive_prompt_calls_and_completes() {
    let name = format!("go.micro.srv.pty{}", std::process::id());
    let (svc, _) = service(Arc::new(MdnsRegistry::new().unwrap()), &name).await;
    let home = tempfile::tempdir().unwrap();
    let home_path = home.path().to_path_buf();
    let n = name.clone();
    blocking(move || {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_micro"));
        cmd.arg("cli").env("MICRO_REGISTRY", "mdns").env("HOME", &home_path).env("TERM", "xterm");
        let mut p = rexpect::session::spawn_command(cmd, Some(15_000)).expect("pty");
        p.exp_string("micro> ").unwrap();
        p.send_line(&format!(r#"call {n} Tester.Echo {{"message":"from the prompt"}}"#)).unwrap();
        p.exp_string(r#""message": "from the prompt""#).unwrap();
        p.exp_string("micro> ").unwrap();
        // Tab completes the command, then the service name.
        p.send("get serv").unwrap();
        p.send("\t").unwrap();
        p.send(&n[..n.len() - 3]).unwrap();
        p.send("\t").unwrap();
        p.send_line("").unwrap();
        p.exp_string(&format!("service  {n}")).unwrap();
        p.exp_string("Endpoint: Tester.Shout").unwrap();
        p.exp_string("micro> ").unwrap();
        // A stream ends with its replies and leaves standard input to the prompt: the next
        // line typed is the prompt's, not swallowed by the stream.
        p.send_line(&format!(r#"stream {n} Tester.Count {{"to":2}}"#)).unwrap();
        p.exp_string(r#""value":"2""#).unwrap();
        p.exp_string("micro> ").unwrap();
        p.send_line(&format!(r#"call {n} Tester.Echo {{"message":"after the stream"}}"#)).unwrap();
        p.exp_string(r#""message": "after the stream""#).unwrap();
        p.exp_string("micro> ").unwrap();
        p.send_line("exit").unwrap();
        p.exp_eof().unwrap();
    })
    .await;
    assert!(home.path().join(".micro_history").exists(), "history is kept");
    svc.stop().await;
}

#[tokio::test]
async fn a_service_on_the_nats_transport_answers_calls_and_streams() {
    let nats = blocking(micro_tests::Nats::start).await;
    let name = format!("cli.nats{}", std::process::id());
    let nats_addr = nats.address();
    let _node = micro_tests::Child(
        Command::new(micro_tests::workspace_bin("tester"))
            .env("MICRO_REGISTRY", "mdns")
            .env("MICRO_TRANSPORT", "nats")
            .env("MICRO_TRANSPORT_ADDRESS", &nats_addr)
            .env("MICRO_SERVER_NAME", &name)
            .env("TESTER_NODE", "over-nats")
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    let n = name.clone();
    let out = blocking(move || {
        let env = [("MICRO_REGISTRY", "mdns"), ("MICRO_TRANSPORT_ADDRESS", nats_addr.as_str())];
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        let call = loop {
            let c = micro(&["call", &n, "Tester.Echo", r#"{"message":"via nats"}"#], &env);
            if c.status.success() || std::time::Instant::now() > deadline {
                break c;
            }
            std::thread::sleep(Duration::from_millis(100));
        };
        let get = micro(&["get", "service", &n], &env);
        let fail = micro(&["call", &n, "Tester.Echo", r#"{"failCode":409}"#], &env);
        let stream = micro(&["stream", &n, "Tester.Count", r#"{"to":3}"#], &env);
        let bidi = {
            let mut child = Command::new(env!("CARGO_BIN_EXE_micro"))
                .args(["stream", &n, "Tester.Shout"])
                .envs(env)
                .stdin(Stdio::piped())
                .stdout(Stdio::piped())
                .spawn()
                .unwrap();
            child.stdin.take().unwrap().write_all(b"{\"text\":\"a\"}\n{\"text\":\"b\"}\n").unwrap();
            child.wait_with_output().unwrap()
        };
        (call, get, fail, stream, bidi)
    })
    .await;
    assert!(out.0.status.success(), "{}", stderr(&out.0));
    let reply: serde_json::Value = serde_json::from_slice(&out.0.stdout).unwrap();
    assert_eq!((reply["message"].as_str(), reply["node"].as_str()), (Some("via nats"), Some("over-nats")));
    assert!(stdout(&out.1).contains("\tmicro.node."), "the node's address is its subject: {}", stdout(&out.1));
    assert!(stdout(&out.1).contains("transport=nats"), "{}", stdout(&out.1));
    assert_eq!(out.2.status.code(), Some(1));
    assert!(stderr(&out.2).contains(r#""code":409"#), "{}", stderr(&out.2));
    assert_eq!(stdout(&out.3), "{\"value\":\"1\"}\n{\"value\":\"2\"}\n{\"value\":\"3\"}\n", "{}", stderr(&out.3));
    assert_eq!(stdout(&out.4), "{\"text\":\"A\"}\n{\"text\":\"B\"}\n", "{}", stderr(&out.4));
    drop(nats);
}
