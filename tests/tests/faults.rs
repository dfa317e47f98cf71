//! Faults under steady load, with real processes on loopback: `tester` nodes found through a real
//! etcd, and a real nats-server. Each scenario runs a load of about 200 calls (or messages) a
//! second through the fault and counts what failed:
//!
//! - rolling restart: two nodes, each stopped in turn with SIGTERM and replaced; no call fails
//!   (the node deregisters, drains, and calls it refuses go to the other node);
//! - kill -9: one of two nodes dies; only calls in flight on it at that moment may fail, and the
//!   client retries those on the live node;
//! - etcd outage: calls to known nodes go on while etcd is down, and a node started during the
//!   outage registers once etcd is back and then takes calls from the same client;
//! - nats restart: subscribers (broadcast and a queue group) hear again after nats-server
//!   restarts, with no step taken by anyone, and lose nothing published once they hear again.

use std::collections::{BTreeMap, BTreeSet};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use micro::broker::SharedBroker;
use micro::registry::etcd::EtcdRegistry;
use micro::registry::Registry;
use micro::server::subscriber::{typed, Subscriber};
use micro::{CallOptions, Publisher, Request, Service};
use micro_tests::testing::{EchoRequest, Line, TesterClient};
use micro_tests::{client, memory_registry, signal, wait_for, Child, Etcd, Nats};

/// One call every this long: 200 a second.
const PERIOD: Duration = Duration::from_millis(5);

/// How long the node takes to answer a call of the load: about this many calls a second times
/// this long (4) are in flight at any moment, on the node that is stopped or killed too.
const WORK: Duration = Duration::from_millis(20);

/// How long one call of the load may take, retries included.
const CALL_TIMEOUT: Duration = Duration::from_secs(3);

/// How long etcd stays down: longer than a node's start once kept trying to register.
const OUTAGE: Duration = Duration::from_secs(8);

/// A `tester` node of `service` in its own process, registered in etcd with a short TTL.
fn node(etcd: &Etcd, service: &str, name: &str) -> Child {
    node_renewing(etcd, service, name, "3s", "1s")
}

/// A `tester` node registered in etcd with this TTL, renewed every `interval` ("0": never).
fn node_renewing(etcd: &Etcd, service: &str, name: &str, ttl: &str, interval: &str) -> Child {
    let stderr = if std::env::var_os("FAULTS_VERBOSE").is_some() { Stdio::inherit() } else { Stdio::null() };
    Child(
        Command::new(env!("CARGO_BIN_EXE_tester"))
            .env("MICRO_REGISTRY", "etcd")
            .env("MICRO_REGISTRY_ADDRESS", etcd.address())
            .env("MICRO_SERVER_NAME", service)
            .env("MICRO_REGISTER_TTL", ttl)
            .env("MICRO_REGISTER_INTERVAL", interval)
            .env("TESTER_NODE", name)
            .stderr(stderr)
            .spawn()
            .expect("tester starts"),
    )
}

/// How many nodes of `service` etcd holds.
async fn nodes(registry: &EtcdRegistry, service: &str) -> usize {
    registry.get_service(service).await.map_or(0, |s| s.iter().map(|v| v.nodes.len()).sum())
}

/// Waits for a child to exit; its status.
async fn exited(child: &mut Child, within: Duration) -> std::process::ExitStatus {
    let deadline = Instant::now() + within;
    loop {
        if let Some(status) = child.0.try_wait().expect("the child can be waited for") {
            return status;
        }
        assert!(Instant::now() < deadline, "the node did not exit within {within:?}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// A call that failed, and when it ran.
#[derive(Debug)]
struct Failure {
    started: Instant,
    ended: Instant,
    error: String,
}

/// What a load saw.
#[derive(Debug, Default)]
struct Tally {
    ok: usize,
    failed: Vec<Failure>,
    /// Calls answered, by the node that answered.
    served: BTreeMap<String, usize>,
}

impl Tally {
    /// Calls finished, answered or failed.
    fn total(&self) -> usize {
        self.ok + self.failed.len()
    }
}

/// Echo calls at a steady rate, each on its own task so a slow call never holds back the next.
struct Load {
    tally: Arc<Mutex<Tally>>,
    in_flight: Arc<AtomicUsize>,
    stop: Arc<AtomicBool>,
    task: tokio::task::JoinHandle<()>,
}

impl Load {
    fn start(tester: TesterClient) -> Load {
        let tally: Arc<Mutex<Tally>> = Arc::default();
        let in_flight = Arc::new(AtomicUsize::new(0));
        let stop = Arc::new(AtomicBool::new(false));
        let (t, f, s) = (tally.clone(), in_flight.clone(), stop.clone());
        let task = tokio::spawn(async move {
            let mut calls = tokio::task::JoinSet::new();
            let mut tick = tokio::time::interval(PERIOD);
            while !s.load(Ordering::Relaxed) {
                tick.tick().await;
                let (tester, tally, in_flight) = (tester.clone(), t.clone(), f.clone());
                calls.spawn(async move {
                    let started = Instant::now();
                    let req = EchoRequest { sleep_ms: WORK.as_millis() as u32, ..Default::default() };
                    in_flight.fetch_add(1, Ordering::Relaxed);
                    let reply = tester.echo_with(req, CallOptions::new().timeout(CALL_TIMEOUT)).await;
                    in_flight.fetch_sub(1, Ordering::Relaxed);
                    let mut tally = tally.lock().unwrap();
                    match reply {
                        Ok(r) => {
                            tally.ok += 1;
                            *tally.served.entry(r.node).or_default() += 1;
                        }
                        Err(e) => tally.failed.push(Failure { started, ended: Instant::now(), error: e.to_string() }),
                    }
                });
                while calls.try_join_next().is_some() {}
            }
            while calls.join_next().await.is_some() {}
        });
        Load { tally, in_flight, stop, task }
    }

    /// Calls `node` has answered so far.
    fn served(&self, node: &str) -> usize {
        self.tally.lock().unwrap().served.get(node).copied().unwrap_or(0)
    }

    /// Stops issuing calls, waits for the ones in flight, and returns the tally.
    async fn stop(self) -> Tally {
        self.stop.store(true, Ordering::Relaxed);
        self.task.await.expect("the load task does not panic");
        std::mem::take(&mut *self.tally.lock().unwrap())
    }
}

/// Prints what a load saw (shown with `--nocapture`).
fn report(scenario: &str, tally: &Tally, elapsed: Duration) {
    eprintln!(
        "{scenario}: {} of {} calls failed in {:.1} s; served by node: {:?}",
        tally.failed.len(),
        tally.total(),
        elapsed.as_secs_f64(),
        tally.served
    );
    for f in tally.failed.iter().take(5) {
        eprintln!("  failed: {}", f.error);
    }
}

/// Keeps the load running until it has run for `window`.
async fn hold(started: Instant, window: Duration) {
    tokio::time::sleep(window.saturating_sub(started.elapsed())).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rolling_restart_under_load_loses_nothing() {
    let etcd = tokio::task::spawn_blocking(Etcd::start).await.unwrap();
    let registry = Arc::new(EtcdRegistry::new(&[etcd.address()]));
    let service = "faults.rolling";
    let mut a = node(&etcd, service, "a");
    let mut b = node(&etcd, service, "b");
    wait_for("two nodes", Duration::from_secs(10), async || nodes(&registry, service).await == 2).await;

    let load = Load::start(TesterClient::new(service, client(registry.clone(), 1)));
    let started = Instant::now();
    wait_for("both nodes to serve", Duration::from_secs(10), async || load.served("a") > 0 && load.served("b") > 0)
        .await;
    for (old, new, at) in [(&mut a, "a2", 2), (&mut b, "b2", 6)] {
        hold(started, Duration::from_secs(at)).await;
        signal(&old.0, "TERM");
        let status = exited(old, Duration::from_secs(15)).await;
        assert!(status.success(), "SIGTERM ends a node cleanly, not with {status}");
        *old = node(&etcd, service, new);
        wait_for(&format!("{new} to serve"), Duration::from_secs(10), async || load.served(new) > 0).await;
    }
    hold(started, Duration::from_secs(10)).await;
    let tally = load.stop().await;
    report("rolling restart", &tally, started.elapsed());

    assert!(tally.failed.is_empty(), "{} calls failed: {:?}", tally.failed.len(), tally.failed);
    assert!(tally.total() >= 1000, "the load ran: {} calls", tally.total());
    for n in ["a", "b", "a2", "b2"] {
        assert!(tally.served.contains_key(n), "{n} served: {:?}", tally.served);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_under_load() {
    let etcd = tokio::task::spawn_blocking(Etcd::start).await.unwrap();
    let registry = Arc::new(EtcdRegistry::new(&[etcd.address()]));
    let service = "faults.kill";
    let mut a = node(&etcd, service, "a");
    let _b = node(&etcd, service, "b");
    wait_for("two nodes", Duration::from_secs(10), async || nodes(&registry, service).await == 2).await;

    let load = Load::start(TesterClient::new(service, client(registry.clone(), 1)));
    let started = Instant::now();
    wait_for("both nodes to serve", Duration::from_secs(10), async || load.served("a") > 0 && load.served("b") > 0)
        .await;
    hold(started, Duration::from_secs(2)).await;
    let in_flight = load.in_flight.load(Ordering::Relaxed);
    let killed = Instant::now();
    a.0.kill().unwrap();
    a.0.wait().unwrap();
    let reaped = Instant::now();
    let b_before = load.served("b");
    hold(started, Duration::from_secs(10)).await;
    let tally = load.stop().await;
    report("kill -9", &tally, started.elapsed());
    eprintln!("kill -9: {in_flight} calls were in flight (on either node) when a was killed");

    let not_in_flight: Vec<&Failure> = tally.failed.iter().filter(|f| f.started > reaped || f.ended < killed).collect();
    assert!(not_in_flight.is_empty(), "calls not in flight at the kill failed: {not_in_flight:?}");
    assert!(
        tally.failed.is_empty(),
        "calls in flight on the dead node are retried on the live one: {:?}",
        tally.failed
    );
    assert!(tally.total() >= 1000, "the load ran: {} calls", tally.total());
    assert!(tally.served["b"] > b_before + 500, "the live node took the load: {:?}", tally.served);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn etcd_outage() {
    let mut etcd = tokio::task::spawn_blocking(Etcd::start).await.unwrap();
    let registry = Arc::new(EtcdRegistry::new(&[etcd.address()]));
    let service = "faults.outage";
    let _a = node(&etcd, service, "a");
    let _b = node(&etcd, service, "b");
    wait_for("two nodes", Duration::from_secs(10), async || nodes(&registry, service).await == 2).await;

    let load = Load::start(TesterClient::new(service, client(registry.clone(), 1)));
    let started = Instant::now();
    wait_for("both nodes to serve", Duration::from_secs(10), async || load.served("a") > 0 && load.served("b") > 0)
        .await;
    etcd = tokio::task::spawn_blocking(move || {
        etcd.kill();
        etcd
    })
    .await
    .unwrap();
    let before = load.tally.lock().unwrap().total();
    assert!(registry.list_services().await.is_err(), "etcd is down");
    // Without renewals, so only start's own retries can register it; longer than they once lasted.
    let mut c = node_renewing(&etcd, service, "c", "0", "0");
    let down = Instant::now();
    tokio::time::sleep(OUTAGE).await;
    let during = load.tally.lock().unwrap().total() - before;
    assert_eq!(load.served("c"), 0, "c cannot be known while etcd is down");
    assert!(c.0.try_wait().unwrap().is_none(), "c keeps running while etcd is down");

    etcd = tokio::task::spawn_blocking(move || {
        etcd.restart(false);
        etcd
    })
    .await
    .unwrap();
    let up = Instant::now();
    wait_for("c to register and take calls", Duration::from_secs(20), async || load.served("c") > 0).await;
    eprintln!(
        "etcd outage: down {:.1} s; c took its first call {:.1} s after etcd was back",
        (up - down).as_secs_f64(),
        up.elapsed().as_secs_f64()
    );
    hold(started, Duration::from_secs(12)).await;
    let tally = load.stop().await;
    report("etcd outage", &tally, started.elapsed());

    assert!(tally.failed.is_empty(), "{} calls failed: {:?}", tally.failed.len(), tally.failed);
    assert!(during >= 1000, "calls went on while etcd was down: {during}");
    drop(etcd);
}

const TOPIC: &str = "faults.nats";

type Heard = Arc<Mutex<Vec<(String, u64)>>>;

/// A service subscribed to [`TOPIC`] over NATS: `name` records every message it hears in `heard`,
/// alone or as a member of `queue`.
async fn listener(nats: &Nats, name: &str, queue: Option<&str>, heard: &Heard) -> Service {
    let opts = micro::options::Options { register_interval: Duration::ZERO, ..Default::default() };
    let broker: SharedBroker = Arc::new(micro::broker::nats::NatsBroker::new(&[nats.address()]));
    let svc = Service::builder()
        .name(format!("faults.listener.{name}"))
        .options(opts)
        .registry(memory_registry())
        .broker(broker)
        .build()
        .unwrap();
    let (who, heard) = (name.to_string(), heard.clone());
    let record = move |req: Request<Line>| {
        let (who, heard) = (who.clone(), heard.clone());
        async move {
            heard.lock().unwrap().push((who, req.text.parse().expect("a sequence number")));
            Ok(())
        }
    };
    let mut sub = Subscriber::new(TOPIC, "Record", typed(record));
    if let Some(q) = queue {
        sub = sub.queue(q);
    }
    svc.server().subscribe(sub);
    svc.start().await.unwrap();
    svc
}

/// The numbers `who` (any member, if `None`) heard from `from` on.
fn heard_from(heard: &Heard, who: Option<&str>, from: u64) -> Vec<u64> {
    heard
        .lock()
        .unwrap()
        .iter()
        .filter(|(w, n)| *n >= from && who.is_none_or(|who| who == w))
        .map(|(_, n)| *n)
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nats_restart() {
    let mut nats = tokio::task::spawn_blocking(Nats::start).await.unwrap();
    let broadcast: Heard = Arc::default();
    let group: Heard = Arc::default();
    let listeners = [
        listener(&nats, "all", None, &broadcast).await,
        listener(&nats, "q1", Some("workers"), &group).await,
        listener(&nats, "q2", Some("workers"), &group).await,
    ];
    let client = micro::Client::new(memory_registry(), Default::default())
        .with_broker(Arc::new(micro::broker::nats::NatsBroker::new(&[nats.address()])));
    let publisher = Publisher::new(TOPIC, client);

    let next = Arc::new(AtomicU64::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    let (n, s) = (next.clone(), stop.clone());
    let publishing = tokio::spawn(async move {
        let mut tick = tokio::time::interval(PERIOD);
        let mut failed = 0usize;
        while !s.load(Ordering::Relaxed) {
            tick.tick().await;
            let seq = n.fetch_add(1, Ordering::Relaxed);
            if publisher.publish(&Line { text: seq.to_string() }).await.is_err() {
                failed += 1;
            }
        }
        failed
    });
    let started = Instant::now();
    wait_for("every subscriber to hear", Duration::from_secs(10), async || {
        !heard_from(&broadcast, None, 0).is_empty()
            && !heard_from(&group, Some("q1"), 0).is_empty()
            && !heard_from(&group, Some("q2"), 0).is_empty()
    })
    .await;

    nats = tokio::task::spawn_blocking(move || {
        nats.restart();
        nats
    })
    .await
    .unwrap();
    let back = next.load(Ordering::Relaxed);
    let restarted = Instant::now();
    wait_for("every subscriber to hear again", Duration::from_secs(20), async || {
        !heard_from(&broadcast, None, back).is_empty()
            && !heard_from(&group, Some("q1"), back).is_empty()
            && !heard_from(&group, Some("q2"), back).is_empty()
    })
    .await;
    let resumed = restarted.elapsed();
    hold(started, Duration::from_secs(8)).await;
    stop.store(true, Ordering::Relaxed);
    let failed = publishing.await.unwrap();
    let last = next.load(Ordering::Relaxed) - 1;
    wait_for("the last message", Duration::from_secs(5), async || {
        heard_from(&broadcast, None, last).len() == 1 && heard_from(&group, None, last).len() == 1
    })
    .await;

    let total = last + 1;
    let lost = |heard: &Heard| total - heard.lock().unwrap().len() as u64;
    eprintln!(
        "nats restart: {total} published ({failed} publish calls failed); subscribers heard again {:.1} s after the \
         server was back; lost during the outage: broadcast {}, queue group {}",
        resumed.as_secs_f64(),
        lost(&broadcast),
        lost(&group)
    );
    for (what, heard) in [("broadcast", &broadcast), ("queue group", &group)] {
        let after = heard_from(heard, None, back);
        let distinct: BTreeSet<u64> = after.iter().copied().collect();
        assert_eq!(distinct.len(), after.len(), "{what}: each message heard once");
        let first = *distinct.first().unwrap();
        assert_eq!(
            distinct.into_iter().collect::<Vec<_>>(),
            (first..=last).collect::<Vec<_>>(),
            "{what}: nothing lost once the subscription was back"
        );
    }
    for svc in listeners {
        svc.stop().await;
    }
    drop(nats);
}
