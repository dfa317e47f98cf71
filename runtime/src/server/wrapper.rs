//! Handler wrappers: middleware as layers around endpoints.
//!
//! A wrapper is applied once per endpoint when the server starts, so a server without wrappers pays
//! nothing per request, and a wrapper pays only for what it does. Wrappers that ship live in [`crate::wrapper`].

use super::{Endpoint, Handler, Subscriber};
use crate::broker;
use crate::metadata::Metadata;
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

    /// The handler that runs `subscriber`'s messages in place of `inner` (applied when the
    /// service subscribes). The default leaves it as it is.
    fn wrap_subscriber(&self, subscriber: &Subscriber, inner: broker::Handler) -> broker::Handler {
        let _ = subscriber;
        inner
    }

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
