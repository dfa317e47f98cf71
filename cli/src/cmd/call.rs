//! `micro call SERVICE ENDPOINT [JSON|-]`.

use std::io::Read;

use micro::CallOptions;

use super::Output;
use crate::global::Global;
use crate::ops::pretty;
use crate::{Reported, UsageError};

/// What `call` and `stream` address: an endpoint of a service, and the request.
#[derive(Debug, clap::Args)]
pub(crate) struct Target {
    /// The service, e.g. go.micro.srv.example.
    pub(crate) service: String,
    /// The endpoint, e.g. Example.Call.
    pub(crate) endpoint: String,
    /// The request as JSON (`-` reads standard input; `call` sends `{}` when it is left out).
    pub(crate) request: Option<String>,
    /// Use this address instead of discovering nodes (for `call`, any gRPC server with
    /// reflection works).
    #[arg(long)]
    pub(crate) address: Option<String>,
    /// Metadata sent with the request (repeatable).
    #[arg(long = "metadata", value_name = "KEY=VALUE")]
    pub(crate) metadata: Vec<String>,
}

#[derive(Debug, clap::Args)]
pub(crate) struct Args {
    #[command(flatten)]
    pub(crate) target: Target,
    /// `json` (compact), or `raw` (as received); indented JSON by default.
    #[arg(short, long, value_enum, default_value_t)]
    pub(crate) output: Output,
}

/// The request body: the argument, standard input, or `{}`; checked to be JSON.
pub(crate) fn body(request: Option<&str>) -> anyhow::Result<String> {
    let text = match request {
        None => "{}".to_string(),
        Some("-") => {
            let mut s = String::new();
            std::io::stdin().read_to_string(&mut s)?;
            s
        }
        Some(s) => s.to_string(),
    };
    serde_json::from_str::<serde_json::Value>(&text)
        .map_err(|e| UsageError(format!("the request is not valid JSON: {e}")))?;
    Ok(text)
}

/// Call options from `--metadata`, `--address` and the global timeout.
pub(crate) fn options(global: &Global, address: Option<&str>, metadata: &[String]) -> anyhow::Result<CallOptions> {
    let mut opts = CallOptions::new().timeout(global.timeout());
    for kv in metadata {
        let (k, v) = kv.split_once('=').ok_or_else(|| UsageError(format!("metadata {kv:?} is not KEY=VALUE")))?;
        if !opts.metadata.insert(k, v) {
            return Err(UsageError(format!("metadata {k:?} cannot travel in a header")).into());
        }
    }
    if let Some(a) = address {
        opts = opts.address(a);
    }
    Ok(opts)
}

pub(crate) async fn run(global: &Global, args: Args) -> anyhow::Result<()> {
    let output = args.output;
    let args = args.target;
    let body = body(args.request.as_deref())?;
    let opts = options(global, args.address.as_deref(), &args.metadata)?;
    let registry = match &args.address {
        Some(_) => std::sync::Arc::new(micro::registry::MemoryRegistry::new()),
        None => global.registry()?,
    };
    let client = global.client(registry)?;
    let result = client.call_json(&args.service, &args.endpoint, body.as_bytes(), opts.clone()).await;
    let reply = match result {
        Ok(bytes) if output == Output::Raw => {
            println!("{}", String::from_utf8_lossy(&bytes));
            return Ok(());
        }
        Ok(bytes) => serde_json::from_slice::<serde_json::Value>(&bytes)
            .unwrap_or_else(|_| serde_json::Value::String(String::from_utf8_lossy(&bytes).into_owned())),
        // A plain gRPC server does not know micro's JSON endpoints: ask its reflection service.
        Err(e) if args.address.is_some() && matches!(e.code, 415 | 501) => {
            let addr = args.address.as_deref().unwrap_or_default();
            match crate::reflect::call(&client, addr, &args.service, &args.endpoint, &body, opts).await {
                Ok(v) => v,
                Err(re) => {
                    if let Some(me) = re.downcast_ref::<micro::Error>() {
                        return Err(fail(&args, me));
                    }
                    return Err(re);
                }
            }
        }
        Err(e) => return Err(fail(&args, &e)),
    };
    match output {
        Output::Raw | Output::Json => println!("{}", serde_json::to_string(&reply)?),
        Output::Text => println!("{}", pretty(&reply)),
    }
    Ok(())
}

fn fail(args: &Target, e: &micro::Error) -> anyhow::Error {
    eprintln!("error calling {}.{}: {}", args.service, args.endpoint, e.to_json());
    Reported(1).into()
}
