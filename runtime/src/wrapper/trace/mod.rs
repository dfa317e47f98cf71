//! OpenTelemetry traces (feature `otel`): a span for every call a server answers and a client
//! makes, every message published and handled, with the W3C `traceparent`, `tracestate` and
//! `baggage` carried in call metadata and message headers, so a caller's trace is joined.
//!
//! [`Tracing`] is a [`HandlerWrapper`] and a [`CallWrapper`]: the server span of a call is the
//! current OpenTelemetry context while its handler runs, so the handler's own calls and publishes
//! are its children with no code in the handler. Spans follow the semantic conventions for RPC
//! (`{rpc.service}/{rpc.method}`, `rpc.system`, `rpc.service`, `rpc.method`,
//! `rpc.grpc.status_code`, `server.address`, errors as the span status and `error.type`) and
//! messaging (`publish {topic}` and `process {topic}`, `messaging.system`,
//! `messaging.destination.name`, `messaging.operation.type`, `messaging.message.id`). While a
//! handler runs, the `tracing` span `rpc` carries `trace_id` and `span_id`, so log lines name
//! the trace.
//!
//! [`Tracing::from_env`] turns it on from the standard variables: an endpoint
//! (`OTEL_EXPORTER_OTLP_ENDPOINT` or `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`) and not
//! `OTEL_TRACES_EXPORTER=none` or `OTEL_SDK_DISABLED=true`; the exporter's own variables are
//! read by [`otlp`] (protocol, headers, timeout, compression); `OTEL_SERVICE_NAME`, `OTEL_RESOURCE_ATTRIBUTES`,
//! `OTEL_TRACES_SAMPLER` (`parentbased_always_on` by default) and `OTEL_BSP_*` are the SDK's.
//! Spans leave in batches from a bounded queue on a background task: a slow or absent collector
//! drops spans, never blocks a call. Off, nothing is installed and nothing is paid.

use std::borrow::Cow;
use std::sync::Arc;

use bytes::Bytes;
use futures_util::future::BoxFuture;
use opentelemetry::propagation::{Extractor, Injector, TextMapCompositePropagator, TextMapPropagator};
use opentelemetry::trace::{FutureExt, SpanKind, Status, TraceContextExt, Tracer, TracerProvider};
use opentelemetry::{Context, KeyValue};
use opentelemetry_sdk::propagation::{BaggagePropagator, TraceContextPropagator};
use opentelemetry_sdk::trace::{SdkTracer, SdkTracerProvider};
use tracing::Instrument;

use crate::broker::{self, Message, ID_HEADER};
use crate::client::{CallOptions, CallWrapper, Caller, Publish, RawCall};
use crate::error::GrpcCode;
use crate::metadata::Metadata;
use crate::server::{Endpoint, Handler, HandlerWrapper, RawRequest, StreamHandler, Subscriber, UnaryHandler};
use crate::transport::Body;
use crate::Error;

mod otlp;

/// The id of errors about tracing's set-up.
pub const ID: &str = "go.micro.trace";

/// Traces of one service or tool. Cheap to clone.
#[derive(Clone)]
pub struct Tracing {
    inner: Arc<Inner>,
}

struct Inner {
    provider: SdkTracerProvider,
    tracer: SdkTracer,
    propagator: TextMapCompositePropagator,
}

impl std::fmt::Debug for Tracing {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Tracing")
    }
}

/// Whether the standard variables ask for traces.
pub fn wanted(env: impl Fn(&str) -> Option<String>) -> bool {
    let set = |k: &str| env(k).is_some_and(|v| !v.trim().is_empty());
    let disabled = env("OTEL_SDK_DISABLED").is_some_and(|v| v.trim().eq_ignore_ascii_case("true"))
        || env("OTEL_TRACES_EXPORTER").is_some_and(|v| v.trim().eq_ignore_ascii_case("none"));
    !disabled && (set("OTEL_EXPORTER_OTLP_ENDPOINT") || set("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"))
}

impl Tracing {
    /// Tracing exported with OTLP as the standard variables say, for the service `name` (unless
    /// `OTEL_SERVICE_NAME` names it); `None` when they do not ask for it. Needs a Tokio runtime
    /// (the exporter runs on it).
    pub fn from_env(name: &str) -> Result<Option<Tracing>, Error> {
        if !wanted(|k| std::env::var(k).ok()) {
            return Ok(None);
        }
        let exporter = otlp::Exporter::new(otlp::Settings::from_env(|k| std::env::var(k).ok())?);
        let processor = opentelemetry_sdk::trace::span_processor_with_async_runtime::BatchSpanProcessor::builder(
            exporter,
            opentelemetry_sdk::runtime::Tokio,
        )
        .build();
        let mut resource = opentelemetry_sdk::Resource::builder();
        if std::env::var("OTEL_SERVICE_NAME").map_or(true, |v| v.trim().is_empty()) {
            resource = resource.with_service_name(name.to_string());
        }
        let provider =
            SdkTracerProvider::builder().with_span_processor(processor).with_resource(resource.build()).build();
        Ok(Some(Tracing::with_provider(provider)))
    }

    /// Tracing into `provider` (tests and programs that set up their own exporters).
    pub fn with_provider(provider: SdkTracerProvider) -> Tracing {
        let tracer = provider.tracer("micro");
        let propagator = TextMapCompositePropagator::new(vec![
            Box::new(TraceContextPropagator::new()),
            Box::new(BaggagePropagator::new()),
        ]);
        Tracing { inner: Arc::new(Inner { provider, tracer, propagator }) }
    }

    /// Sends the spans still queued (at most a few seconds) and stops exporting.
    pub fn shutdown(&self) {
        if let Err(e) = self.inner.provider.force_flush() {
            tracing::debug!(error = %e, "flushing spans failed");
        }
        let _ = self.inner.provider.shutdown();
    }

    /// The context a caller sent in `metadata` (`traceparent`, `tracestate`, `baggage`).
    pub fn extract(&self, metadata: &Metadata) -> Context {
        self.inner.propagator.extract(&MetadataCarrier(metadata))
    }

    /// The context a message's headers carry.
    fn extract_message(&self, message: &Message) -> Context {
        self.inner.propagator.extract(&MessageCarrier(message))
    }

    /// Writes `cx` into `metadata` for the next hop.
    pub fn inject(&self, cx: &Context, metadata: &mut Metadata) {
        self.inner.propagator.inject_context(cx, &mut MetadataInjector(metadata));
    }

    /// Writes `cx` into HTTP headers for the next hop (tools that forward requests).
    pub fn inject_headers(&self, cx: &Context, headers: &mut http::HeaderMap) {
        self.inner.propagator.inject_context(cx, &mut HeaderInjector(headers));
    }

    /// The context HTTP headers carry (tools that receive requests).
    pub fn extract_headers(&self, headers: &http::HeaderMap) -> Context {
        self.inner.propagator.extract(&HeaderCarrier(headers))
    }

    /// Starts a span as a child of `parent`.
    pub fn start(
        &self,
        name: impl Into<Cow<'static, str>>,
        kind: SpanKind,
        attributes: Vec<KeyValue>,
        parent: &Context,
    ) -> Context {
        let span = self
            .inner
            .tracer
            .span_builder(name)
            .with_kind(kind)
            .with_attributes(attributes)
            .start_with_context(&self.inner.tracer, parent);
        parent.with_span(span)
    }
}

/// Ends the span of `cx` with the outcome of a call.
pub fn end(cx: &Context, code: GrpcCode, detail: Option<&str>) {
    let span = cx.span();
    span.set_attribute(KeyValue::new("rpc.grpc.status_code", code as i64));
    if code != GrpcCode::Ok {
        span.set_attribute(KeyValue::new("error.type", code.name()));
        span.set_status(Status::error(detail.unwrap_or(code.name()).to_string()));
    }
    span.end();
}

/// The `tracing` span that names the trace in log lines.
pub fn log_span(cx: &Context) -> tracing::Span {
    let sc = cx.span().span_context().clone();
    tracing::info_span!("rpc", trace_id = %sc.trace_id(), span_id = %sc.span_id())
}

fn rpc_attributes(service: &str, method: &str) -> Vec<KeyValue> {
    vec![
        KeyValue::new("rpc.system", "grpc"),
        KeyValue::new("rpc.service", service.to_string()),
        KeyValue::new("rpc.method", method.to_string()),
    ]
}

/// Runs `fut` in `cx` (and in a log span carrying its ids), then ends the span with the result.
async fn in_span<T>(cx: Context, fut: impl std::future::Future<Output = Result<T, Error>>) -> Result<T, Error> {
    let log = log_span(&cx);
    let res = fut.with_context(cx.clone()).instrument(log).await;
    let (code, detail) = code_of(&res);
    end(&cx, code, detail);
    res
}

fn code_of<T>(res: &Result<T, Error>) -> (GrpcCode, Option<&str>) {
    match res {
        Ok(_) => (GrpcCode::Ok, None),
        Err(e) => (e.grpc_code(), Some(e.detail.as_str())),
    }
}

/// What a server span of an endpoint is named and attributed with.
struct Names {
    span: String,
    attributes: Vec<KeyValue>,
}

impl Names {
    fn of(endpoint: &Endpoint, server: &str) -> Arc<Names> {
        let (service, method) = super::metrics::rpc_names(&endpoint.name, endpoint.path.as_deref());
        let mut attributes = rpc_attributes(&service, &method);
        attributes.push(KeyValue::new("micro.service", server.to_string()));
        Arc::new(Names { span: format!("{service}/{method}"), attributes })
    }
}

struct TracedUnary {
    tracing: Tracing,
    names: Arc<Names>,
    inner: Arc<dyn UnaryHandler>,
}

impl UnaryHandler for TracedUnary {
    fn call(&self, req: RawRequest) -> BoxFuture<'static, Result<Bytes, Error>> {
        let parent = self.tracing.extract(&req.metadata);
        let cx = self.tracing.start(self.names.span.clone(), SpanKind::Server, self.names.attributes.clone(), &parent);
        Box::pin(in_span(cx, self.inner.call(req)))
    }
}

struct TracedStream {
    tracing: Tracing,
    names: Arc<Names>,
    inner: Arc<dyn StreamHandler>,
}

impl StreamHandler for TracedStream {
    fn call(&self, req: RawRequest) -> Body {
        let parent = self.tracing.extract(&req.metadata);
        let cx = self.tracing.start(self.names.span.clone(), SpanKind::Server, self.names.attributes.clone(), &parent);
        let body = {
            let _attached = cx.clone().attach();
            let _log = log_span(&cx).entered();
            self.inner.call(req)
        };
        body.on_end(move |ending| end(&cx, super::metrics::stream_code(&ending), None))
    }
}

impl HandlerWrapper for Tracing {
    fn wrap(&self, endpoint: &Endpoint, inner: Handler) -> Handler {
        let names = Names::of(endpoint, "");
        match inner {
            Handler::Unary(inner) => Handler::Unary(Arc::new(TracedUnary { tracing: self.clone(), names, inner })),
            Handler::Stream(inner) => Handler::Stream(Arc::new(TracedStream { tracing: self.clone(), names, inner })),
        }
    }

    fn wrap_subscriber(&self, subscriber: &Subscriber, inner: broker::Handler) -> broker::Handler {
        let tracing = self.clone();
        let (topic, name) = (subscriber.topic.clone(), format!("process {}", subscriber.topic));
        let queue = subscriber.options.queue.clone();
        Arc::new(move |event: broker::Event| {
            let parent = tracing.extract_message(&event.message);
            let mut attributes = messaging_attributes(event.system, &topic, "process", &event.message);
            if let Some(queue) = &queue {
                attributes.push(KeyValue::new("messaging.consumer.group.name", queue.clone()));
            }
            let cx = tracing.start(name.clone(), SpanKind::Consumer, attributes, &parent);
            Box::pin(in_span(cx, inner(event)))
        })
    }
}

fn messaging_attributes(system: &str, topic: &str, operation: &'static str, message: &Message) -> Vec<KeyValue> {
    let mut attributes = vec![
        KeyValue::new("messaging.system", system.to_string()),
        KeyValue::new("messaging.destination.name", topic.to_string()),
        KeyValue::new("messaging.operation.type", if operation == "publish" { "send" } else { "process" }),
        KeyValue::new("messaging.operation.name", operation),
    ];
    if let Some(id) = message.get(ID_HEADER) {
        attributes.push(KeyValue::new("messaging.message.id", id.to_string()));
    }
    attributes
}

struct TracedCalls {
    tracing: Tracing,
    inner: Arc<dyn Caller>,
}

impl Caller for TracedCalls {
    fn call(&self, mut call: RawCall) -> BoxFuture<'_, Result<Bytes, Error>> {
        let (service, method) = super::metrics::rpc_names(&call.endpoint, Some(&call.path));
        let mut attributes = rpc_attributes(&service, &method);
        attributes.push(KeyValue::new("server.address", call.service.clone()));
        let cx = self.tracing.start(format!("{service}/{method}"), SpanKind::Client, attributes, &Context::current());
        self.tracing.inject(&cx, &mut call.opts.metadata);
        Box::pin(async move {
            let res = self.inner.call(call).with_context(cx.clone()).await;
            let (code, detail) = code_of(&res);
            end(&cx, code, detail);
            res
        })
    }
}

struct TracedPublish {
    tracing: Tracing,
    inner: Arc<dyn Publish>,
}

impl Publish for TracedPublish {
    fn publish<'a>(&'a self, topic: &'a str, mut message: Message) -> BoxFuture<'a, Result<(), Error>> {
        let attributes = messaging_attributes(self.inner.system(), topic, "publish", &message);
        let cx = self.tracing.start(format!("publish {topic}"), SpanKind::Producer, attributes, &Context::current());
        self.tracing.inner.propagator.inject_context(&cx, &mut MessageInjector(&mut message));
        Box::pin(async move {
            let res = self.inner.publish(topic, message).await;
            let (code, detail) = code_of(&res);
            end(&cx, code, detail);
            res
        })
    }

    fn system(&self) -> &'static str {
        self.inner.system()
    }
}

impl CallWrapper for Tracing {
    fn wrap(&self, inner: Arc<dyn Caller>) -> Arc<dyn Caller> {
        Arc::new(TracedCalls { tracing: self.clone(), inner })
    }

    fn wrap_publish(&self, inner: Arc<dyn Publish>) -> Arc<dyn Publish> {
        Arc::new(TracedPublish { tracing: self.clone(), inner })
    }

    fn before_stream(&self, service: &str, path: &str, opts: &mut CallOptions) -> Result<(), Error> {
        // A stream is a span of its own only on the server; the client passes its context on.
        let _ = (service, path);
        self.inject(&Context::current(), &mut opts.metadata);
        Ok(())
    }
}

struct MetadataCarrier<'a>(&'a Metadata);

impl Extractor for MetadataCarrier<'_> {
    fn get(&self, key: &str) -> Option<&str> {
        self.0.get(key)
    }
    fn keys(&self) -> Vec<&str> {
        self.0.iter().map(|(k, _)| k).collect()
    }
}

struct MetadataInjector<'a>(&'a mut Metadata);

impl Injector for MetadataInjector<'_> {
    fn set(&mut self, key: &str, value: String) {
        self.0.insert(key, &value);
    }
}

struct MessageCarrier<'a>(&'a Message);

impl Extractor for MessageCarrier<'_> {
    fn get(&self, key: &str) -> Option<&str> {
        self.0.get(key)
    }
    fn keys(&self) -> Vec<&str> {
        self.0.header.keys().map(String::as_str).collect()
    }
}

struct MessageInjector<'a>(&'a mut Message);

impl Injector for MessageInjector<'_> {
    fn set(&mut self, key: &str, value: String) {
        self.0.header.retain(|k, _| !k.eq_ignore_ascii_case(key));
        self.0.header.insert(key.to_string(), value);
    }
}

struct HeaderCarrier<'a>(&'a http::HeaderMap);

impl Extractor for HeaderCarrier<'_> {
    fn get(&self, key: &str) -> Option<&str> {
        self.0.get(key).and_then(|v| v.to_str().ok())
    }
    fn keys(&self) -> Vec<&str> {
        self.0.keys().map(http::HeaderName::as_str).collect()
    }
}

struct HeaderInjector<'a>(&'a mut http::HeaderMap);

impl Injector for HeaderInjector<'_> {
    fn set(&mut self, key: &str, value: String) {
        if let (Ok(k), Ok(v)) = (http::HeaderName::from_bytes(key.as_bytes()), http::HeaderValue::from_str(&value)) {
            self.0.insert(k, v);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn on_only_when_an_endpoint_is_named() {
        let env = |pairs: &'static [(&'static str, &'static str)]| {
            move |k: &str| pairs.iter().find(|(n, _)| *n == k).map(|(_, v)| v.to_string())
        };
        assert!(!wanted(env(&[])));
        assert!(wanted(env(&[("OTEL_EXPORTER_OTLP_ENDPOINT", "http://127.0.0.1:4318")])));
        assert!(wanted(env(&[("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "http://127.0.0.1:4318/v1/traces")])));
        assert!(!wanted(env(&[("OTEL_EXPORTER_OTLP_ENDPOINT", "http://x"), ("OTEL_TRACES_EXPORTER", "none")])));
        assert!(!wanted(env(&[("OTEL_EXPORTER_OTLP_ENDPOINT", "http://x"), ("OTEL_SDK_DISABLED", "true")])));
    }
}
