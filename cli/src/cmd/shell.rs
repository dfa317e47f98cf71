//! `micro cli`: an interactive prompt (`micro> `) with line editing, history, and tab completion
//! of commands, service names and endpoint names. Each line is a `micro` command line.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use clap::Parser;
use rustyline::completion::{Completer, Pair};
use rustyline::error::ReadlineError;
use rustyline::highlight::Highlighter;
use rustyline::hint::Hinter;
use rustyline::history::DefaultHistory;
use rustyline::validate::Validator;
use rustyline::{Context, Editor, Helper};

use super::{dispatch, Line};
use crate::global::Global;

const COMMANDS: &[&str] =
    &["call", "deregister", "exit", "get", "health", "help", "list", "publish", "quit", "register", "stats", "stream"];

const HELP: &str = "Commands:
  list services                      every registered service
  get service NAME                   versions, nodes and endpoints of a service
  call SERVICE ENDPOINT [JSON]       call an endpoint
  stream SERVICE ENDPOINT [JSON]     open a stream and print every reply
  publish TOPIC JSON                 publish a message
  health check SERVICE               Debug.Health of every node
  stats SERVICE                      Debug.Stats of every node
  register service JSON              add a service record
  deregister service JSON            remove a service record
  help                               this text
  exit                               leave (Ctrl-D too)";

struct Completion {
    global: Global,
    rt: tokio::runtime::Handle,
    services: Mutex<Option<Vec<String>>>,
}

impl Completion {
    fn services(&self) -> Vec<String> {
        let mut cached = self.services.lock().unwrap_or_else(|e| e.into_inner());
        if cached.is_none() {
            let names = self.rt.block_on(async {
                tokio::time::timeout(Duration::from_secs(2), crate::ops::list::names(&self.global)).await
            });
            *cached = names.ok().and_then(Result::ok);
        }
        cached.clone().unwrap_or_default()
    }

    fn endpoints(&self, service: &str) -> Vec<String> {
        let Ok(registry) = self.global.registry() else {
            return vec![];
        };
        self.rt
            .block_on(async { tokio::time::timeout(Duration::from_secs(2), registry.get_service(service)).await })
            .ok()
            .and_then(Result::ok)
            .map(|versions| versions.into_iter().flat_map(|v| v.endpoints.into_iter().map(|e| e.name)).collect())
            .unwrap_or_default()
    }

    /// Candidates for the word at `index` after the `words` before it.
    fn candidates(&self, words: &[&str]) -> Vec<String> {
        let fixed = |xs: &[&str]| xs.iter().map(|s| s.to_string()).collect();
        match words {
            [] => fixed(COMMANDS),
            ["list"] => fixed(&["services"]),
            ["get"] | ["register"] | ["deregister"] => fixed(&["service"]),
            ["health"] => fixed(&["check"]),
            ["get", "service"] | ["health", "check"] | ["stats"] | ["call"] | ["stream"] => self.services(),
            ["call", svc] | ["stream", svc] => self.endpoints(svc),
            _ => vec![],
        }
    }
}

impl Completer for Completion {
    type Candidate = Pair;

    fn complete(&self, line: &str, pos: usize, _: &Context<'_>) -> rustyline::Result<(usize, Vec<Pair>)> {
        let before = &line[..pos];
        let start = before.rfind(char::is_whitespace).map_or(0, |i| i + 1);
        let partial = &before[start..];
        let words: Vec<&str> = before[..start].split_whitespace().collect();
        let mut out: Vec<Pair> = self
            .candidates(&words)
            .into_iter()
            .filter(|c| c.starts_with(partial))
            .map(|c| Pair { display: c.clone(), replacement: format!("{c} ") })
            .collect();
        out.sort_by(|a, b| a.display.cmp(&b.display));
        Ok((start, out))
    }
}

impl Hinter for Completion {
    type Hint = String;
}
impl Highlighter for Completion {}
impl Validator for Completion {}
impl Helper for Completion {}

fn history_path() -> Option<std::path::PathBuf> {
    std::env::var_os("HOME").map(|h| std::path::PathBuf::from(h).join(".micro_history"))
}

pub(crate) fn run(global: &Global) -> anyhow::Result<()> {
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build()?;
    let mut global = global.clone();
    {
        let _guard = rt.enter();
        global.share(global.registry()?);
    }
    let helper = Completion { global: global.clone(), rt: rt.handle().clone(), services: Mutex::new(None) };
    let mut editor: Editor<Completion, DefaultHistory> = Editor::new()?;
    editor.set_helper(Some(helper));
    let history = history_path();
    if let Some(h) = &history {
        let _ = editor.load_history(h);
    }
    let global = Arc::new(global);
    loop {
        match editor.readline("micro> ") {
            Ok(line) => {
                let line = line.trim();
                if line.is_empty() {
                    continue;
                }
                let _ = editor.add_history_entry(line);
                match line {
                    "exit" | "quit" => break,
                    "help" => {
                        println!("{HELP}");
                        continue;
                    }
                    _ => {}
                }
                let words = match crate::ops::words::words(line) {
                    Ok(w) => w,
                    Err(e) => {
                        eprintln!("cannot read that line: {e}");
                        continue;
                    }
                };
                match Line::try_parse_from(words) {
                    Ok(parsed) => {
                        if let Err(e) = rt.block_on(dispatch(&global, parsed.command)) {
                            crate::exit_code(&e);
                        }
                        if let Some(h) = editor.helper() {
                            *h.services.lock().unwrap_or_else(|e| e.into_inner()) = None;
                        }
                    }
                    Err(e) => {
                        let _ = e.print();
                    }
                }
            }
            Err(ReadlineError::Interrupted) => continue,
            Err(ReadlineError::Eof) => break,
            Err(e) => return Err(e.into()),
        }
    }
    if let Some(h) = &history {
        let _ = editor.save_history(h);
    }
    Ok(())
}
