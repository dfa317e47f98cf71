//! `micro register service JSON` and `micro deregister service JSON`.
//!
//! On mDNS a record lives as long as the process that announces it: `register` keeps announcing
//! until interrupted (Ctrl-C, SIGTERM), then withdraws the record; inside `micro cli` it announces
//! for as long as the prompt runs. `deregister` on mDNS can only withdraw what this process
//! announced, so from the command line it refuses with a sentence saying to stop the process
//! that announces the record. Other registries keep records themselves.

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
    let mdns = registry.name() == "mdns";
    if register {
        within("the registry", global.timeout(), registry.register(&svc, RegisterOptions::default())).await?;
        if mdns && !global.is_shared() {
            eprintln!("registered {}; announcing it over mDNS until interrupted (Ctrl-C withdraws it)", svc.name);
            println!("ok");
            micro::service::shutdown_signal().await;
            within("the registry", global.timeout(), registry.deregister(&svc)).await?;
            eprintln!("withdrew {}", svc.name);
            return Ok(());
        }
        if mdns {
            eprintln!("registered {}; announced over mDNS while this prompt runs", svc.name);
        }
    } else {
        within("the registry", global.timeout(), registry.deregister(&svc)).await?;
    }
    println!("ok");
    Ok(())
}
