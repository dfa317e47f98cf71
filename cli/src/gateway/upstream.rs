//! Forwarding a request to a node of an HTTP service (the gateway's `http`/`web` handlers and
//! the dashboard's `/<alias>/`): bodies stream both ways, never buffered whole; upgrades
//! (websockets, and no other protocol) are relayed byte for byte; nodes that registered `secure=true` are reached over
//! TLS with the process's client TLS (`--client_tls_ca`, else the Mozilla roots).
//!
//! Limits: a request body larger than the limit gets 413 when it says so up front, and otherwise
//! is cut off past it (the node sees the request break off; the caller gets its answer or 502),
//! and must arrive within the body timeout; a reply that says it is larger
//! gets 502, one that turns out larger is cut off there; no reply head within the call timeout
//! gets 504; a relayed upgrade ends after [`RELAY_IDLE`] without a byte either way and counts
//! against the gateway's open sockets ([`super::websocket::MAX_BRIDGES`]).

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderValue, Response, StatusCode};
use http_body::Frame;
use http_body_util::{BodyExt, Limited};
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use micro::transport::Body;
use micro::Error;

use super::{error_response, ID};

/// How long connecting to a node may take (the client's default too).
const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);

/// How long a relayed upgrade may stay silent both ways.
pub(crate) const RELAY_IDLE: Duration = Duration::from_secs(300);

/// The HTTP client requests are forwarded with (by the gateway and the dashboard): plain HTTP or
/// TLS, HTTP/1.1, pooled.
pub(crate) type HttpClient = hyper_util::client::legacy::Client<
    hyper_rustls::HttpsConnector<hyper_util::client::legacy::connect::HttpConnector>,
    Body,
>;

/// A pooled client that speaks TLS to the nodes that ask for it, trusting what the process's
/// client TLS trusts.
pub(crate) fn http_client() -> HttpClient {
    let mut tls = (*micro::transport::tls::default_client().rustls_config()).clone();
    // hyper-rustls sets the ALPN (http/1.1) itself.
    tls.alpn_protocols.clear();
    let mut http = hyper_util::client::legacy::connect::HttpConnector::new();
    http.enforce_http(false);
    http.set_connect_timeout(Some(CONNECT_TIMEOUT));
    http.set_nodelay(true);
    let connector = hyper_rustls::HttpsConnectorBuilder::new()
        .with_tls_config(tls)
        .https_or_http()
        .enable_http1()
        .wrap_connector(http);
    hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
        // Below the 10 s servers give an idle connection, so the pool never sends on one a
        // server is closing.
        .pool_idle_timeout(Duration::from_secs(5))
        .build(connector)
}

/// Where a request is forwarded: a node of an HTTP service, and the limits of the trip.
pub(crate) struct Upstream<'a> {
    pub(crate) http: &'a HttpClient,
    pub(crate) service: &'a str,
    pub(crate) address: &'a str,
    /// The node registered `secure=true`.
    pub(crate) secure: bool,
    /// How long the reply's head may take.
    pub(crate) timeout: Duration,
    /// How long the request's body may take.
    pub(crate) body_timeout: Duration,
    /// The largest body passed on, either way.
    pub(crate) max: usize,
}

impl Upstream<'_> {
    /// Sends a request (its headers already rewritten) at `path_and_query` and answers with the
    /// reply as it arrives; an upgrade the node accepts is relayed.
    pub(crate) async fn forward(
        &self,
        mut parts: http::request::Parts,
        body: Incoming,
        path_and_query: &str,
    ) -> Response<Body> {
        let (service, address, timeout) = (self.service, self.address, self.timeout);
        let declared =
            parts.headers.get(http::header::CONTENT_LENGTH).and_then(|v| v.to_str().ok()?.parse::<u64>().ok());
        if declared.is_some_and(|n| n > self.max as u64) {
            return error_response(&Error::too_large(
                ID,
                format!("the request body is larger than {} bytes", self.max),
            ));
        }
        let scheme = if self.secure { "https" } else { "http" };
        parts.uri = match format!("{scheme}://{address}{path_and_query}").parse() {
            Ok(u) => u,
            Err(e) => return error_response(&Error::internal_server_error(ID, e)),
        };
        parts.headers.remove(http::header::HOST);
        parts.version = http::Version::HTTP_11;
        let client_upgrade = upgrade_of(&mut parts);
        let connection = parts.extensions.remove::<micro::transport::http::Connection>();
        let out = http::Request::from_parts(parts, limit_request(body, self.max, self.body_timeout));
        let resp = match tokio::time::timeout(timeout, self.http.request(out)).await {
            Ok(Ok(resp)) => resp,
            Ok(Err(e)) => return error_response(&Error::new(ID, 502, format!("{service} at {address}: {e}"))),
            Err(_) => {
                return error_response(&Error::new(ID, 504, format!("{service} did not answer within {timeout:?}")))
            }
        };
        if resp.status() == StatusCode::SWITCHING_PROTOCOLS {
            return match client_upgrade {
                Some(from) => relay(from, resp, connection),
                None => error_response(&Error::new(ID, 502, format!("{service} switched protocols unasked"))),
            };
        }
        pass_reply(resp, service, self.max)
            .map_or_else(|e| error_response(&e), |(parts, body)| Response::from_parts(parts, body))
    }
}

/// A node's reply as it is passed on: 502 when it says it is larger than `max`, its hop-by-hop
/// headers left out, its body cut off past `max`.
pub(crate) fn pass_reply(
    resp: Response<Incoming>,
    service: &str,
    max: usize,
) -> Result<(http::response::Parts, Body), Error> {
    let (mut parts, body) = resp.into_parts();
    let declared = parts.headers.get(http::header::CONTENT_LENGTH).and_then(|v| v.to_str().ok()?.parse::<u64>().ok());
    if declared.is_some_and(|n| n > max as u64) {
        return Err(Error::new(ID, 502, format!("the reply of {service} is larger than {max} bytes")));
    }
    for hop in ["connection", "keep-alive", "transfer-encoding", "upgrade", "trailer"] {
        parts.headers.remove(hop);
    }
    Ok((parts, crate::edge::limit_reply(body, max, service)))
}

/// The client's side of a websocket upgrade it asked for, keeping the `Connection` and
/// `Upgrade` headers for the node (other hop-by-hop headers are already gone); other upgrades
/// are not passed on.
fn upgrade_of(parts: &mut http::request::Parts) -> Option<hyper::upgrade::OnUpgrade> {
    let asked = parts.headers.get(http::header::UPGRADE).cloned()?;
    if !crate::edge::is_websocket(&asked) {
        parts.headers.remove(http::header::UPGRADE);
        return None;
    }
    let on = parts.extensions.remove::<hyper::upgrade::OnUpgrade>()?;
    parts.headers.insert(http::header::CONNECTION, HeaderValue::from_static("upgrade"));
    parts.headers.insert(http::header::UPGRADE, asked);
    Some(on)
}

/// Answers `101` with the node's headers and relays bytes both ways once both sides switched.
fn relay(
    from: hyper::upgrade::OnUpgrade,
    mut resp: Response<Incoming>,
    connection: Option<micro::transport::http::Connection>,
) -> Response<Body> {
    let Ok(permit) = super::websocket::bridges().try_acquire_owned() else {
        let e = Error::new(ID, 503, format!("{} sockets are open; try again later", super::websocket::MAX_BRIDGES));
        return error_response(&e);
    };
    let to = hyper::upgrade::on(&mut resp);
    let mut out = Response::new(Body::empty());
    *out.status_mut() = StatusCode::SWITCHING_PROTOCOLS;
    *out.headers_mut() = resp.headers().clone();
    tokio::spawn(async move {
        let _held = (permit, connection);
        let (Ok(client), Ok(node)) = (from.await, to.await) else { return };
        let (mut client, mut node) = (TokioIo::new(client), TokioIo::new(node));
        pipe(&mut client, &mut node).await;
    });
    out
}

/// Copies both ways until one side closes or nothing moves for [`RELAY_IDLE`].
async fn pipe<A, B>(a: &mut A, b: &mut B)
where
    A: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
    B: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let (mut ar, mut aw) = tokio::io::split(a);
    let (mut br, mut bw) = tokio::io::split(b);
    let (mut x, mut y) = (vec![0u8; 16 * 1024], vec![0u8; 16 * 1024]);
    loop {
        let step = tokio::time::timeout(RELAY_IDLE, async {
            tokio::select! {
                n = ar.read(&mut x) => match n {
                    Ok(0) | Err(_) => false,
                    Ok(n) => bw.write_all(&x[..n]).await.is_ok(),
                },
                n = br.read(&mut y) => match n {
                    Ok(0) | Err(_) => false,
                    Ok(n) => aw.write_all(&y[..n]).await.is_ok(),
                },
            }
        });
        if !matches!(step.await, Ok(true)) {
            // A peer that stopped reading must not hold the relay open.
            let close = async { tokio::join!(aw.shutdown(), bw.shutdown()) };
            let _ = tokio::time::timeout(Duration::from_secs(5), close).await;
            return;
        }
    }
}

/// A request body passed on as it arrives: cut off past `max` bytes, and failing when it has not
/// all arrived within `timeout`.
pub(crate) fn limit_request(body: Incoming, max: usize, timeout: Duration) -> Body {
    let limited = Limited::new(body, max).map_err(move |e| {
        if e.is::<http_body_util::LengthLimitError>() {
            Error::too_large(ID, format!("the request body is larger than {max} bytes"))
        } else {
            Error::bad_request(ID, format!("reading the request failed: {e}"))
        }
    });
    deadline(Body::boxed(limited), timeout, "the request body")
}

/// `body`, failing once `timeout` has passed before its end (`what` names it in the error).
pub(crate) fn deadline(body: Body, timeout: Duration, what: &'static str) -> Body {
    Body::boxed(Deadline { inner: body, sleep: Box::pin(tokio::time::sleep(timeout)), timeout, what })
}

/// A body that fails once its deadline passes.
struct Deadline<B> {
    inner: B,
    sleep: Pin<Box<tokio::time::Sleep>>,
    timeout: Duration,
    what: &'static str,
}

impl<B> http_body::Body for Deadline<B>
where
    B: http_body::Body<Data = Bytes, Error = Error> + Unpin,
{
    type Data = Bytes;
    type Error = Error;

    fn poll_frame(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, Error>>> {
        if let Poll::Ready(frame) = Pin::new(&mut self.inner).poll_frame(cx) {
            return Poll::Ready(frame);
        }
        if self.sleep.as_mut().poll(cx).is_ready() {
            let (t, what) = (self.timeout, self.what);
            return Poll::Ready(Some(Err(Error::timeout(ID, format!("{what} did not arrive within {t:?}")))));
        }
        Poll::Pending
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.inner.size_hint()
    }
}
