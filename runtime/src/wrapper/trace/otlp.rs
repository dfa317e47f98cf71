//! The OTLP span exporter: each batch of finished spans goes as one `ExportTraceServiceRequest`
//! over OTLP/HTTP (protobuf, HTTP/1.1) or OTLP/gRPC, sent with the runtime's own transport.
//!
//! Configured by the standard variables, the signal's own before the general one
//! (`OTEL_EXPORTER_OTLP_TRACES_*`, then `OTEL_EXPORTER_OTLP_*`): `ENDPOINT` (for HTTP the
//! general one gets `/v1/traces` appended, the signal's is used as it is; `https://` means TLS
//! with the process's client TLS), `PROTOCOL` (`http/protobuf` by default, or `grpc`),
//! `HEADERS` (`key=value,...`, values percent-decoded), `TIMEOUT` (milliseconds, 10 s by default)
//! and `COMPRESSION` (`gzip` or `none`).
//!
//! Why not `opentelemetry-otlp`: its gRPC exporter is built on tonic, so every service would
//! compile a second gRPC stack beside the runtime's (tonic, tower, hyper-timeout,
//! opentelemetry-http: about 7 s of CPU in a scaffolded service's cold build, see
//! BENCHMARKS.md) to do what the runtime's client already does, limits and TLS included. The
//! messages and the conversion of the SDK's spans into them are still `opentelemetry-proto`'s.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderName, HeaderValue, Uri};
use http_body_util::{BodyExt, Limited};
use hyper_util::rt::TokioIo;
use opentelemetry_proto::tonic::collector::trace::v1::{ExportTraceServiceRequest, ExportTraceServiceResponse};
use opentelemetry_proto::transform::common::tonic::ResourceAttributesWithSchema;
use opentelemetry_proto::transform::trace::tonic::group_spans_by_resource_and_scope;
use opentelemetry_sdk::error::{OTelSdkError, OTelSdkResult};
use opentelemetry_sdk::trace::{SpanData, SpanExporter};
use prost::Message as _;
use tokio::net::TcpStream;

use super::ID;
use crate::codec::Codec;
use crate::metadata::Metadata;
use crate::transport::channel::Channel;
use crate::transport::compression::{self, Encoding};
use crate::transport::http::Pool;
use crate::transport::{grpc, tls, Body};
use crate::Error;

/// The gRPC method spans are exported to.
const EXPORT_PATH: &str = "/opentelemetry.proto.collector.trace.v1.TraceService/Export";
/// The largest reply read from a collector.
const MAX_REPLY: usize = 64 * 1024;
/// How long a batch may take when `TIMEOUT` does not say.
const DEFAULT_TIMEOUT: Duration = Duration::from_secs(10);

/// How spans reach the collector.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Protocol {
    /// OTLP/HTTP with protobuf bodies.
    Http,
    /// OTLP/gRPC.
    Grpc,
}

/// What the standard variables ask of the exporter.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Settings {
    pub(crate) protocol: Protocol,
    /// The URL posted to (HTTP) or the collector's address (gRPC).
    pub(crate) endpoint: Uri,
    pub(crate) headers: Vec<(HeaderName, HeaderValue)>,
    pub(crate) timeout: Duration,
    pub(crate) gzip: bool,
}

impl Settings {
    /// The settings `env` gives; one clear error for a value that cannot be used.
    pub(crate) fn from_env(env: impl Fn(&str) -> Option<String>) -> Result<Settings, Error> {
        // The signal's own variable first, then the general one; with the name that was set.
        let var = |name: &str| {
            [format!("OTEL_EXPORTER_OTLP_TRACES_{name}"), format!("OTEL_EXPORTER_OTLP_{name}")]
                .into_iter()
                .find_map(|key| env(&key).filter(|v| !v.trim().is_empty()).map(|v| (key, v)))
        };
        let protocol = match var("PROTOCOL") {
            None => Protocol::Http,
            Some((key, v)) => match v.trim().to_ascii_lowercase().as_str() {
                "http/protobuf" => Protocol::Http,
                "grpc" => Protocol::Grpc,
                other => {
                    return Err(Error::bad_request(
                        ID,
                        format!("{key} {other:?} is not one this build exports with (grpc, http/protobuf)"),
                    ))
                }
            },
        };
        let (key, endpoint) = var("ENDPOINT").unwrap_or_else(|| match protocol {
            Protocol::Http => (String::new(), "http://localhost:4318".into()),
            Protocol::Grpc => (String::new(), "http://localhost:4317".into()),
        });
        let own = key == "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT";
        let endpoint = endpoint.trim();
        let endpoint = if protocol == Protocol::Http && !own {
            format!("{}/v1/traces", endpoint.trim_end_matches('/'))
        } else {
            endpoint.to_string()
        };
        let endpoint: Uri = endpoint
            .parse()
            .ok()
            .filter(|u: &Uri| matches!(u.scheme_str(), Some("http" | "https")) && u.host().is_some())
            .ok_or_else(|| {
                Error::bad_request(ID, format!("the OTLP endpoint {endpoint:?} is not an http:// or https:// URL"))
            })?;
        let mut headers = Vec::new();
        for key in ["OTEL_EXPORTER_OTLP_HEADERS", "OTEL_EXPORTER_OTLP_TRACES_HEADERS"] {
            for (name, value) in parse_headers(key, &env(key).unwrap_or_default()) {
                headers.retain(|(n, _)| *n != name);
                headers.push((name, value));
            }
        }
        // As the SDK configuration says of a value it cannot use: a warning, and the default.
        let timeout = match var("TIMEOUT") {
            None => DEFAULT_TIMEOUT,
            Some((key, v)) => match v.trim().parse::<u64>() {
                Ok(ms) if ms > 0 => Duration::from_millis(ms),
                _ => {
                    tracing::warn!(
                        "{key} {v:?} is not a number of milliseconds above 0; exporting with a 10 s timeout"
                    );
                    DEFAULT_TIMEOUT
                }
            },
        };
        let gzip = match var("COMPRESSION") {
            None => false,
            Some((key, v)) => match v.trim().to_ascii_lowercase().as_str() {
                "none" => false,
                "gzip" => true,
                other => {
                    return Err(Error::bad_request(
                        ID,
                        format!("{key} {other:?} is not one this build speaks (gzip, none)"),
                    ))
                }
            },
        };
        Ok(Settings { protocol, endpoint, headers, timeout, gzip })
    }

    /// `host:port` of the endpoint, the port from the scheme when the URL has none.
    fn address(&self) -> String {
        let host = self.endpoint.host().unwrap_or("localhost");
        let port = self.endpoint.port_u16().unwrap_or(if self.secure() { 443 } else { 80 });
        format!("{host}:{port}")
    }

    fn secure(&self) -> bool {
        self.endpoint.scheme_str() == Some("https")
    }
}

/// `key=value,key2=value2`, values percent-decoded, as the OTLP exporter specification writes
/// headers; a pair that is not a header is left out with a warning naming its key only (values
/// are often credentials).
fn parse_headers(var: &str, list: &str) -> Vec<(HeaderName, HeaderValue)> {
    let mut out = Vec::new();
    for pair in list.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
        let value = percent_encoding::percent_decode_str(value.trim()).decode_utf8().ok();
        let name = HeaderName::from_bytes(key.trim().to_ascii_lowercase().as_bytes()).ok();
        match (name, value.and_then(|v| HeaderValue::from_str(&v).ok()), pair.contains('=')) {
            (Some(name), Some(value), true) => out.push((name, value)),
            _ => tracing::warn!("{var}: {:?} is not a key=value header; sending without it", key.trim()),
        }
    }
    out
}

/// Sends batches of spans to one collector.
pub(crate) struct Exporter {
    settings: Settings,
    address: String,
    resource: ResourceAttributesWithSchema,
    /// The gRPC connection (OTLP/gRPC).
    pool: Pool,
    /// The HTTP/1.1 connection kept between batches (OTLP/HTTP).
    http: tokio::sync::Mutex<Option<hyper::client::conn::http1::SendRequest<Body>>>,
    /// When a failed export was last logged (seconds since the epoch).
    warned: AtomicU64,
}

impl std::fmt::Debug for Exporter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Exporter").field("endpoint", &self.settings.endpoint).finish()
    }
}

impl Exporter {
    /// An exporter as `settings` say; connects on the first batch.
    pub(crate) fn new(settings: Settings) -> Exporter {
        Exporter {
            address: settings.address(),
            settings,
            resource: ResourceAttributesWithSchema::default(),
            pool: Pool::new(),
            http: tokio::sync::Mutex::new(None),
            warned: AtomicU64::new(0),
        }
    }

    async fn send(&self, batch: Vec<SpanData>) -> Result<(), Error> {
        let request =
            ExportTraceServiceRequest { resource_spans: group_spans_by_resource_and_scope(batch, &self.resource) };
        let message = request.encode_to_vec();
        let reply = match self.settings.protocol {
            Protocol::Grpc => self.send_grpc(&message).await?,
            Protocol::Http => self.send_http(message).await?,
        };
        if let Ok(reply) = ExportTraceServiceResponse::decode(reply) {
            if let Some(partial) = reply.partial_success.filter(|p| p.rejected_spans > 0 || !p.error_message.is_empty())
            {
                tracing::warn!(
                    rejected = partial.rejected_spans,
                    message = partial.error_message,
                    "the collector rejected spans"
                );
            }
        }
        Ok(())
    }

    async fn send_grpc(&self, message: &[u8]) -> Result<Bytes, Error> {
        let mut metadata = Metadata::new();
        for (name, value) in &self.settings.headers {
            metadata.insert_header(name, value);
        }
        let encoding = if self.settings.gzip { Encoding::Gzip } else { Encoding::Identity };
        let channel = Channel {
            pool: &self.pool,
            address: &self.address,
            secure: self.settings.secure(),
            connect_timeout: self.settings.timeout,
            max_message_size: MAX_REPLY,
            peer: ID,
        };
        let framed = grpc::frame_encoded(message, encoding);
        channel.unary_encoded(EXPORT_PATH, Codec::Proto, &metadata, self.settings.timeout, framed, encoding).await
    }

    async fn send_http(&self, message: Vec<u8>) -> Result<Bytes, Error> {
        let body = if self.settings.gzip { compression::compress(&message) } else { Bytes::from(message) };
        let mut held = self.http.lock().await;
        let mut reused = held.take().filter(|s| !s.is_closed());
        if let Some(s) = reused.as_mut() {
            if s.ready().await.is_err() {
                reused = None;
            }
        }
        let fresh = reused.is_none();
        let mut sender = match reused {
            Some(s) => s,
            None => self.connect_http().await?,
        };
        let response = match sender.send_request(self.http_request(body.clone())?).await {
            Ok(r) => r,
            // A kept connection the collector closed meanwhile: once more on a new one.
            Err(e)
                if !fresh && (e.is_canceled() || e.is_closed() || e.is_incomplete_message() || sender.is_closed()) =>
            {
                sender = self.connect_http().await?;
                sender.send_request(self.http_request(body)?).await.map_err(|e| self.unavailable(&e))?
            }
            Err(e) => return Err(self.unavailable(&e)),
        };
        let status = response.status();
        let collected = Limited::new(response.into_body(), MAX_REPLY).collect().await;
        if !status.is_success() {
            let reply = collected.map(|c| c.to_bytes()).unwrap_or_default();
            let text = String::from_utf8_lossy(&reply[..reply.len().min(200)]).into_owned();
            return Err(Error::new(ID, status.as_u16(), format!("the collector answered {status}: {}", text.trim())));
        }
        let reply = collected.map(|c| c.to_bytes()).map_err(|e| self.unavailable(&*e))?;
        *held = Some(sender);
        Ok(reply)
    }

    fn http_request(&self, body: Bytes) -> Result<http::Request<Body>, Error> {
        let endpoint = &self.settings.endpoint;
        let path = endpoint.path_and_query().map_or("/", |p| p.as_str());
        let mut req = http::Request::post(path)
            .header(http::header::HOST, endpoint.authority().map_or(self.address.as_str(), |a| a.as_str()))
            .header(http::header::CONTENT_TYPE, "application/x-protobuf")
            .header(http::header::USER_AGENT, concat!("micro/", env!("CARGO_PKG_VERSION")))
            .body(Body::full(body))
            .map_err(|e| Error::bad_request(ID, format!("the OTLP request cannot be built: {e}")))?;
        if self.settings.gzip {
            req.headers_mut().insert(http::header::CONTENT_ENCODING, HeaderValue::from_static("gzip"));
        }
        for (name, value) in &self.settings.headers {
            req.headers_mut().insert(name.clone(), value.clone());
        }
        Ok(req)
    }

    async fn connect_http(&self) -> Result<hyper::client::conn::http1::SendRequest<Body>, Error> {
        let addr = self.address.as_str();
        let stream = TcpStream::connect(addr).await.map_err(|e| self.unavailable(&e))?;
        let _ = stream.set_nodelay(true);
        if self.settings.secure() {
            let name = tls::server_name(addr)?;
            // The process's client TLS, offering HTTP/1.1 (its own ALPN is h2).
            let mut config = (*tls::default_client().rustls_config()).clone();
            config.alpn_protocols = vec![b"http/1.1".to_vec()];
            let connector = tokio_rustls::TlsConnector::from(std::sync::Arc::new(config));
            let stream = connector.connect(name, stream).await.map_err(|e| self.unavailable(&e))?;
            self.handshake(stream).await
        } else {
            self.handshake(stream).await
        }
    }

    async fn handshake<IO>(&self, io: IO) -> Result<hyper::client::conn::http1::SendRequest<Body>, Error>
    where
        IO: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
    {
        let (sender, conn) =
            hyper::client::conn::http1::handshake(TokioIo::new(io)).await.map_err(|e| self.unavailable(&e))?;
        tokio::spawn(async move {
            let _ = conn.await;
        });
        Ok(sender)
    }

    fn unavailable(&self, e: &dyn std::fmt::Display) -> Error {
        Error::unavailable(ID, format!("the OTLP collector at {}: {e}", self.settings.endpoint))
    }
}

impl SpanExporter for Exporter {
    async fn export(&self, batch: Vec<SpanData>) -> OTelSdkResult {
        let timeout = self.settings.timeout;
        let failure = match tokio::time::timeout(timeout, self.send(batch)).await {
            Ok(Ok(())) => return Ok(()),
            Ok(Err(e)) => e.detail,
            Err(_) => format!("the OTLP collector at {} did not answer within {timeout:?}", self.settings.endpoint),
        };
        // The SDK's own report of a failed export is compiled out; one line a minute says it.
        let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs());
        let last = self.warned.load(Ordering::Relaxed);
        if now >= last + 60 && self.warned.compare_exchange(last, now, Ordering::Relaxed, Ordering::Relaxed).is_ok() {
            tracing::warn!(error = %failure, "spans were dropped");
        }
        Err(OTelSdkError::InternalFailure(failure))
    }

    fn set_resource(&mut self, resource: &opentelemetry_sdk::Resource) {
        self.resource = resource.into();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings(vars: &[(&str, &str)]) -> Result<Settings, Error> {
        let vars: Vec<(String, String)> = vars.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        Settings::from_env(|k| vars.iter().find(|(n, _)| n == k).map(|(_, v)| v.clone()))
    }

    #[test]
    fn the_general_endpoint_gets_the_signal_path_and_the_signal_endpoint_is_used_as_it_is() {
        let s = settings(&[("OTEL_EXPORTER_OTLP_ENDPOINT", "http://127.0.0.1:4318/")]).unwrap();
        assert_eq!(s.endpoint, "http://127.0.0.1:4318/v1/traces");
        assert_eq!(
            (s.protocol, s.timeout, s.gzip, s.address()),
            (Protocol::Http, DEFAULT_TIMEOUT, false, "127.0.0.1:4318".into())
        );
        let s = settings(&[
            ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://127.0.0.1:1"),
            ("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "https://collector.example/custom"),
        ])
        .unwrap();
        assert_eq!(s.endpoint, "https://collector.example/custom");
        assert_eq!(s.address(), "collector.example:443");
        let s =
            settings(&[("OTEL_EXPORTER_OTLP_ENDPOINT", "http://[::1]:4317"), ("OTEL_EXPORTER_OTLP_PROTOCOL", "grpc")])
                .unwrap();
        assert_eq!(
            (s.protocol, s.endpoint.to_string(), s.address()),
            (Protocol::Grpc, "http://[::1]:4317/".into(), "[::1]:4317".into())
        );
    }

    #[test]
    fn headers_timeout_and_compression_are_read_and_bad_values_are_ignored_or_one_clear_error() {
        let s = settings(&[
            ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://127.0.0.1:4318"),
            ("OTEL_EXPORTER_OTLP_HEADERS", "Authorization=Bearer%20abc, x-team=red"),
            ("OTEL_EXPORTER_OTLP_TRACES_HEADERS", "x-team=blue"),
            ("OTEL_EXPORTER_OTLP_TIMEOUT", "2500"),
            ("OTEL_EXPORTER_OTLP_TRACES_COMPRESSION", "gzip"),
        ])
        .unwrap();
        let headers: Vec<(&str, &str)> = s.headers.iter().map(|(k, v)| (k.as_str(), v.to_str().unwrap())).collect();
        assert_eq!(headers, [("authorization", "Bearer abc"), ("x-team", "blue")]);
        assert_eq!((s.timeout, s.gzip), (Duration::from_millis(2500), true));
        // Values the SDK configuration says to warn about and ignore.
        let s = settings(&[
            ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://127.0.0.1:4318"),
            ("OTEL_EXPORTER_OTLP_HEADERS", "novalue, x-ok=1, bad name=2"),
            ("OTEL_EXPORTER_OTLP_TIMEOUT", "10s"),
        ])
        .unwrap();
        let headers: Vec<&str> = s.headers.iter().map(|(k, _)| k.as_str()).collect();
        assert_eq!((headers, s.timeout), (vec!["x-ok"], DEFAULT_TIMEOUT));
        assert_eq!(settings(&[("OTEL_EXPORTER_OTLP_TRACES_TIMEOUT", "0")]).unwrap().timeout, DEFAULT_TIMEOUT);
        // Values that would send spans somewhere else or in a form the collector cannot read.
        for (key, value, says) in [
            ("OTEL_EXPORTER_OTLP_PROTOCOL", "http/json", "OTEL_EXPORTER_OTLP_PROTOCOL \"http/json\""),
            ("OTEL_EXPORTER_OTLP_TRACES_COMPRESSION", "zstd", "OTEL_EXPORTER_OTLP_TRACES_COMPRESSION \"zstd\""),
            ("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "ftp://x", "ftp://x"),
        ] {
            let err = settings(&[("OTEL_EXPORTER_OTLP_ENDPOINT", "http://127.0.0.1:4318"), (key, value)]).unwrap_err();
            assert!(err.detail.contains(says), "{key}={value}: {}", err.detail);
        }
    }
}
