//! A service: a server, a client and a registry, started, registered and stopped together.
//!
//! `run()` starts the server, registers the node (and renews the registration every interval with
//! a TTL), serves until SIGINT or SIGTERM, then shuts down gracefully, in this order: readiness
//! goes down (`/health/ready` 503, gRPC health NOT_SERVING), the node waits the shutdown delay
//! (0 unless set, for load balancers that poll readiness), deregisters, so callers stop choosing
//! it, then the server stops accepting and lets in-flight requests finish (grace period), and
//! the last spans are sent. Until the node is registered, it is not ready either.
//!
//! **Observability.** Every service records [`Metrics`] (calls answered and made, messages,
//! registry and broker health, the process) and answers them on `GET /metrics` unless
//! `--metrics=false`; with the `otel` feature and an OTLP endpoint in the standard variables it
//! traces every call and message ([`crate::wrapper::trace`]).
//!
//! **When the registry is down.** A node serves first and registers second: `start()` tries to
//! register once, and if the registry cannot be reached it returns anyway (the node answers whoever
//! has its address) and keeps trying in the background, waiting 100 ms, then twice as long after
//! each failure up to 5 s (never longer than the renewal interval), logging each failure. A renewal
//! that fails is retried the same way, so a node is back in the registry within seconds of the
//! registry coming back, however long the interval.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::broker::{self, SharedBroker, Subscription};
use crate::client::Client;
use crate::options::Options;
use crate::registry::{self, Node, RegisterOptions, SharedRegistry};
use crate::selector::RegistrySelector;
use crate::server::{Server, ServerOptions};
use crate::wrapper::Metrics;
use crate::Error;

/// The id of errors about a service as a whole.
pub const ID: &str = "go.micro.service";

/// Builds a [`Service`].
#[derive(Default)]
pub struct ServiceBuilder {
    name: Option<String>,
    version: Option<String>,
    metadata: BTreeMap<String, String>,
    address: Option<String>,
    registry: Option<SharedRegistry>,
    broker: Option<SharedBroker>,
    options: Option<Options>,
    server_options: Option<ServerOptions>,
    parse_process: bool,
}

impl ServiceBuilder {
    /// The service name.
    pub fn name(mut self, name: impl Into<String>) -> Self {
        self.name = Some(name.into());
        self
    }

    /// The version (`latest` unless set).
    pub fn version(mut self, version: impl Into<String>) -> Self {
        self.version = Some(version.into());
        self
    }

    /// Adds service metadata.
    pub fn metadata(mut self, key: impl Into<String>, value: impl Into<String>) -> Self {
        self.metadata.insert(key.into(), value.into());
        self
    }

    /// The listen address (`127.0.0.1:0` unless set).
    pub fn address(mut self, addr: impl Into<String>) -> Self {
        self.address = Some(addr.into());
        self
    }

    /// Uses this registry instead of the one the options name.
    pub fn registry(mut self, registry: SharedRegistry) -> Self {
        self.registry = Some(registry);
        self
    }

    /// Uses this broker instead of the one the options name.
    pub fn broker(mut self, broker: SharedBroker) -> Self {
        self.broker = Some(broker);
        self
    }

    /// Starts from these options instead of the process's environment and flags.
    pub fn options(mut self, options: Options) -> Self {
        self.options = Some(options);
        self
    }

    /// Server limits (message size, grace period, workers, ...).
    pub fn server_options(mut self, opts: ServerOptions) -> Self {
        self.server_options = Some(opts);
        self
    }

    /// Reads `MICRO_*` variables and micro flags of this process over the code's settings
    /// (the default for [`Service::new`]).
    pub fn from_process(mut self) -> Self {
        self.parse_process = true;
        self
    }

    /// Builds the service; fails on invalid options (one sentence naming what is wrong).
    pub fn build(self) -> Result<Service, Error> {
        let mut opts = match self.options {
            Some(o) => o,
            None => Options::default(),
        };
        if self.parse_process {
            opts.apply_env(|k| std::env::var(k).ok())?;
            process_args(&mut opts);
        }
        let name = opts
            .server_name
            .clone()
            .or(self.name)
            .ok_or_else(|| Error::bad_request(ID, "a service needs a name (or --server_name)"))?;
        let registry = match self.registry {
            Some(r) => r,
            None => crate::config::plugins::registry(&opts.registry, &opts.registry_address)?,
        };
        let mut sopts = self.server_options.unwrap_or_default();
        sopts.name = name.clone();
        sopts.version = opts.server_version.clone().or(self.version).unwrap_or_else(|| "latest".into());
        sopts.id = opts.server_id.clone().unwrap_or_default();
        if let Some(a) = opts.server_address.clone().or(self.address) {
            sopts.address = a;
        }
        sopts.advertise = opts.server_advertise.clone();
        sopts.metadata.extend(opts.server_metadata.clone());
        sopts.serve = opts.serve_options(sopts.serve)?;
        sopts.cors_allowed_origins.extend(opts.server_cors_allowed_origins.iter().cloned());
        sopts.allowed_hosts.extend(opts.server_allowed_hosts.iter().cloned());
        let server = Server::new(sopts);
        if let Some(token) = &opts.auth_token {
            server.wrap(crate::wrapper::BearerAuth::new(token, &name));
        }
        server.wrap(opts.shedder());
        let client_tls = opts.client_tls()?;
        if let Some(tls) = &client_tls {
            crate::transport::tls::set_default_client(tls.clone());
        }
        let broker = match self.broker {
            Some(b) => b,
            None => {
                let credentials = broker::Credentials { auth_token: opts.auth_token.clone(), tls: client_tls.clone() };
                crate::config::plugins::broker(&opts, registry.clone(), credentials)?
            }
        };
        server.set_broker(broker.clone());
        let strategy = opts.selector.parse()?;
        let client = Client::with_selector(
            Arc::new(RegistrySelector::with_outliers(registry.clone(), strategy, opts.outliers())),
            opts.client_options(client_tls),
        )
        .with_broker(broker.clone());
        let mut client = match opts.throttle() {
            Some(throttle) => client.wrap(throttle),
            None => client,
        };
        if let Some(token) = &opts.auth_token {
            client = client.wrap(crate::wrapper::BearerToken::new(token));
        }
        let metrics = opts.metrics.then(Metrics::new);
        if let Some(metrics) = &metrics {
            server.wrap(metrics.clone());
            client = client.wrap(metrics.clone());
            expose_metrics(&server, metrics.clone(), broker.clone());
        }
        #[cfg(feature = "otel")]
        let tracing = tracing_of(&name)?;
        #[cfg(feature = "otel")]
        if let Some(tracing) = &tracing {
            server.wrap(tracing.clone());
            client = client.wrap(tracing.clone());
        }
        Ok(Service {
            inner: Arc::new(Inner {
                opts,
                metadata: self.metadata,
                server,
                client,
                registry,
                broker,
                metrics,
                #[cfg(feature = "otel")]
                tracing,
                running: Mutex::new(None),
            }),
        })
    }
}

/// Answers `GET /metrics` with `metrics`, the broker's state read at each scrape.
fn expose_metrics(server: &Server, metrics: Metrics, broker: SharedBroker) {
    server.expose(
        crate::wrapper::metrics::PATH,
        Arc::new(move || {
            metrics.set_broker_connected(broker.check().is_ok());
            crate::web::Response::text(metrics.encode()).header("content-type", crate::wrapper::metrics::CONTENT_TYPE)
        }),
    );
}

/// Tracing as the standard variables ask for it, if they do and a Tokio runtime is there to
/// export with.
#[cfg(feature = "otel")]
fn tracing_of(name: &str) -> Result<Option<crate::wrapper::Tracing>, Error> {
    if !crate::wrapper::trace::wanted(|k| std::env::var(k).ok()) {
        return Ok(None);
    }
    if tokio::runtime::Handle::try_current().is_err() {
        tracing::warn!("tracing is asked for, but the service is built outside a Tokio runtime: no traces");
        return Ok(None);
    }
    crate::wrapper::Tracing::from_env(name)
}

/// Applies this process's command line to `opts`, as a Go Micro service does: `--help` prints the
/// options and exits 0; an option that is not a micro option, or a bad value, is one line on
/// standard error and exit 2. (A program with flags of its own builds its [`Options`] itself:
/// [`Options::apply_args`] returns what it does not take.)
fn process_args(opts: &mut Options) {
    let program = std::env::args().next().unwrap_or_default();
    let program =
        std::path::Path::new(&program).file_name().map(|p| p.to_string_lossy().into_owned()).unwrap_or_default();
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.iter().any(|a| a == "--help" || a == "-h") {
        print!("{}", crate::options::help(&program));
        std::process::exit(0);
    }
    let fail = |why: &str| -> ! {
        eprintln!("{program}: {why} (see --help)");
        std::process::exit(2);
    };
    match opts.apply_args(args) {
        Ok(rest) => {
            if let Some(unknown) = rest.iter().find(|a| a.starts_with('-')) {
                fail(&format!("unknown option {unknown}"));
            }
        }
        Err(e) => fail(&e.detail),
    }
}

/// A failed registration is tried again after this long at first, then twice as long each time.
const REGISTER_RETRY_FIRST: Duration = Duration::from_millis(100);
/// The longest wait between two registration attempts after a failure.
const REGISTER_RETRY_MAX: Duration = Duration::from_secs(5);

/// What keeps a node registered: its record, where it goes, and how often.
struct Registration {
    server: Server,
    metrics: Option<Metrics>,
    registry: SharedRegistry,
    broker: SharedBroker,
    record: registry::Service,
    opts: RegisterOptions,
    interval: Duration,
}

impl Registration {
    /// Registers (or renews) the record, then the node's subscriptions.
    async fn attempt(&self) -> Result<(), Error> {
        self.registry.register(&self.record, self.opts).await?;
        self.broker.attach(&self.record.nodes[0], self.opts).await
    }

    /// Logs that the node is registered, and says it is serving.
    fn registered(&self) {
        self.server.set_serving(true);
        if let Some(m) = &self.metrics {
            m.set_registered(true);
        }
        tracing::info!(
            service = %self.record.name,
            node = %self.record.nodes[0].id,
            "registered with the {} registry",
            self.registry.name()
        );
    }

    /// Logs a failed attempt in one line; once the registration has `lapsed` (never made, or
    /// older than its TTL) the node is not ready. A renewal that fails while the record still
    /// lives changes nothing: a registry outage must not take every node out of rotation.
    fn failed(&self, e: &Error, retry_in: Duration, lapsed: bool) {
        if lapsed {
            self.server.set_not_ready(format!(
                "registering with the {} registry failed: {}",
                self.registry.name(),
                e.detail
            ));
            if let Some(m) = &self.metrics {
                m.set_registered(false);
            }
        }
        tracing::warn!(
            service = %self.record.name,
            "registering with the {} registry failed ({}); serving anyway and retrying in {retry_in:?}",
            self.registry.name(),
            e.detail
        );
    }

    /// How long to wait before the next attempt when the back-off is at `backoff`.
    fn retry_wait(&self, backoff: Duration) -> Duration {
        if self.interval.is_zero() {
            backoff
        } else {
            backoff.min(self.interval)
        }
    }

    /// Renews every interval once registered; after a failure (the first attempt's too), retries
    /// with back-off until registered again. With no interval, ends once registered.
    async fn keep(self, mut registered: bool) {
        let mut last_ok = registered.then(tokio::time::Instant::now);
        let mut backoff = REGISTER_RETRY_FIRST;
        let mut wait = self.interval;
        if !registered {
            wait = self.retry_wait(backoff);
            backoff = (backoff * 2).min(REGISTER_RETRY_MAX);
        }
        loop {
            tokio::time::sleep(wait).await;
            match self.attempt().await {
                Ok(()) => {
                    if !registered {
                        self.registered();
                    }
                    registered = true;
                    last_ok = Some(tokio::time::Instant::now());
                    backoff = REGISTER_RETRY_FIRST;
                    if self.interval.is_zero() {
                        return;
                    }
                    wait = self.interval;
                }
                Err(e) => {
                    registered = false;
                    wait = self.retry_wait(backoff);
                    let lapsed = last_ok.is_none_or(|t| !self.opts.ttl.is_zero() && t.elapsed() >= self.opts.ttl);
                    self.failed(&e, wait, lapsed);
                    backoff = (backoff * 2).min(REGISTER_RETRY_MAX);
                }
            }
        }
    }
}

struct Running {
    record: registry::Service,
    renewal: Option<tokio::task::JoinHandle<()>>,
    subscriptions: Vec<Subscription>,
}

struct Inner {
    opts: Options,
    metadata: BTreeMap<String, String>,
    server: Server,
    client: Client,
    registry: SharedRegistry,
    broker: SharedBroker,
    metrics: Option<Metrics>,
    #[cfg(feature = "otel")]
    tracing: Option<crate::wrapper::Tracing>,
    running: Mutex<Option<Running>>,
}

/// A service. Cheap to clone.
#[derive(Clone)]
pub struct Service {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for Service {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Service").field("name", &self.name()).finish()
    }
}

impl Service {
    /// A builder that starts from code defaults only.
    pub fn builder() -> ServiceBuilder {
        ServiceBuilder::default()
    }

    /// A service called `name`, configured by this process's `MICRO_*` variables and flags.
    pub fn new(name: impl Into<String>) -> Result<Service, Error> {
        Service::builder().name(name).from_process().build()
    }

    /// The service name.
    pub fn name(&self) -> String {
        self.inner.server.options().name
    }

    /// The options in force.
    pub fn options(&self) -> &Options {
        &self.inner.opts
    }

    /// The server, to register handlers on.
    pub fn server(&self) -> &Server {
        &self.inner.server
    }

    /// The client, to call other services.
    pub fn client(&self) -> &Client {
        &self.inner.client
    }

    /// The registry.
    pub fn registry(&self) -> &SharedRegistry {
        &self.inner.registry
    }

    /// The broker.
    pub fn broker(&self) -> &SharedBroker {
        &self.inner.broker
    }

    /// The service's metrics (`None` with `--metrics=false`).
    pub fn metrics(&self) -> Option<&Metrics> {
        self.inner.metrics.as_ref()
    }

    /// The record this node registers.
    pub fn record(&self, addr: SocketAddr) -> registry::Service {
        let sopts = self.inner.server.options();
        let mut metadata = BTreeMap::from([
            ("transport".to_string(), self.inner.opts.transport.replace("grpc", "http")),
            ("broker".to_string(), self.inner.broker.name().to_string()),
            ("server".to_string(), "micro".to_string()),
            ("registry".to_string(), self.inner.registry.name().to_string()),
            ("protocol".to_string(), "grpc".to_string()),
        ]);
        metadata.extend(sopts.metadata.clone());
        if sopts.serve.tls.is_some() {
            metadata.insert(crate::transport::tls::SECURE.to_string(), "true".to_string());
        }
        let address = match &sopts.advertise {
            Some(a) => a.clone(),
            None => crate::transport::addr::advertised(addr, self.inner.registry.host_only()),
        };
        registry::Service {
            name: sopts.name.clone(),
            version: sopts.version.clone(),
            metadata: self.inner.metadata.clone(),
            endpoints: self.inner.server.registry_endpoints(),
            nodes: vec![Node { id: sopts.id.clone(), address, metadata }],
        }
    }

    /// Starts serving and registers; returns the listen address. If the registry cannot be reached,
    /// the node serves anyway and registers in the background once it can (see the module doc).
    pub async fn start(&self) -> Result<SocketAddr, Error> {
        let broker = self.inner.broker.clone();
        broker.connect().await?;
        let mut subscriptions = Vec::new();
        for sub in self.inner.server.wrapped_subscribers() {
            subscriptions.push(broker.subscribe(&sub.topic, sub.handler.clone(), sub.options.clone()).await?);
        }
        // Not serving until registered: health checks say so from the first connection.
        self.inner.server.set_not_ready(format!("not registered with the {} registry yet", self.inner.registry.name()));
        let (addr, record) = self.listen().await?;
        let registration = Registration {
            server: self.inner.server.clone(),
            metrics: self.inner.metrics.clone(),
            registry: self.inner.registry.clone(),
            broker,
            record: record.clone(),
            opts: RegisterOptions { ttl: self.inner.opts.register_ttl },
            interval: self.inner.opts.register_interval,
        };
        let registered = match registration.attempt().await {
            Ok(()) => {
                registration.registered();
                true
            }
            Err(e) => {
                registration.failed(&e, registration.retry_wait(REGISTER_RETRY_FIRST), true);
                false
            }
        };
        let renewal =
            (!registered || !registration.interval.is_zero()).then(|| tokio::spawn(registration.keep(registered)));
        *self.inner.running.lock().unwrap_or_else(|e| e.into_inner()) =
            Some(Running { record, renewal, subscriptions });
        Ok(addr)
    }

    /// Starts the server on the transport the options name; returns its address and record.
    async fn listen(&self) -> Result<(SocketAddr, registry::Service), Error> {
        match self.inner.opts.transport.as_str() {
            #[cfg(feature = "nats")]
            "nats" => {
                let conn = crate::transport::nats::Connection::new(&self.inner.opts.transport_address);
                let subject = self.inner.server.start_nats(&conn).await?;
                let mut record = self.record(SocketAddr::from(([0, 0, 0, 0], 0)));
                record.nodes[0].address = subject;
                record.nodes[0].metadata.insert("transport".into(), "nats".into());
                Ok((SocketAddr::from(([0, 0, 0, 0], 0)), record))
            }
            #[cfg(not(feature = "nats"))]
            "nats" => Err(Error::bad_request(
                crate::transport::ID,
                "transport \"nats\" is not enabled in this build; rebuild with --features nats",
            )),
            _ => {
                let addr = self.inner.server.start()?;
                Ok((addr, self.record(addr)))
            }
        }
    }

    /// Says it is not ready, waits the shutdown delay, deregisters, then stops the server
    /// gracefully (in-flight requests finish) and sends the last spans.
    pub async fn stop(&self) {
        let running = self.inner.running.lock().unwrap_or_else(|e| e.into_inner()).take();
        let name = self.name();
        if let Some(running) = running {
            self.inner.server.set_not_ready("shutting down");
            tracing::info!(service = %name, "not ready: shutting down");
            // A renewal in flight must not make the node ready again, nor put it back once
            // deregistered.
            if let Some(task) = running.renewal {
                task.abort();
                let _ = task.await;
            }
            if !self.inner.opts.shutdown_delay.is_zero() {
                tokio::time::sleep(self.inner.opts.shutdown_delay).await;
            }
            if let Err(e) = self.inner.broker.disconnect().await {
                tracing::warn!(error = %e.detail, "leaving the broker failed");
            }
            drop(running.subscriptions);
            match self.inner.registry.deregister(&running.record).await {
                Ok(()) => tracing::info!(service = %running.record.name, "deregistered"),
                Err(e) => tracing::warn!(error = %e.detail, "deregistration failed"),
            }
            if let Some(m) = &self.inner.metrics {
                m.set_registered(false);
            }
        }
        self.inner.server.stop().await;
        tracing::info!(service = %name, "drained");
        #[cfg(feature = "otel")]
        if let Some(t) = self.inner.tracing.clone() {
            // The exporter's shutdown blocks its thread until the last batch is sent.
            let flush = tokio::task::spawn_blocking(move || t.shutdown());
            if tokio::time::timeout(Duration::from_secs(5), flush).await.is_err() {
                tracing::warn!(service = %name, "the last spans were not sent within 5 s");
            }
        }
    }

    /// Starts, serves until `signal` completes, then stops gracefully.
    pub async fn run_until(&self, signal: impl std::future::Future<Output = ()>) -> Result<(), Error> {
        self.start().await?;
        signal.await;
        tracing::info!(service = %self.name(), "shutting down");
        self.stop().await;
        Ok(())
    }

    /// Starts, serves until SIGINT or SIGTERM, then stops gracefully.
    pub async fn run(&self) -> Result<(), Error> {
        crate::logger::init();
        tracing::info!(service = %self.name(), version = %self.inner.server.options().version, "starting");
        self.run_until(shutdown_signal()).await
    }
}

/// Completes on SIGINT or SIGTERM.
pub async fn shutdown_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut term = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(s) => s,
            Err(_) => {
                let _ = ctrl_c.await;
                return;
            }
        };
        tokio::select! {
            _ = ctrl_c => {}
            _ = term.recv() => {}
        }
    }
    #[cfg(not(unix))]
    {
        let _ = ctrl_c.await;
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicBool, Ordering};

    use super::*;
    use crate::registry::{MemoryRegistry, Registry, Watcher};

    /// A memory registry that refuses registrations while `down`.
    #[derive(Default)]
    struct Flaky {
        inner: MemoryRegistry,
        down: AtomicBool,
        attempts: std::sync::atomic::AtomicUsize,
    }

    #[async_trait::async_trait]
    impl Registry for Flaky {
        async fn register(&self, service: &registry::Service, opts: RegisterOptions) -> Result<(), Error> {
            self.attempts.fetch_add(1, Ordering::SeqCst);
            if self.down.load(Ordering::SeqCst) {
                return Err(Error::unavailable("test", "the registry is down"));
            }
            self.inner.register(service, opts).await
        }
        async fn deregister(&self, service: &registry::Service) -> Result<(), Error> {
            self.inner.deregister(service).await
        }
        async fn get_service(&self, name: &str) -> Result<Vec<registry::Service>, Error> {
            self.inner.get_service(name).await
        }
        async fn list_services(&self) -> Result<Vec<registry::Service>, Error> {
            self.inner.list_services().await
        }
        async fn watch(&self, service: Option<&str>) -> Result<Watcher, Error> {
            self.inner.watch(service).await
        }
        fn name(&self) -> &'static str {
            "flaky"
        }
    }

    #[tokio::test(start_paused = true)]
    async fn start_serves_while_the_registry_is_down_and_registers_once_it_is_back() {
        let registry = Arc::new(Flaky { down: AtomicBool::new(true), ..Default::default() });
        let svc = Service::builder()
            .name("flaky")
            .options(Options { register_interval: Duration::ZERO, ..Options::default() })
            .registry(registry.clone())
            .broker(Arc::new(broker::MemoryBroker::new()))
            .build()
            .unwrap();
        svc.start().await.expect("start does not wait for the registry");

        tokio::time::sleep(Duration::from_secs(60)).await;
        let attempts = registry.attempts.load(Ordering::SeqCst);
        assert!((10..=20).contains(&attempts), "backed off to one attempt per 5 s, made {attempts}");
        assert_eq!(registry.get_service("flaky").await.unwrap_err().code, 404);

        registry.down.store(false, Ordering::SeqCst);
        tokio::time::sleep(REGISTER_RETRY_MAX).await;
        assert_eq!(registry.get_service("flaky").await.unwrap()[0].nodes.len(), 1, "registered once it was back");
        let attempts = registry.attempts.load(Ordering::SeqCst);
        tokio::time::sleep(Duration::from_secs(60)).await;
        assert_eq!(registry.attempts.load(Ordering::SeqCst), attempts, "no renewals without an interval");
        svc.stop().await;
    }
}
