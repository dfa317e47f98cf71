//! `micro register service JSON` and `micro deregister service JSON`.

use clap::Subcommand;
use micro::registry::{RegisterOptions, Service};

use crate::global::{within, Global};
use crate::UsageError;

#[derive(Debug, Subcommand)]
pub(crate) enum What {
    /// A service record as JSON: `{"name":..,"version":..,"nodes":[{"id":..,"address":..}]}`.
    Service {
        /// The record.
        json: String,
    },
}

pub(crate) async fn run(global: &Global, what: What, register: bool) -> anyhow::Result<()> {
    let What::Service { json } = what;
    let svc: Service =
        serde_json::from_str(&json).map_err(|e| UsageError(format!("the service record is not valid: {e}")))?;
    if svc.name.is_empty() {
        return Err(UsageError("the service record needs a name".into()).into());
    }
    let registry = global.registry()?;
    if register {
        within("the registry", global.timeout(), registry.register(&svc, RegisterOptions::default())).await?;
    } else {
        within("the registry", global.timeout(), registry.deregister(&svc)).await?;
    }
    println!("ok");
    Ok(())
}
