//! `micro api` transcoding every form of `google.api.http` (tests/proto/library.proto, compiled by
//! `micro-build`) for a real service found over mDNS on loopback: every verb and `custom`,
//! `body: "*"` and `body: "field"`, `response_body`, `additional_bindings`, nested fields,
//! `{name=shelves/*/books/*}`, `*` and `**`, a trailing `:verb`, typed query parameters (nested,
//! repeated, enums by name, well-known types), 400s that name the field, 405 with `Allow`; and
//! the OpenAPI document it serves, which is the one `micro-build` wrote at build time.

mod common;

use std::sync::Arc;
use std::time::Duration;

use micro::registry::{MdnsRegistry, SharedRegistry};
use micro_tests::library::{register_library_handler, Library};

fn curl(args: &[&str]) -> (u16, String, String) {
    micro_tests::curl_head(args)
}

/// `curl` with a JSON body.
fn send(method: &str, url: &str, body: &str) -> (u16, String, String) {
    curl(&["-X", method, "-H", "Content-Type: application/json", "-d", body, url])
}

fn json(body: &str) -> serde_json::Value {
    serde_json::from_str(body).unwrap_or_else(|e| panic!("{e}: {body}"))
}

/// The error detail of a 400, which must name `word`.
fn names(r: (u16, String, String), word: &str) {
    assert_eq!(r.0, 400, "{}", r.2);
    let detail = json(&r.2)["detail"].as_str().unwrap_or_default().to_string();
    assert!(detail.contains(word), "the error names {word}: {detail}");
}

/// A service named `name` on `registry`, registered once (no re-registration ticks).
fn service(registry: &SharedRegistry, name: &str) -> micro::Service {
    let options = micro::options::Options { register_interval: Duration::ZERO, ..Default::default() };
    micro::Service::builder().name(name).options(options).registry(registry.clone()).build().unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_http_rule_form() {
    let ns = format!("go.micro.tc{}", std::process::id());
    let registry: SharedRegistry = Arc::new(MdnsRegistry::new().unwrap());
    let svc = service(&registry, &format!("{ns}.library"));
    register_library_handler(svc.server(), Library::default());
    svc.start().await.unwrap();

    let ns2 = ns.clone();
    tokio::task::spawn_blocking(move || {
        let (_gw, addr) = common::listening(&["api", "--api_address", "127.0.0.1:0", "--namespace", &ns2], "api");
        let url = |p: &str| format!("http://{addr}{p}");

        // POST with body: "book": the body is the book, the shelf comes from the path.
        let book = r#"{"name":"b1","title":"Dune","pages":412,"isbn":"9780441013593","genre":"GENRE_FICTION",
            "tags":["sf","classic"],"available":true,"published":"1965-08-01T00:00:00Z"}"#;
        let mut created = send("POST", &url("/v1/shelves/s1/books"), book);
        let deadline = std::time::Instant::now() + Duration::from_secs(20);
        while created.0 != 200 && std::time::Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(100));
            created = send("POST", &url("/v1/shelves/s1/books"), book);
        }
        assert_eq!(created.0, 200, "{}", created.2);
        let b = json(&created.2);
        assert_eq!((b["name"].as_str(), b["isbn"].as_str()), (Some("shelves/s1/books/b1"), Some("9780441013593")));
        assert_eq!(b["published"], "1965-08-01T00:00:00Z");

        // GET with a multi-segment variable, and the same through an additional binding.
        assert_eq!(json(&curl(&[&url("/v1/shelves/s1/books/b1")]).2)["title"], "Dune");
        assert_eq!(json(&curl(&[&url("/v1/books/b1")]).2)["name"], "shelves/s1/books/b1");
        // Slashes of a variable escaped by the client.
        assert_eq!(curl(&[&url("/v1/shelves%2Fs1%2Fbooks%2Fb1")]).0, 200);

        // Query parameters: repeated, enum by name, nested, a wrapper; response_body is the list.
        let q = "/v1/shelves/s1/books?tags=sf&tags=classic&genre=GENRE_FICTION&filter.available=true&minPages=400";
        let (code, _, body) = curl(&[&url(q)]);
        assert_eq!(code, 200, "{body}");
        let list = json(&body);
        assert_eq!(list.as_array().map(Vec::len), Some(1), "{body}");
        assert_eq!(list[0]["title"], "Dune");
        assert_eq!(json(&curl(&[&url("/v1/shelves/s1/books?genre=GENRE_SCIENCE")]).2), serde_json::json!([]));
        assert_eq!(json(&curl(&[&url("/v1/shelves/s1/books?min_pages=500")]).2), serde_json::json!([]));
        assert_eq!(json(&curl(&[&url("/v1/shelves/s1/books?filter.after=1960-01-01T00:00:00Z")]).2)[0]["pages"], 412);

        // What cannot be mapped is refused with a 400 that names the field.
        names(curl(&[&url("/v1/shelves/s1/books?pageSize=many")]), "pageSize");
        names(curl(&[&url("/v1/shelves/s1/books?nope=1")]), "nope");
        names(curl(&[&url("/v1/shelves/s1/books?filter=1")]), "filter");
        names(curl(&[&url("/v1/shelves/s1/books?genre=POETRY")]), "genre");
        names(curl(&[&url("/v1/shelves/s1/books?filter.available=maybe")]), "filter.available");
        names(curl(&[&url("/v1/shelves/s1/books?parent=x")]), "parent");
        names(send("GET", &url("/v1/shelves/s1/books/b1"), "{}"), "takes no body");
        names(send("POST", &url("/v1/shelves/s1/books/b1:publish?loud=true"), "{}"), "no query parameters");
        let (code, _, _) = curl(&["-H", "Content-Type: text/plain", "-d", "x", &url("/v1/shelves/s1/books")]);
        assert_eq!(code, 415);

        // PATCH with body: "book" and a nested path field (book.name).
        let (code, _, body) = send("PATCH", &url("/v1/shelves/s1/books/b1"), r#"{"title":"Dune II","pages":10}"#);
        assert_eq!((code, json(&body)["title"].as_str()), (200, Some("Dune II")), "{body}");
        // PUT with body: "*": the path's book.name wins over the body's.
        let (code, _, body) =
            send("PUT", &url("/v1/shelves/s1/books/b1"), r#"{"book":{"name":"elsewhere","title":"Dune III"}}"#);
        assert_eq!(code, 200, "{body}");
        assert_eq!(
            (json(&body)["name"].as_str(), json(&body)["title"].as_str()),
            (Some("shelves/s1/books/b1"), Some("Dune III"))
        );

        // A trailing :verb with body: "*"; without the verb the path takes other methods.
        let (code, _, body) = send("POST", &url("/v1/shelves/s1/books/b1:publish"), r#"{"loud":true}"#);
        assert_eq!((code, json(&body)["title"].as_str()), (200, Some("DUNE III")), "{body}");
        let (code, head, _) = send("POST", &url("/v1/shelves/s1/books/b1"), "{}");
        assert_eq!(code, 405);
        let allow = head.lines().find(|l| l.starts_with("allow:")).unwrap_or_default().to_string();
        for m in ["get", "patch", "put", "delete"] {
            assert!(allow.contains(m), "{allow}");
        }

        // A custom method, `**` in a variable, and unbound `*` and `**` segments.
        let (code, _, body) = send("SEARCH", &url("/v1/books"), r#"{"words":"dune"}"#);
        assert_eq!((code, json(&body)["books"][0]["name"].as_str()), (200, Some("shelves/s1/books/b1")), "{body}");
        assert_eq!(json(&curl(&[&url("/files/a/b%20c/d.txt")]).2)["path"], "a/b c/d.txt");
        assert_eq!(json(&curl(&[&url("/v1/count/x/y/z")]).2)["count"], "1");
        assert_eq!(json(&curl(&[&url("/v1/count/x")]).2)["count"], "2", "** matches no segment too");

        // DELETE, then the book is gone.
        assert_eq!(curl(&["-X", "DELETE", &url("/v1/shelves/s1/books/b1")]).0, 200);
        assert_eq!(curl(&[&url("/v1/shelves/s1/books/b1")]).0, 404);

        // The document the gateway serves is the one micro-build wrote for the same service.
        let (code, _, body) = curl(&[&url("/openapi.json")]);
        assert_eq!(code, 200);
        let served = json(&body);
        let built = json(micro_tests::LIBRARY_OPENAPI);
        assert_eq!(served["openapi"], "3.1.0");
        assert_eq!(served["paths"], built["paths"], "the served and the built documents differ");
        let get = &served["paths"]["/v1/shelves/{shelf}/books/{book}"]["get"];
        assert_eq!(get["summary"], "Reads one book, by its full name or by its id alone.");
        assert!(
            served["paths"]["/v1/shelves/{shelf}/books/{book}"]["patch"].is_object(),
            "PATCH /v1/{{book.name}} shares the path"
        );
    })
    .await
    .unwrap();
    svc.stop().await;
}

/// The document of the example services (the helloworld Greeter through the `rpc` handler's
/// paths, the library through its routes) validates with `openapi-spec-validator`, and
/// schemathesis, with all of its checks, finds nothing against the gateway (bounded examples,
/// loopback only).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn schemathesis_finds_nothing() {
    let ns = format!("go.micro.st{}", std::process::id());
    let registry: SharedRegistry = Arc::new(MdnsRegistry::new().unwrap());
    let (library, greeter) =
        (service(&registry, &format!("{ns}.library")), service(&registry, &format!("{ns}.helloworld")));
    register_library_handler(library.server(), Library::default());
    helloworld::helloworld::register_greeter_handler(greeter.server(), helloworld::Greeter);
    library.start().await.unwrap();
    greeter.start().await.unwrap();

    let ns2 = ns.clone();
    tokio::task::spawn_blocking(move || {
        let (_gw, addr) = common::listening(&["api", "--api_address", "127.0.0.1:0", "--namespace", &ns2], "api");
        let url = format!("http://{addr}/openapi.json");
        let deadline = std::time::Instant::now() + Duration::from_secs(20);
        loop {
            let doc = json(&curl(&[&url]).2);
            let paths = doc["paths"].as_object().map(|p| p.keys().cloned().collect::<Vec<_>>()).unwrap_or_default();
            if paths.iter().any(|p| p.starts_with("/helloworld/")) && paths.iter().any(|p| p.starts_with("/v1/")) {
                break;
            }
            assert!(std::time::Instant::now() < deadline, "the document never listed both services: {paths:?}");
            std::thread::sleep(Duration::from_millis(100));
        }
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("openapi.json");
        std::fs::write(&file, curl(&[&url]).2).unwrap();
        let python = micro_tests::python();
        let out = std::process::Command::new(&python)
            .args(["-m", "openapi_spec_validator"])
            .arg(&file)
            .output()
            .expect("openapi-spec-validator runs");
        assert!(out.status.success(), "openapi-spec-validator: {}", String::from_utf8_lossy(&out.stdout));

        let st = python.with_file_name("st");
        let out = std::process::Command::new(&st)
            .args(["run", &url, "--checks", "all", "--max-examples", "25", "--seed", "1", "--workers", "1"])
            .args(["--request-timeout", "10", "--no-color", "--generation-deterministic"])
            .env("SCHEMATHESIS_HOOKS", "")
            .current_dir(dir.path())
            .output()
            .expect("schemathesis runs");
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success(),
            "schemathesis found something:\n{text}\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
    })
    .await
    .unwrap();
    library.stop().await;
    greeter.stop().await;
}
