//! `micro stats SERVICE`: started, uptime, memory and threads of every node (`Debug.Stats`).

use micro::CallOptions;

use crate::global::{within, Global};

#[derive(Debug, clap::Args)]
pub(crate) struct Args {
    /// The service name.
    pub(crate) name: String,
}

/// `YYYY-MM-DD HH:MM:SS` (UTC) of a Unix time.
fn date(unix: u64) -> String {
    let t = micro::wkt::Timestamp { seconds: i64::try_from(unix).unwrap_or(i64::MAX), nanos: 0 };
    t.to_rfc3339().map(|s| s.replacen('T', " ", 1).trim_end_matches('Z').to_string()).unwrap_or_else(|e| e)
}

fn duration(secs: u64) -> String {
    match secs {
        s if s >= 3600 => format!("{}h{}m{}s", s / 3600, s % 3600 / 60, s % 60),
        s if s >= 60 => format!("{}m{}s", s / 60, s % 60),
        s => format!("{s}s"),
    }
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
                        date(n("started")),
                        duration(n("uptime")),
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

#[cfg(test)]
mod tests {
    #[test]
    fn dates_and_durations() {
        assert_eq!(super::date(0), "1970-01-01 00:00:00");
        assert_eq!(super::date(1_700_000_000), "2023-11-14 22:13:20");
        assert_eq!(super::duration(3725), "1h2m5s");
        assert_eq!(super::duration(59), "59s");
    }
}

/// The current time, `YYYY-MM-DD HH:MM:SS UTC`.
pub(crate) fn now_utc() -> String {
    let secs = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0);
    format!("{} UTC", date(secs))
}
