//! Plugin factories: the backend behind each name `--registry` and `--broker` take, Go Micro's
//! `cmd.DefaultRegistries` and `cmd.DefaultBrokers`. They live here, above every plugin point,
//! so that no trait module imports its own backends; a program that builds its plugins itself
//! never needs this module.

use std::sync::Arc;

use crate::broker::{Credentials, HttpBroker, MemoryBroker, SharedBroker};
use crate::registry::{MdnsRegistry, MemoryRegistry, SharedRegistry};
use crate::Error;

/// Names of the registry backends, as `--registry` takes them.
pub const REGISTRIES: &[&str] = &["mdns", "etcd", "memory"];

/// The registry used when none is named.
pub const DEFAULT_REGISTRY: &str = "mdns";

/// The registry backend called `name`, reaching `addresses` where the backend has any.
pub fn registry(name: &str, addresses: &[String]) -> Result<SharedRegistry, Error> {
    match name {
        #[cfg(feature = "etcd")]
        "etcd" => Ok(Arc::new(crate::registry::etcd::EtcdRegistry::new(addresses))),
        #[cfg(not(feature = "etcd"))]
        "etcd" => Err(Error::bad_request(
            crate::registry::ID,
            "registry \"etcd\" is not enabled in this build; rebuild with --features etcd",
        )),
        "memory" => Ok(Arc::new(MemoryRegistry::new())),
        "mdns" => Ok(Arc::new(MdnsRegistry::new()?)),
        _ => Err(Error::bad_request(
            crate::registry::ID,
            format!("unknown registry \"{name}\" (valid: {})", REGISTRIES.join(", ")),
        )),
    }
}

/// Names of the broker backends, as `--broker` takes them.
pub const BROKERS: &[&str] = &["http", "nats", "memory"];

/// The broker called `name`; `http` finds subscribers through `registry` and reaches them with
/// `credentials`.
pub fn broker(
    name: &str,
    addresses: &[String],
    registry: SharedRegistry,
    credentials: Credentials,
) -> Result<SharedBroker, Error> {
    match name {
        "http" => Ok(Arc::new(HttpBroker::new(registry).with_credentials(credentials))),
        "memory" => Ok(Arc::new(MemoryBroker::new())),
        #[cfg(feature = "nats")]
        "nats" => Ok(Arc::new(crate::broker::nats::NatsBroker::new(addresses))),
        #[cfg(not(feature = "nats"))]
        "nats" => {
            let _ = addresses;
            Err(Error::bad_request(
                crate::broker::ID,
                "broker \"nats\" is not enabled in this build; rebuild with --features nats",
            ))
        }
        _ => Err(Error::bad_request(
            crate::broker::ID,
            format!("unknown broker \"{name}\" (valid: {})", BROKERS.join(", ")),
        )),
    }
}
