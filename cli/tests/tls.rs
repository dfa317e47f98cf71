//! The tools over TLS and with a token: `micro call` to a TLS service that requires a token,
//! `micro api` and `micro web` serving HTTPS (checked with `curl --cacert`) and calling the TLS
//! service behind them.

mod common;

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use micro_tests::certs::Certs;
use micro_tests::{curl, Child};

const TOKEN: &str = "tools-token-91c2";

fn micro(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_micro"))
        .args(args)
        .env("MICRO_REGISTRY", "mdns")
        .stdin(Stdio::null())
        .output()
        .unwrap()
}

#[test]
fn tools_call_and_serve_over_tls_with_a_token() {
    let certs = Certs::generate();
    let ca = certs.arg("ca.pem");
    let _tester = Child(
        Command::new(micro_tests::workspace_bin("tester"))
            .env("MICRO_REGISTRY", "mdns")
            .env("MICRO_SERVER_TLS_CERT", certs.arg("server.pem"))
            .env("MICRO_SERVER_TLS_KEY", certs.arg("server.key"))
            .env("MICRO_AUTH_TOKEN", TOKEN)
            .env("TESTER_NODE", "tls")
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    let call = ["call", "testing", "Tester.Echo", r#"{"message":"hi"}"#];
    let trusted = [&["--client_tls_ca", &ca, "--auth_token", TOKEN][..], &call].concat();
    let deadline = Instant::now() + Duration::from_secs(20);
    let out = loop {
        let out = micro(&trusted);
        if out.status.success() || Instant::now() > deadline {
            break out;
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(String::from_utf8_lossy(&out.stdout).contains("\"message\": \"hi\""));

    let untrusted = micro(&[&["--auth_token", TOKEN][..], &call].concat());
    assert_eq!(untrusted.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&untrusted.stderr);
    assert!(stderr.contains("TLS handshake failed"), "{stderr}");
    let tokenless = micro(&[&["--client_tls_ca", &ca][..], &call].concat());
    assert_eq!(tokenless.status.code(), Some(1));
    assert!(
        String::from_utf8_lossy(&tokenless.stderr).contains("401"),
        "{}",
        String::from_utf8_lossy(&tokenless.stderr)
    );
    let half = micro(&[&["--client_tls_cert", &certs.arg("client.pem")][..], &call].concat());
    assert_eq!(half.status.code(), Some(2), "half a key pair is a usage error");

    let tls = ["--server_tls_cert", &certs.arg("server.pem"), "--server_tls_key", &certs.arg("server.key")];
    let client = ["--client_tls_ca", &ca, "--auth_token", TOKEN];
    let api_args = ["api", "--api_address", "127.0.0.1:0", "--namespace", ""];
    let (_api, api) = common::listening(&[&api_args[..], &tls, &client].concat(), "api");
    let rpc = r#"{"service":"testing","endpoint":"Tester.Echo","request":{"message":"via api"}}"#;
    let url = format!("https://{api}/rpc");
    let bearer = format!("authorization: Bearer {TOKEN}");
    let (code, body) = curl(&["--cacert", &ca, "-H", "content-type: application/json", "-H", &bearer, "-d", rpc, &url]);
    assert_eq!(code, 200, "{body}");
    assert!(body.contains("via api"), "{body}");
    // The caller's own token, not the gateway's: without one, the service says 401.
    let (code, body) = curl(&["--cacert", &ca, "-H", "content-type: application/json", "-d", rpc, &url]);
    assert_eq!(code, 401, "{body}");
    let (code, _) = curl(&["-H", "content-type: application/json", "-d", rpc, &format!("http://{api}/rpc")]);
    assert_ne!(code, 200, "the gateway serves HTTPS only");

    let (_web, web) = common::listening(&[&["web", "--web_address", "127.0.0.1:0"][..], &tls, &client].concat(), "web");
    let (code, body) = curl(&["--cacert", &ca, "-H", "accept: application/json", &format!("https://{web}/registry")]);
    assert_eq!(code, 200, "{body}");
    assert!(body.contains("\"secure\":\"true\""), "the dashboard lists the TLS node: {body}");
}
