//! Bearer-token authentication, Go Micro's `wrapper/auth`: the server half is [`BearerAuth`], a
//! handler wrapper that answers 401 (gRPC `UNAUTHENTICATED`) to calls without
//! `authorization: Bearer <token>`; the client half is [`BearerToken`], a call wrapper that sends
//! the token with every call and stream that does not carry an `Authorization` of its own.
//!
//! A service started with `--auth_token` / `MICRO_AUTH_TOKEN` wraps every endpoint with
//! [`BearerAuth`] and its client with [`BearerToken`]; its broker sends the token with the
//! messages it publishes. Every inbound path of the service is guarded, not only its endpoints:
//! the broker inbox (`POST /_sub/<topic>`) and its web pages go through the same check
//! ([`HandlerWrapper::admit`]). Health checks stay open (`Debug.Health` and
//! `grpc.health.v1.Health`), so orchestrators need no token. The token is a [`Secret`]: it never
//! appears in logs, `Debug` output or registry records.
//!
//! The tools (`micro api`, `micro web`, `micro proxy`, `micro bot`) pass each caller's own
//! `Authorization` on and never add their own token to a caller's request.

use std::sync::Arc;

use bytes::Bytes;
use futures_util::future::BoxFuture;
use http::HeaderMap;

use crate::client::{CallOptions, CallWrapper, Caller, RawCall};
use crate::metadata::Metadata;
use crate::secret::Secret;
use crate::server::{Endpoint, Handler, HandlerWrapper, RawRequest, StreamHandler, UnaryHandler};
use crate::transport::{grpc, Body};
use crate::Error;

pub use crate::metadata::AUTHORIZATION;

/// Endpoints that answer without a token.
pub const OPEN_ENDPOINTS: &[&str] = &["Debug.Health", "grpc.health.v1.Health.Check", "grpc.health.v1.Health.Watch"];

/// Requires `authorization: Bearer <token>` on every endpoint but the [`OPEN_ENDPOINTS`].
#[derive(Clone)]
pub struct BearerAuth {
    expected: Arc<[u8]>,
    id: Arc<str>,
}

impl std::fmt::Debug for BearerAuth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BearerAuth").field("token", &"<redacted>").finish()
    }
}

impl BearerAuth {
    /// Checks calls against `token`; `id` names the service in the errors.
    pub fn new(token: &Secret, id: &str) -> BearerAuth {
        BearerAuth { expected: format!("Bearer {}", token.expose()).into_bytes().into(), id: id.into() }
    }

    fn check(&self, req: &RawRequest) -> Result<(), Error> {
        self.check_metadata(&req.metadata)
    }

    fn check_metadata(&self, metadata: &Metadata) -> Result<(), Error> {
        match metadata.get(AUTHORIZATION) {
            Some(given) if constant_time_eq(given.as_bytes(), &self.expected) => Ok(()),
            Some(_) => Err(Error::unauthorized(&*self.id, "the bearer token is not valid")),
            None => Err(Error::unauthorized(&*self.id, "this service needs an authorization: Bearer token")),
        }
    }
}

/// The client half: sends `authorization: Bearer <token>` with every call and stream that has no
/// `Authorization` of its own (a tool passing its caller's on keeps the caller's).
#[derive(Clone)]
pub struct BearerToken {
    header: Arc<str>,
}

impl std::fmt::Debug for BearerToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BearerToken").field("token", &"<redacted>").finish()
    }
}

impl BearerToken {
    /// Sends `token`.
    pub fn new(token: &Secret) -> BearerToken {
        BearerToken { header: format!("Bearer {}", token.expose()).into() }
    }

    fn add_to(&self, opts: &mut CallOptions) {
        if opts.metadata.get(AUTHORIZATION).is_none() {
            opts.metadata.insert(AUTHORIZATION, &self.header);
        }
    }
}

struct WithToken {
    token: BearerToken,
    inner: Arc<dyn Caller>,
}

impl Caller for WithToken {
    fn call(&self, mut call: RawCall) -> BoxFuture<'_, Result<Bytes, Error>> {
        self.token.add_to(&mut call.opts);
        self.inner.call(call)
    }
}

impl CallWrapper for BearerToken {
    fn wrap(&self, inner: Arc<dyn Caller>) -> Arc<dyn Caller> {
        Arc::new(WithToken { token: self.clone(), inner })
    }

    fn before_stream(&self, _service: &str, _path: &str, opts: &mut CallOptions) -> Result<(), Error> {
        self.add_to(opts);
        Ok(())
    }
}

/// Compares without stopping at the first difference, so timing tells nothing of the token.
fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

struct Unary {
    auth: BearerAuth,
    inner: Arc<dyn UnaryHandler>,
}

impl UnaryHandler for Unary {
    fn call(&self, req: RawRequest) -> BoxFuture<'static, Result<Bytes, Error>> {
        match self.auth.check(&req) {
            Ok(()) => self.inner.call(req),
            Err(e) => Box::pin(async move { Err(e) }),
        }
    }
}

struct Stream {
    auth: BearerAuth,
    inner: Arc<dyn StreamHandler>,
}

impl StreamHandler for Stream {
    fn call(&self, req: RawRequest) -> Body {
        match self.auth.check(&req) {
            Ok(()) => self.inner.call(req),
            Err(e) => {
                let mut trailers = HeaderMap::new();
                grpc::status_headers(Err(&e), &mut trailers);
                Body::with_trailers(None, trailers)
            }
        }
    }
}

impl HandlerWrapper for BearerAuth {
    fn admit(&self, _path: &str, metadata: &Metadata) -> Result<(), Error> {
        self.check_metadata(metadata)
    }

    fn wrap(&self, endpoint: &Endpoint, inner: Handler) -> Handler {
        if OPEN_ENDPOINTS.contains(&endpoint.name.as_str()) {
            return inner;
        }
        match inner {
            Handler::Unary(inner) => Handler::Unary(Arc::new(Unary { auth: self.clone(), inner })),
            Handler::Stream(inner) => Handler::Stream(Arc::new(Stream { auth: self.clone(), inner })),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn comparison_needs_every_byte() {
        assert!(constant_time_eq(b"Bearer abc", b"Bearer abc"));
        assert!(!constant_time_eq(b"Bearer abd", b"Bearer abc"));
        assert!(!constant_time_eq(b"Bearer ab", b"Bearer abc"));
    }

    #[test]
    fn the_token_is_not_in_debug_output() {
        let auth = BearerAuth::new(&Secret::new("hunter2"), "svc");
        assert!(!format!("{auth:?}").contains("hunter2"));
        assert!(!format!("{:?}", BearerToken::new(&Secret::new("hunter2"))).contains("hunter2"));
    }
}
