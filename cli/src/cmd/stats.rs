//! `micro stats SERVICE`: started, uptime, memory and threads of every node (`Debug.Stats`).

use micro::CallOptions;

use crate::global::{within, Global};
use crate::ops::time;

#[derive(Debug, clap::Args)]
pub(crate) struct Args {
    /// The service name.
    pub(crate) name: String,
}

pub(crate) async fn run(global: &Global, args: Args) -> anyhow::Result<()> {
    let registry = global.registry()?;
    let versions = within("the registry", global.timeout(), registry.get_service(&args.name)).await?;
    let client = global.client(registry)?;
    let mut failed = 0;
    println!("service  {}", args.name);
    for v in &versions {
        println!("\nversion {}\n", v.version);
        println!("node\taddress:port\tstarted\tuptime\tmemory\tthreads");
        for node in &v.nodes {
            let opts = CallOptions::new().address(node.address.clone()).timeout(global.timeout());
            match client.call_json(&args.name, "Debug.Stats", b"{}", opts).await {
                Ok(body) => {
                    let s: serde_json::Value = serde_json::from_slice(&body).unwrap_or_default();
                    let n = |k: &str| s[k].as_u64().or_else(|| s[k].as_str().and_then(|t| t.parse().ok())).unwrap_or(0);
                    println!(
                        "{}\t{}\t{}\t{}\t{:.1} MiB\t{}",
                        node.id,
                        node.address,
                        time::date(n("started")),
                        time::duration(n("uptime")),
                        n("memory") as f64 / (1024.0 * 1024.0),
                        n("threads")
                    );
                }
                Err(e) => {
                    failed += 1;
                    eprintln!("node {} at {} did not answer Debug.Stats: {}", node.id, node.address, e.detail);
                }
            }
        }
    }
    if failed > 0 {
        return Err(crate::Reported(1).into());
    }
    Ok(())
}
