//! The NATS transport (feature `nats`): calls travel as NATS messages, so a service needs no open
//! port. A node listens on the subject `micro.node.<node-id>` (its registry address; node
//! metadata `transport=nats`), and clients pick this transport for such nodes.
//!
//! **Unary**: a NATS request whose headers carry `Micro-Path`, `Content-Type`, `Micro-Timeout`
//! (milliseconds) and the call's metadata; the reply carries the message, or `Micro-Error` with
//! the error JSON. **Streams**: the client publishes an opening message (`Micro-Stream: 1`) with
//! its inbox as reply subject; the server answers with the inbox it reads requests from
//! (`Micro-Stream-Inbox`). Then each side publishes one NATS message per stream message, in
//! order, and `Micro-End: 1` ends a side; the server's end carries the call's status.

use std::pin::Pin;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use futures_util::StreamExt;
use http::HeaderMap;
use http_body::{Body as _, Frame};
use tokio::sync::{mpsc, OnceCell};

use super::endpoint::{invoke_unary, Handler, RawBody, RawRequest, StreamHandler, UnaryHandler};
use super::grpc::{self, FrameDecoder};
use super::Body;
use crate::codec::{Codec, Protocol};
use crate::metadata::Metadata;
use crate::Error;

/// The id of errors reaching the NATS servers (the transport's and the broker's connection).
const NATS_ID: &str = "go.micro.nats";

const PATH: &str = "Micro-Path";
const STREAM: &str = "Micro-Stream";
const STREAM_INBOX: &str = "Micro-Stream-Inbox";
const END: &str = "Micro-End";
const ERROR: &str = "Micro-Error";
const TIMEOUT: &str = "Micro-Timeout";
const CONTENT_TYPE: &str = "Content-Type";
const RESERVED: &[&str] = &[PATH, STREAM, STREAM_INBOX, END, ERROR, TIMEOUT, CONTENT_TYPE];

fn err(detail: impl std::fmt::Display) -> Error {
    Error::unavailable(crate::error::CLIENT_ID, format!("nats transport: {detail}"))
}

/// The subject a node listens on.
pub fn node_subject(node_id: &str) -> String {
    format!("micro.node.{}", node_id.replace([' ', '*', '>'], "_"))
}

/// A lazily made NATS connection (used by the NATS transport and the NATS broker). It retries
/// at start and reconnects forever after the server goes away.
#[derive(Debug)]
pub struct Connection {
    addresses: Vec<String>,
    client: OnceCell<async_nats::Client>,
}

impl Connection {
    /// A connection to the NATS servers at `addresses` (`127.0.0.1:4222` when empty).
    pub fn new(addresses: &[String]) -> Self {
        let mut addresses: Vec<String> =
            addresses.iter().map(|a| a.trim().to_string()).filter(|a| !a.is_empty()).collect();
        if addresses.is_empty() {
            addresses.push("127.0.0.1:4222".into());
        }
        Connection { addresses, client: OnceCell::new() }
    }

    /// Whether the connection is up now: an error says why not (never made, or reconnecting).
    pub fn check(&self) -> Result<(), String> {
        match self.client.get().map(async_nats::Client::connection_state) {
            Some(async_nats::connection::State::Connected) => Ok(()),
            Some(_) => Err(format!("reconnecting to nats at {}", self.addresses.join(","))),
            None => Err(format!("not connected to nats at {} yet", self.addresses.join(","))),
        }
    }

    /// The connection, made on first use.
    pub async fn get(&self) -> Result<&async_nats::Client, Error> {
        if let Some(client) = self.client.get() {
            return Ok(client);
        }
        // Boxed: connecting is a future of many kilobytes, which every caller's future (each
        // publish, each call) would otherwise carry and move.
        self.client.get_or_try_init(|| Box::pin(self.connect())).await
    }

    async fn connect(&self) -> Result<async_nats::Client, Error> {
        let urls: Vec<async_nats::ServerAddr> = self
            .addresses
            .iter()
            .map(|a| {
                let url = if a.contains("://") { a.clone() } else { format!("nats://{a}") };
                url.parse::<async_nats::ServerAddr>().map_err(|e| err(format!("address {a:?}: {e}")))
            })
            .collect::<Result<_, _>>()?;
        let unreachable =
            |what: String| Error::unavailable(NATS_ID, format!("nats at {}: {what}", self.addresses.join(",")));
        tokio::time::timeout(
            Duration::from_secs(5),
            async_nats::ConnectOptions::new()
                .name("micro")
                .max_reconnects(None)
                .reconnect_delay_callback(|n| Duration::from_millis((100 * n as u64).min(2000)))
                .connect(urls),
        )
        .await
        .map_err(|_| unreachable("no answer within 5s".into()))?
        .map_err(|e| unreachable(format!("cannot connect: {e}")))
    }
}

fn header<'a>(h: Option<&'a async_nats::HeaderMap>, key: &str) -> Option<&'a str> {
    h?.get(key).map(|v| v.as_str())
}

fn metadata_of(h: Option<&async_nats::HeaderMap>) -> Metadata {
    let mut md = Metadata::new();
    if let Some(h) = h {
        for (k, v) in h.iter() {
            let k = k.to_string();
            if RESERVED.iter().any(|r| r.eq_ignore_ascii_case(&k)) {
                continue;
            }
            if let Some(v) = v.first() {
                md.insert(&k, v.as_str());
            }
        }
    }
    md
}

fn status_headers(result: Result<(), &Error>) -> async_nats::HeaderMap {
    let mut h = async_nats::HeaderMap::new();
    h.insert(END, "1");
    if let Err(e) = result {
        h.insert(ERROR, e.to_json().as_str());
    }
    h
}

/// What the server side needs from a server: its routes.
pub trait Router: Send + Sync + 'static {
    /// The handler of a path.
    fn handler(&self, path: &str) -> Option<Handler>;
    /// Largest message accepted.
    fn max_message_size(&self) -> usize;
}

/// A server listening on NATS; dropping it stops listening.
pub struct Listening {
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Listening {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Serves `router` on `subject`.
pub async fn serve<R: Router>(conn: &Connection, subject: &str, router: Arc<R>) -> Result<Listening, Error> {
    let client = conn.get().await?.clone();
    let mut sub = client.subscribe(subject.to_string()).await.map_err(err)?;
    let task = tokio::spawn(async move {
        while let Some(msg) = sub.next().await {
            let (client, router) = (client.clone(), router.clone());
            tokio::spawn(async move { serve_one(client, router, msg).await });
        }
    });
    Ok(Listening { task })
}

async fn serve_one<R: Router>(client: async_nats::Client, router: Arc<R>, msg: async_nats::Message) {
    let Some(reply) = msg.reply.clone() else { return };
    let h = msg.headers.as_ref();
    let codec = header(h, CONTENT_TYPE).and_then(Codec::from_content_type).map_or(Codec::Proto, |(c, _)| c);
    let deadline =
        header(h, TIMEOUT).and_then(|t| t.parse::<u64>().ok()).map(|ms| Instant::now() + Duration::from_millis(ms));
    let metadata = metadata_of(h);
    let path = header(h, PATH).unwrap_or("").to_string();
    let Some(handler) = router.handler(&path) else {
        let e = Error::not_found("", format!("unknown endpoint {}", path.trim_start_matches('/')));
        let _ = client.publish_with_headers(reply, status_headers(Err(&e)), Bytes::new()).await;
        return;
    };
    let max = router.max_message_size();
    let req = RawRequest {
        codec,
        protocol: Protocol::Http,
        metadata,
        deadline,
        max_message_size: max,
        encoding: super::compression::Encoding::Identity,
        body: RawBody::Message(Bytes::new()),
    };
    match handler {
        Handler::Unary(h) => serve_unary(&client, reply, &*h, req, msg.payload).await,
        Handler::Stream(h) => serve_stream(&client, reply, &*h, req).await,
    }
}

/// Answers a unary call with one reply message.
async fn serve_unary(
    client: &async_nats::Client,
    reply: async_nats::Subject,
    h: &dyn UnaryHandler,
    mut req: RawRequest,
    payload: Bytes,
) {
    if payload.len() > req.max_message_size {
        let e = grpc::too_large(payload.len(), req.max_message_size);
        let _ = client.publish_with_headers(reply, status_headers(Err(&e)), Bytes::new()).await;
        return;
    }
    req.body = RawBody::Message(payload);
    let _ = match invoke_unary(h, req).await {
        Ok(bytes) => client.publish_with_headers(reply, status_headers(Ok(())), bytes).await,
        Err(e) => client.publish_with_headers(reply, status_headers(Err(&e)), Bytes::new()).await,
    };
}

/// Runs a stream: tells the caller the inbox its requests go to, feeds them to the handler,
/// and publishes each reply, then the status.
async fn serve_stream(
    client: &async_nats::Client,
    reply: async_nats::Subject,
    h: &dyn StreamHandler,
    mut req: RawRequest,
) {
    let inbox = client.new_inbox();
    let Ok(mut requests) = client.subscribe(inbox.clone()).await else { return };
    let mut hs = async_nats::HeaderMap::new();
    hs.insert(STREAM_INBOX, inbox.as_str());
    if client.publish_with_headers(reply.clone(), hs, Bytes::new()).await.is_err() {
        return;
    }
    let (tx, rx) = mpsc::channel::<Frame<Bytes>>(16);
    tokio::spawn(async move {
        while let Some(m) = requests.next().await {
            if header(m.headers.as_ref(), END).is_some() {
                break;
            }
            if tx.send(Frame::data(grpc::frame(&m.payload))).await.is_err() {
                break;
            }
        }
    });
    req.protocol = Protocol::Grpc;
    req.body = RawBody::Stream(grpc::stream_body(Body::channel(rx)));
    let mut body = h.call(req);
    let mut decoder = FrameDecoder::new();
    let status = loop {
        match std::future::poll_fn(|cx| Pin::new(&mut body).poll_frame(cx)).await {
            Some(Ok(frame)) => match frame.into_data() {
                Ok(data) => {
                    decoder.push(data);
                    while let Ok(Some(m)) = decoder.next_message(usize::MAX) {
                        let _ = client.publish(reply.clone(), m).await;
                    }
                }
                Err(frame) => {
                    let trailers = frame.into_trailers().unwrap_or_default();
                    break grpc::status_from_headers(&trailers, "").unwrap_or(Ok(()));
                }
            },
            Some(Err(e)) => break Err(Error::internal_server_error("", e)),
            None => break Ok(()),
        }
    };
    let _ = client.publish_with_headers(reply, status_headers(status.as_ref().map(|_| ())), Bytes::new()).await;
}

fn request_headers(path: &str, codec: Codec, metadata: &Metadata, timeout: Option<Duration>) -> async_nats::HeaderMap {
    let mut h = async_nats::HeaderMap::new();
    h.insert(PATH, path);
    h.insert(CONTENT_TYPE, codec.content_type(Protocol::Http));
    if let Some(t) = timeout {
        h.insert(TIMEOUT, t.as_millis().to_string().as_str());
    }
    for (k, v) in metadata.iter() {
        h.insert(k, v);
    }
    h
}

fn reply_error(h: Option<&async_nats::HeaderMap>, peer: &str) -> Option<Error> {
    header(h, ERROR).map(|json| Error::from_json(json).unwrap_or_else(|| Error::internal_server_error(peer, json)))
}

/// A unary call over NATS; `message` is unframed.
pub async fn unary(
    conn: &Connection,
    subject: &str,
    path: &str,
    codec: Codec,
    message: Bytes,
    metadata: &Metadata,
    timeout: Duration,
) -> Result<Bytes, Error> {
    let client = conn.get().await?;
    let req = client.request_with_headers(
        subject.to_string(),
        request_headers(path, codec, metadata, Some(timeout)),
        message,
    );
    let reply = match tokio::time::timeout(timeout, req).await {
        Ok(Ok(r)) => r,
        Ok(Err(e)) => return Err(err(format!("{subject}: {e}"))),
        Err(_) => {
            return Err(Error::timeout(crate::error::CLIENT_ID, format!("{subject} did not answer within {timeout:?}")))
        }
    };
    match reply_error(reply.headers.as_ref(), subject) {
        Some(e) => Err(e),
        None => Ok(reply.payload),
    }
}

/// Opens a stream over NATS. Returns where to send framed requests, and the body of framed
/// replies ending in status trailers.
pub async fn open(
    conn: &Connection,
    subject: &str,
    path: &str,
    codec: Codec,
    metadata: &Metadata,
) -> Result<(mpsc::Sender<Frame<Bytes>>, Body), Error> {
    let client = conn.get().await?.clone();
    let inbox = client.new_inbox();
    let mut replies = client.subscribe(inbox.clone()).await.map_err(err)?;
    let mut h = request_headers(path, codec, metadata, None);
    h.insert(STREAM, "1");
    client.publish_with_reply_and_headers(subject.to_string(), inbox, h, Bytes::new()).await.map_err(err)?;
    let hello = tokio::time::timeout(Duration::from_secs(5), replies.next())
        .await
        .map_err(|_| err(format!("{subject} did not open the stream")))?
        .ok_or_else(|| err("the stream closed before it opened"))?;
    if let Some(e) = reply_error(hello.headers.as_ref(), subject) {
        return Err(e);
    }
    let server_inbox = header(hello.headers.as_ref(), STREAM_INBOX)
        .ok_or_else(|| err(format!("{subject} answered without a stream inbox")))?
        .to_string();

    let (req_tx, mut req_rx) = mpsc::channel::<Frame<Bytes>>(16);
    let sender = client.clone();
    tokio::spawn(async move {
        let mut decoder = FrameDecoder::new();
        while let Some(frame) = req_rx.recv().await {
            if let Ok(data) = frame.into_data() {
                decoder.push(data);
                while let Ok(Some(m)) = decoder.next_message(usize::MAX) {
                    let _ = sender.publish(server_inbox.clone(), m).await;
                }
            }
        }
        let mut end = async_nats::HeaderMap::new();
        end.insert(END, "1");
        let _ = sender.publish_with_headers(server_inbox, end, Bytes::new()).await;
    });

    let (body_tx, body_rx) = mpsc::channel::<Frame<Bytes>>(16);
    let peer = subject.to_string();
    tokio::spawn(async move {
        while let Some(m) = replies.next().await {
            let h = m.headers.as_ref();
            if header(h, END).is_some() {
                let mut trailers = HeaderMap::new();
                let e = reply_error(h, &peer);
                grpc::status_headers(e.as_ref().map_or(Ok(()), Err), &mut trailers);
                let _ = body_tx.send(Frame::trailers(trailers)).await;
                return;
            }
            if body_tx.send(Frame::data(grpc::frame(&m.payload))).await.is_err() {
                return;
            }
        }
    });
    Ok((req_tx, Body::channel(body_rx)))
}
