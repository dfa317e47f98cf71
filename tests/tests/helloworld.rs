//! The helloworld example as a user runs it: a server process and a client process that finds it
//! over mDNS (loopback), then a graceful stop on SIGTERM.

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use micro_tests::{signal, workspace_bin, Child};

#[test]
fn client_finds_the_server_over_mdns_and_sigterm_stops_it_cleanly() {
    let server = Child(
        Command::new(workspace_bin("server"))
            .env("MICRO_REGISTRY", "mdns")
            .env("MICRO_SERVER_ADDRESS", "127.0.0.1:0")
            .env("MICRO_SERVER_NAME", format!("helloworld-{}", std::process::id()))
            .stderr(Stdio::piped())
            .spawn()
            .expect("server starts"),
    );
    // The client calls "helloworld"; this test's server registers under a unique name, so a
    // second run of the suite in parallel cannot answer for it.
    let name = format!("helloworld-{}", std::process::id());
    let deadline = Instant::now() + Duration::from_secs(10);
    let out = loop {
        let out = Command::new(workspace_bin("client"))
            .arg("John")
            .env("MICRO_REGISTRY", "mdns")
            .env("HELLOWORLD_SERVICE", &name)
            .output()
            .unwrap();
        if out.status.success() || Instant::now() > deadline {
            break out;
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    assert!(out.status.success(), "client failed: {}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(String::from_utf8_lossy(&out.stdout), "Hello John\n");

    let mut server = server;
    signal(&server.0, "TERM");
    let status = server.0.wait().unwrap();
    assert!(status.success(), "server exited with {status}");
    let mut log = String::new();
    use std::io::Read;
    server.0.stderr.take().unwrap().read_to_string(&mut log).unwrap();
    for line in ["listening on 127.0.0.1:", "registered with the mdns registry", "shutting down", "deregistered"] {
        assert!(log.contains(line), "server log lacks {line:?}:\n{log}");
    }
    let after = Command::new(workspace_bin("client"))
        .arg("John")
        .env("MICRO_REGISTRY", "mdns")
        .env("HELLOWORLD_SERVICE", &name)
        .output()
        .unwrap();
    assert!(!after.status.success());
    assert!(String::from_utf8_lossy(&after.stderr).contains("not found"), "{}", String::from_utf8_lossy(&after.stderr));
}
