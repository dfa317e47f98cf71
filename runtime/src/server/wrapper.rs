//! Handler wrappers: middleware as layers around endpoints.
//!
//! A wrapper is applied once per endpoint when the server starts, so a server without wrappers pays
//! nothing per request, and a wrapper pays only for what it does. [`TracingWrapper`] ships.

use std::sync::Arc;
use std::time::Instant;

use bytes::Bytes;
use futures_util::future::BoxFuture;

use super::{Endpoint, Handler, RawRequest, StreamHandler, UnaryHandler};
use crate::metadata::Metadata;
use crate::transport::Body;
use crate::Error;

/// Wraps the handler of an endpoint; returns the handler to use instead.
///
/// ```
/// use micro::server::{Endpoint, Handler, HandlerWrapper};
/// /// Turns every endpoint off.
/// struct Closed;
/// impl HandlerWrapper for Closed {
///     fn wrap(&self, _endpoint: &Endpoint, _inner: Handler) -> Handler {
///         micro::server::unary(|_req: micro::Request<()>| async {
///             Err::<(), _>(micro::Error::unavailable("closed", "closed for maintenance"))
///         })
///     }
/// }
/// ```
pub trait HandlerWrapper: Send + Sync + 'static {
    /// The handler that answers `endpoint` in place of `inner`.
    fn wrap(&self, endpoint: &Endpoint, inner: Handler) -> Handler;

    /// Checks a request that reaches no endpoint before it is served: a broker message posted to
    /// the node's inbox (`POST /_sub/<topic>`) or a web page ([`Server::serve_web`]). `path` is
    /// the request's path. An error refuses the request with that error; wrappers that guard
    /// access (auth) refuse here what they refuse on endpoints. The default admits everything.
    ///
    /// [`Server::serve_web`]: super::Server::serve_web
    fn admit(&self, path: &str, metadata: &Metadata) -> Result<(), Error> {
        let _ = (path, metadata);
        Ok(())
    }
}

/// Logs every call with its endpoint, duration and outcome (at debug level; errors at info).
#[derive(Debug, Clone, Copy, Default)]
pub struct TracingWrapper;

struct TracedUnary {
    endpoint: Arc<str>,
    inner: Arc<dyn UnaryHandler>,
}

impl UnaryHandler for TracedUnary {
    fn call(&self, req: RawRequest) -> BoxFuture<'static, Result<Bytes, Error>> {
        let endpoint = self.endpoint.clone();
        let fut = self.inner.call(req);
        Box::pin(async move {
            let start = Instant::now();
            let res = fut.await;
            match &res {
                Ok(_) => tracing::debug!(%endpoint, elapsed = ?start.elapsed(), "ok"),
                Err(e) => {
                    tracing::info!(%endpoint, elapsed = ?start.elapsed(), code = e.code, detail = %e.detail, "error")
                }
            }
            res
        })
    }
}

struct TracedStream {
    endpoint: Arc<str>,
    inner: Arc<dyn StreamHandler>,
}

impl StreamHandler for TracedStream {
    fn call(&self, req: RawRequest) -> Body {
        tracing::debug!(endpoint = %self.endpoint, "stream opened");
        self.inner.call(req)
    }
}

impl HandlerWrapper for TracingWrapper {
    fn wrap(&self, endpoint: &Endpoint, inner: Handler) -> Handler {
        let name: Arc<str> = endpoint.name.as_str().into();
        match inner {
            Handler::Unary(inner) => Handler::Unary(Arc::new(TracedUnary { endpoint: name, inner })),
            Handler::Stream(inner) => Handler::Stream(Arc::new(TracedStream { endpoint: name, inner })),
        }
    }
}
