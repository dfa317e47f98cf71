//! HTTP serving and the client's connection pool.
//!
//! Both are public API beyond the server and the client: [`serve`] with a [`Dispatch`] puts any
//! HTTP front end (the gateway, the dashboard and the proxy of the `micro` tools) on the same
//! listener, limits and TLS as a service, and [`Pool`] reaches nodes as the client does.
//!
//! **Server.** Connections are served by a small set of worker threads, each running its own
//! single-threaded tokio runtime; an acceptor hands each new connection to the next worker. A
//! connection's streams run on the same thread as the connection, so replies finished together
//! are written together (one `writev` for many responses), and nothing is shared between threads on
//! the request path. Handlers still run on a tokio runtime and may spawn tasks.
//!
//! **Limits.** Every phase of a connection has a deadline, so a peer cannot hold one open by
//! sending nothing, or too little ([`ServeOptions`]): the TLS handshake and the first bytes (which
//! say HTTP/1 or the HTTP/2 preface) within `header_read_timeout`; HTTP/1 request headers within
//! the same time, between requests too; a connection with no request in flight for
//! `idle_timeout` is closed (HTTP/2 with a GOAWAY first), and TCP keepalive drops peers that
//! vanished (HTTP/2 pings can be asked for too). Beyond `max_connections` open connections, new
//! ones are closed as soon as they are accepted, so the ones being served keep their share of the
//! process.
//!
//! Protocol detection is done here rather than by hyper-util's `auto` builder, which has no
//! deadline for it: a peer that sends the first 10 bytes of the HTTP/2 preface would otherwise
//! hold its connection forever.
//!
//! **Client.** One multiplexed HTTP/2 connection per node address, made on first use, shared by
//! every call, and replaced when the peer closes it.
//!
//! Both sides speak TLS when configured (see [`tls`](super::tls)): the server on every
//! connection, the client to the peers that need it.

use std::collections::HashMap;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use hyper::body::Incoming;
use hyper::client::conn::http2::SendRequest;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use tokio::net::TcpStream;
use tokio::sync::{mpsc, watch, Notify};

pub use super::conn::RemoteAddr;
use super::tls::{ClientTls, ServerTls};
use super::Body;
use crate::Error;

/// Limits and sizes of the HTTP server.
#[derive(Debug, Clone)]
pub struct ServeOptions {
    /// Worker threads serving connections; 0 means one per CPU.
    pub workers: usize,
    /// Most connections open at once; beyond it new connections are closed at once.
    pub max_connections: usize,
    /// Most concurrent HTTP/2 streams per connection.
    pub max_concurrent_streams: u32,
    /// Largest header block accepted, in bytes.
    pub max_header_size: u32,
    /// How long a client may take to finish its TLS handshake, to send its first bytes (the
    /// HTTP/2 preface or an HTTP/1 request line), to start its first request, and to send the
    /// headers of each HTTP/1 request (also the longest an HTTP/1 connection waits between
    /// requests).
    pub header_read_timeout: Duration,
    /// How long a unary request's body may take to arrive (streams are not bound by it).
    pub body_read_timeout: Duration,
    /// A connection with no request in flight and no new request for this long is closed.
    pub idle_timeout: Duration,
    /// TCP keepalive on every connection: probes start after this long without traffic (then
    /// every 10 s, 3 times), so the kernel drops peers that vanished without closing. `None`
    /// turns it off.
    pub tcp_keepalive: Option<Duration>,
    /// How often an HTTP/2 connection is pinged, for peers that must prove they still read; a
    /// peer that misses a ping's answer by `keep_alive_timeout` is dropped. `None` (the default:
    /// TCP keepalive finds dead peers at no cost per request) sends no pings.
    pub keep_alive_interval: Option<Duration>,
    /// How long a ping may go unanswered.
    pub keep_alive_timeout: Duration,
    /// Puts the peer's address in each request's extensions ([`RemoteAddr`]), for servers that
    /// need it (the tools write it into `X-Forwarded-For`).
    pub remote_addr: bool,
    /// Puts a [`Connection`] handle in each request's extensions, for servers that upgrade
    /// connections and must keep them counted.
    pub upgrades: bool,
    /// TLS on every connection; plain TCP when `None`.
    pub tls: Option<ServerTls>,
}

impl Default for ServeOptions {
    fn default() -> Self {
        ServeOptions {
            workers: 0,
            max_connections: 4096,
            max_concurrent_streams: 1024,
            max_header_size: 64 * 1024,
            header_read_timeout: Duration::from_secs(10),
            body_read_timeout: Duration::from_secs(30),
            idle_timeout: Duration::from_secs(60),
            tcp_keepalive: Some(Duration::from_secs(30)),
            keep_alive_interval: None,
            keep_alive_timeout: Duration::from_secs(20),
            remote_addr: false,
            upgrades: false,
            tls: None,
        }
    }
}

/// What serves one HTTP request.
pub trait Dispatch: Send + Sync + 'static {
    /// Answers one request.
    fn dispatch(
        self: Arc<Self>,
        req: http::Request<Incoming>,
    ) -> impl Future<Output = http::Response<Body>> + Send + 'static;
}

#[derive(Default)]
struct Tracker {
    active: AtomicUsize,
    idle: Notify,
}

struct ConnGuard(Arc<Tracker>);

/// A handle on the connection a request came on, in its extensions when
/// [`ServeOptions::upgrades`] is set: the connection counts as open (against `max_connections`,
/// and for a graceful shutdown) for as long as a handle lives, so a server that upgrades it (a
/// websocket) keeps it counted by holding the handle.
#[derive(Clone)]
pub struct Connection(#[allow(dead_code)] Arc<dyn Send + Sync>);

impl std::fmt::Debug for Connection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Connection")
    }
}

impl Drop for ConnGuard {
    fn drop(&mut self) {
        if self.0.active.fetch_sub(1, Ordering::AcqRel) == 1 {
            self.0.idle.notify_waiters();
        }
    }
}

/// A running HTTP server.
pub struct Serving {
    addr: SocketAddr,
    graceful: watch::Sender<bool>,
    stop: watch::Sender<bool>,
    tracker: Arc<Tracker>,
    threads: Vec<std::thread::JoinHandle<()>>,
}

impl Serving {
    /// The address it listens on.
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// Connections currently open.
    pub fn connections(&self) -> usize {
        self.tracker.active.load(Ordering::Acquire)
    }

    /// Stops accepting, lets open connections finish their requests for up to `grace`, then closes
    /// whatever is left. Returns the number of connections that had to be cut.
    pub async fn shutdown(mut self, grace: Duration) -> usize {
        let _ = self.graceful.send(true);
        let deadline = tokio::time::Instant::now() + grace;
        loop {
            let idle = self.tracker.idle.notified();
            if self.connections() == 0 {
                break;
            }
            if tokio::time::timeout_at(deadline, idle).await.is_err() {
                break;
            }
        }
        let cut = self.connections();
        let _ = self.stop.send(true);
        let threads = std::mem::take(&mut self.threads);
        let _ = tokio::task::spawn_blocking(move || threads.into_iter().for_each(|t| drop(t.join()))).await;
        cut
    }
}

impl Drop for Serving {
    fn drop(&mut self) {
        let _ = self.stop.send(true);
    }
}

/// Binds `addr` and serves it with `dispatch`.
pub fn serve<D: Dispatch>(addr: &str, dispatch: Arc<D>, opts: &ServeOptions) -> Result<Serving, Error> {
    let listener = std::net::TcpListener::bind(addr)
        .map_err(|e| Error::internal_server_error(crate::error::SERVER_ID, format!("cannot listen on {addr}: {e}")))?;
    listener.set_nonblocking(true).map_err(|e| Error::internal_server_error(crate::error::SERVER_ID, e))?;
    let local = listener.local_addr().map_err(|e| Error::internal_server_error(crate::error::SERVER_ID, e))?;
    let workers =
        if opts.workers == 0 { std::thread::available_parallelism().map_or(1, |n| n.get()) } else { opts.workers };
    let (graceful, graceful_rx) = watch::channel(false);
    let (stop, stop_rx) = watch::channel(false);
    let tracker = Arc::new(Tracker::default());

    let mut senders = Vec::with_capacity(workers);
    let mut receivers = Vec::with_capacity(workers);
    for _ in 0..workers {
        let (tx, rx) = mpsc::unbounded_channel::<std::net::TcpStream>();
        senders.push(tx);
        receivers.push(rx);
    }
    let mut threads = Vec::with_capacity(workers);
    let mut listener = Some(listener);
    for (i, mut rx) in receivers.into_iter().enumerate() {
        let dispatch = dispatch.clone();
        let opts = opts.clone();
        let graceful_rx = graceful_rx.clone();
        let mut stop_rx = stop_rx.clone();
        let tracker = tracker.clone();
        let acceptor = if i == 0 { listener.take().map(|l| (l, senders.clone())) } else { None };
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| Error::internal_server_error(crate::error::SERVER_ID, e))?;
        let thread = std::thread::Builder::new()
            .name(format!("micro-server-{i}"))
            .spawn(move || {
                rt.block_on(async move {
                    if let Some((listener, senders)) = acceptor {
                        let cap = opts.max_connections.max(1);
                        tokio::spawn(accept(listener, senders, graceful_rx.clone(), tracker.clone(), cap));
                    }
                    loop {
                        tokio::select! {
                            stream = rx.recv() => match stream {
                                Some(stream) => {
                                    let guard = ConnGuard(tracker.clone());
                                    if let Some(idle) = opts.tcp_keepalive {
                                        let keepalive = socket2::TcpKeepalive::new()
                                            .with_time(idle)
                                            .with_interval(Duration::from_secs(10))
                                            .with_retries(3);
                                        let _ = socket2::SockRef::from(&stream).set_tcp_keepalive(&keepalive);
                                    }
                                    let Ok(stream) = TcpStream::from_std(stream) else { continue };
                                    tokio::spawn(connection(stream, dispatch.clone(), opts.clone(), graceful_rx.clone(), guard));
                                }
                                None => {
                                    let _ = stop_rx.changed().await;
                                    break;
                                }
                            },
                            _ = stop_rx.changed() => break,
                        }
                    }
                });
            })
            .map_err(|e| Error::internal_server_error(crate::error::SERVER_ID, e))?;
        threads.push(thread);
    }
    Ok(Serving { addr: local, graceful, stop, tracker, threads })
}

async fn accept(
    listener: std::net::TcpListener,
    workers: Vec<mpsc::UnboundedSender<std::net::TcpStream>>,
    mut graceful: watch::Receiver<bool>,
    tracker: Arc<Tracker>,
    max_connections: usize,
) {
    let Ok(listener) = tokio::net::TcpListener::from_std(listener) else {
        return;
    };
    let mut next = 0usize;
    let mut refused = 0u64;
    loop {
        tokio::select! {
            res = listener.accept() => match res {
                Ok((stream, peer)) => {
                    if tracker.active.load(Ordering::Acquire) >= max_connections {
                        // Closed at once: the peer learns now, and may go to another node.
                        drop(stream);
                        refused += 1;
                        if refused.is_power_of_two() {
                            tracing::warn!(%peer, refused, "{max_connections} connections are open; closing new ones");
                        }
                        continue;
                    }
                    let _ = stream.set_nodelay(true);
                    let Ok(stream) = stream.into_std() else { continue };
                    // Counted from here, so a shutdown never misses a connection still queued.
                    tracker.active.fetch_add(1, Ordering::AcqRel);
                    if workers[next % workers.len()].send(stream).is_err() {
                        drop(ConnGuard(tracker.clone()));
                    }
                    next = next.wrapping_add(1);
                }
                Err(e) => {
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            },
            _ = graceful.changed() => return,
        }
    }
}

async fn connection<D: Dispatch>(
    stream: TcpStream,
    dispatch: Arc<D>,
    opts: ServeOptions,
    graceful: watch::Receiver<bool>,
    guard: ConnGuard,
) {
    let peer = stream.peer_addr().ok();
    let slot = Connection(Arc::new(guard));
    let Some(tls) = opts.tls.clone() else {
        return super::conn::serve(stream, peer, slot, dispatch, &opts, graceful).await;
    };
    // Boxed: the handshake's state and a TLS stream are kilobytes that a plain connection's task
    // would otherwise carry too.
    Box::pin(async move {
        match tokio::time::timeout(opts.header_read_timeout, tls.acceptor().accept(stream)).await {
            Ok(Ok(stream)) => super::conn::serve(stream, peer, slot, dispatch, &opts, graceful).await,
            Ok(Err(e)) => tracing::debug!(?peer, error = %e, "TLS handshake failed"),
            Err(_) => tracing::debug!(?peer, "TLS handshake timed out"),
        }
    })
    .await
}

/// The client side: pooled HTTP/2 connections, one per address (plain and TLS apart).
#[derive(Default)]
pub struct Pool {
    plain: RwLock<HashMap<String, SendRequest<Body>>>,
    secure: RwLock<HashMap<String, SendRequest<Body>>>,
    connecting: tokio::sync::Mutex<HashMap<String, Arc<tokio::sync::Mutex<()>>>>,
    tls: Option<ClientTls>,
}

impl Pool {
    /// An empty pool; TLS peers are reached with the process's default client TLS.
    pub fn new() -> Self {
        Self::default()
    }

    /// An empty pool that reaches TLS peers with `tls` (the process default when `None`).
    pub fn with_tls(tls: Option<ClientTls>) -> Self {
        Pool { tls, ..Self::default() }
    }

    /// The TLS this pool was given, if any.
    pub fn tls(&self) -> Option<&ClientTls> {
        self.tls.as_ref()
    }

    fn conns(&self, secure: bool) -> &RwLock<HashMap<String, SendRequest<Body>>> {
        if secure {
            &self.secure
        } else {
            &self.plain
        }
    }

    fn cached(&self, addr: &str, secure: bool) -> Option<SendRequest<Body>> {
        let conns = self.conns(secure).read().unwrap_or_else(|e| e.into_inner());
        conns.get(addr).filter(|c| !c.is_closed()).cloned()
    }

    /// A ready sender to `addr` (over TLS when `secure`), connecting if needed (within `timeout`).
    pub async fn get(&self, addr: &str, secure: bool, timeout: Duration) -> Result<SendRequest<Body>, Error> {
        if let Some(c) = self.cached(addr, secure) {
            return Ok(c);
        }
        // Boxed: connecting (TLS included) takes a large future, which every call that finds a
        // connection would otherwise carry.
        Box::pin(self.open(addr, secure, timeout)).await
    }

    /// Opens the connection to `addr`, once however many callers ask at the same time.
    async fn open(&self, addr: &str, secure: bool, timeout: Duration) -> Result<SendRequest<Body>, Error> {
        let lock = self.connecting.lock().await.entry(addr.to_string()).or_default().clone();
        let _held = lock.lock().await;
        if let Some(c) = self.cached(addr, secure) {
            return Ok(c);
        }
        let tls = secure.then(|| self.tls.clone().unwrap_or_else(super::tls::default_client));
        let sender = tokio::time::timeout(timeout, connect(addr, tls))
            .await
            .map_err(|_| unavailable(addr, "connect timed out"))??;
        self.conns(secure).write().unwrap_or_else(|e| e.into_inner()).insert(addr.to_string(), sender.clone());
        Ok(sender)
    }

    /// Forgets the connection to `addr` if it is closed (a fresh one may have replaced it).
    fn forget_closed(&self, addr: &str, secure: bool) {
        let mut conns = self.conns(secure).write().unwrap_or_else(|e| e.into_inner());
        if conns.get(addr).is_some_and(|c| c.is_closed()) {
            conns.remove(addr);
        }
    }

    /// Sends a request on the pooled connection to `addr` (over TLS when `secure`), addressed
    /// to `addr` (its `:authority`, which servers on loopback check).
    pub async fn send(
        &self,
        addr: &str,
        secure: bool,
        mut req: http::Request<Body>,
        connect_timeout: Duration,
    ) -> Result<http::Response<Incoming>, Error> {
        if req.uri().authority().is_none_or(|a| a.as_str() != addr) {
            let pq = req.uri().path_and_query().map_or("/", |p| p.as_str());
            let scheme = if secure { "https" } else { "http" };
            if let Ok(uri) = http::Uri::builder().scheme(scheme).authority(addr).path_and_query(pq).build() {
                *req.uri_mut() = uri;
            }
        }
        let mut sender = self.get(addr, secure, connect_timeout).await?;
        match sender.send_request(req).await {
            Ok(resp) => Ok(resp),
            Err(e) => {
                let closed = sender.is_closed();
                if closed {
                    self.forget_closed(addr, secure);
                }
                // The connection's own I/O error says the peer is gone even before the sender
                // notices the connection closed.
                let broken = std::error::Error::source(&e).is_some_and(|s| s.is::<std::io::Error>());
                if e.is_canceled() || closed || broken || refused(&e) {
                    // Never sent, refused before processing (RFC 9113 §8.7), or the connection
                    // died under it (the peer is gone): another node may take it. A live peer
                    // that failed one stream is not retried.
                    Err(unavailable(addr, &e.to_string()))
                } else {
                    Err(Error::new(crate::error::CLIENT_ID, 502, format!("{addr}: {e}")))
                }
            }
        }
    }
}

/// Whether the peer reset the stream with `REFUSED_STREAM` (it did not process the request).
fn refused(e: &hyper::Error) -> bool {
    std::error::Error::source(e).and_then(|s| s.downcast_ref::<h2::Error>()).and_then(h2::Error::reason)
        == Some(h2::Reason::REFUSED_STREAM)
}

fn unavailable(addr: &str, what: &str) -> Error {
    Error::unavailable(crate::error::CLIENT_ID, format!("{addr}: {what}"))
}

async fn connect(addr: &str, tls: Option<ClientTls>) -> Result<SendRequest<Body>, Error> {
    let stream = TcpStream::connect(addr).await.map_err(|e| unavailable(addr, &format!("connect: {e}")))?;
    let _ = stream.set_nodelay(true);
    match tls {
        None => handshake(addr, stream).await,
        Some(tls) => {
            let name = super::tls::server_name(addr)?;
            let stream = tls.connector().connect(name, stream).await.map_err(|e| {
                Error::unavailable(crate::error::CLIENT_ID, format!("{addr}: TLS handshake failed: {e}"))
            })?;
            handshake(addr, stream).await
        }
    }
}

async fn handshake<IO>(addr: &str, stream: IO) -> Result<SendRequest<Body>, Error>
where
    IO: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let (sender, conn) = hyper::client::conn::http2::Builder::new(TokioExecutor::new())
        .timer(TokioTimer::new())
        .initial_stream_window_size(1 << 20)
        .initial_connection_window_size(4 << 20)
        .max_header_list_size(64 * 1024)
        .handshake(TokioIo::new(stream))
        .await
        .map_err(|e| unavailable(addr, &format!("HTTP/2 handshake: {e}")))?;
    let peer = addr.to_string();
    tokio::spawn(async move {
        if let Err(e) = conn.await {
            tracing::debug!(peer, error = %e, "connection closed");
        }
    });
    Ok(sender)
}
