//! The etcd registry (feature `etcd`): for fleets that outgrow one machine.
//!
//! Each node is a key `/micro/registry/<service>/<node-id>` holding its service record (with that
//! one node) as JSON, attached to a lease with the registration TTL. Re-registering keeps the lease
//! alive; if the lease is gone (etcd restarted without its data, or the TTL ran out while etcd
//! was away) a new one is granted and the key written again. Watches are etcd prefix watches.
//!
//! **Why no etcd-client crate.** That crate's build script needs `protoc` on the building machine,
//! which would make `cargo install` of the `micro` tools fail on a fresh machine. Instead this file
//! speaks etcd's v3 gRPC API with the runtime's own client, over the few messages it needs
//! ([`proto`]), so the backend adds no dependency at all. `--registry_address` takes a comma list;
//! calls go to the first address that answers.

pub mod proto;

use std::collections::{BTreeMap, HashMap};
use std::sync::Mutex;
use std::time::Duration;

use async_trait::async_trait;
use futures_util::StreamExt;

use super::{not_found, Action, Event, RegisterOptions, Registry, Service, Watcher};
use crate::codec::{Codec, Message};
use crate::metadata::Metadata;
use crate::transport::channel::{Channel, Sender};
use crate::transport::grpc::{Streaming, DEFAULT_MAX_MESSAGE_SIZE};
use crate::transport::http::Pool;
use crate::Error;
use proto::*;

/// The key prefix of every record.
pub const PREFIX: &str = "/micro/registry/";

const RANGE: &str = "/etcdserverpb.KV/Range";
const PUT: &str = "/etcdserverpb.KV/Put";
const DELETE: &str = "/etcdserverpb.KV/DeleteRange";
const GRANT: &str = "/etcdserverpb.Lease/LeaseGrant";
const REVOKE: &str = "/etcdserverpb.Lease/LeaseRevoke";
const KEEPALIVE: &str = "/etcdserverpb.Lease/LeaseKeepAlive";
const WATCH: &str = "/etcdserverpb.Watch/Watch";

/// How long one call to etcd may take.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(3);

/// How long connecting to an etcd member may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(1);

/// The key of a node's record.
pub fn node_key(service: &str, node_id: &str) -> String {
    format!("{PREFIX}{service}/{node_id}")
}

/// Decodes a stored record; a clear error for anything that is not one.
pub fn decode_record(value: &[u8]) -> Result<Service, Error> {
    let svc: Service = serde_json::from_slice(value)
        .map_err(|e| Error::internal_server_error(super::ID, format!("etcd: invalid record: {e}")))?;
    if svc.name.is_empty() {
        return Err(Error::internal_server_error(super::ID, "etcd: record without a service name"));
    }
    Ok(svc)
}

/// The end of the key range that starts with `prefix`.
fn prefix_end(prefix: &[u8]) -> Vec<u8> {
    let mut end = prefix.to_vec();
    while let Some(last) = end.pop() {
        if last < 0xff {
            end.push(last + 1);
            return end;
        }
    }
    vec![0]
}

struct Lease {
    id: i64,
    ttl: Duration,
    value: Vec<u8>,
}

/// The etcd registry.
pub struct EtcdRegistry {
    addresses: Vec<String>,
    pool: Pool,
    leases: Mutex<HashMap<String, Lease>>,
}

impl EtcdRegistry {
    /// A registry over the etcd cluster at `addresses` (`host:port`, `http://` optional;
    /// `127.0.0.1:2379` when empty).
    pub fn new(addresses: &[String]) -> Self {
        let mut addresses: Vec<String> = addresses
            .iter()
            .map(|a| a.trim().trim_start_matches("http://").trim_end_matches('/').to_string())
            .filter(|a| !a.is_empty())
            .collect();
        if addresses.is_empty() {
            addresses.push("127.0.0.1:2379".into());
        }
        EtcdRegistry { addresses, pool: Pool::new(), leases: Mutex::new(HashMap::new()) }
    }

    fn unreachable(&self, e: &Error) -> Error {
        Error::unavailable(super::ID, format!("etcd at {} is unreachable: {}", self.addresses.join(","), e.detail))
    }

    /// The channel to one etcd member.
    fn channel<'a>(&'a self, address: &'a str) -> Channel<'a> {
        Channel {
            pool: &self.pool,
            address,
            secure: false,
            connect_timeout: CONNECT_TIMEOUT,
            max_message_size: DEFAULT_MAX_MESSAGE_SIZE,
            peer: "etcd",
        }
    }

    /// Opens a stream to `path` on the first member that answers.
    async fn open<Req, Resp: Message>(
        &self,
        path: &str,
        timeout: Option<Duration>,
    ) -> Result<(Sender<Req>, Streaming<Resp>), Error> {
        let mut last = None;
        for addr in &self.addresses {
            match self.channel(addr).open(path, Codec::Proto, &Metadata::new(), timeout).await {
                Ok(s) => return Ok(s),
                Err(e) => last = Some(e),
            }
        }
        Err(self.unreachable(&last.unwrap_or_else(|| Error::unavailable("", "no address"))))
    }

    async fn call<Req: Message, Resp: Message>(&self, path: &str, req: &Req) -> Result<Resp, Error> {
        let mut last = None;
        for addr in &self.addresses {
            match self.channel(addr).unary(path, req, &Metadata::new(), REQUEST_TIMEOUT).await {
                Ok(r) => return Ok(r),
                Err(e) if e.code == 503 || e.code == 408 => last = Some(e),
                Err(e) => return Err(Error::new(super::ID, e.code, format!("etcd: {}", e.detail))),
            }
        }
        Err(self.unreachable(&last.unwrap_or_else(|| Error::unavailable("", "no address"))))
    }

    async fn range(&self, prefix: &str) -> Result<Vec<KeyValue>, Error> {
        let resp: RangeResponse = self
            .call(
                RANGE,
                &RangeRequest {
                    key: prefix.as_bytes().to_vec(),
                    range_end: prefix_end(prefix.as_bytes()),
                    ..Default::default()
                },
            )
            .await?;
        Ok(resp.kvs)
    }

    /// Sends one keepalive for `id`; returns the remaining TTL (0: the lease is gone).
    async fn keepalive(&self, id: i64) -> Result<i64, Error> {
        let mut last = None;
        for addr in &self.addresses {
            let opened = self
                .channel(addr)
                .open::<LeaseKeepAliveRequest, LeaseKeepAliveResponse>(
                    KEEPALIVE,
                    Codec::Proto,
                    &Metadata::new(),
                    Some(REQUEST_TIMEOUT),
                )
                .await;
            let (tx, mut rx) = match opened {
                Ok(s) => s,
                Err(e) => {
                    last = Some(e);
                    continue;
                }
            };
            tx.send(LeaseKeepAliveRequest { id }).await?;
            let reply = tokio::time::timeout(REQUEST_TIMEOUT, rx.message()).await;
            drop(tx);
            match reply {
                Ok(Ok(Some(r))) => return Ok(r.ttl),
                Ok(Ok(None)) => return Ok(0),
                Ok(Err(e)) => last = Some(e),
                Err(_) => last = Some(Error::timeout("", "keepalive timed out")),
            }
        }
        Err(self.unreachable(&last.unwrap_or_else(|| Error::unavailable("", "no address"))))
    }

    async fn put_with_lease(&self, key: &str, value: Vec<u8>, ttl: Duration) -> Result<(), Error> {
        let secs = ttl.as_secs().max(1) as i64;
        let grant: LeaseGrantResponse = self.call(GRANT, &LeaseGrantRequest { ttl: secs, id: 0 }).await?;
        if !grant.error.is_empty() {
            return Err(Error::internal_server_error(super::ID, format!("etcd lease: {}", grant.error)));
        }
        let _: PutResponse = self
            .call(
                PUT,
                &PutRequest {
                    key: key.as_bytes().to_vec(),
                    value: value.clone(),
                    lease: grant.id,
                    ..Default::default()
                },
            )
            .await?;
        self.leases
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(key.to_string(), Lease { id: grant.id, ttl, value });
        Ok(())
    }
}

#[async_trait]
impl Registry for EtcdRegistry {
    async fn register(&self, service: &Service, opts: RegisterOptions) -> Result<(), Error> {
        for node in &service.nodes {
            let key = node_key(&service.name, &node.id);
            let record = Service { nodes: vec![node.clone()], ..service.clone() };
            let value = serde_json::to_vec(&record).map_err(|e| Error::internal_server_error(super::ID, e))?;
            if opts.ttl.is_zero() {
                let _: PutResponse =
                    self.call(PUT, &PutRequest { key: key.into_bytes(), value, ..Default::default() }).await?;
                continue;
            }
            let known = {
                let leases = self.leases.lock().unwrap_or_else(|e| e.into_inner());
                leases.get(&key).map(|l| (l.id, l.ttl == opts.ttl && l.value == value))
            };
            match known {
                Some((id, true)) => {
                    if self.keepalive(id).await? <= 0 {
                        tracing::info!(key, "etcd lost the lease; registering again");
                        self.put_with_lease(&key, value, opts.ttl).await?;
                    }
                }
                _ => self.put_with_lease(&key, value, opts.ttl).await?,
            }
        }
        Ok(())
    }

    async fn deregister(&self, service: &Service) -> Result<(), Error> {
        for node in &service.nodes {
            let key = node_key(&service.name, &node.id);
            let _: DeleteRangeResponse =
                self.call(DELETE, &DeleteRangeRequest { key: key.clone().into_bytes(), ..Default::default() }).await?;
            let lease = self.leases.lock().unwrap_or_else(|e| e.into_inner()).remove(&key);
            if let Some(lease) = lease {
                let _ = self.call::<_, LeaseRevokeResponse>(REVOKE, &LeaseRevokeRequest { id: lease.id }).await;
            }
        }
        Ok(())
    }

    async fn get_service(&self, name: &str) -> Result<Vec<Service>, Error> {
        let kvs = self.range(&format!("{PREFIX}{name}/")).await?;
        let mut versions: BTreeMap<String, Service> = BTreeMap::new();
        for kv in kvs {
            match decode_record(&kv.value) {
                Ok(svc) if svc.name == name => {
                    let entry =
                        versions.entry(svc.version.clone()).or_insert_with(|| Service { nodes: vec![], ..svc.clone() });
                    entry.nodes.extend(svc.nodes);
                }
                Ok(_) => {}
                Err(e) => {
                    tracing::warn!(key = %String::from_utf8_lossy(&kv.key), error = %e.detail, "skipping a record")
                }
            }
        }
        if versions.is_empty() {
            return Err(not_found(name));
        }
        Ok(versions.into_values().collect())
    }

    async fn list_services(&self) -> Result<Vec<Service>, Error> {
        let kvs = self.range(PREFIX).await?;
        let mut seen: Vec<(String, String)> =
            kvs.iter().filter_map(|kv| decode_record(&kv.value).ok()).map(|s| (s.name, s.version)).collect();
        seen.sort();
        seen.dedup();
        Ok(seen.into_iter().map(|(name, version)| Service { name, version, ..Default::default() }).collect())
    }

    async fn watch(&self, service: Option<&str>) -> Result<Watcher, Error> {
        let prefix = match service {
            Some(s) => format!("{PREFIX}{s}/"),
            None => PREFIX.to_string(),
        };
        let (tx, mut rx) = self.open::<WatchRequest, WatchResponse>(WATCH, None).await?;
        tx.send(WatchRequest {
            request_union: Some(watch_request::RequestUnion::CreateRequest(WatchCreateRequest {
                key: prefix.as_bytes().to_vec(),
                range_end: prefix_end(prefix.as_bytes()),
                prev_kv: true,
                ..Default::default()
            })),
        })
        .await?;
        let (events, watcher) = Watcher::channel();
        tokio::spawn(async move {
            let _keep_open = tx;
            loop {
                // A watcher that is dropped closes its etcd stream, even if no event ever comes.
                let msg = tokio::select! {
                    msg = rx.next() => msg,
                    _ = events.closed() => return,
                };
                let Some(msg) = msg else { break };
                let resp = match msg {
                    Ok(r) => r,
                    Err(e) => {
                        let _ = events.send(Err(e));
                        return;
                    }
                };
                if resp.canceled {
                    let _ = events.send(Err(Error::unavailable(
                        super::ID,
                        format!("etcd watch canceled: {}", resp.cancel_reason),
                    )));
                    return;
                }
                for ev in resp.events {
                    let (action, bytes) = match (ev.r#type, &ev.kv, &ev.prev_kv) {
                        (0, Some(kv), _) => (
                            if kv.create_revision == kv.mod_revision { Action::Create } else { Action::Update },
                            kv.value.clone(),
                        ),
                        (1, _, Some(prev)) => (Action::Delete, prev.value.clone()),
                        _ => continue,
                    };
                    if let Ok(service) = decode_record(&bytes) {
                        if events.send(Ok(Event { action, service })).is_err() {
                            return;
                        }
                    }
                }
            }
        });
        Ok(watcher)
    }

    fn name(&self) -> &'static str {
        "etcd"
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefix_ranges_and_records() {
        assert_eq!(prefix_end(b"/a/"), b"/a0".to_vec());
        assert_eq!(prefix_end(b"a\xff"), b"b".to_vec());
        assert_eq!(node_key("svc", "svc-1"), "/micro/registry/svc/svc-1");
        assert!(decode_record(b"{").is_err());
        assert!(decode_record(br#"{"name":""}"#).is_err());
        assert_eq!(decode_record(br#"{"name":"a","nodes":[]}"#).unwrap().name, "a");
    }
}
