//! Distributed engines that lose a member, on loopback, under load:
//!
//! - a 3-member etcd cluster whose leader is killed: services stay registered (their leases
//!   renewed through the new leader), calls continue, a service started afterwards registers;
//! - a 3-server NATS cluster that loses the servers a service (NATS transport and broker) is
//!   connected to: the service reconnects to another, calls continue, and a message published
//!   afterwards reaches its subscriber.
//!
//! The failover window is stated where it is measured: no call fails outside it.

use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use micro::client::Client;
use micro::options::Options;
use micro::registry::etcd::EtcdRegistry;
use micro::registry::{Registry, SharedRegistry};
use micro::selector::{RegistrySelector, Strategy};
use micro_tests::testing::{EchoRequest, TesterClient};
use micro_tests::{wait_for, Child, EtcdCluster, NatsCluster};

/// How long after the leader dies calls may fail.
const FAILOVER: Duration = Duration::from_secs(5);
/// Each call's deadline under load.
const CALL_TIMEOUT: Duration = Duration::from_secs(1);

/// Whether a call started `at` (from the start of the load) failed outside the failover window of
/// a kill at `killed_at`: a call still under way when the kill began may be cut by it.
fn outside_window(at: Duration, killed_at: Duration) -> bool {
    at + CALL_TIMEOUT < killed_at || at > killed_at + FAILOVER
}

fn tester(service: &str, etcd: &str) -> Child {
    let child = Command::new(env!("CARGO_BIN_EXE_tester"))
        .env("MICRO_REGISTRY", "etcd")
        .env("MICRO_REGISTRY_ADDRESS", etcd)
        .env("MICRO_SERVER_NAME", service)
        .env("MICRO_REGISTER_TTL", "3s")
        .env("MICRO_REGISTER_INTERVAL", "1s")
        .stderr(Stdio::null())
        .spawn()
        .expect("tester starts");
    Child(child)
}

/// Calls `Echo` every 5 ms for `duration`: when each call started, and its error.
fn load(tester: TesterClient, duration: Duration) -> tokio::task::JoinHandle<Vec<(Duration, Option<micro::Error>)>> {
    let started = Instant::now();
    tokio::spawn(async move {
        let mut results = Vec::new();
        while started.elapsed() < duration {
            let at = started.elapsed();
            let opts = micro::CallOptions::new().timeout(CALL_TIMEOUT);
            results.push((at, tester.echo_with(EchoRequest::default(), opts).await.err()));
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        results
    })
}

async fn node_count(registry: &EtcdRegistry, service: &str) -> usize {
    registry.get_service(service).await.map(|v| v.iter().map(|s| s.nodes.len()).sum()).unwrap_or(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_etcd_cluster_loses_its_leader_under_load() {
    let mut cluster = tokio::task::block_in_place(|| EtcdCluster::start(3));
    let addresses = cluster.addresses();
    let service = format!("steadfast{}", std::process::id());
    let _nodes = [tester(&service, &addresses), tester(&service, &addresses)];
    let registry = Arc::new(EtcdRegistry::new(&addresses.split(',').map(str::to_string).collect::<Vec<_>>()));
    wait_for("both nodes to register", Duration::from_secs(30), async || node_count(&registry, &service).await == 2)
        .await;

    let shared: SharedRegistry = registry.clone();
    let opts = Options::default();
    let selector = RegistrySelector::with_outliers(shared, Strategy::Random, opts.outliers());
    let tester_client =
        TesterClient::new(service.clone(), Client::with_selector(Arc::new(selector), opts.client_options(None)));
    let started = Instant::now();
    let load = load(tester_client, Duration::from_secs(12));

    tokio::time::sleep(Duration::from_secs(2)).await;
    let leader = tokio::task::block_in_place(|| cluster.leader());
    // The window opens as the kill begins: a call under way then may be cut.
    let killed_at = started.elapsed();
    tokio::task::block_in_place(|| cluster.members[leader].kill());
    let killed = leader;
    let new_leader = tokio::task::block_in_place(|| cluster.leader());
    let elected = started.elapsed() - killed_at;
    assert_ne!(new_leader, killed);

    // A service started now registers through the survivors.
    let late = format!("latecomer{}", std::process::id());
    let _late = tester(&late, &cluster.addresses());
    wait_for("a new service to register", Duration::from_secs(20), async || node_count(&registry, &late).await == 1)
        .await;
    let late_client = Client::with_selector(
        Arc::new(RegistrySelector::new(registry.clone(), Strategy::Random)),
        Options::default().client_options(None),
    );
    TesterClient::new(late.clone(), late_client).echo(EchoRequest::default()).await.expect("the new service answers");

    let results = load.await.unwrap();
    // Well past the TTL since the leader died: the leases were renewed through the new leader.
    assert!(started.elapsed() - killed_at > Duration::from_secs(6));
    assert_eq!(node_count(&registry, &service).await, 2, "both nodes are still registered");
    let failed: Vec<_> = results.iter().filter(|(_, e)| e.is_some()).collect();
    let outside: Vec<_> = failed.iter().filter(|(at, _)| outside_window(*at, killed_at)).collect();
    eprintln!(
        "etcd leader (member {killed}) killed at {killed_at:?}; member {new_leader} led {elected:?} later; {} calls, {} failed, {} outside the {FAILOVER:?} failover window",
        results.len(),
        failed.len(),
        outside.len()
    );
    assert!(results.len() > 500, "calls went on: {}", results.len());
    assert!(outside.is_empty(), "calls failed outside the failover window: {:?}", outside.first());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_nats_cluster_loses_the_server_a_service_is_connected_to() {
    let mut cluster = tokio::task::block_in_place(|| NatsCluster::start(3));
    let addresses = cluster.addresses();
    let pid = std::process::id();
    let service = format!("roaming{pid}");
    let topic = format!("roaming.events.{pid}");
    let before = tokio::task::block_in_place(|| cluster.connections());
    let heard = Arc::new(std::sync::Mutex::new(Vec::<String>::new()));
    let mut node = Command::new(env!("CARGO_BIN_EXE_tester"))
        .env("MICRO_REGISTRY", "mdns")
        .env("MICRO_SERVER_NAME", &service)
        .env("MICRO_TRANSPORT", "nats")
        .env("MICRO_TRANSPORT_ADDRESS", &addresses)
        .env("MICRO_BROKER", "nats")
        .env("MICRO_BROKER_ADDRESS", &addresses)
        .env("TESTER_SUBSCRIBE", &topic)
        .stderr(Stdio::piped())
        .spawn()
        .expect("tester starts");
    let stderr = node.stderr.take().unwrap();
    let _node = Child(node);
    {
        let heard = heard.clone();
        std::thread::spawn(move || {
            use std::io::BufRead;
            for line in std::io::BufReader::new(stderr).lines().map_while(Result::ok) {
                heard.lock().unwrap().push(line);
            }
        });
    }
    let registry: SharedRegistry = Arc::new(micro::registry::MdnsRegistry::new().unwrap());
    wait_for("the service to register", Duration::from_secs(30), async || {
        registry.get_service(&service).await.is_ok_and(|v| v.iter().any(|s| !s.nodes.is_empty()))
    })
    .await;
    // The servers holding the service's connections (transport and broker) are the ones to lose.
    let mut victims = Vec::new();
    wait_for("the service's connections", Duration::from_secs(10), async || {
        let now = tokio::task::block_in_place(|| cluster.connections());
        victims = (0..now.len()).filter(|&i| now[i] > before[i]).collect();
        now.iter().sum::<u64>() >= before.iter().sum::<u64>() + 2
    })
    .await;
    let survivor = (0..3).find(|i| !victims.contains(i)).expect("a server the service is not on");

    let opts = Options { transport_address: addresses.split(',').map(str::to_string).collect(), ..Options::default() };
    let selector = RegistrySelector::with_outliers(registry.clone(), Strategy::Random, opts.outliers());
    let client = Client::with_selector(Arc::new(selector), opts.client_options(None));
    let tester_client = TesterClient::new(service.clone(), client.clone());
    tester_client.echo(EchoRequest::default()).await.expect("a call over NATS");
    let started = Instant::now();
    let load = load(tester_client, Duration::from_secs(10));
    tokio::time::sleep(Duration::from_secs(2)).await;
    // The window opens as the kill begins: a call under way then may be cut.
    let killed_at = started.elapsed();
    tokio::task::block_in_place(|| victims.iter().for_each(|&v| cluster.servers[v].kill()));
    let results = load.await.unwrap();

    // A message published through another server reaches the subscriber, reconnected.
    let broker = Arc::new(micro::broker::nats::NatsBroker::new(&[cluster.servers[survivor].address()]));
    micro::broker::Broker::connect(&*broker).await.unwrap();
    let publisher = micro::Publisher::new(topic.clone(), client.with_broker(broker));
    wait_for("the subscriber to hear a message sent after the failover", Duration::from_secs(15), async || {
        let _ = publisher.publish(&EchoRequest { message: "after the failover".into(), ..Default::default() }).await;
        tokio::time::sleep(Duration::from_millis(200)).await;
        heard.lock().unwrap().iter().any(|l| l.contains("heard") && l.contains("after the failover"))
    })
    .await;

    let failed: Vec<_> = results.iter().filter(|(_, e)| e.is_some()).collect();
    let outside: Vec<_> = failed.iter().filter(|(at, _)| outside_window(*at, killed_at)).collect();
    eprintln!(
        "nats servers {victims:?} (the service's) killed at {killed_at:?}; {} calls, {} failed, {} outside the {FAILOVER:?} failover window; last failure {:?} after the kill",
        results.len(),
        failed.len(),
        outside.len(),
        failed.last().map(|(at, _)| at.saturating_sub(killed_at))
    );
    assert!(results.len() > 500, "calls went on: {}", results.len());
    assert!(outside.is_empty(), "calls failed outside the failover window: {:?}", outside.first());
    let after = results.iter().filter(|(at, e)| *at > killed_at + FAILOVER && e.is_none()).count();
    assert!(after > 100, "calls succeed after the failover: {after}");
}
