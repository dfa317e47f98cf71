//! `micro health check SERVICE`: asks every node's `Debug.Health`.

use clap::Subcommand;
use micro::CallOptions;

use crate::global::{within, Global};
use crate::Reported;

#[derive(Debug, Subcommand)]
pub(crate) enum What {
    /// The status of every node of a service.
    Check {
        /// The service name.
        name: String,
    },
}

/// One line per node: id, address and `ok` or what went wrong; whether all are ok.
pub(crate) async fn check(global: &Global, name: &str) -> anyhow::Result<(String, bool)> {
    let registry = global.registry()?;
    let versions = within("the registry", global.timeout(), registry.get_service(name)).await?;
    // Debug.Health is open on every service: no token goes to whatever the registry lists.
    let client = global.client_for_callers(registry)?;
    let mut out = vec![format!("service  {name}")];
    let mut healthy = true;
    for v in &versions {
        out.push(format!("\nversion {}\n", v.version));
        out.push("node\taddress:port\tstatus".to_string());
        for node in &v.nodes {
            let opts = CallOptions::new().address(node.address.clone()).timeout(global.timeout());
            let status = match client.call_json(name, "Debug.Health", b"{}", opts).await {
                Ok(body) => serde_json::from_slice::<serde_json::Value>(&body)
                    .ok()
                    .and_then(|v| v["status"].as_str().map(str::to_string))
                    .unwrap_or_else(|| "unknown".into()),
                Err(e) => format!("error: {}", e.detail),
            };
            healthy &= status == "ok";
            out.push(format!("{}\t{}\t{}", node.id, node.address, status));
        }
    }
    Ok((out.join("\n"), healthy))
}

pub(crate) async fn run(global: &Global, what: What) -> anyhow::Result<()> {
    let What::Check { name } = what;
    let (text, healthy) = check(global, &name).await?;
    println!("{text}");
    if healthy {
        Ok(())
    } else {
        Err(Reported(1).into())
    }
}
