//! `micro mcp` with the agents other people wrote: the official Python SDK (`mcp`) over
//! streamable HTTP and over stdio lists the registry's endpoints as tools, calls them (the reply
//! as text and `structuredContent`, a failure as a tool error with the micro error's detail),
//! forwards its own bearer token and hears `tools/list_changed` when a service starts;
//! `@modelcontextprotocol/inspector-cli` lists and calls the same tools. Beside them: the HTTP
//! transport's refusals (no token, a wrong one, another host or origin), the per-tool rate limit,
//! the audit line of every call, and `micro mcp list` and `call`.

mod common;

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use micro::registry::{MdnsRegistry, SharedRegistry};
use micro_tests::{curl_head, Child};
use serde_json::{json, Value};

type Lines = Arc<Mutex<Vec<String>>>;

fn micro_bin() -> &'static Path {
    Path::new(env!("CARGO_BIN_EXE_micro"))
}

/// A started in-process service `name` serving the helloworld Greeter.
async fn greeter(registry: &SharedRegistry, name: &str) -> micro::Service {
    let options = micro::options::Options { register_interval: Duration::ZERO, ..Default::default() };
    let svc = micro::Service::builder().name(name).options(options).registry(registry.clone()).build().unwrap();
    helloworld::helloworld::register_greeter_handler(svc.server(), helloworld::Greeter);
    svc.start().await.unwrap();
    svc
}

/// A started in-process service `name` serving the tests' Tester (its Echo shows the metadata).
async fn tester(registry: &SharedRegistry, name: &str) -> micro::Service {
    let options = micro::options::Options { register_interval: Duration::ZERO, ..Default::default() };
    let svc = micro::Service::builder().name(name).options(options).registry(registry.clone()).build().unwrap();
    micro_tests::testing::register_tester_handler(svc.server(), micro_tests::Tester::default());
    svc.start().await.unwrap();
    svc
}

/// Keeps every line `from` writes.
fn keep(from: impl std::io::Read + Send + 'static, into: Lines) {
    std::thread::spawn(move || {
        for line in BufReader::new(from).lines().map_while(Result::ok) {
            into.lock().unwrap().push(line);
        }
    });
}

/// `micro mcp serve ARGS` over HTTP; its address and every line of its standard error.
fn serve(args: &[&str]) -> (Child, String, Lines) {
    let mut child = Command::new(micro_bin())
        .args(["mcp", "serve", "--mcp_address", "127.0.0.1:0"])
        .args(args)
        .env("MICRO_REGISTRY", "mdns")
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let lines: Lines = Arc::default();
    keep(child.stderr.take().unwrap(), lines.clone());
    let child = Child(child);
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let found =
            lines.lock().unwrap().iter().find_map(|l| l.strip_prefix("mcp listening on http://").map(str::to_string));
        if let Some(rest) = found {
            return (child, rest.trim_end_matches("/mcp").to_string(), lines);
        }
        assert!(Instant::now() < deadline, "micro mcp serve did not listen: {:?}", lines.lock().unwrap());
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// The Python SDK's agent (tests/python/mcp_client.py) with `args`, its output lines as JSON.
struct Agent {
    _child: Child,
    lines: Lines,
}

impl Agent {
    fn start(args: &[&str]) -> Agent {
        let mut child = Command::new(micro_tests::python())
            .arg(micro_tests::repo_root().join("tests/python/mcp_client.py"))
            .args(args)
            .env("MICRO_REGISTRY", "mdns")
            .stdout(Stdio::piped())
            .spawn()
            .expect("the Python MCP agent starts");
        let lines: Lines = Arc::default();
        keep(child.stdout.take().unwrap(), lines.clone());
        Agent { _child: Child(child), lines }
    }

    /// The agent's line for `event`, waiting for it.
    fn event(&self, event: &str) -> Value {
        event_in(&self.lines, event)
    }
}

/// The line for `event` among an agent's `lines`, waiting for it.
fn event_in(lines: &Lines, event: &str) -> Value {
    let deadline = Instant::now() + Duration::from_secs(90);
    loop {
        let found = lines
            .lock()
            .unwrap()
            .iter()
            .filter_map(|l| serde_json::from_str::<Value>(l).ok())
            .find(|v| v["event"] == event);
        if let Some(v) = found {
            return v;
        }
        assert!(Instant::now() < deadline, "the agent said no {event:?}: {:?}", lines.lock().unwrap());
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// [`event_in`] from async code.
async fn wait_event(lines: &Lines, event: &'static str) -> Value {
    let lines = lines.clone();
    tokio::task::spawn_blocking(move || event_in(&lines, event)).await.unwrap()
}

/// What every agent sees of the services `{ns}.helloworld` and `{ns}.tester`; the Echo reply's
/// metadata.
fn sees_the_tools_and_calls_them(agent: &Lines) -> serde_json::Map<String, Value> {
    let tools = event_in(agent, "tools")["tools"].clone();
    let names: Vec<&String> = tools.as_object().unwrap().keys().collect();
    assert_eq!(
        names,
        ["helloworld.Greeter.SayHello", "tester.Tester.Echo", "tester.Tester.Peek"],
        "streams are not tools"
    );
    let hello = &tools["helloworld.Greeter.SayHello"];
    assert_eq!(hello["input"]["properties"]["name"], json!({"type": "string"}), "{hello}");
    assert_eq!(hello["description"], "Sends a greeting.", "the proto comment");
    assert_eq!(hello["output"]["type"], "object");

    let said = event_in(agent, "hello");
    assert_eq!(said["error"], false, "{said}");
    assert_eq!(said["structured"], json!({"message": "Hello John"}));
    assert!(said["text"][0].as_str().unwrap().contains("Hello John"), "{said}");

    let failed = event_in(agent, "fail");
    assert_eq!(failed["error"], true, "{failed}");
    assert_eq!(failed["text"], json!(["asked to fail: no"]), "the micro error's detail");

    let echo = event_in(agent, "echo");
    assert_eq!(echo["error"], false, "{echo}");
    assert_eq!(echo["structured"]["message"], "hi");
    echo["structured"]["metadata"].as_object().cloned().unwrap_or_default()
}

fn authorization(metadata: &serde_json::Map<String, Value>) -> Option<&str> {
    metadata.iter().find(|(k, _)| k.eq_ignore_ascii_case("authorization")).and_then(|(_, v)| v.as_str())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn agents_list_call_and_follow_the_registry_over_http_and_stdio() {
    let ns = format!("go.micro.mcp{}", std::process::id());
    let registry: SharedRegistry = Arc::new(MdnsRegistry::new().unwrap());
    let _hello = greeter(&registry, &format!("{ns}.helloworld")).await;
    let _tester = tester(&registry, &format!("{ns}.tester")).await;

    let n = ns.clone();
    let (_serving, addr, log) =
        tokio::task::spawn_blocking(move || serve(&["--namespace", &n, "--mcp_tokens", "agent-1,agent-2"]))
            .await
            .unwrap();
    let url = format!("http://{addr}/mcp");

    // Over streamable HTTP, with the SDK's newest protocol.
    let u = url.clone();
    let agent = tokio::task::spawn_blocking(move || {
        let agent = Agent::start(&["http", &u, "agent-2"]);
        assert_eq!(agent.event("connected")["protocol"], "2026-07-28");
        agent
    })
    .await
    .unwrap();
    let lines = agent.lines.clone();
    let metadata = tokio::task::spawn_blocking(move || sees_the_tools_and_calls_them(&lines)).await.unwrap();
    assert_eq!(authorization(&metadata), Some("Bearer agent-2"), "the caller's token is forwarded: {metadata:?}");
    let honored = wait_event(&agent.lines, "listening").await;
    assert_eq!(honored["honored"]["toolsListChanged"], true, "{honored}");
    let _second = greeter(&registry, &format!("{ns}.second")).await;
    let changed = wait_event(&agent.lines, "changed").await;
    assert!(changed["tools"].as_array().unwrap().contains(&json!("second.Greeter.SayHello")), "{changed}");
    drop(agent);

    // Every call left one audit line: the tool, the caller's peer and token fingerprint, the outcome.
    let audit: Vec<String> = log.lock().unwrap().iter().filter(|l| l.contains("micro::mcp::audit")).cloned().collect();
    assert_eq!(audit.len(), 3, "{audit:?}");
    assert!(audit.iter().all(|l| l.contains("127.0.0.1 token:") && !l.contains("agent-2")), "{audit:?}");
    assert!(
        audit.iter().any(|l| l.contains("tool=\"tester.Tester.Echo\"") && l.contains("outcome=\"404 Not Found\"")),
        "{audit:?}"
    );

    // Over stdio: the agent starts the server; no token of anyone's is sent for it.
    let n = ns.clone();
    let agent = tokio::task::spawn_blocking(move || {
        let micro = micro_bin().display().to_string();
        let agent = Agent::start(&["stdio", &micro, "mcp", "serve", "--stdio", "--namespace", &n]);
        let metadata = sees_the_tools_and_calls_them_with_second(&agent);
        assert_eq!(authorization(&metadata), None, "{metadata:?}");
        agent.event("listening");
        agent
    })
    .await
    .unwrap();
    let _third = greeter(&registry, &format!("{ns}.third")).await;
    let changed = tokio::task::spawn_blocking(move || agent.event("changed")).await.unwrap();
    assert!(changed["tools"].as_array().unwrap().contains(&json!("third.Greeter.SayHello")), "{changed}");
}

/// As [`sees_the_tools_and_calls_them`], with `{ns}.second` also up.
fn sees_the_tools_and_calls_them_with_second(agent: &Agent) -> serde_json::Map<String, Value> {
    let tools = agent.event("tools")["tools"].clone();
    let names: Vec<&String> = tools.as_object().unwrap().keys().collect();
    assert_eq!(
        names,
        ["helloworld.Greeter.SayHello", "second.Greeter.SayHello", "tester.Tester.Echo", "tester.Tester.Peek"]
    );
    assert_eq!(agent.event("hello")["structured"], json!({"message": "Hello John"}));
    assert_eq!(agent.event("fail")["text"], json!(["asked to fail: no"]));
    agent.event("echo")["structured"]["metadata"].as_object().cloned().unwrap_or_default()
}

/// A JSON-RPC request to the HTTP transport, as a client of MCP 2025-06-18 sends it.
fn rpc(url: &str, headers: &[&str], body: &Value) -> (u16, String, String) {
    let body = body.to_string();
    let mut args = vec![
        "-X",
        "POST",
        "-H",
        "content-type: application/json",
        "-H",
        "accept: application/json, text/event-stream",
        "-H",
        "mcp-protocol-version: 2025-06-18",
    ];
    for h in headers {
        args.extend(["-H", h]);
    }
    args.extend(["-d", body.as_str(), url]);
    curl_head(&args)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_http_transport_refuses_strangers_limits_each_tool_and_the_inspector_calls_it() {
    let ns = format!("go.micro.mcpx{}", std::process::id());
    let registry: SharedRegistry = Arc::new(MdnsRegistry::new().unwrap());
    let _hello = greeter(&registry, &format!("{ns}.helloworld")).await;
    let n = ns.clone();
    tokio::task::spawn_blocking(move || {
        let (_serving, addr, _log) = serve(&["--namespace", &n, "--mcp_tokens", "tok", "--rate_limit", "2"]);
        let url = format!("http://{addr}/mcp");
        let list = json!({"jsonrpc": "2.0", "id": 1, "method": "tools/list"});

        let (code, head, body) = rpc(&url, &[], &list);
        assert_eq!(code, 401, "{body}");
        assert!(head.contains("www-authenticate: bearer realm=\"micro\""), "{head}");
        let (code, head, _) = rpc(&url, &["authorization: Bearer nope"], &list);
        assert_eq!(code, 401);
        assert!(head.contains("error=\"invalid_token\""), "{head}");
        let (code, _, body) = rpc(&url, &["authorization: Bearer tok", "host: evil.example"], &list);
        assert_eq!(code, 403, "another host (DNS rebinding): {body}");
        let (code, _, body) = rpc(&url, &["authorization: Bearer tok", "origin: http://evil.example"], &list);
        assert_eq!(code, 403, "another origin: {body}");
        let (code, _, body) = rpc(&url, &["authorization: Bearer tok"], &list);
        assert_eq!(code, 200, "{body}");
        assert!(body.contains("helloworld.Greeter.SayHello"), "{body}");
        let (code, _, _) =
            curl_head(&["-X", "POST", "-H", "authorization: Bearer tok", "-d", "{}", &format!("http://{addr}/other")]);
        assert_eq!(code, 404);

        // Two calls a second per tool: of five at once, some are refused as tool errors.
        let call = json!({"jsonrpc": "2.0", "id": 2, "method": "tools/call",
            "params": {"name": "helloworld.Greeter.SayHello", "arguments": {"name": "Ann"}}});
        let answers: Vec<Value> = (0..5)
            .map(|_| {
                let (code, _, body) = rpc(&url, &["authorization: Bearer tok"], &call);
                assert_eq!(code, 200, "{body}");
                serde_json::from_str(&body).unwrap()
            })
            .collect();
        let limited = answers.iter().filter(|a| a["result"]["isError"] == true).count();
        assert!(limited >= 2, "{answers:?}");
        assert!(answers[0]["result"]["structuredContent"]["message"] == "Hello Ann", "{answers:?}");
        let refused = answers.iter().find(|a| a["result"]["isError"] == true).unwrap();
        assert!(
            refused["result"]["content"][0]["text"].as_str().unwrap().contains("at most 2 calls a second"),
            "{refused}"
        );

        // The inspector's CLI (it reads its own package.json from the working directory's parent).
        let dir = micro_tests::repo_root().join("tests/node/node_modules/@modelcontextprotocol/inspector-cli/build");
        let inspector = |args: &[&str]| -> Value {
            let out = Command::new("node")
                .arg("index.js")
                .arg(&url)
                .args(["--transport", "http", "--header", "Authorization: Bearer tok"])
                .args(args)
                .current_dir(&dir)
                .output()
                .expect("node runs the inspector (the README's test command installs it)");
            let stdout = String::from_utf8_lossy(&out.stdout);
            assert!(out.status.success(), "inspector {args:?}: {}\n{stdout}", String::from_utf8_lossy(&out.stderr));
            serde_json::from_str(&stdout).unwrap_or_else(|e| panic!("the inspector printed no JSON ({e}): {stdout}"))
        };
        let listed = inspector(&["--method", "tools/list"]);
        assert_eq!(listed["tools"][0]["name"], "helloworld.Greeter.SayHello", "{listed}");
        assert_eq!(listed["tools"][0]["inputSchema"]["properties"]["name"]["type"], "string");
        std::thread::sleep(Duration::from_millis(1100));
        let called = inspector(&[
            "--method",
            "tools/call",
            "--tool-name",
            "helloworld.Greeter.SayHello",
            "--tool-arg",
            "name=John",
        ]);
        assert_eq!(called["structuredContent"], json!({"message": "Hello John"}), "{called}");
    })
    .await
    .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn micro_mcp_list_and_call_answer_as_the_server_would() {
    let ns = format!("go.micro.mcpl{}", std::process::id());
    let registry: SharedRegistry = Arc::new(MdnsRegistry::new().unwrap());
    let _hello = greeter(&registry, &format!("{ns}.helloworld")).await;
    let n = ns.clone();
    tokio::task::spawn_blocking(move || {
        let mcp = |args: &[&str]| {
            Command::new(micro_bin())
                .arg("mcp")
                .args(args)
                .args(["--namespace", &n])
                .env("MICRO_REGISTRY", "mdns")
                .output()
                .unwrap()
        };
        let deadline = Instant::now() + Duration::from_secs(20);
        let listed = loop {
            let out = mcp(&["list"]);
            let text = String::from_utf8_lossy(&out.stdout).to_string();
            if text.contains("helloworld.Greeter.SayHello") || Instant::now() > deadline {
                break text;
            }
        };
        assert_eq!(listed, "helloworld.Greeter.SayHello\tSends a greeting.\n");
        let json_list: Value = serde_json::from_slice(&mcp(&["list", "-o", "json"]).stdout).unwrap();
        assert_eq!(json_list["tools"][0]["inputSchema"]["properties"]["name"], json!({"type": "string"}));
        let out = mcp(&["call", "helloworld.Greeter.SayHello", r#"{"name":"John"}"#]);
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        let result: Value = serde_json::from_slice(&out.stdout).unwrap();
        assert_eq!(result["structuredContent"], json!({"message": "Hello John"}));
        let out = mcp(&["call", "helloworld.Greeter.Nope", "{}"]);
        assert_eq!(out.status.code(), Some(1));
        let result: Value = serde_json::from_slice(&out.stdout).unwrap();
        assert_eq!(result["isError"], true);
        let out = mcp(&["call", "helloworld.Greeter.SayHello", "[1]"]);
        assert_eq!(out.status.code(), Some(2), "arguments are an object");
    })
    .await
    .unwrap();
}
