//! Client-side load balancing: which node of a service gets the next call.
//!
//! [`RegistrySelector`] reads nodes through a small cache over the registry (serving the last
//! known nodes while the registry fails), filters them (version, node metadata, nodes already
//! tried by this call, nodes that recently refused connections), and lets a [`Strategy`] pick:
//! [`Strategy::Random`] (the default) or [`Strategy::RoundRobin`].

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use async_trait::async_trait;

use crate::registry::{Node, SharedRegistry};
use crate::Error;

/// How to choose among healthy nodes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Strategy {
    /// Uniformly at random.
    #[default]
    Random,
    /// In turn.
    RoundRobin,
}

impl std::str::FromStr for Strategy {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self, Error> {
        match s {
            "random" => Ok(Strategy::Random),
            "roundrobin" | "round_robin" => Ok(Strategy::RoundRobin),
            _ => Err(Error::bad_request(
                "go.micro.selector",
                format!("unknown selector \"{s}\" (valid: random, roundrobin)"),
            )),
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
    /// Not these addresses (already tried by this call).
    pub exclude: Vec<String>,
}

/// Picks the node for a call.
#[async_trait]
pub trait Selector: Send + Sync + 'static {
    /// A node of `service` that passes `filter`.
    async fn select(&self, service: &str, filter: &Filter) -> Result<Node, Error>;
    /// Reports how a call to `node` went, so failing nodes can be avoided.
    fn mark(&self, service: &str, node: &Node, result: Result<(), &Error>);
    /// The selector's name.
    fn name(&self) -> &'static str;
}

struct Entry {
    fetched: Instant,
    nodes: Arc<Vec<(String, Node)>>,
    next: AtomicUsize,
}

/// A selector over a registry, with a node cache and a short memory of failed nodes.
pub struct RegistrySelector {
    registry: SharedRegistry,
    strategy: Strategy,
    ttl: Duration,
    cache: RwLock<HashMap<String, Arc<Entry>>>,
    failed: RwLock<HashMap<String, Instant>>,
    backoff: Duration,
}

impl RegistrySelector {
    /// A selector reading `registry`.
    pub fn new(registry: SharedRegistry, strategy: Strategy) -> Self {
        RegistrySelector {
            registry,
            strategy,
            ttl: Duration::from_secs(1),
            cache: RwLock::new(HashMap::new()),
            failed: RwLock::new(HashMap::new()),
            backoff: Duration::from_secs(5),
        }
    }

    async fn entry(&self, service: &str) -> Result<Arc<Entry>, Error> {
        let cached = self
            .cache
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .get(service)
            .cloned();
        if let Some(e) = &cached {
            if e.fetched.elapsed() < self.ttl {
                return Ok(e.clone());
            }
        }
        match self.registry.get_service(service).await {
            Ok(records) => {
                let nodes = records
                    .into_iter()
                    .flat_map(|s| {
                        let version = s.version;
                        s.nodes.into_iter().map(move |n| (version.clone(), n))
                    })
                    .collect();
                let entry = Arc::new(Entry {
                    fetched: Instant::now(),
                    nodes: Arc::new(nodes),
                    next: AtomicUsize::new(
                        cached
                            .as_ref()
                            .map_or(0, |c| c.next.load(Ordering::Relaxed)),
                    ),
                });
                self.cache
                    .write()
                    .unwrap_or_else(|e| e.into_inner())
                    .insert(service.to_string(), entry.clone());
                Ok(entry)
            }
            Err(e) if e.code == 404 => {
                self.cache
                    .write()
                    .unwrap_or_else(|e| e.into_inner())
                    .remove(service);
                Err(e)
            }
            Err(e) => match cached {
                Some(stale) => {
                    tracing::warn!(service, error = %e.detail, "registry unreachable; using the last known nodes");
                    Ok(stale)
                }
                None => Err(e),
            },
        }
    }

    fn is_failed(&self, addr: &str) -> bool {
        self.failed
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .get(addr)
            .is_some_and(|until| *until > Instant::now())
    }
}

#[async_trait]
impl Selector for RegistrySelector {
    async fn select(&self, service: &str, filter: &Filter) -> Result<Node, Error> {
        let entry = self.entry(service).await?;
        let eligible = |(v, n): &&(String, Node)| {
            filter.version.as_ref().is_none_or(|want| want == v)
                && filter
                    .labels
                    .iter()
                    .all(|(k, val)| n.metadata.get(k) == Some(val))
                && !filter.exclude.contains(&n.address)
        };
        let mut candidates: Vec<&Node> = entry
            .nodes
            .iter()
            .filter(eligible)
            .filter(|(_, n)| !self.is_failed(&n.address))
            .map(|(_, n)| n)
            .collect();
        if candidates.is_empty() {
            // Every node failed recently: trying one beats failing for sure.
            candidates = entry
                .nodes
                .iter()
                .filter(eligible)
                .map(|(_, n)| n)
                .collect();
        }
        if candidates.is_empty() {
            return Err(Error::unavailable(
                "go.micro.client",
                format!("service {service}: no node available"),
            ));
        }
        let i = match self.strategy {
            Strategy::Random => fastrand(candidates.len()),
            Strategy::RoundRobin => entry.next.fetch_add(1, Ordering::Relaxed) % candidates.len(),
        };
        Ok(candidates[i].clone())
    }

    fn mark(&self, service: &str, node: &Node, result: Result<(), &Error>) {
        match result {
            Err(e) if e.code == 503 && e.id == "go.micro.client" => {
                self.failed
                    .write()
                    .unwrap_or_else(|e| e.into_inner())
                    .insert(node.address.clone(), Instant::now() + self.backoff);
                self.cache
                    .write()
                    .unwrap_or_else(|e| e.into_inner())
                    .remove(service);
            }
            Ok(()) if self.is_failed(&node.address) => {
                self.failed
                    .write()
                    .unwrap_or_else(|e| e.into_inner())
                    .remove(&node.address);
            }
            _ => {}
        }
    }

    fn name(&self) -> &'static str {
        match self.strategy {
            Strategy::Random => "random",
            Strategy::RoundRobin => "roundrobin",
        }
    }
}

/// A cheap random index below `n` (xorshift seeded per thread).
fn fastrand(n: usize) -> usize {
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

    async fn two_nodes() -> SharedRegistry {
        let r = Arc::new(MemoryRegistry::new());
        for (id, addr) in [("a", "127.0.0.1:1"), ("b", "127.0.0.1:2")] {
            let svc = Service {
                name: "s".into(),
                version: "latest".into(),
                nodes: vec![Node {
                    id: id.into(),
                    address: addr.into(),
                    ..Default::default()
                }],
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
        let dead = Node {
            address: a.clone(),
            ..Default::default()
        };
        sel.mark(
            "s",
            &dead,
            Err(&Error::unavailable("go.micro.client", "refused")),
        );
        for _ in 0..4 {
            assert_eq!(sel.select("s", &f).await.unwrap().address, b);
        }
        let only_a = Filter {
            exclude: vec![b.clone()],
            ..Default::default()
        };
        assert_eq!(
            sel.select("s", &only_a).await.unwrap().address,
            a,
            "a failed node beats none"
        );
        assert_eq!(sel.select("nope", &f).await.unwrap_err().code, 404);
    }
}
