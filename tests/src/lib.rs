//! Support for the end-to-end tests: the `testing.Tester` service, helpers to start services on
//! loopback, and to find the real peers (Python grpcio) the tests talk to.

#![allow(missing_docs)]

pub mod browser;
pub mod certs;
pub mod fuzz;
pub mod pubsub;
pub mod slack;

pub mod testing {
    micro::include_proto!("testing");
}

pub mod library;

/// The OpenAPI document `micro-build` wrote for `library.proto` (as `go.micro.api.library`).
pub const LIBRARY_OPENAPI: &str = include_str!(concat!(env!("OUT_DIR"), "/library.openapi.json"));

/// The codegen corpus (`protoc-gen-micro/tests/protos/corpus`), compiled.
#[allow(deprecated, clippy::all)]
pub mod corpus {
    include!(concat!(env!("OUT_DIR"), "/corpus/mod.rs"));
}

/// The codegen corpus's collisions, proto2 file and cross-package import, compiled without an
/// include file, each package in modules that mirror its name.
#[allow(clippy::all)]
pub mod plain {
    pub mod corpus {
        pub mod collide {
            include!(concat!(env!("OUT_DIR"), "/plain/corpus.collide.rs"));
        }
        pub mod legacy {
            include!(concat!(env!("OUT_DIR"), "/plain/corpus.legacy.rs"));
        }
        pub mod uses {
            include!(concat!(env!("OUT_DIR"), "/plain/corpus.uses.rs"));
        }
    }
}

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use micro::registry::{MemoryRegistry, SharedRegistry};
use micro::{Error, Request, ServerStream, Service, Streaming};
use testing::*;

/// The test handler; `node` names the node in replies.
#[derive(Debug, Clone, Default)]
pub struct Tester {
    pub node: String,
}

impl TesterHandler for Tester {
    async fn echo(&self, request: Request<EchoRequest>) -> Result<EchoReply, Error> {
        if request.sleep_ms > 0 {
            tokio::time::sleep(Duration::from_millis(request.sleep_ms.into())).await;
        }
        if request.grpc_code != 0 {
            let code = micro::error::GrpcCode::from_i32(request.grpc_code as i32);
            return Err(Error::from_grpc("testing", code, &format!("asked to fail: {}", request.message)));
        }
        if request.fail_code != 0 {
            return Err(Error::new("testing", request.fail_code as u16, format!("asked to fail: {}", request.message)));
        }
        let metadata = request.metadata().iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        let deadline_ms =
            request.deadline().map_or(-1, |d| d.saturating_duration_since(Instant::now()).as_millis() as i64);
        Ok(EchoReply {
            message: request.message.clone(),
            metadata,
            deadline_ms,
            node: self.node.clone(),
            big: request.big,
        })
    }

    async fn peek(&self, request: Request<EchoRequest>) -> Result<EchoReply, Error> {
        self.echo(request).await
    }

    async fn count(&self, request: Request<CountRequest>, stream: ServerStream<Number>) -> Result<(), Error> {
        for i in 1..=request.to {
            if i == request.fail_at {
                return Err(Error::conflict("testing", format!("failed at {i}")));
            }
            stream.send(Number { value: i.into() }).await?;
        }
        Ok(())
    }

    async fn sum(&self, request: Request<Streaming<Number>>) -> Result<Number, Error> {
        let mut numbers = request.into_inner();
        let mut total = 0;
        while let Some(n) = numbers.message().await? {
            total += n.value;
        }
        Ok(Number { value: total })
    }

    async fn shout(&self, request: Request<Streaming<Line>>, stream: ServerStream<Line>) -> Result<(), Error> {
        let mut lines = request.into_inner();
        while let Some(line) = lines.message().await? {
            stream.send(Line { text: line.text.to_uppercase() }).await?;
        }
        Ok(())
    }
}

/// A started `testing` service node on 127.0.0.1 with a random port.
pub async fn start_tester(registry: SharedRegistry, node: &str) -> (Service, std::net::SocketAddr) {
    let mut opts = micro::options::Options::default();
    opts.register_interval = Duration::ZERO;
    let service = Service::builder().name("testing").options(opts).registry(registry).build().expect("service builds");
    register_tester_handler(service.server(), Tester { node: node.to_string() });
    let addr = service.start().await.expect("service starts");
    (service, addr)
}

/// A fresh in-memory registry.
pub fn memory_registry() -> SharedRegistry {
    Arc::new(MemoryRegistry::new())
}

/// A client over `registry` with `retries`.
pub fn client(registry: SharedRegistry, retries: u32) -> micro::Client {
    micro::Client::new(registry, micro::client::ClientOptions { retries, ..Default::default() })
}

/// The repository root.
pub fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).parent().expect("tests/ has a parent").to_path_buf()
}

/// `node SCRIPT ARGS` from `tests/node` (its packages installed by the README's test command):
/// the script's standard output parsed as JSON; a failed script fails the test with its stderr.
pub async fn node(script: &str, args: &[&str]) -> serde_json::Value {
    let dir = repo_root().join("tests/node");
    assert!(
        dir.join("node_modules").exists(),
        "the interop tests need tests/node/node_modules: run the README's test command (it runs npm ci there)"
    );
    let node = std::env::var_os("MICRO_TEST_NODE").unwrap_or_else(|| "node".into());
    let out = tokio::process::Command::new(node)
        .arg(script)
        .args(args)
        .current_dir(&dir)
        .kill_on_drop(true)
        .output()
        .await
        .expect("node runs");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "node {script} {args:?} failed: {}\n{stdout}", String::from_utf8_lossy(&out.stderr));
    serde_json::from_str(&stdout).unwrap_or_else(|e| panic!("node {script} printed no JSON ({e}): {stdout}"))
}

/// The Python with grpcio that the interop tests use: `MICRO_TEST_PYTHON`, else `.venv/bin/python`.
pub fn python() -> PathBuf {
    if let Some(p) = std::env::var_os("MICRO_TEST_PYTHON") {
        return PathBuf::from(p);
    }
    let venv = repo_root().join(".venv/bin/python");
    assert!(
        venv.exists(),
        "the interop tests need Python with grpcio: run the README's test command (it makes .venv), or set MICRO_TEST_PYTHON"
    );
    venv
}

/// Waits until `cond` holds, failing after `timeout`.
pub async fn wait_for(what: &str, timeout: Duration, mut cond: impl AsyncFnMut() -> bool) {
    let deadline = Instant::now() + timeout;
    while !cond().await {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// A binary of the workspace (built by `cargo test --workspace`), next to the test executable.
pub fn workspace_bin(name: &str) -> PathBuf {
    let exe = std::env::current_exe().expect("test executable path");
    let dir = exe.parent().and_then(|d| d.parent()).expect("target/<profile>/deps");
    let bin = dir.join(name);
    assert!(bin.exists(), "{} is not built: run the tests with `cargo test --workspace`", bin.display());
    bin
}

/// A child process that is killed when dropped.
pub struct Child(pub std::process::Child);

impl Drop for Child {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Sends SIGTERM (or SIGINT) to a child.
pub fn signal(child: &std::process::Child, sig: &str) {
    let status = std::process::Command::new("kill").arg(format!("-{sig}")).arg(child.id().to_string()).status();
    assert!(status.is_ok_and(|s| s.success()), "kill -{sig} failed");
}

/// Runs `curl -s --max-time 10 ARGS`; returns the HTTP status (0 when no response came) and the
/// body.
pub fn curl(args: &[&str]) -> (u16, String) {
    let out = std::process::Command::new("curl")
        .args(["-s", "--max-time", "10", "-w", "\n%{http_code}"])
        .args(args)
        .output()
        .expect("curl runs");
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    let (body, code) = text.rsplit_once('\n').unwrap_or(("", "0"));
    (code.trim().parse().unwrap_or(0), body.to_string())
}

/// Runs `curl -s --max-time 10 -D - ARGS`; returns the HTTP status (0 when no response came),
/// the response head (lowercase) and the body.
pub fn curl_head(args: &[&str]) -> (u16, String, String) {
    let out = std::process::Command::new("curl")
        .args(["-s", "--max-time", "10", "-D", "-", "-o", "-", "-w", "\n%{http_code}"])
        .args(args)
        .output()
        .expect("curl runs");
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    let (rest, code) = text.rsplit_once('\n').unwrap_or(("", "0"));
    let (head, body) = rest.split_once("\r\n\r\n").unwrap_or((rest, ""));
    (code.trim().parse().unwrap_or(0), head.to_lowercase(), body.to_string())
}

/// Starts `program ARGS` (with `envs`), waits for its `<prefix> listening on [scheme://]ADDR`
/// line on standard error; returns the process and the address (`host:port`). The rest of its
/// standard error is read and dropped.
pub fn listening(program: &std::path::Path, args: &[&str], envs: &[(&str, &str)], prefix: &str) -> (Child, String) {
    use std::io::BufRead;
    let mut child = std::process::Command::new(program)
        .args(args)
        .envs(envs.iter().copied())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("{} starts: {e}", program.display()));
    let mut lines = std::io::BufReader::new(child.stderr.take().expect("stderr")).lines();
    let marker = format!("{prefix} listening on ");
    let addr = loop {
        let line = lines
            .next()
            .unwrap_or_else(|| panic!("{} {args:?} exited before listening", program.display()))
            .expect("a line of stderr");
        if let Some(rest) = line.strip_prefix(&marker) {
            let url = rest.split(' ').next().unwrap_or_default();
            break url.split_once("://").map_or(url, |(_, a)| a).to_string();
        }
    };
    std::thread::spawn(move || for _ in lines {});
    (Child(child), addr)
}

/// One HTTP/2 request (prior knowledge) with a raw body and `headers`, with no deadline of the
/// client's own beyond 10 s of safety; the status, and the trailers (the headers for a
/// trailers-only answer), where a gRPC status is.
pub async fn h2_request(addr: &str, path: &str, headers: &[(&str, &str)], body: Vec<u8>) -> (u16, http::HeaderMap) {
    use http_body_util::BodyExt;
    let stream = tokio::net::TcpStream::connect(addr).await.expect("the server accepts");
    let (mut sender, conn) = hyper::client::conn::http2::handshake(
        hyper_util::rt::TokioExecutor::new(),
        hyper_util::rt::TokioIo::new(stream),
    )
    .await
    .expect("an HTTP/2 handshake");
    tokio::spawn(conn);
    let mut req = http::Request::post(format!("http://{addr}{path}")).header("te", "trailers");
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    let req = req.body(http_body_util::Full::new(bytes::Bytes::from(body))).expect("a request");
    let safety = Duration::from_secs(10);
    let resp =
        tokio::time::timeout(safety, sender.send_request(req)).await.expect("an answer in 10 s").expect("a response");
    let status = resp.status().as_u16();
    let head = resp.headers().clone();
    let collected =
        tokio::time::timeout(safety, resp.into_body().collect()).await.expect("a body in 10 s").expect("a body");
    (status, collected.trailers().cloned().unwrap_or(head))
}

/// A free TCP port on 127.0.0.1 (bound, then released).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()).map(|a| a.port()).expect("a free port")
}

/// A real etcd server (Debian's `etcd-server`) on 127.0.0.1 random ports with a temp data dir;
/// alone, or a member of an [`EtcdCluster`].
pub struct Etcd {
    child: Option<std::process::Child>,
    dir: tempfile::TempDir,
    pub client_port: u16,
    peer_port: u16,
    name: String,
    /// `--initial-cluster`.
    cluster: String,
}

impl Etcd {
    /// Starts etcd and waits until it answers.
    pub fn start() -> Etcd {
        let mut etcd = Etcd::member("micro-test");
        etcd.cluster = format!("micro-test={}", etcd.peer_url());
        etcd.spawn();
        etcd
    }

    fn member(name: &str) -> Etcd {
        Etcd {
            child: None,
            dir: tempfile::tempdir().expect("temp dir"),
            client_port: free_port(),
            peer_port: free_port(),
            name: name.to_string(),
            cluster: String::new(),
        }
    }

    fn peer_url(&self) -> String {
        format!("http://127.0.0.1:{}", self.peer_port)
    }

    /// `127.0.0.1:PORT`.
    pub fn address(&self) -> String {
        format!("127.0.0.1:{}", self.client_port)
    }

    /// The server's process id, while it runs.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(std::process::Child::id)
    }

    fn spawn(&mut self) {
        self.launch();
        self.wait_healthy();
    }

    fn launch(&mut self) {
        let client = format!("http://127.0.0.1:{}", self.client_port);
        let peer = self.peer_url();
        let child = std::process::Command::new("etcd")
            .args(["--name", &self.name, "--data-dir"])
            .arg(self.dir.path().join("data"))
            .args(["--listen-client-urls", &client, "--advertise-client-urls", &client])
            .args(["--listen-peer-urls", &peer, "--initial-advertise-peer-urls", &peer])
            .args(["--initial-cluster", &self.cluster, "--log-level", "error"])
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("etcd starts (apt install etcd-server; ./scripts/setup does it)");
        self.child = Some(child);
    }

    fn wait_healthy(&self) {
        let client = format!("http://127.0.0.1:{}", self.client_port);
        let deadline = Instant::now() + Duration::from_secs(20);
        let url = format!("{client}/health");
        loop {
            let ok = std::process::Command::new("curl")
                .args(["-sf", "-m", "1", &url])
                .output()
                .is_ok_and(|o| o.status.success() && String::from_utf8_lossy(&o.stdout).contains("true"));
            if ok {
                return;
            }
            assert!(Instant::now() < deadline, "etcd did not become healthy on {client}");
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// This member's id and the leader's, as its `/v3/maintenance/status` says.
    fn status(&self) -> Option<(String, String)> {
        let url = format!("http://127.0.0.1:{}/v3/maintenance/status", self.client_port);
        let (code, body) = curl(&["-X", "POST", "-d", "{}", &url]);
        let v: serde_json::Value = serde_json::from_str(&body).ok().filter(|_| code == 200)?;
        Some((v["header"]["member_id"].as_str()?.to_string(), v["leader"].as_str()?.to_string()))
    }

    /// Kills etcd (SIGKILL) and waits for it to exit.
    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Starts etcd again on the same ports; `wipe` starts from an empty data dir.
    pub fn restart(&mut self, wipe: bool) {
        self.kill();
        if wipe {
            let _ = std::fs::remove_dir_all(self.dir.path().join("data"));
        }
        self.spawn();
    }
}

impl Drop for Etcd {
    fn drop(&mut self) {
        self.kill();
    }
}

/// A cluster of real etcd members on loopback.
pub struct EtcdCluster {
    /// The members, in order; a killed one stays in place, stopped.
    pub members: Vec<Etcd>,
}

impl EtcdCluster {
    /// Starts `n` members and waits until every one answers.
    pub fn start(n: usize) -> EtcdCluster {
        let mut members: Vec<Etcd> = (0..n).map(|i| Etcd::member(&format!("member{i}"))).collect();
        let cluster = members.iter().map(|m| format!("{}={}", m.name, m.peer_url())).collect::<Vec<_>>().join(",");
        for m in &mut members {
            m.cluster = cluster.clone();
            m.launch();
        }
        for m in &members {
            m.wait_healthy();
        }
        EtcdCluster { members }
    }

    /// Every member's client address, comma separated (for `--registry_address`).
    pub fn addresses(&self) -> String {
        self.members.iter().map(Etcd::address).collect::<Vec<_>>().join(",")
    }

    /// The index of the member that leads now, once one does.
    pub fn leader(&self) -> usize {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let running = self.members.iter().enumerate().filter(|(_, m)| m.child.is_some());
            let ids: Vec<(usize, String, String)> =
                running.filter_map(|(i, m)| m.status().map(|(id, leader)| (i, id, leader))).collect();
            if let Some((i, _, _)) = ids.iter().find(|(_, id, leader)| id == leader) {
                return *i;
            }
            assert!(Instant::now() < deadline, "no etcd member leads: {ids:?}");
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

/// `tests/python/interop.py server`: a Python grpcio server of `testing.Tester` with reflection.
pub struct PythonServer {
    child: std::process::Child,
    /// `127.0.0.1:PORT`.
    pub addr: String,
}

impl PythonServer {
    /// Starts it and waits for its port.
    pub fn start() -> PythonServer {
        use std::io::BufRead;
        let mut child = std::process::Command::new(python())
            .arg(repo_root().join("tests/python/interop.py"))
            .arg("server")
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .spawn()
            .expect("python server starts");
        let mut line = String::new();
        std::io::BufReader::new(child.stdout.take().expect("stdout")).read_line(&mut line).expect("port line");
        let port: u16 = line.trim().parse().unwrap_or_else(|_| panic!("python server printed {line:?}"));
        PythonServer { child, addr: format!("127.0.0.1:{port}") }
    }
}

impl Drop for PythonServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A real NATS server (Debian's `nats-server`) on 127.0.0.1 with a random port; alone, or a
/// member of a [`NatsCluster`].
pub struct Nats {
    child: Option<std::process::Child>,
    /// Its port.
    pub port: u16,
    /// Cluster arguments (route port, routes, monitoring port), for a member; JetStream's.
    cluster: Vec<String>,
    /// JetStream's store, kept across restarts.
    _store: Option<tempfile::TempDir>,
}

impl Nats {
    /// Starts nats-server and waits until it accepts connections.
    pub fn start() -> Nats {
        let mut n = Nats { child: None, port: free_port(), cluster: Vec::new(), _store: None };
        n.spawn();
        n
    }

    /// Starts nats-server with JetStream (`-js`), its store in a temp dir that outlives restarts.
    pub fn start_jetstream() -> Nats {
        let store = tempfile::tempdir().expect("temp dir");
        let cluster = vec!["-js".to_string(), "-sd".to_string(), store.path().display().to_string()];
        let mut n = Nats { child: None, port: free_port(), cluster, _store: Some(store) };
        n.spawn();
        n
    }

    /// `127.0.0.1:PORT`.
    pub fn address(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// The server's process id, while it runs.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(std::process::Child::id)
    }

    fn spawn(&mut self) {
        let child = std::process::Command::new("nats-server")
            .args(["-a", "127.0.0.1", "-p", &self.port.to_string()])
            .args(&self.cluster)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("nats-server starts (apt install nats-server; ./scripts/setup does it)");
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(10);
        while std::net::TcpStream::connect(self.address()).is_err() {
            assert!(Instant::now() < deadline, "nats-server did not listen on {}", self.address());
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Kills the server.
    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Kills and starts it again on the same port.
    pub fn restart(&mut self) {
        self.kill();
        self.spawn();
    }

    /// Starts it again after [`Nats::kill`], on the same port (and store).
    pub fn start_again(&mut self) {
        self.spawn();
    }
}

impl Drop for Nats {
    fn drop(&mut self) {
        self.kill();
    }
}

/// A cluster of real NATS servers on loopback, routed to each other, each with its monitoring
/// port (`/connz`, `/routez`).
pub struct NatsCluster {
    /// The servers, in order; a killed one stays in place, stopped.
    pub servers: Vec<Nats>,
    monitors: Vec<u16>,
}

impl NatsCluster {
    /// Starts `n` servers and waits until each has a route to every other.
    pub fn start(n: usize) -> NatsCluster {
        let routes: Vec<u16> = (0..n).map(|_| free_port()).collect();
        let monitors: Vec<u16> = (0..n).map(|_| free_port()).collect();
        let servers = (0..n)
            .map(|i| {
                let others: Vec<String> = routes
                    .iter()
                    .enumerate()
                    .filter(|(j, _)| *j != i)
                    .map(|(_, p)| format!("nats://127.0.0.1:{p}"))
                    .collect();
                let mut server = Nats { child: None, port: free_port(), cluster: Vec::new(), _store: None };
                server.cluster = vec![
                    "--cluster_name".into(),
                    "micro".into(),
                    "--cluster".into(),
                    format!("nats://127.0.0.1:{}", routes[i]),
                    "--routes".into(),
                    others.join(","),
                    "-m".into(),
                    monitors[i].to_string(),
                ];
                server.spawn();
                server
            })
            .collect();
        let cluster = NatsCluster { servers, monitors };
        let deadline = Instant::now() + Duration::from_secs(20);
        while (0..n).any(|i| cluster.monitor(i, "routez")["num_routes"].as_u64() != Some(n as u64 - 1)) {
            assert!(Instant::now() < deadline, "the NATS servers did not route to each other");
            std::thread::sleep(Duration::from_millis(100));
        }
        cluster
    }

    /// Every server's address, comma separated (for `--transport_address`, `--broker_address`).
    pub fn addresses(&self) -> String {
        self.servers.iter().map(Nats::address).collect::<Vec<_>>().join(",")
    }

    /// Server `i`'s monitoring page `page` (`connz`, `routez`) as JSON (null if it is down).
    pub fn monitor(&self, i: usize, page: &str) -> serde_json::Value {
        let (code, body) = curl(&[&format!("http://127.0.0.1:{}/{page}", self.monitors[i])]);
        if code != 200 {
            return serde_json::Value::Null;
        }
        serde_json::from_str(&body).unwrap_or_default()
    }

    /// How many clients each server holds now.
    pub fn connections(&self) -> Vec<u64> {
        (0..self.servers.len()).map(|i| self.monitor(i, "connz")["num_connections"].as_u64().unwrap_or(0)).collect()
    }
}

/// A real RabbitMQ server (Debian's `rabbitmq-server`) as a plain process: its own node name,
/// `epmd`, AMQP and distribution ports on 127.0.0.1, and its store in a temp dir that outlives
/// restarts.
pub struct Rabbit {
    server: Option<std::process::Child>,
    epmd: Option<std::process::Child>,
    dir: tempfile::TempDir,
    /// The AMQP port.
    pub port: u16,
    epmd_port: u16,
    dist_port: u16,
}

impl Rabbit {
    /// Starts epmd and the server; waits until AMQP is accepted (10–30 s).
    pub fn start() -> Rabbit {
        let dir = tempfile::tempdir().expect("temp dir");
        let (port, epmd_port, dist_port) = (free_port(), free_port(), free_port());
        let conf = format!(
            "listeners.tcp.default = 127.0.0.1:{port}\ndistribution.listener.interface = 127.0.0.1\n\
             distribution.listener.port_range.min = {dist_port}\ndistribution.listener.port_range.max = {dist_port}\n\
             log.console = true\nlog.file = false\nlog.console.level = warning\n"
        );
        std::fs::write(dir.path().join("rabbitmq.conf"), conf).expect("rabbitmq.conf");
        std::fs::write(dir.path().join("enabled_plugins"), "[].").expect("enabled_plugins");
        std::fs::write(dir.path().join("rabbitmq-env.conf"), "").expect("rabbitmq-env.conf");
        let epmd = std::process::Command::new("epmd")
            .args(["-address", "127.0.0.1", "-port", &epmd_port.to_string()])
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("epmd starts (apt install rabbitmq-server; ./scripts/setup does it)");
        let mut r = Rabbit { server: None, epmd: Some(epmd), dir, port, epmd_port, dist_port };
        r.spawn();
        r
    }

    /// `127.0.0.1:PORT`.
    pub fn address(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// The Erlang VM's process id, once it has written it.
    pub fn pid(&self) -> Option<u32> {
        std::fs::read_to_string(self.dir.path().join("rabbit.pid")).ok()?.trim().parse().ok()
    }

    fn spawn(&mut self) {
        let d = self.dir.path();
        let node = format!("micro{}@localhost", self.dist_port);
        let child = std::process::Command::new("/usr/lib/rabbitmq/bin/rabbitmq-server")
            .env("HOME", d)
            .env("ERL_EPMD_PORT", self.epmd_port.to_string())
            .env("ERL_EPMD_ADDRESS", "127.0.0.1")
            .env("RABBITMQ_NODENAME", &node)
            .env("RABBITMQ_NODE_IP_ADDRESS", "127.0.0.1")
            .env("RABBITMQ_NODE_PORT", self.port.to_string())
            .env("RABBITMQ_DIST_PORT", self.dist_port.to_string())
            .env("RABBITMQ_MNESIA_BASE", d.join("mnesia"))
            .env("RABBITMQ_LOG_BASE", d.join("log"))
            .env("RABBITMQ_CONFIG_FILE", d.join("rabbitmq"))
            .env("RABBITMQ_ENABLED_PLUGINS_FILE", d.join("enabled_plugins"))
            .env("RABBITMQ_CONF_ENV_FILE", d.join("rabbitmq-env.conf"))
            .env("RABBITMQ_PID_FILE", d.join("rabbit.pid"))
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("rabbitmq-server starts (apt install rabbitmq-server; ./scripts/setup does it)");
        self.server = Some(child);
        let deadline = Instant::now() + Duration::from_secs(90);
        while std::net::TcpStream::connect(self.address()).is_err() {
            assert!(Instant::now() < deadline, "rabbitmq-server did not listen on {}", self.address());
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Stops the server (SIGTERM, as its script expects) and waits for it to exit.
    pub fn stop(&mut self) {
        if let Some(mut c) = self.server.take() {
            signal(&c, "TERM");
            let deadline = Instant::now() + Duration::from_secs(30);
            while c.try_wait().ok().flatten().is_none() && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(50));
            }
            let _ = c.kill();
            let _ = c.wait();
        }
        // The Erlang VM the script started, if it outlived the script.
        if let Ok(pid) = std::fs::read_to_string(self.dir.path().join("rabbit.pid")) {
            let cmdline = std::fs::read(format!("/proc/{}/cmdline", pid.trim())).unwrap_or_default();
            if String::from_utf8_lossy(&cmdline).contains(&self.dir.path().display().to_string()) {
                let _ = std::process::Command::new("kill").args(["-9", pid.trim()]).status();
            }
        }
    }

    /// Stops and starts the server again on the same ports and store.
    pub fn restart(&mut self) {
        self.stop();
        self.spawn();
    }

    /// Starts it again after [`Rabbit::stop`], on the same ports and store.
    pub fn start_again(&mut self) {
        self.spawn();
    }
}

impl Drop for Rabbit {
    fn drop(&mut self) {
        self.stop();
        if let Some(mut e) = self.epmd.take() {
            let _ = e.kill();
            let _ = e.wait();
        }
    }
}

/// Tansu, a Kafka-compatible broker from crates.io, on 127.0.0.1 with a random port: the binary
/// named by `TANSU_BIN`, else `tansu` on `PATH`, else `.tools/tansu/bin/tansu` (where
/// `./scripts/setup --kafka` installs it). Its store is SQLite in a temp dir when the binary
/// was built with it, so that it outlives restarts; memory otherwise.
pub struct Tansu {
    child: Option<std::process::Child>,
    bin: PathBuf,
    /// Its port.
    pub port: u16,
    dir: tempfile::TempDir,
    /// Whether what it stores outlives a restart.
    pub durable: bool,
}

impl Tansu {
    /// The tansu binary, if this machine has one.
    pub fn binary() -> Option<PathBuf> {
        if let Some(bin) = std::env::var_os("TANSU_BIN") {
            return Some(PathBuf::from(bin));
        }
        let on_path = std::env::var_os("PATH")
            .and_then(|p| std::env::split_paths(&p).map(|d| d.join("tansu")).find(|b| b.is_file()));
        on_path.or_else(|| Some(repo_root().join(".tools/tansu/bin/tansu")).filter(|b| b.is_file()))
    }

    /// Starts tansu and waits until it accepts connections; `None` when there is no binary.
    pub fn start() -> Option<Tansu> {
        let bin = Tansu::binary()?;
        let dir = tempfile::tempdir().expect("temp dir");
        let mut t = Tansu { child: None, bin, port: free_port(), dir, durable: true };
        t.spawn();
        Some(t)
    }

    /// `127.0.0.1:PORT`.
    pub fn address(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    fn spawn(&mut self) {
        let url = format!("tcp://127.0.0.1:{}", self.port);
        // A relative path, which tansu takes from its working directory (the temp dir).
        let storages: &[&str] =
            if self.durable { &["sqlite://tansu.db", "memory://tansu/"] } else { &["memory://tansu/"] };
        for storage in storages {
            let mut child = std::process::Command::new(&self.bin)
                .args(["broker", "--listener-url", &url, "--advertised-listener-url", &url])
                .args(["--storage-engine", storage])
                .current_dir(self.dir.path())
                .stdout(std::process::Stdio::null())
                .stderr(std::process::Stdio::null())
                .spawn()
                .expect("tansu starts");
            let deadline = Instant::now() + Duration::from_secs(20);
            loop {
                if std::net::TcpStream::connect(self.address()).is_ok() {
                    self.child = Some(child);
                    self.durable = storage.starts_with("sqlite");
                    return;
                }
                if child.try_wait().ok().flatten().is_some() {
                    // This build has no SQLite: memory it is.
                    break;
                }
                assert!(Instant::now() < deadline, "tansu did not listen on {}", self.address());
                std::thread::sleep(Duration::from_millis(20));
            }
        }
        panic!("tansu did not start");
    }

    /// The server's process id.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(std::process::Child::id)
    }

    /// Kills and starts it again on the same port and store.
    pub fn restart(&mut self) {
        self.kill();
        self.spawn();
    }

    /// Kills the server.
    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Starts it again after [`Tansu::kill`], on the same port and store.
    pub fn start_again(&mut self) {
        self.spawn();
    }
}

impl Drop for Tansu {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}
