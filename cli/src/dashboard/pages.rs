//! The dashboard's HTML, rendered on the server (every page works before any script runs), and
//! its embedded assets.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use http::{HeaderValue, Response, StatusCode};
use micro::registry::{Service, Value};
use micro::transport::Body;
use serde::Serialize;

/// The embedded assets: name, content type, bytes.
const ASSETS: &[(&str, &str, &str)] = &[
    ("app.css", "text/css; charset=utf-8", include_str!("assets/app.css")),
    ("app.js", "text/javascript; charset=utf-8", include_str!("assets/app.js")),
    ("icon.svg", "image/svg+xml", include_str!("assets/icon.svg")),
];

/// An embedded asset, or 404.
pub(super) fn asset(name: &str) -> Response<Body> {
    let Some((_, ty, body)) = ASSETS.iter().find(|(n, _, _)| *n == name) else {
        let mut resp = Response::new(Body::full("not found"));
        *resp.status_mut() = StatusCode::NOT_FOUND;
        return resp;
    };
    let mut resp = Response::new(Body::full(*body));
    let h = resp.headers_mut();
    h.insert(http::header::CONTENT_TYPE, HeaderValue::from_static(ty));
    h.insert(http::header::CACHE_CONTROL, HeaderValue::from_static("public, max-age=300"));
    resp
}

/// Escapes text for HTML content and attribute values.
fn esc(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// Escapes a query parameter value.
fn query(s: &str) -> String {
    let mut out = String::new();
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
            out.push(b as char);
        } else {
            let _ = write!(out, "%{b:02X}");
        }
    }
    out
}

/// Where a page's CSRF token goes; the dashboard fills it per session.
pub(super) const CSRF_SLOT: &str = r#"<meta name="csrf-token" content="">"#;

/// The filled slot.
pub(super) fn csrf_meta(token: &str) -> String {
    format!(r#"<meta name="csrf-token" content="{}">"#, esc(token))
}

/// The frame every page shares: navigation, the main region, the script.
fn layout(page: &str, title: &str, main: &str) -> String {
    let nav =
        [("registry", "/registry", "Registry"), ("client", "/client", "Client"), ("terminal", "/terminal", "Terminal")]
            .iter()
            .map(|(id, href, label)| {
                let current = if *id == page { r#" aria-current="page""# } else { "" };
                format!(r#"<a href="{href}"{current}>{label}</a>"#)
            })
            .collect::<String>();
    format!(
        r##"<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
{CSRF_SLOT}
<title>{title} · micro</title>
<link rel="icon" href="/assets/icon.svg" type="image/svg+xml">
<link rel="stylesheet" href="/assets/app.css">
<script src="/assets/app.js" defer></script>
</head>
<body data-page="{page}">
<a class="skip" href="#main">Skip to content</a>
<header><nav aria-label="Main"><a class="brand" href="/"><img src="/assets/icon.svg" alt="" width="22" height="22">micro</a>{nav}</nav></header>
<main id="main" tabindex="-1">
{main}
</main>
<div id="live" class="visually-hidden" role="status" aria-live="polite"></div>
</body>
</html>
"##,
        title = esc(title),
    )
}

/// A web service card on the home page.
#[derive(Debug, Serialize)]
pub(super) struct WebCard {
    name: String,
    alias: String,
    icon: String,
}

/// A service card on the home page.
#[derive(Debug, Serialize)]
pub(super) struct ServiceCard {
    name: String,
    versions: Vec<String>,
    nodes: usize,
    endpoints: usize,
}

/// The home page's content (also its JSON).
#[derive(Debug, Serialize)]
pub(super) struct Index {
    web: Vec<WebCard>,
    services: Vec<ServiceCard>,
}

impl Index {
    /// Cards from the registry's records (sorted by name); `alias` tells web services apart.
    pub(super) fn new(list: &[Service], alias: impl Fn(&str) -> Option<String>) -> Index {
        let mut services: Vec<ServiceCard> = vec![];
        let mut web: Vec<WebCard> = vec![];
        for s in list {
            match services.last_mut() {
                Some(last) if last.name == s.name => {
                    last.versions.push(s.version.clone());
                    last.nodes += s.nodes.len();
                    last.endpoints = last.endpoints.max(s.endpoints.len());
                }
                _ => services.push(ServiceCard {
                    name: s.name.clone(),
                    versions: vec![s.version.clone()],
                    nodes: s.nodes.len(),
                    endpoints: s.endpoints.len(),
                }),
            }
            if let Some(a) = alias(&s.name) {
                let icon = s
                    .nodes
                    .iter()
                    .filter_map(|n| n.metadata.get("icon"))
                    .chain(s.metadata.get("icon"))
                    .find(|i| !i.is_empty())
                    .cloned()
                    .unwrap_or_default();
                match web.iter_mut().find(|w| w.alias == a) {
                    Some(w) if w.icon.is_empty() => w.icon = icon,
                    Some(_) => {}
                    None => web.push(WebCard { name: s.name.clone(), alias: a, icon }),
                }
            }
        }
        Index { web, services }
    }
}

/// An icon: an image when the metadata is a URL or path, else the first letter.
fn icon(icon: &str, name: &str) -> String {
    let safe = icon.starts_with("http://")
        || icon.starts_with("https://")
        || icon.starts_with('/')
        || icon.starts_with("data:image/");
    if safe {
        return format!(r#"<img class="icon" src="{}" alt="" width="40" height="40" loading="lazy">"#, esc(icon));
    }
    let letter = name.rsplit('.').next().and_then(|s| s.chars().next()).unwrap_or('?').to_uppercase();
    format!(r#"<span class="icon letter" aria-hidden="true">{}</span>"#, esc(&letter.to_string()))
}

/// `/`: web services first, then every service, with a search box.
pub(super) fn index(index: &Index) -> String {
    let mut main = String::from(
        r#"<div class="title"><h1>Services</h1>
<label class="search"><span class="visually-hidden">Search services</span><input type="search" id="search" placeholder="Search services  ( / )" autocomplete="off" spellcheck="false"></label></div>
"#,
    );
    if !index.web.is_empty() {
        main.push_str(r#"<section aria-labelledby="web-h"><h2 id="web-h">Web apps</h2><ul class="cards" id="web">"#);
        for w in &index.web {
            let _ = write!(
                main,
                r#"<li class="card" data-name="{n}"><a href="/{a}/">{icon}<span class="name">{a}</span><span class="sub">{n}</span></a></li>"#,
                n = esc(&w.name),
                a = esc(&w.alias),
                icon = icon(&w.icon, &w.name),
            );
        }
        main.push_str("</ul></section>\n");
    }
    main.push_str(r#"<section aria-labelledby="all-h"><h2 id="all-h">All services</h2>"#);
    if index.services.is_empty() {
        main.push_str(r#"<p class="empty">No services are registered yet. Start one and it appears here.</p>"#);
    }
    main.push_str(r#"<ul class="cards" id="services">"#);
    for s in &index.services {
        let versions = s.versions.iter().map(|v| esc(v)).collect::<Vec<_>>().join(", ");
        let _ = write!(
            main,
            r#"<li class="card" data-name="{n}"><a href="/registry?service={q}">{icon}<span class="name">{n}</span><span class="sub">{nodes} node{ns} · {eps} endpoint{es} · {versions}</span></a></li>"#,
            n = esc(&s.name),
            q = query(&s.name),
            icon = icon("", &s.name),
            nodes = s.nodes,
            ns = if s.nodes == 1 { "" } else { "s" },
            eps = s.endpoints,
            es = if s.endpoints == 1 { "" } else { "s" },
        );
    }
    main.push_str("</ul></section>\n");
    main.push_str(r#"<p class="none" id="no-match" hidden>No service matches.</p>"#);
    layout("index", "Services", &main)
}

/// `/registry`: every service in a table.
pub(super) fn registry(list: &[Service]) -> String {
    let mut rows: BTreeMap<&str, (Vec<&str>, usize)> = BTreeMap::new();
    for s in list {
        let row = rows.entry(&s.name).or_default();
        row.0.push(&s.version);
        row.1 += s.nodes.len();
    }
    let mut main = String::from(r#"<h1>Registry</h1>"#);
    if rows.is_empty() {
        main.push_str(r#"<p class="empty">No services are registered yet. Start one and it appears here.</p>"#);
    }
    main.push_str(
        r#"<div class="scroll"><table id="services"><thead><tr><th scope="col">Service</th><th scope="col">Versions</th><th scope="col">Nodes</th></tr></thead><tbody>"#,
    );
    for (name, (versions, nodes)) in rows {
        let _ = write!(
            main,
            r#"<tr data-name="{n}"><td><a href="/registry?service={q}">{n}</a></td><td>{v}</td><td>{nodes}</td></tr>"#,
            n = esc(name),
            q = query(name),
            v = esc(&versions.join(", ")),
        );
    }
    main.push_str("</tbody></table></div>");
    layout("registry", "Registry", &main)
}

fn metadata(m: &BTreeMap<String, String>) -> String {
    if m.is_empty() {
        return r#"<span class="muted">none</span>"#.to_string();
    }
    let mut out = String::from(r#"<ul class="chips">"#);
    for (k, v) in m {
        let _ = write!(out, "<li><code>{}={}</code></li>", esc(k), esc(v));
    }
    out.push_str("</ul>");
    out
}

fn tree(v: Option<&Value>) -> String {
    fn fields(values: &[Value], out: &mut String) {
        out.push_str(r#"<ul class="tree">"#);
        for f in values {
            let _ = write!(out, r#"<li><code>{}</code> <span class="type">{}</span>"#, esc(&f.name), esc(&f.r#type));
            if !f.values.is_empty() {
                fields(&f.values, out);
            }
            out.push_str("</li>");
        }
        out.push_str("</ul>");
    }
    match v {
        Some(v) if !v.values.is_empty() => {
            let mut out = format!(r#"<span class="type">{}</span>"#, esc(&v.r#type));
            fields(&v.values, &mut out);
            out
        }
        Some(v) if !v.r#type.is_empty() => {
            format!(r#"<span class="type">{}</span> <span class="muted">no fields</span>"#, esc(&v.r#type))
        }
        _ => r#"<span class="muted">no fields</span>"#.to_string(),
    }
}

/// `/registry?service=X`: the nodes of every version and every endpoint's shape.
pub(super) fn service(versions: &[Service], web: bool) -> String {
    let name = versions.first().map(|s| s.name.as_str()).unwrap_or_default();
    let mut main = format!(
        r#"<nav class="crumbs" aria-label="Breadcrumb"><a href="/registry">Registry</a> / <span>{n}</span></nav><h1 id="service-name">{n}</h1>"#,
        n = esc(name)
    );
    if web {
        let alias = name.rsplit('.').next().unwrap_or_default();
        let _ = write!(main, r#"<p><a class="button" href="/{a}/">Open {a}</a></p>"#, a = esc(alias));
    }
    main.push_str(&traffic(name, versions));
    for v in versions {
        let _ = write!(
            main,
            r#"<section class="version"><h2>Version {ver}</h2><h3>Nodes</h3><div class="scroll"><table class="nodes"><thead><tr><th scope="col">Id</th><th scope="col">Address</th><th scope="col">Metadata</th></tr></thead><tbody>"#,
            ver = esc(if v.version.is_empty() { "latest" } else { &v.version })
        );
        for n in &v.nodes {
            let _ = write!(
                main,
                "<tr><td><code>{}</code></td><td><code>{}</code></td><td>{}</td></tr>",
                esc(&n.id),
                esc(&n.address),
                metadata(&n.metadata)
            );
        }
        main.push_str("</tbody></table></div>");
        let _ = write!(main, r#"<h3>Endpoints</h3>"#);
        if v.endpoints.is_empty() {
            main.push_str(r#"<p class="muted">No endpoints.</p>"#);
        }
        main.push_str(r#"<div class="endpoints">"#);
        for e in &v.endpoints {
            let action = match e.metadata.get("subscriber").map(String::as_str) {
                Some("true") => format!(
                    r#"<span class="muted">subscribes to <code>{}</code></span>"#,
                    esc(e.metadata.get("topic").map(String::as_str).unwrap_or_default())
                ),
                _ => format!(
                    r#"<a class="button small" href="/client?service={}&amp;endpoint={}" aria-label="Call {}">Call</a>"#,
                    query(name),
                    query(&e.name),
                    esc(&e.name)
                ),
            };
            let _ = write!(
                main,
                r#"<article class="endpoint" data-endpoint="{e}"><div class="endpoint-head"><h4>{e}</h4>{action}</div>
<dl><dt>Metadata</dt><dd>{md}</dd><dt>Request</dt><dd>{req}</dd><dt>Response</dt><dd>{resp}</dd></dl></article>"#,
                e = esc(&e.name),
                md = metadata(&e.metadata),
                req = tree(e.request.as_ref()),
                resp = tree(e.response.as_ref()),
            );
        }
        main.push_str("</div></section>");
    }
    layout("registry", name, &main)
}

/// The service page's live charts (`app.js` fills them from `/stats`): a row for the whole
/// service and one per callable endpoint, each with request rate, error share, p50 and p99.
fn traffic(name: &str, versions: &[Service]) -> String {
    let mut endpoints: Vec<&str> = versions
        .iter()
        .flat_map(|v| &v.endpoints)
        .filter(|e| e.metadata.get("subscriber").map(String::as_str) != Some("true"))
        .map(|e| e.name.as_str())
        .collect();
    endpoints.sort();
    endpoints.dedup();
    let cells: String = ["rate", "errors", "p50", "p99"]
        .iter()
        .map(|s| {
            format!(
                r#"<td data-stat="{s}"><span class="value">–</span><svg class="spark" viewBox="0 0 120 24" preserveAspectRatio="none" aria-hidden="true"><rect class="frame" width="120" height="24"/><polygon class="area" points=""/><polyline points=""/></svg></td>"#
            )
        })
        .collect();
    let mut out = format!(
        r#"<section id="traffic" data-service="{n}" aria-labelledby="traffic-title"><h2 id="traffic-title">Traffic</h2><p class="muted" id="traffic-note" aria-live="polite">Reading the nodes' metrics…</p><div class="scroll"><table class="traffic"><thead><tr><th scope="col">Endpoint</th><th scope="col">Requests/s</th><th scope="col">Errors</th><th scope="col">p50</th><th scope="col">p99</th></tr></thead><tbody><tr data-traffic="*"><th scope="row">All endpoints</th>{cells}</tr>"#,
        n = esc(name)
    );
    for e in endpoints {
        let _ = write!(out, r#"<tr data-traffic="{e}"><th scope="row"><code>{e}</code></th>{cells}</tr>"#, e = esc(e));
    }
    out.push_str("</tbody></table></div></section>");
    out
}

/// `/client`: pick a service and an endpoint, edit the request, send it.
pub(super) fn client(names: &[String], service: &str, endpoint: &str) -> String {
    let mut options = String::from(r#"<option value="">Choose a service</option>"#);
    for n in names {
        let selected = if n == service { " selected" } else { "" };
        let _ = write!(options, r#"<option value="{n}"{selected}>{n}</option>"#, n = esc(n));
    }
    let main = format!(
        r#"<h1>Client</h1>
<form id="call" class="client" data-endpoint="{endpoint}">
<div class="row">
<label for="service">Service</label><select id="service" name="service" required>{options}</select>
<label for="endpoint">Endpoint</label><select id="endpoint" name="endpoint" required><option value="">Choose an endpoint</option></select>
</div>
<label for="request">Request (JSON)</label>
<textarea id="request" name="request" rows="10" spellcheck="false" autocapitalize="off">{{}}</textarea>
<label for="token">Token <span class="hint">(for services started with an auth token; sent as Authorization: Bearer, kept in this tab only)</span></label>
<input id="token" name="token" type="password" autocomplete="off" spellcheck="false">
<div class="actions"><button type="submit" id="send">Send</button><span class="hint">Ctrl+Enter sends</span></div>
</form>
<section class="response" aria-labelledby="response-h">
<div class="title"><h2 id="response-h">Response</h2><p id="status" class="status" role="status"></p><button type="button" id="copy" class="secondary" disabled>Copy</button></div>
<pre id="response" tabindex="0" aria-label="Response body"></pre>
</section>"#,
        endpoint = esc(endpoint),
    );
    layout("client", "Client", &main)
}

/// `/terminal`: a prompt whose lines run on the server.
pub(super) fn terminal() -> String {
    let main = r#"<h1>Terminal</h1>
<div class="terminal">
<pre id="output" aria-live="polite" tabindex="0">Type help for the commands. Up and down walk the history.
</pre>
<form id="prompt"><label for="line">micro&gt;</label><input id="line" name="line" autocomplete="off" spellcheck="false" autocapitalize="off" autofocus></form>
</div>"#;
    layout("terminal", "Terminal", main)
}

/// `/login`: the dashboard's own token, asked once per session.
pub(super) fn login() -> String {
    let main = r#"<h1>Log in</h1>
<form id="login" class="client">
<label for="secret">The dashboard's token (<code>--web_token</code>)</label>
<input id="secret" name="secret" type="password" autocomplete="current-password" required autofocus>
<div class="actions"><button type="submit">Log in</button></div>
<p id="status" class="status" role="status"></p>
</form>"#;
    layout("login", "Log in", main)
}

/// An error page.
pub(super) fn error(status: StatusCode, detail: &str) -> String {
    let main = format!(
        r#"<h1>{}</h1><p class="error-detail">{}</p><p><a href="/">Back to the services</a></p>"#,
        status.canonical_reason().unwrap_or("Error"),
        esc(detail)
    );
    layout("error", status.canonical_reason().unwrap_or("Error"), &main)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_is_escaped() {
        assert_eq!(esc(r#"<a href="x">'&'</a>"#), "&lt;a href=&quot;x&quot;&gt;&#39;&amp;&#39;&lt;/a&gt;");
        assert_eq!(query("go.micro srv&x"), "go.micro%20srv%26x");
    }

    #[test]
    fn web_services_come_first_with_their_icon() {
        let mut web = Service { name: "go.micro.web.blog".into(), version: "latest".into(), ..Default::default() };
        web.nodes.push(micro::registry::Node {
            id: "n1".into(),
            address: "127.0.0.1:1".into(),
            metadata: [("icon".to_string(), "/blog/icon.png".to_string())].into(),
        });
        let srv = Service { name: "go.micro.srv.a".into(), version: "1".into(), ..Default::default() };
        let list = vec![web, srv];
        let index = Index::new(&list, |n| n.strip_prefix("go.micro.web.").map(str::to_string));
        assert_eq!(index.web.len(), 1);
        assert_eq!(index.web[0].icon, "/blog/icon.png");
        let html = super::index(&index);
        let web_at = html.find(r#"href="/blog/""#).unwrap();
        let all_at = html.find("All services").unwrap();
        assert!(web_at < all_at);
        assert!(html.contains(r#"<img class="icon" src="/blog/icon.png""#));
    }

    #[test]
    fn icons_that_are_not_urls_become_letters() {
        assert!(icon("javascript:alert(1)", "go.micro.web.x").contains("letter"));
    }
}
