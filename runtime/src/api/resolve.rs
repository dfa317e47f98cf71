//! Path → service and method, exactly as Go Micro's API resolves them:
//!
//! | path | service | method |
//! |---|---|---|
//! | `/example/call` | `example` | `Example.Call` |
//! | `/example/foo/bar` | `example` | `Foo.Bar` |
//! | `/v1/foo/bar` | `v1.foo` | `Foo.Bar` |
//! | `/a/b/c/d` | `a.b` | `C.D` |
//! | `/example` | `example` | `Example.Call` |
//! | `/foo-bar/baz-qux` | `foo-bar` | `FooBar.BazQux` |
//!
//! The namespace is prepended to the service with a dot.

/// Where a path leads.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Route {
    /// The full service name (namespace included).
    pub service: String,
    /// `Service.Method`.
    pub method: String,
}

/// `foo-bar` → `FooBar`.
fn camel(part: &str) -> String {
    part.split(['-', '_'])
        .map(|w| {
            let mut c = w.chars();
            match c.next() {
                Some(f) => f.to_uppercase().collect::<String>() + c.as_str(),
                None => String::new(),
            }
        })
        .collect()
}

fn is_version(part: &str) -> bool {
    part.len() > 1 && part.starts_with('v') && part[1..].chars().all(|c| c.is_ascii_digit())
}

/// Resolves `path` under `namespace`; `None` for `/` or a path with empty segments.
pub fn resolve(namespace: &str, path: &str) -> Option<Route> {
    let parts: Vec<&str> = path.trim_matches('/').split('/').collect();
    if parts.iter().any(|p| p.is_empty() || *p == "." || *p == "..") {
        return None;
    }
    let (service, method) = match parts.as_slice() {
        [one] => (one.to_string(), format!("{}.Call", camel(one))),
        [svc, m] => (svc.to_string(), format!("{}.{}", camel(svc), camel(m))),
        [v, svc, m] if is_version(v) => (format!("{v}.{svc}"), format!("{}.{}", camel(svc), camel(m))),
        [rest @ .., a, b] => (rest.join("."), format!("{}.{}", camel(a), camel(b))),
        [] => return None,
    };
    let service = if namespace.is_empty() { service } else { format!("{namespace}.{service}") };
    Some(Route { service, method })
}

/// The service an HTTP proxy (the `http` and `web` handlers) sends `path` to, by Go Micro's
/// proxy rule: the first segment (`/site/static/a.css` → `site`), or a version and the next one
/// (`/v1/site/x` → `v1.site`), under `namespace`; `None` unless the alias is letters, digits
/// and inner dashes.
pub fn proxy_service(namespace: &str, path: &str) -> Option<String> {
    let parts: Vec<&str> = path.trim_start_matches('/').split('/').collect();
    let (service, alias) = match parts.as_slice() {
        [v, svc, ..] if is_version(v) && !svc.is_empty() => (format!("{v}.{svc}"), *svc),
        [first, ..] => (first.to_string(), *first),
        [] => return None,
    };
    let valid =
        !alias.is_empty() && alias.split('-').all(|w| !w.is_empty() && w.chars().all(|c| c.is_ascii_alphanumeric()));
    if !valid {
        return None;
    }
    Some(if namespace.is_empty() { service } else { format!("{namespace}.{service}") })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_reference_table() {
        let ns = "go.micro.srv";
        for (path, service, method) in [
            ("/example/call", "go.micro.srv.example", "Example.Call"),
            ("/example/foo/bar", "go.micro.srv.example", "Foo.Bar"),
            ("/v1/foo/bar", "go.micro.srv.v1.foo", "Foo.Bar"),
            ("/a/b/c/d", "go.micro.srv.a.b", "C.D"),
            ("/example", "go.micro.srv.example", "Example.Call"),
            ("/foo-bar/baz-qux", "go.micro.srv.foo-bar", "FooBar.BazQux"),
        ] {
            assert_eq!(resolve(ns, path), Some(Route { service: service.into(), method: method.into() }), "{path}");
        }
        assert_eq!(resolve(ns, "/"), None);
        assert_eq!(resolve(ns, "/a//b"), None);
        assert_eq!(resolve(ns, "/../x"), None);
    }

    #[test]
    fn the_proxy_rule() {
        let p = |path: &str| proxy_service("ns", path);
        assert_eq!(p("/site/static/css/a.css").as_deref(), Some("ns.site"));
        assert_eq!(p("/site").as_deref(), Some("ns.site"));
        assert_eq!(p("/v1/site/x").as_deref(), Some("ns.v1.site"));
        assert_eq!(p("/v1/site").as_deref(), Some("ns.v1.site"));
        assert_eq!(p("/v1/").as_deref(), Some("ns.v1"));
        assert_eq!(p("/my-site/x").as_deref(), Some("ns.my-site"));
        for bad in ["/", "/../x", "/a.b/x", "/-a/x", "/a-/x", "/a_b/x", "/%2e%2e/x"] {
            assert_eq!(p(bad), None, "{bad}");
        }
    }
}
