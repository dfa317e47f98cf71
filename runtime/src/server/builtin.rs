//! Endpoints every server answers: `Debug.Health`, `Debug.Stats` and the standard
//! `grpc.health.v1.Health/Check` and `/Watch`, all telling the server's real health
//! ([`Server::set_serving`]).

use serde::{Deserialize, Serialize};

use super::{server_stream, unary, Endpoint, Health, Request, Server, ServerStream};
use crate::Error;

/// An empty message.
#[derive(Clone, Copy, PartialEq, Eq, prost::Message, Serialize, Deserialize)]
pub struct Empty {}

/// `Debug.Health` reply: `{"status":"ok"}`.
#[derive(Clone, PartialEq, Eq, prost::Message, Serialize, Deserialize)]
pub struct HealthResponse {
    /// `ok` while the server serves.
    #[prost(string, tag = "1")]
    pub status: String,
}

/// `Debug.Stats` reply.
#[derive(Clone, PartialEq, Eq, prost::Message, Serialize, Deserialize)]
pub struct StatsResponse {
    /// Unix time the server started, in seconds.
    #[prost(uint64, tag = "1")]
    pub started: u64,
    /// Seconds since start.
    #[prost(uint64, tag = "2")]
    pub uptime: u64,
    /// Resident memory, in bytes.
    #[prost(uint64, tag = "3")]
    pub memory: u64,
    /// Threads of the process.
    #[prost(uint64, tag = "4")]
    pub threads: u64,
    /// Garbage collections: always 0 in Rust, kept for Go Micro's shape.
    #[prost(uint64, tag = "5")]
    pub gc: u64,
}

/// `grpc.health.v1.HealthCheckRequest`.
#[derive(Clone, PartialEq, Eq, prost::Message, Serialize, Deserialize)]
pub struct HealthCheckRequest {
    /// The service asked about; empty for the whole server.
    #[prost(string, tag = "1")]
    #[serde(default)]
    pub service: String,
}

/// `grpc.health.v1.HealthCheckResponse`.
#[derive(Clone, PartialEq, Eq, prost::Message, Serialize, Deserialize)]
pub struct HealthCheckResponse {
    /// 1 = SERVING, 2 = NOT_SERVING, 3 = SERVICE_UNKNOWN (Watch only).
    #[prost(int32, tag = "1")]
    pub status: i32,
}

/// `SERVING`.
pub const SERVING: i32 = 1;
/// `NOT_SERVING`.
pub const NOT_SERVING: i32 = 2;
/// `SERVICE_UNKNOWN`.
pub const SERVICE_UNKNOWN: i32 = 3;

/// How often a health watch looks at the broker's connection.
const BROKER_POLL: std::time::Duration = std::time::Duration::from_secs(1);

pub(crate) fn proc_status_field(name: &str) -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with(name))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

pub(super) fn register(server: &Server) {
    let health = server.clone();
    server.handle(
        Endpoint::new(
            "Debug.Health",
            unary(move |_: Request<Empty>| {
                let ready = health.readiness();
                async move {
                    match ready {
                        Ok(()) => Ok(HealthResponse { status: "ok".into() }),
                        Err(why) => Err(Error::unavailable("", format!("not ready: {why}"))),
                    }
                }
            }),
        )
        .internal(),
    );
    let started = server.started();
    let wall_start =
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0);
    server.handle(
        Endpoint::new(
            "Debug.Stats",
            unary(move |_: Request<Empty>| async move {
                Ok::<_, Error>(StatsResponse {
                    started: wall_start,
                    uptime: started.elapsed().as_secs(),
                    memory: proc_status_field("VmRSS:").unwrap_or(0) * 1024,
                    threads: proc_status_field("Threads:").unwrap_or(0),
                    gc: 0,
                })
            }),
        )
        .internal(),
    );
    let names = server.clone();
    server.handle(
        Endpoint::new(
            "grpc.health.v1.Health.Check",
            unary(move |req: Request<HealthCheckRequest>| {
                let known = knows(&names, &req.service);
                let status = if names.readiness().is_ok() { SERVING } else { NOT_SERVING };
                async move {
                    if known {
                        Ok(HealthCheckResponse { status })
                    } else {
                        Err(Error::not_found("", format!("unknown service {}", req.service)))
                    }
                }
            }),
        )
        .path("/grpc.health.v1.Health/Check")
        .internal(),
    );
    let watched = server.clone();
    server.handle(
        Endpoint::new(
            "grpc.health.v1.Health.Watch",
            server_stream(move |req: Request<HealthCheckRequest>, stream: ServerStream<HealthCheckResponse>| {
                let known = knows(&watched, &req.service);
                let health = watched.watch_health();
                watch(known, watched.clone(), health, stream)
            }),
        )
        .path("/grpc.health.v1.Health/Watch")
        .internal(),
    );
}

/// Whether `service` is one the health service answers for: the server's name, a service it
/// implements, or empty (the whole server).
fn knows(server: &Server, service: &str) -> bool {
    service.is_empty()
        || service == server.options().name
        || server.descriptors().services().iter().any(|s| s == service)
}

/// `Watch`: the status now, then every change, until the client goes away or the server stops;
/// an unknown service is told SERVICE_UNKNOWN once and then kept waiting, as the spec says.
async fn watch(
    known: bool,
    server: Server,
    mut health: tokio::sync::watch::Receiver<Health>,
    stream: ServerStream<HealthCheckResponse>,
) -> Result<(), Error> {
    if !known {
        stream.send(HealthCheckResponse { status: SERVICE_UNKNOWN }).await?;
        let _ = health.wait_for(|h| *h == Health::Stopped).await;
        return Ok(());
    }
    let mut last = None;
    loop {
        let now = *health.borrow_and_update();
        let status = if now == Health::Stopped || server.readiness().is_err() { NOT_SERVING } else { SERVING };
        if last != Some(status) {
            stream.send(HealthCheckResponse { status }).await?;
            last = Some(status);
        }
        if now == Health::Stopped {
            return Ok(());
        }
        // The server's own changes wake the watch at once; the broker's are looked at each second.
        tokio::select! {
            changed = health.changed() => if changed.is_err() { return Ok(()) },
            _ = stream.closed() => return Ok(()),
            _ = tokio::time::sleep(BROKER_POLL) => {}
        }
    }
}
