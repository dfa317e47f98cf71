//! Bearer-token authentication, Go Micro's `wrapper/auth`: the server half is [`BearerAuth`], a
//! handler wrapper that answers 401 (gRPC `UNAUTHENTICATED`) to calls without
//! `authorization: Bearer <token>`; the client half is the token the client sends with every call
//! and stream ([`ClientOptions::auth_token`], written as [`AUTHORIZATION`] metadata).
//!
//! A service started with `--auth_token` / `MICRO_AUTH_TOKEN` wraps every endpoint with
//! [`BearerAuth`] and its client sends the token ([`ClientOptions::auth_token`]), also with the
//! messages it publishes. Every inbound path of the service is guarded, not only its endpoints:
//! the broker inbox (`POST /_sub/<topic>`) and its web pages go through the same check
//! ([`HandlerWrapper::admit`]). Health checks stay open (`Debug.Health` and
//! `grpc.health.v1.Health`), so orchestrators need no token. The token is a [`Secret`]: it never
//! appears in logs, `Debug` output or registry records.
//!
//! The tools (`micro api`, `micro web`, `micro proxy`, `micro bot`) pass each caller's own
//! `Authorization` on and never add their own token to a caller's request.
//!
//! [`ClientOptions::auth_token`]: crate::client::ClientOptions::auth_token

use std::sync::Arc;

use bytes::Bytes;
use futures_util::future::BoxFuture;
use http::HeaderMap;

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
    }
}
