//! Which failed calls are sent again, and how many: the retry policy and the retry budget.
//!
//! **Policy.** A failed attempt is tried again on a node the call has not tried (at most
//! `retries` times, within the call's deadline) when the call was not processed: the node could
//! not be reached or refused the request before it was sent, or refused it for overload
//! ([`Error::is_overloaded`]). A call that is idempotent ([`CallOptions::idempotent`], or its
//! endpoint's [`EndpointPolicy`]) is also retried after a timeout or a 500, 502, 503 or 504,
//! and may be **hedged** ([`CallOptions::hedge`]): sent to a second node as well when the first
//! has not answered in time, the first success winning. Anything else is the answer.
//!
//! **Budget.** Retries spend a budget per service, gRPC's retry throttling (gRFC A6): a bucket
//! of [`BudgetOptions::tokens`] (10) loses one token per failed attempt and gains
//! [`BudgetOptions::ratio`] (0.1) per success; a retry is made only while more than half the
//! tokens remain. When every node fails, a service's retries stop after a handful, so retries
//! add almost nothing to the load of a service that is down; while most calls succeed, the
//! bucket stays full.
//!
//! Retries live in the client, not in a wrapper: a retry must go to a node the call has not
//! tried, and the budget must see every attempt (the place gRPC's channel keeps them too).
//! Buckets are kept for at most [`MAX_SERVICES`] services (a gateway calls the services its
//! callers name); beyond that the oldest start full again.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use super::CallOptions;
use crate::Error;

/// The most services whose buckets are kept.
pub const MAX_SERVICES: usize = 1024;

/// The size of every service's retry bucket.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct BudgetOptions {
    /// Tokens a bucket holds (retries need more than half); 0 turns the budget off.
    pub tokens: f64,
    /// Tokens a success gives back.
    pub ratio: f64,
}

impl Default for BudgetOptions {
    fn default() -> Self {
        BudgetOptions { tokens: 10.0, ratio: 0.1 }
    }
}

/// How calls to one endpoint are made, set from code ([`ClientOptions::endpoints`](super::ClientOptions::endpoints)).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct EndpointPolicy {
    /// The endpoint has no side effects a repeat would double: failures that may have been
    /// processed are retried too.
    pub idempotent: bool,
    /// Retries for this endpoint (the client's otherwise).
    pub retries: Option<u32>,
    /// Timeout for this endpoint (the client's otherwise).
    pub timeout: Option<Duration>,
    /// For an idempotent endpoint: also send a call to a second node when the first has not
    /// answered after this long (hedging; spends the retry budget like a retry).
    pub hedge: Option<Duration>,
}

/// Whether a call that failed with `error` is tried again.
pub fn should_retry(error: &Error, idempotent: bool) -> bool {
    error.not_processed() || idempotent && matches!(error.code, 408 | 500 | 502 | 503 | 504)
}

/// Whether an attempt's failure spends the budget (it says the service is failing).
fn spends(error: &Error) -> bool {
    should_retry(error, true)
}

/// The retry buckets of every service a client calls.
#[derive(Debug, Default)]
pub(crate) struct Budgets {
    options: BudgetOptions,
    buckets: Mutex<HashMap<String, (f64, Instant)>>,
}

impl Budgets {
    pub(crate) fn new(options: BudgetOptions) -> Self {
        Budgets { options, buckets: Mutex::new(HashMap::new()) }
    }

    /// Records an attempt's result.
    pub(crate) fn record(&self, service: &str, result: Result<(), &Error>) {
        let change = match result {
            Ok(()) => self.options.ratio,
            Err(e) if spends(e) => -1.0,
            Err(_) => return,
        };
        if self.options.tokens <= 0.0 {
            return;
        }
        let mut buckets = self.buckets.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(bucket) = buckets.get_mut(service) {
            bucket.0 = (bucket.0 + change).clamp(0.0, self.options.tokens);
            bucket.1 = Instant::now();
            return;
        }
        if change > 0.0 {
            // No bucket is a full one: a success changes nothing.
            return;
        }
        if buckets.len() >= MAX_SERVICES {
            if let Some(oldest) = buckets.iter().min_by_key(|(_, (_, t))| *t).map(|(k, _)| k.clone()) {
                buckets.remove(&oldest);
            }
        }
        let full = self.options.tokens;
        let bucket = buckets.entry(service.to_string()).or_insert((full, Instant::now()));
        bucket.0 = (bucket.0 + change).clamp(0.0, full);
        bucket.1 = Instant::now();
    }

    /// Whether `service`'s budget allows a retry now.
    pub(crate) fn may_retry(&self, service: &str) -> bool {
        if self.options.tokens <= 0.0 {
            return true;
        }
        let buckets = self.buckets.lock().unwrap_or_else(|e| e.into_inner());
        buckets.get(service).is_none_or(|(tokens, _)| *tokens > self.options.tokens / 2.0)
    }
}

/// The policy for one call: its options over its endpoint's over the client's.
pub(crate) fn idempotent(opts: &CallOptions, endpoint: Option<&EndpointPolicy>) -> bool {
    opts.idempotent.unwrap_or_else(|| endpoint.is_some_and(|p| p.idempotent))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_unprocessed_calls_are_retried_unless_idempotent() {
        let refused = Error::unavailable(crate::error::CLIENT_ID, "connection refused");
        let shed = Error::overloaded("s", "busy");
        let failed = Error::internal_server_error("s", "boom");
        let timeout = Error::timeout(crate::error::CLIENT_ID, "slow");
        let missing = Error::not_found("s", "no");
        for e in [&refused, &shed] {
            assert!(should_retry(e, false), "{e}");
        }
        for e in [&failed, &timeout, &missing] {
            assert!(!should_retry(e, false), "{e} may have been processed");
        }
        assert!(should_retry(&failed, true) && should_retry(&timeout, true));
        assert!(!should_retry(&missing, true), "a 404 is an answer");
    }

    #[test]
    fn the_budget_stops_retries_to_a_failing_service_and_refills_on_success() {
        let b = Budgets::new(BudgetOptions::default());
        let down = Error::unavailable("s", "down");
        let mut retries = 0;
        for _ in 0..1000 {
            b.record("s", Err(&down));
            if b.may_retry("s") {
                retries += 1;
                b.record("s", Err(&down));
            }
        }
        assert!(retries <= 5, "{retries} retries of 1000 calls to a service that is down");
        assert!(b.may_retry("other"), "budgets are per service");
        for _ in 0..60 {
            b.record("s", Ok(()));
        }
        assert!(b.may_retry("s"), "successes refill the bucket");
        b.record("s", Err(&Error::not_found("s", "no")));
        assert!(b.may_retry("s"), "a 404 does not spend the budget");
        for i in 0..MAX_SERVICES + 5 {
            b.record(&format!("s{i}"), Err(&down));
        }
        assert_eq!(b.buckets.lock().unwrap().len(), MAX_SERVICES);
    }
}
