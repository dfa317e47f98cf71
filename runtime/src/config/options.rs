//! Options from code, environment and command line, as Go Micro takes them.
//!
//! Every option has a flag (`--registry=etcd` or `--registry etcd`) and an environment variable
//! (`MICRO_REGISTRY=etcd`). Code sets defaults, the environment overrides code, flags override the
//! environment. Durations are whole seconds (`30`) or carry a unit (`500ms`, `5s`, `1m`).
//! Arguments that are not micro flags are left for the program.

use std::collections::BTreeMap;
use std::time::Duration;

pub use crate::secret::Secret;
use crate::Error;

/// The id of errors about options.
pub const ID: &str = "go.micro.options";

/// Plugins and settings shared by services and tools.
#[derive(Debug, Clone)]
pub struct Options {
    /// Registry backend: `mdns` (default), `etcd`, `memory`.
    pub registry: String,
    /// Registry addresses (comma list in flags).
    pub registry_address: Vec<String>,
    /// Broker backend: `http` (default), `nats`, `nats-js`, `rabbitmq`, `kafka`, `memory`.
    pub broker: String,
    /// Broker addresses.
    pub broker_address: Vec<String>,
    /// How the durable brokers (`nats-js`, `rabbitmq`, `kafka`) redeliver a message whose handler
    /// failed.
    pub broker_delivery: crate::broker::Delivery,
    /// Transport: `http` (gRPC and HTTP on one port; `grpc` is a synonym) or `nats`.
    pub transport: String,
    /// Transport addresses.
    pub transport_address: Vec<String>,
    /// Selector: `random` (default), `roundrobin` or `leastloaded`.
    pub selector: String,
    /// Service name.
    pub server_name: Option<String>,
    /// Node id.
    pub server_id: Option<String>,
    /// Service version.
    pub server_version: Option<String>,
    /// Listen address.
    pub server_address: Option<String>,
    /// Advertised address.
    pub server_advertise: Option<String>,
    /// Extra node metadata.
    pub server_metadata: BTreeMap<String, String>,
    /// Registration TTL.
    pub register_ttl: Duration,
    /// How often to re-register.
    pub register_interval: Duration,
    /// Client request timeout.
    pub client_request_timeout: Duration,
    /// Client retries.
    pub client_retries: u32,
    /// The server's TLS certificate chain (PEM file); with the key, the server speaks only TLS.
    pub server_tls_cert: Option<String>,
    /// The server's TLS private key (PEM file).
    pub server_tls_key: Option<String>,
    /// The CA clients must present a certificate from (mutual TLS).
    pub server_tls_client_ca: Option<String>,
    /// The CA the client trusts for servers (PEM file); set, every peer is reached over TLS.
    pub client_tls_ca: Option<String>,
    /// The client's certificate for mutual TLS (PEM file).
    pub client_tls_cert: Option<String>,
    /// The client's key for mutual TLS (PEM file).
    pub client_tls_key: Option<String>,
    /// A bearer token the server requires and the client sends.
    pub auth_token: Option<Secret>,
    /// Most connections the server holds open at once (unset: the server options' 4096).
    pub server_max_connections: Option<usize>,
    /// How long a client may take to start a connection (TLS, first bytes, first request) and to
    /// send each HTTP/1 request's headers (unset: the server options' 10 s).
    pub server_header_timeout: Option<Duration>,
    /// How long a unary request's body may take to arrive (unset: 30 s).
    pub server_read_timeout: Option<Duration>,
    /// How long a connection with nothing in flight stays open (unset: 60 s).
    pub server_idle_timeout: Option<Duration>,
    /// Origins whose browser pages may call the service (gRPC-Web, Connect); `*` for any.
    pub server_cors_allowed_origins: Vec<String>,
    /// Host names the service answers beyond the defaults (see `ServerOptions::allowed_hosts`).
    pub server_allowed_hosts: Vec<String>,
    /// Whether the service records metrics and answers `GET /metrics` (on unless turned off).
    pub metrics: bool,
    /// How long a stopping node stays up, not ready, before it deregisters and drains (for load
    /// balancers that poll `/health/ready`).
    pub shutdown_delay: Duration,
    /// Tokens in each service's retry bucket (gRFC A6; 0 turns the budget off).
    pub client_retry_tokens: f64,
    /// Tokens a successful call gives back to its service's retry bucket.
    pub client_retry_ratio: f64,
    /// Consecutive failures that take a node out of selection (0: never for failures).
    pub client_eject_failures: u32,
    /// How long a node is first taken out (each further time doubles it).
    pub client_eject_time: Duration,
    /// The longest a node is taken out.
    pub client_eject_max_time: Duration,
    /// How many times slower than its peers a node is taken out for (0: never for slowness).
    pub client_eject_slow: f64,
    /// Adaptive throttling's K (calls to a service that fails more than 1/K of them are held
    /// back); 0 turns it off.
    pub client_throttle: f64,
    /// Per endpoint (`Greeter.SayHello`) client policies, from code.
    pub client_endpoints: std::collections::HashMap<String, crate::client::EndpointPolicy>,
    /// When endpoints shed load beyond the capacity they show: `cpu` (overloaded and the process
    /// busy), `latency` (overloaded), `off`.
    pub server_shed: crate::wrapper::Shedding,
    /// At most this many calls at once per endpoint (0: no fixed limit).
    pub server_max_concurrent: usize,
    /// At most this many calls a second per endpoint (0: no rate limit).
    pub server_rate_limit: f64,
    /// Per endpoint limits, from code, over the three above.
    pub server_endpoint_limits: std::collections::HashMap<String, crate::wrapper::ShedOptions>,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            registry: super::plugins::DEFAULT_REGISTRY.to_string(),
            registry_address: vec![],
            broker: "http".into(),
            broker_address: vec![],
            broker_delivery: Default::default(),
            transport: "http".into(),
            transport_address: vec![],
            selector: "random".into(),
            server_name: None,
            server_id: None,
            server_version: None,
            server_address: None,
            server_advertise: None,
            server_metadata: BTreeMap::new(),
            register_ttl: Duration::from_secs(60),
            register_interval: Duration::from_secs(30),
            client_request_timeout: Duration::from_secs(5),
            client_retries: 1,
            server_tls_cert: None,
            server_tls_key: None,
            server_tls_client_ca: None,
            client_tls_ca: None,
            client_tls_cert: None,
            client_tls_key: None,
            auth_token: None,
            server_max_connections: None,
            server_header_timeout: None,
            server_read_timeout: None,
            server_idle_timeout: None,
            server_cors_allowed_origins: vec![],
            server_allowed_hosts: vec![],
            metrics: true,
            shutdown_delay: Duration::ZERO,
            client_retry_tokens: 10.0,
            client_retry_ratio: 0.1,
            client_eject_failures: 5,
            client_eject_time: Duration::from_secs(2),
            client_eject_max_time: Duration::from_secs(60),
            client_eject_slow: 5.0,
            client_throttle: 2.0,
            client_endpoints: Default::default(),
            server_shed: crate::wrapper::Shedding::Cpu,
            server_max_concurrent: 0,
            server_rate_limit: 0.0,
            server_endpoint_limits: Default::default(),
        }
    }
}

/// Names of every option, as flags (without `--`); the variable is `MICRO_` + upper case.
pub const FLAGS: &[&str] = &[
    "registry",
    "registry_address",
    "broker",
    "broker_address",
    "broker_max_deliveries",
    "broker_ack_wait",
    "broker_retry_delay",
    "transport",
    "transport_address",
    "selector",
    "server_name",
    "server_id",
    "server_version",
    "server_address",
    "server_advertise",
    "server_metadata",
    "register_ttl",
    "register_interval",
    "client_request_timeout",
    "client_retries",
    "server_tls_cert",
    "server_tls_key",
    "server_tls_client_ca",
    "server_max_connections",
    "server_header_timeout",
    "server_read_timeout",
    "server_idle_timeout",
    "server_cors_allowed_origins",
    "server_allowed_hosts",
    "client_tls_ca",
    "client_tls_cert",
    "client_tls_key",
    "auth_token",
    "metrics",
    "shutdown_delay",
    "client_retry_tokens",
    "client_retry_ratio",
    "client_eject_failures",
    "client_eject_time",
    "client_eject_max_time",
    "client_eject_slow",
    "client_throttle",
    "server_shed",
    "server_max_concurrent",
    "server_rate_limit",
];

/// Valid transports.
pub const TRANSPORTS: &[&str] = &["http", "grpc", "nats"];

/// Every option with its default and what it does, for `--help` (in the order of [`FLAGS`]).
pub const HELP: &[(&str, &str, &str)] = &[
    ("registry", "mdns", "where services are found: mdns, etcd, memory"),
    ("registry_address", "", "registry addresses, comma separated"),
    ("broker", "http", "pub/sub: http, nats, nats-js, rabbitmq, kafka, memory"),
    ("broker_address", "", "broker addresses, comma separated"),
    (
        "broker_max_deliveries",
        "5",
        "tries of a message before its topic's .dlq takes it (durable brokers; 0: for ever)",
    ),
    ("broker_ack_wait", "30s", "how long a delivery may go unacknowledged before another subscriber gets it"),
    ("broker_retry_delay", "1s", "the wait before a failed message is tried again; doubles each try"),
    ("transport", "http", "how calls travel: http (gRPC and HTTP on one port), nats"),
    ("transport_address", "", "NATS servers for the nats transport, comma separated"),
    ("selector", "random", "which node a call goes to: random, roundrobin, leastloaded"),
    ("server_name", "", "the service name (the program's own unless set)"),
    ("server_id", "", "the node id (<name>-<uuid> unless set)"),
    ("server_version", "latest", "the service version"),
    ("server_address", "127.0.0.1:0", "the listen address"),
    ("server_advertise", "", "the address registered instead of the listen address"),
    ("server_metadata", "", "node metadata, k=v pairs, comma separated"),
    ("register_ttl", "60s", "how long a registration lives without renewal"),
    ("register_interval", "30s", "how often the node registers again"),
    ("client_request_timeout", "5s", "how long a call may take, retries included"),
    ("client_retries", "1", "how many times a call that could not be served is tried again"),
    ("server_tls_cert", "", "serve TLS only, with this certificate chain (PEM)"),
    ("server_tls_key", "", "the key of server_tls_cert (PEM)"),
    ("server_tls_client_ca", "", "require client certificates from this CA (mutual TLS)"),
    ("server_max_connections", "4096", "most connections open at once"),
    ("server_header_timeout", "10s", "how long a client may take to start and to send request headers"),
    ("server_read_timeout", "30s", "how long a request body may take to arrive"),
    ("server_idle_timeout", "60s", "how long a connection with nothing in flight stays open"),
    (
        "server_cors_allowed_origins",
        "",
        "origins whose browser pages may call the service, comma separated (* for any)",
    ),
    ("server_allowed_hosts", "", "host names the service answers (default: loopback names on loopback, any otherwise)"),
    ("client_tls_ca", "", "the CA to trust for TLS services (every call uses TLS when set)"),
    ("client_tls_cert", "", "this client's certificate, for mutual TLS (PEM)"),
    ("client_tls_key", "", "the key of client_tls_cert (PEM)"),
    ("auth_token", "", "a bearer token the service requires and its client sends"),
    ("metrics", "true", "record metrics and answer GET /metrics: true or false"),
    ("shutdown_delay", "0s", "how long a stopping node stays up, not ready, before it deregisters"),
    ("client_retry_tokens", "10", "tokens in each service's retry budget; retries need over half (0: no budget)"),
    ("client_retry_ratio", "0.1", "tokens a successful call gives back to its service's retry budget"),
    ("client_eject_failures", "5", "consecutive failures that take a node out of selection (0: never)"),
    ("client_eject_time", "2s", "how long a node is first taken out; each further time doubles it"),
    ("client_eject_max_time", "60s", "the longest a node is taken out"),
    ("client_eject_slow", "5", "how many times slower than its peers a node is taken out for (0: never)"),
    ("client_throttle", "2", "hold back calls to a service failing more than 1/K of them (0: never)"),
    (
        "server_shed",
        "cpu",
        "refuse calls beyond what an overloaded endpoint can serve: cpu (and the process busy), latency, off",
    ),
    ("server_max_concurrent", "0", "at most this many calls at once per endpoint (0: no limit)"),
    ("server_rate_limit", "0", "at most this many calls a second per endpoint (0: no limit)"),
];

/// The `--help` text of a program that takes the micro options.
pub fn help(program: &str) -> String {
    let mut out = format!(
        "Usage: {program} [OPTIONS]\n\nEvery option is also a variable: --registry etcd or MICRO_REGISTRY=etcd (flags win).\nDurations are seconds (30) or carry a unit (500ms, 1m).\n\nOptions:\n"
    );
    for (name, default, what) in HELP {
        let var = format!("MICRO_{}", name.to_ascii_uppercase());
        let default = if default.is_empty() { String::new() } else { format!(" [default: {default}]") };
        out.push_str(&format!("  --{name} <{var}>\n          {what}{default}\n"));
    }
    out.push_str("  -h, --help\n          print this help\n");
    out
}

/// Parses a duration: bare seconds, or a number with `ms`, `s`, `m` or `h` (errors name options).
pub fn parse_duration(s: &str) -> Result<Duration, Error> {
    crate::metadata::parse_duration(s).map_err(|mut e| {
        e.id = ID.to_string();
        e
    })
}

/// A duration that must not be zero (a zero timeout would cut every connection at once).
fn positive(name: &str, value: &str) -> Result<Duration, Error> {
    let d = parse_duration(value)?;
    if d.is_zero() {
        return Err(Error::bad_request(ID, format!("{name} must be longer than 0")));
    }
    Ok(d)
}

fn boolean(name: &str, value: &str) -> Result<bool, Error> {
    match value {
        "true" | "1" | "on" => Ok(true),
        "false" | "0" | "off" => Ok(false),
        _ => Err(Error::bad_request(ID, format!("{name} {value:?} is not true or false"))),
    }
}

/// A number of the option's kind, never negative.
fn number<T: std::str::FromStr + PartialOrd + Default>(name: &str, value: &str) -> Result<T, Error> {
    value
        .parse::<T>()
        .ok()
        .filter(|n| *n >= T::default())
        .ok_or_else(|| Error::bad_request(ID, format!("{name} {value:?} is not a number of 0 or more")))
}

fn list(v: &str) -> Vec<String> {
    v.split(',').map(str::trim).filter(|s| !s.is_empty()).map(str::to_string).collect()
}

fn one_of(kind: &str, v: &str, valid: &[&str]) -> Result<String, Error> {
    if valid.contains(&v) {
        Ok(v.to_string())
    } else {
        Err(Error::bad_request(ID, format!("unknown {kind} \"{v}\" (valid: {})", valid.join(", "))))
    }
}

impl Options {
    /// The server TLS the options describe: none, or a certificate with its key (and a client CA
    /// for mutual TLS); half a pair is an error.
    pub fn server_tls(&self) -> Result<Option<crate::transport::tls::ServerTls>, Error> {
        use std::path::Path;
        match (&self.server_tls_cert, &self.server_tls_key) {
            (None, None) if self.server_tls_client_ca.is_some() => {
                Err(Error::bad_request(ID, "server_tls_client_ca needs server_tls_cert and server_tls_key"))
            }
            (None, None) => Ok(None),
            (Some(cert), Some(key)) => crate::transport::tls::ServerTls::from_files(
                Path::new(cert),
                Path::new(key),
                self.server_tls_client_ca.as_deref().map(Path::new),
            )
            .map(Some),
            _ => Err(Error::bad_request(ID, "server_tls_cert and server_tls_key go together")),
        }
    }

    /// `base` with the limits and TLS these options set.
    pub fn serve_options(
        &self,
        base: crate::transport::http::ServeOptions,
    ) -> Result<crate::transport::http::ServeOptions, Error> {
        Ok(crate::transport::http::ServeOptions {
            max_connections: self.server_max_connections.unwrap_or(base.max_connections),
            header_read_timeout: self.server_header_timeout.unwrap_or(base.header_read_timeout),
            body_read_timeout: self.server_read_timeout.unwrap_or(base.body_read_timeout),
            idle_timeout: self.server_idle_timeout.unwrap_or(base.idle_timeout),
            tls: self.server_tls()?.or(base.tls),
            ..base
        })
    }

    /// The client TLS the options describe, if any was asked for.
    pub fn client_tls(&self) -> Result<Option<crate::transport::tls::ClientTls>, Error> {
        use std::path::Path;
        let identity = match (&self.client_tls_cert, &self.client_tls_key) {
            (None, None) => None,
            (Some(c), Some(k)) => Some((Path::new(c), Path::new(k))),
            _ => return Err(Error::bad_request(ID, "client_tls_cert and client_tls_key go together")),
        };
        if self.client_tls_ca.is_none() && identity.is_none() {
            return Ok(None);
        }
        crate::transport::tls::ClientTls::from_files(self.client_tls_ca.as_deref().map(Path::new), identity).map(Some)
    }

    /// The client options these options describe (`tls` as [`Options::client_tls`] made it).
    pub fn client_options(&self, tls: Option<crate::transport::tls::ClientTls>) -> crate::client::ClientOptions {
        crate::client::ClientOptions {
            request_timeout: self.client_request_timeout,
            retries: self.client_retries,
            transport_address: self.transport_address.clone(),
            tls,
            budget: crate::client::BudgetOptions { tokens: self.client_retry_tokens, ratio: self.client_retry_ratio },
            endpoints: self.client_endpoints.clone(),
            ..Default::default()
        }
    }

    /// When the client's selector takes nodes out.
    pub fn outliers(&self) -> crate::selector::outlier::OutlierOptions {
        crate::selector::outlier::OutlierOptions {
            failures: self.client_eject_failures,
            slow: self.client_eject_slow,
            base: self.client_eject_time,
            max: self.client_eject_max_time.max(self.client_eject_time),
        }
    }

    /// The throttling wrapper for a client, unless turned off.
    pub fn throttle(&self) -> Option<crate::wrapper::Throttle> {
        (self.client_throttle > 0.0).then(|| crate::wrapper::Throttle::new(self.client_throttle))
    }

    /// The load-shedding wrapper for a server, unless every limit is off.
    pub fn shedder(&self) -> crate::wrapper::Shedder {
        let all = crate::wrapper::ShedOptions {
            adaptive: self.server_shed,
            max_concurrent: self.server_max_concurrent,
            rate: self.server_rate_limit,
            burst: 0.0,
        };
        let mut shedder = crate::wrapper::Shedder::new(all);
        for (endpoint, limits) in &self.server_endpoint_limits {
            shedder = shedder.endpoint(endpoint.clone(), *limits);
        }
        shedder
    }

    /// Sets one option by its flag name.
    pub fn set(&mut self, name: &str, value: &str) -> Result<(), Error> {
        match name {
            "registry" => self.registry = one_of("registry", value, super::plugins::REGISTRIES)?,
            "registry_address" => self.registry_address = list(value),
            "broker" => self.broker = one_of("broker", value, super::plugins::BROKERS)?,
            "broker_address" => self.broker_address = list(value),
            "broker_max_deliveries" => self.broker_delivery.max_deliveries = number(name, value)?,
            "broker_ack_wait" => self.broker_delivery.ack_wait = positive(name, value)?,
            "broker_retry_delay" => self.broker_delivery.retry_delay = parse_duration(value)?,
            "transport" => self.transport = one_of("transport", value, TRANSPORTS)?,
            "transport_address" => self.transport_address = list(value),
            "selector" => self.selector = one_of("selector", value, crate::selector::NAMES)?,
            "server_name" => self.server_name = Some(value.to_string()),
            "server_id" => self.server_id = Some(value.to_string()),
            "server_version" => self.server_version = Some(value.to_string()),
            "server_address" => self.server_address = Some(value.to_string()),
            "server_advertise" => self.server_advertise = Some(value.to_string()),
            "server_metadata" => {
                for pair in list(value) {
                    let (k, v) = pair
                        .split_once('=')
                        .ok_or_else(|| Error::bad_request(ID, format!("server_metadata {pair:?} is not key=value")))?;
                    self.server_metadata.insert(k.to_string(), v.to_string());
                }
            }
            "register_ttl" => self.register_ttl = parse_duration(value)?,
            "register_interval" => self.register_interval = parse_duration(value)?,
            "client_request_timeout" => self.client_request_timeout = parse_duration(value)?,
            "client_retries" => {
                self.client_retries = value
                    .parse()
                    .map_err(|_| Error::bad_request(ID, format!("client_retries {value:?} is not a number")))?
            }
            "server_tls_cert" => self.server_tls_cert = Some(value.to_string()),
            "server_tls_key" => self.server_tls_key = Some(value.to_string()),
            "server_tls_client_ca" => self.server_tls_client_ca = Some(value.to_string()),
            "client_tls_ca" => self.client_tls_ca = Some(value.to_string()),
            "client_tls_cert" => self.client_tls_cert = Some(value.to_string()),
            "client_tls_key" => self.client_tls_key = Some(value.to_string()),
            "auth_token" => self.auth_token = Some(Secret::new(value)),
            "metrics" => self.metrics = boolean(name, value)?,
            "client_retry_tokens" => self.client_retry_tokens = number(name, value)?,
            "client_retry_ratio" => self.client_retry_ratio = number(name, value)?,
            "client_eject_failures" => self.client_eject_failures = number(name, value)?,
            "client_eject_time" => self.client_eject_time = positive(name, value)?,
            "client_eject_max_time" => self.client_eject_max_time = positive(name, value)?,
            "client_eject_slow" => self.client_eject_slow = number(name, value)?,
            "client_throttle" => self.client_throttle = number(name, value)?,
            "server_shed" => self.server_shed = value.parse()?,
            "server_max_concurrent" => self.server_max_concurrent = number(name, value)?,
            "server_rate_limit" => self.server_rate_limit = number(name, value)?,
            "shutdown_delay" => self.shutdown_delay = parse_duration(value)?,
            "server_max_connections" => {
                self.server_max_connections = Some(value.parse().ok().filter(|n| *n > 0).ok_or_else(|| {
                    Error::bad_request(ID, format!("server_max_connections {value:?} is not a positive number"))
                })?)
            }
            "server_header_timeout" => self.server_header_timeout = Some(positive("server_header_timeout", value)?),
            "server_read_timeout" => self.server_read_timeout = Some(positive("server_read_timeout", value)?),
            "server_idle_timeout" => self.server_idle_timeout = Some(positive("server_idle_timeout", value)?),
            "server_cors_allowed_origins" => self.server_cors_allowed_origins = list(value),
            "server_allowed_hosts" => self.server_allowed_hosts = list(value),
            _ => return Err(Error::bad_request(ID, format!("unknown option {name}"))),
        }
        Ok(())
    }

    /// Applies `MICRO_*` variables from an environment.
    pub fn apply_env(&mut self, env: impl Fn(&str) -> Option<String>) -> Result<(), Error> {
        for name in FLAGS {
            if let Some(v) = env(&format!("MICRO_{}", name.to_ascii_uppercase())) {
                if !v.is_empty() {
                    self.set(name, &v)?;
                }
            }
        }
        Ok(())
    }

    /// Applies micro flags from command-line arguments; returns the arguments that are not ours.
    pub fn apply_args(&mut self, args: impl IntoIterator<Item = String>) -> Result<Vec<String>, Error> {
        let mut rest = Vec::new();
        let mut args = args.into_iter();
        while let Some(arg) = args.next() {
            let Some(flag) = arg.strip_prefix("--") else {
                rest.push(arg);
                continue;
            };
            let (name, inline) = match flag.split_once('=') {
                Some((n, v)) => (n, Some(v.to_string())),
                None => (flag, None),
            };
            let name = name.replace('-', "_");
            if !FLAGS.contains(&name.as_str()) {
                rest.push(arg);
                continue;
            }
            let value = match inline {
                Some(v) => v,
                None => args.next().ok_or_else(|| Error::bad_request(ID, format!("flag --{name} needs a value")))?,
            };
            self.set(&name, &value)?;
        }
        Ok(rest)
    }

    /// Options from the process environment and command line over defaults.
    pub fn from_env_and_args() -> Result<(Self, Vec<String>), Error> {
        let mut opts = Options::default();
        opts.apply_env(|k| std::env::var(k).ok())?;
        let rest = opts.apply_args(std::env::args().skip(1))?;
        Ok((opts, rest))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        assert_eq!(parse_duration("30").unwrap(), Duration::from_secs(30));
        assert_eq!(parse_duration("500ms").unwrap(), Duration::from_millis(500));
        assert_eq!(parse_duration("1m").unwrap(), Duration::from_secs(60));
        assert_eq!(parse_duration("1.5s").unwrap(), Duration::from_millis(1500));
        assert!(parse_duration("5 parsecs").is_err());
        assert!(parse_duration("").is_err());
    }

    #[test]
    fn env_then_flags_and_leftovers() {
        let mut o = Options::default();
        o.apply_env(|k| match k {
            "MICRO_REGISTRY" => Some("memory".into()),
            "MICRO_CLIENT_RETRIES" => Some("3".into()),
            _ => None,
        })
        .unwrap();
        let rest = o
            .apply_args(
                ["--server_name=a", "mine", "--client-retries", "2", "--server_metadata", "a=1,b=2", "--other"]
                    .map(String::from),
            )
            .unwrap();
        assert_eq!(rest, vec!["mine".to_string(), "--other".to_string()]);
        assert_eq!((o.registry.as_str(), o.client_retries), ("memory", 2));
        assert_eq!(o.server_name.as_deref(), Some("a"));
        assert_eq!(o.server_metadata.len(), 2);
    }

    #[test]
    fn unknown_plugin_lists_valid_ones() {
        let err = Options::default().set("registry", "nosuch").unwrap_err();
        assert!(err.detail.starts_with("unknown registry \"nosuch\" (valid: "), "{}", err.detail);
        assert!(Options::default().set("register_ttl", "soon").is_err());
    }

    #[test]
    fn resilience_knobs_reach_the_layers() {
        let mut o = Options::default();
        o.apply_env(|k| match k {
            "MICRO_CLIENT_EJECT_FAILURES" => Some("3".into()),
            "MICRO_CLIENT_EJECT_TIME" => Some("500ms".into()),
            "MICRO_CLIENT_THROTTLE" => Some("0".into()),
            "MICRO_CLIENT_RETRY_TOKENS" => Some("20".into()),
            "MICRO_SERVER_SHED" => Some("latency".into()),
            "MICRO_SERVER_MAX_CONCURRENT" => Some("8".into()),
            _ => None,
        })
        .unwrap();
        let outliers = o.outliers();
        assert_eq!((outliers.failures, outliers.base), (3, Duration::from_millis(500)));
        assert!(o.throttle().is_none(), "K = 0 turns throttling off");
        assert_eq!(o.client_options(None).budget.tokens, 20.0);
        assert_eq!((o.server_shed, o.server_max_concurrent), (crate::wrapper::Shedding::Latency, 8));
        assert!(Options::default().set("client_throttle", "-1").is_err(), "no negative K");
        assert!(Options::default().set("server_shed", "sometimes").is_err());
        assert!(Options::default().set("client_eject_time", "0s").is_err(), "an ejection takes time");
    }
}
