//! A function: a service that serves one request and exits (Go Micro's `micro.NewFunction`).
//!
//! Handlers are registered as on any service; after the first call to one of them completes
//! (successfully or not), the function deregisters, drains and returns from [`Function::run`].
//! Built-in endpoints (`Debug.Health`, reflection, ...) do not count as the request, nor do
//! requests that never reach the handler: the one-call wrapper sits inside every other wrapper,
//! so a call that auth refuses does not count, and a request whose message does not decode does
//! not either.

use std::sync::Arc;

use bytes::Bytes;
use futures_util::future::BoxFuture;
use tokio::sync::Notify;

use crate::server::{Endpoint, Handler, HandlerWrapper, RawRequest, Server, UnaryHandler};
use crate::service::{shutdown_signal, Service};
use crate::Error;

/// A service that exits after serving one request.
#[derive(Debug, Clone)]
pub struct Function {
    service: Service,
}

struct Once {
    done: Arc<Notify>,
}

struct OnceUnary {
    inner: Arc<dyn UnaryHandler>,
    done: Arc<Notify>,
}

impl UnaryHandler for OnceUnary {
    fn call(&self, req: RawRequest) -> BoxFuture<'static, Result<Bytes, Error>> {
        let fut = self.inner.call(req);
        let done = self.done.clone();
        Box::pin(async move {
            let res = fut.await;
            let undecodable = res.as_ref().is_err_and(|e| e.id == crate::codec::ID);
            if !undecodable {
                done.notify_one();
            }
            res
        })
    }
}

impl HandlerWrapper for Once {
    fn wrap(&self, endpoint: &Endpoint, inner: Handler) -> Handler {
        match inner {
            Handler::Unary(inner) if !endpoint.internal => {
                Handler::Unary(Arc::new(OnceUnary { inner, done: self.done.clone() }))
            }
            other => other,
        }
    }
}

impl Function {
    /// A function called `name`, configured by this process's `MICRO_*` variables and flags.
    pub fn new(name: impl Into<String>) -> Result<Function, Error> {
        Ok(Function { service: Service::new(name)? })
    }

    /// A function around an already built service.
    pub fn from_service(service: Service) -> Function {
        Function { service }
    }

    /// The server, to register the handler on.
    pub fn server(&self) -> &Server {
        self.service.server()
    }

    /// The service underneath.
    pub fn service(&self) -> &Service {
        &self.service
    }

    /// Serves until one request has been answered (or SIGINT/SIGTERM), then stops gracefully.
    pub async fn run(&self) -> Result<(), Error> {
        crate::logger::init();
        let done = Arc::new(Notify::new());
        self.service.server().wrap_innermost(Once { done: done.clone() });
        self.service
            .run_until(async {
                tokio::select! {
                    _ = done.notified() => tracing::info!(function = %self.service.name(), "served its request"),
                    _ = shutdown_signal() => {}
                }
            })
            .await
    }
}
