//! `micro publish TOPIC JSON`: publishes through the broker the flags name; prints `ok`.

use micro::{Metadata, Publisher};

use super::call::body;
use crate::global::Global;
use crate::UsageError;

#[derive(Debug, clap::Args)]
pub(crate) struct Args {
    /// The topic.
    pub(crate) topic: String,
    /// The message as JSON (`-` reads standard input).
    pub(crate) message: String,
    /// Metadata sent as message headers (repeatable).
    #[arg(long = "metadata", value_name = "KEY=VALUE")]
    pub(crate) metadata: Vec<String>,
}

pub(crate) async fn run(global: &Global, args: Args) -> anyhow::Result<()> {
    let json = body(Some(&args.message))?;
    let mut metadata = Metadata::new();
    for kv in &args.metadata {
        let (k, v) = kv.split_once('=').ok_or_else(|| UsageError(format!("metadata {kv:?} is not KEY=VALUE")))?;
        metadata.insert(k, v);
    }
    let o = global.options()?;
    let registry = global.registry()?;
    let credentials = micro::broker::Credentials {
        auth_token: o.auth_token.clone(),
        tls: o.client_tls().map_err(|e| crate::UsageError(e.detail))?,
    };
    let broker = micro::config::plugins::broker(&o, registry.clone(), credentials)?;
    let client = global.client(registry)?.with_broker(broker.clone());
    crate::global::within("the broker", global.timeout(), async {
        Publisher::new(&args.topic, client).publish_json(json.as_bytes(), &metadata).await?;
        broker.disconnect().await
    })
    .await?;
    println!("ok");
    Ok(())
}
