//! `micro run` on a fleet whose `micro.toml` lists a project `micro new` wrote: it builds and runs the service with the gateway
//! beside it; while a client calls in a loop, an edit of the handler is rebuilt and the new
//! process replaces the old one without a failed call; a broken edit prints the compiler's error
//! while the last good binary keeps answering; Ctrl-C stops it all, the service deregistered.

mod common;

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use micro::registry::{MdnsRegistry, SharedRegistry};
use micro_tests::Child;

type Lines = Arc<Mutex<Vec<String>>>;

/// Waits (up to `timeout`) for a line of `lines` containing every one of `words`.
fn wait_line(lines: &Lines, words: &[&str], timeout: Duration) {
    let deadline = Instant::now() + timeout;
    while !lines.lock().unwrap().iter().any(|l| words.iter().all(|w| l.contains(w))) {
        assert!(
            Instant::now() < deadline,
            "no line with {words:?}; micro run said:\n{}",
            lines.lock().unwrap().join("\n")
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

async fn wait_line_async(lines: &Lines, words: &'static [&'static str], timeout: Duration) {
    let lines = lines.clone();
    tokio::task::spawn_blocking(move || wait_line(&lines, words, timeout)).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_edit_is_rebuilt_and_replaces_the_service_without_a_failed_call() {
    let tmp = tempfile::tempdir().unwrap();
    let (dir, _) = common::new_project(tmp.path(), "service", "github.com/micro/runsvc");
    // The fleet's micro.toml names the project.
    std::fs::write(tmp.path().join("micro.toml"), "services = [\"runsvc\"]\n").unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_micro"))
        .arg("run")
        .arg(tmp.path())
        .args(["--no-web", "--api_address", "127.0.0.1:0"])
        .env("MICRO_REGISTRY", "mdns")
        .env("CARGO_TARGET_DIR", common::workspace().join("target/scaffold"))
        .env("CARGO_NET_OFFLINE", "true")
        .env_remove("RUSTFLAGS")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let lines: Lines = Arc::default();
    let stderr = child.stderr.take().unwrap();
    let l = lines.clone();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            l.lock().unwrap().push(line);
        }
    });
    let mut run = Child(child);
    // The first build may compile micro itself (it shares the scaffolded projects' target).
    wait_line_async(&lines, &["api |", "api listening on"], Duration::from_secs(60)).await;
    wait_line_async(&lines, &["runsvc replaced"], Duration::from_secs(900)).await;

    // A client calling in a loop, through every reload.
    let registry: SharedRegistry = Arc::new(MdnsRegistry::new().unwrap());
    let client = micro_tests::client(registry.clone(), 2);
    let replies: Arc<Mutex<Vec<Result<String, String>>>> = Arc::default();
    let done = Arc::new(AtomicBool::new(false));
    let (r, d) = (replies.clone(), done.clone());
    let caller = tokio::spawn(async move {
        while !d.load(Ordering::Acquire) {
            let opts = micro::CallOptions::new().timeout(Duration::from_secs(10));
            let got = client.call_json("go.micro.srv.runsvc", "Runsvc.Call", br#"{"name":"John"}"#, opts).await;
            let got = got.map(|b| String::from_utf8_lossy(&b).to_string()).map_err(|e| e.to_string());
            r.lock().unwrap().push(got);
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    });
    let said = |word: &'static str, replies: &Arc<Mutex<Vec<Result<String, String>>>>| {
        replies.lock().unwrap().iter().any(|r| r.as_ref().is_ok_and(|m| m.contains(word)))
    };
    let deadline = Instant::now() + Duration::from_secs(60);
    while !said("Hello John", &replies) {
        let last = replies.lock().unwrap().last().cloned();
        assert!(Instant::now() < deadline, "no reply from the service; the last call: {last:?}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }

    let handler = dir.join("src/handler/mod.rs");
    let source = std::fs::read_to_string(&handler).unwrap();
    assert!(source.contains("\"Hello {}\""), "the template's greeting");
    std::fs::write(&handler, source.replace("\"Hello {}\"", "\"Howdy {}\"")).unwrap();
    micro_tests::wait_for("the edited reply", Duration::from_secs(300), async || said("Howdy John", &replies)).await;
    let seen = replies.lock().unwrap().len();
    micro_tests::wait_for("calls after the reload", Duration::from_secs(30), async || {
        replies.lock().unwrap().len() > seen + 20
    })
    .await;
    done.store(true, Ordering::Release);
    caller.await.unwrap();
    let failed: Vec<String> = replies.lock().unwrap().iter().filter_map(|r| r.clone().err()).collect();
    assert!(failed.is_empty(), "calls failed during the reload: {failed:?}");
    let after = replies.lock().unwrap().iter().rev().take(10).all(|r| r.as_ref().is_ok_and(|m| m.contains("Howdy")));
    assert!(after, "the old process still answers after the reload");

    // A broken edit: the compiler's error is shown, the last good binary keeps answering.
    let edited = std::fs::read_to_string(&handler).unwrap();
    std::fs::write(&handler, format!("{edited}\nfn broken() -> u32 {{ \"not a number\" }}\n")).unwrap();
    wait_line_async(&lines, &["mismatched types"], Duration::from_secs(300)).await;
    wait_line_async(&lines, &["the build failed"], Duration::from_secs(60)).await;
    let client = micro_tests::client(registry.clone(), 2);
    let reply = client
        .call_json("go.micro.srv.runsvc", "Runsvc.Call", br#"{"name":"John"}"#, micro::CallOptions::new())
        .await
        .expect("the last good binary answers");
    assert!(String::from_utf8_lossy(&reply).contains("Howdy John"));

    // Ctrl-C: everything stops, the service deregistered.
    micro_tests::signal(&run.0, "INT");
    let deadline = Instant::now() + Duration::from_secs(60);
    let status = loop {
        if let Some(status) = run.0.try_wait().unwrap() {
            break status;
        }
        assert!(Instant::now() < deadline, "micro run did not stop");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert!(status.success(), "{status}");
    wait_line_async(&lines, &["runsvc", "deregistered"], Duration::from_secs(5)).await;
}
