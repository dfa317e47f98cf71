//! `micro bot`: the stdin input, and a conversation over a stand-in Slack (Socket Mode websocket
//! plus `apps.connections.open` and `chat.postMessage`, all on 127.0.0.1) with built-in commands,
//! a call, and a command added by a service.

use std::io::{BufRead, BufReader, Write};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use micro::bot::{CommandHandler, HelpResponse};
use micro::registry::{MdnsRegistry, SharedRegistry};
use micro_tests::slack::{again, chatter, direct, disconnect, mention, stand_in, Slack};

struct Weather;

impl CommandHandler for Weather {
    fn help(&self) -> HelpResponse {
        HelpResponse { usage: "weather CITY".into(), description: "the weather in CITY".into() }
    }
    async fn exec(&self, args: Vec<String>) -> Result<String, micro::Error> {
        Ok(format!("sunny in {}", args.get(1).cloned().unwrap_or_default()))
    }
}

async fn command_service(registry: SharedRegistry) -> micro::Service {
    command_service_named(registry, "go.micro.bot.weather").await
}

async fn command_service_named(registry: SharedRegistry, name: &str) -> micro::Service {
    let mut o = micro::options::Options::default();
    o.register_interval = Duration::ZERO;
    let svc = micro::Service::builder().name(name).options(o).registry(registry).build().unwrap();
    micro::bot::register_command_handler(svc.server(), Weather);
    svc.start().await.unwrap();
    svc
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stdin_input_answers_each_line_and_exits_when_stdin_closes() {
    let svc = command_service(Arc::new(MdnsRegistry::new().unwrap())).await;
    let out = tokio::task::spawn_blocking(|| {
        let mut child = Command::new(env!("CARGO_BIN_EXE_micro"))
            .args(["bot", "--inputs", "stdin"])
            .env("MICRO_REGISTRY", "mdns")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        let mut stdin = child.stdin.take().unwrap();
        let mut stdout = BufReader::new(child.stdout.take().unwrap());
        let mut ask = |line: &str| {
            writeln!(stdin, "{line}").unwrap();
            let mut answer = String::new();
            stdout.read_line(&mut answer).unwrap();
            answer
        };
        let echo = ask("echo hi there");
        let ping = ask("ping");
        // The command service shows up once the bot has seen it in the registry.
        let deadline = Instant::now() + Duration::from_secs(10);
        let weather = loop {
            let a = ask("weather paris");
            if a.contains("sunny") || Instant::now() > deadline {
                break a;
            }
            std::thread::sleep(Duration::from_millis(200));
        };
        drop(stdin);
        let status = child.wait().unwrap();
        (echo, ping, weather, status)
    })
    .await
    .unwrap();
    assert_eq!(out.0, "hi there\n");
    assert_eq!(out.1, "pong\n");
    assert_eq!(out.2, "sunny in paris\n");
    assert!(out.3.success(), "exits when stdin closes: {}", out.3);
    svc.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_conversation_over_slack_socket_mode() {
    let registry: SharedRegistry = Arc::new(MdnsRegistry::new().unwrap());
    let svc = command_service(registry.clone()).await;
    let tester = micro_tests::start_tester(registry.clone(), "slack").await.0;
    // Give the registry a moment so the bot sees both services on its first listing.
    micro_tests::wait_for("both services", Duration::from_secs(5), async || {
        registry.get_service("go.micro.bot.weather").await.is_ok() && registry.get_service("testing").await.is_ok()
    })
    .await;
    let slack = Arc::new(Slack::default());
    let call =
        direct("U1", r#"call testing Tester.Echo {"message":"from slack & co <3 https://example.com/x?a=1&b=2"}"#);
    let api = stand_in(
        slack.clone(),
        vec![
            mention("U1", "list services"),
            chatter("U1", "list services"),
            call.clone(),
            again(&call),
            disconnect(),
            mention("U1", "weather oslo"),
            mention("U1", "help"),
        ],
    )
    .await;
    let mut bot = Command::new(env!("CARGO_BIN_EXE_micro"))
        .args([
            "bot",
            "--inputs",
            "slack",
            "--slack_api_url",
            &api,
            "--slack_app_token",
            "xapp-test",
            "--slack_bot_token",
            "xoxb-test",
        ])
        .env("MICRO_REGISTRY", "mdns")
        .stdin(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    micro_tests::wait_for("every event acknowledged", Duration::from_secs(30), async || {
        slack.acks.lock().unwrap().len() >= 6 && slack.posted.lock().unwrap().len() >= 4
    })
    .await;
    let _ = bot.kill();
    let _ = bot.wait();
    let posted = slack.posted.lock().unwrap().clone();
    assert_eq!(posted.len(), 4, "a mention, a direct message, and after the reconnect two mentions: {posted:?}");
    assert_eq!(posted.iter().map(|(c, _)| c.as_str()).collect::<Vec<_>>(), ["C42", "D42", "C42", "C42"]);
    assert!(
        posted[0].1.lines().any(|l| l == "go.micro.bot.weather") && posted[0].1.lines().any(|l| l == "testing"),
        "{}",
        posted[0].1
    );
    assert!(
        posted[1].1.contains(r#""message": "from slack & co <3 https://example.com/x?a=1&b=2""#),
        "Slack's escapes and link markup undone: {}",
        posted[1].1
    );
    assert_eq!(posted[2].1, "sunny in oslo");
    assert!(posted[3].1.contains("weather CITY - the weather in CITY"), "{}", posted[3].1);
    assert!(*slack.connections.lock().unwrap() >= 2, "the bot came back after the disconnect");
    tester.stop().await;
    svc.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn commands_come_from_the_namespace_given() {
    let namespace = format!("acme.bot{}", std::process::id());
    let svc = command_service_named(Arc::new(MdnsRegistry::new().unwrap()), &format!("{namespace}.forecast")).await;
    let out = tokio::task::spawn_blocking(move || {
        let mut child = Command::new(env!("CARGO_BIN_EXE_micro"))
            .args(["bot", "--inputs", "stdin", "--namespace", &namespace])
            .env("MICRO_REGISTRY", "mdns")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let mut stdin = child.stdin.take().unwrap();
        let mut stdout = BufReader::new(child.stdout.take().unwrap());
        let deadline = Instant::now() + Duration::from_secs(10);
        let answer = loop {
            writeln!(stdin, "forecast rome").unwrap();
            let mut a = String::new();
            if stdout.read_line(&mut a).unwrap_or(0) == 0 {
                let mut err = String::new();
                let _ = std::io::Read::read_to_string(&mut child.stderr.take().unwrap(), &mut err);
                break format!("exited: {err}");
            }
            if a.contains("sunny") || Instant::now() > deadline {
                break a;
            }
            std::thread::sleep(Duration::from_millis(200));
        };
        drop(stdin);
        let _ = child.wait();
        answer
    })
    .await
    .unwrap();
    assert_eq!(out, "sunny in rome\n");
    svc.stop().await;
}
