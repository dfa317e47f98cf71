//! Resilience with real processes on loopback: `tester` nodes in their own processes, found over
//! mDNS, called by a client built as every service builds its own (outlier ejection, retry
//! budget, adaptive throttling, from the default options). What each node served is read from
//! its own `/metrics`, so attempts are counted where they land.
//!
//! - one of three nodes fails every call: once it is ejected, ≥ 99.5 % of calls succeed and the
//!   sick node gets ≤ 2 % of the attempts (its probes);
//! - one of three nodes is far slower (80 ms against 2 ms): once it is ejected for its latency, p99 ≤ 2× the p99 of
//!   the healthy nodes alone; and with latency ejection off, idempotent calls hedged after the
//!   healthy median answer within that delay and one healthy call (under half the unhedged p99);
//! - every node fails: idempotent calls allowed three retries make ≤ 1.1 attempts per call (the
//!   budget holds), and with throttling on most calls are not even sent;
//! - a node offered 3× what it can serve sheds the rest: goodput ≥ 90 % of its capacity, p99 of
//!   the calls it accepts ≤ 3× its unloaded p99, refusals answered at once with
//!   `RESOURCE_EXHAUSTED`, `/health/ready` and `/metrics` answered throughout.
//!
//! Windows are stated where they are measured: the first second of a fault (while the client
//! or the server learns) is left out of the figures.

use std::io::{Read, Write};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use micro::client::Client;
use micro::options::Options;
use micro::registry::{MdnsRegistry, SharedRegistry};
use micro::selector::{RegistrySelector, Strategy};
use micro::CallOptions;
use micro_tests::testing::{EchoRequest, TesterClient};
use micro_tests::{wait_for, Child};

/// Held by each test: their figures are latencies, so they run one at a time.
static ONE_AT_A_TIME: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// A tester node of `service` with id `id` and `envs`, on mDNS.
fn node(service: &str, id: &str, envs: &[(&str, &str)]) -> Child {
    let child = Command::new(env!("CARGO_BIN_EXE_tester"))
        .env("MICRO_REGISTRY", "mdns")
        .env("MICRO_SERVER_NAME", service)
        .env("MICRO_SERVER_ID", id)
        .envs(envs.iter().copied())
        .stderr(Stdio::null())
        .spawn()
        .expect("tester starts");
    Child(child)
}

/// A client as a service builds it from `opts`.
fn client(registry: SharedRegistry, opts: &Options) -> Client {
    let selector = RegistrySelector::with_outliers(registry, Strategy::Random, opts.outliers());
    let client = Client::with_selector(Arc::new(selector), opts.client_options(None));
    match opts.throttle() {
        Some(t) => client.wrap(t),
        None => client,
    }
}

/// The addresses of `service`'s nodes by id, once there are `n`.
async fn nodes(registry: &SharedRegistry, service: &str, n: usize) -> Vec<(String, String)> {
    let mut found = Vec::new();
    wait_for(&format!("{n} nodes of {service}"), Duration::from_secs(30), async || {
        found = registry
            .get_service(service)
            .await
            .unwrap_or_default()
            .into_iter()
            .flat_map(|s| s.nodes)
            .map(|n| (n.id, n.address))
            .collect();
        found.len() == n
    })
    .await;
    found
}

/// `GET path` on `address`: the status and body.
fn get(address: &str, path: &str) -> (u16, String) {
    let mut stream = std::net::TcpStream::connect(address).expect("node reachable");
    stream.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    write!(stream, "GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n").unwrap();
    let mut text = String::new();
    let _ = stream.read_to_string(&mut text);
    let status = text.split(' ').nth(1).and_then(|s| s.parse().ok()).unwrap_or(0);
    (status, text.split_once("\r\n\r\n").map(|(_, b)| b.to_string()).unwrap_or_default())
}

/// How many `Echo` calls the node at `address` has answered, by its own metrics.
fn echoes(address: &str) -> u64 {
    let (status, body) = get(address, "/metrics");
    assert_eq!(status, 200, "metrics of {address}");
    body.lines()
        .filter(|l| l.starts_with("rpc_server_call_duration_seconds_count{") && l.contains("rpc_method=\"Echo\""))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum::<f64>() as u64
}

/// Calls `Echo` `n` times from `concurrency` tasks; returns (succeeded, latencies of successes).
async fn calls(tester: &TesterClient, n: usize, concurrency: usize, opts: CallOptions) -> (usize, Vec<Duration>) {
    let left = Arc::new(std::sync::atomic::AtomicUsize::new(n));
    let tasks = (0..concurrency).map(|_| {
        let (tester, left, opts) = (tester.clone(), left.clone(), opts.clone());
        tokio::spawn(async move {
            let mut out = (0, Vec::new());
            while left
                .fetch_update(std::sync::atomic::Ordering::AcqRel, std::sync::atomic::Ordering::Acquire, |l| {
                    l.checked_sub(1)
                })
                .is_ok()
            {
                let started = Instant::now();
                if tester.echo_with(EchoRequest::default(), opts.clone()).await.is_ok() {
                    out.0 += 1;
                    out.1.push(started.elapsed());
                }
            }
            out
        })
    });
    let mut total = (0, Vec::new());
    for t in futures_util::future::join_all(tasks).await {
        let (ok, mut lat) = t.unwrap();
        total.0 += ok;
        total.1.append(&mut lat);
    }
    total
}

fn percentile(latencies: &mut [Duration], p: usize) -> Duration {
    latencies.sort();
    latencies.get(latencies.len() * p / 100).copied().unwrap_or_default()
}

fn p99(latencies: &mut [Duration]) -> Duration {
    percentile(latencies, 99)
}

fn mdns() -> SharedRegistry {
    Arc::new(MdnsRegistry::new().expect("mDNS starts"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_that_fails_every_call_is_ejected() {
    let _alone = ONE_AT_A_TIME.lock().await;
    let pid = std::process::id();
    let service = format!("sickly{pid}");
    let sick = format!("sick-{pid}");
    let _nodes = [
        node(&service, &format!("well-a-{pid}"), &[]),
        node(&service, &format!("well-b-{pid}"), &[]),
        node(&service, &sick, &[("TESTER_FAIL_CODE", "500")]),
    ];
    let registry = mdns();
    let found = nodes(&registry, &service, 3).await;
    let tester = TesterClient::new(service.clone(), client(registry, &Options::default()));
    // The ejection window: the sick node fails five calls in a row and is taken out.
    calls(&tester, 200, 4, CallOptions::new()).await;
    let before: Vec<u64> = found.iter().map(|(_, a)| echoes(a)).collect();
    // About three seconds of calls: the sick node's first probe falls inside.
    let started = Instant::now();
    let mut succeeded = 0;
    for _ in 0..10 {
        succeeded += calls(&tester, 100, 4, CallOptions::new()).await.0;
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    let spent = started.elapsed();
    let after: Vec<u64> = found.iter().map(|(_, a)| echoes(a)).collect();
    let attempts: u64 = after.iter().zip(&before).map(|(a, b)| a - b).sum();
    let i = found.iter().position(|(id, _)| *id == sick).unwrap();
    let sick_attempts = after[i] - before[i];
    eprintln!("sick node: {succeeded}/1000 succeeded over {spent:?}; it got {sick_attempts} of {attempts} attempts");
    assert!(succeeded >= 995, "{succeeded} of 1000 calls succeeded");
    assert!(sick_attempts as f64 <= attempts as f64 * 0.02, "the sick node got {sick_attempts} of {attempts} attempts");
    assert!(attempts >= 1000, "every call was made: {attempts} attempts");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_ten_times_slower_is_ejected_for_its_latency() {
    let _alone = ONE_AT_A_TIME.lock().await;
    let pid = std::process::id();
    let service = format!("sluggish{pid}");
    let _a = node(&service, &format!("quick-a-{pid}"), &[("TESTER_DELAY_MS", "2")]);
    let _b = node(&service, &format!("quick-b-{pid}"), &[("TESTER_DELAY_MS", "2")]);
    let registry = mdns();
    nodes(&registry, &service, 2).await;
    let tester = TesterClient::new(service.clone(), client(registry.clone(), &Options::default()));
    calls(&tester, 50, 2, CallOptions::new()).await;
    let (ok, mut healthy) = calls(&tester, 400, 2, CallOptions::new()).await;
    assert_eq!(ok, 400);
    let healthy_p99 = p99(&mut healthy);

    let slow_id = format!("slow-{pid}");
    let _slow = node(&service, &slow_id, &[("TESTER_DELAY_MS", "80")]);
    let found = nodes(&registry, &service, 3).await;
    let slow = &found.iter().find(|(id, _)| *id == slow_id).unwrap().1;
    // The ejection window: calls until the slow node has been tried enough to be judged.
    wait_for("the slow node to be judged", Duration::from_secs(30), async || {
        calls(&tester, 40, 2, CallOptions::new()).await;
        echoes(slow) >= 16
    })
    .await;
    calls(&tester, 100, 2, CallOptions::new()).await;
    let before = echoes(slow);
    let (ok, mut mixed) = calls(&tester, 600, 2, CallOptions::new()).await;
    let to_slow = echoes(slow) - before;
    let mixed_p99 = p99(&mut mixed);
    eprintln!("slow node: p99 {mixed_p99:?} with it, {healthy_p99:?} without; it got {to_slow} of 600 calls");
    assert_eq!(ok, 600);
    assert!(mixed_p99 <= healthy_p99 * 2, "p99 {mixed_p99:?} with a slow node, {healthy_p99:?} without");
    assert!(to_slow <= 5, "the slow node got {to_slow} of 600 calls (six would be in the p99)");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hedged_calls_go_around_a_slow_node() {
    let _alone = ONE_AT_A_TIME.lock().await;
    let pid = std::process::id();
    let service = format!("hedged{pid}");
    let _a = node(&service, &format!("swift-a-{pid}"), &[("TESTER_DELAY_MS", "4")]);
    let _b = node(&service, &format!("swift-b-{pid}"), &[("TESTER_DELAY_MS", "4")]);
    let registry = mdns();
    nodes(&registry, &service, 2).await;
    // Nodes are never ejected for slowness here: only hedging can help.
    let opts = Options { client_eject_slow: 0.0, ..Options::default() };
    let tester = TesterClient::new(service.clone(), client(registry.clone(), &opts));
    calls(&tester, 50, 2, CallOptions::new()).await;
    let (_, mut healthy) = calls(&tester, 400, 2, CallOptions::new()).await;
    let (healthy_p50, healthy_p99) = (percentile(&mut healthy, 50), p99(&mut healthy));

    let _slow = node(&service, &format!("laggard-{pid}"), &[("TESTER_DELAY_MS", "40")]);
    nodes(&registry, &service, 3).await;
    let (_, mut unhedged) = calls(&tester, 300, 2, CallOptions::new()).await;
    let unhedged_p99 = p99(&mut unhedged);
    let hedged = CallOptions::new().idempotent(true).hedge(healthy_p50);
    let (ok, mut mixed) = calls(&tester, 600, 2, hedged).await;
    let mixed_p99 = p99(&mut mixed);
    eprintln!(
        "hedging after {healthy_p50:?}: p99 {mixed_p99:?} (unhedged {unhedged_p99:?}, healthy alone {healthy_p99:?})"
    );
    assert_eq!(ok, 600);
    assert!(unhedged_p99 > healthy_p99 * 2, "the slow node shows without hedging: {unhedged_p99:?}");
    let bound = healthy_p50 + healthy_p99 + Duration::from_millis(5);
    assert!(mixed_p99 <= bound, "hedged p99 {mixed_p99:?}: more than the delay and a healthy call ({bound:?})");
    assert!(mixed_p99 * 2 <= unhedged_p99, "hedged p99 {mixed_p99:?}, unhedged {unhedged_p99:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn when_every_node_fails_retries_stay_within_the_budget() {
    let _alone = ONE_AT_A_TIME.lock().await;
    let pid = std::process::id();
    let service = format!("downed{pid}");
    let _nodes: Vec<Child> =
        (0..3).map(|i| node(&service, &format!("down-{i}-{pid}"), &[("TESTER_FAIL_CODE", "503")])).collect();
    let registry = mdns();
    let found = nodes(&registry, &service, 3).await;
    let total = || found.iter().map(|(_, a)| echoes(a)).sum::<u64>();

    // Idempotent calls that may be tried four times each; no throttling: the budget alone.
    let unthrottled = Options { client_throttle: 0.0, ..Options::default() };
    let tester = TesterClient::new(service.clone(), client(registry.clone(), &unthrottled));
    let retried = CallOptions::new().idempotent(true).retries(3);
    let before = total();
    let (ok, _) = calls(&tester, 500, 2, retried.clone()).await;
    let attempts = total() - before;
    eprintln!("every node down: 500 calls made {attempts} attempts");
    assert_eq!(ok, 0);
    assert!(attempts <= 550, "500 calls made {attempts} attempts");
    assert!(attempts >= 500, "every call was sent: {attempts} attempts");

    // With throttling (the default) most calls are not even sent.
    let tester = TesterClient::new(service.clone(), client(registry, &Options::default()));
    let before = total();
    let (ok, _) = calls(&tester, 500, 2, retried.clone()).await;
    let sent = total() - before;
    // Almost every call is held back now; one of a handful surely is.
    let mut refused = None;
    for _ in 0..20 {
        let e = tester.echo_with(EchoRequest::default(), retried.clone()).await.unwrap_err();
        if e.id == micro::wrapper::throttle::ID {
            refused = Some(e);
            break;
        }
    }
    let refused = refused.expect("calls are held back");
    eprintln!("every node down, throttled: 500 calls made {sent} attempts; then: {}", refused.detail);
    assert_eq!(ok, 0);
    assert!(sent <= 100, "throttled, 500 calls still made {sent} attempts");
    assert_eq!(refused.id, micro::wrapper::throttle::ID, "{refused}");
    assert!(refused.detail.contains("not sent"), "{refused}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_overloaded_node_sheds_what_it_cannot_serve() {
    let _alone = ONE_AT_A_TIME.lock().await;
    let pid = std::process::id();
    let service = format!("swamped{pid}");
    // Four calls at a time, 20 ms each: about 200 calls a second, bounded by a pool rather than
    // the CPU, so the node sheds on latency alone.
    let _node = node(
        &service,
        &format!("swamped-{pid}"),
        &[("TESTER_CAPACITY", "4"), ("TESTER_DELAY_MS", "20"), ("MICRO_SERVER_SHED", "latency")],
    );
    let registry = mdns();
    let address = nodes(&registry, &service, 1).await.remove(0).1;
    let opts = Options { client_throttle: 0.0, client_retries: 0, ..Options::default() };
    let tester = TesterClient::new(service.clone(), client(registry, &opts));

    // Capacity and unloaded latency: as many callers as the node has room for.
    calls(&tester, 40, 4, CallOptions::new()).await;
    let started = Instant::now();
    let (ok, mut unloaded) = calls(&tester, 400, 4, CallOptions::new()).await;
    let capacity = ok as f64 / started.elapsed().as_secs_f64();
    let unloaded_p99 = p99(&mut unloaded);
    assert_eq!(ok, 400);

    // Health and metrics, polled throughout.
    let polling = Arc::new(std::sync::atomic::AtomicBool::new(true));
    let health = {
        let (polling, address) = (polling.clone(), address.clone());
        tokio::task::spawn_blocking(move || {
            let mut worst = Duration::ZERO;
            let mut polls = 0;
            while polling.load(std::sync::atomic::Ordering::Acquire) {
                let t = Instant::now();
                let (status, body) = get(&address, "/health/ready");
                assert_eq!(status, 200, "ready while overloaded: {body}");
                let (status, _) = get(&address, "/metrics");
                assert_eq!(status, 200, "metrics while overloaded");
                worst = worst.max(t.elapsed());
                polls += 1;
                std::thread::sleep(Duration::from_millis(50));
            }
            (polls, worst)
        })
    };

    // Three times that, open loop, for four seconds.
    let offered = capacity * 3.0;
    let mut pace = tokio::time::interval(Duration::from_secs_f64(1.0 / offered));
    pace.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
    let start = Instant::now();
    let mut inflight = Vec::new();
    while start.elapsed() < Duration::from_secs(4) {
        pace.tick().await;
        let tester = tester.clone();
        inflight.push(tokio::spawn(async move {
            let sent = Instant::now();
            let res =
                tester.echo_with(EchoRequest::default(), CallOptions::new().timeout(Duration::from_secs(3))).await;
            (sent.duration_since(start), sent.elapsed(), res.err())
        }));
    }
    let results: Vec<_> = futures_util::future::join_all(inflight).await.into_iter().map(Result::unwrap).collect();
    polling.store(false, std::sync::atomic::Ordering::Release);
    let (polls, worst_health) = health.await.unwrap();

    // The figures after the first second, while the node has learned it is overloaded.
    let measured: Vec<_> = results.iter().filter(|(at, _, _)| *at >= Duration::from_secs(1)).collect();
    let mut accepted: Vec<Duration> = measured.iter().filter(|r| r.2.is_none()).map(|r| r.1).collect();
    let mut refusals: Vec<Duration> =
        measured.iter().filter(|r| r.2.as_ref().is_some_and(|e| e.is_overloaded())).map(|r| r.1).collect();
    let others: Vec<_> = measured.iter().filter_map(|r| r.2.as_ref().filter(|e| !e.is_overloaded())).collect();
    let goodput = accepted.len() as f64 / 3.0;
    let accepted_p99 = p99(&mut accepted);
    refusals.sort();
    let refusal_median = refusals.get(refusals.len() / 2).copied().unwrap_or_default();
    let refusal_p90 = refusals.get(refusals.len() * 9 / 10).copied().unwrap_or_default();
    eprintln!(
        "overload: capacity {capacity:.0}/s (p99 {unloaded_p99:?}); offered {offered:.0}/s; goodput {goodput:.0}/s, accepted p99 {accepted_p99:?}; {} refused (median {refusal_median:?}, p90 {refusal_p90:?}); {} other errors; health {polls} polls, worst {worst_health:?}",
        refusals.len(),
        others.len()
    );
    assert!(goodput >= capacity * 0.9, "goodput {goodput:.0}/s of a capacity of {capacity:.0}/s");
    assert!(accepted_p99 <= unloaded_p99 * 3, "accepted p99 {accepted_p99:?}, unloaded {unloaded_p99:?}");
    assert!(refusals.len() as f64 >= offered, "the excess was refused: {} refusals", refusals.len());
    assert!(refusal_median < Duration::from_millis(5), "refusals take {refusal_median:?} (median)");
    assert!(others.is_empty(), "only refusals for overload: {:?}", others.first());
    assert!(worst_health < Duration::from_secs(1), "health took {worst_health:?}");
}
