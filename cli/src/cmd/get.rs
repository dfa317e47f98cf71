//! `micro get service NAME`.

use clap::Subcommand;

use super::Output;
use crate::global::{within, Global};
use crate::ops::pretty;

#[derive(Debug, Subcommand)]
pub(crate) enum What {
    /// Versions, nodes and endpoints (with request and response fields) of a service.
    Service {
        /// The service name.
        name: String,
        /// `json` prints the registry records.
        #[arg(short, long, value_enum, default_value_t)]
        output: Output,
    },
}

pub(crate) async fn run(global: &Global, what: What) -> anyhow::Result<()> {
    let What::Service { name, output } = what;
    let registry = global.registry()?;
    let versions = within("the registry", global.timeout(), registry.get_service(&name)).await?;
    if output == Output::Json {
        println!("{}", pretty(&serde_json::to_value(&versions)?));
    } else {
        println!("{}", crate::format::service(&versions));
    }
    Ok(())
}
