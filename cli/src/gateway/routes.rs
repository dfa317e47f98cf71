//! Routes that endpoints declare in their metadata (`method`, `path`, `body`, from
//! `google.api.http` options): `GET /v1/items/{id}` reaches `Shop.GetItem` with `id` merged into
//! the request. The table follows the registry through a watch, so requests never read it.

use std::collections::BTreeMap;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use micro::registry::SharedRegistry;

#[derive(Debug, Clone, PartialEq, Eq)]
enum Segment {
    Literal(String),
    Variable(String),
    /// `*` (one segment) or `**` (the rest).
    Wild(bool),
}

/// One declared route.
#[derive(Debug, Clone)]
pub(crate) struct Declared {
    pub(crate) service: String,
    pub(crate) endpoint: String,
    method: String,
    segments: Vec<Segment>,
}

fn parse(template: &str) -> Vec<Segment> {
    template
        .trim_matches('/')
        .split('/')
        .map(|s| {
            if let Some(var) = s.strip_prefix('{').and_then(|v| v.strip_suffix('}')) {
                Segment::Variable(var.split('=').next().unwrap_or(var).to_string())
            } else if s == "**" {
                Segment::Wild(true)
            } else if s == "*" {
                Segment::Wild(false)
            } else {
                Segment::Literal(s.to_string())
            }
        })
        .collect()
}

impl Declared {
    /// The path variables if `method path` matches.
    fn matches(&self, method: &str, path: &str) -> Option<BTreeMap<String, String>> {
        if !self.method.eq_ignore_ascii_case(method) {
            return None;
        }
        let parts: Vec<&str> = path.trim_matches('/').split('/').collect();
        let mut vars = BTreeMap::new();
        let mut i = 0;
        for seg in &self.segments {
            match seg {
                Segment::Wild(true) => return Some(vars),
                _ if i >= parts.len() => return None,
                Segment::Literal(l) if l != parts[i] => return None,
                Segment::Variable(name) => {
                    let value = percent_decode(parts[i]);
                    vars.insert(name.clone(), value);
                }
                _ => {}
            }
            i += 1;
        }
        (i == parts.len()).then_some(vars)
    }
}

pub(crate) fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' && i + 2 < bytes.len() {
            if let Ok(b) = u8::from_str_radix(&s[i + 1..i + 3], 16) {
                out.push(b);
                i += 3;
                continue;
            }
        }
        out.push(if bytes[i] == b'+' { b' ' } else { bytes[i] });
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Declared routes of every service in the namespace.
pub(crate) struct Table {
    routes: RwLock<Vec<Declared>>,
    namespace: String,
    registry: SharedRegistry,
}

impl Table {
    /// A table filled from `registry` and kept current by a watch.
    pub(crate) fn start(registry: SharedRegistry, namespace: &str) -> Arc<Table> {
        let table = Arc::new(Table { routes: RwLock::new(vec![]), namespace: namespace.to_string(), registry });
        let t = table.clone();
        tokio::spawn(async move {
            loop {
                if let Ok(services) = t.registry.list_services().await {
                    for s in services {
                        t.refresh(&s.name).await;
                    }
                }
                match t.registry.watch(None).await {
                    Ok(mut w) => {
                        while let Some(Ok(ev)) = w.next().await {
                            t.refresh(&ev.service.name).await;
                        }
                    }
                    Err(e) => tracing_free_warn(&e.detail),
                }
                tokio::time::sleep(Duration::from_secs(2)).await;
            }
        });
        table
    }

    fn in_namespace(&self, service: &str) -> bool {
        self.namespace.is_empty() || service.starts_with(&format!("{}.", self.namespace))
    }

    async fn refresh(&self, service: &str) {
        if !self.in_namespace(service) {
            return;
        }
        let declared: Vec<Declared> = match self.registry.get_service(service).await {
            Ok(versions) => versions
                .iter()
                .flat_map(|v| v.endpoints.iter())
                .filter_map(|e| {
                    let path = e.metadata.get("path")?;
                    Some(Declared {
                        service: service.to_string(),
                        endpoint: e.name.clone(),
                        method: e.metadata.get("method").cloned().unwrap_or_else(|| "POST".into()),
                        segments: parse(path),
                    })
                })
                .collect(),
            Err(_) => vec![],
        };
        let mut routes = self.routes.write().unwrap_or_else(|e| e.into_inner());
        routes.retain(|r| r.service != service);
        routes.extend(declared);
    }

    /// The declared route for `method path`, with its path variables.
    pub(crate) fn find(&self, method: &str, path: &str) -> Option<(Declared, BTreeMap<String, String>)> {
        let routes = self.routes.read().unwrap_or_else(|e| e.into_inner());
        routes.iter().find_map(|r| r.matches(method, path).map(|vars| (r.clone(), vars)))
    }
}

fn tracing_free_warn(detail: &str) {
    eprintln!("api: registry watch failed: {detail}");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn templates_match_with_variables() {
        let r = Declared {
            service: "s".into(),
            endpoint: "Shop.GetItem".into(),
            method: "GET".into(),
            segments: parse("/v1/items/{id}"),
        };
        assert_eq!(r.matches("GET", "/v1/items/42").unwrap()["id"], "42");
        assert_eq!(r.matches("GET", "/v1/items/a%20b").unwrap()["id"], "a b");
        assert!(r.matches("POST", "/v1/items/42").is_none());
        assert!(r.matches("GET", "/v1/items").is_none());
        assert!(r.matches("GET", "/v1/items/42/x").is_none());
        let wild = Declared { segments: parse("/files/**"), ..r };
        assert!(wild.matches("GET", "/files/a/b/c").is_some());
        assert_eq!(percent_decode("%zz%4"), "%zz%4");
    }
}
