//! The in-memory registry: one process, no network. For tests and single-process programs.
//!
//! Nodes registered with a TTL expire when not renewed in time; expired nodes are dropped on the
//! next read and reported to watchers as deletions.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Instant;

use async_trait::async_trait;

use super::{not_found, Action, Event, Node, RegisterOptions, Registry, Service, Watcher};
use crate::Error;

#[derive(Default)]
struct Inner {
    /// name → version → (record without nodes, nodes with their expiry)
    services: HashMap<String, HashMap<String, (Service, Vec<(Node, Option<Instant>)>)>>,
    watchers: Vec<super::WatchSender>,
}

/// A registry held in this process's memory.
#[derive(Default)]
pub struct MemoryRegistry {
    inner: Mutex<Inner>,
}

impl MemoryRegistry {
    /// An empty registry.
    pub fn new() -> Self {
        Self::default()
    }
}

impl Inner {
    fn notify(&mut self, action: Action, service: &Service) {
        self.watchers.retain(|(filter, tx)| {
            if filter.as_deref().is_some_and(|f| f != service.name) {
                return !tx.is_closed();
            }
            tx.send(Ok(Event { action, service: service.clone() })).is_ok()
        });
    }

    fn expire(&mut self) {
        let now = Instant::now();
        let mut gone = Vec::new();
        for versions in self.services.values_mut() {
            for (record, nodes) in versions.values_mut() {
                let before = nodes.len();
                let mut expired = Vec::new();
                nodes.retain(|(n, exp)| {
                    let keep = exp.is_none_or(|e| e > now);
                    if !keep {
                        expired.push(n.clone());
                    }
                    keep
                });
                if nodes.len() != before {
                    gone.push(Service { nodes: expired, ..record.clone() });
                }
            }
            versions.retain(|_, (_, nodes)| !nodes.is_empty());
        }
        self.services.retain(|_, v| !v.is_empty());
        for svc in gone {
            self.notify(Action::Delete, &svc);
        }
    }
}

#[async_trait]
impl Registry for MemoryRegistry {
    async fn register(&self, service: &Service, opts: RegisterOptions) -> Result<(), Error> {
        let mut inner = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        inner.expire();
        let expiry = (!opts.ttl.is_zero()).then(|| Instant::now() + opts.ttl);
        let versions = inner.services.entry(service.name.clone()).or_default();
        let (record, nodes) = versions
            .entry(service.version.clone())
            .or_insert_with(|| (Service { nodes: vec![], ..service.clone() }, vec![]));
        record.endpoints.clone_from(&service.endpoints);
        record.metadata.clone_from(&service.metadata);
        let mut action = Action::Update;
        for node in &service.nodes {
            match nodes.iter_mut().find(|(n, _)| n.id == node.id) {
                Some(slot) => *slot = (node.clone(), expiry),
                None => {
                    nodes.push((node.clone(), expiry));
                    action = Action::Create;
                }
            }
        }
        let svc = service.clone();
        inner.notify(action, &svc);
        Ok(())
    }

    async fn deregister(&self, service: &Service) -> Result<(), Error> {
        let mut inner = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        let mut removed = false;
        if let Some(versions) = inner.services.get_mut(&service.name) {
            if let Some((_, nodes)) = versions.get_mut(&service.version) {
                let before = nodes.len();
                nodes.retain(|(n, _)| !service.nodes.iter().any(|d| d.id == n.id));
                removed = nodes.len() != before;
                if nodes.is_empty() {
                    versions.remove(&service.version);
                }
            }
            if versions.is_empty() {
                inner.services.remove(&service.name);
            }
        }
        if removed {
            inner.notify(Action::Delete, service);
        }
        Ok(())
    }

    async fn get_service(&self, name: &str) -> Result<Vec<Service>, Error> {
        let mut inner = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        inner.expire();
        let versions = inner.services.get(name).ok_or_else(|| not_found(name))?;
        let mut out: Vec<Service> = versions
            .values()
            .map(|(record, nodes)| Service { nodes: nodes.iter().map(|(n, _)| n.clone()).collect(), ..record.clone() })
            .collect();
        out.sort_by(|a, b| a.version.cmp(&b.version));
        Ok(out)
    }

    async fn list_services(&self) -> Result<Vec<Service>, Error> {
        let mut inner = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        inner.expire();
        let mut out: Vec<Service> = inner
            .services
            .iter()
            .flat_map(|(name, versions)| {
                versions.keys().map(move |v| Service { name: name.clone(), version: v.clone(), ..Default::default() })
            })
            .collect();
        out.sort_by(|a, b| (&a.name, &a.version).cmp(&(&b.name, &b.version)));
        Ok(out)
    }

    async fn watch(&self, service: Option<&str>) -> Result<Watcher, Error> {
        let (tx, watcher) = Watcher::channel();
        let mut inner = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        inner.watchers.push((service.map(str::to_string), tx));
        Ok(watcher)
    }

    fn name(&self) -> &'static str {
        "memory"
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    fn svc(node: &str) -> Service {
        Service {
            name: "greeter".into(),
            version: "latest".into(),
            nodes: vec![Node { id: node.into(), address: "127.0.0.1:1".into(), ..Default::default() }],
            ..Default::default()
        }
    }

    #[tokio::test]
    async fn register_watch_deregister_and_expire() {
        let r = MemoryRegistry::new();
        let mut w = r.watch(Some("greeter")).await.unwrap();
        r.register(&svc("a"), RegisterOptions::default()).await.unwrap();
        r.register(&svc("b"), RegisterOptions { ttl: Duration::from_millis(50) }).await.unwrap();
        assert_eq!(r.get_service("greeter").await.unwrap()[0].nodes.len(), 2);
        assert_eq!(w.next().await.unwrap().unwrap().action, Action::Create);
        assert_eq!(w.next().await.unwrap().unwrap().action, Action::Create);
        r.deregister(&svc("a")).await.unwrap();
        let ev = w.next().await.unwrap().unwrap();
        assert_eq!((ev.action, ev.service.nodes[0].id.as_str()), (Action::Delete, "a"));
        let deadline = Instant::now() + Duration::from_secs(5);
        while r.get_service("greeter").await.is_ok() {
            assert!(Instant::now() < deadline, "node b never expired");
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        assert_eq!(w.next().await.unwrap().unwrap().action, Action::Delete);
        assert_eq!(r.get_service("greeter").await.unwrap_err().code, 404);
    }
}
