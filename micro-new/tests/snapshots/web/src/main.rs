//! `go.micro.web.example`: a small web site, registered so that `micro web` serves it at `/example/`.

use micro::web::{Page, Response};

const PAGE: &str = r#"<!doctype html>
<html lang="en">
<head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">
<title>Example</title></head>
<body>
<h1>Example</h1>
<p>Served by <code>go.micro.web.example</code>.</p>
</body>
</html>
"#;

#[tokio::main]
async fn main() -> Result<(), micro::Error> {
    let options = micro::options::Options::default();
    let service = micro::Service::builder()
        .name("go.micro.web.example")
        .metadata("icon", "")
        .options(options)
        .from_process()
        .build()?;
    service.server().serve_web(|page: Page| async move {
        match page.path() {
            "/" | "" => Response::html(PAGE),
            other => Response::not_found(other),
        }
    });
    service.run().await
}
