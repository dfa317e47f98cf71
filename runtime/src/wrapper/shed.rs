//! Load shedding: beyond what an endpoint can serve, requests are refused at once (503 with
//! `Retry-After` over HTTP, `RESOURCE_EXHAUSTED` in gRPC: [`Error::overloaded`]) instead of
//! all of them waiting until they time out.
//!
//! [`Shedder`] guards every unary endpoint (a stream's cost is not one request's; health,
//! reflection and `Debug.*` are never shed) with up to three limits:
//!
//! - **Adaptive** (on by default), in the spirit of BBR as kratos and go-zero shed: over the
//!   last 5 s in 100 ms buckets the endpoint learns the most calls it completed in a bucket and
//!   the lowest mean latency of a bucket; their product (Little's law) is how many calls it can
//!   hold in flight. A call beyond that is refused while the endpoint is overloaded — its
//!   recent latency is more than twice its best, and 25 ms more — and for a second after the
//!   last refusal, so the gate does not flap. An endpoint that is slow but keeping up, or busy
//!   with a burst it serves in time, refuses nothing.
//!
//!   [`Shedding::Cpu`] (the default) also needs the process to be busy (80 % of its cores over
//!   the last second, as kratos gates it): latency alone cannot tell a saturated server from
//!   one whose downstream got slower, and refusing calls a slow downstream would still answer
//!   helps nobody. [`Shedding::Latency`] (`--server_shed=latency`) sheds on latency alone, for
//!   endpoints bounded by something other than CPU (a pool of connections, a lock) that the
//!   operator knows to be the limit.
//! - **Concurrency** ([`ShedOptions::max_concurrent`]): at most so many calls at once.
//! - **Rate** ([`ShedOptions::rate`]): a token bucket of so many calls a second, bursts of
//!   [`ShedOptions::burst`].
//!
//! Options come from `--server_shed`, `--server_max_concurrent` and `--server_rate_limit`, and
//! per endpoint from code ([`Shedder::endpoint`]). A refusal costs two atomic operations and
//! no allocation beyond its error.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use futures_util::future::BoxFuture;

use crate::server::{Endpoint, Handler, HandlerWrapper, RawRequest, UnaryHandler};
use crate::Error;

/// The id of refusals.
pub const ID: &str = "go.micro.server.shed";

/// One bucket of the adaptive window.
const BUCKET: Duration = Duration::from_millis(100);
/// Buckets in the window (5 s).
const BUCKETS: usize = 50;
/// Recent buckets whose latency says whether the endpoint is overloaded.
const RECENT: u64 = 5;
/// Calls those recent buckets need before their latency counts.
const RECENT_CALLS: u64 = 10;
/// How long after a refusal the gate stays closed at capacity.
const COOL_DOWN: Duration = Duration::from_secs(1);
/// Waiting shorter than this is not overload, however fast the endpoint was (a saturated
/// endpoint whose callers wait a few milliseconds is serving, not drowning).
const MIN_QUEUEING: Duration = Duration::from_millis(25);

/// When the adaptive limit refuses calls.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Shedding {
    /// Never.
    Off,
    /// Beyond capacity while the endpoint is overloaded and the process is busy.
    #[default]
    Cpu,
    /// Beyond capacity while the endpoint is overloaded, however idle the process.
    Latency,
}

/// The names `--server_shed` takes (`true` is `cpu`, `false` is `off`).
pub const SHEDDING: &[&str] = &["cpu", "latency", "off"];

impl std::str::FromStr for Shedding {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self, Error> {
        match s {
            "cpu" | "true" | "on" | "1" => Ok(Shedding::Cpu),
            "latency" => Ok(Shedding::Latency),
            "off" | "false" | "0" => Ok(Shedding::Off),
            _ => Err(Error::bad_request(ID, format!("server_shed {s:?} is not one of {}", SHEDDING.join(", ")))),
        }
    }
}

/// The limits of one endpoint (or of every endpoint).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ShedOptions {
    /// When to refuse beyond the capacity the endpoint shows.
    pub adaptive: Shedding,
    /// At most this many calls at once; 0 for no fixed limit.
    pub max_concurrent: usize,
    /// At most this many calls a second, on average; 0 for no rate limit.
    pub rate: f64,
    /// Calls the rate limit lets through at once (the rate's, when 0).
    pub burst: f64,
}

impl Default for ShedOptions {
    fn default() -> Self {
        ShedOptions { adaptive: Shedding::Cpu, max_concurrent: 0, rate: 0.0, burst: 0.0 }
    }
}

/// The server wrapper that sheds load ([module docs](self)).
#[derive(Debug, Clone, Default)]
pub struct Shedder {
    options: ShedOptions,
    endpoints: HashMap<String, ShedOptions>,
}

impl Shedder {
    /// Every endpoint limited by `options`.
    pub fn new(options: ShedOptions) -> Self {
        Shedder { options, endpoints: HashMap::new() }
    }

    /// `endpoint` (`Greeter.SayHello`) limited by `options` instead.
    pub fn endpoint(mut self, endpoint: impl Into<String>, options: ShedOptions) -> Self {
        self.endpoints.insert(endpoint.into(), options);
        self
    }
}

/// Endpoints that must answer however busy the server is.
fn exempt(endpoint: &Endpoint) -> bool {
    let path = endpoint.path.as_deref().unwrap_or("");
    endpoint.name.starts_with("Debug.") || path.starts_with("/grpc.health.") || path.starts_with("/grpc.reflection.")
}

impl HandlerWrapper for Shedder {
    fn wrap(&self, endpoint: &Endpoint, inner: Handler) -> Handler {
        let options = *self.endpoints.get(&endpoint.name).unwrap_or(&self.options);
        let off = options.adaptive == Shedding::Off && options.max_concurrent == 0 && options.rate <= 0.0;
        match inner {
            Handler::Unary(inner) if !off && !exempt(endpoint) => {
                Handler::Unary(Arc::new(Shed { gate: Arc::new(Gate::new(&endpoint.name, options)), inner }))
            }
            other => other,
        }
    }
}

struct Shed {
    gate: Arc<Gate>,
    inner: Arc<dyn UnaryHandler>,
}

impl UnaryHandler for Shed {
    fn call(&self, req: RawRequest) -> BoxFuture<'static, Result<Bytes, Error>> {
        let pass = match Gate::admit(&self.gate) {
            Ok(p) => p,
            Err(e) => return Box::pin(std::future::ready(Err(e))),
        };
        let fut = self.inner.call(req);
        Box::pin(async move {
            let res = fut.await;
            pass.finish();
            res
        })
    }
}

/// An admitted call. Dropped unfinished (its deadline passed, its caller went away), it leaves
/// the count of calls in flight all the same, and teaches the window nothing.
struct Pass {
    gate: Arc<Gate>,
    started: Instant,
}

impl Pass {
    fn finish(self) {
        if self.gate.options.adaptive != Shedding::Off {
            self.gate.window.record(self.started.elapsed());
        }
    }
}

impl Drop for Pass {
    fn drop(&mut self) {
        self.gate.inflight.fetch_sub(1, Ordering::AcqRel);
    }
}

/// The limits and measurements of one endpoint.
struct Gate {
    name: String,
    options: ShedOptions,
    inflight: AtomicUsize,
    bucket: Option<Mutex<(f64, Instant)>>,
    window: Window,
}

impl Gate {
    fn new(name: &str, options: ShedOptions) -> Gate {
        let burst = Self::burst(&options);
        Gate {
            name: name.to_string(),
            options,
            inflight: AtomicUsize::new(0),
            bucket: (options.rate > 0.0).then(|| Mutex::new((burst, Instant::now()))),
            window: Window::new(),
        }
    }

    /// A rate limit's bucket size: the burst asked for, the rate's otherwise, never below one.
    fn burst(options: &ShedOptions) -> f64 {
        (if options.burst > 0.0 { options.burst } else { options.rate }).max(1.0)
    }

    fn admit(gate: &Arc<Gate>) -> Result<Pass, Error> {
        let now = gate.inflight.fetch_add(1, Ordering::AcqRel) + 1;
        let pass = Pass { gate: gate.clone(), started: Instant::now() };
        gate.check(now)?;
        Ok(pass)
    }

    fn check(&self, inflight: usize) -> Result<(), Error> {
        let max = self.options.max_concurrent;
        if max > 0 && inflight > max {
            return Err(Error::overloaded(ID, format!("{} is at its limit of {max} calls at once", self.name)));
        }
        if let Some(bucket) = &self.bucket {
            let mut b = bucket.lock().unwrap_or_else(|e| e.into_inner());
            let burst = Self::burst(&self.options);
            let now = Instant::now();
            b.0 = (b.0 + now.duration_since(b.1).as_secs_f64() * self.options.rate).min(burst);
            b.1 = now;
            if b.0 < 1.0 {
                return Err(Error::overloaded(
                    ID,
                    format!("{} is over its limit of {} calls a second", self.name, self.options.rate),
                ));
            }
            b.0 -= 1.0;
        }
        if self.options.adaptive != Shedding::Off {
            let busy = self.options.adaptive == Shedding::Latency || cpu_busy();
            if let Some(capacity) = self.window.shed(inflight).filter(|_| busy) {
                return Err(Error::overloaded(
                    ID,
                    format!(
                        "{} is overloaded: {inflight} calls in flight, about {capacity} can be served at once",
                        self.name
                    ),
                ));
            }
        }
        Ok(())
    }
}

/// Whether the process used 80 % of its cores over about the last second (read from
/// `/proc/self/stat` at most every 250 ms, whoever asks; `true` where there is no `/proc`, so
/// latency decides alone).
fn cpu_busy() -> bool {
    use std::sync::OnceLock;
    struct Cpu {
        start: Instant,
        /// µs since `start` of the last reading, and the process's CPU µs then.
        last: Mutex<(u64, u64)>,
        /// Share of the cores used, in thousandths, smoothed.
        share: AtomicU64,
    }
    static CPU: OnceLock<Cpu> = OnceLock::new();
    let cpu = CPU.get_or_init(|| Cpu {
        start: Instant::now(),
        last: Mutex::new((0, process_cpu_us().unwrap_or(0))),
        share: AtomicU64::new(0),
    });
    let now = cpu.start.elapsed().as_micros() as u64;
    if let Ok(mut last) = cpu.last.try_lock() {
        if now.saturating_sub(last.0) >= 250_000 {
            let Some(used) = process_cpu_us() else { return true };
            let cores = std::thread::available_parallelism().map_or(1, |n| n.get()) as u64;
            let share = used.saturating_sub(last.1) * 1000 / (now.saturating_sub(last.0) * cores).max(1);
            let smoothed = (cpu.share.load(Ordering::Acquire) + share * 3) / 4;
            cpu.share.store(smoothed, Ordering::Release);
            *last = (now, used);
        }
    }
    cpu.share.load(Ordering::Acquire) >= 800
}

/// CPU time the process has used (user and system), in µs, from `/proc/self/stat`.
fn process_cpu_us() -> Option<u64> {
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    // Fields after the command (which may hold spaces) in parentheses; utime and stime are
    // the 14th and 15th of the line, in clock ticks (100 a second on Linux).
    let rest = stat.rsplit_once(')')?.1;
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let ticks: u64 = fields.get(11)?.parse::<u64>().ok()? + fields.get(12)?.parse::<u64>().ok()?;
    Some(ticks * 10_000)
}

/// One 100 ms bucket: which bucket it holds now, calls completed, their summed latency.
#[derive(Default)]
struct Slot {
    epoch: AtomicU64,
    passed: AtomicU64,
    rt_us: AtomicU64,
}

/// What the adaptive limit learns, with the figures it derives once per bucket.
struct Window {
    start: Instant,
    slots: Vec<Slot>,
    /// The bucket the derived figures below were computed in (+1; 0 for never).
    derived: AtomicU64,
    /// Calls the endpoint can hold in flight (0 while it knows nothing).
    capacity: AtomicU64,
    overloaded: AtomicBool,
    /// When the last call was refused (µs since `start`, +1; 0 for never).
    last_drop: AtomicU64,
}

impl Window {
    fn new() -> Window {
        Window {
            start: Instant::now(),
            slots: (0..BUCKETS).map(|_| Slot::default()).collect(),
            derived: AtomicU64::new(0),
            capacity: AtomicU64::new(0),
            overloaded: AtomicBool::new(false),
            last_drop: AtomicU64::new(0),
        }
    }

    fn epoch(&self) -> u64 {
        (self.start.elapsed().as_micros() / BUCKET.as_micros()) as u64 + 1
    }

    fn record(&self, rt: Duration) {
        let epoch = self.epoch();
        let slot = &self.slots[(epoch % BUCKETS as u64) as usize];
        let seen = slot.epoch.load(Ordering::Acquire);
        if seen != epoch && slot.epoch.compare_exchange(seen, epoch, Ordering::AcqRel, Ordering::Acquire).is_ok() {
            slot.passed.store(0, Ordering::Release);
            slot.rt_us.store(0, Ordering::Release);
        }
        slot.passed.fetch_add(1, Ordering::AcqRel);
        slot.rt_us.fetch_add(rt.as_micros().min(u64::MAX as u128) as u64, Ordering::AcqRel);
    }

    /// The capacity it would refuse a call beyond, if it refuses the call that makes `inflight`.
    fn shed(&self, inflight: usize) -> Option<u64> {
        let epoch = self.epoch();
        if self.derived.load(Ordering::Acquire) != epoch {
            self.derive(epoch);
        }
        self.decide(inflight)
    }

    /// [`Window::shed`] with the figures derived last.
    fn decide(&self, inflight: usize) -> Option<u64> {
        let capacity = self.capacity.load(Ordering::Acquire);
        if capacity == 0 || inflight as u64 <= capacity {
            return None;
        }
        let now_us = self.start.elapsed().as_micros() as u64 + 1;
        let last = self.last_drop.load(Ordering::Acquire);
        let cooling = last != 0 && now_us.saturating_sub(last) < COOL_DOWN.as_micros() as u64;
        if !(self.overloaded.load(Ordering::Acquire) || cooling) {
            return None;
        }
        self.last_drop.store(now_us, Ordering::Release);
        Some(capacity)
    }

    /// Capacity and overload from the completed buckets of the window.
    fn derive(&self, epoch: u64) {
        self.derived.store(epoch, Ordering::Release);
        let (mut max_pass, mut min_rt) = (0u64, f64::MAX);
        let (mut recent_calls, mut recent_us) = (0u64, 0u64);
        for slot in &self.slots {
            let e = slot.epoch.load(Ordering::Acquire);
            if e == 0 || e >= epoch || epoch - e > BUCKETS as u64 {
                continue;
            }
            let (passed, us) = (slot.passed.load(Ordering::Acquire), slot.rt_us.load(Ordering::Acquire));
            if passed == 0 {
                continue;
            }
            max_pass = max_pass.max(passed);
            min_rt = min_rt.min(us as f64 / passed as f64);
            if epoch - e <= RECENT {
                recent_calls += passed;
                recent_us += us;
            }
        }
        if max_pass == 0 {
            self.capacity.store(0, Ordering::Release);
            return;
        }
        let capacity = (max_pass as f64 * min_rt / BUCKET.as_micros() as f64).ceil().max(1.0) as u64;
        self.capacity.store(capacity, Ordering::Release);
        let recent = (recent_calls >= RECENT_CALLS).then(|| recent_us as f64 / recent_calls as f64);
        let queueing = MIN_QUEUEING.as_micros() as f64;
        self.overloaded.store(recent.is_some_and(|rt| rt > 2.0 * min_rt && rt - min_rt > queueing), Ordering::Release);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fixed_limits_refuse_at_once_and_say_why() {
        let off = Shedding::Off;
        let gate = Arc::new(Gate::new("S.M", ShedOptions { adaptive: off, max_concurrent: 2, ..Default::default() }));
        let (a, b) = (Gate::admit(&gate).unwrap(), Gate::admit(&gate).unwrap());
        let refused = Gate::admit(&gate).err().unwrap();
        assert!(refused.is_overloaded() && refused.detail.contains("limit of 2 calls at once"), "{refused}");
        assert_eq!(refused.grpc_code(), crate::error::GrpcCode::ResourceExhausted);
        a.finish();
        Gate::admit(&gate).unwrap().finish();
        drop(b);
        assert_eq!(gate.inflight.load(Ordering::Acquire), 0, "a call dropped unfinished leaves the count too");

        let rated = ShedOptions { adaptive: off, rate: 5.0, burst: 3.0, ..Default::default() };
        let rated = Arc::new(Gate::new("S.M", rated));
        for _ in 0..3 {
            Gate::admit(&rated).unwrap().finish();
        }
        assert!(Gate::admit(&rated).err().unwrap().detail.contains("5 calls a second"), "a burst of 3 at most");
        let slow = Arc::new(Gate::new("S.M", ShedOptions { adaptive: off, rate: 0.5, ..Default::default() }));
        assert!(Gate::admit(&slow).is_ok(), "a rate below one a second still lets one call through");
        assert_eq!("latency".parse::<Shedding>().unwrap(), Shedding::Latency);
        assert_eq!("true".parse::<Shedding>().unwrap(), Shedding::Cpu);
        assert!("sometimes".parse::<Shedding>().is_err());
    }

    #[test]
    fn the_adaptive_limit_sheds_only_an_overloaded_endpoint_beyond_its_capacity() {
        let w = Window::new();
        // Learned: 40 calls in a bucket at 10 ms each, so 4 at once.
        let e = w.epoch();
        let slot = &w.slots[(e % BUCKETS as u64) as usize];
        slot.epoch.store(e, Ordering::Release);
        slot.passed.store(40, Ordering::Release);
        slot.rt_us.store(40 * 10_000, Ordering::Release);
        w.derive(e + 1);
        assert_eq!(w.capacity.load(Ordering::Acquire), 4);
        assert!(!w.overloaded.load(Ordering::Acquire), "latency at its best");
        assert_eq!(w.decide(9), None, "not overloaded: a burst is served");
        w.overloaded.store(true, Ordering::Release);
        assert_eq!(w.decide(4), None, "within capacity");
        assert_eq!(w.decide(5), Some(4));
        w.overloaded.store(false, Ordering::Release);
        assert_eq!(w.decide(5), Some(4), "a refusal keeps the gate closed for a while");
        // Recent calls (10 ms and 80 ms) over twice as slow as the best bucket, and 25 ms more.
        let next = &w.slots[((e + 1) % BUCKETS as u64) as usize];
        next.epoch.store(e + 1, Ordering::Release);
        next.passed.store(40, Ordering::Release);
        next.rt_us.store(40 * 80_000, Ordering::Release);
        w.derive(e + 2);
        assert!(w.overloaded.load(Ordering::Acquire));
    }

    #[test]
    fn the_process_cpu_is_read() {
        let before = process_cpu_us().expect("/proc/self/stat");
        let spin = Instant::now();
        while spin.elapsed() < Duration::from_millis(30) {
            std::hint::black_box(spin.elapsed());
        }
        assert!(process_cpu_us().unwrap() > before, "CPU time grows while spinning");
    }
}
