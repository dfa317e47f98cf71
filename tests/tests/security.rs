//! TLS, mutual TLS and bearer-token auth end to end, with certificates made at test time: our
//! client and `curl` (a real TLS peer) against TLS servers; clients without a certificate refused
//! under mutual TLS; 401 without the token, health checks open; the token kept out of the
//! registry, `Debug` output and the logs.

use std::process::{Command, Stdio};
use std::time::Duration;

use micro::client::ClientOptions;
use micro::options::{Options, Secret};
use micro::registry::SharedRegistry;
use micro::transport::tls::ClientTls;
use micro::{CallOptions, Client, Service};
use micro_tests::certs::Certs;
use micro_tests::testing::*;
use micro_tests::{curl, memory_registry, Child, Tester};

const TOKEN: &str = "s3cret-token-4e1f";

async fn service(registry: SharedRegistry, opts: Options) -> (Service, std::net::SocketAddr) {
    let mut opts = opts;
    opts.register_interval = Duration::ZERO;
    let service = Service::builder().name("testing").options(opts).registry(registry).build().expect("service builds");
    register_tester_handler(service.server(), Tester { node: "secure".into() });
    let addr = service.start().await.expect("service starts");
    (service, addr)
}

fn tls_options(certs: &Certs, mutual: bool) -> Options {
    Options {
        server_tls_cert: Some(certs.arg("server.pem")),
        server_tls_key: Some(certs.arg("server.key")),
        server_tls_client_ca: mutual.then(|| certs.arg("ca.pem")),
        ..Options::default()
    }
}

fn client(registry: SharedRegistry, tls: Option<ClientTls>, token: Option<&str>) -> Client {
    let client = Client::new(registry, ClientOptions { retries: 0, tls, ..Default::default() });
    match token {
        Some(t) => client.wrap(micro::wrapper::BearerToken::new(&Secret::new(t))),
        None => client,
    }
}

fn trusting(certs: &Certs, identity: Option<(&str, &str)>) -> Option<ClientTls> {
    let identity = identity.map(|(c, k)| (certs.path(c), certs.path(k)));
    Some(
        ClientTls::from_files(Some(&certs.path("ca.pem")), identity.as_ref().map(|(c, k)| (c.as_path(), k.as_path())))
            .unwrap(),
    )
}

fn echo(message: &str) -> EchoRequest {
    EchoRequest { message: message.into(), ..Default::default() }
}

#[tokio::test]
async fn tls_for_every_call_kind_and_for_curl() {
    let certs = Certs::generate();
    let registry = memory_registry();
    let (svc, addr) = service(registry.clone(), tls_options(&certs, false)).await;
    let node = &registry.get_service("testing").await.unwrap()[0].nodes[0];
    assert_eq!(node.metadata.get("secure").map(String::as_str), Some("true"), "TLS nodes say so in the registry");

    let tester = TesterClient::new("testing", client(registry.clone(), trusting(&certs, None), None));
    assert_eq!(tester.echo(echo("over tls")).await.unwrap().message, "over tls");
    let mut count = tester.count(CountRequest { to: 3, fail_at: 0 }).await.unwrap();
    let mut seen = vec![];
    while let Some(n) = count.message().await.unwrap() {
        seen.push(n.value);
    }
    assert_eq!(seen, [1, 2, 3]);

    // A client that does not trust the CA is refused with a sentence that says why.
    let stranger = TesterClient::new("testing", client(registry.clone(), None, None));
    let err = stranger.echo(echo("x")).await.unwrap_err();
    assert_eq!(err.code, 503, "{err:?}");
    assert!(err.detail.contains("TLS handshake failed"), "{}", err.detail);

    // curl: JSON over HTTPS with our CA works; plain HTTP to the TLS port gets no answer.
    let url = format!("https://{addr}/Tester/Echo");
    let body = r#"{"message":"from curl"}"#;
    let json = ["-H", "content-type: application/json", "-d", body];
    let (status, reply) = curl(&[&["--cacert", &certs.arg("ca.pem")][..], &json, &[&url]].concat());
    assert_eq!(status, 200, "{reply}");
    assert!(reply.contains("from curl"), "{reply}");
    let (status, _) = curl(&[&json[..], &[&format!("http://{addr}/Tester/Echo")]].concat());
    assert_ne!(status, 200, "plain HTTP must not reach a TLS server");
    svc.stop().await;
}

#[tokio::test]
async fn mutual_tls_refuses_clients_without_a_trusted_certificate() {
    let certs = Certs::generate();
    let registry = memory_registry();
    let (svc, addr) = service(registry.clone(), tls_options(&certs, true)).await;

    let with_cert = TesterClient::new(
        "testing",
        client(registry.clone(), trusting(&certs, Some(("client.pem", "client.key"))), None),
    );
    assert_eq!(with_cert.echo(echo("mutual")).await.unwrap().message, "mutual");

    for (who, tls) in [
        ("no certificate", trusting(&certs, None)),
        ("a certificate from another CA", trusting(&certs, Some(("stranger.pem", "stranger.key")))),
    ] {
        let refused = TesterClient::new("testing", client(registry.clone(), tls, None));
        let err = refused.echo(echo("x")).await.expect_err(who);
        assert!(matches!(err.code, 502 | 503), "{who}: {err:?}");
    }

    let url = format!("https://{addr}/Tester/Echo");
    let json = ["-H", "content-type: application/json", "-d", r#"{"message":"m"}"#];
    let ca = ["--cacert", &certs.arg("ca.pem")];
    let (status, _) = curl(&[&ca[..], &json, &[&url]].concat());
    assert_eq!(status, 0, "curl without a client certificate is refused");
    let id = ["--cert", &certs.arg("client.pem"), "--key", &certs.arg("client.key")];
    let (status, reply) = curl(&[&ca[..], &id, &json, &[&url]].concat());
    assert_eq!(status, 200, "{reply}");
    svc.stop().await;
}

#[tokio::test]
async fn bearer_token_guards_every_endpoint_but_health() {
    let registry = memory_registry();
    let opts = Options { auth_token: Some(Secret::new(TOKEN)), ..Options::default() };
    assert!(!format!("{opts:?}").contains(TOKEN), "options print without the token");
    let (svc, addr) = service(registry.clone(), opts).await;

    let anonymous = client(registry.clone(), None, None);
    let err = TesterClient::new("testing", anonymous.clone()).echo(echo("x")).await.unwrap_err();
    assert_eq!(err.code, 401, "{err:?}");
    let wrong = TesterClient::new("testing", client(registry.clone(), None, Some("guess")));
    assert_eq!(wrong.echo(echo("x")).await.unwrap_err().code, 401);
    let mut stream = TesterClient::new("testing", anonymous.clone()).count(CountRequest { to: 2, fail_at: 0 }).await;
    let stream_err = match &mut stream {
        Ok(s) => s.message().await.unwrap_err(),
        Err(e) => e.clone(),
    };
    assert_eq!(stream_err.code, 401, "streams need the token too: {stream_err:?}");

    let health = anonymous.call_json("testing", "Debug.Health", b"{}", CallOptions::new()).await.unwrap();
    assert_eq!(serde_json::from_slice::<serde_json::Value>(&health).unwrap()["status"], "ok");

    let trusted = TesterClient::new("testing", client(registry.clone(), None, Some(TOKEN)));
    assert_eq!(trusted.echo(echo("let in")).await.unwrap().message, "let in");
    let mut count = trusted.count(CountRequest { to: 2, fail_at: 0 }).await.unwrap();
    assert_eq!(count.message().await.unwrap().unwrap().value, 1);

    let url = format!("http://{addr}/Tester/Echo");
    let json = ["-H", "content-type: application/json", "-d", r#"{"message":"c"}"#];
    let (status, body) = curl(&[&json[..], &[&url]].concat());
    assert_eq!(status, 401, "{body}");
    let err: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(err["code"], 401);
    let bearer = format!("authorization: Bearer {TOKEN}");
    let (status, _) = curl(&[&json[..], &["-H", &bearer, &url]].concat());
    assert_eq!(status, 200);

    let record = serde_json::to_string(&registry.get_service("testing").await.unwrap()).unwrap();
    assert!(!record.contains(TOKEN), "the token is not in the registry: {record}");
    svc.stop().await;
}

#[tokio::test]
async fn the_token_never_reaches_the_logs() {
    let registry = micro::config::plugins::registry("mdns", &[]).unwrap();
    let mut tester = Command::new(micro_tests::workspace_bin("tester"))
        .env("MICRO_REGISTRY", "mdns")
        .env("MICRO_AUTH_TOKEN", TOKEN)
        .env("RUST_LOG", "trace")
        .env("TESTER_NODE", "logged")
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let stderr = tester.stderr.take().unwrap();
    let log = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = std::io::Read::read_to_string(&mut { stderr }, &mut s);
        s
    });
    let tester = Child(tester);
    let trusted = TesterClient::new("testing", client(registry.clone(), None, Some(TOKEN)));
    micro_tests::wait_for("the tester", Duration::from_secs(20), async || {
        trusted.echo(echo("logged")).await.is_ok_and(|r| r.node == "logged")
    })
    .await;
    let refused = TesterClient::new("testing", client(registry.clone(), None, Some("wrong")));
    assert_eq!(refused.echo(echo("x")).await.unwrap_err().code, 401);
    let record = serde_json::to_string(&registry.get_service("testing").await.unwrap()).unwrap();
    assert!(!record.contains(TOKEN), "{record}");
    micro_tests::signal(&tester.0, "TERM");
    let log = log.join().unwrap();
    assert!(log.contains("registered"), "the log was captured: {log}");
    assert!(!log.contains(TOKEN), "the token leaked into the log:\n{log}");
}
