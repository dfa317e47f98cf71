//! `micro web`: the web dashboard (see the `dashboard` module).

use std::sync::Arc;
use std::time::Duration;

use micro::transport::http::ServeOptions;

use crate::dashboard::Dashboard;
use crate::global::Global;

#[derive(Debug, clap::Args)]
pub(crate) struct Args {
    /// Listen address (a host is needed to listen beyond this machine, e.g. 0.0.0.0:8082).
    #[arg(long = "web_address", alias = "address", env = "MICRO_WEB_ADDRESS", default_value = "127.0.0.1:8082")]
    pub(crate) address: String,
    /// The namespace of web services, served at `/<alias>/`.
    #[arg(long = "namespace", alias = "web_namespace", env = "MICRO_WEB_NAMESPACE", default_value = "go.micro.web")]
    pub(crate) namespace: String,
    #[command(flatten)]
    pub(crate) tls: crate::global::ServerTlsArgs,
}

pub(crate) async fn run(global: &Global, args: Args) -> anyhow::Result<()> {
    micro::logger::init();
    let mut global = global.clone();
    let registry = global.registry()?;
    global.share(registry.clone());
    let dashboard = Dashboard::start(global, registry, &args.namespace)?;
    let tls = args.tls.load()?;
    let scheme = crate::global::ServerTlsArgs::scheme(&tls);
    let serve = ServeOptions { header_read_timeout: Duration::from_secs(10), tls, ..ServeOptions::default() };
    let serving =
        micro::transport::http::serve(&super::api::listen_address(&args.address), Arc::clone(&dashboard), &serve)?;
    eprintln!("web listening on {scheme}://{} (namespace {})", serving.local_addr(), args.namespace);
    micro::service::shutdown_signal().await;
    dashboard.close();
    serving.shutdown(Duration::from_secs(10)).await;
    Ok(())
}
