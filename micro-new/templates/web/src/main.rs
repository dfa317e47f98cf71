//! `{{ fqdn }}`: a small web site, registered so that `micro web` serves it at `/{{ alias }}/`.

use micro::web::{Page, Response};

const PAGE: &str = r#"<!doctype html>
<html lang="en">
<head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">
<title>{{ Alias }}</title></head>
<body>
<h1>{{ Alias }}</h1>
<p>Served by <code>{{ fqdn }}</code>.</p>
</body>
</html>
"#;

#[tokio::main]
async fn main() -> Result<(), micro::Error> {
    let {% if plugins %}mut {% endif %}options = micro::options::Options::default();
{%- for p in plugins %}
    options.set("{{ p.0 }}", "{{ p.1 }}")?;
{%- endfor %}
    let service = micro::Service::builder()
        .name("{{ fqdn }}")
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
