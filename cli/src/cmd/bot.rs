//! `micro bot --inputs slack,stdin`: operate the platform by chatting (see the `bot` module).

use crate::bot::{self, slack::Slack, Bot};
use crate::global::Global;
use crate::UsageError;

#[derive(Debug, clap::Args)]
pub(crate) struct Args {
    /// Inputs, comma separated: slack, stdin.
    #[arg(long, env = "MICRO_BOT_INPUTS", default_value = "stdin")]
    pub(crate) inputs: String,
    /// The namespace of command services.
    #[arg(long, env = "MICRO_BOT_NAMESPACE", default_value = "go.micro.bot")]
    pub(crate) namespace: String,
    /// Slack app-level token (xapp-...), for Socket Mode.
    #[arg(long = "slack_app_token", env = "MICRO_SLACK_APP_TOKEN", default_value = "", hide_env_values = true)]
    pub(crate) slack_app_token: String,
    /// Slack bot token (xoxb-...), for chat.postMessage.
    #[arg(
        long = "slack_bot_token",
        alias = "slack_token",
        env = "MICRO_SLACK_BOT_TOKEN",
        default_value = "",
        hide_env_values = true
    )]
    pub(crate) slack_bot_token: String,
    /// Slack user ids (comma list) who may change the registry and whose calls carry the bot's
    /// --auth_token; the operator at standard input always may.
    #[arg(long = "bot_admins", env = "MICRO_BOT_ADMINS", default_value = "", value_delimiter = ',')]
    pub(crate) admins: Vec<String>,
    /// The Slack Web API.
    #[arg(long = "slack_api_url", env = "MICRO_SLACK_API_URL", default_value = "https://slack.com/api")]
    pub(crate) slack_api_url: String,
}

pub(crate) async fn run(global: &Global, args: Args) -> anyhow::Result<()> {
    if args.namespace.trim_matches('.').is_empty() {
        return Err(UsageError("the namespace of command services cannot be empty".into()).into());
    }
    let inputs: Vec<&str> = args.inputs.split(',').map(str::trim).filter(|s| !s.is_empty()).collect();
    if let Some(bad) = inputs.iter().find(|i| !matches!(**i, "slack" | "stdin")) {
        return Err(UsageError(format!("unknown input \"{bad}\" (valid: slack, stdin)")).into());
    }
    let bot = Bot::start(global, &args.admins, &args.namespace)?;
    let mut tasks = tokio::task::JoinSet::new();
    if inputs.contains(&"slack") {
        let slack = Slack { api: args.slack_api_url, app_token: args.slack_app_token, bot_token: args.slack_bot_token };
        let b = bot.clone();
        tasks.spawn(async move { bot::slack::run(b, slack).await });
    }
    if inputs.contains(&"stdin") {
        let b = bot.clone();
        tasks.spawn(async move {
            bot::stdin(b).await;
            Ok(())
        });
    }
    // The bot ends when its first input ends (stdin closing, or Slack failing for good).
    match tasks.join_next().await {
        Some(Ok(result)) => result,
        Some(Err(e)) => Err(e.into()),
        None => Ok(()),
    }
}
