//! The services a registry holds.

use crate::global::{within, Global};

/// Sorted, unique service names.
pub(crate) async fn names(global: &Global) -> anyhow::Result<Vec<String>> {
    let registry = global.registry()?;
    let services = within("the registry", global.timeout(), registry.list_services()).await?;
    let mut names: Vec<String> = services.into_iter().map(|s| s.name).collect();
    names.sort();
    names.dedup();
    Ok(names)
}
