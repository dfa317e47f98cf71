//! `micro list services`.

use clap::Subcommand;

use super::Output;
use crate::global::{within, Global};

#[derive(Debug, Subcommand)]
pub(crate) enum What {
    /// Every registered service, sorted, one per line.
    Services {
        /// `json` prints a JSON array of names.
        #[arg(short, long, value_enum, default_value_t)]
        output: Output,
    },
}

/// Sorted, unique service names.
pub(crate) async fn names(global: &Global) -> anyhow::Result<Vec<String>> {
    let registry = global.registry()?;
    let services = within("the registry", global.timeout(), registry.list_services()).await?;
    let mut names: Vec<String> = services.into_iter().map(|s| s.name).collect();
    names.sort();
    names.dedup();
    Ok(names)
}

pub(crate) async fn run(global: &Global, what: What) -> anyhow::Result<()> {
    let What::Services { output } = what;
    let names = names(global).await?;
    if output == Output::Json {
        println!("{}", serde_json::to_string(&names)?);
    } else {
        for n in names {
            println!("{n}");
        }
    }
    Ok(())
}
