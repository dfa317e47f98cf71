//! What the HTTP API gateway (`micro api`) resolves request paths into: a service and a method.
//!
//! The rules live here, not in the gateway, so they can be tested and fuzzed as plain functions.

pub mod resolve;

pub use resolve::{resolve, Route};
