//! Broker throughput through a real nats-server: `bench-broker NATS_ADDR MESSAGES` publishes
//! MESSAGES small messages to a topic with one subscriber, first with micro's NATS broker, then
//! with raw async-nats, and prints `micro <msgs/s>` and `raw <msgs/s>` (publish of the first to
//! delivery of the last).

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures_util::StreamExt;
use micro::broker::{Event, Message};

const PAYLOAD: &[u8] = br#"{"say":"hello"}"#;

async fn micro_run(addr: &str, messages: u64) -> f64 {
    let broker =
        micro::broker::from_name("nats", &[addr.to_string()], Arc::new(micro::registry::MemoryRegistry::new()))
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
    tokio::time::timeout(Duration::from_secs(60), done.notified()).await.expect("every message delivered");
    messages as f64 / start.elapsed().as_secs_f64()
}

async fn raw_run(addr: &str, messages: u64) -> f64 {
    let client = async_nats::connect(addr).await.expect("connects");
    let mut sub = client.subscribe("bench.raw").await.expect("subscribes");
    client.flush().await.expect("flush");
    let counter = tokio::spawn(async move {
        let mut n = 0;
        while sub.next().await.is_some() {
            n += 1;
            if n == messages {
                break;
            }
        }
    });
    let start = Instant::now();
    for _ in 0..messages {
        client.publish("bench.raw", bytes::Bytes::from_static(PAYLOAD)).await.expect("publishes");
    }
    tokio::time::timeout(Duration::from_secs(60), counter).await.expect("every message delivered").expect("join");
    messages as f64 / start.elapsed().as_secs_f64()
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let addr = args.get(1).cloned().unwrap_or_else(|| "127.0.0.1:4222".into());
    let messages: u64 = args.get(2).and_then(|v| v.parse().ok()).unwrap_or(100_000);
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(1).enable_all().build().expect("runtime");
    rt.block_on(async {
        println!("micro {:.0}", micro_run(&addr, messages).await);
        println!("raw {:.0}", raw_run(&addr, messages).await);
    });
}
