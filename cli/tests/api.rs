//! `micro api` as a process in front of real services (mDNS on loopback): the walkthrough call,
//! a declared `google.api.http` route with a path variable and a query, protobuf in and out,
//! CORS for listed origins, errors, `POST /rpc`, the `api`, `event` and `http` handlers. The
//! gateway's refusals (origins, content types, hosts, ...) are in `tests/tests/attacks.rs`.

mod common;

use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use micro::registry::{MdnsRegistry, SharedRegistry};
use micro::{Error, Request, ServerStream, Streaming};
use micro_tests::corpus::corpus::shop::v1::*;
use micro_tests::corpus::corpus::types::Nothing;
use micro_tests::Child;
use prost::Message as _;

struct Shop;

impl ShopHandler for Shop {
    async fn get_item(&self, request: Request<GetItemRequest>) -> Result<Item, Error> {
        if request.id == "missing" {
            return Err(Error::not_found("shop", "no item missing"));
        }
        let who = request.metadata().get("x-user").unwrap_or("nobody").to_string();
        Ok(Item { id: request.id.clone(), title: format!("item for {who}"), details: None })
    }
    async fn create_item(&self, request: Request<Item>) -> Result<Item, Error> {
        Ok(request.into_inner())
    }
    async fn list_items(&self, request: Request<ListItemsRequest>, stream: ServerStream<Item>) -> Result<(), Error> {
        for i in 0..request.page_size {
            stream.send(Item { id: i.to_string(), ..Default::default() }).await?;
        }
        Ok(())
    }
    async fn upload(&self, _: Request<Streaming<Item>>) -> Result<UploadSummary, Error> {
        Ok(UploadSummary::default())
    }
    async fn haggle(&self, request: Request<Streaming<Offer>>, stream: ServerStream<Offer>) -> Result<(), Error> {
        let mut offers = request.into_inner();
        while let Some(o) = offers.message().await? {
            stream.send(Offer { cents: o.cents * 2 }).await?;
        }
        Ok(())
    }
    async fn get_http_status(&self, _: Request<GetItemRequest>) -> Result<Nothing, Error> {
        Ok(Nothing::default())
    }
    async fn old_get(&self, request: Request<GetItemRequest>) -> Result<Item, Error> {
        Ok(Item { id: request.id.clone(), ..Default::default() })
    }
}

fn options() -> micro::options::Options {
    let mut o = micro::options::Options::default();
    o.register_interval = Duration::ZERO;
    o
}

async fn service(registry: SharedRegistry, name: &str) -> micro::Service {
    micro::Service::builder().name(name).options(options()).registry(registry).build().unwrap()
}

/// Starts `micro api` on a random port with `args`; returns it and its address.
fn gateway(args: &[&str]) -> (Child, String) {
    let mut all = vec!["api", "--api_address", "127.0.0.1:0"];
    all.extend_from_slice(args);
    common::listening(&all, "api")
}

fn curl(args: &[&str]) -> (u16, String, String) {
    micro_tests::curl_head(args)
}

fn until_ok(args: &[&str]) -> (u16, String, String) {
    for _ in 0..100 {
        let r = curl(args);
        if r.0 == 200 {
            return r;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    curl(args)
}

async fn blocking<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> T {
    tokio::task::spawn_blocking(f).await.unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rpc_and_meta_handlers() {
    let ns = format!("go.micro.gw{}", std::process::id());
    let registry: SharedRegistry = Arc::new(MdnsRegistry::new().unwrap());
    let shop = service(registry.clone(), &format!("{ns}.shop")).await;
    register_shop_handler(shop.server(), Shop);
    shop.start().await.unwrap();

    let ns2 = ns.clone();
    blocking(move || {
        let (_gw, addr) = gateway(&["--namespace", &ns2]);
        let url = |p: &str| format!("http://{addr}{p}");

        // The path rules: /shop/get-item → Shop.GetItem, JSON in and out, headers as metadata.
        let (code, head, body) = until_ok(&[
            "-XPOST",
            "-H",
            "Content-Type: application/json",
            "-H",
            "X-User: ann",
            "-d",
            r#"{"id":"7"}"#,
            &url("/shop/get-item"),
        ]);
        assert_eq!((code, body.as_str()), (200, r#"{"id":"7","title":"item for ann"}"#));
        assert!(head.contains("content-type: application/json"), "{head}");
        assert!(!head.contains("access-control-allow-origin"), "no CORS without an allowed Origin: {head}");

        // A declared route: GET /v1/items/{id} (google.api.http), the variable merged in.
        assert_eq!(until_ok(&[&url("/v1/items/42")]).2, r#"{"id":"42","title":"item for nobody"}"#);
        // A declared GET route takes its query, but not for a field the path binds; undeclared
        // paths take no GET, and no form.
        let (code, _, body) = curl(&[&url("/v1/items/42?id=other")]);
        assert_eq!(code, 400, "{body}");
        assert!(body.contains("query parameter id is bound by the path"), "{body}");
        assert_eq!(curl(&[&url("/shop/get-item?id=q1")]).0, 405);
        assert_eq!(curl(&["-d", "id=f1", &url("/shop/get-item")]).0, 415);
        // A declared POST route with a body.
        assert_eq!(
            curl(&["-H", "Content-Type: application/json", "-d", r#"{"id":"n","title":"t"}"#, &url("/v1/items")]).2,
            r#"{"id":"n","title":"t"}"#
        );

        // Protobuf in, protobuf out.
        let pb = GetItemRequest { id: "pb".into() }.encode_to_vec();
        let out = Command::new("curl")
            .args([
                "-s",
                "-XPOST",
                "-H",
                "Content-Type: application/protobuf",
                "--data-binary",
                "@-",
                &url("/shop/get-item"),
            ])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .and_then(|mut c| {
                use std::io::Write;
                c.stdin.take().unwrap().write_all(&pb)?;
                c.wait_with_output()
            })
            .unwrap();
        assert_eq!(Item::decode(out.stdout.as_slice()).unwrap().id, "pb");

        // A handler error keeps its JSON and its status; an unknown service says what was tried.
        let (code, _, body) =
            curl(&["-d", r#"{"id":"missing"}"#, "-H", "Content-Type: application/json", &url("/shop/get-item")]);
        assert_eq!(code, 404);
        assert_eq!(
            serde_json::from_str::<micro::Error>(&body).unwrap(),
            micro::Error::not_found("shop", "no item missing")
        );
        let (code, _, body) = curl(&["-d", "{}", "-H", "Content-Type: application/json", &url("/nosuch/call")]);
        assert_eq!(code, 404);
        let e: micro::Error = serde_json::from_str(&body).unwrap();
        assert_eq!(e.id, "go.micro.api");
        assert!(
            e.detail.contains(&format!("service {ns2}.nosuch not found"))
                && e.detail.contains(&format!("namespace {ns2}")),
            "{}",
            e.detail
        );
        let (code, _, _) = curl(&["-d", "{not json", "-H", "Content-Type: application/json", &url("/shop/get-item")]);
        assert_eq!(code, 400);

        // A preflight from an origin that is not listed is refused; the version; POST /rpc.
        let preflight = ["-X", "OPTIONS", "-H", "Origin: http://site", "-H", "Access-Control-Request-Method: POST"];
        let (code, head, _) = curl(&[&preflight[..], &[&url("/shop/get-item")]].concat());
        assert_eq!(code, 403, "{head}");
        assert!(!head.contains("access-control-allow-origin"), "{head}");
        assert!(curl(&[&url("/")]).2.starts_with(r#"{"version":""#));
        let rpc = format!(r#"{{"service":"{ns2}.shop","endpoint":"Shop.GetItem","request":{{"id":"r"}}}}"#);
        let json = ["-H", "Content-Type: application/json"];
        assert_eq!(
            curl(&[&json[..], &["-d", &rpc, &url("/rpc")]].concat()).2,
            r#"{"id":"r","title":"item for nobody"}"#
        );
    })
    .await;

    // A listed origin gets CORS with credentials; CORS can be turned off.
    let ns3 = ns.clone();
    blocking(move || {
        let (_gw, addr) = gateway(&["--namespace", &ns3, "--cors_allowed_origins", "http://site"]);
        until_ok(&[&format!("http://{addr}/")]);
        let preflight = ["-X", "OPTIONS", "-H", "Origin: http://site", "-H", "Access-Control-Request-Method: POST"];
        let (code, head, _) = curl(&[&preflight[..], &[&format!("http://{addr}/shop/get-item")]].concat());
        assert_eq!(code, 204, "{head}");
        assert!(head.contains("access-control-allow-origin: http://site"), "{head}");
        assert!(head.contains("access-control-allow-credentials: true"), "{head}");
        assert!(head.contains("access-control-allow-methods: get, post, put, patch, delete, options"), "{head}");
        let call = ["-H", "Origin: http://site", "-H", "Content-Type: application/json", "-d", r#"{"id":"c"}"#];
        let (code, head, _) = curl(&[&call[..], &[&format!("http://{addr}/shop/get-item")]].concat());
        assert_eq!(code, 200);
        assert!(head.contains("access-control-allow-origin: http://site"), "{head}");
        let (_gw, addr) =
            gateway(&["--namespace", &ns3, "--enable_cors", "false", "--cors_allowed_origins", "http://site"]);
        let (_, head, _) = until_ok(&[&format!("http://{addr}/")]);
        assert!(!head.contains("access-control"), "{head}");
    })
    .await;
    shop.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn event_and_http_handlers() {
    let ns = format!("go.micro.ev{}", std::process::id());
    let registry: SharedRegistry = Arc::new(MdnsRegistry::new().unwrap());

    // A subscriber of <namespace>.user for the event handler: Go Micro's event envelope.
    let seen: Arc<Mutex<Vec<micro::api::event::Event>>> = Arc::default();
    let subscriber = service(registry.clone(), &format!("{ns}.listener")).await;
    let s = seen.clone();
    micro::register_subscriber(
        subscriber.server(),
        &format!("{ns}.user"),
        move |req: Request<micro::api::event::Event>| {
            let s = s.clone();
            async move {
                s.lock().unwrap().push(req.into_inner());
                Ok(())
            }
        },
    );
    subscriber.start().await.unwrap();

    // A plain web service for the http handler.
    let site = service(registry.clone(), &format!("{ns}.site")).await;
    site.server()
        .serve_web(|page: micro::web::Page| async move { micro::web::Response::text(format!("page {}", page.path())) });
    site.start().await.unwrap();

    let n = ns.clone();
    let events = blocking(move || {
        let (_gw, addr) = gateway(&["--namespace", &n, "--handler", "event"]);
        until_ok(&[&format!("http://{addr}/")]);
        let json = ["-H", "Content-Type: application/json", "-H", "X-User: ann", "-H", "Authorization: Bearer secret"];
        let login = curl(&[&json[..], &["-d", r#"{"who":"ann"}"#, &format!("http://{addr}/user/login")]].concat());
        let logout =
            curl(&[&json[..], &["-d", r#"{"who":"ann"}"#, &format!("http://{addr}/user/logout/now")]].concat());
        (login, logout)
    })
    .await;
    assert_eq!((events.0 .0, events.1 .0), (200, 200), "{events:?}");
    micro_tests::wait_for("both events", Duration::from_secs(5), async || seen.lock().unwrap().len() == 2).await;
    let mut seen = seen.lock().unwrap().clone();
    seen.sort_by(|a, b| a.name.cmp(&b.name));
    assert_eq!(seen[0].name, "login");
    assert_eq!(seen[1].name, "logout.now");
    assert_eq!(seen[0].data, r#"{"who":"ann"}"#);
    assert_eq!(seen[0].header["X-User"].values, ["ann"]);
    assert!(!seen[0].header.contains_key("Authorization"), "the caller's credential is not in the event");
    assert!(seen[0].id != seen[1].id && !seen[0].id.is_empty());
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs() as i64;
    assert!((now - seen[0].timestamp).abs() < 60, "a Unix time: {}", seen[0].timestamp);

    let n = ns.clone();
    let page = blocking(move || {
        let (_gw, addr) = gateway(&["--namespace", &n, "--handler", "http"]);
        until_ok(&[&format!("http://{addr}/site/hello?x=1")])
    })
    .await;
    assert_eq!(page.2, "page /site/hello");
    subscriber.stop().await;
    site.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn streams_over_websocket() {
    use futures_util::{SinkExt, StreamExt};
    use tokio_tungstenite::tungstenite::Message;

    let ns = format!("go.micro.ws{}", std::process::id());
    let registry: SharedRegistry = Arc::new(MdnsRegistry::new().unwrap());
    let shop = service(registry.clone(), &format!("{ns}.shop")).await;
    register_shop_handler(shop.server(), Shop);
    shop.start().await.unwrap();
    let n = ns.clone();
    let (gw, addr) = blocking(move || {
        let (gw, addr) = gateway(&["--namespace", &n]);
        until_ok(&[
            "-d",
            r#"{"id":"x"}"#,
            "-H",
            "Content-Type: application/json",
            &format!("http://{addr}/shop/get-item"),
        ]);
        (gw, addr)
    })
    .await;

    // Server streaming: the query is the request; every reply is a text frame, then a close.
    let (mut ws, _) =
        tokio_tungstenite::connect_async(format!("ws://{addr}/shop/list-items?pageSize=3")).await.unwrap();
    let mut ids = vec![];
    while let Some(Ok(msg)) = ws.next().await {
        match msg {
            Message::Text(t) => {
                ids.push(serde_json::from_str::<serde_json::Value>(&t).unwrap()["id"].as_str().unwrap().to_string())
            }
            Message::Close(_) => break,
            _ => {}
        }
    }
    assert_eq!(ids, ["0", "1", "2"]);

    // Bidirectional: frames both ways.
    let (mut ws, _) = tokio_tungstenite::connect_async(format!("ws://{addr}/shop/haggle")).await.unwrap();
    for cents in [21, 50] {
        ws.send(Message::Text(format!(r#"{{"cents":{cents}}}"#).into())).await.unwrap();
        let Some(Ok(Message::Text(t))) = ws.next().await else { panic!("no reply") };
        assert_eq!(serde_json::from_str::<serde_json::Value>(&t).unwrap()["cents"], (cents * 2).to_string());
    }
    ws.close(None).await.unwrap();
    drop(gw);
    shop.stop().await;
}

/// An `api` handler target: reads the forwarded HTTP request (JSON), answers with a response.
struct ApiEcho;

impl micro::server::UnaryHandler for ApiEcho {
    fn call(
        &self,
        req: micro::server::RawRequest,
    ) -> futures_util::future::BoxFuture<'static, Result<bytes::Bytes, Error>> {
        Box::pin(async move {
            let micro::server::RawBody::Message(body) = req.body else { unreachable!("unary") };
            let r: serde_json::Value = serde_json::from_slice(&body).map_err(|e| Error::bad_request("api", e))?;
            let reply = serde_json::json!({
                "statusCode": 201,
                "header": {"X-Reply": {"key": "X-Reply", "values": ["yes"]}},
                "body": format!("{} {} name={} x-a={}", r["method"].as_str().unwrap_or(""), r["path"].as_str().unwrap_or(""),
                    r["get"]["name"]["values"][0].as_str().unwrap_or(""), r["header"]["x-a"]["values"][0].as_str().unwrap_or("")),
            })
            .to_string();
            let mut framed = vec![0u8];
            framed.extend_from_slice(&(reply.len() as u32).to_be_bytes());
            framed.extend_from_slice(reply.as_bytes());
            Ok(bytes::Bytes::from(framed))
        })
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn api_handler_forwards_the_whole_request() {
    let ns = format!("go.micro.apih{}", std::process::id());
    let registry: SharedRegistry = Arc::new(MdnsRegistry::new().unwrap());
    let svc = service(registry.clone(), &format!("{ns}.site")).await;
    svc.server().handle(micro::server::Endpoint::new("Site.Call", micro::server::Handler::Unary(Arc::new(ApiEcho))));
    svc.start().await.unwrap();
    let n = ns.clone();
    let (code, head, body) = blocking(move || {
        let (_gw, addr) = gateway(&["--namespace", &n, "--handler", "api"]);
        until_ok(&[&format!("http://{addr}/")]);
        let url = format!("http://{addr}/site/call?name=John");
        for _ in 0..100 {
            let r = curl(&["-H", "X-A: b", &url]);
            if r.0 == 201 {
                return r;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        curl(&["-H", "X-A: b", &url])
    })
    .await;
    assert_eq!((code, body.as_str()), (201, "GET /site/call name=John x-a=b"));
    assert!(head.contains("x-reply: yes"), "{head}");
    svc.stop().await;
}
