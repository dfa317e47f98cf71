//! A watch-fed cache of the registry, so that choosing a node costs a read of memory.
//!
//! The first lookup of a service reads the registry; if the service exists, it starts a watch on
//! it and reads again (so no change between the read and the watch is missed), and watch events
//! keep the entry current from then on. Names that do not exist get neither an entry nor a watch:
//! the names a cache is asked about often come from strangers (gateway paths, proxy headers), and
//! each watch is an open stream to the registry. The cache holds at most [`MAX_ENTRIES`]
//! services; beyond that the one read longest ago is dropped with its watch. If the watch breaks (the registry went away), it is opened
//! again in the background, backing off from 100 ms to 5 s, and the entry is read again as soon as
//! it is, so changes made while the registry was away are not missed; until then the entry is read
//! again once it is older than the TTL. An entry with no nodes is always read again. While the
//! registry cannot be reached, the last known nodes are served (stale-if-error) and one warning is
//! logged per outage.

use std::collections::{BTreeSet, HashMap};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, RwLock, Weak};
use std::time::{Duration, Instant};

use super::{Action, Node, Service, SharedRegistry, Watcher};
use crate::Error;

/// One node as the selector sees it: its version and the endpoints that version serves.
#[derive(Debug, Clone)]
pub struct CachedNode {
    /// The node.
    pub node: Node,
    /// Its service version.
    pub version: String,
    /// Endpoint names of that version.
    pub endpoints: Arc<BTreeSet<String>>,
}

/// What the cache holds for one service.
#[derive(Debug)]
pub struct Entry {
    /// Every node, in a stable order.
    pub nodes: Vec<CachedNode>,
    fetched: Instant,
    watched: bool,
}

/// A broken watch is opened again after this long at first, then twice as long each time.
const REWATCH_FIRST: Duration = Duration::from_millis(100);
/// The longest wait between two attempts to open a broken watch again.
const REWATCH_MAX: Duration = Duration::from_secs(5);

/// The most services a cache holds (each with its watch).
pub const MAX_ENTRIES: usize = 1024;

/// The watch task of one service: whether its watch is open, and the task, to stop it.
struct Watching {
    alive: Arc<AtomicBool>,
    task: tokio::task::AbortHandle,
}

/// The cache.
pub struct RegistryCache {
    registry: SharedRegistry,
    ttl: Duration,
    entries: RwLock<HashMap<String, Arc<Entry>>>,
    watching: RwLock<HashMap<String, Watching>>,
    warned: AtomicBool,
    max_entries: usize,
}

fn flatten(records: Vec<Service>) -> Vec<CachedNode> {
    let mut out: Vec<CachedNode> = records
        .into_iter()
        .flat_map(|s| {
            let endpoints: Arc<BTreeSet<String>> = Arc::new(s.endpoints.iter().map(|e| e.name.clone()).collect());
            let version = s.version;
            s.nodes.into_iter().map(move |node| CachedNode {
                node,
                version: version.clone(),
                endpoints: endpoints.clone(),
            })
        })
        .collect();
    out.sort_by(|a, b| a.node.id.cmp(&b.node.id));
    out
}

impl RegistryCache {
    /// A cache over `registry`; entries without a live watch are re-read after `ttl`.
    pub fn new(registry: SharedRegistry, ttl: Duration) -> Arc<Self> {
        Arc::new(RegistryCache {
            registry,
            ttl,
            entries: RwLock::new(HashMap::new()),
            watching: RwLock::new(HashMap::new()),
            warned: AtomicBool::new(false),
            max_entries: MAX_ENTRIES,
        })
    }

    /// How many services have an open (or reopening) watch.
    pub fn watches(&self) -> usize {
        self.watching.read().unwrap_or_else(|e| e.into_inner()).len()
    }

    /// The registry behind the cache.
    pub fn registry(&self) -> &SharedRegistry {
        &self.registry
    }

    fn cached(&self, service: &str) -> Option<Arc<Entry>> {
        self.entries.read().unwrap_or_else(|e| e.into_inner()).get(service).cloned()
    }

    fn store(&self, service: &str, nodes: Vec<CachedNode>, watched: bool) -> Arc<Entry> {
        let entry = Arc::new(Entry { nodes, fetched: Instant::now(), watched });
        let evicted = {
            let mut entries = self.entries.write().unwrap_or_else(|e| e.into_inner());
            let evicted = if entries.len() >= self.max_entries && !entries.contains_key(service) {
                let oldest = entries.iter().min_by_key(|(_, e)| e.fetched).map(|(k, _)| k.clone());
                oldest.inspect(|k| {
                    entries.remove(k);
                })
            } else {
                None
            };
            entries.insert(service.to_string(), entry.clone());
            evicted
        };
        if let Some(name) = evicted {
            self.unwatch(&name);
        }
        entry
    }

    /// Stops the watch of `service`, if it has one.
    fn unwatch(&self, service: &str) {
        if let Some(w) = self.watching.write().unwrap_or_else(|e| e.into_inner()).remove(service) {
            w.task.abort();
        }
    }

    /// Forgets a service (its next lookup reads the registry).
    pub fn invalidate(&self, service: &str) {
        self.entries.write().unwrap_or_else(|e| e.into_inner()).remove(service);
    }

    /// The nodes of `service`.
    pub async fn get(self: &Arc<Self>, service: &str) -> Result<Arc<Entry>, Error> {
        let cached = self.cached(service);
        if let Some(e) = &cached {
            // An empty entry is read again: a node that registered a moment ago may not have
            // reached the watch yet.
            let fresh = e.watched && self.is_watching(service) || e.fetched.elapsed() < self.ttl;
            if fresh && !e.nodes.is_empty() {
                return Ok(e.clone());
            }
        }
        let watched = match self.watch_state(service) {
            Some(alive) => alive.load(Ordering::Acquire),
            None => {
                // Only a service that exists gets a watch; then it is read again, so no change
                // between the first read and the watch is missed.
                match self.registry.get_service(service).await {
                    Ok(_) => {}
                    Err(e) if e.code == 404 => {
                        self.invalidate(service);
                        return Err(e);
                    }
                    Err(e) => return cached.ok_or(e),
                }
                self.ensure_watch(service).await
            }
        };
        match self.registry.get_service(service).await {
            Ok(records) => {
                self.warned.store(false, Ordering::Relaxed);
                Ok(self.store(service, flatten(records), watched))
            }
            Err(e) if e.code == 404 => {
                self.invalidate(service);
                self.unwatch(service);
                Err(e)
            }
            Err(e) => match cached {
                Some(stale) => {
                    if !self.warned.swap(true, Ordering::Relaxed) {
                        tracing::warn!(service, error = %e.detail, "registry unreachable; serving the last known nodes");
                    }
                    Ok(stale)
                }
                None => Err(e),
            },
        }
    }

    /// Whether the watch on `service` is open (not broken, and not being opened again).
    fn is_watching(&self, service: &str) -> bool {
        self.watch_state(service).is_some_and(|alive| alive.load(Ordering::Acquire))
    }

    /// The state of the watch task of `service`, if one runs.
    fn watch_state(&self, service: &str) -> Option<Arc<AtomicBool>> {
        self.watching.read().unwrap_or_else(|e| e.into_inner()).get(service).map(|w| w.alive.clone())
    }

    /// Starts a watch on `service` unless a watch task runs (open, or being opened again);
    /// returns whether a watch is open now.
    async fn ensure_watch(self: &Arc<Self>, service: &str) -> bool {
        if let Some(alive) = self.watch_state(service) {
            return alive.load(Ordering::Acquire);
        }
        let Ok(watcher) = self.registry.watch(Some(service)).await else {
            return false;
        };
        let alive = Arc::new(AtomicBool::new(true));
        let mut watching = self.watching.write().unwrap_or_else(|e| e.into_inner());
        if let Some(other) = watching.get(service) {
            return other.alive.load(Ordering::Acquire);
        }
        let task = tokio::spawn(follow(Arc::downgrade(self), service.to_string(), watcher, alive.clone()));
        watching.insert(service.to_string(), Watching { alive, task: task.abort_handle() });
        true
    }

    fn apply(&self, service: &str, action: Action, record: Service) {
        let Some(current) = self.cached(service) else {
            return;
        };
        let changed: Vec<CachedNode> = flatten(vec![record]);
        let mut nodes: Vec<CachedNode> =
            current.nodes.iter().filter(|n| !changed.iter().any(|c| c.node.id == n.node.id)).cloned().collect();
        if action != Action::Delete {
            nodes.extend(changed);
        }
        nodes.sort_by(|a, b| a.node.id.cmp(&b.node.id));
        self.store(service, nodes, true);
    }
}

/// Applies the watch's events to the cache for as long as the cache lives; when the watch breaks,
/// opens it again with back-off and reads the service again, since events were missed meanwhile.
async fn follow(cache: Weak<RegistryCache>, service: String, mut watcher: Watcher, alive: Arc<AtomicBool>) {
    loop {
        while let Some(event) = watcher.next().await {
            let Some(cache) = cache.upgrade() else { return };
            match event {
                Ok(ev) => cache.apply(&service, ev.action, ev.service),
                Err(e) => {
                    tracing::debug!(service, error = %e.detail, "registry watch broke; opening it again");
                    break;
                }
            }
        }
        alive.store(false, Ordering::Release);
        let mut delay = REWATCH_FIRST;
        watcher = loop {
            tokio::time::sleep(delay).await;
            delay = (delay * 2).min(REWATCH_MAX);
            let Some(cache) = cache.upgrade() else { return };
            let Ok(watcher) = cache.registry.watch(Some(&service)).await else { continue };
            match cache.registry.get_service(&service).await {
                Ok(records) => cache.store(&service, flatten(records), true),
                Err(e) if e.code == 404 => cache.store(&service, Vec::new(), true),
                Err(_) => continue,
            };
            cache.warned.store(false, Ordering::Relaxed);
            break watcher;
        };
        alive.store(true, Ordering::Release);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::registry::{MemoryRegistry, RegisterOptions};

    fn svc(id: &str) -> Service {
        Service {
            name: "s".into(),
            version: "latest".into(),
            nodes: vec![Node { id: id.into(), address: format!("127.0.0.1:{}", id.len()), ..Default::default() }],
            ..Default::default()
        }
    }

    async fn ids(cache: &Arc<RegistryCache>) -> Vec<String> {
        cache.get("s").await.map(|e| e.nodes.iter().map(|n| n.node.id.clone()).collect()).unwrap_or_default()
    }

    #[tokio::test]
    async fn only_services_that_exist_are_watched_and_the_cache_is_capped() {
        let registry: SharedRegistry = Arc::new(MemoryRegistry::new());
        let cache = RegistryCache::new(registry.clone(), Duration::from_secs(60));
        for i in 0..100 {
            assert_eq!(cache.get(&format!("nobody-{i}")).await.unwrap_err().code, 404);
        }
        assert_eq!(cache.watches(), 0, "unknown names opened watches");
        let capped = Arc::new(RegistryCache {
            max_entries: 3,
            ..Arc::try_unwrap(RegistryCache::new(registry.clone(), Duration::from_secs(60))).ok().unwrap()
        });
        for i in 0..5 {
            let mut s = svc(&"x".repeat(i + 1));
            s.name = format!("s{i}");
            registry.register(&s, RegisterOptions::default()).await.unwrap();
            capped.get(&s.name).await.unwrap();
        }
        assert_eq!(capped.watches(), 3, "watches beyond the cap were not dropped");
        assert_eq!(capped.entries.read().unwrap().len(), 3);
        capped.get("s0").await.expect("an evicted service is read again");
    }

    #[tokio::test]
    async fn follows_the_registry_through_empty_and_back() {
        let registry: SharedRegistry = Arc::new(MemoryRegistry::new());
        let cache = RegistryCache::new(registry.clone(), Duration::from_secs(60));
        registry.register(&svc("a"), RegisterOptions::default()).await.unwrap();
        assert_eq!(ids(&cache).await, ["a"]);
        registry.deregister(&svc("a")).await.unwrap();
        registry.register(&svc("bb"), RegisterOptions::default()).await.unwrap();
        let deadline = Instant::now() + Duration::from_secs(5);
        while ids(&cache).await != ["bb"] {
            assert!(Instant::now() < deadline, "cache holds {:?}", ids(&cache).await);
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }
}
