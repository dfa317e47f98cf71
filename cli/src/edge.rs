//! What every edge (`micro api`, `micro web`, `micro proxy`) does to traffic it does not control
//! before any of it reaches a service: the checks a reviewer of Envoy or nginx expects, in one
//! place, so the three tools cannot drift apart.
//!
//! - **Host.** A tool bound to loopback answers only requests for a loopback name (`localhost`,
//!   `127.0.0.1`, `[::1]`) or a host in `--allowed_hosts`, so a DNS-rebinding page cannot reach
//!   it under a name of its own. Bound beyond loopback, every host is answered unless
//!   `--allowed_hosts` lists them.
//! - **Origin.** A browser request from another origin is refused (403) unless that origin is in
//!   `--cors_allowed_origins`; `null` origins (sandboxed frames, files) are always refused.
//!   Requests without `Origin` (curl, services, gRPC clients) are not browser requests and pass.
//! - **CORS.** Only listed origins get CORS headers; credentials only for origins listed by name
//!   (`*` allows any origin, without credentials). Preflights from other origins get 403.
//! - **Headers.** A caller's headers become call metadata without the ones that belong to the
//!   hop or to the platform: hop-by-hop headers, `Cookie`, `X-Forwarded-*`/`Forwarded`/`X-Real-IP`
//!   (replaced by the tool's own `X-Forwarded-For` with the real peer), in calls the browser's
//!   `Origin`, `Referer` and `Sec-Fetch-*` (the edge checked them), and every `micro-*` header
//!   (the platform's own: `Micro-Topic`, `Micro-Id`, `Micro-Queue`, `micro-service`, ...).
//!   `--forward_headers` names headers to let through anyway. `Authorization` passes: a tool
//!   forwards its caller's credentials and never adds its own.
//! - **Bodies.** One limit (`--max_body`, 4 MiB) for every request body, websocket message and
//!   upstream reply; a body must arrive within the server's read timeout.

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderMap, HeaderName, HeaderValue, Response};
use http_body_util::{BodyExt, Limited};
use hyper::body::Incoming;
use micro::transport::http::RemoteAddr;
use micro::transport::origin::{OriginPolicy, Preflight};
use micro::transport::Body;
use micro::{Error, Metadata};

/// The id of the edges' own refusals.
pub(crate) const ID: &str = "go.micro.edge";

/// The default limit of bodies, messages and upstream replies.
pub(crate) const DEFAULT_MAX_BODY: usize = 4 * 1024 * 1024;

/// The edge flags every tool that listens takes.
#[derive(Debug, Clone, clap::Args)]
pub(crate) struct EdgeArgs {
    /// Origins whose pages may call this tool from a browser (comma list of `scheme://host[:port]`,
    /// or `*` for any origin without credentials). Empty: same origin only.
    #[arg(
        long = "cors_allowed_origins",
        env = "MICRO_CORS_ALLOWED_ORIGINS",
        default_value = "",
        value_delimiter = ','
    )]
    pub(crate) cors_allowed_origins: Vec<String>,
    /// Host names requests may be addressed to (comma list; `.example.com` matches subdomains).
    /// Empty: loopback names when listening on loopback, any host otherwise.
    #[arg(long = "allowed_hosts", env = "MICRO_ALLOWED_HOSTS", default_value = "", value_delimiter = ',')]
    pub(crate) allowed_hosts: Vec<String>,
    /// Headers to pass to services although the edge strips them by default (comma list, e.g.
    /// `cookie,x-forwarded-for` behind a trusted load balancer).
    #[arg(long = "forward_headers", env = "MICRO_FORWARD_HEADERS", default_value = "", value_delimiter = ',')]
    pub(crate) forward_headers: Vec<String>,
    /// Largest request body, websocket message and upstream reply, in bytes.
    #[arg(long = "max_body", env = "MICRO_MAX_BODY", default_value_t = DEFAULT_MAX_BODY)]
    pub(crate) max_body: usize,
}

/// The edge policy of one listener.
#[derive(Debug, Clone)]
pub(crate) struct Policy {
    origin: OriginPolicy,
    forward: Vec<HeaderName>,
    /// The limit of bodies, messages and upstream replies.
    pub(crate) max_body: usize,
    /// How long a body may take to arrive.
    pub(crate) body_timeout: Duration,
    /// Whether the listener speaks TLS (for the default port of same-origin checks).
    tls: bool,
}

/// What the tools' preflight answers allow.
const PREFLIGHT: Preflight = Preflight {
    methods: "GET, POST, PUT, PATCH, DELETE, OPTIONS",
    headers: "Accept, Authorization, Content-Type, X-CSRF-Token, X-Requested-With",
};

/// Headers that belong to one hop (RFC 9110 §7.6.1), never forwarded.
const HOP_BY_HOP: &[&str] = &[
    "connection",
    "keep-alive",
    "proxy-authenticate",
    "proxy-authorization",
    "proxy-connection",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
];

/// Headers stripped from what callers send unless `--forward_headers` names them.
const STRIPPED: &[&str] =
    &["cookie", "forwarded", "x-real-ip", "x-forwarded-for", "x-forwarded-host", "x-forwarded-proto"];

/// Left out of call metadata too: the browser's word on the page that made the request. The
/// edge checked it; services would check it against their own (narrower) lists. Proxied web
/// apps get it (their CSRF checks read `Origin` and `Referer`).
const BROWSER: &[&str] = &["origin", "referer", "sec-fetch-site", "sec-fetch-mode", "sec-fetch-dest", "sec-fetch-user"];

fn lower_list(items: &[String]) -> Vec<String> {
    items.iter().map(|s| s.trim().to_ascii_lowercase()).filter(|s| !s.is_empty()).collect()
}

impl Policy {
    /// The policy for a listener bound to `bound`, from the flags.
    pub(crate) fn new(args: &EdgeArgs, bound: SocketAddr, body_timeout: Duration, tls: bool) -> Policy {
        Policy {
            origin: OriginPolicy::new(&args.cors_allowed_origins, &args.allowed_hosts, bound, tls),
            forward: lower_list(&args.forward_headers)
                .iter()
                .filter_map(|h| HeaderName::from_bytes(h.as_bytes()).ok())
                .collect(),
            max_body: args.max_body.max(1),
            body_timeout,
            tls,
        }
    }

    /// Refuses a request addressed to a host this listener does not serve (DNS rebinding).
    pub(crate) fn check_host<B>(&self, req: &http::Request<B>) -> Result<(), Error> {
        self.origin.check_host(ID, req)
    }

    /// Refuses a browser request from an origin that is neither the tool's own nor allowed.
    pub(crate) fn check_origin<B>(&self, req: &http::Request<B>) -> Result<(), Error> {
        self.origin.check_origin(ID, req)
    }

    /// Whether `req` is a CORS preflight.
    pub(crate) fn is_preflight<B>(req: &http::Request<B>) -> bool {
        OriginPolicy::is_preflight(req)
    }

    /// The answer to a preflight: 204 with CORS headers for an allowed origin, 403 otherwise.
    pub(crate) fn preflight<B>(&self, req: &http::Request<B>) -> Response<Body> {
        self.origin.preflight(req, &PREFLIGHT)
    }

    /// Adds CORS headers to a response for an allowed cross-origin request.
    pub(crate) fn cors(&self, origin: Option<&HeaderValue>, resp: &mut Response<Body>) {
        self.origin.cors(origin, resp.headers_mut(), "")
    }

    /// Whether `name` is let through although the rules strip it.
    fn forwarded(&self, name: &HeaderName) -> bool {
        self.forward.contains(name)
    }

    /// Whether a caller's header `name` is kept (see the module doc).
    fn keeps(&self, name: &HeaderName, connection_listed: &[String]) -> bool {
        let n = name.as_str();
        if HOP_BY_HOP.contains(&n) || connection_listed.iter().any(|c| c == n) {
            return false;
        }
        if STRIPPED.contains(&n) || n.starts_with("micro-") || n.starts_with("sec-websocket-") {
            return self.forwarded(name);
        }
        true
    }

    /// The `X-Forwarded-For` to send: the peer, after what a trusted hop said if it is forwarded.
    fn forwarded_for(&self, headers: &HeaderMap, peer: Option<IpAddr>) -> Option<HeaderValue> {
        let peer = peer?.to_string();
        let earlier = headers
            .get("x-forwarded-for")
            .filter(|_| self.forwarded(&HeaderName::from_static("x-forwarded-for")))
            .and_then(|v| v.to_str().ok());
        let value = match earlier {
            Some(e) if !e.is_empty() => format!("{e}, {peer}"),
            _ => peer,
        };
        HeaderValue::from_str(&value).ok()
    }

    /// A caller's headers as call metadata (see the module doc).
    pub(crate) fn metadata<B>(&self, req: &http::Request<B>) -> Metadata {
        let headers = req.headers();
        let listed = connection_listed(headers);
        let mut md = Metadata::new();
        for (k, v) in headers {
            let browsers = BROWSER.contains(&k.as_str()) && !self.forwarded(k);
            if self.keeps(k, &listed) && !browsers && v.to_str().is_ok() {
                md.insert_header(k, v);
            }
        }
        if let Some(xff) = self.forwarded_for(headers, peer(req)).and_then(|v| v.to_str().ok().map(str::to_string)) {
            md.insert("x-forwarded-for", &xff);
        }
        md
    }

    /// Rewrites a caller's headers for a reverse-proxied request: the same rules as
    /// [`Policy::metadata`], except that cookies stay (the upstream is an HTTP app), and the
    /// `X-Forwarded-*` headers say who asked, for which host, over which scheme.
    pub(crate) fn proxied_headers(&self, headers: &HeaderMap, peer: Option<IpAddr>) -> HeaderMap {
        let listed = connection_listed(headers);
        let mut out = HeaderMap::with_capacity(headers.len() + 3);
        for (k, v) in headers {
            if k == http::header::COOKIE || (k != http::header::HOST && self.keeps(k, &listed)) {
                out.append(k.clone(), v.clone());
            }
        }
        // A websocket upgrade goes on, with its handshake (the proxy relays it, see
        // gateway::upstream); no other protocol (an h2c tunnel would bypass these rules).
        let upgrade = headers.get(http::header::UPGRADE).filter(|v| is_websocket(v));
        if let Some(up) = upgrade.filter(|_| listed.iter().any(|t| t == "upgrade")) {
            out.insert(http::header::UPGRADE, up.clone());
            let handshake = |k: &HeaderName| k.as_str().starts_with("sec-websocket-");
            let kept: Vec<HeaderName> = out.keys().filter(|k| handshake(k)).cloned().collect();
            for k in kept {
                out.remove(k);
            }
            for (k, v) in headers.iter().filter(|(k, _)| handshake(k)) {
                out.append(k.clone(), v.clone());
            }
        }
        if let Some(xff) = self.forwarded_for(headers, peer) {
            out.insert("x-forwarded-for", xff);
        }
        if let Some(host) = headers.get(http::header::HOST) {
            out.insert("x-forwarded-host", host.clone());
        }
        out.insert("x-forwarded-proto", HeaderValue::from_static(if self.tls { "https" } else { "http" }));
        out
    }

    /// Reads a request body within the limit and the read timeout.
    pub(crate) async fn read_body(&self, body: Incoming) -> Result<Bytes, Error> {
        read_body(body, self.max_body, self.body_timeout).await
    }
}

/// The names a `Connection` header lists (hop-by-hop too).
fn connection_listed(headers: &HeaderMap) -> Vec<String> {
    headers
        .get_all(http::header::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(|t| t.trim().to_ascii_lowercase())
        .collect()
}

/// The peer's address, when the server put it in the request.
pub(crate) fn peer<B>(req: &http::Request<B>) -> Option<IpAddr> {
    req.extensions().get::<RemoteAddr>().map(|a| a.0.ip())
}

/// Reads a body of at most `max` bytes within `timeout` (413 beyond, 408 when too slow, 400
/// when it breaks off).
pub(crate) async fn read_body(body: Incoming, max: usize, timeout: Duration) -> Result<Bytes, Error> {
    use micro::transport::body::{read_whole, ReadError};
    read_whole(body, max, timeout).await.map_err(|e| match e {
        ReadError::TooLarge => Error::too_large(ID, format!("the request body is larger than {max} bytes")),
        ReadError::Broken(why) => Error::bad_request(ID, format!("reading the request failed: {why}")),
        ReadError::TimedOut => Error::timeout(ID, format!("the request body did not arrive within {timeout:?}")),
    })
}

/// An upstream reply's body passed on as it arrives, cut off (the stream fails) past `max` bytes.
pub(crate) fn limit_reply(body: Incoming, max: usize, upstream: &str) -> Body {
    let upstream = upstream.to_string();
    Body::boxed(Limited::new(body, max).map_err(move |e| {
        if e.is::<http_body_util::LengthLimitError>() {
            Error::new(ID, 502, format!("the reply of {upstream} is larger than {max} bytes"))
        } else {
            Error::new(ID, 502, format!("the reply of {upstream} broke off: {e}"))
        }
    }))
}

/// Whether an `Upgrade` header asks for a websocket.
pub(crate) fn is_websocket(upgrade: &HeaderValue) -> bool {
    upgrade.to_str().is_ok_and(|v| v.eq_ignore_ascii_case("websocket"))
}

/// Whether a content type is one of the given media types (parameters ignored).
pub(crate) fn is_media(content_type: Option<&HeaderValue>, types: &[&str]) -> bool {
    let Some(ct) = content_type.and_then(|v| v.to_str().ok()) else { return false };
    let media = ct.split(';').next().unwrap_or("").trim().to_ascii_lowercase();
    types.contains(&media.as_str())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy(origins: &str, hosts: &str, forward: &str, bound: &str) -> Policy {
        let split = |s: &str| s.split(',').map(str::to_string).collect::<Vec<_>>();
        let args = EdgeArgs {
            cors_allowed_origins: split(origins),
            allowed_hosts: split(hosts),
            forward_headers: split(forward),
            max_body: DEFAULT_MAX_BODY,
        };
        Policy::new(&args, bound.parse().unwrap(), Duration::from_secs(1), false)
    }

    fn req(headers: &[(&str, &str)]) -> http::Request<()> {
        let mut r = http::Request::new(());
        for (k, v) in headers {
            r.headers_mut().append(HeaderName::from_bytes(k.as_bytes()).unwrap(), HeaderValue::from_str(v).unwrap());
        }
        r
    }

    #[test]
    fn hosts_on_loopback_and_beyond() {
        let local = policy("", "", "", "127.0.0.1:8080");
        for ok in ["127.0.0.1:8080", "localhost:8080", "LOCALHOST", "[::1]:8080", "app.localhost:1"] {
            assert!(local.check_host(&req(&[("host", ok)])).is_ok(), "{ok}");
        }
        for bad in ["evil.example:8080", "127.0.0.1.evil.example", "192.168.1.2:8080"] {
            assert_eq!(local.check_host(&req(&[("host", bad)])).unwrap_err().code, 403, "{bad}");
        }
        let listed = policy("", "api.example.com,.internal", "", "0.0.0.0:8080");
        assert!(listed.check_host(&req(&[("host", "api.example.com")])).is_ok());
        assert!(listed.check_host(&req(&[("host", "a.b.internal:9")])).is_ok());
        assert!(listed.check_host(&req(&[("host", "other.com")])).is_err());
        assert!(policy("", "", "", "0.0.0.0:8080").check_host(&req(&[("host", "anything")])).is_ok());
    }

    #[test]
    fn origins_same_listed_or_refused() {
        let p = policy("https://app.example.com", "", "", "127.0.0.1:8080");
        assert!(p.check_origin(&req(&[])).is_ok(), "no Origin: not a browser");
        assert!(p.check_origin(&req(&[("host", "127.0.0.1:8080"), ("origin", "http://127.0.0.1:8080")])).is_ok());
        assert!(p.check_origin(&req(&[("host", "localhost"), ("origin", "http://localhost:80")])).is_ok());
        assert!(p.check_origin(&req(&[("host", "x"), ("origin", "https://app.example.com")])).is_ok());
        assert!(p.check_origin(&req(&[("host", "x"), ("origin", "https://evil.example")])).is_err());
        assert!(p.check_origin(&req(&[("host", "x"), ("origin", "null")])).is_err());
        let mut resp = Response::new(Body::empty());
        p.cors(Some(&HeaderValue::from_static("https://app.example.com")), &mut resp);
        assert_eq!(resp.headers()["access-control-allow-credentials"], "true");
        let any = policy("*", "", "", "127.0.0.1:8080");
        let mut resp = Response::new(Body::empty());
        any.cors(Some(&HeaderValue::from_static("https://evil.example")), &mut resp);
        assert_eq!(resp.headers()["access-control-allow-origin"], "*");
        assert!(!resp.headers().contains_key("access-control-allow-credentials"));
    }

    #[test]
    fn metadata_leaves_out_what_is_not_the_callers() {
        let p = policy("", "", "", "127.0.0.1:8080");
        let r = req(&[
            ("authorization", "Bearer mine"),
            ("cookie", "session=1"),
            ("x-forwarded-for", "1.2.3.4"),
            ("micro-topic", "spoof"),
            ("micro-queue", "q"),
            ("connection", "x-secret"),
            ("x-secret", "hop"),
            ("x-user", "ann"),
        ]);
        let md = p.metadata(&r);
        let keys: Vec<&str> = md.iter().map(|(k, _)| k).collect();
        assert_eq!(keys, ["authorization", "x-user"]);
        let forwarding = policy("", "", "cookie,x-forwarded-for", "127.0.0.1:8080");
        let mut r = r;
        r.extensions_mut().insert(RemoteAddr("10.0.0.9:5000".parse().unwrap()));
        let md = forwarding.metadata(&r);
        assert_eq!(md.get("cookie"), Some("session=1"));
        assert_eq!(md.get("x-forwarded-for"), Some("1.2.3.4, 10.0.0.9"));
    }
}
