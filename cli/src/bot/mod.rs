//! `micro bot`: operate the platform by chatting. Inputs (`--inputs slack,stdin`) hand each line
//! to [`Bot::answer`]; built-in commands cover the CLI's read and call commands, and every
//! service named `<namespace>.<command>` (`go.micro.bot.weather`) adds `<command>` (its
//! `Command.Help` and `Command.Exec`), discovered and dropped through a registry watch.
//!
//! **Who may do what.** Anyone who can post to the bot may read (list, get, health) and run
//! commands. Changing the registry (`register service`, `deregister service`) needs an admin:
//! a Slack user listed in `--bot_admins`, or the operator at the bot's own standard input. The
//! bot's `--auth_token` goes only with its own calls (commands' help) and with admins' calls; a
//! call for anyone else carries no token, so a token on the bot does not open protected services
//! to a whole workspace.

pub(crate) mod slack;

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use micro::bot::{ExecRequest, ExecResponse, HelpRequest, HelpResponse, EXEC, HELP};
use micro::client::Client;
use micro::registry::{RegisterOptions, Service};
use micro::CallOptions;

use crate::global::Global;

const BUILTIN: &str = "help - this list
echo TEXT - says it back
time - the time (UTC)
hello - says hello
ping - pong
list services - every registered service
get service NAME - versions, nodes and endpoints of a service
health NAME - Debug.Health of every node
call SERVICE ENDPOINT {json} - calls an endpoint
register service {json} - adds a service record
deregister service {json} - removes a service record";

/// Who sent a line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Who {
    /// The operator at the bot's standard input.
    Operator,
    /// A Slack user, by id.
    Slack(String),
}

/// The bot: answers one line at a time.
pub(crate) struct Bot {
    global: Global,
    /// The bot's own calls (with its token).
    client: Client,
    /// Calls for people who are not admins (no token).
    anonymous: Client,
    /// Slack user ids allowed to change the registry and to call with the bot's token.
    admins: BTreeSet<String>,
    /// The namespace of command services (`go.micro.bot`).
    namespace: String,
    /// command → service
    commands: RwLock<BTreeMap<String, String>>,
}

impl Bot {
    /// A bot over the registry the flags name; starts following `go.micro.bot.*` services.
    pub(crate) fn start(global: &Global, admins: &[String], namespace: &str) -> anyhow::Result<Arc<Bot>> {
        let mut global = global.clone();
        global.share(global.registry()?);
        let client = global.client(global.registry()?)?;
        let anonymous = global.client_for_callers(global.registry()?)?;
        let admins = admins.iter().map(|a| a.trim().to_string()).filter(|a| !a.is_empty()).collect();
        let namespace = namespace.trim_end_matches('.').to_string();
        let bot =
            Arc::new(Bot { global, client, anonymous, admins, namespace, commands: RwLock::new(BTreeMap::new()) });
        let b = bot.clone();
        tokio::spawn(async move {
            loop {
                b.refresh().await;
                let Ok(registry) = b.global.registry() else { return };
                match registry.watch(None).await {
                    Ok(mut w) => {
                        while let Some(Ok(ev)) = w.next().await {
                            if ev.service.name.starts_with(&b.namespace) {
                                b.refresh().await;
                            }
                        }
                    }
                    Err(_) => tokio::time::sleep(Duration::from_secs(2)).await,
                }
            }
        });
        Ok(bot)
    }

    async fn refresh(&self) {
        let Ok(registry) = self.global.registry() else { return };
        let Ok(services) = registry.list_services().await else { return };
        let prefix = format!("{}.", self.namespace);
        let found: BTreeMap<String, String> = services
            .into_iter()
            .filter_map(|s| s.name.strip_prefix(&prefix).map(|c| (c.to_string(), s.name.clone())))
            .collect();
        *self.commands.write().unwrap_or_else(|e| e.into_inner()) = found;
    }

    /// The service of a command: known from the watch, or (for one that just started) asked of
    /// the registry directly.
    async fn find_command(&self, word: &str) -> Option<String> {
        if let Some(s) = self.commands.read().unwrap_or_else(|e| e.into_inner()).get(word).cloned() {
            return Some(s);
        }
        let service = format!("{}.{word}", self.namespace);
        let registry = self.global.registry().ok()?;
        registry.get_service(&service).await.ok()?;
        self.commands.write().unwrap_or_else(|e| e.into_inner()).insert(word.to_string(), service.clone());
        Some(service)
    }

    async fn help(&self) -> String {
        self.refresh().await;
        let mut out = vec![BUILTIN.to_string()];
        let commands: Vec<(String, String)> = self
            .commands
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .iter()
            .map(|(c, s)| (c.clone(), s.clone()))
            .collect();
        for (command, service) in commands {
            let opts = CallOptions::new().timeout(Duration::from_secs(2));
            match self.client.call::<HelpRequest, HelpResponse>(&service, &HELP, &HelpRequest {}, opts).await {
                Ok(h) => {
                    out.push(format!("{} - {}", if h.usage.is_empty() { command } else { h.usage }, h.description))
                }
                Err(_) => out.push(format!("{command} - (from {service})")),
            }
        }
        out.join("\n")
    }

    fn is_admin(&self, who: &Who) -> bool {
        match who {
            Who::Operator => true,
            Who::Slack(user) => self.admins.contains(user),
        }
    }

    /// The client for calls made for `who`.
    fn client_for(&self, who: &Who) -> &Client {
        if self.is_admin(who) {
            &self.client
        } else {
            &self.anonymous
        }
    }

    /// The answer to one line from `who`.
    pub(crate) async fn answer(&self, line: &str, who: &Who) -> String {
        let words = match crate::ops::words::words(line.trim()) {
            Ok(w) => w,
            Err(e) => return format!("cannot read that: {e}"),
        };
        let w: Vec<&str> = words.iter().map(String::as_str).collect();
        let result: anyhow::Result<String> = match w.as_slice() {
            [] => Ok(String::new()),
            ["help"] => Ok(self.help().await),
            ["echo", rest @ ..] => Ok(rest.join(" ")),
            ["time"] => Ok(crate::ops::time::now_utc()),
            ["hello"] => Ok("hello".into()),
            ["ping"] => Ok("pong".into()),
            ["list", "services"] => crate::ops::list::names(&self.global).await.map(|n| n.join("\n")),
            ["get", "service", name] => self.get(name).await,
            ["health", name] => crate::ops::health::check(&self.global, name).await.map(|(text, _)| text),
            ["call", service, endpoint, rest @ ..] => self.call(who, service, endpoint, &rest.join(" ")).await,
            ["register" | "deregister", "service", ..] if !self.is_admin(who) => {
                Ok(format!("{} service changes the registry: only the bot's admins may (--bot_admins)", w[0]))
            }
            ["register", "service", json] => self.register(json, true).await,
            ["deregister", "service", json] => self.register(json, false).await,
            [first, ..] => match self.find_command(first).await {
                Some(service) => self.exec(who, &service, words.clone()).await,
                None => Ok(format!("unknown command {first:?}; try help")),
            },
        };
        result.unwrap_or_else(|e| match e.downcast_ref::<micro::Error>() {
            Some(me) => format!("error: {}", me.to_json()),
            None => format!("error: {e}"),
        })
    }

    async fn get(&self, name: &str) -> anyhow::Result<String> {
        let versions = self.global.registry()?.get_service(name).await?;
        Ok(crate::format::service(&versions))
    }

    async fn call(&self, who: &Who, service: &str, endpoint: &str, json: &str) -> anyhow::Result<String> {
        let body = if json.trim().is_empty() { "{}" } else { json };
        let reply = self
            .client_for(who)
            .call_json(service, endpoint, body.as_bytes(), CallOptions::new().timeout(self.global.timeout()))
            .await?;
        let v: serde_json::Value = serde_json::from_slice(&reply)?;
        Ok(crate::ops::pretty(&v))
    }

    async fn register(&self, json: &str, add: bool) -> anyhow::Result<String> {
        let svc: Service = serde_json::from_str(json)?;
        let registry = self.global.registry()?;
        if add {
            registry.register(&svc, RegisterOptions::default()).await?;
            if registry.name() == "mdns" {
                return Ok(format!("ok: {} is announced over mDNS while the bot runs", svc.name));
            }
        } else {
            registry.deregister(&svc).await?;
        }
        Ok("ok".into())
    }

    async fn exec(&self, who: &Who, service: &str, args: Vec<String>) -> anyhow::Result<String> {
        let reply: ExecResponse = self
            .client_for(who)
            .call(service, &EXEC, &ExecRequest { args }, CallOptions::new().timeout(self.global.timeout()))
            .await?;
        Ok(if reply.error.is_empty() { reply.result } else { format!("error: {}", reply.error) })
    }
}

/// The stdin input: answers each line on standard output; returns when standard input closes.
pub(crate) async fn stdin(bot: Arc<Bot>) {
    let (tx, mut rx) = tokio::sync::mpsc::channel::<String>(16);
    std::thread::spawn(move || {
        use std::io::BufRead;
        for line in std::io::stdin().lock().lines() {
            let Ok(line) = line else { break };
            if tx.blocking_send(line).is_err() {
                break;
            }
        }
    });
    while let Some(line) = rx.recv().await {
        if line.trim().is_empty() {
            continue;
        }
        println!("{}", bot.answer(&line, &Who::Operator).await);
    }
}
