//! `micro api`: the HTTP API gateway (see the `gateway` module).

use std::sync::Arc;
use std::time::Duration;

use crate::gateway::{routes, Gateway, Handler};
use crate::global::Global;
use crate::UsageError;

#[derive(Debug, clap::Args)]
pub(crate) struct Args {
    /// Listen address (a host is needed to listen beyond this machine, e.g. 0.0.0.0:8080).
    #[arg(long = "api_address", alias = "address", env = "MICRO_API_ADDRESS", default_value = "127.0.0.1:8080")]
    pub(crate) address: String,
    /// meta (default), rpc, api, http/proxy, event or web.
    #[arg(long = "handler", alias = "api_handler", env = "MICRO_API_HANDLER", default_value = "meta")]
    pub(crate) handler: String,
    /// The namespace paths resolve into.
    #[arg(long = "namespace", alias = "api_namespace", env = "MICRO_API_NAMESPACE", default_value = "go.micro.api")]
    pub(crate) namespace: String,
    /// Answer CORS preflights and add CORS headers for the origins of --cors_allowed_origins.
    #[arg(long = "enable_cors", env = "MICRO_API_ENABLE_CORS", default_value = "true", action = clap::ArgAction::Set)]
    pub(crate) enable_cors: bool,
    #[command(flatten)]
    pub(crate) server: crate::global::ServerArgs,
}

/// Binds `address`; `:8080` means every interface, as in Go Micro.
pub(crate) fn listen_address(address: &str) -> String {
    if address.starts_with(':') {
        format!("0.0.0.0{address}")
    } else {
        address.to_string()
    }
}

pub(crate) async fn run(global: &Global, args: Args) -> anyhow::Result<()> {
    micro::logger::init();
    let handler: Handler = args.handler.parse().map_err(UsageError)?;
    let o = global.options()?;
    let registry = global.registry()?;
    // The gateway publishes for its callers: with their credentials, never a token of its own.
    let credentials =
        micro::broker::Credentials { auth_token: None, tls: o.client_tls().map_err(|e| UsageError(e.detail))? };
    let broker = micro::config::plugins::broker(&o, registry.clone(), credentials)?;
    let telemetry = crate::telemetry::Telemetry::start("micro.api")?;
    let client = telemetry.wrap(global.client_for_callers(registry.clone())?.with_broker(broker));
    let address = listen_address(&args.address);
    let serve = args.server.serve(&address)?;
    let scheme = serve.scheme;
    let gateway = Arc::new(Gateway {
        routes: routes::Table::start(registry.clone(), &args.namespace),
        namespace: args.namespace.clone(),
        handler,
        cors: args.enable_cors,
        client,
        nodes: micro::registry::cache::RegistryCache::new(registry, Duration::from_secs(60)),
        policy: serve.policy,
        timeout: global.timeout(),
        proxy: crate::gateway::http_client(),
        telemetry,
    });
    let serving = micro::transport::http::serve(&address, gateway, &serve.options)?;
    eprintln!(
        "api listening on {scheme}://{} (handler {}, namespace {})",
        serving.local_addr(),
        args.handler,
        if args.namespace.is_empty() { "<none>" } else { &args.namespace }
    );
    micro::service::shutdown_signal().await;
    serving.shutdown(Duration::from_secs(10)).await;
    Ok(())
}
