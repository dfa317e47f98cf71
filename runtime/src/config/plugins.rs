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
pub const BROKERS: &[&str] = &["http", "nats", "nats-js", "rabbitmq", "kafka", "memory"];

/// The broker `opts.broker` names, reaching `opts.broker_address`; `http` finds subscribers
/// through `registry` and reaches them with `credentials`; the durable ones redeliver as
/// `opts.broker_delivery` says.
pub fn broker(
    opts: &super::options::Options,
    registry: SharedRegistry,
    credentials: Credentials,
) -> Result<SharedBroker, Error> {
    let (name, addresses, delivery) = (opts.broker.as_str(), &opts.broker_address, opts.broker_delivery);
    let off = |feature: &str| -> Result<SharedBroker, Error> {
        Err(Error::bad_request(
            crate::broker::ID,
            format!("broker \"{name}\" is not enabled in this build; rebuild with --features {feature}"),
        ))
    };
    let _ = (&off, addresses, delivery);
    match name {
        "http" => Ok(Arc::new(HttpBroker::new(registry).with_credentials(credentials))),
        "memory" => Ok(Arc::new(MemoryBroker::new())),
        #[cfg(feature = "nats")]
        "nats" => Ok(Arc::new(crate::broker::nats::NatsBroker::new(addresses))),
        #[cfg(feature = "nats")]
        "nats-js" => Ok(Arc::new(crate::broker::jetstream::JetStreamBroker::new(addresses, delivery))),
        #[cfg(not(feature = "nats"))]
        "nats" | "nats-js" => off("nats"),
        #[cfg(feature = "rabbitmq")]
        "rabbitmq" => Ok(Arc::new(crate::broker::rabbitmq::RabbitBroker::new(addresses, delivery))),
        #[cfg(not(feature = "rabbitmq"))]
        "rabbitmq" => off("rabbitmq"),
        #[cfg(feature = "kafka")]
        "kafka" => Ok(Arc::new(crate::broker::kafka::KafkaBroker::new(addresses, delivery))),
        #[cfg(not(feature = "kafka"))]
        "kafka" => off("kafka"),
        _ => Err(Error::bad_request(
            crate::broker::ID,
            format!("unknown broker \"{name}\" (valid: {})", BROKERS.join(", ")),
        )),
    }
}
