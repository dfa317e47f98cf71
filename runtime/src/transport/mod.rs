//! Transports: how requests and streams travel between a client and a server.
//!
//! The default transport is HTTP on one port: gRPC over HTTP/2 (h2c) and plain HTTP/1.1 or HTTP/2
//! with JSON or protobuf bodies, so `curl`, native gRPC clients and micro clients reach the same
//! handlers. [`grpc`] holds the gRPC wire details, [`body`] the body type both sides send,
//! [`http`] the server's connection handling and the client's connection pool. `nats` (feature
//! `nats`) carries the same calls and streams as NATS messages, for nodes with no open port.
//! [`tls`] adds TLS (and mutual TLS) to the HTTP transport. The same port also speaks
//! [`grpc_web`] and [`connect`] for browsers and Connect clients, with [`compression`] for all
//! three and [`status`] for error details every protocol carries; [`origin`] is the Host, Origin
//! and CORS policy of every listener.

pub mod addr;
pub mod body;
pub mod channel;
pub mod compression;
mod conn;
pub mod connect;
pub mod endpoint;
pub mod grpc;
pub mod grpc_web;
pub mod http;
#[cfg(feature = "nats")]
pub mod nats;
pub mod origin;
pub mod status;
pub mod tls;

pub use body::Body;

/// The id of errors about the wire itself (frames, TLS, transport names).
pub const ID: &str = "go.micro.transport";
