//! `micro health check SERVICE`: asks every node's `Debug.Health`.

use crate::global::Global;
use crate::Reported;
use clap::Subcommand;

#[derive(Debug, Subcommand)]
pub(crate) enum What {
    /// The status of every node of a service.
    Check {
        /// The service name.
        name: String,
    },
}

pub(crate) async fn run(global: &Global, what: What) -> anyhow::Result<()> {
    let What::Check { name } = what;
    let (text, healthy) = crate::ops::health::check(global, &name).await?;
    println!("{text}");
    if healthy {
        Ok(())
    } else {
        Err(Reported(1).into())
    }
}
