//! What README.md and the docs promise, checked one by one as a new user would find it: health
//! that tells the truth (to the official grpcio health client too), `--selector` on the tools,
//! `micro proxy --proxy_address :PORT`, `micro stats` and `micro register` on mDNS, and a
//! service's `--help`. Each test failed before the fix it names.

use std::io::BufRead;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use micro::options::Options;
use micro::registry::{MemoryRegistry, RegisterOptions, Registry, Service as Record, SharedRegistry, Watcher};
use micro::{Error, Service};
use micro_tests::testing::*;
use micro_tests::{curl_head, wait_for, Child, Tester};

/// A memory registry that refuses registrations while `down`.
#[derive(Default)]
struct Flaky {
    inner: MemoryRegistry,
    down: AtomicBool,
}

#[async_trait::async_trait]
impl Registry for Flaky {
    async fn register(&self, service: &Record, opts: RegisterOptions) -> Result<(), Error> {
        if self.down.load(Ordering::SeqCst) {
            return Err(Error::unavailable("test", "the registry is down"));
        }
        self.inner.register(service, opts).await
    }
    async fn deregister(&self, service: &Record) -> Result<(), Error> {
        self.inner.deregister(service).await
    }
    async fn get_service(&self, name: &str) -> Result<Vec<Record>, Error> {
        self.inner.get_service(name).await
    }
    async fn list_services(&self) -> Result<Vec<Record>, Error> {
        self.inner.list_services().await
    }
    async fn watch(&self, service: Option<&str>) -> Result<Watcher, Error> {
        self.inner.watch(service).await
    }
    fn name(&self) -> &'static str {
        "flaky"
    }
}

fn health_py() -> std::path::PathBuf {
    micro_tests::repo_root().join("tests/python/health.py")
}

fn check(addr: &str) -> String {
    let out = Command::new(micro_tests::python()).arg(health_py()).args(["check", addr]).output().unwrap();
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_is_the_services_real_state_for_check_watch_and_debug() {
    let registry = Arc::new(Flaky { down: AtomicBool::new(true), ..Default::default() });
    let shared: SharedRegistry = registry.clone();
    let svc = Service::builder()
        .name("healthy")
        .options(Options { register_interval: Duration::ZERO, ..Options::default() })
        .registry(shared)
        .build()
        .unwrap();
    register_tester_handler(svc.server(), Tester::default());
    let addr = svc.start().await.unwrap().to_string();

    // Not registered yet: not serving.
    let a = addr.clone();
    let (debug, checked) = tokio::task::spawn_blocking(move || {
        let debug =
            curl_head(&["-H", "Content-Type: application/json", "-d", "{}", &format!("http://{a}/Debug.Health")]);
        (debug, check(&a))
    })
    .await
    .unwrap();
    assert_eq!(debug.0, 503, "Debug.Health before registration: {}", debug.2);
    assert_eq!(checked, "NOT_SERVING");

    let mut watch = Command::new(micro_tests::python())
        .arg(health_py())
        .args(["watch", &addr])
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let lines = std::io::BufReader::new(watch.stdout.take().unwrap()).lines();
    let _watch = Child(watch);
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    std::thread::spawn(move || {
        for line in lines.map_while(Result::ok) {
            let _ = tx.send(line);
        }
    });
    let next = async |rx: &mut tokio::sync::mpsc::UnboundedReceiver<String>| {
        tokio::time::timeout(Duration::from_secs(20), rx.recv())
            .await
            .expect("a Watch reply in time")
            .unwrap_or_default()
    };
    assert_eq!(next(&mut rx).await, "NOT_SERVING");

    registry.down.store(false, Ordering::SeqCst);
    assert_eq!(next(&mut rx).await, "SERVING", "the watch hears the node registered");
    let a = addr.clone();
    assert_eq!(tokio::task::spawn_blocking(move || check(&a)).await.unwrap(), "SERVING");
    let a = addr.clone();
    let debug = tokio::task::spawn_blocking(move || {
        curl_head(&["-H", "Content-Type: application/json", "-d", "{}", &format!("http://{a}/Debug.Health")])
    })
    .await
    .unwrap();
    assert_eq!((debug.0, debug.2.as_str()), (200, r#"{"status":"ok"}"#));

    // Shutting down: the watch hears NOT_SERVING, then the stream ends (it does not hold the drain).
    let stopping = tokio::spawn({
        let svc = svc.clone();
        async move { svc.stop().await }
    });
    assert_eq!(next(&mut rx).await, "NOT_SERVING");
    assert_eq!(next(&mut rx).await, "END");
    tokio::time::timeout(Duration::from_secs(5), stopping)
        .await
        .expect("the stop does not wait for the watch")
        .unwrap();
}

/// Runs `program ARGS` with the registry in memory; its exit code (`None` if it had to be
/// killed after 20 s) and output.
fn run_briefly(program: &str, args: &[&str]) -> (Option<i32>, String, String) {
    let mut child = Command::new(micro_tests::workspace_bin(program))
        .args(args)
        .env("MICRO_REGISTRY", "memory")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    let code = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status.code();
        }
        if std::time::Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            break None;
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let read = |r: Option<Box<dyn std::io::Read>>| {
        let mut s = String::new();
        if let Some(mut r) = r {
            let _ = r.read_to_string(&mut s);
        }
        s
    };
    let out = read(child.stdout.take().map(|s| Box::new(s) as Box<dyn std::io::Read>));
    let err = read(child.stderr.take().map(|s| Box::new(s) as Box<dyn std::io::Read>));
    (code, out, err)
}

#[test]
fn a_service_answers_help_and_refuses_unknown_flags() {
    let (code, out, _) = run_briefly("server", &["--help"]);
    assert_eq!(code, Some(0), "--help exits: {out}");
    for expected in
        ["--registry <MICRO_REGISTRY>", "[default: mdns]", "--server_address <MICRO_SERVER_ADDRESS>", "--auth_token"]
    {
        assert!(out.contains(expected), "--help shows {expected}:\n{out}");
    }
    for name in micro::options::FLAGS {
        assert!(out.contains(&format!("--{name} ")), "--help lists --{name}");
    }
    let (code, _, err) = run_briefly("server", &["--registyr", "etcd"]);
    assert_eq!(code, Some(2), "an unknown flag: {err}");
    assert_eq!(err.trim().lines().count(), 1, "one line: {err}");
    assert!(err.contains("unknown option --registyr"), "{err}");
    let (code, _, err) = run_briefly("server", &["--register_ttl", "soon"]);
    assert_eq!(code, Some(2), "a bad value: {err}");
}

fn micro_bin() -> std::path::PathBuf {
    micro_tests::workspace_bin("micro")
}

/// `micro ARGS` over mDNS: exit code, stdout, stderr.
fn micro(args: &[&str]) -> (Option<i32>, String, String) {
    let out = Command::new(micro_bin()).args(args).env("MICRO_REGISTRY", "mdns").output().unwrap();
    (out.status.code(), String::from_utf8_lossy(&out.stdout).into(), String::from_utf8_lossy(&out.stderr).into())
}

fn mdns() -> SharedRegistry {
    Arc::new(micro::registry::MdnsRegistry::new().unwrap())
}

async fn tester(registry: SharedRegistry, name: &str, node: &str) -> Service {
    let svc = Service::builder()
        .name(name)
        .options(Options { register_interval: Duration::ZERO, ..Options::default() })
        .registry(registry)
        .build()
        .unwrap();
    register_tester_handler(svc.server(), Tester { node: node.into() });
    svc.start().await.unwrap();
    svc
}

/// `micro stats NAME` until it exits with `code` (what mDNS has heard catches up), up to 10 s.
async fn stats_until(name: &str, code: i32) -> (Option<i32>, String, String) {
    let name = name.to_string();
    tokio::task::spawn_blocking(move || {
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        loop {
            let last = micro(&["stats", &name]);
            if last.0 == Some(code) || std::time::Instant::now() > deadline {
                return last;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    })
    .await
    .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stats_reports_a_failed_node_on_stderr_with_exit_1() {
    let registry = mdns();
    let name = format!("stats{}", std::process::id());
    let svc = tester(registry.clone(), &name, "up").await;
    let (code, out, err) = stats_until(&name, 0).await;
    assert_eq!(code, Some(0), "{err}");
    let mib: f64 = out
        .split_whitespace()
        .zip(out.split_whitespace().skip(1))
        .find(|(_, unit)| *unit == "MiB")
        .and_then(|(v, _)| v.parse().ok())
        .unwrap_or_else(|| panic!("a memory figure: {out}"));
    assert!(mib > 0.5, "a running node uses memory: {out}");

    // A node that does not answer: said on stderr, exit 1, nothing of it on stdout.
    let ghost = Record {
        name: name.clone(),
        version: "ghost".into(),
        nodes: vec![micro::registry::Node {
            id: format!("{name}-ghost"),
            address: "127.0.0.1:9".into(),
            ..Default::default()
        }],
        ..Default::default()
    };
    registry.register(&ghost, RegisterOptions::default()).await.unwrap();
    let (code, out, err) = stats_until(&name, 1).await;
    assert_eq!(code, Some(1), "{out}{err}");
    assert!(err.contains("did not answer"), "{err}");
    assert!(!out.contains("ghost\t") && !out.contains("error"), "stdout is data only: {out}");
    registry.deregister(&ghost).await.unwrap();
    svc.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_tools_take_selector() {
    let registry = mdns();
    let name = format!("rr{}", std::process::id());
    let a = tester(registry.clone(), &name, "a").await;
    let b = tester(registry.clone(), &name, "b").await;
    let (code, _, err) =
        tokio::task::spawn_blocking(|| micro(&["--selector", "nosuch", "list", "services"])).await.unwrap();
    assert_eq!(code, Some(2));
    assert!(err.contains("unknown selector \"nosuch\" (valid: random, roundrobin, leastloaded)"), "{err}");

    let (_proxy, px) = tokio::task::spawn_blocking(|| {
        micro_tests::listening(
            &micro_bin(),
            &["proxy", "--proxy_address", "127.0.0.1:0", "--selector", "roundrobin"],
            &[("MICRO_REGISTRY", "mdns")],
            "proxy",
        )
    })
    .await
    .unwrap();
    let client = micro::Client::new(
        micro_tests::memory_registry(),
        micro::client::ClientOptions { proxy: Some(px), ..Default::default() },
    );
    let greeter = TesterClient::new(&name, client);
    let echo = || EchoRequest { message: "rr".into(), ..Default::default() };
    wait_for("the proxy to see both nodes", Duration::from_secs(20), async || {
        let mut seen = std::collections::BTreeSet::new();
        for _ in 0..4 {
            if let Ok(r) = greeter.echo(echo()).await {
                seen.insert(r.node);
            }
        }
        seen.len() == 2
    })
    .await;
    let mut nodes = vec![];
    for _ in 0..8 {
        nodes.push(greeter.echo(echo()).await.unwrap().node);
    }
    assert!(nodes.windows(2).all(|w| w[0] != w[1]), "round robin takes turns: {nodes:?}");
    a.stop().await;
    b.stop().await;
}

/// Whether this process runs in a network namespace whose only interface is loopback.
fn isolated() -> bool {
    let dev = std::fs::read_to_string("/proc/net/dev").unwrap_or_default();
    dev.lines().skip(2).filter_map(|l| l.split(':').next()).map(str::trim).all(|i| i == "lo")
}

#[test]
fn the_proxy_takes_a_listen_address_like_the_other_tools() {
    if !isolated() {
        // `:PORT` listens on every interface: only done where loopback is the only one.
        eprintln!("skipped: not in a loopback-only network namespace (the README's test command makes one)");
        return;
    }
    let (_proxy, addr) = micro_tests::listening(
        &micro_bin(),
        &["proxy", "--proxy_address", ":0"],
        &[("MICRO_REGISTRY", "memory")],
        "proxy",
    );
    assert!(addr.starts_with("0.0.0.0:"), "{addr}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn register_on_mdns_announces_until_interrupted_and_deregister_says_why_it_cannot() {
    let registry = mdns();
    let name = format!("registered{}", std::process::id());
    let record = format!(r#"{{"name":"{name}","nodes":[{{"id":"{name}-1","address":"127.0.0.1:7201"}}]}}"#);
    let mut register = Command::new(micro_bin())
        .args(["register", "service", &record])
        .env("MICRO_REGISTRY", "mdns")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stderr = std::io::BufReader::new(register.stderr.take().unwrap());
    let mut said = String::new();
    stderr.read_line(&mut said).unwrap();
    assert!(said.contains("until interrupted"), "{said}");
    let rest = std::thread::spawn(move || {
        let mut rest = String::new();
        let _ = std::io::Read::read_to_string(&mut stderr, &mut rest);
        rest
    });
    wait_for("the record to be heard", Duration::from_secs(20), async || registry.get_service(&name).await.is_ok())
        .await;
    assert!(register.try_wait().unwrap().is_none(), "micro register keeps announcing");

    let r = record.clone();
    let (code, _, err) = tokio::task::spawn_blocking(move || micro(&["deregister", "service", &r])).await.unwrap();
    assert_eq!(code, Some(1), "{err}");
    assert!(err.contains("withdrawn only by the process that announces it"), "{err}");

    micro_tests::signal(&register, "INT");
    let status = tokio::task::spawn_blocking(move || register.wait().unwrap()).await.unwrap();
    let rest = rest.join().unwrap();
    assert!(status.success(), "{status}: {rest}");
    assert!(rest.contains("withdrew"), "{rest}");
    wait_for("the record to be withdrawn", Duration::from_secs(20), async || {
        registry.get_service(&name).await.is_err()
    })
    .await;
}
