//! One server connection from its first byte to its close: protocol detection with a deadline,
//! HTTP/1 or HTTP/2 served by hyper with the limits of [`ServeOptions`], and the idle timeout.
//!
//! hyper-util's `auto` builder detects the protocol too, but without a deadline (a peer that
//! sends `PRI * HTTP` and waits holds the connection forever), so detection is done here: read
//! until the bytes either are the HTTP/2 preface or cannot be, then hand them back to hyper in
//! front of the rest of the stream ([`Rewind`]).
//!
//! The idle timeout counts requests, not bytes: each request marks the connection busy until its
//! response body is dropped. Every `idle_timeout` a watchdog task looks at the connection; one with
//! nothing in flight, and no request started or ended since the last look, is shut down
//! gracefully. The watchdog is a
//! task of its own, so the connection's task polls no timer per request. HTTP/1 connections are
//! also bounded by hyper's header read timeout, which runs while a keep-alive connection waits for
//! its next request.

use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http_body::{Frame, SizeHint};
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, ReadBuf};
use tokio::sync::watch;

use super::http::{Dispatch, ServeOptions};
use super::Body;
use crate::Error;

/// The HTTP/2 connection preface (RFC 9113 §3.4).
const PREFACE: &[u8; 24] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

/// The address of the peer, in a request's extensions when [`ServeOptions::remote_addr`] is set.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RemoteAddr(pub SocketAddr);

/// What the first bytes of a connection said.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Detected {
    /// The HTTP/2 preface.
    Http2,
    /// Anything else (served as HTTP/1, which answers garbage with 400).
    Http1,
    /// The peer closed before saying anything.
    Closed,
}

/// Reads until the bytes are the HTTP/2 preface or cannot be (at most 24 bytes); returns what
/// they said and the bytes read, to be replayed.
pub(crate) async fn detect<IO: AsyncRead + Unpin>(io: &mut IO) -> std::io::Result<(Detected, Vec<u8>)> {
    let mut buf = [0u8; PREFACE.len()];
    let mut filled = 0;
    loop {
        let n = io.read(&mut buf[filled..]).await?;
        if n == 0 {
            let seen = if filled == 0 { Detected::Closed } else { Detected::Http1 };
            return Ok((seen, buf[..filled].to_vec()));
        }
        filled += n;
        if buf[..filled] != PREFACE[..filled] {
            return Ok((Detected::Http1, buf[..filled].to_vec()));
        }
        if filled == PREFACE.len() {
            return Ok((Detected::Http2, buf.to_vec()));
        }
    }
}

/// A stream that yields `prefix` before the bytes of `inner`.
pub(crate) struct Rewind<IO> {
    prefix: Option<Bytes>,
    inner: IO,
}

impl<IO> Rewind<IO> {
    pub(crate) fn new(prefix: Vec<u8>, inner: IO) -> Self {
        Rewind { prefix: (!prefix.is_empty()).then(|| Bytes::from(prefix)), inner }
    }
}

impl<IO: AsyncRead + Unpin> AsyncRead for Rewind<IO> {
    fn poll_read(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<std::io::Result<()>> {
        if let Some(mut prefix) = self.prefix.take() {
            let n = prefix.len().min(buf.remaining());
            buf.put_slice(&prefix.split_to(n));
            if !prefix.is_empty() {
                self.prefix = Some(prefix);
            }
            return Poll::Ready(Ok(()));
        }
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl<IO: AsyncWrite + Unpin> AsyncWrite for Rewind<IO> {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }
    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write_vectored(cx, bufs)
    }
    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }
    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }
    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

/// Requests of one connection: how many are in flight, and how many ever started or ended.
#[derive(Default)]
struct Activity {
    in_flight: AtomicUsize,
    /// Requests started plus requests ended: unchanged over a whole idle period means idle.
    events: AtomicUsize,
}

/// Marks a request in flight until dropped (with the response body).
struct InFlight(Arc<Activity>);

impl InFlight {
    fn new(activity: &Arc<Activity>) -> Self {
        activity.in_flight.fetch_add(1, Ordering::Relaxed);
        activity.events.fetch_add(1, Ordering::Relaxed);
        InFlight(activity.clone())
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.in_flight.fetch_sub(1, Ordering::Relaxed);
        self.0.events.fetch_add(1, Ordering::Relaxed);
    }
}

/// A response body that keeps its request counted as in flight.
pub(crate) struct Tracked {
    inner: Body,
    _in_flight: InFlight,
}

impl http_body::Body for Tracked {
    type Data = Bytes;
    type Error = Error;

    fn poll_frame(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, Error>>> {
        Pin::new(&mut self.inner).poll_frame(cx)
    }
    fn is_end_stream(&self) -> bool {
        http_body::Body::is_end_stream(&self.inner)
    }
    fn size_hint(&self) -> SizeHint {
        http_body::Body::size_hint(&self.inner)
    }
}

/// Serves one connection (TLS already done) until it ends, the server shuts down gracefully
/// (in-flight requests finish), or it stays idle too long.
pub(crate) async fn serve<D, IO>(
    mut stream: IO,
    peer: Option<SocketAddr>,
    slot: super::http::Connection,
    dispatch: Arc<D>,
    opts: &ServeOptions,
    mut graceful: watch::Receiver<bool>,
) where
    D: Dispatch,
    IO: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let (detected, prefix) = match tokio::time::timeout(opts.header_read_timeout, detect(&mut stream)).await {
        Ok(Ok((Detected::Closed, _))) | Ok(Err(_)) => return,
        Ok(Ok(d)) => d,
        Err(_) => {
            tracing::debug!(?peer, "closing a connection that sent no request in time");
            return;
        }
    };
    let io = TokioIo::new(Rewind::new(prefix, stream));
    let activity = Arc::new(Activity::default());
    let remote = opts.remote_addr.then_some(peer).flatten().map(RemoteAddr);
    let upgrades = opts.upgrades.then_some(slot.clone());
    let counted = activity.clone();
    let service = hyper::service::service_fn(move |mut req: http::Request<hyper::body::Incoming>| {
        let in_flight = InFlight::new(&counted);
        if let Some(addr) = remote {
            req.extensions_mut().insert(addr);
        }
        if let Some(slot) = &upgrades {
            req.extensions_mut().insert(slot.clone());
        }
        // Boxed once here: the dispatch future is kilobytes (every route's state), and hyper
        // moves the stream's future several times while spawning it (a memcpy of all of it each
        // time, about 10 % of a unary call's instructions before this).
        let fut = Box::pin(dispatch.clone().dispatch(req));
        async move { Ok::<_, std::convert::Infallible>(fut.await.map(|inner| Tracked { inner, _in_flight: in_flight })) }
    });
    // The connection stays counted while this task serves it (and while an upgrade holds a
    // handle).
    let _slot = slot;
    match detected {
        Detected::Http2 => {
            let conn = hyper::server::conn::http2::Builder::new(TokioExecutor::new())
                .timer(TokioTimer::new())
                .max_concurrent_streams(opts.max_concurrent_streams)
                .max_header_list_size(opts.max_header_size)
                .keep_alive_interval(opts.keep_alive_interval)
                .keep_alive_timeout(opts.keep_alive_timeout)
                .serve_connection(io, service);
            drive(Box::pin(conn), &activity, opts, &mut graceful, |c| c.graceful_shutdown()).await;
        }
        Detected::Http1 | Detected::Closed => {
            let conn = hyper::server::conn::http1::Builder::new()
                .timer(TokioTimer::new())
                .header_read_timeout(opts.header_read_timeout)
                .max_buf_size((opts.max_header_size as usize).max(8192))
                .serve_connection(io, service)
                .with_upgrades();
            drive(Box::pin(conn), &activity, opts, &mut graceful, |c| c.graceful_shutdown()).await;
        }
    }
}

/// Polls a hyper connection to its end, shutting it down gracefully when its [`watchdog`] says
/// so. The connection's own task polls nothing else, so a request costs no timer work here.
///
/// The connection comes boxed, at its own size: inline, the task of every connection would
/// take the size of the largest one it might have been (HTTP/1 or HTTP/2, plain or TLS), about
/// 10 KB, where an idle HTTP/2 connection needs a fifth of it.
async fn drive<C, E>(
    mut conn: Pin<Box<C>>,
    activity: &Arc<Activity>,
    opts: &ServeOptions,
    graceful: &mut watch::Receiver<bool>,
    shutdown: impl Fn(Pin<&mut C>),
) where
    C: Future<Output = Result<(), E>>,
{
    let (stop, stopped) = tokio::sync::oneshot::channel();
    tokio::spawn(watchdog(activity.clone(), opts.header_read_timeout, opts.idle_timeout, graceful.clone(), stop));
    tokio::select! {
        _ = conn.as_mut() => return,
        _ = stopped => shutdown(conn.as_mut()),
    }
    let _ = conn.await;
}

/// Says when a connection should shut down gracefully: when the server does, when no request
/// started within `first` (the header timeout, or the idle timeout if shorter), or when it has
/// been idle (nothing in flight, no new request) for a whole `idle` period. Ends with the
/// connection.
async fn watchdog(
    activity: Arc<Activity>,
    first: Duration,
    idle: Duration,
    mut graceful: watch::Receiver<bool>,
    mut stop: tokio::sync::oneshot::Sender<()>,
) {
    let mut wait = first.min(idle);
    let mut last_events = 0;
    loop {
        if *graceful.borrow() {
            break;
        }
        tokio::select! {
            _ = stop.closed() => return,
            changed = graceful.changed() => {
                if changed.is_err() {
                    break;
                }
            }
            _ = tokio::time::sleep(wait) => {
                let events = activity.events.load(Ordering::Relaxed);
                if activity.in_flight.load(Ordering::Relaxed) == 0 && events == last_events {
                    tracing::debug!("closing an idle connection");
                    break;
                }
                last_events = events;
                wait = idle;
            }
        }
    }
    let _ = stop.send(());
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn detection_reads_no_more_than_it_needs() {
        let (mut a, mut b) = tokio::io::duplex(64);
        tokio::io::AsyncWriteExt::write_all(&mut a, b"GET / HTTP/1.1\r\n").await.unwrap();
        let (seen, prefix) = detect(&mut b).await.unwrap();
        assert_eq!((seen, prefix.as_slice()), (Detected::Http1, &b"GET / HTTP/1.1\r\n"[..]));

        let (mut a, mut b) = tokio::io::duplex(64);
        tokio::io::AsyncWriteExt::write_all(&mut a, &PREFACE[..10]).await.unwrap();
        let pending = tokio::time::timeout(Duration::from_millis(50), detect(&mut b)).await;
        assert!(pending.is_err(), "a partial preface is still undecided");

        let (mut a, mut b) = tokio::io::duplex(64);
        tokio::io::AsyncWriteExt::write_all(&mut a, &PREFACE[..10]).await.unwrap();
        tokio::io::AsyncWriteExt::write_all(&mut a, &PREFACE[10..]).await.unwrap();
        assert_eq!(detect(&mut b).await.unwrap(), (Detected::Http2, PREFACE.to_vec()));
    }

    #[tokio::test]
    async fn rewind_replays_the_prefix_then_the_stream() {
        let (mut a, b) = tokio::io::duplex(64);
        tokio::io::AsyncWriteExt::write_all(&mut a, b" world").await.unwrap();
        drop(a);
        let mut r = Rewind::new(b"hello".to_vec(), b);
        let mut out = String::new();
        r.read_to_string(&mut out).await.unwrap();
        assert_eq!(out, "hello world");
    }
}
