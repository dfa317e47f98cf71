//! Endpoints at the byte level: what a transport hands a server's handlers and gets back.
//!
//! A transport (HTTP/2 and HTTP/1 in [`super::http`], NATS in `nats`) turns what arrives into a
//! [`RawRequest`] and calls the [`Handler`] the server routed it to; typed handlers (the server's
//! `unary`, `server_stream`, ...) are built on these traits. The caller's deadline is one layer,
//! [`with_deadline`], that [`invoke_unary`] and the server's stream driver both apply.

use std::future::Future;
use std::sync::Arc;
use std::time::Instant;

use bytes::Bytes;
use futures_util::future::BoxFuture;

use super::Body;
use crate::codec::{Codec, Protocol};
use crate::metadata::Metadata;
use crate::Error;

/// Everything a byte-level handler gets.
pub struct RawRequest {
    /// The codec of the request (and of the reply).
    pub codec: Codec,
    /// gRPC or plain HTTP.
    pub protocol: Protocol,
    /// Request metadata.
    pub metadata: Metadata,
    /// The caller's deadline.
    pub deadline: Option<Instant>,
    /// Largest message accepted.
    pub max_message_size: usize,
    /// How the compressed messages of a streaming body are compressed.
    pub encoding: super::compression::Encoding,
    /// The body: one whole message for unary calls, a stream of frames otherwise.
    pub body: RawBody,
}

/// The body of a [`RawRequest`].
pub enum RawBody {
    /// A unary request's message, unframed.
    Message(Bytes),
    /// A streaming request's body of gRPC frames.
    Stream(super::grpc::StreamBody),
}

/// A unary endpoint at the byte level: message bytes in, encoded reply out.
pub trait UnaryHandler: Send + Sync + 'static {
    /// Decodes, handles and encodes; the reply is framed when the protocol is gRPC.
    fn call(&self, req: RawRequest) -> BoxFuture<'static, Result<Bytes, Error>>;
}

/// A streaming endpoint at the byte level: it answers with a body of frames ending in trailers.
pub trait StreamHandler: Send + Sync + 'static {
    /// Starts the call; the returned body drives the handler.
    fn call(&self, req: RawRequest) -> Body;
}

/// How an endpoint is called.
#[derive(Clone)]
pub enum Handler {
    /// One request, one reply.
    Unary(Arc<dyn UnaryHandler>),
    /// Any of the three streaming kinds.
    Stream(Arc<dyn StreamHandler>),
}

/// Calls a unary endpoint under the request's deadline.
pub fn invoke_unary(
    handler: &dyn UnaryHandler,
    req: RawRequest,
) -> impl Future<Output = Result<Bytes, Error>> + Send + 'static {
    let deadline = req.deadline;
    with_deadline(deadline, handler.call(req))
}

fn deadline_error() -> Error {
    Error::timeout(crate::error::SERVER_ID, "deadline exceeded")
}

/// Runs `fut` until the deadline, if there is one; past it, the call fails with 408 (gRPC
/// `DEADLINE_EXCEEDED`). Both transports put every handler call under this one layer.
pub async fn with_deadline<T>(
    deadline: Option<Instant>,
    fut: impl Future<Output = Result<T, Error>>,
) -> Result<T, Error> {
    match deadline {
        None => fut.await,
        Some(d) => tokio::time::timeout_at(d.into(), fut).await.unwrap_or_else(|_| Err(deadline_error())),
    }
}
