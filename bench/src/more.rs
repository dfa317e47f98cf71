//! The sections after unary gRPC: server streaming (against tonic and a bare h2 ceiling), JSON
//! over HTTP/1.1, the protocols on one port (gRPC-Web, Connect), client efficiency, instructions
//! per request, the gateway, the NATS broker, the durable brokers, discovery, scale (10,000 idle
//! connections, 1 MiB messages), code generation, scaffolding.
//!
//! Servers run on core 0 and drivers on core 1, as for unary. Real peers only: `h2load`,
//! `nats-server`, `etcd`, `valgrind`, `cargo`; a section whose tool is missing says so and is
//! skipped. Everything listens on 127.0.0.1; mDNS is only used inside a private network namespace.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use micro_tests::{Child, Etcd, Nats};

use crate::{pinned, proc_field, rps, start, stats, Server, SERVERS};

/// What every section needs.
pub(crate) struct Context {
    /// Where the release binaries are.
    pub(crate) dir: PathBuf,
    /// A scratch directory.
    pub(crate) tmp: PathBuf,
    pub(crate) rounds: u64,
    pub(crate) smoke: bool,
    pub(crate) cold_build: bool,
}

impl Context {
    fn n(&self, full: u64, smoke: u64) -> u64 {
        if self.smoke {
            smoke
        } else {
            full
        }
    }

    fn workspace(&self) -> PathBuf {
        self.dir.parent().and_then(Path::parent).map(Path::to_path_buf).unwrap_or_default()
    }

    fn bin(&self, name: &str) -> PathBuf {
        self.dir.join(name)
    }
}

/// Runs every section, or the one named by `only`.
pub(crate) fn run(ctx: &Context, only: Option<&str>) {
    let on = |name: &str| only.is_none_or(|o| o == name);
    if on("streaming") {
        streaming(ctx);
    }
    if on("json") {
        json_over_http1(ctx);
    }
    if on("protocols") {
        protocols(ctx);
    }
    if on("client") {
        client_efficiency(ctx);
    }
    if on("instructions") {
        instructions(ctx);
    }
    if on("observability") {
        observability(ctx);
    }
    if on("resilience") {
        resilience(ctx);
    }
    if on("gateway") || on("discovery") {
        let etcd = etcd();
        if on("gateway") {
            gateway(ctx, etcd.as_ref());
        }
        if on("discovery") {
            discovery(ctx, etcd.as_ref());
        }
    }
    if on("broker") {
        broker(ctx);
    }
    if on("durable") {
        durable_brokers(ctx);
    }
    if on("scale") {
        idle_connections(ctx);
        large_messages(ctx);
    }
    if on("codegen") {
        codegen(ctx);
    }
    if on("scaffolding") {
        scaffolding(ctx);
    }
}

/// The section names `--only` takes (`unary` is the first table).
pub(crate) const SECTIONS: &[&str] = &[
    "unary",
    "streaming",
    "json",
    "protocols",
    "client",
    "instructions",
    "gateway",
    "observability",
    "resilience",
    "discovery",
    "broker",
    "durable",
    "scale",
    "codegen",
    "scaffolding",
];

fn have(tool: &str) -> bool {
    Command::new("sh").args(["-c", &format!("command -v {tool}")]).output().is_ok_and(|o| o.status.success())
}

/// A gRPC request frame for `HelloRequest { name }`.
fn hello_frame(name: &str) -> Vec<u8> {
    let mut msg = vec![0x0a];
    let mut len = name.len();
    while len >= 0x80 {
        msg.push((len as u8 & 0x7f) | 0x80);
        len >>= 7;
    }
    msg.push(len as u8);
    msg.extend_from_slice(name.as_bytes());
    let mut frame = vec![0u8];
    frame.extend((msg.len() as u32).to_be_bytes());
    frame.extend(msg);
    frame
}

/// Runs `h2load` on core 1; returns req/s (0 when not every request succeeded).
fn h2load(args: &[&str]) -> f64 {
    let out = pinned("1", Path::new("h2load")).args(args).output().expect("h2load runs");
    let text = String::from_utf8_lossy(&out.stdout);
    let total = args.iter().position(|a| *a == "-n").and_then(|i| args.get(i + 1)).copied().unwrap_or("?");
    if !text.contains(&format!("{total} succeeded")) {
        eprintln!("warning: not every request succeeded:\n{text}");
        return 0.0;
    }
    rps(&text)
}

fn ratio(a: f64, b: f64) -> f64 {
    if b > 0.0 {
        a / b
    } else {
        0.0
    }
}

/// One table row: the medians of `ours` and `theirs`, and min/median/max of the ratio per round.
fn row(label: &str, metric: &str, ours: &[f64], theirs: &[f64]) {
    let ratios: Vec<f64> = ours.iter().zip(theirs).map(|(a, b)| ratio(*a, *b)).collect();
    let (lo, mid, hi) = stats(&ratios);
    println!("| {label} | {metric} | {:.2} | {:.2} | {lo:.2} / {mid:.2} / {hi:.2} |", stats(ours).1, stats(theirs).1);
}

fn streaming(ctx: &Context) {
    let per_stream = 1000u64;
    let streams = ctx.n(4000, 20);
    let req = ctx.tmp.join("stream.bin");
    std::fs::write(&req, hello_frame(&"x".repeat(per_stream as usize))).expect("request file");
    let (mut ours, mut theirs, mut bare) = (vec![], vec![], vec![]);
    for round in 0..ctx.rounds {
        for (name, bin, out) in [
            ("micro", "bench-micro-server", &mut ours),
            ("tonic", "bench-tonic-server", &mut theirs),
            ("bare", "bench-bare-server", &mut bare),
        ] {
            let server = start(&ctx.bin(bin));
            let url = format!("http://{}/helloworld.Greeter/SayHelloStream", server.addr);
            let n = streams.to_string();
            let rps = h2load(&[
                "-n",
                &n,
                "-c",
                "4",
                "-m",
                "8",
                "-d",
                req.to_str().unwrap_or_default(),
                "-H",
                "content-type: application/grpc",
                "-H",
                "te: trailers",
                &url,
            ]);
            eprintln!("round {} {name:5} stream {:>9.0} msgs/s", round + 1, rps * per_stream as f64);
            out.push(rps * per_stream as f64);
        }
    }
    println!("\n## Server streaming (`SayHelloStream`, {per_stream} replies per call, c=4x8)\n");
    println!("| load | metric | micro | tonic | micro/tonic (min / median / max) |\n|---|---|---|---|---|");
    row("stream", "msgs/s", &ours, &theirs);
    println!("\n| load | metric | micro | bare h2 | micro/bare (min / median / max) |\n|---|---|---|---|---|");
    row("stream", "msgs/s", &ours, &bare);
}

/// Resident memory of each server holding N idle HTTP/2 connections (each made one call).
fn idle_connections(ctx: &Context) {
    let n = ctx.n(10_000, 200);
    let mut per: Vec<Vec<f64>> = vec![vec![]; SERVERS.len()];
    let mut rss = vec![(0.0, 0.0); SERVERS.len()];
    for round in 0..ctx.rounds.min(2) {
        for (i, (name, bin)) in SERVERS.iter().enumerate() {
            let server = start(&ctx.bin(bin));
            let pid = server.child.id();
            // One connection first, so what is measured is per connection, not the first one's
            // runtime and buffers.
            let mut warm = idle_client(ctx, &server.addr, 1);
            let before = proc_field(pid, "status", "VmRSS:");
            let mut held = idle_client(ctx, &server.addr, n);
            let after = proc_field(pid, "status", "VmRSS:");
            let kib = (after - before) / n as f64;
            eprintln!(
                "round {} {name:5} {n} idle connections: {before:.0} → {after:.0} KiB, {kib:.1} KiB each",
                round + 1
            );
            per[i].push(kib);
            rss[i] = (before / 1024.0, after / 1024.0);
            for c in [&mut held, &mut warm] {
                drop(c.stdin.take());
                let _ = c.wait();
            }
        }
    }
    println!("\n## Idle connections: {n} HTTP/2 connections, one call each, then idle (server RSS)\n");
    println!("| server | RSS before MiB | RSS with them MiB | KiB per connection (median) | / tonic |\n|---|---|---|---|---|");
    let tonic = stats(&per[1]).1;
    for (i, (name, _)) in SERVERS.iter().enumerate() {
        let kib = stats(&per[i]).1;
        println!("| {name} | {:.1} | {:.1} | {kib:.1} | {:.2} |", rss[i].0, rss[i].1, ratio(kib, tonic));
    }
}

/// `bench-idle` on core 1 holding `n` connections to `addr`, once they are all open.
fn idle_client(ctx: &Context, addr: &str, n: u64) -> std::process::Child {
    let mut child = pinned("1", &ctx.bin("bench-idle"))
        .args([addr, &n.to_string()])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("bench-idle starts");
    let mut line = String::new();
    let out = child.stdout.take().expect("stdout");
    std::io::BufRead::read_line(&mut std::io::BufReader::new(out), &mut line).expect("bench-idle reports");
    assert!(line.starts_with("ready"), "bench-idle opened its connections: {line:?}");
    child
}

/// Unary calls with a 1 MiB name (so a 1 MiB request and a 1 MiB reply) on micro and tonic.
fn large_messages(ctx: &Context) {
    let n = ctx.n(2_000, 50).to_string();
    let req = ctx.tmp.join("large.bin");
    std::fs::write(&req, hello_frame(&"x".repeat(1 << 20))).expect("request file");
    let (mut ours, mut theirs) = (vec![], vec![]);
    for round in 0..ctx.rounds {
        for (name, bin, out) in
            [("micro", "bench-micro-server", &mut ours), ("tonic", "bench-tonic-server", &mut theirs)]
        {
            let server = start(&ctx.bin(bin));
            let url = format!("http://{}/helloworld.Greeter/SayHello", server.addr);
            let args = ["-n", &n, "-c", "4", "-m", "1", "-d", req.to_str().unwrap_or_default()];
            let rps =
                h2load(&[&args[..], &["-H", "content-type: application/grpc", "-H", "te: trailers", &url]].concat());
            eprintln!("round {} {name:5} 1 MiB {:>7.0} req/s", round + 1, rps);
            out.push(rps);
        }
    }
    println!("\n## Large messages: unary `SayHello` with a 1 MiB name (1 MiB each way), c=4x1\n");
    println!("| load | metric | micro | tonic | micro/tonic (min / median / max) |\n|---|---|---|---|---|");
    row("1 MiB", "req/s", &ours, &theirs);
    let mib: Vec<f64> = ours.iter().map(|r| r * 2.0).collect();
    let tonic_mib: Vec<f64> = theirs.iter().map(|r| r * 2.0).collect();
    row("1 MiB", "MiB/s (both ways)", &mib, &tonic_mib);
}

fn json_over_http1(ctx: &Context) {
    let n = ctx.n(100_000, 2_000).to_string();
    let grpc_req = ctx.tmp.join("unary.bin");
    std::fs::write(&grpc_req, hello_frame("world")).expect("request file");
    let json_req = ctx.tmp.join("unary.json");
    std::fs::write(&json_req, br#"{"name":"world"}"#).expect("request file");
    let (mut json, mut grpc) = (vec![], vec![]);
    for round in 0..ctx.rounds {
        let server = start(&ctx.bin("bench-micro-server"));
        let url = format!("http://{}/helloworld.Greeter/SayHello", server.addr);
        let g = h2load(&[
            "-n",
            &n,
            "-c",
            "16",
            "-m",
            "1",
            "-d",
            grpc_req.to_str().unwrap_or_default(),
            "-H",
            "content-type: application/grpc",
            "-H",
            "te: trailers",
            &url,
        ]);
        let j = h2load(&[
            "--h1",
            "-n",
            &n,
            "-c",
            "16",
            "-d",
            json_req.to_str().unwrap_or_default(),
            "-H",
            "content-type: application/json",
            &url,
        ]);
        eprintln!("round {} micro  gRPC {g:>9.0} req/s  JSON/HTTP1 {j:>9.0} req/s", round + 1);
        json.push(j);
        grpc.push(g);
    }
    println!("\n## JSON over HTTP/1.1 against gRPC, same micro server (16 connections, 1 request each in flight)\n");
    println!("| load | metric | JSON/HTTP1 | gRPC | JSON/gRPC (min / median / max) |\n|---|---|---|---|---|");
    row("c=16", "req/s", &json, &grpc);
}

/// Unary `SayHello` in each protocol the server speaks, against gRPC, on one server and load
/// (h2c, 16 connections × 16 in flight), the protocols alternating within each round.
fn protocols(ctx: &Context) {
    let n = ctx.n(100_000, 2_000).to_string();
    let frame = hello_frame("world");
    let files = [
        ("gRPC", frame.clone(), vec!["content-type: application/grpc", "te: trailers"]),
        ("gRPC-Web", frame.clone(), vec!["content-type: application/grpc-web+proto", "x-grpc-web: 1"]),
        ("Connect binary", frame[5..].to_vec(), vec!["content-type: application/proto", "connect-protocol-version: 1"]),
        (
            "Connect JSON",
            br#"{"name":"world"}"#.to_vec(),
            vec!["content-type: application/json", "connect-protocol-version: 1"],
        ),
    ];
    let mut results: Vec<Vec<f64>> = vec![vec![]; files.len()];
    for round in 0..ctx.rounds {
        let server = start(&ctx.bin("bench-micro-server"));
        let url = format!("http://{}/helloworld.Greeter/SayHello", server.addr);
        let mut line = format!("round {}", round + 1);
        for (i, (name, body, headers)) in files.iter().enumerate() {
            let file = ctx.tmp.join(format!("protocol-{i}.bin"));
            std::fs::write(&file, body).expect("request file");
            let mut args = vec!["-n", &n, "-c", "16", "-m", "16", "-d", file.to_str().unwrap_or_default()];
            for h in headers {
                args.extend(["-H", h]);
            }
            args.push(&url);
            let rps = h2load(&args);
            line.push_str(&format!("  {name} {rps:>9.0}"));
            results[i].push(rps);
        }
        eprintln!("{line} req/s");
    }
    println!("\n## Protocols on one port: gRPC-Web and Connect against gRPC, same micro server (h2c, c=16x16)\n");
    println!("| load | protocol | req/s | gRPC req/s | protocol/gRPC (min / median / max) |\n|---|---|---|---|---|");
    for (i, (name, _, _)) in files.iter().enumerate().skip(1) {
        row("c=16x16", name, &results[i], &results[0]);
    }
}

fn client_efficiency(ctx: &Context) {
    let n = ctx.n(100_000, 2_000).to_string();
    let server = start(&ctx.bin("bench-bare-server"));
    let (mut rps, mut cpu) = ([vec![], vec![]], [vec![], vec![]]);
    for round in 0..ctx.rounds {
        for (i, kind) in ["micro", "tonic"].iter().enumerate() {
            let out =
                pinned("1", &ctx.bin("bench-client")).args([*kind, server.addr.as_str(), n.as_str(), "64"]).output();
            let text = out.map(|o| String::from_utf8_lossy(&o.stdout).to_string()).unwrap_or_default();
            let mut f = text.split_whitespace().map(|v| v.parse::<f64>().unwrap_or(0.0));
            let (r, c) = (f.next().unwrap_or(0.0), f.next().unwrap_or(0.0));
            eprintln!("round {} client {kind:5} {r:>9.0} req/s {c:.2} CPU s", round + 1);
            rps[i].push(r);
            cpu[i].push(c * 100_000.0 / n.parse::<f64>().unwrap_or(1.0));
        }
    }
    println!("\n## Client efficiency: our client and tonic's against the bare server (one connection, 64 in flight, client on core 1)\n");
    println!("| load | metric | micro | tonic | micro/tonic (min / median / max) |\n|---|---|---|---|---|");
    row("c=64", "req/s", &rps[0], &rps[1]);
    row("c=64", "client CPU s / 100k req", &cpu[0], &cpu[1]);
}

/// Instructions per request under callgrind: counters zeroed after a warm-up, then `n`
/// sequential requests, then the server ends and callgrind writes its totals.
fn instructions(ctx: &Context) {
    if !have("valgrind") || !have("callgrind_control") {
        println!("\n## Instructions per request\n\nskipped: valgrind is not installed");
        return;
    }
    let n = ctx.n(2_000, 100);
    let req = ctx.tmp.join("unary.bin");
    std::fs::write(&req, hello_frame("world")).expect("request file");
    let mut per = vec![];
    for (name, bin) in SERVERS {
        let out = ctx.tmp.join(format!("callgrind.{name}"));
        let mut child = Command::new("valgrind")
            .args(["--tool=callgrind", "--quiet"])
            .arg(format!("--callgrind-out-file={}", out.display()))
            .arg(ctx.bin(bin))
            .arg("127.0.0.1:0")
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("valgrind starts");
        let mut line = String::new();
        let _ =
            std::io::BufRead::read_line(&mut std::io::BufReader::new(child.stdout.take().expect("stdout")), &mut line);
        let server = Server { child, addr: line.trim().to_string() };
        let url = format!("http://{}/helloworld.Greeter/SayHello", server.addr);
        let load = |n: u64| {
            h2load(&[
                "-n",
                &n.to_string(),
                "-c",
                "1",
                "-m",
                "1",
                "-d",
                req.to_str().unwrap_or_default(),
                "-H",
                "content-type: application/grpc",
                "-H",
                "te: trailers",
                &url,
            ])
        };
        load(n / 10 + 10);
        let pid = server.child.id().to_string();
        let _ = Command::new("callgrind_control").args(["-z", &pid]).output();
        load(n);
        let _ = Command::new("callgrind_control").args(["-d", &pid]).output();
        drop(server);
        // The profiles stay beside the binaries, for `callgrind_annotate`.
        let keep = ctx.dir.join(format!("callgrind.{name}.out"));
        let ir = callgrind_total(&ctx.tmp, &format!("callgrind.{name}"), Some(&keep)) / n as f64;
        eprintln!("callgrind {name:5} {ir:>9.0} instructions / request");
        per.push(ir);
    }
    println!("\n## Instructions per request (callgrind, {n} sequential unary calls after a warm-up)\n");
    println!("| metric | micro | tonic | bare | micro/tonic | micro/bare |\n|---|---|---|---|---|---|");
    println!(
        "| instructions / req | {:.0} | {:.0} | {:.0} | {:.2} | {:.2} |",
        per[0],
        per[1],
        per[2],
        ratio(per[0], per[1]),
        ratio(per[0], per[2])
    );
    println!("\n(profiles: `callgrind_annotate {}/callgrind.{{micro,tonic,bare}}.out`)", ctx.dir.display());
}

/// The instructions counted in the callgrind dumps in `dir` whose names start with `prefix`
/// (the smallest total, 0 when there is none); the dump is copied to `keep` when given.
fn callgrind_total(dir: &Path, prefix: &str, keep: Option<&Path>) -> f64 {
    let dumps = std::fs::read_dir(dir)
        .into_iter()
        .flatten()
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().starts_with(prefix))
        .filter_map(|e| std::fs::read_to_string(e.path()).ok())
        .filter_map(|t| {
            let total = t
                .lines()
                .find(|l| l.starts_with("summary:") || l.starts_with("totals:"))
                .and_then(|l| l.split_whitespace().nth(1).and_then(|v| v.parse::<f64>().ok()))?;
            (total > 0.0).then_some((total, t))
        });
    let Some((total, text)) = dumps.min_by(|a, b| a.0.total_cmp(&b.0)) else { return 0.0 };
    if let Some(path) = keep {
        let _ = std::fs::write(path, text);
    }
    total
}

/// Moves a running server to core 0, where the servers run.
fn pin(pid: Option<u32>) {
    if let Some(pid) = pid {
        let _ = Command::new("taskset").args(["-a", "-p", "-c", "0", &pid.to_string()]).output();
    }
}

/// A real etcd on random loopback ports (the tests' own), for the gateway and discovery.
fn etcd() -> Option<Etcd> {
    if !have("etcd") {
        return None;
    }
    let etcd = Etcd::start();
    pin(etcd.pid());
    Some(etcd)
}

/// Stops a service as a person would (SIGTERM, so it deregisters) and waits for it.
fn stop(mut service: Child) {
    micro_tests::signal(&service.0, "TERM");
    let _ = service.0.wait();
}

/// The helloworld service on core 0 as `name`, registered in `registry`.
fn helloworld(ctx: &Context, name: &str, registry: &str, address: &str) -> Child {
    Child(
        pinned("0", &ctx.bin("server"))
            .env("MICRO_SERVER_NAME", name)
            .env("MICRO_REGISTRY", registry)
            .env("MICRO_REGISTRY_ADDRESS", address)
            .env("MICRO_SERVER_ADDRESS", "127.0.0.1:0")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("the helloworld server starts"),
    )
}

fn micro_call(ctx: &Context, name: &str, registry: &str, address: &str) -> bool {
    Command::new(ctx.bin("micro"))
        .args(["call", name, "Greeter.SayHello", r#"{"name":"bench"}"#])
        .env("MICRO_REGISTRY", registry)
        .env("MICRO_REGISTRY_ADDRESS", address)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// A port nothing listens on now, on 127.0.0.1.
fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()).map_or(0, |a| a.port())
}

/// Debian's nginx (from PATH, or the copy `scripts/setup` unpacked into `.tools/nginx`).
fn nginx_binary(ctx: &Context) -> Option<PathBuf> {
    let unpacked = ctx.workspace().join(".tools/nginx/usr/sbin/nginx");
    if unpacked.exists() {
        return Some(unpacked);
    }
    have("nginx").then(|| PathBuf::from("nginx"))
}

/// nginx on core 0 as a reverse proxy with keep-alive upstreams in front of `upstream`, one
/// worker, no logs; returns it and its address.
fn nginx(ctx: &Context, upstream: &str) -> Option<(Child, String)> {
    let bin = nginx_binary(ctx)?;
    let dir = ctx.tmp.join("nginx");
    std::fs::create_dir_all(dir.join("temp")).ok()?;
    let port = free_port();
    let t = dir.join("temp").display().to_string();
    let conf = format!(
        "worker_processes 1;\npid {d}/nginx.pid;\nerror_log {d}/error.log warn;\nevents {{ worker_connections 1024; }}\n\
         http {{\n  access_log off;\n  client_body_temp_path {t}/body;\n  proxy_temp_path {t}/proxy;\n\
         fastcgi_temp_path {t}/fastcgi;\n  uwsgi_temp_path {t}/uwsgi;\n  scgi_temp_path {t}/scgi;\n\
         upstream svc {{ server {upstream}; keepalive 64; }}\n\
         server {{\n    listen 127.0.0.1:{port};\n    location / {{\n      proxy_pass http://svc;\n\
         proxy_http_version 1.1;\n      proxy_set_header Connection \"\";\n      proxy_set_header Host {upstream};\n    }}\n  }}\n}}\n",
        d = dir.display()
    );
    let file = dir.join("nginx.conf");
    std::fs::write(&file, conf).ok()?;
    let child = pinned("0", &bin)
        .arg("-p")
        .arg(&dir)
        .arg("-c")
        .arg(&file)
        .args(["-e", "stderr", "-g", "daemon off; master_process off;"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .ok()?;
    let addr = format!("127.0.0.1:{port}");
    let deadline = Instant::now() + Duration::from_secs(10);
    while std::net::TcpStream::connect(&addr).is_err() {
        if Instant::now() > deadline {
            return None;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    Some((Child(child), addr))
}

/// `micro api --handler rpc` on the registry at `etcd`, under `wrapper` (e.g. valgrind) if
/// given; returns it and its URL.
fn micro_api(ctx: &Context, etcd: &Etcd, wrapper: &[&str]) -> (Child, String) {
    let micro = ctx.bin("micro");
    let mut cmd = match wrapper.split_first() {
        Some((first, rest)) => {
            let mut c = pinned("0", Path::new(first));
            c.args(rest).arg(&micro);
            c
        }
        None => pinned("0", &micro),
    };
    let mut api = cmd
        .args(["api", "--api_address", "127.0.0.1:0", "--handler", "rpc", "--namespace", ""])
        .env("MICRO_REGISTRY", "etcd")
        .env("MICRO_REGISTRY_ADDRESS", etcd.address())
        .stderr(Stdio::piped())
        .spawn()
        .expect("micro api starts");
    let mut line = String::new();
    let _ = std::io::BufRead::read_line(&mut std::io::BufReader::new(api.stderr.take().expect("stderr")), &mut line);
    let url = line.split("listening on ").nth(1).and_then(|r| r.split_whitespace().next()).unwrap_or("").to_string();
    (Child(api), url)
}

/// Requests per second of JSON `Greeter.SayHello` posted to `url` (HTTP/1.1, c=16), and the CPU
/// seconds the processes `pids` spent meanwhile.
fn json_load(ctx: &Context, url: &str, n: &str, pids: &[u32]) -> (f64, Vec<f64>) {
    let json = ctx.tmp.join("unary.json");
    let before: Vec<f64> = pids.iter().map(|p| crate::cpu_seconds(*p)).collect();
    let r = h2load(&[
        "--h1",
        "-n",
        n,
        "-c",
        "16",
        "-d",
        json.to_str().unwrap_or_default(),
        "-H",
        "content-type: application/json",
        url,
    ]);
    let cpu = pids.iter().zip(before).map(|(p, b)| crate::cpu_seconds(*p) - b).collect();
    (r, cpu)
}

fn gateway(ctx: &Context, etcd: Option<&Etcd>) {
    println!(
        "\n## Gateway: JSON through `micro api` and through nginx against JSON posted straight to the service \
         (HTTP/1.1, c=16; the service and the proxy share core 0, the load runs on core 1)\n"
    );
    let Some(etcd) = etcd else {
        println!("skipped: etcd is not installed");
        return;
    };
    let svc = helloworld(ctx, "helloworld", "etcd", &etcd.address());
    let deadline = Instant::now() + Duration::from_secs(20);
    while !micro_call(ctx, "helloworld", "etcd", &etcd.address()) {
        if Instant::now() > deadline {
            println!("skipped: the helloworld service did not come up");
            return;
        }
    }
    let out = Command::new(ctx.bin("micro"))
        .args(["get", "service", "helloworld", "-o", "json"])
        .env("MICRO_REGISTRY", "etcd")
        .env("MICRO_REGISTRY_ADDRESS", etcd.address())
        .output()
        .expect("micro get");
    let record: String = String::from_utf8_lossy(&out.stdout).to_string();
    let Some(direct) = record.split("\"address\": \"").nth(1).and_then(|r| r.split('"').next()).map(str::to_string)
    else {
        println!("skipped: no node address in {record}");
        return;
    };
    std::fs::write(ctx.tmp.join("unary.json"), br#"{"name":"world"}"#).expect("request file");
    let (api, gw) = micro_api(ctx, etcd, &[]);
    let proxy = nginx(ctx, &direct);
    if proxy.is_none() {
        println!("(nginx is not installed: its column is left empty)\n");
    }
    let n = ctx.n(50_000, 1_000);
    let ns = n.to_string();
    let (svc_pid, api_pid) = (svc.0.id(), api.0.id());
    let (mut through, mut via_nginx, mut straight) = (vec![], vec![], vec![]);
    let (mut api_cpu, mut svc_cpu, mut nginx_cpu, mut svc_nginx_cpu) = (vec![], vec![], vec![], vec![]);
    let per_req = |s: f64| s * 1e6 / n as f64;
    for round in 0..ctx.rounds {
        let (g, cpu) = json_load(ctx, &format!("{gw}/helloworld/greeter/sayHello"), &ns, &[api_pid, svc_pid]);
        api_cpu.push(per_req(cpu[0]));
        svc_cpu.push(per_req(cpu[1]));
        let x = match &proxy {
            Some((child, addr)) => {
                let url = format!("http://{addr}/helloworld.Greeter/SayHello");
                let (x, cpu) = json_load(ctx, &url, &ns, &[child.0.id(), svc_pid]);
                nginx_cpu.push(per_req(cpu[0]));
                svc_nginx_cpu.push(per_req(cpu[1]));
                x
            }
            None => 0.0,
        };
        let (d, _) = json_load(ctx, &format!("http://{direct}/helloworld.Greeter/SayHello"), &ns, &[]);
        eprintln!("round {} gateway {g:>9.0} req/s nginx {x:>9.0} req/s direct {d:>9.0} req/s", round + 1);
        through.push(g);
        via_nginx.push(x);
        straight.push(d);
    }
    let med = |v: &[f64]| stats(v).1;
    let ratios = |a: &[f64], b: &[f64]| -> String {
        let r: Vec<f64> = a.iter().zip(b).map(|(a, b)| ratio(*a, *b)).collect();
        let (lo, mid, hi) = stats(&r);
        format!("{lo:.2} / {mid:.2} / {hi:.2}")
    };
    println!(
        "| load | metric | via micro api | via nginx | direct | api/nginx (min / median / max) | api/direct |\n|---|---|---|---|---|---|---|"
    );
    println!(
        "| c=16 | req/s | {:.0} | {:.0} | {:.0} | {} | {} |",
        med(&through),
        med(&via_nginx),
        med(&straight),
        ratios(&through, &via_nginx),
        ratios(&through, &straight)
    );
    println!("\n| CPU per request (median) | the proxy | the service behind it | proxy/service |\n|---|---|---|---|");
    println!(
        "| micro api | {:.1} µs | {:.1} µs | {:.2} |",
        med(&api_cpu),
        med(&svc_cpu),
        ratio(med(&api_cpu), med(&svc_cpu))
    );
    if !nginx_cpu.is_empty() {
        println!(
            "| nginx | {:.1} µs | {:.1} µs | {:.2} |",
            med(&nginx_cpu),
            med(&svc_nginx_cpu),
            ratio(med(&nginx_cpu), med(&svc_nginx_cpu))
        );
    }
    drop(api);
    drop(proxy);
    gateway_instructions(ctx, etcd);
    stop(svc);
}

/// Instructions per request spent in `micro api` itself (callgrind), for finding where its time
/// goes: `callgrind_annotate` on the file it names shows the functions.
fn gateway_instructions(ctx: &Context, etcd: &Etcd) {
    if !have("valgrind") || !have("callgrind_control") {
        return;
    }
    let out = ctx.tmp.join("callgrind.gateway");
    let file = format!("--callgrind-out-file={}", out.display());
    let (api, gw) = micro_api(ctx, etcd, &["valgrind", "--tool=callgrind", "--quiet", &file]);
    let json = ctx.tmp.join("unary.json");
    let url = format!("{gw}/helloworld/greeter/sayHello");
    let load = |n: u64| {
        h2load(&[
            "--h1",
            "-n",
            &n.to_string(),
            "-c",
            "1",
            "-d",
            json.to_str().unwrap_or_default(),
            "-H",
            "content-type: application/json",
            &url,
        ])
    };
    let n = ctx.n(2_000, 100);
    load(n / 10 + 10);
    let pid = api.0.id().to_string();
    let _ = Command::new("callgrind_control").args(["-z", &pid]).output();
    load(n);
    let _ = Command::new("callgrind_control").args(["-d", &pid]).output();
    drop(api);
    let kept = ctx.dir.join("callgrind.gateway.out");
    let ir = callgrind_total(&ctx.tmp, "callgrind.gateway", Some(&kept)) / n as f64;
    println!("\n`micro api` instructions per request (callgrind, {n} sequential calls after a warm-up): {ir:.0}");
    eprintln!("callgrind profile of micro api: {} (callgrind_annotate it)", kept.display());
}

fn broker(ctx: &Context) {
    println!("\n## Broker: publish → one subscriber through a real nats-server, micro's NATS broker against raw async-nats\n");
    if !have("nats-server") {
        println!("skipped: nats-server is not installed");
        return;
    }
    let nats = Nats::start();
    pin(nats.pid());
    broker_rounds(ctx, "nats", &nats.address(), ctx.n(200_000, 2_000), "raw async-nats");
    drop(nats);
}

/// The durable brokers, each against its own raw client doing the same durable work (a confirmed
/// publish, an acknowledged delivery).
fn durable_brokers(ctx: &Context) {
    println!("\n## Durable brokers: confirmed publish → acknowledged delivery, micro's broker against the server's own client\n");
    let n = ctx.n(20_000, 300);
    let js = Nats::start_jetstream();
    pin(js.pid());
    println!("nats-js (nats-server -js, file store):\n");
    broker_rounds(ctx, "nats-js", &js.address(), n, "raw async-nats JetStream");
    drop(js);
    if std::path::Path::new("/usr/lib/rabbitmq/bin/rabbitmq-server").exists() {
        let rabbit = micro_tests::Rabbit::start();
        pin(rabbit.pid());
        println!("\nrabbitmq (RabbitMQ, quorum queues):\n");
        broker_rounds(ctx, "rabbitmq", &rabbit.address(), n, "raw lapin");
    } else {
        println!("\nrabbitmq: skipped, rabbitmq-server is not installed");
    }
    match micro_tests::Tansu::start() {
        Some(tansu) => {
            pin(tansu.pid());
            println!("\nkafka (Tansu, {} store; micro's topic has 4 partitions read by one group member, raw reads its one partition):\n", if tansu.durable { "SQLite" } else { "memory" });
            broker_rounds(ctx, "kafka", &tansu.address(), n, "raw rskafka");
        }
        None => println!("\nkafka: skipped, no tansu binary (./scripts/setup --kafka)"),
    }
}

/// Rounds of `bench-broker KIND ADDR N`, as a table against `raw`.
fn broker_rounds(ctx: &Context, kind: &str, addr: &str, n: u64, raw_name: &str) {
    let n = n.to_string();
    let (mut ours, mut raw, mut delivered) = (vec![], vec![], [vec![], vec![]]);
    for round in 0..ctx.rounds {
        let out = pinned("1", &ctx.bin("bench-broker")).args([kind, addr, &n]).output();
        let text = out.map(|o| String::from_utf8_lossy(&o.stdout).to_string()).unwrap_or_default();
        let get = |k: &str, i: usize| {
            text.lines()
                .find_map(|l| l.strip_prefix(k))
                .and_then(|v| v.split_whitespace().nth(i))
                .and_then(|v| v.parse::<f64>().ok())
                .unwrap_or(0.0)
        };
        eprintln!(
            "round {} broker {kind} micro {:>9.0} msgs/s ({} delivered) raw {:>9.0} msgs/s ({} delivered)",
            round + 1,
            get("micro ", 0),
            get("micro ", 1),
            get("raw ", 0),
            get("raw ", 1)
        );
        ours.push(get("micro ", 0));
        raw.push(get("raw ", 0));
        delivered[0].push(get("micro ", 1));
        delivered[1].push(get("raw ", 1));
    }
    println!("| messages | metric | micro | {raw_name} | micro/raw (min / median / max) |\n|---|---|---|---|---|");
    row(&n, "msgs/s delivered", &ours, &raw);
    row(&n, "delivered", &delivered[0], &delivered[1]);
}

fn discovery(ctx: &Context, etcd: Option<&Etcd>) {
    println!("\n## Discovery: from a service's start to the first successful `micro call`\n");
    println!("| registry | ms (min / median / max) |\n|---|---|");
    // /proc/net/dev lists the interfaces of this network namespace: only `lo` means isolated.
    let isolated = std::fs::read_to_string("/proc/net/dev")
        .map(|t| t.lines().skip(2).all(|l| l.trim_start().starts_with("lo:")))
        .unwrap_or(false);
    let mut registries: Vec<(&str, String)> = vec![];
    if isolated {
        registries.push(("mdns", String::new()));
    } else {
        println!("| mdns | skipped: run inside `unshare --net` so mDNS stays on loopback |");
    }
    if let Some(e) = etcd {
        registries.push(("etcd", e.address()));
    }
    for (registry, address) in registries {
        let mut ms = vec![];
        for round in 0..ctx.rounds {
            let name = format!("discovery-{registry}-{round}-{}", std::process::id());
            let started = Instant::now();
            let svc = helloworld(ctx, &name, registry, &address);
            let deadline = started + Duration::from_secs(20);
            while !micro_call(ctx, &name, registry, &address) && Instant::now() < deadline {}
            ms.push(started.elapsed().as_secs_f64() * 1000.0);
            stop(svc);
        }
        let (lo, mid, hi) = stats(&ms);
        println!("| {registry} | {lo:.0} / {mid:.0} / {hi:.0} |");
    }
}

fn codegen(ctx: &Context) {
    println!("\n## Code generation: googleapis-common-protos, micro-build against tonic-prost-build from one protox FileDescriptorSet\n");
    let venv = ctx.workspace().join(".venv/lib");
    let root = std::fs::read_dir(&venv)
        .into_iter()
        .flatten()
        .flatten()
        .map(|e| e.path().join("site-packages"))
        .find(|p| p.join("google/api/annotations.proto").exists());
    let Some(root) = root else {
        println!("skipped: googleapis-common-protos is not in .venv (scripts/setup installs it)");
        return;
    };
    let out = Command::new(ctx.bin("bench-codegen")).arg(&root).arg(ctx.rounds.max(3).to_string()).output();
    let text = out.map(|o| String::from_utf8_lossy(&o.stdout).to_string()).unwrap_or_default();
    let field = |k: &str, i: usize| {
        text.lines()
            .find_map(|l| l.strip_prefix(k))
            .and_then(|v| v.split_whitespace().nth(i))
            .and_then(|v| v.parse::<f64>().ok())
            .unwrap_or(0.0)
    };
    println!("{} files\n", field("files ", 0));
    println!("| metric | micro-build | tonic-prost-build | micro/tonic |\n|---|---|---|---|");
    let (mt, tt) = (field("micro ", 0), field("tonic ", 0));
    let (ml, tl) = (field("micro ", 1), field("tonic ", 1));
    println!("| wall ms (median) | {mt:.1} | {tt:.1} | {:.2} |", ratio(mt, tt));
    println!("| lines emitted | {ml:.0} | {tl:.0} | {:.2} |", ratio(ml, tl));
}

fn scaffolding(ctx: &Context) {
    println!("\n## Scaffolding\n");
    let parent = ctx.tmp.join("new");
    let _ = std::fs::create_dir_all(&parent);
    let started = Instant::now();
    let ok = Command::new(ctx.bin("micro"))
        .args(["new", "github.com/micro/benchsvc"])
        .current_dir(&parent)
        .stdout(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    let new_ms = started.elapsed().as_secs_f64() * 1000.0;
    println!("`micro new github.com/micro/benchsvc`: {new_ms:.0} ms{}", if ok { "" } else { " (failed)" });
    if !ctx.cold_build || !ok {
        println!("\ncold builds: skipped{}", if ctx.smoke { " (--smoke)" } else { "" });
        return;
    }
    let lock = ctx.workspace().join("Cargo.lock");
    let svc = parent.join("benchsvc");
    let _ = std::fs::copy(&lock, svc.join("Cargo.lock"));
    let tonic = parent.join("tonichello");
    write_tonic_crate(&tonic, &ctx.workspace().join("examples/helloworld/proto/helloworld.proto"));
    let _ = std::fs::copy(&lock, tonic.join("Cargo.lock"));
    let mut secs = vec![];
    for (name, dir) in [("micro new service", &svc), ("tonic helloworld", &tonic)] {
        eprintln!("cold build of the {name} (debug)...");
        let started = Instant::now();
        let status = Command::new("cargo")
            .args(["build", "--offline", "--quiet"])
            .current_dir(dir)
            .env("CARGO_TARGET_DIR", ctx.tmp.join(format!("target-{}", secs.len())))
            .status();
        let s = started.elapsed().as_secs_f64();
        if !status.is_ok_and(|s| s.success()) {
            println!("cold build of the {name} failed");
            return;
        }
        secs.push(s);
    }
    println!("\n| cold `cargo build` (debug, empty target dir) | micro new service | tonic helloworld | micro/tonic |");
    println!("|---|---|---|---|\n| seconds | {:.0} | {:.0} | {:.2} |", secs[0], secs[1], ratio(secs[0], secs[1]));
}

/// A plain tonic helloworld crate with the same proto (protox + tonic-prost-build in build.rs).
fn write_tonic_crate(dir: &Path, proto: &Path) {
    let _ = std::fs::create_dir_all(dir.join("src"));
    let _ = std::fs::create_dir_all(dir.join("proto"));
    let _ = std::fs::copy(proto, dir.join("proto/helloworld.proto"));
    let files = [
        (
            "Cargo.toml",
            r#"[package]
name = "tonichello"
version = "0.1.0"
edition = "2021"
publish = false

[dependencies]
prost = "0.14"
tokio = { version = "1", features = ["macros", "rt-multi-thread"] }
tonic = "0.14"
tonic-prost = "0.14"

[build-dependencies]
protox = "0.10"
tonic-prost-build = { version = "0.14", default-features = false, features = ["transport"] }

[workspace]
"#,
        ),
        (
            "build.rs",
            r#"fn main() -> Result<(), Box<dyn std::error::Error>> {
    let fds = protox::compile(["proto/helloworld.proto"], ["proto"])?;
    tonic_prost_build::configure().compile_fds(fds)?;
    Ok(())
}
"#,
        ),
        (
            "src/main.rs",
            r#"pub mod helloworld {
    tonic::include_proto!("helloworld");
}

use helloworld::greeter_server::{Greeter, GreeterServer};
use helloworld::{HelloReply, HelloRequest};
use tonic::{Request, Response, Status};

struct G;

#[tonic::async_trait]
impl Greeter for G {
    async fn say_hello(&self, request: Request<HelloRequest>) -> Result<Response<HelloReply>, Status> {
        Ok(Response::new(HelloReply { message: format!("Hello {}", request.get_ref().name) }))
    }

    type SayHelloStreamStream =
        std::pin::Pin<Box<dyn tonic::codegen::tokio_stream::Stream<Item = Result<HelloReply, Status>> + Send>>;

    async fn say_hello_stream(&self, _: Request<HelloRequest>) -> Result<Response<Self::SayHelloStreamStream>, Status> {
        Err(Status::unimplemented("no"))
    }
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    tonic::transport::Server::builder().add_service(GreeterServer::new(G)).serve("127.0.0.1:50051".parse()?).await?;
    Ok(())
}
"#,
        ),
    ];
    for (name, text) in files {
        let _ = std::fs::write(dir.join(name), text);
    }
}

/// A stand-in OTLP/HTTP collector for the tracing runs: answers every `POST` with 200 at once,
/// counting the bytes it was sent (HTTP/1.1 keep-alive, one thread per connection).
fn otlp_sink() -> (String, std::sync::Arc<std::sync::atomic::AtomicU64>) {
    use std::io::{BufRead, BufReader, Read, Write};
    use std::sync::atomic::{AtomicU64, Ordering};
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("a port for the OTLP sink");
    let addr = listener.local_addr().expect("its address").to_string();
    let received = std::sync::Arc::new(AtomicU64::new(0));
    let counter = received.clone();
    std::thread::spawn(move || {
        for conn in listener.incoming().flatten() {
            let counter = counter.clone();
            std::thread::spawn(move || {
                let mut reader = BufReader::new(conn.try_clone().expect("a clone"));
                let mut conn = conn;
                loop {
                    let mut length = 0usize;
                    loop {
                        let mut line = String::new();
                        if reader.read_line(&mut line).unwrap_or(0) == 0 {
                            return;
                        }
                        if line == "\r\n" {
                            break;
                        }
                        if let Some(v) = line.to_ascii_lowercase().strip_prefix("content-length:") {
                            length = v.trim().parse().unwrap_or(0);
                        }
                    }
                    let mut body = vec![0; length];
                    if reader.read_exact(&mut body).is_err() {
                        return;
                    }
                    counter.fetch_add(length as u64, Ordering::Relaxed);
                    let reply = "HTTP/1.1 200 OK\r\ncontent-type: application/x-protobuf\r\ncontent-length: 0\r\n\r\n";
                    if conn.write_all(reply.as_bytes()).is_err() {
                        return;
                    }
                }
            });
        }
    });
    (format!("http://{addr}"), received)
}

/// Unary gRPC req/s of the micro server bare, with metrics, and with tracing sampled at 100 %
/// to a local OTLP/HTTP sink, round by round (c=16x16, the server on core 0, h2load on core 1).
fn observability(ctx: &Context) {
    println!(
        "\n## Observability: unary gRPC with metrics and with tracing (100 % sampled, OTLP/HTTP to a local sink), \
         against the same server bare (c=16x16)\n"
    );
    let (endpoint, received) = otlp_sink();
    let modes: [(&str, &[(&str, &str)]); 3] = [
        ("off", &[]),
        ("metrics", &[("BENCH_OBSERVE", "metrics")]),
        ("tracing", &[("BENCH_OBSERVE", "tracing"), ("OTEL_TRACES_SAMPLER", "always_on")]),
    ];
    wrapped_unary(ctx, "observability", &modes, &[("OTEL_EXPORTER_OTLP_ENDPOINT", &endpoint)]);
    println!(
        "\nthe sink received {:.1} MiB of spans",
        received.load(std::sync::atomic::Ordering::Relaxed) as f64 / (1024.0 * 1024.0)
    );
}

/// Unary gRPC req/s of the micro server bare and with the service's load shedding (adaptive,
/// every call through its gate), round by round (c=16x16).
fn resilience(ctx: &Context) {
    println!("\n## Resilience: unary gRPC with load shedding against the same server bare (c=16x16)\n");
    let modes: [(&str, &[(&str, &str)]); 2] = [("off", &[]), ("shedding", &[("BENCH_OBSERVE", "shed")])];
    wrapped_unary(ctx, "resilience", &modes, &[]);
}

/// Runs h2load (c=16x16) against `bench-micro-server` in each mode (its variables, and
/// `common`), mode after mode in every round; prints req/s and the ratio to the first mode.
fn wrapped_unary(ctx: &Context, section: &str, modes: &[(&str, &[(&str, &str)])], common: &[(&str, &str)]) {
    let requests = if ctx.smoke { 2_000 } else { 100_000 };
    let frame = ctx.tmp.join(format!("{section}.bin"));
    std::fs::write(&frame, hello_frame("world")).expect("request file");
    let mut runs: Vec<Vec<f64>> = vec![Vec::new(); modes.len()];
    for round in 0..ctx.rounds {
        for (i, (name, envs)) in modes.iter().enumerate() {
            let mut cmd = crate::pinned("0", &ctx.bin("bench-micro-server"));
            cmd.arg("127.0.0.1:0").envs(envs.iter().copied()).envs(common.iter().copied());
            let mut child = cmd.stdout(Stdio::piped()).stderr(Stdio::null()).spawn().expect("server starts");
            let mut line = String::new();
            std::io::BufRead::read_line(&mut std::io::BufReader::new(child.stdout.take().expect("stdout")), &mut line)
                .expect("address line");
            let server = crate::Server { child, addr: line.trim().to_string() };
            let out = crate::pinned("1", std::path::Path::new("h2load"))
                .args(["-n", &requests.to_string(), "-c", "16", "-m", "16", "-d"])
                .arg(&frame)
                .args(["-H", "content-type: application/grpc", "-H", "te: trailers"])
                .arg(format!("http://{}/helloworld.Greeter/SayHello", server.addr))
                .output()
                .expect("h2load runs");
            let rps = crate::rps(&String::from_utf8_lossy(&out.stdout));
            eprintln!("round {} {section} {name:8} {rps:>9.0} req/s", round + 1);
            runs[i].push(rps);
        }
    }
    println!("| mode | req/s (median) | / {} (min / median / max) |", modes[0].0);
    println!("|---|---|---|");
    for (i, (name, _)) in modes.iter().enumerate() {
        let ratios: Vec<f64> = runs[i].iter().zip(&runs[0]).map(|(a, b)| if *b > 0.0 { a / b } else { 0.0 }).collect();
        let (lo, mid, hi) = crate::stats(&ratios);
        println!("| {name} | {:.0} | {lo:.2} / {mid:.2} / {hi:.2} |", crate::stats(&runs[i]).1);
    }
}
