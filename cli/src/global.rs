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

    /// A client over `registry`.
    pub(crate) fn client(&self, registry: SharedRegistry) -> anyhow::Result<Client> {
        let o = self.options()?;
        Ok(Client::with_selector(
            Arc::new(RegistrySelector::new(registry, Strategy::Random)),
            ClientOptions {
                request_timeout: o.client_request_timeout,
                retries: o.client_retries,
                transport_address: o.transport_address.clone(),
                ..Default::default()
            },
        ))
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
