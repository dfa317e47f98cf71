//! Adaptive throttling: a client whose calls to a service mostly fail stops sending most of
//! them, refusing them itself before they cost the service anything: the client-side
//! throttling of Google's SRE book, the breaker go-zero and kratos ship.
//!
//! Per service, over the last 10 s (in 1 s buckets), the wrapper counts `requests` (calls made,
//! including those it refused) and `accepts` (calls the service answered; a failure that says
//! it is down or overloaded — `UNAVAILABLE`, `DEADLINE_EXCEEDED`, `RESOURCE_EXHAUSTED` — is not
//! an accept). An application's own errors (`INTERNAL` included) are answers: otherwise a
//! caller of a gateway who found an input that fails could hold back everyone's calls. A call is refused with
//! probability max(0, (requests − 5 − K·accepts) / (requests + 1)): with K = 2
//! ([`Throttle::new`]) nothing is held back until more than half the calls fail, the first few
//! failures are free, and as the service recovers the accepts bring the probability down.
//! A refusal is a 503 with id [`ID`], made before any node is chosen.
//!
//! **Bounded.** Windows are kept for at most [`MAX_SERVICES`] services (a gateway calls the
//! services its callers name); beyond that the least recently used is dropped.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, RwLock};
use std::time::Instant;

use bytes::Bytes;
use futures_util::future::BoxFuture;

use crate::client::{CallWrapper, Caller, RawCall};
use crate::error::GrpcCode;
use crate::Error;

/// The id of calls the throttle refused.
pub const ID: &str = "go.micro.client.throttle";

/// The most services whose windows are kept.
pub const MAX_SERVICES: usize = 1024;

/// Seconds in the window.
const WINDOW: usize = 10;

/// Failures that cost nothing.
const PROTECTION: f64 = 5.0;

/// The client wrapper that throttles calls to failing services ([module docs](self)).
#[derive(Clone, Debug)]
pub struct Throttle {
    k: f64,
    windows: Arc<RwLock<HashMap<String, Arc<Mutex<Window>>>>>,
}

impl Throttle {
    /// Throttling with multiplier `k` (2 is the SRE book's; higher lets more through).
    pub fn new(k: f64) -> Self {
        Throttle { k, windows: Arc::new(RwLock::new(HashMap::new())) }
    }

    fn window(&self, service: &str) -> Arc<Mutex<Window>> {
        if let Some(w) = self.windows.read().unwrap_or_else(|e| e.into_inner()).get(service) {
            return w.clone();
        }
        let mut windows = self.windows.write().unwrap_or_else(|e| e.into_inner());
        if windows.len() >= MAX_SERVICES && !windows.contains_key(service) {
            let oldest = windows
                .iter()
                .min_by_key(|(_, w)| w.lock().unwrap_or_else(|e| e.into_inner()).used)
                .map(|(k, _)| k.clone());
            if let Some(k) = oldest {
                windows.remove(&k);
            }
        }
        windows.entry(service.to_string()).or_insert_with(|| Arc::new(Mutex::new(Window::new()))).clone()
    }
}

/// Whether a call's result says the service took it.
fn accepted(result: &Result<Bytes, Error>) -> bool {
    let Err(e) = result else { return true };
    !matches!(e.grpc_code(), GrpcCode::Unavailable | GrpcCode::DeadlineExceeded | GrpcCode::ResourceExhausted)
}

/// Requests and accepts by second, over the last [`WINDOW`] seconds.
#[derive(Debug)]
struct Window {
    start: Instant,
    used: Instant,
    /// (second, requests, accepts).
    buckets: [(u64, u64, u64); WINDOW],
}

impl Window {
    fn new() -> Self {
        let now = Instant::now();
        Window { start: now, used: now, buckets: [(0, 0, 0); WINDOW] }
    }

    fn bucket(&mut self) -> &mut (u64, u64, u64) {
        self.used = Instant::now();
        let second = self.start.elapsed().as_secs() + 1;
        let b = &mut self.buckets[(second % WINDOW as u64) as usize];
        if b.0 != second {
            *b = (second, 0, 0);
        }
        b
    }

    fn totals(&self) -> (f64, f64) {
        let second = self.start.elapsed().as_secs() + 1;
        self.buckets
            .iter()
            .filter(|b| b.0 != 0 && second - b.0 < WINDOW as u64)
            .fold((0.0, 0.0), |(r, a), b| (r + b.1 as f64, a + b.2 as f64))
    }

    /// The probability a call is refused now.
    fn refusal(&self, k: f64) -> f64 {
        let (requests, accepts) = self.totals();
        ((requests - PROTECTION - k * accepts) / (requests + 1.0)).max(0.0)
    }
}

struct Throttled {
    throttle: Throttle,
    inner: Arc<dyn Caller>,
}

impl Caller for Throttled {
    fn call(&self, call: RawCall) -> BoxFuture<'_, Result<Bytes, Error>> {
        Box::pin(async move {
            let window = self.throttle.window(&call.service);
            let refused = {
                let mut w = window.lock().unwrap_or_else(|e| e.into_inner());
                let p = w.refusal(self.throttle.k);
                w.bucket().1 += 1;
                let refused = p > 0.0 && unit_random() < p;
                refused.then(|| (w.totals(), p))
            };
            if let Some(((requests, accepts), p)) = refused {
                return Err(Error::unavailable(
                    ID,
                    format!(
                        "{} is failing ({accepts} of the last {requests} calls answered); this call was not sent ({:.0} % are held back)",
                        call.service,
                        p * 100.0
                    ),
                ));
            }
            let mut answer = Answer { window, accepted: true };
            let res = self.inner.call(call).await;
            answer.accepted = accepted(&res);
            res
        })
    }
}

/// Counts a call's accept when it ends; a call its caller dropped says nothing against the
/// service, so it counts as accepted.
struct Answer {
    window: Arc<Mutex<Window>>,
    accepted: bool,
}

impl Drop for Answer {
    fn drop(&mut self) {
        if self.accepted {
            self.window.lock().unwrap_or_else(|e| e.into_inner()).bucket().2 += 1;
        }
    }
}

/// A uniform draw in [0, 1).
fn unit_random() -> f64 {
    crate::selector::random_index(1 << 30) as f64 / (1u64 << 30) as f64
}

impl CallWrapper for Throttle {
    fn wrap(&self, inner: Arc<dyn Caller>) -> Arc<dyn Caller> {
        Arc::new(Throttled { throttle: self.clone(), inner })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nothing_is_held_back_until_most_calls_fail() {
        let mut w = Window::new();
        for i in 0..100 {
            let b = w.bucket();
            b.1 += 1;
            if i % 2 == 0 {
                b.2 += 1;
            }
        }
        assert_eq!(w.refusal(2.0), 0.0, "half the calls answered: none held back");
        for _ in 0..200 {
            w.bucket().1 += 1;
        }
        let p = w.refusal(2.0);
        assert!(p > 0.5 && p < 1.0, "50 of 300 answered: most held back, never all ({p})");
        let mut fresh = Window::new();
        for _ in 0..5 {
            fresh.bucket().1 += 1;
        }
        assert_eq!(fresh.refusal(2.0), 0.0, "the first failures are free");
    }

    #[test]
    fn refusals_and_failures_are_not_accepts() {
        assert!(accepted(&Ok(Bytes::new())));
        assert!(accepted(&Err(Error::not_found("s", "no"))), "an answer, if not the one wanted");
        assert!(!accepted(&Err(Error::unavailable("s", "down"))));
        assert!(!accepted(&Err(Error::overloaded("s", "busy"))));
        assert!(accepted(&Err(Error::internal_server_error("s", "bug"))), "an application's error is an answer");
    }
}
