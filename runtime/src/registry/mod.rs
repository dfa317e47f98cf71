//! Service discovery: the [`Registry`] plugin point and the records it stores.
//!
//! A service is a name with one record per version; each record lists its nodes (running
//! processes, each with an address) and endpoints (with request/response field trees, so tools can
//! show and build requests). Nodes register with a TTL and re-register every interval; a node that
//! stops re-registering expires. Backends live one per file: [`mdns`] (the default),
//! `etcd` (feature `etcd`, on by default), [`memory`] (tests, single process).

pub mod cache;
#[cfg(feature = "etcd")]
pub mod etcd;
pub mod mdns;
pub mod memory;

use std::collections::BTreeMap;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use async_trait::async_trait;
use futures_util::Stream;
use serde::{Deserialize, Serialize};
use tokio::sync::mpsc;

use crate::Error;

/// The id of registry errors.
pub const ID: &str = "go.micro.registry";

pub use mdns::MdnsRegistry;
pub use memory::MemoryRegistry;

/// A service record: one version of a service, its endpoints and its nodes.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Service {
    /// The service name, e.g. `go.micro.srv.example`.
    pub name: String,
    /// The version, `latest` unless set.
    #[serde(default)]
    pub version: String,
    /// Free-form metadata of the service.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty", deserialize_with = "nullable")]
    pub metadata: BTreeMap<String, String>,
    /// What the service answers.
    #[serde(default, deserialize_with = "nullable")]
    pub endpoints: Vec<Endpoint>,
    /// Where it runs.
    #[serde(default, deserialize_with = "nullable")]
    pub nodes: Vec<Node>,
}

/// One running instance of a service.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Node {
    /// `<service>-<uuid>`.
    pub id: String,
    /// `host:port` (or a transport-specific address).
    pub address: String,
    /// transport, broker, server, registry, protocol, ...
    #[serde(default, deserialize_with = "nullable")]
    pub metadata: BTreeMap<String, String>,
}

/// A callable endpoint (`Service.Method`) or a subscriber.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Endpoint {
    /// `Greeter.SayHello`.
    pub name: String,
    /// The request's field tree.
    #[serde(default)]
    pub request: Option<Value>,
    /// The response's field tree.
    #[serde(default)]
    pub response: Option<Value>,
    /// `stream=true`, `subscriber=true`, `topic=...`, HTTP routes, ...
    #[serde(default, deserialize_with = "nullable")]
    pub metadata: BTreeMap<String, String>,
}

/// A field tree: a name, a type, and the fields of that type.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Value {
    /// Field (or message) name.
    pub name: String,
    /// Type name: `string`, `int64`, `[]string`, `map[string]int32`, or a message name.
    #[serde(rename = "type")]
    pub r#type: String,
    /// Fields of a message type.
    #[serde(default, skip_serializing_if = "Vec::is_empty", deserialize_with = "nullable")]
    pub values: Vec<Value>,
}

/// Reads `null` as empty: Go Micro writes `null` for empty lists and maps in its records.
fn nullable<'de, D, T>(d: D) -> Result<T, D::Error>
where
    D: serde::Deserializer<'de>,
    T: Default + Deserialize<'de>,
{
    Ok(Option::<T>::deserialize(d)?.unwrap_or_default())
}

/// A watcher's channel as a backend keeps it: the service it is limited to, and the sender.
pub(crate) type WatchSender = (Option<String>, mpsc::UnboundedSender<Result<Event, Error>>);

/// What changed in a watched registry.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Action {
    /// A node or service appeared.
    Create,
    /// A node re-registered or its record changed.
    Update,
    /// A node left.
    Delete,
}

/// One change seen by a [`Watcher`]; `service` holds the nodes concerned.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Event {
    /// What happened.
    pub action: Action,
    /// The record (with the nodes concerned).
    pub service: Service,
}

/// A stream of registry changes.
pub struct Watcher {
    rx: mpsc::UnboundedReceiver<Result<Event, Error>>,
}

impl Watcher {
    /// A watcher fed by a channel; backends send events (or a terminal error) into `tx`.
    pub fn channel() -> (mpsc::UnboundedSender<Result<Event, Error>>, Watcher) {
        let (tx, rx) = mpsc::unbounded_channel();
        (tx, Watcher { rx })
    }

    /// The next change; `None` once the registry closed the watch.
    pub async fn next(&mut self) -> Option<Result<Event, Error>> {
        self.rx.recv().await
    }
}

impl Stream for Watcher {
    type Item = Result<Event, Error>;
    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        self.rx.poll_recv(cx)
    }
}

/// Options of a registration.
#[derive(Debug, Clone, Copy, Default)]
pub struct RegisterOptions {
    /// How long the registration lives without being renewed; zero means forever.
    pub ttl: Duration,
}

/// Where services are found.
///
/// Implementations must be cheap to share (`Arc<dyn Registry>`) and safe to call concurrently.
///
/// ```
/// # tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(async {
/// use micro::registry::{MemoryRegistry, Node, Registry, RegisterOptions, Service};
/// let registry = MemoryRegistry::new();
/// let svc = Service {
///     name: "greeter".into(),
///     version: "latest".into(),
///     nodes: vec![Node { id: "greeter-1".into(), address: "127.0.0.1:9000".into(), ..Default::default() }],
///     ..Default::default()
/// };
/// registry.register(&svc, RegisterOptions::default()).await.unwrap();
/// assert_eq!(registry.list_services().await.unwrap()[0].name, "greeter");
/// # });
/// ```
#[async_trait]
pub trait Registry: Send + Sync + 'static {
    /// Adds or renews the nodes of `service`.
    async fn register(&self, service: &Service, opts: RegisterOptions) -> Result<(), Error>;
    /// Removes the nodes of `service`.
    async fn deregister(&self, service: &Service) -> Result<(), Error>;
    /// Every version of a service, with its nodes; a 404 error if there is none.
    async fn get_service(&self, name: &str) -> Result<Vec<Service>, Error>;
    /// Every service (records may omit nodes and endpoints).
    async fn list_services(&self) -> Result<Vec<Service>, Error>;
    /// Changes to one service, or to all when `service` is `None`.
    async fn watch(&self, service: Option<&str>) -> Result<Watcher, Error>;
    /// The backend's name, as given to `--registry`.
    fn name(&self) -> &'static str;
    /// Whether records reach this host only (mDNS in its default scope), so that nodes
    /// advertise loopback addresses.
    fn host_only(&self) -> bool {
        false
    }
}

/// A shared registry.
pub type SharedRegistry = Arc<dyn Registry>;

/// The error for a service that has no record.
pub fn not_found(name: &str) -> Error {
    Error::not_found(ID, format!("service {name} not found"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_written_by_go_micro_with_nulls_decode() {
        let go = r#"{"name":"go.micro.srv.x","version":"latest","metadata":null,
            "endpoints":[{"name":"X.Call","request":{"name":"Request","type":"Request","values":null},
            "response":null,"metadata":null}],
            "nodes":[{"id":"go.micro.srv.x-1","address":"127.0.0.1:1","metadata":null}]}"#;
        let svc: Service = serde_json::from_str(go).unwrap();
        assert_eq!(svc.nodes[0].address, "127.0.0.1:1");
        assert!(svc.metadata.is_empty() && svc.nodes[0].metadata.is_empty());
        assert!(svc.endpoints[0].request.as_ref().unwrap().values.is_empty());
        let empty: Service = serde_json::from_str(r#"{"name":"y","endpoints":null,"nodes":null}"#).unwrap();
        assert!(empty.endpoints.is_empty() && empty.nodes.is_empty());
    }

    #[test]
    fn record_json_is_go_micro_shaped() {
        let svc = Service {
            name: "s".into(),
            version: "latest".into(),
            endpoints: vec![Endpoint {
                name: "S.Call".into(),
                request: Some(Value {
                    name: "Request".into(),
                    r#type: "Request".into(),
                    values: vec![Value { name: "name".into(), r#type: "string".into(), values: vec![] }],
                }),
                response: None,
                metadata: BTreeMap::new(),
            }],
            nodes: vec![],
            metadata: BTreeMap::new(),
        };
        let json = serde_json::to_string(&svc).unwrap();
        assert!(json.contains(r#""values":[{"name":"name","type":"string"}]"#), "{json}");
        assert_eq!(serde_json::from_str::<Service>(&json).unwrap(), svc);
    }
}
