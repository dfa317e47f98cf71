//! Micro for Rust: the runtime every generated service targets.
//!
//! A [`Service`] bundles a [`Server`] (your handlers), a [`Client`] (to call other services) and a
//! [`Registry`](registry::Registry) (to find them), configured from code, `MICRO_*` variables and
//! flags. Servers speak gRPC over HTTP/2 and plain HTTP with JSON or protobuf on one port, so native
//! gRPC clients, `curl` and micro clients all reach the same handlers.
//!
//! ```no_run
//! # mod helloworld {
//! #     pub fn register_greeter_handler(_: &micro::Server, _: ()) {}
//! # }
//! #[tokio::main]
//! async fn main() -> Result<(), micro::Error> {
//!     let service = micro::Service::new("helloworld")?;
//!     helloworld::register_greeter_handler(service.server(), ());
//!     service.run().await
//! }
//! ```
//!
//! # Feature flags
//! - `etcd` (default): the etcd registry.
//! - `nats`: the NATS broker and transport, and the JetStream broker (`nats-js`).
//! - `rabbitmq`: the RabbitMQ broker (lapin).
//! - `kafka`: the Kafka broker (rskafka, kafka-protocol).
//! - `fuzzing`: entry points for the fuzz targets (`micro::fuzzing`), not a stable API.
//!
//! # Plugin points
//! - [`registry`]: where services are found (`mdns` by default, `etcd`, `memory`).
//! - [`selector`]: which node gets a call (random, round robin, least loaded).
//! - [`broker`]: pub/sub (`http` by default, `nats`, `memory`; durable: `nats-js`, `rabbitmq`,
//!   `kafka`).
//! - [`transport`]: how calls travel (HTTP/2 gRPC + HTTP/1 JSON on one port).
//! - [`codec`]: protobuf and proto3 JSON.
//! - [`server::HandlerWrapper`] and [`client::CallWrapper`]: middleware ([`wrapper`] ships some).
//!
//! # Layers
//! Each module imports only from the lines above its own, as Go Micro's packages do
//! (`scripts/layers` checks it in the test command):
//! 1. `error`
//! 2. `metadata`, `secret`, `logger`
//! 3. `codec`
//! 4. `wkt`
//! 5. `transport`
//! 6. `registry`
//! 7. `selector`, `api`
//! 8. `broker`
//! 9. `web`
//! 10. `client`, `server`
//! 11. `wrapper`, `bot`
//! 12. `config`
//! 13. `service`
//! 14. `function`
//! 15. `fuzzing`

pub mod api;
pub mod bot;
pub mod broker;
pub mod client;
pub mod codec;
pub mod config;
pub mod error;
pub mod function;
#[cfg(feature = "fuzzing")]
#[doc(hidden)]
pub mod fuzzing;
pub mod logger;
pub mod metadata;
pub mod registry;
pub mod secret;
pub mod selector;
pub mod server;
pub mod service;
pub mod transport;
pub mod web;
pub mod wkt;
pub mod wrapper;

/// Options from code, environment and flags (they live in [`config::options`]).
pub use config::options;
/// Bearer-token authentication (it lives in [`wrapper::auth`]).
pub use wrapper::auth;

pub use client::{CallOptions, Client, Publisher};
pub use codec::Message;
pub use error::{Error, Result};
pub use function::Function;
pub use metadata::Metadata;
pub use server::{register_struct_subscriber, register_subscriber, Handle, Request, Server, ServerStream};
pub use service::Service;
pub use transport::grpc::Streaming;

/// Includes the code generated for a proto package by `micro_build` in `build.rs`.
///
/// ```ignore
/// pub mod helloworld {
///     micro::include_proto!("helloworld");
/// }
/// ```
#[macro_export]
macro_rules! include_proto {
    ($package:tt) => {
        include!(concat!(env!("OUT_DIR"), "/", $package, ".rs"));
    };
}

/// The logging facade the runtime logs with (so services need no extra dependency to log).
pub use tracing;

/// Re-exports used by generated code, so generated crates need no extra dependencies.
#[doc(hidden)]
pub mod __private {
    pub use pbjson;
    pub use pbjson_types;
    pub use prost;
    pub use prost_types;
    pub use serde;
}
