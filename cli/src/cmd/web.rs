//! `micro web`: the web dashboard (see the `dashboard` module).

use std::sync::Arc;
use std::time::Duration;

use crate::dashboard::session::Sessions;
use crate::dashboard::Dashboard;
use crate::global::Global;
use crate::UsageError;

#[derive(Debug, clap::Args)]
pub(crate) struct Args {
    /// Listen address (a host is needed to listen beyond this machine, e.g. 0.0.0.0:8082).
    #[arg(long = "web_address", alias = "address", env = "MICRO_WEB_ADDRESS", default_value = "127.0.0.1:8082")]
    pub(crate) address: String,
    /// The namespace of web services, served at `/<alias>/`.
    #[arg(long = "namespace", alias = "web_namespace", env = "MICRO_WEB_NAMESPACE", default_value = "go.micro.web")]
    pub(crate) namespace: String,
    /// A secret every browser session must log in with; needed to listen beyond loopback.
    #[arg(long = "web_token", env = "MICRO_WEB_TOKEN", hide_env_values = true)]
    pub(crate) token: Option<String>,
    #[command(flatten)]
    pub(crate) server: crate::global::ServerArgs,
}

pub(crate) async fn run(global: &Global, args: Args) -> anyhow::Result<()> {
    micro::logger::init();
    let address = super::api::listen_address(&args.address);
    let token = args.token.clone().filter(|t| !t.is_empty()).map(micro::secret::Secret::new);
    let serve = args.server.serve(&address)?;
    if token.is_none() && !crate::global::is_loopback_address(&address) {
        return Err(UsageError(format!(
            "micro web calls services for whoever reaches it, so it listens on {address} (beyond loopback) only with --web_token"
        ))
        .into());
    }
    let mut global = global.clone();
    let registry = global.registry()?;
    global.share(registry.clone());
    let sessions = Sessions::new(token, serve.options.tls.is_some())?;
    let scheme = serve.scheme;
    let dashboard = Dashboard::start(global, registry, &args.namespace, serve.policy, sessions)?;
    let serving = micro::transport::http::serve(&address, Arc::clone(&dashboard), &serve.options)?;
    eprintln!("web listening on {scheme}://{} (namespace {})", serving.local_addr(), args.namespace);
    micro::service::shutdown_signal().await;
    dashboard.close();
    serving.shutdown(Duration::from_secs(10)).await;
    Ok(())
}
