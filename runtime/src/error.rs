//! The one error type of the runtime.
//!
//! On the wire an error is Go Micro's JSON shape `{"id","code","detail","status"}`: `code` is an HTTP
//! status, `status` its reason phrase and `id` names who produced it (usually the service). The same
//! error maps both ways to a gRPC status code, so a native gRPC peer sees a proper `grpc-status`
//! while a micro client gets the full JSON back (it travels in the `micro-error` trailer).

use std::fmt;

use serde::{Deserialize, Serialize};

/// The id of errors raised on the calling side (the client, the selector, the transport's
/// connections): a 503 with this id means the node was never reached, so the call is safe to
/// try again elsewhere.
pub const CLIENT_ID: &str = "go.micro.client";

/// The id of errors a server raises itself, before or around a handler (replaced by the
/// service's name on the wire).
pub const SERVER_ID: &str = "go.micro.server";

/// gRPC status codes, with their fixed numbers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
#[allow(missing_docs)]
pub enum GrpcCode {
    Ok = 0,
    Cancelled = 1,
    Unknown = 2,
    InvalidArgument = 3,
    DeadlineExceeded = 4,
    NotFound = 5,
    AlreadyExists = 6,
    PermissionDenied = 7,
    ResourceExhausted = 8,
    FailedPrecondition = 9,
    Aborted = 10,
    OutOfRange = 11,
    Unimplemented = 12,
    Internal = 13,
    Unavailable = 14,
    DataLoss = 15,
    Unauthenticated = 16,
}

impl GrpcCode {
    /// The code for a number; unknown numbers become [`GrpcCode::Unknown`].
    pub fn from_i32(n: i32) -> Self {
        use GrpcCode::*;
        match n {
            0 => Ok,
            1 => Cancelled,
            3 => InvalidArgument,
            4 => DeadlineExceeded,
            5 => NotFound,
            6 => AlreadyExists,
            7 => PermissionDenied,
            8 => ResourceExhausted,
            9 => FailedPrecondition,
            10 => Aborted,
            11 => OutOfRange,
            12 => Unimplemented,
            13 => Internal,
            14 => Unavailable,
            15 => DataLoss,
            16 => Unauthenticated,
            _ => Unknown,
        }
    }

    /// The code's name as gRPC spells it (`OK`, `UNAVAILABLE`), as metrics and traces label it.
    pub fn name(self) -> &'static str {
        use GrpcCode::*;
        match self {
            Ok => "OK",
            Cancelled => "CANCELLED",
            Unknown => "UNKNOWN",
            InvalidArgument => "INVALID_ARGUMENT",
            DeadlineExceeded => "DEADLINE_EXCEEDED",
            NotFound => "NOT_FOUND",
            AlreadyExists => "ALREADY_EXISTS",
            PermissionDenied => "PERMISSION_DENIED",
            ResourceExhausted => "RESOURCE_EXHAUSTED",
            FailedPrecondition => "FAILED_PRECONDITION",
            Aborted => "ABORTED",
            OutOfRange => "OUT_OF_RANGE",
            Unimplemented => "UNIMPLEMENTED",
            Internal => "INTERNAL",
            Unavailable => "UNAVAILABLE",
            DataLoss => "DATA_LOSS",
            Unauthenticated => "UNAUTHENTICATED",
        }
    }

    /// The HTTP status (the micro error `code`) that stands for this gRPC code.
    pub fn to_http(self) -> u16 {
        use GrpcCode::*;
        match self {
            Ok => 200,
            Cancelled => 499,
            InvalidArgument | OutOfRange | FailedPrecondition => 400,
            DeadlineExceeded => 408,
            NotFound => 404,
            AlreadyExists | Aborted => 409,
            PermissionDenied => 403,
            ResourceExhausted => 413,
            Unimplemented => 501,
            Unavailable => 503,
            Unauthenticated => 401,
            Unknown | Internal | DataLoss => 500,
        }
    }

    /// The code's name in Connect's spelling (`not_found`); also the key of its HTTP status in
    /// the Connect protocol ([`GrpcCode::connect_http`]).
    pub fn connect_name(self) -> &'static str {
        use GrpcCode::*;
        match self {
            Ok => "ok",
            Cancelled => "canceled",
            Unknown => "unknown",
            InvalidArgument => "invalid_argument",
            DeadlineExceeded => "deadline_exceeded",
            NotFound => "not_found",
            AlreadyExists => "already_exists",
            PermissionDenied => "permission_denied",
            ResourceExhausted => "resource_exhausted",
            FailedPrecondition => "failed_precondition",
            Aborted => "aborted",
            OutOfRange => "out_of_range",
            Unimplemented => "unimplemented",
            Internal => "internal",
            Unavailable => "unavailable",
            DataLoss => "data_loss",
            Unauthenticated => "unauthenticated",
        }
    }

    /// The code a Connect name stands for.
    pub fn from_connect_name(name: &str) -> Option<Self> {
        (0..=16).map(Self::from_i32).find(|c| c.connect_name() == name)
    }

    /// The HTTP status a Connect server answers a unary error of this code with.
    pub fn connect_http(self) -> u16 {
        use GrpcCode::*;
        match self {
            Ok => 200,
            Cancelled => 499,
            InvalidArgument | FailedPrecondition | OutOfRange => 400,
            DeadlineExceeded => 504,
            NotFound => 404,
            AlreadyExists | Aborted => 409,
            PermissionDenied => 403,
            ResourceExhausted => 429,
            Unimplemented => 501,
            Unavailable => 503,
            Unauthenticated => 401,
            Unknown | Internal | DataLoss => 500,
        }
    }

    /// The name an error carries in `status` for a code its HTTP status alone does not name
    /// (400 is `INVALID_ARGUMENT` unless `status` says `Failed Precondition`, ...).
    fn exact_status(self) -> Option<&'static str> {
        use GrpcCode::*;
        match self {
            FailedPrecondition => Some("Failed Precondition"),
            OutOfRange => Some("Out Of Range"),
            Aborted => Some("Aborted"),
            DataLoss => Some("Data Loss"),
            Unknown => Some("Unknown"),
            _ => None,
        }
    }

    /// The gRPC code that stands for an HTTP status (a micro error `code`).
    pub fn from_http(code: u16) -> Self {
        use GrpcCode::*;
        match code {
            200..=299 => Ok,
            400 => InvalidArgument,
            401 => Unauthenticated,
            403 => PermissionDenied,
            404 => NotFound,
            405 => Unimplemented,
            408 | 504 => DeadlineExceeded,
            409 => AlreadyExists,
            413 | 429 => ResourceExhausted,
            499 => Cancelled,
            501 => Unimplemented,
            502 | 503 => Unavailable,
            _ => Internal,
        }
    }
}

/// An error as Go Micro puts it on the wire.
///
/// ```
/// let err = micro::Error::not_found("go.micro.srv.example", "no such user");
/// assert_eq!(err.code, 404);
/// assert_eq!(
///     err.to_json(),
///     r#"{"id":"go.micro.srv.example","code":404,"detail":"no such user","status":"Not Found"}"#
/// );
/// ```
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Error {
    /// Who produced the error: a service name, `go.micro.client`, `go.micro.api`, ...
    #[serde(default)]
    pub id: String,
    /// The HTTP status code that classifies the error.
    #[serde(default)]
    pub code: u16,
    /// A sentence for humans.
    #[serde(default)]
    pub detail: String,
    /// The reason phrase of `code`.
    #[serde(default)]
    pub status: String,
}

/// The result type of the runtime.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// The `status` of an [`Error::overloaded`].
const OVERLOADED: &str = "Resource Exhausted";

fn reason(code: u16) -> &'static str {
    http::StatusCode::from_u16(code).ok().and_then(|s| s.canonical_reason()).unwrap_or(match code {
        499 => "Client Closed Request",
        _ => "Unknown",
    })
}

macro_rules! constructors {
    ($($(#[$doc:meta])* $name:ident => $code:expr),* $(,)?) => {
        $(
            $(#[$doc])*
            pub fn $name(id: impl Into<String>, detail: impl fmt::Display) -> Self {
                Self::new(id, $code, detail)
            }
        )*
    };
}

impl Error {
    /// An error with an explicit HTTP code; `status` is filled from the code.
    pub fn new(id: impl Into<String>, code: u16, detail: impl fmt::Display) -> Self {
        Error { id: id.into(), code, detail: detail.to_string(), status: reason(code).to_string() }
    }

    constructors! {
        /// 400 Bad Request.
        bad_request => 400,
        /// 401 Unauthorized.
        unauthorized => 401,
        /// 403 Forbidden.
        forbidden => 403,
        /// 404 Not Found.
        not_found => 404,
        /// 405 Method Not Allowed.
        method_not_allowed => 405,
        /// 408 Request Timeout.
        timeout => 408,
        /// 409 Conflict.
        conflict => 409,
        /// 413 Payload Too Large.
        too_large => 413,
        /// 500 Internal Server Error.
        internal_server_error => 500,
        /// 503 Service Unavailable.
        unavailable => 503,
    }

    /// 503 for a request the server refused unprocessed because it is overloaded (load
    /// shedding, a concurrency or rate limit): `RESOURCE_EXHAUSTED` in gRPC, 503 with
    /// `Retry-After` over HTTP. A client may send it to another node.
    pub fn overloaded(id: impl Into<String>, detail: impl fmt::Display) -> Self {
        Error { status: OVERLOADED.to_string(), ..Self::new(id, 503, detail) }
    }

    /// Whether the request surely was not processed, so another node may be sent it: the
    /// client could not deliver it (503 from `go.micro.client`: no connection, or refused
    /// before it was sent), or the server refused it for overload.
    pub fn not_processed(&self) -> bool {
        self.code == 503 && self.id == CLIENT_ID || self.is_overloaded()
    }

    /// Whether this is a refusal for overload ([`Error::overloaded`]).
    pub fn is_overloaded(&self) -> bool {
        self.code == 503 && self.status == OVERLOADED
    }

    /// The gRPC code this error maps to.
    ///
    /// The HTTP `code` decides, except for the gRPC codes that share one (`FAILED_PRECONDITION`
    /// and `OUT_OF_RANGE` are 400s, `ABORTED` a 409, `DATA_LOSS` and `UNKNOWN` 500s): an error
    /// made by [`Error::from_grpc`] keeps those in its `status`, so the exact code crosses
    /// every protocol and hop.
    pub fn grpc_code(&self) -> GrpcCode {
        use GrpcCode::*;
        if self.is_overloaded() {
            return ResourceExhausted;
        }
        for exact in [FailedPrecondition, OutOfRange, Aborted, DataLoss, Unknown] {
            if exact.to_http() == self.code && exact.exact_status() == Some(self.status.as_str()) {
                return exact;
            }
        }
        GrpcCode::from_http(self.code)
    }

    /// An error built from a gRPC status sent by a peer that did not send micro's JSON.
    pub fn from_grpc(id: impl Into<String>, code: GrpcCode, message: &str) -> Self {
        let detail = if message.is_empty() { format!("{code:?}") } else { message.to_string() };
        let mut err = Self::new(id, code.to_http(), detail);
        if let Some(status) = code.exact_status() {
            err.status = status.to_string();
        }
        err
    }

    /// The error as compact JSON.
    pub fn to_json(&self) -> String {
        serde_json::to_string(self).unwrap_or_default()
    }

    /// Parses the JSON shape, if `text` is one.
    pub fn from_json(text: &str) -> Option<Self> {
        match serde_json::from_str::<Error>(text) {
            Ok(mut e) if e.code != 0 => {
                if e.status.is_empty() {
                    e.status = reason(e.code).to_string();
                }
                Some(e)
            }
            _ => None,
        }
    }

    /// Parses the JSON shape; anything else becomes a 500 whose detail is the text itself.
    pub fn parse(text: &str) -> Self {
        Self::from_json(text).unwrap_or_else(|| Self::internal_server_error("", text))
    }

    /// Whether a call that failed with this error may safely be sent again to another node:
    /// the client could not deliver it (503 from `go.micro.client`: no connection, or the
    /// request was refused before it was sent), or it timed out (408). The client itself
    /// retries by `client::retry::should_retry`, which repeats a timed-out call only when it
    /// is idempotent.
    pub fn is_retryable(&self) -> bool {
        self.code == 408 || self.code == 503 && self.id == CLIENT_ID
    }
}

/// Debug is the wire JSON too, so `fn main() -> Result<(), micro::Error>` prints one clear line.
impl fmt::Debug for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_json())
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_json())
    }
}

impl std::error::Error for Error {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_round_trip() {
        let e = Error::conflict("svc", "already there");
        assert_eq!(e.status, "Conflict");
        assert_eq!(Error::parse(&e.to_json()), e);
        let raw = Error::parse("plain words");
        assert_eq!(raw.code, 500);
        assert_eq!(raw.detail, "plain words");
    }

    #[test]
    fn grpc_mapping_both_ways() {
        for (http, grpc) in [
            (400, GrpcCode::InvalidArgument),
            (401, GrpcCode::Unauthenticated),
            (403, GrpcCode::PermissionDenied),
            (404, GrpcCode::NotFound),
            (408, GrpcCode::DeadlineExceeded),
            (409, GrpcCode::AlreadyExists),
            (413, GrpcCode::ResourceExhausted),
            (500, GrpcCode::Internal),
            (503, GrpcCode::Unavailable),
        ] {
            assert_eq!(GrpcCode::from_http(http), grpc, "{http}");
            assert_eq!(grpc.to_http(), http, "{grpc:?}");
        }
        assert_eq!(GrpcCode::from_http(405), GrpcCode::Unimplemented);
        for n in 1..=16 {
            let code = GrpcCode::from_i32(n);
            assert_eq!(Error::from_grpc("x", code, "m").grpc_code(), code, "{code:?}");
            assert_eq!(GrpcCode::from_connect_name(code.connect_name()), Some(code));
        }
        assert_eq!(Error::new("x", 500, "m").grpc_code(), GrpcCode::Internal);
        assert_eq!(GrpcCode::from_i32(99), GrpcCode::Unknown);
    }
}
