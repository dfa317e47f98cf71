//! Logging wrappers: every call a server answers ([`TracingWrapper`]) and every call a client
//! makes ([`TracingCallWrapper`]), with its endpoint, duration and outcome, through `tracing`.

use std::sync::Arc;
use std::time::Instant;

use bytes::Bytes;
use futures_util::future::BoxFuture;

use crate::client::{CallWrapper, Caller, RawCall};
use crate::server::{Endpoint, Handler, HandlerWrapper, RawRequest, StreamHandler, UnaryHandler};
use crate::transport::Body;
use crate::Error;

/// Logs every call with its endpoint, duration and outcome (at debug level; errors at info).
#[derive(Debug, Clone, Copy, Default)]
pub struct TracingWrapper;

struct TracedUnary {
    endpoint: Arc<str>,
    inner: Arc<dyn UnaryHandler>,
}

impl UnaryHandler for TracedUnary {
    fn call(&self, req: RawRequest) -> BoxFuture<'static, Result<Bytes, Error>> {
        let endpoint = self.endpoint.clone();
        let fut = self.inner.call(req);
        Box::pin(async move {
            let start = Instant::now();
            let res = fut.await;
            match &res {
                Ok(_) => tracing::debug!(%endpoint, elapsed = ?start.elapsed(), "ok"),
                Err(e) => {
                    tracing::info!(%endpoint, elapsed = ?start.elapsed(), code = e.code, detail = %e.detail, "error")
                }
            }
            res
        })
    }
}

struct TracedStream {
    endpoint: Arc<str>,
    inner: Arc<dyn StreamHandler>,
}

impl StreamHandler for TracedStream {
    fn call(&self, req: RawRequest) -> Body {
        tracing::debug!(endpoint = %self.endpoint, "stream opened");
        self.inner.call(req)
    }
}

impl HandlerWrapper for TracingWrapper {
    fn wrap(&self, endpoint: &Endpoint, inner: Handler) -> Handler {
        let name: Arc<str> = endpoint.name.as_str().into();
        match inner {
            Handler::Unary(inner) => Handler::Unary(Arc::new(TracedUnary { endpoint: name, inner })),
            Handler::Stream(inner) => Handler::Stream(Arc::new(TracedStream { endpoint: name, inner })),
        }
    }
}

/// Logs every call with its service, endpoint, duration and outcome.
#[derive(Debug, Clone, Copy, Default)]
pub struct TracingCallWrapper;

struct Traced(Arc<dyn Caller>);

impl Caller for Traced {
    fn call(&self, call: RawCall) -> BoxFuture<'_, Result<Bytes, Error>> {
        Box::pin(async move {
            let (service, endpoint) = (call.service.clone(), call.endpoint.clone());
            let start = Instant::now();
            let res = self.0.call(call).await;
            match &res {
                Ok(_) => {
                    tracing::debug!(%service, %endpoint, elapsed = ?start.elapsed(), "call ok")
                }
                Err(e) => {
                    tracing::info!(%service, %endpoint, elapsed = ?start.elapsed(), code = e.code, detail = %e.detail, "call failed")
                }
            }
            res
        })
    }
}

impl CallWrapper for TracingCallWrapper {
    fn wrap(&self, inner: Arc<dyn Caller>) -> Arc<dyn Caller> {
        Arc::new(Traced(inner))
    }
}
