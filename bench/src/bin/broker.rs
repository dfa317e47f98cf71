//! Broker throughput through a real nats-server: `bench-broker NATS_ADDR MESSAGES` publishes
//! MESSAGES small messages to a topic with one subscriber, first with micro's NATS broker, then
//! with raw async-nats, and prints `micro <msgs/s> <delivered>` and `raw <msgs/s> <delivered>`:
//! messages delivered per second from the first publish to the last delivery (NATS drops
//! messages for a subscriber that falls behind, so the count delivered is printed too).

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures_util::StreamExt;
use micro::broker::{Event, Message};

const PAYLOAD: &[u8] = br#"{"say":"hello"}"#;

async fn micro_run(addr: &str, messages: u64) -> (f64, u64) {
    let opts =
        micro::options::Options { broker: "nats".into(), broker_address: vec![addr.to_string()], ..Default::default() };
    let broker =
        micro::config::plugins::broker(&opts, Arc::new(micro::registry::MemoryRegistry::new()), Default::default())
            .expect("broker");
    broker.connect().await.expect("connects");
    let got = Arc::new(AtomicU64::new(0));
    let done = Arc::new(tokio::sync::Notify::new());
    let (g, d) = (got.clone(), done.clone());
    let handler: micro::broker::Handler = Arc::new(move |_e: Event| {
        let (g, d) = (g.clone(), d.clone());
        Box::pin(async move {
            if g.fetch_add(1, Ordering::Relaxed) + 1 == messages {
                d.notify_one();
            }
            Ok(())
        })
    });
    let _sub = broker.subscribe("bench.micro", handler, Default::default()).await.expect("subscribes");
    tokio::time::sleep(Duration::from_millis(200)).await;
    let start = Instant::now();
    for _ in 0..messages {
        let msg = Message { header: Default::default(), body: bytes::Bytes::from_static(PAYLOAD) };
        broker.publish("bench.micro", msg).await.expect("publishes");
    }
    let _ = tokio::time::timeout(Duration::from_secs(30), done.notified()).await;
    settle(&got, start).await
}

/// After the last expected delivery (or a timeout), waits until deliveries stop for 300 ms;
/// returns msgs/s up to the last one seen, and the count.
async fn settle(got: &AtomicU64, start: Instant) -> (f64, u64) {
    let mut last = (got.load(Ordering::Relaxed), start.elapsed());
    loop {
        tokio::time::sleep(Duration::from_millis(300)).await;
        let now = got.load(Ordering::Relaxed);
        if now == last.0 {
            return (now as f64 / last.1.as_secs_f64(), now);
        }
        last = (now, start.elapsed());
    }
}

async fn raw_run(addr: &str, messages: u64) -> (f64, u64) {
    // Room for every message, so a subscriber behind the publishing loop is not cut off.
    let client = async_nats::ConnectOptions::new()
        .subscription_capacity(messages as usize)
        .connect(addr)
        .await
        .expect("connects");
    let mut sub = client.subscribe("bench.raw").await.expect("subscribes");
    client.flush().await.expect("flush");
    let got = Arc::new(AtomicU64::new(0));
    let g = got.clone();
    let mut counter = tokio::spawn(async move {
        while sub.next().await.is_some() {
            if g.fetch_add(1, Ordering::Relaxed) + 1 == messages {
                break;
            }
        }
    });
    let start = Instant::now();
    for _ in 0..messages {
        client.publish("bench.raw", bytes::Bytes::from_static(PAYLOAD)).await.expect("publishes");
    }
    client.flush().await.expect("flush");
    let _ = tokio::time::timeout(Duration::from_secs(30), &mut counter).await;
    let result = settle(&got, start).await;
    counter.abort();
    result
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let addr = args.get(1).cloned().unwrap_or_else(|| "127.0.0.1:4222".into());
    let messages: u64 = args.get(2).and_then(|v| v.parse().ok()).unwrap_or(100_000);
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(1).enable_all().build().expect("runtime");
    rt.block_on(async {
        let (rate, n) = micro_run(&addr, messages).await;
        println!("micro {rate:.0} {n}");
        let (rate, n) = raw_run(&addr, messages).await;
        println!("raw {rate:.0} {n}");
    });
}
