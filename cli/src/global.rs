//! Flags every command takes, with their `MICRO_*` variables, and what they build: the registry
//! and the client the commands use.

use std::sync::Arc;
use std::time::Duration;

use clap::Args;
use micro::client::{Client, ClientOptions};
use micro::options::{parse_duration, Options};
use micro::registry::SharedRegistry;
use micro::selector::{RegistrySelector, Strategy};

use crate::UsageError;

/// Global flags.
#[derive(Debug, Clone, Args)]
pub(crate) struct Global {
    /// Registry: mdns, etcd or memory.
    #[arg(long = "registry", env = "MICRO_REGISTRY", global = true, default_value = "mdns")]
    pub(crate) registry: String,
    /// Registry addresses, comma separated.
    #[arg(long = "registry_address", env = "MICRO_REGISTRY_ADDRESS", global = true, default_value = "")]
    pub(crate) registry_address: String,
    /// Broker: http, nats, nats-js, rabbitmq, kafka or memory.
    #[arg(long = "broker", env = "MICRO_BROKER", global = true, default_value = "http")]
    pub(crate) broker: String,
    /// Broker addresses, comma separated.
    #[arg(long = "broker_address", env = "MICRO_BROKER_ADDRESS", global = true, default_value = "")]
    pub(crate) broker_address: String,
    /// Transport: http (gRPC and HTTP on one port).
    #[arg(long = "transport", env = "MICRO_TRANSPORT", global = true, default_value = "http")]
    pub(crate) transport: String,
    /// NATS servers for the nats transport, comma separated.
    #[arg(long = "transport_address", env = "MICRO_TRANSPORT_ADDRESS", global = true, default_value = "")]
    pub(crate) transport_address: String,
    /// Selector: random, roundrobin or leastloaded.
    #[arg(long = "selector", env = "MICRO_SELECTOR", global = true, default_value = "random")]
    pub(crate) selector: String,
    /// How long a call may take (5s; bare numbers are seconds).
    #[arg(long = "client_request_timeout", env = "MICRO_CLIENT_REQUEST_TIMEOUT", global = true, default_value = "5s")]
    pub(crate) client_request_timeout: String,
    /// How many times a failed call is tried again on another node.
    #[arg(long = "client_retries", env = "MICRO_CLIENT_RETRIES", global = true, default_value = "1")]
    pub(crate) client_retries: u32,
    /// The CA to trust for services served over TLS (PEM); set, every call uses TLS.
    #[arg(long = "client_tls_ca", env = "MICRO_CLIENT_TLS_CA", global = true)]
    pub(crate) client_tls_ca: Option<String>,
    /// This client's certificate, for services that require mutual TLS (PEM).
    #[arg(long = "client_tls_cert", env = "MICRO_CLIENT_TLS_CERT", global = true)]
    pub(crate) client_tls_cert: Option<String>,
    /// The key of --client_tls_cert (PEM).
    #[arg(long = "client_tls_key", env = "MICRO_CLIENT_TLS_KEY", global = true)]
    pub(crate) client_tls_key: Option<String>,
    /// Tokens in each service's retry budget; retries need more than half (0: no budget).
    #[arg(long = "client_retry_tokens", env = "MICRO_CLIENT_RETRY_TOKENS", global = true, default_value = "10")]
    pub(crate) client_retry_tokens: String,
    /// Tokens a successful call gives back to its service's retry budget.
    #[arg(long = "client_retry_ratio", env = "MICRO_CLIENT_RETRY_RATIO", global = true, default_value = "0.1")]
    pub(crate) client_retry_ratio: String,
    /// Consecutive failures that take a node out of selection (0: never).
    #[arg(long = "client_eject_failures", env = "MICRO_CLIENT_EJECT_FAILURES", global = true, default_value = "5")]
    pub(crate) client_eject_failures: String,
    /// How long a node is first taken out; each further time doubles it.
    #[arg(long = "client_eject_time", env = "MICRO_CLIENT_EJECT_TIME", global = true, default_value = "2s")]
    pub(crate) client_eject_time: String,
    /// The longest a node is taken out.
    #[arg(long = "client_eject_max_time", env = "MICRO_CLIENT_EJECT_MAX_TIME", global = true, default_value = "60s")]
    pub(crate) client_eject_max_time: String,
    /// How many times slower than its peers a node is taken out for (0: never).
    #[arg(long = "client_eject_slow", env = "MICRO_CLIENT_EJECT_SLOW", global = true, default_value = "5")]
    pub(crate) client_eject_slow: String,
    /// Hold back calls to a service that fails more than 1/K of them (0: never).
    #[arg(long = "client_throttle", env = "MICRO_CLIENT_THROTTLE", global = true, default_value = "2")]
    pub(crate) client_throttle: String,
    /// A bearer token sent with every call, for services started with one.
    #[arg(long = "auth_token", env = "MICRO_AUTH_TOKEN", global = true, hide_env_values = true)]
    pub(crate) auth_token: Option<String>,
    /// A registry made once and shared by every command (the interactive prompt).
    #[arg(skip)]
    shared: Shared,
}

/// An optional shared registry (`Debug` for clap's sake).
#[derive(Clone, Default)]
struct Shared(Option<SharedRegistry>);

impl std::fmt::Debug for Shared {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(if self.0.is_some() { "Shared(registry)" } else { "Shared(none)" })
    }
}

impl Global {
    /// The options these flags describe; an unknown plugin is a usage error.
    pub(crate) fn options(&self) -> anyhow::Result<Options> {
        let mut o = Options::default();
        let set = |o: &mut Options, k: &str, v: &str| o.set(k, v).map_err(|e| UsageError(e.detail));
        set(&mut o, "registry", &self.registry)?;
        set(&mut o, "registry_address", &self.registry_address)?;
        set(&mut o, "broker", &self.broker)?;
        set(&mut o, "broker_address", &self.broker_address)?;
        set(&mut o, "transport", &self.transport)?;
        set(&mut o, "transport_address", &self.transport_address)?;
        set(&mut o, "selector", &self.selector)?;
        set(&mut o, "client_request_timeout", &self.client_request_timeout)?;
        o.client_retries = self.client_retries;
        for (k, v) in [
            ("client_retry_tokens", &self.client_retry_tokens),
            ("client_retry_ratio", &self.client_retry_ratio),
            ("client_eject_failures", &self.client_eject_failures),
            ("client_eject_time", &self.client_eject_time),
            ("client_eject_max_time", &self.client_eject_max_time),
            ("client_eject_slow", &self.client_eject_slow),
            ("client_throttle", &self.client_throttle),
        ] {
            set(&mut o, k, v)?;
        }
        for (k, v) in [
            ("client_tls_ca", &self.client_tls_ca),
            ("client_tls_cert", &self.client_tls_cert),
            ("client_tls_key", &self.client_tls_key),
            ("auth_token", &self.auth_token),
        ] {
            if let Some(v) = v.as_deref().filter(|v| !v.is_empty()) {
                set(&mut o, k, v)?;
            }
        }
        Ok(o)
    }

    pub(crate) fn timeout(&self) -> Duration {
        parse_duration(&self.client_request_timeout).unwrap_or(Duration::from_secs(5))
    }

    /// Whether the commands share one registry (inside `micro cli`, or a tool's own).
    pub(crate) fn is_shared(&self) -> bool {
        self.shared.0.is_some()
    }

    /// Makes every later command use `registry`.
    pub(crate) fn share(&mut self, registry: SharedRegistry) {
        self.shared = Shared(Some(registry));
    }

    /// The registry the flags name.
    pub(crate) fn registry(&self) -> anyhow::Result<SharedRegistry> {
        if let Some(r) = &self.shared.0 {
            return Ok(r.clone());
        }
        let o = self.options()?;
        Ok(micro::config::plugins::registry(&o.registry, &o.registry_address)?)
    }

    /// The client options these flags describe (timeouts, retries, TLS).
    pub(crate) fn client_options(&self) -> anyhow::Result<ClientOptions> {
        let o = self.options()?;
        let tls = o.client_tls().map_err(|e| UsageError(e.detail))?;
        if let Some(t) = &tls {
            micro::transport::tls::set_default_client(t.clone());
        }
        Ok(o.client_options(tls))
    }

    /// The node selection strategy `--selector` names.
    pub(crate) fn strategy(&self) -> anyhow::Result<Strategy> {
        Ok(self.selector.parse().map_err(|e: micro::Error| UsageError(e.detail))?)
    }

    /// A client over `registry` for the tool's own calls (it sends `--auth_token`).
    pub(crate) fn client(&self, registry: SharedRegistry) -> anyhow::Result<Client> {
        let client = self.client_for_callers(registry)?;
        Ok(match self.options()?.auth_token {
            Some(token) => client.wrap(micro::wrapper::BearerToken::new(&token)),
            None => client,
        })
    }

    /// A client over `registry` for calls made on behalf of someone else (a gateway's caller):
    /// it never sends the tool's own token, only the caller's own `Authorization`.
    pub(crate) fn client_for_callers(&self, registry: SharedRegistry) -> anyhow::Result<Client> {
        let o = self.options()?;
        let selector = RegistrySelector::with_outliers(registry, self.strategy()?, o.outliers());
        let client = Client::with_selector(Arc::new(selector), self.client_options()?);
        Ok(match o.throttle() {
            Some(throttle) => client.wrap(throttle),
            None => client,
        })
    }
}

/// Runs `fut` but gives up after `timeout` with a sentence naming `what`.
pub(crate) async fn within<T>(
    what: &str,
    timeout: Duration,
    fut: impl std::future::Future<Output = Result<T, micro::Error>>,
) -> anyhow::Result<T> {
    match tokio::time::timeout(timeout, fut).await {
        Ok(r) => Ok(r?),
        Err(_) => anyhow::bail!("{what} did not answer within {timeout:?}"),
    }
}

/// The server flags of the tools that listen (`micro api`, `micro web`, `micro proxy`): TLS, the
/// limits of their listener, and their edge policy. The limits take the same flags and
/// variables as a service's.
#[derive(Debug, Clone, Args)]
pub(crate) struct ServerArgs {
    /// Serve TLS with this certificate chain (PEM); needs --server_tls_key.
    #[arg(long = "server_tls_cert", env = "MICRO_SERVER_TLS_CERT")]
    pub(crate) cert: Option<String>,
    /// The key of --server_tls_cert (PEM).
    #[arg(long = "server_tls_key", env = "MICRO_SERVER_TLS_KEY")]
    pub(crate) key: Option<String>,
    /// Require client certificates from this CA (mutual TLS).
    #[arg(long = "server_tls_client_ca", env = "MICRO_SERVER_TLS_CLIENT_CA")]
    pub(crate) client_ca: Option<String>,
    /// Most connections open at once; beyond it new ones are closed at once.
    #[arg(long = "server_max_connections", env = "MICRO_SERVER_MAX_CONNECTIONS", default_value = "4096")]
    pub(crate) max_connections: String,
    /// How long a client may take to start its connection and to send each request's headers.
    #[arg(long = "server_header_timeout", env = "MICRO_SERVER_HEADER_TIMEOUT", default_value = "10s")]
    pub(crate) header_timeout: String,
    /// How long a request body may take to arrive.
    #[arg(long = "server_read_timeout", env = "MICRO_SERVER_READ_TIMEOUT", default_value = "30s")]
    pub(crate) read_timeout: String,
    /// How long a connection with nothing in flight stays open.
    #[arg(long = "server_idle_timeout", env = "MICRO_SERVER_IDLE_TIMEOUT", default_value = "60s")]
    pub(crate) idle_timeout: String,
    #[command(flatten)]
    pub(crate) edge: crate::edge::EdgeArgs,
}

/// What a listening tool serves with: its listener's options and its edge policy.
pub(crate) struct Serve {
    pub(crate) options: micro::transport::http::ServeOptions,
    pub(crate) policy: crate::edge::Policy,
    /// `http` or `https`.
    pub(crate) scheme: &'static str,
}

impl ServerArgs {
    /// The listener options and edge policy for listening on `address`; a bad value is a usage
    /// error.
    pub(crate) fn serve(&self, address: &str) -> anyhow::Result<Serve> {
        let mut o = Options {
            server_tls_cert: self.cert.clone().filter(|v| !v.is_empty()),
            server_tls_key: self.key.clone().filter(|v| !v.is_empty()),
            server_tls_client_ca: self.client_ca.clone().filter(|v| !v.is_empty()),
            ..Options::default()
        };
        for (k, v) in [
            ("server_max_connections", &self.max_connections),
            ("server_header_timeout", &self.header_timeout),
            ("server_read_timeout", &self.read_timeout),
            ("server_idle_timeout", &self.idle_timeout),
        ] {
            o.set(k, v).map_err(|e| UsageError(e.detail))?;
        }
        let options = micro::transport::http::ServeOptions {
            remote_addr: true,
            upgrades: true,
            ..o.serve_options(Default::default()).map_err(|e| UsageError(e.detail))?
        };
        let scheme = if options.tls.is_some() { "https" } else { "http" };
        let bound = loopback_or_any(address);
        let policy = crate::edge::Policy::new(&self.edge, bound, options.body_read_timeout, options.tls.is_some());
        Ok(Serve { options, policy, scheme })
    }
}

/// The address a listen address binds: a loopback one when every address it names is on
/// loopback, `0.0.0.0` otherwise (for the edge policy's host check).
fn loopback_or_any(address: &str) -> std::net::SocketAddr {
    use std::net::ToSocketAddrs;
    let all: Vec<std::net::SocketAddr> = address.to_socket_addrs().map(Iterator::collect).unwrap_or_default();
    if !all.is_empty() && all.iter().all(|a| a.ip().is_loopback()) {
        all[0]
    } else {
        std::net::SocketAddr::from(([0, 0, 0, 0], 0))
    }
}

/// Whether listening on `address` stays on loopback.
pub(crate) fn is_loopback_address(address: &str) -> bool {
    loopback_or_any(address).ip().is_loopback()
}
