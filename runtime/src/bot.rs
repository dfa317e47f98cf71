//! Commands for `micro bot`: the messages of `proto/micro/bot/command.proto` and the handler side.
//!
//! A service named `go.micro.bot.<command>` that registers a [`CommandHandler`] adds `<command>`
//! to every running bot, which discovers it through the registry.

use std::future::Future;
use std::sync::Arc;

use serde::{Deserialize, Serialize};

use crate::client::Method;
use crate::server::{unary, Endpoint, Server};
use crate::{Error, Request};

/// `Command.Help` request.
#[derive(Clone, Copy, PartialEq, Eq, prost::Message, Serialize, Deserialize)]
pub struct HelpRequest {}

/// `Command.Help` reply.
#[derive(Clone, PartialEq, Eq, prost::Message, Serialize, Deserialize)]
pub struct HelpResponse {
    /// How to call it, e.g. `weather CITY`.
    #[prost(string, tag = "1")]
    #[serde(default)]
    pub usage: String,
    /// What it does.
    #[prost(string, tag = "2")]
    #[serde(default)]
    pub description: String,
}

/// `Command.Exec` request.
#[derive(Clone, PartialEq, Eq, prost::Message, Serialize, Deserialize)]
pub struct ExecRequest {
    /// The words typed, the command's name first.
    #[prost(string, repeated, tag = "1")]
    #[serde(default)]
    pub args: Vec<String>,
}

/// `Command.Exec` reply.
#[derive(Clone, PartialEq, Eq, prost::Message, Serialize, Deserialize)]
pub struct ExecResponse {
    /// The answer.
    #[prost(string, tag = "1")]
    #[serde(default)]
    pub result: String,
    /// Why it failed, if it did.
    #[prost(string, tag = "2")]
    #[serde(default)]
    pub error: String,
}

/// `Command.Help`.
pub const HELP: Method = Method { endpoint: "Command.Help", path: "/micro.bot.Command/Help" };
/// `Command.Exec`.
pub const EXEC: Method = Method { endpoint: "Command.Exec", path: "/micro.bot.Command/Exec" };

/// The service-name prefix of bot commands.
pub const NAMESPACE: &str = "go.micro.bot";

/// A bot command.
pub trait CommandHandler: Send + Sync + 'static {
    /// Usage and description.
    fn help(&self) -> HelpResponse;
    /// Runs the command.
    fn exec(&self, args: Vec<String>) -> impl Future<Output = Result<String, Error>> + Send;
}

/// Registers `handler` as `Command.Help` and `Command.Exec` on `server`.
pub fn register_command_handler<H: CommandHandler>(server: &Server, handler: H) {
    let handler = Arc::new(handler);
    let h = handler.clone();
    server.handle(
        Endpoint::new(
            "Command.Help",
            unary(move |_: Request<HelpRequest>| {
                let reply = h.help();
                async move { Ok::<_, Error>(reply) }
            }),
        )
        .path(HELP.path),
    );
    server.handle(
        Endpoint::new(
            "Command.Exec",
            unary(move |req: Request<ExecRequest>| {
                let handler = handler.clone();
                async move {
                    Ok::<_, Error>(match handler.exec(req.into_inner().args).await {
                        Ok(result) => ExecResponse { result, error: String::new() },
                        Err(e) => ExecResponse { result: String::new(), error: e.detail },
                    })
                }
            }),
        )
        .path(EXEC.path),
    );
}
