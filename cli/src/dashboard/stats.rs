//! Live traffic of a service, for the charts on its page: `GET /stats?service=NAME` reads the
//! `/metrics` of each of the service's nodes (the addresses its registry records, never one the
//! caller names), and answers, per endpoint and for the whole service, the request rate, the
//! share of calls that failed and the p50/p99 latency over the time since an earlier reading.
//!
//! Figures come from the nodes' own `rpc_server_call_duration_seconds` histograms: call counts
//! and bucket counts are differenced between two readings of the same node (a counter that went
//! down is a restarted node, counted from zero), each node against its own newest earlier
//! reading (stamped when its scrape began), summed over the nodes, and quantiles are
//! interpolated within a bucket as Prometheus's `histogram_quantile` does. A node with no
//! earlier reading is left out of that window: when its calls happened is unknown. Only the
//! endpoints the registry lists are kept.
//!
//! **Bounded and the caller's.** A scrape carries the caller's `Authorization` (a node may
//! demand one), never a credential of the dashboard's; readings are therefore kept per caller
//! credential as well as per service, for at most [`MAX_HISTORIES`] pairs (the least recently
//! read goes first) and [`KEEP`] each. A reading younger than [`FRESH`] is reused, so many open
//! pages do not multiply the load on the nodes. Each scrape has [`SCRAPE_TIMEOUT`] and a body of
//! at most [`MAX_METRICS_BODY`]; at most [`MAX_NODES`] nodes are read per service.
//!
//! The text is parsed by `prometheus-parse` (it splits label values at commas, which the labels
//! read here, endpoint names, do not contain); only that histogram's lines reach it. At most
//! [`MAX_SCRAPES`] scrapes run at once, whoever asks.

use std::collections::{HashMap, HashSet, VecDeque};
use std::hash::BuildHasher;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use http::HeaderValue;
use http_body_util::BodyExt;
use micro::registry::Node;
use micro::transport::Body;
use serde::Serialize;

use crate::gateway::HttpClient;

/// How long one node's metrics may take, head and body.
pub(super) const SCRAPE_TIMEOUT: Duration = Duration::from_secs(2);
/// The largest metrics text read from a node.
pub(super) const MAX_METRICS_BODY: usize = 1 << 20;
/// The most nodes of one service read for one answer.
pub(super) const MAX_NODES: usize = 64;
/// The most scrapes under way at once, for every page and caller together.
pub(super) const MAX_SCRAPES: usize = 16;
/// The most (service, credential) pairs whose readings are kept.
pub(super) const MAX_HISTORIES: usize = 256;
/// A reading this young is reused rather than taken again.
pub(super) const FRESH: Duration = Duration::from_secs(1);
/// The shortest window a rate is computed over.
const MIN_WINDOW: Duration = Duration::from_millis(900);
/// How long a reading is kept as a possible start of a window.
pub(super) const KEEP: Duration = Duration::from_secs(30);

/// The histogram the figures come from.
const SERVER_CALLS: &str = "rpc_server_call_duration_seconds";

/// Calls of one endpoint as counted by one node (or summed, or differenced).
#[derive(Debug, Clone, Default, PartialEq)]
struct Calls {
    count: f64,
    errors: f64,
    /// Cumulative counts by upper bound, ascending, `+Inf` last.
    buckets: Vec<(f64, f64)>,
}

impl Calls {
    /// Adds `other`'s counts, bucket by bucket.
    fn add(&mut self, other: &Calls) {
        self.count += other.count;
        self.errors += other.errors;
        for &(le, n) in &other.buckets {
            match self.buckets.iter_mut().find(|(l, _)| *l == le) {
                Some((_, m)) => *m += n,
                None => self.buckets.push((le, n)),
            }
        }
        self.buckets.sort_by(|a, b| a.0.total_cmp(&b.0));
    }

    /// What happened between `base` and `self` (the same node's later reading).
    fn since(&self, base: Option<&Calls>) -> Calls {
        let Some(base) = base.filter(|b| b.count <= self.count) else {
            // Never seen, or a restarted node: everything it counted is new.
            return self.clone();
        };
        let before = |le: f64| base.buckets.iter().find(|(l, _)| *l == le).map_or(0.0, |b| b.1);
        Calls {
            count: self.count - base.count,
            errors: (self.errors - base.errors).max(0.0),
            buckets: self.buckets.iter().map(|&(le, n)| (le, (n - before(le)).max(0.0))).collect(),
        }
    }

    /// The `q` quantile of the durations, interpolated within its bucket.
    fn quantile(&self, q: f64) -> Option<f64> {
        let total = self.buckets.last()?.1;
        if total <= 0.0 {
            return None;
        }
        let rank = q * total;
        let (mut lower, mut below) = (0.0, 0.0);
        for &(le, n) in &self.buckets {
            if n >= rank {
                if le.is_infinite() {
                    return Some(lower);
                }
                let inside = n - below;
                return Some(if inside <= 0.0 { le } else { lower + (le - lower) * (rank - below) / inside });
            }
            (lower, below) = (le, n);
        }
        Some(lower)
    }

    fn figures(&self, seconds: f64) -> Figures {
        let called = self.count > 0.0;
        Figures {
            rate: self.count / seconds,
            errors: called.then(|| self.errors / self.count),
            p50: self.quantile(0.5),
            p99: self.quantile(0.99),
        }
    }
}

/// One node's calls by endpoint (`Service.Method`, as the registry names it).
type NodeCalls = HashMap<String, Calls>;

/// What a node's metrics text says of the calls it answered to `endpoints`.
fn parse(text: &str, endpoints: &HashSet<String>) -> NodeCalls {
    let bucket = format!("{SERVER_CALLS}_bucket");
    let lines = text
        .lines()
        .filter(|l| l.starts_with(&bucket) || (l.starts_with("# TYPE ") && l.contains(SERVER_CALLS)))
        .map(|l| Ok(l.to_string()));
    let Ok(scrape) = prometheus_parse::Scrape::parse(lines) else { return NodeCalls::new() };
    let mut calls = NodeCalls::new();
    for sample in scrape.samples.iter().filter(|s| s.metric == SERVER_CALLS) {
        let prometheus_parse::Value::Histogram(buckets) = &sample.value else { continue };
        let method = sample.labels.get("rpc_method").unwrap_or_default();
        let service = sample.labels.get("rpc_service").unwrap_or_default();
        // `pkg.Greeter` (from a gRPC path) is the registry's `Greeter`.
        let short = service.rsplit('.').next().unwrap_or_default();
        let endpoint = if short.is_empty() { method.to_string() } else { format!("{short}.{method}") };
        if !endpoints.contains(&endpoint) {
            continue;
        }
        let mut one = Calls { buckets: buckets.iter().map(|b| (b.less_than, b.count)).collect(), ..Default::default() };
        one.buckets.sort_by(|a, b| a.0.total_cmp(&b.0));
        one.count = one.buckets.last().map_or(0.0, |b| b.1);
        if sample.labels.get("rpc_response_status_code") != Some("OK") {
            one.errors = one.count;
        }
        calls.entry(endpoint).or_default().add(&one);
    }
    calls
}

/// Every node's calls at one moment.
struct Reading {
    at: Instant,
    nodes: HashMap<String, NodeCalls>,
    failed: Vec<Failure>,
}

/// A node whose metrics could not be read.
#[derive(Debug, Clone, Serialize)]
pub(super) struct Failure {
    node: String,
    error: String,
}

/// Rate (calls a second), share failed, and latency (seconds) over a window.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub(super) struct Figures {
    rate: f64,
    errors: Option<f64>,
    p50: Option<f64>,
    p99: Option<f64>,
}

/// The answer of `GET /stats`.
#[derive(Debug, Serialize)]
pub(super) struct Answer {
    service: String,
    /// Seconds the figures span; absent on the first reading (there is nothing to compare).
    window: Option<f64>,
    /// Nodes read.
    nodes: usize,
    failed: Vec<Failure>,
    total: Option<Figures>,
    endpoints: std::collections::BTreeMap<String, Figures>,
}

/// The readings of one service for one caller credential.
#[derive(Default)]
struct History {
    readings: VecDeque<Reading>,
}

impl History {
    /// The figures between the newest reading and, for each node, the newest reading of it at
    /// least [`MIN_WINDOW`] older.
    fn answer(&self, service: &str) -> Answer {
        let now = self.readings.back().expect("a reading was just taken");
        let mut answer = Answer {
            service: service.to_string(),
            window: None,
            nodes: 0,
            failed: now.failed.clone(),
            total: None,
            endpoints: Default::default(),
        };
        let mut total = Sum::default();
        let mut endpoints: HashMap<&str, Sum> = HashMap::new();
        for (id, calls) in &now.nodes {
            let base = self
                .readings
                .iter()
                .rev()
                .filter(|r| now.at.duration_since(r.at) >= MIN_WINDOW)
                .find_map(|r| r.nodes.get(id).map(|b| (r.at, b)));
            let Some((at, before)) = base else { continue };
            let seconds = now.at.duration_since(at).as_secs_f64();
            answer.nodes += 1;
            answer.window = Some(answer.window.map_or(seconds, |w: f64| w.max(seconds)));
            for (endpoint, c) in calls {
                let delta = c.since(before.get(endpoint));
                total.add(&delta, seconds);
                endpoints.entry(endpoint).or_default().add(&delta, seconds);
            }
        }
        if answer.window.is_some() {
            answer.total = Some(total.figures());
            answer.endpoints = endpoints.into_iter().map(|(e, s)| (e.to_string(), s.figures())).collect();
        }
        answer
    }
}

/// Calls summed over nodes whose windows may differ: their rates add up.
#[derive(Default)]
struct Sum {
    calls: Calls,
    rate: f64,
}

impl Sum {
    fn add(&mut self, delta: &Calls, seconds: f64) {
        self.calls.add(delta);
        self.rate += delta.count / seconds;
    }

    fn figures(&self) -> Figures {
        Figures { rate: self.rate, ..self.calls.figures(1.0) }
    }
}

/// A history, shared by the requests that read it, and when it was last read.
type Kept = (Instant, Arc<tokio::sync::Mutex<History>>);

/// The readings kept for the dashboard's pages.
pub(super) struct Stats {
    http: HttpClient,
    /// By (service, hash of the caller's `Authorization`).
    histories: Mutex<HashMap<(String, u64), Kept>>,
    keys: std::collections::hash_map::RandomState,
    scrapes: tokio::sync::Semaphore,
}

impl Stats {
    pub(super) fn new(http: HttpClient) -> Stats {
        Stats {
            http,
            histories: Mutex::new(HashMap::new()),
            keys: Default::default(),
            scrapes: tokio::sync::Semaphore::new(MAX_SCRAPES),
        }
    }

    /// The figures of `service`, whose nodes are `nodes`, read with the caller's `authorization`.
    /// Only `endpoints` (the registry's) are counted.
    pub(super) async fn answer(
        &self,
        service: &str,
        nodes: &[Node],
        endpoints: &HashSet<String>,
        authorization: Option<&HeaderValue>,
    ) -> Answer {
        let history = self.history(service, authorization);
        let mut history = history.lock().await;
        let fresh = history.readings.back().is_some_and(|r| r.at.elapsed() < FRESH);
        if !fresh {
            let reading = self.read(nodes, endpoints, authorization).await;
            history.readings.retain(|r| reading.at.duration_since(r.at) <= KEEP);
            history.readings.push_back(reading);
        }
        history.answer(service)
    }

    /// The history of (service, credential), made if new; the least recently used one goes
    /// when there are [`MAX_HISTORIES`].
    fn history(&self, service: &str, authorization: Option<&HeaderValue>) -> Arc<tokio::sync::Mutex<History>> {
        let key = (service.to_string(), self.keys.hash_one(authorization.map(HeaderValue::as_bytes)));
        let mut histories = self.histories.lock().unwrap_or_else(|e| e.into_inner());
        if let Some((used, h)) = histories.get_mut(&key) {
            *used = Instant::now();
            return h.clone();
        }
        if histories.len() >= MAX_HISTORIES {
            if let Some(oldest) = histories.iter().min_by_key(|(_, (used, _))| *used).map(|(k, _)| k.clone()) {
                histories.remove(&oldest);
            }
        }
        let h = Arc::new(tokio::sync::Mutex::new(History::default()));
        histories.insert(key, (Instant::now(), h.clone()));
        h
    }

    /// Reads every node (the first [`MAX_NODES`] by id) at once; the reading is stamped when
    /// the scrapes begin.
    async fn read(&self, nodes: &[Node], endpoints: &HashSet<String>, authorization: Option<&HeaderValue>) -> Reading {
        let mut nodes: Vec<&Node> = nodes.iter().collect();
        nodes.sort_by(|a, b| a.id.cmp(&b.id));
        nodes.truncate(MAX_NODES);
        let at = Instant::now();
        let results =
            futures_util::future::join_all(nodes.iter().map(|n| self.scrape(n, endpoints, authorization))).await;
        let mut reading = Reading { at, nodes: HashMap::new(), failed: Vec::new() };
        for (node, result) in nodes.iter().zip(results) {
            match result {
                Ok(calls) => {
                    reading.nodes.insert(node.id.clone(), calls);
                }
                Err(error) => reading.failed.push(Failure { node: node.id.clone(), error }),
            }
        }
        reading
    }

    /// One node's `/metrics`, within [`SCRAPE_TIMEOUT`] and [`MAX_METRICS_BODY`].
    async fn scrape(
        &self,
        node: &Node,
        endpoints: &HashSet<String>,
        authorization: Option<&HeaderValue>,
    ) -> Result<NodeCalls, String> {
        if let Some(t) = node.metadata.get("transport").filter(|t| *t != "http") {
            return Err(format!("its transport ({t}) serves no metrics page"));
        }
        let scheme = if micro::transport::tls::node_is_secure(&node.metadata, None) { "https" } else { "http" };
        let url = format!("{scheme}://{}{}", node.address, micro::wrapper::metrics::PATH);
        let uri: http::Uri = url.parse().map_err(|_| format!("its address {} is not one to read", node.address))?;
        let mut req = http::Request::get(uri).body(Body::empty()).map_err(|e| e.to_string())?;
        if let Some(a) = authorization {
            req.headers_mut().insert(http::header::AUTHORIZATION, a.clone());
        }
        let read = async {
            let _turn = self.scrapes.acquire().await.map_err(|e| e.to_string())?;
            let resp = self.http.request(req).await.map_err(|e| format!("{url}: {e}"))?;
            if !resp.status().is_success() {
                return Err(format!("{url} answered {}", resp.status()));
            }
            let body = http_body_util::Limited::new(resp.into_body(), MAX_METRICS_BODY)
                .collect()
                .await
                .map_err(|e| format!("{url}: {e}"))?
                .to_bytes();
            Ok(parse(&String::from_utf8_lossy(&body), endpoints))
        };
        tokio::time::timeout(SCRAPE_TIMEOUT, read)
            .await
            .unwrap_or_else(|_| Err(format!("{url} did not answer within {SCRAPE_TIMEOUT:?}")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const TEXT: &str = r#"# HELP rpc_server_call_duration_seconds Duration of calls the server answered.
# TYPE rpc_server_call_duration_seconds histogram
# UNIT rpc_server_call_duration_seconds seconds
rpc_server_call_duration_seconds_sum{rpc_system="grpc",rpc_service="pkg.Tester",rpc_method="Echo",rpc_response_status_code="OK"} 0.3
rpc_server_call_duration_seconds_count{rpc_system="grpc",rpc_service="pkg.Tester",rpc_method="Echo",rpc_response_status_code="OK"} 10
rpc_server_call_duration_seconds_bucket{le="0.1",rpc_system="grpc",rpc_service="pkg.Tester",rpc_method="Echo",rpc_response_status_code="OK"} 8
rpc_server_call_duration_seconds_bucket{le="1.0",rpc_system="grpc",rpc_service="pkg.Tester",rpc_method="Echo",rpc_response_status_code="OK"} 10
rpc_server_call_duration_seconds_bucket{le="+Inf",rpc_system="grpc",rpc_service="pkg.Tester",rpc_method="Echo",rpc_response_status_code="OK"} 10
rpc_server_call_duration_seconds_bucket{le="0.1",rpc_system="grpc",rpc_service="pkg.Tester",rpc_method="Echo",rpc_response_status_code="NOT_FOUND"} 2
rpc_server_call_duration_seconds_bucket{le="1.0",rpc_system="grpc",rpc_service="pkg.Tester",rpc_method="Echo",rpc_response_status_code="NOT_FOUND"} 2
rpc_server_call_duration_seconds_bucket{le="+Inf",rpc_system="grpc",rpc_service="pkg.Tester",rpc_method="Echo",rpc_response_status_code="NOT_FOUND"} 2
# EOF
"#;

    #[test]
    fn a_nodes_text_becomes_calls_by_registry_endpoint() {
        let calls = parse(TEXT, &HashSet::from(["Tester.Echo".to_string()]));
        assert!(parse(TEXT, &HashSet::new()).is_empty(), "only the registry's endpoints are kept");
        let echo = &calls["Tester.Echo"];
        assert_eq!((echo.count, echo.errors), (12.0, 2.0));
        assert_eq!(echo.buckets, [(0.1, 10.0), (1.0, 12.0), (f64::INFINITY, 12.0)]);
        assert!(parse("not metrics at all {{{", &HashSet::new()).is_empty());
    }

    #[test]
    fn quantiles_interpolate_within_a_bucket() {
        let c = Calls { count: 100.0, errors: 0.0, buckets: vec![(0.1, 50.0), (0.2, 100.0), (f64::INFINITY, 100.0)] };
        assert_eq!(c.quantile(0.5), Some(0.1));
        assert!((c.quantile(0.75).unwrap() - 0.15).abs() < 1e-9);
        let slow = Calls { count: 4.0, errors: 0.0, buckets: vec![(0.1, 0.0), (f64::INFINITY, 4.0)] };
        assert_eq!(slow.quantile(0.99), Some(0.1), "beyond the last bound: the last bound");
        assert_eq!(Calls::default().quantile(0.5), None);
    }

    #[test]
    fn windows_difference_readings_and_a_restart_counts_from_zero() {
        let at = |count: f64, errors: f64| Calls { count, errors, buckets: vec![(0.1, count), (f64::INFINITY, count)] };
        let delta = at(30.0, 3.0).since(Some(&at(10.0, 1.0)));
        assert_eq!(delta, at(20.0, 2.0));
        assert_eq!(at(5.0, 0.0).since(Some(&at(10.0, 1.0))), at(5.0, 0.0), "a restarted node");
        let f = delta.figures(2.0);
        assert_eq!((f.rate, f.errors), (10.0, Some(0.1)));
        assert_eq!(Calls::default().figures(2.0).errors, None, "no calls: no error rate");
    }

    #[test]
    fn the_window_spans_readings_of_the_same_nodes() {
        let node = |n: f64| {
            HashMap::from([(
                "Tester.Echo".to_string(),
                Calls { count: n, errors: 0.0, buckets: vec![(f64::INFINITY, n)] },
            )])
        };
        let start = Instant::now();
        let mut h = History::default();
        h.readings.push_back(Reading { at: start, nodes: HashMap::from([("a".into(), node(10.0))]), failed: vec![] });
        assert_eq!(h.answer("s").window, None, "one reading: nothing to compare");
        h.readings.push_back(Reading {
            at: start + Duration::from_secs(2),
            nodes: HashMap::from([("a".into(), node(30.0)), ("b".into(), node(1000.0))]),
            failed: vec![],
        });
        let answer = h.answer("s");
        assert_eq!(answer.window, Some(2.0));
        assert_eq!(answer.endpoints["Tester.Echo"].rate, 10.0, "node b is new: its calls are not in this window");
        assert_eq!(answer.nodes, 1, "only nodes in the window count");
        // Node a missed a reading: it is measured against its own last one.
        h.readings.push_back(Reading {
            at: start + Duration::from_secs(4),
            nodes: HashMap::from([("b".into(), node(1020.0))]),
            failed: vec![],
        });
        h.readings.push_back(Reading {
            at: start + Duration::from_secs(6),
            nodes: HashMap::from([("a".into(), node(70.0)), ("b".into(), node(1040.0))]),
            failed: vec![],
        });
        let answer = h.answer("s");
        assert_eq!(answer.nodes, 2);
        assert_eq!(answer.endpoints["Tester.Echo"].rate, 10.0 + 10.0, "a: 40 calls in 4 s; b: 20 in 2 s");
    }

    #[test]
    fn each_credential_has_its_own_readings() {
        let stats = Stats::new(crate::gateway::http_client());
        let (a, b) = (HeaderValue::from_static("Bearer a"), HeaderValue::from_static("Bearer b"));
        let first = stats.history("s", Some(&a));
        assert!(Arc::ptr_eq(&first, &stats.history("s", Some(&a))), "one caller's readings are reused");
        assert!(!Arc::ptr_eq(&first, &stats.history("s", Some(&b))), "another token reads afresh");
        assert!(!Arc::ptr_eq(&first, &stats.history("s", None)), "so does no token");
        assert!(!Arc::ptr_eq(&first, &stats.history("t", Some(&a))), "and another service");
        for i in 0..MAX_HISTORIES + 10 {
            stats.history(&format!("s{i}"), None);
        }
        assert_eq!(stats.histories.lock().unwrap().len(), MAX_HISTORIES, "bounded");
    }
}
