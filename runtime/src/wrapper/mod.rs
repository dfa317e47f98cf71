//! Middleware that ships: layers around a server's handlers ([`HandlerWrapper`]) and a client's
//! calls ([`CallWrapper`]). The client and the server know only the traits; nothing here is
//! imported by them, and a service picks its wrappers from its options.
//!
//! [`HandlerWrapper`]: crate::server::HandlerWrapper
//! [`CallWrapper`]: crate::client::CallWrapper

pub mod auth;
pub mod logging;
pub mod metrics;
pub mod shed;
pub mod throttle;
#[cfg(feature = "otel")]
pub mod trace;

pub use auth::{BearerAuth, BearerToken};
pub use logging::{TracingCallWrapper, TracingWrapper};
pub use metrics::Metrics;
pub use shed::{ShedOptions, Shedder, Shedding};
pub use throttle::Throttle;
#[cfg(feature = "otel")]
pub use trace::Tracing;
