//! The health of every node of a service, from its `Debug.Health`.

use micro::CallOptions;

use crate::global::{within, Global};

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
