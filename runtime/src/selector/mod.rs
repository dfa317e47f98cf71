//! Client-side load balancing: which node of a service gets the next call.
//!
//! [`RegistrySelector`] reads nodes from a watch-fed [`cache`] of the registry (so a lookup is a
//! read of memory, and the last known nodes keep serving while the registry is down), filters
//! them (version, node metadata, endpoint, nodes this call already tried, nodes [`outlier`]
//! ejection took out: unreachable, failing or far slower than their peers), and lets a
//! [`Strategy`] pick: [`Strategy::Random`] (the default),
//! [`Strategy::RoundRobin`], or [`Strategy::LeastLoaded`] (power of two choices over in-flight
//! calls and latency).

/// The watch-fed registry cache the selectors read (it lives in [`crate::registry::cache`]).
pub use crate::registry::cache;

pub mod outlier;

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use async_trait::async_trait;

use crate::registry::{Node, SharedRegistry};
use crate::Error;
use outlier::{OutlierOptions, Outliers, Standing, Verdict};

/// The id of errors about selector names.
pub const ID: &str = "go.micro.selector";
use crate::registry::cache::RegistryCache;

/// How to choose among healthy nodes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Strategy {
    /// Uniformly at random.
    #[default]
    Random,
    /// In turn.
    RoundRobin,
    /// Of two random nodes, the one with fewer calls in flight (then lower latency).
    LeastLoaded,
}

/// Names `--selector` takes.
pub const NAMES: &[&str] = &["random", "roundrobin", "leastloaded"];

impl std::str::FromStr for Strategy {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self, Error> {
        match s {
            "random" => Ok(Strategy::Random),
            "roundrobin" | "round_robin" => Ok(Strategy::RoundRobin),
            "leastloaded" | "least_loaded" | "p2c" => Ok(Strategy::LeastLoaded),
            _ => Err(Error::bad_request(ID, format!("unknown selector \"{s}\" (valid: {})", NAMES.join(", ")))),
        }
    }
}

/// Conditions a node must meet.
#[derive(Debug, Clone, Default)]
pub struct Filter {
    /// Only this service version.
    pub version: Option<String>,
    /// Only nodes whose metadata holds every pair.
    pub labels: Vec<(String, String)>,
    /// Only versions that serve this endpoint.
    pub endpoint: Option<String>,
    /// Not these addresses (already tried by this call).
    pub exclude: Vec<String>,
}

/// How a call to a node went.
#[derive(Debug, Clone, Copy)]
pub struct Outcome<'a> {
    /// The call's result.
    pub result: Result<(), &'a Error>,
    /// How long it took.
    pub elapsed: Duration,
}

/// Picks the node for a call.
#[async_trait]
pub trait Selector: Send + Sync + 'static {
    /// A node of `service` that passes `filter`.
    async fn select(&self, service: &str, filter: &Filter) -> Result<Node, Error>;
    /// Reports how a call to a node returned by [`Selector::select`] went.
    fn mark(&self, service: &str, node: &Node, outcome: Outcome<'_>);
    /// The selector's name.
    fn name(&self) -> &'static str;
}

#[derive(Default)]
struct Load {
    inflight: AtomicUsize,
    /// EWMA of latency in microseconds.
    ewma_us: AtomicU64,
}

/// A selector over a registry, with a watch-fed cache and outlier ejection.
pub struct RegistrySelector {
    cache: Arc<RegistryCache>,
    strategy: Strategy,
    next: AtomicUsize,
    outliers: Outliers,
    load: RwLock<HashMap<String, Arc<Load>>>,
}

impl RegistrySelector {
    /// A selector reading `registry`, with the default outlier ejection.
    pub fn new(registry: SharedRegistry, strategy: Strategy) -> Self {
        Self::with_outliers(registry, strategy, OutlierOptions::default())
    }

    /// A selector reading `registry` that ejects nodes as `outliers` says.
    pub fn with_outliers(registry: SharedRegistry, strategy: Strategy, outliers: OutlierOptions) -> Self {
        RegistrySelector {
            cache: RegistryCache::new(registry, Duration::from_secs(60)),
            strategy,
            next: AtomicUsize::new(0),
            outliers: Outliers::new(outliers),
            load: RwLock::new(HashMap::new()),
        }
    }

    /// The registry behind the selector.
    pub fn registry(&self) -> &SharedRegistry {
        self.cache.registry()
    }

    fn load_of(&self, addr: &str) -> Arc<Load> {
        if let Some(l) = self.load.read().unwrap_or_else(|e| e.into_inner()).get(addr) {
            return l.clone();
        }
        self.load.write().unwrap_or_else(|e| e.into_inner()).entry(addr.to_string()).or_default().clone()
    }

    fn least_loaded<'a>(&self, candidates: &[&'a Node]) -> &'a Node {
        let a = candidates[random_index(candidates.len())];
        if candidates.len() == 1 {
            return a;
        }
        let mut b = candidates[random_index(candidates.len())];
        if std::ptr::eq(a, b) {
            b = candidates[(candidates.iter().position(|n| std::ptr::eq(*n, a)).unwrap_or(0) + 1) % candidates.len()];
        }
        let (la, lb) = (self.load_of(&a.address), self.load_of(&b.address));
        let key = |l: &Load| (l.inflight.load(Ordering::Relaxed), l.ewma_us.load(Ordering::Relaxed));
        if key(&lb) < key(&la) {
            b
        } else {
            a
        }
    }
}

#[async_trait]
impl Selector for RegistrySelector {
    async fn select(&self, service: &str, filter: &Filter) -> Result<Node, Error> {
        let entry = self.cache.get(service).await?;
        let eligible = |c: &&cache::CachedNode| {
            filter.version.as_ref().is_none_or(|want| *want == c.version)
                && filter.labels.iter().all(|(k, val)| c.node.metadata.get(k) == Some(val))
                && filter.endpoint.as_ref().is_none_or(|ep| c.endpoints.contains(ep))
                && !filter.exclude.contains(&c.node.address)
        };
        let mut candidates: Vec<&Node> = entry
            .nodes
            .iter()
            .filter(eligible)
            .filter(|c| self.outliers.standing(&c.node.address) != Standing::Out)
            .map(|c| &c.node)
            .collect();
        if candidates.is_empty() {
            // Every node is out: trying one beats failing for sure.
            candidates = entry.nodes.iter().filter(eligible).map(|c| &c.node).collect();
        }
        if candidates.is_empty() {
            return Err(Error::unavailable(crate::error::CLIENT_ID, format!("service {service}: no node available")));
        }
        let node = match self.strategy {
            Strategy::Random => candidates[random_index(candidates.len())],
            Strategy::RoundRobin => candidates[self.next.fetch_add(1, Ordering::Relaxed) % candidates.len()],
            Strategy::LeastLoaded => {
                let n = self.least_loaded(&candidates);
                self.load_of(&n.address).inflight.fetch_add(1, Ordering::Relaxed);
                n
            }
        };
        if self.outliers.standing(&node.address) == Standing::Probation && !self.outliers.try_probe(&node.address) {
            // Another call probes it: this one goes to a node in good standing, if any.
            let fine: Vec<&Node> =
                candidates.iter().copied().filter(|n| self.outliers.standing(&n.address) == Standing::In).collect();
            if !fine.is_empty() {
                return Ok(fine[random_index(fine.len())].clone());
            }
        }
        Ok(node.clone())
    }

    fn mark(&self, service: &str, node: &Node, outcome: Outcome<'_>) {
        if self.strategy == Strategy::LeastLoaded {
            let load = self.load_of(&node.address);
            let _ = load.inflight.fetch_update(Ordering::Relaxed, Ordering::Relaxed, |n| n.checked_sub(1));
            let sample = outcome.elapsed.as_micros().min(u64::MAX as u128) as u64;
            let old = load.ewma_us.load(Ordering::Relaxed);
            let new = if old == 0 { sample } else { (old * 7 + sample) / 8 };
            load.ewma_us.store(new, Ordering::Relaxed);
        }
        self.outliers.record(service, &node.address, Verdict::of(outcome.result), outcome.elapsed);
    }

    fn name(&self) -> &'static str {
        match self.strategy {
            Strategy::Random => "random",
            Strategy::RoundRobin => "roundrobin",
            Strategy::LeastLoaded => "leastloaded",
        }
    }
}

/// A cheap random index below `n` (xorshift seeded once per thread; no system call per draw);
/// 0 when `n` is 0.
pub fn random_index(n: usize) -> usize {
    if n == 0 {
        return 0;
    }
    use std::cell::Cell;
    thread_local! {
        static STATE: Cell<u64> = Cell::new(
            (uuid::Uuid::new_v4().as_u128() as u64) | 1
        );
    }
    STATE.with(|s| {
        let mut x = s.get();
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        s.set(x);
        (x % n as u64) as usize
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::registry::{MemoryRegistry, RegisterOptions, Registry, Service};
    use std::time::Instant;

    async fn two_nodes() -> SharedRegistry {
        let r = Arc::new(MemoryRegistry::new());
        for (id, addr) in [("a", "127.0.0.1:1"), ("b", "127.0.0.1:2")] {
            let svc = Service {
                name: "s".into(),
                version: "latest".into(),
                nodes: vec![Node { id: id.into(), address: addr.into(), ..Default::default() }],
                ..Default::default()
            };
            r.register(&svc, RegisterOptions::default()).await.unwrap();
        }
        r
    }

    #[tokio::test]
    async fn round_robin_alternates_and_skips_failed() {
        let sel = RegistrySelector::new(two_nodes().await, Strategy::RoundRobin);
        let f = Filter::default();
        let a = sel.select("s", &f).await.unwrap().address;
        let b = sel.select("s", &f).await.unwrap().address;
        assert_ne!(a, b);
        assert_eq!(sel.select("s", &f).await.unwrap().address, a);
        let dead = Node { address: a.clone(), ..Default::default() };
        let refused = Error::unavailable("go.micro.client", "refused");
        sel.mark("s", &dead, Outcome { result: Err(&refused), elapsed: Duration::ZERO });
        for _ in 0..4 {
            assert_eq!(sel.select("s", &f).await.unwrap().address, b);
        }
        let only_a = Filter { exclude: vec![b.clone()], ..Default::default() };
        assert_eq!(sel.select("s", &only_a).await.unwrap().address, a, "a failed node beats none");
        assert_eq!(sel.select("nope", &f).await.unwrap_err().code, 404);
    }

    #[tokio::test]
    async fn least_loaded_prefers_idle_and_fast_nodes() {
        let sel = RegistrySelector::new(two_nodes().await, Strategy::LeastLoaded);
        let f = Filter::default();
        let busy = sel.select("s", &f).await.unwrap();
        // `busy` keeps a call in flight: every next pick goes to the other node.
        for _ in 0..10 {
            let n = sel.select("s", &f).await.unwrap();
            assert_ne!(n.address, busy.address);
            sel.mark("s", &n, Outcome { result: Ok(()), elapsed: Duration::from_millis(1) });
        }
        sel.mark("s", &busy, Outcome { result: Ok(()), elapsed: Duration::from_millis(500) });
        for _ in 0..10 {
            let n = sel.select("s", &f).await.unwrap();
            assert_ne!(n.address, busy.address, "the slow node loses ties");
            sel.mark("s", &n, Outcome { result: Ok(()), elapsed: Duration::from_millis(1) });
        }
    }

    #[tokio::test]
    async fn filters_by_version_label_and_endpoint_and_follows_the_watch() {
        let r = two_nodes().await;
        let v2 = Service {
            name: "s".into(),
            version: "2".into(),
            endpoints: vec![crate::registry::Endpoint { name: "S.New".into(), ..Default::default() }],
            nodes: vec![Node {
                id: "c".into(),
                address: "127.0.0.1:3".into(),
                metadata: [("zone".to_string(), "x".to_string())].into(),
            }],
            ..Default::default()
        };
        r.register(&v2, RegisterOptions::default()).await.unwrap();
        let sel = RegistrySelector::new(r.clone(), Strategy::Random);
        let only = |f: Filter| {
            let sel = &sel;
            async move { sel.select("s", &f).await.map(|n| n.address) }
        };
        assert_eq!(only(Filter { version: Some("2".into()), ..Default::default() }).await.unwrap(), "127.0.0.1:3");
        assert_eq!(
            only(Filter { labels: vec![("zone".into(), "x".into())], ..Default::default() }).await.unwrap(),
            "127.0.0.1:3"
        );
        assert_eq!(only(Filter { endpoint: Some("S.New".into()), ..Default::default() }).await.unwrap(), "127.0.0.1:3");
        r.deregister(&v2).await.unwrap();
        let deadline = Instant::now() + Duration::from_secs(5);
        while only(Filter { version: Some("2".into()), ..Default::default() }).await.is_ok() {
            assert!(Instant::now() < deadline, "the watch never removed the node");
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }
}
