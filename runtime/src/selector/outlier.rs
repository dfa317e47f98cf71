//! Outlier ejection: nodes that keep failing, or answer far slower than their peers, leave
//! selection for a while, as Envoy's outlier detection takes hosts out of a cluster.
//!
//! A node is **ejected** at once when it cannot be reached, after [`OutlierOptions::failures`]
//! consecutive failures (5xx / `UNAVAILABLE` / a timeout; an overloaded refusal or a 4xx is
//! neither a failure nor a success), or when its latency (an EWMA over successful calls) exceeds
//! [`OutlierOptions::slow`] times the median of its service's nodes. It stays out for
//! [`OutlierOptions::base`] × 2^(ejections so far), at most [`OutlierOptions::max`]; then it is on
//! **probation**: one call at a time may try it (the half-open probe). A probe that succeeds
//! brings it back (its latency measured afresh); one that fails ejects it again, for longer. A
//! node that stays healthy for [`OutlierOptions::max`] starts again from the base time.
//!
//! Failures and slowness take at most half of a service's nodes out at once (nodes it has heard
//! of: a service of one node never loses it to them); unreachable nodes all go. When every node
//! is out the selector still picks one: a call that may fail beats one that surely does.
//!
//! **Bounded.** State is kept per node address the selector was told about; nodes not heard of
//! for five minutes (gone from the registry, most likely) are forgotten, and beyond
//! [`MAX_NODES`] those not heard of for a minute. A probe that never reports back (its call was
//! dropped) stops holding the node after [`PROBE_LEASE`].

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use crate::error::GrpcCode;
use crate::Error;

/// The most nodes whose state is kept before idle ones are forgotten.
pub const MAX_NODES: usize = 4096;

/// How long a node unheard of may keep its state once [`MAX_NODES`] is reached.
const FORGET_AFTER: Duration = Duration::from_secs(60);

/// How long a node unheard of keeps its state at all.
const FORGET_IDLE: Duration = Duration::from_secs(300);

/// How often idle nodes are looked for.
const SWEEP_EVERY: Duration = Duration::from_secs(10);

/// How long one probe holds a node on probation before another call may probe it.
pub const PROBE_LEASE: Duration = Duration::from_secs(10);

/// Samples a node needs before its latency is compared with its peers'.
const MIN_SAMPLES: u32 = 16;

/// A node's latency is compared with its peers' every this many samples.
const JUDGE_EVERY: u32 = 4;

/// Latency differences below this are never an outlier (noise on a fast loopback).
const MIN_SLOWER: Duration = Duration::from_millis(5);

/// When nodes leave selection.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct OutlierOptions {
    /// Consecutive failures that eject a node; 0 turns ejection for failures off.
    pub failures: u32,
    /// How many times slower than its service's median a node is ejected for; 0 turns it off.
    pub slow: f64,
    /// How long a first ejection lasts; each further one doubles it.
    pub base: Duration,
    /// The longest ejection.
    pub max: Duration,
}

impl Default for OutlierOptions {
    fn default() -> Self {
        OutlierOptions { failures: 5, slow: 5.0, base: Duration::from_secs(2), max: Duration::from_secs(60) }
    }
}

/// What a call's result says of the node that answered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// It answered.
    Success,
    /// It could not be reached (ejected at once).
    Unreachable,
    /// It failed, or timed out.
    Failure,
    /// Says nothing of its health (a refusal for overload, a 4xx).
    Neutral,
}

impl Verdict {
    /// The verdict of a call's result.
    pub fn of(result: Result<(), &Error>) -> Verdict {
        let Err(e) = result else { return Verdict::Success };
        if e.is_overloaded() {
            return Verdict::Neutral;
        }
        if e.code == 503 && e.id == crate::error::CLIENT_ID {
            return Verdict::Unreachable;
        }
        match e.grpc_code() {
            GrpcCode::Unavailable | GrpcCode::Internal | GrpcCode::Unknown | GrpcCode::DataLoss => Verdict::Failure,
            GrpcCode::DeadlineExceeded => Verdict::Failure,
            _ => Verdict::Neutral,
        }
    }
}

#[derive(Debug, Default)]
struct Node {
    service: String,
    consecutive: u32,
    ejections: u32,
    /// Out of selection until then.
    out_until: Option<Instant>,
    last_ejected: Option<Instant>,
    /// When the probe in flight started (the node is on probation).
    probing: Option<Instant>,
    /// EWMA of successful calls' latency, in microseconds.
    ewma_us: f64,
    samples: u32,
    /// Successes counted towards the next latency judgement.
    since_judged: u32,
    heard: Option<Instant>,
}

/// The outlier state of every node a selector has used.
#[derive(Debug, Default)]
pub struct Outliers {
    options: OutlierOptions,
    nodes: Mutex<HashMap<String, Node>>,
    /// Nodes out or on probation now: while none is, selection reads no state at all.
    out: AtomicUsize,
    /// When idle nodes were last looked for.
    swept: Mutex<Option<Instant>>,
}

/// Whether a node may be selected now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Standing {
    /// Healthy.
    In,
    /// Its ejection is over and no probe is in flight: one call may try it.
    Probation,
    /// Ejected (or probed by another call).
    Out,
}

impl Outliers {
    /// Outlier state with these options.
    pub fn new(options: OutlierOptions) -> Self {
        Outliers { options, nodes: Mutex::new(HashMap::new()), out: AtomicUsize::new(0), swept: Mutex::new(None) }
    }

    /// The options in force.
    pub fn options(&self) -> &OutlierOptions {
        &self.options
    }

    /// Where the node at `address` stands.
    pub fn standing(&self, address: &str) -> Standing {
        if self.out.load(Ordering::Acquire) == 0 {
            return Standing::In;
        }
        let nodes = self.nodes.lock().unwrap_or_else(|e| e.into_inner());
        match nodes.get(address) {
            None => Standing::In,
            Some(n) => match n.out_until {
                None => Standing::In,
                Some(_) if n.probing.is_some_and(|t| t.elapsed() < PROBE_LEASE) => Standing::Out,
                Some(until) if until > Instant::now() => Standing::Out,
                Some(_) => Standing::Probation,
            },
        }
    }

    /// Makes the call about to go to `address` its probe, if the node is on probation and no
    /// other call probes it; whether it did.
    pub fn try_probe(&self, address: &str) -> bool {
        let mut nodes = self.nodes.lock().unwrap_or_else(|e| e.into_inner());
        let Some(n) = nodes.get_mut(address) else { return false };
        let over = n.out_until.is_some_and(|until| until <= Instant::now());
        let free = n.probing.is_none_or(|t| t.elapsed() >= PROBE_LEASE);
        if over && free {
            n.probing = Some(Instant::now());
        }
        over && free
    }

    /// Records how a call to `address` (a node of `service`) went.
    pub fn record(&self, service: &str, address: &str, verdict: Verdict, elapsed: Duration) {
        let now = Instant::now();
        let mut nodes = self.nodes.lock().unwrap_or_else(|e| e.into_inner());
        let sweep = self.swept.try_lock().ok().filter(|s| s.is_none_or(|t| now.duration_since(t) >= SWEEP_EVERY));
        if let Some(mut swept) = sweep {
            *swept = Some(now);
            self.forget(&mut nodes, now, FORGET_IDLE);
        }
        if !nodes.contains_key(address) {
            if nodes.len() >= MAX_NODES {
                self.forget(&mut nodes, now, FORGET_AFTER);
            }
            nodes.insert(address.to_string(), Node { service: service.to_string(), ..Default::default() });
        }
        // Whether this result may eject the node, read before anything changes: only then are
        // its peers looked at (most calls just count).
        let n = &nodes[address];
        // The probe's own result: a call that started before the probe is not it.
        let call_started = now.checked_sub(elapsed).unwrap_or(now);
        let was_probe = n.probing.is_some_and(|t| call_started + Duration::from_millis(1) >= t);
        let already_out = n.out_until.is_some();
        // A call that was under way when its node left says nothing new of its standing: only
        // a probe decides whether an ejected node comes back.
        let decides = was_probe || !already_out;
        let samples = n.samples.saturating_add(1);
        let since_judged = n.since_judged.wrapping_add(1);
        let judged = decides
            && match verdict {
                Verdict::Failure => {
                    was_probe || self.options.failures > 0 && n.consecutive + 1 >= self.options.failures
                }
                Verdict::Success => {
                    self.options.slow > 0.0 && (was_probe || samples >= MIN_SAMPLES && since_judged >= JUDGE_EVERY)
                }
                _ => false,
            };
        let (room, median) = match judged {
            true => (already_out || self.room(&nodes, service, address), self.median_latency(&nodes, service, address)),
            false => (false, None),
        };
        let node = nodes.get_mut(address).expect("inserted above");
        node.heard = Some(now);
        if node.service != service {
            node.service = service.to_string();
        }
        if was_probe {
            node.probing = None;
        }
        match verdict {
            Verdict::Neutral => {}
            Verdict::Unreachable if decides => self.eject(node, now),
            Verdict::Unreachable => {}
            Verdict::Failure => {
                node.consecutive += 1;
                if judged && room {
                    self.eject(node, now);
                }
            }
            Verdict::Success => {
                node.consecutive = 0;
                let us = elapsed.as_secs_f64() * 1e6;
                // A probe measures afresh: the node's past slowness is not held against it.
                node.ewma_us = if node.samples == 0 || was_probe { us } else { node.ewma_us * 0.875 + us * 0.125 };
                node.samples = samples;
                node.since_judged = if judged { 0 } else { since_judged };
                let slow = median.is_some_and(|m| {
                    node.ewma_us > m * self.options.slow && node.ewma_us - m > MIN_SLOWER.as_secs_f64() * 1e6
                });
                if judged && slow && room {
                    self.eject(node, now);
                } else if decides && node.out_until.take().is_some() {
                    self.out.fetch_sub(1, Ordering::AcqRel);
                }
            }
        }
    }

    /// Drops nodes not heard of for `idle`, and counts again those out.
    fn forget(&self, nodes: &mut HashMap<String, Node>, now: Instant, idle: Duration) {
        nodes.retain(|_, n| n.heard.is_some_and(|h| now.duration_since(h) < idle));
        self.out.store(nodes.values().filter(|n| n.out_until.is_some()).count(), Ordering::Release);
    }

    /// Whether another node of `service` besides `address` may leave: fewer than half of the
    /// nodes heard of are out.
    fn room(&self, nodes: &HashMap<String, Node>, service: &str, address: &str) -> bool {
        let peers = nodes.iter().filter(|(a, n)| n.service == service || a.as_str() == address);
        let (known, out) = peers.fold((0, 0), |(k, o), (_, n)| (k + 1, o + usize::from(n.out_until.is_some())));
        out < known / 2
    }

    fn eject(&self, node: &mut Node, now: Instant) {
        if node.last_ejected.is_some_and(|t| now.duration_since(t) > self.options.max + self.options.max) {
            node.ejections = 0;
        }
        let factor = 2u32.saturating_pow(node.ejections.min(16));
        let time = self.options.base.saturating_mul(factor).min(self.options.max);
        if node.out_until.replace(now + time).is_none() {
            self.out.fetch_add(1, Ordering::AcqRel);
        }
        node.last_ejected = Some(now);
        node.ejections = node.ejections.saturating_add(1);
        node.consecutive = 0;
        tracing::debug!(service = %node.service, ejections = node.ejections, for_ms = time.as_millis() as u64, "node ejected");
    }

    /// The median latency of `service`'s other nodes with enough samples that are in selection.
    fn median_latency(&self, nodes: &HashMap<String, Node>, service: &str, except: &str) -> Option<f64> {
        if self.options.slow <= 0.0 {
            return None;
        }
        let mut peers: Vec<f64> = nodes
            .iter()
            .filter(|(a, n)| {
                a.as_str() != except && n.service == service && n.samples >= MIN_SAMPLES && n.out_until.is_none()
            })
            .map(|(_, n)| n.ewma_us)
            .collect();
        if peers.is_empty() {
            return None;
        }
        peers.sort_by(f64::total_cmp);
        Some(peers[peers.len() / 2])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Quick ejections, for a service whose nodes a, b and c have answered once.
    fn quick() -> Outliers {
        let o = Outliers::new(OutlierOptions {
            failures: 3,
            slow: 5.0,
            base: Duration::from_millis(40),
            max: Duration::from_secs(1),
        });
        for a in ["a", "b", "c"] {
            o.record("s", a, Verdict::Success, Duration::from_millis(1));
        }
        o
    }

    const FAIL: Verdict = Verdict::Failure;
    const OK: Verdict = Verdict::Success;
    const MS: Duration = Duration::from_millis(1);

    #[test]
    fn consecutive_failures_eject_and_a_probe_lets_the_node_back() {
        let o = quick();
        for _ in 0..2 {
            o.record("s", "a", FAIL, MS);
        }
        assert_eq!(o.standing("a"), Standing::In, "two failures are not yet three");
        o.record("s", "a", OK, MS);
        for _ in 0..2 {
            o.record("s", "a", FAIL, MS);
        }
        assert_eq!(o.standing("a"), Standing::In, "a success in between starts the count again");
        o.record("s", "a", FAIL, MS);
        assert_eq!(o.standing("a"), Standing::Out);
        let deadline = Instant::now() + Duration::from_secs(5);
        while o.standing("a") != Standing::Probation {
            assert!(Instant::now() < deadline, "the ejection never ended");
            std::thread::sleep(MS);
        }
        assert!(o.try_probe("a"));
        assert!(!o.try_probe("a"), "one probe at a time");
        assert_eq!(o.standing("a"), Standing::Out);
        o.record("s", "a", OK, MS);
        assert_eq!(o.standing("a"), Standing::In);
    }

    #[test]
    fn a_failed_probe_ejects_for_longer() {
        let o = quick();
        for _ in 0..3 {
            o.record("s", "a", FAIL, MS);
        }
        let first = o.nodes.lock().unwrap()["a"].out_until.unwrap() - Instant::now();
        while o.standing("a") != Standing::Probation {
            std::thread::sleep(MS);
        }
        assert!(o.try_probe("a"));
        o.record("s", "a", FAIL, MS);
        let second = o.nodes.lock().unwrap()["a"].out_until.unwrap() - Instant::now();
        assert!(second > first + Duration::from_millis(20), "{second:?} after {first:?}");
    }

    #[test]
    fn at_most_half_the_nodes_are_out_and_overload_says_nothing() {
        let o = quick();
        for a in ["a", "b", "c"] {
            for _ in 0..3 {
                o.record("s", a, FAIL, MS);
            }
        }
        let out = ["a", "b", "c"].iter().filter(|a| o.standing(a) == Standing::Out).count();
        assert_eq!(out, 1, "of three nodes one may be out");
        let single = quick();
        for _ in 0..10 {
            single.record("t", "x", FAIL, MS);
        }
        assert_eq!(single.standing("x"), Standing::In, "the only node is never ejected");
        let shed = Error::overloaded("s", "busy");
        assert_eq!(Verdict::of(Err(&shed)), Verdict::Neutral);
        assert_eq!(Verdict::of(Err(&Error::not_found("s", "no"))), Verdict::Neutral);
        assert_eq!(Verdict::of(Err(&Error::internal_server_error("s", "boom"))), Verdict::Failure);
        assert_eq!(Verdict::of(Err(&Error::unavailable("go.micro.client", "refused"))), Verdict::Unreachable);
        assert_eq!(Verdict::of(Err(&Error::unavailable("s", "down"))), Verdict::Failure);
    }

    #[test]
    fn a_node_far_slower_than_its_peers_is_ejected() {
        let o = quick();
        for _ in 0..MIN_SAMPLES {
            o.record("s", "a", OK, Duration::from_millis(2));
            o.record("s", "b", OK, Duration::from_millis(2));
        }
        for _ in 0..MIN_SAMPLES - 2 {
            o.record("s", "c", OK, Duration::from_millis(30));
        }
        assert_eq!(o.standing("c"), Standing::In, "not enough samples yet");
        o.record("s", "c", OK, Duration::from_millis(30));
        assert_eq!(o.standing("c"), Standing::Out, "15× slower than its peers");
        assert_eq!(o.standing("a"), Standing::In);
        let fast = quick();
        for _ in 0..MIN_SAMPLES {
            fast.record("s", "a", OK, Duration::from_micros(100));
            fast.record("s", "b", OK, Duration::from_micros(900));
        }
        assert_eq!(fast.standing("b"), Standing::In, "9× of almost nothing is not an outlier");
    }
}
