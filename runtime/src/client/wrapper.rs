//! Call wrappers: middleware around every unary call a client makes and every message it
//! publishes, with a hook before every stream it opens.

use std::sync::Arc;

use bytes::Bytes;
use futures_util::future::BoxFuture;

use super::CallOptions;
use crate::broker::Message;
use crate::codec::Codec;
use crate::Error;

/// A unary call at the byte level, as wrappers see it.
#[derive(Debug, Clone)]
pub struct RawCall {
    /// Service name.
    pub service: String,
    /// `Service.Method`.
    pub endpoint: String,
    /// HTTP path the request goes to.
    pub path: String,
    /// Codec of the body and of the reply.
    pub codec: Codec,
    /// The request as one gRPC frame.
    pub body: Bytes,
    /// Call options (metadata, timeout, address, ...).
    pub opts: CallOptions,
}

/// Something that performs calls: the client's transport, or a wrapper around it.
pub trait Caller: Send + Sync + 'static {
    /// Performs the call; returns the reply message bytes.
    fn call(&self, call: RawCall) -> BoxFuture<'_, Result<Bytes, Error>>;
}

/// Something that publishes messages: the client's broker (or proxy), or a wrapper around it.
pub trait Publish: Send + Sync + 'static {
    /// Publishes `message` (its headers complete: topic, id, content type) to `topic`.
    fn publish<'a>(&'a self, topic: &'a str, message: Message) -> BoxFuture<'a, Result<(), Error>>;

    /// What carries the messages (`http`, `nats`, `memory`, `proxy`): `messaging.system` in
    /// metrics and traces. Wrappers answer their inner publisher's.
    fn system(&self) -> &'static str;
}

/// Builds a [`Caller`] around another.
///
/// ```
/// use std::sync::Arc;
/// use micro::client::{CallWrapper, Caller, RawCall};
/// /// Adds a metadata entry to every call.
/// struct Tag(Arc<dyn Caller>);
/// impl Caller for Tag {
///     fn call(&self, mut call: RawCall) -> futures_util::future::BoxFuture<'_, Result<bytes::Bytes, micro::Error>> {
///         call.opts.metadata.insert("x-tag", "1");
///         self.0.call(call)
///     }
/// }
/// struct TagWrapper;
/// impl CallWrapper for TagWrapper {
///     fn wrap(&self, inner: Arc<dyn Caller>) -> Arc<dyn Caller> {
///         Arc::new(Tag(inner))
///     }
/// }
/// ```
pub trait CallWrapper: Send + Sync + 'static {
    /// The caller to use in place of `inner`.
    fn wrap(&self, inner: Arc<dyn Caller>) -> Arc<dyn Caller>;

    /// The publisher to use in place of `inner` for every message the client publishes. The
    /// default leaves it as it is.
    fn wrap_publish(&self, inner: Arc<dyn Publish>) -> Arc<dyn Publish> {
        inner
    }

    /// Runs before every stream the client opens to `path` of `service` (streams do not pass
    /// through a [`Caller`]): it may add to the stream's options (metadata) or refuse it. Does
    /// nothing unless overridden.
    fn before_stream(&self, service: &str, path: &str, opts: &mut CallOptions) -> Result<(), Error> {
        let _ = (service, path, opts);
        Ok(())
    }
}
