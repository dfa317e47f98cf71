//! Plain web pages served by a service (`micro new --type web`), for the dashboard to proxy.
//!
//! [`Server::serve_web`](crate::Server::serve_web) answers every request that is not an RPC
//! (any method but `POST`, or a path no endpoint has) with a function of [`Page`] to [`Response`].
//! Behind `micro web` the page's path arrives without the `/<alias>` prefix, which is given in
//! the `X-Micro-Web-Base-Path` header ([`Page::base_path`]) for building links.

use std::future::Future;
use std::sync::Arc;

use bytes::Bytes;
use futures_util::future::BoxFuture;
use http::{HeaderMap, HeaderValue, Method, StatusCode};

use crate::transport::Body;

/// A web request.
#[derive(Debug)]
pub struct Page {
    method: Method,
    uri: http::Uri,
    headers: HeaderMap,
    body: Bytes,
}

impl Page {
    pub(crate) fn new(method: Method, uri: http::Uri, headers: HeaderMap, body: Bytes) -> Self {
        Page { method, uri, headers, body }
    }

    /// The method.
    pub fn method(&self) -> &Method {
        &self.method
    }

    /// The path, e.g. `/` or `/about`.
    pub fn path(&self) -> &str {
        self.uri.path()
    }

    /// The query string, if any.
    pub fn query(&self) -> Option<&str> {
        self.uri.query()
    }

    /// A header.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }

    /// Where the site is mounted behind `micro web` (`/<alias>`), or empty.
    pub fn base_path(&self) -> &str {
        self.header("x-micro-web-base-path").unwrap_or("")
    }

    /// The body.
    pub fn body(&self) -> &Bytes {
        &self.body
    }
}

/// A web response.
#[derive(Debug, Clone)]
pub struct Response {
    status: StatusCode,
    content_type: &'static str,
    headers: HeaderMap,
    body: Bytes,
}

impl Response {
    /// `200` with an HTML body.
    pub fn html(body: impl Into<Bytes>) -> Self {
        Response {
            status: StatusCode::OK,
            content_type: "text/html; charset=utf-8",
            headers: HeaderMap::new(),
            body: body.into(),
        }
    }

    /// `200` with a plain text body.
    pub fn text(body: impl Into<Bytes>) -> Self {
        Response {
            status: StatusCode::OK,
            content_type: "text/plain; charset=utf-8",
            headers: HeaderMap::new(),
            body: body.into(),
        }
    }

    /// `200` with a JSON body.
    pub fn json(value: &serde_json::Value) -> Self {
        Response {
            status: StatusCode::OK,
            content_type: "application/json",
            headers: HeaderMap::new(),
            body: value.to_string().into(),
        }
    }

    /// `404` naming the path.
    pub fn not_found(path: &str) -> Self {
        Response {
            status: StatusCode::NOT_FOUND,
            content_type: "text/plain; charset=utf-8",
            headers: HeaderMap::new(),
            body: format!("{path} not found\n").into(),
        }
    }

    /// The same response with another status.
    pub fn with_status(mut self, status: u16) -> Self {
        self.status = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        self
    }

    /// The same response with a header set (a `content-type` here replaces the default one);
    /// a name or value that cannot be a header is ignored.
    pub fn header(mut self, name: &str, value: &str) -> Self {
        if let (Ok(n), Ok(v)) = (http::HeaderName::try_from(name), HeaderValue::try_from(value)) {
            self.headers.insert(n, v);
        }
        self
    }

    pub(crate) fn into_http(self) -> http::Response<Body> {
        let mut resp = http::Response::new(Body::full(self.body));
        *resp.status_mut() = self.status;
        resp.headers_mut().insert(http::header::CONTENT_TYPE, HeaderValue::from_static(self.content_type));
        resp.headers_mut().extend(self.headers);
        resp
    }
}

/// A web handler.
pub(crate) type WebHandler = Arc<dyn Fn(Page) -> BoxFuture<'static, Response> + Send + Sync>;

pub(crate) fn handler<F, Fut>(f: F) -> WebHandler
where
    F: Fn(Page) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Response> + Send + 'static,
{
    Arc::new(move |page| Box::pin(f(page)))
}
