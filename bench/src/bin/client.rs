//! Client efficiency: `bench-client micro|tonic ADDR REQUESTS CONCURRENCY` makes REQUESTS unary
//! `SayHello` calls with CONCURRENCY in flight over one connection, on a current-thread runtime,
//! and prints `<req/s> <client CPU seconds>`.

#[allow(missing_docs, unreachable_pub, clippy::all)]
mod tonic_gen {
    include!(concat!(env!("OUT_DIR"), "/tonic/helloworld.rs"));
}

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Instant;

/// utime + stime of this process, in seconds.
fn cpu_seconds() -> f64 {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    let after = stat.rsplit_once(')').map(|(_, r)| r).unwrap_or("");
    let f: Vec<&str> = after.split_whitespace().collect();
    let ticks = |i: usize| f.get(i).and_then(|v| v.parse::<f64>().ok()).unwrap_or(0.0);
    (ticks(11) + ticks(12)) / 100.0
}

async fn run_micro(addr: String, requests: u64, concurrency: u64) {
    let client = micro::Client::new(
        Arc::new(micro::registry::MemoryRegistry::new()),
        micro::client::ClientOptions { retries: 0, ..Default::default() },
    );
    let greeter = helloworld::helloworld::GreeterClient::new("helloworld", client);
    let left = Arc::new(AtomicU64::new(requests));
    let workers = (0..concurrency).map(|_| {
        let (greeter, left, addr) = (greeter.clone(), left.clone(), addr.clone());
        async move {
            let opts = micro::CallOptions::new().address(addr);
            while left.fetch_update(Ordering::Relaxed, Ordering::Relaxed, |n| n.checked_sub(1)).is_ok() {
                let req = helloworld::helloworld::HelloRequest { name: "world".into() };
                greeter.say_hello_with(req, opts.clone()).await.expect("call succeeds");
            }
        }
    });
    futures_util::future::join_all(workers).await;
}

async fn run_tonic(addr: String, requests: u64, concurrency: u64) {
    let channel = tonic::transport::Endpoint::from_shared(format!("http://{addr}"))
        .expect("endpoint")
        .connect()
        .await
        .expect("connects");
    let client = tonic_gen::greeter_client::GreeterClient::new(channel);
    let left = Arc::new(AtomicU64::new(requests));
    let workers = (0..concurrency).map(|_| {
        let (mut client, left) = (client.clone(), left.clone());
        async move {
            while left.fetch_update(Ordering::Relaxed, Ordering::Relaxed, |n| n.checked_sub(1)).is_ok() {
                let req = tonic_gen::HelloRequest { name: "world".into() };
                client.say_hello(req).await.expect("call succeeds");
            }
        }
    });
    futures_util::future::join_all(workers).await;
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let (kind, addr) = (args.get(1).cloned().unwrap_or_default(), args.get(2).cloned().unwrap_or_default());
    let requests: u64 = args.get(3).and_then(|v| v.parse().ok()).unwrap_or(100_000);
    let concurrency: u64 = args.get(4).and_then(|v| v.parse().ok()).unwrap_or(64);
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime");
    let (cpu0, start) = (cpu_seconds(), Instant::now());
    rt.block_on(async {
        match kind.as_str() {
            "micro" => run_micro(addr, requests, concurrency).await,
            "tonic" => run_tonic(addr, requests, concurrency).await,
            other => panic!("unknown client {other:?} (micro or tonic)"),
        }
    });
    let elapsed = start.elapsed().as_secs_f64();
    println!("{:.1} {:.3}", requests as f64 / elapsed, cpu_seconds() - cpu0);
}
