//! A gRPC channel to one fixed address, as tonic's `client::Grpc<T>`: unary calls and streams
//! over the connection [`Pool`] and [`grpc`] framing.
//!
//! The client makes one per attempt once its selector has picked a node; the etcd registry makes
//! one per etcd address. A channel borrows everything it names, so making one costs nothing.

use std::time::Duration;

use bytes::Bytes;
use http::{HeaderMap, HeaderValue, StatusCode};
use http_body::Frame;
use http_body_util::{BodyExt, Limited};
use tokio::sync::mpsc;

use super::compression::Encoding;
use super::grpc::{self, Streaming};
use super::http::Pool;
use super::Body;
use crate::codec::{Codec, Decode, Message, Protocol};
use crate::error::CLIENT_ID;
use crate::metadata::Metadata;
use crate::Error;

/// Calls to one address.
#[derive(Clone, Copy)]
pub struct Channel<'a> {
    /// The connections to reuse.
    pub pool: &'a Pool,
    /// `host:port`.
    pub address: &'a str,
    /// Whether the address is reached over TLS.
    pub secure: bool,
    /// How long connecting may take.
    pub connect_timeout: Duration,
    /// Largest reply accepted.
    pub max_message_size: usize,
    /// Who answers, as errors name it (the service).
    pub peer: &'a str,
}

impl Channel<'_> {
    /// A unary call with a request already framed; returns the reply message, unframed.
    pub async fn unary_raw(
        &self,
        path: &str,
        codec: Codec,
        metadata: &Metadata,
        timeout: Duration,
        framed: Bytes,
    ) -> Result<Bytes, Error> {
        self.unary_encoded(path, codec, metadata, timeout, framed, Encoding::Identity).await
    }

    /// [`Channel::unary_raw`] with a request framed in `encoding` (`grpc-encoding` says which).
    pub async fn unary_encoded(
        &self,
        path: &str,
        codec: Codec,
        metadata: &Metadata,
        timeout: Duration,
        framed: Bytes,
        encoding: Encoding,
    ) -> Result<Bytes, Error> {
        let mut req = build_request(self.address, path, codec, metadata, Some(timeout), Body::full(framed))?;
        if encoding != Encoding::Identity {
            // A caller that compresses takes compressed replies too.
            req.headers_mut().insert("grpc-encoding", HeaderValue::from_static(encoding.name()));
            req.headers_mut().insert("grpc-accept-encoding", HeaderValue::from_static(encoding.name()));
        }
        let resp = self.pool.send(self.address, self.secure, req, timeout.min(self.connect_timeout)).await?;
        // A peer may compress its reply as it was asked (grpc-go answers in the request's encoding).
        let named = resp.headers().get("grpc-encoding").map(|v| v.to_str().unwrap_or("?"));
        let Some(reply_encoding) = Encoding::parse(named) else {
            return Err(super::compression::unsupported(named.unwrap_or_default()));
        };
        let Some(body) = check_head(self.peer, resp)? else {
            return Err(Error::internal_server_error(self.peer, "reply without a message"));
        };
        let max = self.max_message_size;
        let collected = Limited::new(body, max + 5).collect().await.map_err(|e| {
            if e.is::<http_body_util::LengthLimitError>() {
                grpc::too_large(max + 1, max)
            } else {
                Error::unavailable(CLIENT_ID, format!("{}: reading the reply: {e}", self.address))
            }
        })?;
        let trailers = collected.trailers().cloned().unwrap_or_else(HeaderMap::new);
        match grpc::status_from_headers(&trailers, self.peer) {
            Some(Ok(())) => grpc::unframe_one_encoded(collected.to_bytes(), max, reply_encoding),
            Some(Err(e)) => Err(e),
            None => Err(Error::internal_server_error(self.peer, "reply ended without a gRPC status")),
        }
    }

    /// A typed unary call in protobuf, cut off after `timeout`.
    pub async fn unary<Req: Message, Resp: Message>(
        &self,
        path: &str,
        req: &Req,
        metadata: &Metadata,
        timeout: Duration,
    ) -> Result<Resp, Error> {
        let framed = Codec::Proto.encode_framed(req)?;
        let reply = tokio::time::timeout(timeout, self.unary_raw(path, Codec::Proto, metadata, timeout, framed))
            .await
            .map_err(|_| {
                Error::timeout(CLIENT_ID, format!("{path} at {} timed out after {timeout:?}", self.address))
            })??;
        Codec::Proto.decode(&reply)
    }

    /// Opens a stream to `path`: the sender of request messages and the replies. Fails when the
    /// address cannot be reached within the connect timeout.
    pub async fn open<Req, Resp: Decode>(
        &self,
        path: &str,
        codec: Codec,
        metadata: &Metadata,
        timeout: Option<Duration>,
    ) -> Result<(Sender<Req>, Streaming<Resp>), Error> {
        let mut sender = self.pool.get(self.address, self.secure, self.connect_timeout).await?;
        let (tx, rx) = mpsc::channel(16);
        let req = build_request(self.address, path, codec, metadata, timeout, Body::channel(rx))?;
        let response = sender.send_request(req);
        let peer = self.peer.to_string();
        let what = path.trim_start_matches('/').to_string();
        let fut: grpc::ResponseFuture = Box::pin(async move {
            let resp = response.await.map_err(|e| Error::unavailable(CLIENT_ID, format!("{what}: {e}")))?;
            Ok(check_head(&peer, resp)?.map(grpc::stream_body))
        });
        Ok((Sender::new(tx, codec), Streaming::client(fut, codec, self.max_message_size, self.peer.to_string())))
    }
}

/// The sending half of a client or bidirectional stream. Dropping it (or [`Sender::close`])
/// ends the request stream.
#[derive(Debug)]
pub struct Sender<M> {
    tx: mpsc::Sender<Frame<Bytes>>,
    codec: Codec,
    _m: std::marker::PhantomData<fn(M)>,
}

impl<M> Sender<M> {
    /// A sender of `codec` messages into `tx`.
    pub(crate) fn new(tx: mpsc::Sender<Frame<Bytes>>, codec: Codec) -> Self {
        Sender { tx, codec, _m: std::marker::PhantomData }
    }

    pub(crate) async fn send_raw(&self, frame: Bytes) -> Result<(), Error> {
        self.tx.send(Frame::data(frame)).await.map_err(|_| Error::new(CLIENT_ID, 499, "the stream is closed"))
    }

    /// Ends the request stream.
    pub fn close(self) {}
}

impl<M: Message> Sender<M> {
    /// Sends one request.
    pub async fn send(&self, msg: M) -> Result<(), Error> {
        self.send_raw(self.codec.encode_framed(&msg)?).await
    }
}

impl Sender<crate::codec::RawMessage> {
    /// Sends one request already encoded with the stream's codec.
    pub async fn send_bytes(&self, message: &[u8]) -> Result<(), Error> {
        self.send_raw(grpc::frame(message)).await
    }
}

/// A gRPC request to `path` at `address`: content type, `te: trailers`, `grpc-timeout` and the
/// metadata.
fn build_request(
    address: &str,
    path: &str,
    codec: Codec,
    metadata: &Metadata,
    timeout: Option<Duration>,
    body: Body,
) -> Result<http::Request<Body>, Error> {
    let mut req = http::Request::new(body);
    *req.method_mut() = http::Method::POST;
    *req.uri_mut() = http::Uri::builder()
        .scheme("http")
        .authority(address)
        .path_and_query(path)
        .build()
        .map_err(|e| Error::bad_request(CLIENT_ID, format!("invalid endpoint path {path:?}: {e}")))?;
    let h = req.headers_mut();
    h.insert(http::header::CONTENT_TYPE, HeaderValue::from_static(codec.content_type(Protocol::Grpc)));
    h.insert(http::header::TE, HeaderValue::from_static("trailers"));
    if let Some(t) = timeout {
        if let Ok(v) = HeaderValue::from_str(&grpc::format_timeout(t)) {
            h.insert("grpc-timeout", v);
        }
    }
    metadata.write_to(h);
    Ok(req)
}

/// Checks the head of a gRPC response; returns the body to read, or `None` for a trailers-only OK.
fn check_head(peer: &str, resp: http::Response<hyper::body::Incoming>) -> Result<Option<hyper::body::Incoming>, Error> {
    let (parts, body) = resp.into_parts();
    if parts.status != StatusCode::OK {
        return Err(Error::new(peer, parts.status.as_u16(), format!("HTTP status {}", parts.status)));
    }
    match grpc::status_from_headers(&parts.headers, peer) {
        Some(Ok(())) => Ok(None),
        Some(Err(e)) => Err(e),
        None => Ok(Some(body)),
    }
}
