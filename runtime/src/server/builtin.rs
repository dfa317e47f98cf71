//! Endpoints every server answers: `Debug.Health`, `Debug.Stats` and the standard
//! `grpc.health.v1.Health/Check`.

use serde::{Deserialize, Serialize};

use super::{unary, Endpoint, Request, Server};
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
    /// 1 = SERVING.
    #[prost(int32, tag = "1")]
    pub status: i32,
}

fn proc_status_field(name: &str) -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with(name))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

pub(super) fn register(server: &Server) {
    server.handle(
        Endpoint::new("Debug.Health", unary(|_: Request<Empty>| async { Ok(HealthResponse { status: "ok".into() }) }))
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
                let known = req.service.is_empty()
                    || names.descriptors().services().iter().any(|s| *s == req.service)
                    || req.service == names.options().name;
                async move {
                    if known {
                        Ok(HealthCheckResponse { status: 1 })
                    } else {
                        Err(Error::not_found("", format!("unknown service {}", req.service)))
                    }
                }
            }),
        )
        .path("/grpc.health.v1.Health/Check")
        .internal(),
    );
}
