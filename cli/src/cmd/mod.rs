//! The commands, one module each, and the dispatch shared by the command line and `micro cli`.

pub(crate) mod api;
pub(crate) mod bot;
pub(crate) mod call;
pub(crate) mod completion;
pub(crate) mod get;
pub(crate) mod health;
pub(crate) mod list;
pub(crate) mod mcp;
pub(crate) mod new;
pub(crate) mod proxy;
pub(crate) mod publish;
pub(crate) mod register;
pub(crate) mod run;
pub(crate) mod shell;
pub(crate) mod stats;
pub(crate) mod stream;
pub(crate) mod web;

use clap::{Parser, Subcommand, ValueEnum};

use crate::global::Global;

/// Micro for Rust: list, inspect, call and operate services.
#[derive(Debug, Parser)]
#[command(name = "micro", version, about, propagate_version = true)]
pub(crate) struct Cli {
    #[command(flatten)]
    pub(crate) global: Global,
    #[command(subcommand)]
    pub(crate) command: Command,
}

/// A line of `micro cli`: a command without the program name.
#[derive(Debug, Parser)]
#[command(name = "micro", no_binary_name = true, disable_version_flag = true)]
pub(crate) struct Line {
    #[command(subcommand)]
    pub(crate) command: Command,
}

/// How results are printed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, ValueEnum)]
pub(crate) enum Output {
    /// For people (JSON replies are indented).
    #[default]
    Text,
    /// JSON, for scripts.
    Json,
    /// Replies exactly as received.
    Raw,
}

#[derive(Debug, Subcommand)]
pub(crate) enum Command {
    /// Run the HTTP API gateway: `micro api` (MICRO_API_HANDLER, MICRO_API_NAMESPACE, ...).
    Api(api::Args),
    /// Operate the platform by chatting: `micro bot --inputs slack,stdin`.
    Bot(bot::Args),
    /// Run the web dashboard: `micro web` (MICRO_WEB_ADDRESS, default 127.0.0.1:8082).
    Web(web::Args),
    /// Build, run and reload the services of a project, with the gateway and dashboard beside them.
    Run(run::Args),
    /// The registry's endpoints as MCP tools for agents: `micro mcp serve|list|call`.
    Mcp(mcp::Args),
    /// Run the proxy that discovers, balances and forwards for clients with MICRO_PROXY set.
    Proxy(proxy::Args),
    /// Write a new project: `micro new github.com/micro/example`.
    New(new::Args),
    /// List services: `micro list services`.
    List {
        #[command(subcommand)]
        what: list::What,
    },
    /// Describe a service: `micro get service NAME`.
    Get {
        #[command(subcommand)]
        what: get::What,
    },
    /// Call an endpoint: `micro call SERVICE ENDPOINT '{"json":"body"}'`.
    Call(call::Args),
    /// Open a stream: `micro stream SERVICE ENDPOINT '{"json":"body"}'` (more requests from stdin).
    Stream(stream::Args),
    /// Publish a message: `micro publish TOPIC '{"json":"body"}'` (prints ok).
    Publish(publish::Args),
    /// Check the health of every node of a service: `micro health check SERVICE`.
    Health {
        #[command(subcommand)]
        what: health::What,
    },
    /// Show the stats of every node of a service.
    Stats(stats::Args),
    /// Register a service record: `micro register service '{json}'`.
    Register {
        #[command(subcommand)]
        what: register::What,
    },
    /// Deregister a service record: `micro deregister service '{json}'`.
    Deregister {
        #[command(subcommand)]
        what: register::What,
    },
    /// Print a shell completion script: `micro completion bash|zsh|fish`.
    Completion {
        /// The shell.
        shell: clap_complete::Shell,
    },
    /// An interactive prompt with history and tab completion.
    Cli,
}

/// Runs the command line.
pub(crate) fn run(cli: Cli) -> anyhow::Result<()> {
    if let Command::Cli = cli.command {
        return shell::run(&cli.global);
    }
    if let Command::Completion { shell } = cli.command {
        return completion::run(shell);
    }
    if let Command::New(args) = cli.command {
        return new::run(args);
    }
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build()?;
    rt.block_on(dispatch(&cli.global, cli.command))
}

/// Runs one command.
pub(crate) async fn dispatch(global: &Global, command: Command) -> anyhow::Result<()> {
    match command {
        Command::New(args) => new::run(args),
        Command::Api(args) => api::run(global, args).await,
        Command::Proxy(args) => proxy::run(global, args).await,
        Command::Web(args) => web::run(global, args).await,
        Command::Mcp(args) => mcp::run(global, args).await,
        Command::Run(args) => run::run(global, args).await,
        Command::Bot(args) => bot::run(global, args).await,
        Command::List { what } => list::run(global, what).await,
        Command::Get { what } => get::run(global, what).await,
        Command::Call(args) => call::run(global, args).await,
        Command::Stream(args) => stream::run(global, args).await,
        Command::Publish(args) => publish::run(global, args).await,
        Command::Health { what } => health::run(global, what).await,
        Command::Stats(args) => stats::run(global, args).await,
        Command::Register { what } => register::run(global, what, true).await,
        Command::Deregister { what } => register::run(global, what, false).await,
        Command::Completion { shell } => completion::run(shell),
        Command::Cli => Err(crate::UsageError("already in the interactive prompt".into()).into()),
    }
}
