//! The mDNS registry, the default: zero dependencies, discovery on this host out of the box.
//!
//! Each node is one DNS-SD instance of type `_micro._tcp.local.` whose TXT record carries the
//! node's full service record (name, version, metadata, endpoints with field trees, node address
//! and metadata): JSON, deflated, split into 250-byte TXT entries (`r0`, `r1`, ...), so records far
//! larger than one TXT entry survive. `ttl` and `seq` entries let browsers expire nodes that stop
//! re-registering (a killed process) after the registration TTL, not after mDNS's own caching.
//!
//! **Scope.** By default nothing leaves this host: the daemon answers and asks on the loopback
//! interface only. `MICRO_MDNS_INTERFACES=all` (or a comma list of interface names) opens it to
//! the LAN. mdns-sd joins the mDNS multicast group on every interface when its daemon starts;
//! records are only sent on the interfaces in scope.
//!
//! **Lifetime.** A record lives as long as the process that announces it: it is withdrawn (a
//! goodbye packet) when deregistered or when the process ends, and only the process that
//! announced a node can withdraw it (`deregister` of another process's node is an error).
//!
//! **Trust.** Anyone in scope can announce records, so what is heard is checked before it is
//! believed: the node's address must agree with the record's own SRV port and A/AAAA addresses,
//! and be on loopback in the host-only scope (the default), so a record cannot point callers off
//! this host (on a LAN scope the A records are the announcer's word too: a LAN is as trusted as
//! its members); what is heard under this process's own instance names is ignored; a TTL of 0 (never expire) or beyond an hour counts as an hour; once a service has been
//! heard with TLS (`secure=true`), its plaintext nodes are ignored, so a record cannot downgrade
//! callers; and at most [`MAX_NODES`] records of other processes are held.
//!
//! A process that just started has heard nothing yet, so reads wait for the answers: a listing
//! waits the full warm-up (1.2 s, since a node announced in the last second answers a browser
//! only at the one-second mark), a lookup of one service returns as soon as it is found and
//! answers stop coming (250 ms at the least). To be found at once, a fresh process also sends
//! one-shot queries on loopback, which responders answer by unicast without delay
//! ([`oneshot`]). Long-running processes read from memory.

use std::collections::{BTreeMap, HashMap};
use std::net::IpAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use mdns_sd::{IfKind, ResolvedService, ServiceDaemon, ServiceEvent, ServiceInfo, TxtProperty, UnregisterStatus};
use tokio::sync::Notify;

mod oneshot;

use super::{not_found, Action, Event, RegisterOptions, Registry, Service, Watcher};
use crate::Error;

/// The DNS-SD service type of micro nodes.
pub const SERVICE_TYPE: &str = "_micro._tcp.local.";

const CHUNK: usize = 250;
/// The largest record accepted, inflated (and the most its deflated chunks may add up to).
pub(crate) const MAX_RECORD: usize = 1 << 20;
/// A responder repeats a record at most once a second (RFC 6762 §6), so a node that registered
/// just before we asked answers within about a second: reads wait at most this long.
const MAX_WARMUP: Duration = Duration::from_millis(1200);
/// A lookup that found its service returns once no answers arrived for [`QUIET`], but not
/// before this.
const MIN_WARMUP: Duration = Duration::from_millis(250);
const QUIET: Duration = Duration::from_millis(150);
/// The most records of other processes held at once; more are ignored until some expire.
pub const MAX_NODES: usize = 4096;
/// The longest a record of another process lives without being heard again (also the life of
/// one that asks never to expire).
pub const MAX_TTL: Duration = Duration::from_secs(3600);

fn err(detail: impl std::fmt::Display) -> Error {
    Error::unavailable(super::ID, format!("mdns: {detail}"))
}

/// TXT entries that carry `record` (one node), its TTL and a sequence number.
pub fn encode_txt(record: &Service, ttl: Duration, seq: u64) -> Vec<TxtProperty> {
    let json = serde_json::to_vec(record).unwrap_or_default();
    let packed = miniz_oxide::deflate::compress_to_vec_zlib(&json, 8);
    let chunks: Vec<&[u8]> = packed.chunks(CHUNK).collect();
    let mut props: Vec<TxtProperty> = vec![
        ("v", "1").into(),
        ("ttl", ttl.as_secs().to_string()).into(),
        ("seq", seq.to_string()).into(),
        ("n", chunks.len().to_string()).into(),
    ];
    for (i, c) in chunks.into_iter().enumerate() {
        props.push((format!("r{i}"), c).into());
    }
    props
}

/// The record and TTL carried by TXT entries; a clear error for anything malformed.
pub fn decode_txt<'a>(get: impl Fn(&str) -> Option<&'a [u8]>) -> Result<(Service, Duration), Error> {
    let text = |k: &str| get(k).and_then(|v| std::str::from_utf8(v).ok());
    if text("v") != Some("1") {
        return Err(err("not a micro record (missing v=1)"));
    }
    let n: usize = text("n").and_then(|n| n.parse().ok()).ok_or_else(|| err("record without a chunk count"))?;
    if n == 0 || n.checked_mul(CHUNK).is_none_or(|total| total > MAX_RECORD) {
        return Err(err(format!("record with {n} chunks")));
    }
    let mut packed = Vec::with_capacity(n * CHUNK);
    for i in 0..n {
        packed.extend_from_slice(get(&format!("r{i}")).ok_or_else(|| err(format!("record chunk r{i} is missing")))?);
    }
    let json = miniz_oxide::inflate::decompress_to_vec_zlib_with_limit(&packed, MAX_RECORD)
        .map_err(|e| err(format!("record does not inflate: {e:?}")))?;
    let service: Service = serde_json::from_slice(&json).map_err(|e| err(format!("record is not valid JSON: {e}")))?;
    if service.name.is_empty() || service.nodes.len() != 1 {
        return Err(err("record must name a service and hold exactly one node"));
    }
    let ttl = Duration::from_secs(text("ttl").and_then(|t| t.parse().ok()).unwrap_or(0));
    Ok((service, ttl))
}

/// The DNS-SD instance name of a node of `service` (at most 63 bytes). One process may hold
/// nodes of several records (its service and its `topic:` subscriptions), so the service name is
/// part of it unless the node id already starts with it.
fn instance_for(service: &str, node_id: &str) -> String {
    if node_id.starts_with(service) {
        instance_name(node_id)
    } else {
        instance_name(&format!("{service}:{node_id}"))
    }
}

/// A full name as the daemon reports resolved and removed services: without the escapes it adds
/// to dots inside the instance label.
fn unescape(fullname: &str) -> String {
    fullname.replace("\\.", ".")
}

/// A DNS-SD instance name (at most 63 bytes).
fn instance_name(node_id: &str) -> String {
    if node_id.len() <= 63 && node_id.is_ascii() {
        return node_id.to_string();
    }
    let hash = node_id.bytes().fold(0xcbf29ce484222325u64, |h, b| (h ^ b as u64).wrapping_mul(0x100000001b3));
    let prefix: String = node_id.chars().filter(char::is_ascii).take(40).collect();
    format!("{prefix}-{hash:016x}")
}

struct Entry {
    service: Service,
    seen: Instant,
    ttl: Duration,
}

impl Entry {
    fn is_secure(&self) -> bool {
        self.service.nodes.iter().all(|n| n.metadata.get(crate::transport::tls::SECURE).is_some_and(|v| v == "true"))
    }
}

#[derive(Default)]
struct State {
    nodes: HashMap<String, Entry>,
    /// Services heard with TLS nodes: their plaintext nodes are not believed.
    secure: std::collections::HashSet<String>,
    /// Whether records were refused for the cap (warned once).
    full: bool,
    /// Instances already warned about (each lie is logged once, not at every announcement).
    distrusted: std::collections::HashSet<String>,
    /// (Service, node id) → the daemon's full name of the nodes this process registered (the
    /// daemon escapes the dots of `go.micro.srv.x`; what it resolves and removes is unescaped).
    /// Keyed by the service too: the HTTP broker registers a service's own node under each of its
    /// topics, and withdrawing those must not forget the service's record.
    registered: HashMap<(String, String), String>,
    watchers: Vec<super::WatchSender>,
    last_event: Option<Instant>,
    seq: u64,
}

impl State {
    fn notify(&mut self, action: Action, service: &Service) {
        self.watchers.retain(|(filter, tx)| {
            if filter.as_deref().is_some_and(|f| f != service.name) {
                return !tx.is_closed();
            }
            tx.send(Ok(Event { action, service: service.clone() })).is_ok()
        });
    }

    fn upsert(&mut self, fullname: String, service: Service, ttl: Duration) {
        let fullname = fullname.to_lowercase();
        let action = match self.nodes.get(&fullname) {
            Some(e) if e.service == service => None,
            Some(_) => Some(Action::Update),
            None => Some(Action::Create),
        };
        self.nodes.insert(fullname, Entry { service: service.clone(), seen: Instant::now(), ttl });
        if let Some(action) = action {
            self.notify(action, &service);
        }
        self.last_event = Some(Instant::now());
    }

    fn remove(&mut self, fullname: &str) {
        if let Some(e) = self.nodes.remove(&fullname.to_lowercase()) {
            self.notify(Action::Delete, &e.service);
        }
        self.last_event = Some(Instant::now());
    }

    /// Takes in a record heard from another process, unless it would downgrade its service to
    /// plaintext or the cap is reached.
    fn heard(&mut self, fullname: String, service: Service, ttl: Duration) {
        let is_secure = service.nodes[0].metadata.get(crate::transport::tls::SECURE).is_some_and(|v| v == "true");
        if is_secure {
            if self.secure.len() < MAX_NODES && self.secure.insert(service.name.clone()) {
                let plaintext: Vec<String> = self
                    .nodes
                    .iter()
                    .filter(|(_, e)| e.service.name == service.name && !e.is_secure())
                    .map(|(k, _)| k.clone())
                    .collect();
                for k in plaintext {
                    self.remove(&k);
                }
            }
        } else if self.secure.contains(&service.name) {
            tracing::warn!(service = %service.name, node = %service.nodes[0].id, "ignoring a plaintext mDNS node of a service heard with TLS");
            return;
        }
        let known = self.nodes.contains_key(&fullname.to_lowercase());
        if !known && self.nodes.len() - self.registered.len().min(self.nodes.len()) >= MAX_NODES {
            if !std::mem::replace(&mut self.full, true) {
                tracing::warn!("holding {MAX_NODES} mDNS records; ignoring more until some expire");
            }
            return;
        }
        let ttl = if ttl.is_zero() { MAX_TTL } else { ttl.clamp(Duration::from_secs(1), MAX_TTL) };
        self.upsert(fullname, service, ttl);
    }

    fn expire(&mut self) {
        let now = Instant::now();
        // This process's own nodes live until it deregisters them.
        let own: std::collections::HashSet<String> =
            self.registered.values().map(|n| unescape(n).to_lowercase()).collect();
        let dead: Vec<String> = self
            .nodes
            .iter()
            .filter(|(k, e)| !own.contains(*k) && !e.ttl.is_zero() && now.saturating_duration_since(e.seen) > e.ttl)
            .map(|(k, _)| k.clone())
            .collect();
        for k in dead {
            self.remove(&k);
        }
        if self.full && self.nodes.len() < MAX_NODES {
            self.full = false;
        }
    }
}

struct Inner {
    daemon: ServiceDaemon,
    state: Mutex<State>,
    changed: Notify,
    started: Instant,
    /// Whether mDNS stays on loopback (the default scope): nodes heard must be on loopback too.
    host_only: bool,
}

/// The mDNS registry.
pub struct MdnsRegistry {
    inner: Arc<Inner>,
}

/// Which interfaces mDNS uses, from `MICRO_MDNS_INTERFACES`: loopback only unless set.
/// Returns whether the scope is this host only.
fn scope(daemon: &ServiceDaemon, setting: Option<&str>) -> Result<bool, Error> {
    match setting.map(str::trim) {
        Some("all") => Ok(false),
        None | Some("") | Some("lo") | Some("loopback") => {
            daemon.disable_interface(IfKind::All).map_err(err)?;
            daemon.enable_interface(vec![IfKind::LoopbackV4, IfKind::LoopbackV6]).map_err(err)?;
            Ok(true)
        }
        Some(list) => {
            daemon.disable_interface(IfKind::All).map_err(err)?;
            let mut kinds = vec![IfKind::LoopbackV4, IfKind::LoopbackV6];
            kinds.extend(list.split(',').map(|n| IfKind::Name(n.trim().to_string())));
            daemon.enable_interface(kinds).map_err(err)?;
            Ok(false)
        }
    }
}

/// An mDNS daemon on loopback only, as the registry runs in its default scope (for programs and
/// tests that announce records of their own without leaving this host).
pub fn loopback_daemon() -> Result<ServiceDaemon, Error> {
    let daemon = ServiceDaemon::new().map_err(err)?;
    scope(&daemon, None)?;
    Ok(daemon)
}

/// Why a node heard in a record must not be believed: its address disagrees with the record's
/// SRV port or A/AAAA addresses, or is not on loopback when mDNS stays on this host. An address
/// that is no `host:port` (a NATS subject) is taken only from a node that says it uses NATS.
pub fn distrust(node: &super::Node, port: u16, addresses: &[IpAddr], host_only: bool) -> Option<String> {
    let Some((host, p)) = node.address.rsplit_once(':') else {
        let nats = node.metadata.get("transport").is_some_and(|t| t == "nats");
        return (!nats).then(|| format!("address {:?} is not host:port", node.address));
    };
    if p.parse::<u16>().ok() != Some(port) {
        return Some(format!("address {} does not match the record's port {port}", node.address));
    }
    let Ok(ip) = host.trim_matches(['[', ']']).parse::<IpAddr>() else {
        return Some(format!("address {} names a host, not an IP address", node.address));
    };
    if !addresses.contains(&ip) {
        return Some(format!("address {} is not among the record's addresses {addresses:?}", node.address));
    }
    if host_only && !ip.is_loopback() {
        return Some(format!("address {} is not on loopback, and mDNS stays on this host", node.address));
    }
    None
}

impl MdnsRegistry {
    /// Starts an mDNS daemon scoped by `MICRO_MDNS_INTERFACES` and begins browsing.
    pub fn new() -> Result<Self, Error> {
        let daemon = ServiceDaemon::new().map_err(err)?;
        let host_only = scope(&daemon, std::env::var("MICRO_MDNS_INTERFACES").ok().as_deref())?;
        let _ = daemon.set_max_packet_size(vec![IfKind::LoopbackV4, IfKind::LoopbackV6], 8952);
        let events = daemon.browse(SERVICE_TYPE).map_err(err)?;
        let inner = Arc::new(Inner {
            daemon,
            state: Mutex::new(State::default()),
            changed: Notify::new(),
            started: Instant::now(),
            host_only,
        });
        let weak = Arc::downgrade(&inner);
        std::thread::Builder::new()
            .name("micro-mdns-browse".into())
            .spawn(move || {
                loop {
                    let event = events.recv_timeout(Duration::from_secs(1));
                    let Some(inner) = weak.upgrade() else { return };
                    match event {
                        Ok(event) => inner.handle(event),
                        // Nodes that stopped renewing expire even when nobody reads.
                        Err(mdns_sd::RecvTimeoutError::Timeout) => {
                            inner.lock().expire();
                            inner.changed.notify_waiters();
                        }
                        Err(_) => return,
                    }
                }
            })
            .map_err(err)?;
        // A one-shot query for what already runs on this host, answered at once (see
        // `oneshot`); what starts later announces itself to the browser above.
        let weak = Arc::downgrade(&inner);
        let until = inner.started + MAX_WARMUP;
        let _ = std::thread::Builder::new().name("micro-mdns-ask".into()).spawn(move || {
            let asked = oneshot::ask(SERVICE_TYPE, until, |instance| match weak.upgrade() {
                Some(inner) => {
                    inner.answered(&instance);
                    std::ops::ControlFlow::Continue(())
                }
                None => std::ops::ControlFlow::Break(()),
            });
            if let Err(e) = asked {
                tracing::debug!(error = %e, "the one-shot mDNS query failed; browsing alone finds services");
            }
        });
        Ok(MdnsRegistry { inner })
    }
}

impl Inner {
    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn handle(&self, event: ServiceEvent) {
        match event {
            ServiceEvent::ServiceResolved(resolved) => self.resolved(&resolved),
            ServiceEvent::ServiceRemoved(_, fullname) => self.lock().remove(&fullname),
            _ => return,
        }
        self.changed.notify_waiters();
    }

    fn resolved(&self, r: &ResolvedService) {
        let props = r.get_properties();
        let addresses: Vec<IpAddr> = r.get_addresses().iter().map(|a| a.to_ip_addr()).collect();
        let get = |k: &str| props.get_property_val(k).flatten();
        self.take_in(unescape(r.get_fullname()), r.get_port(), &addresses, get);
    }

    /// An instance answering a one-shot query, taken in as a resolved one is (one without
    /// addresses is left to browsing, which resolves them).
    fn answered(&self, i: &oneshot::Instance) {
        if i.addresses.is_empty() {
            return;
        }
        self.take_in(i.fullname.clone(), i.port, &i.addresses, |k| i.get(k));
        self.changed.notify_waiters();
    }

    /// Believes what an instance's records say (see the module doc), or logs why not.
    fn take_in<'a>(&self, fullname: String, port: u16, addresses: &[IpAddr], get: impl Fn(&str) -> Option<&'a [u8]>) {
        let (service, ttl) = match decode_txt(get) {
            Ok(decoded) => decoded,
            Err(e) => return tracing::debug!(instance = %fullname, error = %e.detail, "ignoring an mDNS record"),
        };
        let mut state = self.lock();
        // This process's own records were taken in when registered; what is heard under their
        // names (our own echo, or another process claiming them) changes nothing.
        // Compared as the node map keys them (`to_lowercase`), so no other spelling of one of
        // our names (a Unicode case variant) passes as another's.
        let key = fullname.to_lowercase();
        if state.registered.values().any(|n| unescape(n).to_lowercase() == key) {
            return;
        }
        if let Some(why) = distrust(&service.nodes[0], port, addresses, self.host_only) {
            if state.distrusted.len() < MAX_NODES && state.distrusted.insert(fullname.clone()) {
                tracing::warn!(service = %service.name, instance = %fullname, "ignoring an mDNS record: {why}");
            }
            return;
        }
        state.heard(fullname, service, ttl);
    }

    /// Waits until this process has heard what there is to hear (see the module doc).
    async fn settle(&self, want: Option<&str>) {
        loop {
            let notified = self.changed.notified();
            let now = Instant::now();
            let age = now - self.started;
            if age >= MAX_WARMUP {
                return;
            }
            {
                let state = self.lock();
                let heard = state.last_event.is_some_and(|t| now - t >= QUIET);
                // A listing must include nodes whose answer the RFC's once-a-second rule delays,
                // so only a lookup of one service may return early.
                let found = want.is_some_and(|w| state.nodes.values().any(|e| e.service.name == w));
                if found && heard && age >= MIN_WARMUP {
                    return;
                }
            }
            let _ = tokio::time::timeout(Duration::from_millis(50), notified).await;
        }
    }
}

#[async_trait]
impl Registry for MdnsRegistry {
    async fn register(&self, service: &Service, opts: RegisterOptions) -> Result<(), Error> {
        for node in &service.nodes {
            let record = Service { nodes: vec![node.clone()], ..service.clone() };
            // The TXT record carries the real address; SRV and A only need to be well formed, so
            // addresses that are not host:port (a NATS subject) travel with a placeholder.
            let (ip, port) = node
                .address
                .rsplit_once(':')
                .and_then(|(h, p)| Some((h.trim_matches(['[', ']']).parse::<IpAddr>().ok(), p.parse::<u16>().ok()?)))
                .map(|(ip, port)| (ip.filter(|ip| !ip.is_unspecified()).unwrap_or(IpAddr::from([127, 0, 0, 1])), port))
                .unwrap_or((IpAddr::from([127, 0, 0, 1]), 9));
            let seq = {
                let mut state = self.inner.lock();
                state.seq += 1;
                state.seq
            };
            let instance = instance_for(&service.name, &node.id);
            let info = ServiceInfo::new(
                SERVICE_TYPE,
                &instance,
                &format!("{instance}.local."),
                ip,
                port,
                encode_txt(&record, opts.ttl, seq),
            )
            .map_err(err)?;
            // Instance names carry the node's UUID, so the conflict probing that would delay the
            // first answer by most of a second is skipped.
            let mut info = info;
            info.set_requires_probe(false);
            let daemon_name = info.get_fullname().to_string();
            self.inner.daemon.register(info).map_err(err)?;
            let mut state = self.inner.lock();
            state.upsert(unescape(&daemon_name), record, opts.ttl);
            state.registered.insert((service.name.clone(), node.id.clone()), daemon_name);
        }
        self.inner.changed.notify_waiters();
        Ok(())
    }

    async fn deregister(&self, service: &Service) -> Result<(), Error> {
        let ours = {
            let state = self.inner.lock();
            service.nodes.iter().any(|n| state.registered.contains_key(&(service.name.clone(), n.id.clone())))
        };
        if !ours && !service.nodes.is_empty() {
            return Err(Error::bad_request(
                super::ID,
                format!(
                    "mdns: {} was not announced by this process, and an mDNS record is withdrawn only by the process that announces it (stop that process)",
                    service.name
                ),
            ));
        }
        for node in &service.nodes {
            let daemon_name = self.inner.lock().registered.remove(&(service.name.clone(), node.id.clone()));
            let Some(daemon_name) = daemon_name else { continue };
            match self.inner.daemon.unregister(&daemon_name) {
                Ok(status) => {
                    if let Ok(Ok(UnregisterStatus::NotFound)) =
                        tokio::time::timeout(Duration::from_secs(1), status.recv_async()).await
                    {
                        tracing::warn!(node = %node.id, "mDNS had no record of the node to withdraw");
                    }
                }
                Err(e) => tracing::warn!(error = %e, node = %node.id, "mDNS could not withdraw the node"),
            }
            self.inner.lock().remove(&unescape(&daemon_name));
        }
        self.inner.changed.notify_waiters();
        Ok(())
    }

    async fn get_service(&self, name: &str) -> Result<Vec<Service>, Error> {
        self.inner.settle(Some(name)).await;
        let mut state = self.inner.lock();
        state.expire();
        let mut versions: BTreeMap<String, Service> = BTreeMap::new();
        for e in state.nodes.values().filter(|e| e.service.name == name) {
            let entry = versions
                .entry(e.service.version.clone())
                .or_insert_with(|| Service { nodes: vec![], ..e.service.clone() });
            entry.nodes.extend(e.service.nodes.iter().cloned());
        }
        if versions.is_empty() {
            return Err(not_found(name));
        }
        Ok(versions
            .into_values()
            .map(|mut s| {
                s.nodes.sort_by(|a, b| a.id.cmp(&b.id));
                s
            })
            .collect())
    }

    async fn list_services(&self) -> Result<Vec<Service>, Error> {
        self.inner.settle(None).await;
        let mut state = self.inner.lock();
        state.expire();
        let mut seen: Vec<(String, String)> =
            state.nodes.values().map(|e| (e.service.name.clone(), e.service.version.clone())).collect();
        seen.sort();
        seen.dedup();
        Ok(seen.into_iter().map(|(name, version)| Service { name, version, ..Default::default() }).collect())
    }

    async fn watch(&self, service: Option<&str>) -> Result<Watcher, Error> {
        let (tx, watcher) = Watcher::channel();
        self.inner.lock().watchers.push((service.map(str::to_string), tx));
        Ok(watcher)
    }

    fn name(&self) -> &'static str {
        "mdns"
    }

    fn host_only(&self) -> bool {
        self.inner.host_only
    }
}

impl Drop for MdnsRegistry {
    fn drop(&mut self) {
        if Arc::strong_count(&self.inner) == 1 {
            let _ = self.inner.daemon.shutdown();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::registry::{Endpoint, Node, Value};

    fn big_record() -> Service {
        Service {
            name: "big".into(),
            version: "1.0".into(),
            metadata: BTreeMap::from([("team".into(), "core".into())]),
            endpoints: (0..50)
                .map(|i| Endpoint {
                    name: format!("Big.Method{i}"),
                    request: Some(Value {
                        name: format!("Request{i}"),
                        r#type: format!("Request{i}"),
                        values: (0..5)
                            .map(|f| Value { name: format!("field_{f}"), r#type: "string".into(), values: vec![] })
                            .collect(),
                    }),
                    response: Some(Value { name: "Reply".into(), r#type: "Reply".into(), values: vec![] }),
                    metadata: BTreeMap::from([("stream".into(), (i % 2 == 0).to_string())]),
                })
                .collect(),
            nodes: vec![Node { id: "big-1".into(), address: "127.0.0.1:1234".into(), metadata: BTreeMap::new() }],
        }
    }

    /// A responder answers a one-shot query at once, by unicast, even right after it announced
    /// the record (when a browser's query would go unanswered for a second), and the answer
    /// carries the whole record.
    #[tokio::test]
    async fn a_one_shot_query_is_answered_with_the_whole_record() {
        let responder = MdnsRegistry::new().unwrap();
        let mut record = big_record();
        record.name = format!("oneshot-{}", std::process::id());
        record.nodes[0].id = format!("{}-node", record.name);
        responder.register(&record, RegisterOptions { ttl: Duration::from_secs(30) }).await.unwrap();
        let want = record.name.clone();
        let found = tokio::task::spawn_blocking(move || {
            let mut found = None;
            let until = Instant::now() + Duration::from_secs(10);
            let asked = oneshot::ask(SERVICE_TYPE, until, |i| match decode_txt(|k| i.get(k)) {
                Ok((service, _)) if service.name == want => {
                    found = Some((service, i.port, i.addresses.clone()));
                    std::ops::ControlFlow::Break(())
                }
                _ => std::ops::ControlFlow::Continue(()),
            });
            asked.map(|()| found)
        })
        .await
        .unwrap()
        .expect("the query was sent");
        let (service, port, addresses) = found.expect("the responder answered");
        assert_eq!(service, record);
        assert_eq!(port, 1234);
        assert!(distrust(&service.nodes[0], port, &addresses, true).is_none(), "{addresses:?}");
    }

    #[test]
    fn txt_round_trip_of_a_large_record() {
        let record = big_record();
        let props = encode_txt(&record, Duration::from_secs(60), 7);
        assert!(props.len() > 5, "a 50-endpoint record spans several TXT entries");
        assert!(props.iter().all(|p| p.key().len() + 1 + p.val().map_or(0, <[u8]>::len) <= 255));
        let map: HashMap<String, Vec<u8>> =
            props.iter().map(|p| (p.key().to_string(), p.val().unwrap_or_default().to_vec())).collect();
        let (back, ttl) = decode_txt(|k| map.get(k).map(Vec::as_slice)).unwrap();
        assert_eq!((back, ttl), (record, Duration::from_secs(60)));
    }

    fn node(address: &str, secure: bool) -> Service {
        let mut metadata = BTreeMap::new();
        if secure {
            metadata.insert("secure".to_string(), "true".to_string());
        }
        Service {
            name: "s".into(),
            version: "latest".into(),
            nodes: vec![Node { id: address.into(), address: address.into(), metadata }],
            ..Default::default()
        }
    }

    #[test]
    fn what_is_heard_is_bounded_and_cannot_downgrade() {
        let mut state = State::default();
        state.heard("forever".into(), node("127.0.0.1:1", false), Duration::ZERO);
        assert_eq!(state.nodes["forever"].ttl, MAX_TTL, "a TTL of 0 lives an hour, not forever");
        state.heard("tls".into(), node("127.0.0.1:2", true), Duration::from_secs(60));
        assert!(!state.nodes.contains_key("forever"), "a TLS node drops the plaintext nodes heard before");
        state.heard("plain".into(), node("127.0.0.1:3", false), Duration::from_secs(60));
        assert!(!state.nodes.contains_key("plain"), "no plaintext node once TLS was heard");
        for i in 0..MAX_NODES + 10 {
            let mut other = node(&format!("127.0.0.1:{i}"), false);
            other.name = format!("many-{i}");
            state.heard(format!("n{i}"), other, Duration::from_secs(60));
        }
        assert_eq!(state.nodes.len(), MAX_NODES, "the records held are capped");
    }

    #[test]
    fn addresses_must_agree_with_the_record() {
        let lo: IpAddr = [127, 0, 0, 1].into();
        let lan: IpAddr = [192, 168, 1, 5].into();
        let n = |a: &str| node(a, false).nodes.remove(0);
        assert!(distrust(&n("127.0.0.1:80"), 80, &[lo], true).is_none());
        assert!(distrust(&n("127.0.0.1:81"), 80, &[lo], true).is_some(), "another port");
        assert!(distrust(&n("10.0.0.1:80"), 80, &[lo], true).is_some(), "another address");
        assert!(distrust(&n("192.168.1.5:80"), 80, &[lan], true).is_some(), "off loopback in the host scope");
        assert!(distrust(&n("192.168.1.5:80"), 80, &[lan], false).is_none());
        assert!(distrust(&n("example.com:80"), 80, &[lo], false).is_some(), "a host name");
        assert!(distrust(&n("micro.node.x"), 9, &[lo], true).is_some(), "not host:port");
        let mut nats = n("micro.node.x");
        nats.metadata.insert("transport".into(), "nats".into());
        assert!(distrust(&nats, 9, &[lo], true).is_none());
    }

    #[test]
    fn malformed_txt_is_an_error() {
        let none = |_: &str| None;
        assert!(decode_txt(none).is_err());
        let bad: HashMap<&str, &[u8]> = HashMap::from([("v", &b"1"[..]), ("n", &b"1"[..]), ("r0", &b"garbage"[..])]);
        assert!(decode_txt(|k| bad.get(k).copied()).unwrap_err().detail.contains("inflate"));
        let huge: HashMap<&str, &[u8]> = HashMap::from([("v", &b"1"[..]), ("n", &b"999999"[..])]);
        assert!(decode_txt(|k| huge.get(k).copied()).is_err());
        assert!(instance_name(&"x".repeat(100)).len() <= 63);
    }
}
