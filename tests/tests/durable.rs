//! The durable brokers against their real servers (nats-server with JetStream, RabbitMQ), on
//! loopback with random ports and temp stores:
//! - a queue group away for 5 s while 1,000 messages are published gets all 1,000 when it is back;
//! - the server restarted mid-stream: every message published before and after arrives, once;
//! - a queue group of two, one member (its own process) killed with -9 mid-batch: what it held
//!   goes to the other, and only what it had handled can arrive twice;
//! - a handler failing 3 times then succeeding is delivered 4 times and acknowledged once, one
//!   that panics is tried again, one that always fails ends in `<topic>.dlq` with the reason;
//! - `micro publish`, the gateway's event handler and the proxy publish through the broker.

use std::collections::{BTreeMap, BTreeSet};
use std::io::BufRead;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use micro::broker::delivery::{DEAD_REASON_HEADER, DELIVERIES_HEADER};
use micro::broker::{Delivery, Event, Handler, Message, SharedBroker, SubscribeOptions};
use micro_tests::{wait_for, workspace_bin, Child, Nats, Rabbit, Tansu};

/// Redelivery quick enough for tests: 4 tries, 50 ms apart and doubling, 2 s to acknowledge.
const FAST: Delivery =
    Delivery { max_deliveries: 4, ack_wait: Duration::from_secs(2), retry_delay: Duration::from_millis(50) };

/// A durable broker's real server.
enum Server {
    Js(Nats),
    Rabbit(Rabbit),
    Kafka(Tansu),
}

impl Server {
    fn name(&self) -> &'static str {
        match self {
            Server::Js(_) => "nats-js",
            Server::Rabbit(_) => "rabbitmq",
            Server::Kafka(_) => "kafka",
        }
    }

    fn address(&self) -> String {
        match self {
            Server::Js(n) => n.address(),
            Server::Rabbit(r) => r.address(),
            Server::Kafka(t) => t.address(),
        }
    }

    /// A broker of a fresh connection (as a new process would have).
    fn broker(&self) -> SharedBroker {
        let opts = micro::options::Options {
            broker: self.name().into(),
            broker_address: vec![self.address()],
            broker_delivery: FAST,
            ..Default::default()
        };
        micro::config::plugins::broker(&opts, micro_tests::memory_registry(), Default::default()).unwrap()
    }

    /// The `MICRO_*` variables of a process using this broker.
    fn env(&self) -> Vec<(&'static str, String)> {
        vec![
            ("MICRO_BROKER", self.name().into()),
            ("MICRO_BROKER_ADDRESS", self.address()),
            ("MICRO_BROKER_ACK_WAIT", "2s".into()),
            ("MICRO_BROKER_RETRY_DELAY", "50ms".into()),
            ("MICRO_REGISTRY", "memory".into()),
        ]
    }
}

type Got = Arc<Mutex<Vec<String>>>;

/// A handler that records each message's body.
fn recorder(got: &Got) -> Handler {
    let got = got.clone();
    Arc::new(move |e: Event| {
        let got = got.clone();
        Box::pin(async move {
            got.lock().unwrap().push(String::from_utf8_lossy(&e.message.body).into_owned());
            Ok(())
        })
    })
}

fn message(id: &str) -> Message {
    let header = [("Micro-Id".to_string(), id.to_string()), ("Content-Type".to_string(), "text/plain".to_string())];
    Message { header: header.into(), body: id.to_string().into() }
}

/// A `testing.EchoRequest` in JSON, as the tester's subscriber takes it.
fn echo(id: &str) -> Message {
    let header =
        [("Micro-Id".to_string(), id.to_string()), ("Content-Type".to_string(), "application/json".to_string())];
    Message { header: header.into(), body: serde_json::json!({ "message": id }).to_string().into() }
}

fn group(queue: &str) -> SubscribeOptions {
    SubscribeOptions { queue: Some(queue.into()), auto_ack: true }
}

/// Publishes `id`, again after each failure (the server may be restarting), for up to 60 s.
async fn publish(broker: &SharedBroker, topic: &str, id: &str) {
    send(broker, topic, message(id)).await
}

/// Publishes `m`, again after each failure, for up to 60 s.
async fn send(broker: &SharedBroker, topic: &str, m: Message) {
    let id = m.get("Micro-Id").unwrap_or_default().to_string();
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        match broker.publish(topic, m.clone()).await {
            Ok(()) => return,
            Err(e) if Instant::now() < deadline => {
                let _ = e;
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            Err(e) => panic!("publishing {id} to {topic}: {}", e.detail),
        }
    }
}

fn counts(got: &Got) -> BTreeMap<String, usize> {
    got.lock().unwrap().iter().fold(BTreeMap::new(), |mut m, id| {
        *m.entry(id.clone()).or_default() += 1;
        m
    })
}

/// The group is away for 5 s while 1,000 messages are published; back, it gets every one, once.
async fn away_group_gets_everything(server: &Server) {
    let topic = "orders.away";
    let got: Got = Arc::default();
    let sub = server.broker().subscribe(topic, recorder(&got), group("billing")).await.unwrap();
    let publisher = server.broker();
    publish(&publisher, topic, "warm").await;
    wait_for("the group's first message", Duration::from_secs(20), async || got.lock().unwrap().len() == 1).await;
    sub.unsubscribe();

    // 1,000 messages over 5 s, while no member is subscribed (the first tick is at once).
    let away = Instant::now();
    let mut tick = tokio::time::interval(Duration::from_micros(5010));
    for i in 0..1000 {
        tick.tick().await;
        publish(&publisher, topic, &format!("m{i}")).await;
    }
    assert!(away.elapsed() >= Duration::from_secs(5));
    let back = server.broker();
    let _sub = back.subscribe(topic, recorder(&got), group("billing")).await.unwrap();
    wait_for("all 1,000 after the group came back", Duration::from_secs(60), async || {
        got.lock().unwrap().len() >= 1001
    })
    .await;
    let c = counts(&got);
    assert_eq!(c.len(), 1001, "every message arrived");
    assert!(c.values().all(|n| *n == 1), "none twice: {:?}", c.iter().filter(|(_, n)| **n > 1).collect::<Vec<_>>());
}

/// Restarts the server while 600 messages are being published; all arrive, each once.
async fn restart_mid_stream(mut server: Server) -> Server {
    let topic = "orders.restart";
    let got: Got = Arc::default();
    let consumer = server.broker();
    let _sub = consumer.subscribe(topic, recorder(&got), group("shipping")).await.unwrap();
    let publisher = server.broker();
    let (p, stop_at) = (publisher.clone(), Arc::new(tokio::sync::Notify::new()));
    let halfway = stop_at.clone();
    let publishing = tokio::spawn(async move {
        let mut tick = tokio::time::interval(Duration::from_millis(5));
        for i in 0..600 {
            tick.tick().await;
            publish(&p, topic, &format!("r{i}")).await;
            if i == 200 {
                halfway.notify_one();
            }
        }
    });
    stop_at.notified().await;
    let before = got.lock().unwrap().len();
    server = tokio::task::spawn_blocking(move || {
        match &mut server {
            Server::Js(n) => n.kill(),
            Server::Rabbit(r) => r.stop(),
            Server::Kafka(t) => t.kill(),
        }
        server
    })
    .await
    .unwrap();
    // Readiness follows the server: the subscriber's broker says it is down, then up again.
    wait_for("the broker to report its server gone", Duration::from_secs(30), async || consumer.check().is_err()).await;
    server = tokio::task::spawn_blocking(move || {
        match &mut server {
            Server::Js(n) => n.start_again(),
            Server::Rabbit(r) => r.start_again(),
            Server::Kafka(t) => t.start_again(),
        }
        server
    })
    .await
    .unwrap();
    publishing.await.unwrap();
    wait_for("all 600 across the restart", Duration::from_secs(90), async || got.lock().unwrap().len() >= 600).await;
    let c = counts(&got);
    let missing: Vec<String> = (0..600).map(|i| format!("r{i}")).filter(|id| !c.contains_key(id)).collect();
    assert!(missing.is_empty(), "lost across the restart: {missing:?}");
    let twice: Vec<_> = c.iter().filter(|(_, n)| **n > 1).collect();
    assert!(twice.is_empty(), "delivered twice after an acknowledged delivery: {twice:?}");
    assert!(before > 0 && before < 600, "the restart came mid-stream ({before} delivered before it)");
    wait_for("the broker ready again", Duration::from_secs(30), async || consumer.check().is_ok()).await;
    server
}

/// Two members, one a separate process killed with -9 while it holds messages: the other gets
/// them; a message arrives twice only if the killed one had handled it.
async fn member_killed_mid_batch(server: &Server) {
    let topic = "orders.killed";
    let got: Got = Arc::default();
    let here = server.broker();
    let _sub = here.subscribe(topic, slow_recorder(&got, Duration::from_millis(5)), group("packing")).await.unwrap();
    let mut env = server.env();
    env.extend([
        ("TESTER_SUBSCRIBE", topic.into()),
        ("TESTER_QUEUE", "packing".into()),
        ("TESTER_HANDLE_MS", "5".into()),
    ]);
    let mut child = std::process::Command::new(workspace_bin("tester"))
        .envs(env)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let heard: Got = Arc::default();
    let lines = std::io::BufReader::new(child.stdout.take().unwrap()).lines();
    let h = heard.clone();
    std::thread::spawn(move || {
        for line in lines.map_while(Result::ok) {
            if let Some(id) = line.strip_prefix("heard ") {
                h.lock().unwrap().push(id.to_string());
            }
        }
    });
    let child = Child(child);
    let publisher = server.broker();
    // Warm-up messages until the other process has one: then it is a member.
    let mut n = 0;
    wait_for("the other member's first message", Duration::from_secs(30), async || {
        n += 1;
        send(&publisher, topic, echo(&format!("w{n}"))).await;
        !heard.lock().unwrap().is_empty()
    })
    .await;
    let warm = n;
    for i in 0..400 {
        send(&publisher, topic, echo(&format!("k{i}"))).await;
    }
    wait_for("the other member is mid-batch", Duration::from_secs(30), async || {
        heard.lock().unwrap().iter().filter(|id| id.starts_with('k')).count() >= 20
    })
    .await;
    micro_tests::signal(&child.0, "KILL");
    let all: BTreeSet<String> = (1..=warm).map(|i| format!("w{i}")).chain((0..400).map(|i| format!("k{i}"))).collect();
    wait_for("every message at one member or the other", Duration::from_secs(60), async || {
        let seen: BTreeSet<String> = got.lock().unwrap().iter().chain(heard.lock().unwrap().iter()).cloned().collect();
        all.is_subset(&seen)
    })
    .await;
    let killed: BTreeSet<String> = heard.lock().unwrap().iter().cloned().collect();
    let here: Vec<String> = got.lock().unwrap().clone();
    let twice: Vec<&String> = here.iter().filter(|id| killed.contains(*id)).collect();
    let once_here: BTreeSet<&String> = here.iter().collect();
    assert_eq!(once_here.len(), here.len(), "the living member got nothing twice");
    // Twice only what the killed member had handled and not yet acknowledged: at most what it
    // could hold.
    assert!(twice.len() <= 64, "{} messages arrived twice", twice.len());
    assert!(here.len() > twice.len() && !killed.is_empty(), "the work was shared");
    eprintln!(
        "{}: killed member handled {}, the other {} ({} of them twice)",
        server.name(),
        killed.len(),
        here.len(),
        twice.len()
    );
}

fn slow_recorder(got: &Got, pause: Duration) -> Handler {
    let got = got.clone();
    Arc::new(move |e: Event| {
        let got = got.clone();
        Box::pin(async move {
            tokio::time::sleep(pause).await;
            let v: serde_json::Value = serde_json::from_slice(&e.message.body).unwrap_or_default();
            let id = v["message"].as_str().map(str::to_string);
            got.lock().unwrap().push(id.unwrap_or_else(|| String::from_utf8_lossy(&e.message.body).into_owned()));
            Ok(())
        })
    })
}

/// Failing, panicking and poison handlers: retried, acknowledged once, or dead-lettered.
async fn retries_and_dead_letters(server: &Server) {
    let topic = "orders.flaky";
    let tries: Arc<Mutex<BTreeMap<String, u32>>> = Arc::default();
    let t = tries.clone();
    let handler: Handler = Arc::new(move |e: Event| {
        let t = t.clone();
        Box::pin(async move {
            let id = String::from_utf8_lossy(&e.message.body).into_owned();
            let n = {
                let mut t = t.lock().unwrap();
                let n = t.entry(id.clone()).or_default();
                *n += 1;
                *n
            };
            match id.as_str() {
                "flaky" if n <= 3 => Err(micro::Error::internal_server_error("test", format!("try {n} fails"))),
                "panicky" if n <= 2 => panic!("try {n} panics"),
                "poison" => Err(micro::Error::internal_server_error("test", "poison never goes down")),
                _ => Ok(()),
            }
        })
    });
    let broker = server.broker();
    let _sub = broker.subscribe(topic, handler, group("audit")).await.unwrap();
    let dead: Arc<Mutex<Vec<Message>>> = Arc::default();
    let d = dead.clone();
    let dead_handler: Handler = Arc::new(move |e: Event| {
        let d = d.clone();
        Box::pin(async move {
            d.lock().unwrap().push(e.message);
            Ok(())
        })
    });
    let dlq = micro::broker::delivery::dead_letter_topic(topic);
    let _dead_sub = broker.subscribe(&dlq, dead_handler, group("audit")).await.unwrap();
    let publisher = server.broker();
    for id in ["flaky", "panicky", "poison"] {
        publish(&publisher, topic, id).await;
    }
    wait_for("the poison message in the dead-letter topic", Duration::from_secs(30), async || {
        !dead.lock().unwrap().is_empty()
    })
    .await;
    wait_for("flaky handled on its 4th try", Duration::from_secs(30), async || {
        tries.lock().unwrap().get("flaky") == Some(&4)
    })
    .await;
    wait_for("panicky handled on its 3rd try", Duration::from_secs(30), async || {
        tries.lock().unwrap().get("panicky") == Some(&3)
    })
    .await;
    let letter = dead.lock().unwrap()[0].clone();
    assert_eq!(String::from_utf8_lossy(&letter.body), "poison");
    assert_eq!(letter.get(DELIVERIES_HEADER), Some("4"));
    assert!(letter.get(DEAD_REASON_HEADER).is_some_and(|r| r.contains("poison never goes down")), "{letter:?}");
    assert_eq!(letter.get("Micro-Id"), Some("poison"));
    // Acknowledged once: after a marker published later has been handled, and for as long as
    // the longest retry delay and more, nothing comes back.
    publish(&publisher, topic, "marker").await;
    wait_for("the marker", Duration::from_secs(30), async || tries.lock().unwrap().contains_key("marker")).await;
    let settled = tries.lock().unwrap().clone();
    let quiet = Instant::now() + Duration::from_millis(1500);
    while Instant::now() < quiet {
        tokio::time::sleep(Duration::from_millis(100)).await;
        assert_eq!(*tries.lock().unwrap(), settled, "an acknowledged message came back");
    }
    assert_eq!(settled.get("poison"), Some(&4), "poison was tried 4 times, no more");
    assert_eq!(dead.lock().unwrap().len(), 1, "one dead letter");
}

/// `micro publish`, the gateway's event handler (`micro api --handler event`) and the proxy's
/// `POST /_pub/<topic>`, each run with the broker's flags, reach a queue group of the broker.
async fn tools_publish(server: &Server) {
    let topic = "orders.tools";
    let got: Got = Arc::default();
    let _sub = server.broker().subscribe(topic, recorder(&got), group("tools")).await.unwrap();
    let env: Vec<(&str, String)> = server.env();
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let micro = workspace_bin("micro");
    let (m, e) =
        (micro.clone(), env.clone().into_iter().map(|(k, v)| (k.to_string(), v.to_string())).collect::<Vec<_>>());
    let out = tokio::task::spawn_blocking(move || {
        std::process::Command::new(&m).args(["publish", topic, r#"{"via":"micro publish"}"#]).envs(e).output().unwrap()
    })
    .await
    .unwrap();
    assert!(out.status.success(), "micro publish: {}", String::from_utf8_lossy(&out.stderr));
    let (m, e) = (micro.clone(), env.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect::<Vec<_>>());
    let codes = tokio::task::spawn_blocking(move || {
        let e: Vec<(&str, &str)> = e.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
        let api = ["api", "--api_address", "127.0.0.1:0", "--namespace", "orders", "--handler", "event"];
        let (_api, gw) = micro_tests::listening(&m, &api, &e, "api");
        let (_px, px) = micro_tests::listening(&m, &["proxy", "--proxy_address", "127.0.0.1:0"], &e, "proxy");
        let post = |url: String, body: &str| {
            micro_tests::curl(&["-H", "Content-Type: application/json", "--data-binary", body, &url]).0
        };
        let event = post(format!("http://{gw}/tools"), r#"{"via":"the event handler"}"#);
        let proxy = post(format!("http://{px}/_pub/{topic}"), r#"{"via":"the proxy"}"#);
        (event, proxy)
    })
    .await
    .unwrap();
    assert_eq!(codes, (200, 200), "the event handler and the proxy took the messages");
    wait_for("the three messages", Duration::from_secs(30), async || got.lock().unwrap().len() >= 3).await;
    let bodies = got.lock().unwrap().join("\n");
    for via in ["micro publish", "the event handler", "the proxy"] {
        assert!(bodies.contains(via), "nothing came {via}: {bodies}");
    }
}

async fn jetstream() -> Server {
    Server::Js(tokio::task::spawn_blocking(Nats::start_jetstream).await.unwrap())
}

#[tokio::test]
async fn jetstream_group_away_gets_everything() {
    away_group_gets_everything(&jetstream().await).await;
}

#[tokio::test]
async fn jetstream_server_restarted_mid_stream() {
    restart_mid_stream(jetstream().await).await;
}

#[tokio::test]
async fn jetstream_member_killed_mid_batch() {
    member_killed_mid_batch(&jetstream().await).await;
}

#[tokio::test]
async fn jetstream_retries_and_dead_letters() {
    retries_and_dead_letters(&jetstream().await).await;
}

#[tokio::test]
async fn jetstream_tools_publish() {
    tools_publish(&jetstream().await).await;
}

/// The scenario of `pubsub.rs` (broadcast, a queue group of two, each message once) on `server`.
async fn broadcast_and_queue(server: &Server) {
    micro_tests::pubsub::broadcast_and_queue(|| server.broker(), micro_tests::memory_registry()).await;
}

/// RabbitMQ takes seconds to start: one server for every proof, the restart last.
#[tokio::test]
async fn rabbitmq_durability() {
    let server = Server::Rabbit(tokio::task::spawn_blocking(Rabbit::start).await.unwrap());
    broadcast_and_queue(&server).await;
    away_group_gets_everything(&server).await;
    retries_and_dead_letters(&server).await;
    member_killed_mid_batch(&server).await;
    tools_publish(&server).await;
    restart_mid_stream(server).await;
}

/// Kafka, through Tansu (built from crates.io, which takes long: `./scripts/setup --kafka`);
/// skipped, saying so, on a machine without it.
#[tokio::test]
async fn kafka_durability() {
    let Some(tansu) = tokio::task::spawn_blocking(Tansu::start).await.unwrap() else {
        eprintln!("kafka_durability: skipped, no tansu binary (TANSU_BIN, PATH or ./scripts/setup --kafka)");
        return;
    };
    let durable = tansu.durable;
    let server = Server::Kafka(tansu);
    broadcast_and_queue(&server).await;
    away_group_gets_everything(&server).await;
    retries_and_dead_letters(&server).await;
    member_killed_mid_batch(&server).await;
    tools_publish(&server).await;
    if durable {
        restart_mid_stream(server).await;
    } else {
        eprintln!("kafka_durability: the restart is not tried, this tansu keeps its store in memory");
    }
}

/// Our Kafka broker and kafka-python (an independent client) read each other's records: headers
/// and bodies intact, and a `Micro-Key` lands in the partition kafka-python's partitioner picks.
#[tokio::test]
async fn kafka_interop_with_kafka_python() {
    let Some(tansu) = tokio::task::spawn_blocking(Tansu::start).await.unwrap() else {
        eprintln!(
            "kafka_interop_with_kafka_python: skipped, no tansu binary (TANSU_BIN, PATH or ./scripts/setup --kafka)"
        );
        return;
    };
    let server = Server::Kafka(tansu);
    let broker = server.broker();
    // Subscribers make topics: one for each direction.
    let got: Got = Arc::default();
    let _in = broker.subscribe("interop.in", recorder(&got), group("rust")).await.unwrap();
    let _out = broker.subscribe("interop.out", recorder(&Got::default()), group("unused")).await.unwrap();
    for i in 0..12 {
        let mut m = message(&format!("rs-{i}"));
        m.header.insert(micro::broker::delivery::KEY_HEADER.into(), format!("key-{}", i % 3));
        send(&broker, "interop.out", m).await;
    }
    let addr = server.address();
    let out = tokio::task::spawn_blocking(move || {
        let script = micro_tests::repo_root().join("tests/python/kafka_peer.py");
        let python = micro_tests::python();
        let consumed = std::process::Command::new(&python)
            .arg(&script)
            .args(["consume", &addr, "interop.out", "12"])
            .output()
            .unwrap();
        let produced = std::process::Command::new(&python)
            .arg(&script)
            .args(["produce", &addr, "interop.in", "5"])
            .output()
            .unwrap();
        (consumed, produced)
    })
    .await
    .unwrap();
    let (consumed, produced) = out;
    assert!(consumed.status.success(), "kafka-python consume: {}", String::from_utf8_lossy(&consumed.stderr));
    assert!(produced.status.success(), "kafka-python produce: {}", String::from_utf8_lossy(&produced.stderr));
    let records: Vec<serde_json::Value> =
        String::from_utf8_lossy(&consumed.stdout).lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    assert_eq!(records.len(), 12);
    let mut values: Vec<&str> = records.iter().map(|r| r["value"].as_str().unwrap()).collect();
    values.sort();
    let mut want: Vec<String> = (0..12).map(|i| format!("rs-{i}")).collect();
    want.sort();
    assert_eq!(values, want);
    for r in &records {
        assert_eq!(r["headers"]["Micro-Id"], r["value"], "{r}");
        assert_eq!(r["partition"], r["picked"], "the key's partition is the one kafka-python picks: {r}");
    }
    // One key's messages in the order they were published (a partition is read in order).
    for key in ["key-0", "key-1", "key-2"] {
        let order: Vec<u32> = records
            .iter()
            .filter(|r| r["key"] == key)
            .map(|r| r["value"].as_str().unwrap()[3..].parse().unwrap())
            .collect();
        assert!(order.len() == 4 && order.is_sorted(), "{key}: {order:?}");
    }
    wait_for("kafka-python's records at our subscriber", Duration::from_secs(30), async || {
        got.lock().unwrap().len() >= 5
    })
    .await;
    let mut bodies = got.lock().unwrap().clone();
    bodies.sort();
    assert!(bodies.iter().all(|b| b.contains(r#""from": "python""#)), "{bodies:?}");
}
