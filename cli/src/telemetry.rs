//! What the tools that listen (`micro api`, `micro web`, `micro proxy`) tell of themselves: the
//! runtime's [`Metrics`] on `GET /metrics` (every request they answer, by method, status and
//! handler, and every call and publish their client makes), and, when the OpenTelemetry
//! variables ask for it, a server span for each request that joins the caller's trace and is
//! the parent of the calls made for it ([`micro::wrapper::trace`]).

use std::time::Instant;

use http::{Request, Response};
use hyper::body::Incoming;
use micro::client::Client;
use micro::transport::Body;
use micro::wrapper::trace::Tracing;
use micro::wrapper::Metrics;
use opentelemetry::trace::{FutureExt, SpanKind, TraceContextExt};
use opentelemetry::KeyValue;

/// Metrics and traces of one tool.
#[derive(Clone, Debug)]
pub(crate) struct Telemetry {
    pub(crate) metrics: Metrics,
    pub(crate) tracing: Option<Tracing>,
}

impl Telemetry {
    /// Metrics, and traces if the standard variables ask for them, for the tool `name`.
    pub(crate) fn start(name: &str) -> anyhow::Result<Telemetry> {
        Ok(Telemetry { metrics: Metrics::new(), tracing: Tracing::from_env(name)? })
    }

    /// `client`, recording and tracing every call and publish it makes.
    pub(crate) fn wrap(&self, client: Client) -> Client {
        let client = client.wrap(self.metrics.clone());
        match &self.tracing {
            Some(t) => client.wrap(t.clone()),
            None => client,
        }
    }

    /// `GET /metrics`: the tool's metrics; `None` for any other request.
    pub(crate) fn page(&self, req: &Request<Incoming>) -> Option<Response<Body>> {
        if req.method() != http::Method::GET || req.uri().path() != micro::wrapper::metrics::PATH {
            return None;
        }
        let mut resp = Response::new(Body::full(self.metrics.encode()));
        resp.headers_mut()
            .insert(http::header::CONTENT_TYPE, http::HeaderValue::from_static(micro::wrapper::metrics::CONTENT_TYPE));
        Some(resp)
    }

    /// Answers `req` with `answer`, timed under `handler`, inside a server span when tracing.
    pub(crate) async fn serve<F>(
        &self,
        handler: &'static str,
        req: Request<Incoming>,
        answer: impl FnOnce(Request<Incoming>) -> F,
    ) -> Response<Body>
    where
        F: std::future::Future<Output = Response<Body>>,
    {
        let started = Instant::now();
        let method = req.method().clone();
        let resp = match &self.tracing {
            None => answer(req).await,
            Some(tracing) => {
                let parent = tracing.extract_headers(req.headers());
                let attributes = vec![
                    KeyValue::new("http.request.method", method.to_string()),
                    KeyValue::new("url.path", req.uri().path().to_string()),
                    KeyValue::new("micro.handler", handler),
                ];
                let cx = tracing.start(format!("{method} {handler}"), SpanKind::Server, attributes, &parent);
                let resp = answer(req).with_context(cx.clone()).await;
                let status = resp.status().as_u16();
                cx.span().set_attribute(KeyValue::new("http.response.status_code", i64::from(status)));
                // A server span fails for 5xx only: 4xx are the caller's.
                let code = micro::Error::new("", status, "").grpc_code();
                let code = if status < 500 { micro::error::GrpcCode::Ok } else { code };
                micro::wrapper::trace::end(&cx, code, None);
                resp
            }
        };
        self.metrics.observe_http(&method, resp.status().as_u16(), handler, started);
        resp
    }
}

/// A call a tool makes itself, past its client (the gateway's direct path): timed, and a client
/// span whose context goes in the request's headers.
pub(crate) struct Call<'a> {
    telemetry: &'a Telemetry,
    service: &'a str,
    endpoint: &'a str,
    started: Instant,
    cx: Option<opentelemetry::Context>,
}

impl<'a> Call<'a> {
    /// Starts timing a call of `endpoint` of `service` and writes its trace context into `headers`.
    pub(crate) fn start(
        telemetry: &'a Telemetry,
        service: &'a str,
        endpoint: &'a str,
        headers: &mut http::HeaderMap,
    ) -> Call<'a> {
        let cx = telemetry.tracing.as_ref().map(|t| {
            let (svc, method) = micro::wrapper::metrics::rpc_names(endpoint, None);
            let attributes = vec![
                KeyValue::new("rpc.system", "grpc"),
                KeyValue::new("rpc.service", svc.clone()),
                KeyValue::new("rpc.method", method.clone()),
                KeyValue::new("server.address", service.to_string()),
            ];
            let cx =
                t.start(format!("{svc}/{method}"), SpanKind::Client, attributes, &opentelemetry::Context::current());
            t.inject_headers(&cx, headers);
            cx
        });
        Call { telemetry, service, endpoint, started: Instant::now(), cx }
    }

    /// Records the call as answered with `resp` (its status), and passes `resp` on.
    pub(crate) fn ended<B>(self, resp: Response<B>) -> Response<B> {
        let status = resp.status().as_u16();
        let code =
            if status < 400 { micro::error::GrpcCode::Ok } else { micro::Error::new("", status, "").grpc_code() };
        self.telemetry.metrics.observe_call(self.service, self.endpoint, "", code, self.started);
        if let Some(cx) = &self.cx {
            micro::wrapper::trace::end(cx, code, None);
        }
        resp
    }
}
