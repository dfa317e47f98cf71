//! `micro proxy`: forwards calls for clients that do not discover nodes themselves.
//!
//! A client started with `MICRO_PROXY=host:port` sends every call here with the target in the
//! `micro-service` header; the proxy discovers, balances and retries with its own client and
//! relays the call as a stream, message by message, both ways (so unary calls and all three
//! streaming kinds pass through, protobuf or JSON, with their metadata). With `--service NAME`
//! every call goes to that service, so plain gRPC clients can use the proxy as a front door.
//! Such clients also publish through it: `POST /_pub/<topic>` is published with the proxy's broker.
//!
//! The proxy is an edge ([`crate::edge`]): it takes only POSTs, refuses every request from a
//! browser (one with an `Origin`: browsers send it with every POST), answers only its own host
//! names (or `micro`, as micro clients name it), passes callers' headers on without hop-by-hop, cookie,
//! forwarding or `micro-*` headers, forwards each caller's `Authorization` and never its own
//! token, holds every message and `/_pub` body to `--max_body`, and takes `/_pub` bodies only with
//! a content type a browser cannot send across origins without asking (JSON, protobuf).

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use futures_util::StreamExt;
use http::{HeaderMap, HeaderValue, Response, StatusCode};
use http_body::Frame;
use http_body_util::BodyExt;
use hyper::body::Incoming;
use micro::client::{Client, ClientSender, PROXY_SERVICE_HEADER};
use micro::codec::{Codec, Protocol, RawMessage};
use micro::transport::grpc::{status_headers, FrameDecoder};
use micro::transport::http::Dispatch;
use micro::transport::Body;
use micro::{CallOptions, Error, Streaming};

use crate::global::Global;
use crate::UsageError;

/// The id of the proxy's own errors.
const ID: &str = "go.micro.proxy";

#[derive(Debug, clap::Args)]
pub(crate) struct Args {
    /// Listen address.
    #[arg(long = "proxy_address", alias = "address", env = "MICRO_PROXY_ADDRESS", default_value = "127.0.0.1:8081")]
    pub(crate) address: String,
    /// Send every call to this service (a front door for plain gRPC clients).
    #[arg(long)]
    pub(crate) service: Option<String>,
    #[command(flatten)]
    pub(crate) server: crate::global::ServerArgs,
}

struct Proxy {
    telemetry: crate::telemetry::Telemetry,
    client: Client,
    service: Option<String>,
    policy: crate::edge::Policy,
}

impl Proxy {
    /// `POST /_pub/<topic>`: publishes the body with the proxy's broker, headers as message headers.
    async fn publish(&self, topic: &str, req: http::Request<Incoming>) -> Response<Body> {
        let ct = req.headers().get(http::header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).unwrap_or("");
        let Some((codec, Protocol::Http)) = Codec::from_content_type(ct) else {
            let e = Error::new(ID, 415, "/_pub takes Content-Type: application/json or application/protobuf");
            return json_error(&e);
        };
        let content_type = ct.to_string();
        let metadata = self.policy.metadata(&req);
        let body = match self.policy.read_body(req.into_body()).await {
            Ok(b) => b,
            Err(e) => return json_error(&e),
        };
        let topic = micro::api::query::decode_segment(topic);
        let publisher = micro::Publisher::new(topic, self.client.clone());
        let result = match codec {
            Codec::Json => publisher.publish_json(&body, &metadata).await,
            Codec::Proto => publisher.publish_bytes(body, &content_type, &metadata).await,
        };
        match result {
            Ok(()) => Response::new(Body::empty()),
            Err(e) => json_error(&e),
        }
    }
}

fn json_error(e: &Error) -> Response<Body> {
    let mut resp = Response::new(Body::full(e.to_json()));
    *resp.status_mut() = StatusCode::from_u16(e.code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    resp.headers_mut().insert(http::header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
    resp
}

fn grpc_error(codec: Codec, e: &Error) -> Response<Body> {
    let mut resp = Response::new(Body::empty());
    resp.headers_mut().insert(http::header::CONTENT_TYPE, HeaderValue::from_static(codec.content_type(Protocol::Grpc)));
    status_headers(Err(e), resp.headers_mut());
    resp
}

/// `/pkg.Service/Method` or `/Service.Method` → `Service.Method`.
fn endpoint_of(path: &str) -> String {
    let p = path.trim_start_matches('/');
    match p.split_once('/') {
        Some((svc, method)) => format!("{}.{method}", svc.rsplit('.').next().unwrap_or(svc)),
        None => p.to_string(),
    }
}

impl Proxy {
    /// Refuses what no micro client sends: requests from browsers, anything but `POST`, and
    /// hosts that are not the proxy's names.
    fn admit(&self, req: &http::Request<Incoming>) -> Result<(), Error> {
        // Browsers have no business here (they always send Origin on a POST, which is all the
        // proxy takes).
        if let Some(origin) = req.headers().get(http::header::ORIGIN) {
            return Err(Error::forbidden(ID, format!("the proxy takes no requests from browsers (origin {origin:?})")));
        }
        // Everything the proxy does is a POST (gRPC, /_pub); a browser's GET sends no Origin.
        if req.method() != http::Method::POST {
            return Err(Error::method_not_allowed(ID, format!("{} is not allowed; use POST", req.method())));
        }
        // Micro clients address the proxy by the address they were given (older ones as
        // `micro`); anything else must be one of its names (a DNS-rebinding page is not).
        let host = req.uri().authority().map(|a| a.host().to_string()).or_else(|| {
            req.headers()
                .get(http::header::HOST)
                .and_then(|h| h.to_str().ok())
                .map(|h| h.split(':').next().unwrap_or(h).to_string())
        });
        if host.as_deref() != Some("micro") {
            self.policy.check_host(req)?;
        }
        Ok(())
    }

    async fn forward(self: Arc<Self>, req: http::Request<Incoming>) -> Response<Body> {
        if let Err(e) = self.admit(&req) {
            return json_error(&e);
        }
        if let Some(page) = self.telemetry.page(&req) {
            return page;
        }
        if let Some(topic) = req.uri().path().strip_prefix(micro::client::PROXY_PUBLISH_PATH) {
            let topic = topic.to_string();
            return self.publish(&topic, req).await;
        }
        let ct = req.headers().get(http::header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).unwrap_or("");
        let codec = match Codec::from_content_type(ct) {
            Some((c, Protocol::Grpc)) => c,
            _ => {
                let e = Error::new(ID, 415, "the proxy forwards gRPC (application/grpc or application/grpc+json)");
                return grpc_error(Codec::Json, &e);
            }
        };
        let named = req.headers().get(PROXY_SERVICE_HEADER).and_then(|v| v.to_str().ok()).map(str::to_string);
        let Some(service) = self.service.clone().or(named) else {
            let e = Error::bad_request(ID, format!("no {PROXY_SERVICE_HEADER} header and no --service"));
            return grpc_error(codec, &e);
        };
        let path = req.uri().path().to_string();
        let endpoint = endpoint_of(&path);
        let metadata = self.policy.metadata(&req);
        let timeout = req
            .headers()
            .get("grpc-timeout")
            .and_then(|v| v.to_str().ok())
            .and_then(micro::transport::grpc::parse_timeout);
        let opts = CallOptions { metadata, timeout, ..Default::default() };
        let (tx, replies) = match self.client.stream_raw(&service, &endpoint, &path, codec, opts).await {
            Ok(s) => s,
            Err(e) => return grpc_error(codec, &e),
        };
        // A request message over the limit ends the call with that error, whatever the service says.
        let refused: Refusal = Arc::default();
        tokio::spawn(requests(req.into_body(), tx, self.policy.max_body, refused.clone()));
        let (out, rx) = tokio::sync::mpsc::channel::<Frame<Bytes>>(16);
        tokio::spawn(replies_to(replies, refused, out));
        let mut resp = Response::new(Body::channel(rx));
        *resp.status_mut() = StatusCode::OK;
        resp.headers_mut()
            .insert(http::header::CONTENT_TYPE, HeaderValue::from_static(codec.content_type(Protocol::Grpc)));
        resp
    }
}

/// Where the request pump leaves the error that ended it (a message over the limit).
type Refusal = Arc<std::sync::Mutex<Option<Error>>>;

/// Passes the caller's request messages on to the service, up to `max` bytes each.
async fn requests(mut body: Incoming, tx: ClientSender<RawMessage>, max: usize, refusal: Refusal) {
    let mut decoder = FrameDecoder::new();
    while let Some(Ok(frame)) = body.frame().await {
        let Ok(data) = frame.into_data() else { continue };
        decoder.push(data);
        loop {
            match decoder.next_message(max) {
                Ok(Some(m)) => {
                    if tx.send_bytes(&m).await.is_err() {
                        return;
                    }
                }
                Ok(None) => break,
                Err(e) => {
                    *refusal.lock().unwrap_or_else(|p| p.into_inner()) = Some(e);
                    return;
                }
            }
        }
    }
}

/// Passes the service's replies back to the caller, then the call's status as trailers.
async fn replies_to(
    mut replies: Streaming<RawMessage>,
    refused: Refusal,
    out: tokio::sync::mpsc::Sender<Frame<Bytes>>,
) {
    let mut trailers = HeaderMap::new();
    loop {
        let reply = replies.next().await;
        if let Some(e) = refused.lock().unwrap_or_else(|p| p.into_inner()).take() {
            status_headers(Err(&e), &mut trailers);
            break;
        }
        match reply {
            Some(Ok(m)) => {
                if out.send(Frame::data(micro::transport::grpc::frame(&m.0))).await.is_err() {
                    return;
                }
            }
            Some(Err(e)) => {
                status_headers(Err(&e), &mut trailers);
                break;
            }
            None => {
                status_headers(Ok(()), &mut trailers);
                break;
            }
        }
    }
    let _ = out.send(Frame::trailers(trailers)).await;
}

impl Dispatch for Proxy {
    #[allow(clippy::manual_async_fn)]
    fn dispatch(
        self: Arc<Self>,
        req: http::Request<Incoming>,
    ) -> impl std::future::Future<Output = Response<Body>> + Send + 'static {
        async move {
            let proxy = self.clone();
            self.telemetry.serve("proxy", req, |req| proxy.forward(req)).await
        }
    }
}

pub(crate) async fn run(global: &Global, args: Args) -> anyhow::Result<()> {
    micro::logger::init();
    let registry = global.registry()?;
    // Calls and publishes for callers: with their credentials, never the proxy's own token.
    let client_opts = micro::client::ClientOptions { proxy: None, ..global.client_options()? };
    let o = global.options()?;
    let credentials =
        micro::broker::Credentials { auth_token: None, tls: o.client_tls().map_err(|e| UsageError(e.detail))? };
    let broker = micro::config::plugins::broker(&o, registry.clone(), credentials)?;
    let telemetry = crate::telemetry::Telemetry::start("micro.proxy")?;
    let client = telemetry.wrap(
        Client::with_selector(
            Arc::new(micro::selector::RegistrySelector::new(registry, global.strategy()?)),
            client_opts,
        )
        .with_broker(broker),
    );
    let address = super::api::listen_address(&args.address);
    let serve = args.server.serve(&address)?;
    let scheme = serve.scheme;
    let proxy = Arc::new(Proxy { telemetry, client, service: args.service.clone(), policy: serve.policy });
    let serving = micro::transport::http::serve(&address, proxy, &serve.options)?;
    eprintln!(
        "proxy listening on {scheme}://{}{}",
        serving.local_addr(),
        args.service.as_ref().map(|s| format!(" (every call to {s})")).unwrap_or_default()
    );
    micro::service::shutdown_signal().await;
    serving.shutdown(Duration::from_secs(10)).await;
    Ok(())
}

#[cfg(test)]
mod tests {
    #[test]
    fn endpoints_from_paths() {
        assert_eq!(super::endpoint_of("/helloworld.Greeter/SayHello"), "Greeter.SayHello");
        assert_eq!(super::endpoint_of("/Greeter.SayHello"), "Greeter.SayHello");
        assert_eq!(super::endpoint_of("/Bare/Ping"), "Bare.Ping");
    }
}
