//! Handlers: typed functions turned into the byte-level endpoints the server routes to.
//!
//! A unary handler is an async function `Request<Req> -> Result<Resp>`. A streaming handler gets
//! its request (one message, or a [`Streaming`] of them) and a [`ServerStream`] to send replies on;
//! the stream's status is the handler's result. Generated code builds these with [`unary`],
//! [`server_stream`], [`client_stream`] and [`bidi_stream`].

use std::future::Future;
use std::marker::PhantomData;
use std::ops::{Deref, DerefMut};
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Instant;

use bytes::Bytes;
use futures_util::future::BoxFuture;
use http::HeaderMap;
use http_body::Frame;

use super::pipe;
use crate::codec::{Codec, Message, Protocol};
use crate::metadata::Metadata;
use crate::transport::endpoint::{with_deadline, Handler, RawBody, RawRequest, StreamHandler, UnaryHandler};
use crate::transport::grpc::{self, Streaming};
use crate::transport::Body;
use crate::Error;

/// A request as a handler sees it: the message, its metadata and its deadline.
#[derive(Debug)]
pub struct Request<T> {
    message: T,
    metadata: Metadata,
    deadline: Option<Instant>,
}

impl<T> Request<T> {
    /// A request with no metadata and no deadline.
    pub fn new(message: T) -> Self {
        Request { message, metadata: Metadata::new(), deadline: None }
    }

    pub(crate) fn from_parts(message: T, metadata: Metadata, deadline: Option<Instant>) -> Self {
        Request { message, metadata, deadline }
    }

    /// The message.
    pub fn get_ref(&self) -> &T {
        &self.message
    }

    /// The message, mutably.
    pub fn get_mut(&mut self) -> &mut T {
        &mut self.message
    }

    /// Takes the message out.
    pub fn into_inner(self) -> T {
        self.message
    }

    /// The caller's metadata.
    pub fn metadata(&self) -> &Metadata {
        &self.metadata
    }

    /// When the caller stops waiting, if it said.
    pub fn deadline(&self) -> Option<Instant> {
        self.deadline
    }

    /// The same request around another message.
    pub fn map<U>(self, f: impl FnOnce(T) -> U) -> Request<U> {
        Request { message: f(self.message), metadata: self.metadata, deadline: self.deadline }
    }
}

impl<T> Deref for Request<T> {
    type Target = T;
    fn deref(&self) -> &T {
        &self.message
    }
}

impl<T> DerefMut for Request<T> {
    fn deref_mut(&mut self) -> &mut T {
        &mut self.message
    }
}

/// Where a streaming handler sends its replies.
#[derive(Debug)]
pub struct ServerStream<M> {
    tx: pipe::Sender,
    codec: Codec,
    _m: PhantomData<fn(M)>,
}

impl<M> Clone for ServerStream<M> {
    fn clone(&self) -> Self {
        ServerStream { tx: self.tx.clone(), codec: self.codec, _m: PhantomData }
    }
}

impl<M: Message> ServerStream<M> {
    /// Sends one reply; waits while the client is slow. Fails once the client has gone away.
    pub async fn send(&self, msg: M) -> Result<(), Error> {
        std::future::poll_fn(|cx| self.tx.poll_write(cx, |buf| self.codec.encode_framed_into(&msg, buf))).await
    }

    /// Whether the client has gone away.
    pub fn is_closed(&self) -> bool {
        self.tx.is_closed()
    }

    /// Completes when the client has gone away.
    pub async fn closed(&self) {
        self.tx.closed().await
    }
}

struct UnaryFn<F, Req, Resp> {
    f: F,
    _m: PhantomData<fn(Req) -> Resp>,
}

impl<F, Fut, Req, Resp> UnaryHandler for UnaryFn<F, Req, Resp>
where
    F: Fn(Request<Req>) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Result<Resp, Error>> + Send + 'static,
    Req: Message,
    Resp: Message,
{
    fn call(&self, req: RawRequest) -> BoxFuture<'static, Result<Bytes, Error>> {
        let RawBody::Message(bytes) = req.body else {
            return Box::pin(async { Err(Error::internal_server_error(super::ID, "unary handler got a stream")) });
        };
        let msg = match req.codec.decode::<Req>(&bytes) {
            Ok(m) => m,
            Err(e) => return Box::pin(async { Err(e) }),
        };
        let fut = (self.f)(Request::from_parts(msg, req.metadata, req.deadline));
        let (codec, protocol) = (req.codec, req.protocol);
        Box::pin(async move {
            let resp = fut.await?;
            match protocol {
                Protocol::Grpc => codec.encode_framed(&resp),
                Protocol::Http => codec.encode(&resp),
            }
        })
    }
}

/// A unary endpoint from an async function.
pub fn unary<F, Fut, Req, Resp>(f: F) -> Handler
where
    F: Fn(Request<Req>) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Result<Resp, Error>> + Send + 'static,
    Req: Message,
    Resp: Message,
{
    Handler::Unary(Arc::new(UnaryFn { f, _m: PhantomData }))
}

/// A body that drives a streaming handler and carries its replies, then its status. The
/// handler runs inside the body's own poll, and what it sent by then leaves as one frame.
struct DrivenBody {
    fut: Option<BoxFuture<'static, Result<(), Error>>>,
    rx: pipe::Receiver,
    status: Option<Result<(), Error>>,
    done: bool,
}

impl http_body::Body for DrivenBody {
    type Data = Bytes;
    type Error = Error;

    fn poll_frame(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, Error>>> {
        let this = &mut *self;
        if this.done {
            return Poll::Ready(None);
        }
        if let Some(fut) = this.fut.as_mut() {
            if let Poll::Ready(res) = fut.as_mut().poll(cx) {
                this.fut = None;
                this.status = Some(res);
            }
        }
        match this.rx.poll_take(cx) {
            Poll::Ready(Some(replies)) => Poll::Ready(Some(Ok(Frame::data(replies)))),
            Poll::Ready(None) => {
                // Every sender is gone; the handler may still be running without its stream.
                if this.fut.is_some() {
                    return Poll::Pending;
                }
                this.done = true;
                let status = this.status.take().unwrap_or(Ok(()));
                let mut trailers = HeaderMap::new();
                if let Err(e) = &status {
                    tracing::debug!(error = %e, "stream ended with an error");
                }
                grpc::status_headers(status.as_ref().map(|_| ()), &mut trailers);
                Poll::Ready(Some(Ok(Frame::trailers(trailers))))
            }
            Poll::Pending => Poll::Pending,
        }
    }
}

fn driven<Resp, F, Fut>(req: RawRequest, start: F) -> Body
where
    Resp: Message,
    F: FnOnce(RawRequest, ServerStream<Resp>) -> Fut,
    Fut: Future<Output = Result<(), Error>> + Send + 'static,
{
    let (tx, rx) = pipe::pipe();
    let deadline = req.deadline;
    let stream = ServerStream { tx, codec: req.codec, _m: PhantomData };
    let fut = start(req, stream);
    Body::boxed(DrivenBody { fut: Some(Box::pin(with_deadline(deadline, fut))), rx, status: None, done: false })
}

fn request_stream<Req: Message>(req: &mut RawRequest) -> Result<Streaming<Req>, Error> {
    match std::mem::replace(&mut req.body, RawBody::Message(Bytes::new())) {
        RawBody::Stream(body) => Ok(Streaming::server(body, req.codec, req.max_message_size, req.encoding)),
        RawBody::Message(_) => Err(Error::bad_request(super::ID, "streaming endpoints need gRPC")),
    }
}

/// How long what is left of a server stream's request is read after the reply ended.
const DRAIN: std::time::Duration = std::time::Duration::from_secs(10);

/// Runs a server-streaming handler while reading the request body to its end, so that an
/// HTTP/1.1 connection, whose request is then wholly read, stays open for the next request
/// (for at most [`DRAIN`] after the reply: a peer that never ends its request loses the stream).
async fn until_done_reading<Req: Message>(
    handler: impl Future<Output = Result<(), Error>>,
    mut rest: Streaming<Req>,
) -> Result<(), Error> {
    let mut handler = std::pin::pin!(handler);
    let mut reading = true;
    loop {
        tokio::select! {
            res = &mut handler => {
                // What is left of the request is read after the reply, until the peer ends it
                // or the connection goes.
                if reading {
                    let drain = async move { while let Ok(Some(_)) = rest.message().await {} };
                    tokio::spawn(tokio::time::timeout(DRAIN, drain));
                }
                return res;
            }
            next = rest.message(), if reading => reading = matches!(next, Ok(Some(_))),
        }
    }
}

struct StreamFn<F, Req, Resp> {
    f: Arc<F>,
    _m: PhantomData<fn(Req) -> Resp>,
}

struct ServerStreaming;
struct ClientStreaming;
struct BidiStreaming;

struct Kinded<K, F, Req, Resp>(StreamFn<F, Req, Resp>, PhantomData<fn() -> K>);

impl<F, Fut, Req, Resp> StreamHandler for Kinded<ServerStreaming, F, Req, Resp>
where
    F: Fn(Request<Req>, ServerStream<Resp>) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Result<(), Error>> + Send + 'static,
    Req: Message,
    Resp: Message,
{
    fn call(&self, mut req: RawRequest) -> Body {
        let f = self.0.f.clone();
        let incoming = request_stream::<Req>(&mut req);
        driven(req, move |req, stream| async move {
            let mut incoming = incoming?;
            let msg =
                incoming.message().await?.ok_or_else(|| Error::bad_request(super::ID, "missing request message"))?;
            let handler = f(Request::from_parts(msg, req.metadata, req.deadline), stream);
            until_done_reading(handler, incoming).await
        })
    }
}

impl<F, Fut, Req, Resp> StreamHandler for Kinded<ClientStreaming, F, Req, Resp>
where
    F: Fn(Request<Streaming<Req>>) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Result<Resp, Error>> + Send + 'static,
    Req: Message,
    Resp: Message,
{
    fn call(&self, mut req: RawRequest) -> Body {
        let f = self.0.f.clone();
        let incoming = request_stream::<Req>(&mut req);
        driven(req, move |req, stream| async move {
            let reply = f(Request::from_parts(incoming?, req.metadata, req.deadline)).await?;
            stream.send(reply).await
        })
    }
}

impl<F, Fut, Req, Resp> StreamHandler for Kinded<BidiStreaming, F, Req, Resp>
where
    F: Fn(Request<Streaming<Req>>, ServerStream<Resp>) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Result<(), Error>> + Send + 'static,
    Req: Message,
    Resp: Message,
{
    fn call(&self, mut req: RawRequest) -> Body {
        let f = self.0.f.clone();
        let incoming = request_stream::<Req>(&mut req);
        driven(req, move |req, stream| async move {
            f(Request::from_parts(incoming?, req.metadata, req.deadline), stream).await
        })
    }
}

fn kinded<K: 'static, F, Req: Message, Resp: Message>(f: F) -> Handler
where
    Kinded<K, F, Req, Resp>: StreamHandler,
{
    Handler::Stream(Arc::new(Kinded::<K, F, Req, Resp>(StreamFn { f: Arc::new(f), _m: PhantomData }, PhantomData)))
}

/// A server-streaming endpoint: one request in, replies sent on the [`ServerStream`].
pub fn server_stream<F, Fut, Req, Resp>(f: F) -> Handler
where
    F: Fn(Request<Req>, ServerStream<Resp>) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Result<(), Error>> + Send + 'static,
    Req: Message,
    Resp: Message,
{
    kinded::<ServerStreaming, F, Req, Resp>(f)
}

/// A client-streaming endpoint: a [`Streaming`] of requests in, one reply out.
pub fn client_stream<F, Fut, Req, Resp>(f: F) -> Handler
where
    F: Fn(Request<Streaming<Req>>) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Result<Resp, Error>> + Send + 'static,
    Req: Message,
    Resp: Message,
{
    kinded::<ClientStreaming, F, Req, Resp>(f)
}

/// A bidirectional endpoint: a [`Streaming`] of requests in, replies sent on the [`ServerStream`].
pub fn bidi_stream<F, Fut, Req, Resp>(f: F) -> Handler
where
    F: Fn(Request<Streaming<Req>>, ServerStream<Resp>) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Result<(), Error>> + Send + 'static,
    Req: Message,
    Resp: Message,
{
    kinded::<BidiStreaming, F, Req, Resp>(f)
}
