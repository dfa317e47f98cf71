//! What the HTTP API gateway (`micro api`) reads from requests: which service and method a path
//! leads to ([`resolve`]), the routes endpoints declare ([`route`]) and how a request becomes a
//! call through one ([`transcode`]), the OpenAPI document of it all ([`openapi`]), query strings and form bodies as JSON ([`query`]), and the
//! events its `event` handler publishes ([`event`]).
//!
//! The rules live here, not in the gateway, so they can be tested and fuzzed as plain functions:
//! they read bytes strangers send.

pub mod event;
pub mod openapi;
pub mod query;
pub mod resolve;
pub mod route;
pub mod transcode;

pub use query::pairs_to_json;
pub use resolve::{proxy_service, resolve, Route};
pub use route::Template;
