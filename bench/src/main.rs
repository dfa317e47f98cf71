//! The benchmark runner: `cargo build --release -p micro-bench -p micro-cli -p helloworld` then
//! `./target/release/bench [--rounds N --requests N | --smoke | --no-cold-build | --only SECTION]`.
//!
//! Starts the same Greeter on micro, on tonic and on bare hyper h2 (the ceiling), each pinned to
//! core 0, drives each with `h2load` pinned to core 1, alternating servers round by round, and
//! prints req/s, latency, CPU per 100k requests, writes per request and peak RSS, with the
//! ratios ours/tonic and ours/ceiling (min, median and max over rounds). Then the other sections
//! ([`more`]): server streaming, JSON over HTTP/1.1, client efficiency, instructions per request
//! (callgrind), the gateway, the broker, discovery, code generation and scaffolding.

mod more;

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Instant;

/// The three Greeters, as `(name, binary)`: ours, tonic, and the bare ceiling.
pub(crate) const SERVERS: [(&str, &str); 3] =
    [("micro", "bench-micro-server"), ("tonic", "bench-tonic-server"), ("bare", "bench-bare-server")];
const LOADS: [(&str, &[&str]); 3] =
    [("c=1", &["-c", "1", "-m", "1"]), ("c=4x64", &["-c", "4", "-m", "64"]), ("c=16x16", &["-c", "16", "-m", "16"])];

pub(crate) struct Server {
    pub(crate) child: Child,
    pub(crate) addr: String,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub(crate) fn pinned(core: &str, program: &Path) -> Command {
    if Command::new("taskset").arg("-V").output().is_ok() {
        let mut c = Command::new("taskset");
        c.args(["-c", core]).arg(program);
        c
    } else {
        Command::new(program)
    }
}

pub(crate) fn start(bin: &Path) -> Server {
    let mut child = pinned("0", bin)
        .arg("127.0.0.1:0")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("server starts");
    let mut line = String::new();
    BufReader::new(child.stdout.take().expect("stdout")).read_line(&mut line).expect("address line");
    Server { child, addr: line.trim().to_string() }
}

/// utime + stime of a process, in seconds.
pub(crate) fn cpu_seconds(pid: u32) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    let after = stat.rsplit_once(')').map(|(_, r)| r).unwrap_or("");
    let f: Vec<&str> = after.split_whitespace().collect();
    let ticks = |i: usize| f.get(i).and_then(|v| v.parse::<f64>().ok()).unwrap_or(0.0);
    (ticks(11) + ticks(12)) / 100.0
}

pub(crate) fn proc_field(pid: u32, file: &str, key: &str) -> f64 {
    std::fs::read_to_string(format!("/proc/{pid}/{file}"))
        .unwrap_or_default()
        .lines()
        .find(|l| l.starts_with(key))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(0.0)
}

struct Run {
    rps: f64,
    cpu_per_100k: f64,
    writes_per_req: f64,
    p50_us: f64,
    p99_us: f64,
}

fn h2load(server: &Server, args: &[&str], requests: u64, req_file: &Path, log: &Path) -> Run {
    let pid = server.child.id();
    let (cpu0, w0) = (cpu_seconds(pid), proc_field(pid, "io", "syscw:"));
    let out = pinned("1", Path::new("h2load"))
        .args(["-n", &requests.to_string()])
        .args(args)
        .arg("-d")
        .arg(req_file)
        .args(["-H", "content-type: application/grpc", "-H", "te: trailers", "--log-file"])
        .arg(log)
        .arg(format!("http://{}/helloworld.Greeter/SayHello", server.addr))
        .output()
        .expect("h2load runs (apt install nghttp2-client)");
    let text = String::from_utf8_lossy(&out.stdout);
    let rps = rps(&text);
    let ok = text.contains(&format!("{requests} succeeded"));
    if !ok {
        eprintln!("warning: not every request succeeded:\n{text}");
    }
    let (cpu1, w1) = (cpu_seconds(pid), proc_field(pid, "io", "syscw:"));
    let mut lat: Vec<f64> = std::fs::read_to_string(log)
        .unwrap_or_default()
        .lines()
        .filter_map(|l| l.split('\t').nth(2).and_then(|d| d.trim().parse().ok()))
        .collect();
    lat.sort_by(|a, b| a.total_cmp(b));
    let pct =
        |p: f64| lat.get(((lat.len() as f64 * p) as usize).min(lat.len().saturating_sub(1))).copied().unwrap_or(0.0);
    Run {
        rps,
        cpu_per_100k: (cpu1 - cpu0) * 100_000.0 / requests as f64,
        writes_per_req: (w1 - w0) / requests as f64,
        p50_us: pct(0.50),
        p99_us: pct(0.99),
    }
}

/// Requests per second from h2load's `finished in ..., N req/s, ...` line.
pub(crate) fn rps(h2load_output: &str) -> f64 {
    h2load_output
        .lines()
        .find(|l| l.starts_with("finished in"))
        .and_then(|l| l.split(", ").nth(1))
        .and_then(|r| r.trim_end_matches(" req/s").parse().ok())
        .unwrap_or(0.0)
}

pub(crate) fn stats(xs: &[f64]) -> (f64, f64, f64) {
    let mut v = xs.to_vec();
    v.sort_by(|a, b| a.total_cmp(b));
    if v.is_empty() {
        return (0.0, 0.0, 0.0);
    }
    (v[0], v[v.len() / 2], v[v.len() - 1])
}

/// The unary table: every server under every load, round by round.
fn unary(dir: &Path, rounds: u64, requests: u64, req_file: &Path, tmp: &Path) {
    // results[load][server] = runs
    let mut results: Vec<Vec<Vec<Run>>> =
        (0..LOADS.len()).map(|_| (0..SERVERS.len()).map(|_| vec![]).collect()).collect();
    let mut rss = [0.0f64; 3];
    for round in 0..rounds {
        for (si, (name, bin)) in SERVERS.iter().enumerate() {
            let server = start(&dir.join(bin));
            for (li, (load, flags)) in LOADS.iter().enumerate() {
                let run = h2load(&server, flags, requests, req_file, &tmp.join("h2load.log"));
                eprintln!("round {} {name:5} {load:8} {:>9.0} req/s", round + 1, run.rps);
                results[li][si].push(run);
            }
            rss[si] = rss[si].max(proc_field(server.child.id(), "status", "VmHWM:"));
        }
    }
    println!("\n| load | metric | micro | tonic | bare | micro/tonic (min / median / max) | micro/bare (median) |");
    println!("|---|---|---|---|---|---|---|");
    type Metric = (&'static str, fn(&Run) -> f64, bool);
    let metrics: [Metric; 5] = [
        ("req/s", |r| r.rps, true),
        ("p50 µs", |r| r.p50_us, false),
        ("p99 µs", |r| r.p99_us, false),
        ("CPU s / 100k req", |r| r.cpu_per_100k, false),
        ("writes / req", |r| r.writes_per_req, false),
    ];
    for (li, (load, _)) in LOADS.iter().enumerate() {
        for (mname, f, _) in &metrics {
            if (*mname == "p50 µs" || *mname == "p99 µs") && *load != "c=16x16" {
                continue;
            }
            let per: Vec<Vec<f64>> = (0..3).map(|si| results[li][si].iter().map(f).collect()).collect();
            let med = |si: usize| stats(&per[si]).1;
            let ratios: Vec<f64> =
                per[0].iter().zip(&per[1]).map(|(a, b)| if *b > 0.0 { a / b } else { 0.0 }).collect();
            let (lo, mid, hi) = stats(&ratios);
            println!(
                "| {load} | {mname} | {:.2} | {:.2} | {:.2} | {lo:.2} / {mid:.2} / {hi:.2} | {:.2} |",
                med(0),
                med(1),
                med(2),
                if med(2) > 0.0 { med(0) / med(2) } else { 0.0 }
            );
        }
    }
    println!(
        "| all | peak RSS MiB | {:.1} | {:.1} | {:.1} | {:.2} | {:.2} |",
        rss[0] / 1024.0,
        rss[1] / 1024.0,
        rss[2] / 1024.0,
        if rss[1] > 0.0 { rss[0] / rss[1] } else { 0.0 },
        if rss[2] > 0.0 { rss[0] / rss[2] } else { 0.0 }
    );
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let smoke = args.iter().any(|a| a == "--smoke");
    let value = |flag: &str, default: u64| {
        args.iter()
            .position(|a| a == flag)
            .and_then(|i| args.get(i + 1))
            .and_then(|v| v.parse().ok())
            .unwrap_or(default)
    };
    let rounds = if smoke { 1 } else { value("--rounds", 3) };
    let requests = if smoke { 2_000 } else { value("--requests", 100_000) };
    let cold_build = !smoke && !args.iter().any(|a| a == "--no-cold-build");
    let only = args.iter().position(|a| a == "--only").and_then(|i| args.get(i + 1)).cloned();
    if let Some(o) = &only {
        if !more::SECTIONS.contains(&o.as_str()) {
            eprintln!("unknown section {o:?} (valid: {})", more::SECTIONS.join(", "));
            std::process::exit(2);
        }
    }
    let dir: PathBuf = std::env::current_exe().expect("exe").parent().expect("dir").to_path_buf();
    let tmp = std::env::temp_dir().join(format!("micro-bench-{}", std::process::id()));
    std::fs::create_dir_all(&tmp).expect("temp dir");
    let req_file = tmp.join("req.bin");
    std::fs::write(&req_file, [0u8, 0, 0, 0, 7, 0x0a, 5, b'w', b'o', b'r', b'l', b'd']).expect("request file");
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .unwrap_or_default()
        .lines()
        .find(|l| l.starts_with("model name"))
        .and_then(|l| l.split(':').nth(1))
        .unwrap_or("?")
        .trim()
        .to_string();
    println!("machine: {cores} cores, {cpu}; {rounds} round(s) of {requests} requests per load; servers on core 0, h2load on core 1");
    let started = Instant::now();
    if only.as_deref().is_none_or(|o| o == "unary") {
        unary(&dir, rounds, requests, &req_file, &tmp);
    }
    let ctx = more::Context { dir: dir.clone(), tmp: tmp.clone(), rounds, smoke, cold_build };
    more::run(&ctx, only.as_deref());
    println!("\ntook {:.0?}", started.elapsed());
    let _ = std::fs::remove_dir_all(&tmp);
}
