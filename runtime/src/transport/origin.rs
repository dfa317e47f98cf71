//! Who may address a listener, and which browser pages may call it: the Host, Origin and CORS
//! rules every listener of the platform applies (services and the `micro` tools alike).
//!
//! - **Host.** A listener bound to loopback answers only requests for a loopback name
//!   (`localhost`, `127.0.0.1`, `[::1]`) or a listed host, so a DNS-rebinding page cannot reach
//!   it under a name of its own. Bound beyond loopback, every host is answered unless hosts are
//!   listed.
//! - **Origin.** A browser request from another origin is refused (403) unless that origin is
//!   listed; `null` origins (sandboxed frames, files) are always refused. Requests without
//!   `Origin` (curl, services, gRPC clients) are not browser requests and pass, unless the
//!   browser marks them as made by another site (`Sec-Fetch-Site`).
//! - **CORS.** Only listed origins get CORS headers; credentials only for origins listed by name
//!   (`*` allows any origin, without credentials). Preflights from other origins get 403.

use std::net::{IpAddr, SocketAddr};

use http::{HeaderMap, HeaderValue, Method, Response, StatusCode};

use super::Body;
use crate::Error;

/// The Host, Origin and CORS policy of one listener.
#[derive(Debug, Clone, Default)]
pub struct OriginPolicy {
    origins: Vec<String>,
    any_origin: bool,
    hosts: Vec<String>,
    loopback_only: bool,
    tls: bool,
}

/// What a preflight answer allows, besides the origin.
#[derive(Debug, Clone, Copy)]
pub struct Preflight {
    /// `Access-Control-Allow-Methods`.
    pub methods: &'static str,
    /// `Access-Control-Allow-Headers`; empty: the headers the preflight asks for (call
    /// metadata is any header the page sets, and the origin is one the listener trusts).
    pub headers: &'static str,
}

fn lower_list(items: &[String]) -> Vec<String> {
    items.iter().map(|s| s.trim().to_ascii_lowercase()).filter(|s| !s.is_empty()).collect()
}

impl OriginPolicy {
    /// The policy of a listener bound to `bound` (over TLS when `tls`), allowing pages of
    /// `origins` (`*`: any, without credentials) and requests for `hosts` (`.example.com`
    /// matches subdomains; empty: see the module doc).
    pub fn new(origins: &[String], hosts: &[String], bound: SocketAddr, tls: bool) -> Self {
        let origins: Vec<String> =
            lower_list(origins).into_iter().map(|o| o.trim_end_matches('/').to_string()).collect();
        OriginPolicy {
            any_origin: origins.iter().any(|o| o == "*"),
            origins: origins.into_iter().filter(|o| o != "*").collect(),
            hosts: lower_list(hosts),
            loopback_only: bound.ip().is_loopback(),
            tls,
        }
    }

    /// The host a request is addressed to (`Host`, or the HTTP/2 `:authority`), lowercase.
    fn authority<B>(req: &http::Request<B>) -> Option<String> {
        Self::authority_str(req).map(|h| h.to_ascii_lowercase())
    }

    /// The host a request is addressed to, as sent.
    fn authority_str<B>(req: &http::Request<B>) -> Option<&str> {
        req.headers()
            .get(http::header::HOST)
            .and_then(|h| h.to_str().ok())
            .or_else(|| req.uri().authority().map(|a| a.as_str()))
    }

    /// Refuses a request addressed to a host this listener does not serve (DNS rebinding).
    pub fn check_host<B>(&self, id: &str, req: &http::Request<B>) -> Result<(), Error> {
        if self.hosts.is_empty() && !self.loopback_only {
            return Ok(());
        }
        let Some(authority) = Self::authority_str(req) else {
            return Err(Error::bad_request(id, "the request names no host"));
        };
        let host = host_of(authority);
        let listed = self.hosts.iter().any(|h| {
            h.eq_ignore_ascii_case(host)
                || (h.starts_with('.')
                    && host.len() > h.len()
                    && host.is_char_boundary(host.len() - h.len())
                    && host[host.len() - h.len()..].eq_ignore_ascii_case(h))
        });
        if listed || (self.loopback_only && is_loopback_name(host)) {
            Ok(())
        } else {
            let host = host.to_ascii_lowercase();
            Err(Error::forbidden(id, format!("host {host:?} is not served here (see allowed_hosts)")))
        }
    }

    /// Whether the `Origin` of a request is its own (scheme, host and port of where it was sent).
    fn same_origin<B>(&self, req: &http::Request<B>, origin: &str) -> bool {
        let Some(authority) = Self::authority(req) else { return false };
        let scheme = if self.tls { "https" } else { "http" };
        let Some(rest) = origin.strip_prefix(scheme).and_then(|r| r.strip_prefix("://")) else { return false };
        with_port(rest, self.tls) == with_port(&authority, self.tls)
    }

    /// The `Origin` of a browser request, if it has one.
    fn origin<B>(req: &http::Request<B>) -> Option<String> {
        req.headers().get(http::header::ORIGIN).map(|o| o.to_str().unwrap_or("null").to_ascii_lowercase())
    }

    /// Refuses a browser request from an origin that is neither the listener's own nor allowed.
    /// A request without `Origin` that a browser marks as sent by another site (`Sec-Fetch-Site`:
    /// an `<img>`, a link, a form GET) is refused too, unless any origin is allowed.
    pub fn check_origin<B>(&self, id: &str, req: &http::Request<B>) -> Result<(), Error> {
        let Some(origin) = Self::origin(req) else {
            const SEC_FETCH_SITE: http::HeaderName = http::HeaderName::from_static("sec-fetch-site");
            let site = req.headers().get(SEC_FETCH_SITE).and_then(|v| v.to_str().ok()).unwrap_or("");
            if matches!(site, "cross-site" | "same-site") && !self.any_origin {
                return Err(Error::forbidden(id, format!("a request another site made ({site}) is not allowed")));
            }
            return Ok(());
        };
        if origin != "null" && (self.same_origin(req, &origin) || self.any_origin || self.origins.contains(&origin)) {
            return Ok(());
        }
        Err(Error::forbidden(id, format!("requests from origin {origin:?} are not allowed (see cors_allowed_origins)")))
    }

    /// Whether `req` is a CORS preflight.
    pub fn is_preflight<B>(req: &http::Request<B>) -> bool {
        req.method() == Method::OPTIONS && req.headers().contains_key(http::header::ACCESS_CONTROL_REQUEST_METHOD)
    }

    /// The answer to a preflight: 204 with CORS headers for an allowed origin, 403 otherwise.
    pub fn preflight<B>(&self, req: &http::Request<B>, allow: &Preflight) -> Response<Body> {
        let mut resp = Response::new(Body::empty());
        let Some(origin) = Self::origin(req).filter(|o| o != "null" && self.cross_origin_allowed(o)) else {
            *resp.status_mut() = StatusCode::FORBIDDEN;
            return resp;
        };
        *resp.status_mut() = StatusCode::NO_CONTENT;
        self.add_cors(&origin, resp.headers_mut(), "");
        let h = resp.headers_mut();
        h.insert("access-control-allow-methods", HeaderValue::from_static(allow.methods));
        let asked = req.headers().get(http::header::ACCESS_CONTROL_REQUEST_HEADERS).cloned();
        match asked {
            Some(asked) if allow.headers.is_empty() => {
                h.insert("access-control-allow-headers", asked);
            }
            _ if !allow.headers.is_empty() => {
                h.insert("access-control-allow-headers", HeaderValue::from_static(allow.headers));
            }
            _ => {}
        }
        h.insert("access-control-max-age", HeaderValue::from_static("600"));
        resp
    }

    fn cross_origin_allowed(&self, origin: &str) -> bool {
        self.any_origin || self.origins.iter().any(|o| o == origin)
    }

    fn add_cors(&self, origin: &str, h: &mut HeaderMap, expose: &'static str) {
        h.append(http::header::VARY, HeaderValue::from_static("Origin"));
        if self.origins.iter().any(|o| o == origin) {
            if let Ok(v) = HeaderValue::from_str(origin) {
                h.insert("access-control-allow-origin", v);
                h.insert("access-control-allow-credentials", HeaderValue::from_static("true"));
            }
        } else if self.any_origin {
            h.insert("access-control-allow-origin", HeaderValue::from_static("*"));
        } else {
            return;
        }
        if !expose.is_empty() {
            h.insert("access-control-expose-headers", HeaderValue::from_static(expose));
        }
    }

    /// Adds CORS headers (exposing `expose`) to a response for an allowed cross-origin request.
    pub fn cors(&self, origin: Option<&HeaderValue>, headers: &mut HeaderMap, expose: &'static str) {
        let Some(origin) = origin.and_then(|o| o.to_str().ok()).map(str::to_ascii_lowercase) else { return };
        if self.cross_origin_allowed(&origin) {
            self.add_cors(&origin, headers, expose);
        }
    }
}

/// `host:port` → `host` (IPv6 brackets kept: `[::1]:80` → `[::1]`).
pub fn host_of(authority: &str) -> &str {
    if authority.starts_with('[') {
        return authority.split_inclusive(']').next().unwrap_or(authority);
    }
    authority.rsplit_once(':').map_or(authority, |(h, _)| h)
}

/// `host[:port]` with the scheme's default port made explicit.
fn with_port(authority: &str, tls: bool) -> String {
    let host = host_of(authority);
    if host.len() == authority.len() {
        format!("{host}:{}", if tls { 443 } else { 80 })
    } else {
        authority.to_string()
    }
}

/// Whether a host name always means this machine.
pub fn is_loopback_name(host: &str) -> bool {
    if host == "127.0.0.1" || host.eq_ignore_ascii_case("localhost") {
        return true;
    }
    let bare = host.trim_start_matches('[').trim_end_matches(']');
    let lower = host.to_ascii_lowercase();
    lower.ends_with(".localhost") || bare.parse::<IpAddr>().is_ok_and(|ip| ip.is_loopback())
}
