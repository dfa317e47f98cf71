//! Prometheus metrics of a service or tool: every call it answers and makes, every message it
//! publishes and handles, its registry and broker, and its process.
//!
//! [`Metrics`] is a [`HandlerWrapper`] (server calls, subscribers), a [`CallWrapper`] (client
//! calls, publishing) and the registry they record into; [`Metrics::encode`] writes the
//! OpenMetrics text a Prometheus server scrapes (the service answers it on `GET /metrics`).
//! Exposition is `prometheus-client`'s. Names follow the OpenTelemetry semantic conventions in
//! Prometheus form (dots become underscores, the unit a suffix):
//!
//! | metric | labels |
//! |---|---|
//! | `rpc_server_call_duration_seconds` (histogram) | `rpc_system`, `rpc_service`, `rpc_method`, `rpc_response_status_code` |
//! | `rpc_server_active_requests` (gauge) | `rpc_system`, `rpc_service`, `rpc_method` |
//! | `rpc_client_call_duration_seconds` (histogram) | as the server's |
//! | `messaging_client_sent_messages_total` | `messaging_system`, `messaging_destination_name`, `error_type` |
//! | `messaging_client_consumed_messages_total` | as above |
//! | `messaging_process_duration_seconds` (histogram) | as above |
//! | `http_server_request_duration_seconds` (histogram; tools) | `http_request_method`, `http_response_status_code`, `micro_handler` |
//! | `micro_registry_registered`, `micro_broker_connected` (gauges) | |
//! | `process_cpu_seconds_total`, `process_resident_memory_bytes`, `process_open_fds`, `process_max_fds`, `process_threads`, `process_start_time_seconds` | |
//!
//! `rpc_response_status_code` is the gRPC status name (`OK`, `NOT_FOUND`, ...), whatever protocol
//! carried the call; `error_type` is empty on success. Streams are observed from open to their
//! last frame. The process metrics keep the names every Prometheus client uses.
//!
//! **Bounded.** Series for what a server serves are made when it starts; series named by peers
//! (the services and methods a gateway is asked to call, the topics it publishes to) stop growing
//! at [`MAX_SERIES`] per metric: further names are counted under `_other`.
//!
//! **Cost.** A unary call records into series resolved when the server started (two atomic
//! operations and one histogram lock), so metrics stay on by default.

use std::hash::Hash;
use std::sync::{Arc, RwLock};
use std::time::Instant;

use bytes::Bytes;
use futures_util::future::BoxFuture;
use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeLabelSet, EncodeMetric};
use prometheus_client::metrics::counter::{ConstCounter, Counter};
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::{ConstGauge, Gauge};
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::metrics::MetricType;
use prometheus_client::registry::{Registry, Unit};

use crate::broker::{self, Message};
use crate::client::{CallWrapper, Caller, Publish, RawCall};
use crate::error::GrpcCode;
use crate::server::{Endpoint, Handler, HandlerWrapper, RawRequest, StreamHandler, Subscriber, UnaryHandler};
use crate::transport::Body;
use crate::Error;

/// The most series one metric grows to from names its peers choose.
pub const MAX_SERIES: usize = 1000;

/// The content type of [`Metrics::encode`]'s text.
pub const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// Where a service answers its metrics.
pub const PATH: &str = "/metrics";

/// Histogram bounds, in seconds: from 100 µs (a loopback call) to 10 s.
const BUCKETS: [f64; 16] =
    [0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0];

/// What stands for names beyond [`MAX_SERIES`].
const OTHER: &str = "_other";

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct CallLabels {
    rpc_system: &'static str,
    rpc_service: String,
    rpc_method: String,
    rpc_response_status_code: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct MethodLabels {
    rpc_system: &'static str,
    rpc_service: String,
    rpc_method: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct MessageLabels {
    messaging_system: String,
    messaging_destination_name: String,
    error_type: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct HttpLabels {
    http_request_method: &'static str,
    http_response_status_code: u16,
    micro_handler: &'static str,
}

type Histograms<L> = Family<L, Histogram, fn() -> Histogram>;

fn histogram() -> Histogram {
    Histogram::new(BUCKETS)
}

struct Inner {
    registry: Registry,
    server_duration: Histograms<CallLabels>,
    server_active: Family<MethodLabels, Gauge>,
    client_duration: Histograms<CallLabels>,
    sent: Family<MessageLabels, Counter>,
    consumed: Family<MessageLabels, Counter>,
    process_duration: Histograms<MessageLabels>,
    http_duration: Histograms<HttpLabels>,
    registered: Gauge,
    broker_connected: Gauge,
    /// Client series by (service, method): bounded.
    client_methods: Bounded<(String, String)>,
    /// Publishing series by (system, topic): bounded.
    topics: Bounded<(String, String)>,
}

/// The metrics of one service or tool. Cheap to clone; clones record into the same registry.
#[derive(Clone)]
pub struct Metrics {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Metrics")
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    /// An empty registry with every metric of the table above.
    pub fn new() -> Self {
        let mut registry = Registry::default();
        let server_duration = Histograms::<CallLabels>::new_with_constructor(histogram as fn() -> Histogram);
        let client_duration = Histograms::<CallLabels>::new_with_constructor(histogram as fn() -> Histogram);
        let process_duration = Histograms::<MessageLabels>::new_with_constructor(histogram as fn() -> Histogram);
        let http_duration = Histograms::<HttpLabels>::new_with_constructor(histogram as fn() -> Histogram);
        let server_active = Family::<MethodLabels, Gauge>::default();
        let sent = Family::<MessageLabels, Counter>::default();
        let consumed = Family::<MessageLabels, Counter>::default();
        let (registered, broker_connected) = (Gauge::default(), Gauge::default());
        registry.register_with_unit(
            "rpc_server_call_duration",
            "Duration of calls the server answered.",
            Unit::Seconds,
            server_duration.clone(),
        );
        registry.register("rpc_server_active_requests", "Calls the server is answering now.", server_active.clone());
        registry.register_with_unit(
            "rpc_client_call_duration",
            "Duration of calls the client made.",
            Unit::Seconds,
            client_duration.clone(),
        );
        registry.register("messaging_client_sent_messages", "Messages published.", sent.clone());
        registry.register("messaging_client_consumed_messages", "Messages handed to subscribers.", consumed.clone());
        registry.register_with_unit(
            "messaging_process_duration",
            "Duration of subscriber handlers.",
            Unit::Seconds,
            process_duration.clone(),
        );
        registry.register_with_unit(
            "http_server_request_duration",
            "Duration of HTTP requests a tool answered.",
            Unit::Seconds,
            http_duration.clone(),
        );
        registry.register("micro_registry_registered", "1 while the node is registered.", registered.clone());
        registry.register("micro_broker_connected", "1 while the broker can carry messages.", broker_connected.clone());
        registry.register_collector(Box::new(Process { started: wall_clock() }));
        Metrics {
            inner: Arc::new(Inner {
                registry,
                server_duration,
                server_active,
                client_duration,
                sent,
                consumed,
                process_duration,
                http_duration,
                registered,
                broker_connected,
                client_methods: Bounded::default(),
                topics: Bounded::default(),
            }),
        }
    }

    /// The registry as OpenMetrics text ([`CONTENT_TYPE`]).
    pub fn encode(&self) -> String {
        let mut out = String::with_capacity(16 * 1024);
        // Writing to a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut out, &self.inner.registry);
        out
    }

    /// Says whether the node is registered (`micro_registry_registered`).
    pub fn set_registered(&self, registered: bool) {
        self.inner.registered.set(registered.into());
    }

    /// Says whether the broker can carry messages (`micro_broker_connected`).
    pub fn set_broker_connected(&self, connected: bool) {
        self.inner.broker_connected.set(connected.into());
    }

    /// Records one HTTP request a tool answered: its method, status, which of the tool's handlers
    /// answered (`rpc`, `http`, `web`, `meta`, ...), and since when.
    pub fn observe_http(&self, method: &http::Method, status: u16, handler: &'static str, started: Instant) {
        let labels = HttpLabels {
            http_request_method: method_label(method),
            http_response_status_code: status,
            micro_handler: handler,
        };
        self.inner.http_duration.get_or_create(&labels).observe(started.elapsed().as_secs_f64());
    }

    /// Records one message published to `topic` through the broker `system`.
    pub fn observe_sent(&self, system: &str, topic: &str, result: &Result<(), Error>) {
        let key =
            self.inner.topics.key((system.to_string(), topic.to_string()), || (system.to_string(), OTHER.to_string()));
        let labels = MessageLabels {
            messaging_system: key.0,
            messaging_destination_name: key.1,
            error_type: error_type(result),
        };
        self.inner.sent.get_or_create(&labels).inc();
    }

    /// Records one client call (the [`CallWrapper`] does it for the client it wraps; the gateway's
    /// direct path calls it itself).
    pub fn observe_call(&self, service: &str, endpoint: &str, path: &str, code: GrpcCode, started: Instant) {
        let (svc, method) = rpc_names(endpoint, Some(path));
        let key = self.inner.client_methods.key((svc, method), || (OTHER.to_string(), OTHER.to_string()));
        let _ = service;
        let labels = CallLabels {
            rpc_system: RPC_SYSTEM,
            rpc_service: key.0,
            rpc_method: key.1,
            rpc_response_status_code: code.name(),
        };
        self.inner.client_duration.get_or_create(&labels).observe(started.elapsed().as_secs_f64());
    }
}

/// The `rpc.system` of every call: micro's calls carry gRPC semantics and codes on every protocol.
const RPC_SYSTEM: &str = "grpc";

/// The seconds since the Unix epoch now.
fn wall_clock() -> f64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs_f64()).unwrap_or(0.0)
}

/// An HTTP method as semantic conventions label it: the known ones, `_OTHER` for the rest.
fn method_label(method: &http::Method) -> &'static str {
    match *method {
        http::Method::GET => "GET",
        http::Method::POST => "POST",
        http::Method::PUT => "PUT",
        http::Method::DELETE => "DELETE",
        http::Method::PATCH => "PATCH",
        http::Method::HEAD => "HEAD",
        http::Method::OPTIONS => "OPTIONS",
        http::Method::CONNECT => "CONNECT",
        http::Method::TRACE => "TRACE",
        _ => "_OTHER",
    }
}

fn error_type(result: &Result<(), Error>) -> &'static str {
    match result {
        Ok(()) => "",
        Err(e) => e.grpc_code().name(),
    }
}

/// `rpc.service` and `rpc.method` of an endpoint: from its gRPC path (`/pkg.Service/Method`) when
/// it has one, else from its name (`Service.Method`).
pub fn rpc_names(endpoint: &str, path: Option<&str>) -> (String, String) {
    if let Some((svc, method)) = path.and_then(|p| p.strip_prefix('/')).and_then(|p| p.split_once('/')) {
        if !svc.is_empty() && !method.is_empty() && !method.contains('/') {
            return (svc.to_string(), method.to_string());
        }
    }
    match endpoint.rsplit_once('.') {
        Some((svc, method)) => (svc.to_string(), method.to_string()),
        None => (String::new(), endpoint.to_string()),
    }
}

/// Label values peers name, admitted up to [`MAX_SERIES`].
struct Bounded<K> {
    seen: RwLock<std::collections::HashSet<K>>,
}

impl<K> Default for Bounded<K> {
    fn default() -> Self {
        Bounded { seen: RwLock::new(std::collections::HashSet::new()) }
    }
}

impl<K: Hash + Eq + Clone> Bounded<K> {
    /// `key` if it is known or there is room for it, else `other()`.
    fn key(&self, key: K, other: impl FnOnce() -> K) -> K {
        if self.seen.read().unwrap_or_else(|e| e.into_inner()).contains(&key) {
            return key;
        }
        let mut seen = self.seen.write().unwrap_or_else(|e| e.into_inner());
        if seen.len() < MAX_SERIES {
            seen.insert(key.clone());
            return key;
        }
        other()
    }
}

/// The series of one endpoint, resolved when the server starts.
struct EndpointSeries {
    metrics: Metrics,
    service: String,
    method: String,
    ok: Histogram,
    active: Gauge,
}

impl EndpointSeries {
    fn of(metrics: &Metrics, endpoint: &Endpoint) -> Arc<Self> {
        let (service, method) = rpc_names(&endpoint.name, endpoint.path.as_deref());
        let active = metrics.inner.server_active.get_or_create_owned(&MethodLabels {
            rpc_system: RPC_SYSTEM,
            rpc_service: service.clone(),
            rpc_method: method.clone(),
        });
        let ok = metrics.inner.server_duration.get_or_create_owned(&CallLabels {
            rpc_system: RPC_SYSTEM,
            rpc_service: service.clone(),
            rpc_method: method.clone(),
            rpc_response_status_code: GrpcCode::Ok.name(),
        });
        Arc::new(EndpointSeries { metrics: metrics.clone(), service, method, ok, active })
    }

    /// Records a call that ended with `code` after `seconds`.
    fn observe(&self, code: GrpcCode, seconds: f64) {
        if code == GrpcCode::Ok {
            return self.ok.observe(seconds);
        }
        let labels = CallLabels {
            rpc_system: RPC_SYSTEM,
            rpc_service: self.service.clone(),
            rpc_method: self.method.clone(),
            rpc_response_status_code: code.name(),
        };
        self.metrics.inner.server_duration.get_or_create(&labels).observe(seconds);
    }
}

/// Counts a call in flight while it lives.
struct InFlight(Gauge);

impl InFlight {
    fn new(gauge: &Gauge) -> Self {
        gauge.inc();
        InFlight(gauge.clone())
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.dec();
    }
}

struct MeteredUnary {
    series: Arc<EndpointSeries>,
    inner: Arc<dyn UnaryHandler>,
}

impl UnaryHandler for MeteredUnary {
    fn call(&self, req: RawRequest) -> BoxFuture<'static, Result<Bytes, Error>> {
        let series = self.series.clone();
        let fut = self.inner.call(req);
        Box::pin(async move {
            let started = Instant::now();
            let flight = InFlight::new(&series.active);
            let res = fut.await;
            drop(flight);
            let code = match &res {
                Ok(_) => GrpcCode::Ok,
                Err(e) => e.grpc_code(),
            };
            series.observe(code, started.elapsed().as_secs_f64());
            res
        })
    }
}

struct MeteredStream {
    series: Arc<EndpointSeries>,
    inner: Arc<dyn StreamHandler>,
}

impl StreamHandler for MeteredStream {
    fn call(&self, req: RawRequest) -> Body {
        let series = self.series.clone();
        let started = Instant::now();
        let flight = InFlight::new(&series.active);
        self.inner.call(req).on_end(move |end| {
            drop(flight);
            series.observe(stream_code(&end), started.elapsed().as_secs_f64());
        })
    }
}

/// The status a stream ended with: its `grpc-status` trailer, CANCELLED if it never ended.
pub(crate) fn stream_code(end: &crate::transport::body::Ending<'_>) -> GrpcCode {
    let status = end.trailers.and_then(|t| t.get("grpc-status")).and_then(|v| v.to_str().ok());
    match status.and_then(|s| s.parse::<i32>().ok()) {
        Some(n) => GrpcCode::from_i32(n),
        None if end.complete => GrpcCode::Ok,
        None => GrpcCode::Cancelled,
    }
}

impl HandlerWrapper for Metrics {
    fn wrap(&self, endpoint: &Endpoint, inner: Handler) -> Handler {
        let series = EndpointSeries::of(self, endpoint);
        match inner {
            Handler::Unary(inner) => Handler::Unary(Arc::new(MeteredUnary { series, inner })),
            Handler::Stream(inner) => Handler::Stream(Arc::new(MeteredStream { series, inner })),
        }
    }

    fn wrap_subscriber(&self, subscriber: &Subscriber, inner: broker::Handler) -> broker::Handler {
        let metrics = self.clone();
        let topic = subscriber.topic.clone();
        Arc::new(move |event: broker::Event| {
            let (metrics, inner, topic) = (metrics.clone(), inner.clone(), topic.clone());
            Box::pin(async move {
                let system = event.system.to_string();
                let started = Instant::now();
                let res = inner(event).await;
                let labels = MessageLabels {
                    messaging_system: system,
                    messaging_destination_name: topic,
                    error_type: error_type(&res),
                };
                metrics.inner.consumed.get_or_create(&labels).inc();
                metrics.inner.process_duration.get_or_create(&labels).observe(started.elapsed().as_secs_f64());
                res
            })
        })
    }
}

struct MeteredCalls {
    metrics: Metrics,
    inner: Arc<dyn Caller>,
}

impl Caller for MeteredCalls {
    fn call(&self, call: RawCall) -> BoxFuture<'_, Result<Bytes, Error>> {
        Box::pin(async move {
            let (service, endpoint, path) = (call.service.clone(), call.endpoint.clone(), call.path.clone());
            let started = Instant::now();
            let res = self.inner.call(call).await;
            let code = match &res {
                Ok(_) => GrpcCode::Ok,
                Err(e) => e.grpc_code(),
            };
            self.metrics.observe_call(&service, &endpoint, &path, code, started);
            res
        })
    }
}

struct MeteredPublish {
    metrics: Metrics,
    inner: Arc<dyn Publish>,
}

impl Publish for MeteredPublish {
    fn publish<'a>(&'a self, topic: &'a str, message: Message) -> BoxFuture<'a, Result<(), Error>> {
        Box::pin(async move {
            let res = self.inner.publish(topic, message).await;
            self.metrics.observe_sent(self.inner.system(), topic, &res);
            res
        })
    }

    fn system(&self) -> &'static str {
        self.inner.system()
    }
}

impl CallWrapper for Metrics {
    fn wrap(&self, inner: Arc<dyn Caller>) -> Arc<dyn Caller> {
        Arc::new(MeteredCalls { metrics: self.clone(), inner })
    }

    fn wrap_publish(&self, inner: Arc<dyn Publish>) -> Arc<dyn Publish> {
        Arc::new(MeteredPublish { metrics: self.clone(), inner })
    }
}

/// The process: CPU time, memory, file descriptors and threads, read from `/proc` at each
/// scrape (nothing where there is no `/proc`).
#[derive(Debug)]
struct Process {
    started: f64,
}

/// Clock ticks per second of `/proc/self/stat` times (`USER_HZ`, 100 on every Linux platform).
const TICKS: f64 = 100.0;

impl Process {
    fn cpu_seconds() -> Option<f64> {
        let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
        // Fields after the command (which may hold spaces) start at the state, field 3.
        let rest = stat.rsplit_once(')')?.1;
        let fields: Vec<&str> = rest.split_whitespace().collect();
        let (utime, stime): (f64, f64) = (fields.get(11)?.parse().ok()?, fields.get(12)?.parse().ok()?);
        Some((utime + stime) / TICKS)
    }

    fn open_fds() -> Option<i64> {
        Some(std::fs::read_dir("/proc/self/fd").ok()?.count() as i64)
    }

    fn max_fds() -> Option<i64> {
        let limits = std::fs::read_to_string("/proc/self/limits").ok()?;
        let line = limits.lines().find(|l| l.starts_with("Max open files"))?;
        line.split_whitespace().nth(3)?.parse().ok()
    }
}

impl Collector for Process {
    fn encode(&self, mut encoder: DescriptorEncoder<'_>) -> Result<(), std::fmt::Error> {
        if let Some(cpu) = Process::cpu_seconds() {
            let e = encoder.encode_descriptor(
                "process_cpu_seconds",
                "CPU time used, user and system.",
                None,
                MetricType::Counter,
            )?;
            ConstCounter::new(cpu).encode(e)?;
        }
        let gauges = [
            (
                "process_resident_memory_bytes",
                "Resident memory.",
                crate::server::builtin::proc_status_field("VmRSS:").map(|kb| (kb * 1024) as i64),
            ),
            ("process_open_fds", "Open file descriptors.", Process::open_fds()),
            ("process_max_fds", "The most file descriptors the process may open.", Process::max_fds()),
            (
                "process_threads",
                "Threads of the process.",
                crate::server::builtin::proc_status_field("Threads:").map(|n| n as i64),
            ),
        ];
        for (name, help, value) in gauges {
            if let Some(v) = value {
                let e = encoder.encode_descriptor(name, help, None, MetricType::Gauge)?;
                ConstGauge::new(v).encode(e)?;
            }
        }
        let e = encoder.encode_descriptor(
            "process_start_time_seconds",
            "When the process started, in Unix time.",
            None,
            MetricType::Gauge,
        )?;
        ConstGauge::new(self.started).encode(e)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_come_from_the_path_then_the_endpoint() {
        assert_eq!(
            rpc_names("Greeter.SayHello", Some("/helloworld.Greeter/SayHello")),
            ("helloworld.Greeter".into(), "SayHello".into())
        );
        assert_eq!(rpc_names("Greeter.SayHello", None), ("Greeter".into(), "SayHello".into()));
        assert_eq!(rpc_names("Greeter.SayHello", Some("/Greeter.SayHello")), ("Greeter".into(), "SayHello".into()));
    }

    #[test]
    fn peer_chosen_names_stop_at_the_bound() {
        let metrics = Metrics::new();
        for i in 0..MAX_SERIES + 50 {
            metrics.observe_call("svc", &format!("S.M{i}"), "", GrpcCode::NotFound, Instant::now());
        }
        let text = metrics.encode();
        let series = text.lines().filter(|l| l.starts_with("rpc_client_call_duration_seconds_count")).count();
        assert_eq!(series, MAX_SERIES + 1, "the bound, plus _other");
        assert!(text.contains("rpc_method=\"_other\""));
    }

    #[test]
    fn the_process_is_described() {
        let text = Metrics::new().encode();
        for name in [
            "process_cpu_seconds_total",
            "process_resident_memory_bytes",
            "process_open_fds",
            "process_start_time_seconds",
        ] {
            assert!(text.lines().any(|l| l.starts_with(name)), "{name} in\n{text}");
        }
    }
}
