//! `micro mcp serve|list|call`: the registry's endpoints as Model Context Protocol tools (see
//! the `mcp` module).

use std::sync::Arc;
use std::time::Duration;

use rmcp::ServiceExt;

use super::Output;
use crate::global::Global;
use crate::mcp::catalog::{Catalog, Filter};
use crate::mcp::{http, Caller, Server, Tools};
use crate::{Reported, UsageError};

#[derive(Debug, clap::Args)]
pub(crate) struct Args {
    #[command(subcommand)]
    what: What,
}

#[derive(Debug, clap::Subcommand)]
enum What {
    /// Serve the tools over streamable HTTP at /mcp (default) or over stdio (--stdio).
    Serve(Box<ServeArgs>),
    /// Print the tools `serve` would offer.
    List {
        #[command(flatten)]
        filter: FilterArgs,
        /// `json` prints the tools as `tools/list` gives them.
        #[arg(short, long, value_enum, default_value_t)]
        output: Output,
    },
    /// Call a tool as an agent would: `micro mcp call example.Example.Call '{"name":"John"}'`.
    Call {
        #[command(flatten)]
        filter: FilterArgs,
        /// The tool's name, as `list` prints it.
        tool: String,
        /// The arguments as a JSON object (`-` reads standard input; `{}` when left out).
        arguments: Option<String>,
    },
}

/// Which endpoints become tools.
#[derive(Debug, Clone, clap::Args)]
struct FilterArgs {
    /// Only services under this namespace, named without it (e.g. go.micro.srv); empty: all.
    #[arg(long = "namespace", env = "MICRO_MCP_NAMESPACE", default_value = "")]
    namespace: String,
    /// Tool-name patterns to offer (comma list, `*` matches anything); empty: every tool.
    #[arg(long = "allow", env = "MICRO_MCP_ALLOW", default_value = "", value_delimiter = ',')]
    allow: Vec<String>,
    /// Tool-name patterns never to offer (comma list), e.g. `*.Delete*`.
    #[arg(long = "deny", env = "MICRO_MCP_DENY", default_value = "", value_delimiter = ',')]
    deny: Vec<String>,
}

impl FilterArgs {
    fn filter(&self) -> Filter {
        let clean = |v: &[String]| v.iter().map(|s| s.trim().to_string()).filter(|s| !s.is_empty()).collect();
        Filter {
            namespace: self.namespace.trim_end_matches('.').to_string(),
            allow: clean(&self.allow),
            deny: clean(&self.deny),
        }
    }
}

#[derive(Debug, clap::Args)]
struct ServeArgs {
    #[command(flatten)]
    filter: FilterArgs,
    /// Listen address of the HTTP transport.
    #[arg(long = "mcp_address", alias = "address", env = "MICRO_MCP_ADDRESS", default_value = "127.0.0.1:8090")]
    address: String,
    /// Speak MCP on standard input and output instead (for an agent that starts this process).
    #[arg(long)]
    stdio: bool,
    /// Bearer tokens HTTP callers must present (comma list); one is made up and printed when
    /// none is given. The caller's token is forwarded to the services.
    #[arg(long = "mcp_tokens", env = "MICRO_MCP_TOKENS", hide_env_values = true, value_delimiter = ',')]
    tokens: Vec<String>,
    /// Calls a second each tool takes (0: no limit).
    #[arg(long = "rate_limit", env = "MICRO_MCP_RATE_LIMIT", default_value_t = 20.0)]
    rate_limit: f64,
    #[command(flatten)]
    server: crate::global::ServerArgs,
}

pub(crate) async fn run(global: &Global, args: Args) -> anyhow::Result<()> {
    match args.what {
        What::Serve(args) => serve(global, *args).await,
        What::List { filter, output } => list(global, &filter, output).await,
        What::Call { filter, tool, arguments } => call(global, &filter, &tool, arguments.as_deref()).await,
    }
}

async fn serve(global: &Global, args: ServeArgs) -> anyhow::Result<()> {
    // The SDK's own lines (a session began, ended) would drown the audit trail.
    micro::logger::init_with("info,rmcp=warn");
    let registry = global.registry()?;
    let catalog = Catalog::start(registry.clone(), args.filter.filter()).await;
    let telemetry = crate::telemetry::Telemetry::start("micro.mcp")?;
    if args.stdio {
        // The agent that started this process is the caller: its own configuration's token goes.
        let tools = Tools::new(catalog, telemetry.wrap(global.client(registry)?), global.timeout(), args.rate_limit);
        let server = Server::new(tools.with_sessions(), Caller { who: "stdio".into(), ..Default::default() });
        let running = server.serve(rmcp::transport::stdio()).await?;
        running.waiting().await?;
        return Ok(());
    }
    let tools =
        Tools::new(catalog, telemetry.wrap(global.client_for_callers(registry)?), global.timeout(), args.rate_limit);
    let mut tokens: Vec<String> = args.tokens.iter().map(|t| t.trim().to_string()).filter(|t| !t.is_empty()).collect();
    if tokens.is_empty() {
        let made = uuid::Uuid::new_v4().simple().to_string();
        eprintln!("mcp token: {made} (callers send Authorization: Bearer {made}; set --mcp_tokens to choose)");
        tokens.push(made);
    }
    let address = super::api::listen_address(&args.address);
    let serve = args.server.serve(&address)?;
    let scheme = serve.scheme;
    let mcp = Arc::new(http::Mcp::new(tools, &tokens, serve.policy, telemetry));
    let serving = micro::transport::http::serve(&address, mcp.clone(), &serve.options)?;
    eprintln!("mcp listening on {scheme}://{}{}", serving.local_addr(), http::PATH);
    micro::service::shutdown_signal().await;
    mcp.close();
    serving.shutdown(Duration::from_secs(10)).await;
    Ok(())
}

async fn list(global: &Global, filter: &FilterArgs, output: Output) -> anyhow::Result<()> {
    let catalog = Catalog::load(global.registry()?, filter.filter()).await?;
    let tools = catalog.tools();
    if output == Output::Text {
        for entry in tools.values() {
            let description = entry.tool.description.as_deref().unwrap_or_default();
            println!("{}\t{}", entry.tool.name, description.lines().next().unwrap_or_default());
        }
        return Ok(());
    }
    let list: Vec<&rmcp::model::Tool> = tools.values().map(|e| &e.tool).collect();
    println!("{}", serde_json::to_string(&serde_json::json!({ "tools": list }))?);
    Ok(())
}

async fn call(global: &Global, filter: &FilterArgs, tool: &str, arguments: Option<&str>) -> anyhow::Result<()> {
    let text = super::call::body(arguments)?;
    let Ok(serde_json::Value::Object(arguments)) = serde_json::from_str::<serde_json::Value>(&text) else {
        return Err(UsageError("a tool's arguments are a JSON object".into()).into());
    };
    let registry = global.registry()?;
    let catalog = Catalog::load(registry.clone(), filter.filter()).await?;
    let tools = Tools::new(catalog, global.client(registry)?, global.timeout(), 0.0);
    let result = tools.call(tool, Some(arguments), &Caller { who: "cli".into(), ..Default::default() }).await;
    println!("{}", serde_json::to_string_pretty(&result)?);
    if result.is_error == Some(true) {
        return Err(Reported(1).into());
    }
    Ok(())
}
