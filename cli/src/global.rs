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
    /// Broker: http, nats or memory.
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
        set(&mut o, "client_request_timeout", &self.client_request_timeout)?;
        o.client_retries = self.client_retries;
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
        Ok(micro::registry::from_name(&o.registry, &o.registry_address)?)
    }

    /// The client options these flags describe (timeouts, retries, TLS, token).
    pub(crate) fn client_options(&self) -> anyhow::Result<ClientOptions> {
        let o = self.options()?;
        let tls = o.client_tls().map_err(|e| UsageError(e.detail))?;
        if let Some(t) = &tls {
            micro::transport::tls::set_default_client(t.clone());
        }
        Ok(ClientOptions {
            request_timeout: o.client_request_timeout,
            retries: o.client_retries,
            transport_address: o.transport_address.clone(),
            tls,
            auth_token: o.auth_token.clone(),
            ..Default::default()
        })
    }

    /// A client over `registry`.
    pub(crate) fn client(&self, registry: SharedRegistry) -> anyhow::Result<Client> {
        Ok(Client::with_selector(Arc::new(RegistrySelector::new(registry, Strategy::Random)), self.client_options()?))
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

/// TLS for the servers the tools run (`micro api`, `micro web`, `micro proxy`).
#[derive(Debug, Clone, Args)]
pub(crate) struct ServerTlsArgs {
    /// Serve TLS with this certificate chain (PEM); needs --server_tls_key.
    #[arg(long = "server_tls_cert", env = "MICRO_SERVER_TLS_CERT")]
    pub(crate) cert: Option<String>,
    /// The key of --server_tls_cert (PEM).
    #[arg(long = "server_tls_key", env = "MICRO_SERVER_TLS_KEY")]
    pub(crate) key: Option<String>,
    /// Require client certificates from this CA (mutual TLS).
    #[arg(long = "server_tls_client_ca", env = "MICRO_SERVER_TLS_CLIENT_CA")]
    pub(crate) client_ca: Option<String>,
}

impl ServerTlsArgs {
    /// The TLS to serve with, if asked for; half a pair or an unreadable file is a usage error.
    pub(crate) fn load(&self) -> anyhow::Result<Option<micro::transport::tls::ServerTls>> {
        let o = Options {
            server_tls_cert: self.cert.clone().filter(|v| !v.is_empty()),
            server_tls_key: self.key.clone().filter(|v| !v.is_empty()),
            server_tls_client_ca: self.client_ca.clone().filter(|v| !v.is_empty()),
            ..Options::default()
        };
        Ok(o.server_tls().map_err(|e| UsageError(e.detail))?)
    }

    /// `https` when serving TLS.
    pub(crate) fn scheme(tls: &Option<micro::transport::tls::ServerTls>) -> &'static str {
        if tls.is_some() {
            "https"
        } else {
            "http"
        }
    }
}
