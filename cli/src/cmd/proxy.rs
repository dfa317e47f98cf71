//! `micro proxy`: forwards calls for clients that do not discover nodes themselves.
//!
//! A client started with `MICRO_PROXY=host:port` sends every call here with the target in the
//! `micro-service` header; the proxy discovers, balances and retries with its own client and
//! relays the call as a stream, message by message, both ways (so unary calls and all three
//! streaming kinds pass through, protobuf or JSON, with their metadata). With `--service NAME`
//! every call goes to that service, so plain gRPC clients can use the proxy as a front door.
//! Such clients also publish through it: `POST /_pub/<topic>` is published with the proxy's broker.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use futures_util::StreamExt;
use http::{HeaderMap, HeaderValue, Response, StatusCode};
use http_body::Frame;
use http_body_util::BodyExt;
use hyper::body::Incoming;
use micro::client::{Client, PROXY_SERVICE_HEADER};
use micro::codec::{Codec, Protocol};
use micro::transport::grpc::{status_headers, FrameDecoder};
use micro::transport::http::{Dispatch, ServeOptions};
use micro::transport::Body;
use micro::{CallOptions, Error, Metadata};

use crate::global::Global;

#[derive(Debug, clap::Args)]
pub(crate) struct Args {
    /// Listen address.
    #[arg(long = "proxy_address", alias = "address", env = "MICRO_PROXY_ADDRESS", default_value = "127.0.0.1:8081")]
    pub(crate) address: String,
    /// Send every call to this service (a front door for plain gRPC clients).
    #[arg(long)]
    pub(crate) service: Option<String>,
    #[command(flatten)]
    pub(crate) tls: crate::global::ServerTlsArgs,
}

struct Proxy {
    client: Client,
    service: Option<String>,
}

impl Proxy {
    /// `POST /_pub/<topic>`: publishes the body with the proxy's broker, headers as message headers.
    async fn publish(&self, topic: &str, req: http::Request<Incoming>) -> Response<Body> {
        let (parts, body) = req.into_parts();
        let body = match body.collect().await {
            Ok(b) => b.to_bytes(),
            Err(e) => return json_error(&Error::bad_request("go.micro.proxy", e)),
        };
        let mut metadata = Metadata::new();
        let mut content_type = "application/json".to_string();
        for (k, v) in &parts.headers {
            let Ok(v) = v.to_str() else { continue };
            match k.as_str() {
                "content-type" => content_type = v.to_string(),
                "micro-topic" | "micro-id" => {}
                name => {
                    metadata.insert(name, v);
                }
            }
        }
        let topic = crate::gateway::routes::percent_decode(topic);
        let publisher = micro::Publisher::new(topic, self.client.clone());
        let result = if content_type.contains("json") {
            publisher.publish_json(&body, &metadata).await
        } else {
            publisher.publish_bytes(body, &content_type, &metadata).await
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
    async fn forward(self: Arc<Self>, req: http::Request<Incoming>) -> Response<Body> {
        if let Some(topic) = req.uri().path().strip_prefix(micro::client::PROXY_PUBLISH_PATH) {
            let topic = topic.to_string();
            return self.publish(&topic, req).await;
        }
        let ct = req.headers().get(http::header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).unwrap_or("");
        let codec = match Codec::from_content_type(ct) {
            Some((c, Protocol::Grpc)) => c,
            _ => {
                let e = Error::new(
                    "go.micro.proxy",
                    415,
                    "the proxy forwards gRPC (application/grpc or application/grpc+json)",
                );
                return grpc_error(Codec::Json, &e);
            }
        };
        let named = req.headers().get(PROXY_SERVICE_HEADER).and_then(|v| v.to_str().ok()).map(str::to_string);
        let Some(service) = self.service.clone().or(named) else {
            let e = Error::bad_request("go.micro.proxy", format!("no {PROXY_SERVICE_HEADER} header and no --service"));
            return grpc_error(codec, &e);
        };
        let path = req.uri().path().to_string();
        let endpoint = endpoint_of(&path);
        let mut metadata = Metadata::new();
        for (k, v) in req.headers() {
            if k.as_str() != PROXY_SERVICE_HEADER {
                if let Ok(v) = v.to_str() {
                    metadata.insert(k.as_str(), v);
                }
            }
        }
        let timeout = req
            .headers()
            .get("grpc-timeout")
            .and_then(|v| v.to_str().ok())
            .and_then(micro::transport::grpc::parse_timeout);
        let opts = CallOptions { metadata, timeout, ..Default::default() };
        let (tx, mut replies) = match self.client.stream_raw(&service, &endpoint, &path, codec, opts).await {
            Ok(s) => s,
            Err(e) => return grpc_error(codec, &e),
        };
        let mut body = req.into_body();
        tokio::spawn(async move {
            let mut decoder = FrameDecoder::new();
            while let Some(Ok(frame)) = body.frame().await {
                let Ok(data) = frame.into_data() else { continue };
                decoder.push(data);
                while let Ok(Some(m)) = decoder.next_message(usize::MAX) {
                    if tx.send_bytes(&m).await.is_err() {
                        return;
                    }
                }
            }
        });
        let (out, rx) = tokio::sync::mpsc::channel::<Frame<Bytes>>(16);
        tokio::spawn(async move {
            let mut trailers = HeaderMap::new();
            loop {
                match replies.next().await {
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
        });
        let mut resp = Response::new(Body::channel(rx));
        *resp.status_mut() = StatusCode::OK;
        resp.headers_mut()
            .insert(http::header::CONTENT_TYPE, HeaderValue::from_static(codec.content_type(Protocol::Grpc)));
        resp
    }
}

impl Dispatch for Proxy {
    #[allow(clippy::manual_async_fn)]
    fn dispatch(
        self: Arc<Self>,
        req: http::Request<Incoming>,
    ) -> impl std::future::Future<Output = Response<Body>> + Send + 'static {
        self.forward(req)
    }
}

pub(crate) async fn run(global: &Global, args: Args) -> anyhow::Result<()> {
    micro::logger::init();
    let registry = global.registry()?;
    let client_opts = micro::client::ClientOptions { proxy: None, ..global.client_options()? };
    let o = global.options()?;
    let broker = micro::broker::from_name(&o.broker, &o.broker_address, registry.clone())?;
    let client = Client::with_selector(
        Arc::new(micro::selector::RegistrySelector::new(registry, micro::selector::Strategy::RoundRobin)),
        client_opts,
    )
    .with_broker(broker);
    let proxy = Arc::new(Proxy { client, service: args.service.clone() });
    let tls = args.tls.load()?;
    let scheme = crate::global::ServerTlsArgs::scheme(&tls);
    let serving =
        micro::transport::http::serve(&args.address, proxy, &ServeOptions { tls, ..ServeOptions::default() })?;
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
