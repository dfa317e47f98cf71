//! Broker throughput through a real server: `bench-broker [KIND] ADDR MESSAGES` publishes
//! MESSAGES small messages to a topic with one subscriber, first with micro's broker, then with
//! the server's own client, and prints `micro <msgs/s> <delivered>` and `raw <msgs/s> <delivered>`:
//! messages delivered per second from the first publish to the last delivery.
//!
//! KIND is `nats` (the default: core NATS, fire and forget; NATS drops messages for a subscriber
//! that falls behind, so both sides keep at most 16,384 messages in flight, and the count
//! delivered is printed too), or a durable broker, where both
//! sides do the same durable work: each publish waits for the server's confirmation, and the
//! subscriber (a queue group) acknowledges each message after handling it. `nats-js`: raw
//! async-nats JetStream (publish + PubAck, a durable pull consumer, `ack`); `rabbitmq`: raw lapin
//! (a confirmed publish through a topic exchange, a durable quorum queue, manual `basic.ack`); `kafka`: raw rskafka
//! (produce with acks=all, fetch from the partition; no group, so no commits).

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures_util::StreamExt;
use micro::broker::{Event, Message};

const PAYLOAD: &[u8] = br#"{"say":"hello"}"#;

async fn micro_run(kind: &str, addr: &str, messages: u64) -> (f64, u64) {
    let opts =
        micro::options::Options { broker: kind.into(), broker_address: vec![addr.to_string()], ..Default::default() };
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
    let opts = match kind {
        "nats" => Default::default(),
        _ => micro::broker::SubscribeOptions { queue: Some("bench".into()), auto_ack: true },
    };
    let _sub = broker.subscribe("bench.micro", handler, opts).await.expect("subscribes");
    tokio::time::sleep(Duration::from_millis(200)).await;
    let start = Instant::now();
    for sent in 0..messages {
        let msg = Message { header: Default::default(), body: bytes::Bytes::from_static(PAYLOAD) };
        broker.publish("bench.micro", msg).await.expect("publishes");
        within_window(sent, &got).await;
    }
    let _ = tokio::time::timeout(Duration::from_secs(30), done.notified()).await;
    settle(&got, start).await
}

/// Core NATS drops what a subscriber cannot take in time, so both sides publish at most this
/// many messages ahead of their subscriber: the figure is then what flows, not what was dropped.
const WINDOW: u64 = 16_384;

async fn within_window(sent: u64, got: &AtomicU64) {
    // A message that was dropped anyway is not waited for beyond a second.
    let since = Instant::now();
    while sent + 1 > got.load(Ordering::Relaxed) + WINDOW && since.elapsed() < Duration::from_secs(1) {
        tokio::task::yield_now().await;
    }
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
    for sent in 0..messages {
        client.publish("bench.raw", bytes::Bytes::from_static(PAYLOAD)).await.expect("publishes");
        within_window(sent, &got).await;
    }
    client.flush().await.expect("flush");
    let _ = tokio::time::timeout(Duration::from_secs(30), &mut counter).await;
    let result = settle(&got, start).await;
    counter.abort();
    result
}

/// A delivery count and the waker of its last one.
fn counter() -> (Arc<AtomicU64>, Arc<tokio::sync::Notify>) {
    (Arc::new(AtomicU64::new(0)), Arc::new(tokio::sync::Notify::new()))
}

fn count(got: &AtomicU64, done: &tokio::sync::Notify, messages: u64) {
    if got.fetch_add(1, Ordering::Relaxed) + 1 == messages {
        done.notify_one();
    }
}

async fn raw_jetstream(addr: &str, messages: u64) -> (f64, u64) {
    use async_nats::jetstream::{self, consumer, stream};
    let client = async_nats::connect(addr).await.expect("connects");
    let js = jetstream::new(client);
    let config = stream::Config { name: "RAW".into(), subjects: vec!["raw.>".into()], ..Default::default() };
    let stream = js.get_or_create_stream(config).await.expect("stream");
    let config = consumer::pull::Config {
        durable_name: Some("bench".into()),
        filter_subject: "raw.bench".into(),
        ack_policy: consumer::AckPolicy::Explicit,
        deliver_policy: consumer::DeliverPolicy::New,
        max_ack_pending: 1024,
        ..Default::default()
    };
    let consumer = stream.get_or_create_consumer("bench", config).await.expect("consumer");
    let mut msgs = consumer.messages().await.expect("messages");
    let (got, done) = counter();
    let (g, d) = (got.clone(), done.clone());
    let task = tokio::spawn(async move {
        while let Some(Ok(m)) = msgs.next().await {
            let _ = m.ack().await;
            count(&g, &d, messages);
        }
    });
    let start = Instant::now();
    for _ in 0..messages {
        js.publish("raw.bench", bytes::Bytes::from_static(PAYLOAD)).await.expect("publishes").await.expect("stored");
    }
    let _ = tokio::time::timeout(Duration::from_secs(60), done.notified()).await;
    let result = settle(&got, start).await;
    task.abort();
    result
}

async fn raw_rabbitmq(addr: &str, messages: u64) -> (f64, u64) {
    use lapin::options::*;
    use lapin::types::{AMQPValue, FieldTable};
    let uri = format!("amqp://guest:guest@{addr}/%2f");
    let conn = lapin::Connection::connect(&uri, Default::default()).await.expect("connects");
    let publisher = conn.create_channel().await.expect("channel");
    publisher.confirm_select(ConfirmSelectOptions::default()).await.expect("confirms");
    let consumer_ch = conn.create_channel().await.expect("channel");
    consumer_ch.basic_qos(64, BasicQosOptions::default()).await.expect("qos");
    let mut args = FieldTable::default();
    args.insert("x-queue-type".into(), AMQPValue::LongString("quorum".into()));
    let durable = QueueDeclareOptions { durable: true, ..Default::default() };
    consumer_ch.queue_declare("raw.bench".into(), durable, args).await.expect("queue");
    // Routed through a topic exchange, as micro's messages are.
    let topic = ExchangeDeclareOptions { durable: true, ..Default::default() };
    consumer_ch
        .exchange_declare("raw".into(), lapin::ExchangeKind::Topic, topic, FieldTable::default())
        .await
        .expect("exchange");
    let bind = QueueBindOptions::default();
    consumer_ch
        .queue_bind("raw.bench".into(), "raw".into(), "raw.bench".into(), bind, FieldTable::default())
        .await
        .expect("bound");
    let mut consumer = consumer_ch
        .basic_consume("raw.bench".into(), "".into(), BasicConsumeOptions::default(), FieldTable::default())
        .await
        .expect("consumes");
    let (got, done) = counter();
    let (g, d) = (got.clone(), done.clone());
    let task = tokio::spawn(async move {
        while let Some(Ok(delivery)) = consumer.next().await {
            let _ = delivery.ack(BasicAckOptions::default()).await;
            count(&g, &d, messages);
        }
    });
    let start = Instant::now();
    for _ in 0..messages {
        let props = lapin::BasicProperties::default().with_delivery_mode(2);
        let confirm = publisher
            .basic_publish("raw".into(), "raw.bench".into(), BasicPublishOptions::default(), PAYLOAD, props)
            .await
            .expect("publishes");
        confirm.await.expect("confirmed");
    }
    let _ = tokio::time::timeout(Duration::from_secs(60), done.notified()).await;
    let result = settle(&got, start).await;
    task.abort();
    result
}

async fn raw_kafka(addr: &str, messages: u64) -> (f64, u64) {
    use rskafka::client::partition::{Compression, OffsetAt, UnknownTopicHandling};
    let backoff = rskafka::BackoffConfig { deadline: Some(Duration::from_secs(10)), ..Default::default() };
    let client = rskafka::client::ClientBuilder::new(vec![addr.to_string()])
        .backoff_config(backoff)
        .build()
        .await
        .expect("connects");
    let _ = client.controller_client().expect("controller").create_topic("raw.bench", 1, 1, 5000).await;
    let partition = client.partition_client("raw.bench", 0, UnknownTopicHandling::Retry).await.expect("partition");
    let mut offset = partition.get_offset(OffsetAt::Latest).await.expect("offset");
    // The reader has a connection of its own, as micro's subscriptions do (a broker may answer
    // one connection's requests in turn, and a long-polling fetch would hold up the produces).
    let reader = rskafka::client::ClientBuilder::new(vec![addr.to_string()]).build().await.expect("connects");
    let reading = reader.partition_client("raw.bench", 0, UnknownTopicHandling::Retry).await.expect("partition");
    let (got, done) = counter();
    let (g, d, p) = (got.clone(), done.clone(), reading);
    let task = tokio::spawn(async move {
        loop {
            let (records, _) = match p.fetch_records(offset, 1..1_048_576, 500).await {
                Ok(r) => r,
                Err(e) => {
                    eprintln!("raw kafka fetch: {e}");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            };
            for r in records {
                offset = r.offset + 1;
                count(&g, &d, messages);
            }
        }
    });
    let start = Instant::now();
    for _ in 0..messages {
        let record = rskafka::record::Record {
            key: None,
            value: Some(PAYLOAD.to_vec()),
            headers: Default::default(),
            timestamp: rskafka::chrono::DateTime::from_timestamp_millis(0).unwrap_or_default(),
        };
        partition.produce(vec![record], Compression::NoCompression).await.expect("produces");
    }
    let _ = tokio::time::timeout(Duration::from_secs(60), done.notified()).await;
    let result = settle(&got, start).await;
    task.abort();
    result
}

fn main() {
    let mut args: Vec<String> = std::env::args().skip(1).collect();
    let kind = match args.first() {
        Some(k) if !k.contains(':') => args.remove(0),
        _ => "nats".into(),
    };
    let addr = args.first().cloned().unwrap_or_else(|| "127.0.0.1:4222".into());
    let messages: u64 = args.get(1).and_then(|v| v.parse().ok()).unwrap_or(100_000);
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(1).enable_all().build().expect("runtime");
    // BENCH_BROKER_SIDE=micro|raw runs one side alone (for a profile of it).
    let side = std::env::var("BENCH_BROKER_SIDE").unwrap_or_default();
    rt.block_on(async {
        if side != "raw" {
            let (rate, n) = micro_run(&kind, &addr, messages).await;
            println!("micro {rate:.0} {n}");
        }
        if side == "micro" {
            return;
        }
        let (rate, n) = match kind.as_str() {
            "nats-js" => raw_jetstream(&addr, messages).await,
            "rabbitmq" => raw_rabbitmq(&addr, messages).await,
            "kafka" => raw_kafka(&addr, messages).await,
            _ => raw_run(&addr, messages).await,
        };
        println!("raw {rate:.0} {n}");
    });
}
